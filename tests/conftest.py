"""Shared fixtures. Tests never reach the internet: servers run on 127.0.0.1 and
addresses use RFC 2606 domains."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_EDITION = REPO / "issues" / "2025-07-summer"
EXAMPLE_RECIPIENTS = REPO / "recipients.example.csv"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's MAILER_* settings or a stray .env."""
    import os

    for name in list(os.environ):
        if name.startswith("MAILER_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A newsletter project folder holding a copy of the example edition."""
    root = tmp_path / "project"
    shutil.copytree(EXAMPLE_EDITION, root / "issues" / EXAMPLE_EDITION.name)
    shutil.copy(EXAMPLE_RECIPIENTS, root / "recipients.csv")
    return root


@pytest.fixture
def edition_dir(project: Path) -> Path:
    return project / "issues" / EXAMPLE_EDITION.name


def write_edition(root: Path, sections: dict[str, str], **meta: str) -> Path:
    """Make a small edition: ``sections`` maps file name to file text."""
    root.mkdir(parents=True, exist_ok=True)
    values = {
        "title": "Test edition",
        "subject": "Test subject",
        "preheader": "Test preheader",
        "date": "2025-07-01",
        **meta,
    }
    lines = [f'{key} = "{value}"' for key, value in values.items()]
    (root / "edition.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for name, text in sections.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def make_edition(tmp_path: Path):
    """Factory: ``make_edition({"01-a.md": "..."}, subject="...")`` -> edition folder."""

    def make(sections: dict[str, str] | None = None, slug: str = "2025-01-test", **meta: str):
        sections = sections if sections is not None else {"01-hello.md": "# Hello\n\nBody.\n"}
        return write_edition(tmp_path / "proj" / "issues" / slug, sections, **meta)

    return make


@pytest.fixture
def smtp_sink(tmp_path: Path):
    """Factory for a real SMTP server on 127.0.0.1 (see tests/smtp_sink.py), stopped after
    the test: ``smtp_sink(Faults(...), starttls=True, auth=("user", "pw"))``."""
    from tests.smtp_sink import Sink

    started = []

    def start(faults=None, **options):
        sink = Sink(faults, tls_dir=tmp_path / "tls", **options).start()
        started.append(sink)
        return sink

    yield start
    for sink in started:
        sink.stop()
