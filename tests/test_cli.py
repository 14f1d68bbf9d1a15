"""The CLI as a whole: help text for every command, and the README documents each."""

from __future__ import annotations

import re

import typer

from mailer.cli import app
from tests.conftest import REPO


def command_names() -> list[str]:
    group = typer.main.get_command(app)
    names = []
    for name, command in group.commands.items():
        sub = getattr(command, "commands", None)
        names += [f"{name} {child}" for child in sub] if sub else [name]
    return names


def test_every_command_has_help_text():
    group = typer.main.get_command(app)
    for name in command_names():
        command = group
        for part in name.split():
            command = command.commands[part]
        assert (command.help or "").strip(), f"'mailer {name}' has no help text"


def test_every_command_appears_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [name for name in command_names() if f"mailer {name}" not in readme]
    assert not missing, f"README does not mention: {missing}"


def all_options() -> set[str]:
    found: set[str] = set()

    def walk(command) -> None:
        found.update(o for p in command.params for o in p.opts if o.startswith("--"))
        for child in getattr(command, "commands", {}).values():
            walk(child)

    walk(typer.main.get_command(app))
    return found


def test_every_option_the_readme_mentions_exists():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", readme))
    assert not mentioned - all_options() - {"--help"}


def test_every_option_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert not {o for o in all_options() if o not in readme} - {"--help", "--version"}


def test_version_option_prints_the_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert "mailer" in result.stdout
