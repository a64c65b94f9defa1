"""Factories for report tests: recipients, events and actions written straight to the session,
so the report tests do not depend on the engine or the hygiene rules."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from deliverability.addresses import normalize_address
from deliverability.store import minutes
from deliverability.store.models import Action, Event, Recipient
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    EventKind,
    Fault,
    Outcome,
    Reason,
    Standing,
)

_keys = itertools.count(1)

_DEFAULT_REASON = {
    Outcome.DELIVERED: Reason.DELIVERED,
    Outcome.DEFERRED: Reason.MAILBOX_FULL,
    Outcome.BOUNCED: Reason.USER_UNKNOWN,
    Outcome.BLOCKED: Reason.BLOCKED,
    Outcome.COMPLAINED: Reason.FEEDBACK,
}
_DEFAULT_CODE = {
    Outcome.DELIVERED: (250, "2.0.0", "OK queued"),
    Outcome.DEFERRED: (452, "4.2.2", "mailbox full"),
    Outcome.BOUNCED: (550, "5.1.1", "no such user"),
    Outcome.BLOCKED: (554, "5.7.1", "blocked by policy"),
    Outcome.COMPLAINED: (None, None, "abuse report"),
}


def recipient(
    session: Session,
    address: str,
    *,
    at: datetime,
    standing: Standing = Standing.DELIVERED,
    reason: Reason = Reason.UNDEFINED,
    since: datetime | None = None,
    action: Action | None = None,
    **fields: Any,
) -> Recipient:
    """A recipient first seen at `at`, with the given standing (since `since`, default `at`)."""
    parsed = normalize_address(address)
    row = Recipient(
        address=parsed.text,
        address_key=parsed.key,
        domain=parsed.domain,
        standing=standing,
        reason=reason,
        standing_since=since or at,
        first_seen_at=at,
        last_event_at=fields.pop("last_event_at", at),
        suppression_action_id=action.id if action is not None else None,
        **fields,
    )
    session.add(row)
    session.flush()
    return row


def _event_values(
    who: Recipient,
    *,
    at: datetime,
    outcome: Outcome,
    reason: Reason | None = None,
    code: int | None = None,
    status: str | None = None,
    text: str | None = None,
    kind: EventKind | None = None,
    fault: Fault = Fault.UNKNOWN,
    throttle: bool = False,
) -> dict[str, Any]:
    # An expiry is no reply: the engine (or a relay) gave up on a deferred delivery.
    default_code, default_status, default_text = (
        (None, None, None) if kind is EventKind.EXPIRY else _DEFAULT_CODE[outcome]
    )
    return {
        "key": f"test-{next(_keys)}",
        "at": at,
        "recorded_at": at,
        "kind": kind or (EventKind.COMPLAINT if outcome is Outcome.COMPLAINED else EventKind.REPLY),
        "recipient_id": who.id,
        "domain": who.domain,
        "code": code if code is not None else default_code,
        "status": status if status is not None else default_status,
        "text": text if text is not None else default_text,
        "outcome": outcome,
        "reason": reason or _DEFAULT_REASON[outcome],
        "fault": fault,
        "rule": "test",
        "throttle": throttle,
    }


def event(session: Session, who: Recipient, *, at: datetime, outcome: Outcome, **kw: Any) -> Event:
    """One recorded event for `who`; code, status, text and reason default by outcome."""
    values = _event_values(who, at=at, outcome=outcome, **kw)
    row = Event(**values)
    session.add(row)
    _count_minutes(session, [values])
    return row


def events(
    session: Session, who: Recipient, n: int, *, at: datetime, outcome: Outcome, **kw: Any
) -> None:
    """`n` identical events (distinct keys), in one bulk insert."""
    if n > 0:
        session.flush()
        rows = [_event_values(who, at=at, outcome=outcome, **kw) for _ in range(n)]
        session.execute(insert(Event), rows)
        _count_minutes(session, rows)


def _count_minutes(session: Session, rows: list[dict[str, Any]]) -> None:
    """The per-minute counts the engine writes beside its events (store/minutes.py)."""
    minutes.append(
        session.connection(),
        minutes.tally((r["domain"], r["at"], r["outcome"], r["kind"]) for r in rows),
    )


def action(
    session: Session,
    *,
    kind: ActionKind,
    scope: ActionScope,
    target: str,
    at: datetime,
    status: ActionStatus = ActionStatus.OPEN,
    reason: Reason = Reason.UNDEFINED,
    rule: str = "test-rule",
    **fields: Any,
) -> Action:
    """A hygiene action as the hygiene code would leave it."""
    live = status in (ActionStatus.OPEN, ActionStatus.PENDING)
    row = Action(
        kind=kind,
        scope=scope,
        target=target,
        status=status,
        open_key=f"{kind.value}:{scope.value}:{target}" if live else None,
        reason=reason,
        rule=rule,
        created_at=at,
        updated_at=at,
        **fields,
    )
    session.add(row)
    session.flush()
    return row
