"""Domain providers: recipient domains learned to belong to a provider group by their MX host.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 23:40:00

The engine fills it from the MX host an event names (Postfix relay=, DSN Remote-MTA, a reply
log's mx_host) when that host matches a group's mx_suffixes in the policy; the throttles then
treat the domain as a member of that group. A new, empty table: nothing to convert.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def utc_datetime() -> sa.types.TypeEngine[Any]:
    """models.UTCDateTime as this revision made it (see 0001)."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "domain_providers",
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=120), nullable=False),
        sa.Column("mx_host", sa.String(length=255), nullable=False),
        sa.Column("first_seen_at", utc_datetime(), nullable=False),
        sa.Column("last_seen_at", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_domain_providers")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("domain_providers") as batch_op:
        batch_op.create_index("ix_domain_providers_provider", ["provider"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("domain_providers") as batch_op:
        batch_op.drop_index("ix_domain_providers_provider")
    op.drop_table("domain_providers")
