"""A review of "an expiry keeps the fault of its delivery's last deferral" (docs/hygiene.md).

An expiry is a soft strike only when the delivery's last deferral was about the address: not
after the sender's, the message's or the destination's own trouble
(`hygiene.expiry_exempt_faults`). Here: the ways a delivery gives up (the engine's lifetime, a
Postfix ``status=expired``, a relay's DSN that says 4.4.7) each keep that fault, a dead domain is
still found out, every path of the hygiene rules agrees on histories full of expiries, and the
policy setting reads, prints and loads back.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import FakeClock
from factories_bounces import dsn
from factories_hygiene import History, shuffled_chunks
from sqlalchemy.orm import Session

from deliverability.cli import cli
from deliverability.engine import Engine
from deliverability.errors import ConfigError
from deliverability.hygiene import Evidence, evidence_of
from deliverability.nightly import run_nightly
from deliverability.policy import Policy, load_policy
from deliverability.store import hygiene as store_hygiene
from deliverability.store.models import Action, Base, Bookmark, Event, Recipient
from deliverability.vocabulary import (
    ActionKind,
    ActionStatus,
    EventKind,
    Fault,
    Outcome,
    Reason,
    Standing,
)

POLICY = load_policy()
H = POLICY.hygiene
DAY = timedelta(days=1)
WEEK = timedelta(days=7)
#: Weekly campaigns enough for the soft-strike rule, spanning more than its span.
CAMPAIGNS = H.soft_strikes + 1
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

BLOCKLISTED = "451 4.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org"


def _syslog(at: datetime) -> str:
    return f"{at:%b} {at.day:2d} {at:%H:%M:%S}"


def _postfix_deferral(at: datetime, qid: str, to: str, dsn: str, text: str) -> str:
    return (
        f"{_syslog(at)} mx postfix/smtp[101]: {qid}: to=<{to}>, relay=none, delay=1, "
        f"delays=0/0/0/1, dsn={dsn}, status=deferred ({text})\n"
    )


def _postfix_expired(at: datetime, qid: str) -> str:
    return (
        f"{_syslog(at)} mx postfix/qmgr[99]: {qid}: from=<list@example.com>, "
        "status=expired, returned to sender\n"
    )


def _postfix_campaigns(
    engine: Engine,
    clock: FakeClock,
    tmp_path: Path,
    address: str,
    dsn: str,
    text: str,
    *,
    postfix_gives_up: bool,
) -> None:
    """A campaign a week: the delivery deferred with `text` every day for the retry lifetime,
    then given up by Postfix (``status=expired``) or, without that line, by the engine; each
    week's log read by the nightly job once the lifetime has run out."""
    start = clock()
    lifetime = POLICY.backoff.lifetime
    for week in range(CAMPAIGNS):
        first = start + week * WEEK
        qid = f"4A1B2C3D{week:02d}"
        lines = [
            _postfix_deferral(first + day * DAY, qid, address, dsn, text)
            for day in range(lifetime.days)
        ]
        if postfix_gives_up:
            lines.append(_postfix_expired(first + lifetime + timedelta(hours=1), qid))
        log = tmp_path / f"mail.log.{week}"
        log.write_text("".join(lines))
        now = first + lifetime + timedelta(hours=2)
        clock.set(now)
        summary = run_nightly(engine, [log], now=now, fmt="postfix")
        assert summary.rejected_count == 0, summary.rejected
    with Session(engine.db) as s:
        expiries = s.scalar(
            sa.select(sa.func.count()).select_from(Event).where(Event.kind == EventKind.EXPIRY)
        )
    assert expiries == CAMPAIGNS


def _faults(engine: Engine) -> dict[str, set[Fault]]:
    """The faults stored with the deliveries' deferrals and with their expiries."""
    with Session(engine.db) as s:
        rows = s.execute(sa.select(Event.kind, Event.fault)).all()
    return {
        "deferrals": {fault for kind, fault in rows if kind is not EventKind.EXPIRY},
        "expiries": {fault for kind, fault in rows if kind is EventKind.EXPIRY},
    }


# ---- a dead domain is still found out -------------------------------------------------------

#: Postfix, when the recipient domain's name servers do not answer (a lapsed domain whose
#: delegation points nowhere): RFC 3463 X.4.3, "the inability to connect to an Internet DNS
#: server", deferred until the message expires.
NAME_NOT_FOUND = (
    "Host or domain name not found. Name service error for name=gone.example type=MX: "
    "Host not found, try again"
)
CONNECTION_TIMED_OUT = "connect to mx.gone.example[192.0.2.99]:25: Connection timed out"


@pytest.mark.parametrize("postfix_gives_up", [True, False], ids=["postfix", "engine"])
@pytest.mark.parametrize(
    ("dsn", "text"),
    [("4.4.3", NAME_NOT_FOUND), ("4.4.1", CONNECTION_TIMED_OUT)],
    ids=["name-not-found", "connection-timed-out"],
)
def test_expiries_after_a_domain_that_never_resolves_or_answers_still_suppress(
    db_url: str, clock: FakeClock, tmp_path: Path, dsn: str, text: str, postfix_gives_up: bool
) -> None:
    # docs/hygiene.md: "An expiry after a full mailbox, a host that never answered or could not
    # be found ... still counts: a dead domain is still found out."
    address = "reader@gone.example"
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        _postfix_campaigns(
            engine, clock, tmp_path, address, dsn, text, postfix_gives_up=postfix_gives_up
        )
        assert engine.status(address).standing is Standing.SUPPRESSED
        faults = _faults(engine)
        assert faults["expiries"] == faults["deferrals"]
        assert not faults["expiries"] & H.expiry_exempt_faults


# ---- the engine's policy, not the shipped one, judges a Postfix expiry -----------------------

#: A site's own reading of a reply the shipped rules call the recipient's: this destination
#: answers a sender with a poor reputation with it.
SITE_RULE = """
[[rule]]
id = "site.reputation_450"
text = "(?i)mailbox temporarily unavailable"
class = [4]
outcome = "deferred"
reason = "bad_reputation"
fault = "sender"
source = "our postmaster's notes"
why = "bigmail.example defers senders of poor reputation with this text"
"""
UNAVAILABLE = (
    "host mx.bigmail.example[198.51.100.7] said: 450 4.2.0 Mailbox temporarily unavailable "
    "(in reply to RCPT TO command)"
)


@pytest.mark.parametrize("postfix_gives_up", [True, False], ids=["postfix", "engine"])
def test_an_expiry_keeps_the_fault_the_engines_own_policy_gave_the_last_deferral(
    db_url: str, clock: FakeClock, tmp_path: Path, postfix_gives_up: bool
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(SITE_RULE)
    site = load_policy(path)
    address = "reader@bigmail.example"
    with Engine(db_url, policy=site, clock=clock) as engine:
        _postfix_campaigns(
            engine,
            clock,
            tmp_path,
            address,
            "4.2.0",
            UNAVAILABLE,
            postfix_gives_up=postfix_gives_up,
        )
        assert engine.status(address).standing is not Standing.SUPPRESSED
        assert _faults(engine) == {"deferrals": {Fault.SENDER}, "expiries": {Fault.SENDER}}


# ---- a relay's give-up reported in a DSN --------------------------------------------------------


#: What relays write when they give up: a bare X.4.7, Exchange's "QUEUE.Expired".
GAVE_UP = [
    ("4.4.7", None),
    ("4.4.7", "400 4.4.7 Message delayed"),
    ("5.4.7", "550 5.4.7 QUEUE.Expired; message expired"),
]


@pytest.mark.parametrize(("status", "diagnostic"), GAVE_UP, ids=["bare", "delayed", "exchange"])
def test_a_relays_give_up_in_a_dsn_after_days_of_its_blocklisting_suppresses_nobody(
    db_url: str, clock: FakeClock, tmp_path: Path, status: str, diagnostic: str | None
) -> None:
    # The sender's relay reports by DSN: "delayed" notices quoting the blocklist (the sender's
    # fault), then "failed" with X.4.7 once its own lifetime ran out, a day before the
    # engine's. The same week after week: the sender's own block, which must not wipe its list.
    address = "reader@bigmail.example"
    start = clock()
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        for week in range(CAMPAIGNS):
            first = start + week * WEEK
            message_id = f"<c{week}@list.example>"
            mbox = tmp_path / f"bounces.{week}"
            mbox.write_text(
                dsn(first, "delayed", "4.7.1", BLOCKLISTED, message_id)
                + dsn(first + 2 * DAY, "delayed", "4.7.1", BLOCKLISTED, message_id)
                + dsn(first + 4 * DAY, "failed", status, diagnostic, message_id)
            )
            now = first + POLICY.backoff.lifetime + timedelta(hours=2)
            clock.set(now)
            summary = run_nightly(engine, [mbox], now=now, fmt="mbox")
            assert summary.rejected_count == 0, summary.rejected
        assert engine.status(address).standing is not Standing.SUPPRESSED
        with Session(engine.db) as s:
            gave_up = s.scalars(sa.select(Event.fault).where(Event.reason == Reason.EXPIRED)).all()
        assert len(gave_up) >= CAMPAIGNS
        assert set(gave_up) == {Fault.SENDER}


def test_a_relays_give_up_after_days_of_a_full_mailbox_still_counts(
    db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    address = "reader@bigmail.example"
    full = "452 4.2.2 The email account that you tried to reach is over quota"
    start = clock()
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        for week in range(CAMPAIGNS):
            first = start + week * WEEK
            message_id = f"<c{week}@list.example>"
            mbox = tmp_path / f"bounces.{week}"
            mbox.write_text(
                dsn(first, "delayed", "4.2.2", full, message_id)
                + dsn(first + 4 * DAY, "failed", "4.4.7", None, message_id)
            )
            now = first + POLICY.backoff.lifetime + timedelta(hours=2)
            clock.set(now)
            run_nightly(engine, [mbox], now=now, fmt="mbox")
        assert engine.status(address).standing is Standing.SUPPRESSED


def test_a_give_up_recorded_through_the_api_keeps_its_deliverys_last_deferral_fault(
    db_url: str, clock: FakeClock
) -> None:
    # A mailer that logs its own give-up as an X.4.7 reply, after a blocklisting.
    start = clock()
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        engine.record("a@bigmail.example", BLOCKLISTED, message_id="m1", at=start)
        engine.record(
            "a@bigmail.example", "4.4.7 delivery time expired", message_id="m1", at=start + DAY
        )
        # Another delivery, and another recipient, in one chunk: each their own.
        engine.record_many(
            [
                {"recipient": "b@bigmail.example", "message_id": "m2", "at": start,
                 "reply": "452 4.2.2 mailbox full"},
                {"recipient": "a@bigmail.example", "message_id": "m2", "at": start,
                 "reply": "421 4.7.0 [TSS04] Messages temporarily deferred"},
                {"recipient": "b@bigmail.example", "message_id": "m2", "at": start + DAY,
                 "reply": "4.4.7 delivery time expired"},
                {"recipient": "a@bigmail.example", "message_id": "m2", "at": start + DAY,
                 "reply": "4.4.7 delivery time expired"},
                {"recipient": "c@bigmail.example", "message_id": "m3", "at": start + DAY,
                 "reply": "4.4.7 delivery time expired"},
            ]
        )  # fmt: skip
        with Session(engine.db) as s:
            rows = s.execute(
                sa.select(Recipient.address_key, Event.message_id, Event.fault)
                .join(Recipient, Recipient.id == Event.recipient_id)
                .where(Event.reason == Reason.EXPIRED)
            ).all()
    assert {(a, m): f for a, m, f in rows} == {
        ("a@bigmail.example", "m1"): Fault.SENDER,
        ("b@bigmail.example", "m2"): Fault.RECIPIENT,
        ("a@bigmail.example", "m2"): Fault.DESTINATION,
        # Nothing before it: no fault to keep.
        ("c@bigmail.example", "m3"): Fault.UNKNOWN,
    }


# ---- the engine: the same faults and suppressions whatever the chunks and the path ------------

#: Deferrals of each kind of trouble, as the engine classifies them.
TROUBLES = {
    "sender": BLOCKLISTED,
    "destination": "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
    "recipient": "452 4.2.2 The email account that you tried to reach is over quota",
    "network": "451 4.4.1 No answer from host",
}
GIVE_UP = "4.4.7 delivery time expired"


def _campaign_records(seed: int, start: datetime) -> list[list[dict[str, Any]]]:
    """Weekly campaigns to a dozen addresses, each week's records shuffled: deferrals of one
    trouble per address and week, then (half the time) a relay's give-up a day before the
    engine's lifetime runs out, and now and then a deferral logged late, after the give-up."""
    rng = random.Random(seed)
    addresses = [f"reader{i}@{('bigmail.example', 'corp.example')[i % 2]}" for i in range(12)]
    lean = {a: rng.choice([["sender", "destination"], ["recipient", "network"], list(TROUBLES)])
            for a in addresses}  # fmt: skip
    weeks = []
    for week in range(CAMPAIGNS + 1):
        first = start + week * WEEK
        records: list[dict[str, Any]] = []
        for address in addresses:
            message_id = f"<c{week}@list.example>"
            trouble = TROUBLES[rng.choice(lean[address])]
            days = sorted(rng.sample(range(4 * 24), rng.randint(1, 4)))
            for hour in days:
                records.append({"recipient": address, "message_id": message_id,
                                "at": first + timedelta(hours=hour), "reply": trouble})  # fmt: skip
            if rng.random() < 0.5:
                records.append({"recipient": address, "message_id": message_id,
                                "at": first + 4 * DAY, "reply": GIVE_UP})  # fmt: skip
                if rng.random() < 0.3:
                    late = TROUBLES[rng.choice(list(TROUBLES))]
                    records.append({"recipient": address, "message_id": message_id,
                                    "at": first + timedelta(hours=days[-1] + 1),
                                    "reply": late})  # fmt: skip
        rng.shuffle(records)
        # A give-up recorded before its delivery's deferrals is judged on what came before.
        weeks.append(records)
    return weeks


def _wipe(db: sa.Engine) -> None:
    with db.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


def _stored(db: sa.Engine) -> tuple[Any, ...]:
    with Session(db) as s:
        faults = sorted(
            s.execute(
                sa.select(
                    Recipient.address_key, Event.message_id, Event.kind, Event.at, Event.fault
                )
                .join(Recipient, Recipient.id == Event.recipient_id)
                .where(Event.reason == Reason.EXPIRED)
            ).all()
        )
    return tuple(faults)


def _end(session: Session) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    suppressions = {
        (a.target, a.status, a.reason, a.rule, a.created_at)
        for a in session.scalars(
            sa.select(Action).where(
                Action.kind == ActionKind.SUPPRESS,
                Action.status.in_((ActionStatus.OPEN, ActionStatus.PENDING)),
            )
        )
    }
    standings = set(
        session.execute(
            sa.select(Recipient.address_key, Recipient.reason, Recipient.standing_since).where(
                Recipient.standing == Standing.SUPPRESSED
            )
        ).all()
    )
    return suppressions, standings


def _suppressed(db: sa.Engine) -> tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]:
    with Session(db) as s:
        return _end(s)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_give_ups_keep_the_same_faults_and_suppress_alike_whatever_the_chunks_and_the_path(
    db_url: str, clock: FakeClock, seed: int
) -> None:
    start = clock()
    weeks = _campaign_records(seed, start)
    seen: dict[tuple[int, str], tuple[Any, ...]] = {}
    for chunk in (1, 7, 1000):
        for path in ("incremental", "nightly"):
            clock.set(start)
            hook: Any = None if path == "incremental" else False
            with Engine(
                db_url, policy=POLICY, clock=clock, chunk_size=chunk, hygiene=hook
            ) as engine:
                for week, records in enumerate(weeks):
                    now = start + week * WEEK + POLICY.backoff.lifetime + timedelta(hours=1)
                    clock.set(now)
                    result = engine.record_many(records)
                    assert result.rejected == []
                    engine.expire_overdue(now)
                    if path == "nightly":
                        with Session(engine.db) as s, s.begin():
                            store_hygiene.evaluate(s, POLICY, now)
                faults = _stored(engine.db)
                ends = _suppressed(engine.db)
                seen[chunk, path] = (faults, ends)
                if path == "nightly":
                    with Session(engine.db) as s, s.begin():
                        store_hygiene.evaluate(s, POLICY, now, full=True)
                    seen[chunk, "full"] = (faults, _suppressed(engine.db))
                _wipe(engine.db)
    first = seen[1, "incremental"]
    for key, value in seen.items():
        assert value[0] == first[0], key
        assert value[1] == first[1], key
    faults, (suppressions, _) = first
    # The history means something: give-ups of every kind, after the sender's trouble and
    # after the address's, and expiries that suppress beside addresses that are spared.
    assert {fault for *_, fault in faults} >= {Fault.SENDER, Fault.RECIPIENT, Fault.DESTINATION}
    assert {f for _, _, kind, _, f in faults if kind is not EventKind.EXPIRY} - {Fault.UNKNOWN}
    assert {target for target, _, reason, _, _ in suppressions if reason is Reason.EXPIRED}
    assert len({target for target, *_ in suppressions}) < 12


# ---- every path agrees on histories full of expiries ------------------------------------------

#: An event of a history: its outcome, reason, fault and flags.
KINDS: dict[str, tuple[Outcome, Reason, Fault, dict[str, Any]]] = {
    "delivered": (Outcome.DELIVERED, Reason.DELIVERED, Fault.UNKNOWN, {}),
    "soft": (Outcome.DEFERRED, Reason.MAILBOX_FULL, Fault.RECIPIENT, {}),
    "ambiguous": (Outcome.BOUNCED, Reason.REJECTED, Fault.RECIPIENT, {}),
    "blocked": (Outcome.BLOCKED, Reason.BLOCKED, Fault.SENDER, {}),
    # The engine's and a relay's expiries, after each kind of trouble.
    **{
        f"expiry-{fault.value}": (
            Outcome.DEFERRED,
            Reason.EXPIRED,
            fault,
            {"kind": EventKind.EXPIRY},
        )
        for fault in Fault
    },
    # A DSN's "failed 5.4.7": a bounce, never decisive.
    "bounced-expiry-sender": (Outcome.BOUNCED, Reason.EXPIRED, Fault.SENDER, {}),
    "bounced-expiry-network": (Outcome.BOUNCED, Reason.EXPIRED, Fault.NETWORK, {}),
    # A give-up its delivery already had (a relay's report of the engine's, say): no strike.
    "restated-expiry-network": (
        Outcome.DEFERRED,
        Reason.EXPIRED,
        Fault.NETWORK,
        {"kind": EventKind.EXPIRY, "restated": True},
    ),
    "restated-bounced-expiry-unknown": (
        Outcome.BOUNCED,
        Reason.EXPIRED,
        Fault.UNKNOWN,
        {"restated": True},
    ),
}

Step = tuple[str, datetime, str]


def _expiry_history(seed: int, start: datetime) -> list[Step]:
    """A few hundred events to a dozen addresses over 60 days, most of them expiries of every
    fault, so that some addresses end suppressed by expiries and some are spared by them."""
    rng = random.Random(seed)
    addresses = [f"user{i}@{('example.com', 'example.org')[i % 2]}" for i in range(12)]
    kinds = list(KINDS)
    weights = [6 if k == "delivered" else 1 if k in ("ambiguous", "blocked") else 3 for k in kinds]
    lean = {a: rng.choice(["exempt", "strike", "mixed"]) for a in addresses}
    steps: list[Step] = []
    for _ in range(300):
        address = rng.choice(addresses)
        kind = rng.choices(kinds, weights)[0]
        if kind.startswith("expiry-"):
            if lean[address] == "exempt":
                kind = f"expiry-{rng.choice(sorted(H.expiry_exempt_faults)).value}"
            elif lean[address] == "strike":
                kind = rng.choice(["expiry-network", "expiry-unknown", "expiry-recipient"])
        if lean[address] != "mixed" and kind == "delivered" and rng.random() < 0.8:
            continue
        at = start + timedelta(minutes=rng.randrange(60 * 24 * 60))
        steps.append((address, at.replace(second=0, microsecond=0), kind))
    return steps


def _write(history: History, chunk: list[Step]) -> list[Event]:
    rows = []
    for address, at, kind in chunk:
        outcome, reason, fault, flags = KINDS[kind]
        rows.append(history.event(address, at, outcome, reason, fault=fault, **flags))
    return rows


def _forget(session: Session) -> None:
    session.execute(sa.update(Recipient).values(suppression_action_id=None))
    for table in (Event, Action, Recipient, Bookmark):
        session.execute(sa.delete(table))
    session.flush()
    session.expunge_all()


def _on_every_path(
    session: Session, chunks: list[list[Step]], now: datetime, policy: Policy
) -> Iterator[tuple[str, Any]]:
    history = History(session, policy)
    for chunk in chunks:
        history.run(_write(history, chunk), now)
    yield "incremental", _end(session)
    _forget(session)
    history = History(session, policy)
    for chunk in chunks:
        _write(history, chunk)
        store_hygiene.evaluate(session, policy, now)
    yield "nightly", _end(session)
    _forget(session)
    history = History(session, policy)
    for chunk in chunks:
        _write(history, chunk)
    store_hygiene.evaluate(session, policy, now, full=True)
    yield "full", _end(session)
    _forget(session)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_history_of_expiries_of_every_fault_reaches_the_same_suppressions_on_every_path(
    session: Session, frozen_now: datetime, seed: int
) -> None:
    steps = _expiry_history(seed, frozen_now)
    now = frozen_now + 61 * DAY
    ends = dict(_on_every_path(session, shuffled_chunks(steps, seed), now, POLICY))
    assert ends["nightly"] == ends["incremental"]
    assert ends["full"] == ends["incremental"]
    # The history means something: expiries suppress some addresses, and others, with as many
    # expiries after the sender's or the destination's trouble, are spared.
    suppressions, _ = ends["full"]
    by_expiry = {target for target, _, reason, _, _ in suppressions if reason is Reason.EXPIRED}
    assert by_expiry
    spared = {
        address
        for address, _, kind in steps
        if kind.startswith("expiry-") and Fault(kind.split("-", 1)[1]) in H.expiry_exempt_faults
    } - {target for target, *_ in suppressions}
    assert spared


def test_every_evidence_class_of_an_expiry_has_its_sql_twin(
    session: Session, frozen_now: datetime
) -> None:
    # evidence_of and the store's SQL predicate for a soft strike agree on every expiry, under
    # the shipped exemptions and under none, restated (a give-up its delivery already had) or
    # not, and on other soft reasons flagged restated (which the engine never writes).
    history = History(session, POLICY)
    cases = []
    for outcome in (Outcome.DEFERRED, Outcome.BOUNCED):
        for reason in (Reason.EXPIRED, Reason.MAILBOX_FULL):
            for fault in Fault:
                for restated in (False, True):
                    row = history.event(
                        f"x{len(cases)}@example.com",
                        frozen_now,
                        outcome,
                        reason,
                        fault=fault,
                        restated=restated,
                    )
                    cases.append((row.id, outcome, reason, fault, restated))
    strict = dataclasses.replace(
        POLICY, hygiene=dataclasses.replace(H, expiry_exempt_faults=frozenset())
    )
    for policy in (POLICY, strict):
        soft = set(
            session.scalars(
                sa.select(Event.id).where(store_hygiene._is_soft(Event.__table__.c, policy))
            )
        )
        for id_, outcome, reason, fault, restated in cases:
            pure = evidence_of(
                outcome,
                reason,
                decisive=False,
                throttle=False,
                policy=policy.hygiene,
                fault=fault,
                restated=restated,
            )
            assert (pure is Evidence.SOFT) == (id_ in soft), (outcome, reason, fault, restated)
        # A restated give-up is never a strike, whatever its fault.
        restated_give_ups = {i for i, _, why, _, again in cases if again and why is Reason.EXPIRED}
        assert not restated_give_ups & soft


# ---- the policy setting -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("[1, 2]", "expected a list of fault names"),
        ('["sender", "blocklist"]', "unknown fault(s) ['blocklist']"),
        ('["Sender"]', "unknown fault(s) ['Sender']"),
        ("{ sender = true }", "expected a list of fault names"),
    ],
)
def test_a_wrong_expiry_exempt_faults_names_the_file_and_the_line(
    tmp_path: Path, value: str, said: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f"[hygiene]\nsoft_strikes = 3\nexpiry_exempt_faults = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert f"{path}:3" in message
    assert "hygiene.expiry_exempt_faults" in message
    assert said in message


@pytest.mark.parametrize(
    "value", ['["sender"]', "[]", '["recipient", "network", "domain", "unknown"]']
)
def test_the_printed_policy_loads_back_with_the_same_expiry_exemptions(
    tmp_path: Path, value: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(f"[hygiene]\nexpiry_exempt_faults = {value}\n")
    policy = load_policy(path)
    shown = CliRunner().invoke(cli, ["--policy", str(path), "policy", "show", "--format", "toml"])
    assert shown.exit_code == 0, shown.output
    printed = shown.output
    assert "\nexpiry_exempt_faults = [" in printed
    again = tmp_path / "printed.toml"
    again.write_text(printed)
    assert load_policy(again).hygiene.expiry_exempt_faults == policy.hygiene.expiry_exempt_faults


# ---- the shipped samples ----------------------------------------------------------------------


def test_the_shipped_samples_still_give_the_readmes_counts_and_their_expiries_still_count(
    db_url: str,
) -> None:
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    with Engine(db_url, clock=lambda: now) as engine:
        summary = run_nightly(engine, [EXAMPLES], now=now)
        with Session(engine.db) as s:
            expiries = s.execute(
                sa.select(Event.fault, Event.rule).where(Event.kind == EventKind.EXPIRY)
            ).all()
    assert summary.recorded == 512
    assert (summary.actions["suppress"], summary.actions["alert"]) == (32, 6)
    # Postfix gave up on legacy.example.net after days of connection time-outs: strikes.
    assert expiries == [(Fault.NETWORK, "postfix.expired")] * 3
