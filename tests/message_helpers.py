"""Shared builders for the message and DKIM tests."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

from mailer.config import Settings
from mailer.edition import Edition
from mailer.message import build_message
from mailer.recipients import Recipient
from mailer.render import Personalised

NOW = dt.datetime(2025, 7, 15, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "from_addr": "Northvale Safeguarding Children Partnership <newsletter@example.org>",
        "reply_to": "team@example.org",
        "unsubscribe_url": "https://example.org/newsletter/unsubscribe",
        "unsubscribe_mailto": "unsubscribe@example.org",
        "secret": "test-secret-0123456789",
        "organisation": "Northvale Safeguarding Children Partnership",
    }
    values.update(overrides)
    return Settings(**values)


def edition(slug: str = "2025-07-summer", **overrides: object) -> Edition:
    values: dict[str, object] = {
        "root": Path("/tmp/project/issues") / slug,
        "title": "Summer edition",
        "subject": "Summer news",
        "preheader": "What's new",
        "date": dt.date(2025, 7, 15),
        "sections": (),
    }
    values.update(overrides)
    return Edition(**values)


def parts(subject: str = "Summer news", html: str | None = None, text: str | None = None):
    return Personalised(
        subject=subject,
        html=html if html is not None else "<html><body><p>Hello Zoë</p></body></html>\n",
        text=text if text is not None else "Hello Zoë\n",
    )


def build(
    recipient: Recipient | None = None,
    *,
    content: Personalised | None = None,
    edition_: Edition | None = None,
    settings_: Settings | None = None,
    **kwargs: object,
) -> bytes:
    return build_message(
        content or parts(),
        recipient or Recipient("zoe@example.net", name="Zoë Ångström"),
        edition_ or edition(),
        settings_ or settings(),
        now=kwargs.pop("now", NOW),
        **kwargs,
    )


def parse(wire: bytes) -> EmailMessage:
    return email.message_from_bytes(wire, policy=email.policy.default)
