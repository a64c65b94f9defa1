"""The sender's API: record replies, ask who may be sent to, find retries that are due.

`Engine` is what a mailing-list sender holds in-process::

    with Engine("sqlite:///deliverability.db") as engine:
        decision = engine.record("alice@example.com", "550 5.1.1 no such user",
                                 message_id="<m1@list.example>")
        if not decision.sendable: ...
        engine.filter_sendable(["alice@example.com", "bob@example.org"])

Every way of recording (`record`, `record_many`, `expire_overdue`) goes through one code path,
`_write_chunk`: a chunk of events is classified (each distinct reply once), the recipients and
deliveries it touches are loaded with one SELECT each, the state machine (`states.py`) runs in
Python, and the rows are written with executemany statements, in one transaction per chunk. The
hygiene pass (`deliverability.store.hygiene.on_events`) runs inside that transaction.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import islice
from operator import attrgetter
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import (
    Connection,
    String,
    Table,
    and_,
    bindparam,
    case,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from deliverability.addresses import (
    Address,
    former_key,
    mx_host_of,
    normalize_address,
    normalize_domain,
)
from deliverability.clock import EARLIEST, Clock, aware_utc, given_time, parse_time, system_clock
from deliverability.collector import CollectorPause
from deliverability.errors import (
    AddressError,
    DeliverabilityError,
    InputError,
    ReplyParseError,
    not_unicode,
    storable,
)
from deliverability.hygiene import Throttle, is_exempt_give_up, open_key
from deliverability.ingest.records import MAX_ATTEMPT, normalize_message_id
from deliverability.policy import HygienePolicy, Policy, format_duration, load_policy
from deliverability.replies import Reply, parse_reply, parse_status
from deliverability.states import (
    Delivery as DeliveryView,
)
from deliverability.states import (
    Effect,
    Step,
    apply_step,
    standing_after,
    step_for,
)
from deliverability.store import hygiene as hygiene_store
from deliverability.store import minutes
from deliverability.store.bulk import BulkWriter, time_reader, time_writer
from deliverability.store.checkpoint import Checkpointer
from deliverability.store.models import (
    TEXT_LENGTH,
    Action,
    Delivery,
    Event,
    Recipient,
    UTCDateTime,
)
from deliverability.store.records import HygieneHook, RecordedEvent
from deliverability.store.rejected import store_rejected
from deliverability.store.retry import run_in_transaction
from deliverability.store.session import is_in_memory, open_engine
from deliverability.store.statistics import Statistics
from deliverability.verdicts import COMPLAINT_VERDICT, Verdict
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    DeliveryState,
    EventKind,
    Fault,
    Outcome,
    Reason,
    Standing,
)

__all__ = [
    "BatchResult",
    "Decision",
    "DueRetry",
    "Engine",
    "EventSummary",
    "RecipientStatus",
    "Rejected",
    "ReplyRecord",
]

POLICY_ENV = "DELIVERABILITY_POLICY"
#: A reply dated further ahead than this is refused: a wrong clock or a wrong time zone.
FUTURE_TOLERANCE = timedelta(days=1)
#: Events per transaction in `record_many`. Each commit writes every page the chunk touched,
#: and the random event keys touch pages all over their index: at 200k events on SQLite,
#: 2000 per chunk cost about a tenth less CPU than 1000 (4000 and 8000 little more). A chunk
#: of 2000 holds SQLite's write lock for a few hundred milliseconds at most.
CHUNK_SIZE = 2000
#: The most rows `due_retries` reads in one statement (its pages grow to this).
_DUE_PAGE_MAX = 10_000
#: Up to this many paused domains, `due_retries` leaves them out in its SQL.
_DUE_PAUSED_IN_SQL = 1_000
#: The most addresses asked about in one statement (`sendable_with_reasons`).
_ASK_CHUNK = 5_000
#: How many recent events `status` shows.
HISTORY_LENGTH = 10

_EVENTS = cast(Table, Event.__table__)
#: The longest idempotency key a caller may give (`events.key`; the engine's are 64 hex digits).
_KEY_LENGTH = cast(int, cast(String, _EVENTS.c.key.type).length)
_RECIPIENTS = cast(Table, Recipient.__table__)
_DELIVERIES = cast(Table, Delivery.__table__)
_ACTIONS = cast(Table, Action.__table__)


def _suppressed_at(now: Any) -> Any:
    """A recipient is suppressed at `now` (a bound parameter, or a time)."""
    return and_(
        _RECIPIENTS.c.standing == Standing.SUPPRESSED,
        or_(_RECIPIENTS.c.suppressed_until.is_(None), _RECIPIENTS.c.suppressed_until > now),
    )


#: The suppressed ones among some address keys (`keys`) at `now`, with why: built once (a
#: statement costs more to build than this one takes to run).
_SUPPRESSED_AMONG = (
    select(
        _RECIPIENTS.c.address_key,
        _RECIPIENTS.c.reason,
        _RECIPIENTS.c.standing_since,
        _RECIPIENTS.c.suppressed_until,
        _ACTIONS.c.rule,
        _ACTIONS.c.detail,
        _ACTIONS.c.created_by,
    )
    .outerjoin(_ACTIONS, _ACTIONS.c.id == _RECIPIENTS.c.suppression_action_id)
    .where(
        _RECIPIENTS.c.address_key.in_(bindparam("keys", expanding=True)),
        _suppressed_at(bindparam("now", type_=UTCDateTime())),
    )
)

#: The verdict of the engine's own EXPIRY events: the delivery was still deferred when its
#: lifetime ran out (RFC 5321 4.5.4.1 give-up time). Sisimai names this reason "expired".
EXPIRY_VERDICT = Verdict(
    outcome=Outcome.DEFERRED,
    reason=Reason.EXPIRED,
    fault=Fault.UNKNOWN,
    rule="engine.lifetime",
    why="still deferred when the retry lifetime ran out (RFC 5321 section 4.5.4.1)",
)


# --------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True, slots=True)
class ReplyRecord:
    """One reply to record, as a mailer log or a caller gives it.

    Either `reply` (the raw text, or a parsed Reply) or `code` / `status` / `text`.
    `position` says where it came from (a line number); `key` overrides the idempotency key.
    """

    recipient: str
    message_id: str | None
    reply: str | Reply | None = None
    code: int | str | None = None
    status: str | None = None
    text: str | None = None
    attempt: int | None = None
    at: datetime | str | None = None
    source: str = "api"
    position: str | int | None = None
    kind: EventKind = EventKind.REPLY
    key: str | None = None
    #: When given, used as-is instead of classifying the reply (which may then be absent): an
    #: ARF complaint, an RFC 3834 auto-reply, a DSN the caller already judged.
    verdict: Verdict | None = None
    #: The input as read (a log line), kept with the item if it is rejected.
    raw: str | None = None
    #: The MX host that answered (a Postfix ``relay=host[ip]:port``, a DSN's Remote-MTA, or a
    #: plain host name): when it matches a provider group's `mx_suffixes`, the recipient's
    #: domain is learned to belong to that group (`DomainProvider`).
    mx_host: str | None = None

    @classmethod
    def from_mapping(cls, item: Mapping[str, Any]) -> ReplyRecord:
        """From a dict with the mailer reply log's columns (DESIGN.md): ``at``, ``recipient``,
        ``message_id``, ``attempt``, and ``reply`` or ``code`` / ``status`` / ``text``; optionally
        ``mx_host``."""
        kind = _mapping_kind(item)
        return cls(
            recipient=item["recipient"],
            message_id=item.get("message_id"),
            reply=item.get("reply"),
            code=item.get("code"),
            status=item.get("status"),
            text=item.get("text"),
            attempt=item.get("attempt"),
            at=item.get("at"),
            source=str(item.get("source") or "api"),
            position=item.get("position"),
            kind=kind,
            key=item.get("key"),
            verdict=item.get("verdict"),
            raw=item.get("raw"),
            mx_host=item.get("mx_host"),
        )


def _mapping_kind(item: Mapping[str, Any]) -> EventKind:
    """Check a mapping's fields (`ReplyRecord.from_mapping`); its event kind."""
    if not _RECORD_FIELDS.issuperset(item):
        unknown = set(item) - _RECORD_FIELDS
        raise InputError(f"unknown field(s) {', '.join(sorted(unknown))}")
    if not item.get("recipient"):
        raise InputError("missing field 'recipient'")
    given = item.get("kind", EventKind.REPLY)
    # A dict lookup, not EventKind(given): this runs once per logged reply.
    kind = _KINDS.get(given) if isinstance(given, str) else None
    if kind is None:
        raise InputError(f"unknown event kind {given!r}")
    return kind


#: Raw address strings kept normalised (bench_record: 100,000 of them held about 25 MB).
_ADDRESS_CACHE = 10_000

_KINDS: dict[str, EventKind] = {kind.value: kind for kind in EventKind}

#: The mapping fields `Engine._prepare_fields` takes, by these names (a mapping's fields are
#: passed to it as they are), in the order of its parameters after the kind.
_MAPPING_ORDER = (
    "recipient",
    "message_id",
    "reply",
    "code",
    "status",
    "text",
    "attempt",
    "at",
    "source",
    "position",
    "key",
    "verdict",
    "mx_host",
)
_RECORD_FIELDS = {*_MAPPING_ORDER, "kind", "raw"}


@dataclass(frozen=True, slots=True)
class Decision:
    """What recording one reply decided."""

    address: str
    verdict: Verdict
    #: The delivery's state now (None when the reply named no message).
    delivery_state: DeliveryState | None
    next_attempt_at: datetime | None
    #: Hygiene actions raised or refreshed by this reply (`hygiene.ActionSummary`).
    actions: tuple[Any, ...]
    #: May the address be sent to now?
    sendable: bool
    #: The verdict's reason.
    reason: Reason
    #: Why not, when `sendable` is False.
    why_not: str | None = None
    #: True when the same event was already recorded: nothing changed.
    duplicate: bool = False
    #: True when the event went into history only (out of order, or after a final state).
    history_only: bool = False
    attempt: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "outcome": self.verdict.outcome.value,
            "reason": self.reason.value,
            "fault": self.verdict.fault.value,
            "rule": self.verdict.rule,
            "delivery_state": self.delivery_state.value if self.delivery_state else None,
            "attempt": self.attempt,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
            "sendable": self.sendable,
            "why_not": self.why_not,
            "duplicate": self.duplicate,
            "history_only": self.history_only,
            "actions": [a.as_dict() if hasattr(a, "as_dict") else str(a) for a in self.actions],
        }


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item of a batch that was not recorded: where, and why."""

    source: str
    position: str
    reason: str
    #: The item as given (cut to 2000 characters).
    raw: str = ""

    @property
    def error(self) -> str:
        return self.reason


@dataclass(slots=True)
class BatchResult:
    """What `record_many` did: counts, and every rejected item with its reason."""

    total: int = 0
    recorded: int = 0
    duplicates: int = 0
    history_only: int = 0
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    rejected: list[Rejected] = field(default_factory=list)
    actions: list[Any] = field(default_factory=list)

    def merge(self, other: BatchResult) -> None:
        self.total += other.total
        self.recorded += other.recorded
        self.duplicates += other.duplicates
        self.history_only += other.history_only
        self.by_outcome.update(other.by_outcome)
        self.by_reason.update(other.by_reason)
        self.rejected.extend(other.rejected)
        self.actions.extend(other.actions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "history_only": self.history_only,
            "rejected": len(self.rejected),
            "by_outcome": dict(sorted(self.by_outcome.items())),
            "by_reason": dict(sorted(self.by_reason.items())),
            "actions": len(self.actions),
        }


@dataclass(frozen=True, slots=True)
class DueRetry:
    """A deferred delivery whose next attempt is due."""

    address: str
    message_id: str
    domain: str
    #: The number the next attempt will have.
    attempt: int
    next_attempt_at: datetime
    expires_at: datetime | None
    reason: Reason


@dataclass(frozen=True, slots=True)
class EventSummary:
    at: datetime
    kind: EventKind
    message_id: str | None
    attempt: int | None
    code: int | None
    status: str | None
    text: str | None
    outcome: Outcome
    reason: Reason
    source: str
    #: A give-up its delivery already had (`Event.restated`): history, no second strike.
    restated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "kind": self.kind.value,
            "message_id": self.message_id,
            "attempt": self.attempt,
            "code": self.code,
            "status": self.status,
            "text": self.text,
            "outcome": self.outcome.value,
            "reason": self.reason.value,
            "source": self.source,
            "restated": self.restated,
        }


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """Where an address stands, and why."""

    address: str
    standing: Standing
    reason: Reason
    since: datetime | None
    suppressed: bool
    suppressed_until: datetime | None
    sendable: bool
    why_not: str | None
    last_reply: EventSummary | None
    counters: dict[str, int]
    history: tuple[EventSummary, ...]

    @property
    def state(self) -> Standing:
        return self.standing

    def as_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "state": self.standing.value,
            "reason": self.reason.value,
            "since": self.since.isoformat() if self.since else None,
            "suppressed": self.suppressed,
            "suppressed_until": self.suppressed_until.isoformat()
            if self.suppressed_until
            else None,
            "sendable": self.sendable,
            "why_not": self.why_not,
            "last_reply": self.last_reply.as_dict() if self.last_reply else None,
            "counters": self.counters,
            "history": [e.as_dict() for e in self.history],
        }


# --------------------------------------------------------------------------------------------
# Internals


@dataclass(slots=True)
class _Item:
    """One validated event, ready for the chunk writer, and what the writer did with it."""

    index: int
    address: Address
    message_id: str | None
    reply: Reply | None
    verdict: Verdict
    #: None: not a delivery result (an auto-reply), recorded in history only.
    step: Step | None
    at: datetime
    attempt: int | None
    #: Cut to its column's length.
    source: str
    position: str | None
    kind: EventKind
    key: str
    #: The event row's columns that follow from the reply and the verdict alone, as the driver
    #: takes them (`_reply_columns`): made once per distinct reply, not once per event.
    facts: tuple[Any, ...]
    #: The MX host that answered, normalised (`addresses.mx_host_of`), if the input named one.
    mx_host: str | None = None
    #: When earlier versions made the event's key of other values than the bare message id and
    #: the address key (`_legacy_keys`): the id as given when it was not the bare one
    #: (``<m1@x>``), else None; the address key of versions before NFC keys when it was not
    #: this one (`addresses.former_key`), else None; and the reply's part of the key.
    legacy: tuple[str | None, str | None, str] | None = None
    #: `at` as the driver takes it (`store.bulk.time_writer`), when the prepare path made it:
    #: made once there, where the SQLite text also gives the event key its time.
    at_db: Any = None
    # What the chunk writer did: set by it (again on every run of the transaction).
    duplicate: bool = field(init=False)
    #: The event went into history only (out of order, or after a final state).
    history_only: bool = field(init=False)
    delivery_state: DeliveryState | None = field(init=False)
    next_attempt_at: datetime | None = field(init=False)
    #: The attempt number recorded with the event.
    recorded_attempt: int | None = field(init=False)
    #: The message the event was linked to (its own, or the recipient's latest delivery).
    linked_message_id: str | None = field(init=False)
    #: A give-up of a delivery already given up (`Event.restated`, `_judge_give_ups`).
    restated: bool = field(default=False, init=False)


def event_key(
    message_id: str | None,
    address_key: str,
    attempt: int | None,
    at: datetime,
    reply: Reply | str | None,
) -> str:
    """The default idempotency key: message id, recipient, attempt and the parsed reply.

    Without an attempt number the event's time stands in, so two identical replies to two
    attempts stay two events. The message id is taken without its angle brackets and the reply
    in its parsed form, so the same reply logged in two shapes (``<m1@x>`` or ``m1@x``; raw, or
    a Postfix ``said:`` fragment) is one event. The values are stored: a store made by an
    earlier version must find its events under the same keys (those it made of an id given in
    brackets, or of an address in another Unicode form than NFC, are looked for too:
    `_legacy_keys`).
    """
    if message_id is not None:
        message_id = normalize_message_id(message_id)
    return _event_key(message_id, address_key, attempt, at, _reply_key_text(reply))


def _reply_key_text(reply: Reply | str | None) -> str:
    """The reply's part of `event_key` (the same for every event with this reply)."""
    if isinstance(reply, Reply):
        return f"{reply.code or ''}|{reply.status or ''}|{reply.text}"
    return "-" if reply is None else "text|" + reply


def _event_key(
    message_id: str | None,
    address_key: str,
    attempt: int | None,
    at: datetime,
    reply_text: str,
    at_text: str | None = None,
) -> str:
    """`event_key` of a message id taken as it is (the engine's is already bare). `at_text`:
    `at.isoformat()`, when the caller has it (`_isoformat_from_sqlite`)."""
    when = str(attempt) if attempt is not None else "@" + (at_text or at.isoformat())
    raw = "\x1f".join((message_id or "", address_key, when, reply_text))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def _isoformat_from_sqlite(at: datetime, text: str) -> str:
    """`at.isoformat()` of a time in UTC, cut from `text`, its SQLite text (`time_writer`:
    ``YYYY-MM-DD HH:MM:SS.ffffff``, naive UTC): the same characters, the fraction only when
    there is one, without formatting the time a second time (each format of an event's time is
    about a fortieth of what recording it costs, callgrind)."""
    return (text if at.microsecond else text[:19]).replace(" ", "T") + "+00:00"


def _legacy_keys(item: _Item) -> list[str]:
    """The keys earlier versions may have stored the item's event under (`_Item.legacy`).

    Versions before bare message ids (migration 0006) made the key of the id as given,
    brackets and all; versions before NFC keys (migration 0016) of the address key of then. A
    store written before both holds keys made of the two: an item may have three old keys.
    """
    given, former, reply_text = cast(tuple[str | None, str | None, str], item.legacy)
    akey, attempt, at = item.address.key, item.attempt, item.at
    keys = []
    if given is not None:
        keys.append(_event_key(given, akey, attempt, at, reply_text))
    if former is not None:
        keys.append(_event_key(item.message_id, former, attempt, at, reply_text))
        if given is not None:
            keys.append(_event_key(given, former, attempt, at, reply_text))
    return keys


_STANDING_OUTCOME_COUNTER = {
    Outcome.DELIVERED: "delivered_count",
    Outcome.DEFERRED: "deferred_count",
    Outcome.BOUNCED: "bounced_count",
    Outcome.BLOCKED: "blocked_count",
    Outcome.COMPLAINED: "complained_count",
}

_RECIPIENT_MUTABLE = (
    "standing",
    "reason",
    "standing_since",
    "standing_basis_at",
    "suppressed_until",
    "suppression_action_id",
    "first_seen_at",
    "last_event_at",
    "last_delivered_at",
    "last_failure_at",
    "last_event_id",
    "last_code",
    "last_status",
    "last_text",
    "events_count",
    "delivered_count",
    "deferred_count",
    "bounced_count",
    "blocked_count",
    "complained_count",
    "expired_count",
)
_DELIVERY_MUTABLE = (
    "state",
    "attempt",
    "first_attempt_at",
    "last_attempt_at",
    "next_attempt_at",
    "expires_at",
    "reason",
    "last_code",
    "last_status",
    "updated_at",
)


#: Kinds of event whose missing Message-ID is taken to be the recipient's latest delivery.
_LINKED_KINDS = frozenset({EventKind.BOUNCE, EventKind.COMPLAINT})


#: Every column of a new recipient row but its id.
_RECIPIENT_COLUMNS = tuple(c.name for c in _RECIPIENTS.columns if c.name != "id")
#: What the chunk writer reads of a recipient it touches (`_Recipient.loaded` takes a row of
#: these, in this order).
_RECIPIENT_LOAD = ("id", "address_key", *_RECIPIENT_MUTABLE)


@dataclass(slots=True, init=False, eq=False)
class _Recipient:
    """A recipient the chunk writer touches: its columns as the driver gives and takes them
    (enums by value, times as stored), and what the writer notes on it.

    A class with slots rather than a dict of the row: one is made for nearly every event, and
    a dict of the 23 columns (`dict(zip(...))`) took about five times as long to build (a
    sampling profile of `record_many` put 3% of the whole run on that line). Made without an
    `__init__` (`loaded`, `_new_recipient`)."""

    id: int | None
    address_key: str
    address: str
    domain: str
    standing: str | None
    reason: str
    standing_since: Any
    standing_basis_at: Any
    suppressed_until: Any
    suppression_action_id: int | None
    first_seen_at: Any
    last_event_at: Any
    last_delivered_at: Any
    last_failure_at: Any
    last_event_id: int | None
    last_code: int | None
    last_status: str | None
    last_text: str | None
    events_count: int
    delivered_count: int
    deferred_count: int
    bounced_count: int
    blocked_count: int
    complained_count: int
    expired_count: int
    #: The standing as loaded (a recipient whose standing stayed is updated without it).
    standing_was: str | None
    #: The key of its newest event in the chunk, whose id becomes `last_event_id`.
    last_key: str | None

    @staticmethod
    def loaded(row: Sequence[Any]) -> _Recipient:
        """A stored recipient, from its row of `_RECIPIENT_LOAD` (its address and domain are
        not read: only a new recipient's row is inserted)."""
        rec = _new_object(_Recipient)
        # In the order of _RECIPIENT_LOAD (tests/test_engine.py checks it).
        (
            rec.id,
            rec.address_key,
            rec.standing,
            rec.reason,
            rec.standing_since,
            rec.standing_basis_at,
            rec.suppressed_until,
            rec.suppression_action_id,
            rec.first_seen_at,
            rec.last_event_at,
            rec.last_delivered_at,
            rec.last_failure_at,
            rec.last_event_id,
            rec.last_code,
            rec.last_status,
            rec.last_text,
            rec.events_count,
            rec.delivered_count,
            rec.deferred_count,
            rec.bounced_count,
            rec.blocked_count,
            rec.complained_count,
            rec.expired_count,
        ) = row
        rec.standing_was = rec.standing
        rec.last_key = None
        return rec


_T = TypeVar("_T")
_new_object = object.__new__
_new_tuple = tuple.__new__
_recipient_row = attrgetter(*_RECIPIENT_COLUMNS)
_recipient_update_row = attrgetter(*_RECIPIENT_MUTABLE, "id")
#: The columns to update on a recipient whose standing stayed what it was.
_RECIPIENT_STEADY = tuple(c for c in _RECIPIENT_MUTABLE if c != "standing")
_recipient_steady_row = attrgetter(*_RECIPIENT_STEADY, "id")
#: What the chunk writer reads of a delivery (the row's positions are named below).
_DELIVERY_LOAD = (
    "id",
    "recipient_id",
    "message_id",
    "state",
    "attempt",
    "first_attempt_at",
    "last_attempt_at",
    "next_attempt_at",
    "expires_at",
    "reason",
)
_D_ID, _D_RECIPIENT, _D_MESSAGE, _D_STATE, _D_ATTEMPT = 0, 1, 2, 3, 4
_D_LAST_ATTEMPT, _D_NEXT = 6, 7
_DELIVERY_INSERT = ("recipient_id", "message_id", "domain", *_DELIVERY_MUTABLE)
#: The event row as the chunk writer builds it: the item's own columns, then `_REPLY_COLUMNS`.
_REPLY_COLUMNS = (
    "code",
    "status",
    "text",
    "command",
    "outcome",
    "reason",
    "fault",
    "rule",
    "decisive",
    "throttle",
    "pause_seconds",
)
#: Where the fault is among `_REPLY_COLUMNS` (and an item's facts).
_FAULT_AT = _REPLY_COLUMNS.index("fault")


def _fault_source(e: Any) -> tuple[Any, ...]:
    """SQL terms (of `e`, the events table's columns) for a deferral whose fault a give-up
    takes (`expire_overdue`, `_judge_give_ups`): a reply or bounce deferring, never
    an expiry nor a give-up reported as a reply (reason `expired`, whose fault is a deferral's
    already). `_is_fault_source` says the same of an item."""
    return (e.outcome == Outcome.DEFERRED, e.kind != EventKind.EXPIRY, e.reason != Reason.EXPIRED)


def _is_fault_source(item: _Item) -> bool:
    """`_fault_source` of an item not stored yet."""
    return (
        item.verdict.outcome is Outcome.DEFERRED
        and item.kind is not EventKind.EXPIRY
        and item.verdict.reason is not Reason.EXPIRED
    )


_EVENT_COLUMNS = (
    "key",
    "at",
    "recorded_at",
    "kind",
    "recipient_id",
    "domain",
    "message_id",
    "attempt",
    "source",
    "position",
    *_REPLY_COLUMNS,
    "restated",
)

# Stored values back to members: a dict lookup, cheaper than calling the enum.
_STANDINGS: dict[str | None, Standing] = {m.value: m for m in Standing}
_DELIVERY_STATES: dict[str, DeliveryState] = {m.value: m for m in DeliveryState}
_REASONS: dict[str, Reason] = {m.value: m for m in Reason}


# The members the chunk writer and the prepare path compare with, read once: on Python 3.11 the
# enums' metaclass has a `__getattr__`, so every `EventKind.EXPIRY` written in a function goes
# through a Python-level attribute hook (about a thousand machine instructions, callgrind), some
# twenty times for each event recorded. A module global is a dictionary read.
_REPLY = EventKind.REPLY
_COMPLAINT = EventKind.COMPLAINT
_EXPIRY = EventKind.EXPIRY
_AUTO_REPLY = EventKind.AUTO_REPLY
_STEP_EXPIRE = Step.EXPIRE
_STEP_DEFERRED = Step.DEFERRED
_APPLIED = Effect.APPLIED
_DELIVERED = Outcome.DELIVERED
_COMPLAINED = Outcome.COMPLAINED
_INFORMATIONAL = Outcome.INFORMATIONAL
_REASON_EXPIRED = Reason.EXPIRED
_UNDEFINED_VALUE = Reason.UNDEFINED.value
_STATE_EXPIRED = DeliveryState.EXPIRED
_SUPPRESSED = Standing.SUPPRESSED
_RETRYING = Standing.RETRYING
_RETRYING_VALUE = Standing.RETRYING.value


def _cut(text: str | None, length: int) -> str | None:
    if text is None:
        return None
    return text if len(text) <= length else text[: length - 3] + "..."


def _cut_start(text: str, length: int) -> str:
    """`text` cut to `length` from its start: a source path keeps its end, the file name."""
    return text if len(text) <= length else "..." + text[3 - length :]


@functools.lru_cache(maxsize=256)
def _source_column(source: str) -> str:
    """An event's source as its column keeps it (`_visible`, cut to 255 from its start); cached:
    a batch's items name one source or a few (the API's "api", a log file's name), and each
    item made four calls for it (`_cut_start`, `_visible`, `storable`, `surrogate_at`)."""
    return _cut_start(_visible(source), 255)


def _visible(text: str) -> str:
    """`text` with its NUL characters shown as ``\\0`` and any lone surrogate as its escape
    (`errors.storable`): PostgreSQL text cannot hold NUL, no database holds a surrogate, and a
    JSON log line can carry either (``\\u0000``, ``\\ud800``) without such bytes in the file."""
    return storable(text.replace("\x00", "\\0") if "\x00" in text else text)


class Engine:
    """The sender's API over one store.

    `url`: the database (else ``DELIVERABILITY_DATABASE_URL``, else the SQLite file); the schema
    is created or upgraded on first use. `policy`: else the file named by
    ``DELIVERABILITY_POLICY``, else the shipped default. `clock`: a callable returning the time
    (tests pass a fake one). `hygiene`: the hook run on new events (default: the hygiene store's
    `on_events`; False: none, for a store whose hygiene runs only in the nightly job).
    """

    def __init__(
        self,
        url: str | None = None,
        policy: Policy | None = None,
        clock: Clock | None = None,
        *,
        hygiene: HygieneHook | Literal[False] | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        if policy is None:
            env_path = os.environ.get(POLICY_ENV)
            policy = load_policy(Path(env_path) if env_path else None)
        self.policy = policy
        self._clock: Clock = clock or system_clock
        self._hook: HygieneHook | None = (
            hygiene_store.on_events if hygiene is None else (hygiene or None)
        )
        if chunk_size < 1:
            raise InputError(f"chunk_size must be at least 1, got {chunk_size}")
        self._chunk_size = chunk_size
        self._classify = _load_classifier()
        self._parsed: dict[str, Reply | ReplyParseFailure] = {}
        self._verdicts: dict[Reply, Verdict] = {}
        # Bounded caches: a log repeats the same addresses and replies many times.
        self._addresses: dict[str, Address] = {}
        #: Addresses past ASCII as given -> the key versions before NFC keys made of them
        #: (`addresses.former_key`; None when it is today's), of which events stored then made
        #: their keys. Its own cache, filled on a miss: never one read in step with
        #: `_addresses`, which another thread may empty between the two reads.
        self._former_keys: dict[str, str | None] = {}
        self._judged: dict[str, tuple[Reply | None, Verdict, tuple[Any, ...], str]] = {}
        self.db = open_engine(url)
        self._bulk = BulkWriter(self.db.dialect)
        self._to_db = time_writer(self.db.dialect)
        self._from_db = time_reader(self.db.dialect)
        #: PostgreSQL's planner statistics, refreshed while the store grows fast.
        self._statistics = Statistics(self.db)
        #: A SQLite file's log, checkpointed in a thread of its own.
        self._checkpointer = (
            Checkpointer(self.db)
            if self.db.dialect.name == "sqlite" and not is_in_memory(self.db)
            else None
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the database connections (after a checkpoint under way ends)."""
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.db.dispose()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def now(self) -> datetime:
        value = self._clock()
        # The usual case (the system clock) first: this runs once per recorded reply.
        return value if value.tzinfo is UTC else aware_utc(value, "the clock's time")

    # -- recording ---------------------------------------------------------------------------

    def record(
        self,
        recipient: str,
        reply: str | Reply,
        *,
        message_id: str | None,
        attempt: int | None = None,
        at: datetime | str | None = None,
        source: str = "api",
        kind: EventKind = EventKind.REPLY,
        key: str | None = None,
        mx_host: str | None = None,
    ) -> Decision:
        """Record one reply and say what it means.

        `mx_host`: the MX host that gave the reply, when known (see `ReplyRecord.mx_host`).
        Raises AddressError, ReplyParseError or InputError (all ValueErrors) for bad input. The
        same event recorded twice changes nothing the second time (`Decision.duplicate`).
        """
        now = self.now()
        record = ReplyRecord(
            recipient=recipient,
            message_id=message_id,
            reply=reply,
            attempt=attempt,
            # A reply given no time happened now: the time the decision is made at, not a later
            # reading of the clock (the rules count what is dated up to now, this reply too).
            at=now if at is None or at == "" else at,
            source=source,
            kind=kind,
            key=key,
            mx_host=mx_host,
        )
        item = self._prepare(record, 1, now)
        akey = item.address.key

        def work(conn: Connection, again: bool) -> tuple[list[Any], str | None]:
            # Whether the address may be sent to is asked in the same transaction, after the
            # hygiene it ran: one transaction a call, not a second one on another connection.
            actions = self._write(conn, [item], now, check_all=again)
            return actions, self._why_not_keys([akey], now, conn).get(akey)

        actions, why_not = self._in_write_transaction(work)
        return Decision(
            address=item.address.text,
            verdict=item.verdict,
            delivery_state=item.delivery_state,
            next_attempt_at=item.next_attempt_at,
            actions=tuple(actions),
            sendable=why_not is None,
            reason=item.verdict.reason,
            why_not=why_not,
            duplicate=item.duplicate,
            history_only=item.history_only,
            attempt=item.recorded_attempt,
        )

    def record_many(self, items: Iterable[ReplyRecord | Mapping[str, Any]]) -> BatchResult:
        """Record many replies: one transaction per chunk, bad items rejected (with position
        and reason, also stored as RejectedInput rows) while the rest goes on.

        Running it twice over the same input leaves the database as it was after the first run.
        """
        total = BatchResult()
        source = iter(items)
        done = 0
        while True:
            # Each chunk's items are taken from the caller first, with the garbage collector
            # on: an iterator may wait for its input (a socket, a log it follows) as long as it
            # likes, and the collector is every thread's. It is paused from there until the
            # chunk is committed (`_flush`): the chunk's objects live until it is written
            # (`collector`). (A log reader's dicts of plain values are untracked by the first
            # collection they meet.)
            chunk = list(islice(source, self._chunk_size))
            if not chunk:
                return total
            batch: list[_Item] = []
            rejected: list[tuple[Rejected, str]] = []
            pause = CollectorPause()
            pause.begin()
            try:
                # The time to check items against: read once per chunk (an item that seems to
                # be in the future is checked again against a fresh reading; an item without a
                # time gets one).
                now = self.now()
                for index, raw in enumerate(chunk, start=done + 1):
                    try:
                        if isinstance(raw, ReplyRecord):
                            batch.append(self._prepare(raw, index, now))
                        else:
                            # A mapping read as `ReplyRecord.from_mapping` does, without making
                            # one.
                            batch.append(self._prepare_mapping(raw, index, now))
                    except (DeliverabilityError, ValueError, TypeError) as err:
                        rejected.append(_rejection(raw, index, err))
                total.merge(self._flush(batch, rejected, len(chunk), pause=pause))
                done += len(chunk)
                # Gone before the collection at the pause's end, not moved on by it.
                del batch, rejected, chunk
            finally:
                pause.end()

    def expire_overdue(self, now: datetime | None = None) -> BatchResult:
        """Expire every deferred delivery whose lifetime has run out by `now`, writing an EXPIRY
        event for each (the nightly job calls this). Idempotent."""
        now = given_time(now, "now") if now is not None else self.now()
        total = BatchResult()
        e = _EVENTS.c
        # Whose trouble the delivery's last deferral was: an expiry after the sender's (a
        # blocklist) or the destination's own (a push-back) is no strike on the address
        # (hygiene.expiry_exempt_faults). Through events (recipient_id, at).
        last_fault = (
            select(e.fault)
            .where(
                e.recipient_id == _DELIVERIES.c.recipient_id,
                e.message_id == _DELIVERIES.c.message_id,
                *_fault_source(e),
            )
            .order_by(e.at.desc(), e.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        verdicts: dict[Fault, Verdict] = {}
        while True:
            stmt = (
                select(
                    _RECIPIENTS.c.address,
                    _RECIPIENTS.c.address_key,
                    _RECIPIENTS.c.domain,
                    _DELIVERIES.c.message_id,
                    _DELIVERIES.c.attempt,
                    _DELIVERIES.c.expires_at,
                    last_fault.label("fault"),
                )
                .join(_RECIPIENTS, _RECIPIENTS.c.id == _DELIVERIES.c.recipient_id)
                .where(
                    _DELIVERIES.c.state == DeliveryState.DEFERRED,
                    _DELIVERIES.c.expires_at <= now,
                )
                .order_by(_DELIVERIES.c.id)
                .limit(self._chunk_size)
            )
            with self.db.connect() as conn:
                rows = conn.execute(stmt).all()
            if not rows:
                return total
            batch = []
            for i, row in enumerate(rows, start=1):
                address = Address(*row.address.rsplit("@", 1))
                key = hashlib.sha256(
                    f"expiry\x1f{row.message_id}\x1f{row.address_key}\x1f{row.attempt}".encode()
                ).hexdigest()
                fault = row.fault or Fault.UNKNOWN
                verdict = verdicts.get(fault)
                if verdict is None:
                    verdict = verdicts[fault] = dataclasses.replace(EXPIRY_VERDICT, fault=fault)
                batch.append(
                    _Item(
                        index=i,
                        address=address,
                        message_id=row.message_id,
                        reply=None,
                        verdict=verdict,
                        step=Step.EXPIRE,
                        at=row.expires_at,
                        attempt=None,
                        source="engine",
                        position=None,
                        kind=EventKind.EXPIRY,
                        key=key,
                        facts=_reply_columns(None, None, verdict),
                    )
                )
            result = self._flush(batch, [], len(batch), now=now)
            total.merge(result)
            if result.recorded - result.history_only == 0:
                return total

    # -- questions ---------------------------------------------------------------------------

    def is_sendable(self, address: str) -> bool:
        """May `address` be sent to now? Raises AddressError when it is not an address."""
        return self.why_not_sendable(address) is None

    def why_not_sendable(self, address: str) -> str | None:
        """Why `address` may not be sent to now (a suppression or a paused destination), or
        None when it may."""
        key = normalize_address(address).key
        return self._why_not_keys([key], self.now()).get(key)

    def filter_sendable(self, addresses: Iterable[str]) -> list[str]:
        """The addresses that may be sent to now, in the order given."""
        return self.sendable_with_reasons(addresses)[0]

    def sendable_with_reasons(self, addresses: Iterable[str]) -> tuple[list[str], dict[str, str]]:
        """(addresses that may be sent to now, {address: why not} for the rest). An item that
        is not an address is among the rest, with the problem as its reason."""
        if isinstance(addresses, str | bytes):
            # Iterated, a string is its characters, none of them an address: the answer would
            # be that nothing may be sent to.
            raise InputError(
                f"give a list of addresses, not one string ({addresses!r}): [address], or"
                " is_sendable(address)"
            )
        now = self.now()
        sendable: list[str] = []
        reasons: dict[str, str] = {}
        pending: list[tuple[str, str]] = []

        def flush() -> None:
            why = self._why_not_keys([k for _, k in pending], now)
            for raw, k in pending:
                if k in why:
                    reasons[raw] = why[k]
                else:
                    sendable.append(raw)
            pending.clear()

        for raw in addresses:
            try:
                pending.append((raw, normalize_address(raw).key))
            except AddressError as err:
                flush()
                reasons[raw] = str(err)
                continue
            if len(pending) >= self._chunk_size:
                flush()
        flush()
        return sendable, reasons

    def throttle_for(self, domain: str) -> Throttle | None:
        """The throttle in force for a recipient domain now (its provider group's when the
        policy maps it, or when it was learned to belong to one): paused until when, and the
        suggested maximum rate; None when there is none."""
        if not isinstance(domain, str):
            raise InputError(f"throttle_for takes a domain, got {type(domain).__name__}")
        if "@" in domain:
            raise InputError(
                f"throttle_for takes a domain, not an address ({domain!r}): give the part after @"
            )
        try:
            target = normalize_domain(domain)
        except AddressError as err:
            raise InputError(f"throttle_for takes a domain: {domain!r}: {err.problem}") from None
        with Session(self.db) as session:
            return hygiene_store.throttle_for(session, target, self.now(), policy=self.policy)

    def due_retries(self, now: datetime | str | None = None, limit: int = 100) -> list[DueRetry]:
        """Deferred deliveries whose next attempt is due, oldest first; never one whose
        destination is paused by a throttle, nor one to a suppressed address."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InputError(f"limit must be a whole number, 0 or more, got {limit!r}")
        now = given_time(now, "now") if now is not None else self.now()
        d = _DELIVERIES.c
        stmt = (
            select(
                _RECIPIENTS.c.address,
                d.message_id,
                d.domain,
                d.attempt,
                d.next_attempt_at,
                d.expires_at,
                d.reason,
                d.id,
            )
            .join(_RECIPIENTS, _RECIPIENTS.c.id == d.recipient_id)
            .where(
                d.state == DeliveryState.DEFERRED,
                d.next_attempt_at <= now,
                # Within the lifetime, or the last retry: the state machine sets it at the
                # give-up time (RFC 5321 4.5.4.1), or after it when a pause ends later, and a
                # deferral then expires the delivery. It stays due until that reply, or until
                # `expire_overdue` gives up without it.
                or_(
                    d.expires_at.is_(None),
                    d.expires_at > now,
                    d.next_attempt_at >= d.expires_at,
                ),
                ~_suppressed_at(bindparam("now", now, type_=UTCDateTime())),
            )
            .order_by(d.next_attempt_at, d.id)
        )
        out: list[DueRetry] = []
        # A paused destination's backlog can be most of the due rows (the sender's biggest
        # destination pushed back). Its domains are left out in SQL when they are few enough for
        # one list, else passed over here (a provider group may have thousands learned). Pages
        # follow on from the last row read and grow, so a backlog of N rows passed over costs
        # about log2(N / limit) statements, never an OFFSET that reads every page before it again.
        page = max(limit, 100)
        after: tuple[datetime, int] | None = None
        with self.db.connect() as conn:
            paused_domains = hygiene_store.paused_until(conn, now, self.policy)
            if 0 < len(paused_domains) <= _DUE_PAUSED_IN_SQL:
                stmt = stmt.where(d.domain.not_in(sorted(paused_domains)))
            while len(out) < limit:
                query = stmt
                if after is not None:
                    query = stmt.where(
                        d.next_attempt_at >= after[0],
                        or_(d.next_attempt_at > after[0], d.id > after[1]),
                    )
                rows = conn.execute(query.limit(page)).all()
                for row in rows:
                    if row.domain in paused_domains:
                        continue
                    out.append(
                        DueRetry(
                            address=row.address,
                            message_id=row.message_id,
                            domain=row.domain,
                            attempt=row.attempt + 1,
                            next_attempt_at=row.next_attempt_at,
                            expires_at=row.expires_at,
                            reason=row.reason,
                        )
                    )
                    if len(out) >= limit:
                        break
                if len(rows) < page:
                    break
                after = (rows[-1].next_attempt_at, rows[-1].id)
                page = min(page * 2, _DUE_PAGE_MAX)
        return out

    def status(self, address: str, history: int = HISTORY_LENGTH) -> RecipientStatus:
        """Where `address` stands: standing, reason, suppression, last reply, counters and its
        last `history` events."""
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise InputError(f"history must be a whole number, 0 or more, got {history!r}")
        normal = normalize_address(address)
        now = self.now()
        with self.db.connect() as conn:
            row = conn.execute(
                select(_RECIPIENTS).where(_RECIPIENTS.c.address_key == normal.key)
            ).first()
            events: list[EventSummary] = []
            standing: Standing = Standing.UNKNOWN
            reason: Reason = Reason.UNDEFINED
            since: datetime | None = None
            if row is not None:
                standing, reason, since = row.standing, row.reason, row.standing_since
                lapsed = row.suppressed_until is not None and row.suppressed_until <= now
                if standing is Standing.SUPPRESSED and lapsed:
                    # The suppression ran out and the nightly job has not lifted it yet
                    # (`lift_lapsed_suppressions`): say what it will say.
                    standing, reason = self._standing_from_deliveries(conn, row.id)
                    since = row.suppressed_until
                rows = conn.execute(
                    select(_EVENTS)
                    .where(_EVENTS.c.recipient_id == row.id)
                    .order_by(_EVENTS.c.at.desc(), _EVENTS.c.id.desc())
                    .limit(history)
                ).all()
                events = [_event_summary(r) for r in rows]
        why_not = self._why_not_keys([normal.key], now).get(normal.key)
        if row is None:
            return RecipientStatus(
                address=normal.text,
                standing=Standing.UNKNOWN,
                reason=Reason.UNDEFINED,
                since=None,
                suppressed=False,
                suppressed_until=None,
                sendable=why_not is None,
                why_not=why_not,
                last_reply=None,
                counters={},
                history=(),
            )
        suppressed = standing is Standing.SUPPRESSED
        counters = {
            name: getattr(row, name)
            for name in (
                "events_count",
                "delivered_count",
                "deferred_count",
                "bounced_count",
                "blocked_count",
                "complained_count",
                "expired_count",
            )
        }
        last = next((e for e in events if e.kind is not EventKind.EXPIRY), None)
        return RecipientStatus(
            address=row.address,
            standing=standing,
            reason=reason,
            since=since,
            suppressed=suppressed,
            suppressed_until=row.suppressed_until,
            sendable=why_not is None,
            why_not=why_not,
            last_reply=last,
            counters=counters,
            history=tuple(events),
        )

    # -- manual list management --------------------------------------------------------------

    def suppress(
        self,
        address: str,
        reason: str,
        *,
        by: str,
        until: datetime | str | None = None,
    ) -> int:
        """Suppress an address by hand; recorded as a `suppress` Action created by `by`.

        `reason` is free text; when it is one of the reason names (``user_unknown``...) it is
        also stored as the action's reason. Suppressing again refreshes the open action.
        Returns the action's id.
        """
        normal = normalize_address(address)
        if not reason or not reason.strip():
            raise InputError("a suppression needs a reason (--reason TEXT)")
        if not by or not by.strip():
            raise InputError("say who suppresses (by=...)")
        hygiene_store.check_by_length(by)
        now = self.now()
        # As record() takes its `at`: aware, or ISO 8601 text.
        until = given_time(until, "until") if until is not None else None
        if until is not None and until <= now:
            # It would be recorded and lift at once: the address never suppressed at all.
            raise InputError(
                f"until {until.isoformat()} is not in the future (now {now.isoformat()})"
            )
        try:
            coded = Reason(reason.strip())
        except ValueError:
            coded = Reason.UNDEFINED

        def work(conn: Connection) -> int:
            rid = self._ensure_recipient(conn, normal, now)
            okey = open_key(ActionKind.SUPPRESS, ActionScope.ADDRESS, normal.key)
            existing = conn.execute(
                select(
                    _ACTIONS.c.id, _ACTIONS.c.raised_count, _ACTIONS.c.expires_at, _ACTIONS.c.detail
                ).where(_ACTIONS.c.open_key == okey)
            ).first()
            expires = until
            why = coded
            detail = _cut(reason, TEXT_LENGTH)
            if existing is not None:
                action_id = int(existing.id)
                # Suppressing again never shortens the suppression in force (hygiene's for a
                # hard bounce has no end), and free text keeps the reason it stands for.
                if existing.expires_at is None or (
                    until is not None and until < existing.expires_at
                ):
                    expires = existing.expires_at
                if coded is Reason.UNDEFINED:
                    why = conn.execute(
                        select(_RECIPIENTS.c.reason).where(_RECIPIENTS.c.id == rid)
                    ).scalar_one()
                # The note is added to what the action already says (the evidence hygiene
                # described, or an earlier person's words): that stays the why.
                if existing.detail:
                    detail = _cut(f"{existing.detail}; {by}: {reason}", TEXT_LENGTH)
                refreshed: dict[str, Any] = {
                    "updated_at": now,
                    "detail": detail,
                    "raised_count": existing.raised_count + 1,
                    "expires_at": expires,
                    "status": ActionStatus.OPEN,
                }
                if coded is not Reason.UNDEFINED:
                    # The reason named now is the standing's (below): the action says the same.
                    refreshed["reason"] = coded
                conn.execute(update(_ACTIONS).where(_ACTIONS.c.id == action_id).values(**refreshed))
            else:
                action_id = _manual_action(
                    conn,
                    ActionKind.SUPPRESS,
                    normal.key,
                    now=now,
                    by=by,
                    status=ActionStatus.OPEN,
                    open_key=okey,
                    reason=coded,
                    detail=detail,
                    evidence={"manual": True},
                    expires_at=until,
                )
            conn.execute(
                update(_RECIPIENTS)
                .where(_RECIPIENTS.c.id == rid)
                .values(
                    standing=Standing.SUPPRESSED,
                    reason=why,
                    # Suppressed since the first time, not since a refresh (a suppression that
                    # ran out has ended: a new one starts now).
                    standing_since=case(
                        (_suppressed_at(now), _RECIPIENTS.c.standing_since), else_=now
                    ),
                    suppressed_until=expires,
                    suppression_action_id=action_id,
                )
            )
            return action_id

        return run_in_transaction(self.db, work, conflicts=True)

    def unsuppress(self, address: str, *, by: str, reason: str = "") -> int:
        """Lift a suppression by hand: the open suppress action is resolved by `by`, a `release`
        action records who and why, and the standing follows the deliveries again.
        Raises InputError when the address is not suppressed, also when its suppression ran
        out (an expiry the nightly job has not swept yet). Returns the release action's id."""
        normal = normalize_address(address)
        if not by or not by.strip():
            raise InputError("say who lifts the suppression (by=...)")
        hygiene_store.check_by_length(by)
        now = self.now()

        def work(conn: Connection) -> int:
            row = conn.execute(
                select(
                    _RECIPIENTS.c.id, _RECIPIENTS.c.standing, _RECIPIENTS.c.suppressed_until
                ).where(_RECIPIENTS.c.address_key == normal.key)
            ).first()
            okey = open_key(ActionKind.SUPPRESS, ActionScope.ADDRESS, normal.key)
            open_action = conn.execute(
                select(_ACTIONS.c.id).where(_ACTIONS.c.open_key == okey)
            ).first()
            ended = row.suppressed_until if row is not None else None
            if ended is not None and ended <= now:
                # It ran out (the policy's expiry for its reason): the address is sendable and
                # the nightly sweep records the end as it was. Lifting it now would record a
                # person ending a suppression that had already ended, at the wrong time.
                raise InputError(
                    f"{normal.text} is not suppressed: its suppression ran out at"
                    f" {ended.isoformat()}"
                )
            if (row is None or row.standing is not Standing.SUPPRESSED) and open_action is None:
                raise InputError(f"{normal.text} is not suppressed")
            if open_action is not None:
                conn.execute(
                    update(_ACTIONS)
                    .where(_ACTIONS.c.id == open_action.id)
                    .values(
                        status=ActionStatus.RESOLVED,
                        open_key=None,
                        resolved_at=now,
                        resolved_by=by,
                        updated_at=now,
                    )
                )
            release_id = _manual_action(
                conn,
                ActionKind.RELEASE,
                normal.key,
                now=now,
                by=by,
                status=ActionStatus.RESOLVED,
                open_key=None,
                reason=Reason.UNDEFINED,
                detail=_cut(reason, TEXT_LENGTH) or "",
                evidence={"released": open_action.id if open_action else None},
                resolved_at=now,
                resolved_by=by,
            )
            if row is not None:
                self._release_standing(conn, row.id, now)
            return release_id

        return run_in_transaction(self.db, work, conflicts=True)

    def lift_lapsed_suppressions(self, now: datetime | None = None) -> int:
        """Put the standing of every recipient whose suppression ran out by `now` back to what
        its deliveries say, as `unsuppress` does; returns how many. The nightly job calls this
        once hygiene has closed the actions that ran out. Sendability never waits for it (every
        check compares `suppressed_until` with the time), but `status` and the undeliverable
        report read the standing."""
        now = given_time(now, "now") if now is not None else self.now()

        def work(conn: Connection) -> int:
            lapsed = conn.execute(
                select(_RECIPIENTS.c.id, _RECIPIENTS.c.suppressed_until).where(
                    _RECIPIENTS.c.standing == Standing.SUPPRESSED,
                    _RECIPIENTS.c.suppressed_until <= now,
                )
            ).all()
            for row in lapsed:
                self._release_standing(conn, row.id, row.suppressed_until)
            return len(lapsed)

        return run_in_transaction(self.db, work, conflicts=True)

    # -- internals: input --------------------------------------------------------------------

    def _parse(self, text: str) -> Reply:
        cached = self._parsed.get(text)
        if cached is None:
            try:
                cached = parse_reply(text)
            except DeliverabilityError as err:
                cached = ReplyParseFailure(err)
            if len(self._parsed) > 50_000:
                self._parsed.clear()
            self._parsed[text] = cached
        if isinstance(cached, ReplyParseFailure):
            raise cached.error
        return cached

    def _address(self, raw: str) -> Address:
        # Not a string (a caller's mistake): not a key to look up, and normalize_address says why.
        address = self._addresses.get(raw) if isinstance(raw, str) else None
        if address is None:
            address = normalize_address(raw)
            # Small on purpose: a list's addresses recur a campaign apart, far beyond any
            # cache that keeps memory flat, and normalising one again costs about 3 us.
            if len(self._addresses) > _ADDRESS_CACHE:
                self._addresses.clear()
            self._addresses[raw] = address
        return address

    def _former_key(self, raw: str, address: Address) -> str | None:
        """The key versions before NFC keys made of `raw`, an address past ASCII, if it is not
        today's (`addresses.former_key`)."""
        try:
            return self._former_keys[raw]
        except KeyError:
            former = former_key(raw, address)
            if len(self._former_keys) > _ADDRESS_CACHE:
                self._former_keys.clear()
            self._former_keys[raw] = former
            return former

    def _verdict(self, reply: Reply) -> Verdict:
        verdict = self._verdicts.get(reply)
        if verdict is None:
            verdict = self._classify(reply, self.policy)
            if len(self._verdicts) > 50_000:
                self._verdicts.clear()
            self._verdicts[reply] = verdict
        return verdict

    def _reply_of(
        self,
        reply: str | Reply | None,
        code: int | str | None,
        status: str | None,
        text: str | None,
    ) -> Reply:
        if isinstance(reply, Reply):
            return reply
        if isinstance(reply, str) and reply.strip():
            return self._parse(reply)
        if reply is not None and not isinstance(reply, str):
            raise InputError(f"reply must be a string, got {type(reply).__name__}")
        if code in (None, "") and not status:
            if text:
                return self._parse(text)
            raise InputError("no reply: give 'reply', or 'code' / 'status' / 'text'")
        number: int | None = None
        if code not in (None, ""):
            try:
                number = int(code)
            except (TypeError, ValueError):
                raise InputError(f"reply code {code!r} is not a number") from None
        parsed_status = parse_status(status) if status else None
        if text:
            problem = not_unicode("the reply's text", text)
            if problem is not None:
                raise ReplyParseError(text, problem)
        return Reply(code=number, status=parsed_status, text=(text or "").strip())

    def _prepare(self, record: ReplyRecord, index: int, now: datetime) -> _Item:
        # The kind and the source as a mapping's are read (`_prepare_mapping`): a kind given as
        # its text is that kind, no source is "api".
        kind = _KINDS.get(record.kind) if isinstance(record.kind, str) else None
        if kind is None:
            raise InputError(f"unknown event kind {record.kind!r}")
        return self._prepare_fields(
            index,
            now,
            kind,
            record.recipient,
            record.message_id,
            record.reply,
            record.code,
            record.status,
            record.text,
            record.attempt,
            record.at,
            record.source,
            record.position,
            record.key,
            record.verdict,
            record.mx_host,
        )

    def _prepare_mapping(self, item: Mapping[str, Any], index: int, now: datetime) -> _Item:
        if not _RECORD_FIELDS.issuperset(item):
            _mapping_kind(item)  # raises, naming the unknown fields
        # Every field at once, by name (absent ones are the parameters' defaults, as in
        # from_mapping), not one get() call each nor a dict of every field: a dict is passed as
        # it is, another mapping read into one as before (a TypeError then says the same).
        fields = item if type(item) is dict else {**item}
        given = fields.get("kind", _REPLY)
        kind = _KINDS.get(given) if isinstance(given, str) else None
        if kind is None or not fields.get("recipient"):
            _mapping_kind(item)  # raises, with from_mapping's message
        return self._prepare_fields(index, now, cast(EventKind, kind), **fields)

    def _prepare_fields(
        self,
        index: int,
        now: datetime,
        event_kind: EventKind,
        recipient: str,
        message_id: str | None = None,
        reply: str | Reply | None = None,
        code: int | str | None = None,
        status: str | None = None,
        text: str | None = None,
        attempt: int | None = None,
        at: datetime | str | None = None,
        source: str | None = None,
        position: str | int | None = None,
        key: str | None = None,
        verdict: Verdict | None = None,
        mx_host: str | None = None,
        *,
        kind: object = None,
        raw: object = None,
    ) -> _Item:
        """Check one item's fields (a `ReplyRecord`'s, or a mapping's by name) and judge its
        reply. `kind` and `raw` take a mapping's own fields and are not read: the kind is
        `event_kind` (read by the caller), the raw text is kept only with a rejection."""
        # No source is "api", as `ReplyRecord.from_mapping` reads it; read first, as it was.
        source = str(source or "api")
        address = self._address(recipient)
        #: The message id as given: earlier versions made the event key of it (`_Item.legacy`).
        given = message_id
        if message_id is not None:
            if not isinstance(message_id, str):
                raise InputError(f"message_id must be a string, got {type(message_id).__name__}")
            given = message_id.strip()
            # Without its angle brackets, as every ingest source keeps it: a DSN that names the
            # message is then about the same delivery (RFC 5322 section 3.6.4).
            message_id = normalize_message_id(given)
            if not message_id:
                raise InputError("message_id is empty")
            if len(message_id) > 255:
                raise InputError("message_id is longer than 255 characters")
            if "\x00" in message_id:
                # Not made visible as the other texts are: an id changed is another message.
                raise InputError("message_id contains a NUL character")
            # An ASCII id is Unicode text: one test answers for nearly every id, without the
            # two calls of `not_unicode`.
            problem = None if message_id.isascii() else not_unicode("message_id", message_id)
            if problem is not None:
                raise InputError(problem)
        if attempt is not None:
            if isinstance(attempt, str):
                digits = attempt.strip()
                # ASCII digits only: int() reads any script's ("١٢" is 12).
                if digits.isascii() and digits.lstrip("-").isdigit():
                    attempt = int(digits)
            if not isinstance(attempt, int) or isinstance(attempt, bool):
                raise InputError(f"attempt must be a whole number, got {attempt!r}")
            if attempt < 1:
                # Attempts count from 1, as the reply-log reader requires too.
                raise InputError(f"attempt must be 1 or more, got {attempt}")
            if attempt > MAX_ATTEMPT:
                raise InputError(f"attempt {attempt} is more than {MAX_ATTEMPT:,}")
        if at is not None and at != "":
            # `given_time`, without its call for the usual text.
            when = parse_time(at) if isinstance(at, str) else given_time(at)
            if when < EARLIEST:
                raise InputError(
                    f"time {when.isoformat()} is before {EARLIEST:%Y}: check the field and its"
                    " time zone"
                )
            if when > now + FUTURE_TOLERANCE:
                # `now` may be the start of the chunk: ask the clock again before refusing.
                now = self.now()
                if when > now + FUTURE_TOLERANCE:
                    raise InputError(
                        f"time {when.isoformat()} is more than {format_duration(FUTURE_TOLERANCE)}"
                        " in the future "
                        f"(now {now.isoformat()}): check the clock or the time zone"
                    )
        else:
            when = self.now()
        if mx_host is not None and not isinstance(mx_host, str):
            raise InputError(f"mx_host must be a string, got {type(mx_host).__name__}")
        if key is not None and not isinstance(key, str):
            raise InputError(f"key must be a string, got {type(key).__name__}")
        if key and (len(key) > _KEY_LENGTH or "\x00" in key):
            # Refused here, item by item: PostgreSQL and MariaDB refuse it in the chunk's
            # statements, and the whole batch with it (PostgreSQL's text holds no NUL).
            if "\x00" in key:
                raise InputError("key contains a NUL character")
            raise InputError(f"key is longer than {_KEY_LENGTH} characters")
        if mx_host is not None or key is not None:
            for field_name, value in (("mx_host", mx_host), ("key", key)):
                problem = None if value is None else not_unicode(field_name, value)
                if problem is not None:
                    raise InputError(problem)
        if verdict is not None and not isinstance(verdict, Verdict):
            raise InputError(f"verdict must be a Verdict, got {type(verdict).__name__}")
        judged = self._judged.get(reply) if isinstance(reply, str) else None
        if judged is not None and verdict is None and event_kind is not _COMPLAINT:
            # The common case: a reply text seen before, judged then.
            parsed, verdict, facts, key_text = judged
        else:
            parsed, verdict, facts, key_text = self._judge(
                reply, code, status, text, event_kind, verdict
            )
        at_db = self._to_db(when)
        legacy: tuple[str | None, str | None, str] | None = None
        if not key:
            at_text = (
                _isoformat_from_sqlite(when, at_db)
                # SQLite takes times as text (other drivers as datetimes).
                if attempt is None and isinstance(at_db, str) and when.tzinfo is UTC
                else None
            )
            key = _event_key(message_id, address.key, attempt, when, key_text, at_text)
            # Earlier versions made the key of the id as given, brackets and all, and of the
            # address key of then: an ASCII address had no other (one `isascii` answers).
            former = None if recipient.isascii() else self._former_key(recipient, address)
            if given != message_id or former is not None:
                legacy = (given if given != message_id else None, former, key_text)
        # An auto-reply (RFC 3834) is kept in history; anything else must be a delivery result.
        step: Step | None = None
        if event_kind is _EXPIRY:
            # A relay's own give-up (Postfix status=expired) expires the delivery.
            step = _STEP_EXPIRE
        elif not (event_kind is _AUTO_REPLY and verdict.outcome is _INFORMATIONAL):
            step = step_for(verdict.outcome)
        # Positional, in the fields' order: made for every event.
        return _Item(
            index,
            address,
            message_id,
            parsed,
            verdict,
            step,
            when,
            attempt,
            _source_column(source),
            None if position is None else _cut(_visible(str(position)), 255),
            event_kind,
            key,
            facts,
            # A text that names no host (Postfix's relay=local, an address literal) is dropped.
            mx_host_of(mx_host) if mx_host else None,
            legacy,
            at_db,
        )

    def _judge(
        self,
        reply: str | Reply | None,
        code: int | str | None,
        status: str | None,
        text: str | None,
        kind: EventKind,
        verdict: Verdict | None,
    ) -> tuple[Reply | None, Verdict, tuple[Any, ...], str]:
        """The parsed reply, its verdict, its event columns and its part of the event key."""
        parsed: Reply | None
        has_reply = bool(reply or code or status or text)
        loose_text: str | None = None
        if verdict is not None:
            # The caller judged it: a reply is optional, and free text (an auto-reply's subject,
            # say) is kept as text even when it holds no reply code.
            try:
                parsed = self._reply_of(reply, code, status, text) if has_reply else None
            except ReplyParseError:
                if code not in (None, "") or status:
                    raise
                parsed = None
                loose_text = (text or str(reply or "")).strip() or None
        elif kind is _COMPLAINT:
            # A feedback-loop report (RFC 5965) is a complaint whatever text comes with it.
            parsed = self._reply_of(reply, code, status, text) if has_reply else None
            verdict = COMPLAINT_VERDICT
        else:
            parsed = self._reply_of(reply, code, status, text)
            verdict = self._verdict(parsed)
            if isinstance(reply, str):
                judged = (
                    parsed,
                    verdict,
                    _reply_columns(parsed, None, verdict),
                    _reply_key_text(parsed),
                )
                if len(self._judged) > 50_000:
                    self._judged.clear()
                self._judged[reply] = judged
                return judged
        return (
            parsed,
            verdict,
            _reply_columns(parsed, loose_text, verdict),
            _reply_key_text(parsed if parsed is not None else loose_text),
        )

    def _flush(
        self,
        batch: list[_Item],
        rejected: list[tuple[Rejected, str]],
        count: int,
        now: datetime | None = None,
        pause: CollectorPause | None = None,
    ) -> BatchResult:
        """Write one chunk in a transaction of its own (run again after a lock conflict).

        The garbage collector is paused while the chunk is written and committed (`collector`),
        not while a transaction that met a lock waits to begin again; `pause`, when the caller
        began one already (record_many, for the judging of the items), goes on into the
        writing, and the caller ends it (once the chunk's objects are gone)."""
        now = now if now is not None else self.now()
        own = pause is None
        pause = CollectorPause() if pause is None else pause

        def work(conn: Connection, again: bool) -> list[Any]:
            if rejected:
                store_rejected(
                    conn, ((r.source, r.position, r.reason, raw) for r, raw in rejected), now
                )
            if not batch:
                return []
            pause.begin()
            try:
                return self._write(conn, batch, now, check_all=again)
            except BaseException:
                pause.end()
                raise

        try:
            actions = self._in_write_transaction(work)
        finally:
            if own:
                pause.end()
        recorded = [it for it in batch if not it.duplicate]
        self._statistics.recorded(len(recorded))
        if self._checkpointer is not None:
            self._checkpointer.committed(len(recorded))
        result = BatchResult(
            total=count,
            recorded=len(recorded),
            duplicates=len(batch) - len(recorded),
            history_only=sum(1 for it in recorded if it.history_only),
            rejected=[r for r, _ in rejected],
            actions=actions,
        )
        result.by_outcome.update(
            "expired" if it.kind is _EXPIRY else it.verdict.outcome._value_ for it in recorded
        )
        result.by_reason.update(it.verdict.reason._value_ for it in recorded)
        return result

    # -- internals: the chunk writer ---------------------------------------------------------

    def _in_write_transaction(self, work: Callable[[Connection, bool], _T]) -> _T:
        """`work(conn, again)` in a transaction of its own, run again after a lock conflict or
        a unique key's refusal (`run_in_transaction`, conflicts=True); `again` is False on the
        first run. A run after the first asks the store for every event key (`_write`'s
        `check_all`): the refusal may have been an event the first run took for new
        (`_write_chunk`, step 2)."""
        runs = 0

        def run(conn: Connection) -> _T:
            nonlocal runs
            runs += 1
            return work(conn, runs > 1)

        return run_in_transaction(self.db, run, conflicts=True)

    def _write(
        self, conn: Connection, items: list[_Item], now: datetime, check_all: bool = False
    ) -> list[Any]:
        """Learn the items' provider groups, then write the chunk (`_write_chunk`), in the
        caller's transaction: the chunk's own hygiene then sees them, so a push-back from a
        provider's MX for a domain seen for the first time throttles the provider at once."""
        sightings: dict[str, tuple[str, datetime]] = {}
        for it in items:
            if it.mx_host is not None:
                seen = sightings.get(it.address.domain)
                if seen is None or it.at > seen[1]:
                    sightings[it.address.domain] = (it.mx_host, it.at)
        if sightings:
            hygiene_store.learn_providers(conn, sightings, self.policy)
        return self._write_chunk(conn, items, now, check_all)

    def _write_chunk(
        self, conn: Connection, items: list[_Item], now: datetime, check_all: bool = False
    ) -> list[Any]:
        """Write one chunk of events in the caller's transaction; see the module docstring.

        `check_all` asks the store for every item's event key, not only those that may be
        stored (step 2): for a transaction run again, after its events' unique key refused one.

        Sets what was done on each item and returns the hygiene actions. The values read from
        the database stay as the driver gave them (SQLite's times are fixed-width text that
        compares as the times do); only what the chunk computes is converted.
        """
        bulk = self._bulk
        to_db = self._to_db
        now_db = to_db(now)

        # 0. Lock and read the recipients the chunk touches, in one order for every writer: two
        #    writers then never deadlock on each other's rows, and never both add 1 to the same
        #    counter read before the other's commit. (SQLite holds its write lock since BEGIN
        #    IMMEDIATE.) One statement does both: with a plain read after the lock, a recipient
        #    another writer inserted and committed in between was read without its lock (READ
        #    COMMITTED reads what is committed at each statement), and this chunk wrote back
        #    counters over a third writer's: its events stayed, its counts were lost.
        address_keys = sorted({it.address.key for it in items})
        recipients: dict[str, _Recipient] = {}
        load_recipient = _Recipient.loaded
        for row in bulk.select_in(
            conn, _RECIPIENTS, _RECIPIENT_LOAD, "address_key", address_keys, lock=True
        ):
            rec = load_recipient(row)
            recipients[rec.address_key] = rec

        # 1. Load the deliveries the chunk touches (its recipients were read in step 0).
        by_id = {r.id: k for k, r in recipients.items()}
        pairs = list(
            {
                (recipients[it.address.key].id, it.message_id)
                for it in items
                if it.message_id is not None and it.address.key in recipients
            }
        )
        #: (address key, message id) -> the delivery's row as loaded (`_DELIVERY_LOAD`).
        stored: dict[tuple[str, str], Sequence[Any]] = {}
        for row in bulk.select_pairs(
            conn, _DELIVERIES, _DELIVERY_LOAD, "recipient_id", "message_id", pairs
        ):
            stored[(by_id[row[_D_RECIPIENT]], row[_D_MESSAGE])] = row
        # A bounce or complaint that lost the original Message-ID is about the recipient's most
        # recent delivery (by last attempt), if it has one.
        latest: dict[str, str] = {}
        unlinked = list(
            {
                recipients[it.address.key].id
                for it in items
                if it.message_id is None
                and it.kind in _LINKED_KINDS
                and it.address.key in recipients
            }
        )
        newest: dict[str, Sequence[Any]] = {}
        for row in bulk.select_in(conn, _DELIVERIES, _DELIVERY_LOAD, "recipient_id", unlinked):
            akey = by_id[row[_D_RECIPIENT]]
            best = newest.get(akey)
            if best is None or (row[_D_LAST_ATTEMPT], row[_D_ID]) > (
                best[_D_LAST_ATTEMPT],
                best[_D_ID],
            ):
                newest[akey] = row
        for akey, row in newest.items():
            latest[akey] = row[_D_MESSAGE]
            stored.setdefault((akey, row[_D_MESSAGE]), row)

        # 2. Idempotency: drop events already recorded, and repeats inside the chunk. A stored
        #    event needs its recipient (an event makes it, and recipients are never deleted) and,
        #    for any delivery result but an expiry, its delivery (the first such event makes it:
        #    `states.TABLE`). So where either is missing the key is new and is not asked for, and
        #    a sender's first reply for each message (most of what it records) costs no lookup.
        #    A delivery pruned before its last events (`store.prune`) breaks that: the events'
        #    unique key then refuses the INSERT, and the transaction runs again with `check_all`
        #    (`_flush`), asking for every key.
        def may_be_stored(it: _Item) -> bool:
            return it.address.key in recipients and (
                it.message_id is None
                or it.step is None
                or it.step is _STEP_EXPIRE
                or (it.address.key, it.message_id) in stored
            )

        keys = list({it.key for it in items if check_all or may_be_stored(it)})
        known = {row[0] for row in bulk.select_in(conn, _EVENTS, ("key",), "key", keys)}
        fresh: list[_Item] = []
        for it in items:
            # A transaction run again (a lock conflict) starts from the same items.
            it.history_only = False
            it.delivery_state = it.next_attempt_at = None
            it.recorded_attempt = None
            it.linked_message_id = None
            it.restated = False
            if it.key in known:
                it.duplicate = True
            else:
                it.duplicate = False
                known.add(it.key)
                fresh.append(it)
        # Idempotency, continued: an event given with a bracketed message id, or with an address
        # that versions before NFC keys keyed otherwise (NFD), may be stored under a key an
        # earlier version made of it (`_legacy_keys`). Asked only where it can be
        # (`may_be_stored`; migration 0016 re-keyed the recipients), so that new recipients and
        # messages cost nothing more.
        legacy: dict[str, _Item] = {}
        for it in fresh:
            if it.legacy is not None and may_be_stored(it):
                for old in _legacy_keys(it):
                    legacy[old] = it
        if legacy:
            for (stored_key,) in bulk.select_in(conn, _EVENTS, ("key",), "key", list(legacy)):
                legacy[stored_key].duplicate = True
            fresh = [it for it in fresh if not it.duplicate]
        # The state machine holds a retry back until its destination's pause ends, and only a
        # deferral schedules a retry: the pauses of the other items' domains are not asked for
        # (most replies are deliveries, and a record() call then reads none).
        not_before = hygiene_store.paused_until(
            conn, now, self.policy, {it.address.domain for it in fresh if it.step is _STEP_DEFERRED}
        )
        for it in items:
            if not it.duplicate:
                continue
            linked = it.message_id or latest.get(it.address.key)
            if linked is not None:
                known_row = stored.get((it.address.key, linked))
                if known_row is not None:
                    it.delivery_state = _DELIVERY_STATES[known_row[_D_STATE]]
                    it.next_attempt_at = self._from_db(known_row[_D_NEXT])
                    it.recorded_attempt = known_row[_D_ATTEMPT]

        # 3. Run the state machine in Python.
        new_recipients: dict[str, _Recipient] = {}
        touched_recipients: set[str] = set()
        #: The deliveries as they stand in this chunk (None: none yet), parsed when first met.
        views: dict[tuple[str, str], DeliveryView | None] = {}
        #: Deliveries the chunk changed -> the item that changed them last.
        changed: dict[tuple[str, str], _Item] = {}
        #: Each time as the driver takes it, converted once.
        times: dict[datetime, Any] = {}
        backoff = self.policy.backoff
        for it in fresh:
            akey = it.address.key
            at = times.get(it.at)
            if at is None:
                at = times[it.at] = to_db(it.at) if it.at_db is None else it.at_db
            if akey not in recipients:
                recipients[akey] = new_recipients[akey] = _new_recipient(it, at)
            touched_recipients.add(akey)
            state: DeliveryState | None = None
            applied = True
            attempt = it.attempt
            next_at: datetime | None = None
            message_id = it.message_id
            if message_id is None and it.kind in _LINKED_KINDS:
                message_id = latest.get(akey)
            it.linked_message_id = message_id
            if message_id is not None:
                dkey = (akey, message_id)
                if dkey in views:
                    current = views[dkey]
                else:
                    loaded = stored.get(dkey)
                    current = views[dkey] = None if loaded is None else self._delivery_view(loaded)
                if it.step is None:
                    # Not a delivery result (an auto-reply): history only.
                    state = current.state if current is not None else None
                    applied = False
                else:
                    verdict = it.verdict
                    # `states.transition` of the event's StepInput, its fields given as they
                    # are (step, at, reason, attempt, retry_after, jitter_key, reported): the
                    # same result, with no named tuple made for the input and the result.
                    delivery, effect, attempt, _ = apply_step(
                        current,
                        it.step,
                        it.at,
                        verdict.reason,
                        it.attempt,
                        verdict.retry_after,
                        f"{akey}\x00{message_id}",
                        # An expiry that came in as input (a relay's log) is the relay's own
                        # give-up; the engine's expire_overdue checks the lifetime.
                        it.kind is _EXPIRY and verdict.rule != EXPIRY_VERDICT.rule,
                        backoff,
                        not_before.get(it.address.domain) if not_before else None,
                    )
                    applied = effect is _APPLIED
                    if delivery is not None:
                        state = delivery.state
                        next_at = delivery.next_attempt_at
                        if applied:
                            if current is None:
                                latest[akey] = message_id
                            views[dkey] = delivery
                            changed[dkey] = it
            it.history_only = not applied or it.step is None
            it.delivery_state = state
            it.next_attempt_at = next_at
            it.recorded_attempt = attempt

        if not fresh:
            return []
        self._judge_give_ups(conn, fresh, recipients)
        # The recipients' counters and standing once the give-ups are judged (their fault and
        # `restated` decide what they count for: `_apply_to_recipient`).
        hygiene = self.policy.hygiene
        for it in fresh:
            _apply_to_recipient(recipients[it.address.key], it, times[it.at], hygiene)

        # 4. Write: new recipients, events, recipient updates, deliveries.
        if new_recipients:
            ordered = sorted(new_recipients)
            inserted = bulk.insert_rows(
                conn,
                _RECIPIENTS,
                _RECIPIENT_COLUMNS,
                [_recipient_row(new_recipients[k]) for k in ordered],
                returning="address_key",
            )
            for akey, id_ in inserted.items():
                new_recipients[akey].id = id_
        event_rows = [
            (
                it.key,
                times[it.at],
                now_db,
                it.kind._value_,
                recipients[it.address.key].id,
                it.address.domain,
                it.linked_message_id,
                it.recorded_attempt,
                it.source,
                it.position,
                *it.facts,
                it.restated,
            )
            for it in fresh
        ]
        event_ids = self._insert_events(conn, event_rows)
        # Their per-minute counts, in the same transaction (store/minutes.py): the hook below
        # reads them, and so does every later chunk's.
        minutes.append(
            conn,
            minutes.tally((it.address.domain, it.at, it.verdict.outcome, it.kind) for it in fresh),
        )
        moved = []
        stayed = []
        firsts = []
        for akey in sorted(touched_recipients):
            rec = recipients[akey]
            last_key = rec.last_key
            if last_key is not None:
                rec.last_event_id = event_ids[last_key]
            if akey in new_recipients:
                if last_key is not None:
                    # Inserted above with every other column as it now stands.
                    firsts.append((rec.last_event_id, rec.id))
            elif rec.standing != rec.standing_was:
                moved.append(_recipient_update_row(rec))
            else:
                stayed.append(_recipient_steady_row(rec))
        # SQLite rewrites an index entry whenever its column is SET, even to the same value:
        # leaving the standing out where it stayed saves a delete and an insert in its index.
        bulk.update_rows(conn, _RECIPIENTS, _RECIPIENT_MUTABLE, moved)
        bulk.update_rows(conn, _RECIPIENTS, _RECIPIENT_STEADY, stayed)
        bulk.update_rows(conn, _RECIPIENTS, ("last_event_id",), firsts)

        def db_time(value: datetime | None) -> Any:
            if value is None:
                return None
            out = times.get(value)
            if out is None:
                out = times[value] = to_db(value)
            return out

        new_deliveries: list[tuple[Any, ...]] = []
        delivery_updates: list[tuple[Any, ...]] = []
        for dkey, it in changed.items():
            view = views[dkey]
            assert view is not None
            values = (
                view.state._value_,
                view.attempt,
                db_time(view.first_attempt_at),
                db_time(view.last_attempt_at),
                db_time(view.next_attempt_at),
                db_time(view.expires_at),
                view.reason._value_,
                # The reply's code and status (None without a reply).
                it.facts[0],
                it.facts[1],
                now_db,
            )
            was = stored.get(dkey)
            if was is None:
                new_deliveries.append((recipients[dkey[0]].id, dkey[1], it.address.domain, *values))
            else:
                delivery_updates.append((*values, was[_D_ID]))
        bulk.insert_rows(conn, _DELIVERIES, _DELIVERY_INSERT, new_deliveries)
        bulk.update_rows(conn, _DELIVERIES, _DELIVERY_MUTABLE, delivery_updates)

        # 5. Hygiene, in the same transaction.
        actions: list[Any] = []
        if self._hook is not None:
            recorded: list[RecordedEvent] = [
                # The tuple of RecordedEvent's fields in their order (event_id, recipient_id,
                # address_key, domain, message_id, attempt, at, verdict, delivery_state, kind,
                # applied, restated), made into one by tuple.__new__: one is made for every
                # event, and the named tuple's own __new__ is a Python function around the same
                # call. Every recipient is inserted by now, with its id.
                _new_tuple(
                    RecordedEvent,
                    (
                        event_ids[it.key],
                        recipients[it.address.key].id,
                        it.address.key,
                        it.address.domain,
                        it.linked_message_id,
                        it.recorded_attempt,
                        it.at,
                        it.verdict,
                        it.delivery_state,
                        it.kind,
                        not it.history_only,
                        it.restated,
                    ),
                )
                for it in fresh
            ]
            with Session(bind=conn) as session:
                actions = list(self._hook(session, recorded, self.policy, now))
                session.flush()
            if any(getattr(a, "kind", None) is ActionKind.THROTTLE for a in actions):
                self._retry_after_new_pauses(conn, fresh, changed, views, recipients, now)
        return actions

    def _judge_give_ups(
        self, conn: Connection, fresh: list[_Item], recipients: dict[str, _Recipient]
    ) -> None:
        """What a give-up (reason `expired`: the engine's or a relay's expiry, a relay's DSN
        "failed" with X.4.7, a mailer's own 4.4.7) of a known delivery is for list hygiene, from
        the delivery's events recorded before it: those stored and those earlier in the chunk.
        One query per chunk that holds a give-up; none for the others.

        - `restated`: the delivery already had a give-up, so this one reports the same give-up
          again (the engine gave up one night and Postfix's log says so the next, or a relay
          logged it and returned a DSN). One delivery's give-up is one soft strike at most
          (docs/hygiene.md): the first recorded counts, even when the later one is dated earlier.
        - Its fault, for a give-up reported as a reply that names no fault of its own: that of
          the delivery's last deferral before it (never a give-up itself), as the engine's and
          Postfix's expiries take it: whose trouble it was decides whether it is a strike on
          the address (hygiene.expiry_exempt_faults).
        """
        gave_up = [
            (i, it)
            for i, it in enumerate(fresh)
            if it.verdict.reason is _REASON_EXPIRED and it.linked_message_id is not None
        ]
        if not gave_up:
            return
        faultless = {
            i for i, it in gave_up if it.verdict.fault is Fault.UNKNOWN and it.kind is not _EXPIRY
        }
        #: (address key, message id) -> [(at, order, fault)] of the deferrals known.
        deferrals: dict[tuple[str, str | None], list[tuple[datetime, tuple[int, int], Fault]]] = {}
        #: The deliveries with a give-up stored.
        given_up: set[tuple[str, str | None]] = set()
        wanted = {(it.address.key, it.linked_message_id) for _, it in gave_up}
        ids = {recipients[akey].id: akey for akey, _ in wanted if recipients[akey].id is not None}
        if ids:
            e = _EVENTS.c
            # Through events (recipient_id, at): the give-ups' recipients' events.
            found = e.reason == Reason.EXPIRED
            if faultless:
                found = or_(found, and_(*_fault_source(e)))
            rows = conn.execute(
                select(e.recipient_id, e.message_id, e.at, e.id, e.fault, e.reason).where(
                    e.recipient_id.in_(list(ids)),
                    e.message_id.in_(sorted({m for _, m in wanted})),
                    found,
                )
            )
            for rid, mid, at, id_, fault, reason in rows:
                dkey = (ids[rid], mid)
                if dkey not in wanted:
                    continue
                if reason == Reason.EXPIRED:
                    given_up.add(dkey)
                else:
                    deferrals.setdefault(dkey, []).append((at, (0, id_), Fault(fault)))
        if faultless:
            for i, it in enumerate(fresh[: max(faultless)]):
                if it.linked_message_id is not None and _is_fault_source(it):
                    dkey = (it.address.key, it.linked_message_id)
                    if dkey in wanted:
                        deferrals.setdefault(dkey, []).append((it.at, (1, i), it.verdict.fault))
        for i, it in gave_up:
            dkey = (it.address.key, it.linked_message_id)
            # Set on every run of the transaction: a retry may see another history.
            it.restated = dkey in given_up
            given_up.add(dkey)
            if i not in faultless:
                continue
            known = [
                (at, order, fault)
                for at, order, fault in deferrals.get(dkey, ())
                if at <= it.at and order < (1, i)
            ]
            if not known:
                continue
            fault = max(known)[2]
            if fault is not Fault.UNKNOWN:
                it.verdict = dataclasses.replace(it.verdict, fault=fault)
                it.facts = (*it.facts[:_FAULT_AT], fault.value, *it.facts[_FAULT_AT + 1 :])

    def _retry_after_new_pauses(
        self,
        conn: Connection,
        fresh: list[_Item],
        changed: dict[tuple[str, str], _Item],
        views: dict[tuple[str, str], DeliveryView | None],
        recipients: dict[str, _Recipient],
        now: datetime,
    ) -> None:
        """Move the retries this chunk scheduled to the end of the pauses its own push-backs
        raised: the state machine ran before hygiene raised them, and a retry is never earlier
        than the destination's throttle (a reply that pauses its destination would otherwise be
        retried in the middle of the pause)."""
        deferred = {
            dkey: it
            for dkey, it in changed.items()
            if (view := views[dkey]) is not None and view.state is DeliveryState.DEFERRED
        }
        if not deferred:
            return
        paused = hygiene_store.paused_until(
            conn, now, self.policy, {it.address.domain for it in deferred.values()}
        )
        moved: dict[tuple[str, str], datetime] = {}
        for dkey, it in deferred.items():
            view = views[dkey]
            until = paused.get(it.address.domain)
            if view is None or view.next_attempt_at is None or until is None:
                continue
            if view.next_attempt_at < until:
                views[dkey] = view._replace(next_attempt_at=until)
                moved[dkey] = until
        if not moved:
            return
        conn.execute(
            update(_DELIVERIES)
            .where(
                _DELIVERIES.c.recipient_id == bindparam("b_recipient"),
                _DELIVERIES.c.message_id == bindparam("b_message"),
            )
            .values(next_attempt_at=bindparam("b_next")),
            [
                {"b_recipient": recipients[akey].id, "b_message": mid, "b_next": until}
                for (akey, mid), until in moved.items()
            ],
        )
        for it in fresh:
            until = moved.get((it.address.key, it.linked_message_id or ""))
            if until is not None and it.next_attempt_at is not None and it.next_attempt_at < until:
                it.next_attempt_at = until

    def _insert_events(self, conn: Connection, rows: list[tuple[Any, ...]]) -> dict[str, int]:
        """INSERT the chunk's event rows (`_EVENT_COLUMNS`); their ids by key."""
        return self._bulk.insert_rows(conn, _EVENTS, _EVENT_COLUMNS, rows, returning="key")

    def _delivery_view(self, row: Sequence[Any]) -> DeliveryView:
        """The state machine's view of a delivery row as loaded (`_DELIVERY_LOAD`)."""
        from_db = self._from_db
        _, _, _, state, attempt, first, last, next_at, expires, reason = row
        return DeliveryView(
            state=_DELIVERY_STATES[state],
            attempt=attempt,
            first_attempt_at=cast(datetime, from_db(first)),
            last_attempt_at=cast(datetime, from_db(last)),
            next_attempt_at=from_db(next_at),
            expires_at=from_db(expires),
            reason=_REASONS[reason],
        )

    # -- internals: sendability --------------------------------------------------------------

    def _why_not_keys(
        self, keys: Sequence[str], now: datetime, conn: Connection | None = None
    ) -> dict[str, str]:
        """Why each of these address keys may not be sent to now (absent: it may). `conn`: the
        transaction to ask in (`record` asks in its own); else a connection of the pool."""
        if not keys:
            return {}
        if conn is None:
            with self.db.connect() as own:
                return self._why_not_keys(keys, now, own)
        out: dict[str, str] = {}
        unique = sorted(set(keys))
        # In pieces whatever the caller's batch (`chunk_size` may be raised for record_many):
        # one parameter per key, and PostgreSQL takes at most 65,535 in a statement.
        for start in range(0, len(unique), _ASK_CHUNK):
            part = unique[start : start + _ASK_CHUNK]
            for row in conn.execute(_SUPPRESSED_AMONG, {"now": now, "keys": part}):
                until = row.suppressed_until
                when = f" until {until.isoformat()}" if until else ""
                why = f"reason: {row.reason.value}"
                if row.rule == "manual" and row.detail:
                    # A person's own words say more than the reason name.
                    why = f"by {row.created_by}: {row.detail}"
                out[row.address_key] = (
                    f"suppressed since {row.standing_since.isoformat()}{when} ({why})"
                )
        domains = {k.rsplit("@", 1)[1] for k in keys if k not in out}
        paused = hygiene_store.paused_until(conn, now, self.policy, domains)
        if not paused:
            return out
        # The pause of a domain never throttled itself is its group's (listed in the policy or
        # learned from its MX host), and the answer names the group: asked only when paused.
        groups = hygiene_store.groups_of(conn, paused, self.policy)
        for key in keys:
            domain = key.rsplit("@", 1)[1]
            if key not in out and domain in paused:
                group = f" (provider group {groups[domain]})" if domain in groups else ""
                out[key] = (
                    f"destination {domain}{group} is paused until {paused[domain].isoformat()}"
                )
        return out

    # -- internals: recipients ---------------------------------------------------------------

    def _ensure_recipient(self, conn: Connection, address: Address, now: datetime) -> int:
        row = conn.execute(
            select(_RECIPIENTS.c.id).where(_RECIPIENTS.c.address_key == address.key)
        ).first()
        if row is not None:
            return int(row.id)
        values = {
            "address": address.text,
            "address_key": address.key,
            "domain": address.domain,
            "standing": Standing.RETRYING,
            "reason": Reason.UNDEFINED,
            "standing_since": now,
            "first_seen_at": now,
            "last_event_at": now,
        }
        values.update(dict.fromkeys(_COUNTERS, 0))
        return int(
            conn.execute(
                insert(_RECIPIENTS).values(values).returning(_RECIPIENTS.c.id)
            ).scalar_one()
        )

    def _release_standing(self, conn: Connection, recipient_id: int, since: datetime) -> None:
        """End a recipient's suppression: its standing follows its deliveries again, from
        `since`."""
        standing, why = self._standing_from_deliveries(conn, recipient_id)
        conn.execute(
            update(_RECIPIENTS)
            .where(_RECIPIENTS.c.id == recipient_id)
            .values(
                standing=standing,
                reason=why,
                standing_since=since,
                suppressed_until=None,
                suppression_action_id=None,
            )
        )

    def _standing_from_deliveries(
        self, conn: Connection, recipient_id: int
    ) -> tuple[Standing, Reason]:
        """The standing the recipient's latest delivery gives it (a suppression lifted or run
        out). A delivery given up with its first give-up exempt (the sender's, the message's or
        the destination's trouble: `store.hygiene.exempt_give_up`) leaves it retrying, as such
        a give-up leaves it in `_apply_to_recipient`."""
        row = conn.execute(
            select(_DELIVERIES.c.state, _DELIVERIES.c.reason, _DELIVERIES.c.message_id)
            .where(_DELIVERIES.c.recipient_id == recipient_id)
            .order_by(_DELIVERIES.c.last_attempt_at.desc(), _DELIVERIES.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return Standing.RETRYING, Reason.UNDEFINED
        if row.state is DeliveryState.EXPIRED:
            e = _EVENTS.c
            # The first give-up recorded (the one not restated), through events
            # (recipient_id, at).
            exempt = conn.execute(
                select(hygiene_store.exempt_give_up(e, self.policy.hygiene))
                .where(
                    e.recipient_id == recipient_id,
                    e.message_id == row.message_id,
                    e.reason == Reason.EXPIRED,
                )
                .order_by(e.id)
                .limit(1)
            ).scalar()
            if exempt:
                return Standing.RETRYING, row.reason
        return standing_after(None, row.state), row.reason


# --------------------------------------------------------------------------------------------
# Row helpers (module level: no state)

_COUNTERS = (
    "events_count",
    "delivered_count",
    "deferred_count",
    "bounced_count",
    "blocked_count",
    "complained_count",
    "expired_count",
)


@dataclass(frozen=True, slots=True)
class ReplyParseFailure:
    """A cached parse failure, so a bad reply repeated in a log is parsed once."""

    error: DeliverabilityError


def _load_classifier() -> Callable[[Reply, Policy], Verdict]:
    from deliverability.classify import classify

    return classify


def _manual_action(
    conn: Connection,
    kind: ActionKind,
    address_key: str,
    *,
    now: datetime,
    by: str,
    **values: Any,
) -> int:
    """Insert an action taken by hand on one address (suppress, release); returns its id."""
    row = {
        "kind": kind,
        "scope": ActionScope.ADDRESS,
        "target": address_key,
        "rule": "manual",
        "created_at": now,
        "updated_at": now,
        "created_by": by,
        "raised_count": 1,
        "step": 0,
        "deliveries_since": 0,
        **values,
    }
    return int(conn.execute(insert(_ACTIONS).values(row).returning(_ACTIONS.c.id)).scalar_one())


def _rejection(raw: Any, index: int, err: BaseException) -> tuple[Rejected, str]:
    if isinstance(raw, ReplyRecord):
        source, position = str(raw.source or "api"), raw.position
        text = raw.raw if raw.raw is not None else repr(raw)
    elif isinstance(raw, Mapping):
        source = str(raw.get("source") or "api")
        position = raw.get("position")
        given = raw.get("raw")
        text = given if isinstance(given, str) else repr(dict(raw))
    else:
        source, position, text = "api", None, repr(raw)
        err = InputError(f"expected a ReplyRecord or a mapping, got {type(raw).__name__}")
    where = str(position) if position not in (None, "") else str(index)
    source, where, reason, text = (_visible(t) for t in (source, where, str(err), text))
    return Rejected(source=source, position=where, reason=reason, raw=text[:2000]), text


def _new_recipient(item: _Item, at: Any) -> _Recipient:
    """A recipient first seen in this chunk (`at`: the event's time as the driver takes it);
    its id is set once it is inserted."""
    rec = _new_object(_Recipient)
    rec.id = None
    rec.address = item.address.text
    rec.address_key = item.address.key
    rec.domain = item.address.domain
    rec.standing = rec.standing_was = None
    rec.reason = _UNDEFINED_VALUE
    rec.standing_since = rec.first_seen_at = rec.last_event_at = at
    rec.standing_basis_at = rec.suppressed_until = rec.suppression_action_id = None
    rec.last_delivered_at = rec.last_failure_at = None
    rec.last_event_id = rec.last_key = None
    rec.last_code = rec.last_status = rec.last_text = None
    rec.events_count = rec.delivered_count = rec.deferred_count = rec.bounced_count = 0
    rec.blocked_count = rec.complained_count = rec.expired_count = 0
    return rec


def _apply_to_recipient(rec: _Recipient, item: _Item, at: Any, hygiene: HygienePolicy) -> None:
    """Counters, last reply and standing of a recipient after one new event, its give-up
    judged (`_judge_give_ups`).

    `rec` holds the driver's values (enums by value, times as the driver gives them: compared,
    never parsed) and `at` is the event's time in the same form. `hygiene`: the policy's.
    """
    verdict = item.verdict
    outcome = verdict.outcome
    rec.events_count += 1
    # A give-up reported again (the engine's expiry, then Postfix's line for it) is counted
    # once, by its first report: in `events_count` alone, kept in history (docs/hygiene.md).
    if item.restated:
        counter = None
    elif item.kind is _EXPIRY:
        counter = "expired_count"
    else:
        counter = _STANDING_OUTCOME_COUNTER.get(outcome)
    if counter is not None:
        setattr(rec, counter, getattr(rec, counter) + 1)
    if item.step is None:
        # An auto-reply says nothing about delivery: counted, nothing else.
        if rec.standing is None:
            rec.standing = _RETRYING_VALUE
        return
    if outcome is _DELIVERED:
        if rec.last_delivered_at is None or at > rec.last_delivered_at:
            rec.last_delivered_at = at
    elif (
        outcome is not _COMPLAINED
        # An expiry is the sender giving up, days after the destination's last refusal: not
        # a failed attempt (it has its own counter, and the reports' `expired`).
        and item.kind is not _EXPIRY
        and (rec.last_failure_at is None or at > rec.last_failure_at)
    ):
        rec.last_failure_at = at
    if at < rec.first_seen_at:
        rec.first_seen_at = at
    if at >= rec.last_event_at:
        rec.last_event_at = at
        rec.last_key = item.key
        if item.reply is not None:
            # The reply's code, status and text, as the event row has them.
            rec.last_code, rec.last_status, rec.last_text = item.facts[:3]
    stored = rec.standing
    before = _STANDINGS.get(stored)
    if before is _SUPPRESSED and rec.suppressed_until is not None and rec.suppressed_until <= at:
        # The suppression ran out (hygiene set an expiry): the deliveries decide again.
        before = None
        rec.suppressed_until = None
        rec.suppression_action_id = None
    # The standing follows the newest delivery result by time, by the event's own outcome,
    # whether or not the event moved its delivery: the same whatever order events are recorded
    # in (many writers, late logs). Blocks and complaints never move it.
    if verdict.reason is _REASON_EXPIRED:
        # A give-up (the engine's expiry, a relay's log line or DSN, whatever outcome it came
        # with) is one result for the standing, as for the hygiene rules (docs/hygiene.md,
        # "What a give-up does to the standing"): the message never arrived, so the address
        # looks bounced, unless it is exempt, as from strikes (`is_exempt_give_up`: the
        # sender's, the message's or the destination's own trouble, or the same give-up
        # reported again, which changes nothing its first report did not). Those are no
        # result: the standing stays what the other results say.
        exempt = is_exempt_give_up(verdict.reason, verdict.fault, item.restated, hygiene)
        result = None if exempt else _STATE_EXPIRED
    elif item.kind is _EXPIRY:
        result = _STATE_EXPIRED
    else:
        result = _RESULT_STATE.get(outcome)
    basis = rec.standing_basis_at
    if result is not None and (basis is None or at >= basis):
        # The newest delivery result by time decides, whatever order results are recorded in.
        following = standing_after(before, result)
        rec.standing_basis_at = at
        if following is not _SUPPRESSED:
            rec.reason = item.verdict.reason._value_
    else:
        following = before if before is not None else _RETRYING
    if following._value_ != stored:
        rec.standing = following._value_
        rec.standing_since = at


#: Outcomes that say something about the address itself (a block or a complaint does not).
_RESULT_STATE = {
    Outcome.DELIVERED: DeliveryState.DELIVERED,
    Outcome.DEFERRED: DeliveryState.DEFERRED,
    Outcome.BOUNCED: DeliveryState.BOUNCED,
}


def _reply_columns(reply: Reply | None, text: str | None, verdict: Verdict) -> tuple[Any, ...]:
    """The event row's `_REPLY_COLUMNS` as the driver takes them: what follows from the reply
    (or, without one, the free `text` kept) and its verdict alone."""
    shown = reply.text if reply else text
    return (
        reply.code if reply else None,
        str(reply.status) if reply and reply.status else None,
        _cut(None if shown is None else _visible(shown), TEXT_LENGTH),
        _cut(reply.command, 16) if reply else None,
        verdict.outcome.value,
        verdict.reason.value,
        verdict.fault.value,
        verdict.rule[:120],
        verdict.decisive,
        verdict.throttle,
        int(verdict.pause.total_seconds()) if verdict.pause else None,
    )


def _event_summary(row: Any) -> EventSummary:
    return EventSummary(
        at=row.at,
        kind=row.kind,
        message_id=row.message_id,
        attempt=row.attempt,
        code=row.code,
        status=row.status,
        text=row.text,
        outcome=row.outcome,
        reason=row.reason,
        source=row.source,
        restated=row.restated,
    )
