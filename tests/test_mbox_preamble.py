"""Bytes before the first "From " line of an mbox belong to no message: they are rejected input
(source, position, reason), counted, and the messages after them are read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from deliverability.engine import Engine as DeliverabilityEngine
from deliverability.errors import IngestError
from deliverability.ingest.files import detect_format
from deliverability.ingest.messages import explain_message_file, iter_mbox
from deliverability.nightly import run_nightly
from deliverability.store.models import RejectedInput

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
PREAMBLE = b"Exported by MailTool 3.2\nmailbox: bounces\n\n"


@pytest.fixture
def engine(db_url: str) -> Iterator[DeliverabilityEngine]:
    eng = DeliverabilityEngine(db_url, clock=lambda: NOW)
    yield eng
    eng.close()


def _mbox(tmp_path: Path, head: bytes) -> Path:
    path = tmp_path / "bounces.mbox"
    path.write_bytes(head + (EXAMPLES / "bounces.mbox").read_bytes())
    return path


def test_iter_mbox_reports_the_bytes_before_the_first_from_line(tmp_path: Path) -> None:
    seen: list[tuple[int, bytes, bool]] = []
    path = _mbox(tmp_path, PREAMBLE)
    keys = [key for key, _ in iter_mbox(path, preamble=lambda *a: seen.append(a))]
    assert seen == [(len(PREAMBLE), PREAMBLE, True)]
    assert keys[0] == str(len(PREAMBLE))
    assert len(keys) == len(list(iter_mbox(EXAMPLES / "bounces.mbox")))


def test_iter_mbox_reports_nothing_for_an_mbox_that_starts_with_a_from_line() -> None:
    seen: list[tuple[int, bytes, bool]] = []
    list(iter_mbox(EXAMPLES / "bounces.mbox", preamble=lambda *a: seen.append(a)))
    assert seen == []


def test_bytes_before_the_first_from_line_are_rejected_and_the_messages_after_them_read(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    with DeliverabilityEngine(f"sqlite:///{tmp_path / 'clean.db'}", clock=lambda: NOW) as other:
        clean = run_nightly(other, [EXAMPLES / "bounces.mbox"], now=NOW)
    mbox = _mbox(tmp_path, PREAMBLE)
    summary = run_nightly(engine, [mbox], now=NOW, fmt="mbox")
    assert (summary.recorded, summary.by_outcome) == (clean.recorded, clean.by_outcome)
    assert [(r.source, r.position) for r in summary.rejected] == [(str(mbox), "byte 0")]
    assert "43 bytes before the first" in summary.rejected[0].error
    assert summary.sources[0].rejected == 1
    with Session(engine.db) as s:
        row = s.scalars(select(RejectedInput)).one()
    assert (row.source, row.position) == (str(mbox), "byte 0")
    assert row.raw == PREAMBLE.decode()


def test_an_mbox_with_a_preamble_records_the_same_events_as_without_it(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    summary = run_nightly(engine, [_mbox(tmp_path, PREAMBLE)], now=NOW, fmt="mbox")
    assert summary.rejected_count == 1
    assert summary.recorded > 5
    again = run_nightly(engine, [_mbox(tmp_path, PREAMBLE)], now=NOW, fmt="mbox")
    assert again.recorded == 0
    with Session(engine.db) as s:
        assert len(s.scalars(select(RejectedInput)).all()) == 1


def test_blank_lines_before_the_first_from_line_lose_nothing_and_are_not_rejected(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    summary = run_nightly(engine, [_mbox(tmp_path, b"\n\r\n\n")], now=NOW)
    assert summary.sources[0].format == "mbox"
    assert summary.rejected_count == 0
    assert summary.recorded > 5


def test_with_strict_a_preamble_stops_the_run(engine: DeliverabilityEngine, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="before the first"):
        run_nightly(engine, [_mbox(tmp_path, PREAMBLE)], now=NOW, fmt="mbox", strict=True)


def test_an_mbox_with_a_preamble_is_detected_as_an_mbox_without_naming_the_format(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    mbox = _mbox(tmp_path, PREAMBLE)
    summary = run_nightly(engine, [mbox], now=NOW)
    assert summary.sources[0].format == "mbox"
    assert [(r.source, r.position) for r in summary.rejected] == [(str(mbox), "byte 0")]
    assert summary.recorded > 5


def test_a_text_that_merely_mentions_from_is_not_taken_for_an_mbox(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"Meeting notes\nFrom the team: ship it\nFrom now on, Fridays\n")
    with pytest.raises(IngestError, match="cannot tell the format"):
        detect_format(path)


def test_explain_message_shows_a_preamble_as_an_error_row_and_explains_every_message(
    tmp_path: Path,
) -> None:
    path = _mbox(tmp_path, PREAMBLE)
    rows = explain_message_file(path)
    clean = explain_message_file(EXAMPLES / "bounces.mbox")
    assert rows[0]["message"] == "byte 0"
    assert rows[0]["recipient"] is None
    assert "before the first" in rows[0]["error"]
    assert [r["recipient"] for r in rows[1:]] == [r["recipient"] for r in clean]
