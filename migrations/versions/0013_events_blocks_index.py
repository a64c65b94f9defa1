"""Events: an index of the blocks, (domain, outcome, at, fault, throttle), partial where it can be.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 15:00:00

A deferral whose fault is the sender's (a 4xx blocklist, reputation, authentication or TLS
refusal: RFC 5321 section 4.2.1, RFC 3463 X.7.x) now counts as a block for the sender alert and
the repeated-blocks throttle, as a 5xx block does (docs/hygiene.md). The repeated-blocks rule
counts a destination's blocks over `blocked_window` before each block it judges, and finds the
blocks recorded late after them (store.hygiene `_blocks_throttle`, `_late_blocks`). Through
(domain, at, outcome, kind) that read every event of the destination in the window, and each
block's row for `throttle`; the deferrals' rows too once `fault` counts, as `fault` is in no
index. Through this index it reads the blocks alone.

- SQLite and PostgreSQL: a partial index, of the rows that are blocks by `outcome`, `fault` and
  `throttle` (`store.models.BLOCKS_WHERE`), so writing any other event costs nothing more. The
  queries hold that WHERE as written (https://www.sqlite.org/partialindex.html, section 3;
  https://www.postgresql.org/docs/current/indexes-partial.html).
- MariaDB has no partial indexes: every event has an entry, `outcome` before `at` so that the
  queries' `outcome IN ('blocked', 'deferred')` narrows the range to those two, `fault` and
  `throttle` after it so that the other deferrals are ruled out from the index entries before
  their rows are read (index condition pushdown).

On live traffic (bench/bench_hygiene.py --traffic 100, SQLite) the window count was already the
largest statement of the hook, 39 ms of a chunk's 60 or so; reading each deferral's row for its
fault made the hook 40-44 us of CPU an event instead of 28-30 us; through this index it takes
15-18 us (three runs each, alternated; docs/hygiene.md, "Speed").

Writing 200,000 events in chunks of 2,000 (Core executemany, 3% of them blocks; alternated runs,
either order): SQLite 51-54 thousand a second with the index, 52-55 thousand without; PostgreSQL
32-47 thousand with it, 34-50 thousand without (the predicate is checked on every insert);
MariaDB 33-36 thousand with it, 36-38 thousand without (every event has an entry). Building it
over 200,000 events took 0.03 s on SQLite, 0.04 s on PostgreSQL and 0.19 s on MariaDB; it reads
the whole table.

Changed after release, with the same resulting index: built through `migrations/online.py`,
CONCURRENTLY on PostgreSQL, so that the senders keep writing to `events` while it runs (a plain
build held them back for all of it); a store upgraded before or after has the same schema.

- downgrade: drops the index.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from deliverability.migrations.online import create_index, drop_index

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: `store.models.BLOCKS_WHERE` as this revision made it (a migration does not import the
#: models, which move on): the queries' terms must match SQLite's as written.
_WHERE = (
    "throttle = {false} AND (outcome = 'blocked' OR (outcome = 'deferred' AND fault = 'sender'))"
)


def upgrade() -> None:
    create_index(
        "events",
        "ix_events_blocks",
        ["domain", "outcome", "at", "fault", "throttle"],
        sqlite_where=sa.text(_WHERE.format(false="0")),
        postgresql_where=sa.text(_WHERE.format(false="false")),
    )


def downgrade() -> None:
    drop_index("events", "ix_events_blocks")
