"""The command line: parse arguments, call the library, print results.

Nothing below this module knows about Typer. Errors the library raises on purpose
(:class:`MailerError`) are turned into one line on stderr and an exit code here,
in :class:`MailerGroup`, and nowhere else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mailer import __version__
from mailer.checks import CheckReport, Problem, check_edition
from mailer.config import load_settings
from mailer.edition import Edition, load_edition
from mailer.errors import ExitCode, MailerError

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


# --- mailer check ---------------------------------------------------------------------


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


@app.command("check")
def check_command(
    issue_dir: Annotated[
        Path, typer.Argument(help="The edition folder, e.g. issues/2025-07-summer.")
    ],
    offline: Annotated[
        bool, typer.Option("--offline", help="Skip fetching web links; run only content checks.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail (exit 1) on warnings too.")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for each web request.")
    ] = 10.0,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table for people, json for scripts.")
    ] = OutputFormat.table,
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="Settings file (default: .env in the current folder)."),
    ] = None,
    templates: Annotated[
        Path | None,
        typer.Option("--templates", help="Folder of templates that override the built-in ones."),
    ] = None,
) -> None:
    """Find dead, placeholder and unsafe links and content problems before sending.

    Checks the exact HTML that would be sent. Exit 1 on errors (or warnings with --strict).
    """
    from mailer.render import render_edition

    settings = load_settings(env_file).with_overrides(templates_dir=templates)
    edition = load_edition(issue_dir)
    rendered = render_edition(edition, settings, templates_dir=templates)
    with _link_progress(enabled=not offline) as progress:
        report = check_edition(
            rendered, settings, offline=offline, timeout=timeout, progress=progress
        )
    if output is OutputFormat.json:
        typer.echo(json.dumps([problem.as_dict() for problem in report.problems], indent=2))
        err_console.print(_summary(report))
    else:
        _print_problems(report, edition)
        console.print(_summary(report))
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


def _print_problems(report: CheckReport, edition: Edition) -> None:
    """One table per source file, in edition order, so fixes can be made file by file."""
    groups: dict[str, list[Problem]] = {}
    for problem in report.problems:
        groups.setdefault(_where_file(problem.file, edition), []).append(problem)
    for name, problems in groups.items():
        table = Table(title=name, title_justify="left", show_lines=False, expand=True)
        table.add_column("Severity", no_wrap=True)
        table.add_column("What", ratio=3)
        table.add_column("Where", no_wrap=True)
        table.add_column("URL", overflow="fold", ratio=2)
        for problem in problems:
            colour = "red" if problem.severity == "error" else "yellow"
            where = _where_file(problem.file, edition) if problem.file else "-"
            table.add_row(
                f"[{colour}]{problem.severity}[/]",
                escape(problem.message),
                f"{where}:{problem.line}" if problem.line else where,
                escape(problem.url or ""),
            )
        console.print(table)


def _where_file(path: Path | None, edition: Edition) -> str:
    if path is None:
        return "whole email"
    for base in (edition.root, edition.project_root):
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path)


def _summary(report: CheckReport) -> str:
    errors, warnings = len(report.errors), len(report.warnings)
    return (
        f"{report.links} links, {report.ok} ok, {warnings} warning{'s' * (warnings != 1)}, "
        f"{errors} error{'s' * (errors != 1)} in {report.seconds:.1f} s"
    )


def main() -> None:
    """Console-script entry point."""
    app()
