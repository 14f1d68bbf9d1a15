"""The command line: parse arguments, call the library, print results.

Nothing below this module knows about Typer. Errors the library raises on purpose
(:class:`MailerError`) are turned into one line on stderr and an exit code here,
in :class:`MailerGroup`, and nowhere else.
"""

from __future__ import annotations

import json
import webbrowser
from dataclasses import asdict, astuple
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mailer import __version__
from mailer.config import load_settings
from mailer.edition import load_edition
from mailer.errors import ExitCode, MailerError
from mailer.recipients import ListScan, RowProblem, scan_recipients
from mailer.render import (
    SIZE_LIMIT,
    SIZE_WARN,
    Personalised,
    RenderedEdition,
    render_edition,
    write_build,
    write_temp_html,
)
from mailer.scaffold import scaffold_edition
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


# --- compose: mailer new / build / preview --------------------------------------------

IssueDirArgument = Annotated[
    Path, typer.Argument(metavar="ISSUE_DIR", help="The edition folder (holds edition.toml).")
]
TemplatesOption = Annotated[
    Path | None,
    typer.Option("--templates", help="Template folder (default: MAILER_TEMPLATES, ./templates)."),
]
EnvFileOption = Annotated[
    Path | None, typer.Option("--env-file", help="Read settings from this file.")
]


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
    templates: TemplatesOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Render an edition to OUT/index.html and OUT/index.txt, as a reader would see it."""
    rendered, parts = _render_preview(issue_dir, templates, env_file)
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
    templates: TemplatesOption = None,
    env_file: EnvFileOption = None,
) -> None:
    """Show an edition's subject, preheader, sections and size, then its plain text."""
    rendered, parts = _render_preview(issue_dir, templates, env_file)
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
    issue_dir: Path, templates: Path | None, env_file: Path | None
) -> tuple[RenderedEdition, Personalised]:
    """Render once and personalise with merge-field defaults (a context goes here later)."""
    settings = load_settings(env_file)
    rendered = render_edition(load_edition(issue_dir), settings, templates)
    return rendered, rendered.preview()


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


def main() -> None:
    """Console-script entry point."""
    app()


# ---------------------------------------------------------------------------
# mailer recipients check / mailer suppress add|import|list|remove
# ---------------------------------------------------------------------------


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


recipients_app = typer.Typer(help="Check subscriber lists before sending.", no_args_is_help=True)
suppress_app = typer.Typer(
    help="Manage the suppression list: addresses never mailed again, on any edition.",
    no_args_is_help=True,
)
app.add_typer(recipients_app, name="recipients")
app.add_typer(suppress_app, name="suppress")

StateOption = Annotated[
    Path | None,
    typer.Option(
        "--state", help="State file (default: MAILER_STATE, else .mailer/state.sqlite3 here)."
    ),
]
EnvFileOption = Annotated[
    Path | None, typer.Option("--env-file", help="Read settings from this .env file.")
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]
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
    list_name: Annotated[
        str | None,
        typer.Option("--list", help="Count only subscribers whose 'lists' column names this."),
    ] = None,
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
