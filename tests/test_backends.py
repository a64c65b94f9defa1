"""The backend matrix itself, and what each backend must store faithfully.

tests/test_migrations.py walks the migrations down and up and runs `alembic check` through the API
on every backend (its `db_url` is parametrised by tests/backends.py); here the `alembic` command of
a checkout does the same against each server, and the values that differ most between backends
(4-byte UTF-8, microseconds, JSON, the longest address, accents in keys) make the round trip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import backends
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from deliverability.errors import StoreError
from deliverability.store.models import ADDRESS_LENGTH, Action, Bookmark, Recipient
from deliverability.store.session import create_engine
from deliverability.vocabulary import ActionKind, ActionScope, ActionStatus, Reason, Standing

#: These tests walk migrations from an empty database.
pytestmark = pytest.mark.empty_database

REPO = Path(__file__).resolve().parents[1]


def test_an_unreachable_server_skips_its_tests_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(backends, "_servers", {})
    monkeypatch.setenv(backends.POSTGRESQL.url_env, "postgresql+psycopg://u:pw@127.0.0.1:1/x")
    monkeypatch.delenv(backends.REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception) as caught:
        backends.fresh_url("postgresql", tmp_path)
    assert "postgresql backend unavailable: cannot reach" in str(caught.value)
    assert "pw@" not in str(caught.value)


def test_an_unreachable_server_that_is_required_fails_instead_of_skipping(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(backends, "_servers", {})
    monkeypatch.setenv(backends.MARIADB.url_env, "mysql+pymysql://root@127.0.0.1:1/x")
    monkeypatch.setenv(backends.REQUIRE_ENV, "postgresql, MariaDB")
    with pytest.raises(pytest.fail.Exception) as caught:
        backends.fresh_url("mariadb", tmp_path)
    assert f"required by {backends.REQUIRE_ENV}" in str(caught.value)


def test_server_backends_carry_the_backend_mark_and_sqlite_does_not() -> None:
    marked = {p.values[0]: [m.name for m in p.marks] for p in backends.backend_params()}
    assert marked == {"sqlite": [], "postgresql": ["backend"], "mariadb": ["backend"]}


def test_every_test_gets_an_empty_database(db_url: str, sa_engine: Engine) -> None:
    # sa_engine migrated db_url; a later test on the same server database starts empty again,
    # which the next test checks by finding no bookmark even though this one leaves one behind.
    with Session(sa_engine) as s, s.begin():
        assert s.scalars(select(Bookmark)).all() == []
        s.add(Bookmark(name="left-behind", value="x", updated_at=datetime.now(UTC)))


def test_every_test_gets_an_empty_database_again(db_url: str, sa_engine: Engine) -> None:
    with Session(sa_engine) as s:
        assert s.scalars(select(Bookmark)).all() == []


def test_the_alembic_command_of_a_checkout_upgrades_checks_and_downgrades(db_url: str) -> None:
    env = {**os.environ, "DELIVERABILITY_DATABASE_URL": db_url}

    def alembic(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "alembic", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    for step in (("upgrade", "head"), ("check",), ("downgrade", "base"), ("upgrade", "head")):
        done = alembic(*step)
        assert done.returncode == 0, f"alembic {' '.join(step)}:\n{done.stdout}\n{done.stderr}"
    assert "No new upgrade operations detected" in alembic("check").stdout


def make_recipient(address: str, key: str, now: datetime) -> Recipient:
    return Recipient(
        address=address,
        address_key=key,
        domain=key.rsplit("@", 1)[1],
        standing=Standing.DELIVERED,
        standing_since=now,
        first_seen_at=now,
        last_event_at=now,
    )


def test_four_byte_utf8_microseconds_and_long_addresses_round_trip(session: Session) -> None:
    at = datetime(2026, 11, 2, 12, 0, 0, 123456, tzinfo=UTC)
    local = "ü" * 32 + "😀" * 32  # 64 characters, the RFC 5321 limit of a local part
    domain = ("d" * 63 + ".") * 3 + "d" * 61  # 253 characters
    longest = f"{local}@{domain}"
    assert len(longest) <= ADDRESS_LENGTH
    session.add(make_recipient(longest, longest, at))
    session.add(make_recipient("a@b.example", "a@b.example", at + timedelta(microseconds=1)))
    session.commit()
    session.expunge_all()
    stored = session.scalars(select(Recipient).order_by(Recipient.first_seen_at)).all()
    assert [r.address_key for r in stored] == [longest, "a@b.example"]
    assert stored[0].first_seen_at == at
    assert stored[1].first_seen_at - stored[0].first_seen_at == timedelta(microseconds=1)


def test_action_evidence_json_round_trips(session: Session, frozen_now: datetime) -> None:
    evidence = {"events": [1, 2, 3], "rule": "hard_bounce", "window_days": 30, "text": "naïve 😀"}
    session.add(
        Action(
            kind=ActionKind.SUPPRESS,
            scope=ActionScope.ADDRESS,
            target="a@b.example",
            status=ActionStatus.OPEN,
            open_key="suppress:address:a@b.example",
            reason=Reason.USER_UNKNOWN,
            rule="hard_bounce",
            evidence=evidence,
            created_at=frozen_now,
            updated_at=frozen_now,
        )
    )
    session.commit()
    session.expunge_all()
    assert session.scalars(select(Action.evidence)).one() == evidence


@pytest.mark.parametrize(
    ("first", "second"),
    [("josé@b.example", "jose@b.example"), ("müller@b.example", "muller@b.example")],
)
def test_keys_that_differ_only_by_an_accent_are_different_recipients(
    session: Session, frozen_now: datetime, first: str, second: str
) -> None:
    """MariaDB's usual default collation (utf8mb4_general_ci) calls these equal and refuses the
    second row as a duplicate; keys must compare byte for byte on every backend."""
    session.add(make_recipient(first, first, frozen_now))
    session.add(make_recipient(second, second, frozen_now))
    session.commit()
    assert session.scalar(select(Recipient.id).where(Recipient.address_key == second)) is not None
    keys = set(session.scalars(select(Recipient.address_key)))
    assert keys == {first, second}


def test_mariadb_sessions_run_at_read_committed(sa_engine: Engine) -> None:
    """REPEATABLE READ's gap locks make concurrent writers of new recipients deadlock again and
    again (tests/test_many_writers.py); every backend runs at READ COMMITTED."""
    if sa_engine.dialect.name not in ("mysql", "mariadb"):
        pytest.skip("MariaDB setting")
    with sa_engine.connect() as conn:
        level = conn.exec_driver_sql("SELECT @@tx_isolation").scalar_one()
    assert level == "READ-COMMITTED"


def test_pool_size_and_max_overflow_come_from_the_url(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("server backends only")
    sep = "&" if "?" in db_url else "?"
    engine = create_engine(f"{db_url}{sep}pool_size=2&max_overflow=1")
    try:
        assert engine.pool.size() == 2  # type: ignore[attr-defined]
        assert engine.pool._max_overflow == 1  # type: ignore[attr-defined]
        assert "pool_size" not in engine.url.query
    finally:
        engine.dispose()


@pytest.mark.parametrize(("setting", "expected"), [("none", None), ("0", 0), ("3", 3)])
def test_prepare_threshold_in_a_postgresql_url_reaches_psycopg(
    db_url: str, setting: str, expected: int | None
) -> None:
    """``?prepare_threshold=none``: no server-side prepared statements, as a transaction-mode
    pooler such as PgBouncer needs."""
    if not db_url.startswith("postgresql"):
        pytest.skip("psycopg setting")
    engine = create_engine(f"{db_url}?prepare_threshold={setting}")
    try:
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection.prepare_threshold == expected  # type: ignore[union-attr]
    finally:
        engine.dispose()


def test_a_bad_pool_setting_is_a_store_error_naming_it() -> None:
    with pytest.raises(StoreError, match="pool_size must be a whole number"):
        create_engine("postgresql+psycopg://u:secret@127.0.0.1:1/x?pool_size=many")
