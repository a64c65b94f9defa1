"""The Verdict: what classification says about one reply."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from deliverability.vocabulary import Fault, Outcome, Reason


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a reply means: `outcome` for the message, `reason` and `fault` for the address and
    the destination, and `rule`, the id of the policy rule that decided (for `explain`)."""

    outcome: Outcome
    reason: Reason
    fault: Fault
    rule: str
    #: For bounces: the evidence is decisive (an enhanced code such as 5.1.1 or a provider's
    #: "no such user" text) rather than a bare, ambiguous 550/553.
    decisive: bool = False
    #: The destination is pushing back (421, 452, rate-limit texts): throttle it.
    throttle: bool = False
    #: When to retry, from the reply itself (greylisting, "try again in N seconds").
    retry_after: timedelta | None = None
    #: A provider rule's own throttle pause, overriding the policy's first step.
    pause: timedelta | None = None
    #: The reply's enhanced status is not to be trusted (RFC 3463 3.1): its class disagrees with
    #: the basic code's, or it was out of range and set aside.
    inconsistent: bool = False
    #: Why, in a sentence, with the source of the rule.
    why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "reason": self.reason.value,
            "fault": self.fault.value,
            "rule": self.rule,
            "decisive": self.decisive,
            "throttle": self.throttle,
            "retry_after": None if self.retry_after is None else self.retry_after.total_seconds(),
            "pause": None if self.pause is None else self.pause.total_seconds(),
            "inconsistent": self.inconsistent,
            "why": self.why,
        }


#: An ARF feedback report (RFC 5965) is a complaint by the recipient, whatever text comes with it.
COMPLAINT_VERDICT = Verdict(
    outcome=Outcome.COMPLAINED,
    reason=Reason.FEEDBACK,
    fault=Fault.RECIPIENT,
    rule="arf.complaint",
    why="a feedback-loop complaint (RFC 5965 ARF report)",
)

#: An automatic reply (RFC 3834: vacation, out of office) says the message arrived: it is kept in
#: history and is never a bounce.
AUTO_REPLY_VERDICT = Verdict(
    outcome=Outcome.INFORMATIONAL,
    reason=Reason.VACATION,
    fault=Fault.RECIPIENT,
    rule="rfc3834.auto_reply",
    why="an automatic reply (RFC 3834): recorded in history, never a bounce",
)
