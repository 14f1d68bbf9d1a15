"""The built HTML in real headless Chromium: phone and desktop widths, contrast, dark mode.

Uses Debian's /usr/bin/chromium through Playwright (never `playwright install`);
every request off the page is aborted, so nothing reaches the network.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.edition import load_edition
from mailer.render import render_edition
from tests.compose_helpers import SETTINGS
from tests.conftest import EXAMPLE_EDITION

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium"),
]

# Each text element's colour against the first opaque background behind it.
CONTRAST_SCRIPT = """
() => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const failures = [];
  const selector = 'h1, h2, h3, p, li, td, th, a, span.level';
  for (const el of document.querySelectorAll(selector)) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || el.closest('[style*="display:none"]')) continue;
    const style = getComputedStyle(el);
    const [a, b] = [lum(rgb(style.color)), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    const label = `${el.tagName} "${el.textContent.trim().slice(0, 30)}"`;
    if (ratio < needed) failures.push(`${label} ${ratio.toFixed(2)}`);
  }
  return failures;
}
"""


@pytest.fixture(scope="module")
def html() -> str:
    return render_edition(load_edition(EXAMPLE_EDITION), SETTINGS).preview().html


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


def open_page(browser, html: str, width: int, scheme: str = "light"):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    page.route("**/*", lambda route: route.abort())
    page.set_content(html, wait_until="domcontentloaded")
    return page


def column_widths(page) -> list[float]:
    """Widths of the centred content column: the masthead and every section card."""
    return page.evaluate(
        "() => [...document.querySelectorAll('div.masthead, div.card')]"
        ".map((el) => el.getBoundingClientRect().width)"
    )


@pytest.mark.parametrize("width", [375, 600, 1024])
def test_no_horizontal_scrolling(browser, html, width):
    page = open_page(browser, html, width)
    scroll, inner = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    page.close()
    assert scroll <= inner


def test_content_fills_a_phone_screen(browser, html):
    page = open_page(browser, html, 375)
    widths = column_widths(page)
    page.close()
    assert widths and all(w >= 0.95 * 375 for w in widths), widths


@pytest.mark.parametrize("width", [600, 1024])
def test_content_column_stays_600px_on_desktop(browser, html, width):
    page = open_page(browser, html, width)
    widths = column_widths(page)
    left = page.evaluate("document.querySelector('div.masthead').getBoundingClientRect().left")
    page.close()
    assert widths and all(595 <= w <= 600 for w in widths), widths
    assert left == pytest.approx((width - 600) / 2, abs=1)  # centred


@pytest.mark.parametrize("width", [375, 600])
def test_training_rows_keep_the_date_beside_the_course(browser, html, width):
    page = open_page(browser, html, width)
    rows = page.evaluate(
        "() => [...document.querySelectorAll('td.dated-date')].map((td) => "
        "[td.getBoundingClientRect().top, td.nextElementSibling.getBoundingClientRect().top])"
    )
    page.close()
    assert len(rows) == 18  # 6 events + 12 courses
    assert all(date == what for date, what in rows)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_meets_wcag_aa_contrast(browser, html, scheme):
    page = open_page(browser, html, 600, scheme)
    failures = page.evaluate(CONTRAST_SCRIPT)
    page.close()
    assert failures == []


def test_dark_mode_darkens_the_page_and_the_cards(browser, html):
    page = open_page(browser, html, 600, "dark")
    body, card = page.evaluate(
        "[getComputedStyle(document.body).backgroundColor,"
        " getComputedStyle(document.querySelector('div.card')).backgroundColor]"
    )
    page.close()
    assert body == "rgb(13, 17, 23)"
    assert card == "rgb(22, 27, 34)"
