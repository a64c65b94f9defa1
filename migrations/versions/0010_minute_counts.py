"""Per-minute counts of each domain's bounces and attempts (`minute_counts`).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 12:00:00

The domain-incident rule counted each touched domain's events per minute from `events`, around
every bounce it judged: on live traffic, every chunk the sender recorded read about a million
index entries (docs/hygiene.md, "On live traffic"). The engine now appends these counts as it
writes events, and the rule reads them instead.

- upgrade: the table, its (domain, minute) index, and one row per domain and minute counted from
  the events already stored (one aggregate over `events`).
- downgrade: drops the table (the earlier code counts from `events`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENTS = sa.table(
    "events",
    sa.column("domain", sa.String),
    sa.column("at", sa.DateTime),
    sa.column("outcome", sa.String),
    sa.column("kind", sa.String),
)


def _minute(dialect: str, at: sa.ColumnElement[object]) -> sa.ColumnElement[int]:
    """Whole minutes since 1970-01-01 00:00 UTC of a stored event time."""
    if dialect == "sqlite":
        # "YYYY-MM-DD HH:MM:SS.ffffff", UTC: its first 19 characters as seconds since the epoch.
        return sa.cast(sa.func.strftime("%s", sa.func.substr(at, 1, 19)), sa.BigInteger) // 60
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(sa.extract("epoch", at) / 60), sa.BigInteger)
    return sa.func.timestampdiff(sa.text("MINUTE"), sa.literal("1970-01-01 00:00:00"), at)


def upgrade() -> None:
    op.create_table(
        "minute_counts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("bounced", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_minute_counts")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index("ix_minute_counts_domain_minute", "minute_counts", ["domain", "minute"])
    e = _EVENTS.c
    minute = _minute(op.get_bind().dialect.name, e.at)
    bounced = sa.func.sum(sa.case((e.outcome == "bounced", 1), else_=0))
    attempt = sa.and_(
        e.outcome.in_(("delivered", "deferred", "bounced", "blocked")), e.kind != "expiry"
    )
    attempts = sa.func.sum(sa.case((attempt, 1), else_=0))
    counted = (
        sa.select(e.domain, minute.label("minute"), bounced.label("b"), attempts.label("n"))
        .group_by(e.domain, sa.literal_column("minute"))
        .having(sa.or_(bounced > 0, attempts > 0))
        .subquery()
    )
    minutes = sa.table(
        "minute_counts",
        sa.column("domain", sa.String),
        sa.column("minute", sa.BigInteger),
        sa.column("bounced", sa.Integer),
        sa.column("attempts", sa.Integer),
    )
    op.execute(
        minutes.insert().from_select(
            ["domain", "minute", "bounced", "attempts"],
            sa.select(counted.c.domain, counted.c.minute, counted.c.b, counted.c.n),
        )
    )


def downgrade() -> None:
    op.drop_index("ix_minute_counts_domain_minute", table_name="minute_counts")
    op.drop_table("minute_counts")
