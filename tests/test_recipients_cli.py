"""`mailer recipients check` and `mailer suppress ...` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailer.cli import app
from mailer.suppression import SuppressionList

DEFAULT_STATE = Path(".mailer") / "state.sqlite3"  # relative to the test's cwd (tmp_path)


@pytest.fixture
def subscribers(tmp_path: Path) -> Path:
    path = tmp_path / "subscribers.csv"
    path.write_text(
        "email,name,lists,organisation\n"
        "alice@example.org,Alice,news,Health\n"
        "bob@example.org,Bob,news;board,Police\n"
        "ALICE@example.org,Alice again,news,Health\n"
        "carol@example.org,Carol,board,Schools\n",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def bad_subscribers(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(
        "email,name\nok@example.org,Ok\nbroken,Broken\n"
        'eve@example.org,"Eve\r\nBcc: x@example.net"\n',
        encoding="utf-8",
    )
    return path


def check_json(runner, *args: str):
    result = runner.invoke(app, ["recipients", "check", *args, "--format", "json"])
    return result, json.loads(result.stdout)


def test_check_counts_valid_and_duplicates_and_exits_0_for_duplicates_alone(runner, subscribers):
    result = runner.invoke(app, ["recipients", "check", str(subscribers)])
    assert result.exit_code == 0, result.output
    assert "3 valid recipients" in result.stdout
    assert "1 duplicates" in result.stdout
    assert f"{subscribers}:4: ALICE@example.org: duplicate of line 2" in result.stdout


def test_check_lists_every_bad_row_and_exits_1(runner, bad_subscribers):
    result = runner.invoke(app, ["recipients", "check", str(bad_subscribers)])
    assert result.exit_code == 1
    assert f"{bad_subscribers}:3: broken: invalid email address" in result.stdout
    assert f"{bad_subscribers}:4: eve@example.org: control characters in name" in result.stdout


def test_check_json_has_valid_duplicates_problems_and_suppressed(runner, bad_subscribers):
    result, report = check_json(runner, str(bad_subscribers))
    assert result.exit_code == 1
    assert report["valid"] == 1
    assert report["duplicates"] == []
    assert report["suppressed"] is None  # no state file: nothing to check against
    assert report["problems"][1] == {
        "file": str(bad_subscribers),
        "line": 4,
        "email": "eve@example.org",
        "reason": "control characters in name",
    }


def test_check_filters_by_list(runner, subscribers):
    result, report = check_json(runner, str(subscribers), "--list", "Board")
    assert result.exit_code == 0
    assert (report["valid"], report["not_on_list"]) == (2, 2)


def test_check_takes_several_files_and_finds_cross_file_duplicates(runner, subscribers, tmp_path):
    more = tmp_path / "more.csv"
    more.write_text("email\nBOB@example.org\ndan@example.org\n", encoding="utf-8")
    _, report = check_json(runner, str(subscribers), str(more))
    assert report["valid"] == 4
    assert [(d["file"], d["line"]) for d in report["duplicates"]] == [
        (str(subscribers), 4),
        (str(more), 2),
    ]


def test_check_counts_suppressed_addresses_from_the_state_file(runner, subscribers):
    with SuppressionList(DEFAULT_STATE) as suppression:
        suppression.add(["bob@example.org"])
    _, report = check_json(runner, str(subscribers))
    assert (report["valid"], report["suppressed"]) == (2, 1)
    table = runner.invoke(app, ["recipients", "check", str(subscribers)])
    assert "1 suppressed" in table.stdout


def test_check_does_not_create_a_state_file(runner, subscribers):
    runner.invoke(app, ["recipients", "check", str(subscribers)])
    assert not DEFAULT_STATE.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "empty"), ("name\nAlice\n", "no 'email' column")],
)
def test_check_file_level_problems_exit_2_with_one_line_naming_the_file(
    runner, tmp_path, text, message
):
    path = tmp_path / "list.csv"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["recipients", "check", str(path)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert str(path) in result.stderr
    assert "Traceback" not in result.output


def test_check_missing_file_exits_2(runner, tmp_path):
    result = runner.invoke(app, ["recipients", "check", str(tmp_path / "nope.csv")])
    assert result.exit_code == 2
    assert "not found" in result.stderr


def test_suppress_add_list_remove_round_trip(runner):
    added = runner.invoke(app, ["suppress", "add", "A@example.org", "b@example.org"])
    assert added.exit_code == 0, added.output
    assert "suppressed 2 new of 2" in added.stdout
    listed = runner.invoke(app, ["suppress", "list", "--format", "json"])
    entries = json.loads(listed.stdout)
    assert [(e["email"], e["reason"]) for e in entries] == [
        ("A@example.org", "manual"),
        ("b@example.org", "manual"),
    ]
    removed = runner.invoke(app, ["suppress", "remove", "a@EXAMPLE.org"])
    assert "removed 1 of 1" in removed.stdout
    listed = runner.invoke(app, ["suppress", "list", "--format", "json"])
    assert [e["email"] for e in json.loads(listed.stdout)] == ["b@example.org"]


def test_suppress_add_with_an_invalid_address_exits_2_and_adds_nothing(runner):
    result = runner.invoke(app, ["suppress", "add", "ok@example.org", "broken"])
    assert result.exit_code == 2
    assert "'broken'" in result.stderr
    assert "nothing was changed" in result.stderr
    with SuppressionList(DEFAULT_STATE) as suppression:
        assert len(suppression) == 0


def test_suppress_add_records_the_reason(runner):
    runner.invoke(app, ["suppress", "add", "a@example.org", "--reason", "asked by phone"])
    listed = runner.invoke(app, ["suppress", "list"])
    assert "asked by phone" in listed.stdout
    assert "1 suppressed addresses" in listed.stdout


def test_suppress_import_reports_count_and_bad_lines(runner, tmp_path):
    path = tmp_path / "unsubscribed.txt"
    path.write_text("a@example.org\nb@example.org\nnonsense\n", encoding="utf-8")
    result = runner.invoke(app, ["suppress", "import", str(path)])
    assert result.exit_code == 1
    assert "suppressed 2 new of 2 valid addresses" in result.stdout
    assert f"{path}:3: nonsense" in result.stdout
    clean = tmp_path / "clean.csv"
    clean.write_text("email\nb@example.org\nc@example.org\n", encoding="utf-8")
    again = runner.invoke(app, ["suppress", "import", str(clean)])
    assert again.exit_code == 0
    assert "suppressed 1 new of 2" in again.stdout


def test_state_option_and_mailer_state_setting_choose_the_file(runner, tmp_path, monkeypatch):
    flagged = tmp_path / "flag.sqlite3"
    runner.invoke(app, ["suppress", "add", "a@example.org", "--state", str(flagged)])
    env_file = tmp_path / "mailer.env"
    env_file.write_text("MAILER_STATE=from-env.sqlite3\n", encoding="utf-8")
    runner.invoke(app, ["suppress", "add", "b@example.org", "--env-file", str(env_file)])
    with (
        SuppressionList(flagged) as by_flag,
        SuppressionList(tmp_path / "from-env.sqlite3") as by_env,
    ):
        assert "a@example.org" in by_flag
        assert "b@example.org" in by_env
    assert not DEFAULT_STATE.exists()


def test_suppress_list_without_a_state_file_is_empty(runner):
    result = runner.invoke(app, ["suppress", "list", "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert not DEFAULT_STATE.exists()
