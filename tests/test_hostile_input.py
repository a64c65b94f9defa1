"""Hostile input through every entry point: CLI arguments, standard input, log files, bounce
messages and policy files.

Each case must end with a clear answer (a verdict, a one-line error, a rejected-input record),
never a traceback, an "internal error" or a hang, and must not lose what was recorded before.
The CLI runs as a real subprocess with a timeout, as an operator or a cron job would run it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select

from deliverability.cli import main
from deliverability.engine import Engine
from deliverability.store.models import Event, RejectedInput
from deliverability.store.session import create_engine

SQL = "'); DROP TABLE events; --"
TIMEOUT_S = 120
_ENTRY = "import sys; from deliverability.cli import main; sys.argv[0] = 'deliverability'; main()"
#: `_ENTRY`, writing the process's own peak resident memory (MiB, `bench.peak_memory`) at exit
#: to the file named by PEAK_FILE. Not getrusage(RUSAGE_CHILDREN) in the test: Linux keeps a
#: process's peak across fork and exec, so a child of a test worker that once grew large reports
#: the worker's peak (a run failed that way at 516 MiB).
_PEAK_ENTRY = (
    "import atexit, os, sys\n"
    f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
    "from bench.peak_memory import peak_rss_mib\n"
    "atexit.register(lambda: open(os.environ['PEAK_FILE'], 'w').write(str(peak_rss_mib())))\n"
    + _ENTRY.replace("; ", "\n")
)


def run_cli(
    db_url: str,
    *args: str | bytes,
    stdin: bytes | None = None,
    timeout: float = TIMEOUT_S,
    peak_file: Path | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """The console entry point in a fresh process, as an operator or a cron job runs it.

    `peak_file`: where the process writes its peak resident memory in MiB."""
    env = {**os.environ, "DELIVERABILITY_DATABASE_URL": db_url}
    env.pop("DELIVERABILITY_DEBUG", None)
    entry = _ENTRY
    if peak_file is not None:
        env["PEAK_FILE"] = str(peak_file)
        entry = _PEAK_ENTRY
    command: Sequence[str | bytes] = [sys.executable, "-c", entry, *args]
    return subprocess.run(
        [c if isinstance(c, bytes) else c.encode() for c in command],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )


class _Kept(io.BytesIO):
    """A buffer that keeps its bytes when the text stream over it is closed or collected."""

    def close(self) -> None:
        pass


def _errors(name: str) -> str:
    stream = getattr(sys, f"__{name}__", None)
    return getattr(stream, "errors", None) or "strict"


def run_main(
    db_url: str, *args: str | bytes, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """The same entry point in this process (starting Python and importing the package takes
    seconds on a busy CI box): argv, standard streams and environment as a real run has them.
    Bytes arguments are decoded the way Python decodes a real command line (PEP 383)."""
    argv = ["deliverability", *(os.fsdecode(a) if isinstance(a, bytes) else a for a in args)]
    out, err = _Kept(), _Kept()
    streams = (sys.argv, sys.stdin, sys.stdout, sys.stderr)
    saved_env = {
        k: os.environ.get(k) for k in ("DELIVERABILITY_DATABASE_URL", "DELIVERABILITY_DEBUG")
    }
    os.environ["DELIVERABILITY_DATABASE_URL"] = db_url
    os.environ.pop("DELIVERABILITY_DEBUG", None)
    sys.argv = argv
    # Encodings and error handlers as this interpreter's own streams have them.
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8", errors=_errors("stdin"))
    sys.stdout = io.TextIOWrapper(
        out, encoding="utf-8", errors=_errors("stdout"), write_through=True
    )
    sys.stderr = io.TextIOWrapper(
        err, encoding="utf-8", errors="backslashreplace", write_through=True
    )
    code: object = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError):
                stream.flush()
        sys.argv, sys.stdin, sys.stdout, sys.stderr = streams
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(argv, returncode, out.getvalue(), err.getvalue())


def assert_handled(done: subprocess.CompletedProcess[bytes]) -> None:
    """A clear outcome: exit 0 (done), 1 (done, some input rejected) or 2 (refused), and no
    traceback or internal error."""
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode in (0, 1, 2), f"exit {done.returncode}: {err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    assert "internal error" not in err, err[-2000:]


@pytest.fixture
def seeded(db_url: str, frozen_now: object) -> str:
    """A store with one recorded bounce, which every hostile case must leave in place."""
    with Engine(db_url) as engine:
        engine.record("kept@seed.example", "550 5.1.1 user unknown", message_id="<seed@x>")
    return db_url


def assert_seed_kept(db_url: str) -> None:
    db = create_engine(db_url)
    try:
        tables = set(inspect(db).get_table_names())
        assert {"events", "recipients", "actions", "deliveries"} <= tables
        with db.connect() as conn:
            seeds = conn.scalar(
                # Stored without the angle brackets it was recorded with (RFC 5322 3.6.4).
                select(func.count()).select_from(Event).where(Event.message_id == "seed@x")
            )
        assert seeds == 1
    finally:
        db.dispose()


def test_sql_fragments_in_arguments_are_stored_verbatim_or_refused(seeded: str) -> None:
    """Quotes are legal in a local part (RFC 5322 atext), so this address is stored as it is;
    the fragments in the reply and the message id are stored as text, never run."""
    address = "o'neil'--@b.example"
    done = run_main(
        seeded, "record", "--recipient", address, "--reply", f"550 5.1.1 {SQL}",
        "--message-id", SQL, "--format", "json",
    )  # fmt: skip
    assert_handled(done)
    assert done.returncode == 0, done.stderr.decode()
    status = run_main(seeded, "status", address, "--format", "json")
    assert status.returncode == 0, status.stderr.decode()
    assert json.loads(status.stdout)["address"] == address
    db = create_engine(seeded)
    try:
        with db.connect() as conn:
            stored = conn.execute(
                select(Event.message_id, Event.text).where(Event.message_id == SQL)
            )
            assert [tuple(r) for r in stored] == [(SQL, SQL)]
    finally:
        db.dispose()
    for args in (
        ("status", "x@b.example' OR '1'='1"),
        ("suppress", f"x@y.example{SQL}", "--reason", SQL),
        ("report", "undeliverable", "--domain", SQL, "--format", "csv"),
        ("report", "codes", "--reason", SQL),
        ("sendable", f"a@b.example{SQL}"),
        ("prune", "--older-than", SQL),
    ):
        assert_handled(run_main(seeded, *args))
    assert_seed_kept(seeded)


@pytest.fixture
def sqlite_seeded(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    with Engine(url) as engine:
        engine.record("kept@seed.example", "550 5.1.1 user unknown", message_id="<seed@x>")
    return url


@pytest.mark.parametrize(
    "args",
    [
        (b"explain", b"\xff\xfe550 5.1.1 \xc3("),
        (b"status", b"\xff@b.example"),
        (b"record", b"--recipient", b"a\xc3@b.example", b"--reply", b"250 ok"),
        (b"record", b"--recipient", b"a@b.example", b"--reply", b"550 \xed\xa0\x80 5.1.1"),
        (b"suppress", b"a@b.example", b"--reason", b"\xff\xff"),
        (b"report", b"undeliverable", b"--domain", b"\xe2\x82"),
    ],
    ids=lambda a: b" ".join(a).decode("ascii", "backslashreplace")[:40],
)
def test_invalid_utf8_in_arguments_gets_a_clear_answer(
    sqlite_seeded: str, args: tuple[bytes, ...]
) -> None:
    assert_handled(run_main(sqlite_seeded, *args))
    assert_seed_kept(sqlite_seeded)


def test_a_huge_argument_gets_a_clear_error(sqlite_seeded: str) -> None:
    # Linux refuses a single argument over 128 KiB (MAX_ARG_STRLEN), so 100 KB is the most a
    # shell can pass; ten megabytes come through standard input below.
    done = run_main(sqlite_seeded, "record", "--recipient", "a@b.example", "--reply", "x" * 100_000)
    assert_handled(done)
    assert done.returncode == 2
    assert len(done.stderr) < 2000  # the error quotes the start of the text, not all of it
    assert_seed_kept(sqlite_seeded)


def test_nul_bytes_invalid_utf8_and_a_10_mb_line_on_standard_input(sqlite_seeded: str) -> None:
    lines = [
        b"550 5.1.1 user unknown",
        b"550\x00 5.1.1 nul",
        b"\xff\xfe 421 4.7.0 try later",
        b"250 " + b"a" * (10 * 1024 * 1024),
        b"452 4.2.2 mailbox full",
    ]
    done = run_main(
        sqlite_seeded, "explain", "-", "--format", "json", stdin=b"\n".join(lines) + b"\n"
    )
    assert_handled(done)
    out = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(out) == len(lines)  # one answer per line, in order
    assert out[0]["reason"] == "user_unknown"
    assert out[-1]["reason"] == "mailbox_full"
    for answer in out:
        assert "error" in answer or answer.get("outcome")
    addresses = b"a@b.example\n\x00\x00@b.example\n\xff@b.example\n" + b"c" * 5_000_000 + b"\n"
    listed = run_main(sqlite_seeded, "sendable", "--file", "-", stdin=addresses)
    assert_handled(listed)
    assert b"a@b.example" in listed.stdout
    assert_seed_kept(sqlite_seeded)


def hostile_log(path: Path) -> Path:
    good = {"at": "2026-11-01T10:00:00Z", "recipient": "good@b.example", "message_id": "g1"}
    with path.open("wb") as f:
        f.write(json.dumps({**good, "reply": "250 2.0.0 OK"}).encode() + b"\n")
        row = {"at": "2026-11-01T10:00:01Z", "recipient": "q'uote@b.example", "message_id": SQL}
        f.write(json.dumps({**row, "reply": f"550 5.1.1 {SQL}"}).encode() + b"\n")
        f.write(b'{"at":"2026-11-01T10:00:02Z","recipient":"n\x00l@b.example","reply":"250 ok"}\n')
        f.write(b'{"at":"2026-11-01T10:00:03Z","recipient":"x\xff@b.example","reply":"250 ok"}\n')
        f.write(b'{"at":"2026-11-01T10:00:04Z","recipient":"big@b.example","reply":"250 ')
        f.write(b"a" * (10 * 1024 * 1024) + b'"}\n')
        f.write(b"{" * 100_000 + b"\n")  # nesting deep enough to break a recursive parser
        f.write(b"not json at all; DROP TABLE events;\n")
        last = {"at": "2026-11-01T10:00:05Z", "recipient": "last@b.example", "message_id": "g2"}
        f.write(json.dumps({**last, "reply": "250 2.0.0 OK"}).encode() + b"\n")
    return path


def test_hostile_log_lines_are_rejected_and_the_good_ones_recorded(
    seeded: str, tmp_path: Path
) -> None:
    log = hostile_log(tmp_path / "replies.jsonl")
    done = run_cli(seeded, "ingest", "--format", "jsonl", str(log))
    assert_handled(done)
    assert done.returncode == 1  # finished, with rejected input
    db = create_engine(seeded)
    try:
        with db.connect() as conn:
            ids = set(conn.scalars(select(Event.message_id)))
            rejected = conn.scalar(select(func.count()).select_from(RejectedInput))
    finally:
        db.dispose()
    assert {"g1", SQL, "g2", "seed@x"} <= ids
    assert rejected == 5
    assert_seed_kept(seeded)


def nested_mime(depth: int) -> bytes:
    head = "From: MAILER-DAEMON@b.example\nTo: s@sender.example\nSubject: Undelivered\n"
    head += "MIME-Version: 1.0\n"
    body = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(depth)
    )
    body += "Content-Type: text/plain\n\n550 5.1.1 <x@b.example> user unknown\n"
    body += "".join(f"--b{i}--\n" for i in reversed(range(depth)))
    return (head + body).encode()


def test_deeply_nested_mime_gets_an_answer_not_a_crash(sqlite_seeded: str, tmp_path: Path) -> None:
    message = tmp_path / "nested.eml"
    message.write_bytes(nested_mime(3000))
    explained = run_cli(sqlite_seeded, "explain", "--message", str(message), "--format", "json")
    assert_handled(explained)
    answers = [json.loads(line) for line in explained.stdout.decode().splitlines()]
    assert answers
    assert all(a["file"] == str(message) for a in answers)
    ingested = run_cli(sqlite_seeded, "ingest", "--format", "eml", str(message))
    assert_handled(ingested)
    assert_seed_kept(sqlite_seeded)


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 GiB of one endless line, about 1 MB compressed: sixteen copies of one gzip member of
    64 MiB (a gzip file may hold many members, RFC 1952 section 2.2; readers join them)."""
    path = tmp_path_factory.mktemp("bomb") / "replies.jsonl.gz"
    member = gzip.compress(b"a" * (64 << 20), compresslevel=6)
    with path.open("wb") as f:
        for _ in range(16):
            f.write(member)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["auto", "jsonl"])
def test_a_gzip_bomb_is_refused_in_bounded_time_and_memory(
    sqlite_seeded: str, gzip_bomb: Path, fmt: str, tmp_path: Path
) -> None:
    if not Path("/proc/self/status").exists():
        # Elsewhere a process's peak includes its parent's (`bench.peak_memory`).
        pytest.skip("the child's own peak memory is read from /proc (Linux)")
    assert gzip_bomb.stat().st_size < 5 * 1024 * 1024
    peak = tmp_path / "peak"
    done = run_cli(sqlite_seeded, "ingest", "--format", fmt, str(gzip_bomb), peak_file=peak)
    assert_handled(done)
    assert done.returncode in (1, 2)
    # The command's own peak, in MiB: far below the 1 GiB inflated.
    assert 0 < float(peak.read_text()) < 512
    assert_seed_kept(sqlite_seeded)


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\x01\x02\xff" * 1000,
        b'[backoff]\nfirst_retry = "30m\x00"\n',
        b"[hygiene]\nambiguous_count = \xff\xfe\n",
        b'[[rule]]\nid = "x"\ntext = "' + b"a" * (10 * 1024 * 1024) + b'"\n',
        b"a = " + b"[" * 100_000 + b"\n",
        f'[[rule]]\nid = "{SQL}"\ntext = "{SQL}"\noutcome = "{SQL}"\n'.encode(),
        b"[backoff]\nfirst_retry = 1e309\nlifetime = -5\n",
    ],
    ids=["binary", "nul", "bad-utf8", "10mb-line", "deep-nesting", "sql", "bad-numbers"],
)
def test_policy_files_with_garbage_get_a_clear_error(
    sqlite_seeded: str, tmp_path: Path, content: bytes
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_bytes(content)
    checked = run_main(sqlite_seeded, "policy", "check", str(policy))
    assert_handled(checked)
    assert checked.returncode != 0
    assert str(policy).encode() in checked.stdout + checked.stderr
    used = run_main(sqlite_seeded, "--policy", str(policy), "explain", "550 5.1.1 user unknown")
    assert_handled(used)
    assert used.returncode == 2
    assert_seed_kept(sqlite_seeded)


def test_a_database_password_never_appears_in_an_error(tmp_path: Path) -> None:
    url = "postgresql+psycopg://sender:s3cr3t-pw@127.0.0.1:1/mail"
    for args in (("status", "a@b.example"), ("report", "codes"), ("prune", "--older-than", "90d")):
        done = run_main(url, *args)
        # Nothing listens on port 1: a server out of reach, to be run again later (exit 75,
        # tests/test_store_reach.py), said as cleanly as a refusal.
        assert done.returncode == 75, done.stderr
        assert b"Traceback" not in done.stderr
        assert b"internal error" not in done.stderr
        assert b"s3cr3t-pw" not in done.stdout + done.stderr
        assert b"***" in done.stderr
