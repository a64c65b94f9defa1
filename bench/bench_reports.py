"""Report speed at 1M and 2M events, and the query plans of the domain-filtered reports (SQLite).

Two SQLite stores are built with bulk Core inserts, each with the schema the migrations make (so
the indexes are the shipped ones): the first holds 1M events over the last 60 days; the second is
a copy of it plus 1M older events (60 to 120 days ago), as a longer history would be. Every report
is timed on both over the same last 30 days, the two sizes taking turns so that a busy machine
slows both alike. A report that reads through the ``(domain, at)`` or ``at`` index costs about
the same at both sizes; one that scans every event costs about twice as much. The domain-filtered
reports must stay within 1.3x (the script exits 1 when one does not).

Figures are this process's CPU seconds (SQLite runs in-process, so other work on a shared machine
does not count; the wall-clock ratio is printed beside it), each the best of ``--repeat`` runs,
printed beside a floor measured in the same run:
a bare ``count(*)`` over the same rows through the same index (the least any report over those
rows can do), and, for contrast, the same count forced to scan the whole table.

    python bench/bench_reports.py [--events 1000000] [--repeat 5] [--keep DIR [--reuse]]
    python -m bench.bench_reports
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session

from deliverability import reports
from deliverability.store.models import Action, Event, Recipient
from deliverability.store.session import create_engine, upgrade_schema
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

NOW = datetime(2026, 11, 28, tzinfo=UTC)
PERIOD = timedelta(days=30)
RECENT = timedelta(days=60)
CHUNK = 50_000
TARGET = 1.3

# Destination mix: a few big providers and a long tail, as a consumer list looks.
BIG = [("gmail.com", 0.30), ("yahoo.com", 0.10), ("outlook.com", 0.10), ("icloud.com", 0.05)]
TAIL = 2000
#: The domains the filtered reports ask about: a big provider and a tail domain.
PROBE_BIG = "yahoo.com"
PROBE_SMALL = "tail-7.example"

# Outcome mix and what each one says.
OUTCOMES: list[tuple[Outcome, float, int | None, str | None, Reason, str]] = [
    (Outcome.DELIVERED, 0.85, 250, "2.0.0", Reason.DELIVERED, "250 2.0.0 OK queued"),
    (Outcome.DEFERRED, 0.07, 421, "4.7.0", Reason.RATE_LIMITED, "421 4.7.0 Try again later"),
    (Outcome.BOUNCED, 0.045, 550, "5.1.1", Reason.USER_UNKNOWN, "550 5.1.1 No such user"),
    (Outcome.BLOCKED, 0.03, 554, "5.7.1", Reason.BLOCKED, "554 5.7.1 Blocked by policy"),
    (Outcome.COMPLAINED, 0.005, None, None, Reason.FEEDBACK, "abuse report"),
]


def domain_of(rng: random.Random) -> str:
    x = rng.random()
    for name, share in BIG:
        if x < share:
            return name
        x -= share
    # Zipf-like tail: low numbers are much more common.
    return f"tail-{int(TAIL ** rng.random()) - 1}.example"


def make_recipients(engine: Engine, count: int, rng: random.Random) -> list[tuple[int, str]]:
    rows = []
    for i in range(count):
        domain = domain_of(rng)
        x = rng.random()
        standing = (
            Standing.BOUNCED
            if x < 0.03
            else Standing.SUPPRESSED
            if x < 0.05
            else Standing.DELIVERED
        )
        since = NOW - timedelta(seconds=rng.randrange(int((2 * RECENT).total_seconds())))
        rows.append(
            {
                "id": i + 1,
                "address": f"user{i}@{domain}",
                "address_key": f"user{i}@{domain}",
                "domain": domain,
                "standing": standing,
                "reason": Reason.USER_UNKNOWN
                if standing is not Standing.DELIVERED
                else Reason.DELIVERED,
                "standing_since": since,
                "first_seen_at": since,
                "last_event_at": since,
                "last_code": 550 if standing is not Standing.DELIVERED else 250,
                "last_status": "5.1.1" if standing is not Standing.DELIVERED else "2.0.0",
                "last_text": "550 5.1.1 No such user",
                "events_count": 1,
                "delivered_count": 0,
                "deferred_count": 0,
                "bounced_count": 1,
                "blocked_count": 0,
                "complained_count": 0,
                "expired_count": 0,
            }
        )
    with engine.begin() as conn:
        for start in range(0, len(rows), CHUNK):
            conn.execute(insert(Recipient.__table__), rows[start : start + CHUNK])
        conn.execute(
            insert(Action.__table__),
            [
                {
                    "kind": kind,
                    "scope": ActionScope.DOMAIN,
                    "target": name,
                    "status": ActionStatus.OPEN,
                    "open_key": f"{kind.value}:domain:{name}",
                    "reason": Reason.RATE_LIMITED,
                    "rule": "bench",
                    "detail": "",
                    "evidence": {},
                    "created_at": NOW - timedelta(hours=1),
                    "updated_at": NOW - timedelta(hours=1),
                    "pause_until": NOW + timedelta(minutes=30),
                    "max_rate": 30.0,
                }
                for name, _ in BIG
                for kind in (ActionKind.THROTTLE, ActionKind.ALERT)
            ],
        )
    return [(r["id"], r["domain"]) for r in rows]


def event_rows(
    n: int,
    first_key: int,
    newest: datetime,
    span: timedelta,
    recipients: list[tuple[int, str]],
    rng: random.Random,
) -> Iterator[list[dict[str, Any]]]:
    """`n` events between `newest - span` and `newest`, in chunks, in time order."""
    weights = [w for *_, w in [(o, w) for o, w, *_ in OUTCOMES]]
    seconds = span.total_seconds()
    chunk: list[dict[str, Any]] = []
    for i in range(n):
        rid, domain = recipients[rng.randrange(len(recipients))]
        outcome, _, code, status, reason, reply = rng.choices(OUTCOMES, weights)[0]
        at = newest - span + timedelta(seconds=seconds * i / n)
        chunk.append(
            {
                "key": f"e{first_key + i}",
                "at": at,
                "recorded_at": at,
                "kind": EventKind.COMPLAINT if outcome is Outcome.COMPLAINED else EventKind.REPLY,
                "recipient_id": rid,
                "domain": domain,
                "message_id": f"<m{i % 5000}@bench>",
                "attempt": 1,
                "code": code,
                "status": status,
                "text": reply,
                "outcome": outcome,
                "reason": reason,
                "fault": Fault.UNKNOWN,
                "rule": "bench",
                "decisive": False,
                "source": "bench",
            }
        )
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def add_events(engine: Engine, rows: Iterator[list[dict[str, Any]]]) -> None:
    with engine.begin() as conn:
        for chunk in rows:
            conn.execute(insert(Event.__table__), chunk)
    # Fold the write-ahead log back into the file, so both sizes are read the same way.
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def interleaved_best(repeat: int, runs: list[Callable[[], object]]) -> list[tuple[float, float]]:
    """The best (CPU, wall) seconds of each run over `repeat` rounds, taking turns (1M, 2M, 1M,
    2M, ...) so that a busy machine slows both sizes alike. CPU time is this process's own
    (user + system: SQLite runs in-process), so other processes on the machine do not count."""
    best = [(float("inf"), float("inf"))] * len(runs)
    for _ in range(repeat):
        for i, run in enumerate(runs):
            cpu, wall = time.process_time(), time.perf_counter()
            run()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            best[i] = (min(best[i][0], cpu), min(best[i][1], wall))
    return best


def explain(engine: Engine, stmt: Any) -> list[str]:
    """SQLite's EXPLAIN QUERY PLAN of a statement, run with its real (processed) parameters."""

    def prefix(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> Any:
        return "EXPLAIN QUERY PLAN " + statement, params

    event.listen(engine, "before_cursor_execute", prefix, retval=True)
    try:
        with engine.connect() as conn:
            raw = conn.execute(stmt).cursor.fetchall()
    finally:
        event.remove(engine, "before_cursor_execute", prefix)
    return [str(row[-1]) for row in raw]


def report_runs(s: Session) -> dict[str, Callable[[], object]]:
    """Every report, as run by the command line, over the last 30 days."""
    since, until = NOW - PERIOD, NOW
    return {
        "undeliverable": lambda: reports.undeliverable(s),
        f"undeliverable --domain {PROBE_BIG}": lambda: reports.undeliverable(s, domain=PROBE_BIG),
        "domains": lambda: reports.domains(s, since=since, until=until),
        f"domains --domain {PROBE_BIG}": lambda: reports.domains(
            s, since=since, until=until, domain=PROBE_BIG
        ),
        f"domains --domain {PROBE_SMALL}": lambda: reports.domains(
            s, since=since, until=until, domain=PROBE_SMALL
        ),
        "codes": lambda: reports.codes(s, since=since, until=until),
        f"codes --daily --domain {PROBE_BIG}": lambda: reports.codes(
            s, since=since, until=until, domain=PROBE_BIG, daily=True
        ),
        f"outcomes per day --domain {PROBE_BIG}": lambda: reports.outcomes_by_day(
            s, since=since, until=until, domain=PROBE_BIG
        ),
        "reputation (7d, 30d)": lambda: reports.reputation(s, now=NOW),
    }


FLOOR = "floor: count(*) of the domain's slice via (domain, at)"
COUNTS = {
    FLOOR: (
        # No INDEXED BY: the planner picks the (domain, at, ...) index by itself.
        "SELECT count(*) FROM events WHERE domain = :d AND at >= :s AND at < :u"
    ),
    "floor: count(*) of the period via (at)": (
        "SELECT count(*) FROM events INDEXED BY ix_events_at WHERE at >= :s AND at < :u"
    ),
    "contrast: the domain's slice by full scan": (
        "SELECT count(*) FROM events NOT INDEXED WHERE domain = :d AND at >= :s AND at < :u"
    ),
}


def count_runs(s: Session) -> dict[str, Callable[[], object]]:
    params = {
        "d": PROBE_BIG,
        "s": (NOW - PERIOD).replace(tzinfo=None),
        "u": NOW.replace(tzinfo=None),
    }
    return {
        name: (lambda sql=sql: s.execute(text(sql), params).scalar())
        for name, sql in COUNTS.items()
    }


def build(small: Path, large: Path, events: int, recipients: int, n1: str, n2: str) -> None:
    """The two stores: `small` with `events` recent events, `large` the same plus as many older."""
    for path in (small, large):
        path.unlink(missing_ok=True)
    engine = create_engine(f"sqlite:///{small}")
    upgrade_schema(engine)
    rng = random.Random(6)
    started = time.perf_counter()
    people = make_recipients(engine, recipients, rng)
    add_events(engine, event_rows(events, 0, NOW, RECENT, people, rng))
    engine.dispose()
    print(
        f"{n1}: {events:,} events over the last {RECENT.days} days, {recipients:,} recipients, "
        f"built in {time.perf_counter() - started:.0f} s"
    )
    # The larger store is the smaller one plus as many older events: a longer history.
    shutil.copyfile(small, large)
    engine = create_engine(f"sqlite:///{large}")
    started = time.perf_counter()
    add_events(engine, event_rows(events, events, NOW - RECENT, RECENT, people, rng))
    engine.dispose()
    print(
        f"{n2}: the same plus {events:,} older events, added in "
        f"{time.perf_counter() - started:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Report speed at N and 2N events")
    parser.add_argument("--events", type=int, default=1_000_000, help="N (default 1M)")
    parser.add_argument("--recipients", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the databases in DIR and keep them")
    parser.add_argument(
        "--reuse", action="store_true", help="with --keep: time the stores already in DIR"
    )
    args = parser.parse_args(argv)
    n1, n2 = f"{args.events / 1e6:g}M", f"{2 * args.events / 1e6:g}M"

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        small, large = folder / f"reports_{n1}.db", folder / f"reports_{n2}.db"
        if not (args.reuse and small.exists() and large.exists()):
            build(small, large, args.events, args.recipients, n1, n2)

        engines = [create_engine(f"sqlite:///{p}") for p in (small, large)]
        with Session(engines[0]) as s1, Session(engines[1]) as s2:
            by_size = [report_runs(s1) | count_runs(s1), report_runs(s2) | count_runs(s2)]
            timings = {
                name: interleaved_best(args.repeat, [by_size[0][name], by_size[1][name]])
                for name in by_size[0]
            }
            since, until = NOW - PERIOD, NOW
            plans = {
                f"domains --domain {PROBE_BIG}": reports.domains_query(
                    since=since, until=until, domain=PROBE_BIG
                ),
                f"codes --daily --domain {PROBE_BIG}": reports.codes_query(
                    s2, since=since, until=until, domain=PROBE_BIG, daily=True
                ),
                f"outcomes per day --domain {PROBE_BIG}": reports.outcomes_by_day_query(
                    s2, since=since, until=until, domain=PROBE_BIG
                ),
                f"undeliverable --domain {PROBE_BIG}": reports.undeliverable_query(
                    domain=PROBE_BIG
                ),
            }

        floor = timings[FLOOR][1][0] or 1e-9
        print()
        print(
            f"best of {args.repeat}, sizes taking turns; reports over the last {PERIOD.days} "
            "days; CPU seconds of this process (wall-clock ratio beside it)"
        )
        print(
            f"{'':50} {n1 + ' cpu':>9} {n2 + ' cpu':>9} {n2 + '/' + n1:>7} {'wall':>6} "
            f"{'x floor':>8}"
        )
        failed = []
        for name, ((c1, w1), (c2, w2)) in timings.items():
            ratio = c2 / c1 if c1 else float("inf")
            mark = ""
            if "--domain" in name:
                mark = "  ok" if ratio <= TARGET else f"  OVER {TARGET}"
                if ratio > TARGET:
                    failed.append(name)
            print(
                f"{name:50} {c1:9.4f} {c2:9.4f} {ratio:7.2f} {w2 / w1:6.2f} {c2 / floor:8.1f}{mark}"
            )
        print(f"(x floor: CPU time at {n2} / the (domain, at) slice count's, {floor:.4f} s)")
        print()
        print(f"query plans at {n2} (EXPLAIN QUERY PLAN, SQLite):")
        for name, stmt in plans.items():
            print(f"  {name}:")
            for line in explain(engines[1], stmt):
                print(f"    {line}")
        for engine in engines:
            engine.dispose()
        if failed:
            print(f"\nFAILED: {n2}/{n1} above {TARGET} for: {', '.join(failed)}")
            return 1
        print(f"\nevery domain-filtered report within {TARGET}x from {n1} to {n2}")
        return 0


if __name__ == "__main__":
    sys.exit(main())
