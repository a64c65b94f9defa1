"""`prune` deletes old history in batches and keeps every standing, suppression and its evidence."""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from deliverability.cli import cli
from deliverability.errors import InputError
from deliverability.policy import Policy
from deliverability.store import minutes
from deliverability.store.models import Action, Delivery, DomainProvider, Event, Recipient
from deliverability.store.prune import cited_event_ids, longest_window, prune_history
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    DeliveryState,
    EventKind,
    Fault,
    Outcome,
    Reason,
    Standing,
)

DAY = timedelta(days=1)
_serial = itertools.count(1)


class History:
    """Writes recipients, events, deliveries and actions straight into the store."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now

    def recipient(self, address: str, standing: Standing = Standing.DELIVERED) -> Recipient:
        r = Recipient(
            address=address,
            address_key=address,
            domain=address.rsplit("@", 1)[1],
            standing=standing,
            standing_since=self.now,
            first_seen_at=self.now - 400 * DAY,
            last_event_at=self.now,
            events_count=0,
        )
        self.session.add(r)
        self.session.flush()
        return r

    def event(self, r: Recipient, age: timedelta, outcome: Outcome = Outcome.DELIVERED) -> Event:
        n = next(_serial)
        e = Event(
            key=hashlib.sha256(f"{r.address_key}:{n}".encode()).hexdigest(),
            at=self.now - age,
            recorded_at=self.now - age,
            kind=EventKind.REPLY,
            recipient_id=r.id,
            domain=r.domain,
            message_id=f"m{n}",
            outcome=outcome,
            reason=Reason.DELIVERED if outcome is Outcome.DELIVERED else Reason.USER_UNKNOWN,
            fault=Fault.UNKNOWN,
            rule="test",
        )
        self.session.add(e)
        self.session.flush()
        minutes.append(
            self.session.connection(), minutes.tally([(e.domain, e.at, e.outcome, e.kind)])
        )
        r.events_count += 1
        return e

    def delivery(self, r: Recipient, age: timedelta, state: DeliveryState) -> Delivery:
        at = self.now - age
        d = Delivery(
            recipient_id=r.id,
            message_id=f"d{next(_serial)}",
            domain=r.domain,
            state=state,
            first_attempt_at=at,
            last_attempt_at=at,
            updated_at=at,
        )
        self.session.add(d)
        self.session.flush()
        return d

    def action(self, target: str, status: ActionStatus, evidence: dict[str, Any]) -> Action:
        a = Action(
            kind=ActionKind.SUPPRESS,
            scope=ActionScope.ADDRESS,
            target=target,
            status=status,
            open_key=f"suppress:address:{target}" if status is ActionStatus.OPEN else None,
            reason=Reason.USER_UNKNOWN,
            rule="test",
            evidence=evidence,
            created_at=self.now,
            updated_at=self.now,
        )
        self.session.add(a)
        self.session.flush()
        return a

    def learned(self, domain: str, age: timedelta) -> DomainProvider:
        """A domain learned to be Google-hosted, last seen `age` ago."""
        at = self.now - age
        row = DomainProvider(
            domain=domain,
            provider="google",
            mx_host="aspmx.l.google.com",
            first_seen_at=at - 30 * DAY,
            last_seen_at=at,
        )
        self.session.add(row)
        self.session.flush()
        return row


@pytest.fixture
def history(session: Session, frozen_now: datetime) -> History:
    return History(session, frozen_now)


def event_ids(engine: Engine) -> set[int]:
    with Session(engine) as s:
        return set(s.scalars(select(Event.id)))


def learned_domains(engine: Engine) -> set[str]:
    with Session(engine) as s:
        return set(s.scalars(select(DomainProvider.domain)))


def recipients_state(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine) as s:
        rows = s.execute(
            select(
                Recipient.address_key,
                Recipient.standing,
                Recipient.events_count,
                Recipient.last_event_id,
                Recipient.standing_since,
            ).order_by(Recipient.address_key)
        )
        return [tuple(row) for row in rows]


def test_events_older_than_the_retention_are_deleted_and_newer_ones_kept(
    sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    r = history.recipient("a@example.com")
    old = [history.event(r, age) for age in (200 * DAY, 150 * DAY, 91 * DAY)]
    new = [history.event(r, age) for age in (89 * DAY, 5 * DAY)]
    history.session.commit()

    result = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now)

    assert event_ids(sa_engine) == {e.id for e in new}
    assert (result.old_events, result.deleted_events, result.kept_events) == (3, 3, 0)
    assert result.cutoff == frozen_now - 90 * DAY
    assert old  # the three above are the ones gone


def test_each_recipients_latest_event_is_kept_however_old(
    sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    quiet = history.recipient("quiet@example.com")
    history.event(quiet, 300 * DAY)
    latest = history.event(quiet, 200 * DAY)
    pointed = history.recipient("pointed@example.com")
    target = history.event(pointed, 250 * DAY)
    history.event(pointed, 240 * DAY)
    pointed.last_event_id = target.id
    history.session.commit()

    result = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now)

    remaining = event_ids(sa_engine)
    assert latest.id in remaining
    assert target.id in remaining  # recipients.last_event_id points at it
    assert result.deleted_events == 1
    assert result.kept_events == 3


def test_every_event_of_a_suppressed_recipient_is_kept(
    sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    r = history.recipient("gone@example.com", Standing.SUPPRESSED)
    kept = {history.event(r, age, Outcome.BOUNCED).id for age in (400 * DAY, 300 * DAY, 200 * DAY)}
    history.session.commit()

    result = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now)

    assert event_ids(sa_engine) == kept
    assert result.deleted_events == 0


def test_events_cited_by_open_or_pending_actions_are_kept_and_by_resolved_ones_not(
    sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    a = history.recipient("a@example.com")
    b = history.recipient("b@example.com")
    cited_open = history.event(a, 300 * DAY, Outcome.BOUNCED)
    cited_pending = history.event(b, 290 * DAY, Outcome.BOUNCED)
    cited_resolved = history.event(a, 280 * DAY, Outcome.BOUNCED)
    history.event(a, 10 * DAY)
    history.event(b, 10 * DAY)
    history.action("a@example.com", ActionStatus.OPEN, {"events": [cited_open.id], "count": 1})
    history.action(
        "b@example.com", ActionStatus.PENDING, {"detail": {"event_ids": [cited_pending.id]}}
    )
    history.action("c@example.com", ActionStatus.RESOLVED, {"events": [cited_resolved.id]})
    history.session.commit()

    prune_history(sa_engine, older_than=90 * DAY, now=frozen_now)

    remaining = event_ids(sa_engine)
    assert {cited_open.id, cited_pending.id} <= remaining
    assert cited_resolved.id not in remaining


def test_standings_and_counters_do_not_change(
    sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    for i, standing in enumerate(Standing):
        if standing is Standing.UNKNOWN:
            continue
        r = history.recipient(f"r{i}@example.com", standing)
        for age in (500 * DAY, 100 * DAY, 1 * DAY):
            history.event(r, age, Outcome.BOUNCED if i % 2 else Outcome.DELIVERED)
    history.session.commit()
    before = recipients_state(sa_engine)

    result = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now)

    assert result.deleted_events > 0
    assert recipients_state(sa_engine) == before


def test_a_dry_run_counts_the_same_rows_and_deletes_none(
    sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    r = history.recipient("a@example.com")
    for age in range(100, 120):
        history.event(r, age * DAY)
    history.event(r, 1 * DAY)
    history.delivery(r, 200 * DAY, DeliveryState.DELIVERED)
    history.session.commit()
    before = event_ids(sa_engine)

    dry = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now, dry_run=True)
    assert event_ids(sa_engine) == before
    real = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now)

    assert dry.dry_run
    assert not real.dry_run
    assert (dry.deleted_events, dry.deleted_deliveries) == (20, 1)
    assert (real.deleted_events, real.deleted_deliveries) == (20, 1)


def test_deletion_goes_in_batches_of_the_given_size(
    sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    r = history.recipient("a@example.com")
    for age in range(100, 110):
        history.event(r, age * DAY)
    history.event(r, 1 * DAY)
    history.session.commit()

    result = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now, batch_size=3)

    assert result.batches == 4  # 3 + 3 + 3 + 1
    assert result.deleted_events == 10
    assert len(event_ids(sa_engine)) == 1


def test_finished_deliveries_are_deleted_and_deferred_ones_kept(
    sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    r = history.recipient("a@example.com")
    history.event(r, 1 * DAY)
    for state in DeliveryState:
        history.delivery(r, 200 * DAY, state)
    recent = history.delivery(r, 10 * DAY, DeliveryState.BOUNCED)
    history.session.commit()

    result = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now)

    with Session(sa_engine) as s:
        left = s.execute(select(Delivery.id, Delivery.state)).all()
    assert sorted(state for _, state in left) == sorted(
        [DeliveryState.DEFERRED, DeliveryState.BOUNCED]
    )
    assert recent.id in {i for i, _ in left}
    assert result.deleted_deliveries == len(DeliveryState) - 1


def test_learned_provider_rows_not_seen_since_the_cutoff_are_deleted_and_fresh_ones_kept(
    sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    for i in range(5):
        history.learned(f"stale{i}.example", (91 + i) * DAY)
    history.learned("fresh.example", 89 * DAY)
    history.learned("busy.example", 1 * DAY)
    history.session.commit()

    dry = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now, dry_run=True)
    assert dry.deleted_providers == 5
    assert len(learned_domains(sa_engine)) == 7
    result = prune_history(sa_engine, older_than=90 * DAY, now=frozen_now, batch_size=2)

    assert result.deleted_providers == 5
    assert learned_domains(sa_engine) == {"fresh.example", "busy.example"}


def test_a_retention_shorter_than_the_policys_longest_window_is_refused(
    sa_engine: Engine, frozen_now: datetime
) -> None:
    policy = Policy(rules=())  # the default numbers
    name, window = longest_window(policy)
    assert window >= timedelta(days=30)  # hygiene.ambiguous_window and the reputation windows
    with pytest.raises(InputError) as caught:
        prune_history(sa_engine, older_than=window - DAY, now=frozen_now, policy=policy)
    assert name in str(caught.value)
    assert "use at least" in str(caught.value)
    prune_history(sa_engine, older_than=window, now=frozen_now, policy=policy)


def test_cited_event_ids_are_found_under_event_keys_at_any_depth() -> None:
    evidences = [
        {"events": [1, 2], "count": 3},
        {"detail": {"event_ids": [4]}, "window_days": 30},
        {"rule": "x", "samples": [{"event_id": 5, "code": 550}]},
        None,
        {"events": [True, "7"]},
    ]
    assert cited_event_ids(evidences) == {1, 2, 4, 5}


def invoke(db_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--database-url", db_url, "prune", *args])


def test_the_prune_command_reports_what_it_would_delete_and_then_deletes_it(
    db_url: str, sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    r = history.recipient("a@example.com")
    for age in (400, 300, 1):
        history.event(r, age * DAY)
    history.session.commit()
    now = frozen_now.isoformat()

    dry = invoke(db_url, "--older-than", "90d", "--dry-run", "--now", now, "--format", "json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["deleted_events"] == 2
    assert len(event_ids(sa_engine)) == 3

    done = invoke(db_url, "--older-than", "13w", "--now", now)
    assert done.exit_code == 0, done.output
    assert "deleted 2, kept 0" in done.output
    assert len(event_ids(sa_engine)) == 1


def test_the_prune_command_reports_the_learned_provider_rows_it_deletes(
    db_url: str, sa_engine: Engine, history: History, frozen_now: datetime
) -> None:
    history.learned("moved.example", 200 * DAY)
    history.learned("current.example", 2 * DAY)
    history.session.commit()
    now = frozen_now.isoformat()

    dry = invoke(db_url, "--older-than", "90d", "--dry-run", "--now", now, "--format", "json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["deleted_providers"] == 1
    assert learned_domains(sa_engine) == {"moved.example", "current.example"}

    done = invoke(db_url, "--older-than", "90d", "--now", now)
    assert done.exit_code == 0, done.output
    assert "deleted 1 learned provider group(s)" in done.output
    assert learned_domains(sa_engine) == {"current.example"}


def test_the_prune_command_refuses_a_duration_it_cannot_read(db_url: str) -> None:
    result = invoke(db_url, "--older-than", "ninety days")
    assert result.exit_code == 2
    assert "not a duration: 'ninety days'" in result.output
