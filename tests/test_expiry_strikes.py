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
from factories_hygiene import PATHS, Night, on_every_path
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deliverability import reports
from deliverability.engine import Engine, ReplyRecord
from deliverability.ingest.convert import log_item
from deliverability.ingest.postfix import read_postfix_log
from deliverability.ingest.records import LogRecord
from deliverability.policy import load_policy
from deliverability.replies import parse_reply
from deliverability.store.models import Event
from deliverability.vocabulary import EventKind, Fault, Reason, Standing

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


# ---- the standing a give-up leaves -------------------------------------------------------------
#
# A give-up after the sender's (or the message's, or the destination's) own trouble is no strike,
# and it must not make the address look bad either: `status` showed it bounced, though it is
# sendable and nothing was its fault. Its standing is what the other results say, on every path
# of the rules (the engine keeps the standing as it records; the nightly and `--full` evaluations
# must not disagree with it).

ADDRESS = "reader@bigmail.example"
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
#: The message refused until it is given up.
REFUSED = "<m1@list.example>"
LIFETIME = POLICY.backoff.lifetime
NO_ANSWER = "451 4.4.1 No answer from host"
DELIVERED = "250 2.0.0 OK"
#: A relay's own give-up as a reply that names no fault: it takes its last deferral's.
RELAY_GAVE_UP = "550 5.4.7 QUEUE.Expired; message expired"


def _reply(message: str, reply: str, at: datetime) -> ReplyRecord:
    return ReplyRecord(recipient=ADDRESS, message_id=message, reply=reply, at=at, source="log")


def _postfix_gave_up(reply: str, at: datetime) -> ReplyRecord:
    """Postfix's `status=expired` for the refused message, with its last deferral's reply."""
    record = LogRecord(
        at=at,
        recipient=ADDRESS,
        message_id=REFUSED,
        attempt=None,
        reply=parse_reply(reply),
        source="mail.log",
        position="byte 0",
        raw=f"mx postfix/qmgr[99]: 4A1B2C3D4E: status=expired ({at})",
        queue_id="4A1B2C3D4E",
        delivery_status="expired",
    )
    return log_item(record, POLICY)


def _refused(reply: str, start: datetime) -> Night:
    """The refused message's only attempt, read an hour later."""
    return (start + HOUR, [_reply(REFUSED, reply, start)])


def _engine_gives_up(reply: str, start: datetime) -> list[Night]:
    return [_refused(reply, start), (start + LIFETIME + HOUR, [])]


def _delivered_before_it_gives_up(reply: str, start: datetime) -> list[Night]:
    # Another message is delivered after the refused one's last attempt: the newest result.
    delivered = _reply("<m2@list.example>", DELIVERED, start + LIFETIME - DAY)
    return [_refused(reply, start), (start + LIFETIME + HOUR, [delivered])]


def _postfix_gives_up(reply: str, start: datetime) -> list[Night]:
    gave_up = start + LIFETIME - DAY
    return [_refused(reply, start), (gave_up + HOUR, [_postfix_gave_up(reply, gave_up)])]


def _relay_reports_its_give_up(reply: str, start: datetime) -> list[Night]:
    gave_up = start + LIFETIME - DAY
    return [_refused(reply, start), (gave_up + HOUR, [_reply(REFUSED, RELAY_GAVE_UP, gave_up)])]


GIVE_UPS = {
    "engine": (_engine_gives_up, Standing.RETRYING),
    "engine-after-a-delivery": (_delivered_before_it_gives_up, Standing.DELIVERED),
    "postfix": (_postfix_gives_up, Standing.RETRYING),
    "relay-dsn": (_relay_reports_its_give_up, Standing.RETRYING),
}


def _on_every_path(
    db_url: str, clock: FakeClock, nights: list[Night]
) -> dict[str, tuple[Standing, bool, list[str]]]:
    """Path of the rules -> (the address's standing, is it sendable, the addresses `report
    undeliverable` lists), each path from an empty store (`on_every_path`)."""
    out = {}
    for path, engine in on_every_path(db_url, clock, POLICY, nights):
        with Session(engine.db) as s:
            gave_up = s.scalar(select(func.count()).where(Event.reason == Reason.EXPIRED))
            listed = [r["address"] for r in reports.undeliverable(s, policy=H)]
        assert gave_up, "the history holds a give-up"
        status = engine.status(ADDRESS)
        out[path] = (status.standing, status.sendable, listed)
    return out


@pytest.mark.parametrize("reply", [BLOCKLISTED, PUSHED_BACK], ids=["blocklisted", "pushed-back"])
@pytest.mark.parametrize("give_up", sorted(GIVE_UPS))
def test_a_give_up_after_the_senders_trouble_leaves_the_standing_what_the_deliveries_say(
    db_url: str, clock: FakeClock, give_up: str, reply: str
) -> None:
    history, expected = GIVE_UPS[give_up]
    nights = history(reply, clock())
    assert _on_every_path(db_url, clock, nights) == dict.fromkeys(PATHS, (expected, True, []))


@pytest.mark.parametrize("give_up", sorted(GIVE_UPS))
def test_a_give_up_after_the_addresss_own_trouble_still_leaves_it_bounced(
    db_url: str, clock: FakeClock, give_up: str
) -> None:
    # No answer from the host: the fault is the network's, a strike, and the address looks
    # bounced whoever reported the give-up (listed by `report undeliverable`, still sendable:
    # one strike does not suppress).
    history, _ = GIVE_UPS[give_up]
    nights = history(NO_ANSWER, clock())
    expected = (Standing.BOUNCED, True, [ADDRESS])
    assert _on_every_path(db_url, clock, nights) == dict.fromkeys(PATHS, expected)


def test_a_suppression_that_runs_out_after_an_exempt_give_up_leaves_the_address_retrying(
    db_url: str, clock: FakeClock
) -> None:
    # The suppression's end puts the standing back to what the deliveries say
    # (`lift_lapsed_suppressions`, and `status` before the nightly job lifts it): a delivery
    # given up after a blocklisting says nothing against the address.
    start = clock()
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        engine.suppress(ADDRESS, "asked by hand", by="ops", until=start + LIFETIME + DAY)
        engine.record(ADDRESS, BLOCKLISTED, message_id="<m1@list.example>", at=start)
        clock.set(start + LIFETIME + DAY / 2)
        assert engine.expire_overdue().recorded == 1
        assert engine.status(ADDRESS).standing is Standing.SUPPRESSED
        clock.set(start + LIFETIME + 2 * DAY)
        assert engine.status(ADDRESS).standing is Standing.RETRYING
        assert engine.lift_lapsed_suppressions() == 1
        assert engine.status(ADDRESS).standing is Standing.RETRYING
