"""Render an edition once: Markdown -> HTML fragments -> Jinja/MJML -> inlined HTML + text.

Merge fields are swapped for opaque tokens before anything is rendered and the
finished output is split at those tokens (see :mod:`mailer.merge`), so a
:class:`RenderedEdition` is personalised per recipient by joining strings; no
Markdown, MJML or CSS inlining ever runs per recipient.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parseaddr
from functools import cached_property, lru_cache
from html import escape
from importlib.resources import files
from pathlib import Path

import jinja2
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup
from mjml import mjml2html
from premailer import Premailer

from mailer import text as plaintext
from mailer.config import Settings
from mailer.edition import Edition, Section
from mailer.errors import InputError
from mailer.merge import MergeFields, MergeTemplate, evaluator

TEMPLATE_SUFFIX = ".mjml.j2"
STAGES = ("markdown", "jinja", "mjml", "inline", "text")
DATED_KINDS = ("events", "training")
SIZE_WARN = 90 * 1024  # bytes; leaves headroom below Gmail's clipping point
SIZE_LIMIT = 102 * 1024  # Gmail clips messages whose HTML is larger than this
_DATE_SEPARATOR = re.compile(r"^\s*[-\u2013\u2014:|]?\s*")
_LEVEL = re.compile(r"^level\b", re.IGNORECASE)
_MJML_POSITION = re.compile(r"position (\d+)")
# MJML's reset stylesheet belongs in <head>; inlined onto every cell it adds ~10% bloat.
_MJML_RESET = re.compile(r"(<style[^>]*)>(?=\s*#outlook a)")

# cssutils complains about every mso-* property MJML emits for Outlook: noise, not news.
logging.getLogger("CSSUTILS").setLevel(logging.CRITICAL)


@dataclass(frozen=True)
class Personalised:
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class RenderedEdition:
    edition: Edition
    subject: MergeTemplate  # all three share ONE MergeFields, so slots index `expressions`
    html: MergeTemplate
    text: MergeTemplate
    expressions: tuple[str, ...]
    content_hash: str  # sha256 over chunks + expressions: stable across renders
    timings: dict[str, float]  # seconds per stage: markdown, jinja, mjml, inline, text
    preview_unsubscribe: str = ""  # what preview() puts in the unsubscribe link

    @cached_property
    def _evaluate(self):
        # Compiled once per rendered edition, then reused for every recipient.
        return evaluator(self.expressions)

    def merge_values(self, context: Mapping[str, str]) -> list[str]:
        """One recipient's value for each of ``expressions``, shared by every part."""
        return self._evaluate(context)

    def subject_for(self, values: list[str]) -> str:
        # A merge value must never smuggle a line break into the Subject header.
        return " ".join(self.subject.render(values, html=False).split())

    def personalise(self, context: Mapping[str, str]) -> Personalised:
        """One recipient's subject, HTML and text: evaluate merge fields once, then join."""
        values = self.merge_values(context)
        return Personalised(
            subject=self.subject_for(values),
            html=self.html.render(values, html=True),
            text=self.text.render(values, html=False),
        )

    def preview(self, context: Mapping[str, str] | None = None) -> Personalised:
        """What a recipient sees, with merge-field defaults standing in for their data."""
        return self.personalise({"unsubscribe_url": self.preview_unsubscribe, **(context or {})})


def render_edition(
    edition: Edition, settings: Settings | None = None, templates_dir: Path | None = None
) -> RenderedEdition:
    """Render ``edition`` once into merge templates; raise InputError for any bad input."""
    settings = settings or Settings()
    fields = MergeFields()
    timings = dict.fromkeys(STAGES, 0.0)
    with _timed(timings, "markdown"):
        sections = [_prepare_section(section, fields) for section in edition.sections]
        subject = fields.protect(edition.subject, origin=str(edition.toml_path))
        preheader = fields.protect(edition.preheader, origin=str(edition.toml_path))
        title = fields.protect(edition.title, origin=str(edition.toml_path))
    masthead = Masthead(
        newsletter=edition.newsletter or settings.organisation or edition.title,
        title=title,
        date=format_date(edition.date),
        subject=subject,
        preheader=preheader,
        lang=edition.lang,
        sender=sender_name(edition, settings),
        postal_address=settings.postal_address or "",
        unsubscribe_url=fields.token("unsubscribe_url"),
    )
    with _timed(timings, "jinja"):
        source, template_path = _fill_template(edition, settings, templates_dir, masthead, sections)
    with _timed(timings, "mjml"):
        compiled = _compile_mjml(source, template_path)
    with _timed(timings, "inline"):
        html = inline_css(compiled)
    with _timed(timings, "text"):
        text = plaintext.edition_text(masthead, [s.text_section() for s in sections])
    templates = [fields.template(subject), fields.template(html), fields.template(text)]
    expressions = tuple(fields.expressions)
    return RenderedEdition(
        edition=edition,
        subject=templates[0],
        html=templates[1],
        text=templates[2],
        expressions=expressions,
        content_hash=_content_hash(templates, expressions),
        timings=timings,
        preview_unsubscribe=preview_unsubscribe(settings),
    )


def write_build(parts: Personalised, out: Path) -> tuple[Path, Path]:
    """Write ``out/index.html`` and ``out/index.txt``; called only after a full render."""
    html_path, text_path = Path(out) / "index.html", Path(out) / "index.txt"
    try:
        html_path.parent.mkdir(parents=True, exist_ok=True)
        html_path.write_text(parts.html, encoding="utf-8")
        text_path.write_text(parts.text, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the build: {exc.strerror}", path=out) from None
    return html_path, text_path


def write_temp_html(html: str) -> Path:
    """A throwaway file a browser can open (browsers cannot open a string)."""
    with tempfile.NamedTemporaryFile(
        "w", suffix=".html", prefix="mailer-preview-", delete=False, encoding="utf-8"
    ) as handle:
        handle.write(html)
    return Path(handle.name)


# --- what the template sees --------------------------------------------------------


@dataclass(frozen=True)
class Masthead:
    """Edition-wide values for the template's header and footer (merge fields tokenised)."""

    newsletter: str
    title: str
    date: str
    subject: str
    preheader: str
    lang: str
    sender: str
    postal_address: str
    unsubscribe_url: str


@dataclass(frozen=True)
class SectionView:
    """One section ready for its partial; the text twin is made from the same tokens."""

    kind: str
    title: str
    html: Markup
    tokens: list[Token]
    image: str | None
    image_alt: str
    button_text: str | None
    button_url: str | None

    def text_section(self) -> plaintext.TextSection:
        return plaintext.TextSection(
            kind=self.kind,
            title=self.title,
            body=plaintext.tokens_text(self.tokens),
            button_text=self.button_text,
            button_url=self.button_url,
        )


def _prepare_section(section: Section, fields: MergeFields) -> SectionView:
    origin = str(section.path)

    def protect(value: str | None) -> str | None:
        return fields.protect(value, origin=origin) if value else value

    tokens = markdown_tokens(protect(section.body) or "", section.kind)
    return SectionView(
        kind=section.kind,
        title=protect(section.title) or "",
        html=Markup(_MD.renderer.render(tokens, _MD.options, {})),
        tokens=tokens,
        image=section.image,
        image_alt=section.image_alt or "",
        button_text=protect(section.button_text),
        button_url=protect(section.button_url),
    )


def format_date(date: dt.date) -> str:
    """'15 July 2025': unambiguous for a UK and a US reader alike."""
    return f"{date.day} {date:%B %Y}"


def sender_name(edition: Edition, settings: Settings) -> str:
    """Who the footer says sent this: the organisation, else the From display name."""
    display, address = parseaddr(edition.from_addr or settings.from_addr)
    return settings.organisation or display or address


def preview_unsubscribe(settings: Settings) -> str:
    """The unsubscribe link a preview shows: HTTPS URL, else mailto:, else nothing."""
    url = settings.unsubscribe_url or ""
    if url.startswith("https://"):
        return url
    mailto = settings.unsubscribe_mailto or ""
    if mailto:
        return mailto if mailto.startswith("mailto:") else f"mailto:{mailto}"
    return ""


# --- markdown ------------------------------------------------------------------------


def markdown_tokens(body: str, kind: str) -> list[Token]:
    """Parse a section body, shaped for its kind; both HTML and text render from these."""
    tokens = _MD.parse(body)
    _demote_headings(tokens)
    if kind in DATED_KINDS:
        _mark_dated_items(tokens, levels=kind == "training")
    return tokens


def _demote_headings(tokens: list[Token]) -> None:
    """The edition title is h1 and section titles h2, so a body's top heading becomes h3.

    Relative levels are kept: whether the writer starts at '#' or '###', the
    outline under the section title stays in order.
    """
    headings = [t for t in tokens if t.type in ("heading_open", "heading_close")]
    if not headings:
        return
    shift = 3 - min(int(t.tag[1]) for t in headings)
    for token in headings:
        token.tag = f"h{min(int(token.tag[1]) + shift, 6)}"


def _mark_dated_items(tokens: list[Token], *, levels: bool) -> None:
    """Top-level list items that start with **a date** become date-led rows.

    The date moves to ``meta["date"]`` of the list item; in training sections an
    italic ``*Level 2*`` moves to ``meta["level"]`` and is shown under the date.
    """
    for index, token in enumerate(tokens):
        if token.type != "list_item_open" or token.level != 1:
            continue
        inline = tokens[index + 2] if index + 2 < len(tokens) else None
        if inline is None or inline.type != "inline" or not inline.children:
            continue
        date = _take_leading_strong(inline.children)
        if date is None:
            continue
        token.meta["date"] = date
        _list_opener(tokens, index).meta["dated"] = True
        level = _take_level(inline.children) if levels else None
        if level:
            token.meta["level"] = level


def _take_leading_strong(children: list[Token]) -> str | None:
    """Remove a leading ``**...**`` (and a separator after it); return its text."""
    while children and children[0].type == "text" and not children[0].content.strip():
        children.pop(0)
    if not children or children[0].type != "strong_open":
        return None
    end = next(i for i, child in enumerate(children) if child.type == "strong_close")
    date = "".join(child.content for child in children[1:end]).strip()
    del children[: end + 1]
    if children and children[0].type == "text":
        children[0].content = _DATE_SEPARATOR.sub("", children[0].content, count=1)
    return date


def _list_opener(tokens: list[Token], item_index: int) -> Token:
    return next(
        tokens[i]
        for i in range(item_index - 1, -1, -1)
        if tokens[i].type in ("bullet_list_open", "ordered_list_open") and tokens[i].level == 0
    )


def _take_level(children: list[Token]) -> str | None:
    """Remove an italic ``*Level ...*`` from the item; return its text."""
    for index in range(len(children) - 2):
        window = children[index : index + 3]
        if [c.type for c in window] == ["em_open", "text", "em_close"] and _LEVEL.match(
            window[1].content
        ):
            del children[index : index + 3]
            if index and children[index - 1].type == "text":
                children[index - 1].content = children[index - 1].content.rstrip()
            return window[1].content.strip()
    return None


def _render_list_open(self, tokens, idx, options, env):
    if tokens[idx].meta.get("dated"):
        return '<table class="dated" role="presentation" width="100%"><tbody>\n'
    return self.renderToken(tokens, idx, options, env)


def _render_list_close(self, tokens, idx, options, env):
    opener_type = tokens[idx].type.replace("_close", "_open")
    opener = next(
        t for t in reversed(tokens[:idx]) if t.type == opener_type and t.level == tokens[idx].level
    )
    if opener.meta.get("dated"):
        return "</tbody></table>\n"
    return self.renderToken(tokens, idx, options, env)


def _render_item_open(self, tokens, idx, options, env):
    if _in_dated_list(tokens, idx):
        meta = tokens[idx].meta
        date = escape(meta.get("date", ""))
        if meta.get("level"):
            date += f'<br><span class="level">{escape(meta["level"])}</span>'
        return f'<tr><td class="dated-date">{date}</td><td class="dated-what">'
    return self.renderToken(tokens, idx, options, env)


def _render_item_close(self, tokens, idx, options, env):
    if _in_dated_list(tokens, idx):
        return "</td></tr>\n"
    return self.renderToken(tokens, idx, options, env)


def _in_dated_list(tokens: list[Token], idx: int) -> bool:
    return tokens[idx].level == 1 and _list_opener(tokens, idx).meta.get("dated", False)


def _markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark").enable("table")
    for list_type in ("bullet_list", "ordered_list"):
        md.add_render_rule(f"{list_type}_open", _render_list_open)
        md.add_render_rule(f"{list_type}_close", _render_list_close)
    md.add_render_rule("list_item_open", _render_item_open)
    md.add_render_rule("list_item_close", _render_item_close)
    return md


_MD = _markdown()


# --- template ------------------------------------------------------------------------


def template_dirs(edition: Edition, settings: Settings, templates_dir: Path | None) -> list[Path]:
    """Where templates are looked up, first match wins, file by file.

    An explicit folder (``--templates`` or MAILER_TEMPLATES), then the project's
    ``templates/``, then the packaged default, so a project can override a single
    partial and inherit the rest.
    """
    dirs: list[Path] = []
    explicit = templates_dir or settings.templates_dir
    if explicit is not None:
        if not Path(explicit).is_dir():
            raise InputError("templates folder not found", path=explicit, hint="check --templates")
        dirs.append(Path(explicit))
    project_templates = edition.project_root / "templates"
    if project_templates.is_dir():
        dirs.append(project_templates)
    dirs.append(Path(str(files("mailer.templates"))))
    return dirs


def _fill_template(
    edition: Edition,
    settings: Settings,
    templates_dir: Path | None,
    masthead: Masthead,
    sections: Sequence[SectionView],
) -> tuple[str, Path]:
    dirs = template_dirs(edition, settings, templates_dir)
    env = _environment(tuple(str(d) for d in dirs))
    name = edition.template + TEMPLATE_SUFFIX
    try:
        template = env.get_template(name)
        return template.render(edition=masthead, sections=sections), Path(template.filename)
    except jinja2.TemplateNotFound as exc:
        looked = ", ".join(str(d) for d in dirs)
        raise InputError(
            f"template {exc.name!r} not found (looked in {looked})",
            path=edition.toml_path,
            hint="fix 'template' in edition.toml or add the file to templates/",
        ) from None
    except jinja2.TemplateSyntaxError as exc:
        raise InputError(
            f"template error: {exc.message}",
            path=exc.filename or name,
            line=exc.lineno,
            hint="fix the Jinja syntax in the template",
        ) from None
    except jinja2.TemplateError as exc:  # UndefinedError and other runtime errors
        path, line = _template_frame(exc)
        raise InputError(
            f"template error: {exc.message}",
            path=path or name,
            line=line,
            hint="check the names the template uses at that line",
        ) from None


@lru_cache(maxsize=8)
def _environment(dirs: tuple[str, ...]) -> jinja2.Environment:
    """One environment per lookup path, so compiled templates are reused between
    renders; Jinja still reloads a template whose file has changed."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(list(dirs)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _template_frame(exc: BaseException) -> tuple[str | None, int | None]:
    """Jinja rewrites tracebacks so template frames carry the template's file and line."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(".j2")]
    return (frames[-1].filename, frames[-1].lineno) if frames else (None, None)


def _compile_mjml(source: str, template_path: Path) -> str:
    try:
        # fonts={} stops MJML linking Google Fonts: a build never touches the network.
        return mjml2html(source, fonts={}, disable_comments=True)
    except Exception as exc:  # mjml-python raises bare ValueError/RuntimeError
        # mjml-python gives a character offset into the filled template, not a line.
        where = _MJML_POSITION.search(str(exc))
        line = source.count("\n", 0, int(where[1])) + 1 if where else None
        at = f" (line {line} of the filled MJML)" if line else ""
        raise InputError(
            f"MJML error: {exc}{at}",
            path=template_path,
            hint="the template does not produce valid MJML; check its tags",
        ) from None


def inline_css(html: str) -> str:
    """Move CSS onto elements (most mail clients drop <style>), keeping @media rules."""
    inlined = Premailer(
        _MJML_RESET.sub(r'\g<1> data-premailer="ignore">', html, count=1),
        allow_network=False,
        remove_classes=False,  # @media and dark-mode rules select by class
        strip_important=False,  # ... and need !important to beat the inline styles
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()
    return "<!doctype html>\n" + inlined


def _content_hash(templates: list[MergeTemplate], expressions: tuple[str, ...]) -> str:
    # The token nonce is random per render but never part of a chunk, so this is stable.
    payload = json.dumps([[t.chunks, t.slots] for t in templates] + [expressions])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@contextmanager
def _timed(timings: dict[str, float], stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] += time.perf_counter() - start
