"""Lock waits, deadlocks and serialization failures are retried inside the store, never shown."""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg.errors
import pymysql.err
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from deliverability.cli import main
from deliverability.engine import Engine as Engine_
from deliverability.errors import StoreBusyError, StoreError
from deliverability.store.retry import is_retryable, run_in_transaction


def wrapped(orig: Exception, cls: type[OperationalError] = OperationalError) -> OperationalError:
    """The exception SQLAlchemy raises around a driver's exception."""
    return cls("UPDATE recipients SET ...", {}, orig)


@pytest.mark.parametrize(
    "orig",
    [
        sqlite3.OperationalError("database is locked"),
        sqlite3.OperationalError("database table is locked"),
        psycopg.errors.SerializationFailure("could not serialize access"),
        psycopg.errors.DeadlockDetected("deadlock detected"),
        psycopg.errors.LockNotAvailable("canceling statement due to lock timeout"),
        pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"),
        pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"),
        # PyMySQL also sets the server's SQLSTATE, which for a lock wait timeout is HY000.
        pymysql.err.OperationalError(1205, "Lock wait timeout exceeded", sqlstate="HY000"),
    ],
    ids=lambda e: f"{type(e).__module__}.{type(e).__name__}:{e}"[:60],
)
def test_lock_waits_deadlocks_and_serialization_failures_are_retryable(orig: Exception) -> None:
    assert is_retryable(wrapped(orig))


@pytest.mark.parametrize(
    "orig",
    [
        sqlite3.OperationalError("no such table: recipients"),
        psycopg.errors.UndefinedTable("relation does not exist"),
        pymysql.err.OperationalError(1054, "Unknown column"),
        pymysql.err.OperationalError(2003, "Can't connect to MySQL server"),
    ],
    ids=str,
)
def test_other_database_errors_are_not_retried(orig: Exception) -> None:
    assert not is_retryable(wrapped(orig, ProgrammingError))


@pytest.mark.parametrize(
    "orig",
    [
        sqlite3.IntegrityError("UNIQUE constraint failed: recipients.address_key"),
        psycopg.errors.UniqueViolation("duplicate key value"),
        pymysql.err.IntegrityError(1062, "Duplicate entry"),
        pymysql.err.IntegrityError(1062, "Duplicate entry", sqlstate="23000"),
    ],
    ids=str,
)
def test_unique_key_races_are_retried_only_when_the_caller_asks(orig: Exception) -> None:
    error = wrapped(orig, IntegrityError)
    assert not is_retryable(error)
    assert is_retryable(error, conflicts=True)


def test_a_python_error_is_never_retryable() -> None:
    assert not is_retryable(ValueError("database is locked"))


@pytest.fixture
def counter_engine(sa_engine: Engine) -> Iterator[Engine]:
    """A scratch table of two counters; dropped afterwards, since a server test database may be
    reused (emptied, not re-created) by the next test."""
    with sa_engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS h7_counters"))
        conn.execute(text("CREATE TABLE h7_counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO h7_counters (id, n) VALUES (1, 0), (2, 0)"))
    yield sa_engine
    with sa_engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS h7_counters"))


def counters(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, n FROM h7_counters ORDER BY id"))
        return {row.id: row.n for row in rows}


def failing_times(times: int, orig: Exception) -> Callable[[Connection], str]:
    """A transaction body that writes, then fails `times` times with `orig` before succeeding."""
    calls = {"n": 0}

    def body(conn: Connection) -> str:
        conn.execute(text("UPDATE h7_counters SET n = n + 1 WHERE id = 1"))
        calls["n"] += 1
        if calls["n"] <= times:
            raise wrapped(orig)
        return f"done on call {calls['n']}"

    return body


def test_a_retried_transaction_commits_its_work_exactly_once(counter_engine: Engine) -> None:
    waits: list[float] = []
    result = run_in_transaction(
        counter_engine,
        failing_times(3, sqlite3.OperationalError("database is locked")),
        sleep=waits.append,
        jitter=lambda: 1.0,
    )
    assert result == "done on call 4"
    # The three failed attempts were rolled back: the counter moved once.
    assert counters(counter_engine)[1] == 1
    # The waits double from the base delay.
    assert waits == pytest.approx([0.02, 0.04, 0.08])


def test_the_waits_are_capped(counter_engine: Engine) -> None:
    waits: list[float] = []
    run_in_transaction(
        counter_engine,
        failing_times(9, pymysql.err.OperationalError(1213, "Deadlock found")),
        sleep=waits.append,
        jitter=lambda: 1.0,
    )
    assert max(waits) == pytest.approx(2.0)


def test_giving_up_raises_a_store_busy_error_naming_the_database(counter_engine: Engine) -> None:
    with pytest.raises(StoreBusyError) as caught:
        run_in_transaction(
            counter_engine,
            failing_times(99, sqlite3.OperationalError("database is locked")),
            attempts=3,
            sleep=lambda s: None,
        )
    # Still a StoreError, which callers have caught since before StoreBusyError was its own.
    assert isinstance(caught.value, StoreError)
    message = str(caught.value)
    assert "gave up after 3 attempts" in message
    assert counter_engine.url.render_as_string(hide_password=True) in message
    assert counters(counter_engine)[1] == 0


def test_a_non_retryable_error_is_raised_at_once(counter_engine: Engine) -> None:
    waits: list[float] = []
    with pytest.raises(OperationalError):
        run_in_transaction(
            counter_engine,
            failing_times(1, sqlite3.OperationalError("disk I/O error")),
            sleep=waits.append,
        )
    assert waits == []
    assert counters(counter_engine)[1] == 0


def test_two_writers_locking_rows_in_opposite_order_both_finish(counter_engine: Engine) -> None:
    """A real deadlock: each transaction holds one row and wants the other's. The server kills
    one (PostgreSQL 40P01, MariaDB 1213); run_in_transaction runs it again and both commit."""
    if counter_engine.dialect.name == "sqlite":
        pytest.skip("SQLite has one write lock taken at BEGIN: writers queue, never deadlock")
    both_hold_one = threading.Barrier(2, timeout=30)
    attempts = {1: 0, 2: 0}
    errors: list[BaseException] = []

    def writer(first: int, second: int) -> None:
        def body(conn: Connection) -> None:
            attempts[first] += 1
            conn.execute(text("UPDATE h7_counters SET n = n + 1 WHERE id = :id"), {"id": first})
            if attempts[first] == 1:
                both_hold_one.wait()
            conn.execute(text("UPDATE h7_counters SET n = n + 10 WHERE id = :id"), {"id": second})

        try:
            run_in_transaction(counter_engine, body)
        except BaseException as err:  # reported by the assertion below
            errors.append(err)

    threads = [
        threading.Thread(target=writer, args=(1, 2)),
        threading.Thread(target=writer, args=(2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert counters(counter_engine) == {1: 11, 2: 11}
    assert attempts[1] + attempts[2] == 3  # exactly one of them was run again


def test_the_command_line_reports_retries_spent_on_a_held_lock_as_exit_75_to_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # README.md: "a lock held too long" exits 75 (EX_TEMPFAIL), as a server gone does; a
    # StoreError about a wrong URL exits 2. run_in_transaction raises StoreBusyError when its
    # retries are spent (above); the command meets it here.
    def busy(*_args: object, **_kwargs: object) -> None:
        raise StoreBusyError("gave up after 10 attempts on sqlite:///x.db: database is locked")

    monkeypatch.setattr(Engine_, "record", busy)
    url = f"sqlite:///{tmp_path / 'deliverability.db'}"
    argv = ["deliverability", "--database-url", url, "record", "--recipient", "a@example.com",
            "--reply", "250 2.0.0 OK", "--message-id", "m1@lists.example"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as stopped:
        main()
    err = capsys.readouterr().err
    assert stopped.value.code == 75, err
    assert err.startswith("error: gave up after 10 attempts on sqlite:///x.db"), err
    assert "run the command again" in err
