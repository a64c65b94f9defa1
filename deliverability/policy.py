"""Policy as data: classification rules, backoff, throttling and list-hygiene numbers.

The shipped `data/default_policy.toml` holds every number with its source; a user file overrides
or extends it. This module holds the typed, immutable form the rest of the code reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from deliverability.vocabulary import Reason


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """When to try a deferred delivery again (RFC 5321 section 4.5.4.1)."""

    #: RFC 5321 4.5.4.1: "the retry interval SHOULD be at least 30 minutes".
    first_retry: timedelta = timedelta(minutes=30)
    multiplier: float = 2.0
    max_interval: timedelta = timedelta(hours=4)
    #: +/- this fraction of the interval, deterministic per delivery (see states.py).
    jitter: float = 0.1
    #: RFC 5321 4.5.4.1: "the give-up time generally needs to be at least 4-5 days".
    lifetime: timedelta = timedelta(days=5)
    #: Greylisting daemons (postgrey's default delay is 300 s) accept a retry after a few minutes.
    greylist_retry: timedelta = timedelta(minutes=5)
    #: A "try again in N seconds" hint is honoured, but never past this.
    max_hint: timedelta = timedelta(hours=4)


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """How a destination that pushes back (421, 452, rate-limit texts) is slowed down."""

    initial_pause: timedelta = timedelta(minutes=15)
    pause_multiplier: float = 2.0
    max_pause: timedelta = timedelta(hours=4)
    #: A repeat inside this window doubles the pause; after it, the next push-back starts afresh.
    repeat_window: timedelta = timedelta(hours=4)
    #: Suggested maximum rate (messages per minute) when first throttled; halves on each repeat.
    initial_rate: float = 60.0
    rate_multiplier: float = 0.5
    min_rate: float = 1.0
    #: The throttle lifts after this many consecutive deliveries to the destination.
    release_after_deliveries: int = 20
    #: Blocks from one destination: this many within the window throttle it too.
    blocked_count: int = 10
    blocked_window: timedelta = timedelta(hours=1)
    #: Provider groups: name -> domains and MX host suffixes that share one throttle.
    provider_domains: dict[str, tuple[str, ...]] = field(default_factory=dict)
    provider_mx_suffixes: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HygienePolicy:
    """When an address is suppressed; see DESIGN.md "List hygiene defaults"."""

    #: Bare or ambiguous 550/553: this many distinct messages within the window suppress.
    ambiguous_count: int = 2
    ambiguous_window: timedelta = timedelta(days=30)
    #: Soft strikes (mailbox full, expired retries): this many on distinct days, spanning at
    #: least `soft_span`, with no delivery between, within `soft_window`.
    soft_strikes: int = 3
    soft_span: timedelta = timedelta(days=7)
    soft_window: timedelta = timedelta(days=30)
    #: Domain incident: at least this many distinct addresses hard-bounced at one domain, and at
    #: least this fraction of that domain's attempts, within the window.
    incident_addresses: int = 20
    incident_fraction: float = 0.5
    incident_window: timedelta = timedelta(hours=1)
    #: Alerts and throttles expire; suppressions do not unless a reason has an expiry here.
    alert_lifetime: timedelta = timedelta(days=7)
    suppression_expiry: dict[Reason, timedelta] = field(default_factory=dict)
