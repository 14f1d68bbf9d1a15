"""The command line: parse arguments, call the library, print results.

Nothing below this module knows about Typer. Errors the library raises on purpose
(:class:`MailerError`) are turned into one line on stderr and an exit code here,
in :class:`MailerGroup`, and nowhere else.
"""

from __future__ import annotations

import webbrowser
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
