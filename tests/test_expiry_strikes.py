"""An expiry is a soft strike only when the delivery's last deferral was about the address.

A sender on a blocklist that a destination answers with 4xx (a temporary refusal, RFC 5321
4.2.1) sees every delivery there deferred for the whole retry lifetime, then expired. Counted as
strikes, three such campaigns a week apart suppressed every address at the destination: the
sender's own block wiping its list, which DESIGN.md's hygiene rules exist to prevent. The same
goes for a destination that pushes back for days (421, rate limits).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import FakeClock
from sqlalchemy import select
from sqlalchemy.orm import Session

from deliverability.engine import Engine
from deliverability.ingest.convert import log_item
from deliverability.ingest.postfix import read_postfix_log
from deliverability.ingest.records import LogRecord
from deliverability.policy import load_policy
from deliverability.store.models import Event
from deliverability.vocabulary import EventKind, Fault, Standing

POLICY = load_policy()
H = POLICY.hygiene

BLOCKLISTED = "451 4.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org"
PUSHED_BACK = "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred"
MAILBOX_FULL = "452 4.2.2 The email account that you tried to reach is over quota"


def _campaigns(engine: Engine, clock: FakeClock, reply: str, addresses: list[str]) -> None:
    """One campaign a week, each delivery deferred with `reply` until its lifetime runs out:
    as many expiries per address as it takes to suppress, spanning well over the soft span."""
    start = clock()
    weeks = H.soft_strikes + 1
    assert (weeks - 1) * timedelta(days=7) >= H.soft_span
    for week in range(weeks):
        clock.set(start + week * timedelta(days=7))
        for address in addresses:
            engine.record(address, reply, message_id=f"<c{week}@list.example>")
        clock.advance(POLICY.backoff.lifetime + timedelta(hours=1))
        assert engine.expire_overdue().recorded == len(addresses)


@pytest.mark.parametrize(
    ("reply", "fault"), [(BLOCKLISTED, Fault.SENDER), (PUSHED_BACK, Fault.DESTINATION)]
)
def test_expiries_after_a_block_or_a_push_back_suppress_nobody(
    db_url: str, clock: FakeClock, reply: str, fault: Fault
) -> None:
    addresses = [f"reader{i}@bigmail.example" for i in range(5)]
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        _campaigns(engine, clock, reply, addresses)
        assert engine.filter_sendable(addresses) == addresses
        assert Standing.SUPPRESSED not in {engine.status(a).standing for a in addresses}
        with Session(engine.db) as s:
            faults = set(s.scalars(select(Event.fault).where(Event.kind == EventKind.EXPIRY)))
    # Each expiry keeps whose trouble it was, for `--full` and a changed policy to judge again.
    assert faults == {fault}


def test_expiries_after_a_full_mailbox_still_suppress(db_url: str, clock: FakeClock) -> None:
    addresses = ["full@example.com"]
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        _campaigns(engine, clock, MAILBOX_FULL, addresses)
        assert engine.filter_sendable(addresses) == []
        assert engine.status("full@example.com").standing is Standing.SUPPRESSED


def test_a_policy_that_exempts_no_fault_counts_every_expiry(
    db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text("[hygiene]\nexpiry_exempt_faults = []\n")
    strict = load_policy(path)
    assert strict.hygiene.expiry_exempt_faults == frozenset()
    with Engine(db_url, policy=strict, clock=clock) as engine:
        _campaigns(engine, clock, BLOCKLISTED, ["reader@bigmail.example"])
        assert engine.status("reader@bigmail.example").standing is Standing.SUPPRESSED


def test_a_postfix_expiry_keeps_the_fault_of_its_last_deferral(tmp_path: Path) -> None:
    log = (
        "Nov 28 06:01:02 mx postfix/smtp[101]: 4A1B2C3D4E: to=<reader@bigmail.example>, "
        "relay=mx.bigmail.example[198.51.100.7]:25, delay=1, delays=0/0/0/0, dsn=4.7.1, "
        f"status=deferred (host mx.bigmail.example[198.51.100.7] said: {BLOCKLISTED} "
        "(in reply to RCPT TO command))\n"
        "Nov 28 07:01:02 mx postfix/qmgr[99]: 4A1B2C3D4E: from=<list@example.com>, "
        "status=expired, returned to sender\n"
    )
    path = tmp_path / "mail.log"
    path.write_text(log)
    now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    records = [
        r
        for _, r in read_postfix_log(path, start_offset=0, now=now)
        if isinstance(r, LogRecord) and r.delivery_status == "expired"
    ]
    assert len(records) == 1
    item = log_item(records[0])
    assert item.kind is EventKind.EXPIRY
    assert item.verdict is not None
    assert item.verdict.fault is Fault.SENDER
