"""The per-minute counts (`minute_counts`) under every writer of events, at the edges of time,
beside concurrent writers and pruners, and the incident rule that reads them.

The invariant (store/minutes.py): for every domain and minute, the rows of `minute_counts` sum
to what `minutes.recount_sql` counts from `events`. A sum short of the events can hide a domain
incident (its addresses suppressed, where they should be held pending), so each way of writing
or deleting events is checked against the count made from `events`, on every backend; and the
incident rule's results are compared with those of the rule reading `events` alone.
"""

from __future__ import annotations

import dataclasses
import os
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import minute_sums
import pytest
import sqlalchemy as sa
from conftest import FakeClock
from sqlalchemy import event as sa_event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from deliverability.engine import Engine, ReplyRecord, _event_key, _reply_key_text
from deliverability.hygiene import BOUNCE_RULES, RULE_INCIDENT
from deliverability.nightly import rolled_back, run_nightly
from deliverability.policy import Policy, load_policy
from deliverability.store import hygiene as hygiene_store
from deliverability.store import minutes
from deliverability.store.models import Action, Base, Event, MinuteCount, Recipient, UTCDateTime
from deliverability.store.prune import prune_history
from deliverability.store.session import create_engine, downgrade_schema, upgrade_schema
from deliverability.verdicts import AUTO_REPLY_VERDICT
from deliverability.vocabulary import EventKind

POLICY = load_policy()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
H = POLICY.hygiene

HARD = "550 5.1.1 The email account that you tried to reach does not exist"
AMBIGUOUS = "550 Requested action not taken"
DELIVERED = "250 2.0.0 OK"
DEFERRED = "452 4.2.2 Mailbox full"
BLOCKED = "550 5.7.1 Message rejected due to local policy: listed at a DNS blocklist"
PUSHBACK = "421 4.7.0 Try again later"


def _agree(db: sa.Engine) -> dict[tuple[str, int], tuple[int, int]]:
    """The counts, once checked to sum to what `events` holds."""
    with db.connect() as conn:
        stored, counted = minute_sums.stored(conn), minute_sums.counted(conn)
    assert stored == counted
    return counted


def _reply(recipient: str, reply: str, at: datetime | str, n: int, **kw: Any) -> ReplyRecord:
    return ReplyRecord(
        recipient=recipient, message_id=f"<m{n}@list.example>", reply=reply, attempt=1, at=at, **kw
    )


def _servers_only(backend: str) -> None:
    if backend == "sqlite":
        pytest.skip("SQLite lets one transaction write at a time: no two writers overlap there")


# ---- every writer of events ----------------------------------------------------------------------


def test_times_given_in_other_zones_are_counted_in_their_utc_minute(
    db_url: str, clock: FakeClock
) -> None:
    # One bounce a time, each at or a microsecond short of a UTC minute's edge, given in a zone
    # that is not UTC: as an aware datetime, as ISO text with an offset, and in a zone with
    # daylight saving time on both sides of its changes (the hour that happens twice included).
    new_york = ZoneInfo("America/New_York")
    edge = datetime(2026, 3, 8, 6, 59, 59, 999999, tzinfo=UTC)  # 01:59:59.999999 EST
    given: list[datetime | str] = [
        edge.astimezone(new_york),
        (edge + timedelta(microseconds=1)).astimezone(new_york),  # 03:00 EDT, the hour skipped
        datetime(2026, 11, 1, 1, 30, tzinfo=new_york),  # the first 01:30 (EDT)
        datetime(2026, 11, 1, 1, 30, tzinfo=new_york, fold=1),  # the second 01:30 (EST)
        datetime(2026, 10, 31, 23, 59, 59, 999999, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 10, 31, 23, 0, 30, tzinfo=timezone(-timedelta(hours=3, minutes=30))),
        "2026-10-30T23:59:59.999999-00:30",
        "2026-10-30T20:00:00+13:45",
        "2026-10-29T12:00:00.000001Z",
    ]
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        for n, at in enumerate(given):
            engine.record(f"u{n}@zones.example", HARD, message_id=f"<z{n}@list.example>", at=at)
        counted = _agree(engine.db)
    expected: Counter[int] = Counter()
    for at in given:
        when = datetime.fromisoformat(at) if isinstance(at, str) else at
        expected[minutes.minute_of(when.astimezone(UTC))] += 1
    assert {m: b for (_, m), (b, _) in counted.items()} == expected
    # The two 01:30s in New York are an hour apart in UTC: two minutes, not one.
    assert len(expected) == len(given)


def test_times_to_the_microsecond_from_1970_on_fall_in_the_same_minute_in_sql_as_in_python(
    db_url: str, clock: FakeClock
) -> None:
    # The engine counts minutes in Python (`minute_of`), the backfill and `recount_sql` in SQL
    # (SQLite's strftime, PostgreSQL's extract(epoch), MariaDB's TIMESTAMPDIFF): at random
    # times and at a minute's edges, a microsecond either side, from the earliest time taken.
    rng = random.Random(3)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    span = int((clock() - epoch).total_seconds())
    times = [epoch, epoch + timedelta(seconds=59, microseconds=999_999)]
    for _ in range(300):
        at = epoch + timedelta(seconds=rng.randrange(span), microseconds=rng.randrange(10**6))
        edge = at.replace(second=0, microsecond=0)
        times += [at, edge, edge - _US, edge + _US]
    times = [t for t in times if t >= epoch]
    with Engine(db_url, policy=POLICY, clock=clock, chunk_size=500) as engine:
        result = engine.record_many(
            _reply(f"u{n}@edge{n % 5}.example", HARD, at, n) for n, at in enumerate(times)
        )
        assert result.recorded == len(times)
        counted = _agree(engine.db)
    expected: Counter[tuple[str, int]] = Counter(
        (f"edge{n % 5}.example", minutes.minute_of(at)) for n, at in enumerate(times)
    )
    assert counted == {key: (b, b) for key, b in expected.items()}


def test_a_minute_of_an_aware_time_is_its_utc_minute_in_any_zone() -> None:
    zones = [ZoneInfo("Europe/Berlin"), ZoneInfo("Australia/Lord_Howe"), UTC]
    zones += [timezone(timedelta(hours=h, minutes=m)) for h, m in ((5, 45), (-9, -30), (14, 0))]
    rng = random.Random(11)
    for _ in range(2000):
        utc = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(
            seconds=rng.randrange(0, 60 * 60 * 24 * 365 * 80),
            microseconds=rng.choice((0, 1, 999_999, rng.randrange(1_000_000))),
        )
        naive = utc.replace(tzinfo=None)
        expected = int((naive - datetime(1970, 1, 1)).total_seconds() // 60)
        for zone in zones:
            assert minutes.minute_of(utc.astimezone(zone)) == expected


def test_duplicates_inside_and_across_chunks_and_under_legacy_keys_are_counted_once(
    db_url: str, clock: FakeClock
) -> None:
    start = clock() - timedelta(hours=1)
    items = [
        _reply(f"u{n % 7}@dup.example", (HARD, DELIVERED, DEFERRED)[n % 3], start, n)
        for n in range(30)
    ]
    # Each item twice in a row (one chunk), and a third time two chunks later.
    doubled = [it for item in items for it in (item, item)] + items
    with Engine(db_url, policy=POLICY, clock=clock, chunk_size=7) as engine:
        first = engine.record_many(doubled)
        assert first.recorded == len(items)
        # The same replies with their message ids bare and padded: the same events.
        again = engine.record_many(
            [dataclasses.replace(it, message_id=f" {it.message_id} ".strip(" <>")) for it in items]
        )
        assert again.recorded == 0
        # Events stored under the key an earlier version made of a bracketed id (`_legacy_keys`)
        # are found under it: recorded again, they are duplicates, counted nothing.
        with engine.db.begin() as conn:
            for it in items[:10]:
                reply = _reply_key_text(engine._parse(str(it.reply)))
                given = str(it.message_id)
                key = _event_key(given.strip("<>"), it.recipient, 1, start, reply)
                legacy = _event_key(given, it.recipient, 1, start, reply)
                moved = conn.execute(sa.update(Event).where(Event.key == key).values(key=legacy))
                assert moved.rowcount == 1
        legacy_again = engine.record_many(items[:10])
        assert legacy_again.duplicates == 10
        counted = _agree(engine.db)
    assert sum(n for _, n in counted.values()) == len(items)


def test_history_only_auto_replies_and_rejected_items_count_as_the_eventsstored(
    db_url: str, clock: FakeClock
) -> None:
    start = clock() - timedelta(hours=2)
    items: list[Any] = []
    for n in range(40):
        at = start + timedelta(seconds=13 * n)
        items.append(
            dataclasses.replace(_reply(f"u{n}@mixed.example", DELIVERED, at, n), attempt=2)
        )
        # The first attempt's deferral, told after the second attempt's delivery: history only.
        items.append(_reply(f"u{n}@mixed.example", DEFERRED, at - timedelta(minutes=5), n))
        items.append({"recipient": "not an address", "reply": HARD, "at": at.isoformat()})
        items.append(
            ReplyRecord(
                recipient=f"u{n}@mixed.example",
                message_id=f"<m{n}@list.example>",
                at=at,
                kind=EventKind.AUTO_REPLY,
                verdict=AUTO_REPLY_VERDICT,
            )
        )
        items.append({"recipient": f"u{n}@mixed.example", "reply": "999 nonsense"})
    with Engine(db_url, policy=POLICY, clock=clock, chunk_size=9) as engine:
        result = engine.record_many(items)
        assert len(result.rejected) == 80
        assert result.recorded == 120
        assert result.history_only >= 80
        counted = _agree(engine.db)
    assert sum(n for _, n in counted.values()) == 80


def test_late_events_recorded_newest_first_count_in_their_own_minutes(
    db_url: str, clock: FakeClock
) -> None:
    start = clock().replace(second=0, microsecond=0) - timedelta(hours=3)
    items = [
        _reply(
            f"u{n % 40}@late.example",
            (HARD, AMBIGUOUS, DELIVERED, BLOCKED, PUSHBACK)[n % 5],
            start + timedelta(minutes=n // 3) - timedelta(microseconds=n % 2),
            n,
        )
        for n in range(300)
    ]
    with Engine(db_url, policy=POLICY, clock=clock, chunk_size=23) as engine:
        engine.record_many(reversed(items))
        counted = _agree(engine.db)
    assert len(counted) > 90


def test_a_chunk_run_again_after_a_lock_conflict_counts_its_events_once(
    db_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The transaction fails after its counts were appended, as a deadlock or lock wait would:
    # run_in_transaction rolls it back and runs the chunk again.
    appended = minutes.append
    failures = [0]

    def append_then_conflict(conn: sa.Connection, rows: Any) -> None:
        appended(conn, rows)
        if failures[0] < 2:
            failures[0] += 1
            raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

    monkeypatch.setattr(minutes, "append", append_then_conflict)
    start = clock() - timedelta(hours=1)
    with Engine(db_url, policy=POLICY, clock=clock, chunk_size=10) as engine:
        engine.record("x@retry.example", HARD, message_id="<r@list.example>", at=start)
        result = engine.record_many(
            [_reply(f"u{n}@retry.example", HARD, start, n) for n in range(25)]
        )
        assert result.recorded == 25
        counted = _agree(engine.db)
    assert failures[0] == 2
    assert counted == {("retry.example", minutes.minute_of(start)): (26, 26)}


def test_expiries_manual_suppressions_and_releases_leave_the_counts_summing_to_the_events(
    db_url: str, clock: FakeClock
) -> None:
    start = clock() - timedelta(hours=1)
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        engine.record_many([_reply(f"u{n}@slow.example", DEFERRED, start, n) for n in range(12)])
        engine.suppress("u1@slow.example", "asked", by="tester")
        engine.suppress("new@slow.example", "asked", by="tester")
        engine.unsuppress("u1@slow.example", by="tester")
        clock.advance(timedelta(days=8))
        assert engine.expire_overdue().recorded == 12
        engine.lift_lapsed_suppressions()
        counted = _agree(engine.db)
    assert counted == {("slow.example", minutes.minute_of(start)): (0, 12)}


def test_a_dry_run_prune_leaves_the_counts_as_they_were(db_url: str, clock: FakeClock) -> None:
    old = clock() - timedelta(days=400)
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        engine.record_many([_reply(f"u{n % 3}@dry.example", DELIVERED, old, n) for n in range(9)])
        engine.record_many(
            [_reply(f"u{n}@dry.example", DELIVERED, clock(), 100 + n) for n in range(3)]
        )
        before = _agree(engine.db)
        result = prune_history(
            engine.db, older_than=timedelta(days=200), now=clock(), policy=POLICY, dry_run=True
        )
        assert result.deleted_events > 0
        assert _agree(engine.db) == before


def test_the_nightly_job_over_every_shipped_example_counts_what_it_recorded(
    db_url: str,
) -> None:
    # Every input format the examples hold (mail logs, DSNs, feedback reports, auto-replies),
    # read in a zone with daylight saving time, then again (nothing new), then expired.
    now = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    with Engine(db_url, policy=POLICY, clock=lambda: now) as engine:
        first = run_nightly(engine, [EXAMPLES], now=now, log_tz=ZoneInfo("America/New_York"))
        assert first.recorded > 0
        assert run_nightly(engine, [EXAMPLES], now=now).recorded == 0
        run_nightly(engine, [], now=now + timedelta(days=30))
        counted = _agree(engine.db)
    assert sum(n for _, n in counted.values()) > 0


def test_a_rolled_back_nightly_dry_run_leaves_the_counts_as_they_were(
    db_url: str, backend: str
) -> None:
    _servers_only(backend)
    now = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    with Engine(db_url, policy=POLICY, clock=lambda: now) as engine:
        engine.record_many(
            [_reply(f"u{n}@dry.example", HARD, now - timedelta(hours=1), n) for n in range(5)]
        )
        before = _agree(engine.db)
        with rolled_back(engine):
            assert run_nightly(engine, [EXAMPLES], now=now).recorded > 0
            assert len(_agree(engine.db)) > len(before)
        assert _agree(engine.db) == before


# ---- writers at once, and the migration ----------------------------------------------------------


def test_writers_recording_one_domain_and_minute_at_once_lose_no_count(
    db_url: str, clock: FakeClock
) -> None:
    # Four senders at once, every event in one of three minutes at one domain, a fifth of them
    # recorded by every sender (a log read by each): unique-key conflicts run chunks again.
    start = clock().replace(second=0, microsecond=0) - timedelta(minutes=30)
    replies = (HARD, AMBIGUOUS, DELIVERED, DEFERRED, BLOCKED)

    def items(writer: int) -> list[ReplyRecord]:
        numbers = [writer * 1000 + n for n in range(160)] + [9000 + n for n in range(40)]
        return [
            _reply(
                f"u{g % 97}@busy.example",
                replies[g % len(replies)],
                start + timedelta(seconds=g % 180) - timedelta(microseconds=g % 2),
                g,
            )
            for g in numbers
        ]

    results: list[Any] = []
    errors: list[BaseException] = []
    go = threading.Barrier(4)

    def write(writer: int) -> None:
        try:
            with Engine(db_url, policy=POLICY, clock=clock, chunk_size=20) as sender:
                go.wait()
                results.append(sender.record_many(items(writer)))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    assert sum(r.recorded for r in results) == 4 * 160 + 40
    db = create_engine(db_url)
    try:
        counted = _agree(db)
    finally:
        db.dispose()
    assert sum(n for _, n in counted.values()) == 4 * 160 + 40
    assert {m for _, m in counted} == {minutes.minute_of(start) + k for k in range(3)}


@pytest.mark.empty_database
def test_the_migration_counts_again_what_the_engine_counted_when_walked_down_and_up(
    db_url: str, clock: FakeClock
) -> None:
    db = create_engine(db_url)
    try:
        upgrade_schema(db)
        start = clock().replace(second=0, microsecond=0) - timedelta(hours=2)
        with Engine(db_url, policy=POLICY, clock=clock, chunk_size=17) as engine:
            engine.record_many(
                _reply(
                    f"u{n % 31}@walk{n % 3}.example",
                    (HARD, AMBIGUOUS, DELIVERED, DEFERRED, BLOCKED, PUSHBACK)[n % 6],
                    start + timedelta(seconds=7 * n) - timedelta(microseconds=n % 2),
                    n,
                )
                for n in range(400)
            )
            clock.advance(timedelta(days=8))
            engine.expire_overdue()
            prune_history(engine.db, older_than=timedelta(days=7), now=clock(), batch_size=50)
        before = _agree(db)
        with db.connect() as conn:
            rows_before = conn.execute(sa.select(sa.func.count(MinuteCount.id))).scalar_one()
        downgrade_schema(db, "0009")
        assert "minute_counts" not in sa.inspect(db).get_table_names()
        upgrade_schema(db)
        assert _agree(db) == before
        with db.connect() as conn:
            rows_after = conn.execute(sa.select(sa.func.count(MinuteCount.id))).scalar_one()
    finally:
        db.dispose()
    # One row a minute from the backfill, where the engine appended one a chunk.
    assert rows_after == len(before) <= rows_before
    assert len(before) > 20


# ---- the incident rule: minute counts against counting the events --------------------------------


def _minute_counts_from_events(
    self: Any, points: list[tuple[int, str, datetime]]
) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """`_Evaluator._minute_counts` as it was before `minute_counts`: counted from `events`, one
    aggregate per run of points (the commit before it, `_incident_minutes`)."""
    window = self.policy.hygiene.incident_window
    spans: list[tuple[datetime, datetime, set[str]]] = []
    for _, domain, at in sorted(points, key=lambda p: p[2]):
        lo, hi = at - 2 * window, at + window
        if spans and lo <= spans[-1][1] + timedelta(minutes=2):
            spans[-1] = (spans[-1][0], max(hi, spans[-1][1]), spans[-1][2] | {domain})
        else:
            spans.append((lo, hi, {domain}))
    w = hygiene_store._EVENTS.c
    dialect = self.s.get_bind().dialect.name
    minute: Any
    if dialect == "sqlite":
        minute = sa.func.substr(w.at, 1, 16)
    elif dialect == "postgresql":
        minute = sa.func.to_char(sa.func.timezone("UTC", w.at), "YYYY-MM-DD HH24:MI")
    else:
        minute = sa.func.date_format(w.at, "%Y-%m-%d %H:%i")
    statement = (
        sa.select(
            w.domain,
            minute.label("minute"),
            sa.func.sum(sa.case((w.outcome == "bounced", 1), else_=0)),
            sa.func.sum(sa.case((minutes.is_attempt(w), 1), else_=0)),
        )
        .where(
            w.domain.in_(sa.bindparam("domains", expanding=True)),
            w.at >= sa.bindparam("lo", type_=UTCDateTime()),
            w.at <= sa.bindparam("hi", type_=UTCDateTime()),
        )
        .group_by(w.domain, minute)
        .order_by(w.domain, minute)
    )
    counts: dict[str, tuple[list[int], list[int], list[int]]] = {}
    for lo, hi, domains in spans:
        params = {"domains": sorted(domains), "lo": lo, "hi": hi}
        for domain, text, bounced, attempts in self.conn.execute(statement, params):
            found, b, n = counts.setdefault(domain, ([], [0], [0]))
            found.append(minutes.minute_of(datetime.fromisoformat(text).replace(tzinfo=UTC)))
            b.append(b[-1] + int(bounced or 0))
            n.append(n[-1] + int(attempts or 0))
    return counts


def _every_bounce(self: Any, suppressions: dict[int, Any]) -> list[tuple[int, str, datetime]]:
    """`_Evaluator._incident_candidates` with nothing ruled out: every anchor, and every bounce
    within the incident window of a point, all counted exactly."""
    window = self.policy.hygiene.incident_window
    anchors = [
        (anchor_id, domain, hygiene_store._loaded(self.s, at))
        for anchor_id, domain, at in self._exec(
            self._cached("bounce_anchors", self._bounce_anchors)
        )
    ]
    if not anchors:
        return []
    out = set(anchors)
    if self.late_possible:
        points = anchors + [
            (sup.anchor_id, sup.domain, sup.at)
            for sup in suppressions.values()
            if sup.rule in BOUNCE_RULES
        ]
        statement = self._cached("bounces_in_span", self._bounces_in_span)
        for domain, lo, hi in hygiene_store._spans_around(points, window):
            params = {"span_domain": domain, "span_lo": lo, "span_hi": hi}
            for late_id, at in self.conn.execute(statement, params):
                out.add((late_id, domain, hygiene_store._loaded(self.s, at)))
    return sorted(out)


#: How the incident rule gets its candidates: from `minute_counts` (the code under test), from
#: minutes counted from `events` (before it), or with nothing ruled out.
MODES: dict[str, tuple[str, Callable[..., Any]] | None] = {
    "minute_counts": None,
    "events": ("_minute_counts", _minute_counts_from_events),
    "every bounce": ("_incident_candidates", _every_bounce),
}


def _without_ids(value: Any) -> Any:
    """Evidence without event and action ids (a server's ids go on after `_wipe`)."""
    if isinstance(value, dict):
        return sorted(
            (k, _without_ids(v)) for k, v in value.items() if not k.endswith(("id", "ids"))
        )
    if isinstance(value, list):
        return [_without_ids(v) for v in value]
    return value


def _snapshot(db: sa.Engine) -> tuple[list[Any], list[Any]]:
    """Every action and standing, without ids and times of recording."""
    with Session(db) as s:
        actions = sorted(
            (
                str(a.kind),
                str(a.scope),
                a.target,
                str(a.status),
                a.rule,
                str(a.reason),
                a.raised_count,
                a.expires_at,
                a.detail,
                _without_ids(a.evidence),
            )
            for a in s.scalars(sa.select(Action))
        )
        standings = sorted(
            (r.address_key, str(r.standing), str(r.reason), r.suppressed_until)
            for r in s.scalars(sa.select(Recipient))
        )
    return actions, standings


def _unraised(seen: Any) -> Any:
    """Snapshots without how often each action was raised (`raised_count`)."""
    return [([a[:6] + a[7:] for a in actions], standings) for actions, standings in seen]


def _differences(seen: dict[str, Any]) -> dict[str, Any]:
    """What each mode's snapshots hold that the code under test's do not, and the reverse."""
    ours = seen["minute_counts"]
    out: dict[str, Any] = {}
    for mode in ("events", "every bounce"):
        for i, (theirs, mine) in enumerate(zip(seen[mode], ours, strict=True)):
            for part in (0, 1):
                extra = [x for x in theirs[part] if x not in mine[part]]
                missing = [x for x in mine[part] if x not in theirs[part]]
                if extra or missing:
                    out[f"{mode} {i} {part}"] = (extra, missing)
    return out


def _wipe(db: sa.Engine) -> None:
    with db.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def _generated_history(rng: random.Random, start: datetime, policy: Policy) -> list[ReplyRecord]:
    """Bursts of bounces at three domains around the incident thresholds: as many addresses as
    the incident needs, one fewer or more, some bouncing twice; attempts around the fraction;
    times on minute edges, a microsecond either side, or spread to the window's width."""
    h = policy.hygiene
    k, window = h.incident_addresses, h.incident_window
    items: list[ReplyRecord] = []

    def add(address: str, reply: str, at: datetime) -> None:
        n = len(items)
        items.append(_reply(address, reply, at, n))

    for d in range(3):
        domain = f"d{d}.example"
        for burst in range(rng.randint(1, 3)):
            center = (start + timedelta(minutes=rng.randrange(0, 150))).replace(
                second=0, microsecond=0
            )
            bounces = rng.choice((k - 1, k, k, k + 1, 2 * k))
            span = rng.choice(
                (timedelta(0), timedelta(seconds=59), window / 2, window, window * 1.5)
            )
            step = span / max(bounces - 1, 1)
            for i in range(bounces):
                at = center + i * step + rng.choice((timedelta(0), -_US, _US))
                local = f"b{burst}-{rng.randrange(bounces + 2)}"
                add(f"{local}@{domain}", rng.choice((HARD, HARD, AMBIGUOUS)), at)
            others = rng.choice((0, bounces - 1, bounces, bounces + 1, int(bounces / 0.5)))
            for j in range(others):
                at = center + rng.uniform(-1, 1) * window
                if rng.random() < 0.5:
                    at = at.replace(second=0, microsecond=0) - rng.choice((timedelta(0), _US))
                reply = rng.choice((DELIVERED, DELIVERED, DEFERRED, BLOCKED, PUSHBACK))
                add(f"ok{burst}-{j}@{domain}", reply, at)
    return items


_US = timedelta(microseconds=1)

#: (incident addresses, window, histories per backend): small thresholds make many cheap
#: bursts; windows of whole minutes and not; the shipped policy's own.
#: DELIVERABILITY_MINUTES_HISTORIES multiplies them, for a longer run.
_MORE = int(os.environ.get("DELIVERABILITY_MINUTES_HISTORIES", "1"))
SHAPES = [
    (4, timedelta(minutes=5), 8 * _MORE),
    (3, timedelta(seconds=150), 8 * _MORE),
    (5, timedelta(minutes=2, microseconds=1), 6 * _MORE),
    (H.incident_addresses, H.incident_window, 3 * _MORE),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("addresses", "window", "histories"),
    SHAPES,
    ids=[f"{a}-in-{w.total_seconds():g}s" for a, w, _ in SHAPES],
)
def test_incidents_are_the_same_from_minute_counts_from_events_and_with_nothing_ruled_out(
    backend: str,
    db_url: str,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    addresses: int,
    window: timedelta,
    histories: int,
) -> None:
    policy = dataclasses.replace(
        POLICY,
        hygiene=dataclasses.replace(H, incident_addresses=addresses, incident_window=window),
    )
    start = clock() - timedelta(hours=4)
    incidents = 0
    if backend != "sqlite":
        # The same SQL on every backend: the servers get a quarter of the histories, which
        # keeps CI's time in bounds (each history is recorded and evaluated three times).
        histories = max(1, histories // 4)
    for seed in range(histories):
        rng = random.Random(f"{addresses}-{window}-{seed}")
        items = _generated_history(rng, start, policy)
        if rng.random() < 0.5:
            rng.shuffle(items)  # recorded out of time order: late bounces
        chunk = rng.choice((1, 7, 50, 1000))
        nightly = rng.random() < 0.3
        seen: dict[str, Any] = {}
        for mode, patch in MODES.items():
            with monkeypatch.context() as m:
                if patch is not None:
                    m.setattr(hygiene_store._Evaluator, *patch)
                hook: Literal[False] | None = False if nightly else None
                with Engine(
                    db_url, policy=policy, clock=clock, chunk_size=chunk, hygiene=hook
                ) as engine:
                    engine.record_many(items)
                    now = clock()
                    with Session(engine.db) as s, s.begin():
                        hygiene_store.evaluate(s, policy, now)
                    recorded = _snapshot(engine.db)
                    with Session(engine.db) as s, s.begin():
                        hygiene_store.evaluate(s, policy, now, full=True)
                    seen[mode] = (recorded, _snapshot(engine.db))
                    if mode == "minute_counts":
                        _agree(engine.db)
                    _wipe(engine.db)
        # Nothing ruled out judges every bounce: the same actions, raised as often.
        assert seen["every bounce"] == seen["minute_counts"], (seed, _differences(seen))
        # Counted from events the same actions, though an alert may be raised once less often:
        # that count stopped at the window's end exactly, where `_spans_around` reads a
        # millisecond beyond it, so a bounce in that millisecond was ruled out there and is
        # judged (again) here, as with nothing ruled out.
        assert _unraised(seen["events"]) == _unraised(seen["minute_counts"]), (
            seed,
            _differences(seen),
        )
        incidents += sum(1 for a in seen["minute_counts"][0][0] if a[4] == RULE_INCIDENT)
    assert incidents > 0, "some histories hold an incident"


# ---- prune folding a minute beside writers and other folds ---------------------------------------


def _old_history(engine: Engine, clock: FakeClock, domain: str) -> datetime:
    """An old delivery to each of three addresses, then a newer one each: prune deletes the
    old ones (none is an address's latest event, none is suppressed). Returns the old time."""
    old = (clock() - timedelta(days=400)).replace(second=10, microsecond=0)
    engine.record_many([_reply(f"ok{n}@{domain}", DELIVERED, old, n) for n in range(3)])
    engine.record_many([_reply(f"ok{n}@{domain}", DELIVERED, clock(), 10 + n) for n in range(3)])
    return old


@contextmanager
def _while_statement(
    db: sa.Engine, starts: str, action: Callable[[], None]
) -> Iterator[list[bool]]:
    """Run `action` in another thread, once, when `db` is about to run a statement starting
    with `starts`, and wait (up to 30 s) for it to end."""
    fired: list[bool] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if fired or not statement.lstrip().startswith(starts):
            return
        fired.append(True)
        thread = threading.Thread(target=action)
        thread.start()
        thread.join(timeout=30)
        fired.append(not thread.is_alive())

    sa_event.listen(db, "before_cursor_execute", before)
    try:
        yield fired
    finally:
        sa_event.remove(db, "before_cursor_execute", before)


def test_a_late_bounce_committed_while_prune_folds_its_minute_keeps_its_count(
    db_url: str, backend: str, clock: FakeClock
) -> None:
    # A sender records an old log line (a late bounce) into a minute prune is folding: it commits
    # between prune's read of the minute's rows and its delete of them.
    _servers_only(backend)
    with (
        Engine(db_url, policy=POLICY, clock=clock) as engine,
        Engine(db_url, policy=POLICY, clock=clock) as sender,
    ):
        old = _old_history(engine, clock, "race.example")

        def late_bounce() -> None:
            sender.record("late@race.example", HARD, message_id="<late@list.example>", at=old)

        with _while_statement(engine.db, "DELETE FROM minute_counts", late_bounce) as fired:
            result = prune_history(
                engine.db, older_than=timedelta(days=200), now=clock(), policy=POLICY
            )
        assert fired == [True, True], "the late bounce was recorded while prune folded"
        assert result.deleted_events == 3
        counted = _agree(engine.db)
    assert counted[("race.example", minutes.minute_of(old))] == (1, 1)


def test_a_late_burst_recorded_while_prune_folds_its_minute_is_still_an_incident(
    db_url: str, backend: str, clock: FakeClock
) -> None:
    # An old mail log read again while prune runs: all but one of a burst of bounces commit
    # while prune folds their minute. The last bounce, recorded after, completes the incident:
    # its address is held pending, not suppressed, and the domain is alerted.
    _servers_only(backend)
    k = H.incident_addresses
    with (
        Engine(db_url, policy=POLICY, clock=clock) as engine,
        # A bounce a chunk: each chunk locks its one recipient through the unique index (in a
        # table this small MariaDB scans it for many, and waits for prune's shared locks).
        Engine(db_url, policy=POLICY, clock=clock, chunk_size=1) as sender,
    ):
        old = _old_history(engine, clock, "burst.example")

        def burst() -> None:
            sender.record_many(
                [_reply(f"gone{n}@burst.example", HARD, old, 100 + n) for n in range(k - 1)]
            )

        with _while_statement(engine.db, "DELETE FROM minute_counts", burst) as fired:
            prune_history(engine.db, older_than=timedelta(days=200), now=clock(), policy=POLICY)
        assert fired == [True, True]
        last = engine.record("last@burst.example", HARD, message_id="<last@list.example>", at=old)
        with Session(engine.db) as s:
            held = s.scalars(
                sa.select(Action.target).where(
                    Action.kind == "suppress", Action.status == "pending"
                )
            ).all()
    # Held pending, for a person to settle (an incident this old has no alert left open).
    assert last.sendable
    assert "last@burst.example" in held


def test_two_transactions_folding_one_minute_at_once_keep_its_sum(
    db_url: str, backend: str
) -> None:
    # Two prunes (or two batches of prunes run by two hosts) fold the same minute: the second
    # waits for the first's row locks, then must not add back what the first already folded.
    _servers_only(backend)
    db, other = create_engine(db_url), create_engine(db_url)
    key = ("fold.example", 29_000_000)
    deleting = threading.Event()

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("DELETE FROM minute_counts"):
            deleting.set()

    sa_event.listen(other, "before_cursor_execute", before)
    try:
        upgrade_schema(db)
        with db.begin() as conn:
            minutes.append(conn, [(*key, 5, 9), (*key, 2, 2)])
        with db.connect() as first:
            minutes.append(first, [(*key, -1, -1)])
            minutes.compact(first, [key])
            errors: list[BaseException] = []

            def second() -> None:
                try:
                    with other.begin() as conn:
                        minutes.append(conn, [(*key, -2, -3)])
                        minutes.compact(conn, [key])
                except BaseException as err:
                    errors.append(err)

            thread = threading.Thread(target=second)
            thread.start()
            assert deleting.wait(timeout=10)
            time.sleep(0.3)
            assert thread.is_alive(), "the second waits for the first's row locks"
            first.commit()
        thread.join(timeout=30)
        assert not thread.is_alive()
        assert not errors
        with db.connect() as conn:
            rows = conn.execute(sa.select(sa.func.count(MinuteCount.id))).scalar_one()
            assert minute_sums.stored(conn) == {key: (5 + 2 - 1 - 2, 9 + 2 - 1 - 3)}
        assert rows <= 2
    finally:
        db.dispose()
        other.dispose()
