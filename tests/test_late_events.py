"""The hygiene rules reach the same actions on every path when events are recorded out of time
order (issue 4): late DSNs and logs read out of order are normal in bulk mail.

An event recorded late can complete the window of an event already evaluated (dated after it):
for the address rules (ambiguous bounces, soft strikes) and for the destination rules (repeated
push-backs, repeated blocks, domain incidents). The incremental pass (per recorded chunk), the
nightly evaluation (per run) and `--full` must all see that: each history here is recorded three
times, once per path, and the suppressions, standings and the throttles and alerts in force
compared. Numbers come from the policy, times from a frozen clock."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import pytest
import sqlalchemy as sa
from conftest import FakeClock
from factories_hygiene import History, shuffled_chunks
from sqlalchemy.orm import Session

from deliverability.engine import Engine
from deliverability.hygiene import (
    RULE_AMBIGUOUS,
    RULE_BLOCKED,
    RULE_BLOCKED_THROTTLE,
    RULE_INCIDENT,
    RULE_PUSHBACK,
    RULE_SOFT,
)
from deliverability.policy import Policy, ThrottlePolicy
from deliverability.store import hygiene as store_hygiene
from deliverability.store.models import Action, Bookmark, Event, Recipient
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    Fault,
    Outcome,
    Reason,
    Standing,
)

POLICY = Policy(rules=())
H = POLICY.hygiene
T = POLICY.throttle
#: Gmail and Googlemail as one destination (a provider group, docs/hygiene.md).
GROUPED = Policy(
    rules=(),
    throttle=ThrottlePolicy(provider_domains={"google": ("gmail.com", "googlemail.com")}),
)
DAY = timedelta(days=1)
#: A 452 the classifier reads as a full mailbox (a soft strike).
FULL = "452 4.2.2 The email account that you tried to reach is over quota"

#: What an event of a step is: its outcome, reason and the flags `History.event` takes.
KINDS: dict[str, tuple[Outcome, Reason, dict[str, Any]]] = {
    "delivered": (Outcome.DELIVERED, Reason.DELIVERED, {}),  # 250
    "hard": (Outcome.BOUNCED, Reason.USER_UNKNOWN, {"decisive": True}),  # 550 5.1.1
    "ambiguous": (Outcome.BOUNCED, Reason.REJECTED, {}),  # bare 550
    "soft": (Outcome.DEFERRED, Reason.MAILBOX_FULL, {}),  # 452 4.2.2
    "pushback": (Outcome.DEFERRED, Reason.RATE_LIMITED, {"throttle": True}),  # 421 4.7.0
    "blocked": (Outcome.BLOCKED, Reason.BLOCKED, {}),  # 550 5.7.1 policy
    # 450 4.7.1 blocklisted: deferred (RFC 5321 4.2.1), the sender's fault: a block.
    "blocked_4xx": (Outcome.DEFERRED, Reason.BLOCKED, {"fault": Fault.SENDER}),
    # 451 4.7.1 virus found: deferred, the message's fault: a block too.
    "content_4xx": (Outcome.DEFERRED, Reason.VIRUS_DETECTED, {"fault": Fault.MESSAGE}),
}

#: One event to record: (address, time, kind).
Step = tuple[str, datetime, str]
#: A way to record a history: the session, the chunks in recording order, "now", the policy.
Path = Callable[[Session, list[list[Step]], datetime, Policy], None]


def _write(history: History, chunk: list[Step]) -> list[Event]:
    rows = []
    for address, at, kind in chunk:
        outcome, reason, flags = KINDS[kind]
        rows.append(history.event(address, at, outcome, reason, **flags))
    return rows


def _incremental(session: Session, chunks: list[list[Step]], now: datetime, policy: Policy) -> None:
    history = History(session, policy)
    for chunk in chunks:
        history.run(_write(history, chunk), now)


def _nightly(session: Session, chunks: list[list[Step]], now: datetime, policy: Policy) -> None:
    history = History(session, policy)
    for chunk in chunks:
        _write(history, chunk)
        store_hygiene.evaluate(session, policy, now)


def _full(session: Session, chunks: list[list[Step]], now: datetime, policy: Policy) -> None:
    history = History(session, policy)
    for chunk in chunks:
        _write(history, chunk)
    store_hygiene.evaluate(session, policy, now, full=True)


PATHS: dict[str, Path] = {"incremental": _incremental, "nightly": _nightly, "full": _full}


def _forget_everything(session: Session) -> None:
    """An empty store again (within the test's database), for the next path."""
    session.execute(sa.update(Recipient).values(suppression_action_id=None))
    for table in (Event, Action, Recipient, Bookmark):
        session.execute(sa.delete(table))
    session.flush()
    session.expunge_all()


class End(NamedTuple):
    """Where a path ends: its suppressions (what, since when, why, until when; open or held),
    the suppressed standings, and the throttles and alerts in force."""

    suppressions: set[tuple[Any, ...]]
    standings: set[tuple[Any, ...]]
    destinations: set[tuple[Any, ...]]


def _outcome(session: Session, now: datetime) -> End:
    """The suppressions, the suppressed standings and the destination actions in force."""
    actions = {
        (a.target, a.status, a.reason, a.rule, a.created_at, a.expires_at)
        for a in session.scalars(
            sa.select(Action).where(
                Action.kind == ActionKind.SUPPRESS,
                Action.status.in_((ActionStatus.OPEN, ActionStatus.PENDING)),
            )
        )
    }
    standings = set(
        session.execute(
            sa.select(
                Recipient.address_key,
                Recipient.reason,
                Recipient.standing_since,
                Recipient.suppressed_until,
            ).where(Recipient.standing == Standing.SUPPRESSED)
        ).all()
    )
    return End(actions, standings, _destination_actions(session, now))


def _destination_actions(session: Session, now: datetime) -> set[tuple[Any, ...]]:
    """The throttles pausing a destination at `now` (until when, at what rate, which step, why)
    and the alerts whose time is not up (until when, why). When a throttle or a sender alert
    began is not compared (a full re-evaluation sees one long episode where the others saw a
    gap, as in test_hygiene_store); when a domain incident began is: its first trigger."""
    out = set()
    for a in session.scalars(
        sa.select(Action).where(
            Action.kind.in_((ActionKind.THROTTLE, ActionKind.ALERT)),
            Action.status == ActionStatus.OPEN,
        )
    ):
        ends = a.pause_until if a.kind is ActionKind.THROTTLE else a.expires_at
        if ends is not None and ends <= now:
            continue
        began = a.created_at if a.rule == RULE_INCIDENT else None
        out.add(
            (a.kind, a.scope, a.target, a.reason, a.rule, began, a.expires_at, a.pause_until,
             a.max_rate, a.step)
        )  # fmt: skip
    return out


def _on_every_path(
    session: Session, chunks: list[list[Step]], now: datetime, policy: Policy = POLICY
) -> dict[str, End]:
    ends = {}
    for name, path in PATHS.items():
        path(session, chunks, now, policy)
        ends[name] = _outcome(session, now)
        _forget_everything(session)
    return ends


def _one_by_one(steps: Sequence[Step]) -> list[list[Step]]:
    return [[step] for step in steps]


def _agree(ends: dict[str, End]) -> End:
    assert ends["nightly"] == ends["incremental"]
    assert ends["full"] == ends["incremental"]
    return ends["full"]


def test_an_older_ambiguous_bounce_recorded_after_a_newer_one_suppresses_on_every_path(
    session: Session, frozen_now: datetime
) -> None:
    # Bare 550s of `ambiguous_count` messages, a day apart within the window: the newest one
    # recorded first (and judged alone), the older ones afterwards, as late DSNs.
    times = [frozen_now + i * DAY for i in range(H.ambiguous_count)]
    assert times[-1] - times[0] < H.ambiguous_window
    steps = [("ann@example.com", at, "ambiguous") for at in reversed(times)]

    actions, *_ = _agree(_on_every_path(session, _one_by_one(steps), times[-1] + DAY))

    # The window ending at the newest one holds them all: that is where the suppression begins.
    [(target, status, reason, rule, began, _)] = actions
    assert (target, status, rule, began) == (
        "ann@example.com",
        ActionStatus.OPEN,
        RULE_AMBIGUOUS,
        times[-1],
    )
    assert reason is Reason.REJECTED


def test_ambiguous_bounces_further_apart_than_the_window_suppress_on_no_path(
    session: Session, frozen_now: datetime
) -> None:
    # One fewer than the count a day apart, then one more than the window after the last of
    # them, recorded first: no window holds the count.
    older = [frozen_now + i * DAY for i in range(H.ambiguous_count - 1)]
    newest = older[-1] + H.ambiguous_window + DAY
    steps = [("ann@example.com", at, "ambiguous") for at in (newest, *older)]

    assert _agree(_on_every_path(session, _one_by_one(steps), newest + DAY))[:2] == (set(), set())


def _soft_times(start: datetime) -> list[datetime]:
    """`soft_strikes` strikes on distinct days, spanning exactly `soft_span`."""
    gap = H.soft_span / (H.soft_strikes - 1)
    assert gap >= DAY, "the policy's span must hold a strike a day"
    return [start + i * gap for i in range(H.soft_strikes)]


def test_soft_strikes_recorded_newest_first_suppress_on_every_path(
    session: Session, frozen_now: datetime
) -> None:
    times = _soft_times(frozen_now)
    steps = [("bob@example.com", at, "soft") for at in reversed(times)]

    actions, standings, _ = _agree(_on_every_path(session, _one_by_one(steps), times[-1] + DAY))

    [(target, status, reason, rule, began, _)] = actions
    assert (target, status, reason, rule, began) == (
        "bob@example.com",
        ActionStatus.OPEN,
        Reason.MAILBOX_FULL,
        RULE_SOFT,
        times[-1],
    )
    assert {key for key, *_ in standings} == {"bob@example.com"}


def test_a_late_strike_that_completes_an_earlier_window_re_dates_the_suppression(
    session: Session, frozen_now: datetime
) -> None:
    # All strikes but the second, and one more a day after the span: that suppresses first,
    # at the extra strike. The second strike, recorded last, completes the window ending at the
    # span's end, so the suppression began then, on every path (as --full sees the history).
    times = _soft_times(frozen_now)
    extra = times[-1] + DAY
    assert extra - times[0] <= H.soft_window
    first = [times[0], *times[2:], extra]
    steps = [("bob@example.com", at, "soft") for at in (*first, times[1])]

    actions, standings, _ = _agree(_on_every_path(session, _one_by_one(steps), extra + DAY))

    [(_, _, _, rule, began, _)] = actions
    assert (rule, began) == (RULE_SOFT, times[-1])
    [(_, _, since, _)] = standings
    assert since == times[-1]


def test_a_delivery_recorded_after_a_strike_does_not_reset_it_on_any_path(
    session: Session, frozen_now: datetime
) -> None:
    # Only deliveries recorded before an anchor count (docs/hygiene.md "Stale bounces"): a 250
    # recorded late, dated between the strikes, leaves the suppression the strikes reached.
    times = _soft_times(frozen_now)
    steps = [("bob@example.com", at, "soft") for at in times]
    steps.append(("bob@example.com", times[0] + DAY / 2, "delivered"))

    actions, *_ = _agree(_on_every_path(session, _one_by_one(steps), times[-1] + DAY))

    assert {(target, rule) for target, _, _, rule, _, _ in actions} == {
        ("bob@example.com", RULE_SOFT)
    }


def _generated(seed: int, start: datetime) -> list[Step]:
    """A few hundred events to a dozen addresses over 60 days: 250s, 452s, bare 550s and a few
    decisive 550s, each address leaning one way so that some end suppressed and some not."""
    rng = random.Random(seed)
    addresses = [f"user{i}@{('example.com', 'example.org')[i % 2]}" for i in range(12)]
    lean = {
        address: rng.choice(
            [
                {"delivered": 6, "soft": 1, "ambiguous": 1},
                {"delivered": 2, "soft": 4, "ambiguous": 1},
                {"delivered": 2, "soft": 1, "ambiguous": 3},
                {"delivered": 4, "soft": 3, "ambiguous": 2, "hard": 1},
            ]
        )
        for address in addresses
    }
    steps = []
    for _ in range(300):
        address = rng.choice(addresses)
        kinds = lean[address]
        kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
        at = start + timedelta(minutes=rng.randrange(60 * 24 * 60))
        steps.append((address, at.replace(second=0, microsecond=0), kind))
    return steps


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_history_recorded_shuffled_in_chunks_reaches_the_same_suppressions_on_every_path(
    session: Session, frozen_now: datetime, seed: int
) -> None:
    chunks = shuffled_chunks(_generated(seed, frozen_now), seed)
    now = frozen_now + 61 * DAY

    actions, *_ = _agree(_on_every_path(session, chunks, now))

    # The history means something: some addresses end suppressed, by more than one rule, and
    # some do not.
    targets = {target for target, *_ in actions}
    assert 0 < len(targets) < 12
    assert len({rule for _, _, _, rule, _, _ in actions}) > 1


# ---- the destination rules ------------------------------------------------------------------


def _throttles(end: End) -> set[tuple[Any, ...]]:
    """The throttles in force: (scope, target, paused until, max rate, step, rule)."""
    return {
        (scope, target, until, rate, step, rule)
        for kind, scope, target, _, rule, _, _, until, rate, step in end.destinations
        if kind is ActionKind.THROTTLE
    }


def _alerts(end: End) -> set[tuple[Any, ...]]:
    """The alerts in force: (scope, target, rule, began (incidents only), expires)."""
    return {
        (scope, target, rule, began, expires)
        for kind, scope, target, _, rule, began, expires, _, _, _ in end.destinations
        if kind is ActionKind.ALERT
    }


@pytest.mark.parametrize(
    ("policy", "domains", "scope", "target"),
    [
        (POLICY, ("busy.example",), ActionScope.DOMAIN, "busy.example"),
        (GROUPED, ("gmail.com", "googlemail.com"), ActionScope.PROVIDER, "google"),
    ],
    ids=["domain", "provider-group"],
)
def test_push_backs_recorded_newest_first_double_the_pause_on_every_path(
    session: Session,
    frozen_now: datetime,
    policy: Policy,
    domains: tuple[str, ...],
    scope: ActionScope,
    target: str,
) -> None:
    # Three push-backs within the repeat window, the newest recorded first (and judged alone),
    # the older ones afterwards (a log read out of order): the newest is the third of its window.
    times = [frozen_now + i * T.initial_pause / 2 for i in range(3)]
    assert times[-1] - times[0] <= T.repeat_window
    steps = [(f"u{i}@{domains[i % len(domains)]}", at, "pushback") for i, at in enumerate(times)][
        ::-1
    ]
    now = times[-1] + timedelta(minutes=1)

    end = _agree(_on_every_path(session, _one_by_one(steps), now, policy))

    pause = T.initial_pause * T.pause_multiplier**2
    assert pause < T.max_pause
    rate = T.initial_rate * T.rate_multiplier**2
    assert _throttles(end) == {(scope, target, times[-1] + pause, rate, 2, RULE_PUSHBACK)}


def test_a_push_back_recorded_after_the_deliveries_that_lift_it_throttles_on_no_path(
    session: Session, frozen_now: datetime
) -> None:
    # The deliveries after a push-back lift its throttle (`release_after_deliveries`), whatever
    # the order they were recorded in: --full raises the throttle and lifts it at once.
    pushed = frozen_now
    deliveries = [
        (f"ok{i}@busy.example", pushed + (i + 1) * timedelta(seconds=1), "delivered")
        for i in range(T.release_after_deliveries)
    ]
    now = deliveries[-1][1] + timedelta(seconds=1)
    assert now < pushed + T.initial_pause  # the pause alone would still hold
    chunks = [deliveries, [("late@busy.example", pushed, "pushback")]]

    end = _agree(_on_every_path(session, chunks, now))

    assert _throttles(end) == set()


def test_blocks_recorded_newest_first_throttle_the_destination_on_every_path(
    session: Session, frozen_now: datetime
) -> None:
    # `blocked_count` blocks within `blocked_window`, the newest recorded first: only the newest
    # has them all in its window. The sender alert runs from the newest block too.
    gap = T.blocked_window / T.blocked_count
    times = [frozen_now + i * gap for i in range(T.blocked_count)]
    steps = [(f"u{i}@corp.example", at, "blocked") for i, at in enumerate(times)][::-1]
    now = times[-1] + timedelta(minutes=1)

    end = _agree(_on_every_path(session, _one_by_one(steps), now))

    assert _throttles(end) == {
        (
            ActionScope.DOMAIN,
            "corp.example",
            times[-1] + T.initial_pause,
            T.initial_rate,
            0,
            RULE_BLOCKED_THROTTLE,
        )
    }
    assert _alerts(end) == {
        (ActionScope.SENDER, "corp.example", RULE_BLOCKED, None, times[-1] + H.alert_lifetime)
    }


@pytest.mark.parametrize(
    "kinds",
    [
        ("blocked_4xx",),
        ("blocked", "blocked_4xx"),
        ("content_4xx",),
        ("blocked", "content_4xx"),
        ("blocked", "blocked_4xx", "content_4xx"),
    ],
    ids=["4xx", "mixed", "content-4xx", "content-mixed", "all-mixed"],
)
def test_4xx_refusals_recorded_newest_first_throttle_on_every_path(
    session: Session, frozen_now: datetime, kinds: tuple[str, ...]
) -> None:
    # As the 5xx blocks above: `blocked_count` deferrals of the sender's or of the message's
    # fault (alone, or alternating with 5xx blocks) within `blocked_window`, the newest recorded
    # first.
    gap = T.blocked_window / T.blocked_count
    times = [frozen_now + i * gap for i in range(T.blocked_count)]
    steps = [(f"u{i}@corp.example", at, kinds[i % len(kinds)]) for i, at in enumerate(times)]
    now = times[-1] + timedelta(minutes=1)

    end = _agree(_on_every_path(session, _one_by_one(steps[::-1]), now))

    assert _throttles(end) == {
        (
            ActionScope.DOMAIN,
            "corp.example",
            times[-1] + T.initial_pause,
            T.initial_rate,
            0,
            RULE_BLOCKED_THROTTLE,
        )
    }
    assert _alerts(end) == {
        (ActionScope.SENDER, "corp.example", RULE_BLOCKED, None, times[-1] + H.alert_lifetime)
    }
    assert end.suppressions == set()


def test_a_late_block_leaves_the_sender_alert_running_from_the_newest_block(
    session: Session, frozen_now: datetime
) -> None:
    newest = frozen_now + DAY
    steps = [("new@corp.example", newest, "blocked"), ("old@corp.example", frozen_now, "blocked")]

    end = _agree(_on_every_path(session, _one_by_one(steps), newest + timedelta(minutes=1)))

    assert _alerts(end) == {
        (ActionScope.SENDER, "corp.example", RULE_BLOCKED, None, newest + H.alert_lifetime)
    }


def _burst(start: datetime, name: str, n: int = H.incident_addresses) -> list[Step]:
    """`n` decisive bounces of distinct addresses at broken.example, 5 seconds apart."""
    return [
        (f"{name}{i}@broken.example", start + i * timedelta(seconds=5), "hard") for i in range(n)
    ]


def test_a_burst_of_bounces_recorded_newest_first_is_held_as_an_incident_on_every_path(
    session: Session, frozen_now: datetime
) -> None:
    # Only the newest bounce has `incident_addresses` of them in its window: judged first and
    # alone, it saw none of the others.
    steps = _burst(frozen_now, "u")[::-1]
    newest = steps[0][1]

    end = _agree(_on_every_path(session, _one_by_one(steps), newest + timedelta(minutes=1)))

    assert {(target, status) for target, status, *_ in end.suppressions} == {
        (address, ActionStatus.PENDING) for address, _, _ in steps
    }
    assert end.standings == set()
    assert _alerts(end) == {
        (ActionScope.DOMAIN, "broken.example", RULE_INCIDENT, newest, newest + H.alert_lifetime)
    }


def test_a_late_bounce_within_the_window_of_an_earlier_incident_is_held_on_every_path(
    session: Session, frozen_now: datetime
) -> None:
    # Two incidents at broken.example hours apart, then a bounce recorded late, dated within the
    # incident window after the first one's trigger (but not an incident in its own window):
    # --full holds its suppression with the first incident's, whatever the alert's last trigger.
    first, second = _burst(frozen_now, "a"), _burst(frozen_now + 3 * H.incident_window, "b")
    trigger = first[-1][1]
    late = trigger + H.incident_window - timedelta(seconds=5)
    chunks = [first, second, [("late@broken.example", late, "hard")]]

    end = _agree(_on_every_path(session, chunks, late + DAY))

    held = {target for target, status, *_ in end.suppressions if status is ActionStatus.PENDING}
    assert "late@broken.example" in held
    assert end.standings == set()


def _destination_history(seed: int, start: datetime) -> list[Step]:
    """A few hundred events over six hours at a few destinations: push-backs (some at the
    Google group), blocks (5xx and 4xx ones; a storm at the end), hard bounces (a burst at one
    domain) and deliveries, so that throttles, alerts and a held incident are in force at the
    end."""
    rng = random.Random(seed)
    hours = 6
    steps: list[Step] = []

    def at(lo: float = 0, hi: float = hours) -> datetime:
        seconds = rng.uniform(lo * 3600, hi * 3600)
        return start + timedelta(seconds=round(seconds))

    for i in range(60):
        domain = rng.choice(["busy.example", "gmail.com", "googlemail.com"])
        steps.append((f"p{i}@{domain}", at(hours - rng.choice([5, 2, 0.5])), "pushback"))
    for i in range(40):
        # 5xx blocks and 4xx refusals of the sender or of its content alike.
        kind = rng.choice(["blocked", "blocked_4xx", "content_4xx"])
        steps.append((f"b{i}@corp.example", at(hours - rng.choice([4, 0.4])), kind))
    for i in range(rng.randint(20, 30)):
        steps.append((f"x{i}@broken.example", at(2, 2.1), "hard"))
    for i in range(15):
        steps.append((f"y{i}@broken.example", at(1, 3.5), "hard"))
    domains = ["busy.example", "gmail.com", "corp.example", "broken.example"]
    for i in range(150):
        steps.append((f"d{i}@{rng.choice(domains)}", at(), "delivered"))
    return steps


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_destination_history_recorded_shuffled_in_chunks_reaches_the_same_actions_on_every_path(
    session: Session, frozen_now: datetime, seed: int
) -> None:
    steps = _destination_history(seed, frozen_now)
    now = max(at for _, at, _ in steps) + timedelta(minutes=1)
    chunks = shuffled_chunks(steps, seed)

    end = _agree(_on_every_path(session, chunks, now, GROUPED))

    # The history means something: throttles, alerts and held suppressions are in force.
    assert _throttles(end)
    assert {rule for _, _, rule, _, _ in _alerts(end)} == {RULE_BLOCKED, RULE_INCIDENT}
    assert any(status is ActionStatus.PENDING for _, status, *_ in end.suppressions)


def _suppressions(engine: Engine) -> list[tuple[Any, ...]]:
    with Session(engine.db) as session:
        return [
            (a.created_by, a.rule, a.reason, a.created_at)
            for a in session.scalars(sa.select(Action).where(Action.kind == ActionKind.SUPPRESS))
        ]


def test_a_suppression_a_person_raised_keeps_its_time_and_reason_when_late_strikes_come_before_it(
    db_url: str, clock: FakeClock
) -> None:
    times = _soft_times(clock.now - H.soft_span - 2 * DAY)
    with Engine(db_url, clock=clock) as engine:
        engine.suppress("bob@example.com", "asked to leave", by="ops")
        before = _suppressions(engine)
        for at in reversed(times):
            engine.record("bob@example.com", FULL, message_id=f"<{at:%j}@list.example>", at=at)
        assert _suppressions(engine) == before
        [(by, *_)] = before
        assert by == "ops"
