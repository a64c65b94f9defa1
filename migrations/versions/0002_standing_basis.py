"""Recipients: standing_basis_at, the time of the delivery result the standing follows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 18:15:00

With it the engine keeps a recipient's standing the same whatever order its events are recorded
in (many writers, late logs): a delivery result older than the basis does not move the standing.
Existing rows start with NULL: the next result sets it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def utc_datetime() -> sa.types.TypeEngine[Any]:
    """models.UTCDateTime as this revision made it (see 0001)."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    with op.batch_alter_table("recipients") as batch_op:
        batch_op.add_column(sa.Column("standing_basis_at", utc_datetime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("recipients") as batch_op:
        batch_op.drop_column("standing_basis_at")
