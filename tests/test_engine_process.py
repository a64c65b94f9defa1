"""The sender's Engine inside a real sender's process: connections the database server closed,
a database that is down, workers forked after the Engine was opened, and threads sharing it."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import backends
import pytest
from conftest import FROZEN_NOW, FakeClock
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import event, func, make_url, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from deliverability import engine as engine_module
from deliverability.cli import main
from deliverability.engine import Engine
from deliverability.errors import DeliverabilityError, StoreUnavailableError
from deliverability.policy import load_policy
from deliverability.store.bulk import SMALL_INSERT, BulkWriter
from deliverability.store.models import Base, Event
from deliverability.store.records import RecordedEvent
from deliverability.store.session import create_engine as store_create_engine
from deliverability.vocabulary import DeliveryState

POLICY = load_policy()
SERVER_BACKENDS = backends.backend_params(backends.SERVERS)


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    with Engine(db_url, policy=POLICY, clock=clock) as e:
        yield e


def _end_the_engines_sessions(url: str) -> int:
    """Close, from the server's side, every other session on the test's database, and return
    once they are gone: what a restart, a failover or MariaDB's wait_timeout does to the
    connections a pool holds."""
    admin = sa_create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                # With a timeout, pg_terminate_backend waits for the session to end (PostgreSQL
                # 14 and later): a ping sent before it ended would still be answered.
                ended = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
                return len(ended)
            others = text(
                "SELECT id FROM information_schema.processlist"
                " WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
            ids = list(conn.execute(others).scalars())
            for thread_id in ids:
                conn.execute(text(f"KILL CONNECTION {int(thread_id)}"))
            # KILL marks the session; the server ends it soon after.
            for _ in range(10_000):
                if not set(conn.execute(others).scalars()) & set(ids):
                    break
            return len(ids)
    finally:
        admin.dispose()


# -- connections the server closed ------------------------------------------------------------


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_every_call_after_the_server_closed_the_pooled_connections_succeeds(
    engine: Engine, db_url: str
) -> None:
    # The pool holds three connections, as after a busy moment of a threaded sender.
    held = [engine.db.connect() for _ in range(3)]
    for conn in held:
        conn.exec_driver_sql("SELECT 1")
        conn.close()
    engine.record("a@example.com", "451 4.3.0 try later", message_id="m1", attempt=1)
    assert _end_the_engines_sessions(db_url) >= 3
    # Each of these got a connection the server had closed ("terminating connection due to
    # administrator command", "Lost connection to MySQL server during query") and failed.
    assert engine.is_sendable("a@example.com")
    decision = engine.record("a@example.com", "250 2.0.0 OK", message_id="m1", attempt=2)
    assert decision.delivery_state is DeliveryState.DELIVERED
    assert _end_the_engines_sessions(db_url) >= 1
    assert engine.filter_sendable(["a@example.com", "b@example.com"]) == [
        "a@example.com",
        "b@example.com",
    ]
    assert _end_the_engines_sessions(db_url) >= 1
    assert len(engine.status("a@example.com").history) == 2


# -- a database that goes away ----------------------------------------------------------------


class _Gate:
    """A TCP relay on the loopback between an engine and its database server. Shut, it is the
    server gone for the engine: its open connections cut, new ones refused; opened again, the
    server back on the same address."""

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []

    def open(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, args=(self._listener,), daemon=True)
        self._acceptor.start()

    def shut(self) -> None:
        assert self._listener is not None
        listener, self._listener = self._listener, None
        # Closed once its accept() has returned: until then the kernel still takes connections.
        self._acceptor.join()
        listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):  # the other side closed it already
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # shut
            server = socket.create_connection(self.upstream, timeout=5)
            server.settimeout(None)
            client.settimeout(None)
            self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass  # shut, or the other side closed
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def gate(db_url: str) -> Iterator[tuple[_Gate, str]]:
    """A `_Gate` to the test's database server, open, and the database URL through it."""
    url = make_url(db_url)
    relay = _Gate(
        url.host or "127.0.0.1", url.port or {"postgresql": 5432}.get(url.get_backend_name(), 3306)
    )
    relay.open()
    yield relay, url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    if relay._listener is not None:
        relay.shut()


def _events(engine: Engine) -> int:
    with Session(engine.db) as s:
        return int(s.scalar(select(func.count()).select_from(Event)) or 0)


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_database_gone_under_the_sender_is_a_store_unavailable_error_and_back_it_serves_again(
    gate: tuple[_Gate, str], clock: FakeClock
) -> None:
    relay, url = gate
    with Engine(url, policy=POLICY, clock=clock) as engine:
        engine.record("a@example.com", "451 4.3.0 try later", message_id="m1", attempt=1)
        relay.shut()
        # SQLAlchemy's OperationalError ("connection refused", "Can't connect to MySQL server")
        # reached the sender, past an `except DeliverabilityError`.
        for call in (
            lambda: engine.record("a@example.com", "250 2.0.0 OK", message_id="m1", attempt=2),
            lambda: engine.is_sendable("a@example.com"),
            lambda: engine.filter_sendable(["a@example.com"]),
            lambda: engine.due_retries(),
        ):
            with pytest.raises(StoreUnavailableError) as caught:
                call()
            assert isinstance(caught.value, DeliverabilityError)
            assert str(caught.value).startswith(f"cannot reach the database {url}: ")
        relay.open()
        decision = engine.record("a@example.com", "250 2.0.0 OK", message_id="m1", attempt=2)
        assert decision.delivery_state is DeliveryState.DELIVERED
        assert engine.is_sendable("a@example.com")
        assert _events(engine) == 2


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_connection_lost_during_a_record_is_a_store_unavailable_error_and_keeps_nothing(
    engine: Engine, db_url: str, clock: FakeClock
) -> None:
    engine.record("a@example.com", "451 4.3.0 try later", message_id="m1", attempt=1)

    def server_restarts(
        session: Session, events: list[RecordedEvent], policy: Any, now: datetime
    ) -> list[Any]:
        # Inside record()'s transaction, after its rows were written and before it commits.
        _end_the_engines_sessions(db_url)
        return []

    cut = Engine(db_url, policy=POLICY, clock=clock, hygiene=server_restarts)
    try:
        with pytest.raises(StoreUnavailableError, match=r"^lost the connection to the database"):
            cut.record("a@example.com", "250 2.0.0 OK", message_id="m1", attempt=2)
    finally:
        cut.close()
    assert _events(engine) == 1
    assert engine.status("a@example.com").last_reply is not None
    assert engine.record("a@example.com", "250 2.0.0 OK", message_id="m1", attempt=2).attempt == 2
    assert _events(engine) == 2


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_a_connection_lost_during_record_many_keeps_the_chunks_committed_before_and_no_more(
    db_url: str, clock: FakeClock
) -> None:
    chunks: list[int] = []

    def restart_in_second_chunk(
        session: Session, events: list[RecordedEvent], policy: Any, now: datetime
    ) -> list[Any]:
        chunks.append(len(events))
        if len(chunks) == 2:
            _end_the_engines_sessions(db_url)
        return []

    items = [
        {"recipient": f"a{i}@example.com", "reply": "250 2.0.0 OK", "message_id": f"m{i}",
         "attempt": 1, "at": clock.now}
        for i in range(30)
    ]  # fmt: skip
    with Engine(
        db_url, policy=POLICY, clock=clock, hygiene=restart_in_second_chunk, chunk_size=10
    ) as engine:
        with pytest.raises(StoreUnavailableError, match=r"^lost the connection to the database"):
            engine.record_many(items)
        assert _events(engine) == 10
        # Given again whole, the batch records the rest once.
        assert engine.record_many(items).duplicates == 10
        assert _events(engine) == 30


@pytest.mark.parametrize("backend", backends.backend_params(["postgresql"]))
def test_a_connection_lost_during_a_copy_is_a_store_unavailable_error_and_is_not_used_again(
    db_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL a chunk's rows go by COPY (store/bulk.py), which SQLAlchemy's error
    # handling never sees. The transaction's rollback on the dead connection that follows is
    # seen: the sender gets the same error as for any other statement, and the pool drops it.
    copies: list[str] = []
    execute = BulkWriter._execute

    def end_before_the_first_copy(self: BulkWriter, conn: Any, compiled: Any, rows: Any) -> None:
        if compiled.copy and not copies:
            copies.append(compiled.sql)
            _end_the_engines_sessions(db_url)
        execute(self, conn, compiled, rows)

    monkeypatch.setattr(BulkWriter, "_execute", end_before_the_first_copy)
    items = [
        {"recipient": f"a{i}@example.com", "reply": "250 2.0.0 OK", "message_id": f"m{i}",
         "attempt": 1, "at": clock.now}
        for i in range(SMALL_INSERT + 5)
    ]  # fmt: skip
    with Engine(db_url, policy=POLICY, clock=clock) as engine:
        with pytest.raises(StoreUnavailableError, match=r"^lost the connection to the database"):
            engine.record_many(items)
        assert copies, "no COPY was made"
        assert _events(engine) == 0
        # The next call gets a live connection and records the batch whole.
        assert engine.record_many(items).recorded == len(items)
        assert _events(engine) == len(items)


def test_the_command_line_reports_a_database_gone_under_a_command_as_exit_75_to_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # As the database failing under a command always was (README.md): EX_TEMPFAIL, not the
    # exit 2 of a StoreError about a wrong URL.
    def gone(*_args: Any, **_kwargs: Any) -> None:
        raise StoreUnavailableError("lost the connection to the database x: server closed")

    monkeypatch.setattr(Engine, "record", gone)
    url = f"sqlite:///{tmp_path / 'deliverability.db'}"
    argv = ["deliverability", "--database-url", url, "record", "--recipient", "a@example.com",
            "--reply", "250 2.0.0 OK"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stopped:
        main()
    err = capsys.readouterr().err
    assert stopped.value.code == 75, err
    assert err.startswith("error: lost the connection to the database x: server closed\n")
    assert "run the command again" in err


# -- forked workers ---------------------------------------------------------------------------


def _own_connections_only(engine: Engine) -> None:
    """Fail any checkout of a connection that another process opened: every pooled connection
    is marked with the process that first used it."""

    @event.listens_for(engine.db, "checkout")
    def _check(_dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        owner = record.info.setdefault("pid", os.getpid())
        if owner != os.getpid():
            raise AssertionError(f"process {os.getpid()} got a connection of process {owner}")


def _work_in_child(engine: Engine, k: int) -> None:
    # The connections dropped at the fork are gone: a driver that ended their sessions when
    # collected (psycopg and PyMySQL do not, in a child) would have ended the parent's.
    gc.collect()
    for i in range(5):
        engine.record(f"c{k}@example.com", "451 4.3.0 try later", message_id=f"c{k}-{i}")
        assert engine.is_sendable(f"c{k}@example.com")


def test_a_forked_worker_never_uses_a_connection_its_parent_opened(engine: Engine) -> None:
    # SQLite too: a database handle must not cross a fork
    # (https://www.sqlite.org/howtocorrupt.html, section 2.6), though sharing one failed no
    # query here; on PostgreSQL and MariaDB the two processes spoke on one socket.
    _own_connections_only(engine)
    engine.record("parent@example.com", "250 2.0.0 OK", message_id="p1")
    connected: list[int] = []
    event.listen(engine.db, "connect", lambda *_args: connected.append(os.getpid()))
    fork = multiprocessing.get_context("fork")
    children = [fork.Process(target=_work_in_child, args=(engine, k)) for k in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
    assert [c.exitcode for c in children] == [0, 0]
    engine.record("parent@example.com", "250 2.0.0 OK", message_id="p2")
    assert _events(engine) == 12
    # The parent went on with the connection it had: none was lost to the children.
    assert os.getpid() not in connected


# -- threads ----------------------------------------------------------------------------------

_THREADS, _MESSAGES = 4, 30
#: Yahoo's push-back: pauses the provider group (the shipped provider rules).
_PUSHBACK = (
    "421 4.7.0 [TSS04] Messages from 203.0.113.25 temporarily deferred due to unexpected volume"
)
_FINAL_REPLIES = ("250 2.0.0 OK", "550 5.1.1 no such user", "452 4.2.2 mailbox full", "250 ok")


def _thread_items(k: int, shared: bool) -> list[dict[str, Any]]:
    """Thread `k`'s replies, each message's two attempts in order and dated, as a sender's worker
    records them: to recipients every thread shares (`shared`), with Yahoo pushing back, or to
    recipients of its own at domains every thread shares."""
    items = []
    for j in range(_MESSAGES):
        if shared:
            recipient = f"R{j % 9}@d{j % 3}.example.com" if j % 5 else f"u{j}@yahoo.com"
            first = _PUSHBACK if j % 5 == 0 else "451 4.3.0 try later"
        else:
            recipient, first = f"k{k}.r{j % 9}@d{j % 3}.example.com", "451 4.3.0 try later"
        at = FROZEN_NOW - timedelta(hours=3) + timedelta(minutes=j, seconds=k)
        final = _FINAL_REPLIES[(j + k) % len(_FINAL_REPLIES)]
        for attempt, reply, when in ((1, first, at), (2, final, at + timedelta(minutes=40))):
            items.append(
                {"recipient": recipient, "reply": reply, "message_id": f"k{k}-{j}",
                 "attempt": attempt, "at": when}
            )  # fmt: skip
    return items


#: Columns that say in what order the replies arrived rather than what they said: when a row
#: was written, an action's list of event ids, and the time a standing last changed (a
#: standing flips back and forth in another sequence when the same dated results arrive in
#: another order, in one thread as well: 09:41:02 against 10:08:03 for one recipient here).
_ARRIVAL_ORDER = ("recorded_at", "evidence", "standing_since")


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """What the store holds, without row ids and the order rows were written in: rows about a
    recipient carry its address instead of its id."""
    shown: dict[str, list[tuple[Any, ...]]] = {}
    recipients = Base.metadata.tables["recipients"]
    with engine.db.connect() as conn:
        for name in ("recipients", "deliveries", "events", "actions", "minute_counts"):
            table = Base.metadata.tables[name]
            columns = [
                c
                for c in table.columns
                if not c.name.endswith("id") or c.name == "message_id"
                if c.name not in _ARRIVAL_ORDER
            ]
            if "recipient_id" in table.columns:
                query = select(recipients.c.address_key, *columns).join(
                    recipients, recipients.c.id == table.c.recipient_id
                )
            else:
                query = select(*columns)
            shown[table.name] = sorted((tuple(row) for row in conn.execute(query)), key=repr)
    return shown


@pytest.mark.parametrize(
    ("shared", "hygiene"),
    [(True, False), (False, None)],
    # Hygiene's suppressions and throttles follow the order results arrive in, in one thread as
    # well (a hard bounce recorded after a later delivery suppresses nothing; recorded before
    # it, it does): so its run gives each thread recipients of its own.
    ids=["shared_recipients", "own_recipients_with_hygiene"],
)
def test_threads_sharing_one_engine_leave_the_store_as_one_thread_recording_the_same_replies(
    db_url: str,
    tmp_path: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    shared: bool,
    hygiene: Literal[False] | None,
) -> None:
    # A cache of four addresses: the engine empties its caches again and again while the
    # threads read them.
    monkeypatch.setattr(engine_module, "_ADDRESS_CACHE", 4)
    errors: list[BaseException] = []
    answers: list[bool] = []
    start = threading.Barrier(_THREADS)

    def sender(engine: Engine, k: int) -> None:
        try:
            start.wait()
            for i, item in enumerate(_thread_items(k, shared)):
                engine.record(**item)
                answers.append(engine.is_sendable(item["recipient"]))
                if i % 7 == 0:
                    engine.filter_sendable([f"r{j}@d{j % 3}.example.com" for j in range(9)])
                    engine.due_retries(limit=5)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    with Engine(db_url, policy=POLICY, clock=clock, hygiene=hygiene) as together:
        workers = [threading.Thread(target=sender, args=(together, k)) for k in range(_THREADS)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert errors == []
        assert len(answers) == _THREADS * _MESSAGES * 2
        in_threads = _snapshot(together)
    url = f"sqlite:///{tmp_path / 'one_thread.db'}"
    with Engine(url, policy=POLICY, clock=clock, hygiene=hygiene) as alone:
        for k in range(_THREADS):
            for item in _thread_items(k, shared):
                alone.record(**item)
        in_one_thread = _snapshot(alone)
    assert len(in_threads["events"]) == _THREADS * _MESSAGES * 2
    assert in_threads == in_one_thread


@pytest.mark.parametrize(
    ("refusal", "unavailable"),
    [
        (sqlite3.OperationalError("unable to open database file"), True),
        # A driver refusing something on the way (as psycopg refused to switch a connection in
        # a transaction to autocommit for its ping) is not the server gone.
        (sqlite3.ProgrammingError("cannot do that now"), False),
    ],
    ids=["operational", "programming"],
)
def test_only_a_connection_that_cannot_be_made_is_a_database_out_of_reach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: Exception, unavailable: bool
) -> None:
    db = store_create_engine(f"sqlite:///{tmp_path / 'reach.db'}")
    with db.connect():
        pass  # connected once: a later failure to connect is the database gone
    db.dispose()

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise refusal

    monkeypatch.setattr(db.dialect, "connect", refuse)
    with pytest.raises(Exception, match=r"unable to open|cannot do that") as caught, db.connect():
        pass
    assert isinstance(caught.value, StoreUnavailableError) is unavailable, caught.value
    if unavailable:
        assert str(caught.value).startswith("cannot reach the database sqlite:///")
