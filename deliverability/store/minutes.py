"""Per-minute counts of each domain's events, written beside the events themselves.

The domain-incident rule (docs/hygiene.md) first rules out the bounces that cannot be an incident
from how many bounces and attempts each minute around them held at their domain. Counted from
`events`, that read every event at the domain from two incident windows before a bounce to one
after: on live traffic of 100 events a second, about a million index entries for every chunk the
sender recorded. `minute_counts` holds the same sums, a row or a few per domain and minute.

Rows are only ever appended: every chunk the engine writes appends one row for each (domain,
minute) its events fall in, and readers add up the rows of a minute (`MINUTES_BETWEEN`). An
upsert of one row per minute would make every writer to a busy domain wait on the others' row
lock until they commit; appended rows share nothing. `prune` appends the opposite of what it
deleted, then folds each minute it touched back into one row (`compact`).

The invariant, checked by the tests on every backend: for every domain and minute, the sum of its
rows equals what `recount_sql` counts from `events`. Anything that writes events by other means
than the engine (a test factory, a benchmark's bulk load, a migration) calls `recount` after.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection, Table

from deliverability.store.models import Event, MinuteCount
from deliverability.vocabulary import EventKind, Outcome

__all__ = [
    "ATTEMPT_OUTCOMES",
    "MINUTES_BETWEEN",
    "append",
    "compact",
    "is_attempt",
    "minute_of",
    "minute_sql",
    "recount",
    "tally",
]

#: The outcomes of a destination's reply to an attempt. An expiry (the sender giving up, stored
#: with outcome `deferred`) is none, as in the reports (`deliverability.reports`, *attempts*).
ATTEMPT_OUTCOMES = (Outcome.DELIVERED, Outcome.DEFERRED, Outcome.BOUNCED, Outcome.BLOCKED)
_ATTEMPT_VALUES = frozenset(o.value for o in ATTEMPT_OUTCOMES)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)

MINUTES = cast(Table, MinuteCount.__table__)
_EVENTS = cast(Table, Event.__table__)

#: Per domain and minute between `lo` and `hi` (both included, minutes since the epoch), of the
#: domains named: the `bounced` outcomes and the attempts, ordered by domain then minute.
MINUTES_BETWEEN = (
    sa.select(
        MINUTES.c.domain,
        MINUTES.c.minute,
        sa.func.sum(MINUTES.c.bounced),
        sa.func.sum(MINUTES.c.attempts),
    )
    .where(
        MINUTES.c.domain.in_(sa.bindparam("domains", expanding=True)),
        MINUTES.c.minute >= sa.bindparam("lo"),
        MINUTES.c.minute <= sa.bindparam("hi"),
    )
    .group_by(MINUTES.c.domain, MINUTES.c.minute)
    .order_by(MINUTES.c.domain, MINUTES.c.minute)
)


def minute_of(at: datetime) -> int:
    """Whole minutes since 1970-01-01 00:00 UTC: the minute an aware time falls in."""
    return (at - _EPOCH) // _MINUTE


def is_attempt(c: Any) -> sa.ColumnElement[bool]:
    """SQL: an event (of `c`, an events table's columns) that is a destination's reply to an
    attempt. An expiry (the sender giving up, stored with outcome `deferred`) is none, as in the
    reports (`deliverability.reports`, *attempts*). `_counts` says the same in Python."""
    return sa.and_(c.outcome.in_(ATTEMPT_OUTCOMES), c.kind != EventKind.EXPIRY)


def _counts(outcome: Any, kind: Any) -> tuple[int, int]:
    # Enum members and their stored strings alike (StrEnum compares equal to its value).
    bounced = 1 if outcome == Outcome.BOUNCED else 0
    attempt = 1 if outcome in _ATTEMPT_VALUES and kind != EventKind.EXPIRY else 0
    return bounced, attempt


#: (outcome, kind) -> `_counts` of them, for the pairs met so far (a few dozen at most).
_COUNTS_OF: dict[tuple[Any, Any], tuple[int, int]] = {}


def tally(
    events: Iterable[tuple[str, datetime, Any, Any]], sign: int = 1
) -> list[tuple[str, int, int, int]]:
    """Rows for `minute_counts` from events given as (domain, at, outcome, kind): one per
    domain and minute that holds a bounce or an attempt, sorted; `sign` -1 takes them away."""
    # The engine tallies every event it writes: the counts of each (outcome, kind) are looked
    # up rather than worked out again (`_counts` compares with enum members, each read through
    # the enum class), and the minute is `minute_of` without the call.
    counts_of = _COUNTS_OF
    sums: dict[tuple[str, int], list[int]] = {}
    for domain, at, outcome, kind in events:
        counts = counts_of.get((outcome, kind))
        if counts is None:
            counts = counts_of[outcome, kind] = _counts(outcome, kind)
        bounced, attempt = counts
        if bounced or attempt:
            key = (domain, (at - _EPOCH) // _MINUTE)
            row = sums.get(key)
            if row is None:
                sums[key] = [bounced, attempt]
            else:
                row[0] += bounced
                row[1] += attempt
    return [(d, m, sign * b, sign * n) for (d, m), (b, n) in sorted(sums.items())]


def append(conn: Connection, rows: Sequence[tuple[str, int, int, int]]) -> None:
    """Append rows made by `tally`, in the caller's transaction."""
    if rows:
        conn.execute(
            sa.insert(MINUTES),
            [{"domain": d, "minute": m, "bounced": b, "attempts": n} for d, m, b, n in rows],
        )


def compact(conn: Connection, keys: Iterable[tuple[str, int]]) -> None:
    """Fold the rows of each (domain, minute) given into one, dropping a minute that sums to
    nothing. Safe beside writers appending to the same minutes, and beside another transaction
    folding them: what is summed is exactly what the DELETE took away (its RETURNING rows). A
    SELECT of the sums before the DELETE read another snapshot (READ COMMITTED gives each
    statement its own; a DELETE on InnoDB reads the newest rows): a row a writer committed in
    between was deleted and never summed, its count lost, and a row another fold had deleted
    meanwhile was summed without being deleted, counted twice."""
    by_domain: dict[str, list[int]] = defaultdict(list)
    for domain, minute in keys:
        by_domain[domain].append(minute)
    m = MINUTES.c
    for domain, minutes in sorted(by_domain.items()):
        for start in range(0, len(minutes), 1000):
            part = sorted(set(minutes[start : start + 1000]))
            taken = conn.execute(
                sa.delete(MINUTES)
                .where(m.domain == domain, m.minute.in_(part))
                .returning(m.minute, m.bounced, m.attempts)
            ).all()
            sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
            for minute, b, n in taken:
                sums[int(minute)][0] += int(b)
                sums[int(minute)][1] += int(n)
            append(conn, [(domain, k, b, n) for k, (b, n) in sorted(sums.items()) if b or n])


def minute_sql(dialect: str, at: Any) -> sa.ColumnElement[int]:
    """SQL for `minute_of` of a stored event time (`events.at`) on a dialect."""
    if dialect == "sqlite":
        # The stored text "YYYY-MM-DD HH:MM:SS.ffffff" is UTC; strftime('%s') of its first 19
        # characters is whole seconds since the epoch, and integer division floors them.
        seconds = sa.cast(sa.func.strftime("%s", sa.func.substr(at, 1, 19)), sa.BigInteger)
        return seconds // 60
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(sa.extract("epoch", at) / 60), sa.BigInteger)
    # MariaDB stores the naive UTC time.
    epoch = sa.literal("1970-01-01 00:00:00")
    return sa.func.timestampdiff(sa.text("MINUTE"), epoch, at)


def recount_sql(dialect: str, events: Table | Any = _EVENTS) -> sa.Select[Any]:
    """The rows `minute_counts` should sum to, counted from `events`: (domain, minute, bounced,
    attempts) for every domain and minute with a bounce or an attempt."""
    e = events.c
    minute = minute_sql(dialect, e.at)
    bounced = sa.func.sum(sa.case((e.outcome == Outcome.BOUNCED, 1), else_=0))
    attempts = sa.func.sum(sa.case((is_attempt(e), 1), else_=0))
    return (
        sa.select(e.domain, minute.label("minute"), bounced.label("b"), attempts.label("n"))
        # By the output column's name: the expression repeated would bind its own parameters,
        # which PostgreSQL does not take for the same expression as the selected one.
        .group_by(e.domain, sa.literal_column("minute"))
        .having(sa.or_(bounced > 0, attempts > 0))
    )


def recount(conn: Connection) -> int:
    """Count `minute_counts` again from `events`, whole, and return how many rows that made:
    for what wrote events by other means than the engine (a test's factory, a benchmark's bulk
    load, an earlier version left recording during an upgrade: `deliverability db recount`).
    Not safe beside writers: a chunk committed between the two statements is counted twice."""
    conn.execute(sa.delete(MINUTES))
    counted = recount_sql(conn.dialect.name).subquery()
    conn.execute(
        sa.insert(MINUTES).from_select(
            ["domain", "minute", "bounced", "attempts"],
            sa.select(counted.c.domain, counted.c.minute, counted.c.b, counted.c.n),
        )
    )
    return int(conn.execute(sa.select(sa.func.count()).select_from(MINUTES)).scalar_one())
