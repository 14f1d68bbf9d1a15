"""Sending one edition to one subscriber list: what ``mailer send`` and ``mailer due`` share.

Two steps, so a person can look before anything leaves: :func:`prepare_send` loads
and renders the edition once, scans the list, runs the offline checks and reads the
journal, producing a :class:`SendPlan` with everything a confirmation prompt shows;
:func:`run_send` then does the work and reports progress to a :class:`Reporter`.

A real send streams the list twice (register pending rows, then send), keeping in
memory only the set of addresses seen (for de-duplication), never the messages. Each
recipient's message is built, marked ``sending`` in the journal, sent, and marked
``sent`` only after the server accepted it; see :mod:`mailer.journal` for why that
order makes a killed send safe to rerun.
"""

from __future__ import annotations

import dataclasses
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Protocol

from email_validator import EmailNotValidError, validate_email

from mailer.checks import CheckReport, check_edition
from mailer.config import Settings
from mailer.delivery import (
    RateLimiter,
    RecipientRejected,
    RetryPolicy,
    SmtpTransport,
    deliver,
)
from mailer.edition import Edition, load_edition
from mailer.errors import DeliveryError, ExitCode, InputError, MailerError, RetryableDeliveryError
from mailer.journal import (
    FINAL,
    STATUSES,
    EditionLock,
    EditionStatus,
    Journal,
    raise_changed,
)
from mailer.merge import variables
from mailer.message import (
    DkimSigner,
    EncodedParts,
    EncodedTemplate,
    build_message,
    envelope_address,
    recipient_context,
)
from mailer.recipients import ListScan, Recipient, iter_recipients, scan_recipients
from mailer.render import RenderedEdition, render_edition
from mailer.suppression import SuppressionList


@dataclass(frozen=True)
class SendOptions:
    dry_run: bool = False
    outbox: Path | None = None
    batch_size: int = 50
    batch_pause: float = 0.0
    rate: float | None = None  # messages per minute, across all connections
    limit: int | None = None
    concurrency: int = 1
    force: bool = False
    test_to: tuple[str, ...] = ()
    test_as: str | None = None
    list_name: str | None = None
    resend_uncertain: bool = False
    retry_failed: bool = False
    allow_insecure_auth: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_consecutive_failures: int = 10
    timeout: float = 60.0


class Reporter(Protocol):
    """Where progress goes: a progress bar on a terminal, log lines under cron."""

    def start(self, total: int) -> None: ...
    def sent(self, recipient: Recipient) -> None: ...
    def failed(self, recipient: Recipient, reply: str) -> None: ...
    def retry(self, recipient: Recipient, attempt: int, reply: str, delay: float) -> None: ...
    def paused(self, message: str) -> None: ...
    def log(self, message: str) -> None: ...
    def preview(self, message: bytes) -> None: ...
    def finish(self, summary: SendSummary) -> None: ...


@dataclass(frozen=True)
class SendSummary:
    edition: str
    sent: int
    failed: int
    skipped_already_sent: int
    suppressed: int
    bad_rows: int
    dry_run: bool
    seconds: float
    bounced: int = 0
    duplicates: int = 0
    uncertain: int = 0  # left ``sending`` by a killed earlier run: not resent
    test: bool = False
    stopped: str | None = None  # why the send stopped early (consecutive failures)
    finished: bool = False  # every current recipient is now sent, failed or bounced
    outbox: Path | None = None

    @property
    def exit_code(self) -> ExitCode:
        trouble = self.failed or self.bounced or self.uncertain or self.stopped
        return ExitCode.PROBLEMS if trouble else ExitCode.OK


@dataclass(frozen=True)
class SendPlan:
    rendered: RenderedEdition
    settings: Settings
    options: SendOptions
    recipients: tuple[Path, ...]
    scan: ListScan
    state_path: Path
    checks: CheckReport
    to_send: int  # after the journal and --limit
    already_done: int = 0  # recipients on the list the journal has finished with
    uncertain: int = 0
    finished_at: str | None = None

    @property
    def slug(self) -> str:
        return self.rendered.edition.slug

    @property
    def unknown_fields(self) -> list[str]:
        """Merge fields that no column of the list fills: they come out empty (or as their
        default), usually a misspelling worth seeing before thousands of people do."""
        known = self.scan.columns | {"email", "name", "first_name", "unsubscribe_url"}
        return sorted(variables(self.rendered.expressions) - known)

    @property
    def subject(self) -> str:
        return self.rendered.preview().subject

    @property
    def smtp_host(self) -> str:
        return f"{self.settings.smtp_host}:{self.settings.port} ({self.settings.smtp_security})"

    @property
    def nothing_to_send(self) -> bool:
        return self.to_send == 0 and not self.options.dry_run

    @property
    def blocked_by_checks(self) -> bool:
        """Errors stop a real send; a dry run or a test send shows them and goes on."""
        real = not (self.options.dry_run or self.options.test_to)
        return real and bool(self.checks.errors) and not self.options.force


class ChecksFailed(MailerError):
    exit_code = ExitCode.PROBLEMS


def prepare_send(
    edition_dir: Path, recipients: Sequence[Path], settings: Settings, options: SendOptions
) -> SendPlan:
    """Everything up to the moment of sending, without sending or writing anything."""
    validate_options(options, recipients)
    edition = load_edition(edition_dir)
    rendered = render_edition(edition, settings)
    state_path = settings.state_file(edition.project_root)
    paths = tuple(Path(p) for p in recipients)
    with suppressed_check(state_path) as is_suppressed:
        scan = scan_recipients(paths, options.list_name, is_suppressed)
    plan = SendPlan(
        rendered=rendered,
        settings=settings,
        options=options,
        recipients=paths,
        scan=scan,
        state_path=state_path,
        checks=check_edition(rendered, settings, offline=True),
        to_send=capped(scan.valid, options.limit),
    )
    if options.test_to:
        return dataclasses.replace(plan, to_send=len(options.test_to))
    if options.dry_run or not state_path.exists():
        return plan
    EditionLock(state_path, edition.slug).probe()
    return with_journal_counts(plan)


def validate_options(options: SendOptions, recipients: Sequence[Path]) -> None:
    if not recipients:
        raise InputError("no subscriber list given", hint="pass --recipients FILE")
    for name in ("batch_size", "concurrency", "limit", "max_consecutive_failures"):
        value = getattr(options, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be 1 or more, not {value}")
    if options.batch_pause < 0:
        raise InputError("--batch-pause cannot be negative")
    if options.outbox and not options.dry_run:
        raise InputError("--outbox only goes with --dry-run")


def capped(count: int, limit: int | None) -> int:
    return count if limit is None else min(count, limit)


@contextmanager
def suppressed_check(state_path: Path) -> Iterator[Callable[[str], bool] | None]:
    """The suppression list's membership test; none when there is no state file yet
    (a dry run must not create one just to find it empty)."""
    if not state_path.exists():
        yield None
        return
    with SuppressionList(state_path) as suppression:
        yield suppression.__contains__


def with_journal_counts(plan: SendPlan) -> SendPlan:
    """How much of the list the journal has already done: the prompt's 'to send now'."""
    journal = Journal(plan.state_path)
    try:
        record = journal.edition(plan.slug)
        if record is None:
            return plan
        if record.content_hash != plan.rendered.content_hash and not plan.options.force:
            raise_changed(plan.slug, record)
        done = uncertain = todo = 0
        resend = resendable(plan.options)
        with suppressed_check(plan.state_path) as is_suppressed:
            for recipient in iter_recipients(
                plan.recipients, plan.options.list_name, is_suppressed
            ):
                status = journal.status_of(plan.slug, recipient.key)
                if status in resend or status not in (*FINAL, "sending"):
                    todo += 1
                elif status == "sending":
                    uncertain += 1
                else:
                    done += 1
        return dataclasses.replace(
            plan,
            to_send=capped(todo, plan.options.limit),
            already_done=done,
            uncertain=uncertain,
            finished_at=record.finished_at,
        )
    finally:
        journal.close()


def resendable(options: SendOptions) -> tuple[str, ...]:
    return ("sending",) * options.resend_uncertain + ("failed",) * options.retry_failed


def edition_status(edition_dir: Path, settings: Settings) -> EditionStatus:
    """What the journal knows about the edition in ``edition_dir``."""
    return journal_report(load_edition(edition_dir), settings)


def journal_report(edition: Edition, settings: Settings) -> EditionStatus:
    """What the journal knows about an edition's send; all zeros if it was never sent
    (without creating a state file just to say so)."""
    state_path = settings.state_file(edition.project_root)
    if not state_path.exists():
        return EditionStatus(edition.slug, None, None, dict.fromkeys(STATUSES, 0))
    journal = Journal(state_path)
    try:
        return journal.report(edition.slug)
    finally:
        journal.close()


def run_send(plan: SendPlan, reporter: Reporter) -> SendSummary:
    """Do the send the plan describes; a dry run builds every message and sends none."""
    if plan.blocked_by_checks:
        first = "; ".join(problem.message for problem in plan.checks.errors[:3])
        raise ChecksFailed(
            f"the edition has {len(plan.checks.errors)} check error(s): {first}",
            hint="run 'mailer check' and fix them, or pass --force to send anyway",
        )
    if plan.options.dry_run:
        return dry_run(plan, reporter)
    if plan.options.test_to:
        return send_test_copies(plan, reporter)
    return Campaign(plan, reporter).run()


class Composer:
    """Builds one recipient's finished message from the edition rendered once."""

    def __init__(self, plan: SendPlan, *, test: bool = False) -> None:
        self.rendered = plan.rendered
        self.settings = plan.settings
        self.test = test
        self.signer = DkimSigner.from_settings(plan.settings)
        edition = plan.rendered.edition
        self.sender = parseaddr(edition.from_addr or plan.settings.from_addr)[1]
        self.text = EncodedTemplate.of(plan.rendered.text, html=False)
        self.html = EncodedTemplate.of(plan.rendered.html, html=True)

    def build(self, recipient: Recipient, personalise_as: Recipient | None = None) -> bytes:
        """``personalise_as`` fills the merge fields of a test send; the unsubscribe link
        stays the test address's own, so clicking it in a proof unsubscribes nobody else."""
        context = recipient_context(recipient, self.settings)
        if personalise_as is not None:
            context = {
                **recipient_context(personalise_as, self.settings),
                **{"unsubscribe_url": context["unsubscribe_url"]},
            }
        values = self.rendered.merge_values(context)
        parts = EncodedParts(
            subject=self.rendered.subject_for(values),
            text=self.text.fill(values),
            html=self.html.fill(values),
        )
        return build_message(
            parts,
            recipient,
            self.rendered.edition,
            self.settings,
            test=self.test,
            signer=self.signer,
        )


def outbox_name(index: int, email: str) -> str:
    """``0001-jane.doe@example.org.eml``: sorted in send order, found by address."""
    safe = re.sub(r"[^A-Za-z0-9@._+-]", "_", email)[:120]
    return f"{index:04d}-{safe}.eml"


def summary_of(plan: SendPlan, started: float, **counts: object) -> SendSummary:
    return SendSummary(
        edition=plan.slug,
        suppressed=plan.scan.suppressed,
        bad_rows=len(plan.scan.problems),
        duplicates=len(plan.scan.duplicates),
        dry_run=plan.options.dry_run,
        seconds=time.monotonic() - started,
        **{"sent": 0, "failed": 0, "skipped_already_sent": 0, **counts},  # type: ignore[arg-type]
    )


def dry_run(plan: SendPlan, reporter: Reporter) -> SendSummary:
    """Everything but SMTP and the journal: every message is built, so every error shows."""
    started = time.monotonic()
    composer = Composer(plan)
    outbox = plan.options.outbox
    if outbox:
        outbox.mkdir(parents=True, exist_ok=True)
    reporter.start(plan.to_send)
    built = 0
    with suppressed_check(plan.state_path) as is_suppressed:
        for recipient in iter_recipients(plan.recipients, plan.options.list_name, is_suppressed):
            if built == plan.to_send:
                break
            message = composer.build(recipient)
            built += 1
            if built == 1:
                reporter.preview(message)
            if outbox:
                (outbox / outbox_name(built, recipient.email)).write_bytes(message)
            reporter.sent(recipient)
    summary = summary_of(plan, started, sent=built, outbox=outbox)
    reporter.finish(summary)
    return summary


def send_test_copies(plan: SendPlan, reporter: Reporter) -> SendSummary:
    """``--test-to``: the edition as one subscriber would get it, to someone else,
    marked [TEST], and outside the journal, so the real send later still goes to
    everyone."""
    started = time.monotonic()
    subscriber = persona_for_tests(plan)
    targets = [
        dataclasses.replace(subscriber, email=checked_test_address(a)) for a in plan.options.test_to
    ]
    composer = Composer(plan, test=True)
    transport = SmtpTransport(
        plan.settings,
        allow_insecure_auth=plan.options.allow_insecure_auth,
        timeout=plan.options.timeout,
    )
    reporter.start(len(targets))
    reporter.log(f"personalised as {subscriber.email}")
    sent = failed = 0
    try:
        for target in targets:
            message = composer.build(target, personalise_as=subscriber)
            try:
                deliver(
                    transport,
                    composer.sender,
                    envelope_address(target.email),
                    message,
                    policy=plan.options.retry,
                    before_attempt=lambda attempt: None,
                    on_retry=lambda n, exc, delay, who=target: reporter.retry(
                        who, n, str(exc), delay
                    ),
                )
            except DeliveryError as exc:
                failed += 1
                reporter.failed(target, str(exc))
            else:
                sent += 1
                reporter.sent(target)
    finally:
        transport.close()
    summary = dataclasses.replace(summary_of(plan, started, sent=sent, failed=failed), test=True)
    reporter.finish(summary)
    return summary


def persona_for_tests(plan: SendPlan) -> Recipient:
    """Whom a test send is personalised as: --test-as, else the first subscriber."""
    wanted = plan.options.test_as
    key = wanted.casefold() if wanted else None
    with suppressed_check(plan.state_path) as is_suppressed:
        for recipient in iter_recipients(plan.recipients, plan.options.list_name, is_suppressed):
            if key is None or recipient.key == key:
                return recipient
    if wanted:
        raise InputError(f"--test-as {wanted}: not a subscriber on the list")
    raise InputError("the list has no valid subscriber to personalise the test with")


def checked_test_address(address: str) -> str:
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InputError(f"--test-to {address!r} is not a valid address: {exc}") from None


Job = tuple[Recipient, bytes]  # a recipient and their finished message


@dataclass
class Tally:
    """Counts and the current run of failures, shared by the sending threads."""

    sent: int = 0
    failed: int = 0
    bounced: int = 0
    streak: list[tuple[Recipient, bool]] = field(default_factory=list)
    stopped: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class SentMarks:
    """One connection's journal marks, with its last ``sent`` mark held back to be
    committed together with the next message's ``sending`` mark: one commit, and so
    one fsync, a message instead of two (see :meth:`Journal.mark_sending`).

    A held mark is recorded on its own whenever the connection would otherwise
    wait (for the next message, a rate limit, the end), so it is never held long.
    """

    def __init__(self, journal: Journal, slug: str) -> None:
        self.journal = journal
        self.slug = slug
        self.held: tuple[str, str, str] | None = None  # key, email, reply

    def sending(self, recipient: Recipient) -> None:
        held, self.held = self.held, None
        self.journal.mark_sending(self.slug, recipient.key, recipient.email, sent=held)

    def hold(self, recipient: Recipient, reply: str) -> None:
        self.record()
        self.held = (recipient.key, recipient.email, reply)

    def record(self) -> None:
        if self.held is not None:
            (key, _, reply), self.held = self.held, None
            self.journal.mark_sent(self.slug, key, reply)


class Campaign:
    """The real send: journal, lock, suppression of bounces, threads, pauses."""

    def __init__(self, plan: SendPlan, reporter: Reporter) -> None:
        self.plan = plan
        self.options = plan.options
        self.reporter = reporter
        self.slug = plan.slug
        self.composer = Composer(plan)
        self.tally = Tally()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.limiter = RateLimiter(self.options.rate) if self.options.rate else None

    def run(self) -> SendSummary:
        plan = self.plan
        started = time.monotonic()
        with EditionLock(plan.state_path, self.slug):
            self.journal = Journal(plan.state_path)
            self.suppression = SuppressionList(plan.state_path)
            try:
                return self._run(started)
            finally:
                self.suppression.close()
                self.journal.close()

    def _run(self, started: float) -> SendSummary:
        plan, journal = self.plan, self.journal
        journal.begin(self.slug, plan.rendered.content_hash, force=self.options.force)
        reset = (
            journal.reset(self.slug, resendable(self.options)) if resendable(self.options) else 0
        )
        if reset:
            self.reporter.log(f"{reset} recipient(s) put back in the queue to send again")
        if journal.add_pending(self.slug, ((r.key, r.email) for r in self.recipients())):
            journal.reopen(self.slug)
        self.reporter.start(plan.to_send)
        skipped, uncertain, exhausted = self.dispatch()
        if self.tally.stopped:
            self.undo_streak()
        finished = exhausted and not uncertain and not self.tally.stopped
        if finished:
            journal.finish(self.slug)
        elif uncertain:
            self.reporter.log(
                f"{uncertain} message(s) were in flight when an earlier send stopped and may "
                "have been delivered; see 'mailer status', then rerun with --resend-uncertain "
                "to send them again"
            )
        summary = summary_of(
            plan,
            started,
            sent=self.tally.sent,
            failed=self.tally.failed,
            bounced=self.tally.bounced,
            skipped_already_sent=skipped,
            uncertain=uncertain,
            stopped=self.tally.stopped,
            finished=finished,
        )
        self.reporter.finish(summary)
        return summary

    def recipients(self) -> Iterator[Recipient]:
        return iter_recipients(
            self.plan.recipients, self.options.list_name, self.suppression.__contains__
        )

    def dispatch(self) -> tuple[int, int, bool]:
        """Feed recipients who still need the edition to the sending threads.

        Returns (already done, uncertain, whether the whole list was gone through).
        """
        work: queue.Queue[Job | None] = queue.Queue(maxsize=self.options.concurrency)
        threads = [
            threading.Thread(target=self.worker, args=(work,), name=f"smtp-{n}", daemon=True)
            for n in range(self.options.concurrency)
        ]
        for thread in threads:
            thread.start()
        skipped = uncertain = dispatched = 0
        exhausted = False
        try:
            for recipient in self.recipients():
                if self.stop.is_set():
                    break
                status = self.journal.status_of(self.slug, recipient.key)
                if status in FINAL:
                    skipped += 1
                    continue
                if status == "sending":
                    uncertain += 1
                    continue
                if dispatched == self.options.limit:
                    break
                message = self.build(recipient)
                if message is not None:
                    work.put((recipient, message))
                dispatched += 1
                if dispatched % self.options.batch_size == 0 and self.options.batch_pause:
                    self.pause_between_batches(work, dispatched)
            else:
                exhausted = True
        except BaseException:
            self.stop.set()
            raise
        finally:
            for _ in threads:
                work.put(None)  # workers always drain the queue, so this never blocks for long
            for thread in threads:
                thread.join()
        if self.error is not None:
            raise self.error
        return skipped, uncertain, exhausted and not self.stop.is_set()

    def pause_between_batches(self, work: queue.Queue[Job | None], dispatched: int) -> None:
        work.join()
        self.reporter.paused(
            f"{dispatched} sent so far; pausing {self.options.batch_pause:g} s between batches"
        )
        self.stop.wait(self.options.batch_pause)

    def build(self, recipient: Recipient) -> bytes | None:
        """Build in the feeding thread, so the next message is ready while the sending
        thread waits for the server; a message that cannot be built is a failure."""
        try:
            return self.composer.build(recipient)
        except InputError as exc:
            self.journal.mark_sending(self.slug, recipient.key, recipient.email)
            self.journal.mark_failed(self.slug, recipient.key, f"could not build: {exc}")
            self.count_failure(recipient, str(exc), bounced=False, server=False)
            return None

    def worker(self, work: queue.Queue[Job | None]) -> None:
        """One SMTP connection, one journal connection and one suppression-list connection
        per thread: SQLite connections cannot be shared between threads."""
        transport = SmtpTransport(
            self.plan.settings,
            allow_insecure_auth=self.options.allow_insecure_auth,
            timeout=self.options.timeout,
        )
        suppression = SuppressionList(self.plan.state_path)
        marks = SentMarks(self.journal, self.slug)
        try:
            while (job := self.next_job(work, marks)) is not None:
                try:
                    if not self.stop.is_set():
                        self.send_one(transport, suppression, marks, *job)
                except BaseException as exc:
                    self.error = self.error or exc
                    self.stop.set()
                finally:
                    work.task_done()
            work.task_done()
            marks.record()
        except BaseException as exc:
            self.error = self.error or exc
            self.stop.set()
        finally:
            transport.close()
            suppression.close()
            self.journal.close()

    @staticmethod
    def next_job(work: queue.Queue[Job | None], marks: SentMarks) -> Job | None:
        """The next message; a held ``sent`` mark is recorded before any wait for one."""
        try:
            return work.get_nowait()
        except queue.Empty:
            marks.record()
            return work.get()

    def send_one(
        self,
        transport: SmtpTransport,
        suppression: SuppressionList,
        marks: SentMarks,
        recipient: Recipient,
        message: bytes,
    ) -> None:
        journal, slug = self.journal, self.slug
        if self.limiter:
            marks.record()
            self.limiter.wait()
        try:
            reply = deliver(
                transport,
                self.composer.sender,
                envelope_address(recipient.email),
                message,
                policy=self.options.retry,
                before_attempt=lambda attempt: marks.sending(recipient),
                on_retry=lambda n, exc, delay: self.note_retry(recipient, n, exc, delay),
                sleep=self.stop.wait,
            )
        except RecipientRejected as exc:
            marks.record()
            journal.mark_failed(slug, recipient.key, str(exc), bounced=True)
            suppression.add([recipient.email], reason="bounced", source=self.slug)
            self.count_failure(recipient, str(exc), bounced=True)
        except DeliveryError as exc:
            marks.record()
            journal.mark_failed(slug, recipient.key, str(exc))
            self.count_failure(recipient, str(exc), bounced=False)
        else:
            marks.hold(recipient, reply)
            with self.tally.lock:
                self.tally.sent += 1
                self.tally.streak.clear()
            self.reporter.sent(recipient)

    def note_retry(
        self, recipient: Recipient, attempt: int, exc: RetryableDeliveryError, delay: float
    ) -> None:
        self.journal.note_retry(self.slug, recipient.key, str(exc))
        self.reporter.retry(recipient, attempt, str(exc), delay)

    def count_failure(
        self, recipient: Recipient, reply: str, *, bounced: bool, server: bool = True
    ) -> None:
        tally = self.tally
        with tally.lock:
            if bounced:
                tally.bounced += 1
            else:
                tally.failed += 1
            if server:
                tally.streak.append((recipient, bounced))
            limit = self.options.max_consecutive_failures
            if len(tally.streak) >= limit and not tally.stopped:
                tally.stopped = (
                    f"{len(tally.streak)} consecutive failures, last reply: {reply}; "
                    "fix the problem and rerun the same command to carry on"
                )
                self.stop.set()
        self.reporter.failed(recipient, reply)

    def undo_streak(self) -> None:
        """A run of failures points at the server or the set-up, not at the recipients:
        put them back in the queue (and off the suppression list) for the rerun."""
        streak = self.tally.streak
        keys = [recipient.key for recipient, _ in streak]
        self.journal.reset(self.slug, ("failed", "bounced"), keys)
        bounced = [recipient.email for recipient, was_bounced in streak if was_bounced]
        if bounced:
            self.suppression.remove(bounced)
        self.tally.failed -= sum(1 for _, was_bounced in streak if not was_bounced)
        self.tally.bounced -= len(bounced)
        self.reporter.paused(self.tally.stopped or "")
