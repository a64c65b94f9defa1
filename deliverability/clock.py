"""Time for the services layer; the core never reads a clock, it is given `now`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from deliverability.errors import InputError

#: A clock is any callable returning the current time, timezone-aware.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The real time, in UTC."""
    return datetime.now(UTC)


def ensure_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; naive values are taken to be UTC (as logs without a zone are)."""
    if value.tzinfo is UTC:
        # Already so (the usual case: this runs once per recorded event).
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time (``Z`` accepted); a time without a zone is UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        return ensure_utc(datetime.fromisoformat(value))
    except ValueError:
        raise InputError(
            f"not an ISO 8601 time: {text!r} (example: 2026-11-28T17:00:00Z)"
        ) from None
