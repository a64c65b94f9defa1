"""Benchmark: `Engine.record_many` on PostgreSQL against a raw psycopg COPY of the same rows.

    python -m bench.bench_postgres [--n 50000] [--url postgresql+psycopg://postgres@127.0.0.1/x]
    python -m bench.run postgres

The URL (default: DELIVERABILITY_BENCH_POSTGRES_URL, else the local test server) names a server
and a database name; the benchmark drops and re-creates that database. In one run it measures:

- record_many: N events (the log items of bench_record: n/4 recipients, four messages each, a
  realistic reply mix) through the engine with the hygiene hook off, then again on a fresh
  database with it on;
- the floor: the very `events` rows record_many wrote, read back and written with psycopg's
  COPY FROM STDIN into an empty table with the same columns and indexes (`LIKE events INCLUDING
  ALL`), in one transaction: the least any writer of that history can do;
- the ratio record_many / COPY in events per second (target: at least 0.5 with hygiene off);
- for comparison, COPY of every row record_many wrote, in all three tables the store keeps
  (events, deliveries, recipients): what writing the store's rows costs before any engine work.

Exits 1 when the target is missed, 2 when PostgreSQL cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import URL, make_url, text
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.pool import NullPool

from bench.bench_record import REPLIES, events
from deliverability.engine import Engine

TARGET = 0.5
DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/deliverability_bench"
START = datetime(2026, 11, 1, tzinfo=UTC)


def _fixed_now() -> datetime:
    return START + timedelta(days=30)


def fresh_database(url: URL) -> None:
    admin = sa_create_engine(
        url.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    finally:
        admin.dispose()


def _record_many(url: URL, n: int, *, hygiene: bool) -> float:
    """Seconds `record_many` takes for `n` events on a fresh database."""
    fresh_database(url)
    address = url.render_as_string(hide_password=False)
    with Engine(address, clock=_fixed_now, hygiene=None if hygiene else False) as engine:
        # Classify each distinct reply once first: the floor gets its verdicts for free, and a
        # long-lived sender's engine has them cached.
        engine.record_many(
            {"recipient": "warm@example.com", "reply": reply, "message_id": f"warm{i}"}
            for i, (reply, _) in enumerate(REPLIES)
        )
        started = time.perf_counter()
        result = engine.record_many(events(n))
        elapsed = time.perf_counter() - started
    if result.recorded != n:
        raise SystemExit(f"record_many recorded {result.recorded} of {n}: {result.rejected[:3]}")
    return elapsed


def _copy_floor(url: URL, tables: tuple[str, ...] = ("events",)) -> tuple[float, int]:
    """(seconds, event rows) to COPY the rows record_many wrote to `tables` into empty twins of
    them (`LIKE ... INCLUDING ALL`: same columns and indexes), in one transaction."""
    import psycopg

    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as conn:
        work: list[tuple[str, str, list[tuple[Any, ...]]]] = []
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}_floor")
            conn.execute(f"CREATE TABLE {table}_floor (LIKE {table} INCLUDING ALL)")
            columns = [
                row[0]
                for row in conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_name = %s AND column_name <> 'id' ORDER BY ordinal_position",
                    (table,),
                )
            ]
            names = ", ".join(f'"{c}"' for c in columns)
            work.append((table, names, list(conn.execute(f"SELECT {names} FROM {table}"))))
        conn.commit()
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            for table, names, rows in work:
                with cur.copy(f"COPY {table}_floor ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        elapsed = time.perf_counter() - started
        for table in tables:
            conn.execute(f"DROP TABLE {table}_floor")
    return elapsed, len(work[0][2])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000, help="events to record (default 50000)")
    parser.add_argument(
        "--url",
        default=os.environ.get("DELIVERABILITY_BENCH_POSTGRES_URL", DEFAULT_URL),
        help="PostgreSQL URL; its database is dropped and re-created",
    )
    args = parser.parse_args(argv)
    url = make_url(args.url)
    shown = url.render_as_string(hide_password=True)
    try:
        fresh_database(url)
    except Exception as err:
        first = str(err).strip().splitlines()[0]
        print(f"bench_postgres: cannot use {shown}: {first}", file=sys.stderr)
        return 2

    with_hygiene = _record_many(url, args.n, hygiene=True)
    without = _record_many(url, args.n, hygiene=False)
    floor, rows = _copy_floor(url)
    all_three, _ = _copy_floor(url, ("events", "deliveries", "recipients"))
    if rows != args.n + len(REPLIES):
        raise SystemExit(f"expected {args.n + len(REPLIES)} event rows, found {rows}")

    rate = args.n / without
    rate_hygiene = args.n / with_hygiene
    floor_rate = rows / floor
    ratio = rate / floor_rate
    print(f"PostgreSQL at {shown}, {args.n} events ({args.n // 4} recipients)")
    print(f"  floor: psycopg COPY of the same event rows   {floor_rate:>10,.0f} events/s")
    print(f"  record_many, hygiene off                      {rate:>10,.0f} events/s")
    print(f"  record_many, hygiene on                       {rate_hygiene:>10,.0f} events/s")
    print(f"  ratio record_many / COPY (hygiene off)        {ratio:>10.2f}   (target >= {TARGET})")
    print(f"  ratio record_many / COPY (hygiene on)         {rate_hygiene / floor_rate:>10.2f}")
    print("  for comparison, not the target's floor: COPY of every row record_many wrote, in the")
    print("  three tables the store keeps (events, deliveries, recipients):")
    print(f"  COPY of events + deliveries + recipients      {rows / all_three:>10,.0f} events/s")
    print(f"  ratio record_many / that (hygiene off)        {rate / (rows / all_three):>10.2f}")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
