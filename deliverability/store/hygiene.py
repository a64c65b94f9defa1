"""List hygiene over the stored history: set-based SQL per rule, then the pure decisions.

One evaluation takes a set of *anchor* events (the events just recorded, the events since the last
nightly run, or the whole history) and, for each rule, runs one aggregate query over the rule's
window around those anchors; the pure rules in `deliverability.hygiene` decide from the counts.
The incremental path (`on_events`, called by the engine inside `record`/`record_many`) and the
nightly path (`evaluate`) are the same code with different anchors, which is why they agree.
The rules with a window also judge again the events an anchor recorded late falls into the
window of (its *late anchors*): the address rules (ambiguous bounces, soft strikes) through
`_Evaluator._judged`, the destination rules (repeated push-backs, repeated blocks, domain
incidents) through `_Evaluator._judged_pushback`, `_Evaluator._late_at_destination` and the
bounces around each point of `_Evaluator._incident_candidates`, so they agree with `--full`
when events arrive out of time order too (docs/hygiene.md, "When the rules run").

Actions are upserted by `Action.open_key`: re-raising an open action refreshes it.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from functools import partial
from math import ceil
from typing import Any, NamedTuple, Protocol, cast

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection, Select, Table
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, aliased

from deliverability.clock import system_clock
from deliverability.errors import InputError
from deliverability.hygiene import (
    BLOCK_FAULTS,
    BOUNCE_RULES,
    RULE_AMBIGUOUS,
    RULE_BLOCKED,
    RULE_BLOCKED_THROTTLE,
    RULE_COMPLAINT,
    RULE_HARD,
    RULE_INCIDENT,
    RULE_PUSHBACK,
    RULE_RELEASE,
    RULE_SOFT,
    ActionSummary,
    Evidence,
    Throttle,
    ThrottleStep,
    evidence_of,
    is_incident,
    is_relay,
    open_key,
    provider_groups,
    provider_of_mx,
    pushback_step,
    suppression_expires,
    throttle_released,
)
from deliverability.policy import HygienePolicy, Policy, format_duration
from deliverability.store.bulk import BulkWriter, time_writer
from deliverability.store.minutes import MINUTES_BETWEEN, is_attempt, minute_of
from deliverability.store.models import (
    Action,
    Bookmark,
    DomainProvider,
    Event,
    Recipient,
    UTCDateTime,
)
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    Fault,
    Outcome,
    Reason,
    Standing,
)

__all__ = [
    "BOOKMARK",
    "BY_POLICY",
    "ActionSummary",
    "EvaluationResult",
    "Throttle",
    "check_by_length",
    "confirm_incident",
    "discard_incident",
    "evaluate",
    "exempt_give_up",
    "expire_actions",
    "groups_of",
    "learn_providers",
    "list_actions",
    "members_of",
    "on_events",
    "paused_domains",
    "paused_until",
    "settled_as",
    "summary_of",
    "throttle_for",
]

#: The Bookmark row holding the last event id the nightly evaluation covered.
BOOKMARK = "hygiene.last_event_id"
#: Who raised an action a rule decided.
BY_POLICY = "policy"
#: Anchors per statement on the incremental path (SQLite allows 32766 bound parameters).
_ID_CHUNK = 5000
_CLOSED = (ActionStatus.RESOLVED, ActionStatus.EXPIRED, ActionStatus.DISCARDED)


#: The events table: the rule queries use Core aliases of it (much cheaper to build than ORM
#: aliases, which matters on the incremental path that runs once per recorded chunk).
_EVENTS = Event.__table__


class _Shape:
    """The anchor alias, the scope condition as bind parameters, and the statements built on
    them: kept per (policy, dialect, mode), because building SQLAlchemy statements costs more
    than running them on the small chunks of the incremental path."""

    def __init__(self, policy: Policy, mode: str) -> None:
        self.policy = policy
        self.mode = mode
        self.table = _EVENTS.alias("anchor")
        self.scope = self.covers(self.table.c)
        self.statements: dict[str, Any] = {}

    def covers(self, e: Any) -> ColumnElement[bool]:
        """The scope condition on any alias of events (`e`, its columns): `e` is an anchor."""
        if self.mode == "ids":
            return e.id.in_(sa.bindparam("anchor_ids", expanding=True))  # type: ignore[no-any-return]
        return sa.and_(e.id > sa.bindparam("anchor_lo"), e.id <= sa.bindparam("anchor_hi"))


_SHAPES: dict[tuple[int, str, str], _Shape] = {}

_ACTIONS = cast(Table, Action.__table__)
#: Ids and keys of the open actions with given keys (built once: the incremental path runs it
#: often; it also finds the ids of actions just inserted).
_OPEN_IDS = sa.select(_ACTIONS.c.id, _ACTIONS.c.open_key).where(
    _ACTIONS.c.open_key.in_(sa.bindparam("keys", expanding=True))
)
#: Push-backs from some domains within a time range (both ends included), through the
#: push-back index (domain, throttle, at) (`Event`, migration 0012): it holds the push-backs
#: alone, so a count reads as many entries as the destination pushed back, not every event it
#: answered. The flag is written `throttle = 1` (SQLite) / `throttle = true`, not `IS 1` /
#: `IS true` (what `is_(True)` renders): SQLite uses a partial index only when the query's WHERE
#: holds the index's WHERE term as written (https://www.sqlite.org/partialindex.html, section
#: 3), PostgreSQL proves the index's `throttle` from `throttle = true` and not from `throttle IS
#: true` (https://www.postgresql.org/docs/current/indexes-partial.html), and MariaDB narrows an
#: index range by an equality only (with `IS true` it reads the whole index instead).
_PUSHBACKS_IN_RANGE = (
    _EVENTS.c.domain.in_(sa.bindparam("domains", expanding=True)),
    _EVENTS.c.throttle == sa.true(),
    _EVENTS.c.at >= sa.bindparam("lo", type_=UTCDateTime()),
    _EVENTS.c.at <= sa.bindparam("hi", type_=UTCDateTime()),
)
#: How many: `count(*)`, which PostgreSQL answers from the index alone (an index-only scan),
#: where `count(id)` needs every row's `id` from the table.
_PUSHBACKS_BETWEEN = sa.select(sa.func.count()).select_from(_EVENTS).where(*_PUSHBACKS_IN_RANGE)
#: Which: found through the push-back index in a subquery of their own, which `OFFSET 0` keeps
#: from being merged into the query that orders them (SQLite flattens no subquery with an
#: OFFSET, https://www.sqlite.org/optoverview.html#flattening; MariaDB merges no derived
#: table with a LIMIT, https://mariadb.com/kb/en/derived-table-merge-optimization/; nor
#: does PostgreSQL pull up a subquery with one). Ordered by time in the same query, the
#: PostgreSQL and MariaDB planners read a provider group's domains (several) through the
#: (at) index instead, from `hi` back to the first push-back of any of them: every event of
#: every domain in the range when the only one is at `lo` (26 ms for an hour of 100,000
#: events on PostgreSQL, against 1 ms this way). The subquery reads all the push-backs in the
#: range, which the ranges asked about (from a push-back, usually the destination's latest)
#: hold few of.
_PUSHBACKS_FOUND = (
    sa.select(_EVENTS.c.id, _EVENTS.c.at, _EVENTS.c.reason, _EVENTS.c.pause_seconds)
    .where(*_PUSHBACKS_IN_RANGE)
    .offset(0)
    .subquery("pushbacks")
)
#: The latest of them (by time, then id): what a throttle's step follows.
_LATEST_PUSHBACK_BETWEEN = (
    sa.select(_PUSHBACKS_FOUND)
    .order_by(_PUSHBACKS_FOUND.c.at.desc(), _PUSHBACKS_FOUND.c.id.desc())
    .limit(1)
)
_INSERT_ACTION = sa.insert(_ACTIONS)
#: The columns an ActionSummary shows, by name (the same names as the Action columns).
_SUMMARY_FIELDS = tuple(f.name for f in fields(ActionSummary) if f.name != "new")
#: The open suppressions with given keys: what refreshing one reads and what its summary shows.
_OPEN_SUPPRESSIONS = sa.select(
    *[_ACTIONS.c[name] for name in ("open_key", "raised_count", "created_by", *_SUMMARY_FIELDS)]
).where(_ACTIONS.c.open_key.in_(sa.bindparam("keys", expanding=True)))
#: The columns a refresh writes (as `_Evaluator._upsert` refreshes a suppression). The last four
#: stay as they were unless evidence recorded late re-dates it (`_apply_suppressions`).
_REFRESHED = (
    "status",
    "raised_count",
    "updated_at",
    "detail",
    "evidence",
    "reason",
    "rule",
    "created_at",
    "expires_at",
)
#: A suppression refreshed: each column from the bound parameter of its name.
_REFRESH_SUPPRESSION = (
    sa.update(_ACTIONS)
    .where(_ACTIONS.c.id == sa.bindparam("action_id"))
    .values({name: sa.bindparam(name) for name in _REFRESHED})
)
_RECIPIENTS = cast(Table, Recipient.__table__)
#: What a suppression sets on its recipient's row (`BulkWriter.update_rows`, in this order).
_STANDING_COLUMNS = (
    "standing",
    "reason",
    "standing_since",
    "suppressed_until",
    "suppression_action_id",
)
_BULK: dict[tuple[str, str], BulkWriter] = {}


def _bulk(conn: sa.Connection) -> BulkWriter:
    """The bulk writer of a connection's dialect (it compiles each statement once)."""
    dialect = conn.dialect
    key = (dialect.name, dialect.driver)
    writer = _BULK.get(key)
    if writer is None:
        writer = _BULK[key] = BulkWriter(dialect)
    return writer


#: The open actions of some keys (`keys`), through the unique index on `open_key`.
_OPEN_THROTTLES = sa.select(
    _ACTIONS.c.id, _ACTIONS.c.target, _ACTIONS.c.evidence, _ACTIONS.c.open_key
).where(
    _ACTIONS.c.open_key.in_(sa.bindparam("keys", expanding=True)),
    _ACTIONS.c.status == ActionStatus.OPEN,
)


def _shape(policy: Policy, dialect: str, mode: str) -> _Shape:
    key = (id(policy), dialect, mode)
    shape = _SHAPES.get(key)
    if shape is None or shape.policy is not policy:
        if len(_SHAPES) > 64:
            _SHAPES.clear()
        shape = _SHAPES[key] = _Shape(policy, mode)
    return shape


class _HasEventId(Protocol):
    @property
    def event_id(self) -> int: ...


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """What one nightly (or full) evaluation did."""

    first_event_id: int
    last_event_id: int
    raised: int
    refreshed: int
    expired: int
    actions: list[ActionSummary] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# SQL building blocks (dialect-aware time arithmetic; predicates mirroring hygiene.evidence_of).
# --------------------------------------------------------------------------------------------


def _shift(session: Session, col: Any, delta: timedelta) -> ColumnElement[Any]:
    """`col + delta` in SQL, comparable with stored times on every backend."""
    dialect = session.get_bind().dialect.name
    seconds = delta.total_seconds()
    if dialect == "sqlite":
        # SQLite stores "YYYY-MM-DD HH:MM:SS.ffffff" text, and its date functions keep
        # milliseconds only (https://www.sqlite.org/lang_datefunc.html): given the whole text
        # they round it, and a window's end moved by up to half a millisecond either way. So
        # the whole seconds are shifted (strftime of the text cut before the fraction: nothing
        # to round), and the microseconds added as a number, carrying into the seconds.
        whole = delta // timedelta(seconds=1)
        micro = (delta - timedelta(seconds=whole)) // timedelta(microseconds=1)
        head = sa.func.substr(col, 1, 19)
        if micro == 0:
            shifted = sa.func.strftime("%Y-%m-%d %H:%M:%S", head, f"{whole:+d} seconds")
            return shifted.op("||")(sa.func.substr(col, 20, 7))
        fraction = sa.cast(sa.func.substr(col, 21, 6), sa.Integer) + micro
        carry = sa.func.printf("%+d seconds", whole + fraction // 1_000_000)
        shifted = sa.func.strftime("%Y-%m-%d %H:%M:%S", head, carry)
        return shifted.op("||")(sa.func.printf(".%06d", fraction % 1_000_000))
    if dialect == "postgresql":
        return sa.type_coerce(col, sa.DateTime(timezone=True)) + sa.literal(delta, sa.Interval())
    micro = round(seconds * 1_000_000)
    return sa.func.timestampadd(sa.text("MICROSECOND"), micro, col)


# MariaDB joins an indexed column by looking each row up on that column alone and filtering the
# index entries it reads (`ref` access with index condition pushdown): for a domain, or an
# address, that is every entry of its whole history, whatever the window, so the cost grows with
# the history. It range-scans an index only on constant bounds. The helpers below add such
# constants there (they change no result: each is implied by the anchors' own conditions) and
# nothing on SQLite and PostgreSQL, whose planners bound the join by the window through the
# index already (and may choose a worse plan given extra constants).


def _mariadb(session: Session) -> bool:
    return session.get_bind().dialect.name in ("mysql", "mariadb")


def _between(session: Session, at: Any, lo: str, hi: str) -> tuple[ColumnElement[bool], ...]:
    """On MariaDB, `lo <= at <= hi` (bind parameters of those names); nothing elsewhere."""
    if not _mariadb(session):
        return ()
    return (
        at >= sa.bindparam(lo, type_=UTCDateTime()),
        at <= sa.bindparam(hi, type_=UTCDateTime()),
    )


def _within_span(session: Session, w: Any, window: str) -> tuple[ColumnElement[bool], ...]:
    """On MariaDB, `w.at` within the anchors' time span widened by a rule's window at both ends:
    the span of the late anchors of `_judged` and `_late_at_destination` too."""
    return _between(session, w.at, f"span_lo_{window}", f"span_hi_{window}")


def _anchor_in_span(
    session: Session, a: Any, window: str | None = None
) -> tuple[ColumnElement[bool], ...]:
    """On MariaDB, the anchors' own times within their span (with `window`, the span of the
    anchors and of their late anchors for a rule with that window)."""
    return _between(session, a.at, "span_lo", "span_hi" if window is None else f"span_hi_{window}")


def _same_domain(session: Session, w: Any, a: Any, domains: str) -> ColumnElement[bool]:
    """`w.domain = a.domain`. On MariaDB also `w.domain IN (<the bind parameter `domains`>)`,
    and the join made on an expression, so that it range-scans (domain, at) within the time
    span and joins the rows in its join buffer instead of a lookup per row."""
    if not _mariadb(session):
        return w.domain == a.domain  # type: ignore[no-any-return]
    return sa.and_(
        sa.func.concat(w.domain, "") == sa.func.concat(a.domain, ""),
        w.domain.in_(sa.bindparam(domains, expanding=True)),
    )


def _day(session: Session, col: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a stored time."""
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return sa.func.substr(col, 1, 10)
    if dialect == "postgresql":
        return sa.func.date(sa.func.timezone("UTC", col))
    return sa.func.date(col)


def _at(value: datetime) -> ColumnElement[Any]:
    return sa.literal(value, UTCDateTime())


def _loaded(session: Session, value: Any) -> datetime:
    """A time read back from a raw SQL expression (SQLite gives text): aware UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    loaded = UTCDateTime().process_result_value(value, session.get_bind().dialect)
    if loaded is None:
        raise ValueError("a stored event time is NULL")
    return loaded


#: Before any event: where the evidence of an address nothing was spent for counts from.
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def _fresh(e: Any) -> ColumnElement[bool]:
    """The event `e` is fresh evidence on its address: dated after every suppression of that
    address that a person lifted (`unsuppress`), discarded with a domain incident, or that ran
    out (closed by the sweep, or past its `expires_at` at `spent_now`, swept or not).

    Evidence dated at or before such an end is *spent* (docs/hygiene.md, "Address rules"): it
    suppressed the address once, or a person judged it, and it must not suppress it again. A
    rule that needs repeated evidence counts only fresh events, so after an unsuppress a bare
    550 or a soft strike is the first of a new count, not the last of the old one; and the
    earliest suppression a rule finds is the first on fresh evidence, so a full re-evaluation
    reaches the one raised after an unsuppress as the incremental pass did.

    A correlated subquery per event judged (`_spent`)."""
    return cast(ColumnElement[bool], e.at > _spent(e.recipient_id))


def _spent(recipient_id: Any) -> ColumnElement[Any]:
    """When the latest spent suppression of the recipient `recipient_id` ended (`_fresh`), or
    `_NEVER`: a correlated subquery.

    The address key is looked up by the recipient's primary key in a subquery of its own, so
    that the suppressions are read through `ix_actions_kind_scope_target` with all three of its
    columns whatever the planner believes of the tables' sizes. As a join, PostgreSQL planned
    it from the actions' side when its statistics were stale (a new store), and read every
    suppression of the store for each event judged."""
    actions = _ACTIONS.alias()
    recipients = _RECIPIENTS.alias()
    c, r = actions.c, recipients.c
    ended = sa.case(
        (c.status.in_(_CLOSED), c.resolved_at),
        (c.expires_at <= sa.bindparam("spent_now", type_=UTCDateTime()), c.expires_at),
    )
    # Correlated two levels out, to where `recipient_id` comes from.
    key = (
        sa.select(r.address_key)
        .where(r.id == recipient_id)
        .correlate_except(recipients)
        .scalar_subquery()
    )
    return (
        sa.select(sa.func.coalesce(sa.func.max(ended), _at(_NEVER)))
        .where(
            c.kind == ActionKind.SUPPRESS,
            c.scope == ActionScope.ADDRESS,
            c.target == key,
        )
        .correlate_except(actions)
        .scalar_subquery()
    )


def _judged_once(
    source: Any,
    xt: Any,
    on: ColumnElement[bool],
    judged: tuple[ColumnElement[bool], ...],
    reset: ColumnElement[Any],
) -> Any:
    """The events a counting rule judges (`_judged`), each once, with the two bounds its
    window's events are checked against: `reset`, the latest delivery that resets the count
    (a correlated subquery on `xt`), and `spent`, the end of the address's latest spent
    suppression (`_fresh`). Returns the derived table.

    Worked out once per judged event, in a derived table that no planner merges into the
    query around it (DISTINCT), where conditions on the window's events would work them out
    once for each of its events. The rules' aggregates (distinct messages, distinct days, the
    earliest event) are the same whether an event judged for two anchors comes once or twice.
    Measured on PostgreSQL 15, a chunk of 2,000 soft strikes and deliveries judged on 30,000
    events of 240 addresses: 29,914 runs of each subquery became 922."""
    x = xt.c
    return (
        sa.select(
            x.recipient_id.label("recipient_id"),
            x.id.label("id"),
            x.at.label("at"),
            x.reason.label("reason"),
            reset.label("reset"),
            _spent(x.recipient_id).label("spent"),
        )
        .select_from(source)
        .join(xt, on)
        .where(*judged)
        .distinct()
        .subquery("judged_once")
    )


def _by_address_index(statement: Select[Any], w: Any) -> Select[Any]:
    """`statement` with the judged events first and the window's events `w` read through
    `ix_events_recipient_id_at` on MariaDB (STRAIGHT_JOIN and an index hint; nothing
    elsewhere).

    Joined to `_judged_once`'s derived table, whose size MariaDB guesses, MariaDB put the
    window's events first when its statistics said `events` was small, and so read the whole
    table, where each judged event needs one range of its address's events
    (tests/test_query_plans.py). SQLite and PostgreSQL take that order and index by
    themselves. MariaDB's URLs name either dialect."""
    for dialect in ("mysql", "mariadb"):
        statement = statement.prefix_with("STRAIGHT_JOIN", dialect=dialect).with_hint(
            w, "FORCE INDEX (ix_events_recipient_id_at)", dialect_name=dialect
        )
    return statement


def _judged_columns(j: Any) -> tuple[ColumnElement[Any], ...]:
    """What a counting rule gives of each judged event of `_judged_once` (`j`: its columns),
    and groups its window's events by, as `_first_per_recipient` reads it."""
    return (
        j.recipient_id.label("recipient_id"),
        j.id.label("anchor_id"),
        j.at.label("at"),
        j.reason.label("reason"),
    )


def _is_hard(e: Any) -> ColumnElement[bool]:
    return sa.and_(e.outcome == Outcome.BOUNCED, e.decisive.is_(True), e.throttle.is_(False))


def _is_soft(e: Any, policy: Policy) -> ColumnElement[bool]:
    soft = sorted(policy.hygiene.soft_reasons)
    return sa.and_(
        e.throttle.is_(False),
        e.reason.in_(soft) if soft else sa.false(),
        sa.or_(
            e.outcome == Outcome.DEFERRED,
            sa.and_(e.outcome == Outcome.BOUNCED, e.decisive.is_(False)),
        ),
        # evidence_of: an expiry after the sender's, the message's or the destination's own
        # trouble is no strike, nor a give-up its delivery already had (`Event.restated`).
        sa.not_(exempt_give_up(e, policy.hygiene)),
        sa.or_(e.reason != Reason.EXPIRED, e.restated.is_(False)),
    )


def exempt_give_up(e: Any, policy: HygienePolicy) -> ColumnElement[bool]:
    """A give-up (reason `expired`) whose fault, its delivery's last deferral's, is one of
    `hygiene.expiry_exempt_faults`: the sender's, the message's or the destination's own
    trouble, which says nothing about the address (`evidence_of`). `e`: an events alias's
    columns. The soft-strike rule counts no strike for it, and `report undeliverable` does not
    list an address it left bounced."""
    exempt = sorted(policy.expiry_exempt_faults)
    if not exempt:
        return sa.false()
    return sa.and_(e.reason == Reason.EXPIRED, e.fault.in_(exempt))


def _is_ambiguous(e: Any, policy: Policy) -> ColumnElement[bool]:
    soft = sorted(policy.hygiene.soft_reasons)
    return sa.and_(
        e.outcome == Outcome.BOUNCED,
        e.decisive.is_(False),
        e.throttle.is_(False),
        e.reason.not_in(soft) if soft else sa.true(),
    )


def _is_bounce(e: Any, policy: Policy) -> ColumnElement[bool]:
    """A bounce that suppresses (hard or ambiguous): what a domain incident counts."""
    return sa.or_(_is_hard(e), _is_ambiguous(e, policy))


def _is_blocked(e: Any, policy: Policy, *, windowed: bool = False) -> ColumnElement[bool]:
    """A block (`Evidence.BLOCKED`): a `blocked` outcome, or a deferral whose fault is the
    sender's or the message's (`hygiene.is_sender_deferral`, `BLOCK_FAULTS`: not an expiry,
    not a soft reason), never a push-back.

    `windowed`: for the events of a destination's window, read through the block index
    (`Event`, `ix_events_blocks`, migrations 0013 and 0014): its WHERE's two terms as written
    there (`BLOCKS_WHERE`, the values as literals: SQLite matches a partial index's terms as
    written, and PostgreSQL proves its WHERE from constants, not from parameters), and `outcome
    IN ('blocked', 'deferred')`, implied by them, which narrows MariaDB's range of its whole
    index to those two outcomes. Otherwise (the anchors, found by id) the same condition written
    so that it matches no partial index (`throttle IS false`, the values bound): with a small
    history, PostgreSQL would walk the whole block index for them instead of reading their ids.
    Either way the policy's part (the reasons a deferral that blocks leaves out) is checked on
    the rows of the deferrals alone.
    """
    not_blocks = sorted({*policy.hygiene.soft_reasons, Reason.EXPIRED})
    words: tuple[Any, ...] = (Outcome.BLOCKED, Outcome.DEFERRED, *BLOCK_FAULTS)
    if windowed:
        words = tuple(_literal(word) for word in words)
    blocked, deferred, *faults = words
    not_pushback = e.throttle == sa.false() if windowed else e.throttle.is_(False)
    return sa.and_(
        e.outcome.in_((Outcome.BLOCKED, Outcome.DEFERRED)),
        not_pushback,
        sa.or_(
            e.outcome == blocked,
            sa.and_(e.outcome == deferred, sa.or_(*(e.fault == fault for fault in faults))),
        ),
        sa.or_(e.outcome == blocked, e.reason.not_in(not_blocks)),
    )


def _literal(value: Outcome | Fault) -> ColumnElement[Any]:
    """An enum value written into the statement (a fixed word of the vocabulary)."""
    return sa.literal_column(f"'{value.value}'")


def _is_delivered(e: Any) -> ColumnElement[bool]:
    return sa.and_(e.outcome == Outcome.DELIVERED, e.throttle.is_(False))


def _known_delivery(d: Any, a: Any) -> ColumnElement[bool]:
    """`d` is a delivery to the anchor `a`'s address recorded before it (a smaller event id).

    A bounce is judged by what was recorded before it, whatever its date: that is all the
    incremental pass can see when it judges it, and the nightly and full evaluations see the
    same (ids grow in recording order, within a chunk in the order of its items), so the three
    agree. A delivery recorded after a bounce already suppressed the address does not undo the
    suppression: that was an action taken on the evidence then known (unsuppress lifts it)."""
    return sa.and_(d.recipient_id == a.recipient_id, _is_delivered(d), d.id < a.id)


#: Deliveries to some domains after a time and up to now, whenever they were recorded (a
#: delivery recorded before a push-back dated earlier than it counts too: `_apply_releases`).
_DELIVERIES_SINCE = sa.select(sa.func.count(_EVENTS.c.id)).where(
    _EVENTS.c.domain.in_(sa.bindparam("domains", expanding=True)),
    _is_delivered(_EVENTS.c),
    _EVENTS.c.at > sa.bindparam("since", type_=UTCDateTime()),
    _EVENTS.c.at <= sa.bindparam("now", type_=UTCDateTime()),
)


def _destination(e: Any, policy: Policy) -> ColumnElement[str]:
    """The throttle target of an event's domain: the provider group the policy lists it in,
    else the group it was learned to belong to (`DomainProvider`), else the domain."""
    groups = policy.throttle.provider_domains
    learning = _learning_groups(policy)
    fallback: ColumnElement[str] = e.domain
    if learning:
        learned = _PROVIDERS.alias("learned")
        group = (
            sa.select(learned.c.provider)
            .where(learned.c.domain == e.domain, learned.c.provider.in_(learning))
            .correlate_except(learned)
            .scalar_subquery()
        )
        fallback = sa.func.coalesce(group, e.domain)
    if not groups:
        return fallback
    return sa.case(
        *[(e.domain.in_(list(domains)), sa.literal(name)) for name, domains in groups.items()],
        else_=fallback,
    )


# --------------------------------------------------------------------------------------------
# Provider groups: the policy's domain lists, plus the domains learned by their MX host.
# --------------------------------------------------------------------------------------------

_PROVIDERS = cast(sa.Table, DomainProvider.__table__)


def _learning_groups(policy: Policy) -> list[str]:
    """The groups whose learned domains count: those the policy gives MX suffixes (a group
    the policy no longer names, or names without suffixes, learns nothing and keeps nothing)."""
    return sorted(name for name, sfx in policy.throttle.provider_mx_suffixes.items() if sfx)


def _listed(policy: Policy) -> dict[str, str]:
    """Domain -> group, as the policy's `domains` lists give them."""
    return {
        domain: name
        for name, domains in policy.throttle.provider_domains.items()
        for domain in domains
    }


def groups_of(conn: Connection, domains: Iterable[str], policy: Policy) -> dict[str, str]:
    """The provider group of each of `domains` that has one: the policy's lists win, then
    the group the domain was learned to belong to (one indexed query per few thousand)."""
    listed = _listed(policy)
    out: dict[str, str] = {}
    rest: list[str] = []
    for domain in set(domains):
        if domain in listed:
            out[domain] = listed[domain]
        else:
            rest.append(domain)
    learning = _learning_groups(policy)
    if rest and learning:
        rest.sort()
        for part in _chunks(rest):
            params = {"learning": learning, "domains": list(part)}
            for domain, group in conn.execute(_LEARNED_GROUPS, params):
                out[domain] = group
    return out


#: The learned domains of some groups (`learning`), in domain order: (domain, group). Built
#: once: the sender's API asks on every call.
_LEARNED = (
    sa.select(_PROVIDERS.c.domain, _PROVIDERS.c.provider)
    .where(_PROVIDERS.c.provider.in_(sa.bindparam("learning", expanding=True)))
    .order_by(_PROVIDERS.c.domain)
)
#: The same, among some domains only (`domains`).
_LEARNED_GROUPS = _LEARNED.where(_PROVIDERS.c.domain.in_(sa.bindparam("domains", expanding=True)))


def members_of(
    conn: Connection,
    groups: Iterable[str],
    policy: Policy,
    among: Iterable[str] | None = None,
) -> dict[str, list[str]]:
    """Group -> its domains: the policy's list, then the domains learned to belong to it (not
    those the policy lists in any group). `among` limits the learned ones to those domains."""
    listed = _listed(policy)
    out = {g: list(policy.throttle.provider_domains.get(g, ())) for g in groups}
    learning = set(_learning_groups(policy))
    wanted = sorted(g for g in out if g in learning)
    if not wanted:
        return out
    if among is None:
        rows: Iterable[Any] = conn.execute(_LEARNED, {"learning": wanted})
    else:
        rows = (
            row
            for part in _chunks(sorted(set(among) - set(listed)))
            for row in conn.execute(_LEARNED_GROUPS, {"learning": wanted, "domains": list(part)})
        )
    for domain, group in rows:
        if domain not in listed:
            out[group].append(domain)
    return out


def _destination_of(conn: Connection, domain: str, policy: Policy) -> tuple[ActionScope, str]:
    """The throttle target of one recipient domain (`_destination`, for one domain)."""
    group = groups_of(conn, [domain], policy).get(domain)
    return (ActionScope.DOMAIN, domain) if group is None else (ActionScope.PROVIDER, group)


#: A domain's `last_seen_at` (and its MX host) is refreshed when a sighting is this much newer.
_SEEN_REFRESH = timedelta(hours=1)

#: The learned rows of some domains (`domains`), whatever their group: one indexed (primary key)
#: read per chunk of sightings. Built once: the engine asks on every chunk it writes.
_KNOWN = sa.select(
    _PROVIDERS.c.domain,
    _PROVIDERS.c.provider,
    _PROVIDERS.c.mx_host,
    _PROVIDERS.c.first_seen_at,
    _PROVIDERS.c.last_seen_at,
).where(_PROVIDERS.c.domain.in_(sa.bindparam("domains", expanding=True)))

#: Ends the membership of a domain that moved away (`b_at` its sighting). The condition on
#: `last_seen_at` is checked again in the statement: a concurrent writer may have seen it at its
#: provider later than this chunk's read.
_FORGET = sa.delete(_PROVIDERS).where(
    _PROVIDERS.c.domain == sa.bindparam("b_domain"),
    _PROVIDERS.c.last_seen_at <= sa.bindparam("b_at", type_=UTCDateTime()),
)


def learn_providers(
    conn: Connection, sightings: dict[str, tuple[str, datetime]], policy: Policy
) -> int:
    """Remember the provider group of each domain whose MX host matches a group's
    `mx_suffixes`, and forget it for a domain that moved away: `sightings` maps a recipient
    domain to (the normalised MX host that answered, the event's time).

    - Domains the policy lists are left out (its lists win), whatever their MX host.
    - A domain seen with another group's MX later than its last sighting moved: its row follows.
    - A domain seen with an MX of no group (its own server, another host) no earlier than its
      row's `last_seen_at` moved away: its row is deleted, and it has no group, like a domain
      never learned. A domain whose backup MX is self-hosted therefore leaves its group when
      the backup answers; the next sighting of the provider's MX learns it again.
    - An older sighting than `last_seen_at` changes nothing, whichever host it names: a late
      log must not undo newer knowledge.
    - `last_seen_at` and the host move on once a sighting is `_SEEN_REFRESH` newer.

    One indexed read of the known rows per few thousand domains covers every sighting; the
    writes are batched. Returns how many rows were written (inserted, updated or deleted)."""
    listed = _listed(policy)
    found: dict[str, tuple[str | None, str, datetime]] = {}
    for domain, (host, at) in sightings.items():
        if domain not in listed and not is_relay(host, policy.throttle):
            found[domain] = (provider_of_mx(host, policy.throttle), host, at)
    if not found:
        return 0
    known = {
        domain: (group, host, first, last)
        for part in _chunks(sorted(found))
        for domain, group, host, first, last in conn.execute(_KNOWN, {"domains": list(part)})
    }
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    deletes: list[dict[str, Any]] = []
    # In domain order, as the chunk writer locks recipients: two writers never wait on each
    # other's rows in opposite orders.
    for domain, (group, host, at) in sorted(found.items()):
        old = known.get(domain)
        if group is None:
            # An MX of no group: the domain moved away, unless this sighting is older than
            # what the row knows (`_FORGET` checks that again in the statement).
            if old is not None and at >= old[3]:
                deletes.append({"b_domain": domain, "b_at": at})
            continue
        if old is None:
            inserts.append(
                {
                    "domain": domain,
                    "provider": group,
                    "mx_host": host,
                    "first_seen_at": at,
                    "last_seen_at": at,
                }
            )
            continue
        old_group, old_host, first, last = old
        if old_group != group:
            if at < last:
                continue  # an older sighting of the provider it left
            first = last = at  # it moved
        elif at < first:
            first, host = at, old_host
        elif at - last >= _SEEN_REFRESH:
            last = at
        else:
            # Nothing worth a write: every chunk to a busy domain would otherwise update its
            # row, and concurrent writers would queue on that row's lock.
            continue
        updates.append(
            {
                "b_domain": domain,
                "b_provider": group,
                "b_host": host,
                "b_first": first,
                "b_last": last,
            }
        )
    if inserts:
        conn.execute(sa.insert(_PROVIDERS), inserts)
    if updates:
        p = _PROVIDERS.c
        conn.execute(
            sa.update(_PROVIDERS)
            .where(p.domain == sa.bindparam("b_domain"))
            .values(
                provider=sa.bindparam("b_provider"),
                mx_host=sa.bindparam("b_host"),
                first_seen_at=sa.bindparam("b_first", type_=UTCDateTime()),
                last_seen_at=sa.bindparam("b_last", type_=UTCDateTime()),
            ),
            updates,
        )
    if deletes:
        conn.execute(_FORGET, deletes)
    return len(inserts) + len(updates) + len(deletes)


# --------------------------------------------------------------------------------------------
# Decisions gathered from the rule queries.
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Suppress:
    recipient_id: int
    address_key: str
    domain: str
    anchor_id: int
    at: datetime
    reason: Reason
    rule: str
    detail: str
    evidence: dict[str, Any]
    held: bool = False
    #: Evidence of a reason the policy gives no expiry (a complaint, a hard bounce) dated while
    #: this suppression of an expiring reason is in force: it then lasts (`_lasting`).
    lasting: _Suppress | None = None


class _Pushback(NamedTuple):
    """A push-back a throttle may follow: its event id, time, reason and its rule's own pause."""

    id: int
    at: datetime
    reason: str
    pause_seconds: int | None


@dataclass(slots=True)
class _DestState:
    """What the anchors say about one destination."""

    scope: ActionScope
    target: str
    pushback: ThrottleStep | None = None
    pushback_at: datetime | None = None
    pushback_id: int = 0
    pushback_reason: Reason = Reason.RATE_LIMITED
    pushbacks: int = 0
    blocks_at: datetime | None = None
    blocks_id: int = 0
    blocks_reason: Reason = Reason.BLOCKED
    blocks_in_window: int = 0
    alert_at: datetime | None = None
    alert_first: datetime | None = None
    alert_reason: Reason = Reason.BLOCKED
    alert_blocks: int = 0
    #: The lowest and highest ids of the blocks judged (`_alert_total`).
    alert_ids: tuple[int, int] = (0, 0)
    alert_sample: list[int] = field(default_factory=list)
    alert_text: str = ""


class _Evaluator:
    """One evaluation over a set of anchor events."""

    def __init__(
        self,
        session: Session,
        policy: Policy,
        now: datetime,
        mode: str,
        params: dict[str, Any],
        census: dict[str, int] | None = None,
        delivered_domains: set[str] | None = None,
    ) -> None:
        self.s = session
        self.policy = policy
        self.now = now
        self.params = params
        # Where spent evidence ends for a suppression past its expiry (`_fresh`).
        params["spent_now"] = now
        # Rule queries are Core statements over the session's connection: the ORM's execute
        # path (autoflush checks, result wrapping) costs more than the queries themselves on
        # small chunks. Whatever the evaluator changes through the ORM it flushes at once.
        session.flush()
        self.conn = session.connection()
        self.shape = _shape(policy, session.get_bind().dialect.name, mode)
        self.at = self.shape.table
        self.a = self.shape.table.c
        self.scope = self.shape.scope
        #: Whether an event recorded before the anchors can exist: not when they are the whole
        #: history (`--full`, or a first nightly run), where every late anchor is an anchor.
        self.late_possible = not (mode == "range" and params.get("anchor_lo") == 0)
        #: The destinations whose throttle this evaluation raised or refreshed.
        self.throttled: set[str] = set()
        self.summaries: list[ActionSummary] = []
        #: Actions raised or refreshed, summarised once flushed (one flush per phase, not each).
        self._pending: list[tuple[Action | dict[str, Any], bool]] = []
        self.raised = 0
        self.refreshed = 0
        self.incident_counts: dict[str, tuple[int, int, int]] = {}
        self.census: dict[str, int] = census or {}
        self._census_given = census is not None
        #: The domains the events delivered to, when the caller knows them (the engine's).
        self.delivered_domains = delivered_domains
        #: The provider groups the policy names, and their domains once read (`_members`).
        self.groups = provider_groups(policy.throttle)
        self._group_members: dict[str, list[str]] | None = None

    def _cached(self, name: str, build: Callable[[], Any]) -> Any:
        statements = self.shape.statements
        if name not in statements:
            statements[name] = build()
        return statements[name]

    def _exec(self, statement: Any) -> Any:
        """Run a statement with the anchors' bind parameters (unused ones are ignored)."""
        return self.conn.execute(statement, self.params)

    # ---- address rules ------------------------------------------------------------------

    def _first_per_recipient(
        self, name: str, build_inner: Callable[[], Select[Any]], rule: str
    ) -> list[_Suppress]:
        """Rows (recipient_id, anchor_id, at, reason, n) -> the earliest anchor per recipient."""

        def build() -> Select[Any]:
            sub = build_inner().subquery()
            ranked = sa.select(
                sub,
                sa.func.row_number()
                .over(partition_by=sub.c.recipient_id, order_by=(sub.c.at, sub.c.anchor_id))
                .label("rn"),
            ).subquery()

            # The address by primary key per row kept, not by a join: MariaDB guesses the
            # size of a rule's derived rows from its joins (three of the address's index ranges
            # for the late anchors of `_judged`) and then reads the whole recipients table to
            # join them.
            def column(name: str) -> Any:
                r = _RECIPIENTS.alias(f"recipient_{name}")
                return (
                    sa.select(r.c[name])
                    .where(r.c.id == ranked.c.recipient_id)
                    .scalar_subquery()
                    .label(name)
                )

            return sa.select(
                ranked.c.recipient_id,
                ranked.c.anchor_id,
                ranked.c.at,
                ranked.c.reason,
                ranked.c.n,
                column("address_key"),
                column("domain"),
            ).where(ranked.c.rn == 1)

        rows = self._exec(self._cached(name, build)).all()
        out = []
        for rid, anchor_id, at, reason, n, key, domain in rows:
            at = _loaded(self.s, at)
            out.append(
                _Suppress(
                    recipient_id=rid,
                    address_key=key,
                    domain=domain,
                    anchor_id=anchor_id,
                    at=at,
                    reason=Reason(reason),
                    rule=rule,
                    detail="",
                    evidence={"event_id": anchor_id, "count": n},
                )
            )
        return out

    def _single(
        self, name: str, predicate: Callable[[], ColumnElement[bool]], rule: str
    ) -> list[_Suppress]:
        a = self.a

        def inner() -> Select[Any]:
            return sa.select(
                a.recipient_id.label("recipient_id"),
                a.id.label("anchor_id"),
                a.at.label("at"),
                a.reason.label("reason"),
                sa.literal(1).label("n"),
            ).where(self.scope, predicate(), _fresh(a))

        return self._first_per_recipient(name, inner, rule)

    def _fresh_hard(self) -> ColumnElement[bool]:
        """A hard bounce that no delivery to its address dated after it makes stale.

        A delivery later than the bounce proves the mailbox accepted mail since (issue 4: never
        suppress a good address; issue 3: a late DSN is history, it does not roll the standing
        back). One at the same instant does not: logs date to the second at best, so it does not
        say which came last, and the bounce is positive evidence that the mailbox is gone. Only
        deliveries recorded before the bounce count (`_known_delivery`)."""
        a = self.a
        d = _EVENTS.alias("later").c
        # Through events (recipient_id, at): the address's entries after the bounce.
        later = sa.exists().where(_known_delivery(d, a), d.at > a.at).correlate(self.at)
        return sa.and_(_is_hard(a), ~later)

    def _judged(
        self, xt: Any, predicate: Callable[[Any], ColumnElement[bool]], window: str
    ) -> tuple[Any, ColumnElement[bool], tuple[ColumnElement[bool], ...]]:
        """The events a rule judges: its anchors, and its events recorded before, to an anchor's
        address, dated at or after that anchor and within the rule's window of it (the *late
        anchors*). Returns what to select from, the join condition of `xt` and the conditions.

        Those are the windows an event recorded late (an older DSN, a log read out of order)
        falls into: an event already evaluated without it must be evaluated again, or the
        incremental and nightly paths would never see what `--full` sees in its window (issue
        4). An anchor is one of them itself (dated at its own time); with events recorded in
        time order there are no others, so in-order input costs one more index range of
        events (recipient_id, at) per anchor of the rule.

        A plain join, not a semi-join: an event judged for two anchors gives its window's rows
        twice, which the rules' aggregates (distinct messages, distinct days, the earliest
        strike) do not count twice; and MariaDB guessed a semi-join's size too large to keep
        the recipients lookup of `_first_per_recipient` on its primary key."""
        a, h = self.a, self.policy.hygiene
        x = xt.c
        span = getattr(h, f"{window}_window")
        on = sa.and_(
            x.recipient_id == a.recipient_id,
            x.at >= a.at,
            x.at <= _shift(self.s, a.at, span),
        )
        where = (
            self.scope,
            predicate(a),
            predicate(x),
            *_within_span(self.s, x, window),
        )
        return self.at, on, where

    def _over_windows(
        self,
        judged_once: Any,
        wt: Any,
        counted: Callable[[Any], ColumnElement[bool]],
        window: str,
        aggregate: ColumnElement[Any],
    ) -> Select[Any]:
        """Each judged event of `judged_once` (`_judged_once`) with `aggregate` (as ``n``) over
        the events `wt` of its window that the rule counts (`counted`): its address's, within
        the rule's `window` before it, after the address's latest spent suppression. The rule
        adds where its count restarts and its threshold."""
        j, w = judged_once.c, wt.c
        span = getattr(self.policy.hygiene, f"{window}_window")
        inner = (
            sa.select(*_judged_columns(j), aggregate.label("n"))
            .select_from(judged_once)
            .join(wt, w.recipient_id == j.recipient_id)
            .where(
                counted(w),
                w.at >= _shift(self.s, j.at, -span),
                *_within_span(self.s, w, window),
                w.at <= j.at,
                w.at > j.spent,
            )
            .group_by(*_judged_columns(j))
        )
        return _by_address_index(inner, wt)

    def _ambiguous(self) -> list[_Suppress]:
        """Ambiguous 550s of `ambiguous_count` distinct messages within `ambiguous_window`,
        none of them older than a delivery to the address (like soft strikes, a delivery resets
        the count; one at the same instant as a bounce does not, as for a hard bounce).

        The latest delivery recorded before the anchor, from the window's start on, sets where
        the count starts: when it is later than the anchor, no bounce of the window is counted
        (the anchor is stale), so one bound does both. Only deliveries recorded before the anchor
        count (`_known_delivery`). The anchors include the late ones (`_judged`)."""
        h = self.policy.hygiene

        def build() -> Select[Any]:
            xt, wt, dt = _EVENTS.alias("judged"), _EVENTS.alias(), _EVENTS.alias("delivery")
            x, w, d = xt.c, wt.c, dt.c

            def counted(e: Any) -> ColumnElement[bool]:
                return _is_ambiguous(e, self.policy)

            source, on, judged = self._judged(xt, counted, "ambiguous")
            since = (
                sa.select(sa.func.max(d.at))
                .where(_known_delivery(d, x), d.at >= _shift(self.s, x.at, -h.ambiguous_window))
                .correlate(xt)
                .scalar_subquery()
            )
            judged_once = _judged_once(source, xt, on, judged, since)
            j = judged_once.c
            message = sa.func.coalesce(w.message_id, sa.cast(w.id, sa.String))
            n = sa.func.count(sa.distinct(message))
            return (
                self._over_windows(judged_once, wt, counted, "ambiguous", n)
                .where(sa.or_(j.reset.is_(None), w.at >= j.reset))
                .having(n >= h.ambiguous_count)
            )

        return self._first_per_recipient("ambiguous", build, RULE_AMBIGUOUS)

    def _soft(self) -> list[_Suppress]:
        """Soft strikes on `soft_strikes` distinct days spanning `soft_span` within
        `soft_window`, after the address's last delivery. As for ambiguous bounces, only
        deliveries recorded before the anchor reset the count (`_known_delivery`), and the
        anchors include the late ones (`_judged`): what an anchor's verdict rests on is
        then fixed when it is recorded except for strikes added to its window, which only ever
        add, so every path reaches the same first suppression."""
        h = self.policy.hygiene

        def build() -> Select[Any]:
            xt, wt, dt = _EVENTS.alias("judged"), _EVENTS.alias(), _EVENTS.alias()
            x, w, d = xt.c, wt.c, dt.c

            def counted(e: Any) -> ColumnElement[bool]:
                return _is_soft(e, self.policy)

            source, on, judged = self._judged(xt, counted, "soft")
            # The address's last delivery at or before the anchor: strikes before it do not count.
            last_delivery = (
                sa.select(sa.func.max(d.at))
                .where(
                    _known_delivery(d, x),
                    # Bounded by the window like the strikes: a delivery before the window
                    # resets nothing that still counts, and an unbounded lookup would read the
                    # address's whole history.
                    d.at >= _shift(self.s, x.at, -h.soft_window),
                    *_within_span(self.s, d, "soft"),
                    d.at <= x.at,
                )
                .correlate(xt)
                .scalar_subquery()
            )
            judged_once = _judged_once(source, xt, on, judged, last_delivery)
            j = judged_once.c
            days = sa.func.count(sa.distinct(_day(self.s, w.at)))
            return (
                self._over_windows(judged_once, wt, counted, "soft", days)
                .where(sa.or_(j.reset.is_(None), w.at > j.reset))
                .having(
                    days >= h.soft_strikes,
                    j.at >= _shift(self.s, sa.func.min(w.at), h.soft_span),
                )
            )

        return self._first_per_recipient("soft", build, RULE_SOFT)

    def _address_decisions(self) -> dict[int, _Suppress]:
        found: list[_Suppress] = []
        c = self.census
        if c["hard"]:
            found += self._single("hard", self._fresh_hard, RULE_HARD)
        if c["complaint"]:
            found += self._single(
                "complaint", lambda: self.a.outcome == Outcome.COMPLAINED, RULE_COMPLAINT
            )
        if c["ambiguous"]:
            found += self._ambiguous()
        if c["soft"]:
            found += self._soft()
        h = self.policy.hygiene
        earliest: dict[int, _Suppress] = {}
        for sup in sorted(found, key=lambda sup: (sup.at, sup.anchor_id)):
            first = earliest.get(sup.recipient_id)
            ends = None if first is None else suppression_expires(first.reason, first.at, h)
            if first is None or (ends is not None and sup.at >= ends):
                # The first suppression of the address, or the first after the one before
                # ran out (it is over by then; `_apply_suppressions` closes it if open).
                earliest[sup.recipient_id] = sup
            elif (
                ends is not None
                and first.lasting is None
                and suppression_expires(sup.reason, sup.at, h) is None
            ):
                first.lasting = sup
        # Evidence dated at or before a person's unsuppress (or a discard, or an expiry) is spent:
        # every rule counts fresh evidence only (`_fresh`).
        return earliest

    # ---- domain incident ----------------------------------------------------------------

    def _incident_triggers(self, suppressions: dict[int, _Suppress]) -> dict[str, list[datetime]]:
        """Bounces at which their domain had an incident: domain -> their times. The bounces
        judged are the anchors and their late anchors (`_incident_candidates`).

        Each candidate's window is counted by one pass of window functions over its domain's
        events around the candidates (`_incident_windows`): its cost follows the events in
        those spans, where a join of each bounce with its window grew with the square of a
        burst (8,000 bounces in an hour took 34 s to evaluate)."""
        h = self.policy.hygiene
        if self.census["hard"] + self.census["ambiguous"] == 0:
            return {}
        # Most chunks and most nights have no incident: per-minute counts from the index rule
        # out the bounces that cannot be one; only the rest are counted.
        candidates = self._incident_candidates(suppressions)
        if not candidates:
            return {}
        wanted = {event_id: domain for event_id, domain, _ in candidates}
        statement = self._cached("incident_windows", self._incident_windows)
        #: domain -> [(at, id, (addresses, bounces, attempts))] of its triggers
        found: dict[str, list[tuple[datetime, int, tuple[int, int, int]]]] = defaultdict(list)
        for domain, lo, hi in _spans_around(candidates, h.incident_window):
            params = {"span_domain": domain, "span_lo": lo, "span_hi": hi}
            for event_id, at, addresses, bounces, attempts in self.conn.execute(statement, params):
                if wanted.get(event_id) != domain:
                    continue  # not judged in this evaluation
                # Sums come back as Decimal on some backends.
                counts = (int(addresses), int(bounces), int(attempts))
                if is_incident(*counts, h):
                    found[domain].append((_loaded(self.s, at), event_id, counts))
        triggers: dict[str, list[datetime]] = {}
        for domain, rows in found.items():
            # The alert shows the counts at the domain's latest trigger.
            self.incident_counts[domain] = max(rows, key=lambda row: (row[0], row[1]))[2]
            triggers[domain] = [row[0] for row in rows]
        return triggers

    def _incident_windows(self) -> Select[Any]:
        """Every bounce at one domain within a span (`span_lo` to `span_hi`, as `_spans_around`
        gives them) that could be an incident, with the distinct addresses bounced, the bounces
        and the attempts in its incident window: `incident_window` back to its own time, both
        ends included, ties included. One range of events (domain, at), window functions over
        it, no join.

        Window functions do not count distinct values. The addresses are the bounces less the
        *pairs* in the window: two bounces of one address with none of it between them (one
        address bouncing k times in the window makes k - 1). A pair longer than the window is
        never inside one; a shorter pair is inside the window ending at T when it ends by T and
        does not start before T - window (it cannot start before and end after). So the pairs
        inside are those *ended* by T less those *started* before T - window: two running sums
        over one ordering by time, the second over a row added at each shorter pair's start.
        """
        x = _EVENTS.c
        h = self.policy.hygiene
        time, per_second = self._time_number(x.at)
        width = round(h.incident_window.total_seconds() * per_second)
        events = (
            sa.select(
                x.id,
                x.at,
                x.recipient_id,
                time.label("t"),
                sa.case((_is_bounce(x, self.policy), 1), else_=0).label("is_bounce"),
                sa.case((is_attempt(x), 1), else_=0).label("is_attempt"),
            )
            .where(
                x.domain == sa.bindparam("span_domain"),
                x.at >= sa.bindparam("span_lo", type_=UTCDateTime()),
                x.at <= sa.bindparam("span_hi", type_=UTCDateTime()),
            )
            .subquery("incident_events")
        )
        e = events.c
        # The previous bounce of the same address (bounces and other events apart).
        previous = sa.func.lag(e.t).over(
            partition_by=(e.recipient_id, e.is_bounce), order_by=(e.t, e.id)
        )
        marked = sa.select(
            e.id, e.at, e.t, e.is_bounce, e.is_attempt, previous.label("pair_start")
        ).subquery("incident_marked")
        m = marked.c
        # A pair no longer than the window (a null start, a first bounce, is none).
        short = sa.and_(m.is_bounce == 1, m.pair_start >= m.t - width)
        zero, one = sa.literal(0, sa.Integer()), sa.literal(1, sa.Integer())
        rows = sa.union_all(
            sa.select(
                m.id,
                m.at,
                m.t,
                m.is_bounce,
                m.is_attempt,
                sa.case((short, 1), else_=0).label("pair_end"),
                zero.label("pair_start_row"),
            ),
            # Each short pair's start, as a row of its own at that time.
            sa.select(m.id, m.at, m.pair_start, zero, zero, zero, one).where(short),
        ).subquery("incident_rows")

        def running(column: str, frame: str, label: str) -> ColumnElement[int]:
            # RANGE frames over the whole-number time. Written out: SQLAlchemy binds a frame's
            # offset as a parameter of type INTEGER (2.1), where PostgreSQL needs the BIGINT of
            # these microseconds; the width is a whole number made here from the policy.
            return sa.literal_column(
                f"coalesce(sum(incident_rows.{column}) OVER (ORDER BY incident_rows.t"
                f" RANGE BETWEEN {frame}), 0)",
                sa.BigInteger,
            ).label(label)

        window = f"{width} PRECEDING AND CURRENT ROW"
        r = rows.c
        counted = sa.select(
            r.id,
            r.at,
            r.is_bounce,
            r.pair_start_row,
            running("is_bounce", window, "bounces"),
            running("is_attempt", window, "attempts"),
            running("pair_end", "UNBOUNDED PRECEDING AND CURRENT ROW", "pairs_ended"),
            # Started before T - window: at T - window - 1 microsecond at the latest.
            running("pair_start_row", f"UNBOUNDED PRECEDING AND {width + 1} PRECEDING", "early"),
        ).subquery()
        c = counted.c
        addresses = c.bounces - (c.pairs_ended - c.early)
        return sa.select(c.id, c.at, addresses, c.bounces, c.attempts).where(
            c.pair_start_row == 0,
            c.is_bounce == 1,
            addresses >= h.incident_addresses,
            c.bounces >= c.attempts * h.incident_fraction,
        )

    def _time_number(self, at: Any) -> tuple[ColumnElement[int], int]:
        """A stored time as a whole number, for a window function's RANGE frame, and how many
        of its units make a second: microseconds since the epoch on every backend (SQLite's
        text keeps them all: "YYYY-MM-DD HH:MM:SS.ffffff", which its date functions would
        round to the millisecond)."""
        dialect = self.s.get_bind().dialect.name
        if dialect == "sqlite":
            seconds = sa.cast(sa.func.strftime("%s", sa.func.substr(at, 1, 19)), sa.BigInteger)
            micro = sa.cast(sa.func.substr(at, 21, 6), sa.BigInteger)
            return seconds * 1_000_000 + micro, 1_000_000
        if dialect == "postgresql":
            return sa.cast(sa.extract("epoch", at) * 1_000_000, sa.BigInteger), 1_000_000
        epoch = sa.literal("1970-01-01 00:00:00")
        return sa.func.timestampdiff(sa.text("MICROSECOND"), epoch, at), 1_000_000

    def _incident_candidates(
        self, suppressions: dict[int, _Suppress]
    ) -> list[tuple[int, str, datetime]]:
        """The bounces whose window could hold a domain incident (a superset): (id, domain, at).

        The bounces judged are the anchors, and their late anchors: the other bounces at the
        domain of a bounce anchor or of a bounce suppression's evidence (such a *point*), within
        `incident_window` either side of it. After it: a bounce recorded late falls into
        their windows (a burst recorded newest first is an incident only in the newest one's
        window, judged before the others were recorded). Before it: their incidents hold the
        point's suppression (within the window either side of a trigger), whichever trigger the
        open alert last saw, or whether it is open at all.

        The per-minute counts of each touched domain's `bounced` outcomes and attempts around the
        points are read from `minute_counts` (store/minutes.py); then, per bounce,
        the minutes overlapping its window give an upper bound on its bounces (every `bounced`
        outcome, partial minutes included) and the minutes wholly inside it a lower bound on its
        attempts. A bounce where even these bounds cannot make an incident is not one. This reads
        a few rows a minute, where counting the windows (`_incident_windows`) reads every event
        of its spans. The late anchors are read (one range
        of events (domain, at) per span of points) only around the points near a minute where
        such a bounce could be, which most runs have none of."""
        h = self.policy.hygiene
        window = h.incident_window
        anchors = [
            (anchor_id, domain, _loaded(self.s, at))
            for anchor_id, domain, at in self._exec(
                self._cached("bounce_anchors", self._bounce_anchors)
            )
        ]
        if not anchors:
            return []
        points = anchors
        if self.late_possible:
            points = anchors + [
                (sup.anchor_id, sup.domain, sup.at)
                for sup in suppressions.values()
                if sup.rule in BOUNCE_RULES
            ]
        counts = self._minute_counts(points)

        def could_be(domain: str, at: datetime) -> bool:
            found = counts.get(domain)
            if found is None:
                return False
            minutes, b, n = found
            first, last = minute_of(at - window), minute_of(at)
            i, j = bisect_left(minutes, first), bisect_right(minutes, last)
            bounces = b[j] - b[i]
            k, m = bisect_left(minutes, first + 1), bisect_right(minutes, last - 1)
            attempts = n[m] - n[k] if m > k else 0
            return bounces >= h.incident_addresses and bounces >= attempts * h.incident_fraction

        out = {anchor for anchor in anchors if could_be(anchor[1], anchor[2])}
        if self.late_possible:
            statement = self._cached("bounces_in_span", self._bounces_in_span)
            for domain, lo, hi in _spans_around(self._near_incidents(points, counts), window):
                for late_id, at in self.conn.execute(
                    statement, {"span_domain": domain, "span_lo": lo, "span_hi": hi}
                ):
                    at = _loaded(self.s, at)
                    if could_be(domain, at):
                        out.add((late_id, domain, at))
        return sorted(out)

    def _minute_counts(
        self, points: list[tuple[int, str, datetime]]
    ) -> dict[str, tuple[list[int], list[int], list[int]]]:
        """Per domain of `points`: the minutes (since the epoch) with events within twice the
        incident window before and once after a point, and the running sums of their `bounced`
        outcomes and attempts, from `minute_counts` (one read per run of points that close
        together)."""
        window = self.policy.hygiene.incident_window
        spans: list[tuple[datetime, datetime, set[str]]] = []
        for _, domain, at in sorted(points, key=lambda p: p[2]):
            lo, hi = at - 2 * window, at + window
            # Runs further apart than a minute never share one, so no minute is counted twice.
            if spans and lo <= spans[-1][1] + timedelta(minutes=2):
                spans[-1] = (spans[-1][0], max(hi, spans[-1][1]), spans[-1][2] | {domain})
            else:
                spans.append((lo, hi, {domain}))
        counts: dict[str, tuple[list[int], list[int], list[int]]] = {}
        for lo, hi, domains in spans:
            # A span of a large list's bounces can name more domains than one statement binds.
            # The rows come ordered by domain, then minute, so each domain's running sums are
            # made in one chunk.
            for part in _chunks(sorted(domains)):
                params = {"domains": list(part), "lo": minute_of(lo), "hi": minute_of(hi)}
                for domain, minute, bounced, attempts in self.conn.execute(MINUTES_BETWEEN, params):
                    minutes, b, n = counts.setdefault(domain, ([], [0], [0]))
                    minutes.append(int(minute))
                    b.append(b[-1] + int(bounced))
                    n.append(n[-1] + int(attempts))
        return counts

    def _near_incidents(
        self,
        points: list[tuple[int, str, datetime]],
        counts: dict[str, tuple[list[int], list[int], list[int]]],
    ) -> list[tuple[int, str, datetime]]:
        """The points within `incident_window` of a minute where a bounce could be an incident
        (by the bounds of `_incident_candidates`, for any time within that minute)."""
        h = self.policy.hygiene
        window = h.incident_window
        # The first minute the window of a time in minute m overlaps:
        # minute_of(start of m - window).
        back = ceil(window / timedelta(minutes=1))
        possible: dict[str, list[int]] = {}
        for domain, (minutes, b, n) in counts.items():
            found = []
            for index, minute in enumerate(minutes):
                if b[index + 1] == b[index]:
                    continue  # no bounce in this minute
                first = minute - back
                i, j = bisect_left(minutes, first), index + 1
                bounces = b[j] - b[i]
                # Wholly inside the window of every time in the minute.
                k, m = bisect_left(minutes, first + 2), index
                attempts = n[m] - n[k] if m > k else 0
                if bounces >= h.incident_addresses and bounces >= attempts * h.incident_fraction:
                    found.append(minute)
            if found:
                possible[domain] = found
        near = []
        for point in points:
            starts = possible.get(point[1], [])
            first, last = minute_of(point[2] - window), minute_of(point[2] + window)
            if bisect_right(starts, last) > bisect_left(starts, first):
                near.append(point)
        return near

    def _bounces_in_span(self) -> Select[Any]:
        """The bounces at one domain within a time span: (id, at), through events (domain, at).
        One range per span of points (`_spans_around`), not a join per point: a burst of
        thousands of bounces made that join grow with its square, and bound every point's id in
        one statement, beyond the database's limit on bound parameters."""
        x = _EVENTS.c
        return sa.select(x.id, x.at).where(
            x.domain == sa.bindparam("span_domain"),
            x.at >= sa.bindparam("span_lo", type_=UTCDateTime()),
            x.at <= sa.bindparam("span_hi", type_=UTCDateTime()),
            _is_bounce(x, self.policy),
        )

    def _bounce_anchors(self) -> Select[Any]:
        a = self.a
        return sa.select(a.id, a.domain, a.at).where(self.scope, _is_bounce(a, self.policy))

    # ---- destinations -------------------------------------------------------------------

    def _members(self) -> dict[str, list[str]]:
        """Every provider group's domains, the policy's and the learned ones (read once per
        evaluation, when a destination rule needs them)."""
        if self._group_members is None:
            self._group_members = members_of(self.conn, self.groups, self.policy)
        return self._group_members

    def _domains_of(self, destination: str) -> list[str]:
        """A destination's domains: a group's, or the domain itself."""
        return self._members()[destination] if destination in self.groups else [destination]

    def _count_in(self, statement: Any, destination: str, params: dict[str, Any]) -> int:
        """A count over a destination's domains, a few thousand domains per statement."""
        return sum(
            int(self.conn.execute(statement, {**params, "domains": list(part)}).scalar_one())
            for part in _chunks(self._domains_of(destination))
        )

    def _by_time_then_anchor(self, row: Any) -> tuple[datetime, int]:
        """Which of two qualifying blocks is the later: by time, then recording order."""
        return _loaded(self.s, row.at), row.anchor_id

    def _latest_in(self, statement: Any, destination: str, params: dict[str, Any]) -> Any:
        """The latest row (by time, then id) a statement finds over a destination's domains, a
        few thousand domains per statement; None when there is none."""
        rows = [
            row
            for part in _chunks(self._domains_of(destination))
            for row in self.conn.execute(statement, {**params, "domains": list(part)})
        ]
        return max(rows, key=lambda row: (_loaded(self.s, row.at), row.id), default=None)

    def _scope_of(self, target: str) -> ActionScope:
        return ActionScope.PROVIDER if target in self.groups else ActionScope.DOMAIN

    def _destinations(self) -> dict[str, _DestState]:
        states: dict[str, _DestState] = {}

        def state(target: str) -> _DestState:
            if target not in states:
                states[target] = _DestState(scope=self._scope_of(target), target=target)
            return states[target]

        # Push-backs: the latest one per destination sets the throttle; its step is the number of
        # push-backs within repeat_window before it.
        if self.census["pushback"]:
            latest = self._exec(self._cached("pushback_latest", self._pushback_latest)).all()
            for row in latest:
                judged_pushback, n, step = self._judged_pushback(row)
                st = state(row.dest)
                st.pushbacks, st.pushback = n, step
                st.pushback_at, st.pushback_id = judged_pushback.at, judged_pushback.id
                st.pushback_reason = Reason(judged_pushback.reason)

        # Blocks: an alert at sender scope per destination (latest block), and a throttle when
        # blocked_count blocks fall within blocked_window of one of them (latest such block).
        if not self.census["blocked"]:
            return states
        # One query: each destination's latest block, with the count and the first of them.
        blocks = self._exec(self._cached("blocks_latest", self._blocks_latest)).all()
        self.params["blocked_domains"] = sorted(
            row.dest for row in blocks if row.dest not in self.groups
        )
        self._bind_groups()
        for row in blocks:
            st = state(row.dest)
            st.alert_blocks = int(row.n)
            st.alert_ids = (int(row.min_id), int(row.max_id))
            st.alert_first = _loaded(self.s, row.first)
            st.alert_at = _loaded(self.s, row.at)
            st.alert_reason = Reason(row.reason)
            st.alert_text = (row.text or "")[:300]
            st.alert_sample = [row.anchor_id]
        # The latest qualifying block judged is most often the latest one: count the window of
        # those only (one per destination), and the window of every block judged only when some
        # destination's latest one falls short (the same rows either way). The blocks judged are
        # the anchors and their late anchors (`_late_at_destination`).
        judged = {row.dest: (_loaded(self.s, row.at), row.anchor_id) for row in blocks}
        if self.late_possible:
            self.params["latest_block_anchors"] = [row.anchor_id for row in blocks]
            late = self._cached("blocks_late_latest", lambda: self._late_blocks(latest=True))
            for dest, late_id, at in self._exec(late):
                judged[dest] = max(judged[dest], (_loaded(self.s, at), late_id))
        self.params["latest_blocks"] = [block_id for _, block_id in judged.values()]
        qualifying = self._exec(
            self._cached("blocks_throttle_latest", lambda: self._blocks_throttle(latest=True))
        ).all()
        if len(qualifying) < len(blocks):
            late_ids: list[int] = []
            if self.late_possible:
                late = self._cached("blocks_late", self._late_blocks)
                late_ids = sorted({late_id for _, late_id, _ in self._exec(late)})
            latest_found: dict[str, Any] = {}
            # The statement repeats the ids in each of its destination branches (one per
            # provider group, and the plain domains'): a chunk of them stays under the bound
            # parameter limit once repeated.
            size = max(1, _ID_CHUNK // (1 + len(self.groups)))
            for part in _chunks(late_ids, size) if late_ids else [[]]:
                self.params["late_blocks"] = list(part)
                statement = self._cached("blocks_throttle", self._blocks_throttle)
                for row in self._exec(statement):
                    old = latest_found.get(row.dest, row)
                    latest_found[row.dest] = max(old, row, key=self._by_time_then_anchor)
            qualifying = list(latest_found.values())
        for target, anchor_id, at, reason, n in qualifying:
            st = state(target)
            st.blocks_at, st.blocks_id = _loaded(self.s, at), anchor_id
            st.blocks_reason = Reason(reason)
            st.blocks_in_window = int(n)
        return states

    def _judged_pushback(self, anchor: Any) -> tuple[_Pushback, int, ThrottleStep]:
        """The push-back a destination's throttle follows, given its latest anchor: (its row,
        the push-backs in its window, the step). A throttle follows only the latest push-back,
        so of the late anchors (as `_late_at_destination` defines them) only the latest one
        counts, and only those of the latest anchor can be it: the latest push-back dated at or
        after that anchor within repeat_window of it, whose window an older push-back recorded
        late adds to. Then, while that one's pause outlasts now, the latest push-back within its
        pause: a newer one decides, as in `--full` (its window is beyond the anchors', so it
        counts as it counted when it was recorded). Through the push-back index, one
        destination at a time, as the count."""
        tp = self.policy.throttle
        found = _Pushback(
            anchor.anchor_id, _loaded(self.s, anchor.at), anchor.reason, anchor.pause_seconds
        )
        if self.late_possible:
            params = {"lo": found.at, "hi": found.at + tp.repeat_window}
            found = self._latest_pushback(anchor.dest, params) or found
        n, step = self._pushback_step(anchor.dest, found)
        if step.pause_until > self.now:
            params = {"lo": found.at, "hi": step.pause_until}
            newer = self._latest_pushback(anchor.dest, params)
            if newer is not None and (newer.at, newer.id) > (found.at, found.id):
                found = newer
                n, step = self._pushback_step(anchor.dest, found)
        return found, n, step

    def _latest_pushback(self, destination: str, params: dict[str, Any]) -> _Pushback | None:
        row = self._latest_in(_LATEST_PUSHBACK_BETWEEN, destination, params)
        return None if row is None else _Pushback(row.id, _loaded(self.s, row.at), *row[2:])

    def _pushback_step(self, destination: str, pushback: _Pushback) -> tuple[int, ThrottleStep]:
        """The push-backs within repeat_window up to `pushback` (one indexed count per
        destination: a join on the provider-group expression could not use the index), and
        the throttle step they make."""
        tp = self.policy.throttle
        at = pushback.at
        n = self._count_in(_PUSHBACKS_BETWEEN, destination, {"lo": at - tp.repeat_window, "hi": at})
        seconds = pushback.pause_seconds
        pause = None if seconds is None else timedelta(seconds=seconds)
        return n, pushback_step(at, n, pause, tp)

    def _bind_groups(self) -> None:
        """The groups' domains as bind parameters of the destination joins (learned ones change
        between runs; the statements are built once per policy), in the form `_in_list` reads.
        """
        members = self._members()
        lists = {f"group_{i}": members[name] for i, name in enumerate(sorted(self.groups))}
        lists["grouped"] = sorted({d for ds in members.values() for d in ds})
        dialect = self.s.get_bind().dialect.name
        for name, domains in lists.items():
            self.params[name] = json.dumps(domains) if dialect == "sqlite" else domains

    def _in_list(self, column: Any, name: str) -> ColumnElement[bool]:
        """`column` is one of the domains of the bind parameter `name` (`_bind_groups`).

        A group learns every domain seen behind its MX hosts: tens of thousands for a large
        list. As many bound parameters, two or three times in a statement, passed SQLite's
        limit of 32,766 (and would pass PostgreSQL's 65,535), so on those the list is one
        parameter: a JSON array read by `json_each` on SQLite
        (https://www.sqlite.org/json1.html#jeach), an array compared with `= ANY` on
        PostgreSQL, both of which still drive the (domain, at, ...) index one domain at a time
        (on SQLite because it may build no automatic index instead: `store.session`).
        MariaDB's driver writes the values into the statement's text, which has no such limit,
        and MariaDB range-scans an index only on constants (see `_between`)."""
        dialect = self.s.get_bind().dialect.name
        if dialect == "sqlite":
            listed = sa.select(sa.column("value", sa.String())).select_from(
                sa.func.json_each(sa.bindparam(name, type_=sa.String()))
            )
            return column.in_(listed)  # type: ignore[no-any-return]
        if dialect == "postgresql":
            return column == sa.any_(sa.bindparam(name, type_=ARRAY(sa.String())))  # type: ignore[no-any-return]
        return column.in_(sa.bindparam(name, expanding=True))  # type: ignore[no-any-return]

    def _pushback_latest(self) -> Select[Any]:
        return self._latest_per_destination(self.a.throttle.is_(True))

    def _blocks_latest(self) -> Select[Any]:
        return self._latest_per_destination(_is_blocked(self.a, self.policy))

    def _at_destination(
        self,
        columns: Callable[[ColumnElement[str], Any], list[Any]],
        conditions: Callable[[Any], list[ColumnElement[bool]]],
        domains: str,
    ) -> Select[Any]:
        """The anchors joined to the events `w` of their destination: `columns(dest, w)` where
        `conditions(w)`. One join per destination kind, each on a plain condition over
        `events.domain`, so the (domain, at, outcome, kind) index bounds it by the domain and the
        window: the anchor's own domain (`domains`: the bind parameter listing those, for
        MariaDB), or every domain of the anchor's provider group (the policy's domains and the
        learned ones: `_bind_groups`). A join on "same domain OR same group", or on the group
        expression, cannot use that index: SQLite then scanned a whole domain's history per
        anchor, or built an automatic index over the whole events table (at 2M events of
        history: 20 times slower than at 1M)."""
        a = self.a
        kinds: list[tuple[ColumnElement[str], ColumnElement[bool], str | None]] = [
            (a.domain, ~self._in_list(a.domain, "grouped"), None)
        ]
        for i, name in enumerate(sorted(self.groups)):
            members = f"group_{i}"
            kinds.append((sa.literal(name, sa.String()), self._in_list(a.domain, members), members))
        branches = []
        for dest, anchor_domains, group in kinds:
            wt = _EVENTS.alias()
            w = wt.c
            same_destination = (
                _same_domain(self.s, w, a, domains)
                if group is None
                else self._in_list(w.domain, group)
            )
            branches.append(
                sa.select(*columns(dest, w))
                .select_from(self.at)
                .join(wt, same_destination)
                .where(anchor_domains, *conditions(w))
            )
        return sa.union_all(*branches) if len(branches) > 1 else branches[0]  # type: ignore[return-value]

    def _late_at_destination(
        self,
        w: Any,
        predicate: Callable[..., ColumnElement[bool]],
        window: str,
        span: timedelta,
    ) -> list[ColumnElement[bool]]:
        """The conditions making `w` a late anchor of a destination rule: an event of the rule
        (`predicate`, given `windowed=True` for `w`) that is not itself an anchor (recorded
        before them, or in another part of the same evaluation), at an anchor's destination
        (the join of `_at_destination`), dated at or after that anchor and within the rule's
        window (`span`) of it. The destination rules' counterpart of `_judged`: those are the
        windows an event recorded late falls into, which must be judged again, or the
        incremental and nightly paths would never see what `--full` sees there (issue 4)."""
        a = self.a
        return [
            predicate(a),
            predicate(w, windowed=True),
            ~self.shape.covers(w),
            w.at >= a.at,
            w.at <= _shift(self.s, a.at, span),
            *_within_span(self.s, w, window),
            *_anchor_in_span(self.s, a),
        ]

    def _late_blocks(self, latest: bool = False) -> Select[Any]:
        """The late anchors of the repeated-blocks rule: (dest, id, at) (`latest`: of the
        anchors of the bind parameter `latest_block_anchors` only, else of every block anchor)."""
        a, tp = self.a, self.policy.throttle
        anchors = (
            a.id.in_(sa.bindparam("latest_block_anchors", expanding=True)) if latest else self.scope
        )
        return self._at_destination(
            lambda dest, w: [dest.label("dest"), w.id.label("id"), w.at.label("at")],
            lambda w: [
                anchors,
                *self._late_at_destination(
                    w, partial(_is_blocked, policy=self.policy), "blocked", tp.blocked_window
                ),
            ],
            "blocked_domains",
        )

    def _blocks_throttle(self, latest: bool = False) -> Select[Any]:
        """The latest block judged per destination with blocked_count blocks in its window
        (`latest`: among the blocks of the bind parameter `latest_blocks` only, else among the
        anchors and the late anchors of the bind parameter `late_blocks`)."""
        a, tp = self.a, self.policy.throttle
        judged = (
            a.id.in_(sa.bindparam("latest_blocks", expanding=True))
            if latest
            else sa.or_(self.scope, a.id.in_(sa.bindparam("late_blocks", expanding=True)))
        )
        pairs = self._at_destination(
            lambda dest, w: [
                dest.label("dest"),
                a.id.label("anchor_id"),
                a.at.label("at"),
                a.reason.label("reason"),
                w.id.label("block_id"),
            ],
            lambda w: [
                judged,
                _is_blocked(a, self.policy),
                _is_blocked(w, self.policy, windowed=True),
                w.at >= _shift(self.s, a.at, -tp.blocked_window),
                *_within_span(self.s, w, "blocked"),
                *_anchor_in_span(self.s, a, "blocked"),
                w.at <= a.at,
            ],
            "blocked_domains",
        ).subquery()
        n_blocks = sa.func.count(pairs.c.block_id)
        qualifying = (
            sa.select(
                pairs.c.dest,
                pairs.c.anchor_id,
                pairs.c.at,
                pairs.c.reason,
                n_blocks.label("n"),
            )
            .group_by(pairs.c.dest, pairs.c.anchor_id, pairs.c.at, pairs.c.reason)
            .having(n_blocks >= tp.blocked_count)
            .subquery()
        )
        ranked = sa.select(
            qualifying,
            sa.func.row_number()
            .over(
                partition_by=qualifying.c.dest,
                order_by=(qualifying.c.at.desc(), qualifying.c.anchor_id.desc()),
            )
            .label("rn"),
        ).subquery()
        return sa.select(
            ranked.c.dest, ranked.c.anchor_id, ranked.c.at, ranked.c.reason, ranked.c.n
        ).where(ranked.c.rn == 1)

    def _destination_anchors(self, predicate: ColumnElement[bool]) -> Any:
        """The anchors where `predicate`, with their destination (`dest`)."""
        a = self.a
        return (
            sa.select(
                _destination(a, self.policy).label("dest"),
                a.id.label("anchor_id"),
                a.at.label("at"),
                a.reason.label("reason"),
                a.pause_seconds.label("pause_seconds"),
                a.text.label("text"),
            )
            .where(self.scope, predicate)
            .subquery()
        )

    def _latest_per_destination(self, predicate: ColumnElement[bool]) -> Select[Any]:
        # The destination first, then the windows over it: a window partitioned by a
        # correlated subquery (the learned group) is not something every backend takes.
        c = self._destination_anchors(predicate).c
        inner = sa.select(
            c.dest,
            c.anchor_id,
            c.at,
            c.reason,
            c.pause_seconds,
            c.text,
            sa.func.row_number()
            .over(partition_by=c.dest, order_by=(c.at.desc(), c.anchor_id.desc()))
            .label("rn"),
            sa.func.count(c.anchor_id).over(partition_by=c.dest).label("n"),
            sa.func.min(c.at).over(partition_by=c.dest).label("first"),
            sa.func.min(c.anchor_id).over(partition_by=c.dest).label("min_id"),
            sa.func.max(c.anchor_id).over(partition_by=c.dest).label("max_id"),
        ).subquery()
        return sa.select(inner).where(inner.c.rn == 1)

    # ---- the whole evaluation -----------------------------------------------------------

    def _span(self) -> None:
        """The anchors' earliest and latest times, widened by each rule's window (bind
        parameters of `_within_span`, MariaDB only). One query by the anchors' id range unless
        the caller gave the times."""
        if not _mariadb(self.s):
            return
        if "span_lo" not in self.params:
            a = self.a
            lo, hi = self._exec(
                self._cached(
                    "span",
                    lambda: sa.select(sa.func.min(a.at), sa.func.max(a.at)).where(self.scope),
                )
            ).one()
            self.params["span_lo"], self.params["span_hi"] = (
                _loaded(self.s, lo),
                _loaded(self.s, hi),
            )
        h, tp = self.policy.hygiene, self.policy.throttle
        lo = self.params["span_lo"]
        windows = {
            "ambiguous": h.ambiguous_window,
            "soft": h.soft_window,
            "blocked": tp.blocked_window,
        }
        hi = self.params["span_hi"]
        for name, window in windows.items():
            self.params[f"span_lo_{name}"] = lo - window
            self.params[f"span_hi_{name}"] = hi + window

    def _census(self) -> dict[str, int]:
        """How many anchors of each evidence class: rules with none are skipped (one query)."""
        names = ("hard", "complaint", "ambiguous", "soft", "blocked", "pushback", "delivered")
        row = self._exec(self._cached("census", self._census_statement)).one()
        return {name: int(value or 0) for name, value in zip(names, row, strict=True)}

    def _census_statement(self) -> Select[Any]:
        a = self.a
        classes = {
            "hard": _is_hard(a),
            "complaint": sa.and_(a.outcome == Outcome.COMPLAINED, a.throttle.is_(False)),
            "ambiguous": _is_ambiguous(a, self.policy),
            "soft": _is_soft(a, self.policy),
            "blocked": _is_blocked(a, self.policy),
            "pushback": a.throttle.is_(True),
            "delivered": _is_delivered(a),
        }
        return sa.select(
            *[
                sa.func.coalesce(sa.func.sum(sa.case((pred, 1), else_=0)), 0).label(name)
                for name, pred in classes.items()
            ]
        ).where(self.scope)

    def run(self) -> list[ActionSummary]:
        if not self._census_given:
            self.census = self._census()
        if not any(self.census.values()):
            return []
        self._span()
        suppressions = self._address_decisions()
        triggers = self._incident_triggers(suppressions)
        destinations = self._destinations()
        existing_incidents = self._load_open(
            [
                open_key(ActionKind.ALERT, ActionScope.DOMAIN, d)
                for d in self._bounce_domains(suppressions, triggers)
            ]
        )
        self._apply_incidents(suppressions, triggers, existing_incidents)
        self._apply_suppressions(suppressions)
        self._apply_destinations(destinations)
        self._apply_releases()
        self._flush()
        return self.summaries

    def _flush(self) -> None:
        self.s.flush()
        self.summaries.extend(summary_of(action, new=new) for action, new in self._pending)
        self._pending.clear()

    def _new_row(self, **columns: Any) -> dict[str, Any]:
        """The columns of an action a rule raises: `columns` (kind, scope, target, status,
        reason, rule, detail, evidence, created_at, expires_at) and what every new one has."""
        return {
            **columns,
            "open_key": open_key(columns["kind"], columns["scope"], columns["target"]),
            "detail": columns["detail"][:2000],
            "updated_at": self.now,
            "created_by": BY_POLICY,
            "raised_count": 1,
        }

    def _insert_new(self, rows: list[dict[str, Any]]) -> None:
        """INSERT new actions with one Core executemany and read their ids back by open key.

        The ORM's unit of work (an object per action, its flush, RETURNING row by row) cost
        more than every rule query of a chunk together; a new action needs none of it."""
        if not rows:
            return
        self.s.flush()  # pending ORM changes first: a resolved action frees its open key
        self.conn.execute(_INSERT_ACTION, rows)
        by_key = {row["open_key"]: row for row in rows}
        for part in _chunks(list(by_key)):
            for action_id, key in self.conn.execute(_OPEN_IDS, {"keys": list(part)}):
                by_key[key]["id"] = action_id

    def _bounce_domains(
        self, suppressions: dict[int, _Suppress], triggers: dict[str, list[datetime]]
    ) -> set[str]:
        return {s.domain for s in suppressions.values() if s.rule in BOUNCE_RULES} | set(triggers)

    def _load_open(self, keys: Iterable[str]) -> dict[str, Action]:
        """The open or pending actions with these keys. A cheap Core lookup first: most keys
        (a delivery's destination, say) have no open action at all."""
        ids: list[int] = []
        for part in _chunks(list(keys)):
            ids += [i for i, _ in self.conn.execute(_OPEN_IDS, {"keys": list(part)})]
        found: dict[str, Action] = {}
        if len(ids) <= 3:
            # From the session's identity map when already loaded (a single record()).
            loaded = [self.s.get(Action, i) for i in ids]
        else:
            loaded = []
            for part in _chunks(ids):
                loaded += self.s.scalars(sa.select(Action).where(Action.id.in_(part))).all()
        for action in loaded:
            if action is not None and action.open_key is not None:
                found[action.open_key] = action
        return found

    def _apply_incidents(
        self,
        suppressions: dict[int, _Suppress],
        triggers: dict[str, list[datetime]],
        incidents: dict[str, Action],
    ) -> None:
        h = self.policy.hygiene
        window = h.incident_window
        # An incident a person confirmed or discarded is settled: its triggers do not count again.
        if triggers:
            settled = dict(
                self.s.execute(
                    sa.select(Action.target, sa.func.max(Action.resolved_at))
                    .where(
                        Action.kind == ActionKind.ALERT,
                        Action.scope == ActionScope.DOMAIN,
                        Action.rule == RULE_INCIDENT,
                        Action.status.in_((ActionStatus.RESOLVED, ActionStatus.DISCARDED)),
                        Action.target.in_(list(triggers)),
                    )
                    .group_by(Action.target)
                ).all()
            )
            for domain, resolved in settled.items():
                if resolved is None:
                    continue
                cutoff = _loaded(self.s, resolved)
                kept = [t for t in triggers[domain] if t > cutoff]
                if kept:
                    triggers[domain] = kept
                else:
                    del triggers[domain]
        all_triggers: dict[str, list[datetime]] = defaultdict(list)
        for key, open_alert in incidents.items():
            stored = open_alert.evidence.get("last_trigger_at")
            if stored:
                all_triggers[key.split(":", 2)[2]].append(datetime.fromisoformat(stored))
        for domain, times in triggers.items():
            all_triggers[domain].extend(times)
        # Bounce suppressions near a trigger (within the window either side) are held.
        for sup in suppressions.values():
            if sup.rule in BOUNCE_RULES and any(
                abs(sup.at - t) <= window for t in all_triggers.get(sup.domain, ())
            ):
                sup.held = True
        for domain, times in triggers.items():
            first, last = min(times), max(times)
            n_addr, n_bounces, n_attempts = self.incident_counts[domain]
            key = open_key(ActionKind.ALERT, ActionScope.DOMAIN, domain)
            alert = incidents.get(key)
            evidence = {
                "first_trigger_at": first.isoformat(),
                "last_trigger_at": last.isoformat(),
                "addresses": n_addr,
                "bounces": n_bounces,
                "attempts": n_attempts,
                "incident_addresses": h.incident_addresses,
                "incident_fraction": h.incident_fraction,
                "incident_window_s": window.total_seconds(),
            }
            detail = (
                f"{n_addr} addresses bounced at {domain}: {n_bounces} of {n_attempts} attempts "
                f"within {format_duration(window)}; their suppressions are held: confirm or"
                " discard them"
            )
            if alert is not None:
                old_first = alert.evidence.get("first_trigger_at")
                if old_first:
                    evidence["first_trigger_at"] = min(
                        datetime.fromisoformat(old_first), first
                    ).isoformat()
                prev_last = alert.evidence.get("last_trigger_at")
                if prev_last and datetime.fromisoformat(prev_last) > last:
                    evidence["last_trigger_at"] = prev_last
            last_all = datetime.fromisoformat(str(evidence["last_trigger_at"]))
            columns: dict[str, Any] = {
                "kind": ActionKind.ALERT,
                "scope": ActionScope.DOMAIN,
                "target": domain,
                "reason": Reason.SYSTEM_ERROR,
                "rule": RULE_INCIDENT,
                "detail": detail,
                "evidence": evidence,
                "created_at": first,
                "expires_at": last_all + h.alert_lifetime,
            }
            raised = self._upsert(existing=alert, status=ActionStatus.OPEN, **columns)
            if raised is None:
                # Its alert's time was up when it was judged (`--full` long after the burst, a
                # burst recorded late): still raised, as expired, since its suppressions are
                # held and only settling its alert applies or drops them (`list_actions`).
                raised = self._expired_incident(columns, last_all)
            if raised is not None and raised.created_by == BY_POLICY and first < raised.created_at:
                # A trigger before the incident began: a bounce recorded late completed an
                # earlier window (`_incident_candidates`). It is re-dated, as `--full` raises it
                # at its first trigger, whatever order the bounces were recorded in.
                raised.created_at = first
            # Suppressions this incident's triggers cover that are already open: hold them.
            self._hold_open_suppressions(domain, times, window)

    def _expired_incident(self, columns: dict[str, Any], last: datetime) -> Action | None:
        """The incident alert of `columns` (as `_upsert` takes them, but the status) for
        triggers up to `last`, whose time is up: recorded as the sweep (`expire_actions`) leaves
        one, or None when an unsettled one at the domain already covers them: re-evaluating
        raises nothing new."""
        latest = self.s.scalars(
            sa.select(Action)
            .where(
                Action.kind == ActionKind.ALERT,
                Action.scope == ActionScope.DOMAIN,
                Action.target == columns["target"],
                Action.rule == RULE_INCIDENT,
                Action.status == ActionStatus.EXPIRED,
            )
            .order_by(Action.id.desc())
            .limit(1)
        ).first()
        covered = latest.evidence.get("last_trigger_at") if latest is not None else None
        if covered and datetime.fromisoformat(covered) >= last:
            return None
        action = Action(
            **{
                **self._new_row(status=ActionStatus.EXPIRED, **columns),
                "open_key": None,
                "resolved_at": columns["expires_at"],
                "resolved_by": BY_POLICY,
            }
        )
        self.s.add(action)
        self.raised += 1
        self._pending.append((action, True))
        return action

    def _hold_open_suppressions(
        self, domain: str, times: list[datetime], window: timedelta
    ) -> None:
        lo, hi = min(times) - window, max(times) + window
        rows = self.s.scalars(
            sa.select(Action)
            .join(Recipient, Recipient.address_key == Action.target)
            .where(
                Action.kind == ActionKind.SUPPRESS,
                Action.scope == ActionScope.ADDRESS,
                Action.status == ActionStatus.OPEN,
                Action.rule.in_(BOUNCE_RULES),
                Recipient.domain == domain,
                Action.created_at >= _at(lo),
                Action.created_at <= _at(hi),
            )
        ).all()
        held_ids = []
        for action in rows:
            if any(abs(action.created_at - t) <= window for t in times):
                action.status = ActionStatus.PENDING
                action.updated_at = self.now
                held_ids.append(action.id)
                self.summaries.append(summary_of(action, new=False))
        if held_ids:
            for recipient in self.s.scalars(
                sa.select(Recipient).where(Recipient.suppression_action_id.in_(held_ids))
            ):
                recipient.standing = Standing.BOUNCED
                recipient.suppressed_until = None
                recipient.suppression_action_id = None

    def _apply_suppressions(self, suppressions: dict[int, _Suppress]) -> None:
        """Raise or refresh each address's suppression and set its recipient's standing.

        With Core statements: a chunk raises or refreshes hundreds of suppressions, and the
        ORM's unit of work (an object per action loaded, changed and flushed) cost more than
        every rule query of the chunk together. Only an action that has run out goes through
        the ORM (`_resolve`), as everywhere else."""
        if not suppressions:
            return
        h = self.policy.hygiene
        keys = {
            open_key(ActionKind.SUPPRESS, ActionScope.ADDRESS, s.address_key): s
            for s in suppressions.values()
        }
        self.s.flush()  # the rows read below are then current
        existing: dict[str, dict[str, Any]] = {}
        for part in _chunks(list(keys)):
            for loaded in self.conn.execute(_OPEN_SUPPRESSIONS, {"keys": list(part)}):
                existing[loaded.open_key] = loaded._asdict()
        #: recipient id -> the action (row) whose suppression it now stands under.
        standing_updates: dict[int, dict[str, Any]] = {}
        new_rows: list[dict[str, Any]] = []
        refreshed: list[dict[str, Any]] = []
        for key, sup in keys.items():
            status = ActionStatus.PENDING if sup.held else ActionStatus.OPEN
            found = existing.get(key)
            ran_out = found["expires_at"] if found is not None else None
            if found is not None and ran_out is not None and ran_out <= sup.at:
                # Its expiry passed before this evidence: close it and raise a new one, as the
                # nightly sweep would have.
                action = self.s.get(Action, found["id"])
                assert action is not None  # read just above, in this transaction
                _resolve(action, ActionStatus.EXPIRED, BY_POLICY, ran_out, "expired")
                self.s.flush()
                found = None
            detail = _suppress_detail(sup, self.policy)[:2000]
            evidence = dict(sup.evidence, rule=sup.rule, at=sup.at.isoformat())
            if found is None:
                reason, rule, expires = _lasting(sup, h)
                if expires is not None and expires <= self.now:
                    continue  # as `_upsert`: an action already over is not raised
                row = self._new_row(
                    kind=ActionKind.SUPPRESS,
                    scope=ActionScope.ADDRESS,
                    target=sup.address_key,
                    status=status,
                    reason=reason,
                    rule=rule,
                    detail=detail,
                    evidence=evidence,
                    created_at=sup.at,
                    expires_at=expires,
                )
                new_rows.append(row)
                self.raised += 1
                self._pending.append((row, True))
            else:
                # Refreshed as `_upsert` refreshes a suppression: its reason, rule and expiry
                # stay; a suppression in force is never held after the fact.
                row = found
                row.update(
                    raised_count=row["raised_count"] + 1,
                    updated_at=self.now,
                    detail=detail,
                    evidence=evidence,
                )
                if sup.at < row["created_at"] and row["created_by"] == BY_POLICY:
                    # Evidence dated before the suppression: an event recorded late completed
                    # an earlier window (`_judged`). The suppression is re-dated to it, as
                    # `--full` raises it at the first evidence of the history, whatever order
                    # it was recorded in, so all paths agree on when and why it began. (One a
                    # person raised by hand keeps their reason and time.)
                    row.update(
                        reason=sup.reason,
                        rule=sup.rule,
                        created_at=sup.at,
                        expires_at=suppression_expires(sup.reason, sup.at, h),
                    )
                reason, rule, ends = _lasting(sup, h)
                if ends is None and row["expires_at"] is not None:
                    # Evidence of a reason with no expiry (a complaint while suppressed for a
                    # full mailbox, say) while this one is in force: it lasts, and says why.
                    # Else the suppression ran out at its old end and that evidence, dated
                    # before it, was spent: a person who complained got mail again.
                    row.update(reason=reason, rule=rule, expires_at=None)
                if row["status"] is ActionStatus.PENDING and status is ActionStatus.OPEN:
                    row["status"] = ActionStatus.OPEN
                refreshed.append(row)
                self.refreshed += 1
                self._pending.append((row, False))
            if row["status"] is ActionStatus.OPEN:
                standing_updates[sup.recipient_id] = row
        self._insert_new(new_rows)
        if refreshed:
            self.conn.execute(_REFRESH_SUPPRESSION, [_refresh_params(r) for r in refreshed])
        self._flush()
        if refreshed or standing_updates:
            # Objects this session already holds would otherwise keep what they were.
            ids = {r["id"] for r in refreshed}
            for obj in list(self.s.identity_map.values()):
                if (isinstance(obj, Action) and obj.id in ids) or (
                    isinstance(obj, Recipient) and obj.id in standing_updates
                ):
                    self.s.expire(obj)
        if not standing_updates:
            return
        to_db = time_writer(self.conn.dialect)
        suppressed = Standing.SUPPRESSED._value_
        rows = [
            (
                suppressed,
                action["reason"]._value_,
                to_db(action["created_at"]),
                to_db(action["expires_at"]),
                action["id"],
                rid,
            )
            for rid, action in standing_updates.items()
        ]
        _bulk(self.conn).update_rows(self.conn, _RECIPIENTS, _STANDING_COLUMNS, rows)

    def _alert_total(self, st: _DestState, alert: Action | None) -> tuple[int, int]:
        """A sender alert's count of blocks after this evaluation, and the id of the last block
        it has counted. Every block is judged when it is recorded and again by the nightly run
        and each `--full`: only blocks recorded after the last one counted (by id, the order of
        recording) are added, so the count is of blocks, not of evaluations. (With several
        writers on a server database, a block can commit after a later id was counted: it is
        then not added; the alert itself is raised either way.)"""
        low, high = st.alert_ids
        if alert is None:
            return st.alert_blocks, high
        counted = int(alert.evidence.get("blocks", 0))
        through = alert.evidence.get("through_id")
        if through is None or low > int(through):
            # All judged blocks are new (or the alert predates the mark: as before).
            return counted + st.alert_blocks, max(high, int(through or 0))
        if high <= int(through):
            return counted, int(through)
        newer = self.conn.execute(
            self._cached("blocks_after", self._blocks_after),
            {**self.params, "dest": st.target, "after_id": int(through)},
        ).scalar_one()
        return counted + int(newer), high

    def _blocks_after(self) -> Select[Any]:
        """How many of the blocks judged at one destination were recorded after a given id."""
        anchors = self._destination_anchors(_is_blocked(self.a, self.policy))
        return sa.select(sa.func.count()).where(
            anchors.c.dest == sa.bindparam("dest"),
            anchors.c.anchor_id > sa.bindparam("after_id"),
        )

    def _apply_destinations(self, states: dict[str, _DestState]) -> None:
        if not states:
            return
        h, tp = self.policy.hygiene, self.policy.throttle
        throttle_keys = {
            open_key(ActionKind.THROTTLE, st.scope, st.target): st for st in states.values()
        }
        alert_keys = {
            open_key(ActionKind.ALERT, ActionScope.SENDER, st.target): st
            for st in states.values()
            if st.alert_at is not None
        }
        existing = self._load_open([*throttle_keys, *alert_keys])
        for key, st in alert_keys.items():
            assert st.alert_at is not None
            alert = existing.get(key)
            total, through = self._alert_total(st, alert)
            last = {
                "last_event_id": st.alert_sample[0] if st.alert_sample else None,
                "last_at": st.alert_at.isoformat(),
                "last_text": st.alert_text,
            }
            reason = st.alert_reason
            if alert is not None and _newer(alert.evidence, last, "last_at", "last_event_id"):
                # Blocks recorded late, older than the alert's last one, add to its count and
                # move nothing back: it runs from the latest block, as `--full` raises it.
                last = {name: alert.evidence.get(name) for name in last}
                reason = alert.reason
            last_at = datetime.fromisoformat(str(last["last_at"]))
            self._upsert(
                existing=alert,
                kind=ActionKind.ALERT,
                scope=ActionScope.SENDER,
                target=st.target,
                status=ActionStatus.OPEN,
                reason=reason,
                rule=RULE_BLOCKED,
                detail=f"{st.target} refused the sender ({reason.value}): "
                f"{total} block(s); no address was penalised. Last reply: {last['last_text']}",
                evidence={"blocks": total, "through_id": through, **last},
                created_at=st.alert_first or st.alert_at,
                expires_at=last_at + h.alert_lifetime,
            )
        for key, st in throttle_keys.items():
            throttle = existing.get(key)
            evidence: dict[str, Any] = dict(throttle.evidence) if throttle is not None else {}
            # Each part follows the latest event judged for it (by time, then recording): one
            # recorded late and judged now is older than the part may already be.
            if st.pushback is not None and st.pushback_at is not None:
                _keep_latest(
                    evidence,
                    "pushback",
                    {
                        "at": st.pushback_at.isoformat(),
                        "event_id": st.pushback_id,
                        "in_window": st.pushbacks,
                        "until": st.pushback.pause_until.isoformat(),
                        "max_rate": st.pushback.max_rate,
                        "step": st.pushback.step,
                        "reason": st.pushback_reason.value,
                    },
                )
            if st.blocks_at is not None:
                first = pushback_step(st.blocks_at, 1, None, tp)
                _keep_latest(
                    evidence,
                    "blocks",
                    {
                        "at": st.blocks_at.isoformat(),
                        "event_id": st.blocks_id,
                        "in_window": st.blocks_in_window,
                        "until": first.pause_until.isoformat(),
                        "max_rate": first.max_rate,
                        "step": 0,
                        "reason": st.blocks_reason.value,
                    },
                )
            if st.pushback is None and st.blocks_at is None:
                continue
            parts = [evidence[k] for k in ("pushback", "blocks") if k in evidence]
            trigger = max(datetime.fromisoformat(p["at"]) for p in parts)
            # A component whose pause ended before the newest trigger no longer counts.
            parts = [p for p in parts if datetime.fromisoformat(p["until"]) > trigger]
            lead = max(parts, key=lambda p: p["until"])
            evidence["last_trigger_at"] = trigger.isoformat()
            until = datetime.fromisoformat(lead["until"])
            rule = RULE_PUSHBACK if lead is evidence.get("pushback") else RULE_BLOCKED_THROTTLE
            reason = Reason(lead["reason"])
            rate = min(float(p["max_rate"]) for p in parts)
            self.throttled.add(st.target)
            self._upsert(
                existing=throttle,
                kind=ActionKind.THROTTLE,
                scope=st.scope,
                target=st.target,
                status=ActionStatus.OPEN,
                reason=reason,
                rule=rule,
                detail=f"pause {st.target} until {until.isoformat()}, then at most "
                f"{rate:g} messages per minute ({reason.value}, step {lead['step']})",
                evidence=evidence,
                created_at=trigger,
                expires_at=until,
                extra={
                    "pause_until": until,
                    "max_rate": rate,
                    "step": int(lead["step"]),
                    "deliveries_since": 0,
                },
            )

    def _apply_releases(self) -> None:
        """Throttles of destinations that took deliveries in this evaluation, or that this
        evaluation throttled: count the deliveries since the throttle's last trigger (a push-back
        or a block, `last_trigger_at`) and lift the throttle at the policy's number. A throttle
        raised now may follow a push-back recorded after the deliveries that lift it (or, in
        `--full`, before them): it lifts at once."""
        a, tp = self.a, self.policy.throttle
        delivered: list[str] = []
        if self.census["delivered"]:
            if self.delivered_domains is not None:
                delivered = sorted(self.delivered_domains)
            else:

                def build() -> Any:
                    dest = _destination(a, self.policy)
                    return sa.select(dest).where(self.scope, _is_delivered(a)).distinct()

                delivered = [d for (d,) in self._exec(self._cached("delivered", build))]
        if not delivered and not self.throttled:
            return
        if self.throttled:
            self._flush()  # the throttles just raised, for the Core reads below

        def key(target: str) -> str:
            return open_key(ActionKind.THROTTLE, self._scope_of(target), target)

        # The engine's delivered domains may belong to a provider group: their own throttles
        # and every group's are read first. Most deliveries go to destinations with no open
        # throttle, and this one read finds none before their groups are asked for (a statement
        # more on every record()). Core rows first: the ORM object is loaded only for a throttle
        # that lifts.
        wanted = {key(d) for d in (*delivered, *self.throttled)}
        if self.delivered_domains is not None and delivered:
            wanted.update(key(group) for group in self.groups)
        candidates = [
            row
            for part in _chunks(sorted(wanted))
            for row in self.conn.execute(_OPEN_THROTTLES, {"keys": list(part)})
        ]
        if not candidates:
            return
        destinations = set(self.throttled)
        if self.delivered_domains is not None:
            groups = groups_of(self.conn, delivered, self.policy)
            destinations.update(groups.get(d, d) for d in delivered)
        else:
            destinations.update(delivered)
        keys = {key(d) for d in destinations}
        found = [(i, target, evidence) for i, target, evidence, k in candidates if k in keys]
        for action_id, target, evidence in sorted(found, key=lambda row: row[0]):
            since = (evidence or {}).get("last_trigger_at")
            if not since:
                continue
            params = {"since": datetime.fromisoformat(since), "now": self.now}
            n = self._count_in(_DELIVERIES_SINCE, target, params)
            action = self.s.get(Action, action_id) if throttle_released(n, tp) else None
            if action is not None:
                # Written only here: updating it on every delivery would cost a write each.
                action.deliveries_since = n
                self._close(action, ActionStatus.RESOLVED, BY_POLICY)
                release = Action(
                    kind=ActionKind.RELEASE,
                    scope=action.scope,
                    target=action.target,
                    status=ActionStatus.RESOLVED,
                    open_key=None,
                    reason=Reason.DELIVERED,
                    rule=RULE_RELEASE,
                    detail=f"{n} deliveries since the last {_last_trigger(evidence)} lifted"
                    f" throttle #{action.id}",
                    evidence={"throttle_id": action.id, "deliveries": int(n)},
                    created_at=self.now,
                    updated_at=self.now,
                    resolved_at=self.now,
                    created_by=BY_POLICY,
                    resolved_by=BY_POLICY,
                )
                self.s.add(release)
                self.s.flush()
                self.summaries.append(summary_of(action, new=False))
                self.summaries.append(summary_of(release))

    def _close(self, action: Action, status: ActionStatus, by: str) -> None:
        action.status = status
        action.open_key = None
        action.resolved_at = self.now
        action.resolved_by = by
        action.updated_at = self.now

    def _upsert(
        self,
        *,
        existing: Action | None,
        kind: ActionKind,
        scope: ActionScope,
        target: str,
        status: ActionStatus,
        reason: Reason,
        rule: str,
        detail: str,
        evidence: dict[str, Any],
        created_at: datetime,
        expires_at: datetime | None,
        extra: dict[str, Any] | None = None,
    ) -> Action | None:
        """Raise an action, or refresh the open one with the same key (never a duplicate).

        An action whose time would already be up is not raised (a full re-evaluation of old
        history must not resurrect dead throttles); an existing one is still refreshed.
        """
        if (
            existing is not None
            and existing.expires_at is not None
            and existing.expires_at <= created_at
        ):
            # It ran out before this evidence: close it and raise a new one, as the nightly
            # sweep would have (so both paths agree).
            _resolve(existing, ActionStatus.EXPIRED, BY_POLICY, existing.expires_at, "expired")
            self.s.flush()
            existing = None
        if existing is None and expires_at is not None and expires_at <= self.now:
            return None
        if existing is not None:
            existing.raised_count += 1
            existing.updated_at = self.now
            existing.detail = detail[:2000]
            existing.evidence = evidence
            if kind is not ActionKind.SUPPRESS:
                existing.reason = reason
                existing.rule = rule
                existing.expires_at = expires_at
            if existing.status is ActionStatus.PENDING and status is ActionStatus.OPEN:
                existing.status = status
            for name, value in (extra or {}).items():
                setattr(existing, name, value)
            self.refreshed += 1
            self._pending.append((existing, False))
            return existing
        action = Action(
            **self._new_row(
                kind=kind,
                scope=scope,
                target=target,
                status=status,
                reason=reason,
                rule=rule,
                detail=detail,
                evidence=evidence,
                created_at=created_at,
                expires_at=expires_at,
            ),
            **(extra or {}),
        )
        self.s.add(action)
        self.raised += 1
        self._pending.append((action, True))
        return action


def _newer(
    old: dict[str, Any], new: dict[str, Any], at: str = "at", event_id: str = "event_id"
) -> bool:
    """Whether the event `old` names (its time and id under those keys) is later than the one
    `new` names: by time, then by recording order (an evidence without an id is the older)."""

    def position(part: dict[str, Any]) -> tuple[datetime, int]:
        return datetime.fromisoformat(str(part[at])), int(part.get(event_id) or -1)

    return at in old and position(old) > position(new)


def _last_trigger(evidence: dict[str, Any]) -> str:
    """What a throttle's last trigger was (the part dated `last_trigger_at`): a push-back, a
    block (repeated blocks), or both at once."""
    since = evidence.get("last_trigger_at")
    names = [
        name
        for part, name in (("pushback", "push-back"), ("blocks", "block"))
        if isinstance(evidence.get(part), dict) and evidence[part].get("at") == since
    ]
    return " and ".join(names) or "trigger"


def _keep_latest(evidence: dict[str, Any], name: str, part: dict[str, Any]) -> None:
    """Set a throttle's part from an event judged now, unless it already follows a later one."""
    if name not in evidence or not _newer(evidence[name], part):
        evidence[name] = part


def _suppress_detail(sup: _Suppress, policy: Policy) -> str:
    h = policy.hygiene
    if sup.rule == RULE_HARD:
        text = f"hard bounce with decisive evidence ({sup.reason.value})"
    elif sup.rule == RULE_COMPLAINT:
        text = "feedback-loop complaint"
    elif sup.rule == RULE_AMBIGUOUS:
        text = (
            f"{sup.evidence['count']} distinct messages bounced ({sup.reason.value}) within "
            f"{format_duration(h.ambiguous_window)}"
        )
    else:
        text = (
            f"{sup.evidence['count']} soft strikes ({sup.reason.value}) on distinct days within "
            f"{format_duration(h.soft_window)}, spanning at least {format_duration(h.soft_span)},"
            " with no delivery between"
        )
    if sup.held:
        text += f"; held: domain incident at {sup.domain}"
    return text


def _lasting(sup: _Suppress, policy: HygienePolicy) -> tuple[Reason, str, datetime | None]:
    """The reason, rule and end of the suppression a decision raises or refreshes: its own,
    or, when evidence of a reason with no expiry came while it was in force (`lasting`),
    that evidence's, with no end."""
    holder = sup.lasting or sup
    return holder.reason, holder.rule, suppression_expires(holder.reason, holder.at, policy)


def _spans_around(
    points: Iterable[tuple[int, str, datetime]], window: timedelta
) -> list[tuple[str, datetime, datetime]]:
    """(domain, from, to): the times within `window` either side of the points, per domain, as
    few disjoint spans. A millisecond wider at each end than the window, as SQLite's window
    arithmetic rounds to the millisecond: what is read is a superset, judged bounce by bounce."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for _, domain, at in points:
        times[domain].append(at)
    reach = window + timedelta(milliseconds=1)
    spans: list[tuple[str, datetime, datetime]] = []
    for domain in sorted(times):
        ordered = sorted(times[domain])
        lo, hi = ordered[0] - reach, ordered[0] + reach
        for at in ordered[1:]:
            if at - reach > hi:
                spans.append((domain, lo, hi))
                lo = at - reach
            hi = at + reach
        spans.append((domain, lo, hi))
    return spans


def _chunks(items: Sequence[Any], size: int = _ID_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _refresh_params(row: dict[str, Any]) -> dict[str, Any]:
    """The parameters of `_REFRESH_SUPPRESSION` for a refreshed action's row."""
    return {"action_id": row["id"], **{name: row[name] for name in _REFRESHED}}


def summary_of(action: Action | dict[str, Any], *, new: bool = True) -> ActionSummary:
    """The summary of an action: an ORM object, or a row written with Core statements (a
    dict of column values; a column it lacks, such as a new suppression's pause, is None)."""
    get: Callable[[str], Any] = action.get if isinstance(action, dict) else partial(getattr, action)
    values: dict[str, Any] = {name: get(name) for name in _SUMMARY_FIELDS}
    return ActionSummary(**values, new=new)


# --------------------------------------------------------------------------------------------
# Public entry points.
# --------------------------------------------------------------------------------------------


def on_events(
    session: Session, events: Sequence[_HasEventId], policy: Policy, now: datetime
) -> list[ActionSummary]:
    """Apply the hygiene rules to events just recorded (and flushed) in `session`.

    Set-based per chunk: one query per rule over the chunk's recipients and destinations.
    Returns the actions raised, refreshed, held or lifted, for the sender's Decision.
    """
    ordered = sorted({e.event_id: e for e in events}.items())
    out: list[ActionSummary] = []
    for part in _chunks(ordered):
        chunk = [e for _, e in part]
        census = _census_of(chunk, policy)
        ids = [i for i, _ in part]
        delivered = _delivered_domains(chunk) if census is not None else None
        mode, params = _anchor_scope(ids)
        times: list[datetime] = [t for t in (getattr(e, "at", None) for e in chunk) if t]
        if len(times) == len(chunk):
            params["span_lo"], params["span_hi"] = min(times), max(times)
        out += _Evaluator(session, policy, now, mode, params, census, delivered).run()
    return out


def _anchor_scope(ids: list[int]) -> tuple[str, dict[str, Any]]:
    """The anchors as bind parameters: an id range when the (sorted, distinct) ids are
    contiguous, as one chunk's rows written by one executemany usually are, else the id list.

    A range is two parameters the planner reads as a rowid range; a list of a thousand ids is
    expanded into every statement that uses it, which cost more than running the statement."""
    if ids[-1] - ids[0] + 1 == len(ids):
        return "range", {"anchor_lo": ids[0] - 1, "anchor_hi": ids[-1]}
    return "ids", {"anchor_ids": ids}


def _delivered_domains(events: Sequence[Any]) -> set[str] | None:
    """The domains the events delivered to, when they carry their domain."""
    domains: set[str] = set()
    for event in events:
        domain = getattr(event, "domain", None)
        if domain is None:
            return None
        if event.verdict.outcome is Outcome.DELIVERED and not event.verdict.throttle:
            domains.add(domain)
    return domains


_CENSUS_NAMES = {
    Evidence.HARD: "hard",
    Evidence.COMPLAINT: "complaint",
    Evidence.AMBIGUOUS: "ambiguous",
    Evidence.SOFT: "soft",
    Evidence.BLOCKED: "blocked",
    Evidence.PUSHBACK: "pushback",
    Evidence.DELIVERED: "delivered",
}


def _census_of(events: Sequence[Any], policy: Policy) -> dict[str, int] | None:
    """The evidence classes of events that carry their verdict (the engine's RecordedEvent),
    counted without a query; None when some do not (the evaluator then asks the database)."""
    # Counted per distinct verdict, then classified once each: a chunk holds a thousand events
    # but only a handful of distinct verdicts.
    verdicts: dict[Any, int] = defaultdict(int)
    for event in events:
        verdict = getattr(event, "verdict", None)
        if verdict is None:
            return None
        verdicts[
            verdict.outcome,
            verdict.reason,
            verdict.decisive,
            verdict.throttle,
            verdict.fault,
            getattr(event, "restated", False),
        ] += 1
    census = dict.fromkeys(_CENSUS_NAMES.values(), 0)
    for (outcome, reason, decisive, throttle, fault, restated), n in verdicts.items():
        evidence = evidence_of(
            outcome,
            reason,
            decisive=decisive,
            throttle=throttle,
            policy=policy.hygiene,
            fault=fault,
            restated=restated,
        )
        name = _CENSUS_NAMES.get(evidence)
        if name is not None:
            census[name] += n
    return census


def evaluate(
    session: Session, policy: Policy, now: datetime, *, full: bool = False
) -> EvaluationResult:
    """The nightly evaluation: apply every rule to the events recorded since the last run (all
    of them with `full`, for when the policy changed), then expire what ran out by `now`.

    Re-evaluating raises nothing new: open actions are refreshed, spent evidence is skipped.
    """
    mark = session.get(Bookmark, BOOKMARK)
    start = 0 if full or mark is None else int(mark.value)
    top = session.execute(sa.select(sa.func.max(Event.id))).scalar_one_or_none() or 0
    if top <= start:
        return EvaluationResult(start + 1, start, 0, 0, expire_actions(session, now))
    evaluator = _Evaluator(session, policy, now, "range", {"anchor_lo": start, "anchor_hi": top})
    summaries = evaluator.run()
    if mark is None:
        session.add(Bookmark(name=BOOKMARK, value=str(top), updated_at=now))
    else:
        mark.value = str(max(top, int(mark.value)))
        mark.updated_at = now
    session.flush()
    # Expire last: an action still open when a new event refreshes it keeps what it knew (the
    # incremental path does the same), so both paths end with the same actions in force.
    expired = expire_actions(session, now)
    return EvaluationResult(
        first_event_id=start + 1,
        last_event_id=top,
        raised=evaluator.raised,
        refreshed=evaluator.refreshed,
        expired=expired,
        actions=summaries,
    )


def expire_actions(session: Session, now: datetime) -> int:
    """Close the open actions whose time is up (alerts, throttles, suppressions with an expiry).

    Nothing depends on this running: every check compares `expires_at`/`pause_until` with now.
    """
    result = session.execute(
        sa.update(Action)
        .where(
            Action.status == ActionStatus.OPEN,
            Action.expires_at.is_not(None),
            Action.expires_at <= _at(now),
        )
        .values(
            status=ActionStatus.EXPIRED,
            open_key=None,
            resolved_at=Action.expires_at,
            resolved_by=BY_POLICY,
            updated_at=_at(now),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def throttle_for(
    session: Session, domain: str, now: datetime, *, policy: Policy | None = None
) -> Throttle | None:
    """The throttle in force for a recipient domain now, or None: its own, or its provider
    group's when the policy maps it or it was learned into one, whichever pause ends later (as
    `paused_until` holds the domain back until then: a throttle of the domain raised before it
    joined a group stands until it ends). An expired pause stops applying without any job
    running."""
    keys = [open_key(ActionKind.THROTTLE, ActionScope.DOMAIN, domain)]
    if policy:
        scope, target = _destination_of(session.connection(), domain, policy)
        if scope is ActionScope.PROVIDER:
            keys.append(open_key(ActionKind.THROTTLE, scope, target))
    action = session.scalars(
        sa.select(Action)
        .where(
            Action.open_key.in_(keys),
            Action.status == ActionStatus.OPEN,
            Action.pause_until > _at(now),
        )
        .order_by(Action.pause_until.desc())
        .limit(1)
    ).first()
    if action is None or action.pause_until is None:
        return None
    return Throttle(
        destination=action.target,
        scope=action.scope,
        paused_until=action.pause_until,
        max_rate=action.max_rate,
        reason=action.reason,
        step=action.step,
        action_id=action.id,
    )


def paused_domains(
    session: Session, domains: Iterable[str], now: datetime, *, policy: Policy | None = None
) -> set[str]:
    """Which of `domains` are paused now (`paused_until`)."""
    return set(paused_until(session.connection(), now, policy, domains))


#: Open throttles on a domain or a provider group, paused beyond `now`: (scope, target, until).
#: Built once: the engine asks for them on every `record` call, and building a statement costs
#: more than running this one.
_PAUSED_TARGETS = (
    sa.select(_ACTIONS.c.scope, _ACTIONS.c.target, sa.func.max(_ACTIONS.c.pause_until))
    .where(
        _ACTIONS.c.kind == ActionKind.THROTTLE,
        _ACTIONS.c.status == ActionStatus.OPEN,
        _ACTIONS.c.scope.in_([ActionScope.DOMAIN, ActionScope.PROVIDER]),
        _ACTIONS.c.pause_until > sa.bindparam("now", type_=UTCDateTime()),
    )
    .group_by(_ACTIONS.c.scope, _ACTIONS.c.target)
)
#: The same, for some targets only (`targets`).
_PAUSED_AMONG = _PAUSED_TARGETS.where(
    _ACTIONS.c.target.in_(sa.bindparam("targets", expanding=True))
)


def paused_until(
    conn: Connection,
    now: datetime,
    policy: Policy | None,
    among: Iterable[str] | None = None,
) -> dict[str, datetime]:
    """Every destination domain paused now -> paused until, or only those of `among`.

    A domain is paused by an open throttle of its own or of its provider group (the policy's
    lists and the learned domains: `members_of`; none without a policy), until the later of the
    two ends: a throttle of the domain raised before it was learned into a group stands until
    it ends. What the engine's sendability, retries and retry schedule rest on. One statement
    unless a provider group is paused: `record()` asks once, twice for a deferral.
    """
    wanted: set[str] | None = None
    if among is None:
        rows = conn.execute(_PAUSED_TARGETS, {"now": now}).all()
    else:
        wanted = set(among)
        # The domains and every group the policy names (a few): which groups hold the domains
        # is asked only when one is paused (`members_of`), not before every read.
        groups = sorted(provider_groups(policy.throttle)) if policy and wanted else []
        rows = [
            row
            for part in _chunks([*sorted(wanted), *groups])
            for row in conn.execute(_PAUSED_AMONG, {"now": now, "targets": list(part)})
        ]
    paused_groups = {target for scope, target, _ in rows if scope is ActionScope.PROVIDER}
    members = members_of(conn, paused_groups, policy, wanted) if paused_groups and policy else {}
    out: dict[str, datetime] = {}
    for scope, target, until in rows:
        domains = members.get(target, ()) if scope is ActionScope.PROVIDER else (target,)
        for domain in domains:
            if (wanted is None or domain in wanted) and (domain not in out or out[domain] < until):
                out[domain] = until
    return out


def throttles_in_force(session: Session, now: datetime) -> list[Action]:
    """Every throttle pausing a destination now, soonest lifted first."""
    return list(
        session.scalars(
            sa.select(Action)
            .where(
                Action.kind == ActionKind.THROTTLE,
                Action.status == ActionStatus.OPEN,
                Action.pause_until > _at(now),
            )
            .order_by(Action.pause_until, Action.id)
        )
    )


def list_actions(
    session: Session, *, open_only: bool = False, now: datetime | None = None
) -> list[Action]:
    """Actions, newest first. `open_only` keeps the pending ones and the open ones whose time is
    not up at `now` (default: the system clock): an action `expire_actions` would close is left
    out whether or not the nightly job has swept it yet, as `throttles_in_force` leaves out a
    pause that ended (issue 4: an expired action stops applying without any job running).

    A domain's latest incident, when nobody settled it, stays listed while suppressions are
    held at its domain, whatever its alert's expiry: the held suppressions stay pending until
    a person confirms or discards them, and `actions --open` is where they find its id."""
    query = sa.select(Action).order_by(Action.id.desc())
    if open_only:
        at = _at(now if now is not None else system_clock())
        held, newer = aliased(Action), aliased(Action)
        unsettled = (ActionStatus.OPEN, ActionStatus.EXPIRED)
        holds = (
            sa.exists()
            .where(
                held.kind == ActionKind.SUPPRESS,
                held.status == ActionStatus.PENDING,
                held.target == Recipient.address_key,
                Recipient.domain == Action.target,
            )
            .correlate(Action)
        )
        # The latest unsettled incident of its domain only: settling it settles every
        # suppression held there (`_incident`), and it is the one `_holding_incident` names.
        latest = ~sa.exists().where(
            newer.rule == RULE_INCIDENT,
            newer.target == Action.target,
            newer.status.in_(unsettled),
            newer.id > Action.id,
        )
        query = query.where(
            sa.or_(
                Action.status == ActionStatus.PENDING,
                sa.and_(
                    Action.status == ActionStatus.OPEN,
                    sa.or_(Action.expires_at.is_(None), Action.expires_at > at),
                ),
                sa.and_(
                    Action.rule == RULE_INCIDENT,
                    Action.status.in_(unsettled),
                    holds,
                    latest,
                ),
            )
        )
    return list(session.scalars(query))


#: How a message names an action of each kind: "action 12 is a throttle of domain ...".
_KIND_NAMES = {
    ActionKind.SUPPRESS: "a suppression",
    ActionKind.THROTTLE: "a throttle",
    ActionKind.ALERT: "an alert",
    ActionKind.RELEASE: "a release",
}


def _incident(session: Session, action_id: int, verb: str) -> tuple[Action, list[Action]]:
    """The domain incident `action_id` names and the suppressions it holds, for `verb`
    (confirm or discard); an id that is not one is an InputError saying what it is."""
    alert = session.get(Action, action_id)
    # Say what the id is and what confirm/discard are for: a person who passes a throttle's or a
    # suppression's id otherwise cannot tell a typo from a misunderstanding.
    applies = (
        "confirm and discard apply only to a domain incident (an alert with rule "
        f"{RULE_INCIDENT}, which holds bounce suppressions for a person to settle; "
        "`deliverability actions --open` lists them)"
    )
    if alert is None:
        raise InputError(f"action {action_id}: no action has this id; {applies}")
    if alert.rule != RULE_INCIDENT:
        what = (
            f"action {action_id} is {_KIND_NAMES[alert.kind]} of {alert.scope.value} "
            f"{alert.target} (rule {alert.rule}, {alert.status.value})"
        )
        holder = _holding_incident(session, alert)
        if holder is not None:
            # `actions --open` lists the held suppressions beside their incident: the one to
            # settle is the incident, all of its suppressions at once.
            raise InputError(
                f"{what}, held by the domain incident {holder.id} at {holder.target}: "
                f"`deliverability actions {verb} {holder.id}` settles every suppression it holds"
            )
        raise InputError(f"{what}, not a domain incident; {applies}")
    if alert.status not in (ActionStatus.OPEN, ActionStatus.EXPIRED):
        done = settled_as(alert)
        if done == f"{verb}ed":
            # Settled this way already (a script run again, two people at once): nothing
            # more to do, and no error; the caller sees it held nothing.
            return alert, []
        when = alert.resolved_at.isoformat() if alert.resolved_at else "?"
        by = alert.resolved_by or "?"
        if done == "confirmed":
            undo = "its suppressions are in force: `deliverability unsuppress ADDRESS` lifts one"
        elif done == "discarded":
            undo = (
                "its held suppressions were dropped: `deliverability suppress ADDRESS --reason "
                "...` stops mail to one"
            )
        else:
            undo = "nothing more to settle"
        raise InputError(
            f"action {action_id}: the incident at {alert.target} was already "
            f"{done or alert.status.value} by {by} at {when}; {undo}"
        )
    held = session.scalars(
        sa.select(Action)
        .join(Recipient, Recipient.address_key == Action.target)
        .where(
            Action.kind == ActionKind.SUPPRESS,
            Action.status == ActionStatus.PENDING,
            Recipient.domain == alert.target,
        )
        .order_by(Action.id)
    ).all()
    return alert, list(held)


def settled_as(alert: Action) -> str | None:
    """How a person settled a domain incident: "confirmed", "discarded", or None when it is
    not settled. Kept in its evidence (`settled`) since settling is idempotent; an incident
    settled before that says it in the note its detail ends with."""
    if alert.status is not ActionStatus.RESOLVED:
        return None
    said = alert.evidence.get("settled") if isinstance(alert.evidence, dict) else None
    if said in ("confirmed", "discarded"):
        return str(said)
    for verb in ("confirmed", "discarded"):
        if f"; {verb} " in (alert.detail or ""):
            return verb
    return None


def _holding_incident(session: Session, action: Action) -> Action | None:
    """The unsettled domain incident holding a pending suppression (the latest, as `_incident`
    holds every pending suppression at its domain), else None."""
    if action.kind is not ActionKind.SUPPRESS or action.status is not ActionStatus.PENDING:
        return None
    domain = sa.select(Recipient.domain).where(Recipient.address_key == action.target)
    return session.scalars(
        sa.select(Action)
        .where(
            Action.kind == ActionKind.ALERT,
            Action.scope == ActionScope.DOMAIN,
            Action.target == domain.scalar_subquery(),
            Action.rule == RULE_INCIDENT,
            Action.status.in_((ActionStatus.OPEN, ActionStatus.EXPIRED)),
        )
        .order_by(Action.id.desc())
        .limit(1)
    ).first()


def check_by_length(by: str) -> None:
    """Who acts by hand is stored in `actions.created_by` / `resolved_by`: longer is refused
    here, not by the database in the middle of the transaction (PostgreSQL and MariaDB fail with
    a DataError; SQLite would store it whole). Every function that takes a `by` checks it so."""
    limit = cast(sa.String, Action.__table__.c.created_by.type).length
    if limit is not None and len(by) > limit:
        raise InputError(f"who acts (by=...) is longer than {limit} characters")


def confirm_incident(session: Session, action_id: int, by: str, now: datetime) -> int:
    """Apply every suppression an incident holds; returns how many. Confirming an incident
    already confirmed changes nothing and returns 0; one already discarded is an InputError
    saying by whom and when."""
    check_by_length(by)
    alert, held = _incident(session, action_id, "confirm")
    updates = []
    for action in held:
        action.status = ActionStatus.OPEN
        action.updated_at = now
        action.detail = f"{action.detail}; confirmed by {by}"[:2000]
        updates.append(action)
    session.flush()
    keys = {a.target: a for a in updates}
    if keys:
        recipients = session.scalars(
            sa.select(Recipient).where(Recipient.address_key.in_(list(keys)))
        ).all()
        for r in recipients:
            action = keys[r.address_key]
            r.standing = Standing.SUPPRESSED
            r.reason = action.reason
            r.standing_since = now
            r.suppressed_until = action.expires_at
            r.suppression_action_id = action.id
    if alert.status is not ActionStatus.RESOLVED:
        _resolve(alert, ActionStatus.RESOLVED, by, now, f"confirmed {len(held)} held suppressions")
        alert.evidence = {**alert.evidence, "settled": "confirmed"}
    session.flush()
    return len(held)


def discard_incident(session: Session, action_id: int, by: str, now: datetime) -> int:
    """Drop every suppression an incident holds (their bounces are spent); returns how many.
    Discarding an incident already discarded changes nothing and returns 0; one already
    confirmed is an InputError saying by whom and when."""
    check_by_length(by)
    alert, held = _incident(session, action_id, "discard")
    for action in held:
        _resolve(action, ActionStatus.DISCARDED, by, now, "discarded with the incident")
    if alert.status is not ActionStatus.RESOLVED:
        _resolve(alert, ActionStatus.RESOLVED, by, now, f"discarded {len(held)} held suppressions")
        alert.evidence = {**alert.evidence, "settled": "discarded"}
    session.flush()
    return len(held)


def _resolve(action: Action, status: ActionStatus, by: str, now: datetime, note: str) -> None:
    action.status = status
    action.open_key = None
    action.resolved_at = now
    action.resolved_by = by
    action.updated_at = now
    action.detail = f"{action.detail}; {note} by {by}"[:2000]
