"""The delivery state machine: one message to one recipient, as a transition table.

Pure core: no database, no clock. The engine hands in the delivery as it stands, the step a new
event means, and the backoff policy; it gets back the delivery as it should stand and whether the
event changed it or only goes into history.

Timing follows RFC 5321 section 4.5.4.1: retries at least 30 minutes apart, growing, and a give-up
time of 4-5 days; the numbers are the policy's (`BackoffPolicy`).
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from deliverability.errors import InputError
from deliverability.policy import BackoffPolicy
from deliverability.vocabulary import DeliveryState, Outcome, Reason, Standing

__all__ = [
    "TABLE",
    "Delivery",
    "Effect",
    "Step",
    "StepInput",
    "Transition",
    "apply_step",
    "jitter_fraction",
    "retry_delay",
    "standing_after",
    "step_for",
    "transition",
]


class Step(StrEnum):
    """What an event means for a delivery (the inputs of the table)."""

    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    BLOCKED = "blocked"
    COMPLAINED = "complained"
    #: The engine's own input: the delivery's lifetime has run out (see `expire_overdue`).
    EXPIRE = "expire"


class Effect(StrEnum):
    """What a transition did."""

    #: The delivery moved (or was made) as the table says.
    APPLIED = "applied"
    #: History only: the event is recorded but the delivery stays as it was (a final state
    #: that this input cannot change, or an event older than what the delivery already knows).
    HISTORY = "history"


_OUTCOME_STEP = {
    Outcome.DELIVERED: Step.DELIVERED,
    Outcome.DEFERRED: Step.DEFERRED,
    Outcome.BOUNCED: Step.BOUNCED,
    Outcome.BLOCKED: Step.BLOCKED,
    Outcome.COMPLAINED: Step.COMPLAINED,
}


def step_for(outcome: Outcome) -> Step:
    """The step a verdict's outcome means; an informational reply is not a delivery result."""
    try:
        return _OUTCOME_STEP[outcome]
    except KeyError:
        raise InputError(
            f"a reply with outcome {outcome.value!r} is not a delivery result "
            "(a greeting, the 354 go-ahead, HELP text or an auto-reply): nothing to record"
        ) from None


# state (None: no delivery yet) x step -> next state (None: still no delivery).
# An entry equal to its own state is "history only" unless the step is DEFERRED on DEFERRED
# (another attempt, rescheduled).
_S = DeliveryState
TABLE: dict[tuple[DeliveryState | None, Step], DeliveryState | None] = {
    # A first event makes the delivery in the state it says.
    (None, Step.DELIVERED): _S.DELIVERED,
    (None, Step.DEFERRED): _S.DEFERRED,
    (None, Step.BOUNCED): _S.BOUNCED,
    (None, Step.BLOCKED): _S.BLOCKED,
    (None, Step.COMPLAINED): _S.COMPLAINED,
    # Nothing to expire.
    (None, Step.EXPIRE): None,
    # Deferred is the only open state: every result moves it.
    (_S.DEFERRED, Step.DELIVERED): _S.DELIVERED,
    (_S.DEFERRED, Step.DEFERRED): _S.DEFERRED,
    (_S.DEFERRED, Step.BOUNCED): _S.BOUNCED,
    (_S.DEFERRED, Step.BLOCKED): _S.BLOCKED,
    # A complaint proves the message arrived, whatever the last reply said.
    (_S.DEFERRED, Step.COMPLAINED): _S.COMPLAINED,
    (_S.DEFERRED, Step.EXPIRE): _S.EXPIRED,
    # Delivered: accepted by the receiving server. A later permanent failure is an
    # accept-then-bounce (a DSN sent after the 250, RFC 3464): it is newer news and wins. A
    # later delay notice or a second 250 changes nothing.
    (_S.DELIVERED, Step.DELIVERED): _S.DELIVERED,
    (_S.DELIVERED, Step.DEFERRED): _S.DELIVERED,
    (_S.DELIVERED, Step.BOUNCED): _S.BOUNCED,
    (_S.DELIVERED, Step.BLOCKED): _S.BLOCKED,
    # The normal way a complaint arrives: after delivery, through a feedback loop (RFC 5965).
    (_S.DELIVERED, Step.COMPLAINED): _S.COMPLAINED,
    (_S.DELIVERED, Step.EXPIRE): _S.DELIVERED,
    # Bounced and blocked are final: the sender should not have tried again, and a late reply
    # for an earlier attempt is history. A complaint still proves arrival.
    (_S.BOUNCED, Step.DELIVERED): _S.BOUNCED,
    (_S.BOUNCED, Step.DEFERRED): _S.BOUNCED,
    (_S.BOUNCED, Step.BOUNCED): _S.BOUNCED,
    (_S.BOUNCED, Step.BLOCKED): _S.BOUNCED,
    (_S.BOUNCED, Step.COMPLAINED): _S.COMPLAINED,
    (_S.BOUNCED, Step.EXPIRE): _S.BOUNCED,
    (_S.BLOCKED, Step.DELIVERED): _S.BLOCKED,
    (_S.BLOCKED, Step.DEFERRED): _S.BLOCKED,
    (_S.BLOCKED, Step.BOUNCED): _S.BLOCKED,
    (_S.BLOCKED, Step.BLOCKED): _S.BLOCKED,
    (_S.BLOCKED, Step.COMPLAINED): _S.COMPLAINED,
    (_S.BLOCKED, Step.EXPIRE): _S.BLOCKED,
    # Expired: the engine gave up. If the sender tried once more anyway and it got through,
    # the 250 is the truth; other late replies are history.
    (_S.EXPIRED, Step.DELIVERED): _S.DELIVERED,
    (_S.EXPIRED, Step.DEFERRED): _S.EXPIRED,
    (_S.EXPIRED, Step.BOUNCED): _S.EXPIRED,
    (_S.EXPIRED, Step.BLOCKED): _S.EXPIRED,
    (_S.EXPIRED, Step.COMPLAINED): _S.COMPLAINED,
    (_S.EXPIRED, Step.EXPIRE): _S.EXPIRED,
    # Complained is the last word about a message.
    (_S.COMPLAINED, Step.DELIVERED): _S.COMPLAINED,
    (_S.COMPLAINED, Step.DEFERRED): _S.COMPLAINED,
    (_S.COMPLAINED, Step.BOUNCED): _S.COMPLAINED,
    (_S.COMPLAINED, Step.BLOCKED): _S.COMPLAINED,
    (_S.COMPLAINED, Step.COMPLAINED): _S.COMPLAINED,
    (_S.COMPLAINED, Step.EXPIRE): _S.COMPLAINED,
}


# The members the functions below compare with, read once: on Python 3.11 the enums' metaclass
# has a `__getattr__`, so every `DeliveryState.DEFERRED` written in a function goes through a
# Python-level attribute hook (about a thousand machine instructions, callgrind), and the state
# machine runs for every event recorded. A module global is a dictionary read.
_DEFERRED = DeliveryState.DEFERRED
_EXPIRED = DeliveryState.EXPIRED
_STEP_DELIVERED = Step.DELIVERED
_STEP_DEFERRED = Step.DEFERRED
_STEP_COMPLAINED = Step.COMPLAINED
_STEP_EXPIRE = Step.EXPIRE
_APPLIED = Effect.APPLIED
_HISTORY = Effect.HISTORY
_REASON_EXPIRED = Reason.EXPIRED
_GREYLISTED = Reason.GREYLISTED
_SUPPRESSED = Standing.SUPPRESSED
_NO_STANDING = (None, Standing.UNKNOWN)
_RETRYING = Standing.RETRYING


# The records below are named tuples, not dataclasses: the engine makes three of them for every
# event it records, and a frozen dataclass costs several times more to make.


class Delivery(NamedTuple):
    """Where one delivery stands: the part of the stored row the state machine reads."""

    state: DeliveryState
    attempt: int
    first_attempt_at: datetime
    last_attempt_at: datetime
    next_attempt_at: datetime | None
    expires_at: datetime | None
    reason: Reason


class StepInput(NamedTuple):
    """One event, as the state machine sees it."""

    step: Step
    #: When it happened (the reply's time; for EXPIRE, now).
    at: datetime
    reason: Reason
    #: The attempt number the event belongs to, when the caller knows it.
    attempt: int | None = None
    #: A "try again in N" or greylisting hint from the reply (Verdict.retry_after).
    retry_after: timedelta | None = None
    #: Seeds the delivery's jitter: the recipient key and the message id.
    jitter_key: str = ""
    #: For EXPIRE: the relay itself reported that it gave up (Postfix status=expired), so the
    #: delivery expires now, whatever lifetime our own first-attempt time would give it.
    reported: bool = False


class Transition(NamedTuple):
    """The outcome of one event: the delivery as it now stands (None: still none) and whether
    the event moved it or only goes into history."""

    delivery: Delivery | None
    effect: Effect
    #: The attempt number to record with the event.
    attempt: int
    #: A short reason for a history-only effect ("older than attempt 3", ...), else "".
    note: str = ""


def jitter_fraction(key: str) -> float:
    """A fraction in [-1, 1) fixed by `key`: the same delivery and attempt always get the same
    jitter, so tests and replays of a log agree."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0


def retry_delay(
    backoff: BackoffPolicy,
    attempt: int,
    *,
    jitter_key: str,
    retry_after: timedelta | None = None,
    greylisted: bool = False,
) -> timedelta:
    """How long to wait after failed attempt number `attempt` (1 = the first try).

    A hint from the reply wins (clamped to `max_hint`); greylisting without a hint waits
    `greylist_retry`. Otherwise: `first_retry` times `multiplier` per earlier attempt, capped at
    `max_interval`, moved by up to +/- `jitter` of itself so many deliveries deferred together do
    not all come back at once; never below `first_retry` (RFC 5321 4.5.4.1: at least 30 minutes)
    nor above `max_interval`.
    """
    if retry_after is not None:
        return max(timedelta(0), min(retry_after, backoff.max_hint))
    if greylisted:
        return backoff.greylist_retry
    n = max(attempt, 1)
    first = backoff.first_retry.total_seconds()
    cap = backoff.max_interval.total_seconds()
    base = min(first * backoff.multiplier ** min(n - 1, 64), cap)
    f = jitter_fraction(f"{jitter_key}\x00{n}")
    # Jitter upward while there is room below the cap, downward at the cap: the spread stays
    # the same size and the bounds hold.
    seconds = base * (1 + backoff.jitter * abs(f))
    if seconds > cap:
        seconds = cap * (1 - backoff.jitter * abs(f))
    return timedelta(seconds=max(first, min(seconds, cap)))


def _attempt_of(current: Delivery | None, step: Step, attempt: int | None) -> int:
    """The attempt an event belongs to: the caller's number, else the next attempt when the
    delivery was waiting for a retry (a reply to that retry), else the current one."""
    if attempt is not None:
        return attempt
    if current is None:
        return 1
    waiting = current.state is _DEFERRED or (current.state is _EXPIRED and step is _STEP_DELIVERED)
    if waiting and step is not _STEP_COMPLAINED and step is not _STEP_EXPIRE:
        return current.attempt + 1
    return current.attempt


def transition(
    current: Delivery | None,
    event: StepInput,
    backoff: BackoffPolicy,
    *,
    not_before: datetime | None = None,
) -> Transition:
    """Apply one event to a delivery.

    `not_before` is the destination's throttle: a retry is never scheduled earlier. An event older
    than what the delivery already knows (an earlier attempt number, or a time before its last
    attempt) is history only and never rolls the state back; a complaint is never stale.
    """
    return Transition(*apply_step(current, *event, backoff, not_before))


def apply_step(
    current: Delivery | None,
    step: Step,
    at: datetime,
    reason: Reason,
    attempt: int | None,
    retry_after: timedelta | None,
    jitter_key: str,
    reported: bool,
    backoff: BackoffPolicy,
    not_before: datetime | None,
) -> tuple[Delivery | None, Effect, int, str]:
    """`transition` of an event given as `StepInput`'s fields, in their order, then the backoff
    and the throttle: the delivery as it now stands, the effect, the attempt to record and the
    note, as a plain tuple (`Transition`'s fields). The engine's chunk writer runs it for every
    event it records; a named tuple made for each event's input and another for its result
    cost more than the rest of the transition (callgrind)."""
    attempt = _attempt_of(current, step, attempt)
    if current is not None and step is not _STEP_COMPLAINED:
        if attempt < current.attempt:
            return current, _HISTORY, attempt, f"older than attempt {current.attempt}"
        if at < current.last_attempt_at:
            return (
                current,
                _HISTORY,
                attempt,
                f"older than the last attempt at {current.last_attempt_at.isoformat()}",
            )

    state = current.state if current is not None else None
    following = TABLE[(state, step)]
    if following is None:
        return None, _HISTORY, attempt, "no delivery to expire"
    if current is None:
        pass
    elif following is state and not (state is _DEFERRED and step is _STEP_DEFERRED):
        return current, _HISTORY, attempt, f"the delivery is already {state}"
    elif step is _STEP_EXPIRE:
        if not reported and current.expires_at is not None and at < current.expires_at:
            return (
                current,
                _HISTORY,
                attempt,
                f"not past its lifetime until {current.expires_at.isoformat()}",
            )
        return (
            current._replace(
                state=_EXPIRED,
                next_attempt_at=None,
                reason=_REASON_EXPIRED,
            ),
            _APPLIED,
            current.attempt,
            "",
        )

    first_at = current.first_attempt_at if current is not None else at
    expires_at = first_at + backoff.lifetime
    if following is _DEFERRED and at >= expires_at:
        # Deferred again after the give-up time: no retry is left (RFC 5321 4.5.4.1).
        following = _EXPIRED
    next_at: datetime | None = None
    if following is _DEFERRED:
        delay = retry_delay(
            backoff,
            attempt,
            jitter_key=jitter_key,
            retry_after=retry_after,
            greylisted=reason is _GREYLISTED,
        )
        # The last retry happens at the give-up time at the latest; the throttle comes first.
        next_at = min(at + delay, expires_at)
        if not_before is not None and next_at < not_before:
            next_at = not_before
    # Positional: the fields' order (state, attempt, first, last, next, expires, reason).
    return (
        Delivery(
            following,
            attempt,
            first_at,
            max(at, current.last_attempt_at) if current else at,
            next_at,
            expires_at if following is _DEFERRED else None,
            _REASON_EXPIRED if following is _EXPIRED else reason,
        ),
        _APPLIED,
        attempt,
        "",
    )


_STANDING = {
    DeliveryState.DELIVERED: Standing.DELIVERED,
    DeliveryState.DEFERRED: Standing.RETRYING,
    DeliveryState.BOUNCED: Standing.BOUNCED,
    # Gave up after the lifetime: the message never arrived; hygiene counts it as a soft strike.
    DeliveryState.EXPIRED: Standing.BOUNCED,
}


def standing_after(current: Standing | None, delivery_state: DeliveryState) -> Standing:
    """A recipient's standing after one of its deliveries reached `delivery_state`.

    A suppression is changed only by hygiene or a person, never by a delivery. A block or a
    complaint says nothing new about whether the address works: the standing stays (a new
    recipient starts as retrying: nothing is known against it).
    """
    if current is _SUPPRESSED:
        return current
    following = _STANDING.get(delivery_state)
    if following is None:
        return current if current not in _NO_STANDING else _RETRYING
    return following
