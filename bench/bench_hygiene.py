"""Benchmark: list hygiene, incremental (inside record_many) and nightly (set-based evaluate).

    python bench/bench_hygiene.py [--history 1000000,2000000] [--new 20000] [--record 100000]
        [--rounds 3] [--traffic 1,100] [--traffic-hours 3] [--traffic-new 20000]
        [--burst 2000,8000]

Prints, all measured in this run on SQLite files in a temporary directory:

1. `record_many` with the hygiene hook on every chunk, against the raw sqlite3 floor of
   bench_record (the same history rows and recipient upserts written with executemany):
   the ratio floor time / record_many time, and the CPU time spent inside the hook, in
   `--rounds` rounds of the two alternated; the median ratio is the figure (target: at least
   0.4).
2. `record_many` with the hook on live traffic: `--traffic-hours` of history at each
   `--traffic` rate (events a second, at bench_record's five domains), then `--traffic-new`
   events recorded at the same rate. A sender's log holds as many events a second as it
   sends; the rules' windows (an hour for incidents and push-backs) then hold that many times
   more events. The hook's CPU time an event at each rate, and their ratio: it should follow
   the new events, not the traffic inside the windows (1 when it does).
3. The nightly evaluation (`store.hygiene.evaluate`) of the same `--new` events on top of each
   history size. Each history is built with bulk inserts straight into the tables (not through
   the engine), at the same daily rate, so a larger history is a longer one. Each evaluation
   runs three times, rolled back (the best is kept, the first shown too), against its floor,
   reading the new events once (any evaluation has to), and the two times against each other
   (target: at most 1.3: the cost follows the new events, not the history).
4. A full evaluation (`evaluate(full=True)`) of a burst of hard bounces from one domain within
   an hour (a domain incident), at each `--burst` size, against its floor (reading the burst's
   events once). Every bounce's window is counted; the cost should follow the burst's size
   (double the burst, double the time), not its square.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy.orm import Session

from bench import bench_record
from deliverability.engine import Engine
from deliverability.policy import load_policy
from deliverability.store import hygiene as hygiene_store
from deliverability.store import minutes
from deliverability.store.records import RecordedEvent
from deliverability.store.session import create_engine, upgrade_schema, write_engine

#: Events per day in the generated histories (a mid-sized sender).
PER_DAY = 16_000
RECIPIENTS = 200_000
DOMAINS = [f"d{i}.example" for i in range(200)] + ["gmail.com", "googlemail.com", "yahoo.com"]
_FMT = "%Y-%m-%d %H:%M:%S.%f"

#: (outcome, reason, fault, decisive, throttle, weight): the mix of recorded results.
MIX: list[tuple[str, str, str, bool, bool, int]] = [
    ("delivered", "delivered", "unknown", False, False, 800),
    ("deferred", "system_error", "destination", False, False, 60),
    ("deferred", "mailbox_full", "recipient", False, False, 30),
    ("bounced", "user_unknown", "recipient", True, False, 20),
    ("bounced", "rejected", "recipient", False, False, 15),
    ("blocked", "blocked", "sender", False, False, 30),
    ("deferred", "rate_limited", "destination", False, True, 30),
    ("complained", "feedback", "recipient", False, False, 2),
]


def _choices() -> list[tuple[str, str, str, bool, bool]]:
    out: list[tuple[str, str, str, bool, bool]] = []
    for outcome, reason, fault, decisive, throttle, weight in MIX:
        out.extend([(outcome, reason, fault, decisive, throttle)] * weight)
    return out


def _recipient_rows(
    start: datetime, domains: list[str] = DOMAINS, recipients: int = RECIPIENTS
) -> list[tuple[Any, ...]]:
    at = start.strftime(_FMT)
    rows = []
    for i in range(recipients):
        domain = domains[i % len(domains)]
        key = f"user{i}@{domain}"
        rows.append((i + 1, key, key, domain, "retrying", "undefined", at, at, at))
    return rows


def _event_rows(
    rng: random.Random,
    first_id: int,
    start: datetime,
    days: float,
    n: int,
    domains: list[str] = DOMAINS,
    recipients: int = RECIPIENTS,
) -> list[tuple[Any, ...]]:
    choices = _choices()
    span = int(days * 86_400)
    offsets = sorted(rng.randrange(span) for _ in range(n))
    rows = []
    for i, offset in enumerate(offsets):
        rid = rng.randrange(recipients) + 1
        domain = domains[(rid - 1) % len(domains)]
        outcome, reason, fault, decisive, throttle = rng.choice(choices)
        at = (start + timedelta(seconds=offset, microseconds=i % 1_000_000)).strftime(_FMT)
        eid = first_id + i
        rows.append(
            (eid, f"e{eid}", at, at, "reply", rid, domain, f"m{eid}", 1, outcome, reason, fault,
             "bench", int(decisive), "bench", int(throttle))
        )  # fmt: skip
    return rows


_INSERT_EVENT = (
    "INSERT INTO events (id, key, at, recorded_at, kind, recipient_id, domain, message_id, "
    "attempt, outcome, reason, fault, rule, decisive, source, throttle) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_RECIPIENT = (
    "INSERT INTO recipients (id, address, address_key, domain, standing, reason, standing_since, "
    "first_seen_at, last_event_at, events_count, delivered_count, deferred_count, bounced_count, "
    "blocked_count, complained_count, expired_count) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0, 0)"
)


def build_store(path: Path, history: int, new: int, seed: int = 7) -> tuple[str, datetime, int]:
    """A store with `history` events already evaluated (the bookmark at the last) and `new`
    events after them; returns (url, now, the bookmark's event id)."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    days = history / PER_DAY
    end = datetime(2026, 11, 1, tzinfo=UTC)
    start = end - timedelta(days=days)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    with db:
        db.executemany(_INSERT_RECIPIENT, _recipient_rows(start))
        rng = random.Random(seed)
        step = 250_000
        for first in range(0, history, step):
            part = min(step, history - first)
            lo = start + timedelta(days=days * first / history)
            db.executemany(
                _INSERT_EVENT, _event_rows(rng, first + 1, lo, days * part / history, part)
            )
        db.execute(
            "INSERT INTO bookmarks (name, value, updated_at) VALUES (?, ?, ?)",
            (hygiene_store.BOOKMARK, str(history), end.strftime(_FMT)),
        )
        # The new events: the same ones (same seed) whatever the history, on the next day.
        db.executemany(
            _INSERT_EVENT,
            _event_rows(random.Random(seed + 1), history + 1, end, new / PER_DAY, new),
        )
    db.execute("ANALYZE")
    db.close()
    count_minutes(url)
    return url, end + timedelta(days=new / PER_DAY), history


#: Each measurement is repeated and the best kept: on a shared machine a single run mostly
#: measures what else is running (the first run's time is printed too).
REPEATS = 3


def read_new_events(path: Path, after: int) -> float:
    """The floor: read every column of the new events once, with the raw driver (best of
    REPEATS)."""
    best = float("inf")
    for _ in range(REPEATS):
        db = sqlite3.connect(path)
        started = time.perf_counter()
        rows = db.execute("SELECT * FROM events WHERE id > ?", (after,)).fetchall()
        best = min(best, time.perf_counter() - started)
        db.close()
        assert rows
    return best


def nightly(
    url: str, now: datetime, full: bool = False
) -> tuple[list[float], list[float], hygiene_store.EvaluationResult]:
    """The wall and CPU times of REPEATS evaluations of the same new events (with `full`, of
    the whole history), each rolled back (the first one on a store just built), and the result
    of the first. CPU time (this process: SQLite runs in it) is what the evaluation itself
    cost; wall time also counts waiting for the other processes of a shared machine."""
    engine = create_engine(url)
    policy = load_policy(None)
    walls: list[float] = []
    cpus: list[float] = []
    results: list[hygiene_store.EvaluationResult] = []
    try:
        for _ in range(REPEATS):
            with Session(write_engine(engine)) as session:
                started, cpu = time.perf_counter(), time.process_time()
                results.append(hygiene_store.evaluate(session, policy, now, full=full))
                walls.append(time.perf_counter() - started)
                cpus.append(time.process_time() - cpu)
                session.rollback()
    finally:
        engine.dispose()
    return walls, cpus, results[0]


def record_many_with_hygiene(url: str, n: int, per_second: float = 1.0) -> tuple[float, float]:
    """Wall seconds of record_many over bench_record's events, the hygiene hook on (the
    default), timed as bench_record times it (distinct replies classified beforehand), and the
    CPU seconds spent inside the hook (`on_events`: its queries included, SQLite runs in this
    process)."""
    hook_cpu = [0.0]

    def hook(
        session: Session, events: list[RecordedEvent], policy: Any, now: datetime
    ) -> list[Any]:
        started = time.process_time()
        try:
            return hygiene_store.on_events(session, events, policy, now)
        finally:
            hook_cpu[0] += time.process_time() - started

    with Engine(url, clock=bench_record._Clock(), hygiene=hook) as engine:
        engine.record_many(
            {"recipient": "warm@example.com", "reply": text, "message_id": f"warm{i}"}
            for i, (text, _) in enumerate(bench_record.REPLIES)
        )
        hook_cpu[0] = 0.0
        started = time.perf_counter()
        result = engine.record_many(bench_record.events(n, per_second))
        elapsed = time.perf_counter() - started
    if result.recorded != n:
        raise SystemExit(f"record_many recorded {result.recorded} of {n}")
    return elapsed, hook_cpu[0]


def build_traffic(path: Path, per_second: float, hours: float) -> str:
    """A store holding `hours` of the bench's mix of results at bench_record's domains and
    addresses, `per_second` events a second up to bench_record.START, already evaluated (the
    bookmark at its last event): the history a sender's live traffic is recorded on top of.
    Returns the URL."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    n = max(1, int(per_second * hours * 3600))
    start = bench_record.START - timedelta(hours=hours)
    domains, recipients = bench_record.DOMAINS, TRAFFIC_RECIPIENTS
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    with db:
        db.executemany(_INSERT_RECIPIENT, _recipient_rows(start, domains, recipients))
        db.executemany(
            _INSERT_EVENT,
            _event_rows(random.Random(11), 1, start, hours / 24, n, domains, recipients),
        )
        db.execute(
            "INSERT INTO bookmarks (name, value, updated_at) VALUES (?, ?, ?)",
            (hygiene_store.BOOKMARK, str(n), bench_record.START.strftime(_FMT)),
        )
    db.execute("ANALYZE")
    db.close()
    count_minutes(url)
    return url


#: Addresses of the traffic histories: those bench_record.events gives the new events (its
#: n / 4, user0 up) are among them.
TRAFFIC_RECIPIENTS = 50_000


def build_burst(path: Path, bounces: int, addresses: int | None = None) -> tuple[str, datetime]:
    """A store holding one domain incident: `bounces` hard bounces from as many addresses at
    one domain within an hour, after a tenth as many deliveries there; with `addresses`, the
    bounces come from that many addresses in turn (each bouncing again and again, which is no
    incident below the policy's count of addresses). Returns (url, now)."""
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    upgrade_schema(engine)
    engine.dispose()
    start = datetime(2026, 11, 1, 12, tzinfo=UTC)
    delivered = bounces // 10
    total = delivered + bounces
    recipients, events = [], []
    for i in range(total):
        local = i if addresses is None or i < delivered else delivered + (i - delivered) % addresses
        key = f"u{local}@broken.example"
        if i < delivered:
            at = start + timedelta(seconds=i)
            outcome, reason, fault, decisive = "delivered", "delivered", "unknown", 0
        else:
            at = start + timedelta(minutes=1) + (i - delivered) * timedelta(hours=1) / bounces
            outcome, reason, fault, decisive = "bounced", "user_unknown", "recipient", 1
        text = at.strftime(_FMT)
        if local == i:
            recipients.append((local + 1, key, key, "broken.example", "retrying", "undefined",
                               text, text, text))  # fmt: skip
        events.append((i + 1, f"e{i}", text, text, "reply", local + 1, "broken.example", f"m{i}",
                       1, outcome, reason, fault, "bench", decisive, "bench", 0))  # fmt: skip
    db = sqlite3.connect(path)
    with db:
        db.executemany(_INSERT_RECIPIENT, recipients)
        db.executemany(_INSERT_EVENT, events)
    db.close()
    count_minutes(url)
    return url, start + timedelta(hours=2)


def count_minutes(url: str) -> None:
    """The per-minute counts the engine writes beside its events (deliverability/store/
    minutes.py), for events these builders wrote with the raw driver."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            minutes.recount(conn)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--history", default="1000000,2000000", help="history sizes, comma separated"
    )
    parser.add_argument("--new", type=int, default=20_000, help="new events per nightly run")
    parser.add_argument(
        "--record", type=int, default=100_000, help="events for record_many (0: skip)"
    )
    parser.add_argument(
        "--burst",
        default="2000,8000",
        help="bounces in a domain incident, comma separated (0: skip)",
    )
    parser.add_argument(
        "--rounds",
        type=bench_record.rounds_count,
        default=3,
        help="rounds of the floor and record_many + hygiene, alternated (default 3)",
    )
    parser.add_argument(
        "--traffic",
        default="1,100",
        help="events a second of live traffic, comma separated (0: skip)",
    )
    parser.add_argument(
        "--traffic-hours", type=float, default=3.0, help="hours of history before the traffic"
    )
    parser.add_argument(
        "--traffic-new", type=int, default=20_000, help="new events recorded at each rate"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.history.split(",") if int(s)]
    rates = [float(s) for s in args.traffic.split(",") if float(s)]
    bursts = [int(s) for s in args.burst.split(",") if int(s)]
    print(f"load average {os.getloadavg()[0]:.1f}; SQLite files; one process")
    with tempfile.TemporaryDirectory(prefix="bench_hygiene_") as tmp:
        if args.record:
            n = args.record
            print(f"record_many, N = {n}, hygiene on every chunk")
            ratios = []
            for r in range(1, args.rounds + 1):
                # Alternated, each round on new files (bench_record._print_rounds says why).
                floor_db, record_db = Path(tmp) / f"floor{r}.db", Path(tmp) / f"record{r}.db"
                floor, _cpu, _driver = bench_record._floor_run(floor_db, n)
                mine, hook_cpu = record_many_with_hygiene(f"sqlite:///{record_db}", n)
                ratios.append(floor / mine)
                print(f"  round {r}:")
                print(f"  floor (sqlite3 executemany):  {n / floor:10.0f} events/s")
                print(f"  record_many + hygiene:        {n / mine:10.0f} events/s")
                print(f"  ratio record_many / floor:    {floor / mine:10.2f}")
                print(f"  of which the hook (CPU):      {hook_cpu:10.2f} s of {mine:.2f} s")
                bench_record.remove_store(floor_db)
                bench_record.remove_store(record_db)
            print(
                f"  median ratio over {len(ratios)} rounds:"
                f" {statistics.median(ratios):10.2f}   (target >= 0.4)"
            )
        if rates:
            print(
                f"record_many + hygiene on live traffic: {args.traffic_hours:g} h of history at"
                f" a rate, then {args.traffic_new} new events at the same rate"
            )
        hook_costs: list[float] = []
        for rate in rates:
            path = Path(tmp) / f"traffic{rate:g}.db"
            url = build_traffic(path, rate, args.traffic_hours)
            mine, hook_cpu = record_many_with_hygiene(url, args.traffic_new, rate)
            hook_costs.append(hook_cpu / args.traffic_new)
            print(
                f"  {rate:>7g} events/s: record_many + hygiene {args.traffic_new / mine:8.0f}"
                f" events/s; the hook {hook_costs[-1] * 1e6:7.0f} us an event (CPU)"
            )
            path.unlink()
        if len(hook_costs) >= 2:
            print(
                f"  ratio of the hook's cost an event, {rates[-1]:g} / {rates[0]:g} events/s:"
                f" {hook_costs[-1] / hook_costs[0]:.2f}   (the cost should follow the new"
                " events, not the traffic inside the rules' windows)"
            )
        times: list[float] = []
        cpu_times: list[float] = []
        if sizes:
            print(f"nightly evaluation of {args.new} new events")
        for size in sizes:
            path = Path(tmp) / f"history{size}.db"
            started = time.perf_counter()
            url, now, bookmark = build_store(path, size, args.new)
            built = time.perf_counter() - started
            floor = read_new_events(path, bookmark)
            runs, cpus, result = nightly(url, now)
            elapsed = min(runs)
            times.append(elapsed)
            cpu_times.append(min(cpus))
            print(
                f"  history {size:>9} events (built in {built:5.1f} s): evaluate {elapsed:6.2f} s"
                f" (best of {len(runs)}; first {runs[0]:.2f} s; CPU {min(cpus):.2f} s)"
                f" = {elapsed / floor:6.1f} x the floor ({floor * 1000:.0f} ms to read the new"
                f" events); raised {result.raised}, refreshed {result.refreshed},"
                f" expired {result.expired}"
            )
            path.unlink()
        if len(times) >= 2:
            print(
                f"  ratio {sizes[-1]} / {sizes[0]}: {times[-1] / times[0]:.2f}   (target <= 1.3;"
                f" CPU time ratio {cpu_times[-1] / cpu_times[0]:.2f})"
            )
        burst_times: list[float] = []
        if bursts:
            print("full evaluation of a domain incident (hard bounces at one domain in an hour)")
        few = load_policy(None).hygiene.incident_addresses // 2
        for bounces in bursts:
            for addresses in (None, few):
                path = Path(tmp) / f"burst{bounces}.db"
                url, now = build_burst(path, bounces, addresses)
                floor = read_new_events(path, 0)
                runs, _cpus, result = nightly(url, now, full=True)
                elapsed, raised = min(runs), result.raised
                if addresses is None:
                    burst_times.append(elapsed)
                    shape = f"{bounces:>7} bounces"
                else:
                    shape = f"{bounces:>7} bounces from {addresses} addresses"
                print(
                    f"  {shape}: evaluate {elapsed:6.2f} s (best of {REPEATS})"
                    f" = {elapsed / floor:6.1f} x the floor ({floor * 1000:.0f} ms to read its"
                    f" events); raised {raised}"
                )
                path.unlink()
        if len(burst_times) >= 2:
            grew, took = bursts[-1] / bursts[0], burst_times[-1] / burst_times[0]
            print(
                f"  ratio {bursts[-1]} / {bursts[0]} bounces: {took:.2f}"
                f" for {grew:.1f} times the bounces (its square: {grew**2:.0f})"
            )


if __name__ == "__main__":
    main()
