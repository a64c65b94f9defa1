"""One delivery's give-up is one soft strike at most.

The engine gives up a deferred delivery whose retry lifetime ran out (`Engine.expire_overdue`),
and a relay can report its own give-up of the same delivery: Postfix's `status=expired` in the
mail log the nightly job reads, or a DSN "failed" with X.4.7. When two of them are recorded on
two days, the soft-strike rule ("3 strikes on distinct days spanning at least 7 days",
docs/hygiene.md) counted both, so an address with two real failures was suppressed. The one
recorded second is now stored `restated` and is no strike, on every path of the rules
(incrementally, nightly and `--full`).

The histories here put the last real give-up exactly `soft_span` after the first (the
threshold), and one second either side of it; the second report of the first give-up falls on
the day between.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock
from factories_bounces import dsn
from factories_hygiene import PATHS, Night, on_every_path
from sqlalchemy.orm import Session

from deliverability import reports
from deliverability.engine import Engine, ReplyRecord
from deliverability.ingest.convert import log_item, message_items
from deliverability.ingest.records import LogRecord
from deliverability.policy import load_policy
from deliverability.replies import parse_reply
from deliverability.store import hygiene as store_hygiene
from deliverability.store.models import Event
from deliverability.vocabulary import EventKind, Fault, Reason, Standing

POLICY = load_policy()
H = POLICY.hygiene
LIFETIME = POLICY.backoff.lifetime
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
#: When each night's job runs, after what it reads.
NIGHT = timedelta(hours=1)
ADDRESS = "reader@gone.example"
#: The deliveries' deferrals: no answer from the domain's host. The fault is the network's, so a
#: give-up after them is a strike (docs/hygiene.md: a dead domain is still found out).
NO_ANSWER = "451 4.4.1 No answer from host"
FIRST, LAST, THIRD = "c1@list.example", "c2@list.example", "c3@list.example"


def _deferral(message: str, at: datetime) -> ReplyRecord:
    """The first deferral of a delivery (the sender's reply log)."""
    return ReplyRecord(
        recipient=ADDRESS, message_id=message, reply=NO_ANSWER, at=at, source="replies.jsonl"
    )


def _postfix_gave_up(message: str, at: datetime) -> list[ReplyRecord]:
    """Postfix's `status=expired` for the delivery, as the nightly job records it: the reader
    reports it with the last deferral's reply (`PostfixStream._expired`)."""
    line = f"mx postfix/qmgr[99]: 4A1B2C3D4E: from=<list@example.com>, status=expired ({at})"
    record = LogRecord(
        at=at,
        recipient=ADDRESS,
        message_id=message,
        attempt=None,
        reply=parse_reply(NO_ANSWER),
        source="mail.log",
        position="byte 0",
        raw=line,
        queue_id="4A1B2C3D4E",
        delivery_status="expired",
    )
    return [log_item(record, POLICY)]


def _dsn_gave_up(message: str, at: datetime) -> list[ReplyRecord]:
    """The relay's DSN: "failed", X.4.7, as the nightly job reads it from the bounce mailbox."""
    text = dsn(at, "failed", "4.4.7", None, f"<{message}>", recipient=ADDRESS)
    items, rejected = message_items(
        text.encode(), source="bounces", position="0", now=at + NIGHT, policy=POLICY
    )
    assert rejected is None
    assert [(i.verdict.reason, i.kind) for i in items] == [(Reason.EXPIRED, EventKind.BOUNCE)]
    return items


def _engine_gives_up(message: str, at: datetime) -> list[Night]:
    """A delivery first deferred a lifetime before `at`: the engine gives it up at `at`, the
    night after."""
    return [(at - LIFETIME + NIGHT, [_deferral(message, at - LIFETIME)]), (at + NIGHT, [])]


def _relay_gives_up(
    reported: Callable[[str, datetime], list[ReplyRecord]], message: str, at: datetime
) -> list[Night]:
    return [(at + NIGHT, reported(message, at))]


def _engine_then_postfix(first: datetime) -> list[Night]:
    # The engine gives up one night; Postfix's own give-up is in the next night's log.
    return [
        *_engine_gives_up(FIRST, first),
        *_relay_gives_up(_postfix_gave_up, FIRST, first + DAY),
    ]


def _dsn_then_engine(first: datetime) -> list[Night]:
    # The relay's lifetime ran out a day before the engine's: its DSN (a deferral of reason
    # `expired`, X.4.7 being a 4xx status) leaves the delivery deferred, and the engine gives it
    # up the next night.
    return [
        (first + DAY - LIFETIME + NIGHT, [_deferral(FIRST, first + DAY - LIFETIME)]),
        *_relay_gives_up(_dsn_gave_up, FIRST, first),
        (first + DAY + NIGHT, []),
    ]


def _engine_then_dsn(first: datetime) -> list[Night]:
    return [*_engine_gives_up(FIRST, first), *_relay_gives_up(_dsn_gave_up, FIRST, first + DAY)]


def _postfix_then_dsn(first: datetime) -> list[Night]:
    # Postfix logs its give-up and returns a DSN for it, which comes back the next day.
    return [
        (first - LIFETIME + NIGHT, [_deferral(FIRST, first - LIFETIME)]),
        *_relay_gives_up(_postfix_gave_up, FIRST, first),
        *_relay_gives_up(_dsn_gave_up, FIRST, first + DAY),
    ]


TWICE = {
    "engine-then-postfix": _engine_then_postfix,
    "dsn-then-engine": _dsn_then_engine,
    "engine-then-dsn": _engine_then_dsn,
    "postfix-then-dsn": _postfix_then_dsn,
}
#: The last give-up, against the threshold: `soft_span` after the first, and a second either side.
OFFSETS = {"short-by-a-second": -SECOND, "at-the-span": timedelta(0), "a-second-over": SECOND}


def _stored_give_ups(s: Session) -> list[tuple[str | None, bool]]:
    """The message and `restated` flag of every give-up stored, in recording order."""
    return [
        (message, bool(restated))
        for message, restated in s.execute(
            sa.select(Event.message_id, Event.restated)
            .where(Event.reason == Reason.EXPIRED)
            .order_by(Event.id)
        )
    ]


def _on_every_path(
    db_url: str, clock: FakeClock, nights: list[Night]
) -> dict[str, tuple[bool, list[tuple[str | None, bool]]]]:
    """Path of the rules -> (is the address suppressed, the give-ups stored), each path from an
    empty store (`on_every_path`)."""
    out = {}
    for path, engine in on_every_path(db_url, clock, POLICY, nights):
        with Session(engine.db) as s:
            give_ups = _stored_give_ups(s)
        out[path] = (engine.status(ADDRESS).standing is Standing.SUPPRESSED, give_ups)
    return out


@pytest.mark.parametrize("offset", list(OFFSETS.values()), ids=list(OFFSETS))
@pytest.mark.parametrize("twice", list(TWICE.values()), ids=list(TWICE))
def test_a_give_up_reported_twice_counts_one_strike_and_two_real_failures_suppress_nobody(
    db_url: str, clock: FakeClock, twice: Callable[[datetime], list[Night]], offset: timedelta
) -> None:
    first = clock() + LIFETIME
    assert H.soft_strikes == 3, "the histories hold two real give-ups and one reported again"
    nights = [*twice(first), *_engine_gives_up(LAST, first + H.soft_span + offset)]
    # Nobody suppressed on any path, and the second report of the first delivery's give-up is
    # kept, saying it is no strike.
    expected = (False, [(FIRST, False), (FIRST, True), (LAST, False)])
    assert _on_every_path(db_url, clock, nights) == dict.fromkeys(PATHS, expected)


@pytest.mark.parametrize("offset", list(OFFSETS.values()), ids=list(OFFSETS))
def test_three_deliveries_given_up_on_three_days_suppress_from_the_span_on(
    db_url: str, clock: FakeClock, offset: timedelta
) -> None:
    # The same days with a third delivery given up in place of the second report: three real
    # strikes, which suppress once they span `soft_span`.
    first = clock() + LIFETIME
    nights = [
        *_engine_gives_up(FIRST, first),
        *_engine_gives_up(THIRD, first + DAY),
        *_engine_gives_up(LAST, first + H.soft_span + offset),
    ]
    expected = (offset >= timedelta(0), [(FIRST, False), (THIRD, False), (LAST, False)])
    assert _on_every_path(db_url, clock, nights) == dict.fromkeys(PATHS, expected)


def test_the_history_shows_the_second_report_of_a_give_up_as_restated(
    db_url: str, clock: FakeClock
) -> None:
    first = clock() + LIFETIME
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        for now, records in sorted(_engine_then_postfix(first), key=lambda night: night[0]):
            clock.set(now)
            engine.record_many(records)
            engine.expire_overdue(now)
        history = engine.status(ADDRESS).history
        with Session(engine.db) as s:
            faults = set(s.scalars(sa.select(Event.fault).where(Event.reason == Reason.EXPIRED)))
    give_ups = [(e.kind, e.source, e.restated) for e in history if e.reason is Reason.EXPIRED]
    # Newest first: Postfix's line, then the engine's own expiry, both keeping the fault of the
    # deferral before them.
    assert give_ups == [(EventKind.EXPIRY, "mail.log", True), (EventKind.EXPIRY, "engine", False)]
    shown = [e.as_dict() for e in history if e.reason is Reason.EXPIRED]
    assert [d["restated"] for d in shown] == [True, False]
    assert faults == {Fault.NETWORK}


def test_a_second_give_up_in_the_same_chunk_is_restated_and_other_deliveries_are_not(
    db_url: str, clock: FakeClock
) -> None:
    # A reply log holding a mailer's own give-up and its relay's, in one record_many chunk,
    # beside another delivery's give-up and one of another address.
    start = clock()
    give_up = "4.4.7 delivery time expired"
    clock.set(start + 2 * DAY)
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        recorded = engine.record_many(
            [
                {"recipient": ADDRESS, "message_id": FIRST, "at": start, "reply": NO_ANSWER},
                {"recipient": ADDRESS, "message_id": FIRST, "at": start + DAY, "reply": give_up},
                {"recipient": ADDRESS, "message_id": LAST, "at": start + DAY, "reply": give_up},
                {"recipient": "other@gone.example", "message_id": FIRST, "at": start + DAY,
                 "reply": give_up},
                {"recipient": ADDRESS, "message_id": FIRST, "at": start + DAY + SECOND,
                 "reply": "550 5.4.7 QUEUE.Expired; message expired"},
            ]
        )  # fmt: skip
        assert recorded.rejected == []
        engine.record(ADDRESS, give_up, message_id=FIRST, at=start + 2 * DAY)
        with Session(engine.db) as s:
            give_ups = _stored_give_ups(s)
    assert give_ups == [
        (FIRST, False),
        (LAST, False),
        (FIRST, False),  # another address
        (FIRST, True),
        (FIRST, True),
    ]


#: Each order's counters once its nights ran: the first deferral and the one give-up, counted
#: as its first report was (an expiry in `expired_count`, a relay's DSN of X.4.7 as the deferral
#: its outcome says); the second report counts in no counter, only in `events_count`.
COUNTED_ONCE = {
    "engine-then-postfix": {"events_count": 3, "deferred_count": 1, "expired_count": 1},
    "dsn-then-engine": {"events_count": 3, "deferred_count": 2, "expired_count": 0},
    "engine-then-dsn": {"events_count": 3, "deferred_count": 1, "expired_count": 1},
    "postfix-then-dsn": {"events_count": 3, "deferred_count": 1, "expired_count": 1},
}


@pytest.mark.parametrize("order", sorted(TWICE))
def test_a_give_up_reported_twice_is_counted_once_by_the_counters_and_the_reports(
    db_url: str, clock: FakeClock, order: str
) -> None:
    start = clock()
    first = start + LIFETIME
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        for now, records in sorted(TWICE[order](first), key=lambda night: night[0]):
            clock.set(now)
            assert engine.record_many(records).rejected == []
            engine.expire_overdue(now)
        status = engine.status(ADDRESS)
        with Session(engine.db) as s:
            assert [restated for _, restated in _stored_give_ups(s)] == [False, True]
            period = {"since": start - DAY, "until": clock() + DAY}
            (row,) = reports.domains(s, **period, domain="gone.example")
            by_day = reports.outcomes_by_day(s, **period, domain="gone.example")
            listed = reports.undeliverable(s, policy=H)
    counted = COUNTED_ONCE[order]
    assert {name: status.counters[name] for name in counted} == counted
    assert sum(status.counters.values()) - status.counters["events_count"] == 2
    # The domain's report counts the one give-up once, as its first report was.
    deferred, expired = counted["deferred_count"], counted["expired_count"]
    assert (row["deferred"], row["expired"], row["attempts"]) == (deferred, expired, deferred)
    assert sum(day["expired"] for day in by_day) == expired
    assert sum(day["deferred"] for day in by_day) == deferred
    # No answer from the host is the address's trouble: the give-up leaves it bounced, and it
    # failed twice (a deferral, a give-up), not three times.
    assert [(r["address"], r["failures"]) for r in listed] == [(ADDRESS, 2)]


def _waiting_for_a_lock(db: sa.Engine) -> bool:
    """Does a connection to this test's database wait for a lock held by another now?"""
    with db.connect() as conn:
        if conn.dialect.name == "postgresql":
            sql = (
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        else:
            # A locking read can also wait inside the optimizer (PROCESSLIST state
            # "Statistics": it reads the one row a unique key names while planning) before
            # InnoDB lists its transaction at all: seen with connections made without TLS,
            # whose quicker start let the second writer reach it there.
            sql = (
                "SELECT count(*) FROM information_schema.INNODB_TRX t"
                " JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id"
                " WHERE t.trx_state = 'LOCK WAIT' AND p.DB = DATABASE()"
                " UNION ALL SELECT count(*) FROM information_schema.PROCESSLIST"
                " WHERE DB = DATABASE() AND ID <> CONNECTION_ID() AND COMMAND = 'Query'"
                " AND INFO LIKE '%%FOR UPDATE%%'"
            )
        return any(conn.exec_driver_sql(sql).scalars())


@pytest.mark.parametrize("known", [True, False], ids=["known-recipient", "new-recipient"])
def test_two_writers_recording_the_two_reports_of_one_give_up_at_once_count_it_once(
    db_url: str, backend: str, clock: FakeClock, known: bool
) -> None:
    # Postfix's `status=expired` line and the relay's DSN for the same give-up, recorded by two
    # writers (the nightly job's log and bounce readers on two hosts) at the same moment: the
    # first has judged its give-up and written it, not yet committed, when the second starts.
    # The second must wait for it and then find it (restated), not judge its own give-up before
    # the first commits and count it again. Each chunk locks its recipients' rows first, in one
    # order for every writer (`Engine._write_chunk`, step 0), and both reports are about one
    # recipient; a recipient not stored yet is inserted by both, and the second's insert waits
    # for the first's, fails on the unique address key once it commits, and runs again.
    if backend == "sqlite":
        pytest.skip("SQLite lets one transaction write at a time (BEGIN IMMEDIATE)")
    start = clock()
    gave_up = start + LIFETIME
    judged, go, done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def held(session: Session, events: Any, policy: Any, now: datetime) -> Any:
        # Inside the first writer's transaction, after its events are written.
        judged.set()
        assert go.wait(timeout=30), "the test never let the first writer commit"
        return store_hygiene.on_events(session, events, policy, now)

    def run(work: Callable[[], object], finished: threading.Event | None = None) -> None:
        try:
            work()
        except BaseException as err:
            errors.append(err)
        finally:
            if finished is not None:
                finished.set()

    with (
        Engine(db_url, policy=POLICY, clock=clock, hygiene=held) as first,
        Engine(db_url, policy=POLICY, clock=clock) as second,
    ):
        if known:
            assert second.record_many([_deferral(FIRST, start)]).recorded == 1
        clock.set(gave_up + NIGHT)
        postfix, relay = _postfix_gave_up(FIRST, gave_up), _dsn_gave_up(FIRST, gave_up)
        writer = threading.Thread(target=run, args=(lambda: first.record_many(postfix),))
        writer.start()
        assert judged.wait(timeout=30), errors
        other = threading.Thread(target=run, args=(lambda: second.record_many(relay), done))
        other.start()
        # Until the second writer waits for the first's locks (or has finished: it did not).
        for _ in range(3000):
            if done.is_set() or _waiting_for_a_lock(second.db):
                break
            done.wait(0.01)
        go.set()
        writer.join(timeout=30)
        other.join(timeout=30)
        assert not writer.is_alive()
        assert not other.is_alive()
        assert errors == []
        with Session(first.db) as s:
            give_ups = _stored_give_ups(s)
        counters = first.status(ADDRESS).counters
    assert give_ups == [(FIRST, False), (FIRST, True)]
    assert (counters["expired_count"], counters["deferred_count"]) == (1, int(known))
