"""Merge fields survive rendering as tokens and are filled per recipient."""

from __future__ import annotations

import pytest

from mailer.errors import InputError
from mailer.merge import MergeFields, evaluator, variables


def personalise(source: str, context: dict[str, str], html: bool) -> str:
    fields = MergeFields()
    template = fields.template(fields.protect(source))
    return template.render(evaluator(template.expressions)(context), html=html)


def test_values_are_html_escaped_in_html_and_plain_in_text():
    context = {"name": "<Eve & Co>"}
    assert personalise("Hi {{ name }}", context, html=True) == "Hi &lt;Eve &amp; Co&gt;"
    assert personalise("Hi {{ name }}", context, html=False) == "Hi <Eve & Co>"


def test_default_applies_to_empty_and_missing_values():
    source = 'Dear {{ first_name | default("colleague") }}'
    assert personalise(source, {"first_name": ""}, html=False) == "Dear colleague"
    assert personalise(source, {}, html=False) == "Dear colleague"
    assert personalise(source, {"first_name": "Asha"}, html=False) == "Dear Asha"


def test_tokens_are_plain_alphanumerics_so_rendering_leaves_them_alone():
    protected = MergeFields().protect("{{ a }} and {{ b }}")
    assert "{" not in protected
    assert protected.replace(" and ", "").isalnum()


def test_bad_expression_is_reported_with_file_and_line():
    with pytest.raises(InputError) as info:
        MergeFields().protect("line one\nHi {{ name | }}", origin="01-a.md")
    assert info.value.line == 2
    assert "01-a.md" in str(info.value)


def test_variables_lists_the_names_read():
    assert variables(["first_name | default('x')", "org"]) == {"first_name", "org"}
