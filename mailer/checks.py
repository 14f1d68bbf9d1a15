"""Find what is wrong with an edition before it reaches thousands of inboxes.

Everything is checked on the exact HTML that would be sent (rendered, inlined, with
the real unsubscribe URL), because that is what readers click. Each problem is then
traced back to the section file and line the author edits, since an error that
says only "somewhere in 80 KB of table markup" is no help.

Offline checks (placeholders, relative URLs, mailto/tel syntax, alt text, size,
subject, unsubscribe link) are what ``mailer send`` and ``mailer due`` run before
sending; the network checks in :mod:`mailer.links` are added by ``mailer check``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from email_validator import EmailNotValidError, validate_email
from lxml import html as lxml_html

from mailer.config import Settings
from mailer.edition import Edition
from mailer.links import check_links
from mailer.render import SIZE_LIMIT, SIZE_WARN, RenderedEdition, template_dirs

SUBJECT_MAX = 78  # longer subjects are cut off in most inbox lists
PLACEHOLDER_HOSTS = frozenset({"example.com", "www.example.com"})
PLACEHOLDER_MARKERS = ("TODO", "FIXME", "XXX")
VAGUE_LINK_TEXT = frozenset(
    {"click here", "here", "read more", "more", "link", "this link", "click", "click this link"}
)
TINY_IMAGE_PX = 10  # spacers and tracking pixels may have alt=""
TEL_PATTERN = re.compile(r"\+?[\d\s\-().]+")
MIN_TEL_DIGITS = 5
WEB_SCHEMES = ("http", "https")
IMAGE_SCHEMES = frozenset({"http", "https", "cid", "data"})
LINK_SCHEMES = frozenset({"http", "https", "mailto", "tel"})


@dataclass(frozen=True)
class Problem:
    severity: str  # "error" | "warning"
    code: str  # stable machine code, e.g. "placeholder-link", "http-404"
    message: str
    file: Path | None = None
    line: int | None = None
    url: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "file": str(self.file) if self.file else None,
            "line": self.line,
            "url": self.url,
        }


@dataclass
class CheckReport:
    problems: list[Problem]
    links: int  # distinct link and image URLs in the HTML
    ok: int  # of those, how many have no problem at all
    seconds: float

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def failed(self, strict: bool = False) -> bool:
        """Errors always fail; warnings fail only when the user asked for strictness."""
        return bool(self.errors or (strict and self.warnings))


@dataclass(frozen=True)
class Reference:
    """A link or image in the final HTML, with what the lint rules need to know."""

    kind: str  # "link" | "image"
    url: str
    text: str = ""  # link text, or the alt text of images inside the link
    alt: str | None = None  # images: None when the attribute is missing
    tiny: bool = False  # images: declared no bigger than a spacer


def check_edition(
    rendered: RenderedEdition,
    settings: Settings,
    *,
    offline: bool = False,
    timeout: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Check the message exactly as a reader would get it, real unsubscribe link included."""
    preview = rendered.preview()
    return check_message(
        rendered.edition,
        preview.subject,
        preview.html,
        context={"unsubscribe_url": rendered.preview_unsubscribe},
        templates=template_dirs(rendered.edition, settings, None),
        offline=offline,
        timeout=timeout,
        progress=progress,
    )


def check_message(
    edition: Edition,
    subject: str,
    html: str,
    *,
    context: Mapping[str, str] | None = None,
    templates: Sequence[Path] = (),
    offline: bool = False,
    timeout: float = 10.0,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Check one finished message (subject and HTML) that was rendered from ``edition``.

    ``context`` holds the merge values the HTML was personalised with, so a link that
    came from a merge field can be traced to where the field is used; ``templates``
    are the template folders, first match wins, as the renderer looks them up.
    """
    started = time.perf_counter()
    context = dict(context or {})
    tree = lxml_html.document_fromstring(html) if html.strip() else None
    references = extract_references(tree)
    anchors = frozenset(tree.xpath("//@id | //a/@name")) if tree is not None else frozenset()
    found: list[Problem] = []
    for reference in references:
        found += lint_reference(reference, anchors)
    text = " ".join(tree.text_content().split()) if tree is not None else ""
    found += lint_message(edition, subject, html, text, references, context.get("unsubscribe_url"))
    if not offline:
        found += network_problems(references, timeout, progress)
    locator = Locator(edition, templates, context)
    problems = sorted(locator.place(_distinct(found)), key=locator.sort_key)
    urls = {reference.url for reference in references}
    troubled = {problem.url for problem in problems}
    return CheckReport(
        problems=problems,
        links=len(urls),
        ok=len(urls - troubled),
        seconds=time.perf_counter() - started,
    )


# --- extraction ----------------------------------------------------------------------


def extract_references(tree: lxml_html.HtmlElement | None) -> list[Reference]:
    """Links (a, area) and images (img, background attributes) in document order."""
    if tree is None:
        return []
    references = []
    for element in tree.iter("a", "area", "img"):
        if element.tag == "img":
            references.append(_image(element))
        elif element.get("href") is not None:
            references.append(Reference("link", element.get("href").strip(), _link_text(element)))
    for element in tree.xpath("//*[@background]"):
        references.append(Reference("image", element.get("background").strip(), alt="", tiny=True))
    return references


def _image(element: lxml_html.HtmlElement) -> Reference:
    return Reference(
        "image",
        (element.get("src") or "").strip(),
        alt=element.get("alt"),
        tiny=any(_pixels(element.get(side)) <= TINY_IMAGE_PX for side in ("width", "height")),
    )


def _pixels(value: str | None) -> float:
    digits = re.match(r"\s*(\d+(?:\.\d+)?)\s*(px)?\s*$", value or "")
    return float(digits.group(1)) if digits else float("inf")


def _link_text(element: lxml_html.HtmlElement) -> str:
    text = " ".join(element.text_content().split())
    if text or element.tag == "area":
        return text or (element.get("alt") or "")
    return " ".join(img.get("alt") or "" for img in element.iter("img")).strip()


# --- offline rules ---------------------------------------------------------------------


def lint_reference(reference: Reference, anchors: frozenset[str]) -> list[Problem]:
    """Rules for one link or image that need no network."""
    problems = _url_problems(reference, anchors)
    if reference.kind == "image":
        problems += _alt_problems(reference)
    elif reference.url and not reference.url.startswith("#"):
        problems += _text_problems(reference)
    return problems


def _url_problems(reference: Reference, anchors: frozenset[str]) -> list[Problem]:
    url = reference.url
    what = "image" if reference.kind == "image" else "link"
    if not url:
        code = "image-missing-src" if reference.kind == "image" else "empty-link"
        return [Problem("error", code, f"{what} has an empty address", url=url)]
    if url == "#" or any(marker in url for marker in PLACEHOLDER_MARKERS):
        return [Problem("error", "placeholder-link", f"placeholder {what}: {url!r}", url=url)]
    if url.startswith("#"):
        return _in_page_anchor(url, anchors)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return [Problem("error", "invalid-url", f"malformed {what} address: {exc}", url=url)]
    scheme = parts.scheme.lower()
    if not scheme:
        return [
            Problem(
                "error",
                "relative-url",
                f"relative {what} address breaks in email: use a full https:// URL",
                url=url,
            )
        ]
    if scheme == "javascript":
        return [
            Problem("error", "javascript-link", "javascript: links do not work in email", url=url)
        ]
    allowed = IMAGE_SCHEMES if reference.kind == "image" else LINK_SCHEMES
    if scheme not in allowed:
        return [
            Problem("warning", "unsupported-scheme", f"{scheme}: {what}s may not work", url=url)
        ]
    if scheme in WEB_SCHEMES:
        return _web_problems(url, parts.hostname or "", what)
    if scheme == "mailto":
        return _mailto_problems(url, parts.path)
    if scheme == "tel":
        return _tel_problems(url, parts.path)
    return []


def _in_page_anchor(url: str, anchors: frozenset[str]) -> list[Problem]:
    if unquote(url[1:]) in anchors:
        return []
    return [Problem("warning", "missing-fragment", f"nothing in the email has id {url!r}", url=url)]


def _web_problems(url: str, host: str, what: str) -> list[Problem]:
    host = host.lower()
    if not host:
        return [Problem("error", "relative-url", f"{what} address has no host", url=url)]
    if host in PLACEHOLDER_HOSTS or "placeholder" in host:
        return [Problem("error", "placeholder-link", f"placeholder {what}: {url}", url=url)]
    if url.lower().startswith("http://"):
        return [Problem("warning", "insecure-link", "use https:// instead of http://", url=url)]
    return []


def _mailto_problems(url: str, path: str) -> list[Problem]:
    addresses = [unquote(part).strip() for part in path.split(",") if part.strip()]
    if not addresses:
        return [Problem("error", "invalid-email", "mailto: link has no address", url=url)]
    problems = []
    for address in addresses:
        try:
            validate_email(address, check_deliverability=False)
        except EmailNotValidError as exc:
            problems.append(
                Problem("error", "invalid-email", f"bad address {address!r}: {exc}", url=url)
            )
    return problems


def _tel_problems(url: str, number: str) -> list[Problem]:
    number = unquote(number).strip()
    digits = sum(char.isdigit() for char in number)
    if TEL_PATTERN.fullmatch(number) and digits >= MIN_TEL_DIGITS:
        return []
    return [
        Problem(
            "error",
            "invalid-phone",
            f"{number!r} is not a phone number (digits, spaces, + - and brackets only)",
            url=url,
        )
    ]


def _alt_problems(image: Reference) -> list[Problem]:
    if image.alt is None:
        return [
            Problem(
                "error",
                "image-missing-alt",
                "image has no alt text: screen readers and blocked images show nothing",
                url=image.url,
            )
        ]
    if not image.alt.strip() and not image.tiny:
        return [
            Problem(
                "warning",
                "image-empty-alt",
                'image has alt="": fine only if it is decorative',
                url=image.url,
            )
        ]
    return []


def _text_problems(link: Reference) -> list[Problem]:
    text = link.text.strip()
    if not text:
        return [
            Problem(
                "warning", "empty-link-text", "link has no text or image alt text", url=link.url
            )
        ]
    if text.lower().rstrip(".!:…") in VAGUE_LINK_TEXT or _looks_like_url(text):
        return [
            Problem(
                "warning",
                "vague-link-text",
                f"link text {text!r} does not say where it goes (screen readers list links "
                "by their text)",
                url=link.url,
            )
        ]
    return []


def _looks_like_url(text: str) -> bool:
    return bool(re.match(r"(https?://|www\.)\S+$", text, re.IGNORECASE))


def lint_message(
    edition: Edition,
    subject: str,
    html: str,
    text: str,
    references: list[Reference],
    unsubscribe_url: str | None,
) -> list[Problem]:
    """Rules for the message as a whole: size, subject, preheader, unsubscribe, sections."""
    problems = _size_problems(html)
    problems += _subject_problems(edition, subject)
    problems += _preheader_problems(edition, text)
    if not _has_unsubscribe(references, unsubscribe_url):
        problems.append(
            Problem(
                "error",
                "missing-unsubscribe",
                "no unsubscribe link in the email"
                + ("" if unsubscribe_url else ": set MAILER_UNSUBSCRIBE_URL or _MAILTO"),
            )
        )
    for section in edition.sections:
        if not re.sub(r"<!--.*?-->", "", section.body, flags=re.DOTALL).strip():
            problems.append(
                Problem(
                    "warning",
                    "empty-section",
                    "section has no text",
                    file=section.path,
                    line=section.body_line,
                )
            )
    return problems


def _size_problems(html: str) -> list[Problem]:
    size = len(html.encode("utf-8"))
    kb = f"{size / 1024:.0f} KB"
    if size > SIZE_LIMIT:
        return [
            Problem(
                "error",
                "gmail-clipping",
                f"HTML is {kb}: Gmail clips messages over 102 KB, hiding the footer "
                "and unsubscribe link",
            )
        ]
    if size > SIZE_WARN:
        return [Problem("warning", "html-size", f"HTML is {kb}, close to Gmail's 102 KB clip")]
    return []


def _subject_problems(edition: Edition, subject: str) -> list[Problem]:
    where = {"file": edition.toml_path, "line": _toml_key_line(edition.toml_path, "subject")}
    if not subject.strip():
        return [Problem("error", "empty-subject", "the subject is empty", **where)]
    if len(subject) > SUBJECT_MAX:
        return [
            Problem(
                "warning",
                "long-subject",
                f"subject is {len(subject)} characters; inboxes cut it off after about "
                f"{SUBJECT_MAX}",
                **where,
            )
        ]
    return []


def _preheader_problems(edition: Edition, text: str) -> list[Problem]:
    """The preheader is the inbox preview line; without it clients show stray body text."""
    where = {"file": edition.toml_path, "line": _toml_key_line(edition.toml_path, "preheader")}
    preheader = " ".join(edition.preheader.split())
    if not preheader:
        return [Problem("warning", "missing-preheader", "no preheader (inbox preview)", **where)]
    if "{{" in preheader:
        return []  # personalised: its text differs per reader, so it cannot be looked up
    if preheader not in text:
        return [
            Problem(
                "warning",
                "missing-preheader",
                "the preheader does not appear in the HTML (the template leaves it out)",
                **where,
            )
        ]
    return []


def _has_unsubscribe(references: list[Reference], unsubscribe_url: str | None) -> bool:
    return any(
        ref.kind == "link"
        and ((unsubscribe_url and ref.url == unsubscribe_url) or "unsubscribe" in ref.url.lower())
        for ref in references
    )


def _toml_key_line(path: Path, key: str) -> int | None:
    for number, line in _numbered_lines(path):
        if re.match(rf"\s*{key}\s*=", line):
            return number
    return None


# --- network -------------------------------------------------------------------------------


def network_problems(
    references: list[Reference],
    timeout: float,
    progress: Callable[[int, int], None] | None,
) -> list[Problem]:
    """Fetch every web link and image that is not already known to be a placeholder."""
    urls = [ref.url for ref in references if _worth_fetching(ref.url)]
    results = check_links(urls, timeout=timeout, progress=progress)
    return [
        Problem(finding.severity, finding.code, finding.message, url=url)
        for url, result in results.items()
        for finding in result.findings
    ]


def _worth_fetching(url: str) -> bool:
    if not url.lower().startswith(("http://", "https://")):
        return False
    known = _url_problems(Reference("link", url), frozenset())
    return not any(problem.severity == "error" for problem in known)


# --- tracing problems to source files -------------------------------------------------------


class Locator:
    """Finds the section file and line (or template file) each URL came from.

    The rendered HTML keeps no record of its origin, so the URL's text is searched
    for in the section sources (front matter included), then in the templates.
    Short URLs such as ``#`` are only matched in link syntax, never as bare text,
    or every heading would match.
    """

    def __init__(
        self, edition: Edition, templates: Sequence[Path], context: Mapping[str, str]
    ) -> None:
        self.sections = [section.path for section in edition.sections]
        self.templates = _template_files(templates)
        self.lines = {path: list(_numbered_lines(path)) for path in self.sections + self.templates}
        self.order = {path: index for index, path in enumerate([edition.toml_path, *self.sections])}
        self.context = context

    def place(self, problems: Iterable[Problem]) -> Iterator[Problem]:
        """Each problem once per place its URL is written; unplaced problems stay as they are."""
        for problem in problems:
            places = [] if problem.file or problem.url is None else self.find(problem.url)
            if not places:
                yield problem
            for path, line in places:
                yield replace(problem, file=path, line=line)

    def find(self, url: str) -> list[tuple[Path, int]]:
        for matches in (_mentions(url, self.context), _basename_mention(url)):
            if matches is None:
                continue
            for files in (self.sections, self.templates):
                places = [
                    (path, number)
                    for path in files
                    for number, line in self.lines[path]
                    if matches(line)
                ]
                if places:
                    return places
        return []

    def sort_key(self, problem: Problem) -> tuple:
        group = (
            self.order.get(problem.file, len(self.order)) if problem.file else len(self.order) + 1
        )
        return (group, str(problem.file or ""), problem.line or 0, problem.severity != "error")


# Where a written URL can end: so ".../a" is not found inside ".../about".
URL_END = r"(?=$|[\s)\"'<>\]|,;!*_]|[.:?](?:\s|$))"


def _mentions(url: str, context: Mapping[str, str]) -> Callable[[str], bool]:
    """A test for whether a source line writes ``url`` (or the merge field that fills it)."""
    merge_names = [
        name for name, value in context.items() if value == url or (value and value in url)
    ]
    if len(url) >= 4:
        forms = {url, unquote(url), url.replace("&", "&amp;")}
        written = re.compile("|".join(re.escape(form) + URL_END for form in forms))
    else:  # "", "#", "#a": only as a link target, else every heading would match
        forms = {f"]({url})", *(f"{attr}={q}{url}{q}" for attr in ("href", "src") for q in "\"'")}
        written = re.compile("|".join(re.escape(form) for form in forms))
    front_matter = re.compile(rf"^\s*[\w-]+:\s*(['\"]?){re.escape(url)}\1\s*$")

    def matches(line: str) -> bool:
        return (
            bool(written.search(line))
            or bool(url and front_matter.match(line))
            or any(name in line and "{{" in line for name in merge_names)
        )

    return matches


def _basename_mention(url: str) -> Callable[[str], bool] | None:
    """Images are often written as a file name the renderer turns into a full URL."""
    name = url.partition("#")[0].partition("?")[0].rsplit("/", 1)[-1]
    if "." not in name or len(name) < 5:
        return None
    return lambda line: name in line


def _template_files(folders: Sequence[Path]) -> list[Path]:
    """The template files in use: a file in an earlier folder hides one of the same name."""
    chosen: dict[Path, Path] = {}
    for folder in folders:
        if folder.is_dir():
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    chosen.setdefault(path.relative_to(folder), path)
    return list(chosen.values())


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return
    yield from enumerate(text.splitlines(), start=1)


def _distinct(problems: Iterable[Problem]) -> list[Problem]:
    """The same URL can appear many times in the HTML; report each finding once."""
    return list(dict.fromkeys(problems))
