"""Shared by the compose tests: settings like the example .env, and HTML parsing."""

from __future__ import annotations

from lxml import html as lxml_html

from mailer.config import Settings

SETTINGS = Settings(
    from_addr="Northvale Safeguarding Children Partnership <newsletter@example.org>",
    organisation="Northvale Safeguarding Children Partnership",
    postal_address="Civic Centre, 1 Market Street, Northvale NV1 2AB",
    unsubscribe_url="https://example.org/newsletter/unsubscribe",
    unsubscribe_mailto="unsubscribe@example.org",
)

ALL_KINDS = {
    "01-article.md": (
        "---\ntitle: Article title\nimage: https://example.org/a.jpg\nimage_alt: A park\n"
        "button_text: Read more about it\nbutton_url: https://example.org/more\n---\n"
        "Hello {{ first_name | default('colleague') }}.\n\n# Body heading\n\nText.\n"
    ),
    "02-profile.md": (
        "---\ntitle: Meet Sam\nkind: profile\nimage: https://example.org/sam.jpg\n"
        "image_alt: Sam at her desk\n---\nSam joined in June.\n"
    ),
    "03-alert.md": "---\ntitle: Scam warning\nkind: alert\n---\nDo not pay.\n",
    "04-events.md": (
        "---\ntitle: Dates\nkind: events\n---\n"
        "- **Tue 16 Sept** - Conference, Civic Centre\n- **2 Oct, 10:00** Board meeting\n"
    ),
    "05-training.md": (
        "---\ntitle: Courses\nkind: training\n---\n"
        "- **9 Sept** Introduction to safeguarding *Level 1*\n- **11 Sept** Neglect *Level 2*\n"
    ),
    "06-callout.md": "---\ntitle: Send us news\nkind: callout\n---\nWrite to us.\n",
}


def parse(html: str):
    return lxml_html.document_fromstring(html)


def texts(doc, xpath: str) -> list[str]:
    return [" ".join(el.text_content().split()) for el in doc.xpath(xpath)]
