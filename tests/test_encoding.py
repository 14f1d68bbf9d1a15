"""The per-edition quoted-printable encoding: literal chunks are encoded once and each
recipient's merge values are joined in, and the result must be a body that decodes to
exactly the personalised text, with no line over 76 octets."""

from __future__ import annotations

import binascii
import random

import pytest

from mailer.merge import MergeFields, MergeTemplate
from mailer.message import EncodedTemplate, quoted_printable


def template(source: str) -> MergeTemplate:
    fields = MergeFields()
    return fields.template(fields.protect(source))


def decoded(body: bytes) -> str:
    return binascii.a2b_qp(body.replace(b"\r\n", b"\n")).decode("utf-8")


def assert_wire_safe(body: bytes) -> None:
    lines = body.split(b"\r\n")
    assert all(len(line) <= 76 for line in lines), max(lines, key=len)
    assert b"\n" not in body.replace(b"\r\n", b"")
    assert body.isascii()


CASES = [
    ("<p>Dear {{ first_name }},</p>\n<p>" + "x" * 200 + "</p>", ["Zoë & <Co>"]),
    ("{{ first_name }}", [" trailing space "]),
    ("a" * 75 + "{{ first_name }}" + "b" * 75, ["c" * 150]),
    ("line ends with space \n{{ first_name }}\n. dot line\n", ["."]),
    ("=3D already {{ first_name }}= =\r\nCRLF\r\n", ["=\t"]),
    ("", []),
    ("no fields at all\n" * 10, []),
]


@pytest.mark.parametrize(("source", "values"), CASES)
@pytest.mark.parametrize("html", [True, False])
def test_encoded_body_decodes_to_the_personalised_text(source, values, html):
    merge = template(source)
    filled = b"".join(EncodedTemplate.of(merge, html=html).fill(values))
    expected = merge.render(values, html=html).replace("\r\n", "\n")
    assert decoded(filled) == expected
    assert_wire_safe(filled)


def test_random_bodies_and_values_stay_within_76_octets_and_round_trip():
    rng = random.Random(4)
    alphabet = "ab =.\t\n<>&\"'é€😀" + "x" * 20
    for _ in range(300):
        parts = ["".join(rng.choices(alphabet, k=rng.randrange(0, 160))) for _ in range(4)]
        source = "{{ first_name }}".join(parts)
        values = ["".join(rng.choices(alphabet, k=rng.randrange(0, 90)))]
        merge = template(source)
        for html in (True, False):
            filled = b"".join(EncodedTemplate.of(merge, html=html).fill(values))
            assert decoded(filled) == merge.render(values, html=html).replace("\r\n", "\n")
            assert_wire_safe(filled)


def test_a_body_without_merge_fields_is_encoded_as_one_piece():
    source = "<p>" + "long line " * 30 + "</p>\n"
    merge = template(source)
    assert EncodedTemplate.of(merge, html=True).fill([]) == (quoted_printable(source),)


def test_a_line_ending_in_whitespace_stays_within_76_octets():
    # binascii.b2a_qp alone writes this as one 77-octet line ending in "=09".
    body = quoted_printable("x" * 74 + "\t\nnext")
    assert_wire_safe(body)
    assert decoded(body) == "x" * 74 + "\t\nnext"
