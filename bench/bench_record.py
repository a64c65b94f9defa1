"""Benchmark: recording events through `Engine.record_many` against a raw sqlite3 floor.

    python bench/bench_record.py [--n 200000] [--memory-sizes 50000,200000] [--calls 300]
        [--rounds 3]
    python bench/bench_record.py --url postgresql+psycopg://user@host/scratch [--calls 300]

Prints, all measured in this run on SQLite files in a temporary directory:
- events/s through `record_many` (hygiene hook off: this measures the engine and the store);
- events/s of the statements `record_many` sent, replayed through the raw driver with none of
  the engine's Python: how much of its time is the store's SQL and how much its own work;
- events/s of the floor: the same history rows plus per-recipient upserts written with the
  `sqlite3` driver (executemany, one transaction, replies classified in advance for free);
- the ratio of the two (target: at least 0.5 at N = 200k), and, over `--rounds` rounds of the
  two alternated, each round's ratio and their median: the figure the target is read from;
- peak memory (max RSS of a fresh process) of `record_many` at two sizes, to show it is flat in N;
- the median and 95th percentile latency of single `record()` calls, with and without the
  hygiene hook, and the statements each call sends;
- with `--sender-chunks`, what a sender's `record()` calls in another process meet while
  `record_many` writes the same SQLite file in chunks of each size (each chunk a transaction
  holding SQLite's one write lock).

With `--url` it measures only the single `record()` calls, on that store (any backend): a
scratch database, since the calls write to it (their message ids are new in every run).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import event

if __package__ in (None, ""):
    # Run as a script (the memory runs start this file in a child process).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peak_memory import peak_rss_mib
from deliverability.addresses import normalize_address
from deliverability.classify import classify
from deliverability.engine import CHUNK_SIZE, Engine, event_key
from deliverability.ingest.records import normalize_message_id
from deliverability.policy import load_policy
from deliverability.replies import parse_reply
from deliverability.store.session import (
    SQLITE_CACHE_KIB,
    SQLITE_CHECKPOINT_PAGES,
    SQLITE_WAL_LIMIT_BYTES,
    create_engine,
    mask_url,
    upgrade_schema,
)

START = datetime(2026, 11, 1, tzinfo=UTC)
#: A realistic mix: mostly accepted, some deferred, a few hard bounces and blocks.
REPLIES: list[tuple[str, int]] = [
    ("250 2.0.0 OK 1700000000 q12si345 - gsmtp", 70),
    ("250 Ok: queued as 4XyZ1234", 10),
    ("452 4.2.2 The email account that you tried to reach is over quota", 4),
    ("421 4.7.0 Try again later, closing connection", 3),
    ("451 4.7.1 Greylisted, please try again in 300 seconds", 3),
    ("550 5.1.1 The email account that you tried to reach does not exist", 4),
    ("550 Requested action not taken: mailbox unavailable", 2),
    ("554 5.7.1 Service unavailable; Client host blocked using zen.spamhaus.org", 2),
    ("550 5.7.26 Unauthenticated email is not accepted from this domain", 1),
    ("553 5.1.3 Invalid recipient address syntax", 1),
]
DOMAINS = ["example.com", "example.org", "example.net", "mail.example", "corp.example"]


def _reply_cycle() -> list[str]:
    out: list[str] = []
    for text, weight in REPLIES:
        out.extend([text] * weight)
    return out


def events(n: int, per_second: float = 1.0) -> Iterator[dict[str, Any]]:
    """`n` log items: n/4 recipients, four messages (campaigns) each, one reply per delivery,
    `per_second` of them a second from START."""
    cycle = _reply_cycle()
    recipients = max(1, n // 4)
    for i in range(n):
        r = i % recipients
        campaign = i // recipients
        yield {
            "recipient": f"user{r}@{DOMAINS[r % len(DOMAINS)]}",
            "message_id": f"<c{campaign}.{r}@list.example>",
            "reply": cycle[(i * 7919) % len(cycle)],
            "at": (START + timedelta(seconds=i / per_second)).isoformat(),
        }


def _engine_run(url: str, n: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of record_many over `n` events, hygiene hook off."""
    clock = _Clock()
    with Engine(url, clock=clock, hygiene=False) as engine:
        # The floor gets its verdicts for free; classify each distinct reply once here too, so
        # both sides time the writing of events (a long-lived engine has them cached).
        engine.record_many(
            {"recipient": "warm@example.com", "reply": text, "message_id": f"warm{i}"}
            for i, (text, _) in enumerate(REPLIES)
        )
        t0, c0 = time.perf_counter(), time.process_time()
        result = engine.record_many(events(n))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    if result.recorded != n:
        raise SystemExit(f"record_many recorded {result.recorded} of {n}: {result.rejected[:3]}")
    return elapsed, cpu


class _Replay:
    """Runs every statement the engine sends, as it sends it, again on a second SQLite file
    through the raw `sqlite3` driver, and times only that: what the store's SQL costs with no
    Python of the engine's around it.

    Statements are kept per transaction and run at its commit (a transaction run again after
    a conflict is dropped at its rollback), so memory stays that of one chunk.
    """

    def __init__(self, path: Path) -> None:
        engine = create_engine(f"sqlite:///{path}")
        upgrade_schema(engine)
        engine.dispose()
        self.conn = sqlite3.connect(path, isolation_level=None)
        # The engine's own connection settings (deliverability/store/session.py).
        for pragma in (
            "journal_mode=WAL",
            "synchronous=NORMAL",
            f"wal_autocheckpoint={SQLITE_CHECKPOINT_PAGES}",
            f"journal_size_limit={SQLITE_WAL_LIMIT_BYTES}",
            "foreign_keys=ON",
            f"cache_size=-{SQLITE_CACHE_KIB}",
        ):
            self.conn.execute(f"PRAGMA {pragma}")
        self.pending: list[tuple[str, Any, bool]] = []
        self.seconds = 0.0
        self.cpu = 0.0
        self.on = False

    def attach(self, db: Any) -> None:
        event.listen(db, "before_cursor_execute", self._statement)
        event.listen(db, "commit", self._commit)
        event.listen(db, "rollback", self._rollback)

    def _statement(
        self, _conn: Any, _cursor: Any, sql: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        if self.on:
            self.pending.append((sql, params, many))

    def _rollback(self, _conn: Any) -> None:
        self.pending.clear()

    def _commit(self, _conn: Any) -> None:
        if not self.on:
            return
        pending, self.pending = self.pending, []
        conn = self.conn
        t0, c0 = time.perf_counter(), time.process_time()
        for sql, params, many in pending:
            if many:
                conn.executemany(sql, params)
            else:
                conn.execute(sql, params).fetchall()
        conn.execute("COMMIT")
        self.seconds += time.perf_counter() - t0
        self.cpu += time.process_time() - c0


def _replay_run(url: str, replay_path: Path, n: int) -> tuple[float, float]:
    """(wall, CPU) seconds the engine's own statements for `n` events take through the raw
    driver."""
    replay = _Replay(replay_path)
    clock = _Clock()
    with Engine(url, clock=clock, hygiene=False) as engine:
        replay.attach(engine.db)
        # The warm-up is replayed too (the replayed file then holds the same rows under the
        # same ids), but not timed.
        replay.on = True
        engine.record_many(
            {"recipient": "warm@example.com", "reply": text, "message_id": f"warm{i}"}
            for i, (text, _) in enumerate(REPLIES)
        )
        replay.seconds = replay.cpu = 0.0
        result = engine.record_many(events(n))
    replay.conn.close()
    if result.recorded != n:
        raise SystemExit(f"record_many recorded {result.recorded} of {n}")
    return replay.seconds, replay.cpu


class _Clock:
    def __call__(self) -> datetime:
        return START + timedelta(days=30)


class _TimedConnection(sqlite3.Connection):
    """Counts the seconds spent in the driver's calls, so the floor's own Python shows too."""

    driver_seconds = 0.0

    def execute(self, *args: Any) -> sqlite3.Cursor:
        t0 = time.perf_counter()
        try:
            return super().execute(*args)
        finally:
            self.driver_seconds += time.perf_counter() - t0

    def executemany(self, *args: Any) -> sqlite3.Cursor:
        t0 = time.perf_counter()
        try:
            return super().executemany(*args)
        finally:
            self.driver_seconds += time.perf_counter() - t0


def _floor_run(
    path: Path,
    n: int,
    deliveries: bool = False,
    plain_keys: bool = False,
    cache_kib: int | None = None,
) -> tuple[float, float, float]:
    """The same history rows and per-recipient upserts with the sqlite3 driver: (wall, CPU,
    wall seconds inside the driver's calls).

    The event rows are the ones record_many writes, key included: the message id without its
    angle brackets, and the idempotency key `engine.event_key` of the same message id, address,
    time and reply (a SHA-256 hex digest, the form every existing store keeps), computed here as
    a raw-driver program would. `main` checks that the floor's keys and message ids are exactly
    the engine's.

    With `deliveries`, also the per-message delivery rows (recipient x message) that the store
    keeps beside them: not part of the target's floor, printed to show how much of the gap is
    the third table rather than the engine's own work.

    With `plain_keys` the key is the plain text (message id, address, time) instead, as an
    earlier version of this benchmark wrote it: consecutive events then share long prefixes
    and their unique index takes them page by page, where a digest lands anywhere in it.
    Printed to show what the key's form costs: not the same rows, so not the target's floor.

    With `cache_kib`, the floor's connection keeps a page cache of that size, as the engine's
    do (`SQLITE_CACHE_KIB`), instead of the driver's default: printed beside the floor, so
    that what the engine's larger cache does for its ratio is in view.
    """
    engine = create_engine(f"sqlite:///{path}")
    upgrade_schema(engine)
    engine.dispose()
    policy = load_policy()
    verdicts = {}
    for text, _ in REPLIES:
        reply = parse_reply(text)
        verdicts[text] = (reply, classify(reply, policy))
    stamp = (START + timedelta(days=30)).replace(tzinfo=None).isoformat(" ")
    conn = sqlite3.connect(path, isolation_level=None, factory=_TimedConnection)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    if cache_kib is not None:
        conn.execute(f"PRAGMA cache_size=-{cache_kib}")
    t0, c0 = time.perf_counter(), time.process_time()
    conn.execute("BEGIN")
    upsert = (
        "INSERT INTO recipients (address, address_key, domain, standing, reason, standing_since,"
        " first_seen_at, last_event_at, events_count, delivered_count, deferred_count,"
        " bounced_count, blocked_count, complained_count, expired_count, last_code, last_status,"
        " last_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, 0, 0, ?, ?, ?)"
        " ON CONFLICT (address_key) DO UPDATE SET events_count = events_count + 1,"
        " delivered_count = delivered_count + excluded.delivered_count,"
        " deferred_count = deferred_count + excluded.deferred_count,"
        " bounced_count = bounced_count + excluded.bounced_count,"
        " blocked_count = blocked_count + excluded.blocked_count,"
        " standing = excluded.standing, reason = excluded.reason,"
        " last_event_at = excluded.last_event_at, last_code = excluded.last_code,"
        " last_status = excluded.last_status, last_text = excluded.last_text"
    )
    insert_event = (
        "INSERT INTO events (key, at, recorded_at, kind, recipient_id, domain, message_id,"
        " attempt, code, status, text, outcome, reason, fault, rule, decisive, throttle, source)"
        " VALUES (?, ?, ?, 'reply', ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'bench')"
    )
    upsert_delivery = (
        "INSERT INTO deliveries (recipient_id, message_id, domain, state, attempt,"
        " first_attempt_at, last_attempt_at, next_attempt_at, expires_at, reason, last_code,"
        " last_status, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?, NULL, NULL, ?, ?, ?, ?)"
        " ON CONFLICT (recipient_id, message_id) DO UPDATE SET state = excluded.state,"
        " attempt = attempt + 1, last_attempt_at = excluded.last_attempt_at,"
        " reason = excluded.reason, last_code = excluded.last_code,"
        " last_status = excluded.last_status, updated_at = excluded.updated_at"
    )
    ids: dict[str, int] = {}
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        rec_rows = []
        for e in chunk:
            reply, v = verdicts[e["reply"]]
            key = e["recipient"].lower()
            at = e["at"].replace("T", " ").replace("+00:00", "")
            o = v.outcome.value
            rec_rows.append(
                (
                    e["recipient"],
                    key,
                    key.rsplit("@", 1)[1],
                    "delivered" if o == "delivered" else "retrying",
                    v.reason.value,
                    at,
                    at,
                    at,
                    int(o == "delivered"),
                    int(o == "deferred"),
                    int(o == "bounced"),
                    int(o == "blocked"),
                    reply.code,
                    str(reply.status) if reply.status else None,
                    reply.text,
                )
            )
        conn.executemany(upsert, rec_rows)
        missing = [r[1] for r in rec_rows if r[1] not in ids]
        if missing:
            marks = ",".join("?" * len(missing))
            for rid, key in conn.execute(
                f"SELECT id, address_key FROM recipients WHERE address_key IN ({marks})", missing
            ):
                ids[key] = rid
        ev_rows = []
        for e, r in zip(chunk, rec_rows, strict=True):
            reply, v = verdicts[e["reply"]]
            message_id = normalize_message_id(e["message_id"])
            if plain_keys:
                key = f"{message_id}|{r[1]}|{e['at']}"
            else:
                key = event_key(message_id, r[1], None, datetime.fromisoformat(e["at"]), reply)
            ev_rows.append(
                (
                    key,
                    r[5],
                    stamp,
                    ids[r[1]],
                    r[2],
                    message_id,
                    reply.code,
                    r[13],
                    reply.text,
                    v.outcome.value,
                    v.reason.value,
                    v.fault.value,
                    v.rule,
                    int(v.decisive),
                    int(v.throttle),
                )
            )
        conn.executemany(insert_event, ev_rows)
        if deliveries:
            conn.executemany(
                upsert_delivery,
                [
                    (
                        ids[r[1]],
                        ev[5],
                        r[2],
                        verdicts[e["reply"]][1].outcome.value,
                        r[5],
                        r[5],
                        r[4],
                        r[12],
                        r[13],
                        stamp,
                    )
                    for e, r, ev in zip(chunk, rec_rows, ev_rows, strict=True)
                ],
            )
        chunk.clear()

    for e in events(n):
        chunk.append(e)
        if len(chunk) >= 1000:
            flush()
    if chunk:
        flush()
    conn.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    conn.close()
    return elapsed, cpu, conn.driver_seconds


def _keys_not_in_floor(engine_db: Path, floor_db: Path) -> int:
    """How many of the engine's event keys (each with its message id) the floor did not write
    (the warm-up's aside)."""
    conn = sqlite3.connect(engine_db)
    try:
        conn.execute("ATTACH DATABASE ? AS floor", (str(floor_db),))
        (count,) = conn.execute(
            "SELECT count(*) FROM events e WHERE e.recipient_id <> (SELECT id FROM recipients"
            " WHERE address_key = 'warm@example.com')"
            " AND NOT EXISTS (SELECT 1 FROM floor.events f WHERE f.key = e.key"
            " AND f.message_id = e.message_id)"
        ).fetchone()
    finally:
        conn.close()
    return int(count)


def _differing_rows(first: Path, second: Path) -> int:
    """Rows of events, recipients and deliveries in one file and not in the other: the replay
    must have written exactly what the engine did, or it timed something else."""
    conn = sqlite3.connect(first)
    try:
        conn.execute("ATTACH DATABASE ? AS other", (str(second),))
        total = 0
        for table in ("events", "recipients", "deliveries"):
            for a, b in (("main", "other"), ("other", "main")):
                (count,) = conn.execute(
                    f"SELECT count(*) FROM (SELECT * FROM {a}.{table}"
                    f" EXCEPT SELECT * FROM {b}.{table})"
                ).fetchone()
                total += int(count)
    finally:
        conn.close()
    return total


def rounds_count(text: str) -> int:
    """The argparse type of both record benchmarks' `--rounds`: a whole number, 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def remove_store(db: Path) -> None:
    """Delete a SQLite file and its log files: a round's files are not needed after it."""
    for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        path.unlink(missing_ok=True)


def _print_rounds(
    directory: Path, n: int, rounds: int, first: tuple[float, float, float, float]
) -> None:
    """More rounds of the floor and record_many, alternated, and the median ratio.

    On a shared machine one run of either side moves by a fifth from run to run (docs/api.md,
    "Speed"): a ratio of two single runs says as much about the neighbours as about the code.
    Alternating the two and taking the median of the rounds' ratios keeps a slow spell from
    deciding the figure. Each round writes new files and deletes them after."""
    results = [first]
    for r in range(2, rounds + 1):
        floor_db, engine_db = directory / f"floor_r{r}.db", directory / f"engine_r{r}.db"
        floor, floor_cpu, _ = _floor_run(floor_db, n)
        mine, mine_cpu = _engine_run(f"sqlite:///{engine_db}", n)
        results.append((floor, mine, floor_cpu, mine_cpu))
        remove_store(floor_db)
        remove_store(engine_db)
    print(f"  rounds, alternated (the first is the run above): {rounds}")
    for r, (floor, mine, floor_cpu, mine_cpu) in enumerate(results, start=1):
        print(
            f"    round {r}: floor {n / floor:8.0f}, record_many {n / mine:8.0f} events/s,"
            f" ratio {floor / mine:.2f} (CPU {floor_cpu / mine_cpu:.2f})"
        )
    wall = statistics.median(f / m for f, m, _, _ in results)
    cpu = statistics.median(fc / mc for _, _, fc, mc in results)
    print(
        f"  median ratio record_many / floor over {len(results)} rounds:"
        f" {wall:.2f} (CPU {cpu:.2f})   (target >= 0.5)"
    )


def _max_rss_mb() -> float:
    # Not ru_maxrss: a child keeps its parent's peak across fork and exec (bench/peak_memory.py).
    return peak_rss_mib()


def _memory_child(n: int, directory: str) -> None:
    url = f"sqlite:///{Path(directory) / f'mem{n}.db'}"
    # Open the store and policy first, so the baseline counts what any user of the API pays.
    Engine(url, hygiene=False).close()
    base = _max_rss_mb()
    _engine_run(url, n)
    print(json.dumps({"n": n, "baseline_mb": base, "peak_mb": _max_rss_mb()}))


#: The first calls of a latency run, which compile the engine's statements, are not timed.
_LATENCY_WARMUP = 10


def _latency(url: str, calls: int, hygiene: bool) -> tuple[float, float, float]:
    """(median, 95th percentile, statements per call) of `calls` single `record()` calls on a
    store holding the log items of `events(2000)`, each call a new reply to one of 50 recipients.

    The statements are those SQLAlchemy's cursor events see: a COPY on PostgreSQL is not one.
    """
    clock = _Clock()
    # New message ids in every run, so that a second run on a server's database records new
    # replies too instead of finding them recorded (a duplicate writes nothing).
    run = os.urandom(4).hex()
    statements = 0

    def count(*_args: Any) -> None:
        nonlocal statements
        statements += 1

    with Engine(url, clock=clock, hygiene=None if hygiene else False) as engine:
        engine.record_many(events(2000))
        cycle = _reply_cycle()
        times = []
        for i in range(_LATENCY_WARMUP + calls):
            if i == _LATENCY_WARMUP:
                event.listen(engine.db, "before_cursor_execute", count)
            times.append(_timed_record(engine, cycle, i, "lat", f"lat{i}.{run}", days=1))
        event.remove(engine.db, "before_cursor_execute", count)
    timed = sorted(times[_LATENCY_WARMUP:])
    return statistics.median(timed), _p95(timed), statements / len(timed)


def _timed_record(
    engine: Engine, cycle: list[str], i: int, name: str, message: str, days: int
) -> float:
    """Seconds of the `i`th `record()` call: a reply of `cycle` to one of 50 recipients named
    `name`, about the message `message`, dated `days` after START plus `i` seconds."""
    t0 = time.perf_counter()
    engine.record(
        f"{name}{i % 50}@{DOMAINS[i % len(DOMAINS)]}",
        cycle[(i * 31) % len(cycle)],
        message_id=f"<{message}@list.example>",
        at=START + timedelta(days=days, seconds=i),
    )
    return time.perf_counter() - t0


def _p95(timed: list[float]) -> float:
    """The 95th percentile of sorted `timed` (nearest rank)."""
    return timed[max(0, -(-len(timed) * 95 // 100) - 1)]


def _sender_child(url: str, stop: str) -> None:
    """A sender's process beside a batch: `record()` a new reply again and again until the file
    `stop` exists, then print each call's seconds (JSON)."""
    cycle = _reply_cycle()
    times = []
    with Engine(url, clock=_Clock(), hygiene=False) as engine:
        i = 0
        while not os.path.exists(stop):
            times.append(_timed_record(engine, cycle, i, "sender", f"sender{i}", days=2))
            if i == 0:
                Path(f"{stop}.ready").touch()
            i += 1
    print(json.dumps(times))


def _sender_waits(directory: Path, n: int, chunk: int) -> tuple[float, list[float]]:
    """`record_many` of `n` events in chunks of `chunk` while a sender's process calls
    `record()` on the same SQLite file: (the batch's wall seconds, the sender's call times).

    Each chunk is a transaction holding SQLite's one write lock; a sender's write waits for it.
    Not a throughput figure (two processes share the machine): what a sender meets."""
    url = f"sqlite:///{directory / f'sender_{chunk}.db'}"
    stop = directory / f"sender_{chunk}.stop"
    with Engine(url, clock=_Clock(), hygiene=False) as engine:
        engine.record_many(events(100))  # the schema exists before the sender opens it
    child = subprocess.Popen(
        [sys.executable, __file__, "--sender-child", url, "--dir", str(stop)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = Path(f"{stop}.ready")
        deadline = time.monotonic() + 60
        while not ready.exists():  # the sender's first call, before the batch starts
            if child.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the sender's process did not start")
            time.sleep(0.05)
        with Engine(url, clock=_Clock(), hygiene=False, chunk_size=chunk) as engine:
            t0 = time.perf_counter()
            engine.record_many(events(n))
            elapsed = time.perf_counter() - t0
    finally:
        stop.touch()
        out, _ = child.communicate(timeout=120)
    return elapsed, json.loads(out.strip().splitlines()[-1])


def _print_sender_waits(directory: Path, n: int, chunks: list[int]) -> None:
    print(f"a sender's record() calls beside record_many of {n} events (one SQLite file):")
    for chunk in chunks:
        elapsed, times = _sender_waits(directory, n, chunk)
        timed = sorted(times)
        p95 = _p95(timed)
        print(
            f"  chunks of {chunk:>6}: batch {n / elapsed:8.0f} events/s; {len(timed)} record()"
            f" calls, median {statistics.median(timed) * 1000:6.1f} ms, 95th percentile"
            f" {p95 * 1000:6.1f} ms, longest {timed[-1] * 1000:7.1f} ms"
        )


def _print_latency(urls: tuple[str, str], calls: int) -> None:
    """The single-call latency without, then with the hygiene hook (on `urls[0]`, `urls[1]`)."""
    for hygiene in (False, True):
        median, p95, statements = _latency(urls[hygiene], calls, hygiene)
        label = "with the hygiene hook" if hygiene else "without hygiene"
        print(
            f"single record() median latency, {label}: {median * 1000:6.2f} ms"
            f" (95th percentile {p95 * 1000:6.2f} ms, {statements:.1f} statements a call,"
            f" load average {os.getloadavg()[0]:.1f})"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="events to record (default 200k)")
    parser.add_argument(
        "--memory-sizes",
        default="",
        help="two sizes for the peak-memory runs, comma separated (default: n/4 and n)",
    )
    parser.add_argument("--calls", type=int, default=300, help="single record() calls to time")
    parser.add_argument(
        "--rounds",
        type=rounds_count,
        default=3,
        help="rounds of the floor and record_many, alternated, each on new files; the median"
        " ratio is the figure (default 3)",
    )
    parser.add_argument(
        "--url",
        help="time only single record() calls, on this store (a scratch database: they write)",
    )
    parser.add_argument(
        "--sender-chunks",
        default="",
        help="also time a sender's record() calls beside record_many in chunks of these sizes"
        " (comma separated; default: none)",
    )
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--sender-child", help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sender_child:
        _sender_child(args.sender_child, args.dir)
        return
    if args.memory_child:
        _memory_child(args.memory_child, args.dir)
        return
    if args.url:
        print(f"single record() calls on {mask_url(args.url)}")
        _print_latency((args.url, args.url), args.calls)
        return

    n = args.n
    sizes = (
        [int(s) for s in args.memory_sizes.split(",")] if args.memory_sizes else [max(1, n // 4), n]
    )
    with tempfile.TemporaryDirectory(prefix="bench_record_") as tmp:
        floor, floor_cpu, floor_sql = _floor_run(Path(tmp) / "floor.db", n)
        three, three_cpu, _ = _floor_run(Path(tmp) / "floor3.db", n, deliveries=True)
        plain, plain_cpu, _ = _floor_run(Path(tmp) / "floor_plain.db", n, plain_keys=True)
        cached, cached_cpu, _ = _floor_run(
            Path(tmp) / "floor_cache.db", n, cache_kib=SQLITE_CACHE_KIB
        )
        mine, mine_cpu = _engine_run(f"sqlite:///{Path(tmp) / 'engine.db'}", n)
        sql, sql_cpu = _replay_run(
            f"sqlite:///{Path(tmp) / 'replayed.db'}", Path(tmp) / "replay.db", n
        )
        if _differing_rows(Path(tmp) / "replayed.db", Path(tmp) / "replay.db"):
            raise SystemExit("the replay did not write the engine's rows")
        missing = _keys_not_in_floor(Path(tmp) / "engine.db", Path(tmp) / "floor.db")
        if missing:
            raise SystemExit(f"the floor did not write the engine's rows: {missing} keys differ")
        print(f"N = {n} events, SQLite file, one process (load average {os.getloadavg()[0]:.1f})")
        print("                                              wall events/s   CPU events/s")
        print(
            f"  floor (sqlite3 executemany, 1 transaction): {n / floor:12.0f} {n / floor_cpu:14.0f}"
        )
        print(
            "    (the same event rows, keys and message ids checked equal, and the recipient"
            " upserts)"
        )
        print(
            f"  record_many (chunks of {CHUNK_SIZE}, no hygiene):   {n / mine:12.0f}"
            f" {n / mine_cpu:14.0f}"
        )
        print(
            f"  ratio record_many / floor:                  {floor / mine:12.2f}"
            f" {floor_cpu / mine_cpu:14.2f}   (round 1 below)"
        )
        print("  where record_many's time goes: its own statements (every one it sent, as sent)")
        print("  replayed through the sqlite3 driver with no Python of the engine's around them")
        print(f"  (sqlite3, the engine's SQL alone):          {n / sql:12.0f} {n / sql_cpu:14.0f}")
        print(
            f"  ratio that / floor (the most this SQL allows): {floor / sql:9.2f}"
            f" {floor_cpu / sql_cpu:14.2f}"
        )
        print(
            f"  record_many's time outside that SQL: {(mine - sql) / n * 1e6:6.1f} us/event"
            f" ({(mine - sql) / mine:.0%}); at the target it would have"
            f" {(2 * floor - sql) / n * 1e6:.1f} us/event"
        )
        print(
            f"  (the floor's own Python, outside its driver calls: reading the items, making the"
            f" keys and rows: {(floor - floor_sql) / n * 1e6:.1f} us/event)"
        )
        print("  for comparison, not the target's floor: the floor plus the delivery rows")
        print(
            "  (sqlite3, events + recipients + deliveries):"
            f" {n / three:12.0f} {n / three_cpu:14.0f}"
        )
        print(
            f"  ratio record_many / that:                   {three / mine:12.2f}"
            f" {three_cpu / mine_cpu:14.2f}"
        )
        print("  for comparison, not the same rows: the floor with plain-text keys (message id,")
        print("  address, time), which its unique index takes in order")
        print(
            "  (sqlite3, events + recipients, plain keys): "
            f" {n / plain:12.0f} {n / plain_cpu:14.0f}"
        )
        print(
            f"  ratio record_many / that:                   {plain / mine:12.2f}"
            f" {plain_cpu / mine_cpu:14.2f}"
        )

        print(
            f"  for comparison: the floor with the engine's page cache ({SQLITE_CACHE_KIB} KiB,"
            " where the driver's"
        )
        print("  default is 2,000): the same rows, its one transaction spilling fewer pages")
        print(
            "  (sqlite3, events + recipients, that cache):"
            f" {n / cached:12.0f} {n / cached_cpu:14.0f}"
        )
        print(
            f"  ratio record_many / that:                   {cached / mine:12.2f}"
            f" {cached_cpu / mine_cpu:14.2f}"
        )

        _print_rounds(Path(tmp), n, args.rounds, (floor, mine, floor_cpu, mine_cpu))

        print("peak memory of record_many (max RSS of a fresh process):")
        for size in sizes:
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(size), "--dir", tmp],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONHASHSEED": "0"},
            )
            data = json.loads(out.stdout.strip().splitlines()[-1])
            growth = data["peak_mb"] - data["baseline_mb"]
            print(
                f"  N = {size:>8}: peak {data['peak_mb']:7.1f} MB"
                f" (after opening the engine {data['baseline_mb']:6.1f} MB, +{growth:5.1f} MB)"
            )

        _print_latency(
            (f"sqlite:///{Path(tmp) / 'latency0.db'}", f"sqlite:///{Path(tmp) / 'latency1.db'}"),
            args.calls,
        )
        if args.sender_chunks:
            _print_sender_waits(Path(tmp), n, [int(c) for c in args.sender_chunks.split(",")])


if __name__ == "__main__":
    normalize_address("warm@example.com")
    main()
