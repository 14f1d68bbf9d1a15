"""The command line: parse arguments, call the library, print results.

Nothing below this module knows about Typer. Errors the library raises on purpose
(:class:`MailerError`) are turned into one line on stderr and an exit code here,
in :class:`MailerGroup`, and nowhere else.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from mailer import __version__
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


def main() -> None:
    """Console-script entry point."""
    app()
