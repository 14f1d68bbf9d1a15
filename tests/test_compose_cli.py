"""mailer new / build / preview, driven through the real CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.cli import app
from mailer.render import SIZE_LIMIT, SIZE_WARN
from tests.compose_helpers import parse, texts
from tests.conftest import REPO

ENV_FILE = REPO / ".env.example"


def invoke(runner, *args: str | Path):
    return runner.invoke(app, [str(arg) for arg in args])


# --- mailer new -------------------------------------------------------------------------


def test_new_scaffolds_an_edition_that_builds(runner, tmp_path):
    result = invoke(runner, "new", tmp_path / "issues" / "2025-09-autumn", "--title", 'Autumn "25"')
    assert result.exit_code == 0, result.output
    folder = tmp_path / "issues" / "2025-09-autumn"
    assert sorted(p.name for p in folder.iterdir()) == [
        "01-welcome.md",
        "02-dates.md",
        "edition.toml",
    ]
    built = invoke(runner, "build", folder, "--out", tmp_path / "out")
    assert built.exit_code == 0, built.output
    html = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    assert texts(parse(html), "//h1") == ['Autumn "25"']


def test_new_refuses_to_overwrite_an_existing_folder(runner, tmp_path):
    folder = tmp_path / "issue"
    folder.mkdir()
    (folder / "edition.toml").write_text("keep me", encoding="utf-8")
    result = invoke(runner, "new", folder, "--title", "T")
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert str(folder) in result.stderr
    assert (folder / "edition.toml").read_text(encoding="utf-8") == "keep me"


def test_new_refuses_to_overwrite_a_file(runner, tmp_path):
    target = tmp_path / "issue"
    target.write_text("a file", encoding="utf-8")
    result = invoke(runner, "new", target, "--title", "T")
    assert result.exit_code == 2
    assert target.read_text(encoding="utf-8") == "a file"


# --- mailer build -----------------------------------------------------------------------


def test_build_writes_html_and_text_and_prints_a_summary(runner, edition_dir, tmp_path):
    out = tmp_path / "out"
    result = invoke(runner, "build", edition_dir, "--out", out, "--env-file", ENV_FILE)
    assert result.exit_code == 0, result.output
    assert "built 10 sections, HTML" in result.stdout
    assert " KB" in result.stdout
    html = (out / "index.html").read_text(encoding="utf-8")
    text = (out / "index.txt").read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>")
    assert "Dear colleague," in html
    assert "Unsubscribe: https://example.org/newsletter/unsubscribe" in text
    assert "Traceback" not in result.output


def test_build_and_preview_personalise_as_the_first_subscriber(runner, edition_dir, tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text("email,first_name\nzoe@example.org,Zoë <Z>\n", encoding="utf-8")
    out = tmp_path / "out"
    result = runner.invoke(app, ["build", str(edition_dir), "--out", str(out), "-r", str(listing)])
    assert result.exit_code == 0, result.output
    assert "Dear Zoë <Z>," in (out / "index.txt").read_text(encoding="utf-8")
    assert "Dear Zoë &lt;Z&gt;," in (out / "index.html").read_text(encoding="utf-8")
    preview = runner.invoke(app, ["preview", str(edition_dir), "-r", str(listing)])
    assert "Dear Zoë <Z>," in preview.output


def test_build_without_recipients_uses_merge_field_defaults(runner, edition_dir, tmp_path):
    result = runner.invoke(app, ["build", str(edition_dir), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "Dear colleague," in (tmp_path / "out" / "index.txt").read_text(encoding="utf-8")


def one_line_template(folder: Path, text: str) -> Path:
    """A templates folder whose newsletter template shows just ``text``."""
    folder.mkdir()
    (folder / "newsletter.mjml.j2").write_text(
        f"<mjml><mj-body><mj-section><mj-column><mj-text>{text}"
        "</mj-text></mj-column></mj-section></mj-body></mjml>\n",
        encoding="utf-8",
    )
    return folder


def test_build_templates_option_overrides_project_templates(runner, make_edition, tmp_path):
    root = make_edition()
    mine = one_line_template(tmp_path / "mine", "MINE {{ edition.title }}")
    result = invoke(runner, "build", root, "--out", tmp_path / "out", "--templates", mine)
    assert result.exit_code == 0, result.output
    assert "MINE Test edition" in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")


def test_build_reads_mailer_templates_from_the_environment(runner, make_edition, tmp_path):
    root = make_edition()
    env = one_line_template(tmp_path / "tpl", "ENV")
    result = runner.invoke(
        app,
        ["build", str(root), "--out", str(tmp_path / "out")],
        env={"MAILER_TEMPLATES": str(env)},
    )
    assert result.exit_code == 0, result.output
    assert "ENV" in (tmp_path / "out" / "index.html").read_text(encoding="utf-8")


def huge_edition(make_edition, target_bytes: int) -> Path:
    """An edition whose HTML is about ``target_bytes``: one long paragraph on a base."""
    from mailer.edition import load_edition
    from mailer.render import render_edition

    base = make_edition({"01-a.md": "x\n"}, slug="2025-01-base")
    base_size = len(render_edition(load_edition(base)).preview().html.encode())
    words = "safeguarding " * ((target_bytes - base_size) // len("safeguarding "))
    return make_edition({"01-a.md": words + "\n"}, slug="2025-01-huge")


def test_build_warns_when_html_nears_the_gmail_clipping_size(runner, make_edition, tmp_path):
    root = huge_edition(make_edition, (SIZE_WARN + SIZE_LIMIT) // 2)
    result = invoke(runner, "build", root, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr
    assert "Gmail" in result.stderr


def test_build_fails_when_gmail_would_clip_the_html(runner, make_edition, tmp_path):
    root = huge_edition(make_edition, SIZE_LIMIT + 8 * 1024)
    result = invoke(runner, "build", root, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert "error:" in result.stderr
    assert "clips" in result.stderr
    assert (tmp_path / "out" / "index.html").stat().st_size > SIZE_LIMIT  # kept to inspect


# --- mailer preview ---------------------------------------------------------------------


def test_preview_shows_subject_sections_size_and_text(runner, edition_dir):
    result = invoke(runner, "preview", edition_dir, "--env-file", ENV_FILE)
    assert result.exit_code == 0, result.output
    assert "Summer 2025: sextortion alert" in result.stdout
    assert "Meet our new business manager" in result.stdout  # preheader
    assert "10 (article, profile" in result.stdout
    assert "KB" in result.stdout
    assert "Dear colleague," in result.stdout
    assert "Autumn training programme\n-------------------------" in result.stdout


def test_preview_open_writes_the_html_and_opens_it_in_a_browser(runner, edition_dir, monkeypatch):
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    result = invoke(runner, "preview", edition_dir, "--open")
    assert result.exit_code == 0, result.output
    assert len(opened) == 1 and opened[0].startswith("file://")
    path = Path(opened[0].removeprefix("file://"))
    try:
        assert "Welcome to the summer edition" in path.read_text(encoding="utf-8")
    finally:
        path.unlink()


# --- bad input: one line naming the file, exit 2, nothing written -----------------------


def section_file(text: str) -> dict[str, str]:
    return {"01-a.md": text}


BAD_EDITIONS = {
    "invalid TOML": ({}, {"title": 'x"broken'}, "edition.toml"),
    "unknown kind": (section_file("---\nkind: poem\n---\nx\n"), {}, "01-a.md"),
    "broken front matter": (section_file("---\ntitle: [x\n---\nx\n"), {}, "01-a.md"),
    "unclosed front matter": (section_file("---\ntitle: x\n"), {}, "01-a.md"),
    "bad merge field": (section_file("Hi {{ first_name | }}\n"), {}, "01-a.md"),
    "missing template": ({}, {"template": "absent"}, "edition.toml"),
}


@pytest.mark.parametrize("case", BAD_EDITIONS)
def test_bad_edition_is_one_line_exit_2_and_nothing_written(runner, make_edition, tmp_path, case):
    sections, meta, named = BAD_EDITIONS[case]
    root = make_edition(sections or None, **meta)
    out = tmp_path / "out"
    result = invoke(runner, "build", root, "--out", out)
    assert_input_error(result, named, out)


def test_missing_edition_toml_is_reported(runner, tmp_path):
    folder = tmp_path / "issues" / "empty"
    folder.mkdir(parents=True)
    result = invoke(runner, "build", folder, "--out", tmp_path / "out")
    assert_input_error(result, "edition.toml", tmp_path / "out")
    assert "mailer new" in result.stderr


def test_missing_required_key_is_reported(runner, make_edition, tmp_path):
    root = make_edition()
    toml = root / "edition.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('subject = "Test subject"\n', ""))
    result = invoke(runner, "build", root, "--out", tmp_path / "out")
    assert_input_error(result, "edition.toml", tmp_path / "out")
    assert "subject" in result.stderr


BAD_TEMPLATES = {
    "jinja syntax": ("<mjml>\n<mj-body>\n{% for %}\n</mj-body></mjml>\n", ":3:"),
    "undefined value": ("<mjml>\n<mj-body>\n{{ edition.nope }}</mj-body></mjml>\n", ":3:"),
    "mjml error": ("<mjml><mj-body><mj-section></mjml>\n", "MJML"),
}


@pytest.mark.parametrize("case", BAD_TEMPLATES)
def test_bad_template_is_one_line_exit_2_and_nothing_written(runner, make_edition, tmp_path, case):
    text, expected = BAD_TEMPLATES[case]
    root = make_edition()
    templates = tmp_path / "tpl"
    templates.mkdir()
    (templates / "newsletter.mjml.j2").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    result = invoke(runner, "build", root, "--out", out, "--templates", templates)
    assert_input_error(result, "newsletter.mjml.j2", out)
    assert expected in result.stderr


def test_preview_reports_bad_input_the_same_way(runner, make_edition):
    root = make_edition(section_file("---\nkind: poem\n---\nx\n"))
    result = invoke(runner, "preview", root)
    assert result.exit_code == 2
    assert "unknown kind 'poem'" in result.stderr


def assert_input_error(result, named: str, out: Path) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in result.stderr
    assert not out.exists()


def test_build_out_that_is_a_file_is_an_input_error(runner, make_edition, tmp_path):
    out = tmp_path / "taken"
    out.write_text("not a folder", encoding="utf-8")
    result = invoke(runner, "build", make_edition(), "--out", out)
    assert result.exit_code == 2
    assert "cannot write the build" in result.stderr
    assert out.read_text(encoding="utf-8") == "not a folder"


def test_build_prints_no_css_parser_noise(make_edition, tmp_path):
    """cssutils reports mso-* and newer CSS properties on stderr; a real process shows it."""
    import subprocess
    import sys

    from tests.compose_helpers import ALL_KINDS

    command = "from mailer.cli import main; main()"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            command,
            "build",
            str(make_edition(ALL_KINDS)),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
