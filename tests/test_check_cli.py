"""`mailer check` end to end: render an edition, check it, report by section, exit codes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from mailer.checks import check_edition
from mailer.cli import app
from mailer.config import load_settings
from mailer.edition import load_edition
from mailer.render import render_edition
from tests.conftest import REPO

EXAMPLE_ENV = REPO / ".env.example"


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "test.env"
    path.write_text(
        "MAILER_UNSUBSCRIBE_URL=https://example.org/newsletter/unsubscribe\n"
        "MAILER_ORGANISATION=Northvale Safeguarding Children Partnership\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    httpserver = HTTPServer(host="127.0.0.1", threaded=True)
    httpserver.start()
    httpserver.expect_request("/ok").respond_with_data("<html><body>ok</body></html>")
    httpserver.expect_request("/missing").respond_with_data("gone", status=404)
    httpserver.expect_request("/slow").respond_with_handler(slow)
    yield httpserver
    httpserver.clear()
    httpserver.stop()


def slow(request: Request) -> Response:
    time.sleep(1.5)
    return Response("late")


def check(runner, edition: Path, env_file: Path, *options: str):
    return runner.invoke(app, ["check", str(edition), "--env-file", str(env_file), *options])


def test_example_edition_passes_offline_check_without_errors(runner, edition_dir):
    result = check(runner, edition_dir, EXAMPLE_ENV, "--offline", "--format", "json")
    problems = json.loads(result.stdout)
    assert [p for p in problems if p["severity"] == "error"] == []
    assert result.exit_code == 0, result.output


def test_example_edition_check_edition_through_the_library(edition_dir):
    settings = load_settings(EXAMPLE_ENV)
    rendered = render_edition(load_edition(edition_dir), settings)
    report = check_edition(rendered, settings, offline=True)
    assert report.errors == []
    assert report.links > 3  # sections, images and the footer's links were all found


def test_placeholder_link_fails_and_is_shown_at_its_file_and_line(runner, make_edition, env_file):
    edition = make_edition({"01-training.md": "# Training\n\nBook [the course](#) now.\n"})
    result = check(runner, edition, env_file, "--offline")
    assert result.exit_code == 1
    assert "01-training.md:3" in result.stdout
    assert "placeholder link" in result.stdout
    assert "1 error" in result.stdout


def test_button_url_placeholder_in_front_matter_is_traced(runner, make_edition, env_file):
    section = (
        "---\ntitle: Conference\nbutton_text: Book your place\nbutton_url: https://example.com/book\n"
        "---\nThe annual conference is on 3 October.\n"
    )
    edition = make_edition({"01-conference.md": section})
    result = check(runner, edition, env_file, "--offline", "--format", "json")
    problems = json.loads(result.stdout)
    placeholders = [p for p in problems if p["code"] == "placeholder-link"]
    assert len(placeholders) == 1
    assert Path(placeholders[0]["file"]).name == "01-conference.md"
    assert placeholders[0]["line"] == 4
    assert result.exit_code == 1


def test_warnings_alone_exit_0_and_fail_with_strict(runner, make_edition, env_file):
    edition = make_edition(
        {"01-a.md": "# News\n\nRead [the annual report](http://example.org/r).\n"}
    )
    relaxed = check(runner, edition, env_file, "--offline")
    assert relaxed.exit_code == 0, relaxed.output
    assert "use https://" in relaxed.stdout
    assert check(runner, edition, env_file, "--offline", "--strict").exit_code == 1


def test_json_output_is_only_a_list_of_problems_on_stdout(runner, make_edition, env_file):
    edition = make_edition({"01-a.md": "# News\n\nBook [the course](#) now.\n"})
    result = check(runner, edition, env_file, "--offline", "--format", "json")
    problems = json.loads(result.stdout)  # fails if anything else is on stdout
    assert isinstance(problems, list) and problems
    assert set(problems[0]) == {"severity", "code", "message", "file", "line", "url"}
    assert "links" in result.stderr  # the summary goes to stderr


def test_table_groups_problems_by_section_in_edition_order(runner, make_edition, env_file):
    edition = make_edition(
        {
            "01-first.md": "# First\n\nSee [the report](#).\n",
            "02-second.md": "# Second\n\nRead [the plan](https://example.com/plan).\n",
        },
        subject="S" * 90,
    )
    result = check(runner, edition, env_file, "--offline")
    out = result.stdout
    assert out.index("edition.toml") < out.index("01-first.md") < out.index("02-second.md")
    assert "01-first.md:3" in out and "02-second.md:3" in out
    assert "2 errors" in out and "1 warning" in out


def test_dead_links_are_found_over_http(runner, make_edition, env_file, server):
    missing = server.url_for("/missing")
    ok = server.url_for("/ok")
    edition = make_edition(
        {"01-a.md": f"# News\n\nRead [the annual report]({missing}).\n\n[The plan]({ok})\n"}
    )
    result = check(runner, edition, env_file, "--format", "json", "--timeout", "5")
    dead = [p for p in json.loads(result.stdout) if p["code"] == "http-404"]
    assert [(Path(p["file"]).name, p["line"], p["url"]) for p in dead] == [("01-a.md", 3, missing)]
    assert result.exit_code == 1


def test_timeout_option_bounds_each_request(runner, make_edition, env_file, server):
    edition = make_edition(
        {"01-a.md": f"# News\n\nRead [the late report]({server.url_for('/slow')}).\n"}
    )
    started = time.perf_counter()
    result = check(runner, edition, env_file, "--format", "json", "--timeout", "0.5")
    assert "timeout" in [p["code"] for p in json.loads(result.stdout)]
    assert time.perf_counter() - started < 5


def test_missing_edition_folder_is_a_usage_error(runner, tmp_path, env_file):
    result = check(runner, tmp_path / "issues" / "nope", env_file, "--offline")
    assert result.exit_code == 2
    assert "edition folder not found" in result.stderr
    assert "Traceback" not in result.output


def check_rendered(edition_dir: Path, env_file: Path | None = None):
    settings = load_settings(env_file, environ={})
    return check_edition(
        render_edition(load_edition(edition_dir), settings), settings, offline=True
    )


def test_without_an_unsubscribe_setting_the_footer_link_is_traced_to_the_template(
    make_edition, tmp_path
):
    empty_env = tmp_path / "empty.env"
    empty_env.write_text("", encoding="utf-8")
    report = check_rendered(make_edition(), empty_env)
    assert "missing-unsubscribe" in [p.code for p in report.errors]
    (empty,) = [p for p in report.errors if p.code == "empty-link"]
    assert empty.file.name == "newsletter.mjml.j2"
    assert "unsubscribe_url" in empty.file.read_text(encoding="utf-8").splitlines()[empty.line - 1]


def test_section_image_problems_are_traced_to_the_front_matter(make_edition, env_file):
    section = "---\ntitle: Team\nimage: images/team.jpg\n---\nOur new team.\n"
    report = check_rendered(make_edition({"01-team.md": section}), env_file)
    image = [p for p in report.problems if p.url and "team.jpg" in p.url]
    assert image, report.problems
    assert {(p.file.name, p.line) for p in image} == {("01-team.md", 3)}


def test_templates_option_checks_and_traces_links_in_that_template(
    runner, make_edition, env_file, tmp_path
):
    packaged = REPO / "templates" / "newsletter.mjml.j2"
    custom = tmp_path / "custom"
    custom.mkdir()
    text = packaged.read_text(encoding="utf-8").replace(
        "<p>You receive",
        '<p><a href="https://example.com/about">About the partnership</a></p>\n<p>You receive',
    )
    (custom / "newsletter.mjml.j2").write_text(text, encoding="utf-8")
    edition = make_edition()
    result = check(
        runner, edition, env_file, "--offline", "--templates", str(custom), "--format", "json"
    )
    (problem,) = [p for p in json.loads(result.stdout) if p["code"] == "placeholder-link"]
    assert Path(problem["file"]) == custom / "newsletter.mjml.j2"
    lines = text.splitlines()
    assert "example.com/about" in lines[problem["line"] - 1]
    assert result.exit_code == 1
