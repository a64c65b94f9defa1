"""The pure list-hygiene rules, at each policy threshold and one either side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deliverability.hygiene import (
    Evidence,
    Throttle,
    ambiguous_suppresses,
    blocks_throttle,
    destination_of,
    evidence_of,
    in_window,
    is_incident,
    is_relay,
    is_sender_deferral,
    pushback_step,
    soft_suppresses,
    suppression_expires,
    throttle_released,
)
from deliverability.policy import HygienePolicy, ThrottlePolicy
from deliverability.vocabulary import ActionScope, Fault, Outcome, Reason

H = HygienePolicy()
T = ThrottlePolicy()
NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _ev(
    outcome: Outcome, reason: Reason, decisive: bool = False, throttle: bool = False
) -> Evidence:
    return evidence_of(outcome, reason, decisive=decisive, throttle=throttle, policy=H)


def test_decisive_bounce_is_hard_evidence() -> None:
    assert _ev(Outcome.BOUNCED, Reason.USER_UNKNOWN, decisive=True) is Evidence.HARD


def test_bare_550_without_decisive_evidence_is_ambiguous() -> None:
    assert _ev(Outcome.BOUNCED, Reason.REJECTED) is Evidence.AMBIGUOUS


@pytest.mark.parametrize("reason", sorted(H.soft_reasons))
def test_soft_reasons_are_strikes_whether_deferred_or_bounced(reason: Reason) -> None:
    assert _ev(Outcome.DEFERRED, reason) is Evidence.SOFT
    assert _ev(Outcome.BOUNCED, reason) is Evidence.SOFT


def test_an_ordinary_deferral_is_no_strike() -> None:
    assert _ev(Outcome.DEFERRED, Reason.SYSTEM_ERROR) is Evidence.NEUTRAL


@pytest.mark.parametrize(
    "reason",
    [Reason.BLOCKED, Reason.BAD_REPUTATION, Reason.POLICY_VIOLATION, Reason.AUTH_FAILURE,
     Reason.SECURITY_ERROR, Reason.SPAM_DETECTED],
)  # fmt: skip
def test_blocked_verdicts_are_never_a_strike_on_the_address(reason: Reason) -> None:
    assert _ev(Outcome.BLOCKED, reason) is Evidence.BLOCKED
    assert _ev(Outcome.BLOCKED, reason, decisive=True) is Evidence.BLOCKED


#: The reasons the default policy gives a 4xx refusal of the sender (blocklist, reputation,
#: policy, authentication, reverse DNS, TLS): `deferred` with the fault `sender`.
SENDER_REFUSALS = [
    Reason.BLOCKED,
    Reason.BAD_REPUTATION,
    Reason.POLICY_VIOLATION,
    Reason.AUTH_FAILURE,
    Reason.REQUIRE_PTR,
    Reason.SECURITY_ERROR,
]


def _deferred(reason: Reason, fault: Fault, throttle: bool = False) -> Evidence:
    return evidence_of(
        Outcome.DEFERRED, reason, decisive=False, throttle=throttle, policy=H, fault=fault
    )


@pytest.mark.parametrize("reason", SENDER_REFUSALS)
def test_a_deferral_for_the_senders_fault_is_a_block(reason: Reason) -> None:
    # RFC 5321 4.2.1: a 451 4.7.1 blocklist refusal is the 550 5.7.1 one, answered "try later".
    assert _deferred(reason, Fault.SENDER) is Evidence.BLOCKED
    assert is_sender_deferral(Outcome.DEFERRED, reason, Fault.SENDER, H)


#: The reasons the default policy gives a 4xx refusal of the message's content (a virus, its
#: media, its size, its headers, an attachment): `deferred` with the fault `message`.
MESSAGE_REFUSALS = [
    Reason.VIRUS_DETECTED,
    Reason.CONTENT_ERROR,
    Reason.EMAIL_TOO_LARGE,
    Reason.NOT_COMPLIANT_RFC,
    Reason.MAILER_ERROR,
    Reason.POLICY_VIOLATION,
]


@pytest.mark.parametrize("reason", MESSAGE_REFUSALS)
def test_a_deferral_for_the_messages_fault_is_a_block(reason: Reason) -> None:
    # RFC 5321 4.2.1: a 451 refusal of the content is the 5xx one (`blocked`, fault `message`),
    # answered "try later"; the sender must hear of it as of the 5xx one.
    assert _deferred(reason, Fault.MESSAGE) is Evidence.BLOCKED
    assert is_sender_deferral(Outcome.DEFERRED, reason, Fault.MESSAGE, H)


@pytest.mark.parametrize(
    "fault",
    [f for f in Fault if f not in (Fault.SENDER, Fault.MESSAGE)],
    ids=lambda fault: fault.value,
)
def test_a_deferral_for_anyone_elses_fault_is_no_block(fault: Fault) -> None:
    assert _deferred(Reason.SYSTEM_ERROR, fault) is Evidence.NEUTRAL
    assert _deferred(Reason.POLICY_VIOLATION, fault) is Evidence.NEUTRAL


def test_a_push_back_for_the_senders_fault_is_still_a_push_back() -> None:
    # Gmail's 4xx rate limit of unauthenticated mail (gmail.unauthenticated_rate_limited): the
    # sender's fault, and a push-back.
    assert _deferred(Reason.AUTH_FAILURE, Fault.SENDER, throttle=True) is Evidence.PUSHBACK


@pytest.mark.parametrize("fault", [Fault.SENDER, Fault.MESSAGE], ids=lambda fault: fault.value)
def test_an_expiry_after_a_refusal_is_neither_a_block_nor_a_strike(fault: Fault) -> None:
    # The deferrals before it were the blocks; giving up on them is no reply of the destination.
    assert _deferred(Reason.EXPIRED, fault) is Evidence.NEUTRAL
    counting = HygienePolicy(expiry_exempt_faults=frozenset())
    assert not is_sender_deferral(Outcome.DEFERRED, Reason.EXPIRED, fault, counting)


def test_a_soft_reason_stays_a_strike_whatever_fault_a_rule_gave_it() -> None:
    for reason in sorted(H.soft_reasons - {Reason.EXPIRED}):
        assert _deferred(reason, Fault.SENDER) is Evidence.SOFT
        assert _deferred(reason, Fault.MESSAGE) is Evidence.SOFT


def test_only_a_deferral_is_a_sender_deferral() -> None:
    for outcome in (Outcome.BOUNCED, Outcome.DELIVERED, Outcome.COMPLAINED, Outcome.INFORMATIONAL):
        assert not is_sender_deferral(outcome, Reason.BLOCKED, Fault.SENDER, H)


def test_a_pushback_is_never_a_strike_even_with_a_soft_reason() -> None:
    assert _ev(Outcome.DEFERRED, Reason.MAILBOX_FULL, throttle=True) is Evidence.PUSHBACK
    assert _ev(Outcome.DEFERRED, Reason.RATE_LIMITED, throttle=True) is Evidence.PUSHBACK


def test_complaint_and_delivery_are_their_own_evidence() -> None:
    assert _ev(Outcome.COMPLAINED, Reason.FEEDBACK) is Evidence.COMPLAINT
    assert _ev(Outcome.DELIVERED, Reason.DELIVERED) is Evidence.DELIVERED
    assert _ev(Outcome.INFORMATIONAL, Reason.INFORMATIONAL) is Evidence.NEUTRAL


def test_windows_include_both_ends() -> None:
    window = H.ambiguous_window
    assert in_window(NOW - window, NOW, window)
    assert in_window(NOW, NOW, window)
    assert not in_window(NOW - window - timedelta(microseconds=1), NOW, window)
    assert not in_window(NOW + timedelta(seconds=1), NOW, window)


def test_ambiguous_bounces_suppress_at_the_policy_count_of_distinct_messages() -> None:
    assert not ambiguous_suppresses(H.ambiguous_count - 1, H)
    assert ambiguous_suppresses(H.ambiguous_count, H)
    assert ambiguous_suppresses(H.ambiguous_count + 1, H)


def test_soft_strikes_suppress_at_the_count_of_distinct_days_spanning_the_policy_span() -> None:
    first, last = NOW - H.soft_span, NOW
    assert not soft_suppresses(H.soft_strikes - 1, first, last, H)
    assert soft_suppresses(H.soft_strikes, first, last, H)
    assert soft_suppresses(H.soft_strikes + 1, first, last, H)


def test_soft_strikes_spanning_less_than_the_policy_span_do_not_suppress() -> None:
    assert not soft_suppresses(H.soft_strikes, NOW - H.soft_span + timedelta(days=1), NOW, H)
    assert soft_suppresses(H.soft_strikes, NOW - H.soft_span - timedelta(days=1), NOW, H)


def test_incident_needs_enough_addresses_and_enough_of_the_domains_attempts() -> None:
    n = H.incident_addresses
    attempts = 100
    bounces_at_fraction = int(H.incident_fraction * attempts)
    assert not is_incident(n - 1, bounces_at_fraction, attempts, H)
    assert is_incident(n, bounces_at_fraction, attempts, H)
    assert is_incident(n + 1, bounces_at_fraction, attempts, H)
    assert not is_incident(n, bounces_at_fraction - 1, attempts, H)
    assert is_incident(n, bounces_at_fraction + 1, attempts, H)
    assert not is_incident(n, 0, 0, H)


def test_suppressions_never_expire_unless_the_policy_sets_an_expiry_for_the_reason() -> None:
    assert suppression_expires(Reason.USER_UNKNOWN, NOW, H) is None
    policy = HygienePolicy(suppression_expiry={Reason.MAILBOX_FULL: timedelta(days=90)})
    assert suppression_expires(Reason.MAILBOX_FULL, NOW, policy) == NOW + timedelta(days=90)
    assert suppression_expires(Reason.USER_UNKNOWN, NOW, policy) is None


def test_repeated_blocks_throttle_at_the_policy_count() -> None:
    assert not blocks_throttle(T.blocked_count - 1, T)
    assert blocks_throttle(T.blocked_count, T)
    assert blocks_throttle(T.blocked_count + 1, T)


def test_throttle_lifts_after_the_policy_count_of_deliveries() -> None:
    assert not throttle_released(T.release_after_deliveries - 1, T)
    assert throttle_released(T.release_after_deliveries, T)


def test_first_pushback_pauses_for_the_initial_pause_at_the_initial_rate() -> None:
    step = pushback_step(NOW, 1, None, T)
    assert step.pause_until == NOW + T.initial_pause
    assert step.max_rate == T.initial_rate
    assert step.step == 0


def test_each_repeat_doubles_the_pause_and_halves_the_rate() -> None:
    second = pushback_step(NOW, 2, None, T)
    third = pushback_step(NOW, 3, None, T)
    assert second.pause_until - NOW == T.initial_pause * T.pause_multiplier
    assert third.pause_until - NOW == T.initial_pause * T.pause_multiplier**2
    assert second.max_rate == T.initial_rate * T.rate_multiplier
    assert third.max_rate == T.initial_rate * T.rate_multiplier**2


def test_the_pause_stops_at_the_cap_and_the_rate_at_the_floor() -> None:
    step = pushback_step(NOW, 1000, None, T)
    assert step.pause_until - NOW == T.max_pause
    assert step.max_rate == T.min_rate


def test_a_provider_rules_own_pause_replaces_the_first_step() -> None:
    own = timedelta(hours=1)
    assert pushback_step(NOW, 1, own, T).pause_until == NOW + own
    assert pushback_step(NOW, 2, own, T).pause_until == NOW + min(T.max_pause, own * 2)


def test_a_provider_pause_longer_than_the_cap_is_kept() -> None:
    own = T.max_pause * 3
    assert pushback_step(NOW, 1, own, T).pause_until == NOW + own
    assert pushback_step(NOW, 5, own, T).pause_until == NOW + own


def test_destination_is_the_provider_group_when_the_policy_maps_the_domain() -> None:
    policy = ThrottlePolicy(
        provider_domains={"google": ("gmail.com", "googlemail.com")},
        provider_mx_suffixes={"google": ("google.com",)},
    )
    assert destination_of("gmail.com", policy) == (ActionScope.PROVIDER, "google")
    assert destination_of("example.org", policy) == (ActionScope.DOMAIN, "example.org")
    assert destination_of("example.org", policy, "aspmx.l.google.com.") == (
        ActionScope.PROVIDER,
        "google",
    )
    assert destination_of("example.org", policy, "mx.notgoogle.com") == (
        ActionScope.DOMAIN,
        "example.org",
    )


@pytest.mark.parametrize("pushbacks", [41, 1000, 10_000])
def test_very_many_pushbacks_in_the_window_stop_at_the_cap_without_overflowing(
    pushbacks: int,
) -> None:
    step = pushback_step(NOW, pushbacks, None, T)
    assert step.pause_until - NOW == T.max_pause
    assert step.max_rate == T.min_rate
    assert step.step == pushbacks - 1


def _throttle(scope: ActionScope, target: str) -> Throttle:
    return Throttle(
        destination=target,
        scope=scope,
        paused_until=NOW,
        max_rate=60.0,
        reason=Reason.RATE_LIMITED,
        step=0,
        action_id=1,
    )


def test_a_throttle_as_dict_names_a_provider_group_as_target_and_no_domain() -> None:
    data = _throttle(ActionScope.PROVIDER, "google").as_dict()
    assert (data["target"], data["scope"], data["domain"]) == ("google", "provider", None)


def test_a_throttle_as_dict_gives_the_domain_for_a_domain_scope() -> None:
    data = _throttle(ActionScope.DOMAIN, "busy.example").as_dict()
    assert (data["target"], data["scope"], data["domain"]) == (
        "busy.example",
        "domain",
        "busy.example",
    )


def test_the_senders_own_relay_is_matched_on_whole_labels_and_names_no_provider() -> None:
    policy = ThrottlePolicy(
        provider_mx_suffixes={"google": (".google.com",)},
        relay_hosts=("smtp-relay.google.com", "smarthost.example.net"),
    )
    assert is_relay("SMARTHOST.example.net.", policy)
    assert is_relay("out1.smarthost.example.net", policy)
    assert not is_relay("notsmarthost.example.net", policy)
    # A relay that happens to sit under a provider's suffix still says nothing of the domain.
    assert destination_of("acme.example", policy, "smtp-relay.google.com") == (
        ActionScope.DOMAIN,
        "acme.example",
    )
    assert destination_of("acme.example", policy, "aspmx.l.google.com") == (
        ActionScope.PROVIDER,
        "google",
    )


@pytest.mark.parametrize("fault", sorted(H.expiry_exempt_faults))
def test_an_expiry_after_the_senders_or_the_destinations_trouble_is_no_strike(fault: Fault) -> None:
    # A delivery retried for days against a blocklist (the sender's) or a push-back (the
    # destination's) never learned anything about the address.
    for outcome in (Outcome.DEFERRED, Outcome.BOUNCED):
        evidence = evidence_of(
            outcome, Reason.EXPIRED, decisive=False, throttle=False, policy=H, fault=fault
        )
        assert evidence is Evidence.NEUTRAL


@pytest.mark.parametrize("fault", [Fault.RECIPIENT, Fault.DOMAIN, Fault.NETWORK, Fault.UNKNOWN])
def test_an_expiry_after_the_recipients_or_an_unreachable_hosts_trouble_is_a_strike(
    fault: Fault,
) -> None:
    evidence = evidence_of(
        Outcome.DEFERRED, Reason.EXPIRED, decisive=False, throttle=False, policy=H, fault=fault
    )
    assert evidence is Evidence.SOFT


def test_the_exemption_is_for_expiries_only_not_for_other_soft_reasons() -> None:
    # A mailbox full is the recipient's whatever fault a rule gave it.
    evidence = evidence_of(
        Outcome.DEFERRED,
        Reason.MAILBOX_FULL,
        decisive=False,
        throttle=False,
        policy=H,
        fault=Fault.DESTINATION,
    )
    assert evidence is Evidence.SOFT
