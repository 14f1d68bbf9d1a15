"""Merge fields: render the edition once, personalise it per recipient cheaply.

Before rendering, every ``{{ expression }}`` in the sources is swapped for an opaque
alphanumeric token that Markdown, Jinja, MJML, premailer and text wrapping all pass
through untouched. After rendering, the finished HTML and text are split at the
tokens into a :class:`MergeTemplate`, so personalising a message is a join of
literal chunks and per-recipient values: no Markdown, MJML or CSS inlining per
recipient.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from html import escape

from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from mailer.errors import InputError

FIELD_PATTERN = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_ENV = SandboxedEnvironment(autoescape=False)


@dataclass
class MergeFields:
    """Collects the merge expressions of one render; one instance per render."""

    nonce: str = field(default_factory=lambda: secrets.token_hex(5))
    expressions: list[str] = field(default_factory=list)

    def token(self, expression: str) -> str:
        """The placeholder that stands for ``expression`` until personalisation."""
        expression = " ".join(expression.split())
        try:
            index = self.expressions.index(expression)
        except ValueError:
            self.expressions.append(expression)
            index = len(self.expressions) - 1
        return f"MERGE{self.nonce}F{index}X"

    def protect(self, source: str, origin: str | None = None) -> str:
        """Replace each ``{{ ... }}`` in ``source`` with its token, checking its syntax."""

        def swap(match: re.Match[str]) -> str:
            expression = match.group(1).strip()
            _compile(expression, origin, source[: match.start()].count("\n") + 1)
            return self.token(expression)

        return FIELD_PATTERN.sub(swap, source)

    def template(self, rendered: str) -> MergeTemplate:
        """Split finished output at the tokens."""
        pattern = re.compile(rf"MERGE{self.nonce}F(\d+)X")
        parts = pattern.split(rendered)
        return MergeTemplate(
            chunks=tuple(parts[0::2]),
            slots=tuple(int(i) for i in parts[1::2]),
            expressions=tuple(self.expressions),
        )


@dataclass(frozen=True)
class MergeTemplate:
    """Literal chunks with a slot (an index into ``expressions``) between each pair."""

    chunks: tuple[str, ...]
    slots: tuple[int, ...]
    expressions: tuple[str, ...]

    def render(self, values: list[str], *, html: bool) -> str:
        """Join chunks and values; values are HTML-escaped when the output is HTML.

        ``values`` comes from :func:`evaluate`, computed once per recipient and
        shared by the HTML, the text and the subject.
        """
        out = [self.chunks[0]]
        for value, chunk in zip(self.slot_values(values, html=html), self.chunks[1:], strict=True):
            out.append(value)
            out.append(chunk)
        return "".join(out)

    def slot_values(self, values: list[str], *, html: bool) -> list[str]:
        """The text that goes between each pair of chunks, escaped for HTML output."""
        return [escape(values[slot]) if html else values[slot] for slot in self.slots]


def variables(expressions: tuple[str, ...] | list[str]) -> set[str]:
    """The names the expressions read, to check them against the subscriber columns."""
    names: set[str] = set()
    for expression in expressions:
        names |= meta.find_undeclared_variables(_ENV.parse("{{ " + expression + " }}"))
    return names


def evaluator(expressions: tuple[str, ...]) -> Callable[[Mapping[str, str]], list[str]]:
    """Compile the expressions once; the returned function evaluates them for one recipient.

    Empty values are left out of the context, so ``default("colleague")`` applies to
    an empty cell as well as a missing column.
    """
    compiled = [_compile(expression) for expression in expressions]

    def evaluate(context: Mapping[str, str]) -> list[str]:
        present = {key: value for key, value in context.items() if value}
        return ["" if (value := fn(**present)) is None else str(value) for fn in compiled]

    return evaluate


@lru_cache(maxsize=1024)
def _compiled(expression: str):
    # Editions repeat the same few fields many times; compiling costs milliseconds each.
    return _ENV.compile_expression(expression, undefined_to_none=False)


def _compile(expression: str, origin: str | None = None, line: int | None = None):
    try:
        return _compiled(expression)
    except TemplateSyntaxError as exc:
        raise InputError(
            f"bad merge field '{{{{ {expression} }}}}': {exc.message}",
            path=origin,
            line=line,
            hint='write it like {{ first_name | default("colleague") }}',
        ) from None
