"""List hygiene as a list owner operates it: unsuppress, expiries, incidents settled by hand,
through the sender's API, on every backend and on the three paths of the rules (issue 4).

The rule of docs/hygiene.md these tests hold the code to: evidence is *spent* once a person
has acted (an unsuppress, a discarded incident) or a suppression ran out: events dated at or
before that never suppress the address again, so a rule that needs repeated evidence (bare
550s, soft strikes) needs it afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from conftest import FakeClock
from factories_hygiene import History
from sqlalchemy import select
from sqlalchemy.orm import Session

from deliverability.engine import Engine, ReplyRecord
from deliverability.errors import InputError
from deliverability.hygiene import RULE_INCIDENT
from deliverability.policy import HygienePolicy, Policy, load_policy
from deliverability.store import hygiene as store_hygiene
from deliverability.store.models import Action, Base
from deliverability.vocabulary import ActionKind, ActionStatus, EventKind, Reason, Standing

POLICY = load_policy(None)
H = POLICY.hygiene
DAY = timedelta(days=1)

#: A bare 550: ambiguous evidence (RFC 5321 4.2.2 gives 550 for policy refusals too).
BARE_550 = "550 Requested action not taken: mailbox unavailable"
#: A soft strike (the classifier's std.mailbox_full_text).
MAILBOX_FULL = "452 4.2.2 Mailbox full"
#: A decisive hard bounce.
NO_SUCH_USER = "550 5.1.1 User unknown"

#: The paths of the rules: each chunk as it is recorded; the nightly job after each step; and
#: the nightly job only before a person acts (so there is a suppression to act on), the rest of
#: the history reached by one `--full` re-evaluation at the end.
PATHS = ("incremental", "nightly", "full")


@dataclass(frozen=True)
class Step:
    """One moment of a scenario: its time, what happens then, and whether a person does it."""

    at: datetime
    do: Callable[[Engine], object]
    by_hand: bool = False


def _evaluate(engine: Engine, policy: Policy, now: datetime, *, full: bool = False) -> None:
    with Session(engine.db) as s, s.begin():
        store_hygiene.evaluate(s, policy, now, full=full)


def _run(db_url: str, clock: FakeClock, policy: Policy, path: str, steps: list[Step]) -> Engine:
    """Play the steps on one path; returns the engine (the caller closes it)."""
    hook = None if path == "incremental" else False
    engine = Engine(db_url, policy=policy, clock=clock, hygiene=hook)
    for step in steps:
        clock.set(step.at)
        if path == "full" and step.by_hand:
            _evaluate(engine, policy, step.at)
        step.do(engine)
        if path == "nightly":
            _evaluate(engine, policy, step.at)
    if path == "full":
        _evaluate(engine, policy, clock(), full=True)
    return engine


def _empty(engine: Engine) -> None:
    with engine.db.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


Play = Callable[..., Iterator[tuple[str, Engine]]]


@pytest.fixture
def on_each_path(db_url: str, clock: FakeClock) -> Play:
    """Play a scenario on each path from an empty store: yields (path, engine) to check."""

    def play(steps: list[Step], policy: Policy = POLICY) -> Iterator[tuple[str, Engine]]:
        for path in PATHS:
            engine = _run(db_url, clock, policy, path, steps)
            try:
                yield path, engine
            finally:
                _empty(engine)
                engine.close()

    return play


def _reply(at: datetime, address: str, text: str, message_id: str) -> Step:
    return Step(at, lambda e: e.record(address, text, message_id=message_id))


def _unsuppress(at: datetime, address: str) -> Step:
    return Step(
        at, lambda e: e.unsuppress(address, by="ops", reason="the owner says it works"), True
    )


def _suppressions(engine: Engine) -> list[tuple[ActionStatus, str]]:
    with Session(engine.db) as s:
        rows = s.scalars(
            select(Action).where(Action.kind == ActionKind.SUPPRESS).order_by(Action.id)
        ).all()
        return [(a.status, a.created_by) for a in rows]


# ---- unsuppress: old strikes are spent ----------------------------------------------------


def test_a_bare_550_after_an_unsuppress_does_not_suppress_again_on_the_bounces_before_it(
    on_each_path: Play, frozen_now: datetime
) -> None:
    # Two bare 550s (ambiguous_count) suppress; a person unsuppresses; one more bare 550 is one
    # fresh bounce, not the third of a count: the two before the unsuppress are spent.
    assert H.ambiguous_count == 2
    a = "maybe@example.com"
    steps: list[Step] = [
        _reply(frozen_now, a, BARE_550, "m1"),
        _reply(frozen_now + DAY, a, BARE_550, "m2"),
        _unsuppress(frozen_now + 2 * DAY, a),
        _reply(frozen_now + 3 * DAY, a, BARE_550, "m3"),
    ]
    for path, engine in on_each_path(steps):
        assert engine.is_sendable(a), path
        assert engine.status(a).standing is not Standing.SUPPRESSED, path
        assert _suppressions(engine) == [(ActionStatus.RESOLVED, "policy")], path


def test_two_fresh_bare_550s_after_an_unsuppress_suppress_again(
    on_each_path: Play, frozen_now: datetime
) -> None:
    a = "maybe@example.com"
    steps: list[Step] = [
        _reply(frozen_now, a, BARE_550, "m1"),
        _reply(frozen_now + DAY, a, BARE_550, "m2"),
        _unsuppress(frozen_now + 2 * DAY, a),
        _reply(frozen_now + 3 * DAY, a, BARE_550, "m3"),
        _reply(frozen_now + 4 * DAY, a, BARE_550, "m4"),
    ]
    for path, engine in on_each_path(steps):
        assert not engine.is_sendable(a), path
        assert _suppressions(engine) == [
            (ActionStatus.RESOLVED, "policy"),
            (ActionStatus.OPEN, "policy"),
        ], path


def _soft_days(start: datetime) -> list[datetime]:
    """The days of `soft_strikes` strikes spanning exactly `soft_span`."""
    n = H.soft_strikes
    return [start + H.soft_span * i / (n - 1) for i in range(n)]


def test_a_soft_strike_after_an_unsuppress_does_not_suppress_again_on_the_strikes_before_it(
    on_each_path: Play, frozen_now: datetime
) -> None:
    a = "full@example.com"
    days = _soft_days(frozen_now)
    steps: list[Step] = [_reply(at, a, MAILBOX_FULL, f"s{i}") for i, at in enumerate(days)]
    steps += [
        _unsuppress(days[-1] + DAY, a),
        _reply(days[-1] + 2 * DAY, a, MAILBOX_FULL, "s9"),
    ]
    for path, engine in on_each_path(steps):
        assert engine.is_sendable(a), path
        assert _suppressions(engine) == [(ActionStatus.RESOLVED, "policy")], path


def test_fresh_soft_strikes_after_an_unsuppress_suppress_again_once_they_span_the_rule(
    on_each_path: Play, frozen_now: datetime
) -> None:
    a = "full@example.com"
    old = _soft_days(frozen_now)
    fresh = _soft_days(old[-1] + 2 * DAY)
    steps: list[Step] = [_reply(at, a, MAILBOX_FULL, f"s{i}") for i, at in enumerate(old)]
    steps.append(_unsuppress(old[-1] + DAY, a))
    steps += [_reply(at, a, MAILBOX_FULL, f"t{i}") for i, at in enumerate(fresh[:-1])]
    # One strike short of the rule with the fresh ones alone: still sendable.
    for path, engine in on_each_path(steps):
        assert engine.is_sendable(a), path
    steps.append(_reply(fresh[-1], a, MAILBOX_FULL, "t9"))
    for path, engine in on_each_path(steps):
        assert not engine.is_sendable(a), path


def test_a_hard_bounce_after_an_unsuppress_suppresses_again_on_every_path(
    on_each_path: Play, frozen_now: datetime
) -> None:
    # A decisive bounce is fresh evidence on its own; the full re-evaluation must reach the
    # second suppression too, not stop at the first (spent) one.
    a = "gone@example.com"
    steps: list[Step] = [
        _reply(frozen_now, a, NO_SUCH_USER, "m1"),
        _unsuppress(frozen_now + DAY, a),
        _reply(frozen_now + 2 * DAY, a, NO_SUCH_USER, "m2"),
    ]
    for path, engine in on_each_path(steps):
        assert not engine.is_sendable(a), path
        with Session(engine.db) as s:
            current = s.scalars(
                select(Action).where(
                    Action.kind == ActionKind.SUPPRESS, Action.status == ActionStatus.OPEN
                )
            ).one()
        assert current.created_at == frozen_now + 2 * DAY, path


# ---- a suppression that ran out -----------------------------------------------------------


def _expiring(reason: Reason, lifetime: timedelta) -> Policy:
    """The default policy, but suppressions for `reason` end after `lifetime`."""
    return Policy(
        rules=POLICY.rules,
        hygiene=HygienePolicy(suppression_expiry={reason: lifetime}),
        throttle=POLICY.throttle,
    )


def test_a_bare_550_after_a_suppression_ran_out_does_not_suppress_again_on_the_bounces_before_it(
    on_each_path: Play, frozen_now: datetime
) -> None:
    # The policy ends suppressions for user_unknown after 10 days (shorter than the ambiguous
    # window): a bare 550 after that, with no sweep run, is one fresh bounce.
    lifetime = 10 * DAY
    assert lifetime < H.ambiguous_window
    policy = _expiring(Reason.USER_UNKNOWN, lifetime)
    a = "maybe@example.com"
    steps: list[Step] = [
        _reply(frozen_now, a, BARE_550, "m1"),
        _reply(frozen_now + DAY, a, BARE_550, "m2"),
        _reply(frozen_now + DAY + lifetime + DAY, a, BARE_550, "m3"),
    ]
    for path, engine in on_each_path(steps, policy):
        assert engine.is_sendable(a), path


# ---- a domain incident settled by a person -------------------------------------------------


def _incident(history: History, start: datetime) -> int:
    """A burst of hard bounces at one domain (an incident); returns its alert's id."""
    for i in range(H.incident_addresses):
        history.hard(f"u{i}@broken.example", start + timedelta(seconds=i))
    return history.session.scalars(select(Action.id).where(Action.rule == RULE_INCIDENT)).one()


@pytest.mark.parametrize(
    ("settle", "again", "other"),
    [
        (store_hygiene.confirm_incident, store_hygiene.confirm_incident, "discard_incident"),
        (store_hygiene.discard_incident, store_hygiene.discard_incident, "confirm_incident"),
    ],
)
def test_settling_an_incident_again_the_same_way_changes_nothing_and_the_other_way_is_refused(
    session: Session,
    frozen_now: datetime,
    settle: Callable[..., int],
    again: Callable[..., int],
    other: str,
) -> None:
    history = History(session, POLICY)
    incident = _incident(history, frozen_now)
    later = frozen_now + timedelta(hours=1)
    assert settle(session, incident, "ops", later) == H.incident_addresses

    def state() -> list[tuple[Any, ...]]:
        session.expire_all()
        return [
            (a.status, a.resolved_by, a.resolved_at, a.detail, a.evidence)
            for a in session.scalars(select(Action).order_by(Action.id))
        ]

    before = state()
    assert again(session, incident, "someone else", later + DAY) == 0
    assert state() == before
    with pytest.raises(InputError, match=f"already {settle.__name__.split('_')[0]}ed by ops"):
        getattr(store_hygiene, other)(session, incident, "someone else", later + DAY)
    assert state() == before


def test_after_a_discarded_incident_a_bare_550_is_one_fresh_bounce_and_a_hard_bounce_suppresses(
    session: Session, frozen_now: datetime
) -> None:
    # The held hard bounces are spent with the discard: one bare 550 afterwards does not
    # complete a count with them, a decisive bounce afterwards suppresses on its own.
    history = History(session, POLICY)
    incident = _incident(history, frozen_now)
    discarded = frozen_now + timedelta(hours=1)
    store_hygiene.discard_incident(session, incident, "ops", discarded)
    history.ambiguous("u1@broken.example", discarded + DAY)
    history.ambiguous("u2@broken.example", discarded + DAY)
    history.ambiguous("u2@broken.example", discarded + 2 * DAY)
    history.hard("u3@broken.example", discarded + DAY)
    store_hygiene.evaluate(session, POLICY, discarded + 3 * DAY, full=True)
    open_now = {
        a.target
        for a in session.scalars(
            select(Action).where(
                Action.kind == ActionKind.SUPPRESS, Action.status == ActionStatus.OPEN
            )
        )
    }
    assert open_now == {"u2@broken.example", "u3@broken.example"}


def test_an_incident_nobody_settled_stays_listed_as_open_while_it_holds_suppressions(
    session: Session, frozen_now: datetime
) -> None:
    # The alert expires `alert_lifetime` after its last trigger; its held suppressions stay
    # pending until a person settles them, and `actions --open` is where they find its id.
    history = History(session, POLICY)
    incident = _incident(history, frozen_now)
    later = frozen_now + H.alert_lifetime + DAY

    def listed(at: datetime) -> set[int]:
        return {a.id for a in store_hygiene.list_actions(session, open_only=True, now=at)}

    assert incident in listed(later)
    store_hygiene.expire_actions(session, later)
    assert session.get(Action, incident).status is ActionStatus.EXPIRED
    assert incident in listed(later)
    assert store_hygiene.confirm_incident(session, incident, "ops", later) == H.incident_addresses
    assert listed(later) == {
        a.id
        for a in session.scalars(
            select(Action).where(
                Action.kind == ActionKind.SUPPRESS, Action.status == ActionStatus.OPEN
            )
        )
    }


def test_an_expired_incident_whose_suppressions_were_each_lifted_is_not_listed_as_open(
    session: Session, frozen_now: datetime
) -> None:
    history = History(session, POLICY)
    incident = _incident(history, frozen_now)
    later = frozen_now + H.alert_lifetime + DAY
    for held in session.scalars(select(Action).where(Action.status == ActionStatus.PENDING)).all():
        held.status, held.open_key, held.resolved_at = ActionStatus.RESOLVED, None, later
    session.flush()
    assert store_hygiene.list_actions(session, open_only=True, now=later) == []
    assert incident in {a.id for a in store_hygiene.list_actions(session)}


# ---- a complaint while suppressed ----------------------------------------------------------


def _complaint(at: datetime, address: str) -> Step:
    record = ReplyRecord(recipient=address, kind=EventKind.COMPLAINT, message_id="c1", at=at)
    return Step(at, lambda e: e.record_many([record]))


def test_a_complaint_while_suppressed_for_an_expiring_reason_makes_the_suppression_last(
    on_each_path: Play, frozen_now: datetime
) -> None:
    # The policy ends mailbox_full suppressions after 20 days and complaints never (the
    # default): a person who complained while their mailbox was full must not get mail when
    # the mailbox suppression runs out.
    lifetime = 20 * DAY
    policy = _expiring(Reason.MAILBOX_FULL, lifetime)
    a = "full@example.com"
    days = _soft_days(frozen_now)
    steps = [_reply(at, a, MAILBOX_FULL, f"s{i}") for i, at in enumerate(days)]
    steps.append(_complaint(days[-1] + DAY, a))
    steps.append(Step(days[-1] + lifetime + DAY, lambda e: None))
    for path, engine in on_each_path(steps, policy):
        assert not engine.is_sendable(a), path
        status = engine.status(a)
        assert (status.standing, status.reason, status.suppressed_until) == (
            Standing.SUPPRESSED,
            Reason.FEEDBACK,
            None,
        ), path
        with Session(engine.db) as s:
            action = s.scalars(select(Action).where(Action.kind == ActionKind.SUPPRESS)).one()
        assert (action.status, action.created_at, action.expires_at) == (
            ActionStatus.OPEN,
            days[-1],
            None,
        ), path


def test_a_complaint_after_an_expiring_suppression_ran_out_suppresses_anew(
    on_each_path: Play, frozen_now: datetime
) -> None:
    lifetime = 20 * DAY
    policy = _expiring(Reason.MAILBOX_FULL, lifetime)
    a = "full@example.com"
    days = _soft_days(frozen_now)
    steps = [_reply(at, a, MAILBOX_FULL, f"s{i}") for i, at in enumerate(days)]
    complained = days[-1] + lifetime + DAY
    steps.append(_complaint(complained, a))
    for path, engine in on_each_path(steps, policy):
        assert not engine.is_sendable(a), path
        with Session(engine.db) as s:
            action = s.scalars(
                select(Action).where(
                    Action.kind == ActionKind.SUPPRESS, Action.status == ActionStatus.OPEN
                )
            ).one()
        assert (action.reason, action.created_at, action.expires_at) == (
            Reason.FEEDBACK,
            complained,
            None,
        ), path


def test_of_two_unsettled_incidents_at_one_domain_only_the_latest_is_listed_as_open(
    session: Session, frozen_now: datetime
) -> None:
    # Settling the latest settles every suppression held at the domain: it is the one to list.
    history = History(session, POLICY)
    _incident(history, frozen_now)
    second_burst = frozen_now + H.alert_lifetime + DAY
    for i in range(H.incident_addresses):
        history.hard(f"v{i}@broken.example", second_burst + timedelta(seconds=i))
    first, second = session.scalars(
        select(Action.id).where(Action.rule == RULE_INCIDENT).order_by(Action.id)
    ).all()
    later = second_burst + timedelta(hours=1)
    store_hygiene.expire_actions(session, later)
    listed = {a.id for a in store_hygiene.list_actions(session, open_only=True, now=later)}
    assert second in listed
    assert first not in listed
    assert store_hygiene.confirm_incident(session, second, "ops", later) == (
        2 * H.incident_addresses
    )


def _burst(frozen_now: datetime, later: datetime, late: bool) -> list[Step]:
    """An incident's burst at `frozen_now`: recorded as it happens, or all of it at `later`
    (a log backfilled long after), then a step at `later`."""
    records = [
        ReplyRecord(
            recipient=f"u{i}@broken.example",
            message_id=f"m{i}",
            reply=NO_SUCH_USER,
            at=frozen_now + timedelta(seconds=i),
        )
        for i in range(H.incident_addresses)
    ]
    if late:
        return [Step(later, lambda e: e.record_many(records))]
    steps = [Step(r.at, lambda e, r=r: e.record_many([r])) for r in records]
    return [*steps, Step(later, lambda e: None)]


@pytest.mark.parametrize("late", [False, True], ids=["recorded-then", "recorded-late"])
@pytest.mark.parametrize("settle", [store_hygiene.confirm_incident, store_hygiene.discard_incident])
def test_an_old_incident_holds_its_suppressions_under_an_alert_that_settles_them_on_every_path(
    on_each_path: Play, frozen_now: datetime, settle: Callable[..., int], late: bool
) -> None:
    # Judged after its alert's `alert_lifetime` is up (`--full` long after the burst, or a
    # burst recorded that late), an incident still holds its suppressions: its alert must exist
    # for `actions --open` to list and for confirm or discard to settle them. Before, no alert
    # was raised then, and the suppressions stayed pending for good.
    later = frozen_now + H.alert_lifetime + DAY

    def incidents(s: Session) -> list[Action]:
        return list(s.scalars(select(Action).where(Action.rule == RULE_INCIDENT)))

    for path, engine in on_each_path(_burst(frozen_now, later, late)):
        # Evaluating again raises no second alert for the same incident.
        _evaluate(engine, POLICY, later, full=True)
        with Session(engine.db) as s, s.begin():
            found = incidents(s)
            assert [a.status for a in found] == [ActionStatus.EXPIRED], path
            listed = store_hygiene.list_actions(s, open_only=True, now=later)
            held = [a for a in listed if a.status is ActionStatus.PENDING]
            assert len(held) == H.incident_addresses, path
            assert found[0] in listed, path
            assert settle(s, found[0].id, "ops", later) == H.incident_addresses, path
        _evaluate(engine, POLICY, later, full=True)
        with Session(engine.db) as s:
            assert [a.status for a in incidents(s)] == [ActionStatus.RESOLVED], path
            assert not any(
                a.status is ActionStatus.PENDING or a.rule == RULE_INCIDENT
                for a in store_hygiene.list_actions(s, open_only=True, now=later)
            ), path
