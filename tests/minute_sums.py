"""What `minute_counts` sums to and what the events say it should, for the tests that compare
them (tests/test_minutes.py, tests/test_minutes_review.py)."""

from __future__ import annotations

import sqlalchemy as sa

from deliverability.store import minutes
from deliverability.store.models import MinuteCount

Sums = dict[tuple[str, int], tuple[int, int]]


def stored(conn: sa.Connection) -> Sums:
    """(domain, minute) -> (bounced, attempts) as the rows of `minute_counts` sum them (zero
    sums left out)."""
    m = MinuteCount.__table__.c
    rows = conn.execute(
        sa.select(m.domain, m.minute, sa.func.sum(m.bounced), sa.func.sum(m.attempts)).group_by(
            m.domain, m.minute
        )
    )
    return {(d, int(k)): (int(b), int(n)) for d, k, b, n in rows if int(b) or int(n)}


def counted(conn: sa.Connection) -> Sums:
    """The same, counted from `events` (`minutes.recount_sql`)."""
    rows = conn.execute(minutes.recount_sql(conn.dialect.name))
    return {(d, int(k)): (int(b), int(n)) for d, k, b, n in rows}
