"""Eight sender processes record at the same time into one store, on every backend.

Each process records its own events (5,000, the issue's size; see EVENTS_PER_WRITER)
through `Engine.record_many`, on the same 240 addresses at the same 12 destinations as all the
others, and a tenth of its events are also recorded by every other process (a mailer log read
twice, a reply reported by two hosts). Afterwards:

- no event is stored twice, and exactly the distinct events are stored;
- every recipient's counters equal what its stored events add up to;
- no hygiene action is duplicated (one open action per kind and target);
- every standing, counter and action is what a serial replay of the same events, in time order,
  into a fresh SQLite store gives.

The addresses are live (deliveries) or gone (hard and bare 550s), never both, as real mailboxes
are: a bounce dated before a delivery that was recorded first is stale and suppresses nothing
(docs/hygiene.md, "Stale bounces"), so on an address that had both, which of them a writer
recorded first would decide its suppression, and no serial replay could match the race.

The processes are separate interpreters (this file run as a script), started together through
their standard input, so the test waits on them, never on a timer.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

#: The issue's size, 8 x 5,000: 15-25 s per backend on this 2-core machine since the bulk paths
#: write a chunk per statement (docs/scaling.md). Smaller for a quick local run:
#: DELIVERABILITY_MANY_WRITERS_EVENTS=300 pytest tests/test_many_writers.py
WRITERS = int(os.environ.get("DELIVERABILITY_MANY_WRITERS", "8"))
EVENTS_PER_WRITER = int(os.environ.get("DELIVERABILITY_MANY_WRITERS_EVENTS", "5000"))
SHARED_PER_WRITER = EVENTS_PER_WRITER // 10
ADDRESSES = 240
DOMAINS = 12
#: Every process records with this clock, so "now" is the same in every run.
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
START = NOW - timedelta(days=20)

#: Replies in the mix: deliveries, hard and ambiguous bounces, soft failures, push-back and
#: blocks, so hygiene raises suppressions, throttles and alerts while the writers race.
TRANSIENT = (
    "452 4.2.2 The email account that you tried to reach is over quota",
    "421 4.7.0 Try again later, closing connection",
    "451 4.3.0 Temporary local problem",
)
BLOCKED = "550 5.7.1 Message rejected due to content policy"
#: The results of a live address (one in GONE_EVERY is gone: `GONE_REPLIES`).
REPLIES = (
    "250 2.0.0 OK queued",
    "250 2.0.0 OK queued",
    "250 2.0.0 OK queued",
    "250 2.0.0 OK queued",
    BLOCKED,
    *TRANSIENT,
)
GONE_REPLIES = (
    "550 5.1.1 The email account that you tried to reach does not exist",
    "550 Requested action not taken: mailbox unavailable",
    BLOCKED,
    *TRANSIENT,
)
GONE_EVERY = 4


def _address(n: int) -> str:
    return f"user{n % ADDRESSES}@dest{n % DOMAINS}.example"


def event(g: int) -> dict[str, Any]:
    """The g-th event of the whole history: deterministic, one second apart in time. Two
    consecutive events are two attempts at one message (a deferral, then any result), and
    consecutive numbers go to different writers, so one delivery is often written by two
    processes, in either order."""
    digest = int.from_bytes(hashlib.sha256(str(g).encode()).digest()[:4], "big")
    message = g // 2
    gone = (message * 7) % ADDRESSES % GONE_EVERY == 0
    replies = TRANSIENT if g % 2 == 0 else GONE_REPLIES if gone else REPLIES
    return {
        "recipient": _address(message * 7),
        "message_id": f"<m{message}@sender.example>",
        "attempt": 1 + g % 2,
        "reply": replies[digest % len(replies)],
        "at": (START + timedelta(seconds=g)).isoformat(),
        "source": "many-writers",
    }


def writer_events(writer: int) -> list[dict[str, Any]]:
    """What one writer records, in time order: its own events interleaved with the others'
    (event g belongs to writer g % WRITERS), plus the shared block every writer records."""
    own = EVENTS_PER_WRITER - SHARED_PER_WRITER
    shared_base = WRITERS * own
    numbers = [i * WRITERS + writer for i in range(own)]
    numbers += [shared_base + i for i in range(SHARED_PER_WRITER)]
    return [event(g) for g in sorted(numbers)]


def all_distinct_events() -> list[dict[str, Any]]:
    own = EVENTS_PER_WRITER - SHARED_PER_WRITER
    return [event(g) for g in range(WRITERS * own + SHARED_PER_WRITER)]


def fixed_now() -> datetime:
    return NOW


def _worker(url: str, writer: int) -> None:
    """Run as a script: open the store, say ready, wait for "go", record, report."""
    from deliverability.engine import Engine

    items = writer_events(writer)
    engine = Engine(url, clock=fixed_now)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected go")
    started = time.perf_counter()
    result = engine.record_many(items)
    elapsed = time.perf_counter() - started
    engine.close()
    print(json.dumps({"writer": writer, "seconds": elapsed, **result.as_dict()}), flush=True)


if __name__ == "__main__":
    _worker(sys.argv[1], int(sys.argv[2]))
    raise SystemExit(0)


# --------------------------------------------------------------------------------------------
# The test (imports kept below the worker entry so a worker starts fast).

import pytest  # noqa: E402
from sqlalchemy import Engine as SAEngine  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from deliverability.store.models import Action, Delivery, Event, Recipient  # noqa: E402
from deliverability.store.session import create_engine  # noqa: E402
from deliverability.vocabulary import ActionStatus  # noqa: E402

COUNTERS = (
    "events_count",
    "delivered_count",
    "deferred_count",
    "bounced_count",
    "blocked_count",
    "complained_count",
    "expired_count",
)


def _shorten(text: str) -> str:
    """A traceback without the pages of bound parameters SQLAlchemy appends."""
    lines = [line[:300] for line in text.splitlines()]
    return "\n".join(lines[-40:])


def run_writers(url: str, timeout: float = 600) -> list[dict[str, Any]]:
    """Start the writers, let them all go at once, and collect their reports."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, url, str(w)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(WRITERS)
    ]
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            assert line == "ready", (
                f"writer did not start: {line!r} {p.stderr.read() if p.stderr else ''}"
            )
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = []
        deadline = time.monotonic() + timeout
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert p.returncode == 0, f"writer failed:\n{_shorten(err)}"
            reports.append(json.loads(out.strip().splitlines()[-1]))
        return reports
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def snapshot(engine: SAEngine) -> dict[str, Any]:
    """What must come out the same however the events were interleaved."""
    with engine.connect() as conn:
        recipients = {
            row.address_key: (
                row.standing.value,
                row.reason.value,
                *(getattr(row, c) for c in COUNTERS),
            )
            for row in conn.execute(select(Recipient))
        }
        deliveries = {
            (row.address_key, row.message_id): (row.state.value, row.attempt)
            for row in conn.execute(
                select(
                    Recipient.address_key, Delivery.message_id, Delivery.state, Delivery.attempt
                ).join(Recipient, Recipient.id == Delivery.recipient_id)
            )
        }
        actions = Counter(
            (row.kind.value, row.scope.value, row.target, row.status.value)
            for row in conn.execute(select(Action.kind, Action.scope, Action.target, Action.status))
        )
        events = conn.scalar(select(func.count()).select_from(Event))
    return {
        "recipients": recipients,
        "deliveries": deliveries,
        "actions": actions,
        "events": events,
    }


@pytest.mark.slow
def test_eight_writers_at_once_store_exactly_what_a_serial_replay_stores(
    db_url: str, tmp_path: Path
) -> None:
    from deliverability.engine import Engine

    Engine(db_url, clock=fixed_now).close()  # schema made once, before the race
    started = time.perf_counter()
    reports = run_writers(db_url)
    wall = time.perf_counter() - started
    distinct = all_distinct_events()

    # Every writer saw each of its items recorded or recognised as already there; none lost.
    assert all(r["rejected"] == 0 for r in reports), reports
    assert all(r["total"] == EVENTS_PER_WRITER for r in reports)
    assert sum(r["recorded"] for r in reports) == len(distinct)
    assert sum(r["duplicates"] for r in reports) == WRITERS * EVENTS_PER_WRITER - len(distinct)

    db = create_engine(db_url)
    try:
        raced = snapshot(db)
        with db.connect() as conn:
            keys_stored = conn.scalar(select(func.count(func.distinct(Event.key))))
            per_recipient = {
                row[0]: row[1]
                for row in conn.execute(
                    select(Recipient.address_key, func.count(Event.id))
                    .join(Event, Event.recipient_id == Recipient.id)
                    .group_by(Recipient.address_key)
                )
            }
            open_keys = Counter(
                conn.scalars(
                    select(Action.open_key).where(
                        Action.status.in_([ActionStatus.OPEN, ActionStatus.PENDING])
                    )
                )
            )
    finally:
        db.dispose()

    # No event twice; exactly the distinct ones.
    assert raced["events"] == keys_stored == len(distinct)
    # Counters add up to the stored events, recipient by recipient.
    assert {k: v[2] for k, v in raced["recipients"].items()} == per_recipient
    for key, (_, _, events_count, *by_outcome) in raced["recipients"].items():
        assert sum(by_outcome) == events_count, key
    # No open action twice.
    assert [k for k, n in open_keys.items() if n > 1] == []

    serial_url = f"sqlite:///{tmp_path / 'serial.db'}"
    with Engine(serial_url, clock=fixed_now) as serial:
        serial.record_many(distinct)
    serial_db = create_engine(serial_url)
    try:
        replayed = snapshot(serial_db)
    finally:
        serial_db.dispose()

    assert raced["events"] == replayed["events"]
    assert raced["deliveries"] == replayed["deliveries"]
    assert raced["recipients"] == replayed["recipients"]
    assert raced["actions"] == replayed["actions"]
    rate = WRITERS * EVENTS_PER_WRITER / wall
    backend = db_url.split(":")[0]
    print(f"\n{backend}: {WRITERS} x {EVENTS_PER_WRITER} events in {wall:.1f} s ({rate:.0f}/s)")
