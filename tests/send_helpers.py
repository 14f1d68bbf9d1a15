"""Small helpers shared by the send tests: subscriber lists, settings for a sink, a
reporter that records what it was told."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from mailer.config import Settings
from mailer.delivery import RetryPolicy

NO_WAIT = RetryPolicy(attempts=3, base_delay=0, max_delay=0)
PERSONAL_SECTION = "# Hello\n\nDear {{ first_name }}, this is for you.\n"


def addresses(count: int, domain: str = "example.org", start: int = 0) -> list[str]:
    return [f"reader{n:04d}@{domain}" for n in range(start, start + count)]


def write_list(path: Path, emails: Iterable[str]) -> Path:
    """A subscriber CSV whose first names are 'Reader0001' and so on."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "first_name"])
        for email in emails:
            first = email.split("@")[0].capitalize()
            writer.writerow([email, f"{first} Example", first])
    return path


def sink_settings(sink, state: Path, **overrides) -> Settings:
    values = {
        "smtp_host": sink.host,
        "smtp_port": sink.port,
        "smtp_security": "none",
        "from_addr": "Partnership News <news@example.org>",
        "unsubscribe_url": "https://example.org/unsubscribe",
        "secret": "test-secret",
        "organisation": "Example Partnership",
        "postal_address": "1 Example Street",
        "state_path": state,
    }
    return Settings(**{**values, **overrides})


class Recorder:
    """A Reporter that keeps every event, for assertions."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.previews: list[bytes] = []

    def start(self, total):
        self.events.append(("start", total))

    def sent(self, recipient):
        self.events.append(("sent", recipient.email))

    def failed(self, recipient, reply):
        self.events.append(("failed", recipient.email, reply))

    def retry(self, recipient, attempt, reply, delay):
        self.events.append(("retry", recipient.email, attempt, reply))

    def paused(self, message):
        self.events.append(("paused", message))

    def log(self, message):
        self.events.append(("log", message))

    def preview(self, message):
        self.previews.append(message)

    def finish(self, summary):
        self.events.append(("finish", summary))

    def kinds(self, kind: str) -> list[tuple]:
        return [event for event in self.events if event[0] == kind]
