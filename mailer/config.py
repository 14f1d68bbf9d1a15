"""Settings from the environment and an optional .env file.

Credentials live only here and only in memory: the password is kept out of
``repr`` so it cannot reach a log line or a traceback by accident.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from dotenv import dotenv_values

from mailer.errors import InputError

SECURITY_MODES = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_STATE = Path(".mailer") / "state.sqlite3"

# Settings field -> environment variable.
ENV_NAMES = {
    "smtp_host": "MAILER_SMTP_HOST",
    "smtp_port": "MAILER_SMTP_PORT",
    "smtp_user": "MAILER_SMTP_USER",
    "smtp_password": "MAILER_SMTP_PASSWORD",
    "smtp_security": "MAILER_SMTP_SECURITY",
    "smtp_ca_file": "MAILER_SMTP_CA_FILE",
    "from_addr": "MAILER_FROM",
    "reply_to": "MAILER_REPLY_TO",
    "unsubscribe_url": "MAILER_UNSUBSCRIBE_URL",
    "unsubscribe_mailto": "MAILER_UNSUBSCRIBE_MAILTO",
    "secret": "MAILER_SECRET",
    "state_path": "MAILER_STATE",
    "timezone": "MAILER_TIMEZONE",
    "templates_dir": "MAILER_TEMPLATES",
    "organisation": "MAILER_ORGANISATION",
    "postal_address": "MAILER_POSTAL_ADDRESS",
    "dkim_key_file": "MAILER_DKIM_KEY_FILE",
    "dkim_selector": "MAILER_DKIM_SELECTOR",
    "dkim_domain": "MAILER_DKIM_DOMAIN",
}


@dataclass(frozen=True)
class Settings:
    smtp_host: str = "localhost"
    smtp_port: int | None = None
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_security: str = "starttls"
    smtp_ca_file: Path | None = None
    from_addr: str = "Newsletter <newsletter@example.org>"
    reply_to: str | None = None
    unsubscribe_url: str | None = None
    unsubscribe_mailto: str | None = None
    secret: str | None = field(default=None, repr=False)
    state_path: Path | None = None
    timezone: str | None = None
    templates_dir: Path | None = None
    organisation: str | None = None
    postal_address: str | None = None
    dkim_key_file: Path | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None

    @property
    def port(self) -> int:
        """The SMTP port, defaulting by security mode so users rarely set it."""
        return self.smtp_port or DEFAULT_PORTS[self.smtp_security]

    @property
    def dkim_enabled(self) -> bool:
        return bool(self.dkim_key_file and self.dkim_selector and self.dkim_domain)

    def state_file(self, project_root: Path) -> Path:
        """Where the journal lives: relative paths resolve against the project root,
        never the current directory, so cron (which runs elsewhere) finds the same file."""
        path = self.state_path or DEFAULT_STATE
        return path if path.is_absolute() else project_root / path

    def with_overrides(self, **overrides: object) -> Settings:
        """Command-line flags win over the environment; None means 'not given'."""
        given = {key: value for key, value in overrides.items() if value is not None}
        return _validated(replace(self, **given), source="command line")


def load_settings(
    env_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read settings: the process environment wins over the .env file.

    With no ``env_file`` a ``.env`` in the current directory is read if present; cron
    jobs should pass ``--env-file`` so nothing depends on where they run. Relative
    paths inside an env file resolve against that file's folder.
    """
    environ = os.environ if environ is None else environ
    file_values: dict[str, str | None] = {}
    base: Path | None = None
    if env_file is not None:
        if not env_file.is_file():
            raise InputError("env file not found", path=env_file, hint="check --env-file")
        file_values = dotenv_values(env_file)
        base = env_file.resolve().parent
    elif Path(".env").is_file():
        file_values = dotenv_values(".env")
    raw: dict[str, object] = {}
    for name, env_name in ENV_NAMES.items():
        value = environ.get(env_name) or file_values.get(env_name)
        if value:
            raw[name] = value.strip()
    source = str(env_file) if env_file else "environment"
    return _validated(Settings(**_coerce(raw, base, source)), source=source)


def _coerce(raw: dict[str, object], base: Path | None, source: str) -> dict[str, object]:
    types = {f.name: f.type for f in fields(Settings)}
    out: dict[str, object] = {}
    for name, value in raw.items():
        kind = str(types[name])
        if "int" in kind:
            try:
                out[name] = int(str(value))
            except ValueError:
                raise InputError(
                    f"{ENV_NAMES[name]} must be a whole number, not {value!r}", path=source
                ) from None
        elif "Path" in kind:
            path = Path(str(value)).expanduser()
            out[name] = base / path if base and not path.is_absolute() else path
        else:
            out[name] = value
    return out


def _validated(settings: Settings, source: str) -> Settings:
    if settings.smtp_security not in SECURITY_MODES:
        raise InputError(
            f"SMTP security must be one of {', '.join(SECURITY_MODES)}, "
            f"not {settings.smtp_security!r}",
            path=source,
        )
    return settings
