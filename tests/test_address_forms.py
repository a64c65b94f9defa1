"""One address in two Unicode forms (RFC 6532 section 3.1: NFC) through the sender's API.

A DSN from an SMTPUTF8 server (RFC 6533) or a mailer's log may name `jörg@example.de` with o and
a combining diaeresis (NFD) where the sender wrote a precomposed ö (NFC), or the other way round:
both are one recipient, so what is recorded in one form answers for the other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import FakeClock
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deliverability.engine import Engine
from deliverability.policy import load_policy
from deliverability.store.models import Recipient
from deliverability.vocabulary import Standing

POLICY = load_policy()
NFC = "j\u00f6rg@example.de"
NFD = "jo\u0308rg@example.de"


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
