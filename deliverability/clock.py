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
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00+01:00 is in year 0 in UTC, 9999-12-31T23:59-01:00 in year 10000.
        raise InputError(f"time {value.isoformat()} is out of range in UTC") from None


def aware_utc(value: datetime, what: str = "time") -> datetime:
    """An aware datetime given to the API, in UTC. A naive one is refused: it is usually a local
    time (``datetime.now()``) or a UTC time that lost its zone (``datetime.utcnow()``), and
    taken as UTC the first would be hours off. Text without a zone is another matter: the logs
    and ISO 8601 fields this project reads write UTC that way (`parse_time`)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InputError(
            f"{what} {value.isoformat()} has no time zone: give an aware datetime"
            " (datetime.now(UTC), not datetime.now() or datetime.utcnow()) or ISO 8601 text"
        )
    return ensure_utc(value)


def given_time(value: datetime | str, what: str = "time") -> datetime:
    """A time given to the API as an aware datetime (`aware_utc`) or ISO 8601 text
    (`parse_time`), in UTC; anything else is an InputError naming `what`."""
    if isinstance(value, str):
        return parse_time(value)
    if not isinstance(value, datetime):
        # A date alone or an epoch number says nothing of the zone or the time of day.
        raise InputError(
            f"{what} must be an ISO 8601 string or a datetime, got {type(value).__name__}"
        )
    return aware_utc(value, what)


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time (``Z`` accepted); a time without a zone is UTC."""
    value = text.strip()
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(
            f"not an ISO 8601 time: {text!r} (example: 2026-11-28T17:00:00Z)"
        ) from None
    # `ensure_utc`'s first test, without its call: text with ``Z`` or ``+00:00`` is in UTC.
    return parsed if parsed.tzinfo is UTC else ensure_utc(parsed)


#: The times a run may be made at (`--now`) and an event dated: SMTP is younger than the Unix
#: epoch, and a run's windows and lifetimes (policy durations are at most 100 years:
#: `policy.MAX_DURATION`) must end before the calendar does (`datetime.max`, in year 9999).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def parse_now(text: str, option: str = "--now") -> datetime:
    """A run's time given on the command line (`parse_time`), between EARLIEST and LATEST."""
    return check_run_time(parse_time(text), option)


def check_run_time(value: datetime, option: str = "--now") -> datetime:
    """`value` when it lies between EARLIEST and LATEST, else an InputError naming `option`."""
    if not EARLIEST <= value < LATEST:
        raise InputError(
            f"{option} {value.isoformat()} is out of range: give a time from"
            f" {EARLIEST:%Y} to {LATEST:%Y}"
        )
    return value
