"""The garbage collector's pause around `record_many`'s chunks and the nightly job's log chunks
(deliverability.collector): off while a chunk is gathered and written, on again between chunks
and after the call, whatever happens, and never switched on when the caller had switched it
off."""

from __future__ import annotations

import functools
import gc
import json
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError

from deliverability import engine as engine_module
from deliverability.collector import CollectorPause
from deliverability.engine import Engine
from deliverability.ingest import convert
from deliverability.nightly import run_nightly
from deliverability.store import retry


@pytest.fixture(autouse=True)
def _collector_left_on() -> Iterator[None]:
    gc.enable()
    yield
    assert gc.isenabled(), "a test left the collector off"


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_the_collector_is_off_inside_a_pause_and_on_again_after_it() -> None:
    with CollectorPause():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_the_caller_switched_off_stays_off_after_a_pause() -> None:
    gc.disable()
    try:
        with CollectorPause():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_end_of_a_pause_collects_the_cyclic_garbage_made_during_it() -> None:
    with CollectorPause():
        cycle = _Cycle()
        gone = weakref.ref(cycle)
        del cycle
        # Reference counting cannot free a cycle, and the collector is off.
        assert gone() is not None
    assert gone() is None


def test_ending_a_pause_twice_ends_it_once() -> None:
    outer = CollectorPause()
    outer.begin()
    inner = CollectorPause()
    inner.begin()
    inner.end()
    inner.end()
    # The second end of `inner` did not count as the end of `outer`.
    assert not gc.isenabled()
    outer.end()
    assert gc.isenabled()


def test_pauses_in_two_threads_keep_the_collector_off_until_the_last_ends() -> None:
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with CollectorPause():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with CollectorPause():
            second_in.set()
            first_out.wait(5)
            seen["after the first ended"] = gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == {"after the first ended": False}
    assert gc.isenabled()


def _in_a_child(check: Callable[[], bool]) -> bool:
    """What `check` answers in a child forked now."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, and leave without running pytest's exit handlers
        try:
            os.write(write, b"1" if check() else b"0")
        finally:
            os._exit(0)
    os.close(write)
    try:
        answer = os.read(read, 1)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    return answer == b"1"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform cannot fork")
def test_a_child_forked_during_a_pause_starts_with_the_collector_on() -> None:
    with CollectorPause():
        assert _in_a_child(gc.isenabled)
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform cannot fork")
def test_a_child_forked_by_another_thread_during_a_pause_starts_with_the_collector_on() -> None:
    paused, forked = threading.Event(), threading.Event()

    def pausing() -> None:
        with CollectorPause():
            paused.set()
            forked.wait(10)

    thread = threading.Thread(target=pausing)
    thread.start()
    try:
        assert paused.wait(10)
        assert not gc.isenabled()
        assert _in_a_child(gc.isenabled)
    finally:
        forked.set()
        thread.join(10)
    assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="this platform cannot fork")
def test_a_pause_begun_before_a_fork_and_ended_in_the_child_leaves_its_collector_alone() -> None:
    pause = CollectorPause()
    pause.begin()

    def in_the_child() -> bool:
        # A pause of the child's own, running when the parent's copy ends.
        with CollectorPause():
            pause.end()
            still_off = not gc.isenabled()
        return still_off and gc.isenabled()

    try:
        assert _in_a_child(in_the_child)
    finally:
        pause.end()
    assert gc.isenabled()


def _items(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {
            "recipient": f"user{i}@example.com",
            "reply": "250 2.0.0 OK",
            "message_id": f"<m{i}@list.example>",
        }


def test_record_many_writes_each_chunk_with_the_collector_off_and_leaves_it_on(
    db_url: str, clock: FakeClock
) -> None:
    during: list[bool] = []

    def hook(*_args: Any) -> list[Any]:
        # The hygiene hook runs inside the chunk's transaction.
        during.append(gc.isenabled())
        return []

    with Engine(db_url, clock=clock, hygiene=hook, chunk_size=10) as engine:
        result = engine.record_many(_items(25))
    assert result.recorded == 25
    assert during == [False, False, False]
    assert gc.isenabled()


class _Read(Mapping[str, Any]):
    """An item of a list given to record_many that calls `noting` when it is read."""

    def __init__(self, item: dict[str, Any], noting: Callable[[], None]) -> None:
        self._item, self._noting = item, noting

    def __getitem__(self, key: str) -> Any:
        return self._item[key]

    def __iter__(self) -> Iterator[str]:
        self._noting()
        return iter(self._item)

    def __len__(self) -> int:
        return len(self._item)


def test_record_many_does_not_pause_the_collector_while_it_waits_on_an_iterator(
    db_url: str, clock: FakeClock
) -> None:
    # An iterator may wait for its input (a socket, a followed log) for hours: every thread
    # would go without the collector meanwhile.
    asked: list[bool] = []

    def items() -> Iterator[dict[str, Any]]:
        for item in _items(25):
            asked.append(gc.isenabled())
            yield item

    with Engine(db_url, clock=clock, chunk_size=10) as engine:
        assert engine.record_many(items()).recorded == 25
    assert asked == [True] * 25


def test_record_many_reads_a_list_with_the_collector_paused(db_url: str, clock: FakeClock) -> None:
    read: list[bool] = []
    items = [_Read(item, lambda: read.append(gc.isenabled())) for item in _items(25)]
    with Engine(db_url, clock=clock, chunk_size=10) as engine:
        assert engine.record_many(items).recorded == 25
    assert len(read) >= 25
    assert not any(read)
    assert gc.isenabled()


def test_record_many_of_a_list_lets_the_collector_run_between_chunks(
    db_url: str, clock: FakeClock
) -> None:
    made: list[weakref.ref[_Cycle]] = []
    gone: list[bool] = []

    def first() -> None:
        if not made:
            cycle = _Cycle()
            made.append(weakref.ref(cycle))

    def eleventh() -> None:
        # The first chunk of 10 is written; the cycle made while it was read is collected.
        if not gone:
            gone.append(made[0]() is None)

    items = [_Read(item, first if i < 10 else eleventh) for i, item in enumerate(_items(20))]
    with Engine(db_url, clock=clock, chunk_size=10) as engine:
        engine.record_many(items)
    assert gone == [True]


def test_record_many_switches_the_collector_back_on_when_a_chunk_fails(
    db_url: str, clock: FakeClock
) -> None:
    def hook(*_args: Any) -> list[Any]:
        raise RuntimeError("the hook failed")

    with (
        Engine(db_url, clock=clock, hygiene=hook, chunk_size=10) as engine,
        pytest.raises(RuntimeError, match="hook failed"),
    ):
        engine.record_many(list(_items(15)))
    assert gc.isenabled()


def test_a_chunk_whose_transaction_met_a_lock_waits_to_try_again_with_the_collector_on(
    db_url: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    if make_url(db_url).get_backend_name() != "sqlite":
        pytest.skip("the lock conflict is told by the driver's error: SQLite's is made here")
    tries: list[bool] = []

    def hook(*_args: Any) -> list[Any]:
        tries.append(gc.isenabled())
        if len(tries) == 1:
            locked = sqlite3.OperationalError("database is locked")
            raise OperationalError("the hook's statement", {}, locked)
        return []

    waits: list[bool] = []
    monkeypatch.setattr(
        engine_module,
        "run_in_transaction",
        functools.partial(retry.run_in_transaction, sleep=lambda _s: waits.append(gc.isenabled())),
    )
    with Engine(db_url, clock=clock, hygiene=hook) as engine:
        assert engine.record_many(list(_items(5))).recorded == 5
    # Both tries wrote with the collector off; the wait between them had it on.
    assert tries == [False, False]
    assert waits == [True]
    assert gc.isenabled()


def test_record_many_leaves_a_collector_the_caller_switched_off_off(
    db_url: str, clock: FakeClock
) -> None:
    gc.disable()
    try:
        with Engine(db_url, clock=clock, chunk_size=10) as engine:
            engine.record_many(_items(25))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_nightly_job_reads_a_log_with_the_collector_paused_and_leaves_it_on(
    db_url: str, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "replies.jsonl"
    log.write_text(
        "".join(json.dumps({**item, "at": clock.now.isoformat()}) + "\n" for item in _items(5)),
        encoding="utf-8",
    )
    seen: list[bool] = []
    log_item = convert.log_item

    def noting(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return log_item(*args, **kwargs)

    monkeypatch.setattr(convert, "log_item", noting)
    with Engine(db_url, clock=clock) as engine:
        summary = run_nightly(engine, [log], now=clock.now)
    assert summary.recorded == 5
    assert seen == [False] * 5
    assert gc.isenabled()
