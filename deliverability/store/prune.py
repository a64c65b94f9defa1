"""Retention: delete history older than a cutoff, keeping what decisions still stand on.

Years of replies make `events` the one table that grows without bound. `prune_history` deletes
events (and finished deliveries) older than the cutoff in small batches, each its own short
transaction through `run_in_transaction`, so senders writing at the same time wait at most one
batch for a lock. It never deletes:

- a recipient's latest event (what its standing was last decided on) nor the event
  `recipients.last_event_id` points at;
- any event of a recipient whose standing is ``suppressed`` (the history that justified it);
- any event an open or pending action cites in its evidence (under a key naming events:
  ``events``, ``event_ids``, ``event_id``, at any depth), whatever recipient it belongs to;
- recipients, actions, ingest bookkeeping (so the nightly job never reads a pruned source twice)
  or rejected input.

It also deletes the learned provider groups (`domain_providers`) of domains not seen since the
cutoff: where a domain's mail was hosted that long ago says nothing current, and a domain that
moved to a server of no group would otherwise stay in its old group (docs/hygiene.md).

Standings and counters live on `recipients` and are not recomputed from events, so deleting
events never changes them. The per-minute counts (`minute_counts`, store/minutes.py) lose what
each batch deleted, in the batch's transaction, so they go on summing to what `events` holds.
The cutoff must not be newer than the policy's longest window (`longest_window`): the hygiene
rules count events inside those windows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, exists, func, or_, select
from sqlalchemy.orm import aliased

from deliverability.errors import InputError
from deliverability.policy import SECTIONS, Policy, format_duration
from deliverability.store import minutes
from deliverability.store.models import Action, Delivery, DomainProvider, Event, Recipient
from deliverability.store.retry import run_in_transaction
from deliverability.vocabulary import ActionStatus, DeliveryState, Standing

__all__ = ["DEFAULT_BATCH", "PruneResult", "cited_event_ids", "longest_window", "prune_history"]

#: Rows per transaction: small enough that a batch holds its locks for well under a second on
#: every backend, large enough that a million rows take a few hundred round trips.
DEFAULT_BATCH = 5000

_EVIDENCE_KEYS = frozenset({"events", "event_ids", "event_id"})


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What a prune did (or, with `dry_run`, would do)."""

    cutoff: datetime
    dry_run: bool
    #: Events older than the cutoff.
    old_events: int
    #: Of those, kept as evidence or as a recipient's latest event.
    kept_events: int
    deleted_events: int
    deleted_deliveries: int
    #: Learned provider groups (`domain_providers` rows) last seen before the cutoff.
    deleted_providers: int
    batches: int

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def longest_window(policy: Policy) -> tuple[str, timedelta]:
    """The policy's longest look-back (``hygiene.ambiguous_window``, ...) and its name."""
    found: list[tuple[timedelta, str]] = []
    # Every numbers section the policy has: one added later is looked at without a change here.
    for section in SECTIONS:
        numbers = getattr(policy, section, None)
        if numbers is None:
            continue
        for name in dir(numbers):
            if name.startswith("_"):
                continue
            value = getattr(numbers, name)
            values = value if isinstance(value, tuple) else (value,)
            for item in values:
                if isinstance(item, timedelta):
                    found.append((item, f"{section}.{name}"))
    if not found:
        return ("none", timedelta(0))
    value, name = max(found)
    return (name, value)


def _ids_in(evidence: Any, *, cited: bool = False) -> Iterator[int]:
    if isinstance(evidence, dict):
        for key, value in evidence.items():
            yield from _ids_in(value, cited=cited or key in _EVIDENCE_KEYS)
    elif isinstance(evidence, list):
        for item in evidence:
            yield from _ids_in(item, cited=cited)
    elif cited and isinstance(evidence, int) and not isinstance(evidence, bool):
        yield evidence


def cited_event_ids(evidences: Iterable[Any]) -> set[int]:
    """Event ids named in actions' evidence (under an ``events``-like key, at any depth)."""
    ids: set[int] = set()
    for evidence in evidences:
        ids.update(_ids_in(evidence))
    return ids


def prune_history(
    engine: Engine,
    *,
    older_than: timedelta,
    now: datetime,
    policy: Policy | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
) -> PruneResult:
    """Delete events, finished deliveries and learned provider groups from before
    ``now - older_than``, in batches.

    With `policy`, a retention shorter than its longest window is refused (InputError naming the
    window), since deleting events inside it would change what the hygiene rules decide next.
    """
    if now.tzinfo is None:
        raise InputError("prune: `now` must be timezone-aware")
    if batch_size < 1:
        raise InputError(f"prune: batch size must be at least 1, not {batch_size}")
    if older_than <= timedelta(0):
        raise InputError(f"prune: --older-than must be positive, not {format_duration(older_than)}")
    if policy is not None:
        name, window = longest_window(policy)
        if older_than < window:
            raise InputError(
                f"prune: --older-than {format_duration(older_than)} is shorter than the policy's "
                f"longest window ({name} = {format_duration(window)}): events inside it still "
                f"decide suppressions and throttles; use at least {format_duration(window)}"
            )
    cutoff = now - older_than

    with engine.connect() as conn:
        old_events = conn.scalar(select(func.count()).where(Event.at < cutoff)) or 0
        evidences = conn.scalars(
            select(Action.evidence).where(
                Action.status.in_([ActionStatus.OPEN, ActionStatus.PENDING])
            )
        )
        cited = cited_event_ids(evidences)

    newer = aliased(Event)
    latest_of_recipient = (
        select(func.max(newer.at)).where(newer.recipient_id == Event.recipient_id).scalar_subquery()
    )
    protected_by_recipient = exists().where(
        Recipient.id == Event.recipient_id,
        or_(Recipient.last_event_id == Event.id, Recipient.standing == Standing.SUPPRESSED),
    )

    def deletable_after(last_id: int) -> Any:
        return (
            select(Event.id)
            .where(Event.at < cutoff, Event.id > last_id)
            .where(Event.at < latest_of_recipient)
            .where(~protected_by_recipient)
            .order_by(Event.id)
            .limit(batch_size)
        )

    deleted_events = 0
    batches = 0
    last_id = 0
    while True:
        with engine.connect() as conn:
            ids = list(conn.scalars(deletable_after(last_id)))
        if not ids:
            break
        last_id = ids[-1]
        doomed = [i for i in ids if i not in cited]
        if doomed and not dry_run:

            def delete_batch(conn: Connection, doomed: list[int] = doomed) -> int:
                # Checked again in the transaction: the recipient may have been suppressed since.
                statement = (
                    delete(Event)
                    .where(Event.id.in_(doomed), ~protected_by_recipient)
                    .returning(Event.domain, Event.at, Event.outcome, Event.kind)
                )
                gone = conn.execute(statement).all()
                # The per-minute counts keep summing to what `events` holds.
                taken = minutes.tally(gone, sign=-1)
                minutes.append(conn, taken)
                minutes.compact(conn, ((domain, minute) for domain, minute, _, _ in taken))
                return len(gone)

            deleted_events += run_in_transaction(engine, delete_batch)
        elif dry_run:
            deleted_events += len(doomed)
        batches += 1

    deleted_deliveries = _prune_deliveries(engine, cutoff, dry_run=dry_run, batch_size=batch_size)
    deleted_providers = _prune_providers(engine, cutoff, dry_run=dry_run, batch_size=batch_size)
    return PruneResult(
        cutoff=cutoff,
        dry_run=dry_run,
        old_events=old_events,
        kept_events=old_events - deleted_events,
        deleted_events=deleted_events,
        deleted_deliveries=deleted_deliveries,
        deleted_providers=deleted_providers,
        batches=batches,
    )


def _prune_deliveries(engine: Engine, cutoff: datetime, *, dry_run: bool, batch_size: int) -> int:
    """Finished deliveries whose last attempt is older than the cutoff; deferred ones stay (their
    retry is still to come, or the nightly job will expire them)."""
    finished = [s for s in DeliveryState if s.is_final]
    deleted = 0
    last_id = 0
    while True:
        with engine.connect() as conn:
            ids = list(
                conn.scalars(
                    select(Delivery.id)
                    .where(
                        Delivery.last_attempt_at < cutoff,
                        Delivery.state.in_(finished),
                        Delivery.id > last_id,
                    )
                    .order_by(Delivery.id)
                    .limit(batch_size)
                )
            )
        if not ids:
            return deleted
        last_id = ids[-1]
        if dry_run:
            deleted += len(ids)
            continue

        def delete_batch(conn: Connection, ids: list[int] = ids) -> int:
            # The state is checked again: a late reply may have reopened it since the read.
            return conn.execute(
                delete(Delivery).where(
                    Delivery.id.in_(ids),
                    Delivery.state.in_(finished),
                    Delivery.last_attempt_at < cutoff,
                )
            ).rowcount

        deleted += run_in_transaction(engine, delete_batch)


def _prune_providers(engine: Engine, cutoff: datetime, *, dry_run: bool, batch_size: int) -> int:
    """Learned provider groups whose domain was last seen before the cutoff. Read in primary-key
    order after the last batch's domain: one row per recipient domain, so a scan of the table
    over all batches (no index on `last_seen_at` to keep up on every sighting)."""
    deleted = 0
    after = ""
    while True:
        with engine.connect() as conn:
            domains = list(
                conn.scalars(
                    select(DomainProvider.domain)
                    .where(DomainProvider.last_seen_at < cutoff, DomainProvider.domain > after)
                    .order_by(DomainProvider.domain)
                    .limit(batch_size)
                )
            )
        if not domains:
            return deleted
        after = domains[-1]
        if dry_run:
            deleted += len(domains)
            continue

        def delete_batch(conn: Connection, domains: list[str] = domains) -> int:
            # The time is checked again: a sighting since the read may have refreshed the row.
            return conn.execute(
                delete(DomainProvider).where(
                    DomainProvider.domain.in_(domains), DomainProvider.last_seen_at < cutoff
                )
            ).rowcount

        deleted += run_in_transaction(engine, delete_batch)
