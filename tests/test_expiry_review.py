"""A review of "an expiry keeps the fault of its delivery's last deferral" (docs/hygiene.md).

An expiry is a soft strike only when the delivery's last deferral was about the address: not
after the sender's, the message's or the destination's own trouble
(`hygiene.expiry_exempt_faults`). Here: the ways a delivery gives up (the engine's lifetime, a
Postfix ``status=expired``, a relay's DSN that says 4.4.7) each keep that fault, a dead domain is
still found out, every path of the hygiene rules agrees on histories full of expiries, and the
policy setting reads, prints and loads back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import FakeClock
from sqlalchemy.orm import Session

from deliverability.engine import Engine
from deliverability.nightly import run_nightly
from deliverability.policy import load_policy
from deliverability.store.models import Event
from deliverability.vocabulary import (
    EventKind,
    Fault,
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
