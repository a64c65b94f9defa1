"""A history builder for the hygiene tests: recipients and events written straight to the session
(as the engine writes them), then handed to the hygiene pass the way the engine hands them."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from conftest import FakeClock
from sqlalchemy.orm import Session

from deliverability.addresses import normalize_address
from deliverability.engine import Engine, ReplyRecord
from deliverability.hygiene import ActionSummary
from deliverability.policy import Policy
from deliverability.store import hygiene as store_hygiene
from deliverability.store import minutes
from deliverability.store.models import Base, Event, Recipient
from deliverability.store.session import open_engine
from deliverability.verdicts import Verdict
from deliverability.vocabulary import EventKind, Fault, Outcome, Reason, Standing

_keys = itertools.count(1)

#: The three ways the hygiene rules run: on each chunk as it is recorded (the hook), set-based by
#: the nightly job over what each night touched, and `--full` over the whole history.
PATHS = ("incremental", "nightly", "full")
#: One night of a scenario: its time, and the records that came in by then.
Night = tuple[datetime, list[ReplyRecord]]


def on_every_path(
    db_url: str, clock: FakeClock, policy: Policy, nights: Sequence[Night]
) -> Iterator[tuple[str, Engine]]:
    """Record the nights in time order on each path of the rules (`PATHS`), from an empty store
    each time, expiring the overdue retries every night: yields (path, engine) once a path has
    run, for the caller to read the outcome, then empties the store for the next path."""
    for path in PATHS:
        hook = None if path == "incremental" else False
        with Engine(db_url, policy=policy, clock=clock, hygiene=hook) as engine:
            for now, records in sorted(nights, key=lambda night: night[0]):
                clock.set(now)
                assert engine.record_many(records).rejected == []
                engine.expire_overdue(now)
                if path == "nightly":
                    with Session(engine.db) as s, s.begin():
                        store_hygiene.evaluate(s, policy, now)
            if path == "full":
                with Session(engine.db) as s, s.begin():
                    store_hygiene.evaluate(s, policy, clock(), full=True)
            yield path, engine
            with engine.db.begin() as conn:
                for table in reversed(Base.metadata.sorted_tables):
                    conn.execute(table.delete())


@dataclass(frozen=True, slots=True)
class Recorded:
    """What the hygiene pass reads of a recorded event (the engine passes RecordedEvent)."""

    event_id: int
    verdict: Verdict | None = None
    domain: str | None = None
    at: datetime | None = None
    restated: bool = False


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
    return Recorded(row.id, verdict, row.domain, row.at, row.restated)


#: A plausible fault for each outcome. Hygiene reads it for deferrals (one of the sender's fault
#: is a block) and expiries: a deferral here is the destination's unless a test says otherwise.
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
        kind: EventKind | None = None,
        fault: Fault | None = None,
        restated: bool = False,
    ) -> Event:
        r = self.recipient(address, at)
        if kind is None:
            kind = EventKind.COMPLAINT if outcome is Outcome.COMPLAINED else EventKind.REPLY
        row = Event(
            key=f"k{next(_keys)}",
            at=at,
            recorded_at=at,
            kind=kind,
            recipient_id=r.id,
            domain=r.domain,
            message_id=message_id if message_id is not None else f"m{next(_keys)}",
            attempt=1,
            code=code,
            status=status,
            text=text,
            outcome=outcome,
            reason=reason,
            fault=fault if fault is not None else _FAULT.get(outcome, Fault.UNKNOWN),
            rule="test",
            decisive=decisive,
            source="test",
            throttle=throttle,
            pause_seconds=None if pause is None else int(pause.total_seconds()),
            restated=restated,
        )
        self.session.add(row)
        self.session.flush()
        minutes.append(self.session.connection(), minutes.tally([(r.domain, at, outcome, kind)]))
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

    def blocked_4xx(self, address: str, at: datetime, **kw: Any) -> list[ActionSummary]:
        """A 4xx blocklist refusal: deferred (RFC 5321 4.2.1: the class digit decides), the
        sender's fault, as the default policy classifies it (`deliverability explain`)."""
        return self.record(
            address,
            at,
            Outcome.DEFERRED,
            Reason.BLOCKED,
            fault=Fault.SENDER,
            code=450,
            status="4.7.1",
            text="Client host blocked using zen.spamhaus.org",
            **kw,
        )

    def content_4xx(self, address: str, at: datetime, **kw: Any) -> list[ActionSummary]:
        """A 4xx refusal of the message's content (a virus scanner's "try later"): deferred,
        the message's fault, as the default policy classifies it (`std.virus_text`)."""
        return self.record(
            address,
            at,
            Outcome.DEFERRED,
            Reason.VIRUS_DETECTED,
            fault=Fault.MESSAGE,
            code=451,
            status="4.7.1",
            text="Virus found",
            **kw,
        )

    def pushback(self, address: str, at: datetime, **kw: Any) -> list[ActionSummary]:
        return self.record(
            address, at, Outcome.DEFERRED, Reason.RATE_LIMITED, throttle=True, code=421, **kw
        )


# ---- generated histories (for the incremental = nightly = full test) ----------------------


def generate_history(seed: int, start: datetime, days: int, per_day: int) -> list[dict[str, Any]]:
    """A deterministic, time-ordered history with every kind of evidence the rules read:
    deliveries, ordinary deferrals, soft strikes, hard and ambiguous bounces (with retries of one
    message), complaints, blocks (5xx, and 4xx deferrals of the sender's or the message's
    fault), push-backs (some at a provider group), plus episodes at their thresholds: a domain
    incident, a block storm, push-back bursts."""
    rng = random.Random(seed)
    domains = [f"d{i}.example" for i in range(25)] + ["gmail.com", "googlemail.com"]
    addresses = [f"u{i}@{domains[i % len(domains)]}" for i in range(per_day * 3)]
    dead = set(rng.sample(addresses, len(addresses) // 40))
    full = set(rng.sample(addresses, len(addresses) // 30))
    shaky = set(rng.sample(addresses, len(addresses) // 30))
    specs: list[dict[str, Any]] = []
    message = itertools.count(1)

    def add(address: str, at: datetime, outcome: Outcome, reason: Reason, **kw: Any) -> None:
        specs.append(
            {
                "address": address,
                "at": at,
                "outcome": outcome,
                "reason": reason,
                "decisive": kw.get("decisive", False),
                "throttle": kw.get("throttle", False),
                "pause": kw.get("pause"),
                "message_id": kw.get("message_id") or f"m{next(message)}",
                "fault": kw.get("fault"),
            }
        )

    for day in range(days):
        base = start + timedelta(days=day)
        for _ in range(per_day):
            address = rng.choice(addresses)
            at = base + timedelta(seconds=rng.randrange(86_400))
            roll = rng.random()
            if address in dead and roll < 0.5:
                add(address, at, Outcome.BOUNCED, Reason.USER_UNKNOWN, decisive=True)
            elif address in full and roll < 0.5:
                reason = Reason.MAILBOX_FULL if roll < 0.4 else Reason.EXPIRED
                add(address, at, Outcome.DEFERRED, reason)
            elif address in shaky and roll < 0.4:
                # A bare 550; sometimes the same message retried.
                mid = f"retry-{address}" if roll < 0.15 else None
                add(address, at, Outcome.BOUNCED, Reason.REJECTED, message_id=mid)
            elif roll < 0.015:
                add(address, at, Outcome.BLOCKED, Reason.BAD_REPUTATION)
            elif roll < 0.02:
                # A 4xx refusal of the sender: deferred, and a block.
                add(address, at, Outcome.DEFERRED, Reason.BLOCKED, fault=Fault.SENDER)
            elif roll < 0.023:
                # A 4xx refusal of the message's content: deferred, and a block too.
                add(address, at, Outcome.DEFERRED, Reason.VIRUS_DETECTED, fault=Fault.MESSAGE)
            elif roll < 0.1 and address.endswith(("gmail.com", "d1.example", "d2.example")):
                # Push-backs come from a few big destinations, as they do in practice.
                pause = timedelta(hours=1) if address.endswith("gmail.com") else None
                add(address, at, Outcome.DEFERRED, Reason.RATE_LIMITED, throttle=True, pause=pause)
            elif roll < 0.13:
                add(address, at, Outcome.DEFERRED, Reason.SYSTEM_ERROR)
            elif roll < 0.133:
                add(address, at, Outcome.COMPLAINED, Reason.FEEDBACK)
            else:
                add(address, at, Outcome.DELIVERED, Reason.DELIVERED)
        if day == days // 3:
            # A domain incident: many distinct addresses hard-bounce within minutes.
            for i in range(30):
                at = base + timedelta(hours=10, seconds=20 * i)
                add(f"x{i}@broken.example", at, Outcome.BOUNCED, Reason.USER_UNKNOWN, decisive=True)
        if day == days // 2:
            # A blocked-sender storm at one domain: never a strike, a throttle and an alert.
            for i in range(200):
                at = base + timedelta(hours=14, seconds=15 * i)
                if i % 2:
                    add(f"y{i}@d3.example", at, Outcome.BLOCKED, Reason.BLOCKED)
                elif i % 4:
                    add(f"y{i}@d3.example", at, Outcome.DEFERRED, Reason.BLOCKED,
                        fault=Fault.SENDER)  # fmt: skip
                else:
                    add(f"y{i}@d3.example", at, Outcome.DEFERRED, Reason.VIRUS_DETECTED,
                        fault=Fault.MESSAGE)  # fmt: skip
    # The last hour: push-backs from the provider group every ten minutes, so throttles are in
    # force at the end (with their doubled pauses and halved rates).
    last = start + timedelta(days=days - 1, hours=23)
    for i in range(6):
        address = f"z{i}@{'gmail.com' if i % 2 else 'googlemail.com'}"
        add(address, last + timedelta(minutes=10 * i), Outcome.DEFERRED, Reason.RATE_LIMITED,
            throttle=True)  # fmt: skip
    specs.sort(key=lambda spec: spec["at"])
    return specs


def insert_history(session: Session, specs: list[dict[str, Any]]) -> list[Recorded]:
    """Write the events in bulk (recipients first), in time order; returns them as the engine
    would hand them to the hygiene pass, in recording order."""
    parsed = {spec["address"]: normalize_address(spec["address"]) for spec in specs}
    known = dict(session.execute(sa.select(Recipient.address_key, Recipient.id)).all())
    new: dict[str, dict[str, Any]] = {}
    for spec in specs:
        address = parsed[spec["address"]]
        if address.key not in known and address.key not in new:
            new[address.key] = {
                "address": address.text,
                "address_key": address.key,
                "domain": address.domain,
                "standing": Standing.RETRYING,
                "reason": Reason.UNDEFINED,
                "standing_since": spec["at"],
                "first_seen_at": spec["at"],
                "last_event_at": spec["at"],
            }
    if new:
        session.execute(sa.insert(Recipient.__table__), list(new.values()))
        known = dict(session.execute(sa.select(Recipient.address_key, Recipient.id)).all())
    first = (session.execute(sa.select(sa.func.max(Event.id))).scalar_one_or_none() or 0) + 1
    rows = []
    for spec in specs:
        address = parsed[spec["address"]]
        rows.append(
            {
                "key": f"g{next(_keys)}",
                "at": spec["at"],
                "recorded_at": spec["at"],
                "kind": EventKind.REPLY,
                "recipient_id": known[address.key],
                "domain": address.domain,
                "message_id": spec["message_id"],
                "attempt": 1,
                "code": None,
                "status": None,
                "text": None,
                "command": None,
                "outcome": spec["outcome"],
                "reason": spec["reason"],
                "fault": spec.get("fault") or _FAULT.get(spec["outcome"], Fault.UNKNOWN),
                "rule": "generated",
                "decisive": spec["decisive"],
                "source": "generated",
                "position": None,
                "throttle": spec["throttle"],
                "pause_seconds": None
                if spec["pause"] is None
                else int(spec["pause"].total_seconds()),
            }
        )
    session.execute(sa.insert(Event.__table__), rows)
    # Written beside the events, as the engine does (deliverability/store/minutes.py).
    minutes.append(
        session.connection(),
        minutes.tally((r["domain"], r["at"], r["outcome"], r["kind"]) for r in rows),
    )
    ids = dict(session.execute(sa.select(Event.key, Event.id).where(Event.id >= first)).all())
    out = []
    for row in rows:
        verdict = Verdict(
            outcome=row["outcome"],
            reason=row["reason"],
            fault=row["fault"],
            rule=row["rule"],
            decisive=row["decisive"],
            throttle=row["throttle"],
            pause=None if row["pause_seconds"] is None else timedelta(seconds=row["pause_seconds"]),
        )
        out.append(Recorded(ids[row["key"]], verdict, row["domain"], row["at"]))
    out.sort(key=lambda r: r.event_id)
    return out


def shuffled_chunks(steps: list[Any], seed: int) -> list[list[Any]]:
    """`steps` shuffled, then cut into chunks of 1 to 25, as a seeded run records them."""
    rng = random.Random(seed)
    steps = list(steps)
    rng.shuffle(steps)
    chunks = []
    while steps:
        size = rng.randint(1, 25)
        chunks.append(steps[:size])
        steps = steps[size:]
    return chunks


def write_history(db_url: str, policy: Policy, build: Callable[[History], object]) -> None:
    """Open the store at `db_url` (made or upgraded), let `build` write to it through a History
    and commit: the setting of a command-line test."""
    engine = open_engine(db_url)
    try:
        with Session(engine) as session:
            build(History(session, policy))
            session.commit()
    finally:
        engine.dispose()
