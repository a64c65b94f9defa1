"""List hygiene rules: when to suppress an address, throttle a destination, alert the sender.

Pure: every function takes the evidence already counted (by the store's set-based queries) plus the
policy and the times involved, and returns a decision. Nothing here reads a clock or a database.
The numbers and their sources are in `HygienePolicy` / `ThrottlePolicy` and docs/hygiene.md.

Windows are inclusive at both ends: an event exactly `window` before the anchor still counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from deliverability.policy import HygienePolicy, ThrottlePolicy
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    Fault,
    Outcome,
    Reason,
)

__all__ = [
    "BLOCK_FAULTS",
    "RULE_AMBIGUOUS",
    "RULE_BLOCKED",
    "RULE_BLOCKED_THROTTLE",
    "RULE_COMPLAINT",
    "RULE_HARD",
    "RULE_INCIDENT",
    "RULE_PUSHBACK",
    "RULE_RELEASE",
    "RULE_SOFT",
    "ActionSummary",
    "Evidence",
    "Throttle",
    "ThrottleStep",
    "ambiguous_suppresses",
    "blocks_throttle",
    "destination_of",
    "evidence_of",
    "in_window",
    "is_exempt_give_up",
    "is_incident",
    "is_relay",
    "is_sender_deferral",
    "open_key",
    "provider_groups",
    "provider_of_mx",
    "pushback_step",
    "soft_suppresses",
    "suppression_expires",
    "throttle_released",
]

#: Rule ids, stored on each action so `deliverability actions` says which rule raised it.
RULE_HARD = "hygiene.hard_bounce"
RULE_AMBIGUOUS = "hygiene.ambiguous_bounce"
RULE_SOFT = "hygiene.soft_strikes"
RULE_COMPLAINT = "hygiene.complaint"
RULE_BLOCKED = "hygiene.sender_blocked"
RULE_BLOCKED_THROTTLE = "hygiene.repeated_blocks"
RULE_PUSHBACK = "hygiene.pushback"
RULE_INCIDENT = "hygiene.domain_incident"
RULE_RELEASE = "hygiene.release"

#: Suppressions raised by bounces: the ones a domain incident holds for a person to confirm.
BOUNCE_RULES = (RULE_HARD, RULE_AMBIGUOUS)

#: The faults of a deferral that is a block (`is_sender_deferral`): the sender's (a 4xx
#: blocklist, reputation, authentication or TLS refusal) and the message's (a 4xx refusal of
#: its content: a virus, its media, its size), as their 5xx forms are `blocked`. In this order
#: in the block index's WHERE (`store.models.BLOCKS_WHERE`) and in the queries that match it.
BLOCK_FAULTS = (Fault.SENDER, Fault.MESSAGE)


class Evidence(StrEnum):
    """What one recorded event means for list hygiene."""

    #: A bounce with decisive evidence (5.1.1, 5.1.10, a provider's "no such user"): suppress.
    HARD = "hard"
    #: A bounce without decisive evidence (a bare 550/553): suppress only when repeated.
    AMBIGUOUS = "ambiguous"
    #: Mailbox full, inactive-leaning failures, expired retries: a strike on the address.
    SOFT = "soft"
    COMPLAINT = "complaint"
    #: The sender or its message was refused (reputation, policy, auth, TLS, content): never a
    #: strike on the address. A `blocked` outcome, or a deferral whose fault is the sender's or
    #: the message's (`is_sender_deferral`).
    BLOCKED = "blocked"
    #: The destination pushed back (421, 452, rate-limit texts): throttle it, never a strike.
    PUSHBACK = "pushback"
    DELIVERED = "delivered"
    #: Nothing for hygiene (an ordinary deferral, an auto-reply, informational text).
    NEUTRAL = "neutral"


def evidence_of(
    outcome: Outcome,
    reason: Reason,
    *,
    decisive: bool,
    throttle: bool,
    policy: HygienePolicy,
    fault: Fault = Fault.UNKNOWN,
    restated: bool = False,
) -> Evidence:
    """Classify one event for the hygiene rules.

    The store's SQL predicates mirror this function (tests pin that they agree). Order matters: a
    push-back is never a strike, whatever its reason; a block is never a strike (DESIGN.md: the
    fault is the sender's, so the address is not penalised). A deferral whose fault is the
    sender's or the message's is a block too (`is_sender_deferral`): the same refusal,
    answered with a 4xx. `restated`: the event is a give-up its delivery already had
    (`Event.restated`).
    """
    if throttle:
        return Evidence.PUSHBACK
    if outcome is Outcome.COMPLAINED:
        return Evidence.COMPLAINT
    if outcome is Outcome.DELIVERED:
        return Evidence.DELIVERED
    if outcome is Outcome.BLOCKED:
        return Evidence.BLOCKED
    exempt = is_exempt_give_up(reason, fault, restated, policy)
    if outcome is Outcome.BOUNCED:
        if decisive:
            return Evidence.HARD
        if reason in policy.soft_reasons:
            return Evidence.NEUTRAL if exempt else Evidence.SOFT
        return Evidence.AMBIGUOUS
    if outcome is Outcome.DEFERRED and reason in policy.soft_reasons and not exempt:
        return Evidence.SOFT
    if is_sender_deferral(outcome, reason, fault, policy):
        return Evidence.BLOCKED
    return Evidence.NEUTRAL


def is_exempt_give_up(reason: Reason, fault: Fault, restated: bool, policy: HygienePolicy) -> bool:
    """A give-up (reason `expired`) that says nothing about the address: no strike
    (`evidence_of`) and no result for its standing (the engine). An expiry after days of the
    sender's, the message's or the destination's own trouble (its last deferral's fault, one of
    `expiry_exempt_faults`), or a give-up of a delivery already given up (`restated`: the
    engine's and a relay's report of it), since one delivery's give-up is one strike at most.
    `store.hygiene.exempt_give_up` and `_is_soft` say the same in SQL."""
    return reason is Reason.EXPIRED and (restated or fault in policy.expiry_exempt_faults)


def is_sender_deferral(
    outcome: Outcome, reason: Reason, fault: Fault, policy: HygienePolicy
) -> bool:
    """A deferral whose fault is the sender's or its message's (`BLOCK_FAULTS`; not a
    push-back: `evidence_of` checks that first) counts as a block.

    RFC 5321 section 4.2.1 lets a server refuse temporarily, and the classifier lets the class
    digit decide retry or stop: a 4xx blocklist, reputation, authentication or TLS refusal
    (RFC 3463 X.7.x), or a 4xx refusal of the content (a virus, X.6.x media, a size), is
    `deferred`, with the reason and fault of its 5xx form, which is `blocked`. The delivery is
    retried as any deferral, but every attempt there is refused for the sender's own reason, as
    a 5xx block is, and the sender must hear of it: a sender alert, and a throttle of the
    destination when they repeat. Never a strike on the address. Two kinds of deferral stay
    what they were: an expiry (the sender giving up, not a reply: the deferrals before it were
    counted), and a deferral whose reason is a soft one (`soft_reasons`: the rule that matched
    says it is about the address).
    """
    return (
        outcome is Outcome.DEFERRED
        and fault in BLOCK_FAULTS
        and reason is not Reason.EXPIRED
        and reason not in policy.soft_reasons
    )


def in_window(at: datetime, anchor: datetime, window: timedelta) -> bool:
    """True when `at` lies within `window` before `anchor` (both ends included)."""
    return anchor - window <= at <= anchor


def ambiguous_suppresses(distinct_messages: int, policy: HygienePolicy) -> bool:
    """A bare or ambiguous 550/553 suppresses when `ambiguous_count` distinct messages got one
    within `ambiguous_window` (retries of one message count once: one bad relay hop repeating
    itself is not evidence that the mailbox is gone). The caller counts only bounces no older
    than the address's latest delivery recorded before the last one: a delivery in between
    resets the count, and bounces older than a delivery are stale (docs/hygiene.md, "Stale
    bounces"). A hard bounce likewise suppresses only when no delivery is dated after it."""
    return distinct_messages >= policy.ambiguous_count


def soft_suppresses(
    distinct_days: int, first_strike: datetime, last_strike: datetime, policy: HygienePolicy
) -> bool:
    """Soft strikes suppress when there are `soft_strikes` of them on distinct days, spanning at
    least `soft_span`. The caller counts only strikes within `soft_window` of the last one and
    after the address's last delivery (a delivery resets the count)."""
    return distinct_days >= policy.soft_strikes and last_strike - first_strike >= policy.soft_span


def is_incident(bounced_addresses: int, bounces: int, attempts: int, policy: HygienePolicy) -> bool:
    """A burst of bounces at one domain within `incident_window` is the domain's incident, not
    that many bad addresses: at least `incident_addresses` distinct addresses, and bounces at
    least `incident_fraction` of the domain's attempts in the window."""
    if bounced_addresses < policy.incident_addresses or attempts <= 0:
        return False
    return bounces >= policy.incident_fraction * attempts


def suppression_expires(reason: Reason, at: datetime, policy: HygienePolicy) -> datetime | None:
    """When a suppression raised at `at` for `reason` lapses: never, unless the policy sets an
    expiry for that reason."""
    lifetime = policy.suppression_expiry.get(reason)
    return None if lifetime is None else at + lifetime


def blocks_throttle(blocks_in_window: int, policy: ThrottlePolicy) -> bool:
    """Repeated blocks from one destination (`blocked_count` within `blocked_window`) throttle
    it too: hammering a server that refuses the sender makes the block last longer."""
    return blocks_in_window >= policy.blocked_count


def throttle_released(deliveries_since: int, policy: ThrottlePolicy) -> bool:
    """A throttle lifts after `release_after_deliveries` deliveries since its last push-back."""
    return deliveries_since >= policy.release_after_deliveries


@dataclass(frozen=True, slots=True)
class ThrottleStep:
    """A destination's throttle as set by its latest push-back."""

    pause_until: datetime
    max_rate: float
    #: 0 for the first push-back in the window, n for the n-th repeat.
    step: int


def pushback_step(
    last_at: datetime,
    pushbacks_in_window: int,
    rule_pause: timedelta | None,
    policy: ThrottlePolicy,
) -> ThrottleStep:
    """The throttle after the latest push-back at `last_at`, the n-th within `repeat_window`.

    The pause starts at `initial_pause` (or the provider rule's own pause), doubles on each
    repeat and stops at `max_pause` (a provider rule's longer pause is kept as it is); the
    suggested rate starts at `initial_rate` and halves on each repeat down to `min_rate`.
    """
    step = max(0, pushbacks_in_window - 1)
    base = rule_pause if rule_pause is not None else policy.initial_pause
    cap = max(policy.max_pause, base)
    # Cap the exponent: past ~60 doublings every pause is at the cap anyway.
    factor = policy.pause_multiplier ** min(step, 60)
    # Compare in seconds: timedelta * a huge factor overflows before min() could cap it.
    seconds = base.total_seconds() * factor
    pause = cap if seconds >= cap.total_seconds() else timedelta(seconds=seconds)
    rate = max(policy.min_rate, policy.initial_rate * policy.rate_multiplier ** min(step, 60))
    return ThrottleStep(pause_until=last_at + pause, max_rate=rate, step=step)


def destination_of(
    domain: str, policy: ThrottlePolicy, mx_host: str | None = None
) -> tuple[ActionScope, str]:
    """The throttle target for a recipient domain: its provider group when the policy maps the
    domain (or its MX host's suffix) to one, else the domain itself. The policy's domains win
    over an MX suffix."""
    for name, domains in policy.provider_domains.items():
        if domain in domains:
            return ActionScope.PROVIDER, name
    # The sender's own relay names itself, not the domain's MX.
    if mx_host and not is_relay(mx_host, policy):
        group = provider_of_mx(mx_host, policy)
        if group is not None:
            return ActionScope.PROVIDER, group
    return ActionScope.DOMAIN, domain


def provider_of_mx(mx_host: str, policy: ThrottlePolicy) -> str | None:
    """The provider group whose MX suffixes match a (normalised) MX host name, or None.

    A suffix ``.google.com`` matches ``aspmx.l.google.com`` and ``google.com`` itself, never
    ``notgoogle.com``: the match is on whole labels.
    """
    host = mx_host.lower().rstrip(".")
    for name, suffixes in policy.provider_mx_suffixes.items():
        if _ends_with_any(host, suffixes):
            return name
    return None


def is_relay(mx_host: str, policy: ThrottlePolicy) -> bool:
    """Is this host one of the sender's own relays (`relay_hosts`, matched as MX suffixes are)?
    Its name says nothing about where the recipient's domain is hosted."""
    return _ends_with_any(mx_host.lower().rstrip("."), policy.relay_hosts)


def _ends_with_any(host: str, suffixes: tuple[str, ...]) -> bool:
    """Does `host` equal or end with one of `suffixes`, on whole labels?"""
    for suffix in suffixes:
        bare = suffix.strip(".")
        if bare and (host == bare or host.endswith("." + bare)):
            return True
    return False


def provider_groups(policy: ThrottlePolicy) -> set[str]:
    """Every provider group the policy names (by its domains, its MX suffixes or both)."""
    return set(policy.provider_domains) | set(policy.provider_mx_suffixes)


def open_key(kind: ActionKind, scope: ActionScope, target: str) -> str:
    """The key that is unique among open and pending actions (`Action.open_key`)."""
    return f"{kind.value}:{scope.value}:{target}"


@dataclass(frozen=True, slots=True)
class ActionSummary:
    """An action a rule raised or refreshed, as returned to the sender in a Decision."""

    id: int
    kind: ActionKind
    scope: ActionScope
    target: str
    status: ActionStatus
    reason: Reason
    rule: str
    detail: str
    created_at: datetime
    expires_at: datetime | None = None
    pause_until: datetime | None = None
    max_rate: float | None = None
    #: False when an open action was refreshed rather than raised anew.
    new: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "scope": self.scope.value,
            "target": self.target,
            "status": self.status.value,
            "reason": self.reason.value,
            "rule": self.rule,
            "detail": self.detail,
            "created_at": self.created_at.isoformat(),
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "pause_until": None if self.pause_until is None else self.pause_until.isoformat(),
            "max_rate": self.max_rate,
            "new": self.new,
        }


@dataclass(frozen=True, slots=True)
class Throttle:
    """What the sender needs to know before sending to a destination."""

    #: The domain or provider group throttled.
    destination: str
    scope: ActionScope
    paused_until: datetime
    #: Suggested maximum messages per minute once the pause is over.
    max_rate: float | None
    reason: Reason
    step: int
    action_id: int

    def as_dict(self) -> dict[str, Any]:
        # `domain` only for a domain scope: a provider group's name is not a domain (the same
        # fields as `deliverability throttles --format json`).
        return {
            "target": self.destination,
            "scope": self.scope.value,
            "domain": self.destination if self.scope is ActionScope.DOMAIN else None,
            "until": self.paused_until.isoformat(),
            "max_rate": self.max_rate,
            "reason": self.reason.value,
            "step": self.step,
            "action_id": self.action_id,
        }
