"""Benchmark: the store at scale on PostgreSQL: reports, nightly hygiene, prune, recording.

    python -m bench.bench_scale [--events 1000000] [--url postgresql+psycopg://...]

Builds (drops and re-creates) the database named by the URL (default:
DELIVERABILITY_BENCH_POSTGRES_URL, else a local `deliverability_scale`), makes the schema with the
migrations, and fills it server-side (generate_series) with EVENTS events over 180 days for
EVENTS/20 recipients at 500 domains, with a realistic outcome mix, and one delivery per event.
Then it times, each as a `deliverability` command in a fresh process like a cron job runs it:

- report domains / codes / undeliverable over the last 30 days, report reputation;
- nightly --full (list hygiene re-evaluated over the whole history; no new input);
- prune --older-than 90d --dry-run, then the real prune;
- record_many of 10,000 new events into the full table (hygiene on).

Each command's time includes starting Python and importing the package: the first line, `--help`
alone, is that part. Figures are printed as each command ends; a command that runs past
`--timeout` is stopped and shown as such. `--reuse` keeps a database an earlier run filled with
the same number of events (the fill alone takes long at 10M), and then skips the prune, which
would change it. The floor is a full sequential scan of `events` (SELECT count(*) with
parallel workers off), measured in the same run: each figure is printed in seconds and as a
multiple of the floor.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import make_url, text
from sqlalchemy.pool import NullPool

from bench.bench_postgres import fresh_database
from bench.bench_record import events
from deliverability.engine import Engine
from deliverability.store import minutes
from deliverability.store.session import create_engine, upgrade_schema

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/deliverability_scale"
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
DOMAINS = 500

# Outcome mix by event number modulo 100: 88 delivered, 7 deferred, 3 bounced, 2 blocked.
FILL_SQL = """
INSERT INTO recipients (address, address_key, domain, standing, reason, standing_since,
    first_seen_at, last_event_at, events_count, delivered_count, deferred_count, bounced_count,
    blocked_count, complained_count, expired_count)
SELECT 'user' || r || '@d' || (r % :domains) || '.example',
       'user' || r || '@d' || (r % :domains) || '.example',
       'd' || (r % :domains) || '.example',
       CASE WHEN r % 50 = 0 THEN 'suppressed' ELSE 'delivered' END,
       CASE WHEN r % 50 = 0 THEN 'user_unknown' ELSE 'delivered' END,
       :start, :start, :now, 20, 18, 1, 1, 0, 0, 0
FROM generate_series(1, :recipients) AS r;

INSERT INTO events (key, at, recorded_at, kind, recipient_id, domain, message_id, attempt, code,
    status, text, outcome, reason, fault, rule, decisive, throttle, source)
SELECT md5(g::text) || md5((g * 7)::text),
       :start + make_interval(secs => g::float8 * :span / :events),
       :start + make_interval(secs => g::float8 * :span / :events),
       'reply', 1 + g % :recipients, 'd' || ((1 + g % :recipients) % :domains) || '.example',
       '<c' || (g / :recipients) || '@list.example>', 1,
       CASE WHEN g % 100 < 88 THEN 250 WHEN g % 100 < 95 THEN 451 WHEN g % 100 < 98 THEN 550
            ELSE 554 END,
       CASE WHEN g % 100 < 88 THEN '2.0.0' WHEN g % 100 < 95 THEN '4.3.0'
            WHEN g % 100 < 98 THEN '5.1.1' ELSE '5.7.1' END,
       'bench',
       CASE WHEN g % 100 < 88 THEN 'delivered' WHEN g % 100 < 95 THEN 'deferred'
            WHEN g % 100 < 98 THEN 'bounced' ELSE 'blocked' END,
       CASE WHEN g % 100 < 88 THEN 'delivered' WHEN g % 100 < 95 THEN 'system_error'
            WHEN g % 100 < 98 THEN 'user_unknown' ELSE 'policy_violation' END,
       CASE WHEN g % 100 < 88 THEN 'unknown' WHEN g % 100 < 95 THEN 'destination'
            WHEN g % 100 < 98 THEN 'recipient' ELSE 'sender' END,
       'bench', g % 100 BETWEEN 95 AND 97, false, 'bench'
FROM generate_series(1, :events) AS g;

INSERT INTO deliveries (recipient_id, message_id, domain, state, attempt, first_attempt_at,
    last_attempt_at, reason, updated_at)
SELECT DISTINCT ON (recipient_id, message_id) recipient_id, message_id, domain,
       CASE WHEN outcome = 'deferred' THEN 'delivered' ELSE outcome END, 1, at, at, reason, at
FROM events ORDER BY recipient_id, message_id, at DESC;

UPDATE recipients r SET last_event_id = e.id, last_event_at = e.at
FROM (SELECT DISTINCT ON (recipient_id) recipient_id, id, at FROM events
      ORDER BY recipient_id, at DESC) e
WHERE e.recipient_id = r.id;
"""


def _fill(address: str, n: int) -> float:
    engine = create_engine(address)
    upgrade_schema(engine)
    start = NOW - timedelta(days=180)
    params = {
        "domains": DOMAINS,
        "recipients": max(1, n // 20),
        "events": n,
        "start": start,
        "now": NOW,
        "span": int(timedelta(days=180).total_seconds()),
    }
    started = time.perf_counter()
    with engine.begin() as conn:
        for statement in FILL_SQL.split(";\n"):
            if statement.strip():
                conn.execute(text(statement), params)
        # The per-minute counts the engine writes beside its events (store/minutes.py).
        minutes.recount(conn)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def _filled_with(address: str) -> int | None:
    """How many events the database holds, or None when it cannot be read."""
    try:
        engine = sa_create_engine(address, poolclass=NullPool)
        with engine.connect() as conn:
            count = int(conn.execute(text("SELECT count(*) FROM events")).scalar_one())
        engine.dispose()
    except Exception:
        return None
    return count


def _floor(address: str) -> float:
    engine = create_engine(address)
    best = float("inf")
    with engine.connect() as conn:
        conn.execute(text("SET max_parallel_workers_per_gather = 0"))
        for _ in range(3):
            started = time.perf_counter()
            conn.execute(text("SELECT count(*) FROM events")).scalar_one()
            best = min(best, time.perf_counter() - started)
    engine.dispose()
    return best


def _command(address: str, *args: str, timeout: float | None = None) -> float | None:
    """Seconds the command took in a fresh process; None when it ran past `timeout`."""
    env = {**os.environ, "DELIVERABILITY_DATABASE_URL": address}
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from deliverability.cli import main; main()", *args],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return None
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"deliverability {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return elapsed


def _record(address: str, n: int) -> float:
    later = NOW + timedelta(days=1)
    with Engine(address, clock=lambda: later) as engine:
        items = [
            {**item, "recipient": "new-" + item["recipient"], "at": later.isoformat()}
            for item in events(n)
        ]
        started = time.perf_counter()
        engine.record_many(items)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--url", default=os.environ.get("DELIVERABILITY_BENCH_POSTGRES_URL", DEFAULT_URL)
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="stop a command after this many seconds"
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep a database already filled with --events"
    )
    args = parser.parse_args(argv)
    url = make_url(args.url)
    address = url.render_as_string(hide_password=False)
    fill: float | None = None
    if not (args.reuse and _filled_with(address) == args.events):
        try:
            fresh_database(url)
        except Exception as err:
            print(f"bench_scale: cannot use {url.render_as_string(hide_password=True)}: {err}")
            return 2
        fill = _fill(address, args.events)
    floor = _floor(address)
    print(
        f"PostgreSQL, {args.events:,} events, {args.events // 20:,} recipients, {DOMAINS} domains",
        flush=True,
    )
    if fill is not None:
        print(f"  fill (server-side generate_series + VACUUM ANALYZE)  {fill:8.1f} s", flush=True)
    else:
        print("  fill: reused the database of an earlier run", flush=True)
    print(f"  floor: sequential scan of events                      {floor:8.2f} s", flush=True)
    now = NOW.isoformat()
    since = (NOW - timedelta(days=30)).date().isoformat()
    commands = [
        ("process start alone (--help)", ("--help",)),
        ("report domains (30 days)", ("report", "domains", "--since", since, "--now", now,
                                      "--format", "csv")),
        ("report codes (30 days)", ("report", "codes", "--since", since, "--now", now,
                                    "--format", "csv")),
        ("report undeliverable (30 days)", ("report", "undeliverable", "--since", since,
                                            "--now", now, "--format", "csv")),
        ("report reputation", ("report", "reputation", "--now", now, "--format", "csv")),
        ("nightly --full", ("nightly", "--full", "--now", now)),
        ("prune --older-than 90d --dry-run", ("prune", "--older-than", "90d", "--dry-run",
                                              "--now", now)),
    ]  # fmt: skip
    if not args.reuse:
        commands.append(("prune --older-than 90d", ("prune", "--older-than", "90d", "--now", now)))
    for name, command in commands:
        seconds = _command(address, *command, timeout=args.timeout)
        if seconds is None:
            print(f"  {name:<40} stopped after {args.timeout:.0f} s", flush=True)
        else:
            print(f"  {name:<40} {seconds:8.1f} s   {seconds / floor:8.1f} x floor", flush=True)
    if args.reuse:
        print("  (prune and record_many skipped with --reuse: they would change the database)")
        return 0
    record = _record(address, 10_000)
    print(f"  record_many 10,000 events into the full table   {record:8.1f} s  "
          f"({10_000 / record:,.0f} events/s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
