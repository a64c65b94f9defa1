"""Recipients: last_failure_at is the last failed attempt, not an expiry.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 07:00:00

An expiry (the engine or a relay giving up on a deferred delivery, days after the destination's
last refusal) moved `recipients.last_failure_at`, which `report undeliverable` shows as
`last_attempt`: an address whose last event was an expiry showed the give-up time as its last
attempt. The engine no longer moves it for an expiry; this revision sets it again, from the
events, for the recipients that have an expiry: the time of their latest bounced, blocked or
deferred event that is a reply or a bounce message (none: NULL).

- upgrade: one UPDATE of those recipients, each reading its own events through
  `events (recipient_id, at)`.
- downgrade: nothing to undo (the earlier code reads the column as it is, and moves it again at
  the recipient's next expiry).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RECIPIENTS = sa.table(
    "recipients",
    sa.column("id", sa.Integer),
    sa.column("expired_count", sa.Integer),
    sa.column("last_failure_at", sa.DateTime),
)
_EVENTS = sa.table(
    "events",
    sa.column("recipient_id", sa.Integer),
    sa.column("at", sa.DateTime),
    sa.column("outcome", sa.String),
    sa.column("kind", sa.String),
)


def upgrade() -> None:
    e = _EVENTS.c
    latest = (
        sa.select(sa.func.max(e.at))
        .where(
            e.recipient_id == _RECIPIENTS.c.id,
            e.outcome.in_(("bounced", "blocked", "deferred")),
            e.kind.in_(("reply", "bounce")),
        )
        .scalar_subquery()
    )
    op.execute(
        _RECIPIENTS.update().where(_RECIPIENTS.c.expired_count > 0).values(last_failure_at=latest)
    )


def downgrade() -> None:
    pass
