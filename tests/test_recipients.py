"""Subscriber lists: validation, de-duplication, list filtering, streaming."""

from __future__ import annotations

from pathlib import Path

import pytest
from email_validator import EmailNotValidError, validate_email

from mailer.errors import InputError
from mailer.recipients import Recipient, iter_recipients, normalise_address, scan_recipients


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(data)
    return path


@pytest.fixture
def csv_file(tmp_path: Path):
    """Factory: ``csv_file("email,name\\n...")`` -> a path in tmp."""
    counter = iter(range(1000))

    def make(text: str | bytes, name: str | None = None) -> Path:
        return write(tmp_path / (name or f"list{next(counter)}.csv"), text)

    return make


def emails(paths: list[Path], **kwargs) -> list[str]:
    return [recipient.email for recipient in iter_recipients(paths, **kwargs)]


def reasons(paths: list[Path], **kwargs) -> list[tuple[int, str]]:
    return [(p.line, p.reason) for p in scan_recipients(paths, **kwargs).problems]


def test_valid_rows_become_recipients_with_name_first_name_and_lists(csv_file):
    path = csv_file(
        "email,name,first_name,lists\nalice@example.org,Alice Smith,Alice,news; board\n"
    )
    [alice] = iter_recipients([path])
    assert alice == Recipient(
        email="alice@example.org",
        name="Alice Smith",
        first_name="Alice",
        lists=("news", "board"),
        fields=alice.fields,
        source=path,
        line=2,
    )
    assert alice.key == "alice@example.org"


def test_header_names_are_matched_case_insensitively_and_stripped(csv_file):
    path = csv_file(" EMAIL , Name ,First Name\nbob@example.org,Bob Jones,Bob\n")
    [bob] = iter_recipients([path])
    assert (bob.email, bob.name, bob.first_name) == ("bob@example.org", "Bob Jones", "Bob")


def test_other_columns_are_merge_fields_in_fields_and_context(csv_file):
    path = csv_file("email,name,Organisation,Job Title\ncat@example.org,Cat,Fire Service,Chief\n")
    [cat] = iter_recipients([path])
    assert cat.fields["organisation"] == "Fire Service"
    context = cat.context()
    assert context["organisation"] == "Fire Service"
    assert context["job_title"] == "Chief"
    assert context["email"] == "cat@example.org"
    assert context["first_name"] == ""
    assert scan_recipients([path]).columns == {"email", "name", "organisation", "job_title"}


def test_addresses_are_normalised_by_the_validator(csv_file):
    path = csv_file("email\n  dan@EXAMPLE.ORG  \n")
    assert emails([path]) == ["dan@example.org"]


def test_invalid_addresses_are_bad_rows_with_line_and_reason(csv_file):
    path = csv_file("email,name\nnot-an-address,X\nok@example.org,Ok\n,Nobody\nx@@example.org,Y\n")
    problems = scan_recipients([path]).problems
    assert [(p.line, p.email) for p in problems] == [
        (2, "not-an-address"),
        (4, ""),
        (5, "x@@example.org"),
    ]
    assert problems[0].reason.startswith("invalid email address")
    assert problems[1].reason == "no email address"
    assert emails([path]) == ["ok@example.org"]


def test_duplicate_addresses_differing_by_case_are_reported_and_the_first_kept(csv_file):
    path = csv_file(
        "email,name\nAlice@example.org,First\nbob@example.org,B\nALICE@EXAMPLE.ORG,Second\n"
    )
    scan = scan_recipients([path])
    assert scan.valid == 2
    [duplicate] = scan.duplicates
    assert (duplicate.line, duplicate.email, duplicate.reason) == (
        4,
        "ALICE@example.org",
        "duplicate of line 2",
    )
    assert [r.name for r in iter_recipients([path])] == ["First", "B"]
    assert scan.problems == []


def test_header_injection_in_a_name_is_a_bad_row(csv_file):
    path = csv_file('email,name\neve@example.org,"Eve\r\nBcc: x@example.net"\nok@example.org,Ok\n')
    assert reasons([path]) == [(2, "control characters in name")]
    assert emails([path]) == ["ok@example.org"]


@pytest.mark.parametrize("column", ["email", "name", "first_name"])
@pytest.mark.parametrize("bad", ["\n", "\x00", "\x1b", "\u2028", "\x85"])
def test_control_characters_in_header_fields_are_rejected(csv_file, column, bad):
    row = {"email": "eve@example.org", "name": "Eve", "first_name": "Eve"}
    row[column] = row[column][:2] + bad + row[column][2:]
    values = ",".join(f'"{row[key]}"' for key in ("email", "name", "first_name"))
    path = csv_file(f"email,name,first_name\n{values}\n")
    [(line, reason)] = reasons([path])
    assert line == 2
    assert reason == f"control characters in {column}"


def test_control_characters_in_merge_only_columns_are_allowed(csv_file):
    path = csv_file('email,notes\nann@example.org,"two\nlines"\n')
    [ann] = iter_recipients([path])
    assert ann.fields["notes"] == "two\nlines"


def test_empty_file_is_an_input_error_naming_the_file(csv_file):
    path = csv_file("\n\n", name="empty.csv")
    with pytest.raises(InputError, match="empty") as error:
        scan_recipients([path])
    assert "empty.csv" in str(error.value)


def test_file_without_email_column_is_an_input_error(csv_file):
    path = csv_file("name,address\nAlice,alice@example.org\n", name="noemail.csv")
    with pytest.raises(InputError, match="no 'email' column") as error:
        list(iter_recipients([path]))
    assert str(error.value).startswith(f"{path}:1:")


def test_file_without_header_row_says_the_first_row_looks_like_data(csv_file):
    path = csv_file("alice@example.org,Alice\n")
    with pytest.raises(InputError, match="looks like an address"):
        scan_recipients([path])


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        scan_recipients([tmp_path / "nope.csv"])


def test_a_bad_second_file_fails_before_any_recipient_is_produced(csv_file, tmp_path):
    good = csv_file("email\na@example.org\n")
    with pytest.raises(InputError, match="not found"):
        iter_recipients([good, tmp_path / "missing.csv"])


def test_repeated_header_column_is_an_input_error(csv_file):
    path = csv_file("email,Email\na@example.org,b@example.org\n")
    with pytest.raises(InputError, match="more than once"):
        scan_recipients([path])


def test_non_utf8_bytes_in_one_row_make_only_that_row_bad(csv_file):
    path = csv_file(b"email,name\na@example.org,Ann\nb@example.org,Ren\xe9e\nc@example.org,Cy\n")
    assert reasons([path]) == [(3, "not valid UTF-8 (save the file as CSV UTF-8)")]
    assert emails([path]) == ["a@example.org", "c@example.org"]


def test_non_utf8_bytes_in_the_address_are_reported_printably(csv_file):
    path = csv_file(b"email\ncaf\xe9@example.org\n")
    [problem] = scan_recipients([path]).problems
    assert problem.email == "caf\ufffd@example.org"


def test_a_row_with_too_many_fields_is_a_bad_row(csv_file):
    path = csv_file("email,name\na@example.org,Ann\nb@example.org,Bo,extra\n")
    assert reasons([path]) == [(3, "3 values but the header has 2 columns")]


def test_a_row_with_too_few_fields_gets_empty_values(csv_file):
    path = csv_file("email,name,organisation\na@example.org\n")
    [ann] = iter_recipients([path])
    assert (ann.name, ann.fields["organisation"]) == ("", "")


def test_byte_order_mark_is_ignored(csv_file):
    path = csv_file(b"\xef\xbb\xbfemail,name\na@example.org,Ann\n")
    assert emails([path]) == ["a@example.org"]


def test_blank_lines_are_ignored_and_line_numbers_stay_physical(csv_file):
    path = csv_file('\nemail,notes\n\n"a@example.org","one\ntwo\nthree"\n\n   \nbad,x\n')
    assert [r.line for r in iter_recipients([path])] == [4]
    assert reasons([path])[0][0] == 9


def test_idn_domain_and_internationalised_local_part_are_accepted(csv_file):
    path = csv_file("email\njosé@example.org\nuser@bücher.example\n用户@例子.example\n")
    assert scan_recipients([path]).problems == []
    assert emails([path]) == ["josé@example.org", "user@bücher.example", "用户@例子.example"]


def test_duplicates_across_files_are_reported_with_the_first_file(csv_file):
    first = csv_file("email\na@example.org\nb@example.org\n", name="first.csv")
    second = csv_file("email\nB@Example.org\nc@example.org\n", name="second.csv")
    scan = scan_recipients([first, second])
    assert scan.valid == 3
    [duplicate] = scan.duplicates
    assert duplicate.path == second
    assert duplicate.line == 2
    assert duplicate.reason == f"duplicate of {first}:3"
    assert emails([first, second]) == ["a@example.org", "b@example.org", "c@example.org"]


def test_list_name_keeps_only_subscribers_on_that_list_case_insensitively(csv_file):
    path = csv_file(
        "email,lists\na@example.org,News;Board\nb@example.org,board\nc@example.org,\n"
        "d@example.org, news \n"
    )
    assert emails([path], list_name="news") == ["a@example.org", "d@example.org"]
    scan = scan_recipients([path], list_name="NEWS")
    assert (scan.valid, scan.not_on_list) == (2, 2)


def test_list_name_leaves_out_every_row_of_a_file_without_lists_column(csv_file):
    with_lists = csv_file("email,lists\na@example.org,news\n")
    without = csv_file("email\nb@example.org\nc@example.org\n")
    scan = scan_recipients([with_lists, without], list_name="news")
    assert (scan.valid, scan.not_on_list) == (1, 2)
    assert emails([with_lists, without], list_name="news") == ["a@example.org"]


def test_dedupe_with_a_list_name_keeps_the_first_row_on_that_list(csv_file):
    path = csv_file("email,name,lists\na@example.org,Off,board\nA@example.org,On,news\n")
    assert [r.name for r in iter_recipients([path], list_name="news")] == ["On"]


def test_bad_rows_are_reported_whether_or_not_they_are_on_the_list(csv_file):
    path = csv_file("email,lists\nbroken,board\n")
    assert len(scan_recipients([path], list_name="news").problems) == 1


def test_suppressed_addresses_are_counted_and_not_produced(csv_file):
    path = csv_file("email\na@example.org\nGone@Example.org\n")
    suppressed = {"gone@example.org"}.__contains__
    scan = scan_recipients([path], is_suppressed=suppressed)
    assert (scan.valid, scan.suppressed) == (1, 1)
    assert emails([path], is_suppressed=suppressed) == ["a@example.org"]


def test_iter_recipients_streams_rows_as_the_file_is_read(csv_file):
    """Rows come out while the file is being read: nothing collects the list first,
    so truncating the file after the first recipient cuts the rest short."""
    rows = 3000  # about 60 KB, far more than one read buffer
    path = csv_file("email\n" + "".join(f"user{i}@example.org\n" for i in range(rows)))
    stream = iter_recipients([path])
    assert next(stream).email == "user0@example.org"
    write(path, b"")
    assert len(list(stream)) < rows // 2


def test_punycode_and_unicode_forms_of_a_domain_are_one_address(csv_file):
    path = csv_file("email\nuser@xn--bcher-kva.example\nUSER@bücher.example\n")
    scan = scan_recipients([path])
    assert (scan.valid, len(scan.duplicates)) == (1, 1)
    assert emails([path]) == ["user@bücher.example"]


def test_a_header_row_that_is_not_utf8_is_an_input_error(csv_file):
    path = csv_file("email,name\n".encode("utf-16"))
    with pytest.raises(InputError, match="not valid UTF-8"):
        scan_recipients([path])


def test_a_file_that_is_not_csv_at_all_is_an_input_error_with_its_line(csv_file):
    path = csv_file("email,notes\na@example.org," + "x" * 200_000 + "\n")
    with pytest.raises(InputError, match="not readable as CSV") as error:
        scan_recipients([path])
    assert error.value.line == 2


TRICKY_ADDRESSES = [
    "reader1@example.org",
    "Reader.One+tag@Example.ORG",
    "Postmaster@example.org",
    "ABUSE@example.org",
    "a..b@example.org",
    ".a@example.org",
    "a.@example.org",
    "a@b@example.org",
    '"quoted local"@example.org',
    '"plain"@example.org',
    "Name <a@example.org>",
    "a@exa_mple.org",
    "a@example",
    "a@localhost",
    "a@x.test",
    "a@123.45",
    "a@[192.0.2.1]",
    "a@-example.org",
    "a@xn--bcher-kva.example",
    "a@bücher.example",
    "zoë@example.org",
    "a@" + "x" * 64 + ".org",
    "x" * 64 + "@example.org",
    "x" * 65 + "@example.org",
    "x" * 240 + "@example.org",
    "x" * 242 + "@example.org",
    "x" * 230 + "@" + "ü" * 10 + ".example",
    "!#$%&'*+-/=?^_`{|}~@example.org",
    "a@example.org.",
    "@example.org",
    "a@",
]


@pytest.mark.parametrize("address", TRICKY_ADDRESSES)
def test_fast_address_check_agrees_with_the_validator(address):
    try:
        expected = validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        with pytest.raises(ValueError, match="invalid email address") as raised:
            normalise_address(address)
        assert str(exc) in str(raised.value)
    else:
        assert normalise_address(address) == expected
