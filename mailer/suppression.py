"""The suppression list: addresses that must never be mailed again, on any edition.

It lives in the project's SQLite state file beside the send journal, keyed by the
case-folded address. It always wins over the subscriber CSV: an export that still
holds an unsubscribed or bounced address does not resubscribe it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailer.errors import InputError
from mailer.recipients import RowProblem, address_key, normalise_address, read_rows
from mailer.state import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppressions (
    key TEXT PRIMARY KEY,
    email TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
) WITHOUT ROWID
"""


@dataclass(frozen=True)
class SuppressionEntry:
    email: str
    reason: str
    source: str
    created_at: str  # ISO 8601, UTC


@dataclass(frozen=True)
class AddressFile:
    """The valid addresses of an import file, and the lines that were not."""

    emails: list[str]
    problems: list[RowProblem]


class SuppressionList:
    """The ``suppressions`` table of one state file."""

    def __init__(self, state_path: Path) -> None:
        self.path = Path(state_path)
        self._db = connect(self.path)
        self._db.execute(_SCHEMA)

    def add(self, emails: Iterable[str], reason: str = "manual", source: str = "") -> int:
        """Suppress ``emails``; returns how many were not suppressed already.

        Every address is validated first, and one bad address adds nothing: a typo
        in a batch should be fixed, not half-applied. An address already on the list
        keeps its first reason (the earliest record of why it was suppressed).
        """
        addresses = [_valid(email) for email in emails]
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO suppressions (key, email, reason, source, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(address_key(email), email, reason, source, now) for email in addresses],
            )
            return self._db.total_changes - before

    def remove(self, emails: Iterable[str]) -> int:
        """Take addresses off the list (re-subscription by hand); returns how many were on it.

        Addresses are not validated, so an entry that somehow holds a malformed
        address can still be removed.
        """
        keys = [(_key(email),) for email in emails]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            before = self._db.total_changes
            self._db.executemany("DELETE FROM suppressions WHERE key = ?", keys)
            return self._db.total_changes - before

    def import_file(self, path: Path, reason: str = "import") -> int:
        """Suppress every valid address in ``path`` (see :func:`read_addresses`);
        returns how many were new. Bad lines are skipped: read them with
        :func:`read_addresses` to report them."""
        return self.add(read_addresses(path).emails, reason=reason, source=Path(path).name)

    def entries(self) -> list[SuppressionEntry]:
        rows = self._db.execute(
            "SELECT email, reason, source, created_at FROM suppressions ORDER BY created_at, key"
        )
        return [SuppressionEntry(**dict(row)) for row in rows]

    def __contains__(self, email: str) -> bool:
        """One primary-key lookup, so checking each recipient of a big list is cheap
        and sees addresses suppressed by another process mid-send."""
        row = self._db.execute("SELECT 1 FROM suppressions WHERE key = ?", (address_key(email),))
        return row.fetchone() is not None

    def __len__(self) -> int:
        return self._db.execute("SELECT count(*) FROM suppressions").fetchone()[0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SuppressionList:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_addresses(path: Path) -> AddressFile:
    """Addresses from a CSV with an ``email`` column, or a plain file of one per line.

    The first non-blank line decides: if it names an ``email`` column it is a
    header (so a subscriber export or an unsubscribe report imports as it is),
    otherwise every line is an address.
    """
    emails: list[str] = []
    problems: list[RowProblem] = []
    for row in read_rows(Path(path), headerless=True):
        if isinstance(row, RowProblem):
            problems.append(row)
        else:
            emails.append(row.email)
    return AddressFile(emails, problems)


def _valid(email: str) -> str:
    try:
        return normalise_address(email)
    except ValueError as exc:
        raise InputError(f"{email.strip()!r}: {exc}", hint="nothing was changed") from None


def _key(email: str) -> str:
    """The key an address is stored under, for any input, valid or not."""
    try:
        return address_key(normalise_address(email))
    except ValueError:
        return address_key(email)
