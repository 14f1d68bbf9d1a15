"""Scheduling: when an edition goes out, and what cron should do about it now.

Times are stored in edition.toml as RFC 3339 with an offset, so the file says
exactly when, whatever the server's time zone or DST. Every decision takes ``now``
as an argument: the clock is injected, never read deep inside.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import tomlkit
from tomlkit.exceptions import TOMLKitError

from mailer.campaign import (
    ChecksFailed,
    Reporter,
    SendOptions,
    SendSummary,
    journal_report,
    prepare_send,
    run_send,
)
from mailer.config import Settings
from mailer.edition import EDITION_FILE, Edition, load_edition
from mailer.errors import ExitCode, InputError, MailerError, SendInProgress
from mailer.journal import EditionStatus

DEFAULT_MAX_LATE = dt.timedelta(hours=24)
AT_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


def timezone(name: str | None) -> dt.tzinfo:
    """The zone 'local' times are read in: MAILER_TIMEZONE, else the machine's."""
    if not name:
        return dt.datetime.now().astimezone().tzinfo or dt.UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"unknown time zone {name!r}", hint="use an IANA name such as Europe/London"
        ) from None


def parse_at(text: str, zone: dt.tzinfo) -> dt.datetime:
    """Read a user's '2025-07-15 09:00' (local to ``zone``) or a full RFC 3339 time."""
    text = text.strip()
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None:
        for fmt in AT_FORMATS:
            try:
                value = dt.datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
    if value is None:
        raise InputError(f"cannot read the time {text!r}", hint='write it as "2025-07-15 09:00"')
    if value.tzinfo is None:
        value = _localise(value, zone)
    return value


def _localise(naive: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """Attach ``zone``, refusing wall-clock times that a DST change skips."""
    aware = naive.replace(tzinfo=zone)
    round_trip = aware.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None)
    if round_trip != naive:
        raise InputError(
            f"{naive:%Y-%m-%d %H:%M} does not exist in {zone} (the clocks go forward then)",
            hint="pick another time",
        )
    return aware


def format_at(value: dt.datetime) -> str:
    """RFC 3339 with the offset, seconds kept: what edition.toml stores."""
    return value.isoformat(timespec="seconds")


def write_send_at(edition_dir: Path, value: dt.datetime | None) -> Path:
    """Set (or with None, remove) send_at in edition.toml, keeping comments and layout.

    Written to a temporary file and renamed, so a crash never leaves half a file.
    """
    path = Path(edition_dir) / EDITION_FILE
    if not path.is_file():
        raise InputError("edition.toml is missing", path=path)
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8"))
    except (TOMLKitError, UnicodeDecodeError) as exc:
        raise InputError(f"invalid TOML: {exc}", path=path) from None
    if value is None:
        document.pop("send_at", None)
    else:
        document["send_at"] = format_at(value)
    _atomic_write(path, tomlkit.dumps(document))
    return path


def _atomic_write(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def crontab_line(
    issues_root: Path,
    recipients: list[Path],
    env_file: Path | None,
    mailer_command: str,
    log_file: Path,
) -> str:
    """The line to install with ``crontab -e``: absolute paths only, since cron runs
    from the home folder with a minimal environment."""
    args = [mailer_command, "due", str(issues_root.resolve())]
    for path in recipients:
        args += ["--recipients", str(path.resolve())]
    if env_file is not None:
        args += ["--env-file", str(env_file.resolve())]
    command = " ".join(shlex.quote(arg) for arg in args)
    return f"* * * * * {command} >> {shlex.quote(str(log_file.resolve()))} 2>&1"


def edition_dirs(issues_root: Path) -> Iterator[Path]:
    """Every edition folder under the root: a folder holding edition.toml."""
    root = Path(issues_root)
    if not root.is_dir():
        raise InputError("issues folder not found", path=root)
    yield from sorted(p.parent for p in root.glob(f"*/{EDITION_FILE}"))


class Progress(StrEnum):
    """Where an edition stands, as ``mailer schedule --list`` shows it."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class Action(StrEnum):
    """What ``mailer due`` does with one edition now."""

    SEND = "send"  # due, or an interrupted send to finish
    WAIT = "wait"  # send_at is in the future
    DONE = "done"  # already sent (or not scheduled)
    TOO_LATE = "too-late"  # overdue past --max-late: a person must decide


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(
    send_at: dt.datetime | None,
    progress: Progress,
    now: dt.datetime,
    max_late: dt.timedelta = DEFAULT_MAX_LATE,
) -> Decision:
    """Decide one edition's fate. Lateness is measured from send_at even for an
    interrupted send: a newsletter about next Tuesday's course must not finish
    going out the Friday after because the server was off for a week."""
    if send_at is None:
        return Decision(Action.DONE, "not scheduled")
    if progress in (Progress.SENT, Progress.FAILED):
        return Decision(Action.DONE, f"already {progress.value}")
    if send_at > now:
        return Decision(Action.WAIT, f"due at {format_at(send_at)}")
    late = now - send_at
    if late > max_late:
        return Decision(
            Action.TOO_LATE,
            f"{_describe(late)} late (over --max-late {_describe(max_late)}); "
            "not sent automatically: send it by hand with 'mailer send' if it is still wanted",
        )
    verb = "resuming the interrupted send" if progress is Progress.SENDING else "due"
    return Decision(Action.SEND, f"{verb} (send_at {format_at(send_at)})")


def _describe(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"


def parse_duration(text: str) -> dt.timedelta:
    """'24h', '90m', '2d' or a number of hours, for --max-late."""
    text = text.strip().lower()
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        if text and text[-1] in units:
            return dt.timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return dt.timedelta(hours=float(text))
    except ValueError:
        raise InputError(
            f"cannot read the duration {text!r}", hint="write it like 24h, 90m or 2d"
        ) from None


# --- the cron entry point ------------------------------------------------------------


@dataclass(frozen=True)
class DueOutcome:
    """What ``mailer due`` did with one edition, and whether that needs a person."""

    edition: str
    action: str  # an Action value, or "error" / "busy" / "blocked"
    message: str
    ok: bool
    summary: SendSummary | None = None


def edition_progress(edition: Edition, status: EditionStatus) -> Progress:
    """Where an edition stands, from edition.toml and the journal's report on it."""
    if status.started_at is None:
        return Progress.SCHEDULED if edition.send_at else Progress.DRAFT
    if status.finished_at is None:
        return Progress.SENDING
    failed = status.counts.get("failed", 0) + status.counts.get("bounced", 0)
    return Progress.FAILED if failed else Progress.SENT


def run_due(
    issues_root: Path,
    recipients: Sequence[Path],
    settings: Settings,
    options: SendOptions,
    reporter: Reporter,
    now: dt.datetime,
    max_late: dt.timedelta = DEFAULT_MAX_LATE,
) -> list[DueOutcome]:
    """Send every edition whose time has come; never prompt, never send over check errors.

    One bad edition does not stop the others: each gets its own outcome, and the
    caller exits non-zero if any needs a person.
    """
    outcomes = []
    for edition_dir in edition_dirs(issues_root):
        try:
            outcome = _due_one(edition_dir, recipients, settings, options, reporter, now, max_late)
        except MailerError as exc:
            outcome = DueOutcome(edition_dir.name, "error", str(exc), ok=False)
        if outcome.action != Action.DONE or not outcome.ok:
            reporter.log(f"{outcome.edition}: {outcome.action}: {outcome.message}")
        outcomes.append(outcome)
    return outcomes


def _due_one(
    edition_dir: Path,
    recipients: Sequence[Path],
    settings: Settings,
    options: SendOptions,
    reporter: Reporter,
    now: dt.datetime,
    max_late: dt.timedelta,
) -> DueOutcome:
    edition = load_edition(edition_dir)
    progress = edition_progress(edition, journal_report(edition, settings))
    decision = decide(edition.send_at, progress, now, max_late)
    if decision.action is not Action.SEND:
        ok = decision.action is not Action.TOO_LATE
        return DueOutcome(edition.slug, decision.action, decision.reason, ok=ok)
    reporter.log(f"{edition.slug}: {decision.reason}")
    try:
        plan = prepare_send(edition_dir, recipients, settings, options)
        if plan.nothing_to_send:
            message = "nothing left to send" + (
                f"; {plan.uncertain} uncertain message(s): see 'mailer status'"
                if plan.uncertain
                else ""
            )
            return DueOutcome(edition.slug, Action.DONE, message, ok=not plan.uncertain)
        summary = run_send(plan, reporter)
    except ChecksFailed as exc:  # run_send refuses before anything goes out
        message = f"not sent: {exc.message}; run 'mailer check' and fix them"
        return DueOutcome(edition.slug, "blocked", message, ok=False)
    except SendInProgress:
        return DueOutcome(edition.slug, "busy", "another mailer is sending it", ok=True)
    message = f"{summary.sent} sent, {summary.failed} failed, {summary.bounced} bounced"
    ok = summary.exit_code == ExitCode.OK
    return DueOutcome(edition.slug, Action.SEND, message, ok=ok, summary=summary)
