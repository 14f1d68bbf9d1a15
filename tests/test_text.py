"""The plain-text twin: readable structure, links as 'text (url)', 76-column wrapping."""

from __future__ import annotations

import re

import pytest

from mailer.edition import load_edition
from mailer.render import markdown_tokens, render_edition
from mailer.text import WIDTH, tokens_text, wrap
from tests.compose_helpers import SETTINGS
from tests.conftest import EXAMPLE_EDITION


def text_of(markdown: str, kind: str = "article") -> str:
    return tokens_text(markdown_tokens(markdown, kind))


@pytest.fixture(scope="module")
def example_text() -> str:
    return render_edition(load_edition(EXAMPLE_EDITION), SETTINGS).preview().text


def test_links_appear_as_text_then_url():
    assert text_of("See [the NSPCC](https://www.nspcc.org.uk/).") == (
        "See the NSPCC (https://www.nspcc.org.uk/)."
    )


def test_a_link_whose_text_is_its_address_is_not_repeated():
    assert text_of("[news@example.org](mailto:news@example.org)") == "news@example.org"
    assert text_of("<https://example.org/>") == "https://example.org/"


def test_mailto_links_with_other_text_keep_the_address():
    assert text_of("[Write to us](mailto:news@example.org)") == (
        "Write to us (mailto:news@example.org)"
    )


def test_paragraphs_wrap_at_76_columns():
    body = text_of(" ".join(["safeguarding"] * 40))
    lines = body.splitlines()
    assert len(lines) > 1
    assert all(len(line) <= WIDTH for line in lines)


def test_urls_are_never_broken_even_when_longer_than_a_line():
    url = "https://www.gov.uk/government/publications/" + "a" * 60
    body = text_of(f"Read [the guidance]({url}) today, please, before the end of term.")
    assert any(f"({url})" in line for line in body.splitlines())


def test_wrap_keeps_hyphenated_words_whole():
    assert (
        wrap("a " * 35 + "well-known-words", width=76).splitlines()[-1].endswith("well-known-words")
    )


def test_headings_stand_on_their_own_line():
    assert text_of("# Water\n\nSwim where there are lifeguards.") == (
        "Water\n\nSwim where there are lifeguards."
    )


def test_bullet_and_numbered_lists_use_markers_and_hanging_indent():
    body = text_of("- one\n- " + "two " * 30 + "\n\n1. first\n2. second\n")
    lines = body.splitlines()
    assert lines[0] == "- one"
    assert lines[1].startswith("- two")
    assert lines[2].startswith("  two")
    assert "1. first\n2. second" in body


def test_nested_lists_are_indented():
    assert text_of("- outer\n  - inner\n") == "- outer\n\n  - inner"


def test_small_tables_become_aligned_columns():
    assert text_of(
        "| Agency | Phone |\n|---|---|\n| Police | 101 |\n| NSPCC | 0808 800 5000 |"
    ) == ("Agency  Phone\n------  -------------\nPolice  101\nNSPCC   0808 800 5000")


def test_wide_tables_become_one_record_per_row():
    name, wide = "n" * 30, "x" * 50
    body = text_of(f"| Course | Detail |\n|---|---|\n| {name} | {wide} |\n| Audit | {wide} |")
    assert body == f"Course: {name}\nDetail: {wide}\n\nCourse: Audit\nDetail: {wide}"


def test_blockquotes_are_prefixed():
    assert text_of("> Listen to the child.") == "> Listen to the child."


def test_emphasis_markers_are_dropped_and_images_show_alt_text():
    assert text_of("**Do not pay.** *Ever.* ![A park](https://example.org/p.jpg)") == (
        "Do not pay. Ever. [A park]"
    )


def test_date_led_items_read_date_then_event():
    assert text_of("- **Tue 16 Sept** - Conference\n", kind="events") == (
        "- Tue 16 Sept - Conference"
    )


def test_training_levels_read_as_words():
    assert text_of("- **9 Sept** Neglect *Level 2*\n", kind="training") == (
        "- 9 Sept - Neglect (Level 2)"
    )


def test_edition_text_has_masthead_titles_buttons_and_footer(example_text):
    assert example_text.startswith("Northvale Safeguarding Children Partnership - 15 July 2025")
    assert "Summer 2025\n===========" in example_text
    assert "Welcome to the summer edition\n-----------------------------" in example_text
    assert "ALERT: Online safety alert: financially motivated sextortion" in example_text
    assert "Read the CEOP advice for professionals: https://www.ceop.police.uk/" in example_text
    assert "Civic Centre, 1 Market Street, Northvale NV1 2AB" in example_text
    assert "Unsubscribe: https://example.org/newsletter/unsubscribe" in example_text


def test_example_text_is_wrapped_except_for_unbreakable_urls(example_text):
    for line in example_text.splitlines():
        if len(line) > WIDTH:
            assert " " not in line.strip(), line  # a single URL too long to wrap


def test_sections_appear_in_order_in_the_text(example_text):
    edition = load_edition(EXAMPLE_EDITION)
    positions = [example_text.index(s.title) for s in edition.sections]
    assert positions == sorted(positions)


def test_training_list_in_text_keeps_every_course_with_date_and_level(example_text):
    training = example_text.split("Autumn training programme", 1)[1]
    courses = re.findall(r"^- .*(?:\n  .*)*", training, re.MULTILINE)
    assert len(courses) == 12
    assert courses[0].startswith("- Tue 9 Sept - Introduction to safeguarding children")
    assert all(re.search(r"\(Level [123]\)$", " ".join(c.split())) for c in courses)
