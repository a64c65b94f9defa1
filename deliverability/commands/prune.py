"""`deliverability prune --older-than DURATION [--dry-run]`: delete old history in batches."""

from __future__ import annotations

import json
from datetime import timedelta

import click

from deliverability.commands.base import run_time
from deliverability.policy import load_policy, parse_duration
from deliverability.store.prune import DEFAULT_BATCH, prune_history
from deliverability.store.session import open_engine


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as err:
        raise click.BadParameter(str(err)) from None


@click.command("prune")
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="DURATION",
    callback=_duration,
    help="Delete history older than this (like 90d, 26w); at least the policy's longest window.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Rows deleted per transaction.",
)
@click.option("--now", metavar="ISO8601", help="The time the retention counts back from.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line for people, or one JSON object for programs.",
)
@click.pass_context
def prune(
    ctx: click.Context,
    older_than: timedelta,
    dry_run: bool,
    batch_size: int,
    now: str | None,
    fmt: str,
) -> None:
    """Delete events and finished deliveries older than DURATION, keeping every standing,
    suppression and the events that justify them, and the learned provider groups of domains
    not seen since."""
    policy = load_policy(ctx.obj.policy_path if ctx.obj else None)
    at = run_time(now)
    engine = open_engine(ctx.obj.database_url if ctx.obj else None)
    try:
        result = prune_history(
            engine,
            older_than=older_than,
            now=at,
            policy=policy,
            dry_run=dry_run,
            batch_size=batch_size,
        )
    finally:
        engine.dispose()
    if fmt == "json":
        data = result.as_dict()
        data["cutoff"] = result.cutoff.isoformat()
        click.echo(json.dumps(data))
        return
    verb = "would delete" if dry_run else "deleted"
    click.echo(
        f"events older than {result.cutoff.isoformat()}: {result.old_events}; "
        f"{verb} {result.deleted_events}, kept {result.kept_events} "
        f"(latest per recipient, suppressed recipients, cited as evidence); "
        f"{verb} {result.deleted_deliveries} finished deliveries; "
        f"{verb} {result.deleted_providers} learned provider group(s) not seen since; "
        f"{result.batches} batch(es)"
    )
