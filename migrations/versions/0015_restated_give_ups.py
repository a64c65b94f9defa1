"""Events: `restated`, a give-up its delivery already had.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 09:00:00

One delivery can be given up more than once in the history: the engine's own expiry one night,
Postfix's `status=expired` line for it read the next (or the other way round), a relay's log line
and the DSN it returned. The second was stored like the first, and the soft-strike rule counted a
strike for each, on each day: an address with two real failures could reach three strikes. The
engine now marks a give-up (reason `expired`) as `restated` when its delivery (recipient and
message) already had one recorded before it, and the hygiene rules count no strike for it
(docs/hygiene.md). This revision adds the column and marks the give-ups already stored the same
way.

- upgrade: the column, NOT NULL with a server default of false (written '0', as models.py
  does); then, for each give-up with a
  message id, true when a give-up of the same recipient and message has a smaller id (recorded
  before it), read through events (recipient_id, at); written back by id, in batches (MariaDB
  refuses an UPDATE that reads its own table in a subquery).
- downgrade: the column dropped (the earlier code counts every give-up, as before).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENTS = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("recipient_id", sa.Integer),
    sa.column("message_id", sa.String),
    sa.column("reason", sa.String),
    sa.column("restated", sa.Boolean),
)

#: Give-ups written back per statement.
_BATCH = 5000


def _add_column() -> None:
    context = op.get_context()
    if context.dialect.name != "postgresql":
        # MariaDB adds it in place, without copying the table (ALGORITHM=INSTANT), and commits
        # at once as it does after any DDL; SQLite copies the table, as batch mode does.
        with op.batch_alter_table("events") as batch_op:
            batch_op.add_column(
                sa.Column("restated", sa.Boolean(), nullable=False, server_default="0")
            )
        return
    # Changed after release, with the same resulting column: on PostgreSQL the ALTER (an ACCESS
    # EXCLUSIVE lock on `events`, no rewrite for a constant default since PostgreSQL 11) is
    # committed on its own, so that the lock ends with it; in the revision's transaction it
    # lasted through the search for restated give-ups below, and every sender's write waited
    # (3.6 s over 1M events, docs/scaling.md). A run that stops after it finds the column there
    # (IF NOT EXISTS) and marks the give-ups again.
    with context.autocommit_block():
        op.execute(
            "ALTER TABLE events ADD COLUMN IF NOT EXISTS restated BOOLEAN DEFAULT '0' NOT NULL"
        )


def upgrade() -> None:
    _add_column()
    conn = op.get_bind()
    x = _EVENTS.c
    earlier = _EVENTS.alias("earlier").c
    before = sa.exists().where(
        earlier.recipient_id == x.recipient_id,
        earlier.message_id == x.message_id,
        earlier.reason == "expired",
        earlier.id < x.id,
    )
    found = conn.execute(
        sa.select(x.id).where(x.reason == "expired", x.message_id.is_not(None), before)
    ).scalars()
    ids = [{"b_id": id_} for id_ in found]
    update = _EVENTS.update().where(x.id == sa.bindparam("b_id")).values(restated=sa.true())
    for start in range(0, len(ids), _BATCH):
        conn.execute(update, ids[start : start + _BATCH])


def downgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("restated")
