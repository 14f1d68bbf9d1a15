"""The command line: parse arguments, call the library, print results.

Nothing below this module knows about Typer. Errors the library raises on purpose
(:class:`MailerError`) are turned into one line on stderr and an exit code here,
in :class:`MailerGroup`, and nowhere else.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, astuple
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mailer import __version__
from mailer.campaign import (
    SendOptions,
    SendPlan,
    edition_status,
    journal_report,
    prepare_send,
    run_send,
)
from mailer.checks import CheckReport, Problem, check_edition
from mailer.config import Settings, load_settings
from mailer.delivery import RetryPolicy
from mailer.edition import Edition, load_edition
from mailer.errors import ExitCode, InputError, MailerError
from mailer.message import recipient_context
from mailer.recipients import ListScan, RowProblem, iter_recipients, scan_recipients
from mailer.render import (
    SIZE_LIMIT,
    SIZE_WARN,
    Personalised,
    RenderedEdition,
    render_edition,
    write_build,
    write_temp_html,
)
from mailer.reporting import reporter_for
from mailer.scaffold import scaffold_edition
from mailer.schedule import (
    crontab_line,
    edition_dirs,
    edition_progress,
    format_at,
    parse_at,
    parse_duration,
    run_due,
    timezone,
    write_send_at,
)
from mailer.suppression import SuppressionList, read_addresses

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


class OutputFormat(StrEnum):
    """--format for every command that can report to people or to scripts."""

    table = "table"
    json = "json"


# --- options shared by several commands ------------------------------------------------

IssueDirArgument = Annotated[
    Path,
    typer.Argument(metavar="ISSUE_DIR", help="The edition folder, e.g. issues/2025-07-summer."),
]
EnvFileOption = Annotated[
    Path | None,
    typer.Option("--env-file", help="Read settings from this file (default: ./.env if present)."),
]
StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state",
        help="State file with the journal and suppression list (default: MAILER_STATE, "
        "else .mailer/state.sqlite3 in the project folder).",
    ),
]
TemplatesOption = Annotated[
    Path | None,
    typer.Option("--templates", help="Templates that override the built-in ones."),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="table for people, json for scripts.")
]
RecipientsOption = Annotated[
    list[Path],
    typer.Option("--recipients", "-r", help="Subscriber CSV file; repeat for several."),
]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", help="Messages per batch.")]
BatchPauseOption = Annotated[
    float, typer.Option("--batch-pause", help="Seconds to wait between batches.")
]
RateOption = Annotated[
    float | None, typer.Option("--rate", help="At most this many messages a minute.")
]
ConcurrencyOption = Annotated[
    int, typer.Option("--concurrency", help="SMTP connections used at once.")
]
PersonaliseOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--recipients", "-r", help="Fill merge fields as the first subscriber of this list."
    ),
]
ListOption = Annotated[
    str | None,
    typer.Option("--list", help="Only subscribers whose 'lists' column names this list."),
]


# --- mailer check ---------------------------------------------------------------------


@app.command("check")
def check_command(
    issue_dir: IssueDirArgument,
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip fetching web links; run only content checks.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail (exit 1) on warnings too.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each web request.")
    ] = 10.0,
    output: FormatOption = OutputFormat.table,
    env_file: EnvFileOption = None,
    templates: TemplatesOption = None,
) -> None:
    """Find dead, placeholder and unsafe links and content problems before sending.

    Checks the exact HTML that would be sent. Exit 1 on errors (or warnings with --strict).
    """
    settings = load_settings(env_file).with_overrides(templates_dir=templates)
    edition = load_edition(issue_dir)
    rendered = render_edition(edition, settings, templates_dir=templates)
    with _link_progress(enabled=not offline) as progress:
        report = check_edition(
            rendered, settings, offline=offline, timeout=timeout, progress=progress
        )
    if output is OutputFormat.json:
        typer.echo(json.dumps([problem.as_dict() for problem in report.problems], indent=2))
        err_console.print(_check_summary(report))
    else:
        _print_check_report(report, edition)
        console.print(_check_summary(report))
    if report.failed(strict):
        raise typer.Exit(int(ExitCode.PROBLEMS))


@contextmanager
def _link_progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A bar on stderr while links are fetched, so stdout stays clean for --format json."""
    if not enabled:
        yield None
        return
    columns = (TextColumn("checking links"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("links", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _print_check_report(report: CheckReport, edition: Edition) -> None:
    """One table per source file, in edition order, so fixes can be made file by file."""
    groups: dict[str, list[Problem]] = {}
    for problem in report.problems:
        groups.setdefault(_check_where(problem.file, edition), []).append(problem)
    for name, problems in groups.items():
        table = Table(title=name, title_justify="left", show_lines=False, expand=True)
        table.add_column("Severity", no_wrap=True)
        table.add_column("What", ratio=3)
        table.add_column("Where", no_wrap=True)
        table.add_column("URL", overflow="fold", ratio=2)
        for problem in problems:
            colour = "red" if problem.severity == "error" else "yellow"
            where = _check_where(problem.file, edition) if problem.file else "-"
            table.add_row(
                f"[{colour}]{problem.severity}[/]",
                escape(problem.message),
                f"{where}:{problem.line}" if problem.line else where,
                escape(problem.url or ""),
            )
        console.print(table)


def _check_where(path: Path | None, edition: Edition) -> str:
    if path is None:
        return "whole email"
    for base in (edition.root, edition.project_root):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def _check_summary(report: CheckReport) -> str:
    errors, warnings = len(report.errors), len(report.warnings)
    return (
        f"{report.links} links, {report.ok} ok, {warnings} warning{'s' * (warnings != 1)}, "
        f"{errors} error{'s' * (errors != 1)} in {report.seconds:.1f} s"
    )


# --- compose: mailer new / build / preview --------------------------------------------


@app.command("new")
def new_command(
    issue_dir: Annotated[
        Path,
        typer.Argument(metavar="ISSUE_DIR", help="Folder to create, e.g. issues/2025-09-autumn."),
    ],
    title: Annotated[str, typer.Option("--title", help="The edition's title (and first subject).")],
) -> None:
    """Scaffold a new edition: edition.toml and two example sections. Never overwrites."""
    created = scaffold_edition(issue_dir, title)
    console.print(f"created {escape(str(issue_dir))}: {', '.join(p.name for p in created)}")


@app.command("build")
def build_command(
    issue_dir: IssueDirArgument,
    out: Annotated[Path, typer.Option("--out", help="Folder for index.html and index.txt.")],
    recipients: PersonaliseOption = None,
    templates: TemplatesOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Render an edition to OUT/index.html and OUT/index.txt, as a reader would see it."""
    rendered, parts = _render_preview(issue_dir, templates, env_file, recipients)
    html_path, _ = write_build(parts, out)
    size = len(parts.html.encode("utf-8"))
    console.print(
        f"built {len(rendered.edition.sections)} sections, HTML {size / 1024:.1f} KB"
        f" -> {escape(str(html_path.parent))}"
    )
    _report_size(size)


@app.command("preview")
def preview_command(
    issue_dir: IssueDirArgument,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Also open the HTML in a browser.")
    ] = False,
    recipients: PersonaliseOption = None,
    templates: TemplatesOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Show an edition's subject, preheader, sections and size, then its plain text."""
    rendered, parts = _render_preview(issue_dir, templates, env_file, recipients)
    edition = rendered.edition
    size = len(parts.html.encode("utf-8"))
    table = Table(show_header=False, box=None)
    table.add_row("Subject", escape(parts.subject))
    table.add_row("Preheader", escape(edition.preheader))
    kinds = ", ".join(section.kind for section in edition.sections)
    table.add_row("Sections", f"{len(edition.sections)} ({kinds})")
    table.add_row("HTML size", f"{size / 1024:.1f} KB")
    console.print(table)
    console.rule()
    console.print(parts.text, markup=False, highlight=False)
    _report_size(size)
    if open_browser:
        path = write_temp_html(parts.html)
        webbrowser.open(path.as_uri())
        console.print(f"opened {escape(str(path))}")


def _render_preview(
    issue_dir: Path, templates: Path | None, env_file: Path | None, recipients: list[Path] | None
) -> tuple[RenderedEdition, Personalised]:
    """Render once; personalise as the first subscriber, or with merge-field defaults."""
    settings = load_settings(env_file)
    rendered = render_edition(load_edition(issue_dir), settings, templates)
    first = next(iter_recipients(recipients), None) if recipients else None
    if first is None:
        return rendered, rendered.preview()
    return rendered, rendered.personalise(recipient_context(first, settings))


def _report_size(size: int) -> None:
    if size > SIZE_LIMIT:
        err_console.print(
            f"[bold red]error:[/] HTML is {size / 1024:.0f} KB; Gmail clips messages over "
            f"{SIZE_LIMIT // 1024} KB: shorten or split the edition"
        )
        raise typer.Exit(int(ExitCode.PROBLEMS))
    if size > SIZE_WARN:
        err_console.print(
            f"[yellow]warning:[/] HTML is {size / 1024:.0f} KB, close to Gmail's "
            f"{SIZE_LIMIT // 1024} KB clipping limit"
        )


# --- end compose ----------------------------------------------------------------------


# ---------------------------------------------------------------------------------------
# mailer send  (delivery)
# ---------------------------------------------------------------------------------------


@app.command()
def send(
    issue_dir: IssueDirArgument,
    recipients: RecipientsOption = ...,
    list_name: ListOption = None,
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
    batch_size: BatchSizeOption = 50,
    batch_pause: BatchPauseOption = 0.0,
    rate: RateOption = None,
    limit: Annotated[
        int | None, typer.Option("--limit", help="Stop after sending this many.")
    ] = None,
    concurrency: ConcurrencyOption = 1,
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
    env_file: EnvFileOption = None,
    state: StateOption = None,
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
    for name in plan.unknown_fields:
        console.print(
            f"  [yellow]warning[/] merge field {escape(repr(name))} is not a column of the "
            "list: it will be empty, or its default"
        )


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
    issue_dir: IssueDirArgument,
    output: FormatOption = OutputFormat.table,
    state: StateOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Show how an edition's send is going: counts by status, failures and their replies."""
    settings = load_settings(env_file).with_overrides(state_path=state)
    report = edition_status(issue_dir, settings)
    if output is OutputFormat.json:
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


# ---------------------------------------------------------------------------
# mailer recipients check / mailer suppress add|import|list|remove
# ---------------------------------------------------------------------------


recipients_app = typer.Typer(help="Check subscriber lists before sending.", no_args_is_help=True)
suppress_app = typer.Typer(
    help="Manage the suppression list: addresses never mailed again, on any edition.",
    no_args_is_help=True,
)
app.add_typer(recipients_app, name="recipients")
app.add_typer(suppress_app, name="suppress")

ReasonHelp = "Why, kept with each entry."


def _state_path(state: Path | None, env_file: Path | None) -> Path:
    """These commands have no edition, so a relative state path means the current
    directory (run them from the project folder, as `mailer send` resolves against it)."""
    return load_settings(env_file).with_overrides(state_path=state).state_file(Path.cwd())


def _problem_json(problem: RowProblem) -> dict[str, object]:
    return {
        "file": str(problem.path),
        "line": problem.line,
        "email": problem.email,
        "reason": problem.reason,
    }


def _print_problems(title: str, problems: list[RowProblem]) -> None:
    if problems:
        console.print(f"{title}:")
    for problem in problems:
        where = f"{problem.path}:{problem.line}"
        console.print(
            f"  {escape(where)}: {escape(problem.email)}: {escape(problem.reason)}", soft_wrap=True
        )


@recipients_app.command("check")
def recipients_check(
    files: Annotated[list[Path], typer.Argument(help="Subscriber list CSV files, in order.")],
    list_name: ListOption = None,
    output: FormatOption = OutputFormat.table,
    state: StateOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Validate subscriber lists before a send.

    Counts valid, duplicate and suppressed addresses and shows every bad row with its
    line number. Exits 1 when any row is bad; duplicates alone are not an error.
    """
    state_path = _state_path(state, env_file)
    if state_path.exists():
        with SuppressionList(state_path) as suppression:
            scan = scan_recipients(files, list_name, is_suppressed=suppression.__contains__)
        suppressed: int | None = scan.suppressed
    else:
        scan, suppressed = scan_recipients(files, list_name), None
    if output is OutputFormat.json:
        report = {
            "valid": scan.valid,
            "duplicates": [_problem_json(p) for p in scan.duplicates],
            "problems": [_problem_json(p) for p in scan.problems],
            "suppressed": suppressed,
            "not_on_list": scan.not_on_list,
            "columns": sorted(scan.columns),
        }
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_scan(scan, list_name, suppressed)
    if scan.problems:
        raise typer.Exit(int(ExitCode.PROBLEMS))


def _print_scan(scan: ListScan, list_name: str | None, suppressed: int | None) -> None:
    on_list = f" on list {escape(repr(list_name))}" if list_name else ""
    console.print(f"{scan.valid} valid recipients{on_list}")
    if suppressed is not None:
        console.print(f"{suppressed} suppressed (will not be mailed)")
    if list_name:
        console.print(f"{scan.not_on_list} not on list {escape(repr(list_name))} (left out)")
    console.print(f"{len(scan.duplicates)} duplicates (the first of each is kept)")
    _print_problems("duplicates", scan.duplicates)
    console.print(f"{len(scan.problems)} bad rows (left out)")
    _print_problems("bad rows", scan.problems)


@suppress_app.command("add")
def suppress_add(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to suppress.")],
    reason: Annotated[str, typer.Option("--reason", help=ReasonHelp)] = "manual",
    state: StateOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Suppress addresses so no edition is ever sent to them.

    One invalid address adds nothing (exit 2).
    """
    with SuppressionList(_state_path(state, env_file)) as suppression:
        added = suppression.add(addresses, reason=reason, source="command line")
    console.print(f"suppressed {added} new of {len(addresses)} given")


@suppress_app.command("import")
def suppress_import(
    file: Annotated[
        Path, typer.Argument(help="CSV with an 'email' column, or one address a line.")
    ],
    reason: Annotated[str, typer.Option("--reason", help=ReasonHelp)] = "import",
    state: StateOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Suppress every address in a file, e.g. an unsubscribe or bounce export.

    Bad lines are listed and skipped; exits 1 when there were any.
    """
    found = read_addresses(file)
    with SuppressionList(_state_path(state, env_file)) as suppression:
        added = suppression.add(found.emails, reason=reason, source=file.name)
    console.print(f"suppressed {added} new of {len(found.emails)} valid addresses in {file}")
    _print_problems(f"{len(found.problems)} bad lines (skipped)", found.problems)
    if found.problems:
        raise typer.Exit(int(ExitCode.PROBLEMS))


@suppress_app.command("list")
def suppress_list(
    output: FormatOption = OutputFormat.table,
    state: StateOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Show every suppressed address with its reason, source and date."""
    state_path = _state_path(state, env_file)
    entries = []
    if state_path.exists():
        with SuppressionList(state_path) as suppression:
            entries = suppression.entries()
    if output is OutputFormat.json:
        typer.echo(json.dumps([asdict(e) for e in entries], ensure_ascii=False, indent=2))
        return
    table = Table("email", "reason", "source", "added")
    for entry in entries:
        table.add_row(*(escape(value) for value in astuple(entry)))
    console.print(table)
    console.print(f"{len(entries)} suppressed addresses")


@suppress_app.command("remove")
def suppress_remove(
    addresses: Annotated[list[str], typer.Argument(help="Addresses to mail again.")],
    state: StateOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Take addresses off the suppression list, e.g. when someone resubscribes."""
    with SuppressionList(_state_path(state, env_file)) as suppression:
        removed = suppression.remove(addresses)
    console.print(f"removed {removed} of {len(addresses)} given")


# --- mailer schedule / mailer due -------------------------------------------------------


@app.command("schedule")
def schedule_command(
    issue_dir: Annotated[
        Path | None,
        typer.Argument(metavar="[ISSUE_DIR]", help="The edition to schedule (not with --list)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            help='When to send, e.g. "2025-07-15 09:00" in MAILER_TIMEZONE (else this '
            "machine's zone), or RFC 3339 with an offset.",
        ),
    ] = None,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the send time: back to a draft.")
    ] = False,
    list_root: Annotated[
        Path | None,
        typer.Option(
            "--list", metavar="ISSUES_ROOT", help="Show every edition's send time and state."
        ),
    ] = None,
    recipients: Annotated[
        list[Path] | None,
        typer.Option("--recipients", "-r", help="Subscriber list to put in the crontab line."),
    ] = None,
    env_file: EnvFileOption = None,
    state: StateOption = None,
) -> None:
    """Set or clear an edition's send time, or list what is scheduled.

    Prints the crontab line that makes 'mailer due' send it on time.
    """
    settings = load_settings(env_file).with_overrides(state_path=state)
    if list_root is not None:
        if issue_dir is not None or at or clear:
            raise InputError(
                "--list takes the issues folder alone", hint="mailer schedule --list issues"
            )
        _print_schedule(list_root, settings)
        return
    if issue_dir is None or bool(at) == clear:
        raise InputError(
            "give an edition and one of --at or --clear",
            hint='e.g. mailer schedule issues/2025-07-summer --at "2025-07-15 09:00"',
        )
    edition = load_edition(issue_dir)
    if clear:
        write_send_at(issue_dir, None)
        console.print(f"{escape(edition.slug)}: send time cleared; it is a draft again")
        return
    when = parse_at(at, timezone(settings.timezone))
    write_send_at(issue_dir, when)
    console.print(
        f"{escape(edition.slug)} will be sent at {format_at(when)} "
        f"({when.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC)"
    )
    if when <= dt.datetime.now(dt.UTC):
        err_console.print("[yellow]warning:[/] that time has passed: 'mailer due' sends it now")
    line = crontab_line(
        edition.root.parent,
        recipients or [edition.project_root / "recipients.csv"],
        env_file or edition.project_root / ".env",
        _mailer_command(),
        edition.project_root / ".mailer" / "due.log",
    )
    console.print("To send it on time, install this line with 'crontab -e' (once per project):")
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _mailer_command() -> str:
    """The absolute path of this mailer, since cron's PATH will not have the venv."""
    script = Path(sys.argv[0])
    if script.name == "mailer" and script.exists():
        return str(script.resolve())
    return shutil.which("mailer") or f"{sys.executable} -m mailer"


def _print_schedule(issues_root: Path, settings: Settings) -> None:
    table = Table("edition", "send at", "state", "messages")
    for edition_dir in edition_dirs(issues_root):
        try:
            edition = load_edition(edition_dir)
        except MailerError as exc:
            table.add_row(escape(edition_dir.name), "-", "[red]error[/]", escape(str(exc)))
            continue
        when = format_at(edition.send_at) if edition.send_at else "-"
        status = journal_report(edition, settings)
        counts = ", ".join(f"{n} {name}" for name, n in status.counts.items() if n)
        table.add_row(
            escape(edition.slug), when, edition_progress(edition, status).value, counts or "-"
        )
    console.print(table)


@app.command("due")
def due_command(
    issues_root: Annotated[
        Path, typer.Argument(metavar="ISSUES_ROOT", help="The folder of editions, e.g. issues.")
    ],
    recipients: RecipientsOption = ...,
    list_name: ListOption = None,
    max_late: Annotated[
        str,
        typer.Option(
            "--max-late", help="Do not send automatically when later than this (24h, 90m, 2d)."
        ),
    ] = "24h",
    batch_size: BatchSizeOption = 50,
    batch_pause: BatchPauseOption = 0.0,
    rate: RateOption = None,
    concurrency: ConcurrencyOption = 1,
    env_file: EnvFileOption = None,
    state: StateOption = None,
) -> None:
    """Send every edition whose send time has come: the command for cron.

    Never prompts; skips future and finished editions; resumes interrupted sends;
    refuses editions with check errors or overdue past --max-late (exit 1).
    Exit 0 when there was nothing to do.
    """
    settings = load_settings(env_file).with_overrides(state_path=state)
    options = SendOptions(
        batch_size=batch_size,
        batch_pause=batch_pause,
        rate=rate,
        concurrency=concurrency,
        list_name=list_name,
    )
    outcomes = run_due(
        issues_root,
        recipients,
        settings,
        options,
        reporter_for(console),
        now=dt.datetime.now(dt.UTC),
        max_late=parse_duration(max_late),
    )
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(int(ExitCode.PROBLEMS))


def main() -> None:
    """Console-script entry point."""
    app()
