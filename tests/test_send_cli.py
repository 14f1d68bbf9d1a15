"""`mailer send` and `mailer status` through the command line."""

from __future__ import annotations

import base64
import json
import re
import shutil

import pytest

from mailer.cli import app
from tests.conftest import REPO
from tests.send_helpers import PERSONAL_SECTION, addresses, write_list
from tests.smtp_sink import Faults


@pytest.fixture
def edition(make_edition):
    return make_edition({"01-hello.md": PERSONAL_SECTION}, subject="News for {{ first_name }}")


@pytest.fixture
def sink_env(monkeypatch):
    """Point the CLI at a sink through MAILER_* variables, as a user's .env would."""

    def point(sink, security="none", **extra):
        for name, value in {**sink.env(security), **extra}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("MAILER_FROM", "news@example.org")
        monkeypatch.setenv("MAILER_UNSUBSCRIBE_URL", "https://example.org/unsubscribe")
        monkeypatch.setenv("MAILER_SECRET", "test-secret")
        return sink

    return point


def send_args(edition, recipients, *extra):
    return ["send", str(edition), "--recipients", str(recipients), "--retry-delay", "0", *extra]


def test_the_readme_dry_run_works_with_no_smtp_server(runner, project, tmp_path):
    shutil.copy(REPO / ".env.example", project / ".env.example")
    result = runner.invoke(
        app,
        [
            "send",
            str(project / "issues" / "2025-07-summer"),
            "--recipients",
            str(project / "recipients.csv"),
            "--env-file",
            str(project / ".env.example"),
            "--dry-run",
            "--outbox",
            str(tmp_path / "out" / "outbox"),
        ],
    )
    assert result.exit_code == 0, result.output
    outbox = sorted((tmp_path / "out" / "outbox").iterdir())
    assert outbox and outbox[0].name.startswith("0001-") and outbox[0].suffix == ".eml"
    assert "Subject:" in result.output and "dry run of 2025-07-summer" in result.output
    assert not (project / ".mailer").exists()


def test_without_a_terminal_or_yes_nothing_is_sent(runner, smtp_sink, sink_env, edition, tmp_path):
    sink = sink_env(smtp_sink())
    lst = write_list(tmp_path / "l.csv", addresses(2))
    result = runner.invoke(app, send_args(edition, lst))
    assert result.exit_code == 2
    assert "pass --yes" in result.output
    assert sink.received == []


def test_send_with_yes_shows_the_plan_sends_and_logs_plain_lines(
    runner, smtp_sink, sink_env, edition, tmp_path
):
    sink = sink_env(smtp_sink())
    lst = write_list(
        tmp_path / "l.csv", [*addresses(3), "not-an-address", "READER0000@example.org"]
    )
    result = runner.invoke(app, send_args(edition, lst, "--yes"))
    assert result.exit_code == 0, result.output
    assert "3 valid (1 bad rows, 1 duplicates, 0 suppressed)" in result.output
    assert f"127.0.0.1:{sink.port} (none)" in result.output
    assert "\x1b[" not in result.output  # no colour or cursor codes for cron
    assert re.search(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S* starting: 3 message", result.output, re.M)
    assert len(sink.received) == 3


def test_a_failed_message_makes_the_exit_code_1(runner, smtp_sink, sink_env, edition, tmp_path):
    sink_env(smtp_sink(Faults(reject_data={"reader0001@example.org"})))
    lst = write_list(tmp_path / "l.csv", addresses(3))
    result = runner.invoke(app, send_args(edition, lst, "--yes"))
    assert result.exit_code == 1
    assert "failed: reader0001@example.org: DATA refused: 554 5.7.1" in result.output


def test_a_finished_edition_says_so_and_sends_nothing(
    runner, smtp_sink, sink_env, edition, tmp_path
):
    sink = sink_env(smtp_sink())
    lst = write_list(tmp_path / "l.csv", addresses(2))
    assert runner.invoke(app, send_args(edition, lst, "--yes")).exit_code == 0
    again = runner.invoke(app, send_args(edition, lst, "--yes"))
    assert again.exit_code == 0
    assert "already been sent to everyone on the list" in again.output
    assert len(sink.received) == 2


def test_status_reports_counts_failures_and_times_as_json_and_text(
    runner, smtp_sink, sink_env, edition, tmp_path
):
    sink_env(smtp_sink(Faults(reject_domains={"gone.example.net"})))
    lst = write_list(tmp_path / "l.csv", [*addresses(2), "old@gone.example.net"])
    runner.invoke(app, send_args(edition, lst, "--yes"))
    result = runner.invoke(app, ["status", str(edition), "--format", "json"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert (data["sent"], data["bounced"], data["failed"], data["pending"], data["sending"]) == (
        2,
        1,
        0,
        0,
        0,
    )
    assert data["edition"] == "2025-01-test" and data["started_at"] and data["finished_at"]
    assert data["failures"][0]["email"] == "old@gone.example.net"
    assert "550 5.1.1" in data["failures"][0]["reply"]
    text = runner.invoke(app, ["status", str(edition)]).output
    assert "2 sent" in text and "bounced old@gone.example.net" in text


def test_status_of_an_edition_never_sent_is_all_zeros(runner, edition):
    result = runner.invoke(app, ["status", str(edition), "--format", "json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["sent"] == 0


def test_the_state_option_chooses_the_journal(runner, smtp_sink, sink_env, edition, tmp_path):
    sink_env(smtp_sink())
    lst = write_list(tmp_path / "l.csv", addresses(1))
    state = tmp_path / "elsewhere.sqlite3"
    assert (
        runner.invoke(app, send_args(edition, lst, "--yes", "--state", str(state))).exit_code == 0
    )
    assert state.exists()
    data = json.loads(
        runner.invoke(
            app, ["status", str(edition), "--state", str(state), "--format", "json"]
        ).output
    )
    assert data["sent"] == 1


def test_the_password_never_appears_in_output_even_when_login_fails(
    runner, smtp_sink, sink_env, edition, tmp_path
):
    password = "Corr3ct-Horse-Battery"
    sink = smtp_sink(starttls=True, auth=("news", "another-password"))
    sink_env(sink, "starttls", MAILER_SMTP_USER="news", MAILER_SMTP_PASSWORD=password)
    lst = write_list(tmp_path / "l.csv", addresses(2))
    result = runner.invoke(app, send_args(edition, lst, "--yes"))
    assert result.exit_code == 2
    assert "refused the login for news" in result.output
    encoded = base64.b64encode(f"\0news\0{password}".encode()).decode()
    for secret in (password, encoded):
        assert secret not in result.output
        assert secret not in repr(result.exception)
    status = runner.invoke(app, ["status", str(edition), "--format", "json"]).output
    assert password not in status and json.loads(status)["sending"] == 0


def test_login_without_encryption_needs_allow_insecure_auth(
    runner, smtp_sink, sink_env, edition, tmp_path
):
    sink = sink_env(
        smtp_sink(auth=("news", "pw")), MAILER_SMTP_USER="news", MAILER_SMTP_PASSWORD="pw"
    )
    lst = write_list(tmp_path / "l.csv", addresses(1))
    refused = runner.invoke(app, send_args(edition, lst, "--yes"))
    assert refused.exit_code == 2 and "unencrypted" in refused.output
    allowed = runner.invoke(app, send_args(edition, lst, "--yes", "--allow-insecure-auth"))
    assert allowed.exit_code == 0, allowed.output
    assert len(sink.received) == 1


def test_flags_override_the_environment(runner, smtp_sink, sink_env, edition, tmp_path):
    sink = smtp_sink()
    sink_env(sink, MAILER_SMTP_HOST="smtp.invalid", MAILER_SMTP_PORT="1")
    lst = write_list(tmp_path / "l.csv", addresses(1))
    result = runner.invoke(
        app,
        send_args(
            edition,
            lst,
            "--yes",
            "--smtp-host",
            "127.0.0.1",
            "--smtp-port",
            str(sink.port),
            "--from",
            "Other <other@example.org>",
        ),
    )
    assert result.exit_code == 0, result.output
    assert sink.received[0].mail_from == "other@example.org"


def test_test_to_needs_no_confirmation_and_marks_the_subject(
    runner, smtp_sink, sink_env, edition, tmp_path
):
    sink = sink_env(smtp_sink())
    lst = write_list(tmp_path / "l.csv", addresses(2))
    result = runner.invoke(app, send_args(edition, lst, "--test-to", "me@example.com"))
    assert result.exit_code == 0, result.output
    assert sink.received[0].message["Subject"] == "[TEST] News for Reader0000"


def test_a_merge_field_no_column_fills_is_warned_about_before_sending(
    runner, make_edition, tmp_path
):
    edition = make_edition({"01-a.md": "Dear {{ frist_name }}, from {{ organisation }}.\n"})
    listing = tmp_path / "l.csv"
    listing.write_text("email,first_name,organisation\na@example.org,Ann,Acme\n", encoding="utf-8")
    result = runner.invoke(app, [*send_args(edition, listing, "--dry-run")])
    assert result.exit_code == 0, result.output
    assert "merge field 'frist_name' is not a column" in result.output
    assert "'organisation'" not in result.output
