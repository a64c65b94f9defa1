"""Message ids without their angle brackets in deliveries and events.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 01:55:00

The engine now keeps a message id without the angle brackets that delimit it (RFC 5322 section
3.6.4), as every ingest source always has: a DSN or a log line naming `m1@x` is about the
delivery the sender recorded as `<m1@x>`. Rows written before kept the brackets the sender gave;
left so, a delivery still deferred would sit beside a new one for the same message (retried
twice, later expired as a strike), and two records of one message would count as two distinct
messages. This strips them.

- events: every `<...>` id, in batches of ids so that no statement holds a long lock on a large
  history. The event keys are untouched: they were made of the id as given, and the engine
  still makes them so.
- deliveries: every `<...>` id, except where the same recipient already has a delivery under
  the bare id (the message was recorded both ways); that pair stays as it is, since merging two
  delivery states is not a migration's call.

Downgrade changes nothing: which ids had brackets is not kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Rows per UPDATE: each batch is an id range of this width.
BATCH = 50_000


def _bare(column: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    # Characters, not bytes (MariaDB's LENGTH counts bytes); SQLAlchemy writes length() on SQLite.
    return sa.func.trim(sa.func.substr(column, 2, sa.func.char_length(column) - 2))


def _strip(table: sa.TableClause, keep: list[int]) -> None:
    bind = op.get_bind()
    low, high = bind.execute(sa.select(sa.func.min(table.c.id), sa.func.max(table.c.id))).one()
    if low is None:
        return
    for start in range(low, high + 1, BATCH):
        stmt = (
            sa.update(table)
            .where(
                table.c.id >= start,
                table.c.id < start + BATCH,
                table.c.message_id.like("<%>"),
            )
            .values(message_id=_bare(table.c.message_id))
        )
        if keep:
            stmt = stmt.where(table.c.id.not_in(keep))
        bind.execute(stmt)


def upgrade() -> None:
    events = sa.table("events", sa.column("id", sa.Integer), sa.column("message_id", sa.String))
    deliveries = sa.table(
        "deliveries",
        sa.column("id", sa.Integer),
        sa.column("recipient_id", sa.Integer),
        sa.column("message_id", sa.String),
    )
    _strip(events, [])
    bracketed = deliveries.alias("bracketed")
    twin = deliveries.alias("twin")
    keep = list(
        op.get_bind().scalars(
            sa.select(bracketed.c.id)
            .join(
                twin,
                sa.and_(
                    twin.c.recipient_id == bracketed.c.recipient_id,
                    twin.c.message_id == _bare(bracketed.c.message_id),
                ),
            )
            .where(bracketed.c.message_id.like("<%>"))
        )
    )
    _strip(deliveries, keep)


def downgrade() -> None:
    pass
