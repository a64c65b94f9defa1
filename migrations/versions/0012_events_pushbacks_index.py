"""Events: an index of the push-backs, (domain, throttle, at), partial where it can be.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 14:00:00

The throttle rule counts a destination's push-backs (`throttle` true) over `repeat_window` before
each push-back it judges, and finds the latest in a range (store.hygiene `_PUSHBACKS_BETWEEN`,
`_LATEST_PUSHBACK_BETWEEN`). With `throttle` in no index, the count read every event of the
destination in those 4 hours through (domain, at, outcome, kind) and each one's row for the flag: on
live traffic (bench/bench_hygiene.py --traffic 100, SQLite) 2.5 s of the hook's 3.0 s of CPU for
20,000 events, 81 ms a count. Through this index it reads the push-backs alone: 0.45 ms a count, and
the hook takes 30-33 us of CPU an event instead of 151-158 us (five runs each, alternated). On
300,000 events (3 hours, 5 domains), one domain's count over an hour: 6.1 ms -> 0.04 ms on SQLite,
11.3 ms -> 0.23 ms on PostgreSQL, 26.1 ms -> 0.33 ms on MariaDB.

- SQLite and PostgreSQL: a partial index, of the push-back rows only, so writing any other
  event costs nothing more (bench/bench_record.py --n 50000: record_many at 0.30-0.39 of the
  floor, against 0.31-0.36 without it, five runs each). Their planners take it only for a
  query whose WHERE holds the index's own: `throttle = 1` as written on SQLite
  (https://www.sqlite.org/partialindex.html), `throttle` proved from `throttle = true` on
  PostgreSQL (https://www.postgresql.org/docs/current/indexes-partial.html); the queries write
  the flag so.
- MariaDB has no partial indexes: every event has an entry, `throttle` before `at` so that the
  equality on it narrows the range to the push-backs (200,000 events inserted at 24-32 thousand
  a second, against 28-32 thousand without it, seven runs each: within the noise of a shared
  machine).

Building it over 200,000 events took 0.03 s on SQLite, 0.05 s on PostgreSQL and 0.16 s on
MariaDB; it reads the whole table.

Changed after release, with the same resulting index: built through `migrations/online.py`,
CONCURRENTLY on PostgreSQL, so that the senders keep writing to `events` while it runs (a plain
build held them back for all of it); a store upgraded before or after has the same schema.

- downgrade: drops the index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from deliverability.migrations.online import create_index, drop_index

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index(
        "events",
        "ix_events_pushbacks",
        ["domain", "throttle", "at"],
        # As the model writes them (`Event`): the query's `throttle = 1` must match
        # SQLite's term as written.
        sqlite_where=sa.text("throttle = 1"),
        postgresql_where=sa.text("throttle"),
    )


def downgrade() -> None:
    drop_index("events", "ix_events_pushbacks")
