"""Building each recipient's message: headers, encoding, unsubscribe, identity, safety."""

from __future__ import annotations

import email
import email.policy
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import html as lxml_html

from mailer.config import ENV_NAMES
from mailer.edition import load_edition
from mailer.errors import InputError
from mailer.message import (
    envelope_address,
    message_id,
    needs_smtputf8,
    recipient_context,
    unsubscribe_token,
    unsubscribe_url,
    verify_unsubscribe_token,
)
from mailer.render import render_edition
from tests.conftest import REPO
from tests.message_helpers import NOW, Recipient, build, edition, parse, parts, settings

SECRET = "test-secret-0123456789"


def decoded(part) -> str:
    """A part's text with MIME's canonical CRLF line endings read back as newlines."""
    return part.get_content().replace("\r\n", "\n")


def unsubscribe_uris(msg) -> list[str]:
    return re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))


# --- headers -----------------------------------------------------------------------


def test_non_ascii_name_and_subject_are_rfc2047_encoded_and_round_trip():
    wire = build(content=parts(subject="Sommer — Neuigkeiten für Zoë"))
    head = wire.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head
    msg = parse(wire)
    assert msg["Subject"] == "Sommer — Neuigkeiten für Zoë"
    assert msg["To"].addresses[0].display_name == "Zoë Ångström"
    assert msg["To"].addresses[0].addr_spec == "zoe@example.net"


def test_ascii_subject_is_not_encoded():
    head = build().split(b"\r\n\r\n", 1)[0]
    assert b"\r\nSubject: Summer news\r\n" in head


def test_display_name_with_specials_is_quoted():
    msg = parse(build(Recipient("a@example.net", name="Smith, Jo (Police)")))
    assert msg["To"].addresses[0].display_name == "Smith, Jo (Police)"
    assert len(msg["To"].addresses) == 1


def test_recipient_without_a_name_gets_a_bare_address():
    assert parse(build(Recipient("a@example.net")))["To"] == "a@example.net"


def test_from_and_reply_to_come_from_settings():
    msg = parse(build())
    assert msg["From"].addresses[0].display_name == "Northvale Safeguarding Children Partnership"
    assert msg["From"].addresses[0].addr_spec == "newsletter@example.org"
    assert msg["Reply-To"] == "team@example.org"


def test_edition_from_and_reply_to_override_settings():
    special = edition(from_addr="Editor <editor@example.com>", reply_to="desk@example.com")
    msg = parse(build(edition_=special))
    assert msg["From"].addresses[0].addr_spec == "editor@example.com"
    assert msg["Reply-To"] == "desk@example.com"


def test_from_name_with_specials_and_accents_round_trips():
    special = edition(from_addr='"Northvale (NSCP), Zoë\'s desk" <desk@example.com>')
    sender = parse(build(edition_=special))["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == (
        "Northvale (NSCP), Zoë's desk",
        "desk@example.com",
    )


def test_bad_from_address_names_where_to_fix_it():
    with pytest.raises(InputError, match="MAILER_FROM"):
        build(settings_=settings(from_addr="Newsletter <nobody>"))
    with pytest.raises(InputError, match="'from'") as info:
        build(edition_=edition(from_addr="not an address"))
    assert "edition.toml" in str(info.value)


def test_no_reply_to_header_when_none_is_configured():
    assert "Reply-To" not in parse(build(settings_=settings(reply_to=None)))


def test_date_is_the_build_time():
    assert parse(build(now=NOW))["Date"].datetime == NOW


def test_list_id_is_stable_across_editions_and_names_the_newsletter():
    first = parse(build(edition_=edition("2025-07-summer")))["List-Id"]
    second = parse(build(edition_=edition("2025-10-autumn")))["List-Id"]
    assert first == second
    assert first == "Northvale Safeguarding Children Partnership <newsletter.example.org>"


def test_non_ascii_newsletter_name_is_encoded_but_the_list_id_stays_readable():
    wire = build(edition_=edition(newsletter="Lettre — Sécurité"))
    assert b"<newsletter.example.org>" in wire
    assert parse(wire)["List-Id"] == "Lettre — Sécurité <newsletter.example.org>"


def test_list_id_prefers_the_edition_newsletter_name():
    msg = parse(build(edition_=edition(newsletter="Partner Bulletin")))
    assert msg["List-Id"] == "Partner Bulletin <newsletter.example.org>"


# --- Message-ID ---------------------------------------------------------------------


def test_message_id_is_deterministic_per_edition_and_recipient():
    a = parse(build(Recipient("a@example.net")))["Message-ID"]
    assert a == parse(build(Recipient("a@example.net"), now=None))["Message-ID"]
    assert a != parse(build(Recipient("b@example.net")))["Message-ID"]
    assert (
        a
        != parse(build(Recipient("a@example.net"), edition_=edition("2025-10-autumn")))[
            "Message-ID"
        ]
    )


def test_message_id_ignores_address_case_and_uses_the_from_domain():
    from_addr = "News <news@example.org>"
    same = message_id("s", "A@Example.net", from_addr)
    assert same == message_id("s", "a@example.net", from_addr)
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", same)


def test_test_send_has_prefixed_subject_and_a_message_id_unlike_the_real_one():
    real = parse(build())
    test = parse(build(test=True))
    assert test["Subject"] == "[TEST] Summer news"
    assert test["Message-ID"] != real["Message-ID"]
    assert parse(build(test=True))["Message-ID"] != test["Message-ID"]


# --- body ---------------------------------------------------------------------------


def test_text_part_comes_first_and_html_last_both_utf8():
    content = parts(html="<p>Grüße, £10 — Zoë</p>\n", text="Grüße, £10 — Zoë\n")
    msg = parse(build(content=content))
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    for part, expected in ((text, content.text), (html, content.html)):
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
        assert decoded(part) == expected


def test_long_html_lines_stay_within_the_smtp_line_limit():
    html = "<table>" + "<td style='color:#333'>Zoë</td>" * 3000 + "</table>"
    wire = build(content=parts(html=html))
    assert max(len(line) for line in wire.split(b"\r\n")) <= 998
    assert decoded(parse(wire).get_body(("html",))) == html


LONG_SUBJECT = "Summer 2025: sextortion alert, multi-agency audits and autumn training dates"


@pytest.mark.parametrize(
    ("subject", "name"),
    [
        (LONG_SUBJECT, "Amira Hassan"),
        # personalise() collapses runs of spaces in a subject, so single spaces here
        (LONG_SUBJECT + " for Zoë and Ångström" * 3, " ".join(["Zoë Ångström"] * 6)),
        ("x" * 120, "A" * 90),
    ],
)
def test_long_headers_fold_with_crlf_and_round_trip(subject, name):
    wire = build(Recipient("zoe@example.net", name=name), content=parts(subject=subject))
    head = wire.split(b"\r\n\r\n", 1)[0]
    assert b"\n" not in head.replace(b"\r\n", b""), "bare LF in the headers"
    assert re.search(rb"^Subject: \S", head, re.MULTILINE), "Subject starts with a fold"
    message = parse(wire)
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == name


def test_a_long_non_ascii_sender_name_round_trips():
    name = " ".join(["Partneriaeth Diogelu Plant Gogledd Cymru"] * 3) + " — Bwrdd"
    wire = build(settings_=settings(from_addr=f"{name} <news@example.org>"))
    assert parse(wire)["From"].addresses[0].display_name == name


def test_wire_uses_crlf_line_endings_only():
    wire = build(content=parts(text="one\ntwo\r\nthree\n", html="<p>\nx\n</p>"))
    assert b"\r\n" in wire
    assert b"\n" not in wire.replace(b"\r\n", b"")
    assert b"\r" not in wire.replace(b"\r\n", b"")


# --- unsubscribe --------------------------------------------------------------------


def test_list_unsubscribe_has_the_recipients_token_url_and_the_mailto():
    msg = parse(build(Recipient("zoe@example.net")))
    https, mailto = unsubscribe_uris(msg)
    url = urlsplit(https)
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc, url.path) == ("https", "example.org", "/newsletter/unsubscribe")
    assert query["email"] == ["zoe@example.net"]
    assert verify_unsubscribe_token(SECRET, "zoe@example.net", query["token"][0])
    assert mailto == "mailto:unsubscribe@example.org?subject=unsubscribe"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_long_unsubscribe_url_is_not_mangled_by_header_folding():
    address = "a.very.long.local.part.for.testing.folding." * 3 + "x@example.net"
    wire = build(Recipient(address))
    assert b"=?utf-8?" not in wire.split(b"\r\n\r\n", 1)[0]
    https, _ = unsubscribe_uris(parse(wire))
    assert parse_qs(urlsplit(https).query)["email"] == [address]


def test_one_click_header_only_with_an_https_url():
    msg = parse(build(settings_=settings(unsubscribe_url=None)))
    assert unsubscribe_uris(msg) == ["mailto:unsubscribe@example.org?subject=unsubscribe"]
    assert "List-Unsubscribe-Post" not in msg


def test_no_unsubscribe_headers_when_nothing_is_configured():
    msg = parse(build(settings_=settings(unsubscribe_url=None, unsubscribe_mailto=None)))
    assert "List-Unsubscribe" not in msg
    assert "List-Unsubscribe-Post" not in msg


def test_existing_query_in_the_unsubscribe_url_is_kept():
    url = unsubscribe_url(settings(unsubscribe_url="https://example.org/u?list=news"), "a@b.org")
    query = parse_qs(urlsplit(url).query)
    assert query["list"] == ["news"]
    assert query["email"] == ["a@b.org"]


def test_https_unsubscribe_url_without_a_secret_is_an_input_error():
    with pytest.raises(InputError, match="MAILER_SECRET") as info:
        build(settings_=settings(secret=None))
    assert "MAILER_SECRET" in (info.value.hint or "")


def test_plain_http_unsubscribe_url_is_refused():
    with pytest.raises(InputError, match="https"):
        build(settings_=settings(unsubscribe_url="http://example.org/unsubscribe"))


def test_token_verifies_only_for_the_right_address_and_is_case_insensitive():
    token = unsubscribe_token(SECRET, "zoe@example.net")
    assert verify_unsubscribe_token(SECRET, "zoe@example.net", token)
    assert verify_unsubscribe_token(SECRET, "Zoe@Example.NET", token)
    assert not verify_unsubscribe_token(SECRET, "eve@example.net", token)
    assert not verify_unsubscribe_token("another-secret", "zoe@example.net", token)


def test_tampered_or_junk_token_does_not_verify():
    token = unsubscribe_token(SECRET, "zoe@example.net")
    flipped = ("A" if token[0] != "A" else "B") + token[1:]
    for bad in (flipped, token[:-1], token + "A", "", "ümlaut"):
        assert not verify_unsubscribe_token(SECRET, "zoe@example.net", bad)


def test_recipient_context_adds_the_footer_unsubscribe_link():
    recipient = Recipient("zoe@example.net", first_name="Zoë", fields={"org": "Police"})
    context = recipient_context(recipient, settings())
    assert context["first_name"] == "Zoë"
    assert context["org"] == "Police"
    assert context["unsubscribe_url"] == unsubscribe_url(settings(), "zoe@example.net")
    mailto_only = recipient_context(recipient, settings(unsubscribe_url=None))
    assert mailto_only["unsubscribe_url"] == "mailto:unsubscribe@example.org?subject=unsubscribe"
    nothing = settings(unsubscribe_url=None, unsubscribe_mailto=None)
    assert recipient_context(recipient, nothing)["unsubscribe_url"] == ""


# --- header injection ----------------------------------------------------------------

INJECTION = "Eve\r\nBcc: x@example.net"


def test_line_break_in_a_recipient_name_is_refused_with_its_row():
    recipient = Recipient("eve@example.net", name=INJECTION, source="list.csv", line=7)
    with pytest.raises(InputError, match="line break") as info:
        build(recipient)
    assert str(info.value).startswith("list.csv:7:")


def test_line_break_in_the_subject_is_refused():
    with pytest.raises(InputError, match="subject"):
        build(content=parts(subject=INJECTION))


@pytest.mark.parametrize(
    "overrides",
    [
        {"from_addr": f"{INJECTION} <n@example.org>"},
        {"reply_to": "r@example.org\nBcc: x@example.net"},
        {"organisation": INJECTION},
        {"unsubscribe_mailto": "u@example.org\r\nBcc: x@example.net"},
        {"unsubscribe_url": "https://example.org/u\r\nBcc: x@example.net"},
    ],
)
def test_line_breaks_in_configured_header_values_are_refused(overrides):
    with pytest.raises(InputError):
        build(settings_=settings(**overrides))


@pytest.mark.parametrize("char", ["\n", "\r", "\x00", "\t", "\x0b", "\x85", "\u2028"])
def test_any_control_character_or_unicode_line_separator_is_refused(char):
    with pytest.raises(InputError):
        build(content=parts(subject=f"Summer{char}news"))


def test_malformed_recipient_address_is_refused():
    with pytest.raises(InputError):
        build(Recipient("not an address"))


# --- internationalised addresses -------------------------------------------------------


def test_internationalised_domain_is_written_as_punycode():
    wire = build(Recipient("zoe@bücher.example", name="Zoë"))
    assert parse(wire)["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert envelope_address("zoe@bücher.example") == "zoe@xn--bcher-kva.example"
    assert not needs_smtputf8("zoe@bücher.example")


def test_non_ascii_local_part_is_written_as_utf8_for_smtputf8():
    wire = build(Recipient("zoë@example.net", name="Zoë"))
    assert needs_smtputf8("zoë@example.net")
    assert "zoë@example.net".encode() in wire
    # The stdlib bytes parser reads headers as ASCII, so read RFC 6532 headers as text.
    msg = email.message_from_string(wire.decode("utf-8"), policy=email.policy.SMTPUTF8)
    assert msg["To"].addresses[0].addr_spec == "zoë@example.net"
    assert msg["To"].addresses[0].display_name == "Zoë"


# --- with the real renderer ------------------------------------------------------------


def test_footer_link_and_header_carry_the_same_personal_unsubscribe_url(edition_dir):
    config = settings()
    rendered = render_edition(load_edition(edition_dir), config)
    recipient = Recipient("amira.hassan@example.org", name="Amira Hassan", first_name="Amira")
    content = rendered.personalise(recipient_context(recipient, config))
    msg = parse(build(recipient, content=content, edition_=rendered.edition, settings_=config))
    url = unsubscribe_url(config, recipient.email)
    assert unsubscribe_uris(msg)[0] == url
    footer = lxml_html.fromstring(decoded(msg.get_body(("html",))))
    assert url in footer.xpath("//a/@href")
    assert url in decoded(msg.get_body(("plain",)))


# --- documentation -------------------------------------------------------------------


def test_every_setting_is_documented_in_the_readme_and_env_example():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    configuration = readme.split("## Configuration", 1)[1]
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    for name in ENV_NAMES.values():
        assert f"`{name}`" in configuration, f"README ## Configuration lacks {name}"
        assert name in example, f".env.example lacks {name}"
