"""Reports: the questions people who run bulk mail ask every week, answered from the store.

Every report is a function taking an open SQLAlchemy `Session` and returning a list of plain
dicts (rows) with stable keys, in a stable order; `COLUMNS[name]` lists the keys. The command
line (`deliverability report ...`) renders the same rows as a table, CSV, JSON or HTML::

    from deliverability import reports
    rows = reports.domains(session, since=start, until=end, top=10)

Periods are half-open: `since <= at < until`. Every time is timezone-aware UTC; a naive time is
taken to be UTC. Reports only read: they never write nor commit.

Definitions shared by every report (one place, so the numbers agree with each other):

- *attempts*: every delivery reply recorded (delivered, deferred, bounced, blocked).
- *expired*: an expiry (event kind `expiry`: the engine, or a relay, gave up on a deferred
  delivery) is stored with outcome `deferred` (or, recorded with a relay's last reply and no
  verdict of its own, that reply's outcome) but is no reply from the destination: it is neither
  an attempt nor a send, and every report counts and shows it as `expired`, never under the
  outcome it was stored with. Its reason (`expired`) is a failure reason like any other.
- *restated*: a give-up reported again for a delivery already given up (`Event.restated`: the
  engine's expiry, then Postfix's `status=expired` line for it, or a relay's DSN) is one give-up:
  counted once, as its first report, and left out of every count here (it stays in history).
- *sent*: messages that reached a final result (delivered, bounced, blocked). A deferral is not a
  send: the retry's final result is. This is the base ESPs use for the bounce rate.
- *bounce rate* = bounced / sent; *block rate* = blocked / sent; *deferral rate* = deferred /
  attempts; *complaint rate* = complaints / delivered (the base of Google's "spam rate").

Every query filters on indexed columns: events by ``(domain, at)`` when a domain is given (the
``domains`` report and the outcomes per day then read the ``(domain, at, outcome, kind,
restated)`` index alone), else by ``at``; recipients by ``standing`` or ``domain`` (and the
give-ups of an address bounced by an expiry by ``(recipient_id, at)``). See
``bench/bench_reports.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, String, and_, case, func, literal, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from deliverability.addresses import normalize_domain
from deliverability.clock import ensure_utc
from deliverability.errors import AddressError, InputError
from deliverability.hygiene import RULE_INCIDENT
from deliverability.policy import HygienePolicy, ReputationPolicy
from deliverability.store.hygiene import exempt_give_up
from deliverability.store.models import Action, Event, Recipient
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    DeliveryState,
    EventKind,
    Outcome,
    Reason,
    Standing,
)

__all__ = [
    "COLUMNS",
    "EXPIRED",
    "REPORTS",
    "Level",
    "codes",
    "domains",
    "iter_undeliverable",
    "outcomes_by_day",
    "parse_reason",
    "reasons",
    "reputation",
    "reputation_verdict",
    "undeliverable",
    "worst_level",
]

#: The report names the command line accepts, in the order it lists them.
REPORTS: tuple[str, ...] = ("undeliverable", "domains", "codes", "reputation")

#: The keys of each report's rows, in display order (CSV header, JSON keys, table columns).
COLUMNS: dict[str, tuple[str, ...]] = {
    "undeliverable": (
        "address",
        "domain",
        "standing",
        "reason",
        "since",
        "expires",
        "last_code",
        "last_status",
        "last_text",
        "failures",
        "last_attempt",
        "action_id",
        "action_rule",
        "action_by",
    ),
    "domains": (
        "domain",
        "attempts",
        "sent",
        "delivered",
        "deferred",
        "expired",
        "bounced",
        "blocked",
        "complaints",
        "bounce_rate",
        "block_rate",
        "deferral_rate",
        "complaint_rate",
        "throttled_until",
        "max_rate",
        "open_incidents",
    ),
    "codes": ("day", "code", "status", "reason", "outcome", "count", "example"),
    "reputation": (
        "window",
        "since",
        "until",
        "metric",
        "count",
        "base",
        "rate",
        "review_at",
        "pause_at",
        "level",
    ),
}

#: Rows `iter_undeliverable` fetches from the database at a time.
UNDELIVERABLE_BATCH = 1000

#: How a rate compares with its thresholds; `insufficient` when the window has too few messages.
Level = Literal["ok", "review", "pause", "insufficient"]

#: How the reports show an expiry (see *expired* above): as the state it leaves its delivery in.
EXPIRED = DeliveryState.EXPIRED
_FAILING_STANDINGS = (Standing.BOUNCED, Standing.SUPPRESSED)


def parse_reason(value: Reason | str) -> Reason:
    """A `Reason` from its value; an unknown one is an `InputError` listing every valid value."""
    if isinstance(value, Reason):
        return value
    try:
        return Reason(value.strip().lower())
    except ValueError:
        valid = ", ".join(r.value for r in Reason)
        raise InputError(f"unknown reason {value!r}; valid reasons: {valid}") from None


def _domain(value: str) -> str:
    try:
        return normalize_domain(value)
    except AddressError as err:
        raise InputError(f"bad --domain {value!r}: {err.problem}") from None


def _period(since: datetime | None, until: datetime | None) -> tuple[datetime | None, ...]:
    start = ensure_utc(since) if since is not None else None
    end = ensure_utc(until) if until is not None else None
    if start is not None and end is not None and start >= end:
        raise InputError(
            f"empty period: since {start.isoformat()} is not before until {end.isoformat()}"
        )
    return start, end


def _event_filter(
    since: datetime | None,
    until: datetime | None,
    domain: str | None,
    reason: Reason | str | None = None,
) -> list[ColumnElement[bool]]:
    start, end = _period(since, until)
    # A give-up reported again is counted once, as its first report (see *restated* above).
    # `restated` ends the (domain, at, outcome, kind, restated) index, so the reports that read
    # that index alone still do.
    where: list[ColumnElement[bool]] = [Event.restated.is_(False)]
    # Equality on domain then a range on `at`: the (domain, at) index answers both.
    if domain is not None:
        where.append(Event.domain == _domain(domain))
    if start is not None:
        where.append(Event.at >= start)
    if end is not None:
        where.append(Event.at < end)
    if reason is not None:
        where.append(Event.reason == parse_reason(reason))
    return where


def _tally(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _counted_as(outcome: Outcome) -> ColumnElement[bool]:
    """The events the reports count as `outcome`: expiries left out (see *expired* above)."""
    return and_(Event.outcome == outcome, Event.kind != EventKind.EXPIRY)


def _shown_outcome() -> ColumnElement[str]:
    """An event's outcome as the reports show it: `expired` for an expiry (see *expired*
    above), else the stored outcome. Grouping by it keeps expiries a line of their own."""
    return case((Event.kind == EventKind.EXPIRY, literal(EXPIRED.value)), else_=Event.outcome)


def _shown(value: str) -> Outcome | DeliveryState:
    """A value of `_shown_outcome()` as read back: `EXPIRED` or an `Outcome`."""
    return EXPIRED if value == EXPIRED else Outcome(value)


def _rate(part: int, whole: int) -> float | None:
    """`part / whole`, or None when there is nothing to divide by (not 0: no data is not 0%)."""
    return part / whole if whole else None


# --------------------------------------------------------------------------------------------
# undeliverable


class bytewise(FunctionElement[str]):
    """A text compared character by character (by code point) on every backend, so that ties
    and examples come out the same everywhere. SQLite (BINARY) and MariaDB (the schema's
    utf8mb4_bin) already compare so; a PostgreSQL column follows the database's collation (an
    ICU en-US one put "éa" before "fa", "User unknown" after "user unknown"), so there it is
    compared with COLLATE "C" (https://www.postgresql.org/docs/current/collation.html)."""

    type = String()
    inherit_cache = True


@compiles(bytewise)
def _bytewise(element: bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return str(compiler.process(element.clauses, **kw))


@compiles(bytewise, "postgresql")
def _bytewise_postgresql(element: bytewise, compiler: SQLCompiler, **kw: Any) -> str:
    return f'{compiler.process(element.clauses, **kw)} COLLATE "C"'


def _bounced_by_no_fault_of_its_own(policy: HygienePolicy) -> ColumnElement[bool]:
    """A recipient `bounced` only because a delivery of it was given up after the sender's, the
    message's or the destination's own trouble: its standing (reason `expired`) follows give-ups
    (those recorded at `standing_basis_at`) that are all exempt from strikes
    (`store.hygiene.exempt_give_up`, `hygiene.expiry_exempt_faults`). The hygiene rules count
    nothing against such an address, and it stays sendable.

    Read through events (recipient_id, at): the give-ups at one time of one address. A standing
    whose give-up is not stored (no basis time, or pruned) is not one of them: nothing shows it
    is the sender's trouble. The engine no longer leaves such a standing (an exempt give-up is no
    result for the standing: docs/hygiene.md): this is for the standings stored before that
    rule, and for a policy that exempts more faults than the one they were recorded under."""
    given_up = Event.__table__.alias("given_up").c
    all_exempt = (
        select(func.min(case((exempt_give_up(given_up, policy), 1), else_=0)))
        .where(
            given_up.recipient_id == Recipient.id,
            given_up.at == Recipient.standing_basis_at,
            given_up.reason == Reason.EXPIRED,
        )
        .scalar_subquery()
    )
    return and_(
        Recipient.standing == Standing.BOUNCED,
        Recipient.reason == Reason.EXPIRED,
        # No give-up at that time: NULL, which is no.
        func.coalesce(all_exempt, 0) == 1,
    )


def undeliverable_query(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    domain: str | None = None,
    reason: Reason | str | None = None,
    policy: HygienePolicy | None = None,
) -> Select[*tuple[Any, ...]]:
    """The SELECT behind `undeliverable` (exposed for the benchmark's query plans)."""
    policy = policy if policy is not None else HygienePolicy()
    start, end = _period(since, until)
    failures = (
        Recipient.bounced_count
        + Recipient.blocked_count
        + Recipient.deferred_count
        + Recipient.expired_count
    )
    stmt = (
        select(
            Recipient.address,
            Recipient.domain,
            Recipient.standing,
            Recipient.reason,
            Recipient.standing_since.label("since"),
            Recipient.suppressed_until.label("expires"),
            Recipient.last_code,
            Recipient.last_status,
            Recipient.last_text,
            failures.label("failures"),
            Recipient.last_failure_at.label("last_attempt"),
            Action.id.label("action_id"),
            Action.rule.label("action_rule"),
            Action.created_by.label("action_by"),
        )
        .outerjoin(Action, Action.id == Recipient.suppression_action_id)
        .where(Recipient.standing.in_(_FAILING_STANDINGS))
        .order_by(Recipient.standing_since.desc(), bytewise(Recipient.address_key))
    )
    if policy.expiry_exempt_faults:
        stmt = stmt.where(~_bounced_by_no_fault_of_its_own(policy))
    if domain is not None:
        stmt = stmt.where(Recipient.domain == _domain(domain))
    if reason is not None:
        stmt = stmt.where(Recipient.reason == parse_reason(reason))
    if start is not None:
        stmt = stmt.where(Recipient.standing_since >= start)
    if end is not None:
        stmt = stmt.where(Recipient.standing_since < end)
    return stmt


def undeliverable(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    domain: str | None = None,
    reason: Reason | str | None = None,
    policy: HygienePolicy | None = None,
) -> list[dict[str, Any]]:
    """Every address whose standing is bounced or suppressed: the list a sender removes or
    re-confirms, newest first.

    Not listed: an address bounced only because a delivery of it expired after the sender's,
    the message's or the destination's own trouble (a blocklisting, a content refusal,
    push-back): the hygiene rules count such an expiry against nobody (`policy`'s
    `expiry_exempt_faults`, by default the shipped ones), and the address stays sendable. A
    list owner removing what this report lists would remove good addresses.

    Filters combine: `since`/`until` bound when the address got that standing, `domain` and
    `reason` match exactly. `failures` counts every recorded reply that was not a delivery
    (bounced, blocked, deferred, expired); `last_attempt` is when the destination last refused
    it (None when it never did: a complaint or a person suppressed it); `action_*` name the
    hygiene action that suppressed
    the address (empty for an address bounced but not yet suppressed).
    """
    return list(
        iter_undeliverable(
            session, since=since, until=until, domain=domain, reason=reason, policy=policy
        )
    )


def iter_undeliverable(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    domain: str | None = None,
    reason: Reason | str | None = None,
    policy: HygienePolicy | None = None,
) -> Iterator[dict[str, Any]]:
    """The rows of `undeliverable`, read from the database `UNDELIVERABLE_BATCH` at a time while
    they are iterated (within the session's transaction), for a list too long to hold at once:
    300,000 suppressed addresses took 0.5 GB as a list. The query runs, and bad arguments
    raise, when it is called, not when iteration starts."""
    stmt = undeliverable_query(
        since=since, until=until, domain=domain, reason=reason, policy=policy
    )
    result = session.execute(stmt, execution_options={"yield_per": UNDELIVERABLE_BATCH})
    return (dict(row._mapping) for row in result)


# --------------------------------------------------------------------------------------------
# domains


def domains_query(
    *,
    since: datetime | None,
    until: datetime | None,
    domain: str | None = None,
) -> Select[*tuple[Any, ...]]:
    """The SELECT behind `domains`: outcome counts per destination domain over the period.

    Every column it reads is in the (domain, at, outcome, kind, restated) index, so with a domain
    given the database reads that index alone.
    """
    return (
        select(
            Event.domain,
            func.count().label("events"),
            _tally(_counted_as(Outcome.DELIVERED)).label("delivered"),
            _tally(_counted_as(Outcome.DEFERRED)).label("deferred"),
            _tally(Event.kind == EventKind.EXPIRY).label("expired"),
            _tally(_counted_as(Outcome.BOUNCED)).label("bounced"),
            _tally(_counted_as(Outcome.BLOCKED)).label("blocked"),
            _tally(_counted_as(Outcome.COMPLAINED)).label("complaints"),
        )
        .where(*_event_filter(since, until, domain))
        .group_by(Event.domain)
    )


def domains(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    domain: str | None = None,
    top: int | None = None,
    providers: Mapping[str, Sequence[str]] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Per destination domain over the period: attempts and results, their rates, the open
    throttle and the open incidents; worst bounce rate first (then most attempts), `top` rows.

    `expired` counts deliveries given up in the period (their retry lifetime ran out): neither
    attempts nor sends; a give-up reported again (restated) counts once, as its first report.

    `throttled_until`/`max_rate` come from the open throttle on the domain, or on its provider
    group when `providers` (group name -> domains, as `policy.throttle.provider_domains`) is
    given; with `now`, a throttle whose pause ended by then is left out (hygiene's nightly sweep
    expires it later). `open_incidents` counts the domain's open domain-incident alerts.
    """
    if top is not None and top < 1:
        raise InputError(f"--top must be at least 1, not {top}")
    rows: list[dict[str, Any]] = []
    for r in session.execute(domains_query(since=since, until=until, domain=domain)):
        # int(): MariaDB returns SUM() as DECIMAL, which would leak into rates and JSON.
        delivered, deferred, expired, bounced, blocked, complaints = (
            int(r.delivered),
            int(r.deferred),
            int(r.expired),
            int(r.bounced),
            int(r.blocked),
            int(r.complaints),
        )
        attempts = delivered + deferred + bounced + blocked
        sent = delivered + bounced + blocked
        rows.append(
            {
                "domain": r.domain,
                "attempts": attempts,
                "sent": sent,
                "delivered": delivered,
                "deferred": deferred,
                "expired": expired,
                "bounced": bounced,
                "blocked": blocked,
                "complaints": complaints,
                "bounce_rate": _rate(bounced, sent),
                "block_rate": _rate(blocked, sent),
                "deferral_rate": _rate(deferred, attempts),
                "complaint_rate": _rate(complaints, delivered),
                "throttled_until": None,
                "max_rate": None,
                "open_incidents": 0,
            }
        )
    rows.sort(key=lambda row: (-(row["bounce_rate"] or 0.0), -row["attempts"], row["domain"]))
    if top is not None:
        rows = rows[:top]
    _add_domain_actions(session, rows, providers or {}, ensure_utc(now) if now else None)
    return rows


def _add_domain_actions(
    session: Session,
    rows: list[dict[str, Any]],
    providers: Mapping[str, Sequence[str]],
    now: datetime | None,
) -> None:
    """Fill in each row's open throttle (its own, or its provider group's) and its open
    incidents from the actions table."""
    if not rows:
        return
    by_domain = {row["domain"]: row for row in rows}
    group_of = {d: name for name, members in providers.items() for d in members}
    # A throttle on a provider group (scope "provider", target the group's name) slows every
    # domain of the group; see ThrottlePolicy.provider_domains.
    targets: dict[str, list[dict[str, Any]]] = {d: [row] for d, row in by_domain.items()}
    for domain, row in by_domain.items():
        if domain in group_of:
            targets.setdefault(group_of[domain], []).append(row)
    live = (ActionStatus.OPEN, ActionStatus.PENDING)
    stmt = select(Action).where(
        Action.status.in_(live),
        or_(
            and_(Action.kind == ActionKind.THROTTLE, Action.scope == ActionScope.DOMAIN),
            and_(Action.kind == ActionKind.THROTTLE, Action.scope == ActionScope.PROVIDER),
            and_(
                Action.kind == ActionKind.ALERT,
                Action.scope == ActionScope.DOMAIN,
                Action.rule == RULE_INCIDENT,
            ),
        ),
    )
    # Chunked IN lists keep every backend's bound-parameter limit out of reach.
    names = sorted(targets)
    for start in range(0, len(names), 500):
        chunk = names[start : start + 500]
        for action in session.scalars(stmt.where(Action.target.in_(chunk))):
            if action.kind is ActionKind.ALERT:
                by_domain[action.target]["open_incidents"] += 1
                continue
            if action.scope is ActionScope.DOMAIN and action.target not in by_domain:
                continue  # a domain named like a provider group: not one of the rows
            members = (
                [by_domain[action.target]]
                if action.scope is ActionScope.DOMAIN
                else [
                    r for r in targets[action.target] if group_of.get(r["domain"]) == action.target
                ]
            )
            until = action.pause_until or action.expires_at
            if now is not None and until is not None and until <= now:
                continue
            for row in members:
                if row["throttled_until"] is None or (
                    until is not None and until > row["throttled_until"]
                ):
                    row["throttled_until"] = until
                    row["max_rate"] = action.max_rate


# --------------------------------------------------------------------------------------------
# codes


def _day(session: Session, column: ColumnElement[datetime]) -> ColumnElement[str]:
    """The UTC calendar day of a stored time, as ``YYYY-MM-DD`` text, computed by the database."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        # timestamptz: convert to UTC first, or the session's time zone would pick the day.
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    if dialect in ("mysql", "mariadb"):
        return func.date_format(column, "%Y-%m-%d")
    # SQLite stores naive UTC text "YYYY-MM-DD HH:MM:SS[.ffffff]".
    return func.substr(column, 1, 10)


def codes_query(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    domain: str | None = None,
    reason: Reason | str | None = None,
    daily: bool = False,
) -> Select[*tuple[Any, ...]]:
    """The SELECT behind `codes`."""
    keys: list[ColumnElement[Any]] = [
        Event.code.expression,
        Event.status.expression,
        Event.reason.expression,
        _shown_outcome().label("outcome"),
    ]
    if daily:
        keys.insert(0, _day(session, Event.at.expression).label("day"))
    stmt = (
        select(*keys, func.count().label("count"), func.max(bytewise(Event.text)).label("example"))
        .where(*_event_filter(since, until, domain, reason))
        .group_by(*keys)
    )
    return stmt


def codes(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    domain: str | None = None,
    reason: Reason | str | None = None,
    daily: bool = False,
) -> list[dict[str, Any]]:
    """Counts by reply code, enhanced status, reason and outcome over the period, with one
    example text each; per UTC day (`day`, ``YYYY-MM-DD``) with `daily`, else `day` is None.

    An expiry is a line of its own with `outcome` `EXPIRED`, apart from the deferrals (its
    code, status and text are the relay's last reply, or empty for the engine's own give-up).
    Sorted by day, then most frequent first.
    """
    stmt = codes_query(session, since=since, until=until, domain=domain, reason=reason, daily=daily)
    rows = []
    for r in session.execute(stmt):
        m = r._mapping
        rows.append(
            {
                "day": m["day"] if daily else None,
                "code": m["code"],
                "status": m["status"],
                "reason": Reason(m["reason"]),
                "outcome": _shown(m["outcome"]),
                "count": int(m["count"]),
                "example": m["example"],
            }
        )
    rows.sort(
        key=lambda row: (
            row["day"] or "",
            -row["count"],
            row["code"] if row["code"] is not None else 0,
            row["status"] or "",
            row["reason"].value,
        )
    )
    return rows


# --------------------------------------------------------------------------------------------
# chart data


def outcomes_by_day_query(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    domain: str | None = None,
) -> Select[*tuple[Any, ...]]:
    """The SELECT behind `outcomes_by_day`."""
    day = _day(session, Event.at.expression).label("day")
    outcome = _shown_outcome().label("outcome")
    return (
        select(day, outcome, func.count().label("count"))
        .where(*_event_filter(since, until, domain))
        .group_by(day, outcome)
    )


def outcomes_by_day(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    domain: str | None = None,
) -> list[dict[str, Any]]:
    """One row per UTC day with a count per outcome (`day`, one key per `Outcome` value and
    `expired`: expiries are not counted as `deferred`), for the days that have events, oldest
    first."""
    stmt = outcomes_by_day_query(session, since=since, until=until, domain=domain)
    days: dict[str, dict[str, Any]] = {}
    for r in session.execute(stmt):
        row = days.setdefault(
            r.day, {"day": r.day} | {o.value: 0 for o in Outcome} | {EXPIRED.value: 0}
        )
        row[_shown(r.outcome).value] += int(r._mapping["count"])
    return [days[d] for d in sorted(days)]


def reasons(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    domain: str | None = None,
    top: int | None = None,
) -> list[dict[str, Any]]:
    """Counts of failures by reason over the period (deliveries excluded), most frequent first.

    Failures are deferrals, bounces, blocks, complaints and expiries. An expiry counts under its
    reason: `expired` for the engine's and relays' give-ups, a line apart from the deferrals'.
    """
    stmt = (
        select(Event.reason, func.count().label("count"))
        .where(
            *_event_filter(since, until, domain),
            Event.outcome.in_(
                (Outcome.DEFERRED, Outcome.BOUNCED, Outcome.BLOCKED, Outcome.COMPLAINED)
            ),
        )
        .group_by(Event.reason)
    )
    rows: list[dict[str, Any]] = [
        {"reason": Reason(r.reason), "count": int(r._mapping["count"])}
        for r in session.execute(stmt)
    ]
    rows.sort(key=lambda row: (-row["count"], row["reason"].value))
    return rows[:top] if top is not None else rows


# --------------------------------------------------------------------------------------------
# reputation


def _window_name(window: timedelta) -> str:
    if window % timedelta(days=1) == timedelta(0):
        return f"{window.days}d"
    return f"{int(window.total_seconds() // 3600)}h"


def _level(rate: float | None, base: int, review: float, pause: float, minimum: int) -> Level:
    if rate is None or base < minimum:
        return "insufficient"
    if rate >= pause:
        return "pause"
    if rate >= review:
        return "review"
    return "ok"


def reputation(
    session: Session,
    *,
    now: datetime,
    policy: ReputationPolicy | None = None,
) -> list[dict[str, Any]]:
    """The sender's bounce rate and complaint rate over each policy window (7 and 30 days by
    default) ending at `now`, each against its review and pause thresholds.

    Two rows per window: `metric` ``bounce`` (count = bounced, base = sent) and ``complaint``
    (count = complaints, base = delivered); `level` is ok, review, pause, or insufficient when
    the window has fewer than `policy.min_messages` sent. An expiry counts in none of them,
    whatever outcome it was stored with (see *expired* above). `reputation_verdict` sums them up.
    """
    policy = policy or ReputationPolicy()
    end = ensure_utc(now)
    windows = sorted(policy.windows)
    if not windows or windows[0] <= timedelta(0):
        raise InputError("reputation windows must be positive durations")
    oldest = end - windows[-1]

    # One pass over the longest window; shorter windows are conditional sums of the same rows.
    columns: list[ColumnElement[Any]] = []
    for i, window in enumerate(windows):
        start = end - window
        for outcome in (Outcome.DELIVERED, Outcome.BOUNCED, Outcome.BLOCKED, Outcome.COMPLAINED):
            hit = and_(Event.outcome == outcome, Event.at >= start)
            columns.append(_tally(hit).label(f"{outcome.value}_{i}"))
    # No count here takes an expiry (see *expired* above), nor a restated give-up (*restated*):
    # left out once, by one comparison per row, rather than by one in each of the sums.
    stmt = select(*columns).where(*_event_filter(oldest, end, None), Event.kind != EventKind.EXPIRY)
    counts = session.execute(stmt).one()._mapping

    rows: list[dict[str, Any]] = []
    for i, window in enumerate(windows):
        # int(): MariaDB returns SUM() as DECIMAL.
        delivered = int(counts[f"delivered_{i}"])
        bounced = int(counts[f"bounced_{i}"])
        sent = delivered + bounced + int(counts[f"blocked_{i}"])
        complaints = int(counts[f"complained_{i}"])
        common = {"window": _window_name(window), "since": end - window, "until": end}
        bounce_rate = _rate(bounced, sent)
        complaint_rate = _rate(complaints, delivered)
        rows.append(
            common
            | {
                "metric": "bounce",
                "count": bounced,
                "base": sent,
                "rate": bounce_rate,
                "review_at": policy.bounce_review,
                "pause_at": policy.bounce_pause,
                "level": _level(
                    bounce_rate,
                    sent,
                    policy.bounce_review,
                    policy.bounce_pause,
                    policy.min_messages,
                ),
            }
        )
        rows.append(
            common
            | {
                "metric": "complaint",
                "count": complaints,
                "base": delivered,
                "rate": complaint_rate,
                "review_at": policy.complaint_review,
                "pause_at": policy.complaint_pause,
                # The volume test is on messages sent, as for bounces: a window with enough mail
                # but few deliveries is exactly the one to judge.
                "level": _level(
                    complaint_rate,
                    sent,
                    policy.complaint_review,
                    policy.complaint_pause,
                    policy.min_messages,
                ),
            }
        )
    return rows


_SEVERITY: dict[str, int] = {"insufficient": 0, "ok": 1, "review": 2, "pause": 3}


def _percent(value: float) -> str:
    return f"{value * 100:.2f}".rstrip("0").rstrip(".") + "%"


def worst_level(rows: Sequence[dict[str, Any]]) -> Level:
    """The most severe `level` among `reputation` rows (pause > review > ok > insufficient)."""
    levels: list[Level] = [row["level"] for row in rows]
    return max(levels, key=lambda level: _SEVERITY[level], default="insufficient")


def reputation_verdict(rows: Sequence[dict[str, Any]]) -> str:
    """One line a person can act on, from `reputation` rows: the worst level and why."""
    if not rows:
        return "verdict: no data"
    level = worst_level(rows)
    if level == "insufficient":
        base = max(row["base"] for row in rows if row["metric"] == "bounce")
        return (
            f"verdict: NOT ENOUGH DATA - {base} message(s) sent in the longest window; rates are "
            "shown but not judged"
        )
    if level == "ok":
        names = " and ".join(dict.fromkeys(row["window"] for row in rows))
        return (
            f"verdict: OK - bounce and complaint rates are below the review thresholds over "
            f"the last {names}"
        )
    flagged = [row for row in rows if row["level"] == level]
    reasons_text = "; ".join(
        f"{row['window']} {row['metric']} rate {_percent(row['rate'])} "
        f"({row['count']} of {row['base']}) >= {_percent(row[f'{level}_at'])}"
        for row in flagged
    )
    action = (
        "providers are likely to block or pause this sender: stop and clean the list"
        if level == "pause"
        else "review the list and recent sends before it gets worse"
    )
    return f"verdict: {level.upper()} - {reasons_text}; {action}"
