"""A SQLite store's write-ahead log is checkpointed in a thread of the engine's own, off the
writer's path (deliverability/store/checkpoint.py)."""

from __future__ import annotations

import logging
import multiprocessing
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import backends
import pytest

from deliverability.engine import Engine
from deliverability.store import checkpoint
from deliverability.store.checkpoint import CHECKPOINT_EVERY, Checkpointer

#: Long enough for a checkpoint of a few megabytes on a loaded machine; the tests wait on an
#: event, so they take only as long as the checkpoint does.
_WAIT_S = 120


def _events(n: int, first: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "recipient": f"user{i % 200}@example.com",
            "reply": "250 2.0.0 OK",
            "message_id": f"<m{i}@list.example>",
            "at": "2026-11-02T11:00:00+00:00",
        }
        for i in range(first, first + n)
    ]


def _events_in_the_database_file(path: Path) -> int:
    """The events the database file itself holds, its log left unread (immutable=1): what
    checkpoints have copied into it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
def engine(path: Path, frozen_now: datetime) -> Iterator[Engine]:
    with Engine(f"sqlite:///{path}", clock=lambda: frozen_now) as engine:
        yield engine


def _checkpointer(engine: Engine) -> Checkpointer:
    assert engine._checkpointer is not None
    return engine._checkpointer


def test_a_bulk_recording_on_a_sqlite_file_is_checkpointed_by_a_thread_of_the_engines_own(
    engine: Engine, path: Path
) -> None:
    checkpointer = _checkpointer(engine)
    engine.record_many(_events(CHECKPOINT_EVERY - 1))
    # Fewer events than that: nothing asked of the thread, which is not even started.
    assert checkpointer._thread is None
    assert checkpointer.runs == 0

    engine.record_many(_events(1, first=CHECKPOINT_EVERY - 1))
    assert checkpointer.idle.wait(_WAIT_S)
    assert checkpointer.runs == 1
    assert checkpointer._thread is not None
    assert checkpointer._thread.name == "deliverability-checkpoint"
    # The writer's own automatic checkpoint (every 10,000 pages of log) did not run for so
    # few events: the thread copied them into the database file.
    assert _events_in_the_database_file(path) == CHECKPOINT_EVERY
    thread = checkpointer._thread
    engine.close()
    assert not thread.is_alive()


def test_no_checkpoint_thread_for_a_database_in_memory(frozen_now: datetime) -> None:
    with Engine("sqlite://", clock=lambda: frozen_now) as engine:
        assert engine._checkpointer is None
        assert engine.record_many(_events(CHECKPOINT_EVERY)).recorded == CHECKPOINT_EVERY


@pytest.mark.parametrize("backend", backends.backend_params(backends.SERVERS), indirect=True)
def test_no_checkpoint_thread_on_a_server(db_url: str, frozen_now: datetime) -> None:
    with Engine(db_url, clock=lambda: frozen_now) as engine:
        assert engine._checkpointer is None


def test_a_checkpoint_that_fails_is_logged_and_the_next_one_runs(
    tmp_path: Path,
    frozen_now: datetime,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = Checkpointer._checkpoint
    calls: list[int] = []

    def first_fails(self: Checkpointer) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error")
        real(self)

    monkeypatch.setattr(Checkpointer, "_checkpoint", first_fails)
    with (
        caplog.at_level(logging.WARNING, logger=checkpoint.__name__),
        Engine(f"sqlite:///{tmp_path / 'store.db'}", clock=lambda: frozen_now) as engine,
    ):
        checkpointer = engine._checkpointer
        assert checkpointer is not None
        assert engine.record_many(_events(CHECKPOINT_EVERY)).recorded == CHECKPOINT_EVERY
        assert checkpointer.idle.wait(_WAIT_S)
        assert checkpointer.runs == 0
        assert "could not checkpoint the SQLite log: disk I/O error" in caplog.text
        engine.record_many(_events(CHECKPOINT_EVERY, first=CHECKPOINT_EVERY))
        assert checkpointer.idle.wait(_WAIT_S)
        assert checkpointer.runs == 1


def _record_in_child(engine: Engine) -> None:
    checkpointer = engine._checkpointer
    assert checkpointer is not None
    before = checkpointer.runs
    # The parent's thread did not follow the fork: the child starts its own.
    assert checkpointer._thread is None
    engine.record_many(_events(CHECKPOINT_EVERY, first=10 * CHECKPOINT_EVERY))
    assert checkpointer.idle.wait(_WAIT_S)
    assert checkpointer.runs == before + 1
    assert checkpointer._thread is not None
    assert checkpointer._thread.is_alive()


def test_a_forked_child_checkpoints_with_a_thread_of_its_own_and_the_parent_goes_on(
    engine: Engine, path: Path
) -> None:
    checkpointer = _checkpointer(engine)
    engine.record_many(_events(CHECKPOINT_EVERY))
    assert checkpointer.idle.wait(_WAIT_S)
    child = multiprocessing.get_context("fork").Process(target=_record_in_child, args=(engine,))
    child.start()
    child.join(_WAIT_S)
    assert child.exitcode == 0
    engine.record_many(_events(CHECKPOINT_EVERY, first=CHECKPOINT_EVERY))
    assert checkpointer.idle.wait(_WAIT_S)
    assert checkpointer.runs == 2
    assert _events_in_the_database_file(path) == 3 * CHECKPOINT_EVERY


def test_the_thread_ends_when_no_work_comes_and_the_next_commit_starts_another(
    engine: Engine, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An engine dropped without close() must not leave a thread behind for ever.
    monkeypatch.setattr(checkpoint, "IDLE_EXIT_S", 0.05)
    checkpointer = _checkpointer(engine)
    engine.record_many(_events(CHECKPOINT_EVERY))
    first = checkpointer._thread
    assert first is not None
    first.join(_WAIT_S)
    assert not first.is_alive()
    assert checkpointer.runs == 1

    engine.record_many(_events(CHECKPOINT_EVERY, first=CHECKPOINT_EVERY))
    assert checkpointer.idle.wait(_WAIT_S)
    assert checkpointer.runs == 2
    assert checkpointer._thread is not first
    assert _events_in_the_database_file(path) == 2 * CHECKPOINT_EVERY
