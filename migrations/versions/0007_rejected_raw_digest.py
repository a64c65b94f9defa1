"""Rejected input is identified by what was rejected too: rejected_inputs.raw_digest.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 02:10:00

A rejected item was unique on (source, position) alone. A rotated log has new lines at the byte
offsets of old ones, so a new bad line where an old one had been was counted in the run's
summary but never stored, its raw text lost. The item is now (source, position, raw_digest),
the SHA-256 (hex) of the raw text as stored; reading the same file again still finds the same
three and stores nothing twice.

- upgrade: the column is added empty, filled for every stored row from its raw text in batches of
  ids (SQLite has no SHA-256 function, so Python computes it), then made NOT NULL, and the unique
  constraint moves to the three columns. On MariaDB the digest is ASCII: with the utf8mb4 source
  and position (4 bytes a character) a utf8mb4 digest would pass InnoDB's 3072-byte key limit.
- downgrade: (source, position) must be unique again, so of the rows that share them only the
  oldest (lowest id) stays; the others are deleted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Rows read per batch: raw texts are kept up to 100,000 characters each.
BATCH = 1000

_TABLE = sa.table(
    "rejected_inputs",
    sa.column("id", sa.Integer),
    sa.column("source", sa.String),
    sa.column("position", sa.String),
    sa.column("raw", sa.Text),
    sa.column("raw_digest", sa.String),
)


def _digest(raw: str) -> str:
    """deliverability.store.rejected.raw_digest as this revision made it."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _hex_digest() -> sa.types.TypeEngine[str]:
    return sa.String(length=64).with_variant(
        mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
    )


def upgrade() -> None:
    with op.batch_alter_table("rejected_inputs") as batch_op:
        batch_op.add_column(sa.Column("raw_digest", _hex_digest(), nullable=True))
    bind = op.get_bind()
    low, high = bind.execute(sa.select(sa.func.min(_TABLE.c.id), sa.func.max(_TABLE.c.id))).one()
    if low is not None:
        fill = (
            sa.update(_TABLE)
            .where(_TABLE.c.id == sa.bindparam("row_id"))
            .values(raw_digest=sa.bindparam("digest"))
        )
        for start in range(low, high + 1, BATCH):
            rows = bind.execute(
                sa.select(_TABLE.c.id, _TABLE.c.raw).where(
                    _TABLE.c.id >= start, _TABLE.c.id < start + BATCH
                )
            ).all()
            if rows:
                bind.execute(fill, [{"row_id": i, "digest": _digest(raw or "")} for i, raw in rows])
    with op.batch_alter_table("rejected_inputs") as batch_op:
        batch_op.alter_column("raw_digest", existing_type=_hex_digest(), nullable=False)
        batch_op.drop_constraint("uq_rejected_inputs_source_position", type_="unique")
        batch_op.create_unique_constraint(
            "uq_rejected_inputs_source_position_raw_digest", ["source", "position", "raw_digest"]
        )


def downgrade() -> None:
    bind = op.get_bind()
    seen: set[tuple[str, str]] = set()
    later: list[int] = []
    for row_id, source, position in bind.execute(
        sa.select(_TABLE.c.id, _TABLE.c.source, _TABLE.c.position).order_by(_TABLE.c.id)
    ):
        if (source, position) in seen:
            later.append(row_id)
        seen.add((source, position))
    for start in range(0, len(later), BATCH):
        bind.execute(sa.delete(_TABLE).where(_TABLE.c.id.in_(later[start : start + BATCH])))
    with op.batch_alter_table("rejected_inputs") as batch_op:
        batch_op.drop_constraint("uq_rejected_inputs_source_position_raw_digest", type_="unique")
        batch_op.drop_column("raw_digest")
        batch_op.create_unique_constraint(
            "uq_rejected_inputs_source_position", ["source", "position"]
        )
