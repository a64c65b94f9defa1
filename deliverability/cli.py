"""The `deliverability` command line: one group, commands in `deliverability.commands`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from deliverability.errors import DeliverabilityError

#: Environment variables read by the CLI (and by `Engine` where it says so).
DATABASE_URL_ENV = "DELIVERABILITY_DATABASE_URL"
POLICY_ENV = "DELIVERABILITY_POLICY"
DEBUG_ENV = "DELIVERABILITY_DEBUG"


class AppContext:
    """What every command may need, made lazily: the policy and the database URL."""

    def __init__(self, database_url: str | None, policy_path: Path | None) -> None:
        self.database_url = database_url
        self.policy_path = policy_path


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
    type=click.Path(dir_okay=False, path_type=Path),
    help="A policy TOML file that overrides or extends the shipped default policy.",
)
@click.version_option(package_name="deliverability")
@click.pass_context
def cli(ctx: click.Context, database_url: str | None, policy_path: Path | None) -> None:
    """Turn SMTP replies and bounce messages into delivery decisions and list hygiene."""
    ctx.obj = AppContext(database_url, policy_path)


def main() -> None:
    """Console entry point: errors are reported in one line each, never as a traceback."""
    try:
        # With standalone_mode off, click returns the code a command passed to ctx.exit().
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except DeliverabilityError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except BrokenPipeError:
        # `deliverability explain - | head` closes the pipe early: not an error.
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc}\n"
            f"(set {DEBUG_ENV}=1 to see the traceback, and please report it)",
            err=True,
        )
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)


# Commands register here, one module per concern.
from deliverability.commands import prune  # noqa: E402

cli.add_command(prune.prune)

from deliverability.commands import report  # noqa: E402

cli.add_command(report.report)
from deliverability.commands import db  # noqa: E402

cli.add_command(db.db)
from deliverability.commands import record  # noqa: E402

cli.add_command(record.record)
cli.add_command(record.status)
cli.add_command(record.sendable)
cli.add_command(record.suppress)
cli.add_command(record.unsuppress)
from deliverability.commands import explain  # noqa: E402

cli.add_command(explain.explain)
from deliverability.commands import policy  # noqa: E402

cli.add_command(policy.policy)
