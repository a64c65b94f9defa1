"""`deliverability db upgrade | current | check | recount`: the store's schema."""

from __future__ import annotations

import click

from deliverability.commands.base import AppContext
from deliverability.store import minutes
from deliverability.store.session import (
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
@click.pass_context
def upgrade(ctx: click.Context) -> None:
    """Create or upgrade the schema to the newest revision."""
    url = resolve_url(ctx.ensure_object(AppContext).database_url)
    engine = create_engine(url)
    try:
        before = current_revision(engine)
        head = head_revision()
        if before == head:
            click.echo(f"{mask_url(url)}: already at revision {head}")
            return
        upgrade_schema(engine)
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
