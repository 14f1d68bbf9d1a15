"""The command line: parse arguments, call the library, print results.

Nothing below this module knows about Typer. Errors the library raises on purpose
(:class:`MailerError`) are turned into one line on stderr and an exit code here,
in :class:`MailerGroup`, and nowhere else.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from mailer import __version__
from mailer.campaign import SendOptions, SendPlan, edition_status, prepare_send, run_send
from mailer.config import load_settings
from mailer.delivery import RetryPolicy
from mailer.errors import ExitCode, InputError, MailerError
from mailer.reporting import reporter_for

err_console = Console(stderr=True, highlight=False)
console = Console(highlight=False)


class MailerGroup(typer.core.TyperGroup):
    """Maps library errors to a message and an exit code, for every command."""

    def invoke(self, ctx: typer.Context):
        try:
            return super().invoke(ctx)
        except MailerError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(int(exc.exit_code)) from None
        except KeyboardInterrupt:
            err_console.print("interrupted; rerun the same command to carry on")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


app = typer.Typer(
    cls=MailerGroup,
    help="Compose, check and send a newsletter edition written in Markdown.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Compose, check and send a newsletter edition written in Markdown."""
    if version:
        console.print(f"mailer {__version__}")
        raise typer.Exit()


def main() -> None:
    """Console-script entry point."""
    app()


# ---------------------------------------------------------------------------------------
# mailer send  (delivery)
# ---------------------------------------------------------------------------------------


@app.command()
def send(
    issue_dir: Annotated[
        Path, typer.Argument(help="The edition folder, e.g. issues/2025-07-summer.")
    ],
    recipients: Annotated[
        list[Path],
        typer.Option(
            "--recipients", "-r", help="Subscriber CSV file; repeat the option for several."
        ),
    ] = ...,
    list_name: Annotated[
        str | None,
        typer.Option("--list", help="Only subscribers whose 'lists' column names this list."),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Send without asking for confirmation.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Build every message but send nothing and record nothing."),
    ] = False,
    outbox: Annotated[
        Path | None,
        typer.Option("--outbox", help="With --dry-run: write each message to this folder as .eml."),
    ] = None,
    test_to: Annotated[
        list[str] | None,
        typer.Option(
            "--test-to", help="Send one [TEST] copy to this address (repeatable); no journal."
        ),
    ] = None,
    test_as: Annotated[
        str | None,
        typer.Option("--test-as", help="With --test-to: personalise as this subscriber."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Messages per batch.")] = 50,
    batch_pause: Annotated[
        float, typer.Option("--batch-pause", help="Seconds to wait between batches.")
    ] = 0.0,
    rate: Annotated[
        float | None, typer.Option("--rate", help="At most this many messages a minute.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Stop after sending this many.")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="SMTP connections used at once.")
    ] = 1,
    retries: Annotated[
        int, typer.Option("--retries", help="Attempts per message on temporary failures.")
    ] = 3,
    retry_delay: Annotated[
        float,
        typer.Option("--retry-delay", help="Seconds before the first retry; doubles each time."),
    ] = 1.0,
    max_failures: Annotated[
        int, typer.Option("--max-failures", help="Pause after this many failures in a row.")
    ] = 10,
    force: Annotated[
        bool,
        typer.Option("--force", help="Send despite check errors or an edition changed mid-send."),
    ] = False,
    resend_uncertain: Annotated[
        bool,
        typer.Option("--resend-uncertain", help="Resend messages a killed send left in flight."),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Try recipients that failed in an earlier run again."),
    ] = False,
    allow_insecure_auth: Annotated[
        bool,
        typer.Option(
            "--allow-insecure-auth", help="Allow the SMTP login over an unencrypted connection."
        ),
    ] = False,
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="Read settings from this file.")
    ] = None,
    state: Annotated[
        Path | None, typer.Option("--state", help="The journal (state file) to use.")
    ] = None,
    smtp_host: Annotated[str | None, typer.Option("--smtp-host", help="SMTP server host.")] = None,
    smtp_port: Annotated[int | None, typer.Option("--smtp-port", help="SMTP server port.")] = None,
    smtp_security: Annotated[
        str | None, typer.Option("--smtp-security", help="starttls, tls or none.")
    ] = None,
    smtp_user: Annotated[
        str | None, typer.Option("--smtp-user", help="SMTP login (password: env).")
    ] = None,
    from_addr: Annotated[str | None, typer.Option("--from", help="The From address.")] = None,
) -> None:
    """Send an edition to a subscriber list over SMTP, safely resumable after a crash."""
    settings = load_settings(env_file).with_overrides(
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        smtp_security=smtp_security,
        smtp_user=smtp_user,
        from_addr=from_addr,
        state_path=state,
    )
    options = SendOptions(
        dry_run=dry_run,
        outbox=outbox,
        batch_size=batch_size,
        batch_pause=batch_pause,
        rate=rate,
        limit=limit,
        concurrency=concurrency,
        force=force,
        test_to=tuple(test_to or ()),
        test_as=test_as,
        list_name=list_name,
        resend_uncertain=resend_uncertain,
        retry_failed=retry_failed,
        allow_insecure_auth=allow_insecure_auth,
        retry=RetryPolicy(attempts=retries, base_delay=retry_delay),
        max_consecutive_failures=max_failures,
    )
    plan = prepare_send(issue_dir, recipients, settings, options)
    show_plan(plan)
    if plan.nothing_to_send:
        console.print(nothing_to_send_message(plan))
        raise typer.Exit(int(ExitCode.PROBLEMS if plan.uncertain else ExitCode.OK))
    if not (dry_run or test_to) and not confirmed(plan, yes):
        console.print("cancelled; nothing sent")
        return
    summary = run_send(plan, reporter_for(console))
    raise typer.Exit(int(summary.exit_code))


def show_plan(plan: SendPlan) -> None:
    scan, settings = plan.scan, plan.settings
    rows = [
        ("Edition", f"{plan.slug}: {plan.subject}"),
        (
            "Recipients",
            f"{scan.valid} valid ({len(scan.problems)} bad rows, "
            f"{len(scan.duplicates)} duplicates, {scan.suppressed} suppressed)",
        ),
        (
            "To send now",
            f"{plan.to_send}"
            + (f" ({plan.already_done} already done)" if plan.already_done else ""),
        ),
        ("SMTP", plan.smtp_host + (f" as {settings.smtp_user}" if settings.smtp_user else "")),
        ("Checks", f"{len(plan.checks.errors)} errors, {len(plan.checks.warnings)} warnings"),
    ]
    for label, value in rows:
        console.print(f"[bold]{label:<12}[/] {escape(value)}")
    for problem in scan.problems[:5]:
        console.print(
            f"  bad row {escape(str(problem.path))}:{problem.line}: {escape(problem.reason)}"
        )
    if len(scan.problems) > 5:
        console.print(
            f"  ... and {len(scan.problems) - 5} more ('mailer recipients check' lists all)"
        )
    for problem in plan.checks.errors:
        console.print(f"  [red]check error[/] {escape(problem.message)}")


def nothing_to_send_message(plan: SendPlan) -> str:
    if plan.uncertain:
        return (
            f"nothing left to send, but {plan.uncertain} message(s) are uncertain; "
            "see 'mailer status', then rerun with --resend-uncertain to send them"
        )
    when = f" (finished {plan.finished_at})" if plan.finished_at else ""
    return f"{plan.slug} has already been sent to everyone on the list{when}; nothing to send"


def confirmed(plan: SendPlan, yes: bool) -> bool:
    """Ask before mailing hundreds of people; never hang waiting for an answer under cron."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise InputError(
            "not sending without confirmation, and there is no terminal to ask on",
            hint="pass --yes to send non-interactively",
        )
    return typer.confirm(f"Send {plan.slug} to {plan.to_send} recipient(s)?", default=False)


# ---------------------------------------------------------------------------------------
# mailer status  (delivery)
# ---------------------------------------------------------------------------------------


@app.command()
def status(
    issue_dir: Annotated[
        Path, typer.Argument(help="The edition folder, e.g. issues/2025-07-summer.")
    ],
    output_format: Annotated[str, typer.Option("--format", help="text or json.")] = "text",
    state: Annotated[
        Path | None, typer.Option("--state", help="The journal (state file) to read.")
    ] = None,
    env_file: Annotated[
        Path | None, typer.Option("--env-file", help="Read settings from this file.")
    ] = None,
) -> None:
    """Show how an edition's send is going: counts by status, failures and their replies."""
    if output_format not in ("text", "json"):
        raise InputError(f"--format must be text or json, not {output_format!r}")
    settings = load_settings(env_file).with_overrides(state_path=state)
    report = edition_status(issue_dir, settings)
    if output_format == "json":
        typer.echo(json.dumps(report.to_json(), indent=2))
        return
    counts = ", ".join(f"{number} {name}" for name, number in report.counts.items())
    console.print(f"[bold]{escape(report.edition)}[/]: {counts}")
    console.print(f"started {report.started_at or 'never'}, finished {report.finished_at or '-'}")
    for row in report.failures:
        console.print(f"  [red]{row.status}[/] {escape(row.email)}: {escape(row.reply or '')}")
    for row in report.uncertain:
        console.print(
            f"  [yellow]uncertain[/] {escape(row.email)} (in flight since {row.updated_at})"
        )
