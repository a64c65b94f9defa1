"""Small frozen records the store hands between the engine, the hygiene pass and callers."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from deliverability.verdicts import Verdict
from deliverability.vocabulary import DeliveryState, EventKind

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["HygieneHook", "RecordedEvent"]


class RecordedEvent(NamedTuple):
    """One event just written to history, as the hygiene pass receives it.

    Only new events are passed on: a replay of an event already recorded is not. A named tuple
    (immutable, like a frozen dataclass) because the engine makes one per recorded event, and a
    tuple is made in well under half the time of a frozen dataclass's `__init__`.
    """

    event_id: int
    recipient_id: int
    address_key: str
    domain: str
    message_id: str | None
    attempt: int | None
    at: datetime
    verdict: Verdict
    #: The delivery's state after this event (None when the event names no message).
    delivery_state: DeliveryState | None
    kind: EventKind = EventKind.REPLY
    #: False when the event went into history only (out of order, or after a final state).
    applied: bool = True
    #: A give-up its delivery already had (`Event.restated`): no second strike.
    restated: bool = False


class HygieneHook(Protocol):
    """What the engine calls after writing events, inside the same transaction.

    Returns the actions raised or refreshed (`deliverability.hygiene.ActionSummary`).
    The default is `deliverability.store.hygiene.on_events`.
    """

    def __call__(
        self, session: Session, events: list[RecordedEvent], policy: Any, now: datetime
    ) -> list[Any]: ...
