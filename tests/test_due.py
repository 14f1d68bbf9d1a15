"""`mailer due` and `mailer schedule` end to end: a real SMTP sink, editions before,
at and after their time, interrupted sends, overlapping cron runs, and refusals."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys

import pytest

from mailer.campaign import SendOptions, prepare_send, run_send
from mailer.cli import app
from mailer.edition import load_edition
from mailer.schedule import run_due, write_send_at
from tests.send_helpers import (
    NO_WAIT,
    PERSONAL_SECTION,
    Recorder,
    addresses,
    sink_settings,
    write_list,
)
from tests.smtp_sink import Faults

NOW = dt.datetime(2025, 7, 15, 8, 0, tzinfo=dt.UTC)
PEOPLE = addresses(5)


@pytest.fixture
def setup(smtp_sink, make_edition, tmp_path):
    """A sink, an edition due at NOW, a list of five, and settings pointing at the sink."""
    sink = smtp_sink()
    edition = make_edition({"01-hello.md": PERSONAL_SECTION}, slug="2025-07-summer")
    write_send_at(edition, NOW)
    recipients = write_list(tmp_path / "list.csv", PEOPLE)
    settings = sink_settings(sink, tmp_path / "state.sqlite3")
    return sink, edition, recipients, settings


def due(edition, recipients, settings, now, **kwargs):
    options = SendOptions(retry=NO_WAIT)
    return run_due(edition.parent, [recipients], settings, options, Recorder(), now, **kwargs)


def test_an_edition_before_its_time_is_not_sent(setup):
    sink, edition, recipients, settings = setup
    [outcome] = due(edition, recipients, settings, NOW - dt.timedelta(minutes=1))
    assert outcome.action == "wait" and outcome.ok
    assert sink.received == []


def test_an_edition_at_its_time_goes_to_everyone_once_and_a_second_run_sends_nothing(setup):
    sink, edition, recipients, settings = setup
    [first] = due(edition, recipients, settings, NOW)
    assert first.action == "send" and first.ok
    [second] = due(edition, recipients, settings, NOW + dt.timedelta(minutes=1))
    assert second.action == "done" and second.ok
    assert sink.count_by_recipient() == {email: 1 for email in PEOPLE}


def test_an_edition_a_little_late_is_still_sent(setup):
    sink, edition, recipients, settings = setup
    [outcome] = due(edition, recipients, settings, NOW + dt.timedelta(hours=3))
    assert outcome.ok and len(sink.received) == len(PEOPLE)


def test_an_edition_overdue_past_max_late_is_reported_not_sent(setup):
    sink, edition, recipients, settings = setup
    [outcome] = due(edition, recipients, settings, NOW + dt.timedelta(days=7))
    assert outcome.action == "too-late" and not outcome.ok
    assert "mailer send" in outcome.message
    assert sink.received == []


def test_max_late_can_be_widened(setup):
    sink, edition, recipients, settings = setup
    late = NOW + dt.timedelta(days=7)
    [outcome] = due(edition, recipients, settings, late, max_late=dt.timedelta(days=8))
    assert outcome.ok and len(sink.received) == len(PEOPLE)


def test_due_finishes_an_interrupted_send(setup):
    sink, edition, recipients, settings = setup
    partial = prepare_send(edition, [recipients], settings, SendOptions(limit=2, retry=NO_WAIT))
    run_send(partial, Recorder())
    assert len(sink.received) == 2
    [outcome] = due(edition, recipients, settings, NOW + dt.timedelta(minutes=5))
    assert outcome.ok and outcome.summary.sent == 3
    assert sink.count_by_recipient() == {email: 1 for email in PEOPLE}


def test_due_refuses_an_edition_with_a_placeholder_link(setup):
    sink, edition, recipients, settings = setup
    (edition / "02-todo.md").write_text("Read [the report](#) soon.\n", encoding="utf-8")
    [outcome] = due(edition, recipients, settings, NOW)
    assert outcome.action == "blocked" and not outcome.ok
    assert "check error" in outcome.message
    assert sink.received == []


def test_drafts_without_send_at_are_left_alone(setup):
    sink, edition, recipients, settings = setup
    write_send_at(edition, None)
    [outcome] = due(edition, recipients, settings, NOW)
    assert outcome.action == "done" and outcome.ok
    assert sink.received == []


def test_a_broken_edition_is_reported_and_does_not_stop_the_others(setup):
    sink, edition, recipients, settings = setup
    broken = edition.parent / "2025-08-broken"
    broken.mkdir()
    (broken / "edition.toml").write_text("title = \n", encoding="utf-8")
    outcomes = {o.edition: o for o in due(edition, recipients, settings, NOW)}
    assert not outcomes["2025-08-broken"].ok
    assert "edition.toml" in outcomes["2025-08-broken"].message
    assert outcomes["2025-07-summer"].ok
    assert len(sink.received) == len(PEOPLE)


# --- the command, as cron runs it ----------------------------------------------------


def cron_env(sink, tmp_path) -> tuple[dict[str, str], os.PathLike]:
    """A minimal environment, as cron gives, and an env file holding the settings."""
    env_file = tmp_path / "mailer.env"
    env_file.write_text(
        "\n".join(
            f"{key}={value}"
            for key, value in {
                **sink.env(),
                "MAILER_FROM": "news@example.org",
                "MAILER_UNSUBSCRIBE_URL": "https://example.org/unsubscribe",
                "MAILER_SECRET": "test-secret",
                "MAILER_STATE": str(tmp_path / "state.sqlite3"),
            }.items()
        ),
        encoding="utf-8",
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    return env, env_file


def run_cron(edition, recipients, env, env_file) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailer",
            "due",
            str(edition.parent),
            "--recipients",
            str(recipients),
            "--env-file",
            str(env_file),
        ],
        env=env,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_cron_run_from_another_folder_sends_and_logs_plain_timestamped_lines(
    smtp_sink, make_edition, tmp_path
):
    sink = smtp_sink()
    edition = make_edition({"01-hello.md": PERSONAL_SECTION})
    write_send_at(edition, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    recipients = write_list(tmp_path / "list.csv", PEOPLE)
    env, env_file = cron_env(sink, tmp_path)
    process = run_cron(edition, recipients, env, env_file)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert sink.count_by_recipient() == {email: 1 for email in PEOPLE}
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines and all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", line) for line in lines)
    assert "\x1b[" not in out + err  # no colour or cursor codes in the log


def test_two_overlapping_cron_runs_never_send_an_edition_twice(smtp_sink, make_edition, tmp_path):
    sink = smtp_sink(Faults(delay=0.02))
    edition = make_edition({"01-hello.md": PERSONAL_SECTION})
    write_send_at(edition, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
    people = addresses(30)
    recipients = write_list(tmp_path / "list.csv", people)
    env, env_file = cron_env(sink, tmp_path)
    runs = [run_cron(edition, recipients, env, env_file) for _ in range(2)]
    results = [run.communicate(timeout=90) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], results
    assert sink.count_by_recipient() == {email: 1 for email in people}


def test_due_with_nothing_to_do_exits_0_quietly(runner, make_edition, tmp_path):
    edition = make_edition()
    recipients = write_list(tmp_path / "list.csv", PEOPLE)
    result = runner.invoke(app, ["due", str(edition.parent), "--recipients", str(recipients)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ""


def test_due_exits_1_for_an_overdue_edition(runner, make_edition, tmp_path):
    edition = make_edition()
    write_send_at(edition, dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    recipients = write_list(tmp_path / "list.csv", PEOPLE)
    result = runner.invoke(app, ["due", str(edition.parent), "--recipients", str(recipients)])
    assert result.exit_code == 1
    assert "too-late" in result.output


# --- mailer schedule -------------------------------------------------------------------


def test_schedule_at_writes_send_at_with_its_offset_and_prints_the_crontab_line(
    runner, make_edition, monkeypatch
):
    monkeypatch.setenv("MAILER_TIMEZONE", "Europe/London")
    edition = make_edition()
    result = runner.invoke(app, ["schedule", str(edition), "--at", "2030-07-15 09:00"])
    assert result.exit_code == 0, result.output
    assert "2030-07-15T09:00:00+01:00" in result.output
    assert load_edition(edition).send_at == dt.datetime.fromisoformat("2030-07-15T09:00:00+01:00")
    crontab = next(line for line in result.output.splitlines() if line.startswith("* * * * *"))
    assert f" due {edition.parent}" in crontab and "--recipients /" in crontab


def test_schedule_clear_makes_it_a_draft_again(runner, make_edition):
    edition = make_edition(send_at="2030-07-15T09:00:00+01:00")
    result = runner.invoke(app, ["schedule", str(edition), "--clear"])
    assert result.exit_code == 0
    assert load_edition(edition).send_at is None


def test_schedule_list_shows_each_editions_time_and_state(runner, make_edition, setup):
    _sink, edition, recipients, settings = setup
    make_edition(slug="2025-09-autumn")
    due(edition, recipients, settings, NOW)
    result = runner.invoke(
        app, ["schedule", "--list", str(edition.parent), "--state", str(settings.state_path)]
    )
    assert result.exit_code == 0, result.output
    rows = {
        slug: next(line for line in result.output.splitlines() if slug in line)
        for slug in ("2025-07-summer", "2025-09-autumn")
    }
    summer, autumn = rows["2025-07-summer"], rows["2025-09-autumn"]
    assert "2025-07-15T08:00:00+00:00" in summer and "5 sent" in summer
    assert "draft" in autumn


@pytest.mark.parametrize(
    "args",
    [["--at", "next tuesday"], [], ["--at", "2030-01-01 09:00", "--clear"]],
)
def test_schedule_bad_usage_is_exit_2_and_changes_nothing(runner, make_edition, args):
    edition = make_edition()
    before = (edition / "edition.toml").read_text(encoding="utf-8")
    result = runner.invoke(app, ["schedule", str(edition), *args])
    assert result.exit_code == 2
    assert (edition / "edition.toml").read_text(encoding="utf-8") == before
