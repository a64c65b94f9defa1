"""Events: `restated` in the per-domain index; recipients: a restated give-up counted once.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 12:00:00

A give-up reported twice (the engine's expiry, then Postfix's `status=expired` line for the same
delivery, or a relay's log line and its DSN) is stored twice, the second `restated` (0015). The
per-recipient counters and `report domains` still counted both: `expired_count` 2 and
`expired` 2 for one message never delivered, and the second report again in `report
undeliverable`'s `failures`. The engine now counts a restated give-up in no outcome counter
(`events_count` still counts it: it is an event of the history), and the reports leave it out
of every count (docs/reports.md).

- upgrade: the index (domain, at, outcome, kind) becomes (domain, at, outcome, kind, restated),
  so that `report domains --domain D` and the outcomes per day, which now read `restated`, still
  read the index alone (docs/reports.md, "Speed"); then each recipient's counters lose the
  restated events still stored: `expired_count` one per restated expiry, the counter of its
  outcome one per other restated give-up (a relay's DSN), read in one grouped pass over the
  restated events and written back by id, in batches. A restated give-up already pruned cannot
  be told any more: its count stays.
- downgrade: the counters get those counts back (the earlier code counts every give-up), and the
  index is (domain, at, outcome, kind) again.

Changed after release, with the same resulting index: built through `migrations/online.py`,
CONCURRENTLY on PostgreSQL, so that the senders keep writing to `events` while it runs (a plain
build held them back for all of it); a store upgraded before or after has the same schema.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from deliverability.migrations.online import create_index, drop_index

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_INDEX = ("ix_events_domain_at_outcome_kind", ["domain", "at", "outcome", "kind"])
_NEW_INDEX = (
    "ix_events_domain_at_outcome_kind_restated",
    ["domain", "at", "outcome", "kind", "restated"],
)

#: The counter an event of each outcome is counted in (`engine._STANDING_OUTCOME_COUNTER`);
#: an expiry is counted in `expired_count` whatever its outcome.
_COUNTER_OF = {
    "delivered": "delivered_count",
    "deferred": "deferred_count",
    "bounced": "bounced_count",
    "blocked": "blocked_count",
    "complained": "complained_count",
}
_COUNTERS = (*_COUNTER_OF.values(), "expired_count")

_EVENTS = sa.table(
    "events",
    sa.column("recipient_id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("outcome", sa.String),
    sa.column("restated", sa.Boolean),
)
_RECIPIENTS = sa.table("recipients", sa.column("id", sa.Integer), *map(sa.column, _COUNTERS))

#: Recipients written back per statement.
_BATCH = 5000


def _swap_index(drop: tuple[str, list[str]], create: tuple[str, list[str]]) -> None:
    create_index("events", *create)
    drop_index("events", drop[0])


def _shift_counters(sign: int) -> None:
    """Add `sign` times the restated events still stored to their recipients' counters."""
    conn = op.get_bind()
    e = _EVENTS.c
    found = conn.execute(
        sa.select(e.recipient_id, e.kind, e.outcome, sa.func.count())
        .where(e.restated.is_(True))
        .group_by(e.recipient_id, e.kind, e.outcome)
    )
    counts: dict[int, Counter[str]] = {}
    for recipient_id, kind, outcome, n in found:
        counter = "expired_count" if kind == "expiry" else _COUNTER_OF.get(outcome)
        if counter is not None:
            counts.setdefault(recipient_id, Counter())[counter] += int(n)
    if not counts:
        return
    r = _RECIPIENTS.c
    update = (
        _RECIPIENTS.update()
        .where(r.id == sa.bindparam("b_id"))
        .values({c: r[c] + sign * sa.bindparam(f"b_{c}", type_=sa.Integer) for c in _COUNTERS})
    )
    rows = [
        {"b_id": id_, **{f"b_{c}": by[c] for c in _COUNTERS}} for id_, by in sorted(counts.items())
    ]
    for start in range(0, len(rows), _BATCH):
        conn.execute(update, rows[start : start + _BATCH])


def upgrade() -> None:
    _swap_index(_OLD_INDEX, _NEW_INDEX)
    _shift_counters(-1)


def downgrade() -> None:
    _shift_counters(+1)
    _swap_index(_NEW_INDEX, _OLD_INDEX)
