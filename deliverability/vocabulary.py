"""The closed vocabularies of deliverability: every enum is a string enum, stored by value.

These names are a contract (see DESIGN.md): the database, the JSON output and the policy files all
use the string values, so a value is never renamed, only added.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What a reply means for the message it answered."""

    DELIVERED = "delivered"
    #: Transient: retry with backoff (4xx, or a 5xx the policy treats as temporary).
    DEFERRED = "deferred"
    #: Permanent and the address is bad: a hard bounce.
    BOUNCED = "bounced"
    #: Permanent for this message, but the fault is the sender's, the content's or the
    #: reputation's: the address is not penalised.
    BLOCKED = "blocked"
    #: A feedback-loop complaint (RFC 5965 ARF report).
    COMPLAINED = "complained"
    #: Not a delivery result at all: a greeting, HELP text, the 354 go-ahead, an auto-reply.
    #: `record()` refuses it as a delivery result; `explain` says so.
    INFORMATIONAL = "informational"

    @property
    def is_final(self) -> bool:
        """True when no further attempt of the same message should be made."""
        return self in (Outcome.DELIVERED, Outcome.BOUNCED, Outcome.BLOCKED, Outcome.COMPLAINED)


class Fault(StrEnum):
    """Whose problem the reply describes."""

    RECIPIENT = "recipient"
    DOMAIN = "domain"
    SENDER = "sender"
    MESSAGE = "message"
    DESTINATION = "destination"
    NETWORK = "network"
    UNKNOWN = "unknown"


class Reason(StrEnum):
    """Why: the Sisimai project's reason names where one fits, so results compare with it.

    `UNDEFINED` is a value, never None.
    """

    USER_UNKNOWN = "user_unknown"
    MAILBOX_FULL = "mailbox_full"
    HOST_UNKNOWN = "host_unknown"
    NOT_ACCEPT = "not_accept"
    HAS_MOVED = "has_moved"
    SUSPEND = "suspend"
    RATE_LIMITED = "rate_limited"
    SYSTEM_FULL = "system_full"
    SYSTEM_ERROR = "system_error"
    NETWORK_ERROR = "network_error"
    EXPIRED = "expired"
    BLOCKED = "blocked"
    BAD_REPUTATION = "bad_reputation"
    SPAM_DETECTED = "spam_detected"
    VIRUS_DETECTED = "virus_detected"
    POLICY_VIOLATION = "policy_violation"
    AUTH_FAILURE = "auth_failure"
    REQUIRE_PTR = "require_ptr"
    SECURITY_ERROR = "security_error"
    NO_RELAYING = "no_relaying"
    CONTENT_ERROR = "content_error"
    NOT_COMPLIANT_RFC = "not_compliant_rfc"
    EMAIL_TOO_LARGE = "email_too_large"
    SYNTAX_ERROR = "syntax_error"
    MAILER_ERROR = "mailer_error"
    REJECTED = "rejected"
    FILTERED = "filtered"
    GREYLISTED = "greylisted"
    FEEDBACK = "feedback"
    VACATION = "vacation"
    DELIVERED = "delivered"
    INFORMATIONAL = "informational"
    UNDEFINED = "undefined"


class DeliveryState(StrEnum):
    """State of one message to one recipient."""

    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    BLOCKED = "blocked"
    #: Deferred past its lifetime; counts as a failure.
    EXPIRED = "expired"
    #: The recipient filed a complaint about this message.
    COMPLAINED = "complained"

    @property
    def is_final(self) -> bool:
        return self is not DeliveryState.DEFERRED


class Standing(StrEnum):
    """A recipient's standing, derived from its deliveries and the hygiene rules."""

    #: Never recorded: nothing is known (never stored).
    UNKNOWN = "unknown"
    DELIVERED = "delivered"
    RETRYING = "retrying"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"


class ActionKind(StrEnum):
    SUPPRESS = "suppress"
    THROTTLE = "throttle"
    ALERT = "alert"
    RELEASE = "release"


class ActionScope(StrEnum):
    ADDRESS = "address"
    DOMAIN = "domain"
    #: A provider group from the policy (all Google-hosted domains, say).
    PROVIDER = "provider"
    SENDER = "sender"


class ActionStatus(StrEnum):
    OPEN = "open"
    #: Held for a human: a suppression raised during a domain incident.
    PENDING = "pending"
    RESOLVED = "resolved"
    EXPIRED = "expired"
    DISCARDED = "discarded"


class EventKind(StrEnum):
    """Where an event came from."""

    REPLY = "reply"  # a reply the sender got during the SMTP conversation
    BOUNCE = "bounce"  # an asynchronous bounce message (DSN or a non-standard one)
    COMPLAINT = "complaint"  # a feedback-loop report
    AUTO_REPLY = "auto_reply"  # an RFC 3834 auto-reply (vacation): recorded, never a bounce
    EXPIRY = "expiry"  # the engine gave up on a deferred delivery
    MANUAL = "manual"  # a person's suppress/unsuppress
