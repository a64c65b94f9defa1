"""The sender's calls never scan a whole history table, on every backend.

A mailing-list sender calls the engine on every reply and before every send, against a store that
grows to millions of events. Each statement those calls make is captured and handed to the
backend's own planner (SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN with sequential scans
priced out, MariaDB's EXPLAIN): none may read `events`, `deliveries` or `recipients` from end to
end, which would make a call's cost grow with the history instead of with what it asks about.
The reports over events are held to the same rule: their cost grows with their period.

The tables here are small, so PostgreSQL is asked with `enable_seqscan` off: it then reads a
whole table only when no index can serve the query
(https://www.postgresql.org/docs/current/runtime-config-query.html), and walks a whole index
(an index scan with no index condition) rather than scan, which counts as a scan too. SQLite and
MariaDB take an index they can use even on small tables.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import factories_reports as f
import pytest
import sqlalchemy as sa
from conftest import FakeClock
from sqlalchemy.orm import Session

from deliverability import reports
from deliverability.engine import Engine, ReplyRecord
from deliverability.store.models import Recipient
from deliverability.vocabulary import Fault, Outcome, Reason, Standing

#: The tables that grow with the history (an address list's size, or every reply ever).
HISTORY_TABLES = ("events", "deliveries", "recipients")

DELIVERED = "250 2.0.0 OK"
MISSING = "550 5.1.1 The email account that you tried to reach does not exist"
PUSHBACK = "421 4.7.0 Try again later, closing connection."
FULL = "452 4.2.2 The email account that you tried to reach is over quota"
#: A bare 550: ambiguous, counted over the address's window and its latest delivery.
BARE = "550 Requested action not taken: mailbox unavailable"
GOOGLE_MX = "gmail-smtp-in.l.google.com[142.250.27.27]:25"


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    eng = Engine(db_url, clock=clock)
    # A history with something of each kind in it: deliveries, retries, a suppression, a
    # throttled destination and a domain learned to be Google-hosted.
    items = []
    start = clock.now - timedelta(hours=6)
    replies = (DELIVERED, DELIVERED, FULL, MISSING, PUSHBACK)
    for i in range(200):
        items.append(
            ReplyRecord(
                recipient=f"user{i}@{('example.com', 'example.org', 'acme.example')[i % 3]}",
                message_id=f"<m{i % 7}@list.example>",
                reply=replies[i % len(replies)],
                at=start + timedelta(seconds=30 * i),
                mx_host=GOOGLE_MX if i % 3 == 2 else None,
            )
        )
    eng.record_many(items)
    yield eng
    eng.close()


def _captured(engine: Engine) -> tuple[list[tuple[str, Any]], Any]:
    """Every single (not executemany) statement the engine runs from now on: (sql, params)."""
    statements: list[tuple[str, Any]] = []

    def keep(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        if not many and sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE", "WITH")):
            statements.append((sql, params))

    sa.event.listen(engine.db, "before_cursor_execute", keep)
    return statements, keep


#: `FROM events AS anchor`, `JOIN deliveries t`: a history table and the name it goes by.
_NAMED = re.compile(
    r"\b(?:FROM|JOIN)\s+(" + "|".join(HISTORY_TABLES) + r")\b(?:\s+(?:AS\s+)?(\w+))?",
    re.IGNORECASE,
)
_KEYWORDS = {"where", "join", "inner", "left", "cross", "on", "group", "order", "limit", "for"}


def _history_names(sql: str) -> set[str]:
    """The names the history tables go by in `sql`: their own, and any alias (SQLite and
    MariaDB name a scanned table by its alias)."""
    names = set(HISTORY_TABLES)
    for _table, alias in _NAMED.findall(sql):
        if alias and alias.lower() not in _KEYWORDS:
            names.add(alias)
    return names


def _postgresql_plan(conn: sa.Connection, sql: str, params: Any) -> Any:
    """PostgreSQL's plan of a statement (JSON) as it would be on a store of any size: with
    sequential scans priced out, and joins made as nested loops. A test's tables hold a few
    hundred rows, and once they are analyzed (the engine's `Statistics`, or autovacuum, at a
    time no test controls) the planner may join such a table to a chunk's rows by a merge or
    hash join that walks its whole index: cheaper there, and it made the check fail or pass by
    the statistics of the moment. At scale each row of the chunk is found through the index
    (the nested loop); a table no index serves still shows as a scan."""
    with conn.begin_nested():
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        conn.exec_driver_sql("SET LOCAL enable_mergejoin = off")
        conn.exec_driver_sql("SET LOCAL enable_hashjoin = off")
        (plan,) = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).one()
    return plan


def _full_scans(conn: sa.Connection, sql: str, params: Any) -> list[str]:
    """The history tables this statement reads from end to end, as the backend plans it."""
    name = conn.dialect.name
    history = _history_names(sql)
    found: list[str] = []
    if name == "sqlite":
        for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params):
            detail = str(row[-1])
            # "SCAN events" (a table read row by row); "SCAN t USING INDEX ..." walks an index.
            # An automatic index is built by reading the whole table first.
            match = re.match(r"SCAN (\w+)$", detail) or re.match(
                r"(?:SCAN|SEARCH) (\w+) USING AUTOMATIC", detail
            )
            if match and match.group(1) in history:
                found.append(detail)
    elif name == "postgresql":
        plan = _postgresql_plan(conn, sql, params)
        nodes = [plan[0]["Plan"]]
        while nodes:
            node = nodes.pop()
            nodes.extend(node.get("Plans", ()))
            if node.get("Relation Name") not in HISTORY_TABLES:
                continue
            # With sequential scans priced out the planner walks a whole index instead: an
            # index scan with no condition on the index reads every row just the same.
            kind = node["Node Type"]
            if kind == "Seq Scan" or (
                kind in ("Index Scan", "Index Only Scan") and "Index Cond" not in node
            ):
                found.append(f"{kind} on {node['Relation Name']}")
    else:
        for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params).mappings():
            # ALL reads the table from end to end, index the whole of one of its indexes
            # (https://mariadb.com/kb/en/explain/, "type").
            if row["table"] in history and row["type"] in ("ALL", "index"):
                found.append(f"{row['table']}: type {row['type']}")
    return found


def _assert_no_full_scan(engine: Engine, statements: list[tuple[str, Any]]) -> None:
    assert statements, "no statement was captured"
    problems = []
    with engine.db.connect() as conn:
        for sql, params in statements:
            scans = _full_scans(conn, sql, params)
            if scans:
                problems.append(f"{' '.join(sql.split())[:300]}\n    -> {scans}")
    assert not problems, "\n".join(problems)


def test_the_plan_check_sees_a_history_table_read_from_end_to_end(engine: Engine) -> None:
    # The check itself must be able to fail: a filter no index serves (the reply text), on a
    # table and on an alias of it, is a whole-table read on every backend.
    with engine.db.connect() as conn:
        for sql in (
            "SELECT id FROM events WHERE text = 'OK'",
            "SELECT e.id FROM events AS e WHERE e.text = 'OK'",
            "SELECT r.id FROM recipients r WHERE r.last_text = 'OK'",
        ):
            params: Any = {} if conn.dialect.paramstyle != "qmark" else ()
            assert _full_scans(conn, sql, params), sql


def test_the_calls_made_before_a_send_use_an_index_for_every_history_table(
    engine: Engine,
) -> None:
    statements, _ = _captured(engine)
    assert engine.is_sendable("user3@example.com") is False  # suppressed: 550 5.1.1
    engine.why_not_sendable("user5@acme.example")
    engine.filter_sendable([f"user{i}@example.org" for i in range(0, 60, 3)])
    engine.throttle_for("example.com")
    engine.due_retries(limit=50)
    _assert_no_full_scan(engine, statements)


def test_recording_one_reply_uses_an_index_for_every_history_table(
    engine: Engine, clock: FakeClock
) -> None:
    statements, _ = _captured(engine)
    for i, reply in enumerate((DELIVERED, FULL, MISSING, PUSHBACK, BARE, BARE)):
        clock.advance(timedelta(minutes=1))
        engine.record(
            f"user{i}@example.com", reply, message_id=f"<next{i}@list.example>", at=clock.now
        )
    engine.record("user9@acme.example", PUSHBACK, message_id="<next9@list.example>", at=clock.now)
    _assert_no_full_scan(engine, statements)


def test_list_management_and_status_use_an_index_for_every_history_table(
    engine: Engine,
) -> None:
    statements, _ = _captured(engine)
    engine.status("user1@example.org")
    engine.suppress("user1@example.org", "asked to leave the list", by="test")
    engine.unsuppress("user1@example.org", by="test")
    engine.status("user1@example.org")
    _assert_no_full_scan(engine, statements)


#: A relay's own give-up reported as a reply (RFC 3463 X.4.7, delivery time expired).
GAVE_UP = "4.4.7 delivery time expired"


def test_recording_give_ups_uses_an_index_for_every_history_table(
    engine: Engine, clock: FakeClock
) -> None:
    # A relay's give-up reported as a reply is judged against its delivery's events recorded
    # before it: the fault of the last deferral, and whether the delivery was given up already
    # (`restated`), as the second report here is.
    statements, _ = _captured(engine)
    # user2 and user12 got a 452 in the fixture's history, for messages m2 and m5.
    for address, message in (("user2@acme.example", "m2"), ("user12@example.com", "m5")):
        for _ in range(2):
            clock.advance(timedelta(minutes=1))
            engine.record(address, GAVE_UP, message_id=f"<{message}@list.example>", at=clock.now)
    assert any("events.reason" in sql and "events.message_id IN" in sql for sql, _ in statements)
    _assert_no_full_scan(engine, statements)


def test_recording_replies_older_than_recorded_ones_uses_an_index_for_every_history_table(
    engine: Engine, clock: FakeClock
) -> None:
    # Late DSNs: a bare 550 and 452s dated before the same kind of reply recorded for these
    # addresses, so each rule also judges the address's later events again (the late anchors).
    engine.record("user42@example.com", BARE, message_id="<new@list.example>", at=clock.now)
    statements, _ = _captured(engine)
    earlier = clock.now - timedelta(hours=7)
    # user12 and user27 got a 452 in the fixture's history.
    for address, reply in (
        ("user42@example.com", BARE),
        ("user12@example.com", FULL),
        ("user27@example.com", FULL),
    ):
        engine.record(address, reply, message_id="<old@list.example>", at=earlier)
    _assert_no_full_scan(engine, statements)


def _table_lookups(conn: sa.Connection, sql: str, params: Any) -> list[str]:
    """The history tables this statement reads rows of, not only an index's entries (SQLite
    and MariaDB, whose planners take a covering index even on small tables; PostgreSQL's
    choice of an index-only scan depends on its visibility map, so it is not asked)."""
    name = conn.dialect.name
    history = _history_names(sql)
    found: list[str] = []
    if name == "sqlite":
        for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params):
            detail = str(row[-1])
            match = re.match(r"(?:SEARCH|SCAN) (\w+)\b", detail)
            if match and match.group(1) in history and "COVERING INDEX" not in detail:
                found.append(detail)
    elif name != "postgresql":
        for row in conn.exec_driver_sql(f"EXPLAIN {sql}", params).mappings():
            # "Using index": the index alone answers (not "Using index condition", a filter
            # on index entries before each row is read; https://mariadb.com/kb/en/explain/).
            extra = [part.strip() for part in (row["Extra"] or "").split(";")]
            if row["table"] in history and "Using index" not in extra:
                found.append(f"{row['table']}: {row['Extra']}")
    return found


def test_every_report_over_events_uses_an_index_for_every_history_table(
    engine: Engine, clock: FakeClock
) -> None:
    # Reports read their period through the (at) index, or the (domain, at, outcome, kind) one
    # with --domain, whatever they count: telling an expiry (kind `expiry`) from a deferral must
    # not make any of them read the whole history. A longer history than the fixture's (older
    # than every report's period, the reputation's 30 days included) makes each period a small
    # part of it, as in a real store: a planner rightly scans a table its period covers whole.
    with Session(engine.db) as session:
        who = session.scalars(sa.select(Recipient).limit(1)).one()
        for outcome in (Outcome.DELIVERED, Outcome.DEFERRED):
            f.events(session, who, 1000, at=clock.now - timedelta(days=40), outcome=outcome)
        session.commit()
    if engine.db.dialect.name not in ("sqlite", "postgresql"):
        # InnoDB recounts a table's statistics in the background once a tenth of it changed
        # (innodb_stats_auto_recalc): too late for this test, whose planner would still see the
        # fixture's 200 events alone and rightly read them all.
        with engine.db.begin() as conn:
            conn.exec_driver_sql("ANALYZE TABLE events")
    since, until = clock.now - timedelta(days=1), clock.now
    statements, _ = _captured(engine)
    with Session(engine.db) as session:
        for domain in (None, "example.com"):
            reports.domains(session, since=since, until=until, domain=domain)
            for daily in (False, True):
                reports.codes(session, since=since, until=until, domain=domain, daily=daily)
            reports.codes(session, since=since, until=until, domain=domain, reason="expired")
            reports.outcomes_by_day(session, since=since, until=until, domain=domain)
            reports.reasons(session, since=since, until=until, domain=domain)
        reports.reputation(session, now=until)
    _assert_no_full_scan(engine, statements)


def test_the_undeliverable_report_judges_each_expired_addresss_give_ups_through_an_index(
    engine: Engine, clock: FakeClock
) -> None:
    # An address bounced by an expiry is listed unless its give-ups are all exempt from strikes:
    # those at its standing's time, read through events (recipient_id, at), never the history.
    clock.advance(timedelta(days=6))
    assert engine.expire_overdue().recorded > 0
    dialect = engine.db.dialect.name
    if dialect != "postgresql":
        # Most addresses of a list are fine, as in a real store, and the planner knows it (else
        # SQLite and MariaDB rightly read every recipient to find the undeliverable ones).
        # PostgreSQL, priced out of sequential scans, takes the standing index without them,
        # and its statistics would outlive the TRUNCATE that empties the tables for the next
        # test (tests/backends.py), changing how that test's updates of a few rows are planned.
        with Session(engine.db) as session:
            session.execute(
                sa.insert(Recipient),
                [
                    {"address": f"fine{i}@example.net", "address_key": f"fine{i}@example.net",
                     "domain": "example.net", "standing": Standing.DELIVERED,
                     "reason": Reason.DELIVERED, "standing_since": clock.now,
                     "first_seen_at": clock.now, "last_event_at": clock.now}
                    for i in range(3000)
                ],
            )  # fmt: skip
            session.commit()
        with engine.db.begin() as conn:
            # InnoDB recounts a table's statistics in the background, too late for a test.
            conn.exec_driver_sql(
                "ANALYZE" if dialect == "sqlite" else "ANALYZE TABLE events, recipients"
            )
    statements, _ = _captured(engine)
    with Session(engine.db) as session:
        assert reports.undeliverable(session)
        reports.undeliverable(session, domain="example.com")
    assert any("given_up" in sql for sql, _ in statements)
    _assert_no_full_scan(engine, statements)


#: The reports that count one domain's events by outcome and kind (an expiry is counted as
#: `expired`, not as a deferral): `report domains --domain D` and the HTML report's outcomes per
#: day. bench/bench_reports.py measured their lookups of each event's row at 1.47x and 1.30x the
#: time from 1M to 2M events; from the index alone, 1.02x and 1.04x (docs/reports.md, Speed).
_COUNTED_FROM_THE_INDEX = {
    "domains": reports.domains,
    "outcomes_by_day": reports.outcomes_by_day,
}


@pytest.mark.parametrize("report", sorted(_COUNTED_FROM_THE_INDEX))
def test_the_outcome_counts_of_one_domain_read_the_events_index_alone(
    engine: Engine, clock: FakeClock, report: str
) -> None:
    statements, _ = _captured(engine)
    with Session(engine.db) as session:
        _COUNTED_FROM_THE_INDEX[report](
            session, since=clock.now - timedelta(days=1), until=clock.now, domain="example.com"
        )
    _assert_no_full_scan(engine, statements)
    with engine.db.connect() as conn:
        problems = [
            f"{' '.join(sql.split())[:300]}\n    -> {lookups}"
            for sql, params in statements
            if "events" in sql and (lookups := _table_lookups(conn, sql, params))
        ]
    assert not problems, "\n".join(problems)


BLOCKED = "554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org"
#: The same refusal answered with a 4xx: deferred, and a block (the sender's fault).
BLOCKED_4XX = "450 4.7.1 Client host blocked using zen.spamhaus.org"
#: A refusal of the content answered with a 4xx: deferred, and a block (the message's fault).
CONTENT_4XX = "451 4.7.1 Virus found"


def _block_history(engine: Engine, clock: FakeClock, domains: tuple[str, ...]) -> None:
    """The three days before now of blocks at `domains`, among deliveries and other
    deferrals: each hour 40 deliveries, 8 greylisting deferrals, a 5xx block, a 4xx refusal of
    the sender and one of the content. So
    the block index holds far more than one window of blocks, and a window far more other
    events than blocks, as a store's do, and the planner knows it (it rightly walks a whole
    index of a dozen entries, or reads a window of a few events through any index)."""
    with Session(engine.db) as session:
        for domain in domains:
            who = session.scalars(sa.select(Recipient).where(Recipient.domain == domain)).first()
            assert who is not None
            for hour in range(72):
                at = clock.now - timedelta(hours=hour, minutes=7)
                f.events(session, who, 40, at=at, outcome=Outcome.DELIVERED)
                f.events(session, who, 8, at=at, outcome=Outcome.DEFERRED,
                         reason=Reason.GREYLISTED, fault=Fault.DESTINATION)  # fmt: skip
                f.events(session, who, 1, at=at, outcome=Outcome.BLOCKED, fault=Fault.SENDER)
                f.events(session, who, 1, at=at, outcome=Outcome.DEFERRED,
                         reason=Reason.BLOCKED, fault=Fault.SENDER)  # fmt: skip
                f.events(session, who, 1, at=at, outcome=Outcome.DEFERRED,
                         reason=Reason.VIRUS_DETECTED, fault=Fault.MESSAGE)  # fmt: skip
        session.commit()
    with engine.db.begin() as conn:
        # The statistics a store's planner has (InnoDB recounts a table's in the background,
        # too late for a test).
        conn.exec_driver_sql(
            {"sqlite": "ANALYZE", "postgresql": "ANALYZE events"}.get(
                conn.dialect.name, "ANALYZE TABLE events"
            )
        )


def _missing_mailboxes(start: Any) -> list[ReplyRecord]:
    """25 missing mailboxes at broken.example, 5 s apart from `start`: a domain incident."""
    return [
        ReplyRecord(
            recipient=f"x{i}@broken.example",
            message_id=f"<x{i}@list.example>",
            reply=MISSING,
            at=start + timedelta(seconds=5 * i),
        )
        for i in range(25)
    ]


def test_late_destination_replies_are_judged_through_an_index_for_every_history_table(
    engine: Engine, clock: FakeClock
) -> None:
    # A burst of blocks and one of missing mailboxes (a domain incident), then, recorded late,
    # a push-back, a block and a bounce dated before what their destinations already recorded:
    # the destination rules judge the newer events again (their late anchors), the incident
    # rule reads the bounces around the late one, and a throttle raised now counts deliveries.
    _block_history(engine, clock, ("example.com", "acme.example"))
    burst = clock.now - timedelta(hours=2)
    engine.record_many(
        [
            ReplyRecord(
                recipient=f"b{i}@acme.example",
                message_id=f"<b{i}@list.example>",
                reply=BLOCKED,
                at=burst + timedelta(seconds=20 * i),
            )
            for i in range(12)
        ]
        + _missing_mailboxes(burst)
    )
    statements, _ = _captured(engine)
    early = burst - timedelta(minutes=5)

    def late(recipient: str, reply: str, at: Any) -> ReplyRecord:
        return ReplyRecord(recipient=recipient, reply=reply, message_id=f"<{recipient}>", at=at)

    # One call each: a chunk's time span bounds its window reads on MariaDB, and these
    # tables are small enough for a span of hours to cover them.
    for chunk in (
        # Before the fixture's push-backs at example.org; one now, still pausing.
        [late("late4@example.org", PUSHBACK, clock.now - timedelta(hours=7))],
        [late("now@example.com", PUSHBACK, clock.now)],
        # The latest block at acme.example, too few in its window: every block judged is
        # counted then, the late one's late anchors too.
        [late("late@acme.example", BLOCKED, early), late("now@acme.example", BLOCKED, clock.now)],
        [late("late@broken.example", MISSING, early)],
    ):
        engine.record_many(chunk)
    _assert_no_full_scan(engine, statements)


def test_a_domain_incident_is_counted_through_an_index_for_every_history_table(
    engine: Engine, clock: FakeClock
) -> None:
    # A burst of missing mailboxes at one domain: each bounce's window is counted by window
    # functions over one range of that domain's events, which must be an index range.
    statements, _ = _captured(engine)
    burst = clock.now - timedelta(hours=1)
    engine.record_many(_missing_mailboxes(burst))
    assert any("incident_marked" in sql for sql, _ in statements)
    _assert_no_full_scan(engine, statements)


def _indexes_used(conn: sa.Connection, sql: str, params: Any) -> set[str]:
    """The indexes this statement reads, as the backend plans it (PostgreSQL with sequential
    scans priced out, as in `_full_scans`)."""
    name = conn.dialect.name
    used: set[str] = set()
    if name == "sqlite":
        for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params):
            match = re.search(r"USING (?:COVERING )?INDEX (\w+)", str(row[-1]))
            if match:
                used.add(match.group(1))
    elif name == "postgresql":
        plan = _postgresql_plan(conn, sql, params)
        nodes = [plan[0]["Plan"]]
        while nodes:
            node = nodes.pop()
            nodes.extend(node.get("Plans", ()))
            if "Index Name" in node:
                used.add(node["Index Name"])
    else:
        for step in conn.exec_driver_sql(f"EXPLAIN {sql}", params).mappings():
            if step["key"]:
                used.update(step["key"].split(","))
    return used


#: The throttle rule's push-back reads (store.hygiene `_PUSHBACKS_BETWEEN`,
#: `_LATEST_PUSHBACK_BETWEEN`): push-backs of a destination's domains within a time range.
_PUSHBACK_READ = re.compile(
    r"FROM events WHERE events\.domain IN \(.*\) AND events\.throttle = (?:1|true) AND"
)
_DOMAINS_LISTED = re.compile(r"events\.domain IN \((.*?)\) AND events\.throttle")


def test_the_push_back_count_and_the_latest_push_back_read_the_push_back_index(
    engine: Engine, clock: FakeClock
) -> None:
    # Ten deliveries a minute for three hours at a domain of its own and at one learned into
    # Google's group (the fixture's acme.example: the group's reads list several domains), and
    # at each a burst of push-backs that ended an hour and a half ago. Then one more push-back
    # at each, dated at the burst's end (recorded late): the count reads the repeat_window
    # (4 h) before it, the latest push-back the 4 h after it, where there are deliveries but no
    # push-back. Read in time order, that range is every delivery in it (PostgreSQL's plan for
    # the group, before the latest push-back had a subquery of its own): each read must take
    # the push-backs from their own index.
    with Session(engine.db) as session:
        for domain in ("example.com", "acme.example"):
            who = session.scalars(sa.select(Recipient).where(Recipient.domain == domain)).first()
            assert who is not None
            for minute in range(180):
                at = clock.now - timedelta(minutes=minute)
                f.events(session, who, 10, at=at, outcome=Outcome.DELIVERED)
        session.commit()
    engine.record_many(
        [
            ReplyRecord(
                recipient=f"user{3 * i + k}@{domain}",
                message_id=f"<w{i}@list.example>",
                reply=PUSHBACK,
                at=clock.now - timedelta(minutes=91 + i),
            )
            for i in range(60)
            for k, domain in ((0, "example.com"), (2, "acme.example"))
        ]
    )
    if engine.db.dialect.name != "sqlite":
        # The statistics a store's planner has (InnoDB recounts a table's in the background,
        # too late for this test, as for the reports above).
        with engine.db.begin() as conn:
            conn.exec_driver_sql(
                "ANALYZE events" if conn.dialect.name == "postgresql" else "ANALYZE TABLE events"
            )
    statements, _ = _captured(engine)
    late = clock.now - timedelta(minutes=90)
    engine.record("user3@example.com", PUSHBACK, message_id="<p3@list.example>", at=late)
    engine.record("user5@acme.example", PUSHBACK, message_id="<p5@list.example>", at=late)
    reads = [
        (sql, params) for sql, params in statements if _PUSHBACK_READ.search(" ".join(sql.split()))
    ]
    assert any("count(*)" in sql for sql, _ in reads), "no push-back count was captured"
    assert any("ORDER BY" in sql for sql, _ in reads), "no latest push-back was captured"
    listed = [_DOMAINS_LISTED.search(sql) for sql, _ in reads]
    assert any(m and "," in m.group(1) for m in listed), "no read of a group's domains"
    with engine.db.connect() as conn:
        problems = [
            f"{' '.join(sql.split())[:300]}\n    -> {used}"
            for sql, params in reads
            if "ix_events_pushbacks" not in (used := _indexes_used(conn, sql, params))
        ]
    assert not problems, "\n".join(problems)


#: The repeated-blocks rule's windows (store.hygiene `_blocks_throttle`, `_late_blocks`): the
#: events of a destination that are blocks, written as the block index's WHERE.
_BLOCK_WINDOW = re.compile(r"\w+\.throttle = (?:0|false) AND \(\w+\.outcome = 'blocked' OR")


def test_the_repeated_blocks_windows_read_the_block_index(engine: Engine, clock: FakeClock) -> None:
    # Days of blocks (5xx, and 4xx refusals of the sender or of the content, which count as
    # blocks too) at a domain of its own and at one learned into Google's group (the fixture's
    # acme.example: the group's windows list several domains). Then blocks now at each, 4xx
    # ones among them, and one recorded late: the rule counts the window before each block
    # judged and finds the blocks after the late one. Each window must be read from the block
    # index by destination and time, not from every event the destination answered in it.
    _block_history(engine, clock, ("example.com", "acme.example"))
    statements, _ = _captured(engine)
    engine.record_many(
        [
            ReplyRecord(
                recipient=f"user{3 * i + k}@{domain}",
                message_id=f"<k{i}@list.example>",
                reply=(BLOCKED, BLOCKED_4XX, CONTENT_4XX)[i % 3],
                at=clock.now - timedelta(minutes=30 - i),
            )
            for i in range(12)
            for k, domain in ((0, "example.com"), (2, "acme.example"))
        ]
    )
    late = clock.now - timedelta(minutes=40)
    engine.record("user9@example.com", CONTENT_4XX, message_id="<late@list.example>", at=late)
    reads = [(sql, params) for sql, params in statements if _BLOCK_WINDOW.search(sql)]
    assert any("count(" in sql for sql, _ in reads), "no count of a window of blocks"
    assert any("count(" not in sql for sql, _ in reads), "no search for late blocks"
    _assert_no_full_scan(engine, reads)
    with engine.db.connect() as conn:
        problems = [
            f"{' '.join(sql.split())[:300]}\n    -> {used}"
            for sql, params in reads
            if "ix_events_blocks" not in (used := _indexes_used(conn, sql, params))
        ]
    assert not problems, "\n".join(problems)
