"""Subscriber lists: read CSV files, validate and de-duplicate addresses, stream recipients.

A list is read row by row and never held in memory: the only thing that grows with
the list is the set of addresses already seen (for de-duplication). A bad row is a
:class:`RowProblem` with its physical line number, not an exception, so one stray
byte or typo does not sink a list of thousands; only problems with a whole file
(missing, empty, no ``email`` column) raise :class:`InputError`.
"""

from __future__ import annotations

import csv
import functools
import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TextIO

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)

from mailer.errors import InputError

# Columns with a meaning of their own; every other column is a merge field only.
EMAIL, NAME, FIRST_NAME, LISTS = "email", "name", "first_name", "lists"
HEADER_FIELDS = (EMAIL, NAME, FIRST_NAME)  # these end up in message headers
# Characters that can end or fold a header line (CR, LF, NEL, U+2028...) or hide in one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What surrogateescape turns undecodable bytes into.
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")


@dataclass(frozen=True)
class Recipient:
    """One subscriber, validated and normalised, ready to be mailed."""

    email: str
    name: str = ""
    first_name: str = ""
    lists: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    source: Path | None = None
    line: int = 0

    @property
    def key(self) -> str:
        """Identity for de-duplication, the journal and suppression.

        Case-folded because people type ``Alice@Example.org`` and ``alice@example.org``
        for the same mailbox, and mailing both would mail one person twice.
        """
        return address_key(self.email)

    def context(self) -> dict[str, str]:
        """Merge-field values: every column of the row, with the cleaned-up
        email, name and first name winning over the raw cells."""
        return {
            **self.fields,
            EMAIL: self.email,
            NAME: self.name,
            FIRST_NAME: self.first_name,
        }


@dataclass(frozen=True)
class RowProblem:
    """A row that was left out, and why; ``line`` is the physical line in the file."""

    path: Path
    line: int
    email: str
    reason: str


@dataclass(frozen=True)
class ListScan:
    """What a pass over the lists found, without keeping any recipient.

    ``not_on_list`` counts valid rows left out because ``list_name`` was given and
    the row's ``lists`` column (or a missing one) does not name that list.
    """

    valid: int
    problems: list[RowProblem]
    duplicates: list[RowProblem]
    suppressed: int
    columns: frozenset[str]
    not_on_list: int = 0


def address_key(email: str) -> str:
    """The case-folded form of a normalised address, shared with the suppression list."""
    return email.strip().casefold()


def normalise_address(raw: str) -> str:
    """The validator's normalised form of ``raw``; raises ValueError with the reason.

    Syntax only (no DNS), so a list checks the same offline as online; internationalised
    local parts and IDN domains are accepted because partners do have them.
    """
    address = raw.strip()
    if not address:
        raise ValueError("no email address")
    if _CONTROL.search(address):
        raise ValueError("control characters in email")
    quick = _plain_address(address)
    if quick is not None:
        return quick
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address: {exc}") from None


def _plain_address(address: str) -> str | None:
    """The validator's answer for the common case, at a twentieth of the cost; None
    for anything else, which then gets the full validation.

    A list is read two or three times per send, and validating an address costs
    ~0.1 ms, mostly in checking the domain character by character; a list has few
    domains. So: a plain ASCII local part (the validator's own dot-atom pattern,
    which it passes through unchanged), a domain validated once and remembered,
    and the validator's length limits on the result.
    """
    local, _, domain = address.rpartition("@")
    if not local.isascii() or not DOT_ATOM_TEXT.match(local):
        return None
    if local.lower() in CASE_INSENSITIVE_MAILBOX_NAMES:
        return None
    domains = _domain(domain)
    if domains is None:
        return None
    normalised, ascii_domain = f"{local}@{domains[0]}", domains[1]
    longest = max(
        len(address.encode()), len(normalised.encode()), len(local) + 1 + len(ascii_domain)
    )
    return normalised if longest <= EMAIL_MAX_LENGTH else None


@functools.lru_cache(maxsize=1024)
def _domain(domain: str) -> tuple[str, str] | None:
    """A domain's normalised and ASCII forms, or None if the validator refuses it."""
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return None
    return checked.domain, checked.ascii_domain


def column_name(header: str) -> str:
    """Header cells compared loosely: ``First Name`` and ``first_name`` are one column,
    and the result is usable as a merge-field name."""
    return re.sub(r"[\s-]+", "_", header.strip().lower())


def scan_recipients(
    paths: Sequence[Path],
    list_name: str | None = None,
    is_suppressed: Callable[[str], bool] | None = None,
) -> ListScan:
    """Check every row of every file and count what a send would do with it."""
    problems: list[RowProblem] = []
    duplicates: list[RowProblem] = []
    counts = {"valid": 0, "suppressed": 0, "not_on_list": 0}
    walk = _Walk(paths, list_name, is_suppressed)
    for outcome, item in walk:
        if outcome == "problem":
            problems.append(item)
        elif outcome == "duplicate":
            duplicates.append(item)
        else:
            counts[outcome] += 1
    return ListScan(
        valid=counts["valid"],
        problems=problems,
        duplicates=duplicates,
        suppressed=counts["suppressed"],
        columns=frozenset(walk.columns),
        not_on_list=counts["not_on_list"],
    )


def iter_recipients(
    paths: Sequence[Path],
    list_name: str | None = None,
    is_suppressed: Callable[[str], bool] | None = None,
) -> Iterator[Recipient]:
    """Valid, de-duplicated (first kept), unsuppressed recipients in file order.

    Every file's header is checked before the first recipient is produced, so a typo
    in the second file's name fails before anything is sent, not halfway through.
    """
    walk = _Walk(paths, list_name, is_suppressed)
    return (item for outcome, item in walk if outcome == "valid")


class _Walk:
    """One pass over the files, yielding ``(outcome, Recipient | RowProblem)``.

    Outcomes: ``valid``, ``problem``, ``duplicate``, ``suppressed``, ``not_on_list``.
    Files are checked (exist, readable, header with ``email``) on construction.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        list_name: str | None,
        is_suppressed: Callable[[str], bool] | None,
    ) -> None:
        if not paths:
            raise InputError("no subscriber list given", hint="pass --recipients FILE")
        self.paths = [Path(path) for path in paths]
        self.list_key = list_name.strip().casefold() if list_name else None
        self.is_suppressed = is_suppressed
        self.columns: set[str] = set()
        for path in self.paths:
            with _open(path) as handle:
                self.columns.update(_header(path, _rows(path, csv.reader(handle)))[0])
        # key -> where it was first seen, packed as file index << 32 | line: one int per
        # address instead of a tuple, since this is the one structure that grows.
        self._first_seen: dict[str, int] = {}

    def __iter__(self) -> Iterator[tuple[str, Recipient | RowProblem]]:
        for index, path in enumerate(self.paths):
            for recipient in read_rows(path):
                yield self._classify(index, recipient)

    def _classify(
        self, index: int, item: Recipient | RowProblem
    ) -> tuple[str, Recipient | RowProblem]:
        if isinstance(item, RowProblem):
            return "problem", item
        if self.list_key is not None and self.list_key not in (
            name.casefold() for name in item.lists
        ):
            return "not_on_list", item
        key = item.key
        first = self._first_seen.get(key)
        if first is not None:
            first_path, first_line = self.paths[first >> 32], first & 0xFFFFFFFF
            where = (
                f"line {first_line}" if first_path == item.source else f"{first_path}:{first_line}"
            )
            return "duplicate", RowProblem(
                item.source or Path(), item.line, item.email, f"duplicate of {where}"
            )
        self._first_seen[key] = index << 32 | item.line
        if self.is_suppressed is not None and self.is_suppressed(key):
            return "suppressed", item
        return "valid", item


def _open(path: Path) -> TextIO:
    """Open a list as UTF-8 (BOM or not), keeping undecodable bytes as lone
    surrogates so the row holding them can be reported and the rest read."""
    try:
        return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
    except FileNotFoundError:
        raise InputError(
            "subscriber list not found", path=path, hint="check the file name"
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read subscriber list: {exc.strerror}", path=path) from None


def _header(
    path: Path, rows: Iterator[tuple[int, list[str]]], headerless: bool = False
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The normalised column names of the first non-blank row, and the data rows.

    With ``headerless`` a first row that names no ``email`` column is data, and
    the file is one address per line.
    """
    first = next(rows, None)
    if first is None:
        raise InputError(
            "the file is empty",
            path=path,
            hint="the first row must be a header with an 'email' column",
        )
    line, row = first
    columns = [column_name(cell) for cell in row]
    if EMAIL not in columns and headerless:
        return [EMAIL], itertools.chain([first], rows)
    if _UNDECODABLE.search("".join(row)):
        raise InputError(
            "the header row is not valid UTF-8", path=path, line=line, hint="save it as CSV UTF-8"
        )
    if EMAIL not in columns:
        hint = (
            "the first row looks like an address: add a header row such as 'email,name'"
            if any("@" in cell for cell in row)
            else "name the address column 'email'"
        )
        raise InputError("no 'email' column in the header row", path=path, line=line, hint=hint)
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        raise InputError(
            f"column {repeated[0]!r} appears more than once in the header", path=path, line=line
        )
    return columns, rows


def _rows(path: Path, reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """Non-blank CSV records with the physical line each starts on (a quoted field
    may span lines, so the reader's line count is tracked, not the record count)."""
    line_after = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(
                f"not readable as CSV: {exc}", path=path, line=line_after + 1
            ) from None
        start, line_after = line_after + 1, reader.line_num
        if any(cell.strip() for cell in row):
            yield start, row


def read_rows(path: Path, headerless: bool = False) -> Iterator[Recipient | RowProblem]:
    """Every non-blank data row of one file, parsed: no de-duplication, no filtering.

    ``headerless`` lets a plain file of one address per line through (suppression
    imports); subscriber lists must have a header.
    """
    with _open(path) as handle:
        columns, rows = _header(path, _rows(path, csv.reader(handle)), headerless)
        for line, row in rows:
            yield _parse_row(path, line, columns, row)


def _parse_row(path: Path, line: int, columns: list[str], row: list[str]) -> Recipient | RowProblem:
    """Turn one record into a Recipient, or say what is wrong with it."""
    at = columns.index(EMAIL)
    raw_email = row[at].strip() if len(row) > at else ""

    def problem(reason: str) -> RowProblem:
        return RowProblem(path, line, _printable(raw_email), reason)

    if _UNDECODABLE.search("".join(row)):
        return problem("not valid UTF-8 (save the file as CSV UTF-8)")
    if len(row) > len(columns):
        return problem(f"{len(row)} values but the header has {len(columns)} columns")
    padded = row + [""] * (len(columns) - len(row))  # exports often drop trailing empties
    values = {name: value.strip() for name, value in zip(columns, padded, strict=True) if name}
    for name in HEADER_FIELDS:
        if _CONTROL.search(values.get(name, "")):
            return problem(f"control characters in {name}")
    try:
        email = normalise_address(raw_email)
    except ValueError as exc:
        return problem(str(exc))
    lists = tuple(part.strip() for part in values.get(LISTS, "").split(";") if part.strip())
    return Recipient(
        email=email,
        name=values.get(NAME, ""),
        first_name=values.get(FIRST_NAME, ""),
        lists=lists,
        fields=MappingProxyType(values),
        source=path,
        line=line,
    )


def _printable(text: str) -> str:
    """Text safe to print and to put in JSON: undecodable bytes become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
