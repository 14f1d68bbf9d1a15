"""Load an edition folder (edition.toml + Markdown sections) into plain data.

Everything that can be wrong with the user's files is found here, before any
rendering, and reported with the file and line so it can be fixed in one go.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from mailer.errors import InputError

EDITION_FILE = "edition.toml"
KINDS = ("article", "profile", "alert", "events", "training", "callout")
REQUIRED_KEYS = ("title", "subject", "preheader", "date")
OPTIONAL_KEYS = ("template", "send_at", "from", "reply_to", "newsletter", "lang")
SECTION_KEYS = ("title", "kind", "image", "image_alt", "button_text", "button_url")


@dataclass(frozen=True)
class Section:
    path: Path
    title: str | None
    kind: str
    body: str  # Markdown, front matter removed
    body_line: int  # 1-based line in ``path`` where ``body`` starts
    image: str | None = None
    image_alt: str | None = None
    button_text: str | None = None
    button_url: str | None = None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Edition:
    root: Path
    title: str
    subject: str
    preheader: str
    date: dt.date
    sections: tuple[Section, ...]
    template: str = "newsletter"
    send_at: dt.datetime | None = None
    from_addr: str | None = None
    reply_to: str | None = None
    newsletter: str | None = None
    lang: str = "en-GB"

    @property
    def slug(self) -> str:
        """The edition's identity in the journal and in Message-IDs: its folder name."""
        return self.root.name

    @property
    def toml_path(self) -> Path:
        return self.root / EDITION_FILE

    @property
    def project_root(self) -> Path:
        """The user's newsletter project: the folder that holds ``issues/``."""
        return self.root.parent.parent


def load_edition(root: Path) -> Edition:
    root = Path(root).resolve()
    if not root.is_dir():
        raise InputError(
            "edition folder not found", path=root, hint="give the path to issues/<slug>"
        )
    meta = read_edition_toml(root / EDITION_FILE)
    return Edition(
        root=root,
        title=meta["title"],
        subject=meta["subject"],
        preheader=meta["preheader"],
        date=meta["date"],
        sections=tuple(load_section(path) for path in section_paths(root)),
        template=meta.get("template", "newsletter"),
        send_at=meta.get("send_at"),
        from_addr=meta.get("from"),
        reply_to=meta.get("reply_to"),
        newsletter=meta.get("newsletter"),
        lang=meta.get("lang", "en-GB"),
    )


def section_paths(root: Path) -> list[Path]:
    """Sections are the .md files beside edition.toml, in file-name order."""
    return sorted(p for p in root.glob("*.md") if p.is_file())


def read_edition_toml(path: Path) -> dict:
    if not path.is_file():
        raise InputError(
            "edition.toml is missing", path=path, hint="create it, or run 'mailer new' to scaffold"
        )
    try:
        meta = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8", path=path, hint="save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", path=path, line=_toml_line(exc)) from None
    unknown = sorted(set(meta) - set(REQUIRED_KEYS) - set(OPTIONAL_KEYS))
    if unknown:
        raise InputError(
            f"unknown key {unknown[0]!r}",
            path=path,
            hint=f"known keys: {', '.join(REQUIRED_KEYS + OPTIONAL_KEYS)}",
        )
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise InputError(f"missing required key {missing[0]!r}", path=path)
    for key in set(meta) - {"date", "send_at"}:
        if not isinstance(meta[key], str) or not meta[key].strip():
            raise InputError(f"{key!r} must be a non-empty string", path=path)
    meta["date"] = _parse_date(meta["date"], path)
    if "send_at" in meta:
        meta["send_at"] = parse_send_at(meta["send_at"], path)
    return meta


def parse_send_at(value: object, path: Path | None = None) -> dt.datetime:
    """send_at must carry its UTC offset: '09:00' alone is ambiguous across DST and servers."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            value = None
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise InputError(
            "send_at must be an RFC 3339 time with an offset, e.g. 2025-07-15T09:00:00+01:00",
            path=path,
            hint="or set it with 'mailer schedule --at'",
        )
    return value


def _parse_date(value: object, path: Path) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise InputError(f"date must be YYYY-MM-DD, not {value!r}", path=path) from None


def _toml_line(exc: tomllib.TOMLDecodeError) -> int | None:
    # Python 3.11's message ends with "(at line N, column M)".
    text = str(exc)
    marker = "at line "
    if marker in text:
        digits = text.split(marker, 1)[1].split(",", 1)[0].rstrip(")")
        if digits.isdigit():
            return int(digits)
    return None


def load_section(path: Path) -> Section:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError("not valid UTF-8", path=path, hint="save the file as UTF-8") from None
    meta, body, body_line = split_front_matter(text, path)
    unknown = sorted(set(meta) - set(SECTION_KEYS))
    if unknown:
        raise InputError(
            f"unknown front matter key {unknown[0]!r}",
            path=path,
            line=2,
            hint=f"known keys: {', '.join(SECTION_KEYS)}",
        )
    for key, value in meta.items():
        if value is not None and not isinstance(value, str):
            raise InputError(f"front matter {key!r} must be text", path=path, line=2)
    kind = meta.get("kind") or "article"
    if kind not in KINDS:
        raise InputError(
            f"unknown kind {kind!r}", path=path, line=2, hint=f"use one of: {', '.join(KINDS)}"
        )
    if bool(meta.get("button_text")) != bool(meta.get("button_url")):
        raise InputError(
            "button_text and button_url go together", path=path, line=2, hint="set both or neither"
        )
    return Section(
        path=path,
        title=meta.get("title"),
        kind=kind,
        body=body,
        body_line=body_line,
        image=meta.get("image"),
        image_alt=meta.get("image_alt"),
        button_text=meta.get("button_text"),
        button_url=meta.get("button_url"),
    )


def split_front_matter(text: str, path: Path) -> tuple[dict, str, int]:
    """Split optional YAML front matter ('---' lines) from the Markdown body."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text, 1
    for index in range(1, len(lines)):
        if lines[index].strip() == "---":
            break
    else:
        raise InputError(
            "front matter opened with '---' is never closed",
            path=path,
            line=1,
            hint="add a closing '---' line",
        )
    try:
        meta = yaml.safe_load("".join(lines[1:index])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 2
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise InputError(f"invalid front matter: {problem}", path=path, line=line) from None
    if not isinstance(meta, dict):
        raise InputError("front matter must be 'key: value' lines", path=path, line=2)
    return meta, "".join(lines[index + 1 :]), index + 2
