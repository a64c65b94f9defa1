"""The `deliverability` command line: one group, commands in `deliverability.commands`."""

from __future__ import annotations

import os
import signal
import sys

import click
from sqlalchemy import exc as sa_exc

from deliverability.commands import actions, db, explain, nightly, policy, prune, record, report
from deliverability.commands.base import (
    DATABASE_URL_ENV,
    DEBUG_ENV,
    POLICY_ENV,
    AppContext,
    cli,
)
from deliverability.errors import DeliverabilityError, StoreBusyError, StoreUnavailableError

__all__ = ["DATABASE_URL_ENV", "POLICY_ENV", "AppContext", "cli", "main"]


def _refuse_undecodable_arguments(args: list[str]) -> None:
    """Stop with a clear error when an argument is not valid UTF-8.

    Python hands such bytes over as lone surrogates (PEP 383), which every later print or
    database write would fail on; saying so up front names the argument instead.
    """
    for number, arg in enumerate(args, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape")[:200]
            click.echo(f"error: argument {number} is not valid UTF-8: {shown!r}", err=True)
            sys.exit(2)


#: Said after the database failed under a command (exit 75).
_RUN_AGAIN = "(what was recorded before it is kept; run the command again once that is fixed)"


def main() -> None:
    """Console entry point: errors are reported in one line each, never as a traceback."""
    if hasattr(signal, "SIGPIPE"):
        # Behave as a Unix filter: `deliverability explain - | head` ends quietly when head has
        # read enough (killed by SIGPIPE, as cat or grep would be), rather than reporting exit 1.
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    _refuse_undecodable_arguments(sys.argv[1:])
    try:
        # With standalone_mode off, click returns the code a command passed to ctx.exit().
        code = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (StoreUnavailableError, StoreBusyError) as exc:
        # The database cannot be reached, when the command starts or under it (store.session,
        # `out_of_reach`): a server down, restarting, full; or its lock waits outlasted every
        # retry (store.retry): a lock held too long, as below. A URL the server refuses (a
        # wrong password, user or database) is a plain StoreError: exit 2, to be fixed.
        click.echo(f"error: {exc}\n{_RUN_AGAIN}", err=True)
        sys.exit(75)
    except DeliverabilityError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except BrokenPipeError:
        # `deliverability explain - | head` closes the pipe early: not an error.
        sys.stderr.close()
        sys.exit(0)
    except sa_exc.OperationalError as exc:
        # The database failed under a running command: a full disk, a lock held past the busy
        # timeout (a server gone away is a StoreUnavailableError, above). No bug of ours, so
        # no "please report it": say what the database said, and that a run again resumes
        # (every chunk and every file's progress is its own transaction). Exit 75,
        # EX_TEMPFAIL (sysexits.h): try again later.
        if os.environ.get(DEBUG_ENV):
            raise
        said = str(exc.orig if exc.orig is not None else exc).strip().splitlines() or ["?"]
        click.echo(f"error: the database failed: {said[0][:300]}\n{_RUN_AGAIN}", err=True)
        sys.exit(75)
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
for command in (
    report.report,
    prune.prune,
    nightly.nightly,
    nightly.ingest,
    nightly.rejected,
    db.db,
    record.record,
    record.status,
    record.sendable,
    record.suppress,
    record.unsuppress,
    explain.explain,
    policy.policy,
    actions.throttles,
    actions.actions,
):
    cli.add_command(command)
