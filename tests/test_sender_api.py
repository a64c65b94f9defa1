"""The sender's Python API as a mailing-list sender uses it every day (README.md, docs/api.md):
ask before each send, record after each reply, retry what is due, manage addresses by hand, from
several threads, forked workers and beside the nightly job."""

from __future__ import annotations

import json
import multiprocessing
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import FakeClock
from sqlalchemy import Engine as SAEngine
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from deliverability import engine as engine_module
from deliverability.cli import cli
from deliverability.engine import Engine
from deliverability.errors import InputError
from deliverability.nightly import run_nightly
from deliverability.policy import load_policy
from deliverability.store.models import Action, Delivery, Event, Recipient
from deliverability.vocabulary import ActionKind, ActionStatus, DeliveryState, Reason

POLICY = load_policy()
ROOT = Path(__file__).resolve().parent.parent
#: Yahoo's push-back: the provider group is paused for an hour (the shipped provider rules).
MAILBOX_FULL = "452 4.2.2 mailbox full"
YAHOO_PUSHBACK = (
    "421 4.7.0 [TSS04] Messages from 203.0.113.25 temporarily deferred due to unexpected volume"
)


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    with Engine(db_url, policy=POLICY, clock=clock) as e:
        yield e


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


# -- the documents' examples ------------------------------------------------------------------


@pytest.mark.parametrize("doc", ["README.md", "docs/api.md"])
def test_the_python_examples_of_the_docs_run_as_written(
    doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The examples open the default store, deliverability.db in the working directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DELIVERABILITY_DATABASE_URL", raising=False)
    monkeypatch.delenv("DELIVERABILITY_POLICY", raising=False)
    blocks = [b for b in _python_blocks(ROOT / doc) if "Engine(" in b]
    assert blocks
    for block in blocks:
        exec(compile(block, doc, "exec"), {})


# -- times given to the API -------------------------------------------------------------------

NAIVE = datetime(2026, 11, 2, 11, 0)


def test_a_naive_datetime_given_as_the_time_of_a_reply_is_refused_with_the_fix(
    engine: Engine,
) -> None:
    # datetime.now() on a host whose zone is not UTC is a local time: taken as UTC, every reply
    # would be dated hours off, and still within the day ahead that is accepted.
    with pytest.raises(InputError, match=r"no time zone.*aware"):
        engine.record("a@example.com", "250 2.0.0 OK", message_id="m1", at=NAIVE)
    assert engine.status("a@example.com").history == ()


def test_a_naive_datetime_in_a_batch_rejects_that_item_only(engine: Engine) -> None:
    result = engine.record_many(
        [
            {"recipient": "a@example.com", "message_id": "m1", "reply": "250 ok", "at": NAIVE},
            {"recipient": "b@example.com", "message_id": "m2", "reply": "250 ok"},
        ]
    )
    assert result.recorded == 1
    assert [r.position for r in result.rejected] == ["1"]
    assert "no time zone" in result.rejected[0].reason


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.suppress("a@example.com", "asked by phone", by="support", until=NAIVE),
        lambda e: e.due_retries(now=NAIVE),
        lambda e: e.expire_overdue(NAIVE),
        lambda e: e.lift_lapsed_suppressions(NAIVE),
    ],
    ids=["suppress-until", "due_retries-now", "expire_overdue-now", "lift_lapsed-now"],
)
def test_every_time_the_api_takes_refuses_a_naive_datetime(
    engine: Engine, call: Callable[[Engine], Any]
) -> None:
    with pytest.raises(InputError, match="no time zone"):
        call(engine)


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.suppress("a@example.com", "asked by phone", by="support", until=5),
        lambda e: e.due_retries(now=1764400000),
        lambda e: e.expire_overdue(datetime(2026, 11, 2).date()),
    ],
    ids=["suppress-until", "due_retries-now", "expire_overdue-now"],
)
def test_a_time_that_is_neither_a_datetime_nor_iso_text_is_an_input_error(
    engine: Engine, call: Callable[[Engine], Any]
) -> None:
    with pytest.raises(InputError, match="ISO 8601 string or a datetime"):
        call(engine)


def test_due_retries_takes_its_time_as_iso_text_as_record_takes_at(
    engine: Engine, clock: FakeClock
) -> None:
    engine.record("a@example.com", "451 4.3.0 try later", message_id="m1")
    later = (clock.now + timedelta(hours=1)).astimezone(UTC).isoformat()
    assert [r.message_id for r in engine.due_retries(now=later)] == ["m1"]


def test_a_clock_that_returns_a_naive_time_is_refused_when_first_read(db_url: str) -> None:
    with (
        Engine(db_url, policy=POLICY, clock=lambda: NAIVE) as e,
        pytest.raises(InputError, match="no time zone"),
    ):
        e.filter_sendable(["a@example.com"])


def test_aware_times_in_any_zone_and_iso_offsets_are_the_same_instant(
    engine: Engine, clock: FakeClock
) -> None:
    # Europe/Berlin falls back on 2026-10-25: 02:30 happens twice, an hour apart.
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2026, 10, 25, 2, 30, tzinfo=berlin)
    second = datetime(2026, 10, 25, 2, 30, tzinfo=berlin, fold=1)
    engine.record("a@example.com", "451 4.3.0 try later", message_id="dst", at=first)
    engine.record("a@example.com", "451 4.3.0 try later", message_id="dst", at=second)
    again = engine.record(
        "a@example.com", "451 4.3.0 try later", message_id="dst", at="2026-10-25T02:30:00+01:00"
    )
    assert again.duplicate  # the second 02:30, given as text with its offset
    times = sorted(e.at for e in engine.status("a@example.com").history)
    assert times == [
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 1, 30, tzinfo=UTC),
    ]
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)


# -- the retry loop ---------------------------------------------------------------------------


def _deferred_at_yahoo(engine: Engine, clock: FakeClock, count: int) -> None:
    """`count` deliveries to Yahoo deferred now, three to example.org after them, then Yahoo
    paused by a push-back once all of them are due (30 minutes, give or take a tenth)."""
    at = clock.now.isoformat()
    result = engine.record_many(
        {
            "recipient": f"y{i}@yahoo.com",
            "message_id": f"y{i}",
            "reply": "451 4.3.0 later",
            "at": at,
        }
        for i in range(count)
    )
    assert result.recorded == count
    clock.advance(timedelta(minutes=10))
    for i in range(3):
        # Seven minutes apart: more than the retries' jitter, so they fall due in this order.
        engine.record(f"o{i}@example.org", "451 4.3.0 try later", message_id=f"o{i}")
        clock.advance(timedelta(minutes=7))
    clock.advance(timedelta(minutes=27))
    assert not engine.record("p@yahoo.com", YAHOO_PUSHBACK, message_id="p").sendable
    clock.advance(timedelta(minutes=2))


def test_due_retries_skips_a_paused_destination_and_gives_the_rest_oldest_first(
    engine: Engine, clock: FakeClock
) -> None:
    _deferred_at_yahoo(engine, clock, 150)
    due = engine.due_retries(limit=2)
    assert [r.address for r in due] == ["o0@example.org", "o1@example.org"]
    assert [r.attempt for r in due] == [2, 2]
    assert [r.address for r in engine.due_retries()] == [f"o{i}@example.org" for i in range(3)]
    throttle = engine.throttle_for("yahoo.com")
    assert throttle is not None
    # Once the pause is over every Yahoo delivery is due again, none before.
    clock.set(throttle.paused_until)
    assert len(engine.due_retries(limit=1000)) == 3 + 150 + 1
    assert min(r.next_attempt_at for r in engine.due_retries(limit=1000)) <= clock.now


def test_a_delivered_or_bounced_retry_is_no_longer_due(engine: Engine, clock: FakeClock) -> None:
    _deferred_at_yahoo(engine, clock, 1)
    engine.record("o0@example.org", "250 2.0.0 OK", message_id="o0")
    engine.record("o1@example.org", "550 5.1.1 no such user", message_id="o1")
    assert [r.address for r in engine.due_retries()] == ["o2@example.org"]
    assert not engine.is_sendable("o1@example.org")


@pytest.mark.parametrize("in_sql", [1000, 0], ids=["left-out-in-sql", "passed-over"])
def test_due_retries_reads_past_a_long_paused_backlog_in_a_few_statements(
    engine: Engine, clock: FakeClock, in_sql: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sender's biggest destination paused with thousands of retries waiting: every call of
    # the retry loop read them a hundred at a time with a growing OFFSET (each page reading all
    # the pages before it again), 20 s for 40,000 on SQLite. `in_sql` 0: as many paused domains
    # as a provider group with thousands learned, too many to leave out in the SQL.
    monkeypatch.setattr(engine_module, "_DUE_PAUSED_IN_SQL", in_sql)
    _deferred_at_yahoo(engine, clock, 3000)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM deliveries" in statement:
            statements.append(statement)

    event.listen(engine.db, "before_cursor_execute", count)
    try:
        due = engine.due_retries(limit=10)
    finally:
        event.remove(engine.db, "before_cursor_execute", count)
    assert [r.address for r in due] == [f"o{i}@example.org" for i in range(3)]
    assert len(statements) <= 6


@pytest.mark.parametrize("limit", ["10", -1, 2.5, True])
def test_a_limit_that_is_not_a_whole_number_of_zero_or_more_is_an_input_error(
    engine: Engine, limit: Any
) -> None:
    with pytest.raises(InputError, match="limit must be a whole number"):
        engine.due_retries(limit=limit)


def test_a_limit_of_zero_lists_nothing(engine: Engine, clock: FakeClock) -> None:
    engine.record("a@example.com", "451 4.3.0 try later", message_id="m1")
    clock.advance(timedelta(hours=1))
    assert engine.due_retries(limit=0) == []
    assert len(engine.due_retries(limit=1)) == 1


# -- asking before a send ---------------------------------------------------------------------


def test_filter_sendable_over_a_list_keeps_order_and_duplicates_and_leaves_out_the_rest(
    engine: Engine,
) -> None:
    engine.record("Jörg@Bücher.example", "550 5.1.1 no such user", message_id="m1")
    engine.record("bob@example.org", "550 5.1.1 no such user", message_id="m2")
    given = [
        "alice@example.com",
        "jörg@xn--bcher-kva.example",  # the same address, its domain as an A-label
        "BOB@EXAMPLE.ORG",
        "alice@example.com",
        "not an address",
        "carol@Example.NET",
    ]
    sendable, why = engine.sendable_with_reasons(given)
    assert sendable == ["alice@example.com", "alice@example.com", "carol@Example.NET"]
    assert engine.filter_sendable(given) == sendable
    assert set(why) == {"jörg@xn--bcher-kva.example", "BOB@EXAMPLE.ORG", "not an address"}
    assert why["not an address"].startswith("not an email address")
    assert engine.why_not_sendable("bob@example.org") == why["BOB@EXAMPLE.ORG"]


def test_filter_sendable_asks_in_pieces_whatever_the_engines_chunk_size(
    db_url: str, clock: FakeClock
) -> None:
    # A sender that raised chunk_size for record_many made filter_sendable send one statement
    # with every address of the list: PostgreSQL takes at most 65,535 parameters.
    count = 66_000
    with Engine(db_url, policy=POLICY, clock=clock, chunk_size=100_000) as e:
        e.record(f"u{count - 1}@example.com", "550 5.1.1 no such user", message_id="m1")
        sendable = e.filter_sendable(f"u{i}@example.com" for i in range(count))
    assert len(sendable) == count - 1


@pytest.mark.parametrize("call", ["filter_sendable", "sendable_with_reasons"])
def test_a_single_address_given_for_a_list_is_an_input_error_not_an_empty_answer(
    engine: Engine, call: str
) -> None:
    # Iterated, a string is its characters: none is an address, so the answer was [].
    with pytest.raises(InputError, match="a list of addresses"):
        getattr(engine, call)("alice@example.com")


@pytest.mark.parametrize("given", ["alice@example.com", None, "not a domain"])
def test_throttle_for_names_what_is_wrong_with_what_it_was_given(
    engine: Engine, given: Any
) -> None:
    with pytest.raises(InputError, match="throttle_for takes a domain") as err:
        engine.throttle_for(given)
    assert "not an email address" not in str(err.value)


def test_throttle_for_answers_for_a_domain_of_a_paused_provider_group(
    engine: Engine, clock: FakeClock
) -> None:
    engine.record("p@yahoo.com", YAHOO_PUSHBACK, message_id="p")
    throttle = engine.throttle_for("YMAIL.com.")
    assert throttle is not None
    assert throttle.destination == "yahoo"
    assert throttle.paused_until > clock.now
    assert engine.why_not_sendable("someone@ymail.com") is not None


@pytest.mark.parametrize("history", [-1, "5", 1.5])
def test_a_history_length_that_is_not_a_whole_number_of_zero_or_more_is_an_input_error(
    engine: Engine, history: Any
) -> None:
    engine.record("a@example.com", "250 2.0.0 OK", message_id="m1")
    with pytest.raises(InputError, match="history must be a whole number"):
        engine.status("a@example.com", history=history)


# -- recording after each reply ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "problem"),
    [("k" * 65, "key is longer than 64 characters"), ("a\x00b", "key contains a NUL character")],
    ids=["too-long", "nul"],
)
def test_a_key_no_database_can_store_rejects_that_item_and_the_batch_goes_on(
    engine: Engine, key: str, problem: str
) -> None:
    # PostgreSQL and MariaDB refused the whole chunk (a DataError out of record_many); SQLite
    # stored the key as it was.
    items: list[dict[str, Any]] = [
        {"recipient": f"u{i}@example.com", "message_id": f"m{i}", "reply": "250 2.0.0 OK"}
        for i in range(5)
    ]
    items[2]["key"] = key
    result = engine.record_many(items)
    assert result.recorded == 4
    assert [(r.position, r.reason) for r in result.rejected] == [("3", problem)]
    with pytest.raises(InputError, match=problem):
        engine.record("v@example.com", "250 2.0.0 OK", message_id="m9", key=key)
    assert engine.record("v@example.com", "250 2.0.0 OK", message_id="m9", key="k" * 64).attempt


@pytest.mark.parametrize(
    ("reply", "hygiene", "budget"),
    [
        ("250 2.0.0 OK", False, 9),
        ("250 2.0.0 OK", True, 10),
        ("451 4.3.0 Try again later", False, 10),
        ("451 4.3.0 Try again later", True, 10),
    ],
    ids=["delivered", "delivered-hook", "deferred", "deferred-hook"],
)
def test_one_recorded_reply_is_one_transaction_of_a_few_statements_on_every_backend(
    db_url: str, clock: FakeClock, reply: str, hygiene: bool, budget: int
) -> None:
    # A sender calls record() after every SMTP reply, and on a server every statement is a
    # round trip: the call wrote its one event through PostgreSQL's COPY and read its id back,
    # asked for the domain's provider group before each pause read, read the pause to schedule
    # a retry for a reply that schedules none, and asked whether the address may be sent to in
    # a second transaction on another connection.
    with Engine(db_url, policy=POLICY, clock=clock, hygiene=None if hygiene else False) as engine:
        engine.record("a@example.com", "250 2.0.0 OK", message_id="<m1@list.example>")
        statements: list[str] = []
        begins: list[object] = []

        def began(conn: Any) -> None:
            begins.append(conn)

        def keep(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
            # SQLite's BEGIN IMMEDIATE is sent as a statement; the servers' BEGIN is not.
            if not sql.startswith("BEGIN"):
                statements.append(" ".join(sql.split())[:80])

        event.listen(engine.db, "before_cursor_execute", keep)
        event.listen(engine.db, "begin", began)
        try:
            decision = engine.record("a@example.com", reply, message_id="<m2@list.example>")
        finally:
            event.remove(engine.db, "before_cursor_execute", keep)
            event.remove(engine.db, "begin", began)
    assert decision.sendable
    assert decision.delivery_state is DeliveryState(decision.verdict.outcome.value)
    assert len(begins) == 1
    assert len(statements) <= budget, "\n".join(statements)


# -- the sender beside the nightly job on one SQLite file -------------------------------------


@pytest.fixture
def sender_commits_between_reads_and_writes(tmp_path: Path) -> Iterator[list[int]]:
    """After every statement that reads the ingest bookkeeping (`ingest_sources`), a sender
    process commits a write to the same SQLite file, if it can have the write lock at once: the
    moment a sender's `record()` lands in the middle of the nightly job's own transactions.
    Yields the list of the sender's commits."""
    path = tmp_path / "deliverability.db"
    commits: list[int] = []

    def sender_writes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM ingest_sources" not in statement:
            return
        sender = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            sender.execute(f"PRAGMA user_version = {len(commits) + 1}")
            commits.append(1)
        except sqlite3.OperationalError:
            pass  # the job holds the write lock: the sender waits its turn
        finally:
            sender.close()

    event.listen(SAEngine, "after_cursor_execute", sender_writes)
    try:
        yield commits
    finally:
        event.remove(SAEngine, "after_cursor_execute", sender_writes)


def _reply_log(tmp_path: Path) -> Path:
    log = tmp_path / "replies.jsonl"
    lines = [
        {
            "at": f"2026-11-02T0{i}:00:00Z",
            "recipient": f"u{i}@example.com",
            "message_id": f"m{i}",
            "attempt": 1,
            "reply": "250 2.0.0 OK",
        }
        for i in range(3)
    ]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return log


def test_the_nightly_job_waits_for_a_sender_instead_of_failing_with_database_is_locked(
    tmp_path: Path, clock: FakeClock, sender_commits_between_reads_and_writes: list[int]
) -> None:
    # Its bookkeeping transactions began as readers: a sender's commit after their first read
    # made their first write fail at once (SQLITE_BUSY_SNAPSHOT, not waited for), and the job
    # stopped with exit 75 while the sender was recording.
    log = _reply_log(tmp_path)
    with Engine(f"sqlite:///{tmp_path / 'deliverability.db'}", policy=POLICY, clock=clock) as e:
        summary = run_nightly(e, [log], now=clock.now)
    assert summary.recorded == 3
    assert [s.recorded for s in summary.sources] == [3]


def test_the_ingest_command_waits_for_a_sender_instead_of_failing_with_database_is_locked(
    tmp_path: Path, sender_commits_between_reads_and_writes: list[int]
) -> None:
    log = _reply_log(tmp_path)
    url = f"sqlite:///{tmp_path / 'deliverability.db'}"
    result = CliRunner().invoke(
        cli, ["--database-url", url, "ingest", str(log), "--now", "2026-11-02T12:00:00Z"]
    )
    assert result.exit_code == 0, result.output


# -- one Engine from several threads, and from forked workers ---------------------------------


def _counts(engine: Engine) -> tuple[int, int, int]:
    with Session(engine.db) as s:
        return (
            int(s.scalar(select(func.count()).select_from(Event)) or 0),
            int(s.scalar(select(func.sum(Recipient.events_count))) or 0),
            int(s.scalar(select(func.count()).select_from(Delivery)) or 0),
        )


def test_one_engine_shared_by_threads_records_and_answers_as_one_thread_would(
    engine: Engine,
) -> None:
    threads, each = 4, 60
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def sender(k: int) -> None:
        try:
            start.wait()
            for i in range(each):
                # The same ten addresses in every thread: their counters are shared.
                address = f"t{i % 10}@d{i % 3}.example.com"
                reply = "250 2.0.0 OK" if i % 3 else "451 4.3.0 try later"
                engine.record(address, reply, message_id=f"w{k}-{i}")
                if i % 10 == 0:
                    engine.filter_sendable([f"t{j}@d{j % 3}.example.com" for j in range(10)])
                    engine.due_retries(limit=10)
                    engine.status(address)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    workers = [threading.Thread(target=sender, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert _counts(engine) == (threads * each, threads * each, threads * each)


def _record_in_child(engine: Engine, k: int) -> None:
    for i in range(20):
        engine.record(f"c{k}-{i % 5}@example.com", "451 4.3.0 try later", message_id=f"c{k}-{i}")
        engine.filter_sendable([f"c{k}-{j}@example.com" for j in range(5)])


def test_an_engine_opened_before_a_fork_serves_the_parent_and_its_forked_workers(
    engine: Engine,
) -> None:
    # A sender that opens its Engine and then forks workers (multiprocessing, a pre-forking
    # server): the workers used the parent's pooled connections, so on PostgreSQL two processes
    # spoke on one socket ("another command is already in progress") and the parent's own
    # connection was lost.
    engine.record("parent@example.com", "250 2.0.0 OK", message_id="p1")
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_record_in_child, args=(engine, k)) for k in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [c.exitcode for c in children] == [0, 0]
    engine.record("parent@example.com", "250 2.0.0 OK", message_id="p2")
    assert _counts(engine) == (42, 42, 42)


# -- managing addresses by hand ---------------------------------------------------------------


def test_a_refresh_with_a_reason_name_gives_the_action_the_reason_the_standing_has(
    engine: Engine, clock: FakeClock
) -> None:
    # The recipient took the reason named by the refresh and its suppress action kept
    # "undefined": `deliverability actions` and `status` disagreed on why.
    engine.suppress("Manual@Example.com", "asked by phone", by="support")
    clock.advance(timedelta(hours=1))
    engine.suppress("manual@example.com", "user_unknown", by="ops")
    with Session(engine.db) as s:
        action = s.scalars(select(Action)).one()
    status = engine.status("MANUAL@example.com")
    assert status.reason is Reason.USER_UNKNOWN
    assert action.reason is Reason.USER_UNKNOWN
    assert (action.created_by, action.detail) == ("support", "asked by phone; ops: user_unknown")
    assert status.why_not is not None
    assert status.why_not.endswith("(by support: asked by phone; ops: user_unknown)")


def test_unsuppress_resolves_the_suppression_and_records_who_lifted_it_and_why(
    engine: Engine, clock: FakeClock
) -> None:
    engine.record("a@example.com", "550 5.1.1 no such user", message_id="m1")
    clock.advance(timedelta(hours=1))
    release = engine.unsuppress("A@example.com", by="support", reason="confirmed by the owner")
    assert engine.is_sendable("a@example.com")
    with Session(engine.db) as s:
        hygiene, released = s.scalars(select(Action).order_by(Action.id)).all()
    assert released.id == release
    assert (hygiene.kind, hygiene.status, hygiene.resolved_by) == (
        ActionKind.SUPPRESS,
        ActionStatus.RESOLVED,
        "support",
    )
    assert (released.kind, released.created_by, released.detail) == (
        ActionKind.RELEASE,
        "support",
        "confirmed by the owner",
    )
    assert released.evidence == {"released": hygiene.id}
    with pytest.raises(InputError, match="is not suppressed"):
        engine.unsuppress("a@example.com", by="support")


def test_a_reply_recorded_again_with_its_time_or_attempt_is_one_event_and_without_two(
    engine: Engine, clock: FakeClock
) -> None:
    at = clock.now.isoformat()
    first = engine.record("a@example.com", "451 4.3.0 try later", message_id="m1", at=at)
    clock.advance(timedelta(seconds=5))
    again = engine.record("a@example.com", "451 4.3.0 try later", message_id="m1", at=at)
    assert (first.duplicate, again.duplicate, again.attempt) == (False, True, 1)
    numbered = engine.record("b@example.com", "451 4.3.0 later", message_id="m2", attempt=1)
    clock.advance(timedelta(seconds=5))
    assert engine.record("b@example.com", "451 4.3.0 later", message_id="m2", attempt=1).duplicate
    assert numbered.attempt == 1
    engine.record("c@example.com", "451 4.3.0 try later", message_id="m3")
    clock.advance(timedelta(seconds=5))
    undated = engine.record("c@example.com", "451 4.3.0 try later", message_id="m3")
    assert (undated.duplicate, undated.attempt) == (False, 2)


def test_the_last_retry_at_the_give_up_time_is_offered_and_its_deferral_expires_the_delivery(
    engine: Engine, clock: FakeClock
) -> None:
    # docs/api.md: "the last retry at the give-up time". Its next attempt is the give-up time
    # itself, and due_retries asked for a lifetime still running after now: no time was both,
    # so the last retry was never offered and the delivery expired without it.
    decision = engine.record("a@example.com", "451 4.3.0 try later", message_id="m1")
    offered = []
    while decision.delivery_state is DeliveryState.DEFERRED and len(offered) < 50:
        # The sender's loop wakes up a minute after the next attempt it was told of.
        assert decision.next_attempt_at is not None
        clock.set(decision.next_attempt_at + timedelta(minutes=1))
        due = engine.due_retries()
        if not due:
            break
        (retry,) = due
        offered.append(retry)
        decision = engine.record(
            "a@example.com", "451 4.3.0 try later", message_id="m1", attempt=retry.attempt
        )
    last = offered[-1]
    assert last.expires_at == datetime(2026, 11, 2, 12, 0, tzinfo=UTC) + POLICY.backoff.lifetime
    assert last.next_attempt_at == last.expires_at
    assert decision.delivery_state is DeliveryState.EXPIRED
    assert engine.due_retries(now=clock.now + timedelta(days=1)) == []


def test_a_reply_recorded_in_process_and_read_from_the_log_is_one_event_with_its_attempt(
    engine: Engine,
) -> None:
    at = "2026-11-02T10:00:00Z"
    log_line = {"recipient": "a@example.com", "message_id": "m1", "at": at, "attempt": 1}
    engine.record("a@example.com", MAILBOX_FULL, message_id="<m1>", at=at, attempt=1)
    assert engine.record_many([{**log_line, "reply": MAILBOX_FULL}]).duplicates == 1
    # Without the attempt number in-process the two copies are two events (docs/api.md).
    engine.record("b@example.com", MAILBOX_FULL, message_id="m2", at=at)
    again = engine.record_many(
        [{**log_line, "recipient": "b@example.com", "message_id": "m2", "reply": MAILBOX_FULL}]
    )
    assert again.recorded == 1
    assert engine.status("b@example.com").counters["deferred_count"] == 2
