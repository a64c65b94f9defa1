"""Shared fixtures: a fresh store per test, a frozen time and a fake clock.

The database backend is chosen in one place, `BACKENDS`: each entry makes a URL for a test. SQLite
(a file in the test's tmp_path) is the default; server backends are added there (issue 7).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import backends
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from deliverability.store.models import Base
from deliverability.store.session import create_engine, upgrade_schema

#: A fixed "now" for tests: a Monday, noon UTC.
FROZEN_NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)


def _sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'deliverability.db'}"


#: Backend name -> how to make a fresh, empty database URL for one test. The server backends
#: (PostgreSQL, MariaDB) come from tests/backends.py, which skips them when unreachable, or fails
#: when DELIVERABILITY_REQUIRE_BACKENDS names them.
BACKENDS: dict[str, Callable[[Path], str]] = {
    "sqlite": _sqlite_url,
    **{name: functools.partial(backends.fresh_url, name) for name in backends.SERVERS},
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked slow first (in their own order, then the rest in theirs): started early,
    they run while the other xdist worker gets through the short ones, instead of keeping one
    worker busy alone at the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(params=backends.backend_params(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test; every store test runs once per entry of BACKENDS."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A URL to a store with no data in it, for one test.

    At the latest revision with no rows: on SQLite a copy of a file migrated once per test
    process; on a server a database migrated once per test process whose tables are emptied
    between tests (running every migration per test made the suite too slow for CI). A test
    marked ``empty_database`` gets a database with no schema at all (on SQLite, no file).
    """
    if request.node.get_closest_marker("empty_database") is None:
        return backends.migrated_url(backend, tmp_path)
    return BACKENDS[backend](tmp_path)


@pytest.fixture
def sa_engine(db_url: str) -> Iterator[Engine]:
    """An Engine on a fresh database with the schema upgraded to head by the migrations."""
    engine = create_engine(db_url)
    upgrade_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(sa_engine: Engine) -> Iterator[Session]:
    """A Session on the fresh database; whatever is left uncommitted is rolled back."""
    with Session(sa_engine, expire_on_commit=False) as s:
        yield s
        s.rollback()


@pytest.fixture
def frozen_now() -> datetime:
    """A fixed, timezone-aware UTC time: 2026-11-02T12:00:00Z."""
    return FROZEN_NOW


class FakeClock:
    """A clock for tests: call it for the time; `advance` or `set` it explicitly."""

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware time")
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


@pytest.fixture
def clock(frozen_now: datetime) -> FakeClock:
    """A mutable fake clock starting at `frozen_now`."""
    return FakeClock(frozen_now)


def dump_store(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the models, in primary-key order: what a test compares to
    say that a call changed nothing."""
    db = create_engine(url)
    try:
        with db.connect() as conn:
            return {
                table.name: [
                    tuple(row)
                    for row in conn.execute(select(table).order_by(*table.primary_key.columns))
                ]
                for table in Base.metadata.sorted_tables
            }
    finally:
        db.dispose()
