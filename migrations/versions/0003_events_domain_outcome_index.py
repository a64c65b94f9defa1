"""Events: index (domain, at, outcome) in place of (domain, at).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 19:12:00

Every query that used (domain, at) still can (same leading columns); the per-domain reports and
hygiene's per-domain counts by outcome then read the index alone, with no table lookup per event
(measured by the reports work: flat from 1M to 2M events, 3x faster).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.create_index("ix_events_domain_at_outcome", ["domain", "at", "outcome"])
        batch_op.drop_index("ix_events_domain_at")


def downgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.create_index("ix_events_domain_at", ["domain", "at"])
        batch_op.drop_index("ix_events_domain_at_outcome")
