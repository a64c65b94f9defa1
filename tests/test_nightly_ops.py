"""The nightly job as cron or a systemd timer runs it: two runs at once, a run killed midway.

Two runs over the same sources at once (cron starting a run while the last, on a slow night, still
reads; an operator running one by hand) must not both work: the second stops at once, says which
run holds the store, and changes nothing. A run stopped at any point (a chunk's events recorded
but not its checkpoint, or in the middle of a file's chunk, or in the hygiene evaluation) and run
again must leave the store as one uninterrupted run does: every event once, every bounce message
once, every hygiene action raised once.

The runs are driven by hooks (a progress callback that waits on an event, a function that raises
on its n-th call), never by timers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from factories_bounces import dsn
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deliverability import nightly
from deliverability.cli import cli
from deliverability.engine import Engine
from deliverability.ingest import convert
from deliverability.nightly import RunInProgress, run_lock, run_nightly, store_files
from deliverability.store import hygiene as hygiene_store
from deliverability.store.models import Action, Event, IngestedMessage, RejectedInput

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
#: Items per chunk in these tests: the inputs below make several chunks of each file.
CHUNK = 8
_POSTFIX_LINES = 3 * CHUNK + 5
_MBOX_MESSAGES = 3 * CHUNK
#: Checkpoints of each file: messages are recorded CHUNK // 4 at a time (`_flush_messages`).
_MBOX_CHUNKS = _MBOX_MESSAGES // (CHUNK // 4)
_POSTFIX_CHUNKS = _POSTFIX_LINES // CHUNK + 1


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nightly, "CHUNK", CHUNK)


def _replies(count: int) -> str:
    """A mailer reply log: unknown users (hard bounces, each suppressing its address) and
    deliveries, several at one domain so that its rules see a pattern."""
    lines = []
    for n in range(count):
        reply = "550 5.1.1 User unknown" if n % 3 == 0 else "250 2.0.0 OK"
        lines.append(
            {
                "at": f"2026-11-27T22:{n // 60:02d}:{n % 60:02d}Z",
                "recipient": f"user{n}@d{n % 4}.example",
                "message_id": f"m{n}@lists.example.org",
                "reply": reply,
            }
        )
    return "".join(json.dumps(line) + "\n" for line in lines)


def _postfix(count: int) -> str:
    return "".join(
        f"Nov 28 02:{n // 60:02d}:{n % 60:02d} mx1 postfix/smtp[8244]: {n + 1:010X}: "
        f"to=<pf{n}@d{n % 3}.example>, relay=mx.example.com[192.0.2.10]:25, delay=1.1, "
        "delays=0.9/0.03/0.07/0.1, dsn=5.1.1, status=bounced (host mx.example.com[192.0.2.10] "
        "said: 550 5.1.1 User unknown (in reply to RCPT TO command))\n"
        for n in range(count)
    )


def _bounces(count: int) -> str:
    at = datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    return "".join(
        dsn(
            at,
            "failed",
            "5.1.1",
            "smtp; 550 5.1.1 no such user",
            f"<b{n}@lists.example.org>",
            recipient=f"mb{n}@bigmail.example",
        )
        for n in range(count)
    )


def _night(tmp_path: Path) -> Path:
    """One night's input: a reply log, a Postfix log and an mbox, each of several chunks."""
    folder = tmp_path / "night"
    folder.mkdir()
    (folder / "replies.jsonl").write_text(_replies(5 * CHUNK + 3))
    (folder / "mail.log").write_text(_postfix(_POSTFIX_LINES))
    (folder / "bounces.mbox").write_text(_bounces(_MBOX_MESSAGES))
    return folder


def _run(url: str, paths: list[Path], **options: Any) -> nightly.NightlySummary:
    with Engine(url, clock=lambda: NOW) as engine:
        return run_nightly(engine, paths, now=NOW, **options)


def _state(url: str) -> dict[str, Any]:
    """What a run leaves that must not be counted twice or lost."""
    with Engine(url) as engine, Session(engine.db) as s:
        actions = sorted(
            (str(a.kind), str(a.scope), a.target, str(a.status), a.raised_count)
            for a in s.scalars(select(Action))
        )
        return {
            "events": s.scalar(select(func.count(Event.id))),
            "messages": s.scalar(select(func.count(IngestedMessage.id))),
            "rejected": s.scalar(select(func.count(RejectedInput.id))),
            "actions": actions,
        }


@pytest.fixture
def reference(tmp_path: Path) -> Callable[[Path], dict[str, Any]]:
    """The state one uninterrupted run over `folder` leaves in a store of its own."""

    def make(folder: Path) -> dict[str, Any]:
        url = f"sqlite:///{tmp_path / 'reference.db'}"
        summary = _run(url, [folder])
        assert summary.rejected_count == 0
        assert summary.recorded > 0
        return _state(url)

    return make


class _HeldRun:
    """A nightly run in a thread of its own, held after its first chunk until released."""

    def __init__(self, url: str, folder: Path) -> None:
        self.paused = threading.Event()
        self.resume = threading.Event()
        self.summary: nightly.NightlySummary | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(url, folder))

    def _progress(self, path: str, done: int) -> None:
        if not self.paused.is_set():
            self.paused.set()
            self.resume.wait()

    def _run(self, url: str, folder: Path) -> None:
        try:
            self.summary = _run(url, [folder], progress=self._progress)
        except BaseException as exc:  # reported by the test's thread
            self.error = exc
        finally:
            self.paused.set()

    def __enter__(self) -> _HeldRun:
        self.thread.start()
        # A guard against a hang, not a pause: the run sets it after its first chunk.
        assert self.paused.wait(timeout=120)
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.resume.set()
        self.thread.join()


def test_a_second_run_while_one_is_running_stops_at_once_and_the_first_finishes_alone(
    db_url: str, tmp_path: Path, reference: Callable[[Path], dict[str, Any]]
) -> None:
    folder = _night(tmp_path)
    expected = reference(folder)
    with _HeldRun(db_url, folder) as first:
        before = _state(db_url)
        with pytest.raises(RunInProgress, match=r"this run did nothing; run it again when"):
            _run(db_url, [folder])
        assert _state(db_url) == before
    assert first.error is None, first.error
    assert first.summary is not None
    assert first.summary.rejected_count == 0
    assert _state(db_url) == expected
    assert _run(db_url, [folder]).recorded == 0


def test_ingest_is_kept_apart_from_a_running_nightly_too(db_url: str, tmp_path: Path) -> None:
    folder = _night(tmp_path)
    with (
        _HeldRun(db_url, folder),
        Engine(db_url, clock=lambda: NOW) as engine,
        pytest.raises(RunInProgress),
    ):
        nightly.ingest_paths(engine, nightly.bookkeeping_sessions(engine), [folder], now=NOW)


def test_the_cli_says_another_run_holds_the_store_and_exits_75_for_try_again_later(
    db_url: str, tmp_path: Path
) -> None:
    folder = _night(tmp_path)
    runner = CliRunner()
    with _HeldRun(db_url, folder):
        for command in (["nightly", str(folder)], ["ingest", str(folder)]):
            args = ["--database-url", db_url, *command, "--now", NOW.isoformat()]
            result = runner.invoke(cli, args)
            assert result.exit_code == 75, result.output
            assert "is being worked on by" in result.output
            assert "this run did nothing" in result.output
            assert "Traceback" not in result.output


def test_a_run_given_pool_options_in_its_url_is_not_kept_out_by_its_own_lock(
    db_url: str, tmp_path: Path, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("pool options are a server database's (docs/scaling.md)")
    folder = _night(tmp_path)
    url = f"{db_url}?pool_size=2&max_overflow=1"
    for extra in ([], ["--dry-run"]):
        args = ["--database-url", url, "nightly", str(folder), *extra, "--now", NOW.isoformat()]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output


def test_a_dry_run_is_refused_too_while_a_real_run_works(db_url: str, tmp_path: Path) -> None:
    folder = _night(tmp_path)
    runner = CliRunner()
    with _HeldRun(db_url, folder):
        args = ["--database-url", db_url, "nightly", str(folder), "--dry-run"]
        result = runner.invoke(cli, [*args, "--now", NOW.isoformat()])
    assert result.exit_code == 75, result.output
    assert "this run did nothing" in result.output


def test_the_run_lock_is_released_when_a_run_fails(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _night(tmp_path)

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("injected")

    with monkeypatch.context() as patch:
        patch.setattr(hygiene_store, "evaluate", broken)
        with pytest.raises(RuntimeError, match="injected"):
            _run(db_url, [folder])
    assert _run(db_url, [folder]).rejected_count == 0


def test_the_run_lock_of_a_sqlite_store_is_free_once_its_holder_is_killed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    holder = (
        "import sys\n"
        "from deliverability.nightly import run_lock\n"
        "with run_lock(sys.argv[1]):\n"
        "    print('held', flush=True)\n"
        "    sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", holder, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"held"
        with pytest.raises(RunInProgress, match=rf"pid {child.pid} on "), run_lock(url):
            pass
    finally:
        child.kill()  # SIGKILL: no clean-up of its own
        child.wait()
    with run_lock(url):
        pass


def test_the_sqlite_run_lock_file_beside_the_store_is_not_read_as_input(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with run_lock(url):
        assert (tmp_path / "store.db-nightly.lock").exists()
    assert tmp_path.resolve() / "store.db-nightly.lock" in store_files(url)


# -- killed midway --------------------------------------------------------------------------------


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing on the way catches it."""


def _kill_on_call(number: int, real: Callable[..., Any], *, after: bool) -> Callable[..., Any]:
    """`real`, killed on its `number`-th call: before it runs, or `after` it returned."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == number and not after:
            raise Killed
        result = real(*args, **kwargs)
        if calls == number:
            raise Killed
        return result

    return wrapper


#: Where a run is stopped: (what is patched, on which call, before or after it). Before the
#: engine's record_many runs, nothing of a chunk is committed; after it returns, the chunk's
#: events are and its checkpoint (offset, message digests, Postfix queue state) is not.
#: log_item and message_items run for each item, so their n-th call is inside a chunk of a
#: file. Files are read in the folder's order: bounces.mbox, mail.log, replies.jsonl.
KILL_POINTS: dict[str, tuple[Any, str, int, bool]] = {
    "mbox-at-a-chunk-boundary": (Engine, "record_many", 2, True),
    "postfix-at-a-chunk-boundary": (Engine, "record_many", _MBOX_CHUNKS + 2, True),
    "replies-at-a-chunk-boundary": (
        Engine,
        "record_many",
        _MBOX_CHUNKS + _POSTFIX_CHUNKS + 3,
        True,
    ),
    "mbox-before-a-chunk-is-recorded": (Engine, "record_many", 3, False),
    "postfix-before-a-chunk-is-recorded": (Engine, "record_many", _MBOX_CHUNKS + 3, False),
    "replies-before-a-chunk-is-recorded": (
        Engine,
        "record_many",
        _MBOX_CHUNKS + _POSTFIX_CHUNKS + 2,
        False,
    ),
    "mbox-inside-a-chunk": (convert, "message_items", CHUNK // 4 + 1, False),
    "postfix-inside-a-chunk": (convert, "log_item", CHUNK + 4, False),
    "replies-inside-a-chunk": (convert, "log_item", _POSTFIX_LINES + 2 * CHUNK + 3, False),
    "in-the-hygiene-evaluation": (hygiene_store, "evaluate", 1, False),
}


@pytest.fixture(params=sorted(KILL_POINTS))
def kill_point(request: pytest.FixtureRequest) -> tuple[Any, str, int, bool]:
    return KILL_POINTS[request.param]


def test_a_run_killed_anywhere_and_run_again_leaves_what_one_whole_run_leaves(
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    reference: Callable[[Path], dict[str, Any]],
    kill_point: tuple[Any, str, int, bool],
) -> None:
    folder = _night(tmp_path)
    expected = reference(folder)
    owner, name, call, after = kill_point
    with monkeypatch.context() as patch:
        patch.setattr(owner, name, _kill_on_call(call, getattr(owner, name), after=after))
        with pytest.raises(Killed):
            _run(db_url, [folder])
    kept = _state(db_url)["events"]
    again = _run(db_url, [folder])
    assert again.rejected_count == 0
    assert kept + again.recorded == expected["events"]
    assert _state(db_url) == expected
    assert _run(db_url, [folder]).recorded == 0
    assert _state(db_url) == expected


# -- what cron and systemd see ------------------------------------------------------------------


def test_output_line_prints_the_run_in_one_line_with_its_hygiene_actions(tmp_path: Path) -> None:
    folder = _night(tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    args = ["--database-url", url, "nightly", str(folder), "--now", NOW.isoformat()]
    result = CliRunner().invoke(cli, [*args, "--output", "line"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"deliverability nightly at {NOW.isoformat()}: ")
    assert " 0 rejected, " in lines[0]
    assert "; list hygiene: " in lines[0]
    assert " suppress" in lines[0]


_MAIN = "from deliverability.cli import main; main()"


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "mysql+pymysql"])
@pytest.mark.parametrize("command", ["nightly", "ingest"])
def test_a_database_server_that_cannot_be_reached_exits_75_to_be_run_again(
    tmp_path: Path, scheme: str, command: str
) -> None:
    folder = _night(tmp_path)
    with socket.socket() as closed:  # bound, never listening: a connection is refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        url = f"{scheme}://deliverability@127.0.0.1:{port}/deliverability"
        result = subprocess.run(
            [sys.executable, "-c", _MAIN, "--database-url", url, command, str(folder)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode == 75, result.stderr
    assert result.stderr.startswith("error: cannot reach the database "), result.stderr
    assert "run the command again" in result.stderr
