"""Pausing Python's cyclic garbage collector while `record_many` judges and writes a chunk.

Why: CPython (3.11 to 3.13, `Modules/gcmodule.c`) runs a young collection after every 700 net
allocations of container objects, and a full one when the objects promoted into the oldest
generation since the last full collection reach a quarter of those already there. A chunk keeps
a few thousand such objects alive until it is written (its items, their delivery states, the
rows), so they outlive the young collections, get promoted, and set off full collections, each
of which walks every object the process holds (over 100,000 once SQLAlchemy and the policy are
loaded). Measured on `bench/bench_record.py`'s events (200,000, hook off): 6 to 8 us of 68 to 82
an event went to the collector, and two pairs of runs took 82 and 68 us an event with it on, 63
and 61 with it off. None of a chunk's objects is cyclic garbage: reference counting frees them
when the chunk ends. Mercurial pauses the collector for the same reason while it builds large
structures (its `util.nogc`).

Where it is paused: while `record_many` judges and writes each chunk, once it has taken the
chunk's items from the caller (with the collector on: an iterator may wait for its input, a
socket or a log it follows, as long as it likes), and not while a transaction that met a lock
waits to try again; while the nightly job reads and records a chunk of a log file. On
bench_record's generator, 200,000 events: 2 full collections remained (0.8-0.9 us an event in
the collector), against 5 when only the writing was paused and none when the taking of the items
was paused too.

What a caller should know: the collector is process-wide, so the pause applies to every thread
for the time of one chunk (about a tenth of a second at the default chunk size); cyclic garbage
other threads make meanwhile waits for the young collection that runs when the pause ends.
Reference counting, which frees almost everything, does not pause. A collector the caller has
switched off stays off. Pauses in several threads at once are counted: the collector comes
back when the last ends. A child process forked during a pause starts with the collector as it
was before the pause, whichever thread forked.
"""

from __future__ import annotations

import gc
import os
import threading

_lock = threading.Lock()
#: How many pauses are running (in all threads), and whether the collector was on before the
#: first of them began.
_depth = 0
_was_enabled = False
#: Counts the forks this process came from: a pause begun before a fork is not this process's
#: to end (see `_after_fork`).
_generation = 0


def _after_fork() -> None:
    """In a child process: no pause of the parent's runs here. The threads that began them
    were not copied (only the forking one is), so none would end them, and the child's
    collector would stay off for good: it is put back as it was before the first pause."""
    global _lock, _depth, _generation
    # Another thread may have held the lock at the fork: the child's copy would never be freed.
    _lock = threading.Lock()
    if _depth and _was_enabled:
        gc.enable()
    _depth = 0
    _generation += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


class CollectorPause:
    """One caller's pause: `begin` and `end` pair up, and `end` is safe to call twice (so a
    `finally` can end a pause that a chunk boundary already ended)."""

    __slots__ = ("_active", "_generation")

    def __init__(self) -> None:
        self._active = False
        self._generation = _generation

    def begin(self) -> None:
        global _depth, _was_enabled
        if self._active:
            return
        with _lock:
            if _depth == 0:
                _was_enabled = gc.isenabled()
                gc.disable()
            _depth += 1
        self._active = True
        self._generation = _generation

    def end(self) -> None:
        """End this pause; when it is the last, switch the collector back on (if it was on)
        and collect the youngest generation at once, for the cyclic garbage made during the
        pause."""
        global _depth
        if not self._active:
            return
        self._active = False
        if self._generation != _generation:
            # Begun in the parent before a fork: `_after_fork` ended it here.
            return
        with _lock:
            _depth -= 1
            resume = _depth == 0 and _was_enabled
            if resume:
                gc.enable()
        if resume:
            # The youngest generation only: everything made during the pause is there (no
            # collection ran to move it on), and a walk of the older ones is what the pause
            # avoids. A chunk of record_many leaves no cyclic garbage of its own (counted on
            # bench_record's events: none after the first chunk); this is for what a caller's
            # iterator or another thread made meanwhile.
            gc.collect(0)

    def __enter__(self) -> CollectorPause:
        self.begin()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.end()
