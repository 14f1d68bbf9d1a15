"""Messages built per second for a ~40 KB HTML edition, with and without DKIM.

Baseline in the same run: the textbook stdlib way (EmailMessage.set_content +
add_alternative, every header parsed and folded per message), against
mailer.message.build_message, which folds per-edition headers once and
quoted-printable-encodes bodies in C.

Run: .venv/bin/python bench/message.py [seconds-per-case]
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailer.message import DkimSigner, build_message, recipient_context
from tests.message_helpers import Recipient, edition, parts, settings

ROW = (
    '<tr><td style="font-family:Arial,sans-serif;color:#333333;font-size:16px;'
    'line-height:24px">Safeguarding news for partners — training, £10 places, Zoë</td></tr>\n'
)
HTML = "<html><body><table>" + ROW * 260 + "</table></body></html>\n"
TEXT = "Safeguarding news for partners: training dates and places, see the website.\n" * 60
CONTENT = parts(subject="Summer news — safeguarding update", html=HTML, text=TEXT)
EDITION = edition()
NOW = dt.datetime(2025, 7, 15, 9, 0, tzinfo=dt.UTC)


def recipients(n: int) -> list[Recipient]:
    return [Recipient(f"partner{i}@example.net", name=f"Partner Zoë {i}") for i in range(n)]


def textbook(recipient: Recipient) -> bytes:
    """The baseline: what the stdlib documentation shows, per recipient."""
    config = settings()
    msg = EmailMessage(policy=SMTP)
    msg["From"] = config.from_addr
    msg["Reply-To"] = config.reply_to
    msg["To"] = f"{recipient.name} <{recipient.email}>"
    msg["Subject"] = CONTENT.subject
    msg["Date"] = NOW
    msg["Message-ID"] = "<x@example.org>"
    msg["List-Id"] = "Northvale <newsletter.example.org>"
    msg["List-Unsubscribe"] = "<" + recipient_context(recipient, config)["unsubscribe_url"] + ">"
    msg.set_content(CONTENT.text, cte="quoted-printable")
    msg.add_alternative(CONTENT.html, subtype="html", cte="quoted-printable")
    return msg.as_bytes(policy=SMTP)


def rates(cases: dict[str, Callable[[Recipient], bytes]], seconds: float) -> dict[str, float]:
    """Messages per second for each case, measured in interleaved rounds so that noise
    from other processes on a shared machine hits every case alike."""
    people = recipients(200)
    spent = dict.fromkeys(cases, 0.0)
    built = dict.fromkeys(cases, 0)
    deadline = time.perf_counter() + seconds * len(cases)
    while time.perf_counter() < deadline:
        for name, build in cases.items():
            start = time.perf_counter()
            for person in people[:20]:
                build(person)
            spent[name] += time.perf_counter() - start
            built[name] += 20
        people = people[20:] + people[:20]
    return {name: built[name] / spent[name] for name in cases}


def make_signer(folder: Path) -> DkimSigner:
    key = folder / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(key), "2048"],
        check=True,
        capture_output=True,
    )
    signer = DkimSigner.from_settings(
        settings(dkim_key_file=key, dkim_selector="news", dkim_domain="example.org")
    )
    assert signer is not None
    return signer


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    config = settings()
    with tempfile.TemporaryDirectory() as folder:
        signer = make_signer(Path(folder))
        cases: dict[str, Callable[[Recipient], bytes]] = {
            "baseline: textbook EmailMessage": textbook,
            "build_message": lambda r: build_message(CONTENT, r, EDITION, config, now=NOW),
            "build_message + DKIM (rsa-2048)": lambda r: build_message(
                CONTENT, r, EDITION, config, now=NOW, signer=signer
            ),
        }
        print(f"HTML body {len(HTML.encode()) / 1000:.1f} kB, text {len(TEXT) / 1000:.1f} kB")
        results = rates(cases, seconds)
        baseline = results["baseline: textbook EmailMessage"]
        for name, per_second in results.items():
            size = len(cases[name](recipients(1)[0])) / 1000
            print(
                f"{name:34} {per_second:7.0f} msg/s {1000 / per_second:7.2f} ms/msg"
                f" {per_second / baseline:5.2f}x baseline  {size:.1f} kB"
            )


if __name__ == "__main__":
    main()
