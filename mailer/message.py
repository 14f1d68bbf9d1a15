"""Build the exact bytes of one personalised message.

The edition is rendered once; here each recipient only gets headers, a join of the
already-rendered text and HTML, and (optionally) a DKIM signature over the final
bytes. Everything that goes into a header is checked for line breaks and control
characters first: a name like ``"Eve\\r\\nBcc: x@example.net"`` in a subscriber list
must never become an extra header.

Addresses: internationalised domains are written in their ASCII (IDNA) form, so the
message stays plain ASCII and any server accepts it. A non-ASCII local part
(``zoë@example.org``) cannot be written in ASCII at all; such a message is built as
RFC 6532 UTF-8 (``email.policy.SMTPUTF8``) and must be sent with the SMTPUTF8
extension (see :func:`needs_smtputf8`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.policy import SMTP, SMTPUTF8, EmailPolicy
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, quote, urlencode, urlsplit, urlunsplit

import idna

from mailer.config import Settings
from mailer.dkim import DkimSigner
from mailer.errors import InputError
from mailer.recipients import address_key

if TYPE_CHECKING:
    from pathlib import Path

    from mailer.edition import Edition
    from mailer.merge import MergeTemplate
    from mailer.recipients import Recipient
    from mailer.render import Personalised

__all__ = [
    "DkimSigner",
    "EncodedParts",
    "EncodedTemplate",
    "build_message",
    "envelope_address",
    "message_id",
    "needs_smtputf8",
    "quoted_printable",
    "recipient_context",
    "unsubscribe_mailto",
    "unsubscribe_token",
    "unsubscribe_url",
    "verify_unsubscribe_token",
]

# Raw header values we fold ourselves (a long List-Unsubscribe URL) must reach the
# wire untouched: the stdlib would otherwise "refold" an over-long URL into RFC 2047
# encoded words that no mail client can click.
POLICY = SMTP.clone(refold_source="none")
POLICY_UTF8 = SMTPUTF8.clone(refold_source="none")

# C0/C1 controls (CR, LF, NUL, TAB, NEL...) and the Unicode line/paragraph separators
# that str.splitlines() also treats as line breaks.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# dot-atom@dot-atom in ASCII: what the stdlib's address parser certainly accepts and
# writes back unchanged; parsing costs ~0.1 ms, twice for every message.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_LIST_ID_PHRASE_DROP = re.compile(r'[<>"\\]')
_TOKEN_CONTEXT = b"mailer-unsubscribe-v1\x00"
TEST_PREFIX = "[TEST] "
# "=_" never occurs in quoted-printable text (after "=" come two hex digits or a line
# break), so no body can contain the boundary.
BOUNDARY = f"=_mailer_{secrets.token_hex(12)}"


# --- header safety ---------------------------------------------------------------


def checked(value: str, what: str, *, path: Path | str | None = None, line: int = 0) -> str:
    """Refuse any value that could break out of its header line (defence in depth:
    recipients are validated upstream, settings and editions may not be)."""
    match = _UNSAFE.search(value)
    if match:
        raise InputError(
            f"{what} contains a line break or control character ({match.group()!r}): {value!r}",
            path=path,
            line=line or None,
            hint="remove it; header values must be one line of text",
        )
    return value


def ascii_domain(domain: str, what: str) -> str:
    """The domain as DNS and every mail server know it: IDNA (punycode) for Unicode."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InputError(f"{what} has an invalid domain {domain!r}: {exc}") from None


def mailbox(name: str, addr: str, what: str, **where: object) -> Address:
    """A checked header address: name and address free of line breaks, domain in ASCII."""
    checked(name, f"{what} name", **where)
    checked(addr, f"{what} address", **where)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise InputError(f"{what} is not an email address: {addr!r}", **where)
    domain = ascii_domain(domain, what)
    if not _PLAIN_ADDRESS.fullmatch(f"{local}@{domain}"):  # plain ones need no parse
        try:
            # The stdlib parser rejects any non-ASCII local part, so check the syntax
            # with a stand-in letter for each non-ASCII one (RFC 6532 allows them).
            Address(addr_spec=f"{_NON_ASCII.sub('x', local)}@{domain}")
        except (ValueError, IndexError) as exc:
            raise InputError(
                f"{what} is not a valid email address {addr!r}: {exc}", **where
            ) from None
    return Address(display_name=name, username=local, domain=domain)


@lru_cache(maxsize=64)
def parse_mailbox(value: str, what: str, path: Path | None = None) -> Address:
    """Parse a configured 'Name <address>' once; the same From serves every recipient."""
    checked(value, what, path=path)
    name, addr = parseaddr(value)
    if not addr:
        raise InputError(f"{what} is not an email address: {value!r}", path=path)
    return mailbox(name, addr, what, path=path)


def configured_mailbox(
    edition: Edition, key: str, edition_value: str | None, env_name: str, setting: str | None
) -> Address | None:
    """The edition's own From/Reply-To when it sets one, else the setting; errors name
    whichever the user has to fix."""
    if edition_value:
        return parse_mailbox(edition_value, f"{key!r}", edition.toml_path)
    return parse_mailbox(setting, env_name) if setting else None


def envelope_address(email: str) -> str:
    """The address for SMTP ``RCPT TO``: the domain in IDNA form, the local part as is."""
    return mailbox("", email, "recipient").addr_spec


def needs_smtputf8(email: str) -> bool:
    """True when the address cannot be written in ASCII: send with SMTPUTF8 (RFC 6531)."""
    return not email.rpartition("@")[0].isascii()


# --- unsubscribe -----------------------------------------------------------------


def unsubscribe_token(secret: str, email: str) -> str:
    """HMAC-SHA256 of the case-folded address: only whoever holds MAILER_SECRET can make
    a link that unsubscribes a given address."""
    message = _TOKEN_CONTEXT + address_key(email).encode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_unsubscribe_token(secret: str, email: str, token: str) -> bool:
    """Constant-time check of a token from an unsubscribe link."""
    expected = unsubscribe_token(secret, email).encode("ascii")
    return hmac.compare_digest(expected, token.encode("utf-8", "replace"))


@lru_cache(maxsize=16)
def _unsubscribe_base(url: str) -> SplitResult:
    checked(url, "MAILER_UNSUBSCRIBE_URL")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or any(c in url for c in ' <>"'):
        raise InputError(
            f"MAILER_UNSUBSCRIBE_URL must be an https:// URL, not {url!r}",
            hint="one-click unsubscribe (RFC 8058) requires HTTPS",
        )
    return parts


def unsubscribe_url(settings: Settings, email: str) -> str | None:
    """The recipient's own one-click unsubscribe link, or None when none is configured."""
    if not settings.unsubscribe_url:
        return None
    base = _unsubscribe_base(settings.unsubscribe_url)
    if not settings.secret:
        raise InputError(
            "MAILER_UNSUBSCRIBE_URL is set but MAILER_SECRET is not",
            hint="set MAILER_SECRET to a long random string so unsubscribe links can be signed",
        )
    return _signed_url(base, settings.secret, email)


@lru_cache(maxsize=8)
def _signed_url(base: SplitResult, secret: str, email: str) -> str:
    """Cached for the few messages in progress: each needs its link twice (the footer
    and the List-Unsubscribe header)."""
    query = urlencode({"email": email, "token": unsubscribe_token(secret, email)})
    return urlunsplit(base._replace(query=f"{base.query}&{query}" if base.query else query))


@lru_cache(maxsize=16)
def _mailto(value: str) -> str:
    value = value.removeprefix("mailto:")
    addr = parse_mailbox(value, "MAILER_UNSUBSCRIBE_MAILTO").addr_spec
    return f"mailto:{quote(addr, safe='@')}?subject=unsubscribe"


def unsubscribe_mailto(settings: Settings) -> str | None:
    """``mailto:`` unsubscribe for clients without HTTPS one-click; the same for everyone
    because the reply's From says who wants out."""
    return _mailto(settings.unsubscribe_mailto) if settings.unsubscribe_mailto else None


def recipient_context(recipient: Recipient, settings: Settings) -> dict[str, str]:
    """Merge context for one recipient: their columns plus the footer's unsubscribe link."""
    context = recipient.context()
    context["unsubscribe_url"] = (
        unsubscribe_url(settings, recipient.email) or unsubscribe_mailto(settings) or ""
    )
    return context


def list_unsubscribe(settings: Settings, email: str) -> tuple[str | None, bool]:
    """The List-Unsubscribe value (pre-folded, one URI a line) and whether one-click applies."""
    https = unsubscribe_url(settings, email)
    uris = [uri for uri in (https, unsubscribe_mailto(settings)) if uri]
    if not uris:
        return None, False
    return ",\r\n ".join(f"<{uri}>" for uri in uris), https is not None


# --- identity headers ------------------------------------------------------------


def message_id(edition_slug: str, email: str, from_addr: str, *, test: bool = False) -> str:
    """``<hash(edition, address)@from-domain>``: the same for a resend of the same edition
    to the same person, so a duplicate is recognisable. A test send gets a fresh random
    id instead, so it is never mistaken for (or deduplicated against) the real one."""
    key = f"{edition_slug}\x00{address_key(email)}".encode()
    digest = hashlib.sha256(key).hexdigest()[:32]
    domain = parse_mailbox(from_addr, "From").domain
    if test:
        return f"<test.{digest}.{secrets.token_hex(8)}@{domain}>"
    return f"<{digest}@{domain}>"


def list_id(edition: Edition, settings: Settings, sender: Address) -> str:
    """RFC 2919 List-Id: one stable id per project (``newsletter.<from-domain>``), so
    filters and bulk-sender reputation follow the newsletter, not each edition."""
    name = edition.newsletter or settings.organisation or sender.display_name or sender.domain
    phrase = _LIST_ID_PHRASE_DROP.sub("", checked(name, "newsletter name")).strip()
    return f"{phrase} <newsletter.{sender.domain}>"


# --- the message -----------------------------------------------------------------


def build_message(
    parts: Personalised | EncodedParts,
    recipient: Recipient,
    edition: Edition,
    settings: Settings,
    *,
    test: bool = False,
    signer: DkimSigner | None = None,
    now: datetime | None = None,
) -> bytes:
    """The exact bytes for the wire: CRLF line endings, text part first and HTML last
    (RFC 2046: last is preferred), DKIM-signed after folding when ``signer`` is given."""
    where = {"path": recipient.source, "line": recipient.line}
    sender = configured_mailbox(
        edition, "from", edition.from_addr, "MAILER_FROM", settings.from_addr
    )
    if sender is None:
        raise InputError("no From address", hint="set MAILER_FROM")
    reply_to = configured_mailbox(
        edition, "reply_to", edition.reply_to, "MAILER_REPLY_TO", settings.reply_to
    )
    to = mailbox(recipient.name, recipient.email, "recipient", **where)
    subject = checked(parts.subject, f"subject for {recipient.email}", **where)

    policy = POLICY_UTF8 if needs_smtputf8(to.addr_spec) else POLICY
    headers = [("From", address_header(policy, sender))]
    if reply_to:
        headers.append(("Reply-To", address_header(policy, reply_to)))
    headers += [
        ("To", address_header(policy, to)),
        ("Subject", folded(policy, "Subject", TEST_PREFIX + subject if test else subject)),
        ("Date", format_datetime((now or datetime.now()).astimezone())),
        ("Message-ID", message_id(edition.slug, recipient.email, str(sender), test=test)),
        ("List-Id", folded(policy, "List-Id", list_id(edition, settings, sender))),
    ]
    unsubscribe, one_click = list_unsubscribe(settings, recipient.email)
    if unsubscribe:
        headers.append(("List-Unsubscribe", unsubscribe))
    if one_click:
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
    headers += [
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{BOUNDARY}"'),
    ]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    if isinstance(parts, EncodedParts):
        text, html = parts.text, parts.html
    else:
        text, html = (quoted_printable(parts.text),), (quoted_printable(parts.html),)
    wire = b"".join(
        (
            head.encode("utf-8" if policy is POLICY_UTF8 else "ascii"),
            _part_head("plain"),
            *text,
            _part_head("html"),
            *html,
            _CLOSE,
        )
    )
    return signer.sign(wire) if signer else wire


def address_header(policy: EmailPolicy, to: Address) -> str:
    """A From, Reply-To or To value, made by formataddr (cheap enough per recipient), which quotes
    the name and RFC 2047-encodes it when not ASCII as whole encoded words: the stdlib's
    folder splits long non-ASCII names mid-word ("Ångstr öm"). An address that is not
    ASCII (SMTPUTF8) is written as UTF-8 and needs no encoding."""
    if to.addr_spec.isascii():
        return formataddr((to.display_name, to.addr_spec), charset="utf-8")
    return fold(policy, "To", str(to))


def fold(policy: EmailPolicy, name: str, value: str) -> str:
    """A header value folded, and RFC 2047-encoded where not ASCII, by the stdlib."""
    line = policy.header_factory(name, value).fold(policy=policy)
    # The stdlib may fold straight after the colon ("Subject:\r\n Summer ..."); keep
    # the first words on the header's own line instead of starting with a bare fold.
    return line[len(name) + 1 :].removesuffix(policy.linesep).removeprefix(policy.linesep).strip()


# List-Id and usually the Subject are the same for every recipient of an
# edition: fold each once.
folded = lru_cache(maxsize=64)(fold)


@lru_cache(maxsize=4)
def _part_head(subtype: str) -> bytes:
    return (
        f"\r\n--{BOUNDARY}\r\n"
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    ).encode("ascii")


QP_LINE = 76  # RFC 2045's limit on an encoded line, the soft break's "=" included
_CLOSE = f"\r\n--{BOUNDARY}--\r\n".encode("ascii")


def quoted_printable(content: str, *, more: bool = False) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends: every encoded line stays within 76
    octets whatever the HTML's own line lengths, far inside SMTP's 998 limit.

    With ``more``, something will be joined on after: the result then ends at a line
    break (a soft one, ``=``, if the text itself does not), so the next piece starts a
    fresh line and no joined line can grow past 76. Written as bytes directly: the
    stdlib's generator costs ~10 ms a message on a 40 KB body.
    """
    body = binascii.b2a_qp(content.replace("\r\n", "\n").encode("utf-8"), istext=True)
    if more and body and not body.endswith(b"\n"):
        body += b"=\n"
    lines = body.split(b"\n")
    if max(map(len, lines)) > QP_LINE:
        body = b"\n".join(map(_fit, lines))
    return body.replace(b"\n", b"\r\n")


def _fit(line: bytes) -> bytes:
    """Split a line over 76 octets with soft breaks that do not cut an ``=XX`` escape:
    b2a_qp lets a line ending in encoded whitespace reach 77, and so does a soft break
    added to a full last line."""
    out = []
    while len(line) > QP_LINE:
        cut = QP_LINE - 1
        while b"=" in line[cut - 2 : cut]:
            cut -= 1
        out.append(line[:cut] + b"=")
        line = line[cut:]
    out.append(line)
    return b"\n".join(out)


@dataclass(frozen=True)
class EncodedParts:
    """One recipient's subject and already-encoded text and HTML bodies (from
    :class:`EncodedTemplate`); :func:`build_message` takes these or :class:`Personalised`."""

    subject: str
    text: tuple[bytes, ...]  # pieces, joined once with the rest of the message
    html: tuple[bytes, ...]


@dataclass(frozen=True)
class EncodedTemplate:
    """A merge template whose literal chunks are quoted-printable-encoded once per
    edition, so each recipient costs encoding only their own merge values (a few
    dozen bytes) instead of the whole 60 KB body: that encoding was most of the
    time it took to build a message."""

    template: MergeTemplate
    html: bool
    chunks: tuple[bytes, ...]

    @classmethod
    def of(cls, template: MergeTemplate, *, html: bool) -> EncodedTemplate:
        last = len(template.chunks) - 1
        chunks = tuple(
            quoted_printable(chunk, more=index < last)
            for index, chunk in enumerate(template.chunks)
        )
        return cls(template, html, chunks)

    def fill(self, values: list[str]) -> tuple[bytes, ...]:
        """The body for one recipient's merge ``values``, in pieces to join: decodes
        to exactly what ``template.render(values)`` gives."""
        out = [self.chunks[0]]
        pieces = self.template.slot_values(values, html=self.html)
        for piece, chunk in zip(pieces, self.chunks[1:], strict=True):
            out.append(quoted_printable(piece, more=True))
            out.append(chunk)
        return tuple(out)
