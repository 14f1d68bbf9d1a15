"""Link checking against a real HTTP server on 127.0.0.1: every way a link can fail."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from mailer.checks import check_message
from mailer.edition import load_edition
from mailer.links import LinkChecker, check_links, parse_retry_after

PAGE = """<!doctype html><html><body>
<h2 id="events">Events</h2><a name="archive"></a><p>Partnership news.</p>
</body></html>"""


@contextmanager
def threaded_server() -> Iterator[HTTPServer]:
    """Threaded, so a slow page does not hold up the others (the plugin's is not)."""
    httpserver = HTTPServer(host="127.0.0.1", threaded=True)
    httpserver.start()
    try:
        yield httpserver
    finally:
        httpserver.clear()
        httpserver.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[HTTPServer]:
    with threaded_server() as httpserver:
        serve(httpserver)
        yield httpserver


def serve(httpserver: HTTPServer) -> None:
    def redirect(status: int, to: str):
        return lambda request: Response(status=status, headers={"Location": to})

    routes = {
        "/ok": lambda request: Response(PAGE, content_type="text/html"),
        "/missing": lambda request: Response("gone", status=404),
        "/broken": lambda request: Response("oops", status=500),
        "/moved": redirect(301, "/ok"),
        "/moved-308": redirect(308, "/ok"),
        "/found": redirect(302, "/ok"),
        "/see-other": redirect(303, "/ok"),
        "/temporary": redirect(307, "/ok"),
        "/loop-a": redirect(302, "/loop-b"),
        "/loop-b": redirect(302, "/loop-a"),
        "/slow": slow,
        "/no-head": no_head,
        "/busy": once_busy(),
        "/always-busy": lambda request: Response(status=429, headers={"Retry-After": "3600"}),
        "/pdf": lambda request: Response(b"%PDF", content_type="application/pdf"),
    }
    for path, handler in routes.items():
        httpserver.expect_request(path).respond_with_handler(handler)
    for hop in range(15):
        httpserver.expect_request(f"/chain/{hop}").respond_with_handler(
            redirect(302, f"/chain/{hop + 1}")
        )


def slow(request: Request) -> Response:
    time.sleep(1.5)
    return Response("late")


def no_head(request: Request) -> Response:
    return Response(status=405) if request.method == "HEAD" else Response("hello")


def once_busy():
    calls = {"n": 0}

    def handler(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return Response(status=429, headers={"Retry-After": "1"})
        return Response("ready")

    return handler


def check_one(server: HTTPServer, path: str, **options) -> tuple[str, ...]:
    url = server.url_for(path)
    result = check_links([url], **{"timeout": 5.0, **options})[url]
    return tuple(finding.code for finding in result.findings)


def severity(server: HTTPServer, path: str) -> str:
    url = server.url_for(path)
    (finding,) = check_links([url], timeout=5.0)[url].findings
    return finding.severity


def test_a_page_answering_200_is_fine(server):
    assert check_one(server, "/ok") == ()


def test_404_is_an_error(server):
    assert check_one(server, "/missing") == ("http-404",)
    assert severity(server, "/missing") == "error"


def test_500_is_an_error(server):
    assert check_one(server, "/broken") == ("http-500",)
    assert severity(server, "/broken") == "error"


@pytest.mark.parametrize("path", ["/moved", "/moved-308"])
def test_permanent_redirect_is_a_warning_naming_the_final_url(server, path):
    url = server.url_for(path)
    result = check_links([url], timeout=5.0)[url]
    (finding,) = result.findings
    assert (finding.severity, finding.code) == ("warning", "redirect-permanent")
    assert server.url_for("/ok") in finding.message
    assert result.final_url == server.url_for("/ok")


@pytest.mark.parametrize("path", ["/found", "/see-other", "/temporary"])
def test_temporary_redirects_are_fine(server, path):
    assert check_one(server, path) == ()


def test_redirect_loop_is_an_error(server):
    assert check_one(server, "/loop-a") == ("redirect-loop",)


def test_too_many_redirects_is_an_error(server):
    assert check_one(server, "/chain/0") == ("too-many-redirects",)


def test_slow_page_past_the_timeout_is_an_error(server):
    started = time.perf_counter()
    assert check_one(server, "/slow", timeout=0.5) == ("timeout",)
    assert time.perf_counter() - started < 1.4


def test_head_refused_falls_back_to_get(server):
    server.clear_log()
    assert check_one(server, "/no-head") == ()
    assert [request.method for request, _ in server.log] == ["HEAD", "GET"]


def test_429_waits_for_retry_after_then_succeeds(server):
    started = time.perf_counter()
    assert check_one(server, "/busy") == ()
    assert time.perf_counter() - started >= 0.9


def test_429_wait_is_capped_and_persistent_429_is_an_error(server):
    url = server.url_for("/always-busy")
    started = time.perf_counter()
    checker = LinkChecker(timeout=5.0, max_retry_wait=0.05)
    result = asyncio.run(checker.check([url]))[url]
    assert [f.code for f in result.findings] == ["http-429"]
    assert time.perf_counter() - started < 2


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("7") == 7
    later = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= parse_retry_after(later) <= 61
    assert parse_retry_after("soon") == 1
    assert parse_retry_after(None) == 1


def test_fragment_present_on_the_page_is_fine(server):
    assert check_one(server, "/ok#events") == ()
    assert check_one(server, "/ok#archive") == ()


def test_fragment_missing_from_the_page_is_a_warning(server):
    url = server.url_for("/ok") + "#training"
    (finding,) = check_links([url], timeout=5.0)[url].findings
    assert (finding.severity, finding.code) == ("warning", "missing-fragment")
    assert "#training" in finding.message


def test_fragments_on_non_html_pages_are_not_checked(server):
    assert check_one(server, "/pdf#page=2") == ()


def test_refused_connection_is_an_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    assert [f.code for f in check_links([url], timeout=2.0)[url].findings] == ["connection-refused"]


def test_unresolvable_host_is_a_dns_error():
    url = "https://nowhere.invalid/page"  # RFC 2606: never resolves
    try:
        socket.getaddrinfo("nowhere.invalid", 443)
    except socket.gaierror:
        pass
    else:
        pytest.skip("this resolver answers for .invalid")
    assert [f.code for f in check_links([url], timeout=2.0)[url].findings] == ["dns-failure"]


def test_each_distinct_url_is_fetched_once(server):
    server.clear_log()
    ok = server.url_for("/ok")
    results = check_links([ok, ok, ok + "#events", ok + "#events", ok + "#nope"], timeout=5.0)
    assert len(server.log) == 1
    assert set(results) == {ok, ok + "#events", ok + "#nope"}


def test_progress_reports_each_distinct_page(server):
    seen: list[tuple[int, int]] = []
    urls = [server.url_for(p) for p in ("/ok", "/found", "/missing")]
    check_links(urls + urls, timeout=5.0, progress=lambda done, total: seen.append((done, total)))
    assert sorted(seen) == [(1, 3), (2, 3), (3, 3)]


@pytest.fixture
def gauge() -> Iterator[tuple[HTTPServer, dict[str, int]]]:
    """A server whose /n/<i> pages take 100 ms and record the most requests in flight."""
    state = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def handler(request: Request) -> Response:
        with lock:
            state["now"] += 1
            state["peak"] = max(state["peak"], state["now"])
        time.sleep(0.1)
        with lock:
            state["now"] -= 1
        return Response("ok")

    with threaded_server() as httpserver:
        for i in range(12):
            httpserver.expect_request(f"/n/{i}").respond_with_handler(handler)
        yield httpserver, state


def test_requests_to_one_host_are_bounded_but_concurrent(gauge):
    httpserver, state = gauge
    urls = [httpserver.url_for(f"/n/{i}") for i in range(12)]
    asyncio_run_checker(urls, concurrency=20, per_host=4)
    assert 1 < state["peak"] <= 4


def test_requests_overall_are_bounded(gauge):
    httpserver, state = gauge
    port = httpserver.port
    urls = [f"http://127.0.0.1:{port}/n/{i}" for i in range(6)]
    urls += [f"http://localhost:{port}/n/{i}" for i in range(6, 12)]
    asyncio_run_checker(urls, concurrency=3, per_host=4)
    assert 1 < state["peak"] <= 3


def asyncio_run_checker(urls: list[str], **limits: int) -> None:
    results = check_links(urls, timeout=5.0, **limits)
    assert all(not result.findings for result in results.values())


def test_network_problems_are_traced_to_the_section_line(server, make_edition):
    missing, moved = server.url_for("/missing"), server.url_for("/moved")
    sections = {
        "01-news.md": f"# News\n\nRead [the annual report]({missing}).\n",
        "02-more.md": f"# More\n\nSee [the strategy]({moved}).\n",
    }
    edition = load_edition(make_edition(sections))
    html = (
        f"<html><body><p>Test preheader</p><a href='{missing}'>the annual report</a>"
        f"<a href='{moved}'>the strategy</a><a href='mailto:unsubscribe@example.org'>"
        "Unsubscribe</a></body></html>"
    )
    report = check_message(edition, "Subject", html, timeout=5.0)
    found = [
        (p.code, p.file.name, p.line, p.url)
        for p in report.problems
        if p.code != "insecure-link"  # the test server speaks plain http
    ]
    assert found == [
        ("http-404", "01-news.md", 3, missing),
        ("redirect-permanent", "02-more.md", 3, moved),
    ]
    assert (report.links, report.ok) == (3, 1)


def test_offline_mode_makes_no_requests(server, make_edition):
    server.clear_log()
    edition = load_edition(make_edition())
    missing = server.url_for("/missing")
    html = (
        f"<html><body><p>Test preheader</p><a href='{missing}'>the annual report</a>"
        "<a href='https://example.org/unsubscribe'>Unsubscribe</a></body></html>"
    )
    report = check_message(edition, "Subject", html, offline=True)
    assert server.log == []
    assert [p.code for p in report.problems] == ["insecure-link"]


def test_placeholder_hosts_are_never_fetched(make_edition):
    # example.com is on the internet: a placeholder must be reported, not requested.
    edition = load_edition(make_edition())
    html = (
        "<html><body><p>Test preheader</p><a href='http://example.com/x'>Annual report</a>"
        "<a href='mailto:unsubscribe@example.org'>Unsubscribe</a></body></html>"
    )
    report = check_message(edition, "Subject", html, timeout=0.5)
    assert [p.code for p in report.problems] == ["placeholder-link"]


@pytest.mark.parametrize("url", ["http://[::1/page", "ftp://127.0.0.1/file"])
def test_malformed_or_unsupported_urls_are_errors_not_crashes(url):
    assert [f.code for f in check_links([url], timeout=1.0)[url].findings] == ["invalid-url"]


class KeepAliveHandler(BaseHTTPRequestHandler):
    """Answers HEAD on a kept-alive connection (Werkzeug's server closes every one)."""

    protocol_version = "HTTP/1.1"
    ports: ClassVar[list[int]] = []

    def do_HEAD(self) -> None:
        self.ports.append(self.client_address[1])
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_connections_are_reused_between_head_requests():
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAliveHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        urls = [f"http://127.0.0.1:{server.server_port}/page/{i}" for i in range(3)]
        check_links(urls, timeout=5.0, concurrency=1, per_host=1)
    finally:
        server.shutdown()
        server.server_close()
    assert len(KeepAliveHandler.ports) == 3
    assert len(set(KeepAliveHandler.ports)) == 1
