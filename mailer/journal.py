"""The send journal: which recipient of which edition has been mailed, durably.

Every recipient of an edition has one row, keyed by ``(edition, recipient key)``,
that moves ``pending -> sending -> sent`` (or ``failed`` / ``bounced``). Each move is
committed, and the order is what makes a killed send safe:

* ``sending`` is committed *before* the message's DATA goes to the server;
* ``sent`` is committed only *after* the server answered 250 to that DATA.

So after a crash, a ``sent`` row was certainly accepted, a ``pending`` row was
certainly not sent, and only a ``sending`` row is uncertain: at most one message per
SMTP connection (the one in flight when the process died). Those are never resent
automatically (see "Delivery guarantees" in the README): ``mailer send
--resend-uncertain`` resends them once a person has decided.

Durability: the state file is opened in WAL mode with ``synchronous=FULL`` (see
:func:`mailer.state.connect`), so the ``sending`` mark is fsynced before DATA: even a
power cut cannot lose it and have the message sent again on rerun. A connection's
``sent`` mark is held back and written in the same statement as its next message's
``sending`` mark (so it is fsynced too), which makes one commit and one fsync a
message; until then the row reads ``sending``, so at most one row per connection is
uncertain, as before. When a connection has no next message to go on with, the held
mark is committed on its own with ``synchronous=NORMAL``: written to the WAL at once
(it survives ``kill -9``) and fsynced by the next commit; if a power cut loses it
the row reads ``sending`` -- uncertain, reported, never silently resent.
``bench/send.py`` measures the journal's cost per message.

Threads: SQLite connections must not be shared between threads, so each thread
that touches the journal gets its own connection (``threading.local``); a
concurrent send with N SMTP connections has N journal connections, and WAL lets
them commit one after the other with the busy timeout absorbing contention.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import re
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mailer.errors import SendInProgress, StateError
from mailer.state import connect

STATUSES = ("pending", "sending", "sent", "failed", "bounced")
FINAL = ("sent", "failed", "bounced")  # nothing more to do for the recipient
INSERT_CHUNK = 1000

SCHEMA = """
CREATE TABLE IF NOT EXISTS editions (
    slug TEXT PRIMARY KEY,
    content_hash TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT
);
CREATE TABLE IF NOT EXISTS deliveries (
    edition TEXT NOT NULL,
    key TEXT NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'bounced')),
    attempts INTEGER NOT NULL DEFAULT 0,
    reply TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    sent_at TEXT,
    PRIMARY KEY (edition, key)
) WITHOUT ROWID;
"""


def now() -> str:
    """UTC, ISO 8601, to the second: readable in ``mailer status`` and sortable."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class EditionRecord:
    slug: str
    content_hash: str
    started_at: str
    finished_at: str | None


@dataclass(frozen=True)
class DeliveryRow:
    email: str
    status: str
    attempts: int
    reply: str | None
    updated_at: str


@dataclass(frozen=True)
class EditionStatus:
    """What ``mailer status`` shows: counts by status, and who needs attention."""

    edition: str
    started_at: str | None
    finished_at: str | None
    counts: dict[str, int]
    failures: list[DeliveryRow] = field(default_factory=list)
    uncertain: list[DeliveryRow] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "edition": self.edition,
            **self.counts,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "failures": [_row_json(row) for row in self.failures],
            "uncertain": [_row_json(row) for row in self.uncertain],
        }


def _row_json(row: DeliveryRow) -> dict[str, object]:
    return {
        "email": row.email,
        "status": row.status,
        "attempts": row.attempts,
        "reply": row.reply,
        "at": row.updated_at,
    }


class Journal:
    """The journal tables in the project's state file."""

    def __init__(self, path: Path, *, sent_sync: str = "NORMAL") -> None:
        if sent_sync not in ("FULL", "NORMAL"):
            raise ValueError(f"sent_sync must be FULL or NORMAL, not {sent_sync!r}")
        self.path = path
        self.sent_sync = sent_sync  # bench/send.py compares the two
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path)
        return db

    def close(self) -> None:
        """Close this thread's connection (each worker thread closes its own)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- editions ---------------------------------------------------------------

    def edition(self, slug: str) -> EditionRecord | None:
        row = self._db().execute("SELECT * FROM editions WHERE slug = ?", (slug,)).fetchone()
        return EditionRecord(**dict(row)) if row else None

    def begin(self, slug: str, content_hash: str, *, force: bool = False) -> EditionRecord:
        """Record the start of an edition's send, refusing if its content changed since.

        Half the list getting one text and half another is worse than either, so a
        changed edition needs ``--force``; the new hash is then the one recorded.
        """
        record = self.edition(slug)
        if record is None:
            self._db().execute(
                "INSERT INTO editions (slug, content_hash, started_at) VALUES (?, ?, ?)",
                (slug, content_hash, now()),
            )
        elif record.content_hash != content_hash:
            if not force:
                raise_changed(slug, record)
            self._db().execute(
                "UPDATE editions SET content_hash = ?, finished_at = NULL WHERE slug = ?",
                (content_hash, slug),
            )
        return self.edition(slug)  # type: ignore[return-value]

    def finish(self, slug: str) -> None:
        self._db().execute(
            "UPDATE editions SET finished_at = ? WHERE slug = ? AND finished_at IS NULL",
            (now(), slug),
        )

    def reopen(self, slug: str) -> None:
        """New recipients turned up after the edition finished: it is not finished."""
        self._db().execute("UPDATE editions SET finished_at = NULL WHERE slug = ?", (slug,))

    # -- deliveries -------------------------------------------------------------

    def add_pending(self, slug: str, recipients: Iterable[tuple[str, str]]) -> int:
        """Register ``(key, email)`` pairs not yet in the journal; returns how many were new.

        One transaction per chunk, so 100,000 recipients take a second, not 100,000 fsyncs.
        """
        db = self._db()
        stamp = now()
        added = 0
        chunk: list[tuple[str, str, str, str, str]] = []

        def flush() -> int:
            db.execute("BEGIN IMMEDIATE")
            try:
                before = db.total_changes
                db.executemany(
                    "INSERT OR IGNORE INTO deliveries"
                    " (edition, key, email, status, created_at, updated_at)"
                    " VALUES (?, ?, ?, 'pending', ?, ?)",
                    chunk,
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return db.total_changes - before

        for key, email in recipients:
            chunk.append((slug, key, email, stamp, stamp))
            if len(chunk) >= INSERT_CHUNK:
                added += flush()
                chunk.clear()
        if chunk:
            added += flush()
        return added

    def status_of(self, slug: str, key: str) -> str | None:
        row = (
            self._db()
            .execute("SELECT status FROM deliveries WHERE edition = ? AND key = ?", (slug, key))
            .fetchone()
        )
        return row[0] if row else None

    def mark_sending(
        self, slug: str, key: str, email: str, *, sent: tuple[str, str, str] | None = None
    ) -> None:
        """Committed before DATA: from here until ``mark_sent`` the message is in flight.

        ``sent`` is ``(key, email, reply)`` of the message this connection sent just
        before, whose ``sent`` mark was held back to ride in this same statement:
        one commit (one fsync) a message instead of two. Until then that row reads
        ``sending``, so a connection still has at most one uncertain row. One
        statement, not a transaction of several, because each statement is a wait
        for the GIL in a sending thread.
        """
        stamp = now()
        rows: tuple[object, ...] = (slug, key, email, "sending", 1, None, stamp, stamp, None)
        if sent is not None:
            rows += (slug, *sent[:2], "sent", 0, sent[2], stamp, stamp, stamp)
        values = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * (len(rows) // 9))
        self._db().execute(
            "INSERT INTO deliveries (edition, key, email, status, attempts, reply,"
            f" created_at, updated_at, sent_at) VALUES {values}"
            " ON CONFLICT (edition, key) DO UPDATE SET status = excluded.status,"
            " attempts = attempts + excluded.attempts,"
            " reply = coalesce(excluded.reply, reply), updated_at = excluded.updated_at,"
            " sent_at = coalesce(excluded.sent_at, sent_at)",
            rows,
        )

    def note_retry(self, slug: str, key: str, reply: str) -> None:
        """A temporary failure: still ``sending`` (about to try again, which counts the
        attempt in ``mark_sending``); keep the reply so a stuck row says why."""
        self._db().execute(
            "UPDATE deliveries SET reply = ?, updated_at = ? WHERE edition = ? AND key = ?",
            (reply, now(), slug, key),
        )

    def mark_sent(self, slug: str, key: str, reply: str) -> None:
        """Committed without waiting for the disk: see the module docstring for why."""
        db = self._db()
        db.execute(f"PRAGMA synchronous={self.sent_sync}")
        try:
            self._set_sent(db, slug, key, reply, now())
        finally:
            db.execute("PRAGMA synchronous=FULL")

    @staticmethod
    def _set_sent(db: sqlite3.Connection, slug: str, key: str, reply: str, stamp: str) -> None:
        db.execute(
            "UPDATE deliveries SET status = 'sent', reply = ?, updated_at = ?, sent_at = ?"
            " WHERE edition = ? AND key = ?",
            (reply, stamp, stamp, slug, key),
        )

    def mark_failed(self, slug: str, key: str, reply: str, *, bounced: bool = False) -> None:
        self._db().execute(
            "UPDATE deliveries SET status = ?, reply = ?, updated_at = ?"
            " WHERE edition = ? AND key = ?",
            ("bounced" if bounced else "failed", reply, now(), slug, key),
        )

    def reset(self, slug: str, statuses: Iterable[str], keys: Iterable[str] | None = None) -> int:
        """Put rows back to ``pending`` so the next pass sends them; returns how many."""
        wanted = tuple(statuses)
        marks = ", ".join("?" * len(wanted))
        sql = f"UPDATE deliveries SET status = 'pending', updated_at = ? WHERE edition = ? AND status IN ({marks})"  # noqa: E501
        db = self._db()
        if keys is None:
            return db.execute(sql, (now(), slug, *wanted)).rowcount
        return sum(
            db.execute(f"{sql} AND key = ?", (now(), slug, *wanted, key)).rowcount for key in keys
        )

    # -- reporting --------------------------------------------------------------

    def counts(self, slug: str) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, number in self._db().execute(
            "SELECT status, count(*) FROM deliveries WHERE edition = ? GROUP BY status", (slug,)
        ):
            counts[status] = number
        return counts

    def rows(self, slug: str, statuses: Iterable[str]) -> list[DeliveryRow]:
        wanted = tuple(statuses)
        marks = ", ".join("?" * len(wanted))
        cursor = self._db().execute(
            "SELECT email, status, attempts, reply, updated_at FROM deliveries"
            f" WHERE edition = ? AND status IN ({marks}) ORDER BY updated_at, email",
            (slug, *wanted),
        )
        return [DeliveryRow(**dict(row)) for row in cursor]

    def report(self, slug: str) -> EditionStatus:
        record = self.edition(slug)
        return EditionStatus(
            edition=slug,
            started_at=record.started_at if record else None,
            finished_at=record.finished_at if record else None,
            counts=self.counts(slug),
            failures=self.rows(slug, ("failed", "bounced")),
            uncertain=self.rows(slug, ("sending",)),
        )


def raise_changed(slug: str, record: EditionRecord) -> None:
    raise StateError(
        f"edition {slug} has changed since its send started at {record.started_at}",
        hint="undo the change, or rerun with --force to send the new version to the rest",
    )


class EditionLock:
    """One ``mailer send`` per edition at a time: an ``flock`` on a file beside the state file.

    The kernel drops an flock when its process dies, however it dies, so a ``kill -9``
    never leaves a stale lock behind and there is nothing to clean up by hand.
    """

    def __init__(self, state_path: Path, slug: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", slug)
        self.path = state_path.with_name(f"{state_path.name}.{safe}.lock")
        self.slug = slug
        self._file: IO[str] | None = None

    def acquire(self) -> EditionLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise SendInProgress(
                f"another 'mailer send' of {self.slug} is running"
                + (f" (process {holder})" if holder else ""),
                path=self.path,
                hint="wait for it to finish, or stop it; rerunning afterwards carries on",
            ) from None
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None

    def probe(self) -> None:
        """Fail early (before a confirmation prompt) if a send is already running."""
        self.acquire().release()

    def __enter__(self) -> EditionLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
