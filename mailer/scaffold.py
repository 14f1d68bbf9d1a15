"""`mailer new`: a fresh edition folder that builds as it stands and shows the format."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import tomlkit

from mailer.edition import EDITION_FILE
from mailer.errors import InputError

WELCOME = """\
---
title: Welcome
---
Dear {{ first_name | default("colleague") }},

Write your introduction here. Each section is a Markdown file in this folder;
sections appear in file-name order, so number them 01-, 02-, ...

Link text should say where the link goes, like
[the NSPCC's advice for professionals](https://www.nspcc.org.uk/).
"""

DATES = """\
---
title: Dates for your diary
kind: events
---
- **Tue 16 Sept, 10:00** Partnership network meeting, Civic Centre.
- **Thu 2 Oct** Lunchtime briefing, online.
"""


def scaffold_edition(root: Path, title: str, today: dt.date | None = None) -> list[Path]:
    """Create ``root`` with edition.toml and two example sections; never overwrite."""
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise InputError(
            "already exists; mailer new never overwrites",
            path=root,
            hint="choose a new folder name, or edit the existing edition",
        )
    files = {
        EDITION_FILE: edition_toml(title, today or dt.date.today()),
        "01-welcome.md": WELCOME,
        "02-dates.md": DATES,
    }
    try:
        root.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (root / name).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot create the edition: {exc.strerror}", path=root) from None
    return [root / name for name in files]


def edition_toml(title: str, date: dt.date) -> str:
    doc = tomlkit.document()
    doc.add(tomlkit.comment("This edition's settings; see 'Writing an edition' in README.md."))
    doc.add("title", title)
    doc.add("subject", title)
    doc.add("preheader", "One sentence that previews this edition in the inbox.")
    doc.add("date", date)
    doc.add(tomlkit.comment('newsletter = "Name shown at the top"  # else MAILER_ORGANISATION'))
    doc.add(tomlkit.comment('send_at = "2025-07-15T09:00:00+01:00"  # for mailer due'))
    return tomlkit.dumps(doc)
