"""Sending an edition to a list against a real SMTP server: what arrives, what the
journal records, and how reruns, faults, limits and test sends behave."""

from __future__ import annotations

import dataclasses
import sqlite3
import time

import pytest

from mailer.campaign import ChecksFailed, SendOptions, edition_status, prepare_send, run_send
from mailer.errors import StateError
from mailer.journal import EditionLock, Journal
from mailer.suppression import SuppressionList
from tests.send_helpers import (
    NO_WAIT,
    PERSONAL_SECTION,
    Recorder,
    addresses,
    sink_settings,
    write_list,
)
from tests.smtp_sink import Faults


@pytest.fixture
def edition(make_edition):
    return make_edition({"01-hello.md": PERSONAL_SECTION}, subject="News for {{ first_name }}")


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state" / "state.sqlite3"


def send(edition, lists, settings, reporter=None, **options):
    options.setdefault("retry", NO_WAIT)
    plan = prepare_send(edition, lists, settings, SendOptions(**options))
    return run_send(plan, reporter or Recorder())


def test_each_recipient_gets_one_personalised_message_with_both_parts(
    smtp_sink, edition, state, tmp_path
):
    sink = smtp_sink()
    people = addresses(5)
    summary = send(edition, [write_list(tmp_path / "list.csv", people)], sink_settings(sink, state))
    assert (summary.sent, summary.failed, summary.finished) == (5, 0, True)
    assert sink.count_by_recipient() == dict.fromkeys(people, 1)
    first = sink.received[0].message
    assert first["Subject"] == "News for Reader0000"
    assert first["To"] == "Reader0000 Example <reader0000@example.org>"
    assert sink.received[0].mail_from == "news@example.org"
    assert first["List-Unsubscribe"].startswith("<https://example.org/unsubscribe?")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = first.get_body(("plain",)).get_content()
    html = first.get_body(("html",)).get_content()
    assert "Dear Reader0000, this is for you." in text
    assert "Dear Reader0000, this is for you." in html
    assert sink.handler.connections == 1


def test_sending_is_committed_before_data_and_sent_only_after_the_server_accepted(
    smtp_sink, edition, state, tmp_path
):
    sink = smtp_sink()
    seen: list[str] = []

    def look(recipient: str) -> None:
        with sqlite3.connect(state) as db:
            seen.append(
                db.execute("SELECT status FROM deliveries WHERE key = ?", (recipient,)).fetchone()[
                    0
                ]
            )

    sink.handler.on_data = look
    send(edition, [write_list(tmp_path / "list.csv", addresses(3))], sink_settings(sink, state))
    assert seen == ["sending"] * 3
    report = edition_status(edition, sink_settings(sink, state))
    assert report.counts["sent"] == 3 and report.finished_at


def test_at_each_data_the_message_in_flight_is_the_only_uncertain_row(
    smtp_sink, edition, state, tmp_path
):
    # The previous message's sent mark rides in the next one's sending commit, so
    # when the server sees DATA everything before it is already recorded as sent.
    sink = smtp_sink()
    seen: list[tuple[int, int]] = []

    def look(recipient: str) -> None:
        with sqlite3.connect(state) as db:
            counts = dict(db.execute("SELECT status, count(*) FROM deliveries GROUP BY status"))
            seen.append((counts.get("sending", 0), counts.get("sent", 0)))

    sink.handler.on_data = look
    send(edition, [write_list(tmp_path / "list.csv", addresses(5))], sink_settings(sink, state))
    assert seen == [(1, n) for n in range(5)]
    assert edition_status(edition, sink_settings(sink, state)).counts["sent"] == 5


def test_a_rerun_of_a_finished_edition_sends_nothing(smtp_sink, edition, state, tmp_path):
    sink = smtp_sink()
    lists = [write_list(tmp_path / "list.csv", addresses(3))]
    settings = sink_settings(sink, state)
    send(edition, lists, settings)
    plan = prepare_send(edition, lists, settings, SendOptions())
    assert plan.nothing_to_send and plan.already_done == 3 and plan.finished_at
    summary = run_send(plan, Recorder())
    assert summary.sent == 0 and summary.skipped_already_sent == 3
    assert len(sink.received) == 3


def test_recipients_added_after_the_send_started_are_sent_on_rerun(
    smtp_sink, edition, state, tmp_path
):
    sink = smtp_sink()
    settings = sink_settings(sink, state)
    send(edition, [write_list(tmp_path / "list.csv", addresses(3))], settings)
    grown = write_list(tmp_path / "list.csv", addresses(5))
    plan = prepare_send(edition, [grown], settings, SendOptions())
    assert plan.to_send == 2
    summary = run_send(plan, Recorder())
    assert summary.sent == 2 and summary.finished
    assert sink.count_by_recipient() == dict.fromkeys(addresses(5), 1)


def test_a_limited_send_stops_and_the_rerun_carries_on(smtp_sink, edition, state, tmp_path):
    sink = smtp_sink()
    settings = sink_settings(sink, state)
    lists = [write_list(tmp_path / "list.csv", addresses(5))]
    first = send(edition, lists, settings, limit=2)
    assert (first.sent, first.finished) == (2, False)
    assert edition_status(edition, settings).counts["pending"] == 3
    second = send(edition, lists, settings)
    assert (second.sent, second.skipped_already_sent, second.finished) == (3, 2, True)
    assert sink.count_by_recipient() == dict.fromkeys(addresses(5), 1)


def test_a_changed_edition_is_refused_mid_send_unless_forced(smtp_sink, edition, state, tmp_path):
    sink = smtp_sink()
    settings = sink_settings(sink, state)
    lists = [write_list(tmp_path / "list.csv", addresses(4))]
    send(edition, lists, settings, limit=2)
    (edition / "01-hello.md").write_text("# Hello\n\nA different text.\n", encoding="utf-8")
    with pytest.raises(StateError, match="has changed since its send started"):
        prepare_send(edition, lists, settings, SendOptions())
    summary = send(edition, lists, settings, force=True)
    assert summary.sent == 2


def test_a_refused_address_is_marked_bounced_and_suppressed(smtp_sink, edition, state, tmp_path):
    sink = smtp_sink(Faults(reject_domains={"gone.example.net"}))
    settings = sink_settings(sink, state)
    people = [*addresses(2), "old@gone.example.net"]
    summary = send(edition, [write_list(tmp_path / "list.csv", people)], settings)
    assert (summary.sent, summary.bounced, summary.failed) == (2, 1, 0)
    assert summary.exit_code == 1
    report = edition_status(edition, settings)
    assert [(r.email, r.status, r.reply) for r in report.failures] == [
        ("old@gone.example.net", "bounced", "RCPT TO refused: 550 5.1.1 User unknown")
    ]
    with SuppressionList(state) as suppression:
        assert "OLD@gone.example.net" in suppression
        assert [(e.reason, e.source) for e in suppression.entries()] == [("bounced", edition.name)]


def test_a_greylisted_recipient_is_retried_and_the_attempts_recorded(
    smtp_sink, edition, state, tmp_path
):
    sink = smtp_sink(Faults(tempfail_once={"reader0001@example.org"}))
    settings = sink_settings(sink, state)
    recorder = Recorder()
    summary = send(edition, [write_list(tmp_path / "l.csv", addresses(3))], settings, recorder)
    assert summary.sent == 3
    assert [e[1] for e in recorder.kinds("retry")] == ["reader0001@example.org"]
    journal = Journal(state)
    assert {r.email: r.attempts for r in journal.rows("2025-01-test", ["sent"])}[
        "reader0001@example.org"
    ] == 2
    journal.close()


def test_a_rejected_message_is_recorded_with_the_reply_and_sending_goes_on(
    smtp_sink, edition, state, tmp_path
):
    sink = smtp_sink(Faults(reject_data={"reader0001@example.org"}))
    settings = sink_settings(sink, state)
    summary = send(edition, [write_list(tmp_path / "l.csv", addresses(3))], settings)
    assert (summary.sent, summary.failed, summary.finished) == (2, 1, True)
    failure = edition_status(edition, settings).failures[0]
    assert failure.reply == "DATA refused: 554 5.7.1 Message rejected as spam"


def test_a_run_of_failures_pauses_the_send_and_the_rerun_resumes(
    smtp_sink, edition, state, tmp_path
):
    faults = Faults(reject_all_data=True)
    sink = smtp_sink(faults)
    settings = sink_settings(sink, state)
    lists = [write_list(tmp_path / "l.csv", addresses(10))]
    summary = send(edition, lists, settings, max_consecutive_failures=3)
    assert summary.stopped and summary.stopped.startswith("3 consecutive failures, last reply")
    assert "554 5.7.1" in summary.stopped and summary.exit_code == 1
    counts = edition_status(edition, settings).counts
    assert counts["pending"] == 10 and counts["failed"] == 0  # put back for the rerun
    faults.reject_all_data = False
    again = send(edition, lists, settings, max_consecutive_failures=3)
    assert again.sent == 10 and again.finished
    assert sink.count_by_recipient() == dict.fromkeys(addresses(10), 1)


def test_several_connections_deliver_each_message_once(smtp_sink, edition, state, tmp_path):
    sink = smtp_sink(Faults(close_after=4, tempfail_once={"reader0007@example.org"}))
    settings = sink_settings(sink, state)
    people = addresses(30)
    summary = send(edition, [write_list(tmp_path / "l.csv", people)], settings, concurrency=3)
    assert summary.sent == 30
    assert sink.count_by_recipient() == dict.fromkeys(people, 1)


def test_batches_pause_between_them(smtp_sink, edition, state, tmp_path):
    sink = smtp_sink()
    recorder = Recorder()
    settings = sink_settings(sink, state)
    lists = [write_list(tmp_path / "l.csv", addresses(5))]
    send(edition, lists, settings, recorder, batch_size=2, batch_pause=0.01)
    assert [e[1] for e in recorder.kinds("paused")] == [
        "2 sent so far; pausing 0.01 s between batches",
        "4 sent so far; pausing 0.01 s between batches",
    ]


def test_the_rate_cap_spaces_messages(smtp_sink, edition, state, tmp_path):
    sink = smtp_sink()
    lists = [write_list(tmp_path / "l.csv", addresses(4))]
    started = time.monotonic()
    send(edition, lists, sink_settings(sink, state), rate=600)  # one every 0.1 s
    assert time.monotonic() - started >= 0.3


def test_uncertain_messages_are_not_resent_unless_asked(smtp_sink, edition, state, tmp_path):
    sink = smtp_sink()
    settings = sink_settings(sink, state)
    lists = [write_list(tmp_path / "l.csv", addresses(3))]
    send(edition, lists, settings, limit=1)
    journal = Journal(state)
    journal.mark_sending("2025-01-test", "reader0001@example.org", "reader0001@example.org")
    journal.close()  # as if the process died with this message in flight
    summary = send(edition, lists, settings)
    assert (summary.sent, summary.uncertain, summary.finished) == (1, 1, False)
    assert summary.exit_code == 1
    assert "reader0001@example.org" not in sink.count_by_recipient()
    report = edition_status(edition, settings)
    assert [row.email for row in report.uncertain] == ["reader0001@example.org"]
    resent = send(edition, lists, settings, resend_uncertain=True)
    assert (resent.sent, resent.finished) == (1, True)
    assert sink.count_by_recipient() == dict.fromkeys(addresses(3), 1)


def test_a_second_send_of_the_same_edition_is_refused_while_one_runs(
    smtp_sink, edition, state, tmp_path
):
    sink = smtp_sink()
    settings = sink_settings(sink, state)
    lists = [write_list(tmp_path / "l.csv", addresses(2))]
    send(edition, lists, settings, limit=1)
    running = "another 'mailer send' of 2025-01-test is running"
    with EditionLock(state, "2025-01-test"), pytest.raises(StateError, match=running):
        send(edition, lists, settings)


def test_check_errors_refuse_the_send_unless_forced(smtp_sink, make_edition, state, tmp_path):
    edition = make_edition({"01-a.md": "# Hi\n\n[Book a place](https://example.org/TODO)\n"})
    sink = smtp_sink()
    settings = sink_settings(sink, state)
    lists = [write_list(tmp_path / "l.csv", addresses(2))]
    with pytest.raises(ChecksFailed, match="check error"):
        send(edition, lists, settings)
    assert sink.received == []
    assert send(edition, lists, settings, force=True).sent == 2


def test_a_test_send_goes_only_to_the_test_address_marked_test_and_unjournaled(
    smtp_sink, edition, state, tmp_path
):
    sink = smtp_sink()
    settings = sink_settings(sink, state)
    lists = [write_list(tmp_path / "l.csv", addresses(3))]
    summary = send(
        edition,
        lists,
        settings,
        test_to=("me@example.com", "boss@example.com"),
        test_as="READER0002@example.org",
    )
    assert (summary.sent, summary.test) == (2, True)
    assert sink.count_by_recipient() == {"me@example.com": 1, "boss@example.com": 1}
    message = sink.received[0].message
    assert message["Subject"] == "[TEST] News for Reader0002"
    assert "Dear Reader0002" in message.get_body(("plain",)).get_content()
    assert edition_status(edition, settings).counts["sent"] == 0
    assert send(edition, lists, settings).sent == 3  # the real send still goes to everyone


def test_a_test_sends_unsubscribe_links_belong_to_the_test_address_not_the_subscriber(
    smtp_sink, edition, state, tmp_path
):
    """Clicking 'unsubscribe' in a proof must not unsubscribe the subscriber it imitates."""
    sink = smtp_sink()
    settings = sink_settings(sink, state)
    lists = [write_list(tmp_path / "l.csv", addresses(3))]
    send(edition, lists, settings, test_to=("me@example.com",), test_as="reader0002@example.org")
    message = sink.received[0].message
    footer = message.get_body(("plain",)).get_content()
    assert "email=me%40example.com" in footer and "reader0002" not in footer.split("Dear")[-1]
    assert "email=me%40example.com" in message["List-Unsubscribe"]


def test_a_dry_run_builds_every_message_and_sends_and_records_nothing(
    smtp_sink, edition, state, tmp_path
):
    sink = smtp_sink()
    settings = sink_settings(sink, state)
    people = [*addresses(2), "o'brien+news@example.net"]
    recorder = Recorder()
    outbox = tmp_path / "outbox"
    summary = send(
        edition,
        [write_list(tmp_path / "l.csv", people)],
        settings,
        recorder,
        dry_run=True,
        outbox=outbox,
    )
    assert (summary.sent, summary.dry_run) == (3, True)
    assert sink.received == [] and not state.exists()
    assert sorted(p.name for p in outbox.iterdir()) == [
        "0001-reader0000@example.org.eml",
        "0002-reader0001@example.org.eml",
        "0003-o_brien+news@example.net.eml",
    ]
    assert b"Subject: News for Reader0000" in recorder.previews[0]
    assert len(recorder.previews) == 1


def test_options_that_make_no_sense_are_refused(edition, state, tmp_path, smtp_sink):
    settings = sink_settings(smtp_sink(), state)
    lists = [write_list(tmp_path / "l.csv", addresses(1))]
    for bad in ({"concurrency": 0}, {"batch_size": 0}, {"limit": 0}, {"outbox": tmp_path}):
        with pytest.raises(Exception, match="--"):
            prepare_send(edition, lists, settings, dataclasses.replace(SendOptions(), **bad))
