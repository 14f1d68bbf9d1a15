"""render_edition: the HTML a reader gets, merge fields, template lookup and bad templates."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from mailer.config import Settings
from mailer.edition import load_edition
from mailer.errors import InputError
from mailer.render import STAGES, render_edition
from tests.compose_helpers import ALL_KINDS, SETTINGS, parse, texts
from tests.conftest import EXAMPLE_EDITION, write_edition


@pytest.fixture(scope="module")
def example():
    """The example edition rendered once for the read-only tests in this module."""
    return render_edition(load_edition(EXAMPLE_EDITION), SETTINGS)


@pytest.fixture(scope="module")
def example_doc(example):
    return parse(example.preview().html)


@pytest.fixture(scope="module")
def kinds_doc(tmp_path_factory):
    root = write_edition(tmp_path_factory.mktemp("kinds") / "issues" / "2025-01-k", ALL_KINDS)
    return parse(render_edition(load_edition(root), SETTINGS).preview().html)


def section(doc, kind: str):
    found = doc.xpath(f"//div[contains(concat(' ', @class, ' '), ' section-{kind} ')]")
    assert found, f"no {kind} section"
    return found


# --- structure and styling -----------------------------------------------------------


def test_sections_appear_in_file_order(example, example_doc):
    titles = [s.title for s in example.edition.sections]
    assert texts(example_doc, "//h2") == titles


def test_edition_title_is_the_only_h1_and_body_headings_start_at_h3(example_doc, kinds_doc):
    assert texts(example_doc, "//h1") == ["Summer 2025"]
    assert "What is working well" in texts(example_doc, "//h3")
    assert texts(kinds_doc, "//h3") == ["Body heading"]  # written as '# Body heading'


def test_styles_are_inlined_onto_elements(example_doc):
    h2 = example_doc.xpath("//h2")[0]
    assert "color:#1d3557" in h2.get("style").replace(" ", "")
    paragraphs = example_doc.xpath("//div[contains(@class,'card')]//p")
    assert paragraphs and all("margin" in (p.get("style") or "") for p in paragraphs)


def test_media_queries_for_phones_and_dark_mode_stay_in_a_style_element(example_doc):
    css = "\n".join(example_doc.xpath("//style/text()"))
    assert "@media only screen and (max-width: 480px)" in css
    assert "prefers-color-scheme: dark" in css
    assert "!important" in css  # must beat the inlined styles
    assert example_doc.xpath("//meta[@name='color-scheme']/@content") == ["light dark"]


def test_build_uses_no_web_fonts_or_remote_stylesheets(example):
    html = example.preview().html
    assert "googleapis" not in html
    assert "<link" not in html
    assert "@import" not in html


def test_every_link_and_image_is_absolute(example_doc):
    urls = example_doc.xpath("//a/@href") + example_doc.xpath("//img/@src")
    assert urls
    assert all(url.startswith(("https://", "mailto:")) for url in urls), urls


def test_lang_attribute_comes_from_the_edition(example_doc):
    assert example_doc.get("lang") == "en-GB"


def test_hidden_preheader_is_first_in_the_body(example, example_doc):
    first = example_doc.xpath("//body/div")[0]
    assert "display:none" in first.get("style")
    assert first.text_content().strip() == example.edition.preheader


def test_image_alt_text_is_carried_through(example, example_doc):
    profile = next(s for s in example.edition.sections if s.kind == "profile")
    assert example_doc.xpath("//img/@alt") == [profile.image_alt]


def test_masthead_shows_newsletter_name_and_date(example_doc):
    masthead = texts(example_doc, "//div[contains(@class,'masthead')]")[0]
    assert masthead == "Northvale Safeguarding Children Partnership 15 July 2025"


def test_newsletter_name_falls_back_to_organisation_then_title(make_edition):
    edition = load_edition(make_edition(title="Spring news"))
    with_org = parse(render_edition(edition, Settings(organisation="Org Ltd")).preview().html)
    bare = parse(render_edition(edition, Settings()).preview().html)
    assert texts(with_org, "//p[@class='masthead-name']") == ["Org Ltd"]
    assert texts(bare, "//p[@class='masthead-name']") == ["Spring news"]


def test_footer_has_sender_postal_address_and_unsubscribe_link(example_doc):
    footer = texts(example_doc, "//div[contains(@class,'footer')]")[0]
    assert "Northvale Safeguarding Children Partnership" in footer
    assert "Civic Centre, 1 Market Street, Northvale NV1 2AB" in footer
    link = example_doc.xpath("//a[contains(., 'Unsubscribe')]")[0]
    assert link.get("href") == "https://example.org/newsletter/unsubscribe"


def test_footer_sender_falls_back_to_the_from_display_name(make_edition):
    settings = Settings(from_addr="Harbour News <news@example.org>")
    doc = parse(render_edition(load_edition(make_edition()), settings).preview().html)
    assert "Harbour News" in texts(doc, "//div[contains(@class,'footer')]")[0]


# --- kinds -------------------------------------------------------------------------------


def test_article_has_image_and_button(kinds_doc):
    article = section(kinds_doc, "article")[0]
    assert article.xpath(".//img/@alt") == ["A park"]
    button = article.xpath(".//a[normalize-space()='Read more about it']")[0]
    assert button.get("href") == "https://example.org/more"


def test_alert_has_a_red_band_labelled_alert(kinds_doc):
    alert = section(kinds_doc, "alert")[0]
    band = alert.xpath(".//td[contains(@class,'alert-band')]")[0]
    assert "#b42318" in band.get("style")
    assert "ALERT" in band.text_content()
    assert texts(alert, ".//h2") == ["Scam warning"]


def test_profile_shows_the_photo_with_alt_text(kinds_doc):
    profile = section(kinds_doc, "profile")
    images = [img for part in profile for img in part.xpath(".//img")]
    assert [(img.get("src"), img.get("alt")) for img in images] == [
        ("https://example.org/sam.jpg", "Sam at her desk")
    ]


def test_events_become_date_led_rows(kinds_doc):
    events = section(kinds_doc, "events")[0]
    assert texts(events, ".//td[@class='dated-date']") == ["Tue 16 Sept", "2 Oct, 10:00"]
    assert texts(events, ".//td[@class='dated-what']") == [
        "Conference, Civic Centre",
        "Board meeting",
    ]


def test_training_rows_show_the_level_under_the_date(kinds_doc):
    training = section(kinds_doc, "training")[0]
    dates = training.xpath(".//td[@class='dated-date']")
    assert [d.text for d in dates] == ["9 Sept", "11 Sept"]
    assert texts(training, ".//td[@class='dated-date']/span[@class='level']") == [
        "Level 1",
        "Level 2",
    ]
    assert texts(training, ".//td[@class='dated-what']") == [
        "Introduction to safeguarding",
        "Neglect",
    ]


def test_a_list_without_leading_dates_stays_a_list(make_edition):
    root = make_edition({"01-e.md": "---\nkind: events\n---\n- plain item\n- another\n"})
    doc = parse(render_edition(load_edition(root)).preview().html)
    assert texts(doc, "//li") == ["plain item", "another"]
    assert not doc.xpath("//table[@class='dated']")


def test_callout_is_a_boxed_highlight(kinds_doc):
    callout = section(kinds_doc, "callout")[0]
    box = callout.xpath(".//div[contains(@class,'callout-box')]/table/tbody/tr/td")[0]
    assert "background-color:#eaf2fb" in box.get("style")
    assert "border-left:6px solid #1d3557" in box.get("style")
    assert texts(box, ".//h2") == ["Send us news"]


def test_markdown_tables_render(make_edition):
    root = make_edition({"01-t.md": "| Agency | Phone |\n|---|---|\n| Police | 101 |\n"})
    doc = parse(render_edition(load_edition(root)).preview().html)
    assert texts(doc, "//th") == ["Agency", "Phone"]
    assert texts(doc, "//td[not(@class)][not(*)]")[-2:] == ["Police", "101"]


# --- merge fields and personalisation ------------------------------------------------


def test_merge_fields_are_filled_and_html_escaped(example):
    parts = example.personalise({"first_name": "<b>Al & Co</b>"})
    assert "Dear &lt;b&gt;Al &amp; Co&lt;/b&gt;," in parts.html
    assert "<b>Al & Co</b>" not in parts.html
    assert "Dear <b>Al & Co</b>," in parts.text


def test_merge_field_default_applies_to_missing_and_empty_values(example):
    assert "Dear colleague," in example.personalise({}).html
    assert "Dear colleague," in example.personalise({"first_name": ""}).text


def test_subject_preheader_and_title_take_merge_fields(make_edition):
    root = make_edition(
        subject="News for {{ name }}", preheader="Hi {{ name }}", title="{{ name }}'s edition"
    )
    parts = render_edition(load_edition(root)).personalise({"name": "Ann"})
    assert parts.subject == "News for Ann"
    assert "Hi Ann" in parts.html
    assert texts(parse(parts.html), "//h1") == ["Ann's edition"]


def test_a_merge_value_cannot_break_the_subject_line(make_edition):
    rendered = render_edition(load_edition(make_edition(subject="Hi {{ name }}")))
    assert rendered.personalise({"name": "x\r\nBcc: a@example.org"}).subject == (
        "Hi x Bcc: a@example.org"
    )


def test_button_url_takes_merge_fields(make_edition):
    root = make_edition(
        {
            "01-b.md": "---\nbutton_text: Book\n"
            "button_url: https://example.org/b?e={{ email }}\n---\nx\n"
        }
    )
    parts = render_edition(load_edition(root)).personalise({"email": "a&b@example.org"})
    assert 'href="https://example.org/b?e=a&amp;b@example.org"' in parts.html


def test_the_unsubscribe_link_is_the_unsubscribe_url_merge_field(example):
    assert "unsubscribe_url" in example.expressions
    parts = example.personalise({"unsubscribe_url": "https://example.org/u?t=1&e=2"})
    assert 'href="https://example.org/u?t=1&amp;e=2"' in parts.html
    assert "Unsubscribe: https://example.org/u?t=1&e=2" in parts.text


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (SETTINGS, "https://example.org/newsletter/unsubscribe"),
        (
            replace(SETTINGS, unsubscribe_url="http://example.org/u"),
            "mailto:unsubscribe@example.org",
        ),
        (
            replace(SETTINGS, unsubscribe_url=None, unsubscribe_mailto="mailto:u@example.org"),
            "mailto:u@example.org",
        ),
        (Settings(), ""),
    ],
)
def test_preview_unsubscribe_link_is_https_url_else_mailto_else_empty(
    make_edition, settings, expected
):
    rendered = render_edition(load_edition(make_edition()), settings)
    assert f"Unsubscribe: {expected}".strip() in rendered.preview().text


def test_preview_context_overrides_the_defaults(example):
    parts = example.preview({"first_name": "Dev"})
    assert "Dear Dev," in parts.text
    assert "https://example.org/newsletter/unsubscribe" in parts.text


def test_content_hash_is_stable_across_renders_and_follows_content(make_edition):
    root = make_edition({"01-a.md": "Hi {{ first_name }}\n"})
    first = render_edition(load_edition(root))
    again = render_edition(load_edition(root))
    assert first.content_hash == again.content_hash
    (root / "01-a.md").write_text("Hello {{ first_name }}\n", encoding="utf-8")
    assert render_edition(load_edition(root)).content_hash != first.content_hash


def test_timings_cover_every_stage(example):
    assert set(example.timings) == set(STAGES)
    assert all(seconds >= 0 for seconds in example.timings.values())
    assert example.timings["inline"] > 0


def test_bad_merge_field_names_the_section_file_and_line(make_edition):
    root = make_edition({"01-a.md": "---\ntitle: T\n---\nline one\n\nHi {{ first_name | }}\n"})
    with pytest.raises(InputError) as caught:
        render_edition(load_edition(root))
    assert caught.value.path == root / "01-a.md"
    assert caught.value.line == 3  # third line of the body


# --- template lookup -----------------------------------------------------------------


def override(folder: Path, name: str, marker: str) -> Path:
    """A copy of the default template (or partial) with ``marker`` in its text."""
    from importlib.resources import files

    source = Path(str(files("mailer.templates"))) / name
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    text = source.read_text(encoding="utf-8")
    if name.startswith("partials/"):
        text = text.replace("{{ section.html }}", f"{marker} {{{{ section.html }}}}")
    else:
        text = text.replace("<h1>", f"<h1>{marker} ")
    target.write_text(text, encoding="utf-8")
    return target


def test_project_templates_folder_overrides_the_default_file_by_file(make_edition):
    root = make_edition()
    project = root.parent.parent
    override(project / "templates", "partials/article.mjml.j2", "PROJECTPARTIAL")
    html = render_edition(load_edition(root)).preview().html
    assert "PROJECTPARTIAL" in html
    assert "masthead" in html  # the main template still comes from the package


def test_templates_dir_overrides_project_and_default(make_edition, tmp_path):
    root = make_edition()
    override(root.parent.parent / "templates", "newsletter.mjml.j2", "PROJECT")
    override(tmp_path / "mine", "newsletter.mjml.j2", "EXPLICIT")
    html = render_edition(load_edition(root), templates_dir=tmp_path / "mine").preview().html
    assert "EXPLICIT" in html
    assert "PROJECT" not in html


def test_settings_templates_dir_is_used_when_no_argument(make_edition, tmp_path):
    root = make_edition()
    override(tmp_path / "env", "newsletter.mjml.j2", "FROMENV")
    html = render_edition(load_edition(root), Settings(templates_dir=tmp_path / "env"))
    assert "FROMENV" in html.preview().html


def test_edition_template_key_picks_the_template_file(make_edition):
    root = make_edition(template="plain")
    folder = root.parent.parent / "templates"
    override(folder, "newsletter.mjml.j2", "PLAIN").rename(folder / "plain.mjml.j2")
    assert "PLAIN" in render_edition(load_edition(root)).preview().html


# --- bad templates -------------------------------------------------------------------


def broken_template(make_edition, text: str) -> tuple[Path, Path]:
    root = make_edition()
    template = root.parent.parent / "templates" / "newsletter.mjml.j2"
    template.parent.mkdir()
    template.write_text(text, encoding="utf-8")
    return root, template


def raises_input_error(root: Path, **kwargs) -> InputError:
    with pytest.raises(InputError) as caught:
        render_edition(load_edition(root), **kwargs)
    return caught.value


def test_missing_template_names_edition_toml_and_where_it_looked(make_edition):
    root = make_edition(template="nope")
    error = raises_input_error(root)
    assert error.path == root / "edition.toml"
    assert "nope.mjml.j2" in error.message


def test_missing_templates_folder_is_reported(make_edition, tmp_path):
    error = raises_input_error(make_edition(), templates_dir=tmp_path / "absent")
    assert error.path == tmp_path / "absent"


def test_jinja_syntax_error_names_template_and_line(make_edition):
    root, template = broken_template(make_edition, "<mjml>\n<mj-body>\n{% if %}\n</mjml>\n")
    error = raises_input_error(root)
    assert (error.path, error.line) == (template, 3)


def test_undefined_template_value_names_template_and_line(make_edition):
    root, template = broken_template(make_edition, "<mjml>\n\n{{ edition.nonsense }}\n</mjml>\n")
    error = raises_input_error(root)
    assert (error.path, error.line) == (template, 3)
    assert "nonsense" in error.message


def test_mjml_error_names_the_template(make_edition):
    root, template = broken_template(make_edition, "<mjml><mj-body><mj-section></mjml>\n")
    error = raises_input_error(root)
    assert error.path == template
    assert "MJML" in error.message


def test_profile_without_a_photo_is_a_single_column(make_edition):
    root = make_edition({"01-p.md": "---\ntitle: Meet Jo\nkind: profile\n---\nJo joined.\n"})
    doc = parse(render_edition(load_edition(root)).preview().html)
    assert not doc.xpath("//img")
    columns = doc.xpath(
        "//div[contains(@class,'section-profile')]//div[contains(@class,'mj-column')]"
    )
    assert [c.get("class").split()[1] for c in columns] == ["mj-column-per-100"] * 2


def test_rendering_never_opens_a_network_connection(make_edition, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the build tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    root = make_edition(ALL_KINDS)
    assert "Scam warning" in render_edition(load_edition(root), SETTINGS).preview().html


# --- the example edition is a good example ---------------------------------------------


def test_example_edition_uses_every_kind(example):
    assert {s.kind for s in example.edition.sections} == {
        "article",
        "profile",
        "alert",
        "events",
        "training",
        "callout",
    }


def test_example_links_say_where_they_go(example_doc):
    for link in example_doc.xpath("//a"):
        label = " ".join(link.text_content().split()).lower()
        assert label and label not in ("here", "click here", "read more", "link"), label
        assert link.get("href") != "#"


def test_example_recipients_have_a_dozen_subscribers_with_lists():
    import csv

    from tests.conftest import EXAMPLE_RECIPIENTS

    with EXAMPLE_RECIPIENTS.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 12
    assert list(rows[0]) == ["email", "name", "first_name", "organisation", "lists"]
    assert all(r["email"].endswith(("@example.org", "@example.net")) for r in rows)
    assert all("newsletter" in r["lists"].split(";") for r in rows)


def test_templates_argument_wins_over_settings(make_edition, tmp_path):
    root = make_edition()
    override(tmp_path / "arg", "newsletter.mjml.j2", "FROMARG")
    override(tmp_path / "env", "newsletter.mjml.j2", "FROMENV")
    settings = Settings(templates_dir=tmp_path / "env")
    html = render_edition(load_edition(root), settings, tmp_path / "arg").preview().html
    assert "FROMARG" in html
    assert "FROMENV" not in html
