"""One address in two Unicode forms (RFC 6532 section 3.1: NFC) through the sender's API.

A DSN from an SMTPUTF8 server (RFC 6533) or a mailer's log may name `jörg@example.de` with o and
a combining diaeresis (NFD) where the sender wrote a precomposed ö (NFC), or the other way round:
both are one recipient, so what is recorded in one form answers for the other.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import FakeClock, dump_store
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from deliverability.addresses import normalize_address
from deliverability.engine import Engine, ReplyRecord, _event_key, _reply_key_text, event_key
from deliverability.ingest.convert import POSTFIX_EXPIRED_VERDICT
from deliverability.policy import load_policy
from deliverability.replies import parse_reply
from deliverability.store.models import Event, Recipient
from deliverability.verdicts import Verdict
from deliverability.vocabulary import EventKind, Fault, Outcome, Reason, Standing

POLICY = load_policy()
NFC = "j\u00f6rg@example.de"
NFD = "jo\u0308rg@example.de"
USER_UNKNOWN = "550 5.1.1 no such user"
MAILBOX_FULL = "452 4.2.2 mailbox full"


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    with Engine(db_url, policy=POLICY, clock=clock) as e:
        yield e


@pytest.mark.parametrize(
    ("recorded", "asked"), [(NFD, NFC), (NFC, NFD)], ids=["nfd-then-nfc", "nfc-then-nfd"]
)
def test_a_hard_bounce_in_one_form_stops_a_send_to_the_other(
    engine: Engine, recorded: str, asked: str
) -> None:
    decision = engine.record(recorded, "550 5.1.1 no such user", message_id="m1")
    assert decision.sendable is False
    assert engine.is_sendable(asked) is False
    assert engine.why_not_sendable(asked) == engine.why_not_sendable(recorded)
    sendable, reasons = engine.sendable_with_reasons([asked, "ann@example.de"])
    assert sendable == ["ann@example.de"]
    assert set(reasons) == {asked}
    assert engine.filter_sendable([asked, recorded, "ann@example.de"]) == ["ann@example.de"]


def test_a_manual_suppression_in_one_form_stops_a_send_to_the_other(engine: Engine) -> None:
    engine.suppress(NFD, "asked to leave", by="support")
    assert engine.filter_sendable([NFC, "J\u00d6RG@example.de"]) == []
    engine.unsuppress(NFC, by="support")
    assert engine.filter_sendable([NFD]) == [NFD]


def test_both_forms_are_one_recipient_stored_in_nfc_and_found_by_either(engine: Engine) -> None:
    engine.record(NFD, "451 4.2.2 mailbox full", message_id="m1")
    engine.record(NFC, "550 5.1.1 no such user", message_id="m1")
    with Session(engine.db) as session:
        rows = session.execute(select(Recipient.address, Recipient.address_key)).all()
        assert session.scalar(select(func.count()).select_from(Recipient)) == 1
    assert [tuple(r) for r in rows] == [(NFC, NFC)]
    for form in (NFC, NFD, "JO\u0308RG@example.de"):
        status = engine.status(form)
        assert status.address == NFC
        assert status.standing is Standing.SUPPRESSED
        assert status.counters["events_count"] == 2


def test_both_forms_in_one_batch_are_one_recipient(engine: Engine, clock: FakeClock) -> None:
    # record_many judges a chunk together: the two forms meet in it by their key.
    at = clock.now.isoformat()
    result = engine.record_many(
        [
            {"recipient": NFD, "reply": "451 4.2.2 mailbox full", "message_id": "m1", "at": at},
            {"recipient": NFC, "reply": "550 5.1.1 no such user", "message_id": "m1", "at": at},
            {"recipient": "J\u00d6RG@example.de", "reply": "250 2.0.0 OK", "message_id": "m2",
             "at": at},
        ]
    )  # fmt: skip
    assert result.recorded == 3
    with Session(engine.db) as session:
        assert session.scalars(select(Recipient.address_key)).all() == [NFC]
    assert engine.status(NFD).counters["events_count"] == 3
    assert engine.is_sendable(NFC) is False


# Versions before NFC keys (migration 0016) keyed an address by its local part as written,
# lower-cased: the idempotency key of an event given then in NFD was made of that key. A log read
# again after the upgrade (the nightly job, record_many over the same input) must find it.


def _given_again(engine: Engine, item: ReplyRecord, how: str) -> bool:
    """Record `item` again by `record` or `record_many`: whether it was a duplicate."""
    if how == "record":
        return engine.record(
            item.recipient,
            item.reply or "",
            message_id=item.message_id,
            attempt=item.attempt,
            at=item.at,
            kind=item.kind,
        ).duplicate
    result = engine.record_many([item])
    return (result.recorded, result.duplicates) == (0, 1)


def _keyed_as_then(engine: Engine, keys: dict[str, str]) -> None:
    """Give stored events the keys an earlier version made of them ({key now: key then})."""
    with engine.db.begin() as conn:
        for now_key, then_key in keys.items():
            moved = conn.execute(update(Event).where(Event.key == now_key).values(key=then_key))
            assert moved.rowcount == 1


@pytest.mark.parametrize("how", ["record", "record_many"])
@pytest.mark.parametrize(
    ("given", "then"),
    [
        ("Jo\u0308rg@Example.de", NFD),
        # In NFC as written, out of it once lower-cased: t and the diaeresis compose (U+1E97).
        ("T\u0308om@example.de", "t\u0308om@example.de"),
    ],
    ids=["nfd", "nfc-until-lower-cased"],
)
@pytest.mark.parametrize(
    ("message_id", "attempt", "reply"),
    [
        ("m1@list.example", 1, USER_UNKNOWN),  # a result of a delivery stored
        (None, None, USER_UNKNOWN),  # a bounce that lost its message id: the recipient's
        ("m2@list.example", 2, MAILBOX_FULL),  # a deferral: one strike more, were it counted
    ],
    ids=["delivery", "no-message-id", "deferral"],
)
def test_an_event_stored_under_the_key_of_then_of_its_address_is_a_duplicate_given_again(
    engine: Engine,
    db_url: str,
    clock: FakeClock,
    how: str,
    given: str,
    then: str,
    message_id: str | None,
    attempt: int | None,
    reply: str,
) -> None:
    item = ReplyRecord(
        recipient=given,
        reply=reply,
        message_id=message_id,
        attempt=attempt,
        at=clock.now,
    )
    engine.record_many([item])
    now_key = event_key(
        message_id, normalize_address(given).key, attempt, clock.now, parse_reply(reply)
    )
    _keyed_as_then(
        engine, {now_key: event_key(message_id, then, attempt, clock.now, parse_reply(reply))}
    )
    before = dump_store(db_url)
    assert _given_again(engine, item, how)
    assert dump_store(db_url) == before
    assert engine.status(given).counters["events_count"] == 1


@pytest.mark.parametrize(
    ("kind", "text", "verdict"),
    [
        (
            EventKind.AUTO_REPLY,
            "I am on holiday",
            Verdict(Outcome.INFORMATIONAL, Reason.VACATION, Fault.RECIPIENT, rule="rfc3834"),
        ),
        (EventKind.EXPIRY, None, POSTFIX_EXPIRED_VERDICT),
    ],
    ids=["auto-reply", "relay-expiry"],
)
def test_an_event_of_no_delivery_stored_under_the_key_of_then_of_its_address_is_a_duplicate(
    engine: Engine,
    db_url: str,
    clock: FakeClock,
    kind: EventKind,
    text: str | None,
    verdict: Verdict,
) -> None:
    # An auto-reply or a relay's expiry to a message never recorded makes no delivery: that its
    # recipient is stored is all that says the event may be.
    item = ReplyRecord(
        recipient=NFD, message_id="m1", kind=kind, text=text, verdict=verdict, at=clock.now
    )
    engine.record_many([item])
    _keyed_as_then(
        engine,
        {event_key("m1", NFC, None, clock.now, text): event_key("m1", NFD, None, clock.now, text)},
    )
    before = dump_store(db_url)
    again = engine.record_many([item])
    assert (again.recorded, again.duplicates) == (0, 1)
    assert dump_store(db_url) == before


@pytest.mark.parametrize(
    ("given_id", "given_key"),
    [("<m1@list.example>", NFD), ("m1@list.example", NFD), ("<m1@list.example>", NFC)],
    ids=["before-bare-ids-and-nfc-keys", "before-nfc-keys", "before-bare-ids"],
)
@pytest.mark.parametrize("how", ["record", "record_many"])
def test_an_event_given_with_a_bracketed_id_in_nfd_is_found_under_each_key_of_then(
    engine: Engine, db_url: str, clock: FakeClock, how: str, given_id: str, given_key: str
) -> None:
    # A store written before bare message ids (0006) and NFC keys (0016) holds the key made of
    # both as given; one written between the two, of the bare id and the address key of then;
    # one written before bare ids from the NFC form, of the bracketed id and the key of now.
    item = ReplyRecord(
        recipient=NFD, reply=USER_UNKNOWN, message_id="<m1@list.example>", attempt=1, at=clock.now
    )
    engine.record_many([item])
    reply = _reply_key_text(parse_reply(USER_UNKNOWN))
    _keyed_as_then(
        engine,
        {
            _event_key("m1@list.example", NFC, 1, clock.now, reply): _event_key(
                given_id, given_key, 1, clock.now, reply
            )
        },
    )
    before = dump_store(db_url)
    assert _given_again(engine, item, how)
    assert dump_store(db_url) == before


@pytest.mark.parametrize("how", ["record", "record_many"])
@pytest.mark.parametrize(("first", "then"), [(NFD, NFC), (NFC, NFD)], ids=["nfd-nfc", "nfc-nfd"])
def test_an_event_recorded_in_one_form_is_a_duplicate_given_again_in_the_other(
    engine: Engine, db_url: str, clock: FakeClock, how: str, first: str, then: str
) -> None:
    item = ReplyRecord(
        recipient=first, reply=MAILBOX_FULL, message_id="m1", attempt=1, at=clock.now
    )
    engine.record_many([item])
    before = dump_store(db_url)
    assert _given_again(engine, dataclasses.replace(item, recipient=then), how)
    assert dump_store(db_url) == before


@pytest.mark.parametrize(
    ("given", "lookups"),
    [("ann@example.de", 1), (NFC, 1), ("J\u00d6RG@example.de", 1), (NFD, 2)],
    ids=["ascii", "nfc", "nfc-upper-case", "nfd"],
)
def test_only_an_address_keyed_otherwise_then_has_its_old_event_key_looked_for(
    engine: Engine, clock: FakeClock, given: str, lookups: int
) -> None:
    # An address whose key never changed costs no query more; one in NFD costs one, and only
    # where the event can be stored: for a delivery stored, not for a new message.
    engine.record(given, MAILBOX_FULL, message_id="m1", attempt=1, at=clock.now)
    asked: list[str] = []

    def seen(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        if _KEY_LOOKUP.match(sql):
            asked.append(sql)

    sa.event.listen(engine.db, "before_cursor_execute", seen)
    try:
        engine.record(given, MAILBOX_FULL, message_id="m1", attempt=2, at=clock.now)
        assert len(asked) == lookups
        asked.clear()
        # A new message's event can be stored under no key, today's or an old one.
        engine.record_many(
            [{"recipient": given, "reply": MAILBOX_FULL, "message_id": "m2", "attempt": 1}]
        )
        assert len(asked) == 0
        # Nor a recipient not stored, even by an event that makes no delivery.
        asked.clear()
        vacation = Verdict(Outcome.INFORMATIONAL, Reason.VACATION, Fault.RECIPIENT, rule="rfc3834")
        engine.record_many(
            [
                ReplyRecord(
                    recipient="zo\u0308e@example.nl",
                    message_id="<m3@list.example>",
                    kind=EventKind.AUTO_REPLY,
                    text="I am on holiday",
                    verdict=vacation,
                    at=clock.now,
                )
            ]
        )
        assert len(asked) == 0
    finally:
        sa.event.remove(engine.db, "before_cursor_execute", seen)


#: The chunk writer's look-up of event keys, in any backend's quoting of `key`.
_KEY_LOOKUP = re.compile(
    r"\s*SELECT\s+\W?key\W?\s+FROM\s+events\s+WHERE\s+\W?key\W?\s+(?:IN\b|=\s*ANY\b)"
)


def test_the_key_of_then_is_looked_for_even_when_its_cache_was_emptied_apart_from_the_address(
    engine: Engine, db_url: str, clock: FakeClock
) -> None:
    # Another thread may empty the engine's caches between its reads of them (a full cache is
    # cleared), leaving the address cached and its key of then not: the event stored under
    # that key must still be found, not recorded a second time.
    item = ReplyRecord(recipient=NFD, reply=MAILBOX_FULL, message_id="m1", attempt=1, at=clock.now)
    engine.record_many([item])
    reply = parse_reply(MAILBOX_FULL)
    _keyed_as_then(
        engine,
        {event_key("m1", NFC, 1, clock.now, reply): event_key("m1", NFD, 1, clock.now, reply)},
    )
    engine._addresses[NFD] = normalize_address(NFD)
    engine._former_keys.clear()
    before = dump_store(db_url)
    again = engine.record_many([item])
    assert (again.recorded, again.duplicates) == (0, 1)
    assert dump_store(db_url) == before
