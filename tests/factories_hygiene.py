"""A history builder for the hygiene tests: recipients and events written straight to the session
(as the engine writes them), then handed to the hygiene pass the way the engine hands them."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from deliverability.addresses import normalize_address
from deliverability.hygiene import ActionSummary
from deliverability.policy import Policy
from deliverability.store import hygiene as store_hygiene
from deliverability.store.models import Event, Recipient
from deliverability.verdicts import Verdict
from deliverability.vocabulary import EventKind, Fault, Outcome, Reason, Standing

_keys = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the hygiene pass reads of a recorded event (the engine passes RecordedEvent)."""

    event_id: int
    verdict: Verdict | None = None


def recorded(row: Event) -> Recorded:
    """The event as the engine hands it over, with the verdict it was recorded with."""
    verdict = Verdict(
        outcome=row.outcome,
        reason=row.reason,
        fault=row.fault,
        rule=row.rule,
        decisive=row.decisive,
        throttle=row.throttle,
        pause=None if row.pause_seconds is None else timedelta(seconds=row.pause_seconds),
    )
    return Recorded(row.id, verdict)


#: A plausible fault for each outcome (hygiene does not read it; the schema needs one).
_FAULT = {
    Outcome.DELIVERED: Fault.UNKNOWN,
    Outcome.DEFERRED: Fault.DESTINATION,
    Outcome.BOUNCED: Fault.RECIPIENT,
    Outcome.BLOCKED: Fault.SENDER,
    Outcome.COMPLAINED: Fault.RECIPIENT,
}


class History:
    """Events for addresses, recorded at given times; `record` also runs the incremental pass."""

    def __init__(self, session: Session, policy: Policy) -> None:
        self.session = session
        self.policy = policy
        self._recipients: dict[str, Recipient] = {}

    def recipient(self, address: str, at: datetime) -> Recipient:
        parsed = normalize_address(address)
        found = self._recipients.get(parsed.key)
        if found is None:
            found = Recipient(
                address=parsed.text,
                address_key=parsed.key,
                domain=parsed.domain,
                standing=Standing.RETRYING,
                reason=Reason.UNDEFINED,
                standing_since=at,
                first_seen_at=at,
                last_event_at=at,
            )
            self.session.add(found)
            self.session.flush()
            self._recipients[parsed.key] = found
        return found

    def event(
        self,
        address: str,
        at: datetime,
        outcome: Outcome,
        reason: Reason,
        *,
        decisive: bool = False,
        throttle: bool = False,
        pause: timedelta | None = None,
        message_id: str | None = None,
        text: str | None = None,
        code: int | None = None,
        status: str | None = None,
    ) -> Event:
        r = self.recipient(address, at)
        row = Event(
            key=f"k{next(_keys)}",
            at=at,
            recorded_at=at,
            kind=EventKind.COMPLAINT if outcome is Outcome.COMPLAINED else EventKind.REPLY,
            recipient_id=r.id,
            domain=r.domain,
            message_id=message_id if message_id is not None else f"m{next(_keys)}",
            attempt=1,
            code=code,
            status=status,
            text=text,
            outcome=outcome,
            reason=reason,
            fault=_FAULT.get(outcome, Fault.UNKNOWN),
            rule="test",
            decisive=decisive,
            source="test",
            throttle=throttle,
            pause_seconds=None if pause is None else int(pause.total_seconds()),
        )
        self.session.add(row)
        self.session.flush()
        return row

    def record(
        self, address: str, at: datetime, outcome: Outcome, reason: Reason, **kw: Any
    ) -> list[ActionSummary]:
        """Write one event and run the incremental hygiene pass on it, with now = its time."""
        row = self.event(address, at, outcome, reason, **kw)
        return self.run([row], at)

    def run(self, rows: list[Event], now: datetime) -> list[ActionSummary]:
        """The incremental pass over events already written, as record_many hands a chunk."""
        return store_hygiene.on_events(
            self.session, [recorded(row) for row in rows], self.policy, now
        )

    # Shorthands for the evidence classes.
    def hard(self, address: str, at: datetime, **kw: Any) -> list[ActionSummary]:
        return self.record(address, at, Outcome.BOUNCED, Reason.USER_UNKNOWN, decisive=True, **kw)

    def ambiguous(self, address: str, at: datetime, **kw: Any) -> list[ActionSummary]:
        return self.record(address, at, Outcome.BOUNCED, Reason.REJECTED, **kw)

    def soft(self, address: str, at: datetime, **kw: Any) -> list[ActionSummary]:
        return self.record(address, at, Outcome.DEFERRED, Reason.MAILBOX_FULL, **kw)

    def delivered(self, address: str, at: datetime, **kw: Any) -> list[ActionSummary]:
        return self.record(address, at, Outcome.DELIVERED, Reason.DELIVERED, **kw)

    def blocked(self, address: str, at: datetime, **kw: Any) -> list[ActionSummary]:
        return self.record(
            address,
            at,
            Outcome.BLOCKED,
            Reason.BLOCKED,
            code=550,
            status="5.7.1",
            text="Message rejected due to local policy",
            **kw,
        )

    def pushback(self, address: str, at: datetime, **kw: Any) -> list[ActionSummary]:
        return self.record(
            address, at, Outcome.DEFERRED, Reason.RATE_LIMITED, throttle=True, code=421, **kw
        )
