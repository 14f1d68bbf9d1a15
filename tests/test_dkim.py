"""DKIM: what a real SMTP server receives verifies against the published key."""

from __future__ import annotations

import base64
import re
import smtplib
import socket
from pathlib import Path

import dkim
import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailer.dkim import DkimSigner
from mailer.errors import InputError
from tests.message_helpers import Recipient, build, settings

SELECTOR = "news"
DOMAIN = "example.org"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def key_file(tmp_path: Path, rsa_key) -> Path:
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.fixture
def signer(key_file: Path) -> DkimSigner:
    configured = settings(dkim_key_file=key_file, dkim_selector=SELECTOR, dkim_domain=DOMAIN)
    result = DkimSigner.from_settings(configured)
    assert result is not None
    return result


@pytest.fixture
def dns(rsa_key):
    """A dnsfunc answering only our selector's TXT record, as a real zone would."""
    public = rsa_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return lookup


class Store:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        self.received.append(envelope.original_content or envelope.content)
        return "250 OK"


@pytest.fixture
def smtp_server():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = Store()
    controller = Controller(store, hostname="127.0.0.1", port=port, ready_timeout=5)
    controller.start()
    try:
        yield store, port
    finally:
        controller.stop()


def deliver(wire: bytes, port: int, store: Store) -> bytes:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
        client.sendmail("newsletter@example.org", ["zoe@example.net"], wire)
    return store.received[-1]


def test_signature_verifies_on_what_the_smtp_server_received(signer, dns, smtp_server):
    store, port = smtp_server
    long_address = "a.rather.long.address.to.make.list.unsubscribe.fold." * 2 + "z@example.net"
    wire = build(Recipient(long_address, name="Zoë Ångström"), signer=signer)
    received = deliver(wire, port, store)
    assert received.startswith(b"DKIM-Signature:")
    assert dkim.verify(received, dnsfunc=dns)


def test_signature_fails_when_a_header_is_altered_in_transit(signer, dns, smtp_server):
    store, port = smtp_server
    received = deliver(build(signer=signer), port, store)
    tampered = received.replace(b"Subject: Summer news", b"Subject: Winter news")
    assert tampered != received
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_signature_fails_when_an_unsubscribe_header_is_added(signer, dns):
    wire = build(signer=signer, settings_=settings(unsubscribe_url=None))
    head, body = wire.split(b"\r\n\r\n", 1)
    forged = head + b"\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n" + body
    assert dkim.verify(wire, dnsfunc=dns)
    assert not dkim.verify(forged, dnsfunc=dns)


def test_signature_is_relaxed_and_covers_the_list_headers(signer):
    signature = build(signer=signer).split(b"\r\n\r\n", 1)[0].decode()
    tags = re.sub(r"\s+", "", signature.split("DKIM-Signature:", 1)[1].split("\r\nFrom:")[0])
    assert "c=relaxed/relaxed" in tags
    signed = set(re.search(r"h=([^;]+)", tags).group(1).split(":"))
    assert {"from", "to", "subject", "date", "message-id", "list-id"} <= signed
    assert {"list-unsubscribe", "list-unsubscribe-post", "mime-version", "content-type"} <= signed
    assert f"d={DOMAIN}" in tags
    assert f"s={SELECTOR}" in tags


def test_no_signer_without_dkim_settings():
    assert DkimSigner.from_settings(settings()) is None


def test_missing_key_file_is_an_input_error_naming_the_file(tmp_path):
    missing = tmp_path / "nope.pem"
    configured = settings(dkim_key_file=missing, dkim_selector=SELECTOR, dkim_domain=DOMAIN)
    with pytest.raises(InputError, match="not found") as info:
        DkimSigner.from_settings(configured)
    assert str(missing) in str(info.value)


def test_unusable_key_file_is_an_input_error_naming_the_file(tmp_path):
    bad = tmp_path / "public.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    configured = settings(dkim_key_file=bad, dkim_selector=SELECTOR, dkim_domain=DOMAIN)
    with pytest.raises(InputError, match="private key") as info:
        DkimSigner.from_settings(configured)
    assert str(bad) in str(info.value)


def test_half_configured_dkim_is_an_input_error(key_file):
    with pytest.raises(InputError, match="MAILER_DKIM_SELECTOR"):
        DkimSigner.from_settings(settings(dkim_key_file=key_file, dkim_domain=DOMAIN))


def test_signer_repr_hides_the_key(signer):
    assert "PRIVATE" not in repr(signer)


@pytest.mark.parametrize("field", ["dkim_selector", "dkim_domain"])
def test_dkim_names_must_be_plain_dns_names(key_file, field):
    values = {"dkim_key_file": key_file, "dkim_selector": SELECTOR, "dkim_domain": DOMAIN}
    values[field] = "bücher.example"
    with pytest.raises(InputError, match="punycode"):
        DkimSigner.from_settings(settings(**values))
