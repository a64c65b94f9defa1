"""`deliverability nightly`, `ingest` and `rejected`: the bounce-processing job and its input."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session

from deliverability.commands.base import LOG_TZ_ENV, AppContext, rows_format_option, run_time
from deliverability.ingest.convert import parse_verp_template
from deliverability.ingest.messages import DEFAULT_VERP, VerpFormat
from deliverability.nightly import (
    FORMATS,
    NightlySummary,
    RunInProgress,
    bookkeeping_sessions,
    ingest_paths,
    rolled_back,
    run_lock,
    run_nightly,
    store_files,
)
from deliverability.output import emit_rows
from deliverability.store.models import RejectedInput
from deliverability.store.session import (
    create_engine,
    current_revision,
    head_revision,
    mask_url,
    resolve_url,
)

#: Exit codes: 0 all input read; 1 the run finished but some input was rejected (listed by
#: `deliverability rejected`); 2 an error stopped the run (with --strict, the first bad item);
#: 75 the run did nothing or stopped for now and is to be run again: another run holds the store
#: (`run_lock`), or the database cannot be reached or failed under the run (`cli.main`);
#: 70 an internal error. 75 and 70 are sysexits.h's EX_TEMPFAIL and EX_SOFTWARE.
EXIT_REJECTED = 1
EXIT_TRY_AGAIN = 75


@contextmanager
def _alone(url: str, command: str) -> Iterator[None]:
    """Hold the store's run lock for the command. While another run holds it, say so and exit
    75 (cron mails the line, a systemd unit is marked failed); the store is not opened. A server
    that cannot be reached fails here first, as on any command's first connection: exit 75
    too; a URL the server refuses, exit 2 (`store.session.out_of_reach`)."""
    with ExitStack() as held:
        try:
            held.enter_context(run_lock(url, command=command))
        except RunInProgress as exc:
            click.echo(f"error: {exc}", err=True)
            click.get_current_context().exit(EXIT_TRY_AGAIN)
        yield


def _progress_fn(console: Console) -> tuple[Progress | None, Callable[[str, int], None] | None]:
    """A progress bar on a terminal; plain lines otherwise (logs, cron mail)."""
    if console.is_terminal:
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed} items"),
            console=console,
            transient=True,
        )
        tasks: dict[str, Any] = {}

        def update(path: str, done: int) -> None:
            if path not in tasks:
                tasks[path] = bar.add_task(Path(path).name, total=None)
            bar.update(tasks[path], completed=done)

        return bar, update

    last: dict[str, int] = {}

    def plain(path: str, done: int) -> None:
        if last.get(path) != done:
            last[path] = done
            click.echo(f"read {done} items from {path}", err=True)

    return None, plain


def summary_line(summary: NightlySummary, command: str = "nightly") -> str:
    """The run in one line, for a log: counts, then the hygiene actions it took, if any."""
    head = "dry run: nothing was written. " if summary.dry_run else ""
    actions = ", ".join(f"{n} {label}" for label, n in sorted(summary.actions.items()) if n)
    return (
        f"{head}deliverability {command} at {summary.now.isoformat()}: "
        f"{summary.recorded} events recorded, {summary.duplicates} already known, "
        f"{summary.rejected_count} rejected, {summary.expired} deliveries expired"
        + (f"; list hygiene: {actions}" if actions else "")
    )


def _print_summary(summary: NightlySummary, fmt: str, command: str = "nightly") -> None:
    if fmt == "json":
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    click.echo(summary_line(summary, command))
    if fmt == "line":
        return
    sources = [
        {
            "source": s.path,
            "format": s.format,
            "items": s.items,
            "recorded": s.recorded,
            "known": s.duplicates,
            "rejected": s.rejected,
            "note": s.note,
        }
        for s in summary.sources
    ]
    emit_rows(
        sources,
        ["source", "format", "items", "recorded", "known", "rejected", "note"],
        "table",
        title="Sources",
    )
    outcomes = [{"outcome": k, "events": v} for k, v in summary.by_outcome.most_common()]
    emit_rows(outcomes, ["outcome", "events"], "table", title="Events by outcome")
    if summary.by_reason:
        reasons = [{"reason": k, "events": v} for k, v in summary.by_reason.most_common()]
        emit_rows(reasons, ["reason", "events"], "table", title="Events by reason")
    actions = [{"action": k, "count": v} for k, v in sorted(summary.actions.items()) if v]
    emit_rows(actions, ["action", "count"], "table", title="List hygiene")
    if summary.rejected:
        rows = [
            {"source": r.source, "position": r.position, "error": r.error}
            for r in summary.rejected[:20]
        ]
        more = summary.rejected_count - len(rows)
        emit_rows(
            rows,
            ["source", "position", "error"],
            "table",
            title="Rejected input" + (f" (first 20 of {summary.rejected_count})" if more else ""),
        )


def _time_zone(ctx: click.Context, param: click.Parameter, value: str | None) -> tzinfo:
    """--log-tz: an IANA time zone name (``Europe/Berlin``), read with zoneinfo; UTC if none.

    Click reads an empty DELIVERABILITY_LOG_TZ as unset; it is a setting that did not load, and
    UTC would shift every stamp of a host on another clock in silence, so it is refused."""
    if value is None:
        if os.environ.get(LOG_TZ_ENV) is not None:
            raise click.BadParameter(
                f"{LOG_TZ_ENV} is set but empty: give an IANA name such as Europe/Berlin (or "
                "UTC), or unset it",
                ctx,
                param,
            )
        return UTC
    try:
        return ZoneInfo(value.strip())
    # ValueError: an absolute or relative path; OSError: a folder of the database (Europe).
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise click.BadParameter(
            f"{value!r} is not a time zone: give an IANA name such as Europe/Berlin or "
            "America/New_York (or UTC)",
            ctx,
            param,
        ) from None


F = TypeVar("F", bound=Callable[..., Any])


def _input_options(command: F) -> F:
    """The options `nightly` and `ingest` share: time, strictness, input format, VERP, the
    zone of syslog time stamps, output."""
    for option in reversed(
        (
            click.option(
                "--now", "now_text", metavar="ISO8601", help="Run as if it were this time (UTC)."
            ),
            click.option(
                "--strict", is_flag=True, help="Stop at the first input item that cannot be read."
            ),
            click.option(
                "--format",
                "fmt",
                type=click.Choice(FORMATS),
                default="auto",
                help="Input format (default: detected per file).",
            ),
            click.option(
                "--verp",
                metavar="TEMPLATE",
                help="How your VERP return paths encode the recipient, e.g. "
                "'bounces+{local}={domain}' (default: any local part, '+', then local=domain).",
            ),
            click.option(
                "--log-tz",
                metavar="ZONE",
                callback=_time_zone,
                envvar=LOG_TZ_ENV,
                show_envvar=True,
                help="The zone of the mail host's clock, for syslog time stamps that carry none "
                "(Postfix's 'Nov 28 03:14:15'): an IANA name such as Europe/Berlin. Default UTC. "
                "Stamps with an offset (RFC 3339, RFC 5424) keep their own.",
            ),
            click.option(
                "--from-start",
                is_flag=True,
                help="Read every file from its top and every message again, not from where the "
                "last run stopped: after fixing what made input be rejected (a wrong --now, a "
                "clock a day ahead). What was recorded is skipped by its idempotency keys "
                "(docs/sources.md says when a different --now records an event again).",
            ),
            click.option(
                "--output",
                "out_fmt",
                type=click.Choice(["text", "line", "json"]),
                default="text",
                show_default=True,
                help="The run's summary: text for people (a line, then tables), the line alone "
                "for a log, or one JSON object for a scheduler.",
            ),
        )
    ):
        command = option(command)
    return command


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would change; write nothing.")
@click.option("--full", is_flag=True, help="Re-evaluate list hygiene over the whole history.")
@_input_options
@click.pass_obj
def nightly(
    app: AppContext,
    paths: tuple[Path, ...],
    now_text: str | None,
    dry_run: bool,
    full: bool,
    strict: bool,
    fmt: str,
    verp: str | None,
    log_tz: tzinfo,
    from_start: bool,
    out_fmt: str,
) -> None:
    """Ingest what arrived, expire retries that ran out, evaluate list hygiene, summarise.

    PATHS are files or folders: mailer reply logs (JSON Lines, CSV), Postfix logs (rotated, and
    compressed with gzip, bzip2 or xz), mbox files, Maildir folders and single bounce messages.
    A Postfix log from a host whose clock is not on UTC needs --log-tz.

    Exit status: 0 when all input was read, 1 when some was rejected (`deliverability rejected`
    lists it; the rest is recorded), 2 on an error, 75 when another run holds the store or the
    database cannot be reached or failed (run it again later; one run at a time per store).
    """
    job = _Job(app, paths, run_time(now_text), fmt, full, strict, _verp(verp), log_tz, from_start)
    url = resolve_url(app.database_url)
    with _alone(url, "nightly"):
        summary = job.dry_run(url) if dry_run else job.run(url)
    _print_summary(summary, out_fmt)
    if summary.rejected_count:
        click.get_current_context().exit(EXIT_REJECTED)


def _verp(template: str | None) -> VerpFormat:
    return DEFAULT_VERP if template is None else parse_verp_template(template)


@dataclass(frozen=True)
class _Job:
    """One `nightly` invocation's settings."""

    app: AppContext
    paths: tuple[Path, ...]
    now: datetime
    fmt: str
    full: bool
    strict: bool
    verp: VerpFormat
    log_tz: tzinfo
    from_start: bool = False

    def run(
        self, url: str, *, dry_run: bool = False, store_url: str | None = None
    ) -> NightlySummary:
        """Run the job on the store at `url`; `store_url` is the store whose own files input
        folders leave out, when `url` is a copy of it."""
        bar, update = _progress_fn(Console(stderr=True))
        now = self.now
        with (
            AppContext(url, self.app.policy_path).engine(clock=lambda: now) as engine,
            rolled_back(engine) if dry_run else nullcontext(),
            bar if bar is not None else nullcontext(),
        ):
            summary = run_nightly(
                engine,
                self.paths,
                now=now,
                fmt=self.fmt,
                full=self.full,
                strict=self.strict,
                progress=update,
                verp=self.verp,
                skip=store_files(store_url or url),
                log_tz=self.log_tz,
                from_start=self.from_start,
            )
        summary.dry_run = dry_run
        return summary

    def dry_run(self, url: str) -> NightlySummary:
        """Run the whole job and report what it did, leaving the store as it was.

        A server database (PostgreSQL, MariaDB) runs the job in one transaction that is rolled
        back at the end (`rolled_back`). SQLite runs it on a throw-away copy made with SQLite's
        online backup: there a transaction held open for the whole run would hold the one write
        lock and stop every sender for as long.
        """
        if make_url(url).get_backend_name() != "sqlite":
            _refuse_unless_at_head(url)
            return self.run(url, dry_run=True)
        source = Path(make_url(url).database or "")
        with tempfile.TemporaryDirectory(prefix="deliverability-dry-run-") as tmp:
            copy = Path(tmp) / "copy.db"
            if source.name and source.exists():
                with sqlite3.connect(source) as src, sqlite3.connect(copy) as dst:
                    src.backup(dst)
            summary = self.run(f"sqlite:///{copy}", store_url=url)
        summary.dry_run = True
        return summary


def _refuse_unless_at_head(url: str) -> None:
    """A dry run writes nothing, not even the schema: a server database whose schema is not at
    the newest revision must be upgraded first (MariaDB cannot roll back DDL)."""
    engine = create_engine(url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    if current != head_revision():
        raise click.UsageError(
            f"--dry-run: the schema of {mask_url(url)} is at revision "
            f"{current or '(none)'}, not {head_revision()}; a dry run writes nothing, not even "
            "the schema: run `deliverability db upgrade` first"
        )


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@_input_options
@click.pass_obj
def ingest(
    app: AppContext,
    paths: tuple[Path, ...],
    fmt: str,
    now_text: str | None,
    strict: bool,
    verp: str | None,
    log_tz: tzinfo,
    from_start: bool,
    out_fmt: str,
) -> None:
    """Record what PATHS say (the nightly job's first step alone: no expiry, no full hygiene
    evaluation beyond what recording applies incrementally). A Postfix log from a host whose
    clock is not on UTC needs --log-tz.

    Exit status: 0 when all input was read, 1 when some was rejected (`deliverability rejected`
    lists it; the rest is recorded), 2 on an error, 75 when another run holds the store or the
    database cannot be reached or failed (run it again later; one run at a time per store).
    """
    now = run_time(now_text)
    with _alone(resolve_url(app.database_url), "ingest"), app.engine(clock=lambda: now) as engine:
        summary = ingest_paths(
            engine,
            bookkeeping_sessions(engine),
            paths,
            now=now,
            fmt=fmt,
            strict=strict,
            verp=_verp(verp),
            log_tz=log_tz,
            from_start=from_start,
        )
    _print_summary(summary, out_fmt, "ingest")
    if summary.rejected_count:
        click.get_current_context().exit(EXIT_REJECTED)


@click.command()
@click.option("--source", help="Only input from sources whose name contains this text.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="List at most this many, newest first (the title counts them all).",
)
@rows_format_option()
@click.pass_obj
def rejected(app: AppContext, source: str | None, limit: int, fmt: str) -> None:
    """List input that could not be read: source, position, error and the raw text."""
    with app.engine() as engine, Session(engine.db) as session:
        query = select(RejectedInput).order_by(RejectedInput.id.desc()).limit(limit)
        count = select(func.count(RejectedInput.id))
        if source:
            # The title's count is of the same rows as the list: those of this source.
            query = query.where(RejectedInput.source.contains(source))
            count = count.where(RejectedInput.source.contains(source))
        rows = [
            {
                "source": r.source,
                "position": r.position,
                "error": r.error,
                "raw": r.raw[:200],
                "recorded_at": r.recorded_at,
            }
            for r in session.scalars(query)
        ]
        total = session.scalar(count) or 0
    emit_rows(
        rows,
        ["recorded_at", "source", "position", "error", "raw"],
        fmt,
        out=sys.stdout,
        title=f"Rejected input ({total} in all)",
    )
