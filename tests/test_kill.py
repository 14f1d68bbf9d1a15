"""kill -9 in the middle of a send, then rerun: everyone gets the edition exactly once,
apart from the message(s) in flight at the kill, which are reported as uncertain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from mailer.campaign import edition_status
from mailer.config import Settings
from tests.send_helpers import PERSONAL_SECTION, addresses, write_list
from tests.smtp_sink import Faults

RECIPIENTS = 300


def mailer(edition, recipients, env, *extra) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailer",
            "send",
            str(edition),
            "--recipients",
            str(recipients),
            "--yes",
            "--retry-delay",
            "0",
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after(process: subprocess.Popen, sink, received: int) -> None:
    deadline = time.monotonic() + 15
    while len(sink.received) < received:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "the send did not get going"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)


def in_flight(edition, state) -> set[str]:
    report = edition_status(edition, Settings(state_path=state))
    return {row.email for row in report.uncertain}


def test_killed_sends_rerun_to_exactly_once_delivery(smtp_sink, make_edition, tmp_path):
    sink = smtp_sink(Faults(delay=0.003))
    edition = make_edition({"01-hello.md": PERSONAL_SECTION})
    people = addresses(RECIPIENTS)
    recipients = write_list(tmp_path / "list.csv", people)
    state = tmp_path / "state.sqlite3"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAILER_")},
        **sink.env(),
        "MAILER_FROM": "news@example.org",
        "MAILER_UNSUBSCRIBE_URL": "https://example.org/unsubscribe",
        "MAILER_SECRET": "test-secret",
        "MAILER_STATE": str(state),
    }
    uncertain: set[str] = set()
    # one connection killed early, then two connections killed later on
    for kill_at, connections in ((40, 1), (170, 2)):
        send = mailer(edition, recipients, env, "--concurrency", str(connections))
        kill_after(send, sink, kill_at)
        left = in_flight(edition, state)
        assert len(left - uncertain) <= connections
        uncertain |= left

    final = mailer(edition, recipients, env, "--concurrency", "2")
    stdout, stderr = final.communicate(timeout=60)
    report = edition_status(edition, Settings(state_path=state))
    assert report.counts["sent"] + report.counts["sending"] == RECIPIENTS
    assert {row.email for row in report.uncertain} == uncertain
    assert final.returncode == (1 if uncertain else 0), stderr
    if uncertain:
        assert f"{len(uncertain)} message(s) uncertain" in stdout

    counts = sink.count_by_recipient()
    for person in people:
        expected = {0, 1} if person in uncertain else {1}
        assert counts.get(person, 0) in expected, person

    # The user decides to resend the uncertain ones: nobody is left out, and at most
    # those already delivered before the kill get a second copy.
    resend = mailer(edition, recipients, env, "--resend-uncertain")
    resend.communicate(timeout=60)
    assert resend.returncode == 0
    counts = sink.count_by_recipient()
    assert all(counts[person] >= 1 for person in people)
    assert sum(counts.values()) - RECIPIENTS <= len(uncertain)
    assert edition_status(edition, Settings(state_path=state)).finished_at


def test_ctrl_c_stops_cleanly_with_exit_130_and_the_rerun_finishes_the_list(
    smtp_sink, make_edition, tmp_path
):
    sink = smtp_sink(Faults(delay=0.003))
    edition = make_edition({"01-hello.md": PERSONAL_SECTION})
    people = addresses(150)
    recipients = write_list(tmp_path / "list.csv", people)
    state = tmp_path / "state.sqlite3"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAILER_")},
        **sink.env(),
        "MAILER_FROM": "news@example.org",
        "MAILER_UNSUBSCRIBE_MAILTO": "unsubscribe@example.org",
        "MAILER_STATE": str(state),
    }
    send = mailer(edition, recipients, env)
    deadline = time.monotonic() + 15
    while len(sink.received) < 30:
        assert send.poll() is None and time.monotonic() < deadline, send.stderr.read()
        time.sleep(0.005)
    send.send_signal(signal.SIGINT)
    _, stderr = send.communicate(timeout=20)
    assert send.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    left = in_flight(edition, state)
    assert len(left) <= 1

    rerun = mailer(edition, recipients, env, "--resend-uncertain")
    rerun.communicate(timeout=60)
    assert rerun.returncode == 0
    counts = sink.count_by_recipient()
    assert all(counts[person] >= 1 for person in people)
    assert sum(counts.values()) - len(people) <= len(left)
