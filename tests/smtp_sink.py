"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, keeping what it receives,
with faults to inject (temporary and permanent refusals, 421 and dropped
connections, slow messages), optional STARTTLS with a self-signed certificate, and
optional AUTH.

Used in-process by the delivery tests and, for the kill test, as the server a
``mailer send`` subprocess talks to.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import ipaddress
import socket
import ssl
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class Faults:
    """What the sink does wrong, on purpose. Addresses compare case-insensitively."""

    tempfail_once: set[str] = field(default_factory=set)  # 451 on the first RCPT only
    tempfail_always: set[str] = field(default_factory=set)  # 451 on every RCPT
    reject_domains: set[str] = field(default_factory=set)  # 550 on RCPT
    reject_data: set[str] = field(default_factory=set)  # 554 after DATA
    reject_all_data: bool = False  # 554 after every DATA
    drop_data_once: set[str] = field(default_factory=set)  # hang up instead of answering DATA
    close_after: int | None = None  # 421 + hang up after N messages on a connection
    delay: float = 0.0  # seconds spent on each message before answering DATA


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


class Handler:
    def __init__(self, faults: Faults, pipelining: bool = True) -> None:
        self.faults = faults
        self.pipelining = pipelining
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self.seen_rcpt: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.per_connection: dict[int, int] = {}
        self.connections = 0
        self.on_data: Callable[[str], None] | None = None  # sees each recipient before 250

    async def handle_EHLO(self, server: SMTP, session: Session, envelope, hostname, responses):
        session.host_name = hostname
        with self.lock:
            self.connections += 1
        if self.pipelining:  # aiosmtpd reads pipelined commands fine but does not say so
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(self, server: SMTP, session, envelope: Envelope, address, options):
        limit = self.faults.close_after
        if limit is not None and self.per_connection.get(id(session), 0) >= limit:
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 Too many messages on one connection, closing"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope: Envelope, address: str, options):
        key = address.lower()
        faults = self.faults
        with self.lock:
            self.seen_rcpt[key] += 1
            first = self.seen_rcpt[key] == 1
        if key.rpartition("@")[2] in faults.reject_domains:
            return "550 5.1.1 User unknown"
        if key in faults.tempfail_always or (key in faults.tempfail_once and first):
            return "451 4.7.1 Greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope):
        if self.faults.delay:
            await asyncio.sleep(self.faults.delay)
        key = envelope.rcpt_tos[0].lower()
        faults = self.faults
        if self.on_data:
            self.on_data(key)
        if key in faults.drop_data_once and not self.dropped[key]:
            self.dropped[key] += 1
            server.transport.close()
            return "451 never seen by the client"
        if faults.reject_all_data or key in faults.reject_data:
            return "554 5.7.1 Message rejected as spam"
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content)
            )
            self.per_connection[id(session)] = self.per_connection.get(id(session), 0) + 1
        return "250 2.0.0 Ok: queued"


class Authenticator:
    """Accepts exactly one login and password."""

    def __init__(self, user: str, password: str) -> None:
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data == (self.user, self.password)
        return AuthResult(success=ok, handled=False)


class Sink:
    """Start with ``start()``; read ``received``; ``stop()`` when done."""

    def __init__(
        self,
        faults: Faults | None = None,
        *,
        tls_dir: Path | None = None,
        auth: tuple[str, str] | None = None,
        starttls: bool = False,
        implicit_tls: bool = False,
        pipelining: bool = True,
    ) -> None:
        self.faults = faults or Faults()
        self.handler = Handler(self.faults, pipelining)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.cert_file: Path | None = None
        kwargs: dict[str, object] = {}
        ssl_context = None
        if starttls or implicit_tls:
            assert tls_dir is not None, "TLS needs a folder for the certificate"
            self.cert_file, key_file = make_certificate(tls_dir)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.cert_file, key_file)
            if implicit_tls:
                ssl_context = context
            else:
                kwargs.update(tls_context=context, require_starttls=False)
        if auth:
            kwargs.update(
                authenticator=Authenticator(*auth),
                auth_require_tls=starttls or implicit_tls,
            )
        self.controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            ssl_context=ssl_context,
            ready_timeout=10,
            **kwargs,
        )

    def start(self) -> Sink:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    @property
    def received(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def count_by_recipient(self) -> Counter[str]:
        return Counter(r.lower() for item in self.received for r in item.rcpt_tos)

    def env(self, security: str = "none") -> dict[str, str]:
        """MAILER_* variables that point a ``mailer send`` at this sink."""
        values = {
            "MAILER_SMTP_HOST": self.host,
            "MAILER_SMTP_PORT": str(self.port),
            "MAILER_SMTP_SECURITY": security,
        }
        if self.cert_file:
            values["MAILER_SMTP_CA_FILE"] = str(self.cert_file)
        return values


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made fresh for each test."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = folder / "smtp-cert.pem"
    key_file = folder / "smtp-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file
