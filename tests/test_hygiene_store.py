"""List hygiene over a stored history, with a frozen clock: every rule at its threshold and one
either side (numbers read from the policy, never retyped), incremental and nightly paths."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock
from factories_hygiene import History, generate_history, insert_history
from sqlalchemy.orm import Session

from deliverability.engine import Engine, ReplyRecord
from deliverability.errors import InputError
from deliverability.hygiene import (
    RULE_AMBIGUOUS,
    RULE_BLOCKED,
    RULE_BLOCKED_THROTTLE,
    RULE_COMPLAINT,
    RULE_HARD,
    RULE_INCIDENT,
    RULE_PUSHBACK,
    RULE_SOFT,
    Evidence,
    evidence_of,
)
from deliverability.policy import HygienePolicy, Policy, ThrottlePolicy, format_duration
from deliverability.store import hygiene as store_hygiene
from deliverability.store import minutes
from deliverability.store.models import (
    Action,
    Bookmark,
    DomainProvider,
    Event,
    MinuteCount,
    Recipient,
)
from deliverability.store.session import create_engine, upgrade_schema
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

POLICY = Policy(rules=())
H = POLICY.hygiene
T = POLICY.throttle
DAY = timedelta(days=1)


@pytest.fixture
def history(session: Session) -> History:
    return History(session, POLICY)


def _actions(session: Session, kind: ActionKind, *statuses: ActionStatus) -> list[Action]:
    query = sa.select(Action).where(Action.kind == kind).order_by(Action.id)
    if statuses:
        query = query.where(Action.status.in_(statuses))
    return list(session.scalars(query))


def _suppressed(session: Session) -> set[str]:
    return {a.target for a in _actions(session, ActionKind.SUPPRESS, ActionStatus.OPEN)}


def _pending(session: Session) -> set[str]:
    return {a.target for a in _actions(session, ActionKind.SUPPRESS, ActionStatus.PENDING)}


# ---- hard bounces and complaints ----------------------------------------------------------


def test_first_decisive_hard_bounce_suppresses_the_address(
    session: Session, history: History, frozen_now: datetime
) -> None:
    actions = history.hard("gone@example.com", frozen_now)
    assert _suppressed(session) == {"gone@example.com"}
    [summary] = actions
    assert summary.kind is ActionKind.SUPPRESS
    assert summary.rule == RULE_HARD
    assert summary.reason is Reason.USER_UNKNOWN
    recipient = session.scalars(sa.select(Recipient)).one()
    assert recipient.standing is Standing.SUPPRESSED
    assert recipient.suppression_action_id == summary.id
    assert recipient.reason is Reason.USER_UNKNOWN


def test_complaint_suppresses_immediately(
    session: Session, history: History, frozen_now: datetime
) -> None:
    [summary] = history.record(
        "annoyed@example.com", frozen_now, Outcome.COMPLAINED, Reason.FEEDBACK
    )
    assert summary.rule == RULE_COMPLAINT
    assert _suppressed(session) == {"annoyed@example.com"}


def test_a_second_hard_bounce_refreshes_the_suppression_instead_of_duplicating_it(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.hard("gone@example.com", frozen_now)
    [again] = history.hard("gone@example.com", frozen_now + DAY)
    assert not again.new
    [action] = _actions(session, ActionKind.SUPPRESS)
    assert action.raised_count == 2
    assert action.created_at == frozen_now


# ---- ambiguous 550/553 --------------------------------------------------------------------


def test_one_ambiguous_bounce_fewer_than_the_policy_count_does_not_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    for i in range(H.ambiguous_count - 1):
        history.ambiguous("maybe@example.com", frozen_now + i * DAY)
    assert _suppressed(session) == set()


def test_ambiguous_bounces_of_the_policy_count_of_messages_within_the_window_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    step = (H.ambiguous_window - DAY) / max(1, H.ambiguous_count - 1)
    for i in range(H.ambiguous_count):
        history.ambiguous("maybe@example.com", frozen_now + i * step)
    [action] = _actions(session, ActionKind.SUPPRESS, ActionStatus.OPEN)
    assert action.rule == RULE_AMBIGUOUS
    assert action.target == "maybe@example.com"


def test_ambiguous_bounces_spread_wider_than_the_window_do_not_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    step = (H.ambiguous_window + DAY) / max(1, H.ambiguous_count - 1)
    for i in range(H.ambiguous_count):
        history.ambiguous("maybe@example.com", frozen_now + i * step)
    assert _suppressed(session) == set()


MICRO = timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("first", "apart", "suppressed"),
    [
        # SQLite's date functions keep milliseconds: a window's end was rounded, up or down.
        (timedelta(microseconds=600), H.ambiguous_window, True),
        (timedelta(microseconds=300), H.ambiguous_window + 100 * MICRO, False),
        (timedelta(microseconds=999_999), H.ambiguous_window, True),
        (timedelta(microseconds=999_999), H.ambiguous_window + MICRO, False),
    ],
)
def test_the_ambiguous_window_is_exact_to_the_microsecond_on_every_backend(
    session: Session,
    history: History,
    frozen_now: datetime,
    first: timedelta,
    apart: timedelta,
    suppressed: bool,
) -> None:
    assert H.ambiguous_count == 2, "the cases put the policy's count at the window's two ends"
    history.ambiguous("maybe@example.com", frozen_now + first)
    history.ambiguous("maybe@example.com", frozen_now + first + apart)
    assert _suppressed(session) == ({"maybe@example.com"} if suppressed else set())


def test_retries_of_one_message_count_once_for_ambiguous_bounces(
    session: Session, history: History, frozen_now: datetime
) -> None:
    for i in range(H.ambiguous_count + 2):
        history.ambiguous("maybe@example.com", frozen_now + i * timedelta(hours=1), message_id="m1")
    assert _suppressed(session) == set()


# ---- stale bounces: a delivery later than the bounce --------------------------------------
#
# A delivery to the address dated after a bounce proves the mailbox accepted mail since: the
# bounce is stale and suppresses nothing (issue 4). A delivery at the same instant does not make
# it stale. What counts is what was recorded before the bounce: a delivery recorded after the
# bounce already suppressed the address leaves that suppression in force.

#: A late DSN's age: older than the delivery recorded before it.
LATE = 2 * DAY


def _ambiguous_times(last: datetime, n: int = H.ambiguous_count) -> list[datetime]:
    """`n` (`ambiguous_count`) times a day apart, ending at `last` (all within the window)."""
    assert (n - 1) * DAY < H.ambiguous_window, "the policy's window must hold a bounce a day"
    return [last - (n - 1 - i) * DAY for i in range(n)]


def test_a_late_hard_bounce_older_than_a_delivery_does_not_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.delivered("ann@example.com", frozen_now)
    assert history.hard("ann@example.com", frozen_now - LATE) == []
    assert _suppressed(session) == set()


def test_a_hard_bounce_newer_than_the_last_delivery_suppresses(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.delivered("ann@example.com", frozen_now - LATE)
    [summary] = history.hard("ann@example.com", frozen_now)
    assert summary.rule == RULE_HARD
    assert _suppressed(session) == {"ann@example.com"}


def test_a_delivery_at_the_same_instant_does_not_make_a_hard_bounce_stale(
    session: Session, history: History, frozen_now: datetime
) -> None:
    # Log times have a second's resolution at best: the same instant does not say which came
    # last, and the bounce is positive evidence that the mailbox is gone.
    history.delivered("ann@example.com", frozen_now)
    history.hard("ann@example.com", frozen_now)
    assert _suppressed(session) == {"ann@example.com"}


def test_a_delivery_recorded_after_a_hard_bounce_suppressed_leaves_the_suppression(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.hard("ann@example.com", frozen_now - LATE)
    history.delivered("ann@example.com", frozen_now)
    assert _suppressed(session) == {"ann@example.com"}


def test_a_complaint_older_than_a_delivery_still_suppresses(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.delivered("ann@example.com", frozen_now)
    history.record("ann@example.com", frozen_now - LATE, Outcome.COMPLAINED, Reason.FEEDBACK)
    assert _suppressed(session) == {"ann@example.com"}


def test_ambiguous_bounces_with_a_delivery_between_do_not_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    times = _ambiguous_times(frozen_now)
    for at in times[:-1]:
        history.ambiguous("ann@example.com", at)
    history.delivered("ann@example.com", times[-1] - timedelta(hours=1))
    history.ambiguous("ann@example.com", times[-1])
    assert _suppressed(session) == set()


def test_late_ambiguous_bounces_older_than_a_delivery_do_not_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.delivered("ann@example.com", frozen_now)
    for at in _ambiguous_times(frozen_now - LATE):
        history.ambiguous("ann@example.com", at)
    assert _suppressed(session) == set()


def test_ambiguous_bounces_after_the_last_delivery_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    times = _ambiguous_times(frozen_now)
    history.delivered("ann@example.com", times[0] - timedelta(hours=1))
    for at in times:
        history.ambiguous("ann@example.com", at)
    [action] = _actions(session, ActionKind.SUPPRESS, ActionStatus.OPEN)
    assert action.rule == RULE_AMBIGUOUS
    assert action.target == "ann@example.com"


def test_an_ambiguous_bounce_at_the_same_instant_as_a_delivery_still_counts(
    session: Session, history: History, frozen_now: datetime
) -> None:
    times = _ambiguous_times(frozen_now)
    history.delivered("ann@example.com", times[0])
    for at in times:
        history.ambiguous("ann@example.com", at)
    assert _suppressed(session) == {"ann@example.com"}


#: Histories of one address in recording order: (time before now, evidence), and whether the
#: address ends suppressed. "A" stands for `ambiguous_count` bare 550s a day apart ending then,
#: "A-1" for one fewer, "a" for one.
STALE_HISTORIES: dict[str, tuple[list[tuple[timedelta, str]], bool]] = {
    "late hard bounce": ([(timedelta(0), "delivered"), (LATE, "hard")], False),
    "hard bounce after the delivery": ([(LATE, "delivered"), (timedelta(0), "hard")], True),
    "same instant": ([(timedelta(0), "delivered"), (timedelta(0), "hard")], True),
    "delivery recorded late": ([(LATE, "hard"), (timedelta(0), "delivered")], True),
    "delivery between 550s": ([(LATE, "A-1"), (LATE / 2, "delivered"), (timedelta(0), "a")], False),
    "no delivery between 550s": ([(LATE, "A-1"), (timedelta(0), "a")], True),
    "late 550s": ([(timedelta(0), "delivered"), (LATE, "A")], False),
    "550s after the delivery": ([(2 * LATE, "delivered"), (LATE, "A")], True),
}


def _record_stale_history(
    session: Session, steps: list[tuple[timedelta, str]], now: datetime, after_each: Any
) -> None:
    history = History(session, POLICY)
    clock = now
    for ago, evidence in steps:
        count = {"A": H.ambiguous_count, "A-1": H.ambiguous_count - 1}.get(evidence, 1)
        outcome, reason, decisive = {
            "delivered": (Outcome.DELIVERED, Reason.DELIVERED, False),
            "hard": (Outcome.BOUNCED, Reason.USER_UNKNOWN, True),
        }.get(evidence, (Outcome.BOUNCED, Reason.REJECTED, False))
        for at in _ambiguous_times(now - ago, count):
            row = history.event("ann@example.com", at, outcome, reason, decisive=decisive)
            # Recorded now, whatever time the event carries.
            clock += timedelta(minutes=1)
            after_each(history, row, clock)


def _forget_everything(session: Session) -> None:
    """An empty store again (within the test's database), for the next path."""
    session.execute(sa.update(Recipient).values(suppression_action_id=None))
    session.execute(sa.delete(Event))
    session.execute(sa.delete(Action))
    session.execute(sa.delete(Recipient))
    session.execute(sa.delete(Bookmark))
    session.flush()
    session.expunge_all()


@pytest.mark.parametrize("name", list(STALE_HISTORIES))
def test_incremental_nightly_and_full_evaluation_agree_on_stale_bounces(
    session: Session, frozen_now: datetime, name: str
) -> None:
    steps, suppressed = STALE_HISTORIES[name]
    expected = {"ann@example.com"} if suppressed else set()
    ends = {}

    _record_stale_history(session, steps, frozen_now, lambda h, row, now: h.run([row], now))
    ends["incremental"] = _suppressed(session)
    _forget_everything(session)

    # A nightly run between every two recordings: the bounce is judged before the delivery.
    _record_stale_history(
        session,
        steps,
        frozen_now,
        lambda h, row, now: store_hygiene.evaluate(session, POLICY, now),
    )
    ends["nightly"] = _suppressed(session)
    _forget_everything(session)

    _record_stale_history(session, steps, frozen_now, lambda h, row, now: None)
    store_hygiene.evaluate(session, POLICY, frozen_now + DAY, full=True)
    ends["full"] = _suppressed(session)

    assert ends == dict.fromkeys(ends, expected)


def test_the_engine_keeps_an_address_a_late_dsn_says_bounced_before_its_delivery(
    db_url: str, clock: FakeClock
) -> None:
    # The defect of issue 4 as a sender meets it: a 250 for ann, then a DSN for an older
    # message, dated two days before, with a decisive 550 5.1.1.
    with Engine(db_url, clock=clock) as engine:
        engine.record("ann@example.com", "250 2.0.0 OK", message_id="<new@x>", at=clock.now)
        clock.advance(timedelta(minutes=5))
        late = engine.record(
            "ann@example.com",
            "550 5.1.1 no such user",
            message_id="<old@x>",
            at=clock.now - LATE,
        )
        assert late.actions == ()
        assert engine.is_sendable("ann@example.com")
        # A newer one still suppresses.
        engine.record("ann@example.com", "550 5.1.1 no such user", message_id="<next@x>")
        assert not engine.is_sendable("ann@example.com")


def test_a_batch_with_a_delivery_before_a_late_bounce_keeps_the_address(
    db_url: str, clock: FakeClock
) -> None:
    # Within one record_many batch the items before the bounce were recorded before it.
    with Engine(db_url, clock=clock) as engine:
        result = engine.record_many(
            [
                ReplyRecord(
                    "ann@example.com", message_id="<new@x>", reply="250 2.0.0 OK", at=clock.now
                ),
                ReplyRecord(
                    "ann@example.com",
                    message_id="<old@x>",
                    reply="550 5.1.1 no such user",
                    at=clock.now - LATE,
                ),
            ]
        )
        assert result.recorded == 2
        assert result.actions == []
        assert engine.is_sendable("ann@example.com")


# ---- soft strikes -------------------------------------------------------------------------


def _strike_times(start: datetime, strikes: int, span: timedelta) -> list[datetime]:
    """`strikes` times on distinct days, the first and last exactly `span` apart."""
    if strikes == 1:
        return [start]
    step = span / (strikes - 1)
    assert step >= DAY, "the policy's span must leave room for distinct days"
    return [start + i * step for i in range(strikes)]


def test_soft_strikes_on_distinct_days_spanning_the_policy_span_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    for at in _strike_times(frozen_now, H.soft_strikes, H.soft_span):
        history.soft("full@example.com", at)
    [action] = _actions(session, ActionKind.SUPPRESS, ActionStatus.OPEN)
    assert action.rule == RULE_SOFT
    assert action.reason is Reason.MAILBOX_FULL
    # The windows as a policy file writes them, not Python's "30 days, 0:00:00".
    assert (
        f"on distinct days within {format_duration(H.soft_window)}, spanning at least"
        f" {format_duration(H.soft_span)}, with no delivery between"
    ) in action.detail
    assert "0:00:00" not in action.detail


@pytest.mark.parametrize(
    ("span", "suppressed"),
    [(H.soft_span, True), (H.soft_span - MICRO, False)],
)
def test_the_soft_span_is_exact_to_the_microsecond_on_every_backend(
    session: Session, history: History, frozen_now: datetime, span: timedelta, suppressed: bool
) -> None:
    # The first strike at .999999 of a second: SQLite rounded it up to the next second.
    first = frozen_now + timedelta(microseconds=999_999)
    times = _strike_times(first, H.soft_strikes, H.soft_span)
    times[-1] = first + span
    for at in times:
        history.soft("full@example.com", at)
    assert _suppressed(session) == ({"full@example.com"} if suppressed else set())


def test_one_soft_strike_fewer_than_the_policy_count_does_not_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    for at in _strike_times(frozen_now, H.soft_strikes - 1, H.soft_span):
        history.soft("full@example.com", at)
    assert _suppressed(session) == set()


def test_soft_strikes_one_day_short_of_the_span_do_not_suppress(
    session: Session, history: History, frozen_now: datetime
) -> None:
    for at in _strike_times(frozen_now, H.soft_strikes, H.soft_span - DAY):
        history.soft("full@example.com", at)
    assert _suppressed(session) == set()


def test_soft_strikes_on_the_same_day_count_once(
    session: Session, history: History, frozen_now: datetime
) -> None:
    start = frozen_now.replace(hour=0, minute=1)
    for i in range(H.soft_strikes * 3):
        history.soft("full@example.com", start + i * timedelta(minutes=30))
    history.soft("full@example.com", start + H.soft_span)
    assert _suppressed(session) == set()


def test_a_delivery_between_soft_strikes_resets_the_count(
    session: Session, history: History, frozen_now: datetime
) -> None:
    times = _strike_times(frozen_now, H.soft_strikes, H.soft_span)
    for at in times[:-1]:
        history.soft("full@example.com", at)
    history.delivered("full@example.com", times[-1] - timedelta(hours=1))
    history.soft("full@example.com", times[-1])
    assert _suppressed(session) == set()


def test_soft_strikes_older_than_the_window_stop_counting(
    session: Session, history: History, frozen_now: datetime
) -> None:
    old = frozen_now - H.soft_window - DAY
    history.soft("full@example.com", old)
    # The rest are one strike short within the window, but reach the count with the old one.
    for at in _strike_times(frozen_now, H.soft_strikes - 1, H.soft_span):
        history.soft("full@example.com", at)
    assert _suppressed(session) == set()


def test_an_expired_retry_is_a_soft_strike(
    session: Session, history: History, frozen_now: datetime
) -> None:
    # Retried until the lifetime ran out against a host that never answered (the network's
    # fault): the address, for all anyone knows, is gone.
    for at in _strike_times(frozen_now, H.soft_strikes, H.soft_span):
        history.record(
            "slow@example.com", at, Outcome.DEFERRED, Reason.EXPIRED, fault=Fault.NETWORK
        )
    assert _suppressed(session) == {"slow@example.com"}


def test_an_expired_retry_after_the_senders_or_the_destinations_trouble_is_no_strike(
    session: Session, history: History, frozen_now: datetime
) -> None:
    for fault in sorted(H.expiry_exempt_faults):
        for at in _strike_times(frozen_now, H.soft_strikes + 1, H.soft_span):
            history.record(
                f"{fault}@example.com", at, Outcome.DEFERRED, Reason.EXPIRED, fault=fault
            )
    assert _suppressed(session) == set()


# ---- blocks: never a strike ---------------------------------------------------------------


def test_500_addresses_blocked_by_one_provider_in_an_hour_suppresses_nobody(
    session: Session, history: History, frozen_now: datetime
) -> None:
    # Recorded as record_many records them: one chunk of events, then the incremental pass.
    rows = [
        history.event(
            f"user{i}@bigmail.example",
            frozen_now + i * timedelta(seconds=7),
            Outcome.BLOCKED,
            Reason.BLOCKED,
            code=550,
            status="5.7.1",
            text="5.7.1 Message rejected due to local policy",
        )
        for i in range(500)
    ]
    history.run(rows, frozen_now + timedelta(hours=1))
    assert _suppressed(session) == set()
    # The same history again, read by the nightly set-based evaluation and a full one.
    store_hygiene.evaluate(session, POLICY, frozen_now + timedelta(hours=2))
    store_hygiene.evaluate(session, POLICY, frozen_now + timedelta(hours=2), full=True)
    assert _suppressed(session) == set()
    assert _pending(session) == set()
    standings = set(session.scalars(sa.select(Recipient.standing)))
    assert Standing.SUPPRESSED not in standings
    [alert] = _actions(session, ActionKind.ALERT)
    assert (alert.scope, alert.target) == (ActionScope.SENDER, "bigmail.example")
    assert alert.status is ActionStatus.OPEN
    [throttle] = _actions(session, ActionKind.THROTTLE)
    assert throttle.target == "bigmail.example"


def test_blocks_one_fewer_than_the_policy_count_within_the_window_do_not_throttle(
    session: Session, history: History, frozen_now: datetime
) -> None:
    for i in range(T.blocked_count - 1):
        history.blocked(f"u{i}@corp.example", frozen_now + i * timedelta(seconds=1))
    assert _actions(session, ActionKind.THROTTLE) == []
    assert len(_actions(session, ActionKind.ALERT)) == 1


def test_blocks_at_the_policy_count_within_the_window_throttle_the_destination(
    session: Session, history: History, frozen_now: datetime
) -> None:
    step = T.blocked_window / T.blocked_count
    for i in range(T.blocked_count):
        history.blocked(f"u{i}@corp.example", frozen_now + i * step)
    throttle = store_hygiene.throttle_for(session, "corp.example", frozen_now + T.blocked_window)
    assert throttle is not None
    assert throttle.destination == "corp.example"


GROUPS = {"google": ("gmail.com", "googlemail.com"), "yahoo": ("yahoo.com", "ymail.com")}


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_blocks_across_a_provider_groups_domains_throttle_the_group_not_its_neighbours(
    session: Session, frozen_now: datetime, nightly: bool
) -> None:
    policy = Policy(rules=(), throttle=ThrottlePolicy(provider_domains=GROUPS))
    history = History(session, policy)
    step = T.blocked_window / T.blocked_count
    rows = []
    for i in range(T.blocked_count):
        # Alternate the group's domains: only together do they reach the count.
        domain = "gmail.com" if i % 2 else "googlemail.com"
        rows.append(history.event(f"u{i}@{domain}", frozen_now + i * step, Outcome.BLOCKED,
                                  Reason.BLOCKED))  # fmt: skip
        # As many blocks at another group and at a plain domain, each one short of the count.
        rows.append(history.event(f"v{i}@yahoo.com", frozen_now + i * step, Outcome.BLOCKED,
                                  Reason.BLOCKED))  # fmt: skip
    for i in range(T.blocked_count - 1):
        rows.append(history.event(f"w{i}@corp.example", frozen_now + i * step, Outcome.BLOCKED,
                                  Reason.BLOCKED))  # fmt: skip
    rows.sort(key=lambda r: (r.at, r.id))
    end = frozen_now + T.blocked_window
    if nightly:
        store_hygiene.evaluate(session, policy, end)
    else:
        for row in rows:
            history.run([row], row.at)
    throttled = {(a.scope, a.target) for a in _actions(session, ActionKind.THROTTLE)}
    assert throttled == {(ActionScope.PROVIDER, "google"), (ActionScope.PROVIDER, "yahoo")}
    assert store_hygiene.throttle_for(session, "corp.example", end, policy=policy) is None


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_a_lone_block_after_the_window_leaves_the_throttle_of_the_blocks_before_it(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    # All in one evaluation: the destination's latest block has too few blocks in its window,
    # an earlier one has enough, and that earlier one sets the throttle.
    step = T.blocked_window / T.blocked_count
    rows = [
        history.event(f"u{i}@corp.example", frozen_now + i * step, Outcome.BLOCKED, Reason.BLOCKED)
        for i in range(T.blocked_count)
    ]
    last_qualifying = rows[-1].at
    lone = last_qualifying + T.blocked_window + timedelta(minutes=1)
    rows.append(history.event("lone@corp.example", lone, Outcome.BLOCKED, Reason.BLOCKED))
    if nightly:
        store_hygiene.evaluate(session, POLICY, last_qualifying)
    else:
        history.run(rows, last_qualifying)
    [throttle] = _actions(session, ActionKind.THROTTLE)
    assert throttle.evidence["blocks"]["at"] == last_qualifying.isoformat()
    assert throttle.evidence["blocks"]["in_window"] == T.blocked_count


def test_blocks_spread_wider_than_the_window_do_not_throttle(
    session: Session, history: History, frozen_now: datetime
) -> None:
    step = (T.blocked_window + timedelta(minutes=T.blocked_count)) / (T.blocked_count - 1)
    for i in range(T.blocked_count):
        history.blocked(f"u{i}@corp.example", frozen_now + i * step)
    assert _actions(session, ActionKind.THROTTLE) == []


# ---- 4xx refusals of the sender: blocks, though deferred and retried ----------------------

#: A blocklist refusal answered with a 4xx: the class digit makes it `deferred` (RFC 5321 4.2.1),
#: the reason and fault stay the sender's (RFC 3463 X.7.1).
BLOCKLISTED_4XX = "450 4.7.1 Client host blocked using zen.spamhaus.org"


def _block_times(start: datetime, n: int) -> list[datetime]:
    """`n` times within `blocked_window`: the last one less than the window after the first."""
    step = T.blocked_window / T.blocked_count
    return [start + i * step for i in range(n)]


#: The 4xx refusals that are blocks: of the sender (a blocklist) and of the message's content (a
#: virus), each with the reason its throttle takes.
REFUSALS_4XX = pytest.mark.parametrize(
    ("refusal", "reason"),
    [("blocked_4xx", Reason.BLOCKED), ("content_4xx", Reason.VIRUS_DETECTED)],
    ids=["sender", "content"],
)


@REFUSALS_4XX
def test_4xx_refusals_at_the_policy_count_within_the_window_throttle_and_alert(
    session: Session, history: History, frozen_now: datetime, refusal: str, reason: Reason
) -> None:
    for i, at in enumerate(_block_times(frozen_now, T.blocked_count)):
        getattr(history, refusal)(f"u{i}@corp.example", at)
    throttle = store_hygiene.throttle_for(session, "corp.example", frozen_now + T.blocked_window)
    assert throttle is not None
    assert throttle.reason is reason
    [action] = _actions(session, ActionKind.THROTTLE)
    assert action.rule == RULE_BLOCKED_THROTTLE
    assert action.evidence["blocks"]["in_window"] == T.blocked_count
    [alert] = _actions(session, ActionKind.ALERT)
    assert (alert.scope, alert.target, alert.rule) == (
        ActionScope.SENDER,
        "corp.example",
        RULE_BLOCKED,
    )
    assert alert.evidence["blocks"] == T.blocked_count
    assert _suppressed(session) == set()


@REFUSALS_4XX
def test_4xx_refusals_one_fewer_than_the_policy_count_alert_but_do_not_throttle(
    session: Session, history: History, frozen_now: datetime, refusal: str, reason: Reason
) -> None:
    # As for 5xx blocks: every block alerts the sender; only repeated ones throttle.
    for i, at in enumerate(_block_times(frozen_now, T.blocked_count - 1)):
        getattr(history, refusal)(f"u{i}@corp.example", at)
    assert _actions(session, ActionKind.THROTTLE) == []
    [alert] = _actions(session, ActionKind.ALERT)
    assert (alert.scope, alert.rule) == (ActionScope.SENDER, RULE_BLOCKED)
    assert alert.evidence["blocks"] == T.blocked_count - 1


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_4xx_and_5xx_blocks_count_together_toward_the_throttle(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    rows = []
    for i, at in enumerate(_block_times(frozen_now, T.blocked_count)):
        if i % 2:
            rows.append(history.event(f"u{i}@corp.example", at, Outcome.BLOCKED, Reason.BLOCKED))
        else:
            rows.append(history.event(f"u{i}@corp.example", at, Outcome.DEFERRED, Reason.BLOCKED,
                                      fault=Fault.SENDER))  # fmt: skip
    if nightly:
        store_hygiene.evaluate(session, POLICY, rows[-1].at)
    else:
        for row in rows:
            history.run([row], row.at)
    [throttle] = _actions(session, ActionKind.THROTTLE)
    assert throttle.evidence["blocks"]["in_window"] == T.blocked_count
    [alert] = _actions(session, ActionKind.ALERT)
    assert alert.evidence["blocks"] == T.blocked_count


def test_deferrals_that_are_not_the_senders_or_the_messages_fault_are_no_blocks(
    session: Session, history: History, frozen_now: datetime
) -> None:
    # Greylisting, a full disk at the destination, a host that does not answer: deferred, and
    # none of them a refusal of the sender or of its message.
    for fault in (Fault.DESTINATION, Fault.NETWORK, Fault.RECIPIENT, Fault.DOMAIN, Fault.UNKNOWN):
        for i, at in enumerate(_block_times(frozen_now, T.blocked_count)):
            history.record(f"{fault.value}{i}@corp.example", at, Outcome.DEFERRED,
                           Reason.POLICY_VIOLATION, fault=fault)  # fmt: skip
    assert _actions(session, ActionKind.THROTTLE) == []
    assert _actions(session, ActionKind.ALERT) == []


def test_a_4xx_push_back_of_the_senders_fault_is_still_a_push_back(
    session: Session, history: History, frozen_now: datetime
) -> None:
    # Gmail's 4xx rate limit of unauthenticated mail (gmail.unauthenticated_rate_limited) is a
    # push-back whose fault is the sender's: it throttles as a push-back does, and is no block.
    for i, at in enumerate(_block_times(frozen_now, T.blocked_count)):
        history.record(f"u{i}@gmail.example", at, Outcome.DEFERRED, Reason.AUTH_FAILURE,
                       throttle=True, fault=Fault.SENDER, code=421)  # fmt: skip
    [throttle] = _actions(session, ActionKind.THROTTLE)
    assert throttle.rule == RULE_PUSHBACK
    assert "blocks" not in throttle.evidence
    assert throttle.evidence["pushback"]["in_window"] == T.blocked_count
    assert _actions(session, ActionKind.ALERT) == []


def test_4xx_refusals_of_the_sender_and_their_expiries_suppress_nobody(
    session: Session, history: History, frozen_now: datetime
) -> None:
    # Day after day, as long and as often as soft strikes would suppress, each address refused
    # with a 4xx, then the delivery given up on (its expiry keeps the sender's fault), and a
    # storm of refusals on the last day: no strike, no suppression.
    addresses = [f"u{i}@corp.example" for i in range(3)]
    times = _strike_times(frozen_now, H.soft_strikes + 1, H.soft_span + DAY)
    for at in times:
        for address in addresses:
            history.blocked_4xx(address, at)
            history.record(address, at + timedelta(hours=1), Outcome.DEFERRED, Reason.EXPIRED,
                           kind=EventKind.EXPIRY, fault=Fault.SENDER)  # fmt: skip
    for i, at in enumerate(_block_times(times[-1] + DAY, 3 * T.blocked_count)):
        history.blocked_4xx(addresses[i % len(addresses)], at)
    end = times[-1] + 2 * DAY
    store_hygiene.evaluate(session, POLICY, end)
    store_hygiene.evaluate(session, POLICY, end, full=True)
    assert _suppressed(session) == set()
    assert _pending(session) == set()
    assert Standing.SUPPRESSED not in set(session.scalars(sa.select(Recipient.standing)))
    # The expiries are no blocks: the alert counts the refusals alone.
    [alert] = _actions(session, ActionKind.ALERT)
    assert alert.evidence["blocks"] == len(times) * len(addresses) + 3 * T.blocked_count


def test_the_engine_retries_deliveries_a_4xx_blocklist_refuses_and_throttles_the_destination(
    db_url: str, clock: FakeClock
) -> None:
    # The sender's view, with the default policy's classification of the reply text.
    with Engine(db_url, clock=clock) as engine:
        start = clock.now
        decisions = []
        for i, at in enumerate(_block_times(start, T.blocked_count)):
            clock.set(at)
            decisions.append(
                engine.record(f"u{i}@corp.example", BLOCKLISTED_4XX, message_id=f"m{i}@x")
            )
        assert {d.verdict.outcome for d in decisions} == {Outcome.DEFERRED}
        assert {d.delivery_state for d in decisions} == {DeliveryState.DEFERRED}
        assert {d.verdict.fault for d in decisions} == {Fault.SENDER}
        # The last one repeats the blocks: the destination is throttled, the sender alerted.
        raised = {(a.kind, a.scope, a.rule) for a in decisions[-1].actions}
        assert (ActionKind.THROTTLE, ActionScope.DOMAIN, RULE_BLOCKED_THROTTLE) in raised
        assert (ActionKind.ALERT, ActionScope.SENDER, RULE_BLOCKED) in raised
        throttle = engine.throttle_for("corp.example")
        assert throttle is not None
        assert engine.due_retries() == []  # paused, as the destination's throttle says
        # Once the pause is over, every delivery is due again: deferred, not given up on.
        clock.set(max(throttle.paused_until, *(d.next_attempt_at for d in decisions)))
        due = {(r.address, r.message_id) for r in engine.due_retries()}
        assert due == {(f"u{i}@corp.example", f"m{i}@x") for i in range(T.blocked_count)}
        for i in range(T.blocked_count):
            status = engine.status(f"u{i}@corp.example")
            assert not status.suppressed
            assert status.sendable


# ---- 4xx refusals of the message's content: blocks, as their 5xx form is ------------------

#: A virus scanner's refusal answered with a 4xx: `deferred` (RFC 5321 4.2.1), the reason and
#: fault of its 5xx form, `blocked` with fault `message` (std.virus_text).
CONTENT_4XX = "451 4.7.1 Virus found"


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_4xx_content_refusals_and_5xx_blocks_count_together_toward_the_throttle(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    # One fewer 5xx block than the count, and the 4xx content refusal that completes it (the
    # 5xx blocks alone do not throttle); the 4xx refusals of the sender count beside both.
    rows = []
    for i, at in enumerate(_block_times(frozen_now, T.blocked_count)):
        if i % 3 == 0:
            rows.append(history.event(f"u{i}@corp.example", at, Outcome.DEFERRED,
                                      Reason.VIRUS_DETECTED, fault=Fault.MESSAGE))  # fmt: skip
        elif i % 3 == 1:
            rows.append(history.event(f"u{i}@corp.example", at, Outcome.BLOCKED, Reason.BLOCKED))
        else:
            rows.append(history.event(f"u{i}@corp.example", at, Outcome.DEFERRED, Reason.BLOCKED,
                                      fault=Fault.SENDER))  # fmt: skip
    if nightly:
        store_hygiene.evaluate(session, POLICY, rows[-1].at)
    else:
        for row in rows:
            history.run([row], row.at)
    [throttle] = _actions(session, ActionKind.THROTTLE)
    assert throttle.evidence["blocks"]["in_window"] == T.blocked_count
    [alert] = _actions(session, ActionKind.ALERT)
    assert alert.evidence["blocks"] == T.blocked_count


def test_one_4xx_content_refusal_completes_the_count_of_5xx_blocks(
    session: Session, history: History, frozen_now: datetime
) -> None:
    times = _block_times(frozen_now, T.blocked_count)
    for i, at in enumerate(times[:-1]):
        history.blocked(f"u{i}@corp.example", at)
    assert _actions(session, ActionKind.THROTTLE) == []
    history.content_4xx("last@corp.example", times[-1])
    [throttle] = _actions(session, ActionKind.THROTTLE)
    assert throttle.rule == RULE_BLOCKED_THROTTLE
    assert throttle.evidence["blocks"]["in_window"] == T.blocked_count


def test_4xx_content_refusals_and_their_expiries_suppress_nobody(
    session: Session, history: History, frozen_now: datetime
) -> None:
    # As for the sender's refusals: as long and as often as soft strikes would suppress, each
    # address refused with a 4xx, then its delivery given up on (the expiry keeps the
    # message's fault): no strike, and the alert counts the refusals alone.
    addresses = [f"u{i}@corp.example" for i in range(3)]
    times = _strike_times(frozen_now, H.soft_strikes + 1, H.soft_span + DAY)
    for at in times:
        for address in addresses:
            history.content_4xx(address, at)
            history.record(address, at + timedelta(hours=1), Outcome.DEFERRED, Reason.EXPIRED,
                           kind=EventKind.EXPIRY, fault=Fault.MESSAGE)  # fmt: skip
    end = times[-1] + DAY
    store_hygiene.evaluate(session, POLICY, end)
    store_hygiene.evaluate(session, POLICY, end, full=True)
    assert _suppressed(session) == set()
    assert _pending(session) == set()
    [alert] = _actions(session, ActionKind.ALERT)
    assert alert.evidence["blocks"] == len(times) * len(addresses)


def test_the_engine_alerts_the_sender_and_throttles_a_destination_that_refuses_its_content_with_4xx(
    db_url: str, clock: FakeClock
) -> None:
    # The sender's view, with the default policy's classification of the reply text.
    with Engine(db_url, clock=clock) as engine:
        decisions = []
        for i, at in enumerate(_block_times(clock.now, T.blocked_count)):
            clock.set(at)
            decisions.append(engine.record(f"u{i}@corp.example", CONTENT_4XX, message_id=f"m{i}@x"))
        assert {(d.verdict.outcome, d.verdict.fault) for d in decisions} == {
            (Outcome.DEFERRED, Fault.MESSAGE)
        }
        assert {d.delivery_state for d in decisions} == {DeliveryState.DEFERRED}
        first = {(a.kind, a.scope, a.rule) for a in decisions[0].actions}
        assert (ActionKind.ALERT, ActionScope.SENDER, RULE_BLOCKED) in first
        raised = {(a.kind, a.scope, a.rule) for a in decisions[-1].actions}
        assert (ActionKind.THROTTLE, ActionScope.DOMAIN, RULE_BLOCKED_THROTTLE) in raised
        assert engine.throttle_for("corp.example") is not None
        for i in range(T.blocked_count):
            assert not engine.status(f"u{i}@corp.example").suppressed


# ---- push-backs (421, 452, rate limits) ---------------------------------------------------


def test_first_pushback_pauses_the_domain_for_the_initial_pause(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.pushback("a@busy.example", frozen_now)
    throttle = store_hygiene.throttle_for(session, "busy.example", frozen_now)
    assert throttle is not None
    assert throttle.paused_until == frozen_now + T.initial_pause
    assert throttle.max_rate == T.initial_rate
    assert throttle.reason is Reason.RATE_LIMITED
    assert _suppressed(session) == set()


def test_the_pause_stops_applying_at_its_expiry_without_any_job(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.pushback("a@busy.example", frozen_now)
    end = frozen_now + T.initial_pause
    assert store_hygiene.throttle_for(session, "busy.example", end - timedelta(seconds=1))
    assert store_hygiene.throttle_for(session, "busy.example", end) is None
    assert store_hygiene.paused_domains(session, ["busy.example"], end) == set()


def test_a_repeat_inside_the_window_doubles_the_pause_and_halves_the_rate(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.pushback("a@busy.example", frozen_now)
    # While still paused (in-flight messages): the open throttle is refreshed, not duplicated.
    second = frozen_now + T.initial_pause / 2
    history.pushback("b@busy.example", second)
    throttle = store_hygiene.throttle_for(session, "busy.example", second)
    assert throttle is not None
    assert throttle.paused_until == second + T.initial_pause * T.pause_multiplier
    assert throttle.max_rate == T.initial_rate * T.rate_multiplier
    assert len(_actions(session, ActionKind.THROTTLE)) == 1


def test_a_repeat_after_the_pause_ended_but_inside_the_window_still_doubles(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.pushback("a@busy.example", frozen_now)
    later = frozen_now + T.initial_pause + timedelta(minutes=1)
    assert later - frozen_now <= T.repeat_window
    history.pushback("b@busy.example", later)
    throttle = store_hygiene.throttle_for(session, "busy.example", later)
    assert throttle is not None
    assert throttle.paused_until == later + T.initial_pause * T.pause_multiplier
    assert throttle.step == 1


def test_a_pushback_after_the_repeat_window_starts_afresh(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.pushback("a@busy.example", frozen_now)
    later = frozen_now + T.repeat_window + timedelta(seconds=1)
    history.pushback("b@busy.example", later)
    throttle = store_hygiene.throttle_for(session, "busy.example", later)
    assert throttle is not None
    assert throttle.paused_until == later + T.initial_pause


def test_repeated_pushbacks_stop_at_the_maximum_pause(
    session: Session, history: History, frozen_now: datetime
) -> None:
    at = frozen_now
    for _ in range(12):
        history.pushback("a@busy.example", at)
        at += timedelta(minutes=1)
    throttle = store_hygiene.throttle_for(session, "busy.example", at)
    assert throttle is not None
    assert throttle.paused_until - (at - timedelta(minutes=1)) == T.max_pause
    assert throttle.max_rate >= T.min_rate


def test_a_provider_rules_own_pause_replaces_the_initial_pause(
    session: Session, history: History, frozen_now: datetime
) -> None:
    own = timedelta(hours=1)
    history.pushback("a@yahoo.example", frozen_now, pause=own)
    throttle = store_hygiene.throttle_for(session, "yahoo.example", frozen_now)
    assert throttle is not None
    assert throttle.paused_until == frozen_now + own


def test_the_throttle_lifts_after_the_policy_count_of_deliveries(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.pushback("a@busy.example", frozen_now)
    at = frozen_now
    for i in range(T.release_after_deliveries - 1):
        at += timedelta(seconds=1)
        history.delivered(f"d{i}@busy.example", at)
    assert store_hygiene.throttle_for(session, "busy.example", at) is not None
    history.delivered("last@busy.example", at + timedelta(seconds=1))
    assert store_hygiene.throttle_for(session, "busy.example", at) is None
    [release] = _actions(session, ActionKind.RELEASE)
    assert release.target == "busy.example"
    assert release.detail.startswith(
        f"{T.release_after_deliveries} deliveries since the last push-back lifted throttle"
    )


def test_a_throttle_raised_by_repeated_blocks_lifts_naming_the_block_that_raised_it(
    session: Session, history: History, frozen_now: datetime
) -> None:
    step = T.blocked_window / T.blocked_count
    for i in range(T.blocked_count):
        history.blocked(f"u{i}@corp.example", frozen_now + i * step)
    at = frozen_now + T.blocked_window
    for i in range(T.release_after_deliveries):
        at += timedelta(seconds=1)
        history.delivered(f"d{i}@corp.example", at)
    assert store_hygiene.throttle_for(session, "corp.example", at) is None
    [release] = _actions(session, ActionKind.RELEASE)
    assert release.detail.startswith(
        f"{T.release_after_deliveries} deliveries since the last block lifted throttle"
    )


def test_a_provider_group_shares_one_throttle(session: Session, frozen_now: datetime) -> None:
    policy = Policy(
        rules=(),
        throttle=ThrottlePolicy(provider_domains={"google": ("gmail.com", "googlemail.com")}),
    )
    history = History(session, policy)
    history.pushback("a@gmail.com", frozen_now)
    history.pushback("b@googlemail.com", frozen_now + timedelta(minutes=1))
    throttle = store_hygiene.throttle_for(session, "googlemail.com", frozen_now, policy=policy)
    assert throttle is not None
    assert (throttle.scope, throttle.destination) == (ActionScope.PROVIDER, "google")
    assert throttle.step == 1
    paused = store_hygiene.paused_domains(
        session, ["gmail.com", "other.example"], frozen_now, policy=policy
    )
    assert paused == {"gmail.com"}


# ---- domain incidents ---------------------------------------------------------------------


def _burst(history: History, start: datetime, addresses: int, deliveries: int = 0) -> None:
    for i in range(deliveries):
        history.delivered(f"ok{i}@broken.example", start + i * timedelta(seconds=1))
    for i in range(addresses):
        history.hard(
            f"u{i}@broken.example", start + timedelta(minutes=1) + i * timedelta(seconds=5)
        )


def test_a_burst_of_hard_bounces_at_one_domain_is_held_as_an_incident(
    session: Session, history: History, frozen_now: datetime
) -> None:
    _burst(history, frozen_now, H.incident_addresses)
    assert _suppressed(session) == set()
    assert len(_pending(session)) == H.incident_addresses
    [alert] = _actions(session, ActionKind.ALERT)
    assert (alert.scope, alert.target, alert.rule) == (
        ActionScope.DOMAIN,
        "broken.example",
        RULE_INCIDENT,
    )
    standings = set(session.scalars(sa.select(Recipient.standing)))
    assert Standing.SUPPRESSED not in standings


def test_one_address_fewer_than_the_incident_count_suppresses_each_address(
    session: Session, history: History, frozen_now: datetime
) -> None:
    _burst(history, frozen_now, H.incident_addresses - 1)
    assert len(_suppressed(session)) == H.incident_addresses - 1
    assert _actions(session, ActionKind.ALERT) == []


def _bounces_at(history: History, times: list[tuple[str, datetime]], nightly: bool) -> list[Event]:
    """Hard bounces at broken.example for (local part, time), each its own message; judged by
    the nightly evaluation at the last time, or one by one on the incremental path."""
    rows = [
        history.event(f"{local}@broken.example", at, Outcome.BOUNCED, Reason.USER_UNKNOWN,
                      decisive=True)
        for local, at in times
    ]  # fmt: skip
    if nightly:
        store_hygiene.evaluate(history.session, POLICY, max(at for _, at in times))
    else:
        for row in rows:
            history.run([row], row.at)
    return rows


def _incident_evidence(session: Session) -> dict[str, Any]:
    [alert] = _actions(session, ActionKind.ALERT)
    assert alert.rule == RULE_INCIDENT
    return dict(alert.evidence)


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_an_address_bouncing_twice_within_the_window_counts_once_toward_an_incident(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    # As many bounces as the incident count, from one address fewer: a second message bouncing
    # for the same mailbox is not a second address.
    n = H.incident_addresses
    times = [(f"u{i}", frozen_now + i * timedelta(seconds=5)) for i in range(n - 1)]
    times.append(("u0", frozen_now + n * timedelta(seconds=5)))
    _bounces_at(history, times, nightly)
    assert _actions(session, ActionKind.ALERT) == []
    assert len(_suppressed(session)) == n - 1


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_a_burst_with_repeated_addresses_names_each_address_once_in_its_alert(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    n = H.incident_addresses
    times = [(f"u{i}", frozen_now + i * timedelta(seconds=5)) for i in range(n)]
    times += [(f"u{i}", frozen_now + (n + i) * timedelta(seconds=5)) for i in range(3)]
    _bounces_at(history, times, nightly)
    evidence = _incident_evidence(session)
    assert (evidence["addresses"], evidence["bounces"]) == (n, n + 3)
    assert len(_pending(session)) == n


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_an_address_that_bounced_just_before_the_window_counts_once_inside_it(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    # u0 bounces a second before the last bounce's window opens, and again inside it: the
    # window then holds exactly the incident count of addresses, each bouncing once in it.
    n = H.incident_addresses
    last = frozen_now + H.incident_window + timedelta(minutes=10)
    times = [("u0", last - H.incident_window - timedelta(seconds=1))]
    times += [(f"u{i}", last - timedelta(minutes=5) + i * timedelta(seconds=5)) for i in range(n)]
    times.append((f"u{n - 1}", last))
    _bounces_at(history, times, nightly)
    evidence = _incident_evidence(session)
    assert (evidence["addresses"], evidence["bounces"]) == (n, n + 1)


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_a_delivery_a_fraction_of_a_millisecond_after_the_last_bounce_is_not_in_its_window(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    # Exactly the incident fraction of attempts at the last bounce; a delivery 0.3 ms later,
    # in the same millisecond (recorded before the bounce, so every path sees it when judging
    # the bounce), is after its window's end: times keep their microseconds.
    n = H.incident_addresses
    deliveries = int(n / H.incident_fraction) - n
    last = frozen_now + timedelta(minutes=1, microseconds=100)
    specs = [
        (f"ok{i}", frozen_now + i * timedelta(seconds=1), Outcome.DELIVERED, Reason.DELIVERED)
        for i in range(deliveries)
    ]
    specs += [
        (f"u{i}", frozen_now + timedelta(seconds=30 + i), Outcome.BOUNCED, Reason.USER_UNKNOWN)
        for i in range(n - 1)
    ]
    specs.append(("late", last + timedelta(microseconds=300), Outcome.DELIVERED, Reason.DELIVERED))
    specs.append((f"u{n - 1}", last, Outcome.BOUNCED, Reason.USER_UNKNOWN))
    rows = [
        history.event(f"{local}@broken.example", at, outcome, reason,
                      decisive=outcome is Outcome.BOUNCED)
        for local, at, outcome, reason in specs
    ]  # fmt: skip
    if nightly:
        store_hygiene.evaluate(session, POLICY, last + timedelta(seconds=1))
    else:
        for row in rows:
            history.run([row], row.at)
    evidence = _incident_evidence(session)
    assert (evidence["addresses"], evidence["bounces"], evidence["attempts"]) == (
        n,
        n,
        deliveries + n,
    )


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_a_bounce_a_fraction_of_a_millisecond_more_than_the_window_before_is_not_in_it(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    n = H.incident_addresses
    first = frozen_now + timedelta(microseconds=600)
    last = first + H.incident_window + timedelta(microseconds=400)
    times = [("u0", first)]
    times += [(f"u{i}", frozen_now + timedelta(minutes=10, seconds=i)) for i in range(1, n - 1)]
    times.append((f"u{n - 1}", last))
    _bounces_at(history, times, nightly)
    assert _actions(session, ActionKind.ALERT) == []
    assert len(_suppressed(session)) == n


def test_bounces_below_the_incident_fraction_of_attempts_are_not_an_incident(
    session: Session, history: History, frozen_now: datetime
) -> None:
    # Enough deliveries that the bounces stay under the fraction of the domain's attempts.
    deliveries = int(H.incident_addresses / H.incident_fraction)
    _burst(history, frozen_now, H.incident_addresses, deliveries=deliveries)
    assert len(_suppressed(session)) == H.incident_addresses
    assert _actions(session, ActionKind.ALERT) == []


def test_expiries_at_the_domain_are_not_attempts_that_dilute_an_incident(
    session: Session, history: History, frozen_now: datetime
) -> None:
    # An expiry is the sender giving up on a deferred delivery, not a reply the destination gave
    # (stored with outcome deferred, kind expiry): "half of that domain's attempts" counts the
    # destination's replies, as the reports do, so expiries in the hour do not hide a burst.
    for i in range(H.incident_addresses + 1):
        history.record(
            f"late{i}@broken.example",
            frozen_now + i * timedelta(seconds=1),
            Outcome.DEFERRED,
            Reason.EXPIRED,
            kind=EventKind.EXPIRY,
        )
    _burst(history, frozen_now, H.incident_addresses)
    assert _suppressed(session) == set()
    assert len(_pending(session)) == H.incident_addresses
    assert [a.rule for a in _actions(session, ActionKind.ALERT)] == [RULE_INCIDENT]


def _spread_bounces(history: History, start: datetime, span: timedelta, nightly: bool) -> None:
    """`incident_addresses` hard bounces at broken.example, the first and last `span` apart,
    starting mid-minute (the windows' ends fall inside a minute, not on one)."""
    n = H.incident_addresses
    rows = [
        history.event(f"u{i}@broken.example", start + i * (span / (n - 1)), Outcome.BOUNCED,
                      Reason.USER_UNKNOWN, decisive=True)
        for i in range(n)
    ]  # fmt: skip
    if nightly:
        store_hygiene.evaluate(history.session, POLICY, rows[-1].at)
    else:
        for row in rows:
            history.run([row], row.at)


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_bounces_exactly_the_incident_window_apart_are_an_incident(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    _spread_bounces(history, frozen_now + timedelta(seconds=37.5), H.incident_window, nightly)
    assert [a.rule for a in _actions(session, ActionKind.ALERT)] == [RULE_INCIDENT]
    assert len(_pending(session)) == H.incident_addresses


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_bounces_a_second_wider_than_the_incident_window_are_not_an_incident(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    span = H.incident_window + timedelta(seconds=1)
    _spread_bounces(history, frozen_now + timedelta(seconds=37.5), span, nightly)
    assert _actions(session, ActionKind.ALERT) == []
    assert len(_suppressed(session)) == H.incident_addresses


@pytest.mark.parametrize("nightly", [False, True], ids=["incremental", "nightly"])
def test_bounces_at_exactly_the_incident_fraction_of_attempts_are_an_incident(
    session: Session, history: History, frozen_now: datetime, nightly: bool
) -> None:
    # Deliveries inside the window, mid-minute, so that bounces are exactly the fraction; and a
    # few seconds before the last bounce's window opens, in the same minute, that do not count.
    n = H.incident_addresses
    deliveries = int(n / H.incident_fraction) - n
    start = frozen_now + timedelta(seconds=21.25)
    last_bounce = start + timedelta(minutes=5) + timedelta(minutes=30)
    before = last_bounce - H.incident_window - timedelta(seconds=10)
    rows = [
        history.event(f"early{i}@broken.example", before + i * timedelta(seconds=1),
                      Outcome.DELIVERED, Reason.DELIVERED)
        for i in range(5)
    ]  # fmt: skip
    rows += [
        history.event(f"ok{i}@broken.example", start + i * timedelta(seconds=7),
                      Outcome.DELIVERED, Reason.DELIVERED)
        for i in range(deliveries)
    ]  # fmt: skip
    if not nightly:
        for row in rows:
            history.run([row], row.at)
    _spread_bounces(history, start + timedelta(minutes=5), timedelta(minutes=30), nightly)
    assert [a.rule for a in _actions(session, ActionKind.ALERT)] == [RULE_INCIDENT]


def test_confirming_an_incident_applies_every_held_suppression(
    session: Session, history: History, frozen_now: datetime
) -> None:
    _burst(history, frozen_now, H.incident_addresses)
    [alert] = _actions(session, ActionKind.ALERT)
    later = frozen_now + timedelta(hours=3)
    assert store_hygiene.confirm_incident(session, alert.id, "ops@sender", later) == (
        H.incident_addresses
    )
    assert len(_suppressed(session)) == H.incident_addresses
    assert alert.status is ActionStatus.RESOLVED
    assert alert.resolved_by == "ops@sender"
    standings = list(session.scalars(sa.select(Recipient.standing)))
    assert standings.count(Standing.SUPPRESSED) == H.incident_addresses


def test_discarding_an_incident_drops_the_held_suppressions_for_good(
    session: Session, history: History, frozen_now: datetime
) -> None:
    _burst(history, frozen_now, H.incident_addresses)
    [alert] = _actions(session, ActionKind.ALERT)
    later = frozen_now + timedelta(hours=3)
    assert store_hygiene.discard_incident(session, alert.id, "ops@sender", later) == (
        H.incident_addresses
    )
    result = store_hygiene.evaluate(session, POLICY, later, full=True)
    assert result.raised == 0
    assert _suppressed(session) == set()
    assert _pending(session) == set()


@pytest.mark.parametrize("settle", [store_hygiene.confirm_incident, store_hygiene.discard_incident])
def test_settling_an_incident_by_a_name_longer_than_its_column_is_refused_before_any_write(
    session: Session, history: History, frozen_now: datetime, settle: Any
) -> None:
    # actions.resolved_by is 120 characters: PostgreSQL and MariaDB failed with a DataError in
    # the middle of the transaction, SQLite stored the name whole.
    _burst(history, frozen_now, H.incident_addresses)
    [alert] = _actions(session, ActionKind.ALERT)
    with pytest.raises(InputError, match="longer than 120 characters"):
        settle(session, alert.id, "x" * 121, frozen_now + timedelta(hours=3))
    assert alert.status is ActionStatus.OPEN
    assert len(_pending(session)) == H.incident_addresses
    assert settle(session, alert.id, "x" * 120, frozen_now + timedelta(hours=3)) == (
        H.incident_addresses
    )


def test_confirming_something_that_is_not_an_incident_names_the_id(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.hard("gone@example.com", frozen_now)
    [action] = _actions(session, ActionKind.SUPPRESS)
    with pytest.raises(ValueError, match=f"action {action.id}"):
        store_hygiene.confirm_incident(session, action.id, "ops", frozen_now)


# ---- idempotency, expiry, nightly ---------------------------------------------------------


def test_open_actions_are_those_whose_time_is_not_up_at_the_time_asked_about(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.hard("gone@example.com", frozen_now)
    history.pushback("a@busy.example", frozen_now)
    _burst(history, frozen_now + timedelta(minutes=1), H.incident_addresses)
    session.flush()

    def open_kinds(at: datetime) -> list[str]:
        found = store_hygiene.list_actions(session, open_only=True, now=at)
        return sorted({f"{a.kind.value}/{a.status.value}" for a in found})

    paused = frozen_now + T.initial_pause
    assert "throttle/open" in open_kinds(paused - timedelta(seconds=1))
    # No sweep has run: the throttle is still "open" in the table, but its time is up.
    assert "throttle/open" not in open_kinds(paused)
    assert "suppress/pending" in open_kinds(paused)
    assert "suppress/open" in open_kinds(paused)
    # What it lists at a time is what is still open once the sweep has run at that time, and
    # the incident whose suppressions still wait for a person (docs/hygiene.md).
    later = frozen_now + timedelta(days=400)
    listed = {a.id for a in store_hygiene.list_actions(session, open_only=True, now=later)}
    assert store_hygiene.expire_actions(session, later) > 0
    session.expire_all()
    still_open = {
        a.id
        for a in store_hygiene.list_actions(session)
        if a.status in (ActionStatus.OPEN, ActionStatus.PENDING) or a.rule == RULE_INCIDENT
    }
    assert listed == still_open


def test_re_evaluating_raises_nothing_new(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.hard("gone@example.com", frozen_now)
    history.pushback("a@busy.example", frozen_now)
    history.blocked("b@corp.example", frozen_now)
    before = (
        len(_actions(session, ActionKind.SUPPRESS))
        + len(_actions(session, ActionKind.THROTTLE))
        + len(_actions(session, ActionKind.ALERT))
    )
    first = store_hygiene.evaluate(session, POLICY, frozen_now + timedelta(minutes=1))
    again = store_hygiene.evaluate(session, POLICY, frozen_now + timedelta(minutes=1), full=True)
    assert first.raised == 0
    assert again.raised == 0
    after = (
        len(_actions(session, ActionKind.SUPPRESS))
        + len(_actions(session, ActionKind.THROTTLE))
        + len(_actions(session, ActionKind.ALERT))
    )
    assert after == before


def test_the_nightly_evaluation_covers_only_events_since_its_bookmark(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.event(
        "gone@example.com", frozen_now, Outcome.BOUNCED, Reason.USER_UNKNOWN, decisive=True
    )
    first = store_hygiene.evaluate(session, POLICY, frozen_now)
    assert first.raised == 1
    history.event(
        "also@example.com", frozen_now, Outcome.BOUNCED, Reason.USER_UNKNOWN, decisive=True
    )
    second = store_hygiene.evaluate(session, POLICY, frozen_now)
    assert second.first_event_id == first.last_event_id + 1
    assert second.raised == 1
    assert _suppressed(session) == {"gone@example.com", "also@example.com"}


def test_an_unsuppressed_address_is_not_suppressed_again_by_old_evidence(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.hard("back@example.com", frozen_now)
    [action] = _actions(session, ActionKind.SUPPRESS)
    # What a person's unsuppress does (engine.unsuppress): close the suppression.
    action.status = ActionStatus.RESOLVED
    action.open_key = None
    action.resolved_at = frozen_now + DAY
    action.resolved_by = "ops"
    session.flush()
    store_hygiene.evaluate(session, POLICY, frozen_now + 2 * DAY, full=True)
    assert _suppressed(session) == set()
    history.hard("back@example.com", frozen_now + 3 * DAY)
    assert _suppressed(session) == {"back@example.com"}


#: A complaint's suppression expiry, for the tests of expiring suppressions.
COMPLAINT_LIFETIME = timedelta(days=90)


def _complaint_with_expiry(session: Session, at: datetime) -> History:
    """A history under a policy whose complaint suppressions expire, with one complaint."""
    expiry = {Reason.FEEDBACK: COMPLAINT_LIFETIME}
    history = History(session, Policy(rules=(), hygiene=HygienePolicy(suppression_expiry=expiry)))
    history.record("annoyed@example.com", at, Outcome.COMPLAINED, Reason.FEEDBACK)
    return history


def test_a_suppression_expires_when_the_policy_sets_an_expiry_for_its_reason(
    session: Session, frozen_now: datetime
) -> None:
    lifetime = COMPLAINT_LIFETIME
    _complaint_with_expiry(session, frozen_now)
    recipient = session.scalars(sa.select(Recipient)).one()
    assert recipient.suppressed_until == frozen_now + lifetime
    assert store_hygiene.expire_actions(session, frozen_now + lifetime - DAY) == 0
    assert store_hygiene.expire_actions(session, frozen_now + lifetime) == 1
    assert _suppressed(session) == set()


def test_new_evidence_after_a_suppressions_expiry_closes_it_and_raises_a_new_one(
    session: Session, frozen_now: datetime
) -> None:
    # No sweep runs between: the incremental pass itself closes the suppression that ran out.
    lifetime = COMPLAINT_LIFETIME
    history = _complaint_with_expiry(session, frozen_now)
    later = frozen_now + lifetime + DAY
    [summary] = history.record("annoyed@example.com", later, Outcome.COMPLAINED, Reason.FEEDBACK)
    old, new = _actions(session, ActionKind.SUPPRESS)
    assert (old.status, old.resolved_at, old.open_key) == (
        ActionStatus.EXPIRED,
        frozen_now + lifetime,
        None,
    )
    assert (new.status, new.created_at, new.raised_count) == (ActionStatus.OPEN, later, 1)
    assert (summary.id, summary.new) == (new.id, True)
    recipient = session.scalars(sa.select(Recipient)).one()
    assert recipient.suppression_action_id == new.id
    assert recipient.suppressed_until == later + lifetime


def test_a_refreshed_suppression_shows_on_the_action_the_session_already_holds(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.hard("gone@example.com", frozen_now)
    [held] = _actions(session, ActionKind.SUPPRESS)
    assert held.raised_count == 1
    history.hard("gone@example.com", frozen_now + DAY)
    assert held.raised_count == 2
    assert held.updated_at == frozen_now + DAY


def test_alerts_and_throttles_expire_in_the_sweep(
    session: Session, history: History, frozen_now: datetime
) -> None:
    history.blocked("b@corp.example", frozen_now)
    history.pushback("a@busy.example", frozen_now)
    assert store_hygiene.expire_actions(session, frozen_now + T.initial_pause) == 1
    assert store_hygiene.expire_actions(session, frozen_now + H.alert_lifetime) == 1
    assert _actions(session, ActionKind.ALERT, ActionStatus.OPEN) == []


# ---- the SQL predicates mirror the pure classification ------------------------------------


@pytest.mark.parametrize("outcome", [o for o in Outcome if o is not Outcome.INFORMATIONAL])
def test_sql_predicates_agree_with_the_pure_evidence_classes(
    session: Session, history: History, frozen_now: datetime, outcome: Outcome
) -> None:
    from deliverability.store.hygiene import (
        _is_ambiguous,
        _is_blocked,
        _is_delivered,
        _is_hard,
        _is_soft,
    )

    cases = []
    for reason in (Reason.USER_UNKNOWN, Reason.MAILBOX_FULL, Reason.EXPIRED, Reason.BLOCKED):
        for decisive in (False, True):
            for throttle in (False, True):
                # The sender's (a deferral of it is a block), the message's (a deferral of
                # it is not), and others'.
                for fault in (Fault.SENDER, Fault.MESSAGE, Fault.DESTINATION, Fault.RECIPIENT,
                              Fault.UNKNOWN):  # fmt: skip
                    row = history.event(
                        f"x{len(cases)}@example.com",
                        frozen_now,
                        outcome,
                        reason,
                        decisive=decisive,
                        throttle=throttle,
                        fault=fault,
                    )
                    cases.append((row.id, evidence_of(outcome, reason, decisive=decisive,
                                  throttle=throttle, policy=H, fault=fault)))  # fmt: skip
    predicates = {
        Evidence.HARD: _is_hard(Event.__table__.c),
        Evidence.AMBIGUOUS: _is_ambiguous(Event.__table__.c, POLICY),
        Evidence.SOFT: _is_soft(Event.__table__.c, POLICY),
        Evidence.BLOCKED: _is_blocked(Event.__table__.c, POLICY),
        Evidence.DELIVERED: _is_delivered(Event.__table__.c),
        Evidence.PUSHBACK: Event.throttle.is_(True),
        Evidence.COMPLAINT: sa.and_(Event.outcome == Outcome.COMPLAINED, Event.throttle.is_(False)),
    }
    for evidence, predicate in predicates.items():
        matched = set(session.scalars(sa.select(Event.id).where(predicate)))
        expected = {i for i, e in cases if e is evidence}
        assert matched == expected, evidence


# ---- incremental, nightly and full evaluation agree ---------------------------------------

EQUIVALENCE_POLICY = Policy(
    rules=(),
    throttle=ThrottlePolicy(provider_domains={"google": ("gmail.com", "googlemail.com")}),
)


def _in_force(session: Session, now: datetime) -> tuple[set[tuple[Any, ...]], dict[str, Any]]:
    """The actions in force at `now` (after the expiry sweep) and every recipient's standing."""
    store_hygiene.expire_actions(session, now)
    actions = set()
    for a in store_hygiene.list_actions(session, open_only=True):
        if a.status is ActionStatus.EXPIRED:
            # An unsettled incident listed for the person who settles it: not in force.
            continue
        # A throttle is set by its latest push-back (its pause, rate and step are compared) and a
        # sender alert by its latest block (its expiry is compared); when such an episode began
        # depends on when it was seen (a full re-evaluation sees no gaps), so that is not.
        refreshed = a.kind is ActionKind.THROTTLE or a.scope is ActionScope.SENDER
        began = None if refreshed else a.created_at
        actions.add(
            (a.kind, a.scope, a.target, a.status, a.reason, a.rule, began, a.expires_at,
             a.pause_until, a.max_rate, a.step)
        )  # fmt: skip
    # Hygiene owns the suppressed standing; the rest of a recipient's standing is the engine's.
    standings = {
        key: (reason, until)
        for key, reason, until in session.execute(
            sa.select(Recipient.address_key, Recipient.reason, Recipient.suppressed_until).where(
                Recipient.standing == Standing.SUPPRESSED
            )
        )
    }
    return actions, standings


@pytest.mark.slow
def test_incremental_nightly_and_full_evaluation_reach_the_same_actions(
    tmp_path: Path, frozen_now: datetime
) -> None:
    """50k+ generated events, three stores: the incremental pass once per event in recording
    order (now = the event's time), the nightly evaluation once per day, one full evaluation.

    The history is written once and copied into the three stores (the nightly one a day at a
    time, by event id): writing it through the ORM for each store, and for each day again, cost
    more than the evaluations themselves.

    SQLite only: the agreement is a property of the rules and the shared code path; the rule
    queries themselves run on every backend in the scenario tests above."""
    policy = EQUIVALENCE_POLICY
    days, per_day = 40, 1250
    specs = generate_history(seed=5, start=frozen_now, days=days, per_day=per_day)
    assert len(specs) >= 50_000
    end = max(spec["at"] for spec in specs) + timedelta(minutes=1)

    def store(name: str) -> Session:
        engine = create_engine(f"sqlite:///{tmp_path / name}.db")
        upgrade_schema(engine)
        return Session(engine)

    with store("written") as written:
        events = insert_history(written, specs)
        written.commit()
    for name in ("incremental", "nightly", "full"):
        with sqlite3.connect(tmp_path / "written.db") as db:
            db.execute("VACUUM INTO ?", (str(tmp_path / f"{name}.db"),))
    incremental, nightly, full = store("incremental"), store("nightly"), store("full")

    for event in events:
        assert event.at is not None
        store_hygiene.on_events(incremental, [event], policy, event.at)

    # The nightly store starts with the recipients only and gets each day's events (ids and all)
    # from the written store just before that day's run.
    nightly.execute(sa.delete(Event))
    nightly.execute(sa.delete(MinuteCount))
    nightly.execute(
        sa.text("ATTACH DATABASE :path AS written"), {"path": str(tmp_path / "written.db")}
    )
    by_day: dict[int, list[int]] = {}
    for event in events:
        assert event.at is not None
        by_day.setdefault((event.at - frozen_now) // timedelta(days=1), []).append(event.event_id)
    for day in range(days):
        ids = by_day.get(day)
        if ids:
            nightly.execute(
                sa.text(
                    "INSERT INTO events SELECT * FROM written.events WHERE id BETWEEN :lo AND :hi"
                ),
                {"lo": min(ids), "hi": max(ids)},
            )
            minutes.recount(nightly.connection())
        store_hygiene.evaluate(nightly, policy, min(frozen_now + timedelta(days=day + 1), end))

    store_hygiene.evaluate(full, policy, end, full=True)

    results = [_in_force(s, end) for s in (incremental, nightly, full)]
    actions, standings = results[0]
    kinds = {a[0] for a in actions}
    # The history exercises every kind of action, so agreeing means something.
    assert {ActionKind.SUPPRESS, ActionKind.THROTTLE, ActionKind.ALERT} <= kinds
    assert any(a[3] is ActionStatus.PENDING for a in actions), "the incident holds suppressions"
    assert sum(1 for a in actions if a[0] is ActionKind.SUPPRESS) > 100
    for other_actions, other_standings in results[1:]:
        assert other_actions == actions
        assert other_standings == standings
    for s in (incremental, nightly, full):
        s.close()


def test_the_spans_around_points_merge_overlapping_windows_per_domain_and_reach_a_ms_beyond() -> (
    None
):
    # The late bounces near an incident are read one range per span, not one join per point:
    # a burst of thousands of bounces is one span (and binds three parameters, not thousands).
    window = timedelta(hours=1)
    ms = timedelta(milliseconds=1)
    t = datetime(2026, 11, 2, 12, tzinfo=UTC)
    points = [
        (1, "a.example", t),
        (2, "a.example", t + timedelta(minutes=30)),
        (3, "b.example", t),
        (4, "a.example", t + 2 * window + timedelta(minutes=31)),
        (5, "a.example", t + timedelta(minutes=30)),
    ]
    assert store_hygiene._spans_around(points, window) == [
        ("a.example", t - window - ms, t + timedelta(minutes=30) + window + ms),
        (
            "a.example",
            t + window + timedelta(minutes=31) - ms,
            t + 3 * window + timedelta(minutes=31) + ms,
        ),
        ("b.example", t - window - ms, t + window + ms),
    ]
    burst = [(i, "c.example", t + i * timedelta(seconds=1)) for i in range(20_000)]
    assert len(store_hygiene._spans_around(burst, window)) == 1


#: SQLite's limit on bound parameters lowered for the test below (its build default is 32,766).
_LOW_VARIABLE_LIMIT = 6_000


@pytest.mark.parametrize("full", [False, True], ids=["nightly", "full"])
def test_a_night_with_more_bounced_domains_than_one_statement_can_bind_is_evaluated(
    tmp_path: Path, frozen_now: datetime, full: bool
) -> None:
    # A large list's bounces in one hour come from thousands of domains. The incident rule's
    # per-minute counts name the domains of a span of bounces: more than SQLite binds in one
    # statement must still be evaluated (here the limit is lowered, not the domains raised).
    engine = create_engine(f"sqlite:///{tmp_path / 'many.db'}")
    upgrade_schema(engine)

    @sa.event.listens_for(engine, "connect")
    def _low_limit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, _LOW_VARIABLE_LIMIT)

    engine.dispose()
    domains = _LOW_VARIABLE_LIMIT + 500
    specs = [
        {
            "address": f"u@d{i}.example",
            "at": frozen_now + i * (timedelta(hours=1) / domains),
            "outcome": Outcome.BOUNCED,
            "reason": Reason.USER_UNKNOWN,
            "decisive": True,
            "throttle": False,
            "pause": None,
            "message_id": f"m{i}",
        }
        for i in range(domains)
    ]
    with Session(engine) as session:
        insert_history(session, specs)
        session.commit()
        result = store_hygiene.evaluate(session, POLICY, frozen_now + timedelta(hours=2), full=full)
        session.commit()
        assert result.raised == domains
        assert len(_suppressed(session)) == domains
    engine.dispose()


def test_a_provider_group_with_more_learned_domains_than_one_statement_can_bind_is_judged(
    tmp_path: Path, frozen_now: datetime
) -> None:
    # A group learns every domain seen behind its MX hosts: a large list's Google-hosted domains
    # are many thousands. The destination rules must not bind one parameter per domain (here
    # SQLite's limit is lowered to below the group's domains, not the domains raised past it).
    url = f"sqlite:///{tmp_path / 'learned.db'}"
    setup = create_engine(url)
    upgrade_schema(setup)
    learned = _LOW_VARIABLE_LIMIT + 500
    with Session(setup) as session:
        session.execute(
            sa.insert(DomainProvider),
            [
                {
                    "domain": f"biz{i}.example",
                    "provider": "google",
                    "mx_host": "aspmx.l.google.com",
                    "first_seen_at": frozen_now,
                    "last_seen_at": frozen_now,
                }
                for i in range(learned)
            ],
        )
        session.commit()
    setup.dispose()
    clock = FakeClock(frozen_now + timedelta(hours=2))
    with Engine(url, clock=clock) as engine:

        @sa.event.listens_for(engine.db, "connect")
        def _low_limit(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, _LOW_VARIABLE_LIMIT)

        engine.db.dispose()
        # Blocks from Google-hosted domains: the repeated-blocks rule joins each block to the
        # blocks of its whole provider group.
        result = engine.record_many(
            ReplyRecord(
                recipient=f"u{i}@biz{i}.example",
                message_id=f"<m{i}@list.example>",
                reply="554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org",
                at=frozen_now + timedelta(hours=1, seconds=i),
            )
            for i in range(3)
        )
        assert (result.recorded, result.rejected) == (3, [])
        assert engine.throttle_for("biz1.example") is None


@pytest.mark.parametrize(
    "delta",
    [
        -timedelta(days=30),
        timedelta(days=7),
        timedelta(microseconds=1),
        -timedelta(microseconds=1),
        timedelta(days=7, microseconds=500_001),
        timedelta(seconds=-1, microseconds=3),
    ],
)
@pytest.mark.parametrize(
    "text",
    ["2026-11-01 05:13:52.999999", "2026-12-31 23:59:59.999999", "2024-02-29 00:00:00.000000"],
)
def test_a_window_bound_on_sqlite_is_the_time_shifted_to_the_microsecond(
    text: str, delta: timedelta
) -> None:
    # SQLite's date functions round to the millisecond; the bound is made without them.
    with Session(sa.create_engine("sqlite://")) as s:
        got = s.execute(sa.select(store_hygiene._shift(s, sa.literal(text), delta))).scalar()
    assert got == (datetime.fromisoformat(text) + delta).isoformat(" ", "microseconds")
