"""Events: the block index holds the deferrals of the message's fault too.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 16:00:00

A deferral whose fault is the message's (a 4xx refusal of its content: a virus, its media, its
size; RFC 5321 section 4.2.1 lets a server refuse so for now) now counts as a block for the
sender alert and the repeated-blocks throttle, as its 5xx form and a deferral of the sender's
fault do (`deliverability.hygiene.BLOCK_FAULTS`, docs/hygiene.md). The repeated-blocks rule
reads a destination's blocks through `ix_events_blocks` (migration 0013 says why): on SQLite and
PostgreSQL a partial index whose WHERE is `store.models.BLOCKS_WHERE`, which the queries hold as
written. That WHERE now names both faults; an index with the old one would have no entry for
these deferrals, and the queries, whose WHERE no longer holds the old one's terms, would not use
it at all.

- SQLite and PostgreSQL: the index is dropped and made again with the new WHERE, the same
  columns. It holds the blocks alone, as before: the deferrals it adds are refusals of the
  content, a few among a destination's events.
- MariaDB has no partial indexes: its index has an entry for every event already, and the
  queries rule the deferrals of other faults out by `fault`, the entry's own column (index
  condition pushdown). Nothing changes there.

Making it again reads the whole table, as 0013's build did (0.03 s on SQLite and 0.04 s on
PostgreSQL over 200,000 events, measured there).

Changed after release, with the same resulting index: built through `migrations/online.py`,
CONCURRENTLY on PostgreSQL, so that the senders keep writing to `events` while it runs (a plain
build held them back for all of it); a store upgraded before or after has the same schema.

Deferrals of the message's fault recorded before the upgrade count as blocks from then on: in
the windows of later blocks, and in a `--full` re-evaluation, which may raise sender alerts for
them (each expires `alert_lifetime` after its last block).

- downgrade: makes the index again with 0013's WHERE (SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from deliverability.migrations.online import create_index, drop_index

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: `store.models.BLOCKS_WHERE` as this revision makes it, and as 0013 made it (a migration does
#: not import the models, which move on): the queries' terms must match SQLite's as written.
_WHERE = (
    "throttle = {false} AND (outcome = 'blocked' OR (outcome = 'deferred'"
    " AND (fault = 'sender' OR fault = 'message')))"
)
_WHERE_0013 = (
    "throttle = {false} AND (outcome = 'blocked' OR (outcome = 'deferred' AND fault = 'sender'))"
)


def _remake(where: str) -> None:
    """The block index again with `where`, on the backends where it is partial."""
    if op.get_bind().dialect.name not in ("sqlite", "postgresql"):
        return
    drop_index("events", "ix_events_blocks")
    create_index(
        "events",
        "ix_events_blocks",
        ["domain", "outcome", "at", "fault", "throttle"],
        sqlite_where=sa.text(where.format(false="0")),
        postgresql_where=sa.text(where.format(false="false")),
    )


def upgrade() -> None:
    _remake(_WHERE)


def downgrade() -> None:
    _remake(_WHERE_0013)
