"""`deliverability throttles` and `deliverability actions [confirm|discard ID]`: list hygiene on
the command line."""

from __future__ import annotations

import getpass
from datetime import datetime
from typing import Any

import click
from sqlalchemy.orm import Session

from deliverability.commands.base import AppContext, rows_format_option
from deliverability.output import emit_rows
from deliverability.store import hygiene as hygiene_store
from deliverability.store.hygiene import BY_POLICY
from deliverability.store.models import Action
from deliverability.store.session import write_engine
from deliverability.vocabulary import ActionScope, ActionStatus

#: `target` is what is paused (a domain or a provider group), `scope` says which; `domain` is
#: filled only for a domain scope, so a provider group's name is never read as a domain.
THROTTLE_COLUMNS = [
    "target",
    "scope",
    "domain",
    "until",
    "max_rate",
    "reason",
    "rule",
    "step",
    "id",
]
#: What fits on a screen (target and scope already say whether it is a domain); CSV and JSON
#: carry every column.
THROTTLE_TABLE_COLUMNS = [c for c in THROTTLE_COLUMNS if c != "domain"]
ACTION_COLUMNS = [
    "id",
    "kind",
    "scope",
    "target",
    "status",
    "reason",
    "rule",
    "created_at",
    "expires_at",
    "pause_until",
    "max_rate",
    "raised_count",
    "created_by",
    "resolved_at",
    "resolved_by",
    "detail",
]
#: What fits on a screen; CSV and JSON carry every column.
ACTION_TABLE_COLUMNS = ["id", "kind", "scope", "target", "status", "reason", "rule", "expires_at"]


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


def _action_row(a: Action, now: datetime) -> dict[str, Any]:
    status, resolved_at, resolved_by = a.status, a.resolved_at, a.resolved_by
    if status is ActionStatus.OPEN and a.expires_at is not None and a.expires_at <= now:
        # Its time is up: it no longer applies (issue 4), whether or not the nightly job has
        # swept it yet; shown as the sweep records it (`store.hygiene.expire_actions`).
        status, resolved_at, resolved_by = ActionStatus.EXPIRED, a.expires_at, BY_POLICY
    return {
        "id": a.id,
        "kind": a.kind,
        "scope": a.scope,
        "target": a.target,
        "status": status,
        "reason": a.reason,
        "rule": a.rule,
        "created_at": a.created_at,
        "expires_at": a.expires_at,
        "pause_until": a.pause_until,
        "max_rate": a.max_rate,
        "raised_count": a.raised_count,
        "created_by": a.created_by,
        # When and by whom it ended: a person's unsuppress, confirm or discard, or its expiry.
        "resolved_at": resolved_at,
        "resolved_by": resolved_by,
        "detail": a.detail,
    }


@click.command()
@rows_format_option(" (target, scope, domain, until, reason, ...); the table leaves out domain")
@click.pass_context
def throttles(ctx: click.Context, fmt: str) -> None:
    """List the destinations paused now, soonest lifted first: `target` is a domain or a
    provider group (`scope` says which), `domain` is set only for a domain."""
    engine = ctx.ensure_object(AppContext).engine()
    try:
        now = engine.now()
        with Session(engine.db) as session:
            rows = [
                {
                    "target": a.target,
                    "scope": a.scope,
                    "domain": a.target if a.scope is ActionScope.DOMAIN else None,
                    "until": a.pause_until,
                    "max_rate": a.max_rate,
                    "reason": a.reason,
                    "rule": a.rule,
                    "step": a.step,
                    "id": a.id,
                }
                for a in hygiene_store.throttles_in_force(session, now)
            ]
    finally:
        engine.close()
    columns = THROTTLE_TABLE_COLUMNS if fmt == "table" else THROTTLE_COLUMNS
    emit_rows(rows, columns, fmt, title=f"Throttles in force at {now.isoformat()}")


@click.group(invoke_without_command=True)
@click.option(
    "--open",
    "open_only",
    is_flag=True,
    help="Only the actions in force now: open ones whose time is not up (the same as after the "
    "nightly job's sweep) and pending (held) ones.",
)
@rows_format_option()
@click.pass_context
def actions(ctx: click.Context, open_only: bool, fmt: str) -> None:
    """List hygiene actions, newest first; `actions confirm ID` / `actions discard ID` settle
    the suppressions a domain incident holds."""
    if ctx.invoked_subcommand is not None:
        return
    engine = ctx.ensure_object(AppContext).engine()
    try:
        now = engine.now()
        with Session(engine.db) as session:
            found = hygiene_store.list_actions(session, open_only=open_only, now=now)
            rows = [_action_row(a, now) for a in found]
    finally:
        engine.close()
    columns = ACTION_TABLE_COLUMNS if fmt == "table" else ACTION_COLUMNS
    emit_rows(rows, columns, fmt, title="Hygiene actions")


def _settle(ctx: click.Context, action_id: int, by: str | None, confirm: bool) -> None:
    engine = ctx.ensure_object(AppContext).engine()
    who = by or _who()
    verb = "confirmed" if confirm else "discarded"
    try:
        now = engine.now()
        with Session(write_engine(engine.db)) as session, session.begin():
            alert = session.get(Action, action_id)
            before = hygiene_store.settled_as(alert) if alert is not None else None
            if confirm:
                n = hygiene_store.confirm_incident(session, action_id, who, now)
            else:
                n = hygiene_store.discard_incident(session, action_id, who, now)
            assert alert is not None  # settling an unknown id raised above
            if before == verb:
                # Settled this way before: run again (a retried script), nothing changes.
                when = alert.resolved_at.isoformat() if alert.resolved_at else "?"
                message = (
                    f"incident #{action_id} at {alert.target}: already {verb} by "
                    f"{alert.resolved_by} at {when}; nothing changed"
                )
            else:
                message = (
                    f"incident #{action_id} at {alert.target}: {verb} {n} held suppression(s)"
                    f" (by {who})"
                )
    finally:
        engine.close()
    click.echo(message)


@actions.command()
@click.argument("action_id", type=int, metavar="ID")
@click.option("--by", help="Who decided (default: the current user).")
@click.pass_context
def confirm(ctx: click.Context, action_id: int, by: str | None) -> None:
    """Apply every suppression the domain incident ID holds."""
    _settle(ctx, action_id, by, confirm=True)


@actions.command()
@click.argument("action_id", type=int, metavar="ID")
@click.option("--by", help="Who decided (default: the current user).")
@click.pass_context
def discard(ctx: click.Context, action_id: int, by: str | None) -> None:
    """Drop every suppression the domain incident ID holds (their bounces will not count)."""
    _settle(ctx, action_id, by, confirm=False)
