"""Check web links over HTTP, concurrently, politely and once each.

A newsletter cannot be recalled, so every http(s) link is fetched before sending.
Servers are treated the way a careful browser would: HEAD first (cheap), GET when a
server refuses HEAD, redirects followed by hand so a loop or a permanent move can be
reported, and ``429 Too Many Requests`` answered by waiting as asked, within a cap.
Concurrency is bounded overall and per host so a newsletter full of links to one
partner's site does not look like an attack on it.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import unquote, urljoin, urlsplit

import httpx
from lxml import etree, html

from mailer import __version__

MAX_REDIRECTS = 10
RETRY_WITH_GET = frozenset({403, 405, 501})  # servers that refuse or mishandle HEAD
PERMANENT_REDIRECTS = frozenset({301, 308})
RATE_LIMIT_RETRIES = 2
MAX_PAGE_BYTES = 5_000_000  # enough to find an anchor; never read a huge download
USER_AGENT = f"mailer-link-check/{__version__} (newsletter link checker)"


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a URL; the caller adds where in the edition it came from."""

    severity: str  # "error" | "warning"
    code: str
    message: str


@dataclass(frozen=True)
class LinkResult:
    url: str
    status: int | None = None
    final_url: str | None = None
    findings: tuple[Finding, ...] = ()


class _Answer(NamedTuple):
    """One HTTP response, reduced to what the checker decides on."""

    status: int
    location: str | None
    retry_after: str | None
    anchors: frozenset[str] | None  # ids and names, when the page was read


@dataclass
class _Fetched:
    """What a chain of requests for one URL (without its fragment) came to."""

    status: int | None = None
    final_url: str | None = None
    anchors: frozenset[str] | None = None  # ids and names, when the page was read
    findings: list[Finding] = field(default_factory=list)


@dataclass
class LinkChecker:
    timeout: float = 10.0
    concurrency: int = 20
    per_host: int = 4
    max_retry_wait: float = 30.0
    _overall: asyncio.Semaphore = field(init=False, repr=False)
    _hosts: dict[str, asyncio.Semaphore] = field(init=False, repr=False, default_factory=dict)

    async def check(
        self, urls: Iterable[str], progress: Callable[[int, int], None] | None = None
    ) -> dict[str, LinkResult]:
        """Check each distinct URL once; URLs differing only in fragment share one fetch."""
        self._overall = asyncio.Semaphore(self.concurrency)
        self._hosts = {}
        pages: dict[str, set[str]] = {}  # URL without fragment -> fragments wanted
        distinct = list(dict.fromkeys(urls))
        for url in distinct:
            page, _, fragment = url.partition("#")
            pages.setdefault(page, set())
            if fragment:
                pages[page].add(unquote(fragment))
        done = 0

        async with httpx.AsyncClient(
            timeout=self.timeout,
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT, "Accept": "text/html,*/*;q=0.8"},
            limits=httpx.Limits(max_connections=self.concurrency),
        ) as client:

            async def one(page: str) -> tuple[str, _Fetched]:
                nonlocal done
                fetched = await self._fetch(client, page, need_body=bool(pages[page]))
                done += 1
                if progress is not None:
                    progress(done, len(pages))
                return page, fetched

            fetched = dict(await asyncio.gather(*(one(page) for page in pages)))
        return {url: _result(url, fetched[url.partition("#")[0]]) for url in distinct}

    async def _fetch(self, client: httpx.AsyncClient, url: str, *, need_body: bool) -> _Fetched:
        """Follow one URL's redirects by hand, noting permanent moves and loops."""
        outcome = _Fetched()
        seen = {url}
        current = url
        moved_permanently = False
        for _ in range(MAX_REDIRECTS + 1):
            try:
                answer = await self._request(client, current, need_body)
            except (httpx.HTTPError, httpx.InvalidURL, TimeoutError, OSError, ValueError) as exc:
                outcome.findings.append(_network_finding(exc, self.timeout))
                return outcome
            if answer.status not in range(300, 400) or not answer.location:
                outcome.status, outcome.final_url = answer.status, current
                outcome.anchors = answer.anchors
                if answer.status >= 400:
                    outcome.findings.append(_status_finding(answer.status))
                elif moved_permanently:
                    outcome.findings.append(
                        Finding(
                            "warning",
                            "redirect-permanent",
                            f"moved permanently to {current}; link there directly",
                        )
                    )
                return outcome
            moved_permanently |= answer.status in PERMANENT_REDIRECTS
            current = urljoin(current, answer.location).partition("#")[0]
            if current in seen:
                outcome.findings.append(
                    Finding("error", "redirect-loop", f"redirect loop back to {current}")
                )
                return outcome
            seen.add(current)
        outcome.findings.append(
            Finding("error", "too-many-redirects", f"more than {MAX_REDIRECTS} redirects")
        )
        return outcome

    async def _request(self, client: httpx.AsyncClient, url: str, need_body: bool) -> _Answer:
        """One hop: HEAD (or GET when the page must be read), retrying as the server asks."""
        method = "GET" if need_body else "HEAD"
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            async with self._slot(url):
                answer = await self._send(client, method, url, need_body)
                if method == "HEAD" and answer.status in RETRY_WITH_GET:
                    method = "GET"
                    answer = await self._send(client, method, url, need_body)
            if answer.status != 429 or attempt == RATE_LIMIT_RETRIES:
                break
            await asyncio.sleep(min(parse_retry_after(answer.retry_after), self.max_retry_wait))
        return answer

    async def _send(
        self, client: httpx.AsyncClient, method: str, url: str, need_body: bool
    ) -> _Answer:
        async with asyncio.timeout(self.timeout), client.stream(method, url) as response:
            anchors = None
            if need_body and response.status_code < 300 and _is_html(response):
                anchors = _anchors(await _read_capped(response))
            elif method == "HEAD":
                # Reading the (empty) body lets the connection be reused; a GET body we
                # do not need is left unread and its connection closed instead.
                await response.aread()
            return _Answer(
                response.status_code,
                response.headers.get("Location"),
                response.headers.get("Retry-After"),
                anchors,
            )

    def _slot(self, url: str) -> _Slots:
        host = urlsplit(url).netloc.lower()
        if host not in self._hosts:
            self._hosts[host] = asyncio.Semaphore(self.per_host)
        return _Slots(self._overall, self._hosts[host])


class _Slots:
    """Holds a per-host slot and an overall slot for the length of one request."""

    def __init__(self, overall: asyncio.Semaphore, host: asyncio.Semaphore) -> None:
        self.overall, self.host = overall, host

    async def __aenter__(self) -> None:
        await self.host.acquire()  # host first: waiting for a busy host holds no global slot
        await self.overall.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.overall.release()
        self.host.release()


def check_links(
    urls: Iterable[str],
    *,
    timeout: float = 10.0,
    concurrency: int = 20,
    per_host: int = 4,
    max_retry_wait: float = 30.0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, LinkResult]:
    """Synchronous entry point for the CLI and the library: one event loop per run."""
    checker = LinkChecker(
        timeout=timeout, concurrency=concurrency, per_host=per_host, max_retry_wait=max_retry_wait
    )
    return asyncio.run(checker.check(urls, progress))


def parse_retry_after(value: str | None) -> float:
    """Retry-After is either seconds or an HTTP date; anything unreadable means 1 s."""
    if not value:
        return 1.0
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - time.time())


def _result(url: str, fetched: _Fetched) -> LinkResult:
    findings = list(fetched.findings)
    fragment = unquote(url.partition("#")[2])
    if fragment and fetched.anchors is not None and fragment not in fetched.anchors:
        findings.append(
            Finding("warning", "missing-fragment", f"the page has no anchor '#{fragment}'")
        )
    return LinkResult(url, fetched.status, fetched.final_url, tuple(findings))


def _status_finding(status: int) -> Finding:
    try:
        reason = httpx.codes(status).phrase
    except ValueError:
        reason = "error"
    kind = "server error" if status >= 500 else "broken link"
    return Finding("error", f"http-{status}", f"{kind}: HTTP {status} {reason}")


def _network_finding(exc: BaseException, timeout: float) -> Finding:
    """Name the cause a reader can act on: typo in the host, server down, or slow."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return Finding("error", "timeout", f"no answer within {timeout:g} s")
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol | ValueError):
        return Finding("error", "invalid-url", f"malformed address: {exc}")
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, socket.gaierror):
            return Finding("error", "dns-failure", "the host name does not resolve (DNS)")
        if isinstance(chain, ConnectionRefusedError):
            return Finding("error", "connection-refused", "the server refused the connection")
        chain = chain.__cause__ or chain.__context__
    return Finding("error", "connection-error", f"could not connect: {exc}")


def _is_html(response: httpx.Response) -> bool:
    return "html" in response.headers.get("content-type", "text/html").lower()


async def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= MAX_PAGE_BYTES:
            break
    return bytes(body)


def _anchors(page: bytes) -> frozenset[str]:
    """Every target a #fragment can land on: element ids and <a name>."""
    if not page.strip():
        return frozenset()
    try:
        tree = html.fromstring(page)
    except (etree.ParserError, ValueError):
        return frozenset()
    return frozenset(tree.xpath("//@id | //a/@name"))
