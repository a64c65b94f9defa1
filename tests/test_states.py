from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deliverability.errors import InputError
from deliverability.policy import BackoffPolicy
from deliverability.states import (
    TABLE,
    Delivery,
    Effect,
    Step,
    StepInput,
    jitter_fraction,
    retry_delay,
    standing_after,
    step_for,
    transition,
)
from deliverability.vocabulary import DeliveryState, Outcome, Reason, Standing

T0 = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
BACKOFF = BackoffPolicy()
NO_JITTER = BackoffPolicy(jitter=0.0)

REASON_OF_STEP = {
    Step.DELIVERED: Reason.DELIVERED,
    Step.DEFERRED: Reason.MAILBOX_FULL,
    Step.BOUNCED: Reason.USER_UNKNOWN,
    Step.BLOCKED: Reason.BAD_REPUTATION,
    Step.COMPLAINED: Reason.FEEDBACK,
    Step.EXPIRE: Reason.EXPIRED,
}


def _delivery(state: DeliveryState, attempt: int = 2) -> Delivery:
    deferred = state is DeliveryState.DEFERRED
    return Delivery(
        state=state,
        attempt=attempt,
        first_attempt_at=T0,
        last_attempt_at=T0 + timedelta(hours=1),
        next_attempt_at=T0 + timedelta(hours=2) if deferred else None,
        expires_at=T0 + BACKOFF.lifetime if deferred else None,
        reason=Reason.UNDEFINED,
    )


def _event(step: Step, at: datetime, attempt: int | None = None, **kw: object) -> StepInput:
    return StepInput(
        step=step,
        at=at,
        reason=REASON_OF_STEP[step],
        attempt=attempt,
        jitter_key="a@example.com\x00<m1@example.net>",
        **kw,  # type: ignore[arg-type]
    )


ALL_STATES: list[DeliveryState | None] = [None, *DeliveryState]


def test_the_table_has_an_entry_for_every_state_and_step() -> None:
    assert set(TABLE) == {(state, step) for state in ALL_STATES for step in Step}


@pytest.mark.parametrize(
    ("state", "step"),
    [(state, step) for state in ALL_STATES for step in Step],
    ids=lambda v: "none" if v is None else str(v),
)
def test_every_state_and_step_pair_moves_the_delivery_as_the_table_says(
    state: DeliveryState | None, step: Step
) -> None:
    current = None if state is None else _delivery(state)
    # Expiry only comes once the lifetime is over; everything else a little after the last try.
    at = T0 + BACKOFF.lifetime if step is Step.EXPIRE else T0 + timedelta(hours=3)
    result = transition(current, _event(step, at), BACKOFF)

    expected = TABLE[(state, step)]
    if expected is None:
        assert result.delivery is None
        assert result.effect is Effect.HISTORY
        return
    assert result.delivery is not None
    assert result.delivery.state is expected
    # Deferred again is a move too: a new attempt, rescheduled.
    moved = expected is not state or (state is DeliveryState.DEFERRED and step is Step.DEFERRED)
    assert result.effect is (Effect.APPLIED if moved else Effect.HISTORY)
    if result.effect is Effect.HISTORY:
        assert result.delivery == current
    if expected is DeliveryState.DEFERRED:
        assert result.delivery.next_attempt_at is not None
        assert result.delivery.next_attempt_at > at
    else:
        assert result.delivery.next_attempt_at is None


def test_an_informational_reply_is_not_a_delivery_result() -> None:
    with pytest.raises(InputError, match="not a delivery result"):
        step_for(Outcome.INFORMATIONAL)


@pytest.mark.parametrize("outcome", [o for o in Outcome if o is not Outcome.INFORMATIONAL])
def test_every_delivery_outcome_has_a_step(outcome: Outcome) -> None:
    assert step_for(outcome).value == outcome.value


def test_first_deferral_retries_after_30_minutes_without_jitter() -> None:
    result = transition(None, _event(Step.DEFERRED, T0), NO_JITTER)
    assert result.delivery is not None
    assert result.delivery.attempt == 1
    assert result.delivery.next_attempt_at == T0 + timedelta(minutes=30)
    assert result.delivery.expires_at == T0 + timedelta(days=5)


@pytest.mark.parametrize(
    ("attempt", "minutes"), [(1, 30), (2, 60), (3, 120), (4, 240), (5, 240), (30, 240)]
)
def test_backoff_doubles_from_30_minutes_and_is_capped_at_4_hours(
    attempt: int, minutes: int
) -> None:
    assert retry_delay(NO_JITTER, attempt, jitter_key="k") == timedelta(minutes=minutes)


def test_jitter_is_the_same_for_the_same_delivery_and_attempt() -> None:
    first = retry_delay(BACKOFF, 2, jitter_key="a@example.com\x00m1")
    again = retry_delay(BACKOFF, 2, jitter_key="a@example.com\x00m1")
    other = retry_delay(BACKOFF, 2, jitter_key="b@example.com\x00m1")
    assert first == again
    assert first != other


def test_jitter_fraction_stays_in_its_range_and_spreads() -> None:
    values = [jitter_fraction(f"key{i}") for i in range(2000)]
    assert all(-1.0 <= v < 1.0 for v in values)
    assert min(values) < -0.9
    assert max(values) > 0.9


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 9])
def test_jittered_delays_stay_between_30_minutes_and_4_hours(attempt: int) -> None:
    delays = [retry_delay(BACKOFF, attempt, jitter_key=f"r{i}") for i in range(300)]
    assert min(delays) >= timedelta(minutes=30)
    assert max(delays) <= timedelta(hours=4)
    assert len(set(delays)) > 100


def test_a_try_again_hint_is_honoured() -> None:
    event = _event(Step.DEFERRED, T0, retry_after=timedelta(seconds=90))
    result = transition(None, event, BACKOFF)
    assert result.delivery is not None
    assert result.delivery.next_attempt_at == T0 + timedelta(seconds=90)


def test_a_try_again_hint_is_clamped_to_the_maximum_hint() -> None:
    event = _event(Step.DEFERRED, T0, retry_after=timedelta(days=2))
    result = transition(None, event, BACKOFF)
    assert result.delivery is not None
    assert result.delivery.next_attempt_at == T0 + BACKOFF.max_hint


def test_greylisting_without_a_hint_retries_after_the_greylist_delay() -> None:
    event = StepInput(Step.DEFERRED, T0, Reason.GREYLISTED, jitter_key="k")
    result = transition(None, event, BACKOFF)
    assert result.delivery is not None
    assert result.delivery.next_attempt_at == T0 + BACKOFF.greylist_retry


def test_a_retry_is_never_earlier_than_the_destinations_throttle() -> None:
    pause_until = T0 + timedelta(hours=3)
    result = transition(None, _event(Step.DEFERRED, T0), BACKOFF, not_before=pause_until)
    assert result.delivery is not None
    assert result.delivery.next_attempt_at == pause_until


def test_a_throttle_that_ends_before_the_backoff_changes_nothing() -> None:
    result = transition(
        None, _event(Step.DEFERRED, T0), NO_JITTER, not_before=T0 + timedelta(minutes=5)
    )
    assert result.delivery is not None
    assert result.delivery.next_attempt_at == T0 + timedelta(minutes=30)


def test_attempts_count_up_when_the_caller_does_not_number_them() -> None:
    current = _delivery(DeliveryState.DEFERRED, attempt=2)
    result = transition(current, _event(Step.DEFERRED, T0 + timedelta(hours=3)), NO_JITTER)
    assert result.delivery is not None
    assert result.delivery.attempt == 3
    assert result.delivery.next_attempt_at == T0 + timedelta(hours=3, minutes=120)


def test_the_last_retry_is_no_later_than_the_give_up_time() -> None:
    current = _delivery(DeliveryState.DEFERRED, attempt=20)
    at = T0 + BACKOFF.lifetime - timedelta(minutes=10)
    result = transition(current, _event(Step.DEFERRED, at), BACKOFF)
    assert result.delivery is not None
    assert result.delivery.state is DeliveryState.DEFERRED
    assert result.delivery.next_attempt_at == T0 + BACKOFF.lifetime


def test_a_deferral_after_the_lifetime_expires_the_delivery() -> None:
    current = _delivery(DeliveryState.DEFERRED, attempt=20)
    at = T0 + BACKOFF.lifetime + timedelta(seconds=1)
    result = transition(current, _event(Step.DEFERRED, at), BACKOFF)
    assert result.delivery is not None
    assert result.delivery.state is DeliveryState.EXPIRED
    assert result.delivery.reason is Reason.EXPIRED
    assert result.delivery.next_attempt_at is None


def test_expiry_one_second_before_the_lifetime_is_refused_as_history() -> None:
    current = _delivery(DeliveryState.DEFERRED)
    at = T0 + BACKOFF.lifetime - timedelta(seconds=1)
    result = transition(current, _event(Step.EXPIRE, at), BACKOFF)
    assert result.effect is Effect.HISTORY
    assert result.delivery == current


def test_an_expiry_the_relay_reported_applies_before_our_own_lifetime() -> None:
    # Postfix logs status=expired when its own queue lifetime ran out: the relay gave up, even
    # though our lifetime (counted from the first attempt we saw) has not.
    current = _delivery(DeliveryState.DEFERRED)
    at = T0 + timedelta(hours=2)
    result = transition(current, _event(Step.EXPIRE, at, reported=True), BACKOFF)
    assert result.effect is Effect.APPLIED
    assert result.delivery is not None
    assert result.delivery.state is DeliveryState.EXPIRED


def test_expiry_at_the_lifetime_expires_the_delivery() -> None:
    current = _delivery(DeliveryState.DEFERRED)
    result = transition(current, _event(Step.EXPIRE, T0 + BACKOFF.lifetime), BACKOFF)
    assert result.effect is Effect.APPLIED
    assert result.delivery is not None
    assert result.delivery.state is DeliveryState.EXPIRED


def test_a_late_reply_for_an_earlier_attempt_does_not_roll_the_state_back() -> None:
    current = _delivery(DeliveryState.DELIVERED, attempt=3)
    result = transition(current, _event(Step.BOUNCED, T0 + timedelta(hours=5), attempt=2), BACKOFF)
    assert result.effect is Effect.HISTORY
    assert result.delivery == current
    assert "older than attempt 3" in result.note


def test_an_event_older_than_the_last_attempt_is_history_only() -> None:
    current = _delivery(DeliveryState.DEFERRED, attempt=2)
    result = transition(current, _event(Step.BOUNCED, T0 + timedelta(minutes=30)), BACKOFF)
    assert result.effect is Effect.HISTORY
    assert result.delivery == current


def test_a_complaint_is_never_too_old_to_count() -> None:
    current = _delivery(DeliveryState.DELIVERED, attempt=3)
    result = transition(current, _event(Step.COMPLAINED, T0, attempt=1), BACKOFF)
    assert result.effect is Effect.APPLIED
    assert result.delivery is not None
    assert result.delivery.state is DeliveryState.COMPLAINED


def test_an_accepted_message_that_bounces_later_is_bounced() -> None:
    current = _delivery(DeliveryState.DELIVERED)
    result = transition(current, _event(Step.BOUNCED, T0 + timedelta(hours=2)), BACKOFF)
    assert result.delivery is not None
    assert result.delivery.state is DeliveryState.BOUNCED


@pytest.mark.parametrize(
    ("standing", "state", "expected"),
    [
        (None, DeliveryState.DELIVERED, Standing.DELIVERED),
        (None, DeliveryState.DEFERRED, Standing.RETRYING),
        (None, DeliveryState.BOUNCED, Standing.BOUNCED),
        (None, DeliveryState.EXPIRED, Standing.BOUNCED),
        (None, DeliveryState.BLOCKED, Standing.RETRYING),
        (None, DeliveryState.COMPLAINED, Standing.RETRYING),
        (Standing.DELIVERED, DeliveryState.BLOCKED, Standing.DELIVERED),
        (Standing.BOUNCED, DeliveryState.COMPLAINED, Standing.BOUNCED),
        (Standing.BOUNCED, DeliveryState.DELIVERED, Standing.DELIVERED),
        (Standing.RETRYING, DeliveryState.DEFERRED, Standing.RETRYING),
        (Standing.DELIVERED, DeliveryState.DEFERRED, Standing.RETRYING),
        (Standing.SUPPRESSED, DeliveryState.DELIVERED, Standing.SUPPRESSED),
        (Standing.SUPPRESSED, DeliveryState.BOUNCED, Standing.SUPPRESSED),
    ],
)
def test_recipient_standing_follows_its_deliveries_but_never_lifts_a_suppression(
    standing: Standing | None, state: DeliveryState, expected: Standing
) -> None:
    assert standing_after(standing, state) is expected
