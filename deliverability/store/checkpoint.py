"""SQLite: the write-ahead log checkpointed in a thread of its own, off the writer's path.

In WAL mode a commit appends the changed pages to the log; a *checkpoint* copies them back into
the database file, and with `synchronous=NORMAL` it is the one step that waits for the disk
(an fsync of the log, then of the database: https://www.sqlite.org/wal.html, "Checkpointing",
and https://www.sqlite.org/pragma.html#pragma_synchronous). SQLite runs it inside the commit
that makes the log pass `wal_autocheckpoint` pages, so the writer stops for it. `record_many`
commits a chunk at a time, and a chunk changes pages all over the unique index of the events'
random keys, so its log grows by megabytes a chunk and the checkpoints' fsyncs took about a
tenth of a bulk recording's time (bench_record: 1.5 s of 100,000 events' commits, 0.35 s with
the checkpoints left out).

So an `Engine` on a SQLite file hands the checkpoints to a thread: after every
`CHECKPOINT_EVERY` events it has committed, the thread runs a PASSIVE checkpoint on a
connection of the engine's pool, which copies what it can without waiting for any reader or
writer, while the writer goes on (the sqlite3 module lets go of the GIL inside SQLite). Once it
has copied the whole log, the next writer starts the log again from its beginning, so the
writer's own automatic checkpoint, left at `wal_autocheckpoint`, is met only when the thread
falls behind. Nothing is less durable: the same checkpoint runs, elsewhere.

A fork while the thread is inside SQLite could leave one of SQLite's process-wide locks held
in the child for ever; a fork therefore waits for a checkpoint under way to end, and the child
starts a thread of its own when it first needs one (the pool's connections are dropped at the
fork: deliverability/store/session.py).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["CHECKPOINT_EVERY", "IDLE_EXIT_S", "Checkpointer"]

logger = logging.getLogger(__name__)

#: Events committed between two checkpoints the thread is asked for: about a chunk of
#: `record_many`, a few megabytes of log; a sender's single `record()` calls ask for one every
#: 1,000 calls.
CHECKPOINT_EVERY = 1_000

#: Seconds the thread waits for work before it ends.
IDLE_EXIT_S = 60.0

_ALL: weakref.WeakSet[Checkpointer] = weakref.WeakSet()


class Checkpointer:
    """Runs PASSIVE checkpoints of one SQLite store in a daemon thread, when asked.

    `committed(n)` after each commit of `n` events; `close()` stops the thread. `runs` counts
    the checkpoints made and `idle` is set whenever the thread has nothing left to do (for
    tests and benchmarks).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.runs = 0
        self.idle = threading.Event()
        self.idle.set()
        self._pending = 0
        self._wake = threading.Event()
        self._closed = False
        # Held by the thread while it is inside SQLite, and by a fork while it happens.
        self._busy = threading.Lock()
        self._thread: threading.Thread | None = None
        # Two threads of a sender committing at once start one checkpoint thread, not two.
        self._starting = threading.Lock()
        _ALL.add(self)

    def committed(self, events: int) -> None:
        if self._closed or events <= 0:
            return
        self._pending += events
        if self._pending < CHECKPOINT_EVERY:
            return
        self._pending = 0
        with self._starting:
            if self._thread is None or not self._thread.is_alive():
                # The first time, after the thread ended for want of work, or in a forked
                # child (the parent's thread did not follow).
                self._thread = threading.Thread(
                    target=self._run, name="deliverability-checkpoint", daemon=True
                )
                self._thread.start()
            # Under the lock: the thread cannot be deciding to end while this is set.
            self.idle.clear()
            self._wake.set()

    def close(self) -> None:
        """Stop the thread, after the checkpoint under way if there is one."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join()
        self.idle.set()

    def _run(self) -> None:
        while True:
            if not self._wake.wait(IDLE_EXIT_S):
                with self._starting:
                    if not self._wake.is_set():
                        # Nothing asked for a while: end, so that an engine dropped without
                        # close() leaves no thread behind; the next commit starts another.
                        self._thread = None
                        return
            self._wake.clear()
            if self._closed:
                return
            with self._busy:
                try:
                    self._checkpoint()
                except (SQLAlchemyError, sqlite3.Error, OSError) as err:
                    # The writer's own automatic checkpoint still runs: the log stays bounded.
                    logger.warning("could not checkpoint the SQLite log: %s", err)
            if not self._wake.is_set():
                self.idle.set()

    def _checkpoint(self) -> None:
        raw: Any = self.engine.raw_connection()
        try:
            # On the driver's connection, outside any transaction (a checkpoint run inside one
            # cannot copy past that transaction's snapshot).
            raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            raw.close()
        self.runs += 1


#: The checkpointers whose lock a fork under way holds.
_held: list[Checkpointer] = []


def _before_fork() -> None:
    _held[:] = list(_ALL)
    for checkpointer in _held:
        checkpointer._busy.acquire()


def _after_fork_in_parent() -> None:
    for checkpointer in _held:
        checkpointer._busy.release()
    _held.clear()


def _after_fork_in_child() -> None:
    for checkpointer in _held:
        # The parent's thread is not here: its locks and events are made anew, and the first
        # commit of enough events starts a thread of the child's own.
        checkpointer._busy = threading.Lock()
        checkpointer._starting = threading.Lock()
        checkpointer._wake = threading.Event()
        checkpointer.idle = threading.Event()
        checkpointer.idle.set()
        checkpointer._thread = None
    _held.clear()


if hasattr(os, "register_at_fork"):  # POSIX: no fork elsewhere
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
