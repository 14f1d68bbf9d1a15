"""DKIM signing of finished messages (dkimpy), with the key loaded once per send.

The signature covers the exact bytes that go on the wire: anything that refolds a
header afterwards (a long List-Unsubscribe, say) would break it, so signing is the
very last step of building a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import dkim
from dkim.crypto import UnparsableKeyError, parse_pem_private_key

from mailer.config import Settings
from mailer.errors import InputError

# Signed even when absent (the signature then vouches that they were absent), so
# nobody on the way can add, say, a one-click unsubscribe of their own.
SIGNED_HEADERS = (
    b"from",
    b"reply-to",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"list-id",
    b"mime-version",
    b"content-type",
)
DKIM_SETTINGS = ("MAILER_DKIM_KEY_FILE", "MAILER_DKIM_SELECTOR", "MAILER_DKIM_DOMAIN")


@dataclass(frozen=True)
class DkimSigner:
    selector: str
    domain: str
    key: bytes = field(repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The signer for this send, or None when DKIM is not configured. A half-set
        configuration is an error rather than silently unsigned mail."""
        given = (settings.dkim_key_file, settings.dkim_selector, settings.dkim_domain)
        if not any(given):
            return None
        if not settings.dkim_enabled:
            missing = [name for name, value in zip(DKIM_SETTINGS, given, strict=True) if not value]
            raise InputError(
                f"DKIM is half configured: {', '.join(missing)} not set",
                hint=f"set all of {', '.join(DKIM_SETTINGS)}, or none",
            )
        for name, value in zip(DKIM_SETTINGS[1:], given[1:], strict=True):
            if not re.fullmatch(r"[A-Za-z0-9._-]+", value):
                raise InputError(
                    f"{name} must be a plain ASCII DNS name, not {value!r}",
                    hint="write an internationalised domain in its xn-- (punycode) form",
                )
        return cls(
            selector=settings.dkim_selector,
            domain=settings.dkim_domain,
            key=load_key(settings.dkim_key_file),
        )

    def sign(self, message: bytes) -> bytes:
        """``message`` with a relaxed/relaxed rsa-sha256 DKIM-Signature prepended."""
        try:
            header = dkim.sign(
                message,
                self.selector.encode("ascii"),
                self.domain.encode("ascii"),
                self.key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=list(SIGNED_HEADERS),
            )
        except dkim.DKIMException as exc:
            raise InputError(
                f"DKIM signing failed: {exc}", hint="check MAILER_DKIM_SELECTOR/DOMAIN"
            ) from None
        return header + message


def load_key(path: Path) -> bytes:
    """Read and check the private key up front, so a bad key stops the send before
    the first message rather than failing on every one."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            "DKIM key file not found", path=path, hint="check MAILER_DKIM_KEY_FILE"
        ) from None
    except OSError as exc:
        raise InputError(
            f"cannot read the DKIM key file: {exc.strerror}",
            path=path,
            hint="check MAILER_DKIM_KEY_FILE and its permissions",
        ) from None
    try:
        parse_pem_private_key(key)
    except UnparsableKeyError:
        raise InputError(
            "not a PEM RSA private key",
            path=path,
            hint="MAILER_DKIM_KEY_FILE must be the private key, e.g. from 'openssl genrsa 2048'",
        ) from None
    return key
