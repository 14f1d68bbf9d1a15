"""Every error the library raises on purpose, and the exit code each one means.

The CLI maps these to a one-line message and an exit code in one place; anything
else that escapes is a bug and is shown as one.
"""

from __future__ import annotations

from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    PROBLEMS = 1  # checks found errors, or some messages failed
    USAGE = 2  # bad arguments or bad input; nothing was sent
    INTERRUPTED = 130


class MailerError(Exception):
    """An expected failure, with where it happened and what the user can do."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(
        self,
        message: str,
        *,
        path: Path | str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None
        self.line = line
        self.hint = hint

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.message}{hint}"


class InputError(MailerError):
    """The edition, template, subscriber list or configuration is wrong."""


class StateError(MailerError):
    """The journal refuses: a send is already running, or the edition changed."""


class SendInProgress(StateError):
    """Another process holds this edition's send lock; waiting is the right response."""


class DeliveryError(MailerError):
    """A message could not be delivered; recorded, and sending goes on."""

    exit_code = ExitCode.PROBLEMS

    def __init__(self, message: str, *, code: int | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.code = code


class RetryableDeliveryError(DeliveryError):
    """A temporary failure (4xx, timeout, dropped connection): worth another try."""
