"""Provider groups by MX host: a domain seen answered by a group's MX (Postfix relay=, a DSN's
Remote-MTA, a reply log's mx_host) is learned to belong to that group, and every throttle
lookup of the store treats it as if the policy listed it (frozen clock, every backend)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import FakeClock
from freezegun import freeze_time
from sqlalchemy.orm import Session

from deliverability.addresses import mx_host_of
from deliverability.cli import cli
from deliverability.engine import Engine, ReplyRecord
from deliverability.ingest.mailer_log import parse_mailer_row
from deliverability.policy import ThrottlePolicy, load_policy
from deliverability.store import hygiene as store_hygiene
from deliverability.store.models import Base, DomainProvider
from deliverability.store.session import create_engine
from deliverability.vocabulary import ActionKind, ActionScope

SHIPPED = load_policy()
#: The shipped rules (a 421 is a push-back), with groups written out for these tests: Google by
#: a listed domain and its MX suffixes, Microsoft by its MX suffix alone.
POLICY = dataclasses.replace(
    SHIPPED,
    throttle=ThrottlePolicy(
        provider_domains={"google": ("gmail.com",)},
        provider_mx_suffixes={
            "google": (".google.com", ".googlemail.com"),
            "microsoft": (".protection.outlook.com",),
        },
    ),
)
T = POLICY.throttle

GOOGLE_MX = "gmail-smtp-in.l.google.com[142.250.27.27]:25"
WORKSPACE_MX = "aspmx.l.google.com[198.51.100.26]:25"
MICROSOFT_MX = "initech-example.mail.protection.outlook.com[203.0.113.4]:25"
PUSHBACK = "421 4.7.0 Try again later, closing connection."
DELIVERED = "250 2.0.0 OK"
BLOCKED = "550 5.7.1 Message rejected due to local policy"


def _item(address: str, reply: str, at: datetime, mx: str | None = None, n: int = 0) -> Any:
    return ReplyRecord(
        recipient=address, message_id=f"m{n}-{address}", reply=reply, at=at, mx_host=mx
    )


def _either(i: int) -> str:
    """An address at one of two learned Google-hosted domains, in turn."""
    return f"u{i}@{'acme' if i % 2 else 'globex'}.example"


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    eng = Engine(db_url, policy=POLICY, clock=clock)
    yield eng
    eng.close()


def _learned(url: str) -> dict[str, tuple[str, str]]:
    db = create_engine(url)
    try:
        with Session(db) as s:
            return {r.domain: (r.provider, r.mx_host) for r in s.scalars(sa.select(DomainProvider))}
    finally:
        db.dispose()


# ---- the MX host as the sources write it -----------------------------------------------------


@pytest.mark.parametrize(
    ("written", "host"),
    [
        ("gmail-smtp-in.l.google.com[142.250.27.27]:25", "gmail-smtp-in.l.google.com"),
        ("ASPMX.L.Google.COM.", "aspmx.l.google.com"),
        ("mx.example.com [192.0.2.1]", "mx.example.com"),
        ("mx.example.com:2525", "mx.example.com"),
        ("none", None),
        ("local", None),
        ("127.0.0.1[127.0.0.1]:10025", None),
        ("[192.0.2.1]", None),
        ("private/dovecot-lmtp", None),
        ("mx." + "a" * 400 + ".example", None),
        ("", None),
    ],
)
def test_an_mx_host_is_read_from_a_relay_field_a_remote_mta_or_a_bare_name(
    written: str, host: str | None
) -> None:
    assert mx_host_of(written) == host


def test_a_reply_log_line_may_name_the_mx_host_and_a_non_string_one_is_refused() -> None:
    row = {"at": "2026-11-02T11:00:00Z", "recipient": "a@acme.example", "message_id": "m1"}
    record = parse_mailer_row({**row, "reply": DELIVERED, "mx_host": WORKSPACE_MX}, "log", "1")
    assert record.relay == WORKSPACE_MX
    with pytest.raises(ValueError, match="mx_host"):
        parse_mailer_row({**row, "reply": DELIVERED, "mx_host": 25}, "log", "1")


# ---- learning, and the throttles it widens ---------------------------------------------------


def test_a_421_from_a_google_mx_throttles_every_domain_learned_to_be_google_hosted(
    engine: Engine, clock: FakeClock, db_url: str
) -> None:
    now = clock()
    engine.record_many(
        [
            _item("ann@acme.example", DELIVERED, now - timedelta(minutes=30), WORKSPACE_MX),
            _item("ola@plain.example", DELIVERED, now - timedelta(minutes=29), "mx.plain.example"),
            # A push-back for a domain never seen before: the chunk learns its MX first.
            _item("bob@globex.example", PUSHBACK, now - timedelta(minutes=1), GOOGLE_MX),
        ]
    )
    assert _learned(db_url) == {
        "acme.example": ("google", "aspmx.l.google.com"),
        "globex.example": ("google", "gmail-smtp-in.l.google.com"),
    }
    throttle = engine.throttle_for("acme.example")
    assert throttle is not None
    assert (throttle.scope, throttle.destination) == (ActionScope.PROVIDER, "google")
    assert throttle.paused_until == now - timedelta(minutes=1) + T.initial_pause
    sendable, why = engine.sendable_with_reasons(
        ["carl@acme.example", "x@gmail.com", "dan@plain.example", "eve@never.example"]
    )
    assert sendable == ["dan@plain.example", "eve@never.example"]
    assert "acme.example (provider group google) is paused" in why["carl@acme.example"]
    assert engine.throttle_for("never.example") is None


def test_whether_domains_are_paused_is_one_statement_until_a_provider_group_is(
    engine: Engine, clock: FakeClock
) -> None:
    # Every record() asks twice (its retry schedule, then whether the address may be sent to);
    # it asked for the domains' learned groups first each time, a statement more.
    now = clock()
    engine.record_many([_item("ann@acme.example", DELIVERED, now - timedelta(hours=1), GOOGLE_MX)])
    statements: list[str] = []

    def keep(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if not sql.startswith("BEGIN"):  # SQLite's own
            statements.append(sql)

    domains = {"acme.example", "plain.example"}
    sa.event.listen(engine.db, "before_cursor_execute", keep)
    try:
        with engine.db.connect() as conn:
            assert store_hygiene.paused_until(conn, now, POLICY, domains) == {}
        assert len(statements) == 1, statements
        # A push-back from Google's MX for another domain pauses the group, and the learned
        # domain with it: that one is then looked up.
        engine.record_many(
            [_item("bob@globex.example", PUSHBACK, now - timedelta(minutes=1), GOOGLE_MX)]
        )
        with engine.db.connect() as conn:
            paused = store_hygiene.paused_until(conn, now, POLICY, domains)
    finally:
        sa.event.remove(engine.db, "before_cursor_execute", keep)
    assert paused == {"acme.example": now - timedelta(minutes=1) + T.initial_pause}


def test_a_paused_group_holds_back_the_due_retries_of_its_learned_domains(
    engine: Engine, clock: FakeClock
) -> None:
    now = clock()
    greylisted = "451 4.7.1 Greylisting in action, please come back later"
    engine.record_many(
        [
            _item("ann@acme.example", greylisted, now - timedelta(hours=2), WORKSPACE_MX),
            _item("ola@plain.example", greylisted, now - timedelta(hours=2)),
            _item("bob@globex.example", PUSHBACK, now - timedelta(minutes=1), GOOGLE_MX),
        ]
    )
    due = {r.address for r in engine.due_retries(now)}
    assert due == {"ola@plain.example"}


def test_blocks_spread_over_learned_domains_throttle_their_group(engine: Engine) -> None:
    now = engine.now()
    first = now - timedelta(minutes=20)
    engine.record_many(
        [
            _item("ann@acme.example", DELIVERED, first, WORKSPACE_MX),
            _item("bob@globex.example", DELIVERED, first, GOOGLE_MX),
        ]
    )
    # blocked_count blocks within blocked_window, half at each learned domain (none of them
    # names its MX): only together do they reach the count.
    engine.record_many(
        _item(_either(i), BLOCKED, first + timedelta(minutes=i))
        for i in range(1, T.blocked_count + 1)
    )
    throttle = engine.throttle_for("globex.example")
    assert throttle is not None
    assert (throttle.scope, throttle.destination) == (ActionScope.PROVIDER, "google")
    assert engine.throttle_for("plain.example") is None


def test_deliveries_to_learned_domains_lift_their_groups_throttle(engine: Engine) -> None:
    now = engine.now()
    start = now - timedelta(minutes=10)
    engine.record_many(
        [
            _item("ann@acme.example", DELIVERED, start, WORKSPACE_MX),
            _item("bob@globex.example", PUSHBACK, start + timedelta(seconds=1), GOOGLE_MX),
        ]
    )
    deliveries = [
        _item(f"r{i}@acme.example", DELIVERED, start + timedelta(seconds=2 + i), n=i)
        for i in range(T.release_after_deliveries - 1)
    ]
    engine.record_many(deliveries)
    assert engine.throttle_for("gmail.com") is not None
    last = start + timedelta(seconds=2 + T.release_after_deliveries)
    result = engine.record_many([_item("last@acme.example", DELIVERED, last)])
    assert [a.kind for a in result.actions if a.new] == [ActionKind.RELEASE]
    assert engine.throttle_for("gmail.com") is None


def test_deliveries_outside_a_throttled_group_lift_nothing_one_record_at_a_time(
    engine: Engine,
) -> None:
    # A delivery reads the open throttles of its domain and of every group before it asks for
    # its domain's group: the group's throttle it finds is not its own to lift.
    now = engine.now()
    start = now - timedelta(minutes=10)
    engine.record_many(
        [
            _item("ann@acme.example", DELIVERED, start, WORKSPACE_MX),
            _item("bob@globex.example", PUSHBACK, start + timedelta(seconds=1), GOOGLE_MX),
        ]
    )
    for i in range(T.release_after_deliveries + 1):
        decision = engine.record(
            f"r{i}@plain.example",
            DELIVERED,
            message_id=f"m{i}",
            at=start + timedelta(seconds=2 + i),
            mx_host="mx.plain.example",
        )
        assert decision.actions == ()
    assert engine.throttle_for("acme.example") is not None
    # Deliveries to a learned domain of the group lift it, at the policy's number.
    released = []
    for i in range(T.release_after_deliveries):
        decision = engine.record(
            f"s{i}@acme.example",
            DELIVERED,
            message_id=f"n{i}",
            at=start + timedelta(minutes=1, seconds=i),
        )
        released.append([a.kind for a in decision.actions if a.new])
    assert released == [[]] * (T.release_after_deliveries - 1) + [[ActionKind.RELEASE]]
    assert engine.throttle_for("acme.example") is None


def test_the_policys_own_lists_win_over_what_an_mx_host_says(
    engine: Engine, clock: FakeClock, db_url: str
) -> None:
    now = clock()
    engine.record_many(
        [
            # gmail.com is listed under google: an Outlook relay for it teaches nothing.
            _item("x@gmail.com", DELIVERED, now - timedelta(minutes=5), MICROSOFT_MX),
            _item("kim@initech.example", PUSHBACK, now - timedelta(minutes=1), MICROSOFT_MX),
        ]
    )
    assert _learned(db_url) == {"initech.example": ("microsoft", MICROSOFT_MX.split("[")[0])}
    assert engine.is_sendable("y@gmail.com")
    assert not engine.is_sendable("lee@initech.example")


def test_a_group_the_policy_no_longer_gives_mx_suffixes_stops_applying(
    engine: Engine, clock: FakeClock, db_url: str
) -> None:
    now = clock()
    engine.record_many(
        [
            _item("ann@acme.example", DELIVERED, now - timedelta(minutes=5), WORKSPACE_MX),
            _item("x@gmail.com", PUSHBACK, now - timedelta(minutes=1)),
        ]
    )
    assert not engine.is_sendable("carl@acme.example")
    suffixes = {k: v for k, v in T.provider_mx_suffixes.items() if k != "google"}
    narrower = dataclasses.replace(
        POLICY, throttle=dataclasses.replace(T, provider_mx_suffixes=suffixes)
    )
    with Engine(db_url, policy=narrower, clock=clock) as other:
        assert other.is_sendable("carl@acme.example")
        assert other.throttle_for("acme.example") is None
        assert not other.is_sendable("y@gmail.com")


def test_a_domain_follows_its_newest_mx_and_an_older_sighting_does_not_move_it_back(
    engine: Engine, clock: FakeClock, db_url: str
) -> None:
    now = clock()
    engine.record_many([_item("ann@acme.example", DELIVERED, now - timedelta(hours=3), GOOGLE_MX)])
    engine.record_many(
        [_item("ann@acme.example", DELIVERED, now - timedelta(hours=1), MICROSOFT_MX, n=1)]
    )
    engine.record_many(
        [_item("bob@acme.example", DELIVERED, now - timedelta(hours=2), WORKSPACE_MX, n=2)]
    )
    assert _learned(db_url)["acme.example"][0] == "microsoft"
    db = create_engine(db_url)
    with Session(db) as s:
        row = s.get(DomainProvider, "acme.example")
        assert row is not None
        assert (row.first_seen_at, row.last_seen_at) == (now - timedelta(hours=1),) * 2
    db.dispose()


def test_a_domains_last_sighting_moves_on_hourly_not_with_every_chunk(
    engine: Engine, clock: FakeClock, db_url: str
) -> None:
    first = clock() - timedelta(hours=5)
    times = [first, first + timedelta(minutes=59), first + timedelta(hours=2)]
    seen = []
    for n, at in enumerate(times):
        engine.record_many([_item("ann@acme.example", DELIVERED, at, WORKSPACE_MX, n=n)])
        db = create_engine(db_url)
        with Session(db) as s:
            row = s.get(DomainProvider, "acme.example")
            assert row is not None
            seen.append((row.first_seen_at, row.last_seen_at))
        db.dispose()
    assert seen == [(first, first), (first, first), (first, times[2])]


# ---- a domain that moves away from its provider ----------------------------------------------

SELF_HOSTED_MX = "mx1.acme.example[192.0.2.10]:25"
UNLISTED = dataclasses.replace(POLICY, throttle=dataclasses.replace(T, provider_domains={}))


def _google_pushback(engine: Engine, at: datetime) -> None:
    engine.record_many([_item("x@gmail.com", PUSHBACK, at, n=99)])


@pytest.mark.parametrize("later", [timedelta(hours=2), timedelta(0)], ids=["later", "same-time"])
def test_a_domain_seen_answered_by_its_own_mail_server_leaves_its_provider_group(
    engine: Engine, clock: FakeClock, db_url: str, later: timedelta
) -> None:
    now = clock()
    seen = now - timedelta(hours=3)
    engine.record_many([_item("ann@acme.example", DELIVERED, seen, WORKSPACE_MX)])
    engine.record_many([_item("bob@acme.example", DELIVERED, seen + later, SELF_HOSTED_MX, n=1)])
    assert "acme.example" not in _learned(db_url)
    _google_pushback(engine, now - timedelta(minutes=1))
    # Google is paused; acme.example is a plain domain again and Google's throttle no longer
    # holds it back.
    assert engine.throttle_for("acme.example") is None
    assert engine.is_sendable("carl@acme.example")
    assert engine.filter_sendable(["carl@acme.example", "y@gmail.com"]) == ["carl@acme.example"]


def test_an_older_self_hosted_sighting_leaves_the_membership_as_it_is(
    engine: Engine, clock: FakeClock, db_url: str
) -> None:
    now = clock()
    engine.record_many([_item("ann@acme.example", DELIVERED, now - timedelta(hours=1), GOOGLE_MX)])
    # A late log line from before the domain was last seen at Google says nothing new.
    engine.record_many(
        [_item("bob@acme.example", DELIVERED, now - timedelta(hours=2), SELF_HOSTED_MX, n=1)]
    )
    assert _learned(db_url) == {"acme.example": ("google", "gmail-smtp-in.l.google.com")}
    _google_pushback(engine, now - timedelta(minutes=1))
    throttle = engine.throttle_for("acme.example")
    assert throttle is not None
    assert (throttle.scope, throttle.destination) == (ActionScope.PROVIDER, "google")
    assert not engine.is_sendable("carl@acme.example")


def test_the_next_sighting_of_the_providers_mx_learns_a_domain_that_left_again(
    engine: Engine, clock: FakeClock, db_url: str
) -> None:
    now = clock()
    back = now - timedelta(hours=1)
    engine.record_many([_item("ann@acme.example", DELIVERED, now - timedelta(hours=3), GOOGLE_MX)])
    # Its self-hosted backup MX answered once (the primary was unreachable).
    engine.record_many(
        [_item("bob@acme.example", DELIVERED, now - timedelta(hours=2), SELF_HOSTED_MX, n=1)]
    )
    engine.record_many([_item("cat@acme.example", DELIVERED, back, WORKSPACE_MX, n=2)])
    assert _learned(db_url) == {"acme.example": ("google", "aspmx.l.google.com")}
    db = create_engine(db_url)
    with Session(db) as s:
        row = s.get(DomainProvider, "acme.example")
        assert row is not None
        assert (row.first_seen_at, row.last_seen_at) == (back, back)
    db.dispose()
    _google_pushback(engine, now - timedelta(minutes=1))
    assert not engine.is_sendable("dan@acme.example")


def test_a_listed_domain_seen_answered_by_another_mail_server_stays_in_its_group(
    clock: FakeClock, db_url: str
) -> None:
    now = clock()
    # Learned while the policy did not list gmail.com; listed since, its row is left alone.
    with Engine(db_url, policy=UNLISTED, clock=clock) as before:
        before.record_many([_item("x@gmail.com", DELIVERED, now - timedelta(hours=3), GOOGLE_MX)])
    with Engine(db_url, policy=POLICY, clock=clock) as eng:
        eng.record_many(
            [_item("y@gmail.com", DELIVERED, now - timedelta(hours=1), SELF_HOSTED_MX, n=1)]
        )
        assert _learned(db_url) == {"gmail.com": ("google", "gmail-smtp-in.l.google.com")}
        _google_pushback(eng, now - timedelta(minutes=1))
        assert not eng.is_sendable("z@gmail.com")
        assert eng.filter_sendable(["z@gmail.com", "w@plain.example"]) == ["w@plain.example"]


def test_one_select_reads_the_known_rows_of_a_chunk_whatever_its_mx_hosts(
    sa_engine: sa.Engine, frozen_now: datetime
) -> None:
    at = frozen_now - timedelta(hours=1)
    with sa_engine.begin() as conn:
        store_hygiene.learn_providers(
            conn,
            {f"d{i}.example": ("aspmx.l.google.com", at - timedelta(hours=1)) for i in range(40)},
            POLICY,
        )
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "domain_providers" in statement:
            statements.append(statement.split(None, 1)[0].upper())

    sa.event.listen(sa_engine, "before_cursor_execute", seen)
    try:
        with sa_engine.begin() as conn:
            # Half of the known domains moved to their own servers, half stay; forty new domains
            # are seen, half of them at Google.
            sightings = {
                f"d{i}.example": ("mx.self.example" if i % 2 else "aspmx.l.google.com", at)
                for i in range(80)
            }
            store_hygiene.learn_providers(conn, sightings, POLICY)
    finally:
        sa.event.remove(sa_engine, "before_cursor_execute", seen)
    assert statements.count("SELECT") == 1
    with Session(sa_engine) as s:
        learned = set(s.scalars(sa.select(DomainProvider.domain)))
    assert learned == {f"d{i}.example" for i in range(0, 80, 2)}


# ---- incremental, nightly and full evaluation agree ------------------------------------------

START = datetime(2026, 11, 2, 11, 0, tzinfo=UTC)
END = START + timedelta(minutes=35)
PROBES = [
    "new@acme.example",
    "new@globex.example",
    "new@gmail.com",
    "new@plain.example",
    "new@initech.example",
    "new@never.example",
]


def _history() -> list[ReplyRecord]:
    at = START
    items = [
        _item("ann@acme.example", DELIVERED, at, WORKSPACE_MX),
        _item("ola@plain.example", DELIVERED, at + timedelta(minutes=1), "mx.plain.example"),
        _item("kim@initech.example", DELIVERED, at + timedelta(minutes=2), MICROSOFT_MX),
        _item("bob@globex.example", PUSHBACK, at + timedelta(minutes=5), GOOGLE_MX),
        _item("cat@acme.example", PUSHBACK, at + timedelta(minutes=10)),
    ]
    items += [
        _item(_either(i), BLOCKED, at + timedelta(minutes=19 + i))
        for i in range(1, T.blocked_count + 1)
    ]
    items.append(_item("pat@plain.example", PUSHBACK, at + timedelta(minutes=30)))
    return items


def _in_force(engine: Engine) -> tuple[set[tuple[Any, ...]], list[str]]:
    with Session(engine.db) as s:
        throttles = {
            (a.scope, a.target, a.pause_until, a.max_rate, a.step)
            for a in store_hygiene.throttles_in_force(s, END)
        }
    return throttles, engine.filter_sendable(PROBES)


def _emptied(url: str) -> None:
    db = create_engine(url)
    with db.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    db.dispose()


def test_incremental_nightly_and_full_evaluation_agree_on_learned_groups(db_url: str) -> None:
    history = _history()
    clock = FakeClock(END)
    results = {}
    # Incremental: one event per transaction, the hygiene hook on each.
    with Engine(db_url, policy=POLICY, clock=clock, chunk_size=1) as eng:
        eng.record_many(history)
        results["incremental"] = _in_force(eng)
    _emptied(db_url)
    # Nightly: recorded without the hook, evaluated after each half.
    half = len(history) // 2
    with Engine(db_url, policy=POLICY, clock=clock, hygiene=False) as eng:
        for part, now in ((history[:half], START + timedelta(minutes=15)), (history[half:], END)):
            eng.record_many(part)
            with Session(eng.db) as s:
                store_hygiene.evaluate(s, POLICY, now)
                s.commit()
        results["nightly"] = _in_force(eng)
    _emptied(db_url)
    # Full: everything recorded, then one full re-evaluation.
    with Engine(db_url, policy=POLICY, clock=clock, hygiene=False) as eng:
        eng.record_many(history)
        with Session(eng.db) as s:
            store_hygiene.evaluate(s, POLICY, END, full=True)
            s.commit()
        results["full"] = _in_force(eng)
    throttles, sendable = results["incremental"]
    assert {(scope, target) for scope, target, *_ in throttles} == {
        (ActionScope.PROVIDER, "google"),
        (ActionScope.DOMAIN, "plain.example"),
    }
    assert sendable == ["new@initech.example", "new@never.example"]
    assert results["nightly"] == results["incremental"]
    assert results["full"] == results["incremental"]


# ---- through the nightly job ----------------------------------------------------------------

POSTFIX_LOG = """\
Nov  2 10:50:00 mx1 postfix/smtp[8244]: 3558557CB2: to=<ann@acme.example>, \
relay=aspmx.l.google.com[198.51.100.26]:25, delay=1.1, delays=0.96/0.03/0.07/0.1, dsn=2.0.0, \
status=sent (250 2.0.0 OK 1730544600 abc.123 - gsmtp)
Nov  2 10:52:00 mx1 postfix/smtp[8244]: 4558557CB2: to=<ola@plain.example>, \
relay=mx.plain.example[192.0.2.1]:25, delay=1.1, delays=0.96/0.03/0.07/0.1, dsn=2.0.0, \
status=sent (250 2.0.0 Ok: queued)
Nov  2 11:55:00 mx1 postfix/smtp[8244]: 5558557CB2: to=<bob@globex.example>, \
relay=alt1.aspmx.l.google.com[198.51.100.27]:25, delay=1.1, delays=0.96/0.03/0.07/0.1, \
dsn=4.7.0, status=deferred (host alt1.aspmx.l.google.com[198.51.100.27] said: \
421 4.7.0 Try again later, closing connection. (in reply to RCPT TO command))
"""

DSN = """\
Return-Path: <>
Date: Mon, 02 Nov 2026 10:40:00 +0000
From: MAILER-DAEMON@lists.example.org (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: bounces@lists.example.org
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mail.lists.example.org

Final-Recipient: rfc822; kim@initech.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; initech-example.mail.protection.outlook.com
Diagnostic-Code: smtp; 550 5.1.1 RESOLVER.ADR.RecipNotFound; not found

--B1--
"""


def test_postfix_relay_and_dsn_remote_mta_teach_the_store_through_the_nightly_job(
    db_url: str, tmp_path: Path
) -> None:
    inbox = tmp_path / "in"
    inbox.mkdir()
    (inbox / "mail.log").write_text(POSTFIX_LOG)
    (inbox / "bounce.eml").write_text(DSN)
    runner = CliRunner()
    base = ["--database-url", db_url]
    result = runner.invoke(cli, [*base, "nightly", str(inbox), "--now", "2026-11-02T12:00:00Z"])
    assert result.exit_code == 0, result.output
    # The shipped policy's groups: Google by .google.com, Microsoft by .protection.outlook.com.
    assert {d: g for d, (g, _) in _learned(db_url).items()} == {
        "acme.example": "google",
        "globex.example": "google",
        "initech.example": "microsoft",
    }
    assert _learned(db_url)["initech.example"][1] == "initech-example.mail.protection.outlook.com"
    with freeze_time("2026-11-02T12:00:00Z"):
        listed = runner.invoke(cli, [*base, "throttles", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [(r["target"], r["scope"], r["domain"]) for r in rows] == [("google", "provider", None)]


# ---- the sender's own relay -------------------------------------------------------------------

RELAY_MX = "smarthost.example.net[198.51.100.7]:25"
RELAYED = dataclasses.replace(
    POLICY, throttle=dataclasses.replace(T, relay_hosts=("smarthost.example.net",))
)


def test_a_sighting_through_the_senders_own_relay_neither_teaches_nor_ends_a_group(
    db_url: str, clock: FakeClock
) -> None:
    # With a Postfix relayhost every relay= names the smarthost, whatever the recipient's MX:
    # listed in relay_hosts, it says nothing about where a domain is hosted.
    now = clock()
    with Engine(db_url, policy=RELAYED, clock=clock) as engine:
        engine.record_many(
            [_item("ann@acme.example", DELIVERED, now - timedelta(hours=3), GOOGLE_MX)]
        )
        engine.record_many(
            [
                _item("bob@acme.example", DELIVERED, now - timedelta(hours=2), RELAY_MX, n=1),
                _item("cat@initech.example", DELIVERED, now - timedelta(hours=2), RELAY_MX, n=2),
            ]
        )
        assert _learned(db_url) == {"acme.example": ("google", "gmail-smtp-in.l.google.com")}
        _google_pushback(engine, now - timedelta(minutes=1))
        assert not engine.is_sendable("dan@acme.example")
    # Without the setting the same relayed line is a move away from Google.
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        engine.record_many(
            [_item("eve@acme.example", DELIVERED, now - timedelta(minutes=30), RELAY_MX, n=3)]
        )
    assert "acme.example" not in _learned(db_url)
