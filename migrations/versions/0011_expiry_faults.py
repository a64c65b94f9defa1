"""Events: an expiry keeps the fault of its delivery's last deferral.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 13:00:00

An expiry (the engine's, or a relay's such as Postfix `status=expired`) was stored with the fault
`unknown`, and every expiry was a soft strike: a sender on a blocklist that a destination answers
with 4xx saw every delivery there expire, and after three weekly campaigns every address there
suppressed. The engine now stores the fault of the delivery's last deferral, and the hygiene
rules do not count an expiry after the sender's, the message's or the destination's trouble
(`hygiene.expiry_exempt_faults`, docs/hygiene.md). This revision gives the expiries already
stored the same fault, so the rules judge them as they judge new ones.

- upgrade: for each expiry of fault `unknown`, and each give-up reported as a reply (reason
  `expired`: a relay's DSN with X.4.7, Exchange's QUEUE.Expired), the fault of the latest
  deferral of the same recipient and message at or before it that is no give-up itself (read
  through events (recipient_id, at)), when there is one; written back by id (MariaDB refuses an
  UPDATE that reads its own table in a subquery).
- downgrade: the expiries' fault back to `unknown`, as the earlier code wrote it (give-up
  replies too).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EVENTS = sa.table(
    "events",
    sa.column("id", sa.Integer),
    sa.column("recipient_id", sa.Integer),
    sa.column("message_id", sa.String),
    sa.column("at", sa.DateTime),
    sa.column("kind", sa.String),
    sa.column("outcome", sa.String),
    sa.column("reason", sa.String),
    sa.column("fault", sa.String),
)

#: Expiries written back per statement.
_BATCH = 5000


def upgrade() -> None:
    conn = op.get_bind()
    x = _EVENTS.c
    d = _EVENTS.alias("deferral")
    last = (
        sa.select(d.c.fault)
        .where(
            d.c.recipient_id == x.recipient_id,
            d.c.message_id == x.message_id,
            d.c.outcome == "deferred",
            d.c.kind != "expiry",
            # A give-up reported as a reply (a relay's DSN with X.4.7) is no deferral either.
            d.c.reason != "expired",
            d.c.at <= x.at,
        )
        .order_by(d.c.at.desc(), d.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    found = conn.execute(
        sa.select(x.id, last.label("fault")).where(
            sa.or_(x.kind == "expiry", x.reason == "expired"),
            x.fault == "unknown",
            x.message_id.is_not(None),
        )
    ).all()
    changes = [
        {"b_id": id_, "b_fault": fault} for id_, fault in found if fault not in (None, "unknown")
    ]
    update = (
        _EVENTS.update().where(x.id == sa.bindparam("b_id")).values(fault=sa.bindparam("b_fault"))
    )
    for start in range(0, len(changes), _BATCH):
        conn.execute(update, changes[start : start + _BATCH])


def downgrade() -> None:
    x = _EVENTS.c
    op.execute(
        _EVENTS.update()
        .where(sa.or_(x.kind == "expiry", x.reason == "expired"))
        .values(fault="unknown")
    )
