"""The SQLite state file shared by the journal and the suppression list.

One file per newsletter project, opened in WAL mode so a reader (``mailer status``)
never blocks a sender, and with a busy timeout so two processes wait for each other
instead of failing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mailer.errors import InputError


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating if need be) the state database at ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
    except (OSError, sqlite3.Error) as exc:
        raise InputError(
            f"cannot open the state file: {exc}", path=path, hint="check MAILER_STATE or --state"
        ) from None
    connection.row_factory = sqlite3.Row
    return connection
