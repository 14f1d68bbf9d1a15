"""Scheduling: reading and writing send_at, and what `due` decides for each edition."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from mailer.edition import load_edition
from mailer.errors import InputError
from mailer.schedule import (
    Action,
    Progress,
    crontab_line,
    decide,
    parse_at,
    parse_duration,
    write_send_at,
)

LONDON = ZoneInfo("Europe/London")
SEND_AT = dt.datetime(2025, 7, 15, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def test_local_time_is_read_in_the_given_zone_with_its_summer_offset():
    value = parse_at("2025-07-15 09:00", LONDON)
    assert value.utcoffset() == dt.timedelta(hours=1)
    assert value.astimezone(dt.UTC).hour == 8


def test_winter_time_gets_the_winter_offset():
    assert parse_at("2025-12-02 09:00", LONDON).utcoffset() == dt.timedelta(0)


def test_an_explicit_offset_is_kept():
    assert parse_at("2025-07-15T09:00:00+02:00", LONDON).utcoffset() == dt.timedelta(hours=2)


def test_a_time_skipped_by_the_clocks_going_forward_is_refused():
    with pytest.raises(InputError, match="does not exist"):
        parse_at("2025-03-30 01:30", LONDON)


def test_unreadable_time_says_how_to_write_it():
    with pytest.raises(InputError, match="2025-07-15 09:00"):
        parse_at("next tuesday", LONDON)


def test_send_at_is_written_keeping_comments_and_read_back(make_edition):
    root = make_edition()
    toml = root / "edition.toml"
    toml.write_text("# keep me\n" + toml.read_text(encoding="utf-8"), encoding="utf-8")
    write_send_at(root, SEND_AT)
    assert toml.read_text(encoding="utf-8").startswith("# keep me\n")
    assert 'send_at = "2025-07-15T09:00:00+01:00"' in toml.read_text(encoding="utf-8")
    assert load_edition(root).send_at == SEND_AT


def test_clearing_send_at_removes_the_key(make_edition):
    root = make_edition(send_at="2025-07-15T09:00:00+01:00")
    write_send_at(root, None)
    assert load_edition(root).send_at is None
    assert "send_at" not in (root / "edition.toml").read_text(encoding="utf-8")


def test_crontab_line_uses_absolute_paths_and_appends_to_a_log(tmp_path):
    line = crontab_line(
        tmp_path / "issues",
        [tmp_path / "list.csv"],
        tmp_path / ".env",
        "/opt/mailer/bin/mailer",
        tmp_path / "mailer.log",
    )
    assert line.startswith("* * * * * /opt/mailer/bin/mailer due /")
    assert f"--recipients {tmp_path}/list.csv" in line
    assert f"--env-file {tmp_path}/.env" in line
    assert line.endswith(f">> {tmp_path}/mailer.log 2>&1")


@pytest.mark.parametrize(
    ("now", "progress", "action"),
    [
        (SEND_AT - dt.timedelta(minutes=1), Progress.SCHEDULED, Action.WAIT),
        (SEND_AT, Progress.SCHEDULED, Action.SEND),
        (SEND_AT + dt.timedelta(minutes=5), Progress.SCHEDULED, Action.SEND),
        (SEND_AT + dt.timedelta(minutes=5), Progress.SENDING, Action.SEND),
        (SEND_AT + dt.timedelta(minutes=5), Progress.SENT, Action.DONE),
        (SEND_AT + dt.timedelta(minutes=5), Progress.FAILED, Action.DONE),
        (SEND_AT + dt.timedelta(hours=25), Progress.SCHEDULED, Action.TOO_LATE),
        (SEND_AT + dt.timedelta(days=7), Progress.SENDING, Action.TOO_LATE),
    ],
)
def test_due_decision_before_at_and_after_the_send_time(now, progress, action):
    assert decide(SEND_AT, progress, now).action is action


def test_an_unscheduled_edition_is_never_sent_by_due():
    assert decide(None, Progress.DRAFT, SEND_AT).action is Action.DONE


def test_max_late_is_configurable():
    late = SEND_AT + dt.timedelta(hours=3)
    assert decide(SEND_AT, Progress.SCHEDULED, late, dt.timedelta(hours=2)).action is (
        Action.TOO_LATE
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", dt.timedelta(hours=24)),
        ("90m", dt.timedelta(minutes=90)),
        ("2d", dt.timedelta(days=2)),
        ("6", dt.timedelta(hours=6)),
    ],
)
def test_max_late_durations(text, expected):
    assert parse_duration(text) == expected


def test_bad_duration_is_an_input_error():
    with pytest.raises(InputError):
        parse_duration("soon")
