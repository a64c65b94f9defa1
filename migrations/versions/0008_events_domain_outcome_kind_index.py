"""Events: index (domain, at, outcome, kind) in place of (domain, at, outcome).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 04:00:00

`report domains` tells an expiry (kind `expiry`: the engine or a relay gave up on a deferred
delivery, stored with outcome `deferred`) from a deferral the destination answered, so it reads
`kind` too. With `kind` last in the index the per-domain report still reads the index alone
(without it, a table lookup per event: 1.47x the time from 1M to 2M events in
bench/bench_reports.py); every query that used (domain, at, outcome) still can (same leading
columns), and a store keeps one index on events' domain, not two to maintain on every write.

Changed after release, with the same resulting index: built through `migrations/online.py`,
CONCURRENTLY on PostgreSQL, so that the senders keep writing to `events` while it runs (a plain
build held them back for all of it); a store upgraded before or after has the same schema.
"""

from __future__ import annotations

from collections.abc import Sequence

from deliverability.migrations.online import create_index, drop_index

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_index("events", "ix_events_domain_at_outcome_kind", ["domain", "at", "outcome", "kind"])
    drop_index("events", "ix_events_domain_at_outcome")


def downgrade() -> None:
    create_index("events", "ix_events_domain_at_outcome", ["domain", "at", "outcome"])
    drop_index("events", "ix_events_domain_at_outcome_kind")
