"""SMTP delivery: one reused connection, retries for temporary failures, a rate cap.

The transport knows nothing about editions or the journal; it takes finished message
bytes and an envelope and says what the server answered. Its three kinds of answer
decide what the sender does next:

* a reply string (``"250 2.0.0 Ok: queued as ..."``): accepted, record it as sent;
* :class:`RetryableDeliveryError` (4xx, timeout, dropped connection): try again
  after a back-off, on a fresh connection;
* :class:`DeliveryError` (5xx): give up on this recipient, record the reply, carry
  on; :class:`RecipientRejected` when the server refused the address itself
  (550/551/553 to RCPT), which means the address should be suppressed.

Set-up problems (no STARTTLS, a certificate that does not verify, a login the server
refuses) are :class:`SmtpSetupError`: no message can get through, so the send stops.

Nothing here logs, and no exception text is built from the password: smtplib's
``login`` errors carry only the server's reply.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from mailer.config import Settings
from mailer.errors import DeliveryError, InputError, RetryableDeliveryError

BOUNCE_CODES = frozenset({550, 551, 553})  # RCPT refused: no such user / relay / bad address
_DOT_LINE = re.compile(rb"\n\.")


class RecipientRejected(DeliveryError):
    """The server refused the recipient address permanently: a hard bounce."""


class SmtpSetupError(InputError):
    """The connection itself cannot be made safely or at all: stop the whole send."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how patiently, a temporary failure is retried.

    Delays double from ``base_delay`` up to ``max_delay``; tests set them to zero.
    """

    attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (failures - 1))


class HookFailed(Exception):
    """Carries an exception from the before-DATA hook past the network-error handling."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Certificates are verified as any mail client should.

    ``MAILER_SMTP_CA_FILE`` names a CA bundle to trust *instead of* the system's, for
    a relay with a private CA (and for the tests' self-signed server); it never turns
    verification off.
    """
    cafile = settings.smtp_ca_file
    if cafile is not None and not cafile.is_file():
        raise SmtpSetupError("CA file not found", path=cafile, hint="check MAILER_SMTP_CA_FILE")
    return ssl.create_default_context(cafile=str(cafile) if cafile else None)


class SmtpTransport:
    """One SMTP connection, opened on first use and reused for every message after."""

    def __init__(
        self,
        settings: Settings,
        *,
        allow_insecure_auth: bool = False,
        timeout: float = 60.0,
    ) -> None:
        self.settings = settings
        self.allow_insecure_auth = allow_insecure_auth
        self.timeout = timeout
        self._smtp: smtplib.SMTP | None = None
        self.messages_on_connection = 0

    @property
    def where(self) -> str:
        return f"{self.settings.smtp_host}:{self.settings.port}"

    def connect(self) -> None:
        """Open the connection if it is not open: EHLO, STARTTLS when asked, AUTH when set."""
        if self._smtp is not None:
            return
        try:
            smtp = self._open()
        except ssl.SSLCertVerificationError as exc:
            raise SmtpSetupError(
                f"the SMTP server's certificate did not verify: {exc.verify_message}",
                hint="check MAILER_SMTP_HOST, or point MAILER_SMTP_CA_FILE at its CA certificate",
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise RetryableDeliveryError(
                f"cannot connect to the SMTP server {self.where}: {describe(exc)}"
            ) from None
        self._smtp = smtp
        self.messages_on_connection = 0

    def _open(self) -> smtplib.SMTP:
        settings = self.settings
        if settings.smtp_security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.port,
                timeout=self.timeout,
                context=tls_context(settings),
            )
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.port, timeout=self.timeout)
        try:
            smtp.ehlo()
            if settings.smtp_security == "starttls":
                self._starttls(smtp)
            if settings.smtp_user:
                self._login(smtp)
        except BaseException:
            close_quietly(smtp)
            raise
        return smtp

    def _starttls(self, smtp: smtplib.SMTP) -> None:
        if not smtp.has_extn("starttls"):
            raise SmtpSetupError(
                f"the SMTP server {self.where} does not offer STARTTLS",
                hint="use MAILER_SMTP_SECURITY=tls (port 465), or =none only on a trusted network",
            )
        smtp.starttls(context=tls_context(self.settings))
        smtp.ehlo()

    def _login(self, smtp: smtplib.SMTP) -> None:
        encrypted = self.settings.smtp_security != "none"
        if not encrypted and not self.allow_insecure_auth:
            raise SmtpSetupError(
                "refusing to send the SMTP password over an unencrypted connection",
                hint="use MAILER_SMTP_SECURITY=starttls or tls, or pass --allow-insecure-auth",
            )
        try:
            smtp.login(self.settings.smtp_user or "", self.settings.smtp_password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise SmtpSetupError(
                f"the SMTP server refused the login for {self.settings.smtp_user}: "
                f"{reply_text(exc.smtp_code, exc.smtp_error)}",
                hint="check MAILER_SMTP_USER and MAILER_SMTP_PASSWORD",
            ) from None
        except smtplib.SMTPNotSupportedError:
            raise SmtpSetupError(
                f"the SMTP server {self.where} does not offer AUTH",
                hint="unset MAILER_SMTP_USER if it needs no login",
            ) from None

    def send(
        self,
        sender: str,
        recipient: str,
        message: bytes,
        before_data: Callable[[], None] = lambda: None,
    ) -> str:
        """One SMTP transaction; returns the server's reply to the message's DATA.

        ``before_data()`` runs before the DATA command (the journal's ``sending``
        commit goes there); when the server offers PIPELINING it runs while the
        server answers MAIL FROM and RCPT TO, sent together in one packet, so the
        commit's fsync and that round trip overlap.
        """
        self.connect()
        smtp = self._smtp
        assert smtp is not None
        try:
            envelope = pipelined_envelope(smtp, sender, recipient)
            if envelope is not None:
                smtp.send(envelope)
                self._before_data(before_data)
                mail, rcpt = smtp.getreply(), smtp.getreply()
                check(smtp, mail, "MAIL FROM")
                check(smtp, rcpt, "RCPT TO", rcpt=True)
            else:
                self._before_data(before_data)
                utf8 = not recipient.isascii() and smtp.has_extn("smtputf8")
                check(smtp, smtp.mail(sender, ["SMTPUTF8"] if utf8 else []), "MAIL FROM")
                check(smtp, smtp.rcpt(recipient), "RCPT TO", rcpt=True)
            code, text = send_data(smtp, message)
            check(smtp, (code, text), "DATA")
        except HookFailed as failed:  # not the server's doing: no retry, no classifying
            raise failed.error from None
        except smtplib.SMTPResponseException as exc:
            self._fail(classify(exc.smtp_code, exc.smtp_error, "DATA"))
        except (smtplib.SMTPException, OSError) as exc:
            self._fail(RetryableDeliveryError(f"connection lost: {describe(exc)}"))
        except UnicodeEncodeError:
            self._fail(
                DeliveryError(
                    "the address is internationalised and the server does not offer SMTPUTF8"
                )
            )
        except DeliveryError as exc:
            self._fail(exc)
        self.messages_on_connection += 1
        return reply_text(code, text)

    def _before_data(self, before_data: Callable[[], None]) -> None:
        """If the hook fails, the send stops: hang up rather than leave the server's
        answers unread on a connection that would be reused."""
        try:
            before_data()
        except BaseException as exc:
            self.close()
            raise HookFailed(exc) from exc

    def _fail(self, error: DeliveryError) -> NoReturn:
        """A temporary failure may have left the connection unusable: start afresh."""
        if isinstance(error, RetryableDeliveryError):
            self.close()
        raise error from None

    def close(self) -> None:
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            close_quietly(smtp)


def pipelined_envelope(smtp: smtplib.SMTP, sender: str, recipient: str) -> bytes | None:
    """MAIL FROM and RCPT TO as one write (RFC 2920), as smtplib would word them; None
    when the server does not offer PIPELINING or an address needs more care (SMTPUTF8,
    anything smtplib would refuse) than the one-command-at-a-time path gives it."""
    if not smtp.has_extn("pipelining"):
        return None
    envelope = (
        f"mail from:{smtplib.quoteaddr(sender)}\r\nrcpt to:{smtplib.quoteaddr(recipient)}\r\n"
    )
    if not envelope.isascii() or envelope.count("\n") != 2 or envelope.count("\r") != 2:
        return None
    return envelope.encode("ascii")


def send_data(smtp: smtplib.SMTP, message: bytes) -> tuple[int, bytes]:
    """``smtp.data(message)`` for a message already in CRLF form, minus smtplib's regex
    for dot-stuffing: run over 80 KB for every message, that regex cost more than
    building the message. A search finds the rare line that starts with a dot (a
    regex with a literal prefix: twice as fast as ``in`` on a body of short lines)."""
    code, text = smtp.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, text)
    if message.startswith(b".") or _DOT_LINE.search(message):
        message = (b"." if message.startswith(b".") else b"") + message.replace(b"\n.", b"\n..")
    ending = b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n"
    smtp.send(message + ending)
    return smtp.getreply()


def check(smtp: smtplib.SMTP, answer: tuple[int, bytes], stage: str, rcpt: bool = False) -> None:
    """Raise the right error for a non-success answer, leaving the connection reusable."""
    code, text = answer
    if 200 <= code < 300:
        return
    if code != 421:  # 421 means the server is closing; nothing to reset
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.rset()
    raise classify(code, text, stage, rcpt=rcpt)


def classify(code: int, text: bytes | str, stage: str, rcpt: bool = False) -> DeliveryError:
    reply = reply_text(code, text)
    message = f"{stage} refused: {reply}"
    if 400 <= code < 500 or code == -1:
        return RetryableDeliveryError(message, code=code)
    if rcpt and code in BOUNCE_CODES:
        return RecipientRejected(message, code=code)
    return DeliveryError(message, code=code)


def reply_text(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


def describe(exc: BaseException) -> str:
    """A short, password-free description of a network error."""
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def close_quietly(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()


def deliver(
    transport: SmtpTransport,
    sender: str,
    recipient: str,
    message: bytes,
    *,
    policy: RetryPolicy,
    before_attempt: Callable[[int], None],
    on_retry: Callable[[int, RetryableDeliveryError, float], None],
    sleep: Callable[[float], object] = time.sleep,
) -> str:
    """Send one message, retrying temporary failures with exponential back-off.

    ``before_attempt(n)`` runs once the connection is up and before the message's
    DATA (the journal marks the message ``sending`` there). A connection that
    the server dropped while idle between messages is reopened at once without
    counting as an attempt: servers close reused connections routinely.
    """
    failures = 0
    reconnected = False
    while True:
        transport.connect()
        reused = transport.messages_on_connection > 0
        try:
            return transport.send(
                sender,
                recipient,
                message,
                before_data=lambda attempt=failures + 1: before_attempt(attempt),
            )
        except RetryableDeliveryError as exc:
            if reused and not reconnected and is_stale_connection(exc):
                reconnected = True
                continue
            failures += 1
            if failures >= policy.attempts:
                raise
            delay = policy.delay(failures)
            on_retry(failures, exc, delay)
            sleep(delay)


def is_stale_connection(exc: RetryableDeliveryError) -> bool:
    return exc.code in (None, 421)


class RateLimiter:
    """At most ``per_minute`` sends a minute, spaced evenly and shared by all connections.

    Each caller reserves the next free slot under a lock, then sleeps outside it, so
    N connections together keep to the cap rather than N times it.
    """

    def __init__(
        self,
        per_minute: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if per_minute <= 0:
            raise InputError("--rate must be more than 0 messages a minute")
        self.interval = 60.0 / per_minute
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)
