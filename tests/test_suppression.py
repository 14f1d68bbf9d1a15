"""The suppression list: stored in the state file, case-insensitive, always wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.errors import InputError
from mailer.recipients import iter_recipients, scan_recipients
from mailer.suppression import SuppressionList, read_addresses


@pytest.fixture
def suppression(tmp_path: Path):
    with SuppressionList(tmp_path / ".mailer" / "state.sqlite3") as opened:
        yield opened


def test_added_addresses_are_suppressed_case_insensitively(suppression):
    assert suppression.add(["Alice@Example.org", "bob@example.org"]) == 2
    assert "alice@example.org" in suppression
    assert "ALICE@EXAMPLE.ORG" in suppression
    assert "carol@example.org" not in suppression


def test_adding_an_address_twice_keeps_the_first_reason(suppression):
    suppression.add(["a@example.org"], reason="unsubscribed")
    assert suppression.add(["A@example.org"], reason="bounced") == 0
    [entry] = suppression.entries()
    assert (entry.email, entry.reason) == ("a@example.org", "unsubscribed")


def test_one_invalid_address_adds_nothing(suppression):
    with pytest.raises(InputError, match="'not-an-address'"):
        suppression.add(["ok@example.org", "not-an-address"])
    assert len(suppression) == 0


def test_header_injection_attempt_is_not_an_address(suppression):
    with pytest.raises(InputError, match="control characters"):
        suppression.add(["eve@example.org\r\nBcc: x@example.net"])


def test_removed_addresses_are_no_longer_suppressed(suppression):
    suppression.add(["a@example.org", "b@example.org"])
    assert suppression.remove(["A@EXAMPLE.ORG", "nobody@example.org"]) == 1
    assert "a@example.org" not in suppression
    assert "b@example.org" in suppression


def test_entries_record_reason_source_and_time(suppression):
    suppression.add(["a@example.org"], reason="bounced", source="edition 2025-07")
    [entry] = suppression.entries()
    assert (entry.reason, entry.source) == ("bounced", "edition 2025-07")
    assert entry.created_at.endswith("+00:00")


def test_the_list_persists_in_the_state_file(tmp_path):
    state = tmp_path / "state.sqlite3"
    with SuppressionList(state) as first:
        first.add(["a@example.org"])
    with SuppressionList(state) as second:
        assert "a@example.org" in second


def test_import_reads_a_plain_file_of_one_address_per_line(tmp_path, suppression):
    path = tmp_path / "unsubscribed.txt"
    path.write_text("a@example.org\n\nB@Example.org\nnot an address\n", encoding="utf-8")
    found = read_addresses(path)
    assert found.emails == ["a@example.org", "B@example.org"]
    assert [(p.line, p.email) for p in found.problems] == [(4, "not an address")]
    assert suppression.import_file(path) == 2
    assert {e.source for e in suppression.entries()} == {"unsubscribed.txt"}


def test_import_reads_a_csv_with_an_email_column(tmp_path, suppression):
    path = tmp_path / "export.csv"
    path.write_text("Name,Email\nAnn,a@example.org\nBo,broken\n", encoding="utf-8")
    found = read_addresses(path)
    assert found.emails == ["a@example.org"]
    assert [(p.line, p.email) for p in found.problems] == [(3, "broken")]
    assert suppression.import_file(path, reason="unsubscribed") == 1
    assert [e.reason for e in suppression.entries()] == ["unsubscribed"]


def test_import_of_a_missing_file_is_an_input_error(tmp_path, suppression):
    with pytest.raises(InputError, match="not found"):
        suppression.import_file(tmp_path / "nope.txt")


def test_suppression_beats_a_freshly_exported_subscriber_list(tmp_path, suppression):
    """Someone unsubscribed; next month's export from the CRM still holds them.
    They must not be mailed: the export does not resubscribe them."""
    suppression.add(["left@example.org"], reason="unsubscribed")
    export = tmp_path / "export.csv"
    export.write_text(
        "email,name\nstay@example.org,Stay\nLeft@Example.org,Left Again\n", encoding="utf-8"
    )
    mailed = [r.email for r in iter_recipients([export], is_suppressed=suppression.__contains__)]
    assert mailed == ["stay@example.org"]
    assert scan_recipients([export], is_suppressed=suppression.__contains__).suppressed == 1
    assert "left@example.org" in suppression


def test_a_bounce_recorded_mid_send_suppresses_the_address_from_then_on(tmp_path):
    """Another process (or the sender itself) adding an address is seen at once."""
    state = tmp_path / "state.sqlite3"
    with SuppressionList(state) as sender, SuppressionList(state) as bounce_handler:
        assert "gone@example.org" not in sender
        bounce_handler.add(["gone@example.org"], reason="bounced")
        assert "gone@example.org" in sender
