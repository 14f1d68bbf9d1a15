"""The journal: per-recipient status moves, edition records, the per-edition lock."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from mailer.errors import StateError
from mailer.journal import EditionLock, Journal

SLUG = "2025-07-summer"


@pytest.fixture
def journal(tmp_path):
    journal = Journal(tmp_path / ".mailer" / "state.sqlite3")
    yield journal
    journal.close()


def test_a_recipient_moves_from_pending_through_sending_to_sent(journal):
    journal.begin(SLUG, "hash-1")
    assert journal.add_pending(SLUG, [("jane@example.org", "Jane@example.org")]) == 1
    assert journal.status_of(SLUG, "jane@example.org") == "pending"
    journal.mark_sending(SLUG, "jane@example.org", "Jane@example.org")
    assert journal.status_of(SLUG, "jane@example.org") == "sending"
    journal.mark_sent(SLUG, "jane@example.org", "250 Ok: queued as 1")
    report = journal.report(SLUG)
    assert report.counts == {"pending": 0, "sending": 0, "sent": 1, "failed": 0, "bounced": 0}
    assert report.started_at and report.finished_at is None


def test_each_mark_is_committed_at_once_and_visible_to_another_connection(journal):
    journal.begin(SLUG, "hash-1")
    journal.mark_sending(SLUG, "jane@example.org", "jane@example.org")
    other = Journal(journal.path)
    assert other.status_of(SLUG, "jane@example.org") == "sending"
    other.close()


def test_adding_recipients_again_keeps_their_status(journal):
    journal.begin(SLUG, "hash-1")
    journal.add_pending(SLUG, [("a@example.org", "a@example.org")])
    journal.mark_sending(SLUG, "a@example.org", "a@example.org")
    journal.mark_sent(SLUG, "a@example.org", "250 ok")
    added = journal.add_pending(
        SLUG, [("a@example.org", "a@example.org"), ("b@example.org", "b@example.org")]
    )
    assert added == 1
    assert journal.counts(SLUG)["sent"] == 1
    assert journal.counts(SLUG)["pending"] == 1


def test_failures_and_bounces_keep_the_servers_reply(journal):
    journal.begin(SLUG, "hash-1")
    for key in ("a@example.org", "b@example.net"):
        journal.mark_sending(SLUG, key, key)
    journal.mark_failed(SLUG, "a@example.org", "554 5.7.1 rejected")
    journal.mark_failed(SLUG, "b@example.net", "550 5.1.1 unknown", bounced=True)
    report = journal.report(SLUG)
    assert {(r.email, r.status, r.reply) for r in report.failures} == {
        ("a@example.org", "failed", "554 5.7.1 rejected"),
        ("b@example.net", "bounced", "550 5.1.1 unknown"),
    }
    json = report.to_json()
    assert json["failed"] == 1 and json["bounced"] == 1 and json["edition"] == SLUG


def test_retries_count_as_attempts(journal):
    journal.begin(SLUG, "hash-1")
    journal.mark_sending(SLUG, "a@example.org", "a@example.org")
    journal.note_retry(SLUG, "a@example.org", "451 greylisted")
    assert journal.rows(SLUG, ["sending"])[0].reply == "451 greylisted"
    journal.mark_sending(SLUG, "a@example.org", "a@example.org")
    journal.mark_sent(SLUG, "a@example.org", "250 ok")
    assert journal.rows(SLUG, ["sent"])[0].attempts == 2


def test_a_changed_edition_is_refused_unless_forced(journal):
    journal.begin(SLUG, "hash-1")
    with pytest.raises(StateError, match="has changed since its send started"):
        journal.begin(SLUG, "hash-2")
    assert journal.begin(SLUG, "hash-2", force=True).content_hash == "hash-2"


def test_reset_puts_uncertain_rows_back_to_pending(journal):
    journal.begin(SLUG, "hash-1")
    journal.mark_sending(SLUG, "a@example.org", "a@example.org")
    journal.mark_sending(SLUG, "b@example.org", "b@example.org")
    journal.mark_sent(SLUG, "b@example.org", "250 ok")
    assert journal.reset(SLUG, ["sending"]) == 1
    assert journal.status_of(SLUG, "a@example.org") == "pending"
    assert journal.status_of(SLUG, "b@example.org") == "sent"


def test_each_thread_gets_its_own_connection(journal):
    journal.begin(SLUG, "hash-1")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                key = f"t{n}-{i}@example.org"
                journal.mark_sending(SLUG, key, key)
                journal.mark_sent(SLUG, key, "250 ok")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            journal.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert journal.counts(SLUG)["sent"] == 80


def test_a_second_lock_on_the_same_edition_is_refused(tmp_path):
    state = tmp_path / "state.sqlite3"
    with EditionLock(state, SLUG):
        with pytest.raises(StateError, match="another 'mailer send' of 2025-07-summer is running"):
            EditionLock(state, SLUG).acquire()
        EditionLock(state, "another-edition").probe()  # other editions are not blocked
    EditionLock(state, SLUG).probe()  # released


def test_the_lock_dies_with_a_killed_process(tmp_path):
    state = tmp_path / "state.sqlite3"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from mailer.journal import EditionLock;"
            f"lock = EditionLock(Path({str(state)!r}), {SLUG!r}).acquire();"
            "print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StateError, match=f"process {holder.pid}"):
            EditionLock(state, SLUG).probe()
    finally:
        holder.kill()
        holder.wait(timeout=10)
    EditionLock(state, SLUG).probe()


def test_the_previous_sent_mark_can_ride_in_the_next_sending_commit(journal):
    journal.begin(SLUG, "hash")
    journal.mark_sending(SLUG, "a@example.org", "a@example.org")
    journal.note_retry(SLUG, "a@example.org", "451 try later")
    journal.mark_sending(SLUG, "a@example.org", "a@example.org")
    journal.mark_sending(
        SLUG, "b@example.org", "b@example.org", sent=("a@example.org", "a@example.org", "250 ok")
    )
    counts = journal.counts(SLUG)
    assert counts["sent"] == 1 and counts["sending"] == 1
    assert [row.email for row in journal.rows(SLUG, ("sending",))] == ["b@example.org"]
    db = journal._db()
    first = db.execute("SELECT * FROM deliveries WHERE key = 'a@example.org'").fetchone()
    second = db.execute("SELECT * FROM deliveries WHERE key = 'b@example.org'").fetchone()
    assert (first["status"], first["attempts"], first["reply"]) == ("sent", 2, "250 ok")
    assert first["sent_at"] is not None
    assert (second["status"], second["attempts"], second["reply"]) == ("sending", 1, None)
    assert second["sent_at"] is None
