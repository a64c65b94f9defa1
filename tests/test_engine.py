from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import FakeClock, dump_store
from sqlalchemy import Engine as SAEngine
from sqlalchemy import delete as sa_delete
from sqlalchemy import event as sa_event
from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from deliverability.engine import (
    _RECIPIENT_COLUMNS,
    _RECIPIENT_LOAD,
    Engine,
    ReplyRecord,
    _Recipient,
    event_key,
)
from deliverability.errors import AddressError, InputError, ReplyParseError
from deliverability.hygiene import open_key
from deliverability.ingest.convert import POSTFIX_EXPIRED_VERDICT
from deliverability.policy import load_policy
from deliverability.replies import parse_reply
from deliverability.store import hygiene as store_hygiene
from deliverability.store.models import Action, Base, Delivery, Event, Recipient, RejectedInput
from deliverability.store.records import RecordedEvent
from deliverability.store.session import create_engine
from deliverability.verdicts import Verdict
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    DeliveryState,
    EventKind,
    Fault,
    Outcome,
    Reason,
    Standing,
)

POLICY = load_policy()
MAILBOX_FULL = "452 4.2.2 mailbox full"
USER_UNKNOWN = "550 5.1.1 no such user"
OK = "250 2.0.0 OK queued"


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    """An Engine without the hygiene pass, so these tests see the engine's own behaviour."""
    with Engine(db_url, policy=POLICY, clock=clock, hygiene=False) as e:
        yield e


def _count(engine: Engine, model: type[Base]) -> int:
    with Session(engine.db) as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _delivery(engine: Engine, message_id: str, address_key: str = "a@example.com") -> Delivery:
    with Session(engine.db) as s:
        return s.scalars(
            select(Delivery)
            .join(Recipient)
            .where(Delivery.message_id == message_id, Recipient.address_key == address_key)
        ).one()


def _pause(
    sa: SAEngine,
    domain: str,
    until: datetime,
    now: datetime,
    scope: ActionScope = ActionScope.DOMAIN,
) -> None:
    """Throttle a destination (a domain, or a provider group named by `domain`) until `until`."""
    with sa.begin() as conn:
        conn.execute(
            insert(Action).values(
                kind=ActionKind.THROTTLE,
                scope=scope,
                target=domain,
                status=ActionStatus.OPEN,
                open_key=open_key(ActionKind.THROTTLE, scope, domain),
                reason=Reason.RATE_LIMITED,
                rule="test",
                detail="",
                evidence={},
                created_at=now,
                updated_at=now,
                expires_at=until,
                pause_until=until,
                created_by="policy",
                raised_count=1,
                step=1,
                deliveries_since=0,
            )
        )


# -- record ------------------------------------------------------------------------------------


def test_a_deferral_schedules_the_first_retry_30_minutes_later_plus_jitter(
    engine: Engine, frozen_now: datetime
) -> None:
    decision = engine.record("alice@example.com", MAILBOX_FULL, message_id="<m1@list>")
    assert decision.verdict.outcome is Outcome.DEFERRED
    assert decision.delivery_state is DeliveryState.DEFERRED
    assert decision.attempt == 1
    assert decision.next_attempt_at is not None
    delay = decision.next_attempt_at - frozen_now
    assert timedelta(minutes=30) <= delay <= timedelta(minutes=30) * (1 + POLICY.backoff.jitter)
    assert decision.sendable


def test_a_delivery_after_deferrals_counts_as_the_next_attempt(
    engine: Engine, clock: FakeClock
) -> None:
    engine.record("alice@example.com", MAILBOX_FULL, message_id="<m1@list>")
    clock.advance(timedelta(minutes=40))
    decision = engine.record("alice@example.com", OK, message_id="<m1@list>")
    assert decision.delivery_state is DeliveryState.DELIVERED
    assert decision.attempt == 2
    assert decision.next_attempt_at is None
    status = engine.status("alice@example.com")
    assert status.standing is Standing.DELIVERED
    assert status.counters["deferred_count"] == 1
    assert status.counters["delivered_count"] == 1


def test_local_part_case_does_not_make_a_second_recipient(engine: Engine) -> None:
    engine.record("Alice@Example.COM", OK, message_id="m1")
    engine.record("alice@example.com", OK, message_id="m2")
    assert _count(engine, Recipient) == 1
    assert engine.status("ALICE@example.com").address == "Alice@example.com"


def test_recording_the_same_event_twice_changes_nothing(engine: Engine, db_url: str) -> None:
    first = engine.record("bob@example.org", USER_UNKNOWN, message_id="m1", attempt=1)
    before = dump_store(db_url)
    again = engine.record("bob@example.org", USER_UNKNOWN, message_id="m1", attempt=1)
    assert not first.duplicate
    assert again.duplicate
    assert again.delivery_state is DeliveryState.BOUNCED
    assert dump_store(db_url) == before


def _asks_for_event_keys(engine: Engine) -> list[str]:
    """The statements that look up stored event keys, as the engine sends them (filled in)."""
    seen: list[str] = []

    def listen(_c: Any, _cur: Any, sql: str, *_rest: Any) -> None:
        if sql.lstrip().upper().startswith("SELECT") and "FROM events" in sql and "key" in sql:
            seen.append(sql)

    sa_event.listen(engine.db, "before_cursor_execute", listen)
    return seen


def test_a_first_reply_for_each_message_is_recorded_without_looking_up_its_event_key(
    engine: Engine,
) -> None:
    engine.record("alice@example.com", MAILBOX_FULL, message_id="m1")
    asked = _asks_for_event_keys(engine)
    # A new recipient, then new messages of a known one: no event of theirs can be stored.
    engine.record("bob@example.org", OK, message_id="m1")
    engine.record_many(
        [{"recipient": "alice@example.com", "reply": OK, "message_id": f"m{i}"} for i in (2, 3)]
    )
    assert asked == []
    # A reply for a stored delivery may repeat a stored event: its key is asked for.
    assert not engine.record("alice@example.com", OK, message_id="m1").duplicate
    assert len(asked) == 1


@pytest.mark.parametrize("call", ["record", "record_many"])
def test_an_event_whose_delivery_was_pruned_is_still_a_duplicate_given_again(
    engine: Engine, call: str
) -> None:
    # Pruning deletes a finished delivery by its last attempt and events by their own time,
    # so an event can outlive its delivery: the unique key catches it, the chunk runs again
    # asking for every key, and the event is a duplicate, not an error.
    engine.record("alice@example.com", OK, message_id="m1")
    engine.record("alice@example.com", OK, message_id="m2")
    with engine.db.begin() as conn:
        conn.execute(sa_delete(Delivery).where(Delivery.message_id == "m1"))
    if call == "record":
        assert engine.record("alice@example.com", OK, message_id="m1").duplicate
    else:
        result = engine.record_many(
            [
                {"recipient": "alice@example.com", "reply": OK, "message_id": "m1"},
                {"recipient": "alice@example.com", "reply": OK, "message_id": "m3"},
            ]
        )
        assert (result.recorded, result.duplicates) == (1, 1)
    recorded = 2 + (call == "record_many")
    assert _count(engine, Event) == recorded
    assert engine.status("alice@example.com").counters["delivered_count"] == recorded


def test_a_key_given_again_for_another_message_is_a_duplicate(engine: Engine) -> None:
    # A caller's own key says two events are one, whatever their messages.
    engine.record("alice@example.com", OK, message_id="m1", key="line-17")
    again = engine.record("alice@example.com", OK, message_id="m2", key="line-17")
    assert again.duplicate
    assert _count(engine, Event) == 1
    assert _count(engine, Delivery) == 1


def test_an_informational_reply_is_refused_as_not_a_delivery_result(engine: Engine) -> None:
    with pytest.raises(InputError, match="not a delivery result"):
        engine.record("alice@example.com", "354 go ahead", message_id="m1")
    assert _count(engine, Event) == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"recipient": "not-an-address"}, AddressError, "no @"),
        ({"reply": "hello there"}, ReplyParseError, "no SMTP reply code"),
        ({"attempt": -1}, InputError, "must be 1 or more"),
        ({"attempt": 0}, InputError, "must be 1 or more"),
        ({"at": "2026-11-03T12:00:01Z"}, InputError, "is more than 1d in the future"),
        ({"at": "yesterday"}, InputError, "not an ISO 8601 time"),
    ],
)
def test_bad_input_to_a_single_call_is_a_clear_error(
    engine: Engine, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"recipient": "alice@example.com", "reply": OK, "message_id": "m1"}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        engine.record(args.pop("recipient"), args.pop("reply"), **args)
    assert _count(engine, Event) == 0


def test_a_source_name_that_is_not_unicode_is_stored_with_the_bad_character_escaped(
    engine: Engine,
) -> None:
    # A file name read with surrogateescape (bytes that are not UTF-8) names where an event
    # came from: kept, with the character written as an escape, rather than the event lost.
    name = "l\udce9.log"
    result = engine.record_many(
        [
            {"recipient": "a@example.com", "reply": OK, "message_id": "m1", "source": name},
            {"recipient": "b@example.com", "reply": "hello", "source": name},
        ]
    )
    assert result.recorded == 1
    with Session(engine.db) as s:
        assert s.scalars(select(Event.source)).all() == ["l\\udce9.log"]
        assert s.scalars(select(RejectedInput.source)).all() == ["l\\udce9.log"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"attempt": 2**31}, "is more than"),
        ({"at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))}, "out of range"),
        ({"at": datetime(1969, 12, 31, 23, 59, tzinfo=UTC)}, "before 1970"),
    ],
)
def test_a_value_beyond_what_the_store_holds_is_a_clear_error_for_a_single_call(
    engine: Engine, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(InputError, match=match):
        engine.record("alice@example.com", OK, message_id="m1", **kwargs)
    assert _count(engine, Event) == 0


def test_a_time_one_day_ahead_is_still_accepted(engine: Engine, frozen_now: datetime) -> None:
    decision = engine.record(
        "a@example.com", OK, message_id="m1", at=frozen_now + timedelta(days=1)
    )
    assert decision.delivery_state is DeliveryState.DELIVERED


def test_a_late_reply_for_a_superseded_attempt_is_history_only(
    engine: Engine, frozen_now: datetime
) -> None:
    t = frozen_now - timedelta(hours=3)
    engine.record("a@example.com", MAILBOX_FULL, message_id="m1", attempt=1, at=t)
    engine.record("a@example.com", OK, message_id="m1", attempt=2, at=t + timedelta(hours=1))
    late = engine.record(
        "a@example.com", USER_UNKNOWN, message_id="m1", attempt=1, at=t + timedelta(hours=2)
    )
    assert late.history_only
    assert late.delivery_state is DeliveryState.DELIVERED
    assert _delivery(engine, "m1").state is DeliveryState.DELIVERED
    assert _count(engine, Event) == 3


def test_an_event_older_than_the_recipients_latest_does_not_change_its_standing(
    engine: Engine, frozen_now: datetime
) -> None:
    engine.record("a@example.com", OK, message_id="m2", at=frozen_now)
    engine.record("a@example.com", MAILBOX_FULL, message_id="m1", at=frozen_now - timedelta(days=1))
    status = engine.status("a@example.com")
    assert status.standing is Standing.DELIVERED
    assert status.last_reply is not None
    assert status.last_reply.code == 250
    assert _delivery(engine, "m1").state is DeliveryState.DEFERRED


def test_a_greylisting_hint_is_honoured(engine: Engine, frozen_now: datetime) -> None:
    decision = engine.record(
        "a@example.com", "451 4.7.1 greylisted, try again in 300 seconds", message_id="m1"
    )
    assert decision.next_attempt_at == frozen_now + timedelta(seconds=300)


def test_a_retry_is_not_scheduled_before_the_destinations_pause_ends(
    engine: Engine, frozen_now: datetime
) -> None:
    until = frozen_now + timedelta(hours=2)
    _pause(engine.db, "example.com", until, frozen_now)
    decision = engine.record("a@example.com", MAILBOX_FULL, message_id="m1")
    assert decision.next_attempt_at == until
    assert not decision.sendable
    assert decision.why_not is not None
    assert "example.com is paused" in decision.why_not


# -- record_many -------------------------------------------------------------------------------


def _log(frozen_now: datetime) -> list[dict[str, Any]]:
    t = frozen_now - timedelta(hours=6)
    rows: list[dict[str, Any]] = []
    for i in range(30):
        at = (t + timedelta(minutes=i)).isoformat()
        rows.append(
            {
                "recipient": f"user{i}@example.com",
                "reply": MAILBOX_FULL,
                "message_id": "m1",
                "at": at,
            }
        )
        rows.append(
            {
                "recipient": f"user{i}@example.com",
                "code": 250,
                "status": "2.0.0",
                "text": "ok",
                "message_id": "m2",
                "at": at,
            }
        )
    rows.insert(
        7,
        {
            "recipient": "broken",
            "reply": OK,
            "message_id": "m1",
            "position": "line 8",
            "source": "log.jsonl",
        },
    )
    rows.insert(
        9,
        {
            "recipient": "x@example.com",
            "reply": "",
            "message_id": "m1",
            "position": "line 10",
            "source": "log.jsonl",
        },
    )
    rows.insert(11, {"recipient": "x@example.com", "reply": "220 ready", "message_id": "m1"})
    return rows


def test_record_many_counts_by_outcome_and_rejects_bad_items_with_position_and_reason(
    db_url: str, clock: FakeClock, frozen_now: datetime
) -> None:
    with Engine(db_url, policy=POLICY, clock=clock, hygiene=False, chunk_size=7) as engine:
        result = engine.record_many(_log(frozen_now))
        assert result.total == 63
        assert result.recorded == 60
        assert result.by_outcome == {"deferred": 30, "delivered": 30}
        assert [(r.source, r.position) for r in result.rejected] == [
            ("log.jsonl", "line 8"),
            ("log.jsonl", "line 10"),
            ("api", "12"),
        ]
        assert "not an email address" in result.rejected[0].reason
        assert "not a delivery result" in result.rejected[2].reason
        with Session(engine.db) as s:
            stored = s.scalars(select(RejectedInput).order_by(RejectedInput.id)).all()
        assert [(r.source, r.position) for r in stored] == [
            ("log.jsonl", "line 8"),
            ("log.jsonl", "line 10"),
            ("api", "12"),
        ]
        assert "broken" in stored[0].raw


def test_record_many_over_the_same_input_twice_leaves_the_database_identical(
    db_url: str, clock: FakeClock, frozen_now: datetime
) -> None:
    with Engine(db_url, policy=POLICY, clock=clock, hygiene=False, chunk_size=7) as engine:
        engine.record_many(_log(frozen_now))
        before = dump_store(db_url)
        clock.advance(timedelta(minutes=5))
        again = engine.record_many(_log(frozen_now))
    assert again.recorded == 0
    assert again.duplicates == 60
    assert dump_store(db_url) == before


def test_record_many_and_record_reach_the_same_state(
    tmp_path: Any, clock: FakeClock, frozen_now: datetime
) -> None:
    rows = [r for r in _log(frozen_now) if "@" in r["recipient"] and r.get("reply") != "220 ready"]
    rows = [r for r in rows if r.get("reply", "x")]
    one_url = f"sqlite:///{tmp_path / 'one.db'}"
    many_url = f"sqlite:///{tmp_path / 'many.db'}"
    with Engine(one_url, policy=POLICY, clock=clock, hygiene=False) as engine:
        for r in rows:
            engine.record_many([r])
    with Engine(many_url, policy=POLICY, clock=clock, hygiene=False) as engine:
        engine.record_many(rows)
    assert _natural(one_url) == _natural(many_url)


def _natural(url: str) -> dict[str, set[tuple[Any, ...]]]:
    """Recipients, deliveries and events without their ids (which depend on insertion order),
    each row keyed by its natural key."""
    db = create_engine(url)
    try:
        with Session(db) as s:
            key_of = {r.id: r.address_key for r in s.scalars(select(Recipient))}
            skip = {"id", "recipient_id", "last_event_id"}

            def plain(obj: Base) -> tuple[Any, ...]:
                columns = obj.__table__.columns  # type: ignore[attr-defined]
                values = tuple(getattr(obj, c.key) for c in columns if c.key not in skip)
                return (key_of.get(getattr(obj, "recipient_id", None)), *values)

            return {
                model.__tablename__: {plain(o) for o in s.scalars(select(model))}
                for model in (Recipient, Delivery, Event)
            }
    finally:
        db.dispose()


def test_record_many_accepts_reply_records(engine: Engine) -> None:
    result = engine.record_many(
        [ReplyRecord(recipient="a@example.com", message_id="m1", code="550", status="5.1.1")]
    )
    assert result.by_outcome == {"bounced": 1}


def test_a_complaint_needs_no_reply_text(engine: Engine) -> None:
    engine.record("a@example.com", OK, message_id="m1")
    result = engine.record_many(
        [{"recipient": "a@example.com", "message_id": "m1", "kind": "complaint"}]
    )
    assert result.by_outcome == {"complained": 1}
    assert _delivery(engine, "m1").state is DeliveryState.COMPLAINED


# -- expiry ------------------------------------------------------------------------------------


def test_a_deferred_delivery_past_its_lifetime_expires_once(
    engine: Engine, clock: FakeClock, frozen_now: datetime
) -> None:
    engine.record("a@example.com", MAILBOX_FULL, message_id="m1")
    engine.record(
        "b@example.com", MAILBOX_FULL, message_id="m1", at=frozen_now + timedelta(hours=1)
    )
    first = engine.expire_overdue(frozen_now + POLICY.backoff.lifetime)
    assert first.by_outcome == {"expired": 1}
    assert _delivery(engine, "m1").state is DeliveryState.EXPIRED
    status = engine.status("a@example.com")
    assert status.counters["expired_count"] == 1
    assert status.history[0].kind is EventKind.EXPIRY
    assert status.history[0].at == frozen_now + POLICY.backoff.lifetime
    again = engine.expire_overdue(frozen_now + POLICY.backoff.lifetime)
    assert again.recorded == 0


def test_an_expiry_is_not_the_recipients_last_failed_attempt(
    engine: Engine, frozen_now: datetime
) -> None:
    # The undeliverable report's last_attempt is when the destination last refused: the give-up
    # days later is the sender's, no attempt (it is counted as an expiry, apart).
    engine.record("a@example.com", MAILBOX_FULL, message_id="m1")
    engine.expire_overdue(frozen_now + POLICY.backoff.lifetime)
    with Session(engine.db) as s:
        row = s.scalars(select(Recipient).where(Recipient.address_key == "a@example.com")).one()
    assert row.expired_count == 1
    assert row.last_failure_at == frozen_now


def test_one_second_before_the_lifetime_nothing_expires(
    engine: Engine, frozen_now: datetime
) -> None:
    engine.record("a@example.com", MAILBOX_FULL, message_id="m1")
    result = engine.expire_overdue(frozen_now + POLICY.backoff.lifetime - timedelta(seconds=1))
    assert result.recorded == 0
    assert _delivery(engine, "m1").state is DeliveryState.DEFERRED


# -- questions ---------------------------------------------------------------------------------


def test_due_retries_come_oldest_first_and_respect_the_limit(
    engine: Engine, frozen_now: datetime
) -> None:
    for i in range(3):
        engine.record(
            f"u{i}@example.com",
            MAILBOX_FULL,
            message_id="m1",
            at=frozen_now - timedelta(hours=3 - i),
        )
    due = engine.due_retries(limit=2)
    assert [d.address for d in due] == ["u0@example.com", "u1@example.com"]
    assert all(d.attempt == 2 for d in due)
    assert engine.due_retries(now=frozen_now - timedelta(hours=5)) == []


def test_due_retries_skip_a_paused_destination_until_the_pause_ends(
    engine: Engine, frozen_now: datetime
) -> None:
    engine.record(
        "a@example.com", MAILBOX_FULL, message_id="m1", at=frozen_now - timedelta(hours=2)
    )
    engine.record(
        "b@example.org", MAILBOX_FULL, message_id="m1", at=frozen_now - timedelta(hours=2)
    )
    until = frozen_now + timedelta(minutes=20)
    _pause(engine.db, "example.com", until, frozen_now)
    assert [d.address for d in engine.due_retries()] == ["b@example.org"]
    later = [d.address for d in engine.due_retries(now=until + timedelta(seconds=1))]
    assert later == ["a@example.com", "b@example.org"]


def _paused_in_store(engine: Engine, domains: list[str], now: datetime) -> set[str]:
    with Session(engine.db) as session:
        return store_hygiene.paused_domains(session, domains, now, policy=POLICY)


def test_a_paused_provider_group_holds_back_sending_and_retries_to_each_of_its_domains(
    engine: Engine, frozen_now: datetime
) -> None:
    # The shipped policy lists gmail.com and googlemail.com in the group "google".
    for address in ("a@gmail.com", "b@googlemail.com", "c@example.org"):
        engine.record(address, MAILBOX_FULL, message_id="m1", at=frozen_now - timedelta(hours=2))
    until = frozen_now + timedelta(minutes=20)
    _pause(engine.db, "google", until, frozen_now, ActionScope.PROVIDER)
    everyone = ["a@gmail.com", "x@googlemail.com", "c@example.org"]
    assert engine.filter_sendable(everyone) == ["c@example.org"]
    why = engine.why_not_sendable("x@googlemail.com")
    assert why == (
        f"destination googlemail.com (provider group google) is paused until {until.isoformat()}"
    )
    assert [d.address for d in engine.due_retries()] == ["c@example.org"]
    domains = ["gmail.com", "googlemail.com", "example.org"]
    assert _paused_in_store(engine, domains, frozen_now) == {"gmail.com", "googlemail.com"}
    assert _paused_in_store(engine, domains, until) == set()
    assert len(engine.due_retries(now=until)) == 3


def test_a_domain_paused_on_its_own_is_paused_for_the_store_too_when_it_is_in_a_provider_group(
    engine: Engine, frozen_now: datetime
) -> None:
    # A throttle of the domain itself (raised before the domain was in the group, say) pauses
    # it until it ends, as the engine has always said: the store's answer is the same.
    engine.record("a@gmail.com", MAILBOX_FULL, message_id="m1", at=frozen_now - timedelta(hours=2))
    until = frozen_now + timedelta(minutes=20)
    _pause(engine.db, "gmail.com", until, frozen_now)
    assert engine.filter_sendable(["a@gmail.com", "b@googlemail.com"]) == ["b@googlemail.com"]
    assert engine.due_retries() == []
    assert _paused_in_store(engine, ["gmail.com", "googlemail.com"], frozen_now) == {"gmail.com"}


def test_throttle_for_names_the_pause_that_holds_a_grouped_domain_back_longest(
    engine: Engine, frozen_now: datetime
) -> None:
    # A sender asks throttle_for before sending: it must not say "no throttle" for a domain
    # that filter_sendable holds back, and it names the pause that ends last, the one in force.
    # The shipped policy lists gmail.com and googlemail.com in the group "google".
    gmail_end = frozen_now + timedelta(hours=2)
    googlemail_end = frozen_now + timedelta(minutes=20)
    _pause(engine.db, "gmail.com", gmail_end, frozen_now)
    _pause(engine.db, "googlemail.com", googlemail_end, frozen_now)

    def seen(domain: str) -> tuple[ActionScope, str, datetime] | None:
        throttle = engine.throttle_for(domain)
        return throttle and (throttle.scope, throttle.destination, throttle.paused_until)

    assert seen("gmail.com") == (ActionScope.DOMAIN, "gmail.com", gmail_end)
    assert seen("googlemail.com") == (ActionScope.DOMAIN, "googlemail.com", googlemail_end)
    group_end = frozen_now + timedelta(hours=1)
    _pause(engine.db, "google", group_end, frozen_now, ActionScope.PROVIDER)
    assert seen("gmail.com") == (ActionScope.DOMAIN, "gmail.com", gmail_end)
    assert seen("googlemail.com") == (ActionScope.PROVIDER, "google", group_end)
    assert engine.filter_sendable(["a@gmail.com", "b@googlemail.com", "c@example.org"]) == [
        "c@example.org"
    ]


def test_filter_sendable_keeps_order_and_gives_reasons_for_the_rest(engine: Engine) -> None:
    engine.suppress("b@example.com", "asked to be removed", by="support")
    sendable, reasons = engine.sendable_with_reasons(
        ["c@example.com", "B@example.com", "nonsense", "a@example.com"]
    )
    assert sendable == ["c@example.com", "a@example.com"]
    assert set(reasons) == {"B@example.com", "nonsense"}
    assert "suppressed" in reasons["B@example.com"]
    assert "not an email address" in reasons["nonsense"]
    assert engine.filter_sendable(["c@example.com", "b@example.com"]) == ["c@example.com"]


def test_suppress_and_unsuppress_are_recorded_as_actions_with_who_and_why(
    engine: Engine, clock: FakeClock
) -> None:
    engine.record("a@example.com", OK, message_id="m1")
    engine.suppress("a@example.com", "complained by phone", by="alice")
    assert not engine.is_sendable("a@example.com")
    status = engine.status("a@example.com")
    assert status.suppressed
    assert status.standing is Standing.SUPPRESSED
    clock.advance(timedelta(hours=1))
    engine.unsuppress("a@example.com", by="bob")
    assert engine.is_sendable("a@example.com")
    assert engine.status("a@example.com").standing is Standing.DELIVERED
    with Session(engine.db) as s:
        actions = s.scalars(select(Action).order_by(Action.id)).all()
    assert [(a.kind, a.status, a.created_by, a.resolved_by) for a in actions] == [
        (ActionKind.SUPPRESS, ActionStatus.RESOLVED, "alice", "bob"),
        (ActionKind.RELEASE, ActionStatus.RESOLVED, "bob", "bob"),
    ]
    assert actions[0].detail == "complained by phone"
    assert actions[0].open_key is None


def test_suppressing_twice_refreshes_the_open_action(engine: Engine) -> None:
    first = engine.suppress("a@example.com", "one", by="alice")
    second = engine.suppress("a@example.com", "two", by="alice")
    assert first == second
    assert _count(engine, Action) == 1


def test_unsuppressing_an_address_that_is_not_suppressed_is_an_error(engine: Engine) -> None:
    with pytest.raises(InputError, match="is not suppressed"):
        engine.unsuppress("a@example.com", by="bob")


def test_a_suppression_that_has_run_out_no_longer_applies(
    engine: Engine, clock: FakeClock, frozen_now: datetime
) -> None:
    engine.suppress("a@example.com", "mailbox_full", by="x", until=frozen_now + timedelta(days=1))
    assert not engine.is_sendable("a@example.com")
    clock.advance(timedelta(days=1, seconds=1))
    assert engine.is_sendable("a@example.com")


def test_a_suppression_until_may_be_given_as_iso_text_as_a_reply_time_may(
    engine: Engine, clock: FakeClock, frozen_now: datetime
) -> None:
    until = frozen_now + timedelta(days=1)
    engine.suppress("a@example.com", "asked", by="support", until=until.isoformat())
    assert not engine.is_sendable("a@example.com")
    clock.advance(timedelta(days=1, seconds=1))
    assert engine.is_sendable("a@example.com")


@pytest.mark.parametrize("ago", [timedelta(0), timedelta(days=1)])
def test_a_suppression_until_a_time_already_past_is_refused(
    engine: Engine, frozen_now: datetime, ago: timedelta
) -> None:
    # Accepted, it was an action recorded and lapsed at once: the address stayed sendable.
    with pytest.raises(InputError, match="is not in the future"):
        engine.suppress("a@example.com", "asked", by="support", until=frozen_now - ago)
    assert _count(engine, Action) == 0


def test_status_of_an_unknown_address_says_unknown(engine: Engine) -> None:
    status = engine.status("nobody@example.com")
    assert status.standing is Standing.UNKNOWN
    assert status.sendable
    assert status.as_dict()["state"] == "unknown"
    assert status.as_dict()["suppressed"] is False


def test_status_shows_the_latest_events_first(engine: Engine, clock: FakeClock) -> None:
    engine.record("a@example.com", MAILBOX_FULL, message_id="m1")
    clock.advance(timedelta(hours=1))
    engine.record("a@example.com", USER_UNKNOWN, message_id="m1")
    status = engine.status("a@example.com", history=5)
    assert [e.code for e in status.history] == [550, 452]
    assert status.standing is Standing.BOUNCED
    assert status.reason is Reason.USER_UNKNOWN


# -- the hygiene seam --------------------------------------------------------------------------


class RecordingHook:
    """A hygiene hook that keeps what it was given and raises no action."""

    def __init__(self) -> None:
        self.calls: list[list[RecordedEvent]] = []

    def __call__(
        self, session: Session, events: list[RecordedEvent], policy: Any, now: datetime
    ) -> list[Any]:
        assert session.get(Event, events[0].event_id) is not None
        self.calls.append(events)
        return []


def test_the_hygiene_hook_sees_each_new_event_once_inside_the_transaction(
    db_url: str, clock: FakeClock
) -> None:
    hook = RecordingHook()
    with Engine(db_url, policy=POLICY, clock=clock, hygiene=hook) as engine:
        engine.record("a@example.com", USER_UNKNOWN, message_id="m1", attempt=1)
        engine.record("a@example.com", USER_UNKNOWN, message_id="m1", attempt=1)
        with Session(engine.db) as session:
            stored = session.get(Event, hook.calls[0][0].event_id)
            assert stored is not None
            assert stored.recipient_id == hook.calls[0][0].recipient_id
    assert len(hook.calls) == 1
    (event,) = hook.calls[0]
    assert event.address_key == "a@example.com"
    assert event.domain == "example.com"
    assert event.verdict.outcome is Outcome.BOUNCED
    assert event.delivery_state is DeliveryState.BOUNCED
    assert event.attempt == 1
    # Every field, in its place: the engine makes the tuple of them without the named tuple's
    # own constructor, which would refuse a field missing or one too many.
    assert type(event) is RecordedEvent
    assert len(event) == len(RecordedEvent._fields)
    assert event == RecordedEvent(
        event_id=event.event_id,
        recipient_id=event.recipient_id,
        address_key="a@example.com",
        domain="example.com",
        message_id="m1",
        attempt=1,
        at=clock.now,
        verdict=event.verdict,
        delivery_state=DeliveryState.BOUNCED,
        kind=EventKind.REPLY,
        applied=True,
        restated=False,
    )


# -- what the nightly job feeds ----------------------------------------------------------------


def test_a_given_verdict_is_used_as_is_and_needs_no_reply(engine: Engine) -> None:
    engine.record("a@example.com", MAILBOX_FULL, message_id="m1")
    verdict = Verdict(Outcome.BOUNCED, Reason.USER_UNKNOWN, Fault.RECIPIENT, rule="dsn.failed")
    result = engine.record_many(
        [
            ReplyRecord(
                recipient="a@example.com", message_id="m1", kind=EventKind.BOUNCE, verdict=verdict
            )
        ]
    )
    assert result.by_outcome == {"bounced": 1}
    assert result.by_reason == {"user_unknown": 1}
    assert _delivery(engine, "m1").state is DeliveryState.BOUNCED


def test_an_auto_reply_is_kept_in_history_and_changes_no_state(engine: Engine) -> None:
    engine.record("a@example.com", OK, message_id="m1")
    vacation = Verdict(
        Outcome.INFORMATIONAL, Reason.VACATION, Fault.RECIPIENT, rule="rfc3834.auto_reply"
    )
    result = engine.record_many(
        [
            ReplyRecord(
                recipient="a@example.com",
                message_id="m1",
                kind=EventKind.AUTO_REPLY,
                text="I am on holiday",
                verdict=vacation,
            )
        ]
    )
    assert result.recorded == 1
    assert result.history_only == 1
    assert _delivery(engine, "m1").state is DeliveryState.DELIVERED
    status = engine.status("a@example.com")
    assert status.standing is Standing.DELIVERED
    assert status.history[0].kind is EventKind.AUTO_REPLY


def test_a_bounce_without_message_id_is_about_the_latest_delivery(
    engine: Engine, frozen_now: datetime
) -> None:
    engine.record("a@example.com", OK, message_id="old", at=frozen_now - timedelta(days=2))
    engine.record("a@example.com", OK, message_id="new", at=frozen_now - timedelta(days=1))
    result = engine.record_many(
        [
            {
                "recipient": "a@example.com",
                "message_id": None,
                "kind": "bounce",
                "reply": USER_UNKNOWN,
            }
        ]
    )
    assert result.by_outcome == {"bounced": 1}
    assert _delivery(engine, "new").state is DeliveryState.BOUNCED
    assert _delivery(engine, "old").state is DeliveryState.DELIVERED
    assert engine.status("a@example.com").history[0].message_id == "new"


def test_a_bounce_without_message_id_for_an_unknown_recipient_is_history_only(
    engine: Engine,
) -> None:
    result = engine.record_many(
        [{"recipient": "z@example.com", "kind": "bounce", "reply": USER_UNKNOWN}]
    )
    assert result.recorded == 1
    assert _count(engine, Delivery) == 0
    assert engine.status("z@example.com").counters["bounced_count"] == 1


def test_a_rejected_item_keeps_its_raw_text(engine: Engine) -> None:
    result = engine.record_many(
        [
            {"recipient": "nope", "reply": OK, "message_id": "m"},
            ReplyRecord(recipient="bad", message_id="m", reply=OK, raw='{"recipient": "bad"}'),
        ]
    )
    assert "nope" in result.rejected[0].raw
    assert result.rejected[0].error == result.rejected[0].reason
    assert result.rejected[1].raw == '{"recipient": "bad"}'


def _standing_after(url: str, clock: FakeClock, rows: list[dict[str, Any]]) -> tuple[Any, ...]:
    with Engine(url, policy=POLICY, clock=clock, hygiene=False) as engine:
        for row in rows:
            engine.record_many([row])
        status = engine.status("a@example.com")
    return status.standing, status.reason


def test_the_standing_is_the_same_whatever_order_events_are_recorded_in(
    tmp_path: Any, clock: FakeClock, frozen_now: datetime
) -> None:
    t = frozen_now - timedelta(hours=5)
    rows = [
        {"recipient": "a@example.com", "message_id": "m1", "reply": OK, "at": t},
        {
            "recipient": "a@example.com",
            "message_id": "m2",
            "reply": MAILBOX_FULL,
            "at": t + timedelta(hours=1),
        },
        {
            "recipient": "a@example.com",
            "message_id": "m3",
            "reply": "554 5.7.1 blocked using zen.spamhaus.org",
            "at": t + timedelta(hours=2),
        },
        {
            "recipient": "a@example.com",
            "message_id": "m1",
            "reply": MAILBOX_FULL,
            "at": t + timedelta(hours=3),
        },
    ]
    forward = _standing_after(f"sqlite:///{tmp_path / 'f.db'}", clock, rows)
    backward = _standing_after(f"sqlite:///{tmp_path / 'b.db'}", clock, rows[::-1])
    assert forward == backward == (Standing.RETRYING, Reason.MAILBOX_FULL)


def test_throttle_for_reports_the_pause_of_a_destination(
    engine: Engine, clock: FakeClock, frozen_now: datetime
) -> None:
    until = frozen_now + timedelta(minutes=15)
    _pause(engine.db, "example.com", until, frozen_now)
    throttle = engine.throttle_for("Example.COM")
    assert throttle is not None
    assert throttle.paused_until == until
    assert engine.throttle_for("example.org") is None
    clock.advance(timedelta(minutes=15))
    assert engine.throttle_for("example.com") is None


def test_an_older_deferral_recorded_after_a_block_still_moves_the_standing(
    tmp_path: Any, clock: FakeClock, frozen_now: datetime
) -> None:
    t = frozen_now - timedelta(hours=2)
    rows = [
        {
            "recipient": "a@example.com",
            "message_id": "m1",
            "reply": MAILBOX_FULL,
            "at": t,
            "attempt": 1,
        },
        {
            "recipient": "a@example.com",
            "message_id": "m1",
            "reply": OK,
            "at": t + timedelta(seconds=1),
            "attempt": 2,
        },
        {
            "recipient": "a@example.com",
            "message_id": "m2",
            "reply": "451 4.3.0 Temporary local problem",
            "at": t + timedelta(minutes=8),
            "attempt": 1,
        },
        {
            "recipient": "a@example.com",
            "message_id": "m2",
            "reply": "554 5.7.1 blocked using zen.spamhaus.org",
            "at": t + timedelta(minutes=8, seconds=1),
            "attempt": 2,
        },
    ]
    in_time_order = _standing_after(f"sqlite:///{tmp_path / 's.db'}", clock, rows)
    raced = _standing_after(
        f"sqlite:///{tmp_path / 'r.db'}", clock, [rows[0], rows[1], rows[3], rows[2]]
    )
    assert in_time_order == raced
    assert in_time_order[0] is Standing.RETRYING


def test_a_manual_suppression_says_who_and_why(engine: Engine) -> None:
    engine.suppress("a@example.com", "asked by phone", by="support")
    why = engine.why_not_sendable("a@example.com")
    assert why is not None
    assert "by support: asked by phone" in why


# Idempotency keys are stored: a database recorded by an earlier version must find its events
# under the same keys, so the key of each shape of event is pinned here. The message id is taken
# without its angle brackets (RFC 5322 section 3.6.4): a bare id's key is the one earlier
# versions stored, and the same id given in brackets now has that key too.
KEY_TIME = datetime.fromisoformat("2026-11-02T12:00:00.123456+00:00")
#: (attempt, reply, the key of the event for message m1@list.example to alice@example.com).
KEYS = [
    (
        2,
        "550 5.1.1 no such user",
        "fe3d57d45546d8f1267de6937e2153702c3ee37ffc560ae11e22a8bc4db704b3",
    ),
    (
        None,
        "550 5.1.1 no such user",
        "5c086e3b9f686a270b68067f878070088c475d746298593791fe0c5f905196b8",
    ),
    (
        None,
        "250 ok",
        "2d6d9cf38f8df22935c5d6d3cf32c64a3f8e304078cfc02d97020e07a67d21d0",
    ),
]
#: The keys earlier versions stored for the same events given as ``<m1@list.example>``: they
#: were made of the id as given, brackets and all.
LEGACY_KEYS = [
    "8554d9ea1d261ea4de52fa134ce68bdedb86ad2e97cc3430ca9a6ba20d6dd1ff",
    "c24683c2319e3f5dc28acddc5eaa402f6d398fc56e741470ea4e940d1122a47b",
    "4a0a2fc6dfced95dd39b7218207d1bb67327e52963c058532a19b1a1730afa10",
]


@pytest.mark.parametrize(
    "message_id", ["m1@list.example", "<m1@list.example>", " <m1@list.example> "]
)
@pytest.mark.parametrize(("attempt", "reply", "key"), KEYS)
def test_event_keys_keep_the_values_earlier_stores_hold_and_ignore_angle_brackets(
    message_id: str, attempt: int | None, reply: str, key: str
) -> None:
    assert event_key(message_id, "alice@example.com", attempt, KEY_TIME, parse_reply(reply)) == key


def test_event_keys_of_free_text_and_of_no_reply_keep_their_values() -> None:
    assert (
        event_key(None, "alice@example.com", None, KEY_TIME, "out of office")
        == "8bef86b9f9549e4035d814e344be8ca1ffc4fa014fa1f21d6b1f6aa4140311eb"
    )
    assert (
        event_key(None, "alice@example.com", 3, KEY_TIME, None)
        == "451b0e0ed20f0ab52854ca33f1ef2df93fe383994908b32875507859b7a517be"
    )


def test_record_and_record_many_store_the_event_key_of_each_event(
    engine: Engine, db_url: str
) -> None:
    engine.record(
        "Alice@Example.com",
        "550 5.1.1 no such user",
        message_id="<m1@list.example>",
        attempt=2,
        at=KEY_TIME,
    )
    engine.record_many(
        [
            {
                "recipient": "alice@example.com",
                "reply": "250 ok",
                "message_id": "<m1@list.example>",
                "at": KEY_TIME.isoformat(),
            },
            {
                "recipient": "alice@example.com",
                "reply": "250 ok",
                "message_id": "<m1@list.example>",
                "at": KEY_TIME.isoformat(),
            },
        ]
    )
    db = create_engine(db_url)
    try:
        with db.connect() as conn:
            keys = set(conn.scalars(select(Event.key)))
    finally:
        db.dispose()
    assert keys == {KEYS[0][2], KEYS[2][2]}


@pytest.mark.parametrize(
    "at",
    [
        "2026-11-02T12:00:00Z",
        "2026-11-02T12:00:00.000001+00:00",
        "2026-11-02T13:30:05.5+01:30",
        "2026-11-02 12:00:00",
        datetime(2026, 11, 2, 12, 0, 7, 120000, tzinfo=UTC),
    ],
)
def test_record_many_keys_an_event_by_its_time_in_utc_with_a_fraction_only_when_it_has_one(
    engine: Engine, db_url: str, at: str | datetime
) -> None:
    engine.record_many([{"recipient": "alice@example.com", "reply": "250 ok", "at": at}])
    when = at if isinstance(at, datetime) else datetime.fromisoformat(at.replace("Z", "+00:00"))
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    db = create_engine(db_url)
    try:
        with db.connect() as conn:
            keys = list(conn.scalars(select(Event.key)))
    finally:
        db.dispose()
    assert keys == [event_key(None, "alice@example.com", None, when, parse_reply("250 ok"))]


def test_a_reply_recorded_with_and_without_angle_brackets_around_its_message_id_is_one_event(
    engine: Engine, db_url: str
) -> None:
    first = engine.record(
        "alice@example.com", USER_UNKNOWN, message_id="<m1@list.example>", attempt=1
    )
    before = dump_store(db_url)
    again = engine.record(
        "alice@example.com", USER_UNKNOWN, message_id="m1@list.example", attempt=1
    )
    assert not first.duplicate
    assert again.duplicate
    assert dump_store(db_url) == before


def test_one_chunk_holding_a_reply_with_and_without_angle_brackets_records_it_once(
    engine: Engine,
) -> None:
    reply = {"recipient": "alice@example.com", "reply": OK, "at": KEY_TIME.isoformat()}
    result = engine.record_many(
        [{**reply, "message_id": "<m1@list.example>"}, {**reply, "message_id": "m1@list.example"}]
    )
    assert (result.recorded, result.duplicates) == (1, 1)
    assert _count(engine, Event) == 1


def _store_legacy_keys(db_url: str, legacy: dict[str, str]) -> None:
    """Give stored events the keys an earlier version made for them ({key now: key then})."""
    db = create_engine(db_url)
    try:
        with db.begin() as conn:
            for now_key, then_key in legacy.items():
                conn.execute(update(Event).where(Event.key == now_key).values(key=then_key))
    finally:
        db.dispose()


def test_an_event_an_earlier_version_stored_under_its_bracketed_message_id_is_still_a_duplicate(
    engine: Engine, db_url: str
) -> None:
    items = [
        {
            "recipient": "alice@example.com",
            "reply": reply,
            "message_id": "<m1@list.example>",
            "attempt": attempt,
            "at": KEY_TIME.isoformat(),
        }
        for attempt, reply, _ in KEYS
    ]
    engine.record_many(items)
    _store_legacy_keys(
        db_url, {key: legacy for (_, _, key), legacy in zip(KEYS, LEGACY_KEYS, strict=True)}
    )
    before = dump_store(db_url)
    again = engine.record_many(items)
    single = engine.record(
        "alice@example.com", KEYS[0][1], message_id="<m1@list.example>", attempt=2, at=KEY_TIME
    )
    assert (again.recorded, again.duplicates) == (0, 3)
    assert single.duplicate
    assert dump_store(db_url) == before


@pytest.mark.parametrize(
    ("kind", "text", "verdict", "legacy_key"),
    [
        (
            EventKind.AUTO_REPLY,
            "I am on holiday",
            Verdict(Outcome.INFORMATIONAL, Reason.VACATION, Fault.RECIPIENT, rule="rfc3834"),
            "596858371277067276e69b530ddb783e43f339d449dc0ecf065f5bde10dd32a0",
        ),
        (
            EventKind.EXPIRY,
            None,
            POSTFIX_EXPIRED_VERDICT,
            "77977c4f3083f27731c6ecb28e7bfd17a941fe322bd050268933a04292e81c6c",
        ),
    ],
)
def test_an_event_of_no_delivery_an_earlier_version_stored_under_its_bracketed_id_is_a_duplicate(
    engine: Engine,
    db_url: str,
    kind: EventKind,
    text: str | None,
    verdict: Verdict,
    legacy_key: str,
) -> None:
    # An auto-reply or a relay's expiry to a message never recorded makes no delivery: the
    # engine cannot tell from the deliveries that the event may be stored already.
    item = ReplyRecord(
        recipient="alice@example.com",
        message_id="<m1@list.example>",
        kind=kind,
        text=text,
        verdict=verdict,
        at=KEY_TIME,
    )
    engine.record_many([item])
    now_key = event_key("m1@list.example", "alice@example.com", None, KEY_TIME, text)
    _store_legacy_keys(db_url, {now_key: legacy_key})
    before = dump_store(db_url)
    again = engine.record_many([item])
    assert (again.recorded, again.duplicates) == (0, 1)
    assert _count(engine, Delivery) == 0
    assert dump_store(db_url) == before


def test_a_standing_that_moves_and_comes_back_in_one_chunk_is_dated_by_the_last_move(
    engine: Engine, frozen_now: datetime
) -> None:
    first = frozen_now - timedelta(hours=3)
    engine.record("bob@example.com", OK, message_id="<m1@x>", at=first)
    engine.record_many(
        [
            {
                "recipient": "bob@example.com",
                "reply": MAILBOX_FULL,
                "message_id": "<m2@x>",
                "at": (first + timedelta(hours=1)).isoformat(),
            },
            {
                "recipient": "bob@example.com",
                "reply": OK,
                "message_id": "<m3@x>",
                "at": (first + timedelta(hours=2)).isoformat(),
            },
        ]
    )
    status = engine.status("bob@example.com")
    assert status.standing is Standing.DELIVERED
    assert status.since == first + timedelta(hours=2)
    assert status.counters["events_count"] == 3


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"at": 1764331200}, "time must be"),
        ({"at": date(2026, 11, 2)}, "time must be"),
        ({"key": 5}, "key must be a string"),
        ({"verdict": "bounced"}, "verdict must be a Verdict"),
        # A JSON log line can carry a lone surrogate ("\ud800"), which UTF-8 cannot encode; a
        # number or a time can be beyond what a column or datetime holds. Each failed the whole
        # chunk in the database, or in the arithmetic on times, and stopped the nightly job.
        ({"recipient": "b\ud800@example.com"}, "not valid Unicode"),
        ({"reply": "550 5.1.1 no such user\ud800"}, "not valid Unicode"),
        ({"reply": None, "code": 550, "status": "5.1.1", "text": "no\udcffuser"}, "not valid"),
        ({"message_id": "m\ud8002"}, "message_id is not valid Unicode"),
        ({"attempt": 2**63}, "attempt 9223372036854775808 is more than"),
        ({"attempt": "99999999999999999999"}, "is more than"),
        # int() reads any script's digits: "١٢" (Arabic-Indic) was taken for 12.
        ({"attempt": "\u0661\u0662"}, "attempt must be a whole number"),
        ({"at": "0001-01-01T00:00:00+01:00"}, "out of range"),
        ({"at": "9999-12-31T23:59:59-01:00"}, "out of range"),
        ({"at": datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))}, "out of range"),
        ({"at": "1900-01-01T00:00:00Z"}, "before 1970"),
    ],
)
def test_an_item_with_a_field_of_the_wrong_type_or_range_is_rejected_and_the_batch_goes_on(
    engine: Engine, bad: dict[str, Any], match: str
) -> None:
    # DESIGN.md "Errors": bad input never aborts a batch.
    result = engine.record_many(
        [
            {"recipient": "a@example.com", "reply": OK, "message_id": "m1"},
            {"recipient": "b@example.com", "reply": OK, "message_id": "m2", **bad},
            {"recipient": "c@example.com", "reply": OK, "message_id": "m3"},
        ]
    )
    assert result.recorded == 2
    assert [r.position for r in result.rejected] == ["2"]
    assert match in result.rejected[0].reason
    assert _count(engine, RejectedInput) == 1


@pytest.mark.parametrize(
    "bad",
    [
        {"message_id": "m\x002"},
        {"source": "log\x00.jsonl"},
        {"position": "line\x002"},
        {"reply": None, "code": 550, "status": "5.1.1", "text": "no such\x00user"},
        {"raw": "line\x00two", "attempt": 0},
    ],
)
def test_a_nul_character_in_an_item_never_stops_the_batch_on_any_backend(
    engine: Engine, bad: dict[str, Any]
) -> None:
    # PostgreSQL text cannot hold NUL (a JSON log line may well carry "\u0000"): the item is
    # rejected, or the NUL made visible, and the rest of the chunk is still written.
    result = engine.record_many(
        [
            {"recipient": "a@example.com", "reply": OK, "message_id": "m1"},
            {"recipient": "b@example.com", "reply": OK, "message_id": "m2", **bad},
            {"recipient": "c@example.com", "reply": OK, "message_id": "m3"},
        ]
    )
    assert result.recorded + len(result.rejected) == 3
    assert engine.is_sendable("c@example.com")
    with Session(engine.db) as s:
        texts = [
            *s.scalars(select(Event.message_id)),
            *s.scalars(select(Event.source)),
            *s.scalars(select(Event.position)),
            *s.scalars(select(Event.text)),
            *s.scalars(select(RejectedInput.raw)),
            *s.scalars(select(RejectedInput.source)),
            *s.scalars(select(RejectedInput.position)),
        ]
    assert not any("\x00" in t for t in texts if t)


def test_a_message_id_in_angle_brackets_is_the_same_delivery_as_a_bounce_that_names_it_bare(
    engine: Engine,
) -> None:
    # RFC 5322 section 3.6.4: the brackets delimit a msg-id, they are not part of it. The
    # ingest sources (reply logs, Postfix, DSNs) drop them; the sender's API must too, or a
    # DSN for a message recorded in-process starts a second delivery.
    engine.record("a@example.com", MAILBOX_FULL, message_id=" <m1@list.example> ")
    engine.record_many(
        [
            {
                "recipient": "a@example.com",
                "message_id": "m1@list.example",
                "kind": "bounce",
                "reply": USER_UNKNOWN,
            }
        ]
    )
    assert _count(engine, Delivery) == 1
    assert _delivery(engine, "m1@list.example").state is DeliveryState.BOUNCED
    assert engine.due_retries(now=engine.now() + timedelta(days=1)) == []


def test_a_manual_suppression_for_a_week_never_shortens_a_hard_bounce_suppression(
    db_url: str, clock: FakeClock
) -> None:
    # Refreshing the open suppression with a person's "until" made a user_unknown address
    # sendable again once the week was over.
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        engine.record("a@example.com", USER_UNKNOWN, message_id="m1")
        engine.suppress(
            "a@example.com",
            "asked for a week off",
            by="support",
            until=clock.now + timedelta(days=7),
        )
        clock.advance(timedelta(days=8))
        status = engine.status("a@example.com")
    assert (status.suppressed, status.sendable, status.reason) == (True, False, Reason.USER_UNKNOWN)


def test_suppressing_again_for_longer_extends_a_manual_suppression(
    engine: Engine, clock: FakeClock
) -> None:
    engine.suppress("a@example.com", "asked", by="support", until=clock.now + timedelta(days=1))
    engine.suppress(
        "a@example.com", "asked again", by="support", until=clock.now + timedelta(days=7)
    )
    clock.advance(timedelta(days=2))
    assert not engine.is_sendable("a@example.com")


def test_a_reply_record_takes_its_kind_and_source_as_a_mapping_does(engine: Engine) -> None:
    # A kind given as its text, or no source, aborted the whole batch (AttributeError,
    # TypeError) where the same fields in a dict are read or rejected.
    result = engine.record_many(
        [
            ReplyRecord(
                recipient="a@example.com", message_id="m1", reply=USER_UNKNOWN, kind="bounce"
            ),  # type: ignore[arg-type]
            ReplyRecord(recipient="b@example.com", message_id="m2", reply=OK, kind="nonsense"),  # type: ignore[arg-type]
            ReplyRecord(recipient="c@example.com", message_id="m3", reply=OK, source=None),  # type: ignore[arg-type]
        ]
    )
    assert result.recorded == 2
    assert [(r.source, r.position) for r in result.rejected] == [("api", "2")]
    assert "unknown event kind 'nonsense'" in result.rejected[0].reason
    assert engine.status("a@example.com").history[0].kind is EventKind.BOUNCE
    assert engine.status("c@example.com").history[0].source == "api"
    decision = engine.record("d@example.com", USER_UNKNOWN, message_id="m4", kind="bounce")  # type: ignore[arg-type]
    assert decision.delivery_state is DeliveryState.BOUNCED


def test_the_push_back_that_pauses_a_destination_schedules_its_own_retry_after_the_pause(
    db_url: str, clock: FakeClock
) -> None:
    # docs/api.md: a retry is never earlier than the destination's throttle. The throttle the
    # reply itself raises (in the same transaction) counts too, or the sender is told to retry
    # in the middle of the pause.
    tss04 = "421 4.7.0 [TSS04] Messages from 203.0.113.25 temporarily deferred"
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        decision = engine.record("a@yahoo.com", tss04, message_id="m1")
        throttle = engine.throttle_for("yahoo.com")
        assert throttle is not None
        assert decision.next_attempt_at is not None
        assert decision.next_attempt_at >= throttle.paused_until
        assert _delivery(engine, "m1", "a@yahoo.com").next_attempt_at == decision.next_attempt_at


def test_a_batch_moves_every_retry_it_scheduled_to_the_end_of_the_pause_it_raised(
    db_url: str, clock: FakeClock
) -> None:
    # As above, for a chunk: a deferral recorded before the push-back in the same chunk is
    # moved too, and a delivery the chunk deferred and then delivered has no retry to move.
    tss04 = "421 4.7.0 [TSS04] Messages from 203.0.113.25 temporarily deferred"
    busy = "451 4.3.0 Temporary local problem, please try again later"
    t = clock.now - timedelta(minutes=5)
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        result = engine.record_many(
            [
                {"recipient": "a@yahoo.com", "message_id": "m1", "reply": busy, "at": t},
                {"recipient": "c@yahoo.com", "message_id": "m3", "reply": busy, "at": t},
                {"recipient": "b@yahoo.com", "message_id": "m2", "reply": tss04, "at": t},
                {
                    "recipient": "c@yahoo.com",
                    "message_id": "m3",
                    "reply": OK,
                    "at": t + timedelta(minutes=1),
                },
            ]
        )
        assert result.recorded == 4
        throttle = engine.throttle_for("yahoo.com")
        assert throttle is not None
        for address, message in (("a@yahoo.com", "m1"), ("b@yahoo.com", "m2")):
            delivery = _delivery(engine, message, address)
            assert delivery.state is DeliveryState.DEFERRED
            assert delivery.next_attempt_at is not None
            assert delivery.next_attempt_at >= throttle.paused_until
        delivered = _delivery(engine, "m3", "c@yahoo.com")
        assert delivered.state is DeliveryState.DELIVERED
        assert delivered.next_attempt_at is None


def test_a_name_too_long_for_who_suppressed_is_a_clear_error_not_a_database_crash(
    engine: Engine,
) -> None:
    with pytest.raises(InputError, match="120 characters"):
        engine.suppress("a@example.com", "asked", by="x" * 121)
    engine.suppress("a@example.com", "asked", by="support")
    with pytest.raises(InputError, match="120 characters"):
        engine.unsuppress("a@example.com", by="y" * 121)
    assert not engine.is_sendable("a@example.com")


def test_status_of_a_suppression_that_ran_out_says_what_the_deliveries_say(
    engine: Engine, clock: FakeClock
) -> None:
    # Before the nightly job lifts it (lift_lapsed_suppressions), status said "suppressed"
    # beside suppressed: false.
    engine.record("a@example.com", OK, message_id="m1")
    engine.suppress("a@example.com", "asked", by="support", until=clock.now + timedelta(hours=1))
    clock.advance(timedelta(hours=2))
    status = engine.status("a@example.com").as_dict()
    assert (status["state"], status["suppressed"], status["sendable"]) == (
        "delivered",
        False,
        True,
    )


def test_two_bad_items_at_one_source_and_position_are_both_stored_and_a_repeat_is_not(
    engine: Engine,
) -> None:
    # A rotated log has a new line where the old one was: the position alone does not say which
    # item was rejected, the raw text does.
    def bad(raw: str) -> dict[str, Any]:
        return {"recipient": "broken", "reply": OK, "source": "log", "position": "7", "raw": raw}

    first = engine.record_many([bad("old line")])
    second = engine.record_many([bad("new line"), bad("old line")])
    assert len(first.rejected) == 1
    assert len(second.rejected) == 2
    with Session(engine.db) as s:
        stored = s.execute(
            select(RejectedInput.position, RejectedInput.raw).order_by(RejectedInput.id)
        ).all()
    assert [tuple(r) for r in stored] == [("7", "old line"), ("7", "new line")]


def test_a_source_path_too_long_for_its_column_keeps_its_end_where_the_file_name_is(
    engine: Engine,
) -> None:
    path = "/srv/" + "deep/" * 60 + "mailer/replies.jsonl"
    engine.record_many(
        [ReplyRecord(recipient="a@example.com", message_id="m1", reply=OK, source=path)]
    )
    (source,) = [e.source for e in engine.status("a@example.com").history]
    assert len(source) == 255
    assert source.endswith("/mailer/replies.jsonl")
    assert source.startswith("...")


def test_a_recipient_another_writer_creates_during_a_chunk_loses_no_count(
    db_url: str, clock: FakeClock, backend: str
) -> None:
    # Writer B's chunk is about a new address. Between B's lock on its recipients and the rest
    # of its chunk, writer A creates that recipient and commits, then writer C records for it
    # too. B must not write back counters it read without holding the row (C's count would be
    # lost): it finds the row new at its lock, so its insert conflicts and the chunk runs again.
    if backend == "sqlite":
        pytest.skip("SQLite writers hold the database's write lock from BEGIN: none can interleave")
    with (
        Engine(db_url, policy=POLICY, clock=clock, hygiene=False) as b,
        Engine(db_url, policy=POLICY, clock=clock, hygiene=False) as a,
        Engine(db_url, policy=POLICY, clock=clock, hygiene=False) as c,
    ):
        a.record("a@example.com", OK, message_id="<warm@x>")  # the schema, before the race
        bulk = b._bulk
        select_in, select_pairs = bulk.select_in, bulk.select_pairs
        fired: set[str] = set()

        def once(name: str, other: Engine, message_id: str) -> None:
            if name not in fired:
                fired.add(name)
                other.record("new@example.com", OK, message_id=message_id)

        def select_in_then_a(conn: Any, table: Any, *args: Any, **kw: Any) -> Any:
            rows = select_in(conn, table, *args, **kw)
            if table.name == "events":  # the chunk's idempotency check, after the lock
                once("a", a, "<from-a@x>")
            return rows

        def select_pairs_then_c(*args: Any, **kw: Any) -> Any:
            rows = select_pairs(*args, **kw)
            once("c", c, "<from-c@x>")
            return rows

        bulk.select_in = select_in_then_a  # type: ignore[method-assign]
        bulk.select_pairs = select_pairs_then_c  # type: ignore[method-assign]
        b.record("new@example.com", OK, message_id="<from-b@x>")
        assert fired == {"a", "c"}
    with Session(create_engine(db_url)) as s:
        recipient = s.scalars(
            select(Recipient).where(Recipient.address_key == "new@example.com")
        ).one()
        stored = s.scalar(select(func.count()).where(Event.recipient_id == recipient.id))
        assert stored == 3
        assert recipient.events_count == stored
        assert recipient.delivered_count == stored


def test_suppressing_an_already_suppressed_address_keeps_since_when_and_why_and_adds_the_note(
    db_url: str, clock: FakeClock
) -> None:
    # A person's suppress on an address hygiene had suppressed replaced the evidence's
    # description with the person's words and moved "suppressed since" to now.
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        engine.record("a@example.com", USER_UNKNOWN, message_id="m1")
        since = engine.status("a@example.com").since
        with Session(engine.db) as s:
            evidence = s.scalars(select(Action.detail)).one()
        clock.advance(timedelta(days=3))
        engine.suppress("a@example.com", "complained by phone", by="support")
        status = engine.status("a@example.com")
        with Session(engine.db) as s:
            detail = s.scalars(select(Action.detail)).one()
    assert status.since == since
    assert detail == f"{evidence}; support: complained by phone"


def test_a_new_suppression_after_one_ran_out_is_suppressed_since_now(
    engine: Engine, clock: FakeClock
) -> None:
    engine.suppress("a@example.com", "a day off", by="support", until=clock.now + timedelta(days=1))
    clock.advance(timedelta(days=2))
    engine.suppress("a@example.com", "asked to leave", by="support")
    assert engine.status("a@example.com").since == clock.now


class _TickingClock(FakeClock):
    """A clock a millisecond later at every reading, as a real one is."""

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=1)
        return self.now


def test_a_sender_recording_without_times_lifts_a_throttle_at_the_policy_count(
    db_url: str, frozen_now: datetime
) -> None:
    # record() read the clock for its decision, then again for an item given no time: the
    # delivery it had just stored was dated after "now", and counted only on the next call.
    throttle = load_policy().throttle
    with Engine(db_url, clock=_TickingClock(frozen_now)) as engine:
        engine.record("p@push.example", "421 4.7.0 Try again later", message_id="p1")
        assert engine.throttle_for("push.example") is not None
        for i in range(throttle.release_after_deliveries - 1):
            engine.record(f"r{i}@push.example", OK, message_id=f"r{i}")
        assert engine.throttle_for("push.example") is not None
        engine.record("last@push.example", OK, message_id="last")
        assert engine.throttle_for("push.example") is None


def test_a_rejected_item_longer_than_a_mariadb_text_is_kept_cut_and_the_batch_goes_on(
    engine: Engine,
) -> None:
    # MariaDB's TEXT holds 65,535 bytes: a longer raw line failed the whole chunk there.
    result = engine.record_many(
        [
            {"recipient": "a@example.com", "reply": OK, "message_id": "m1"},
            {"recipient": "b@example.com", "reply": "hello", "raw": "例" * 30_000},
        ]
    )
    assert result.recorded == 1
    with Session(engine.db) as s:
        [raw] = s.scalars(select(RejectedInput.raw)).all()
    assert raw.startswith("例" * 1000)
    assert len(raw.encode("utf-8")) <= 65_535


def test_rejected_items_whose_source_differs_by_trailing_spaces_do_not_stop_the_batch(
    engine: Engine,
) -> None:
    # MariaDB compares "log.jsonl" and "log.jsonl " as equal in the unique key: the second
    # row was a duplicate key there, retried ten times, and the batch lost.
    bad = {"recipient": "b@example.com", "reply": "hello", "raw": "same", "position": "7"}
    result = engine.record_many(
        [
            {"recipient": "a@example.com", "reply": OK, "message_id": "m1"},
            {**bad, "source": "log.jsonl"},
            {**bad, "source": "log.jsonl "},
            {**bad, "source": "log.jsonl", "position": "7 "},
        ]
    )
    assert result.recorded == 1
    assert len(result.rejected) == 3
    assert _count(engine, RejectedInput) == 1


def test_a_sender_alert_counts_each_block_once_however_often_it_is_evaluated(
    db_url: str, clock: FakeClock, frozen_now: datetime
) -> None:
    # The hook counted the blocks as they were recorded; the nightly evaluation judged the same
    # blocks again and added them again (24 for 12), and every --full once more.
    blocked = "554 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org"
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        _blocks_counted_once(engine, blocked, frozen_now)


def _blocks_counted_once(engine: Engine, blocked: str, frozen_now: datetime) -> None:
    for i in range(12):
        at = frozen_now - timedelta(minutes=30 - i)
        engine.record(f"u{i}@blk.example", blocked, message_id=f"m{i}", at=at)

    def alert() -> Action:
        with Session(engine.db) as s:
            return s.scalars(select(Action).where(Action.kind == ActionKind.ALERT)).one()

    assert alert().evidence["blocks"] == 12
    for full in (False, True, True):
        with Session(engine.db) as s:
            store_hygiene.evaluate(s, engine.policy, frozen_now, full=full)
            s.commit()
        assert alert().evidence["blocks"] == 12
        assert "12 block(s)" in alert().detail
    engine.record("late@blk.example", blocked, message_id="late", at=frozen_now)
    assert alert().evidence["blocks"] == 13
    # Two recorded with the hook off, then one --full over all of them: only those two added.
    url = engine.db.url.render_as_string(hide_password=False)
    with Engine(url, policy=POLICY, clock=lambda: frozen_now, hygiene=False) as quiet:
        for name in ("x", "y"):
            quiet.record(f"{name}@blk.example", blocked, message_id=name, at=frozen_now)
    with Session(engine.db) as s:
        store_hygiene.evaluate(s, engine.policy, frozen_now, full=True)
        s.commit()
    assert alert().evidence["blocks"] == 15


def test_a_loaded_recipient_takes_each_column_from_its_place_in_the_row() -> None:
    # `_Recipient.loaded` names the columns one by one, in the order the chunk writer selects
    # them: a column moved or added on one side only would swap two counters unnoticed.
    row = tuple(f"value of {name}" for name in _RECIPIENT_LOAD)
    rec = _Recipient.loaded(row)
    assert {name: getattr(rec, name) for name in _RECIPIENT_LOAD} == dict(
        zip(_RECIPIENT_LOAD, row, strict=True)
    )
    assert rec.standing_was == "value of standing"
    assert rec.last_key is None


def test_a_recipient_of_the_chunk_writer_holds_every_column_a_new_row_inserts() -> None:
    assert set(_RECIPIENT_COLUMNS) <= set(_Recipient.__slots__)
