"""The Postfix log reader's queue state, kept between runs (`postfix_queue_ids`,
`postfix_deferrals`).

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 12:00:00

The reader joins a delivery line to the message's Message-ID through the cleanup line of its
queue id, and turns qmgr's one `status=expired` line per message into one expiry per recipient
still deferred. It kept both in memory, for one file: a message queued before a log rotation and
delivered after it was recorded under its queue id, and the delivery under its Message-ID, still
deferred, was later expired by the engine (a false give-up strike); Postfix's expiry of it after
the rotation expired nobody. The nightly job now keeps what the reader knows of queue ids still
queued, with the offset it belongs to (docs/sources.md, "What is kept between runs").

- upgrade: the two tables, empty (a run that finds them empty scans a resumed log up to its
  offset, as the earlier code did on every run).
- downgrade: drops them (the earlier code keeps nothing between runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc_datetime() -> sa.types.TypeEngine[Any]:
    """models.UTCDateTime as this revision makes it (see 0001)."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "postfix_queue_ids",
        sa.Column("queue_id", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=100), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("kept_since", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("queue_id", "host", "instance", name=op.f("pk_postfix_queue_ids")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index(op.f("ix_postfix_queue_ids_kept_since"), "postfix_queue_ids", ["kept_since"])
    op.create_table(
        "postfix_deferrals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queue_id", sa.String(length=20), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("instance", sa.String(length=100), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("position", sa.String(length=120), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.Column("kept_since", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postfix_deferrals")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_index(op.f("ix_postfix_deferrals_queue_id"), "postfix_deferrals", ["queue_id"])
    op.create_index(op.f("ix_postfix_deferrals_kept_since"), "postfix_deferrals", ["kept_since"])


def downgrade() -> None:
    op.drop_index(op.f("ix_postfix_deferrals_kept_since"), table_name="postfix_deferrals")
    op.drop_index(op.f("ix_postfix_deferrals_queue_id"), table_name="postfix_deferrals")
    op.drop_table("postfix_deferrals")
    op.drop_index(op.f("ix_postfix_queue_ids_kept_since"), table_name="postfix_queue_ids")
    op.drop_table("postfix_queue_ids")
