"""The CLI's group and the context every command shares (kept apart from `deliverability.cli`,
which registers the commands, so command modules import this without an import cycle)."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from deliverability.clock import parse_now, system_clock
from deliverability.errors import InputError

if TYPE_CHECKING:
    from deliverability.clock import Clock
    from deliverability.engine import Engine
    from deliverability.policy import Policy

#: Environment variables read by the CLI (and by `Engine` where it says so).
DATABASE_URL_ENV = "DELIVERABILITY_DATABASE_URL"
POLICY_ENV = "DELIVERABILITY_POLICY"
DEBUG_ENV = "DELIVERABILITY_DEBUG"
#: `nightly` and `ingest --log-tz`: the zone of the mail host's syslog time stamps.
LOG_TZ_ENV = "DELIVERABILITY_LOG_TZ"


def rows_format_option(detail: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The `--format` option of a command that lists rows (`output.emit_rows`), as `fmt`;
    `detail` follows the help's list of formats (what the rows hold, what the table leaves
    out)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json"]),
        default="table",
        show_default=True,
        help=f"A table for people, CSV with a header row, or a JSON array of objects{detail}.",
    )


class AppContext:
    """What every command may need, made lazily: the policy and the database URL."""

    def __init__(self, database_url: str | None, policy_path: Path | None) -> None:
        self.database_url = database_url
        self.policy_path = policy_path

    def policy(self) -> Policy:
        """The effective policy: the shipped default, overridden by --policy when given."""
        from deliverability.policy import load_policy

        return load_policy(self.policy_path)

    def engine(self, clock: Clock | None = None) -> Engine:
        """The sender's Engine on the chosen store (its schema upgraded on first use)."""
        from deliverability.engine import Engine

        return Engine(self.database_url, self.policy(), clock)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--database-url",
    envvar=DATABASE_URL_ENV,
    show_envvar=True,
    help="SQLAlchemy URL of the store (default: sqlite:///deliverability.db).",
)
@click.option(
    "--policy",
    "policy_path",
    envvar=POLICY_ENV,
    show_envvar=True,
    type=click.Path(dir_okay=False),
    callback=lambda ctx, param, value: _policy_path(value),
    help="A policy TOML file that overrides or extends the shipped default policy.",
)
@click.version_option(package_name="deliverability")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, policy_path: Path | None) -> None:
    """Turn SMTP replies and bounce messages into delivery decisions and list hygiene."""
    ctx.obj = AppContext(database_url, policy_path)


def _policy_path(value: str | None) -> Path | None:
    """The --policy file. An empty one is a mistake (a variable left unset in a script, a
    secret that did not load), not a wish for the shipped policy: going on would leave the
    user's rules and numbers out in silence. Click reads an empty DELIVERABILITY_POLICY as
    unset, so the environment is looked at here."""
    if value is not None and not value.strip():
        raise click.BadParameter(
            "is empty (give the path of a policy file, or leave the option out for the shipped "
            "policy)",
            param_hint="--policy",
        )
    if value is None and os.environ.get(POLICY_ENV) is not None:
        raise click.BadParameter(
            f"{POLICY_ENV} is set but empty (give the path of a policy file, or unset it for "
            "the shipped policy)",
            param_hint="--policy",
        )
    return Path(value) if value is not None else None


def run_time(value: str | None, option: str = "--now") -> datetime:
    """A command's ``--now`` (`clock.parse_now`), or the real time without one; a bad value is
    a usage error naming the option (exit 2)."""
    if not value:
        return system_clock()
    try:
        return parse_now(value, option)
    except InputError as err:
        raise click.BadParameter(str(err), param_hint=option) from None
