"""`deliverability nightly --dry-run` on every backend: the counts of the real run, and a store
left exactly as it was (issue 5: "reports what would change and writes nothing")."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from deliverability.cli import cli
from deliverability.engine import Engine as DeliverabilityEngine
from deliverability.errors import StoreError
from deliverability.nightly import rolled_back, run_nightly
from deliverability.store.models import Base, IngestSource
from deliverability.store.session import create_engine

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SEED_NOW = "2026-11-20T12:00:00Z"
NIGHT_NOW = "2026-11-28T06:00:00Z"


def _nightly(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--database-url", db_url, "nightly", *args])


def _state(db_url: str) -> dict[str, Any]:
    """Row counts of every table, and the ingest bookkeeping row by row."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            counts = {
                table.name: conn.scalar(select(func.count()).select_from(table))
                for table in Base.metadata.sorted_tables
            }
            sources = sorted(
                (row.identity, row.path, row.format, row.offset, row.items)
                for row in conn.execute(select(IngestSource.__table__))
            )
    finally:
        engine.dispose()
    return {"counts": counts, "sources": sources}


def _seeded_store(db_url: str, tmp_path: Path) -> Path:
    """A store with history: a deferral a week before the night (it expires then), and the
    first part of the Postfix log (the night's run resumes it)."""
    seed = tmp_path / "seed"
    seed.mkdir()
    (seed / "earlier.jsonl").write_text(
        json.dumps(
            {
                "at": "2026-11-20T11:00:00Z",
                "recipient": "slow@example.net",
                "message_id": "<early-1@news.example.org>",
                "reply": "451 4.3.0 Temporary local problem, try later",
            }
        )
        + "\n"
    )
    lines = (EXAMPLES / "postfix-mail.log").read_text().splitlines(keepends=True)
    log = tmp_path / "night" / "postfix-mail.log"
    log.parent.mkdir()
    log.write_text("".join(lines[: len(lines) // 2]))
    first = _nightly(db_url, str(seed), str(log), "--now", SEED_NOW)
    assert first.exit_code == 0, first.output
    # Overnight the log grew, and the mailer log and the bounces arrived.
    log.write_text("".join(lines))
    for name in ("mailer-replies.jsonl", "bounces.mbox"):
        shutil.copy(EXAMPLES / name, log.parent / name)
    return log.parent


def test_a_dry_run_reports_the_counts_of_the_real_run_and_leaves_every_table_as_it_was(
    db_url: str, tmp_path: Path
) -> None:
    night = _seeded_store(db_url, tmp_path)
    before = _state(db_url)

    dry = _nightly(db_url, str(night), "--dry-run", "--now", NIGHT_NOW, "--output", "json")
    assert dry.exit_code == 0, dry.output
    assert _state(db_url) == before

    real = _nightly(db_url, str(night), "--now", NIGHT_NOW, "--output", "json")
    assert real.exit_code == 0, real.output
    dry_summary, real_summary = json.loads(dry.stdout), json.loads(real.stdout)
    assert dry_summary.pop("dry_run") is True
    assert real_summary.pop("dry_run") is False
    assert dry_summary == real_summary
    # The run had something to show in every part of the summary.
    assert real_summary["recorded"] > 0
    assert real_summary["expired"] >= 1
    assert any(s["note"].startswith("resumed at byte") for s in real_summary["sources"])
    assert sum(real_summary["actions"].values()) > 0
    assert _state(db_url) != before


def test_a_second_dry_run_after_the_real_run_finds_nothing_new(db_url: str, tmp_path: Path) -> None:
    _nightly(db_url, str(EXAMPLES), "--now", NIGHT_NOW)
    before = _state(db_url)
    dry = _nightly(db_url, str(EXAMPLES), "--dry-run", "--now", NIGHT_NOW, "--output", "json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["recorded"] == 0
    assert _state(db_url) == before


def test_a_dry_run_that_fails_midway_still_writes_nothing(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite dry runs run on a copy of the file (covered above)")
    night = _seeded_store(db_url, tmp_path)
    before = _state(db_url)

    def stop(path: str, done: int) -> None:
        raise RuntimeError("stopped")

    def dry_run_that_stops(engine: DeliverabilityEngine) -> None:
        with rolled_back(engine):
            engine.record("x@example.com", "550 5.1.1 User unknown", message_id="m@x")
            run_nightly(engine, [night], now=datetime(2026, 11, 28, 6, tzinfo=UTC), progress=stop)

    with DeliverabilityEngine(db_url) as engine:
        with pytest.raises(RuntimeError, match="stopped"):
            dry_run_that_stops(engine)
        # The engine is back on its own connections afterwards.
        assert engine.db.dialect.name != "sqlite"
        assert engine.status("x@example.com").state.value != "bounced"
    assert _state(db_url) == before


def test_rolled_back_refuses_sqlite_whose_dry_runs_use_a_copy(tmp_path: Path) -> None:
    with (
        DeliverabilityEngine(f"sqlite:///{tmp_path / 'store.db'}") as engine,
        pytest.raises(StoreError, match="copy"),
        rolled_back(engine),
    ):
        pass


@pytest.mark.empty_database
def test_a_dry_run_on_a_server_store_without_the_schema_refuses_and_creates_nothing(
    db_url: str,
) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("a SQLite dry run runs on a copy, which it may upgrade")
    result = _nightly(db_url, str(EXAMPLES), "--dry-run", "--now", NIGHT_NOW)
    assert result.exit_code == 2
    assert "db upgrade" in result.output
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            assert not conn.dialect.has_table(conn, "events")
    finally:
        engine.dispose()
