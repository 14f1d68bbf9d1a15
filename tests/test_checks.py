"""Offline checks on the final HTML: placeholders, addresses, accessibility, size, subject,
and tracing each problem back to the section file and line an author edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.checks import CheckReport, Problem, check_message, extract_references
from mailer.edition import load_edition

UNSUBSCRIBE = "https://example.org/newsletter/unsubscribe"
FOOTER = f'<p>Test preheader</p><a href="{UNSUBSCRIBE}">Unsubscribe</a>'


@pytest.fixture
def check(make_edition):
    """check(body_html, sections=..., subject=..., **toml) -> CheckReport, offline."""

    def run(
        body: str,
        sections: dict[str, str] | None = None,
        subject: str | None = None,
        templates: tuple[Path, ...] = (),
        **meta: str,
    ) -> CheckReport:
        edition = load_edition(make_edition(sections, **meta))
        html = f"<!doctype html><html><body>{body}{FOOTER}</body></html>"
        return check_message(
            edition,
            edition.subject if subject is None else subject,
            html,
            context={"unsubscribe_url": UNSUBSCRIBE},
            templates=templates,
            offline=True,
        )

    return run


def codes(report: CheckReport) -> list[str]:
    return [problem.code for problem in report.problems]


def only(report: CheckReport, code: str) -> Problem:
    matching = [problem for problem in report.problems if problem.code == code]
    assert len(matching) == 1, report.problems
    return matching[0]


def test_a_clean_message_has_no_problems(check):
    report = check('<a href="https://example.org/guide">Read the safeguarding guide</a>')
    assert report.problems == []
    assert not report.failed(strict=True)
    assert (report.links, report.ok) == (2, 2)


@pytest.mark.parametrize(
    ("href", "code"),
    [
        ("#", "placeholder-link"),
        ("", "empty-link"),
        ("javascript:void(0)", "javascript-link"),
        ("https://example.com/page", "placeholder-link"),
        ("https://www.example.com/", "placeholder-link"),
        ("https://placeholder.partnership.org/a", "placeholder-link"),
        ("https://example.org/TODO", "placeholder-link"),
        ("https://example.org/FIXME-later", "placeholder-link"),
        ("https://example.org/XXX", "placeholder-link"),
    ],
)
def test_placeholder_and_empty_links_are_errors(check, href, code):
    report = check(f'<a href="{href}">Safeguarding guide</a>')
    assert only(report, code).severity == "error"
    assert report.failed()


def test_example_org_links_are_not_placeholders(check):
    # The example edition's images and the unsubscribe URL use example.org on purpose.
    assert check('<a href="https://example.org/x">Annual report</a>').problems == []


@pytest.mark.parametrize("href", ["guide.html", "/about", "../x", "//cdn.example.org/a"])
def test_relative_urls_are_errors(check, href):
    assert only(check(f'<a href="{href}">Annual report</a>'), "relative-url").severity == "error"


def test_relative_image_source_is_an_error(check):
    report = check('<img src="images/photo.jpg" alt="Team photo">')
    assert only(report, "relative-url").url == "images/photo.jpg"


def test_http_links_are_a_warning_to_use_https(check):
    problem = only(check('<a href="http://example.org/x">Annual report</a>'), "insecure-link")
    assert problem.severity == "warning"
    assert "https" in problem.message


def test_unsupported_scheme_is_a_warning(check):
    problem = only(check('<a href="ftp://example.org/x">Annual report</a>'), "unsupported-scheme")
    assert problem.severity == "warning"


def test_valid_mailto_and_tel_links_pass(check):
    report = check(
        '<a href="mailto:safeguarding@example.org?subject=Hello">Email the team</a>'
        '<a href="mailto:a@example.org,b@example.net">Email both</a>'
        '<a href="tel:+44 (0)1632 960 123">Call the front door</a>'
        '<a href="tel:01632-960123">Call the office</a>'
    )
    assert report.problems == []


@pytest.mark.parametrize(
    "href", ["mailto:", "mailto:safeguarding@", "mailto:no spaces@example.org", "mailto:a@b"]
)
def test_bad_mailto_addresses_are_errors(check, href):
    assert only(check(f'<a href="{href}">Email the team</a>'), "invalid-email").severity == "error"


@pytest.mark.parametrize("href", ["tel:123", "tel:call-us", "tel:", "tel:0800 CALL NOW"])
def test_bad_phone_numbers_are_errors(check, href):
    assert only(check(f'<a href="{href}">Call the team</a>'), "invalid-phone").severity == "error"


def test_in_page_anchor_must_exist_in_the_email(check):
    ok = check('<h2 id="events">Events</h2><a href="#events">Jump to events</a>')
    assert ok.problems == []
    broken = check('<a href="#training">Jump to training</a>')
    assert only(broken, "missing-fragment").severity == "warning"


def test_image_without_alt_is_an_error(check):
    problem = only(check('<img src="https://example.org/a.png">'), "image-missing-alt")
    assert problem.severity == "error"


def test_empty_alt_is_a_warning_on_a_real_image(check):
    report = check('<img src="https://example.org/a.png" alt="" width="600">')
    assert only(report, "image-empty-alt").severity == "warning"


def test_empty_alt_is_fine_on_a_spacer_image(check):
    assert check('<img src="https://example.org/s.gif" alt="" width="1" height="1">').problems == []


def test_image_without_source_is_an_error(check):
    assert only(check('<img alt="Logo">'), "image-missing-src").severity == "error"


@pytest.mark.parametrize(
    "text", ["click here", "Here", "Read more", "read more…", "link", "https://example.org/report"]
)
def test_vague_or_bare_url_link_text_is_a_warning(check, text):
    report = check(f'<a href="https://example.org/report">{text}</a>')
    assert only(report, "vague-link-text").severity == "warning"


def test_link_with_only_an_image_uses_its_alt_text(check):
    good = check(
        '<a href="https://example.org/r">'
        '<img src="https://example.org/b.png" alt="Annual report"></a>'
    )
    assert good.problems == []
    bare = check('<a href="https://example.org/r"></a>')
    assert only(bare, "empty-link-text").severity == "warning"


def test_missing_unsubscribe_link_is_an_error(make_edition):
    edition = load_edition(make_edition())
    html = (
        "<html><body><p>Test preheader</p>"
        "<a href='https://example.org/a'>Annual report</a></body></html>"
    )
    report = check_message(edition, "Subject", html, offline=True)
    problem = only(report, "missing-unsubscribe")
    assert problem.severity == "error"
    assert "MAILER_UNSUBSCRIBE_URL" in problem.message


def test_a_link_mentioning_unsubscribe_counts_as_the_unsubscribe_link(make_edition):
    edition = load_edition(make_edition())
    html = (
        "<html><body><p>Test preheader</p>"
        "<a href='mailto:unsubscribe@example.org'>Stop these emails</a></body></html>"
    )
    assert check_message(edition, "Subject", html, offline=True).problems == []


def test_html_over_gmail_clip_limit_is_an_error_and_near_it_a_warning(check):
    padding = "<p>" + "x" * 1000 + "</p>"
    assert only(check(padding * 92), "html-size").severity == "warning"
    assert only(check(padding * 105), "gmail-clipping").severity == "error"
    assert check(padding * 80).problems == []


def test_size_counts_utf8_bytes_not_characters(check):
    # 60,000 two-byte characters are 120 KB on the wire.
    assert only(check("<p>" + "é" * 60_000 + "</p>"), "gmail-clipping")


def test_empty_subject_is_an_error_traced_to_edition_toml(check):
    problem = only(check("", subject="  "), "empty-subject")
    assert problem.severity == "error"
    assert problem.file.name == "edition.toml"
    assert problem.line == 2  # write_edition puts title first, subject second


def test_long_subject_is_a_warning(check):
    assert only(check("", subject="x" * 79), "long-subject").severity == "warning"
    assert check("", subject="x" * 78).problems == []


def test_preheader_missing_from_the_html_is_a_warning(make_edition):
    edition = load_edition(make_edition())
    html = f"<html><body><a href='{UNSUBSCRIBE}'>Unsubscribe</a></body></html>"
    problem = only(check_message(edition, "Subject", html, offline=True), "missing-preheader")
    assert problem.severity == "warning"
    assert problem.file.name == "edition.toml"


def test_empty_section_is_a_warning_at_that_file(check):
    report = check("", sections={"01-a.md": "# A\n\nText.\n", "02-b.md": "---\ntitle: B\n---\n\n"})
    problem = only(report, "empty-section")
    assert (problem.severity, problem.file.name, problem.line) == ("warning", "02-b.md", 4)


def test_problems_are_traced_to_section_file_and_line(check):
    sections = {
        "01-intro.md": "# Welcome\n\nHello partners.\n",
        "02-news.md": "# News\n\nFirst line.\n\nSee [the report](https://example.com/report).\n",
    }
    report = check('<a href="https://example.com/report">the report</a>', sections=sections)
    problem = only(report, "placeholder-link")
    assert (problem.file.name, problem.line) == ("02-news.md", 5)


def test_hash_placeholder_in_front_matter_is_traced_to_its_line(check):
    sections = {
        "01-a.md": "---\ntitle: Training\nbutton_text: Book now\nbutton_url: '#'\n---\n"
        "# A\n\nSee #1.\n"
    }
    report = check('<a href="#">Book now</a>', sections=sections)
    problem = only(report, "placeholder-link")
    assert (problem.file.name, problem.line) == ("01-a.md", 4)


def test_hash_placeholder_in_markdown_is_traced_not_to_headings(check):
    sections = {"01-a.md": "# Heading\n\n## Another\n\nBook [here](#) today.\n"}
    problem = only(check('<a href="#">Book now</a>', sections=sections), "placeholder-link")
    assert problem.line == 5


def test_a_url_in_two_sections_is_reported_at_both(check):
    sections = {
        "01-a.md": "[Guide](https://example.com/g)\n",
        "02-b.md": "Text.\n\n[Guide](https://example.com/g)\n",
    }
    report = check('<a href="https://example.com/g">Guide</a>' * 2, sections=sections)
    places = [(p.file.name, p.line) for p in report.problems]
    assert places == [("01-a.md", 1), ("02-b.md", 3)]


def test_image_written_as_a_file_name_is_traced_by_that_name(check):
    sections = {"01-a.md": "---\nimage: team-photo.jpg\n---\nBody.\n"}
    report = check('<img src="https://cdn.example.org/x/team-photo.jpg">', sections=sections)
    problem = only(report, "image-missing-alt")
    assert (problem.file.name, problem.line) == ("01-a.md", 2)


def template_folder(root: Path, name: str, text: str) -> Path:
    templates = root / "templates"
    templates.mkdir(parents=True)
    (templates / name).write_text(text, encoding="utf-8")
    return templates


def test_template_links_are_traced_to_the_template_file(check, tmp_path):
    source = '<mj-text>\n<a href="https://example.com/logo">Home</a>\n</mj-text>\n'
    templates = template_folder(tmp_path, "newsletter.mjml.j2", source)
    report = check('<a href="https://example.com/logo">Home</a>', templates=(templates,))
    problem = only(report, "placeholder-link")
    assert (problem.file.name, problem.line) == ("newsletter.mjml.j2", 2)


def test_merge_field_links_are_traced_to_where_the_field_is_used(check, tmp_path):
    source = 'Bye.\n<a href="{{ unsubscribe_url }}">here</a>\n'
    templates = template_folder(tmp_path, "footer.j2", source)
    html = f'<a href="{UNSUBSCRIBE}">here</a>'
    problem = only(check(html, templates=(templates,)), "vague-link-text")
    assert (problem.file.name, problem.line) == ("footer.j2", 2)


def test_problems_are_sorted_by_file_order_then_line(check):
    sections = {
        "01-a.md": "[x](#)\n\n[y](https://example.com/y)\n",
        "02-b.md": "[z](https://example.com/z)\n",
    }
    html = (
        '<a href="https://example.com/z">z doc</a>'
        '<a href="https://example.com/y">y doc</a><a href="#">x doc</a>'
    )
    report = check(html, sections=sections, subject="")
    places = [(p.file.name if p.file else None, p.line) for p in report.problems]
    assert places == [("edition.toml", 2), ("01-a.md", 1), ("01-a.md", 3), ("02-b.md", 1)]


def test_repeated_urls_are_reported_once_per_place(check):
    report = check('<a href="#">Book</a>' * 5)
    assert codes(report) == ["placeholder-link"]


def test_references_include_links_images_and_backgrounds():
    from lxml import html

    tree = html.document_fromstring(
        '<html><body><table background="https://example.org/bg.png"><tr><td>'
        '<a href="https://example.org/a"> A  link </a><img src="https://example.org/i.png" alt="I">'
        '<a name="target">no href</a></td></tr></table></body></html>'
    )
    refs = extract_references(tree)
    assert [(r.kind, r.url) for r in refs] == [
        ("link", "https://example.org/a"),
        ("image", "https://example.org/i.png"),
        ("image", "https://example.org/bg.png"),
    ]
    assert refs[0].text == "A link"


def test_warnings_fail_only_when_strict(check):
    report = check('<a href="http://example.org/x">Annual report</a>')
    assert report.warnings and not report.errors
    assert not report.failed()
    assert report.failed(strict=True)


def test_problem_as_dict_has_the_json_fields():
    problem = Problem("error", "http-404", "gone", Path("a.md"), 3, "https://example.org/x")
    assert problem.as_dict() == {
        "severity": "error",
        "code": "http-404",
        "message": "gone",
        "file": "a.md",
        "line": 3,
        "url": "https://example.org/x",
    }


def test_malformed_url_is_an_error_not_a_crash(check):
    report = check('<a href="https://[::1/report">Annual report</a>')
    assert only(report, "invalid-url").severity == "error"


def test_empty_link_is_traced_to_markdown_not_to_other_empty_attributes(check):
    sections = {"01-a.md": '<img src="https://example.org/a.png" alt="">\n\nSee [the plan]().\n'}
    problem = only(check('<a href="">the plan</a>', sections=sections), "empty-link")
    assert (problem.file.name, problem.line) == ("01-a.md", 3)


def test_an_overriding_template_hides_the_default_of_the_same_name(check, tmp_path):
    link = '<a href="https://example.com/home">Home page</a>\n'
    override = template_folder(tmp_path / "project", "footer.j2", "\n\n" + link)
    default = template_folder(tmp_path / "package", "footer.j2", link)
    problem = only(check(link, templates=(override, default)), "placeholder-link")
    assert (problem.file, problem.line) == (override / "footer.j2", 3)


def test_a_url_is_not_traced_to_a_longer_url_that_starts_with_it(check):
    sections = {
        "01-a.md": "See [about us](https://example.com/about).\n",
        "02-b.md": "See [the report](https://example.com/a).\n",
        "03-c.md": "Or visit https://example.com/a.\n",
    }
    report = check('<a href="https://example.com/a">Annual report</a>', sections=sections)
    places = [(p.file.name, p.line) for p in report.problems]
    assert places == [("02-b.md", 1), ("03-c.md", 1)]
