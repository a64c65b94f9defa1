"""The sender's Engine inside a real sender's process: connections the database server closed,
a database that is down, workers forked after the Engine was opened, and threads sharing it."""

from __future__ import annotations

from collections.abc import Iterator

import backends
import pytest
from conftest import FakeClock
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from deliverability.engine import Engine
from deliverability.policy import load_policy

POLICY = load_policy()
SERVER_BACKENDS = backends.backend_params(backends.SERVERS)


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    with Engine(db_url, policy=POLICY, clock=clock) as e:
        yield e


def _end_the_engines_sessions(url: str) -> int:
    """Close, from the server's side, every other session on the test's database: what a
    restart, a failover or MariaDB's wait_timeout does to the connections a pool holds."""
    admin = sa_create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                ended = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).all()
                return len(ended)
            ids = list(
                conn.execute(
                    text(
                        "SELECT id FROM information_schema.processlist"
                        " WHERE db = DATABASE() AND id <> CONNECTION_ID()"
                    )
                ).scalars()
            )
            for thread_id in ids:
                conn.execute(text(f"KILL CONNECTION {int(thread_id)}"))
            return len(ids)
    finally:
        admin.dispose()


# -- connections the server closed ------------------------------------------------------------


@pytest.mark.parametrize("backend", SERVER_BACKENDS)
def test_every_call_after_the_server_closed_the_pooled_connections_succeeds(
    engine: Engine, db_url: str
) -> None:
    # The pool holds three connections, as after a busy moment of a threaded sender.
    held = [engine.db.connect() for _ in range(3)]
    for conn in held:
        conn.exec_driver_sql("SELECT 1")
        conn.close()
    engine.record("a@example.com", "451 4.3.0 try later", message_id="m1", attempt=1)
    assert _end_the_engines_sessions(db_url) >= 3
    # Each of these got a connection the server had closed ("terminating connection due to
    # administrator command", "Lost connection to MySQL server during query") and failed.
    assert engine.is_sendable("a@example.com")
    decision = engine.record("a@example.com", "250 2.0.0 OK", message_id="m1", attempt=2)
    assert decision.delivery_state.value == "delivered"
    assert _end_the_engines_sessions(db_url) >= 1
    assert engine.filter_sendable(["a@example.com", "b@example.com"]) == [
        "a@example.com",
        "b@example.com",
    ]
    assert _end_the_engines_sessions(db_url) >= 1
    assert len(engine.status("a@example.com").history) == 2
