"""The nightly job and a log that is still being written: a half-written last line waits."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deliverability.cli import cli
from deliverability.engine import Engine as DeliverabilityEngine
from deliverability.nightly import run_nightly
from deliverability.store.models import Event, RejectedInput

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> DeliverabilityEngine:
    eng = DeliverabilityEngine(db_url, clock=lambda: NOW)
    yield eng
    eng.close()


def _jsonl(n: int) -> str:
    line = {
        "at": f"2026-11-27T22:00:{n:02d}Z",
        "recipient": f"user{n}@example.com",
        "message_id": f"m{n}@lists.example.org",
        "reply": "250 2.0.0 OK",
    }
    return json.dumps(line) + "\n"


def _postfix(n: int) -> str:
    queue_id = f"{n + 1:010X}"
    return (
        f"Nov 28 02:00:{n:02d} mx1 postfix/smtp[8244]: {queue_id}: to=<user{n}@example.com>, "
        "relay=mx.example.com[192.0.2.10]:25, delay=1.1, delays=0.9/0.03/0.07/0.1, dsn=2.0.0, "
        "status=sent (250 2.0.0 OK)\n"
    )


def _counts(engine: DeliverabilityEngine) -> tuple[int, int]:
    with Session(engine.db) as s:
        events = s.scalar(select(func.count(Event.id))) or 0
        rejected = s.scalar(select(func.count(RejectedInput.id))) or 0
    return events, rejected


@pytest.mark.parametrize("line", [_jsonl, _postfix], ids=["jsonl", "postfix"])
def test_a_half_written_last_line_is_left_for_the_next_run_and_recorded_once_completed(
    engine: DeliverabilityEngine, tmp_path: Path, line: Callable[[int], str]
) -> None:
    make = line
    log = tmp_path / "mail.log"
    whole = make(0) + make(1)
    last = make(2)
    cut = len(last) // 2
    log.write_text(whole + last[:cut])
    first = run_nightly(engine, [log], now=NOW)
    assert first.rejected_count == 0
    assert first.recorded == 2
    assert f"an incomplete last line at byte {len(whole)} is left for the next run" in (
        first.sources[0].note
    )
    with log.open("a") as f:
        f.write(last[cut:])
    second = run_nightly(engine, [log], now=NOW)
    assert second.rejected_count == 0
    assert second.recorded == 1
    assert "incomplete" not in second.sources[0].note
    assert _counts(engine) == (3, 0)


def test_a_gzip_log_is_complete_so_its_last_line_without_newline_is_read(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    log = tmp_path / "replies.jsonl.gz"
    log.write_bytes(gzip.compress((_jsonl(0) + _jsonl(1).rstrip("\n")).encode()))
    summary = run_nightly(engine, [log], now=NOW)
    assert summary.recorded == 2
    assert summary.rejected_count == 0
    assert "incomplete" not in summary.sources[0].note


def test_a_log_read_with_the_wrong_format_is_read_from_the_start_with_the_right_one(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(_postfix(0) + _postfix(1))
    wrong = run_nightly(engine, [log], now=NOW, fmt="jsonl")
    assert wrong.recorded == 0
    assert wrong.rejected_count == 2
    right = run_nightly(engine, [log], now=NOW, fmt="postfix")
    assert right.recorded == 2
    assert "read from the start" in right.sources[0].note
    assert "jsonl" in right.sources[0].note
    again = run_nightly(engine, [log], now=NOW, fmt="postfix")
    assert again.sources[0].items == 0
    assert "read from the start" not in again.sources[0].note


def test_a_truncated_gzip_log_is_detected_and_its_lines_before_the_cut_are_recorded(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    data = gzip.compress("".join(_postfix(n) for n in range(60)).encode())
    log = tmp_path / "mail.log.1.gz"
    log.write_bytes(data[: len(data) // 2])
    summary = run_nightly(engine, [log], now=NOW)
    assert summary.sources[0].format == "postfix"
    assert summary.recorded > 0
    assert summary.rejected_count == 1
    assert "truncated" in summary.rejected[0].error


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_nightly_over_the_folder_of_its_sqlite_store_skips_the_store_files(
    tmp_path: Path, dry_run: bool
) -> None:
    store = tmp_path / "deliverability.db"
    url = f"sqlite:///{store}"
    with DeliverabilityEngine(url, clock=lambda: NOW):
        pass  # creates the store file
    for suffix in ("-wal", "-shm", "-journal"):
        (tmp_path / f"deliverability.db{suffix}").write_bytes(b"\x00\x01binary\x00" * 50)
    (tmp_path / "replies.jsonl").write_text(_jsonl(0))
    args = ["--database-url", url, "nightly", str(tmp_path), "--now", "2026-11-28T06:00:00Z"]
    result = CliRunner().invoke(cli, [*args, "--dry-run"] if dry_run else args)
    assert result.exit_code == 0, result.output
    assert "1 events recorded" in result.output
    assert "deliverability.db" not in result.output
