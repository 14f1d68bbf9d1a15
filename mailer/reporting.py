"""Progress for ``mailer send``: a live bar on a terminal, plain log lines anywhere else.

Cron mails whatever a job prints, so the plain reporter prints short timestamped
lines with no colour or cursor tricks, and only a line every so often while things
go well; every failure and retry gets its own line either way.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import sys
import threading
from email.message import EmailMessage
from typing import TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from mailer.campaign import Reporter, SendSummary
from mailer.recipients import Recipient

SHOWN_HEADERS = (
    "From",
    "Reply-To",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)


def reporter_for(console: Console) -> Reporter:
    """The bar for people, the log lines for cron and pipes."""
    return RichReporter(console) if console.is_terminal else PlainReporter()


def summary_lines(summary: SendSummary) -> list[str]:
    verb = "built" if summary.dry_run else "sent"
    kind = "dry run" if summary.dry_run else "test send" if summary.test else "send"
    lines = [
        f"{kind} of {summary.edition}: {summary.sent} {verb}, {summary.failed} failed, "
        f"{summary.bounced} bounced, {summary.skipped_already_sent} already done "
        f"in {summary.seconds:.1f} s",
        f"list: {summary.bad_rows} bad row(s), {summary.duplicates} duplicate(s), "
        f"{summary.suppressed} suppressed",
    ]
    if summary.outbox:
        lines.append(f"messages written to {summary.outbox}")
    if summary.uncertain:
        lines.append(
            f"{summary.uncertain} message(s) uncertain (in flight when an earlier send "
            "stopped); 'mailer status' lists them, --resend-uncertain sends them again"
        )
    if summary.stopped:
        lines.append(f"paused: {summary.stopped}")
    elif summary.finished:
        lines.append("the edition has been sent to everyone on the list")
    return lines


def preview_text(message: bytes) -> str:
    """A message as a person reads it: the main headers and the plain-text part."""
    parsed: EmailMessage = email.message_from_bytes(message, policy=email.policy.default)  # type: ignore[assignment]
    lines = [f"{name}: {parsed[name]}" for name in SHOWN_HEADERS if parsed[name] is not None]
    body = parsed.get_body(preferencelist=("plain",))
    text = body.get_content() if body is not None else "(no plain-text part)"
    return "\n".join(lines) + "\n\n" + text.rstrip() + "\n"


class PlainReporter:
    """Timestamped lines, for cron and log files."""

    def __init__(self, stream: TextIO | None = None, every: int = 100) -> None:
        self.stream = stream or sys.stdout
        self.every = every
        self.total = 0
        self.done = 0
        self.failures = 0
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        stamp = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        with self.lock:
            print(f"{stamp} {text}", file=self.stream, flush=True)

    def start(self, total: int) -> None:
        self.total = total
        self.line(f"starting: {total} message(s)")

    def sent(self, recipient: Recipient) -> None:
        with self.lock:
            self.done += 1
            done = self.done
        if done % self.every == 0 or done == self.total:
            self.line(f"progress: {done}/{self.total} done, {self.failures} failed")

    def failed(self, recipient: Recipient, reply: str) -> None:
        with self.lock:
            self.done += 1
            self.failures += 1
        self.line(f"failed: {recipient.email}: {reply}")

    def retry(self, recipient: Recipient, attempt: int, reply: str, delay: float) -> None:
        self.line(
            f"retry: {recipient.email} (attempt {attempt} failed: {reply}); again in {delay:g} s"
        )

    def paused(self, message: str) -> None:
        self.line(f"paused: {message}")

    def log(self, message: str) -> None:
        self.line(message)

    def preview(self, message: bytes) -> None:
        with self.lock:
            print(f"--- first message ---\n{preview_text(message)}---", file=self.stream)

    def finish(self, summary: SendSummary) -> None:
        for text in summary_lines(summary):
            self.line(text)


class RichReporter:
    """A progress bar with sent/failed counts and the time left."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.lock = threading.Lock()  # sending threads report concurrently
        self.sent_count = 0
        self.failed_count = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[sent]} sent[/] [red]{task.fields[failed]} failed[/]"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("sending", total=0, sent=0, failed=0, start=False)

    def start(self, total: int) -> None:
        self.progress.update(self.task, total=total)
        self.progress.start_task(self.task)
        self.progress.start()

    def _advance(self, sent: int = 0, failed: int = 0) -> None:
        with self.lock:
            self.sent_count += sent
            self.failed_count += failed
            self.progress.update(
                self.task, advance=1, sent=self.sent_count, failed=self.failed_count
            )

    def sent(self, recipient: Recipient) -> None:
        self._advance(sent=1)

    def failed(self, recipient: Recipient, reply: str) -> None:
        self.progress.console.print(f"[red]failed[/] {escape(recipient.email)}: {escape(reply)}")
        self._advance(failed=1)

    def retry(self, recipient: Recipient, attempt: int, reply: str, delay: float) -> None:
        self.progress.console.print(
            f"[yellow]retry[/] {escape(recipient.email)} in {delay:g} s: {escape(reply)}"
        )

    def paused(self, message: str) -> None:
        self.progress.console.print(f"[yellow]paused[/] {escape(message)}")

    def log(self, message: str) -> None:
        self.progress.console.print(escape(message))

    def preview(self, message: bytes) -> None:
        self.progress.console.rule("first message")
        self.progress.console.print(escape(preview_text(message)), highlight=False)
        self.progress.console.rule()

    def finish(self, summary: SendSummary) -> None:
        self.progress.stop()
        style = "red" if summary.exit_code else "green"
        for text in summary_lines(summary):
            self.console.print(f"[{style}]{escape(text)}[/]")
