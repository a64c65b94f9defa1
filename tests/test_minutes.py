"""The per-minute counts (`minute_counts`) sum to what `events` holds, whoever wrote them.

The domain-incident rule trusts these counts to rule bounces out (store/minutes.py): a count
short of the events would miss an incident, one over them would only cost a closer look. So every
writer of events is checked against a count made from `events` itself, on every backend.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import minute_sums
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import FakeClock
from sqlalchemy import MetaData, insert

from deliverability.cli import cli
from deliverability.engine import Engine, ReplyRecord
from deliverability.policy import load_policy
from deliverability.store import minutes
from deliverability.store.models import MinuteCount
from deliverability.store.prune import prune_history
from deliverability.store.session import create_engine, upgrade_schema
from deliverability.verdicts import AUTO_REPLY_VERDICT, COMPLAINT_VERDICT
from deliverability.vocabulary import EventKind

POLICY = load_policy()

#: Replies of every kind of count: (reply, counts as a bounce, counts as an attempt).
_REPLIES = [
    "250 2.0.0 OK",
    "421 4.7.0 Try again later",
    "550 5.1.1 The email account that you tried to reach does not exist",
    "550 5.7.1 Message rejected due to local policy: listed at a DNS blocklist",
    "452 4.2.2 Mailbox full",
    "550 Requested action not taken",
]


def _history(start: datetime) -> list[ReplyRecord]:
    """Replies at three domains, over minutes and across their edges (a reply in the last
    microsecond of a minute), with a complaint and an auto-reply that count as neither."""
    items = []
    for i in range(240):
        domain = ("a.example", "b.example", "c.example")[i % 3]
        at = start + timedelta(seconds=17 * i) - timedelta(microseconds=i % 2)
        items.append(
            ReplyRecord(
                recipient=f"user{i % 50}@{domain}",
                message_id=f"<m{i}@list.example>",
                reply=_REPLIES[i % len(_REPLIES)],
                attempt=1,
                at=at,
            )
        )
    items.append(
        ReplyRecord(
            recipient="user1@a.example",
            message_id="<m1@list.example>",
            at=start + timedelta(minutes=3),
            kind=EventKind.AUTO_REPLY,
            verdict=AUTO_REPLY_VERDICT,
        )
    )
    items.append(
        ReplyRecord(
            recipient="user2@b.example",
            message_id="<m2@list.example>",
            at=start + timedelta(minutes=4),
            kind=EventKind.COMPLAINT,
            verdict=COMPLAINT_VERDICT,
        )
    )
    return items


def test_the_engines_counts_sum_to_the_events_it_wrote_however_often_it_records_them(
    db_url: str, clock: FakeClock
) -> None:
    start = clock() - timedelta(hours=2)
    with Engine(db_url, policy=POLICY, clock=clock, chunk_size=50) as engine:
        first = engine.record_many(_history(start))
        assert first.recorded > 200
        assert not first.rejected
        again = engine.record_many(_history(start))
        assert again.recorded == 0
        assert again.duplicates == first.recorded
        # The deferrals above run out of lifetime: the engine's own expiries are no attempts.
        clock.advance(timedelta(days=6))
        expired = engine.expire_overdue()
        assert expired.recorded > 0
        with engine.db.connect() as conn:
            stored, counted = minute_sums.stored(conn), minute_sums.counted(conn)
    assert stored == counted
    assert len(counted) > 30, "the history spreads over many minutes"
    assert sum(b for b, _ in counted.values()) > 50
    assert sum(n for _, n in counted.values()) > sum(b for b, _ in counted.values())


def test_pruned_events_leave_the_counts_and_pruning_adds_no_rows(
    db_url: str, clock: FakeClock
) -> None:
    old = clock() - timedelta(days=400)
    with Engine(db_url, policy=POLICY, clock=clock, chunk_size=50) as engine:
        clock.set(old + timedelta(hours=3))
        engine.record_many(_history(old))
        clock.set(old + timedelta(days=399))
        engine.record_many(_history(clock() - timedelta(hours=2)))
        with engine.db.connect() as conn:
            rows_before = conn.execute(sa.select(sa.func.count(MinuteCount.id))).scalar_one()
        result = prune_history(
            engine.db, older_than=timedelta(days=200), now=clock(), policy=POLICY, batch_size=25
        )
        assert result.batches > 1
        assert result.deleted_events > 50
        # Suppressed recipients keep theirs: some old minutes keep part of their counts.
        assert result.kept_events > 50
        with engine.db.connect() as conn:
            stored, counted = minute_sums.stored(conn), minute_sums.counted(conn)
            rows_after = conn.execute(sa.select(sa.func.count(MinuteCount.id))).scalar_one()
    assert stored == counted
    # What was taken away is folded into the minutes' rows, not left as rows of its own.
    assert rows_after < rows_before


def test_a_minute_is_the_same_in_sql_as_in_python_at_its_edges(db_url: str) -> None:
    # The backfill and `recount` count minutes in SQL, the engine in Python: they must agree to
    # the microsecond, at the epoch and far ahead.
    times = [
        datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 11, 30, 0, 0, 0, tzinfo=UTC),
        datetime(2028, 2, 29, 12, 30, 0, 1, tzinfo=UTC),
        datetime(8999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ]
    engine = create_engine(db_url)
    try:
        upgrade_schema(engine)
        with engine.begin() as conn:
            _insert_events(conn, [(f"d{i}.example", at) for i, at in enumerate(times)])
            counted = minute_sums.counted(conn)
    finally:
        engine.dispose()
    assert counted == {
        (f"d{i}.example", minutes.minute_of(at)): (1, 1) for i, at in enumerate(times)
    }


@pytest.mark.empty_database
def test_the_migration_counts_the_events_alreadystored(db_url: str) -> None:
    start = datetime(2026, 11, 1, 8, 0, 59, 999999, tzinfo=UTC)
    engine = create_engine(db_url)
    try:
        upgrade_schema(engine, "0009")
        with engine.begin() as conn:
            _insert_events(
                conn,
                [("a.example", start + timedelta(seconds=s)) for s in (0, 1, 30, 61, 3600)]
                + [("b.example", start)],
            )
        upgrade_schema(engine)
        with engine.connect() as conn:
            stored = minute_sums.stored(conn)
            assert stored == minute_sums.counted(conn)
    finally:
        engine.dispose()
    first = minutes.minute_of(start)
    assert stored == {
        ("a.example", first): (1, 1),
        ("a.example", first + 1): (2, 2),
        ("a.example", first + 2): (1, 1),
        ("a.example", first + 60): (1, 1),
        ("b.example", first): (1, 1),
    }


def _insert_events(conn: sa.Connection, events: list[tuple[str, datetime]]) -> None:
    """A bounced reply per (domain, time), for one recipient, straight into the tables as they
    stand at the current revision (not through the engine, nor the models)."""
    meta = MetaData()
    meta.reflect(conn, only=("recipients", "events"))
    recipients, table = meta.tables["recipients"], meta.tables["events"]
    at = events[0][1]
    common: dict[str, Any] = {
        "standing_since": at,
        "first_seen_at": at,
        "last_event_at": at,
        "standing": "bounced",
        "reason": "user_unknown",
    }
    for column in ("events_count", "delivered_count", "deferred_count", "bounced_count"):
        common[column] = 0
    for column in ("blocked_count", "complained_count", "expired_count"):
        common[column] = 0
    address = "x@e.example"
    conn.execute(
        insert(recipients),
        [{**common, "id": 1, "address": address, "address_key": address, "domain": "e.example"}],
    )
    conn.execute(
        insert(table),
        [
            {
                "key": f"k{i}",
                "at": when,
                "recorded_at": when,
                "kind": "reply",
                "recipient_id": 1,
                "domain": domain,
                "outcome": "bounced",
                "reason": "user_unknown",
                "fault": "recipient",
                "rule": "test",
                "decisive": True,
                "throttle": False,
                "source": "test",
            }
            for i, (domain, when) in enumerate(events)
        ],
    )


@pytest.mark.parametrize("sign", [1, -1])
def test_a_tally_counts_bounces_and_attempts_per_domain_and_minute(sign: int) -> None:
    at = datetime(2026, 11, 29, 12, 0, 59, 999999, tzinfo=UTC)
    rows = minutes.tally(
        [
            ("b.example", at, "bounced", "reply"),
            ("b.example", at, "delivered", "reply"),
            ("b.example", at + timedelta(microseconds=1), "deferred", "reply"),
            ("b.example", at, "deferred", "expiry"),  # the sender gave up: no attempt
            ("a.example", at, "complained", "complaint"),  # neither: no row
            ("a.example", at, "bounced", "bounce"),
        ],
        sign,
    )
    m = minutes.minute_of(at)
    assert rows == [
        ("a.example", m, sign, sign),
        ("b.example", m, sign, 2 * sign),
        ("b.example", m + 1, 0, sign),
    ]


def test_db_recount_counts_again_what_an_old_writer_left_uncounted(
    db_url: str, clock: FakeClock
) -> None:
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        engine.record_many(_history(clock() - timedelta(hours=2)))
        with engine.db.begin() as conn:
            # As a process of an earlier version would leave it: events with no counts.
            conn.execute(sa.delete(MinuteCount))
        result = CliRunner().invoke(cli, ["--database-url", db_url, "db", "recount"])
        assert result.exit_code == 0, result.output
        assert "domain-minutes again from the events" in result.output
        with engine.db.connect() as conn:
            stored, counted = minute_sums.stored(conn), minute_sums.counted(conn)
    assert stored == counted
    assert len(stored) > 30


@pytest.mark.empty_database
def test_db_recount_refuses_a_store_not_at_the_newest_schema(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        upgrade_schema(engine, "0009")
    finally:
        engine.dispose()
    result = CliRunner().invoke(cli, ["--database-url", db_url, "db", "recount"])
    assert result.exit_code == 1
    assert "db upgrade" in result.output
