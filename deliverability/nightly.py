"""The nightly bounce-processing job: ingest what arrived, expire retries, evaluate hygiene.

One run reads every new input under the given paths (mailer reply logs, Postfix logs, bounce
messages as mbox, Maildir or single files), records it through the engine, expires deliveries whose
retries ran out, evaluates list hygiene set-based for everything touched, and returns a summary.

Runs can be trusted: every source's progress is kept in the store (a log's identity and byte
offset, a message's content hash, and with a Postfix log's offset what its reader knows of the
messages still queued: `deliverability.store.postfix_queue`), and every event has an idempotency
key, so a run that is killed at any point and run again loses nothing and records nothing twice.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import stat
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, make_url, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from deliverability.collector import CollectorPause
from deliverability.engine import BatchResult, Engine, ReplyRecord
from deliverability.errors import IngestError, StoreError
from deliverability.ingest import convert
from deliverability.ingest.files import (
    FileIdentity,
    detect_format,
    file_identity,
    partial_last_line,
    resume_offset,
    same_file,
)
from deliverability.ingest.messages import (
    DEFAULT_VERP,
    VerpFormat,
    mbox_last_message_unterminated,
    preamble_reason,
    starts_mbox_message,
)
from deliverability.ingest.postfix import PostfixStream, QueueKey, SavedQueueId
from deliverability.ingest.records import Rejected
from deliverability.store import postfix_queue
from deliverability.store.models import IngestedMessage, IngestSource
from deliverability.store.rejected import store_rejected
from deliverability.store.session import (
    create_engine,
    mariadb_lock_name,
    mask_url,
    write_engine,
)

__all__ = [
    "FORMATS",
    "Input",
    "NightlySummary",
    "RunInProgress",
    "SourceProgress",
    "bookkeeping_sessions",
    "expand_paths",
    "ingest_paths",
    "rolled_back",
    "run_lock",
    "run_nightly",
    "store_files",
]

FORMATS = ("auto", "jsonl", "csv", "postfix", "mbox", "maildir", "eml")
LOG_FORMATS = ("jsonl", "csv", "postfix")
MESSAGE_FORMATS = ("mbox", "maildir", "eml")

#: Items recorded per engine call (and per checkpoint of a source's offset).
CHUNK = 2000


@dataclass
class SourceProgress:
    """What one run did with one input."""

    path: str
    format: str
    items: int = 0
    recorded: int = 0
    duplicates: int = 0
    rejected: int = 0
    skipped: bool = False
    note: str = ""


@dataclass
class NightlySummary:
    """What a run did: counts by outcome and reason, hygiene actions, rejected input."""

    now: datetime
    dry_run: bool = False
    sources: list[SourceProgress] = field(default_factory=list)
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_reason: Counter[str] = field(default_factory=Counter)
    recorded: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    expired: int = 0
    actions: Counter[str] = field(default_factory=Counter)

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "now": self.now.isoformat(),
            "dry_run": self.dry_run,
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "rejected": self.rejected_count,
            "expired": self.expired,
            "by_outcome": dict(sorted(self.by_outcome.items())),
            "by_reason": dict(sorted(self.by_reason.items())),
            "actions": dict(sorted(self.actions.items())),
            "sources": [vars(s) for s in self.sources],
            "rejected_items": [
                {"source": r.source, "position": r.position, "error": r.error}
                for r in self.rejected
            ],
        }


@dataclass(frozen=True, slots=True)
class Input:
    """One input found under the paths given: its format, or why it cannot be read."""

    path: Path
    format: str | None
    problem: str | None = None


#: What SQLite keeps beside a database file: its write-ahead log, the WAL index and the rollback
#: journal (https://www.sqlite.org/tempfiles.html).
_SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def store_files(url: str | URL) -> frozenset[Path]:
    """The files of the SQLite store at `url` (the database, its companions and the run lock,
    `RUN_LOCK_SUFFIX`), which a folder of inputs may hold (``deliverability nightly .`` beside
    the default store); none for a server database or an in-memory one."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return frozenset()
    base = Path(database).resolve()
    suffixes = (*_SQLITE_COMPANIONS, RUN_LOCK_SUFFIX)
    return frozenset(base.with_name(base.name + suffix) for suffix in suffixes)


#: A rotated log's name: logrotate's numbered copies (``mail.log.1``, ``mail.log.2.gz``, the
#: higher the older) or its ``dateext`` ones (``mail.log-20261128``, ``-%Y%m%d`` by default,
#: with the hour when rotated hourly), each perhaps compressed.
_ROTATED_RE = re.compile(r"(?P<base>.+?)(?:\.(?P<number>\d+)|-(?P<date>\d{8,10}))(?:\.gz)?")


def reading_order(path: Path) -> tuple[str, int, int, str]:
    """Where `path` comes when a folder is read: by name, except that the rotated copies of a
    log come oldest first and before the log itself (``mail.log.2.gz``, ``mail.log.1``,
    ``mail.log``), so the lines of a mail host's queue are read in the order Postfix wrote them
    (what the Postfix reader learns of a queue id carries over from one file to the next)."""
    match = _ROTATED_RE.fullmatch(path.name)
    if match is None:
        return (path.name, 1, 0, "")
    number = match.group("number")
    if number is not None:
        return (match.group("base"), 0, -int(number), "")
    return (match.group("base"), 0, 0, match.group("date"))


def expand_paths(
    paths: Iterable[Path | str], fmt: str = "auto", *, skip: frozenset[Path] = frozenset()
) -> Iterator[Input]:
    """Every input under `paths`: files as given, folders walked in name order with rotated logs
    oldest first (`reading_order`; a Maildir folder is one input), leaving out the files in
    `skip` (the store's own, see `store_files`). A file whose format cannot be told (binary,
    unknown) comes with its problem, so the caller records it and goes on; an empty file has
    format ``empty``. Inside a folder, what is neither a file nor a folder (a link to nothing, a
    FIFO, a socket, a device) comes with its problem too and is never opened: a FIFO without a
    writer would block the run. Raises IngestError only for a path given that does not exist."""
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise IngestError(str(path), "path", "no such file or folder")
        if path.is_dir() and not _is_maildir(path):
            for child in sorted(path.iterdir(), key=reading_order):
                if child.name.startswith("."):
                    continue
                problem = _not_a_file(child)
                if problem is not None:
                    yield Input(child, None, problem)
                elif not (skip and child.resolve() in skip):
                    yield from expand_paths([child], fmt, skip=skip)
            continue
        if fmt == "maildir" and not path.is_dir():
            yield Input(path, None, "not a Maildir folder (no cur/ and new/ folders)")
        elif fmt != "auto":
            yield Input(path, fmt)
        elif path.is_file() and path.stat().st_size == 0:
            # A log rotated a moment ago is empty: nothing to read, nothing wrong.
            yield Input(path, "empty")
        else:
            try:
                yield Input(path, detect_format(path))
            except IngestError as exc:
                yield Input(path, None, exc.problem)


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_a_file(path: Path) -> str | None:
    """Why a folder's entry cannot be read as an input (None: it is a file or a folder), told
    from its status alone, without opening it."""
    try:
        mode = path.stat().st_mode  # of what a link points to
    except FileNotFoundError:
        if path.is_symlink():
            return "a link to a file that does not exist: not read"
        return "no such file (removed while the folder was read): not read"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "of an unknown kind")
    return f"not a regular file ({kind}): not read"


def _is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() and (path / "new").is_dir()


# -- source bookkeeping ---------------------------------------------------------------------------


def _saved_source(session: Session, path: Path) -> IngestSource | None:
    """The bookkeeping row for this file: the same file by identity (it may have been renamed by
    rotation, mail.log -> mail.log.1), else the last file read under this path."""
    rows = session.scalars(select(IngestSource)).all()
    for row in rows:
        try:
            if same_file(FileIdentity.from_key(row.identity), path):
                return row
        except (ValueError, IngestError):
            continue
    for row in rows:
        if row.path == str(path):
            return row
    return None


def _checkpoint(
    session: Session,
    row: IngestSource | None,
    path: Path,
    fmt: str,
    offset: int,
    items: int,
    now: datetime,
) -> IngestSource:
    identity = file_identity(path).key
    if row is None or row.identity != identity:
        existing = session.scalars(
            select(IngestSource).where(IngestSource.identity == identity)
        ).first()
        row = existing or IngestSource(identity=identity, path=str(path), format=fmt, items=0)
        session.add(row)
    row.path = str(path)
    row.format = fmt
    row.offset = offset
    row.items = (row.items or 0) + items
    row.updated_at = now
    return row


def record_rejected(session: Session, items: Iterable[Rejected], now: datetime) -> None:
    """Store rejected input in the session's transaction (an item already stored is not stored
    again: see `deliverability.store.rejected`)."""
    store_rejected(
        session.connection(), ((i.source, i.position, i.error, i.raw) for i in items), now
    )


def message_key(data: bytes) -> str:
    """A bounce message's identity: the hash of its bytes (the same message in two mailboxes,
    or read twice, is one message)."""
    return hashlib.sha256(data).hexdigest()


def _seen_messages(session: Session, keys: list[str]) -> set[str]:
    if not keys:
        return set()
    return set(session.scalars(select(IngestedMessage.key).where(IngestedMessage.key.in_(keys))))


# -- one run at a time ----------------------------------------------------------------------------


class RunInProgress(StoreError):
    """Another `nightly` or `ingest` run holds the store's run lock: this one did nothing."""


#: The SQLite store's run lock: a file beside the database (``deliverability.db-nightly.lock``).
RUN_LOCK_SUFFIX = "-nightly.lock"

#: PostgreSQL's advisory lock key for the run lock (a bigint; advisory locks are per database,
#: https://www.postgresql.org/docs/current/explicit-locking.html#ADVISORY-LOCKS).
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"deliverability nightly").digest()[:8]) >> 1

#: The run locks this thread holds (by URL), so `run_nightly` taking it around `ingest_paths`,
#: or the CLI around `run_nightly`, does not wait on itself.
_held = threading.local()


def _holder(command: str) -> str:
    return f"deliverability {command}, pid {os.getpid()} on {socket.gethostname()}"


@contextmanager
def run_lock(url: str | URL, *, command: str = "nightly") -> Iterator[None]:
    """Hold the store's run lock for the block: one `nightly` or `ingest` at a time per store.

    Two runs over the same sources at once (cron starting the next night's run while a slow one
    still reads, or an operator running one by hand) both read what neither had checkpointed:
    the second failed on a unique key when both stored the same bounce message's digest, and
    the two hygiene evaluations and Postfix queue saves raced. So a run that finds the lock
    held raises `RunInProgress`, naming the holder, at once and before it reads anything.

    The lock is the operating system's or the server's, never a row, so a run that is killed
    (SIGKILL, OOM, a reboot) cannot leave it behind:

    - SQLite: ``flock`` on a file beside the database (`RUN_LOCK_SUFFIX`), released by the
      kernel when the process ends; the file says who holds it. Not SQLite's own file: closing
      any descriptor of it would drop SQLite's POSIX locks (https://www.sqlite.org/howtocorrupt.html
      section 2.2). None for an in-memory database, which no other process can open.
    - PostgreSQL: a transaction-level advisory lock in a transaction of its own, on a
      connection of its own (`_pg_lock`), released when that transaction or connection ends;
      the connection's ``application_name`` names the run. Server
      TCP keepalives on it are shortened so that a client host that vanished (a reboot, a
      cable) is noticed in about two minutes, not the two hours of the usual system default
      (https://www.postgresql.org/docs/current/runtime-config-connection.html).
    - MariaDB: ``GET_LOCK`` on a connection of its own, released when it ends
      (https://mariadb.com/kb/en/get_lock/); the name carries the database's, since MariaDB's
      named locks are server-wide.

    Re-entrant within a thread. A server that cannot be reached raises `StoreUnavailableError`
    (the CLI exits 75: run again later), a URL it refuses a `StoreError` (exit 2), as every
    command's first connection does (`store.session.out_of_reach`).
    """
    parsed = make_url(url)
    key = _store_identity(parsed)
    held: set[str] = _held.__dict__.setdefault("urls", set())
    if key in held:
        yield
        return
    if parsed.get_backend_name() == "sqlite":
        lock = _sqlite_lock(parsed, command)
    else:
        lock = _server_lock(parsed, command)
    with lock:
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)


def _store_identity(url: URL) -> str:
    """Which store `url` names, whatever else it says (a driver, pool options, a password): the
    CLI's URL and its engine's, which has lost its pool options, are one store."""
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return f"sqlite:{database}"
        return f"sqlite:{Path(database).resolve()}"
    return f"{url.get_backend_name()}://{url.host}:{url.port}/{url.database}"


@contextmanager
def _sqlite_lock(url: URL, command: str) -> Iterator[None]:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("uri"):
        yield
        return
    path = Path(database).resolve()
    if not path.parent.is_dir():
        # Opening the store says what is wrong with its folder (session.create_engine).
        yield
        return
    lock_path = path.with_name(path.name + RUN_LOCK_SUFFIX)
    try:
        import fcntl
    except ImportError:  # not POSIX: no flock; runs there are not kept apart
        yield
        return
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise StoreError(
            f"cannot take the run lock {lock_path}: {exc.strerror or exc} (fix: let the user "
            "running the job write in the store's folder)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            with os.fdopen(os.dup(fd), "rb") as f:
                who = f.read(500).decode("utf-8", "replace").strip() or "another run"
            raise RunInProgress(
                f"{mask_url(url)} is being worked on by {who} (it holds {lock_path}): this run "
                "did nothing; run it again when that one has finished"
            ) from None
        os.ftruncate(fd, 0)
        started = datetime.now(UTC).isoformat(timespec="seconds")
        os.write(fd, f"{_holder(command)}, since {started}\n".encode())
        yield
    finally:
        os.close(fd)  # releases the flock


@contextmanager
def _server_lock(url: URL, command: str) -> Iterator[None]:
    # Its pool holds the one connection until `dispose`, which closes it.
    engine = create_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                _pg_lock(conn, url, command)
                release = conn.rollback
            else:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                release = _mariadb_lock(conn, url)
            try:
                yield
            finally:
                with suppress(SQLAlchemyError):  # the connection is gone, the lock with it
                    release()
    finally:
        engine.dispose()


def _pg_lock(conn: Connection, url: URL, command: str) -> None:
    """Take the lock for the transaction `conn` begins and keeps open until the run ends: a
    transaction-level advisory lock, since a session-level one would stay behind on a server
    connection that a transaction-mode pooler (PgBouncer) hands to other clients between
    transactions. The transaction takes no snapshot between statements (READ COMMITTED) and no
    transaction id, so it holds back no vacuum. The settings are the transaction's own too."""
    settings = {
        "application_name": _holder(command)[:63],  # NAMEDATALEN - 1
        "tcp_keepalives_idle": "60",
        "tcp_keepalives_interval": "10",
        "tcp_keepalives_count": "6",
    }
    for name, value in settings.items():
        conn.execute(text("SELECT set_config(:n, :v, true)"), {"n": name, "v": value})
    if not conn.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}):
        # A bigint key shows in pg_locks as classid (its high half) and objid (its low half).
        holder = conn.execute(
            text(
                "SELECT a.pid, a.application_name, a.backend_start FROM pg_locks l "
                "JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid::bigint = :hi AND l.objid::bigint = :lo AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())"
            ),
            {"hi": _PG_LOCK_KEY >> 32, "lo": _PG_LOCK_KEY & 0xFFFFFFFF},
        ).first()
        if holder is None:
            raise _held_by(url, None, "")
        pid, name, since = holder
        raise _held_by(
            url,
            f"{name or 'another run'} (server process {pid}, connected since {since})",
            f"SELECT pg_terminate_backend({pid})",
        )


def _held_by(url: URL, who: str | None, free: str) -> RunInProgress:
    """The refusal of a run that found a server's run lock held by `who` (None: it was let go
    between the two questions), with the statement that frees a lock whose run is gone."""
    if who is None:
        who = "another run (it ended a moment ago: run again)"
    gone = f"; if that run is gone, {free} frees the lock" if free else ""
    return RunInProgress(
        f"{mask_url(url)} is being worked on by {who}: this run did nothing; run it again "
        f"when that one has finished{gone}"
    )


def _mariadb_lock(conn: Connection, url: URL) -> Callable[[], None]:
    name = mariadb_lock_name("nightly", url.database)
    if conn.scalar(text("SELECT GET_LOCK(:name, 0)"), {"name": name}) != 1:
        holder = conn.scalar(text("SELECT IS_USED_LOCK(:name)"), {"name": name})
        if holder is None:
            raise _held_by(url, None, "")
        where = conn.execute(
            text("SELECT HOST, TIME FROM information_schema.PROCESSLIST WHERE ID = :id"),
            {"id": holder},
        ).first()
        seen = f" from {where[0]}, for {where[1]} s" if where is not None else ""
        raise _held_by(url, f"another run (connection {holder}{seen})", f"KILL {holder}")

    def release() -> None:
        conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})

    return release


# -- the run --------------------------------------------------------------------------------------


#: Called after each chunk with (path, items done in this source).
ProgressFn = Callable[[str, int], None]


def bookkeeping_sessions(engine: Engine) -> Callable[[], Session]:
    """The sessions `ingest_paths` keeps its bookkeeping with (offsets, seen messages, rejected
    input). On SQLite their transactions take the write lock at BEGIN (`write_engine`): one that
    began as a reader and then wrote failed at once with "database is locked" when a sender had
    committed in between (SQLITE_BUSY_SNAPSHOT, which the busy timeout does not wait on:
    https://www.sqlite.org/rescode.html#busy_snapshot), and stopped the job beside a live sender.
    The engine's own `db` is read at each call: a dry run swaps it (`rolled_back`)."""
    return lambda: Session(write_engine(engine.db))


def ingest_paths(
    recorder: Engine,
    session_factory: Callable[[], Session],
    paths: Iterable[Path | str],
    *,
    now: datetime,
    fmt: str = "auto",
    summary: NightlySummary | None = None,
    progress: ProgressFn | None = None,
    strict: bool = False,
    verp: VerpFormat = DEFAULT_VERP,
    skip: frozenset[Path] | None = None,
    log_tz: tzinfo = UTC,
    from_start: bool = False,
) -> NightlySummary:
    """Read every new input under `paths` and record it with `recorder` (an `Engine`).

    `session_factory` gives sessions for the bookkeeping rows (offsets, seen messages, rejected
    input): `bookkeeping_sessions(recorder)`; their transactions commit after each chunk, once
    the chunk's events are recorded.
    With `strict`, the first item that cannot be read stops the run (IngestError); what was
    recorded before it stays. `verp` says how a VERP return path encodes the recipient. Folders
    are walked without the files in `skip` (by default the recorder's own SQLite files).
    The run holds the store's run lock (`run_lock`): while another run holds it, this one
    raises `RunInProgress` and reads nothing.
    `log_tz` is the zone of the syslog time stamps that carry none (classic ``Nov 28 03:14:15``
    stamps in a Postfix log are the mail host's local time, RFC 3164 section 4.1.2); default UTC.
    With `from_start`, every file is read from its top and every message again, not from where
    the last run stopped: what was rejected for a reason fixed since (a wrong ``--now``, a clock
    a day ahead) is read again, and what was recorded is skipped by its idempotency keys.
    """
    run = _Ingest(
        recorder,
        session_factory,
        now,
        summary or NightlySummary(now=now),
        progress,
        strict,
        verp,
        log_tz,
        from_start,
    )
    if skip is None:
        skip = store_files(recorder.db.url)
    with run_lock(recorder.db.url, command="ingest"):
        for found in expand_paths(paths, fmt, skip=skip):
            path, kind = found.path, found.format
            row = SourceProgress(path=str(path), format=kind or "unknown")
            run.summary.sources.append(row)
            if kind in LOG_FORMATS:
                run.log(path, kind, row)
            elif kind in MESSAGE_FORMATS:
                run.messages(path, kind, row)
            elif kind == "empty":
                row.note = "empty"
            else:
                problem = found.problem or f"unknown format {kind!r}; one of {', '.join(FORMATS)}"
                run.unreadable(path, row, problem)
    return run.summary


def _action_label(action: Any) -> str:
    kind = getattr(action, "kind", "action")
    status = getattr(action, "status", "")
    label = str(getattr(kind, "value", kind))
    status_value = str(getattr(status, "value", status))
    return f"{label} ({status_value})" if status_value and status_value != "open" else label


@dataclass
class _Ingest:
    """One ingest pass: records chunks through the engine, then checkpoints each source."""

    recorder: Engine
    sessions: Callable[[], Session]
    now: datetime
    summary: NightlySummary
    progress: ProgressFn | None
    strict: bool
    verp: VerpFormat
    log_tz: tzinfo
    #: Read every file from its top and every message again (`ingest_paths`).
    from_start: bool = False
    #: The Postfix reader of this run, for every Postfix log in turn: what it learns of a mail
    #: host's queue carries over from one file to the next, and through the store to the next
    #: run (`deliverability.store.postfix_queue`).
    postfix: PostfixStream | None = None
    #: Whether this run has dropped the queue state kept too long (`postfix_queue.prune`).
    queue_pruned: bool = False
    #: Whether the store held queue state when this run first asked (None: not asked yet).
    queue_was_kept: bool | None = None

    def _account(self, row: SourceProgress, result: BatchResult, rejected: list[Rejected]) -> None:
        summary = self.summary
        summary.recorded += result.recorded
        summary.duplicates += result.duplicates
        row.recorded += result.recorded
        row.duplicates += result.duplicates
        summary.by_outcome.update({str(k): v for k, v in result.by_outcome.items()})
        summary.by_reason.update({str(k): v for k, v in result.by_reason.items()})
        for action in result.actions:
            summary.actions[_action_label(action)] += 1
        # The engine stores the items it rejects itself; the summary lists them beside the
        # sources' own.
        engine_rejected = [Rejected(r.source, r.position, r.reason, "") for r in result.rejected]
        row.rejected += len(rejected) + len(engine_rejected)
        summary.rejected.extend(rejected + engine_rejected)

    def _bad(self, item: Rejected, rejected: list[Rejected]) -> None:
        if self.strict:
            raise IngestError(item.source, item.position, item.error, item.raw)
        rejected.append(item)

    def unreadable(self, path: Path, row: SourceProgress, problem: str) -> None:
        """A whole file that cannot be read: rejected as one item, and the run goes on."""
        head = ""
        if path.is_file():  # never a FIFO or a device: opening one may block
            try:
                with path.open("rb") as f:
                    head = f.read(200).decode("utf-8", "replace")
            except OSError:
                pass
        rejected: list[Rejected] = []
        row.items += 1
        self._bad(Rejected(str(path), "file", problem, head), rejected)
        row.rejected += 1
        self.summary.rejected.extend(rejected)
        with self.sessions() as session, session.begin():
            record_rejected(session, rejected, self.now)

    def _tick(self, path: Path, row: SourceProgress) -> None:
        if self.progress:
            self.progress(str(path), row.items)

    def _resume_point(self, path: Path) -> tuple[int, str | None]:
        """Where the last run left this file (`resume_offset`: 0 for the top) and the format it
        read it as (None: never read)."""
        if self.from_start:
            return 0, None
        with self.sessions() as session:
            saved = _saved_source(session, path)
            if saved is None:
                return 0, None
            identity = FileIdentity.from_key(saved.identity)
            return resume_offset(path, identity, saved.offset), saved.format

    def log(self, path: Path, kind: str, row: SourceProgress) -> None:
        start, saved_format = self._resume_point(path)
        if start and saved_format is not None and saved_format != kind:
            # The last run read this file as another format (a wrong --format): what it saved
            # says nothing about this format's items, so all of it is read again; events are
            # idempotent, so what was recorded then is not recorded twice.
            start = 0
            row.note = (
                f"read from the start: the last run read it as {saved_format}, this run as {kind}"
            )
        elif start:
            row.note = f"resumed at byte {start}"
        chunk: list[ReplyRecord] = []
        rejected: list[Rejected] = []
        offset = start
        stream = self._postfix_stream() if kind == "postfix" else None
        items = convert.read_log(
            path,
            kind,
            start_offset=start,
            now=self.now,
            log_tz=self.log_tz,
            stream=stream,
            scan_before=stream is not None and not self._queue_kept(),
        )
        # The collector is paused while a chunk is read and recorded, as record_many pauses it
        # while it writes one, and for the same reason (`collector`): the chunk's records
        # live until it is recorded.
        pause = CollectorPause()
        pause.begin()
        try:
            for offset_after, item in items:
                row.items += 1
                if isinstance(item, Rejected):
                    self._bad(item, rejected)
                else:
                    chunk.append(convert.log_item(item, self.recorder.policy))
                offset = offset_after
                # Not between the records of one line (a Postfix expiry's): the queue state
                # would be the line's end's, kept with the offset of its start.
                if len(chunk) + len(rejected) >= CHUNK and (stream is None or stream.at_line_end):
                    self._flush_log(path, kind, row, chunk, rejected, offset)
                    chunk, rejected = [], []
                    pause.end()
                    pause.begin()
                    self._tick(path, row)
            self._flush_log(path, kind, row, chunk, rejected, offset)
            chunk, rejected = [], []
        finally:
            pause.end()
        held = partial_last_line(path)
        if held is not None and held >= start:
            note = f"an incomplete last line at byte {held} is left for the next run"
            row.note = f"{row.note}; {note}" if row.note else note
        self._tick(path, row)

    def _flush_log(
        self,
        path: Path,
        kind: str,
        row: SourceProgress,
        chunk: list[ReplyRecord],
        rejected: list[Rejected],
        offset: int,
    ) -> None:
        # Events first, then the checkpoint: a crash between the two re-reads the chunk next
        # time, and the events' idempotency keys make that harmless. What the Postfix reader
        # learnt up to `offset` is kept with it: the next read starts from both.
        result = self.recorder.record_many(chunk)
        self._account(row, result, rejected)
        learnt = self.postfix.take_changes() if kind == "postfix" and self.postfix else {}
        with self.sessions() as session, session.begin():
            record_rejected(session, rejected, self.now)
            saved = _saved_source(session, path)
            _checkpoint(session, saved, path, kind, offset, len(chunk) + len(rejected), self.now)
            if kind == "postfix":
                if not self.queue_pruned:
                    postfix_queue.prune(session, self.now)
                    self.queue_pruned = True
                postfix_queue.save(session, learnt, self.now)

    def _postfix_stream(self) -> PostfixStream:
        if self.postfix is None:
            self.postfix = PostfixStream(now=self.now, tz=self.log_tz, saved=self._kept_queue)
        return self.postfix

    def _queue_kept(self) -> bool:
        """Whether the store held any queue state when the run began. A store that holds none
        was perhaps upgraded from a version that kept none (or nothing was queued at the last
        save): a Postfix log resumed mid-file is then scanned up to its offset, as that version
        did, so the messages queued before the offset still join."""
        if self.queue_was_kept is None:
            with self.sessions() as session:
                self.queue_was_kept = postfix_queue.any_kept(session)
        return self.queue_was_kept

    def _kept_queue(self, keys: Collection[QueueKey]) -> Mapping[QueueKey, SavedQueueId]:
        """What earlier runs kept of these queue ids (`PostfixStream.prefetch`)."""
        with self.sessions() as session:
            return postfix_queue.lookup(session, keys)

    def _reject_one(self, row: SourceProgress, rejected: Rejected) -> None:
        """One bad item of a message source (an mbox's preamble, an unreadable Maildir file),
        recorded as it is found."""
        bad: list[Rejected] = []
        row.items += 1
        self._bad(rejected, bad)
        row.rejected += 1
        self.summary.rejected.extend(bad)
        with self.sessions() as session, session.begin():
            record_rejected(session, bad, self.now)

    def messages(self, path: Path, kind: str, row: SourceProgress) -> None:
        no_message = False

        def preamble(size: int, head: bytes, follows: bool) -> None:
            nonlocal no_message
            if not follows:
                # Read as an mbox, a file without a "From " line would silently give no message.
                no_message = True
                self.unreadable(path, row, preamble_reason(size, follows))
                return
            reason = preamble_reason(size, follows)
            raw = head.decode("utf-8", "replace")
            self._reject_one(row, Rejected(str(path), "byte 0", reason, raw))

        def unreadable(key: str, problem: str) -> None:
            self._reject_one(row, Rejected(str(path), key, problem, ""))

        start = self._mbox_start(path, row) if kind == "mbox" else 0
        batch: list[tuple[str, bytes]] = []
        found = convert.read_messages(
            path, kind, preamble=preamble, start_offset=start, unreadable=unreadable
        )
        for key, data in found:
            batch.append((key, data))
            if len(batch) >= CHUNK // 4:
                self._flush_messages(path, kind, row, batch)
                batch = []
                self._tick(path, row)
        self._flush_messages(path, kind, row, batch)
        if kind == "mbox" and not no_message and mbox_last_message_unterminated(path):
            # iter_mbox held it back: the checkpoint stays before it, so the next run reads it
            # once its writer has finished it (and added the empty line that ends it).
            note = "an unterminated last message is left for the next run"
            row.note = f"{row.note}; {note}" if row.note else note
        self._tick(path, row)

    def _mbox_start(self, path: Path, row: SourceProgress) -> int:
        """Where to read an mbox this run: where the last run's last message began, when the
        file is the one it read (grown, not rewritten) and a message still begins there; else
        the top. A mailbox that bounces are appended to then costs each night what arrived
        since, not the whole file again (its messages already recorded would be skipped by
        their digests, but only after reading and hashing them all)."""
        start, saved_format = self._resume_point(path)
        if saved_format != "mbox":
            return 0
        if start and starts_mbox_message(path, start):
            row.note = f"resumed at byte {start}"
            return start
        return 0

    def _flush_messages(
        self, path: Path, kind: str, row: SourceProgress, batch: list[tuple[str, bytes]]
    ) -> None:
        if not batch:
            return
        hashes = [message_key(data) for _, data in batch]
        with self.sessions() as session:
            seen = _seen_messages(session, hashes)
        items: list[ReplyRecord] = []
        rejected: list[Rejected] = []
        fresh: list[str] = []
        for (key, data), digest in zip(batch, hashes, strict=True):
            row.items += 1
            if digest in fresh or (digest in seen and not self.from_start):
                row.duplicates += 1
                self.summary.duplicates += 1
                continue
            fresh.append(digest)
            got, bad = convert.message_items(
                data,
                source=str(path),
                position=key,
                now=self.now,
                verp=self.verp,
                policy=self.recorder.policy,
            )
            items.extend(got)
            if bad is not None:
                self._bad(bad, rejected)
        result = self.recorder.record_many(items)
        self._account(row, result, rejected)
        with self.sessions() as session, session.begin():
            record_rejected(session, rejected, self.now)
            for digest in fresh:
                if digest in seen:
                    continue  # read again (from_start): its digest is stored already
                session.add(
                    IngestedMessage(key=digest, source=str(path)[:1000], recorded_at=self.now)
                )
            if kind == "mbox":
                # The next run starts at this batch's last message, not after it: a message
                # at the end of the file may still be being appended to. Read again, it is
                # skipped by its digest when it is whole; grown, it is read as it now is.
                saved = _saved_source(session, path)
                _checkpoint(session, saved, path, kind, int(batch[-1][0]), len(batch), self.now)


def run_nightly(
    engine: Engine,
    paths: Iterable[Path | str],
    *,
    now: datetime,
    fmt: str = "auto",
    full: bool = False,
    strict: bool = False,
    progress: ProgressFn | None = None,
    verp: VerpFormat = DEFAULT_VERP,
    skip: frozenset[Path] | None = None,
    log_tz: tzinfo = UTC,
    from_start: bool = False,
) -> NightlySummary:
    """The whole job: ingest `paths`, expire retries that ran out, evaluate list hygiene.

    `engine` should use a clock that returns `now` (the CLI's ``--now``), so that what it records
    is judged at the same time as the job. `skip`: see `ingest_paths` (a dry run on a copy of a
    SQLite store names the original's files); `log_tz` and `from_start` too (the CLI's
    ``--log-tz`` and ``--from-start``).

    The run holds the store's run lock (`run_lock`) throughout: while another run holds it,
    this one raises `RunInProgress` and does nothing.
    """
    with run_lock(engine.db.url):
        return _run_nightly(
            engine,
            paths,
            now=now,
            fmt=fmt,
            full=full,
            strict=strict,
            progress=progress,
            verp=verp,
            skip=skip,
            log_tz=log_tz,
            from_start=from_start,
        )


def _run_nightly(
    engine: Engine,
    paths: Iterable[Path | str],
    *,
    now: datetime,
    fmt: str,
    full: bool,
    strict: bool,
    progress: ProgressFn | None,
    verp: VerpFormat,
    skip: frozenset[Path] | None,
    log_tz: tzinfo,
    from_start: bool,
) -> NightlySummary:
    from deliverability.store import hygiene as hygiene_store

    summary = NightlySummary(now=now)
    ingest_paths(
        engine,
        bookkeeping_sessions(engine),
        paths,
        now=now,
        fmt=fmt,
        summary=summary,
        progress=progress,
        strict=strict,
        verp=verp,
        skip=skip,
        log_tz=log_tz,
        from_start=from_start,
    )
    expired = engine.expire_overdue(now)
    summary.expired = expired.recorded
    for action in expired.actions:
        summary.actions[_action_label(action)] += 1
    with Session(write_engine(engine.db)) as session, session.begin():
        result = hygiene_store.evaluate(session, engine.policy, now, full=full)
    for summary_action in result.actions:
        if summary_action.new:
            summary.actions[_action_label(summary_action)] += 1
    summary.actions["expired actions"] += result.expired
    # The suppressions that ran out no longer make their addresses "suppressed" in status and
    # reports: the standing follows the deliveries again.
    engine.lift_lapsed_suppressions(now)
    return summary


# -- dry runs -------------------------------------------------------------------------------------


class _Savepoints:
    """Turns the transactions SQLAlchemy begins, commits and rolls back on one DBAPI connection
    into SAVEPOINTs inside that connection's own outer transaction (SQL:2003 savepoints, which
    PostgreSQL and MariaDB both have), so a whole run can be undone by one ROLLBACK.

    The names are numbered by depth: the job uses its connections one after the other (a read
    may be open around a write), so they nest and end in reverse order of beginning.
    """

    def __init__(self) -> None:
        self.depth = 0

    @staticmethod
    def _execute(dbapi_connection: Any, sql: str) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()

    def begin(self, dbapi_connection: Any) -> None:
        self.depth += 1
        self._execute(dbapi_connection, f"SAVEPOINT dry_run_{self.depth}")

    def commit(self, dbapi_connection: Any) -> None:
        if self.depth:
            self._execute(dbapi_connection, f"RELEASE SAVEPOINT dry_run_{self.depth}")
            self.depth -= 1

    def rollback(self, dbapi_connection: Any) -> None:
        # The pool also "rolls back" a connection it takes back: with no savepoint open there is
        # nothing of ours to undo, and the outer transaction must stay.
        if self.depth:
            name = f"dry_run_{self.depth}"
            self.depth -= 1
            self._execute(dbapi_connection, f"ROLLBACK TO SAVEPOINT {name}")
            self._execute(dbapi_connection, f"RELEASE SAVEPOINT {name}")


@contextmanager
def rolled_back(engine: Engine) -> Iterator[None]:
    """Run what `engine` does inside the block in one transaction that is rolled back at the
    end: a dry run on a server database (PostgreSQL, MariaDB) that writes nothing.

    The engine's SQLAlchemy Engine is swapped for one whose pool holds a single connection
    (StaticPool), on which every transaction the engine, the ingest bookkeeping and the hygiene
    evaluation begin becomes a SAVEPOINT (the "join an external transaction" recipe of the
    SQLAlchemy documentation, applied below the Connection so that code written for real
    transactions behaves exactly as in a real run). The run therefore sees its own writes, its
    counts are those a real run would give, and the final ROLLBACK undoes all of it.

    A dry run takes the row locks a real run takes and holds them until it ends: senders that
    write the same recipients meanwhile wait for it. SQLite is refused: there one writer holds
    the whole database, so the CLI runs SQLite dry runs on a copy instead.
    """
    real = engine.db
    if real.dialect.name == "sqlite":
        raise StoreError(
            f"{mask_url(real.url)}: a rolled-back dry run needs a server database; "
            "run SQLite dry runs on a copy of the file"
        )
    # No test of the connection before each use (pool_pre_ping, store/session.py): the one
    # connection is inside the dry run's transaction between uses, and psycopg's ping would
    # first switch it to autocommit, which it refuses there.
    single = create_engine(
        real.url.render_as_string(hide_password=False), poolclass=StaticPool, pool_pre_ping=False
    )
    try:
        # Connect once before the savepoints take over: SQLAlchemy's first connection reads
        # the server's settings and ends with a plain rollback.
        with single.connect():
            pass
        savepoints = _Savepoints()
        dialect: Any = single.dialect
        dialect.do_begin = savepoints.begin
        dialect.do_commit = savepoints.commit
        dialect.do_rollback = savepoints.rollback
        engine.db = single
        try:
            yield
        finally:
            engine.db = real
            with single.connect() as conn:
                conn.connection.dbapi_connection.rollback()  # type: ignore[union-attr]
    finally:
        single.dispose()
