"""PostgreSQL's planner statistics, refreshed by the engine while a store grows fast
(deliverability/store/statistics.py): a new store is analysed once its first thousand events
are in, not again for a few more, and never on SQLite or MariaDB."""

from __future__ import annotations

import logging
from typing import Any

import backends
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from deliverability.engine import Engine
from deliverability.store import statistics
from deliverability.store.statistics import CHECK_EVERY, GROWTH, MIN_EVENTS, Statistics, stale

POSTGRESQL = pytest.mark.parametrize(
    "backend", backends.backend_params(["postgresql"]), indirect=True
)


def _events(n: int, first: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "recipient": f"user{i % 300}@example.com",
            "reply": "250 2.0.0 OK" if i % 3 else "452 4.2.2 Mailbox full",
            "message_id": f"<m{i}@list.example>",
            "at": "2026-11-02T11:00:00+00:00",
        }
        for i in range(first, first + n)
    ]


@pytest.mark.parametrize(
    ("new_events", "counted", "expected"),
    [
        (MIN_EVENTS - 1, -1, False),
        (MIN_EVENTS, -1, True),
        (MIN_EVENTS, 0, True),
        (int(GROWTH * 100_000) - 1, 100_000, False),
        (int(GROWTH * 100_000), 100_000, True),
        (MIN_EVENTS - 1, 10, False),
    ],
)
def test_statistics_are_stale_from_a_thousand_new_events_and_half_of_the_last_count(
    new_events: int, counted: float, expected: bool
) -> None:
    assert stale(new_events, counted) is expected


def _counted(engine: Engine) -> float:
    """What the last ANALYZE counted of `events` (pg_class.reltuples)."""
    with engine.db.connect() as conn:
        return float(
            conn.execute(
                text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('events')")
            ).scalar_one()
        )


@POSTGRESQL
def test_a_store_on_postgresql_is_analysed_each_time_its_events_grew_by_half(
    db_url: str, frozen_now: Any
) -> None:
    # One chunk a call, so that each call is one look at the statistics.
    with Engine(db_url, clock=lambda: frozen_now, chunk_size=100_000) as engine:
        # The test database is emptied, not made anew, between tests: start from a count of 0.
        with engine.db.begin() as conn:
            conn.execute(text("ANALYZE events"))
        engine.record_many(_events(MIN_EVENTS - 1))
        assert engine._statistics.refreshes == 0
        engine.record_many(_events(1, first=MIN_EVENTS - 1))
        assert engine._statistics.refreshes == 1
        assert _counted(engine) == MIN_EVENTS

        base = 4 * MIN_EVENTS
        engine.record_many(_events(base - MIN_EVENTS, first=MIN_EVENTS))
        assert engine._statistics.refreshes == 2
        assert _counted(engine) == base
        # Checked, but a quarter more is not yet half more.
        engine.record_many(_events(int(base * GROWTH / 2), first=base))
        assert engine._statistics.refreshes == 2
        engine.record_many(_events(int(base * GROWTH / 2), first=base + int(base * GROWTH / 2)))
        assert engine._statistics.refreshes == 3
        assert _counted(engine) == base * (1 + GROWTH)


@pytest.mark.parametrize("backend", backends.backend_params(["sqlite", "mariadb"]), indirect=True)
def test_no_statistics_are_gathered_on_sqlite_or_mariadb(db_url: str, frozen_now: Any) -> None:
    with Engine(db_url, clock=lambda: frozen_now) as engine:
        assert engine._statistics.enabled is False
        result = engine.record_many(_events(2 * MIN_EVENTS))
        assert result.recorded == 2 * MIN_EVENTS
        assert engine._statistics.refreshes == 0
        if engine.db.dialect.name == "sqlite":
            with engine.db.connect() as conn:
                stat_tables = conn.execute(
                    text("SELECT name FROM sqlite_master WHERE name LIKE 'sqlite_stat%'")
                ).all()
            assert stat_tables == []


@POSTGRESQL
def test_a_refresh_that_fails_is_logged_and_the_recorded_events_stand(
    db_url: str, frozen_now: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(self: Statistics) -> None:
        raise OperationalError("ANALYZE events", {}, Exception("canceling statement"))

    monkeypatch.setattr(Statistics, "_refresh", refuse)
    with (
        caplog.at_level(logging.WARNING, logger=statistics.__name__),
        Engine(db_url, clock=lambda: frozen_now) as engine,
    ):
        result = engine.record_many(_events(MIN_EVENTS))
        assert result.recorded == MIN_EVENTS
        assert engine.status("user1@example.com").counters["events_count"] > 0
    assert "could not refresh the planner statistics" in caplog.text
    assert "canceling statement" in caplog.text


@POSTGRESQL
def test_a_writer_finding_another_one_analysing_skips_its_turn(
    db_url: str, frozen_now: Any
) -> None:
    with Engine(db_url, clock=lambda: frozen_now) as engine, engine.db.connect() as other:
        other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": statistics._LOCK_KEY})
        engine.record_many(_events(MIN_EVENTS))
        assert engine._statistics.refreshes == 0
        other.rollback()
        engine.record_many(_events(CHECK_EVERY, first=MIN_EVENTS))
        assert engine._statistics.refreshes == 1
