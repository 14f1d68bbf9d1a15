"""The plain-text twin: the same Markdown tokens as the HTML, laid out for a terminal.

Headings, paragraphs, lists and tables stay readable, links become ``text (url)``,
and lines wrap at 76 columns without ever breaking a URL (a broken URL is a dead
link in a plain-text mail client).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from markdown_it.token import Token
from markdown_it.tree import SyntaxTreeNode

if TYPE_CHECKING:
    from collections.abc import Sequence

WIDTH = 76
_TAG = re.compile(r"<[^>]+>")
_SPACES = re.compile(r"[ \t]+")


class Masthead(Protocol):
    newsletter: str
    title: str
    date: str
    sender: str
    postal_address: str
    unsubscribe_url: str


@dataclass(frozen=True)
class TextSection:
    kind: str
    title: str
    body: str  # already laid out at WIDTH
    button_text: str | None = None
    button_url: str | None = None


def edition_text(masthead: Masthead, sections: Sequence[TextSection]) -> str:
    """The whole text part: masthead, each section, footer with the unsubscribe link."""
    parts = [
        wrap(f"{masthead.newsletter} - {masthead.date}"),
        underline(masthead.title, "="),
    ]
    for section in sections:
        parts.append(section_text(section))
    footer = [wrap(f"Sent by {masthead.sender}")]
    if masthead.postal_address:
        footer.append(wrap(masthead.postal_address))
    footer.append(wrap(f"Unsubscribe: {masthead.unsubscribe_url}"))
    parts.append("-" * 20 + "\n" + "\n".join(footer))
    return "\n\n\n".join(part for part in parts if part) + "\n"


def section_text(section: TextSection) -> str:
    title = section.title
    if section.kind == "alert":
        title = f"ALERT: {title}" if title else "ALERT"
    blocks = [underline(title, "-") if title else "", section.body]
    if section.button_text and section.button_url:
        blocks.append(wrap(f"{section.button_text}: {section.button_url}"))
    return "\n\n".join(block for block in blocks if block)


def underline(title: str, char: str) -> str:
    lines = wrap(title).splitlines()
    return "\n".join([*lines, char * max(len(line) for line in lines)])


def wrap(text: str, width: int = WIDTH, first: str = "", rest: str = "") -> str:
    """Wrap each line of ``text``; long words (URLs, merge tokens) are never split."""
    wrapper = textwrap.TextWrapper(
        width=width,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )
    out: list[str] = []
    for index, line in enumerate(text.split("\n")):
        if index:
            wrapper.initial_indent = rest
        out.extend(wrapper.wrap(line) or [wrapper.initial_indent.rstrip()])
    return "\n".join(out)


def tokens_text(tokens: list[Token], width: int = WIDTH) -> str:
    """A section body as text, from the tokens the HTML was rendered from."""
    return "\n\n".join(_blocks(SyntaxTreeNode(tokens).children, width))


def _blocks(nodes: Sequence[SyntaxTreeNode], width: int) -> list[str]:
    return [text for node in nodes if (text := _block(node, width))]


def _block(node: SyntaxTreeNode, width: int) -> str:
    kind = node.type
    if kind == "paragraph":
        return wrap(inline_text(node.children[0]), width)
    if kind == "heading":
        return wrap(inline_text(node.children[0]), width)
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, width)
    if kind == "blockquote":
        inner = "\n\n".join(_blocks(node.children, width - 2))
        return "\n".join(f"> {line}".rstrip() for line in inner.splitlines())
    if kind in ("fence", "code_block"):
        return "\n".join("    " + line for line in node.content.rstrip("\n").splitlines())
    if kind == "table":
        return _table(node, width)
    if kind == "hr":
        return "-" * 20
    if kind == "html_block":
        return wrap(_strip_tags(node.content).strip(), width)
    return ""


def _list(node: SyntaxTreeNode, width: int) -> str:
    tight = all(child.hidden for item in node.children for child in item.children)
    start = int(node.attrs.get("start", 1))
    items = []
    for number, item in enumerate(node.children, start):
        marker = f"{number}. " if node.type == "ordered_list" else "- "
        lines = _item_text(item, width - len(marker)).splitlines() or [""]
        rest = [(" " * len(marker) + line).rstrip() for line in lines[1:]]
        items.append("\n".join([marker + lines[0], *rest]))
    return ("\n" if tight else "\n\n").join(items)


def _item_text(item: SyntaxTreeNode, width: int) -> str:
    date = item.meta.get("date")
    if not date:
        return "\n\n".join(_blocks(item.children, width))
    # A date-led item always opens with the paragraph its date was taken from.
    lead = inline_text(item.children[0].children[0]).strip()
    level = item.meta.get("level")
    line = f"{date} - {lead}" if lead else date
    first = wrap(f"{line} ({level})" if level else line, width)
    return "\n\n".join([first, *_blocks(item.children[1:], width)])


def _table(node: SyntaxTreeNode, width: int) -> str:
    """Aligned columns when they fit, else one 'Header: value' record per row."""
    rows = [
        [
            " ".join(inline_text(cell.children[0]).split()) if cell.children else ""
            for cell in tr.children
        ]
        for section in node.children
        for tr in section.children
    ]
    if not rows:
        return ""
    header, body = rows[0], rows[1:]
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(len(header))]
    if sum(widths) + 2 * (len(widths) - 1) <= width:
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)
    records = []
    for row in body:
        pairs = [f"{head}: {cell}" for head, cell in zip(header, row, strict=False) if cell]
        records.append("\n".join(wrap(pair, width, rest="  ") for pair in pairs))
    return "\n\n".join(records)


def inline_text(node: SyntaxTreeNode) -> str:
    """Inline content as text: emphasis dropped, links as ``text (url)``, images as alt."""
    out: list[str] = []
    for child in node.children:
        kind = child.type
        if kind in ("text", "code_inline"):
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "html_inline":
            out.append(_strip_tags(child.content))
        elif kind == "image":
            alt = "".join(c.content for c in child.children)
            out.append(f"[{alt}]" if alt else "")
        elif kind == "link":
            out.append(_link(inline_text(child), str(child.attrs.get("href", ""))))
        else:
            out.append(inline_text(child))
    return _SPACES.sub(" ", "".join(out))


def _link(label: str, href: str) -> str:
    bare = href.removeprefix("mailto:")
    if not label or label in (href, bare):
        return label or href
    return f"{label} ({href})"


def _strip_tags(html: str) -> str:
    return _TAG.sub("", html)
