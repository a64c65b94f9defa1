"""`deliverability db upgrade | current | check | recount`: the store's schema."""

from __future__ import annotations

import click

from deliverability.commands.base import AppContext
from deliverability.store import minutes
from deliverability.store.session import (
    UPGRADE_LOCK_TIMEOUT_S,
    check_schema,
    create_engine,
    current_revision,
    head_revision,
    mask_url,
    missing_sqlite_file,
    resolve_url,
    upgrade_schema,
)


@click.group()
def db() -> None:
    """The store's schema: upgrade it, show its revision, check it against the models."""


@db.command()
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=UPGRADE_LOCK_TIMEOUT_S,
    show_default=True,
    metavar="SECONDS",
    help="Give up when a schema change waits longer than this for a table another connection "
    "holds (every sender's writes to it would wait behind the change meanwhile); run it again "
    "later. Index builds on PostgreSQL wait without a limit: they hold no writes back.",
)
@click.pass_context
def upgrade(ctx: click.Context, lock_timeout: float) -> None:
    """Create or upgrade the schema to the newest revision.

    Run it before starting the new version's senders: each revision runs in a transaction of
    its own, and one that fails leaves the store at the revision before it (docs/scaling.md,
    "Upgrading a big store")."""
    url = resolve_url(ctx.ensure_object(AppContext).database_url)
    engine = create_engine(url)
    try:
        before = current_revision(engine)
        head = head_revision()
        if before == head:
            click.echo(f"{mask_url(url)}: already at revision {head}")
            return
        upgrade_schema(engine, lock_timeout=lock_timeout)
        click.echo(f"{mask_url(url)}: upgraded from {before or 'an empty database'} to {head}")
    finally:
        engine.dispose()


@db.command()
@click.pass_context
def current(ctx: click.Context) -> None:
    """Show the schema revision of the store (and whether it is the newest)."""
    url = resolve_url(ctx.ensure_object(AppContext).database_url)
    if missing_sqlite_file(url) is not None:
        # Not made by looking: a typo in the path would leave an empty store behind.
        click.echo(
            f"{mask_url(url)}: no database file, so no schema (run `deliverability db upgrade`)"
        )
        return
    engine = create_engine(url)
    try:
        rev = current_revision(engine)
        head = head_revision()
        if rev is None:
            click.echo(f"{mask_url(url)}: no schema (run `deliverability db upgrade`)")
        elif rev == head:
            click.echo(f"{mask_url(url)}: revision {rev} (head)")
        else:
            click.echo(f"{mask_url(url)}: revision {rev} (head is {head})")
    finally:
        engine.dispose()


@db.command()
@click.pass_context
def check(ctx: click.Context) -> None:
    """Compare the store's schema with the models (`alembic check`); exit 1 on any difference."""
    url = resolve_url(ctx.ensure_object(AppContext).database_url)
    if missing_sqlite_file(url) is not None:
        problems = ["no database file, so no schema: run `deliverability db upgrade`"]
    else:
        engine = create_engine(url)
        try:
            problems = check_schema(engine)
        finally:
            engine.dispose()
    if problems:
        click.echo(f"{mask_url(url)}: the schema differs from the models:", err=True)
        for problem in problems:
            click.echo(f"  {problem}", err=True)
        ctx.exit(1)
    click.echo(f"{mask_url(url)}: the schema matches the models")


@db.command()
@click.pass_context
def recount(ctx: click.Context) -> None:
    """Count the per-minute counts (`minute_counts`) again from the events.

    For events written other than by this version's engine: a bulk load, or a process of an
    earlier version left recording during an upgrade. Run it with the writers stopped.
    """
    url = resolve_url(ctx.ensure_object(AppContext).database_url)
    if missing_sqlite_file(url) is not None:
        click.echo(f"{mask_url(url)}: no database file, nothing to count", err=True)
        ctx.exit(1)
    engine = create_engine(url)
    try:
        if current_revision(engine) != head_revision():
            click.echo(
                f"{mask_url(url)}: the schema is not the newest (run `deliverability db upgrade`)",
                err=True,
            )
            ctx.exit(1)
        with engine.begin() as conn:
            rows = minutes.recount(conn)
        click.echo(f"{mask_url(url)}: counted {rows} domain-minutes again from the events")
    finally:
        engine.dispose()
