from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from importlib.util import find_spec
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Table, event, make_url, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from deliverability.errors import StoreError
from deliverability.store.bulk import (
    SMALL_INSERT,
    BulkWriter,
    time_reader,
    time_writer,
)
from deliverability.store.models import Delivery, Recipient
from deliverability.store.session import (
    DATABASE_URL_ENV,
    DEFAULT_URL,
    SQLITE_CACHE_KIB,
    SQLITE_CHECKPOINT_PAGES,
    SQLITE_WAL_LIMIT_BYTES,
    alembic_config,
    check_schema,
    create_engine,
    current_revision,
    head_revision,
    mask_url,
    open_engine,
    resolve_url,
)
from deliverability.vocabulary import DeliveryState, Reason, Standing


def _recipient(key: str, now: datetime) -> Recipient:
    return Recipient(
        address=key,
        address_key=key,
        domain=key.split("@")[1],
        standing=Standing.DELIVERED,
        reason=Reason.DELIVERED,
        standing_since=now,
        first_seen_at=now,
        last_event_at=now,
    )


def test_explicit_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "sqlite:///from-env.db")
    assert resolve_url("sqlite:///explicit.db") == "sqlite:///explicit.db"


def test_environment_url_is_used_when_none_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATABASE_URL_ENV, "sqlite:///from-env.db")
    assert resolve_url(None) == "sqlite:///from-env.db"


@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_database_url_is_an_error_not_the_sqlite_default(
    monkeypatch: pytest.MonkeyPatch, empty: str
) -> None:
    # `--database-url "$URL"` with URL unset, or the variable set from a missing secret, ran
    # on a new SQLite file in the working directory: every address looked sendable.
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    with pytest.raises(StoreError, match="the database URL given is empty"):
        resolve_url(empty)
    monkeypatch.setenv(DATABASE_URL_ENV, empty)
    with pytest.raises(StoreError, match=f"{DATABASE_URL_ENV} is set but empty"):
        resolve_url(None)


def test_default_is_a_sqlite_file_in_the_working_directory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DATABASE_URL_ENV, raising=False)
    assert resolve_url() == DEFAULT_URL == "sqlite:///deliverability.db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://mailer:s3cr3t@db.example.com:5432/deliv",
        "mysql+pymysql://mailer:s3cr3t@db.example.com/deliv",
        "not a url://mailer:s3cr3t@host",
    ],
)
def test_mask_url_never_shows_the_password(url: str) -> None:
    masked = mask_url(url)
    assert "s3cr3t" not in masked
    assert "mailer" in masked


def test_an_unknown_driver_is_a_store_error_with_the_password_masked() -> None:
    with pytest.raises(StoreError, match=r"\*\*\*") as info:
        create_engine("nosuchdb://user:s3cr3t@host/db")
    assert "s3cr3t" not in str(info.value)


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(sa_engine: Engine) -> None:
    if sa_engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas: this backend is not SQLite")
    with sa_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_sqlite_connections_never_build_an_automatic_index(sa_engine: Engine) -> None:
    # An automatic index reads a whole table first: with one, the nightly evaluation's
    # provider-group joins cost twice as much on twice the history (bench/bench_hygiene.py).
    # The query plans of small test stores do not show it, so the setting itself is checked.
    if sa_engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas: this backend is not SQLite")
    with sa_engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA automatic_index").scalar() == 0


def _pragmas(url: str, *names: str) -> list[Any]:
    """The values of SQLite pragmas on a new connection of a store opened at `url`."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [conn.exec_driver_sql(f"PRAGMA {name}").scalar() for name in names]
    finally:
        engine.dispose()


def test_sqlite_files_checkpoint_every_ten_thousand_pages_and_cut_the_log_back(
    tmp_path: Path,
) -> None:
    pages, limit = _pragmas(
        f"sqlite:///{tmp_path / 'wal.db'}", "wal_autocheckpoint", "journal_size_limit"
    )
    assert pages == SQLITE_CHECKPOINT_PAGES != 1000
    assert limit == SQLITE_WAL_LIMIT_BYTES


def test_sqlite_files_keep_a_page_cache_of_sixteen_mebibytes_per_connection(
    tmp_path: Path,
) -> None:
    # A negative cache_size is in KiB (https://www.sqlite.org/pragma.html#pragma_cache_size).
    assert _pragmas(f"sqlite:///{tmp_path / 'cache.db'}", "cache_size") == [-SQLITE_CACHE_KIB]
    assert SQLITE_CACHE_KIB == 16 * 1024


def test_an_in_memory_sqlite_store_keeps_sqlites_own_cache_size() -> None:
    # Its pages live in the cache whatever its size: a limit would change nothing.
    assert _pragmas("sqlite://", "cache_size") == [-2000]


def test_schema_is_created_on_first_use(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'first.db'}")
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_opening_an_upgraded_store_again_changes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    open_engine(url).dispose()
    engine = open_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_times_come_back_timezone_aware_in_utc(session: Session, frozen_now: datetime) -> None:
    session.add(_recipient("a@example.com", frozen_now))
    session.commit()
    session.expunge_all()
    loaded = session.scalars(select(Recipient)).one()
    assert loaded.first_seen_at == frozen_now
    assert loaded.first_seen_at.tzinfo is not None


def test_naive_datetimes_are_refused_on_the_way_in(session: Session) -> None:
    session.add(_recipient("a@example.com", datetime(2026, 1, 1, 12, 0)))
    with pytest.raises(Exception, match="naive datetime"):
        session.flush()


def test_address_key_is_unique(session: Session, frozen_now: datetime) -> None:
    session.add(_recipient("a@example.com", frozen_now))
    session.add(_recipient("a@example.com", frozen_now))
    with pytest.raises(IntegrityError):
        session.flush()


def test_foreign_keys_are_enforced(sa_engine: Engine) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None).isoformat(" ")
    with pytest.raises(IntegrityError), sa_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO deliveries (recipient_id, message_id, domain, state, attempt,"
                " first_attempt_at, last_attempt_at, reason, updated_at)"
                " VALUES (999, 'm', 'example.com', 'deferred', 1, :t, :t, 'undefined', :t)"
            ),
            {"t": now},
        )


# -- bulk writes -------------------------------------------------------------------------------

TIMES = [
    datetime(2026, 11, 2, 12, 0, tzinfo=UTC),
    datetime(2026, 11, 2, 12, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 11, 2, 13, 30, 5, 7, tzinfo=timezone(timedelta(hours=1, minutes=30))),
    # The first and the last time every backend's column holds: four-digit years, each field
    # at its widest (the SQLite text is put together from parts: `bulk._sqlite_time_text`).
    datetime(1000, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
]


@pytest.mark.parametrize("value", TIMES)
def test_bulk_time_values_are_what_utcdatetime_stores(session: Session, value: datetime) -> None:
    session.add(_recipient("a@example.com", value))
    session.commit()
    stored = session.connection().exec_driver_sql("SELECT first_seen_at FROM recipients").scalar()
    dialect = session.get_bind().dialect
    assert time_writer(dialect)(value) == stored


def _recipient_row(dialect: Any, address: str, at: datetime, **values: Any) -> tuple[Any, ...]:
    """A new recipient's row in the driver's form, its columns in `_RECIPIENT_COLUMNS` order:
    first seen, last event and standing since `at`, counters at 0, then `values`."""
    table = cast(Table, Recipient.__table__)
    row: dict[str, Any] = {c.name: None for c in table.columns if c.name != "id"}
    row.update({name: 0 for name in row if name.endswith("_count")})
    row.update(
        address=address,
        address_key=address.lower(),
        domain=address.rsplit("@", 1)[1],
        standing=Standing.RETRYING,
        reason=Reason.UNDEFINED,
        standing_since=at,
        first_seen_at=at,
        last_event_at=at,
    )
    row.update(values)
    to_db = time_writer(dialect)
    return tuple(
        to_db(v) if isinstance(v, datetime) else v.value if isinstance(v, Enum) else v
        for v in row.values()
    )


_RECIPIENT_COLUMNS = tuple(c.name for c in Recipient.__table__.columns if c.name != "id")


def test_bulk_writes_and_reads_agree_with_the_orm(sa_engine: Engine, frozen_now: datetime) -> None:
    bulk = BulkWriter(sa_engine.dialect)
    table = cast(Table, Recipient.__table__)
    to_db, from_db = time_writer(sa_engine.dialect), time_reader(sa_engine.dialect)
    row = _recipient_row(
        sa_engine.dialect,
        "A@example.com",
        frozen_now,
        standing=Standing.SUPPRESSED,
        reason=Reason.USER_UNKNOWN,
        standing_since=TIMES[2],
        first_seen_at=TIMES[1],
        bounced_count=1,
    )
    with sa_engine.begin() as conn:
        bulk.insert_rows(conn, table, _RECIPIENT_COLUMNS, [row])
        ((id_,),) = bulk.select_in(conn, table, ("id",), "address_key", ["a@example.com"])
        bulk.update_rows(
            conn, table, ("events_count", "standing_since"), [(5, to_db(frozen_now), id_)]
        )
    with Session(sa_engine) as s:
        orm = s.scalars(select(Recipient)).one()
        assert orm.standing is Standing.SUPPRESSED
        assert orm.reason is Reason.USER_UNKNOWN
        assert orm.first_seen_at == TIMES[1]
        assert orm.standing_since == frozen_now
        assert orm.events_count == 5
        assert orm.bounced_count == 1
    with sa_engine.connect() as conn:
        ((standing, first_seen, until),) = bulk.select_in(
            conn, table, ("standing", "first_seen_at", "suppressed_until"), "id", [orm.id]
        )
    assert standing == Standing.SUPPRESSED.value
    assert from_db(first_seen) == TIMES[1]
    assert until is None


def _deliveries(session: Session, now: datetime, messages: int) -> list[tuple[int, str]]:
    recipients = [_recipient(f"r{i}@example.com", now) for i in range(3)]
    session.add_all(recipients)
    session.flush()
    pairs = []
    for r in recipients:
        for m in range(messages):
            session.add(
                Delivery(
                    recipient_id=r.id,
                    message_id=f"<m{m}@list.example>",
                    domain="example.com",
                    state=DeliveryState.DELIVERED,
                    attempt=1,
                    first_attempt_at=now,
                    last_attempt_at=now,
                    reason=Reason.DELIVERED,
                    updated_at=now,
                )
            )
            pairs.append((r.id, f"<m{m}@list.example>"))
    session.commit()
    return pairs


def test_deliveries_found_by_recipient_and_message_are_exactly_the_pairs_asked_for(
    session: Session, frozen_now: datetime
) -> None:
    pairs = _deliveries(session, frozen_now, messages=4)
    asked = [pairs[0], pairs[5], pairs[11], (pairs[0][0], "<not-sent@list.example>")]
    table = cast(Table, Delivery.__table__)
    conn = session.connection()
    found = BulkWriter(conn.dialect).select_pairs(
        conn, table, ("recipient_id", "message_id"), "recipient_id", "message_id", asked
    )
    assert sorted(tuple(row) for row in found) == sorted(asked[:3])


def test_on_sqlite_deliveries_are_found_through_the_index_not_by_reading_the_table(
    tmp_path: Path, frozen_now: datetime
) -> None:
    # A row-value IN list makes SQLite scan the table, so each chunk cost as much as the history.
    engine = open_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    statements: list[tuple[str, Any]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def keep(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append((sql, params))

    table = cast(Table, Delivery.__table__)
    with Session(engine) as s:
        pairs = _deliveries(s, frozen_now, messages=2)
        conn = s.connection()
        statements.clear()
        BulkWriter(conn.dialect).select_pairs(
            conn, table, ("id",), "recipient_id", "message_id", pairs[:2]
        )
        assert statements
        for sql, params in list(statements):
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            details = " | ".join(str(row[-1]) for row in plan)
            assert "SCAN deliveries" not in details, (sql, details)
            assert "SCAN t" not in details, (sql, details)
    engine.dispose()


def test_bulk_writes_to_a_server_are_one_statement_per_chunk_not_one_per_row(
    sa_engine: Engine, frozen_now: datetime
) -> None:
    # psycopg's executemany runs one statement per row (pipelined), and so does PyMySQL's for an
    # UPDATE; an executemany INSERT is one multi-row statement only with PyMySQL. PostgreSQL's
    # INSERTs go through COPY, which SQLAlchemy's cursor events do not see.
    name = sa_engine.dialect.name
    if name == "sqlite":
        pytest.skip("SQLite runs in process: executemany is its fastest path")
    bulk = BulkWriter(sa_engine.dialect)
    table = cast(Table, Recipient.__table__)
    statements: list[tuple[str, bool]] = []

    @event.listens_for(sa_engine, "before_cursor_execute")
    def keep(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append((sql, many))

    rows = [
        _recipient_row(
            sa_engine.dialect,
            f"R{i}@example.com",
            frozen_now,
            standing=Standing.DELIVERED,
            reason=Reason.DELIVERED,
        )
        for i in range(50)
    ]
    text_ = '550 5.1.1 it\'s "quoted", {braced}, tab\tand \\ ünïcode'
    with sa_engine.begin() as conn:
        statements.clear()
        bulk.insert_rows(conn, table, _RECIPIENT_COLUMNS, rows)
        assert len(statements) == (0 if name == "postgresql" else 1)
        assert all(many for _, many in statements)
        ids = [id_ for (id_,) in bulk.select_in(conn, table, ("id",), "domain", ["example.com"])]
        statements.clear()
        bulk.update_rows(conn, table, ("events_count", "last_text"), [(7, text_, i) for i in ids])
    assert len(statements) == 1
    assert statements[0][1] is False
    with sa_engine.connect() as conn:
        again = bulk.select_in(
            conn, table, ("events_count", "last_text", "standing"), "domain", ["example.com"]
        )
    assert len(again) == 50
    assert {r[0] for r in again} == {7}
    assert {r[1] for r in again} == {text_}
    assert {r[2] for r in again} == {Standing.DELIVERED.value}


def test_a_port_that_is_not_a_number_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="the port is not a number") as info:
        create_engine("postgresql+psycopg://u:s3cr3t@127.0.0.1:notaport/x")
    assert "s3cr3t" not in str(info.value)


def test_a_password_in_the_query_string_is_masked_too() -> None:
    masked = mask_url("postgresql+psycopg://db.example/x?sslmode=require&password=s3cr3t")
    assert "s3cr3t" not in masked
    assert "sslmode=require" in masked


def test_bulk_rows_as_driver_values_are_selected_by_key_and_by_pair_and_updated_by_id(
    session: Session, frozen_now: datetime
) -> None:
    pairs = _deliveries(session, frozen_now, messages=3)
    bulk = BulkWriter(session.get_bind().dialect)
    recipients = cast(Table, Recipient.__table__)
    deliveries = cast(Table, Delivery.__table__)
    conn = session.connection()
    rows = bulk.select_in(
        conn,
        recipients,
        ("id", "address_key", "events_count"),
        "address_key",
        ["r0@example.com", "r2@example.com", "nobody@example.com"],
    )
    assert sorted((r[1], r[2]) for r in rows) == [("r0@example.com", 0), ("r2@example.com", 0)]
    bulk.update_rows(conn, recipients, ("events_count",), [(7, r[0]) for r in rows])
    asked = [pairs[1], pairs[7], (pairs[0][0], "<not-sent@list.example>")]
    found = bulk.select_pairs(
        conn,
        deliveries,
        ("recipient_id", "message_id", "state"),
        "recipient_id",
        "message_id",
        asked,
    )
    assert sorted((r[0], r[1]) for r in found) == sorted(asked[:2])
    assert {r[2] for r in found} == {DeliveryState.DELIVERED.value}
    session.commit()
    counts = dict(session.execute(select(Recipient.address_key, Recipient.events_count)).all())
    assert counts == {"r0@example.com": 7, "r1@example.com": 0, "r2@example.com": 7}


def test_bulk_tuple_inserts_store_what_the_orm_reads_back(
    session: Session, frozen_now: datetime
) -> None:
    bulk = BulkWriter(session.get_bind().dialect)
    table = cast(Table, Recipient.__table__)
    columns = (
        "address",
        "address_key",
        "domain",
        "standing",
        "reason",
        "standing_since",
        "first_seen_at",
        "last_event_at",
        "last_text",
        *("events_count", "delivered_count", "deferred_count", "bounced_count"),
        *("blocked_count", "complained_count", "expired_count"),
    )
    to_db = time_writer(session.get_bind().dialect)
    when = to_db(frozen_now)
    bulk.insert_rows(
        session.connection(),
        table,
        columns,
        [
            (
                *("Q@example.com", "q@example.com", "example.com", "suppressed", "user_unknown"),
                *(when, when, when, 'it\'s "quoted" and ünïcode'),
                *(1, 0, 0, 1, 0, 0, 0),
            )
        ],
    )
    session.commit()
    orm = session.scalars(select(Recipient)).one()
    assert orm.standing is Standing.SUPPRESSED
    assert orm.reason is Reason.USER_UNKNOWN
    assert orm.standing_since == frozen_now
    assert orm.last_text == 'it\'s "quoted" and ünïcode'
    assert (orm.events_count, orm.bounced_count) == (1, 1)
    reread = time_reader(session.get_bind().dialect)
    raw = bulk.select_in(session.connection(), table, ("last_event_at",), "id", [orm.id])
    assert reread(raw[0][0]) == frozen_now


#: The adapters' registry keys of the two types the SQLite bulk writer registers adapters for.
_NONE_AND_BOOL = ((type(None), sqlite3.PrepareProtocol), (bool, sqlite3.PrepareProtocol))


@pytest.fixture
def no_none_or_bool_adapter() -> Iterator[None]:
    """sqlite3's process-wide adapters' registry without entries for None and bool, as in a
    process that has opened no SQLite store yet; as it was again after the test."""
    before = {key: sqlite3.adapters[key] for key in _NONE_AND_BOOL if key in sqlite3.adapters}
    for key in _NONE_AND_BOOL:
        sqlite3.adapters.pop(key, None)
    yield
    for key in _NONE_AND_BOOL:
        sqlite3.adapters.pop(key, None)
    sqlite3.adapters.update(before)


@pytest.mark.usefixtures("no_none_or_bool_adapter")
def test_on_sqlite_none_and_bool_are_bound_through_registered_adapters_as_null_and_integers(
    sa_engine: Engine,
) -> None:
    if sa_engine.dialect.name != "sqlite":
        pytest.skip("sqlite3 adapters: this backend is not SQLite")
    BulkWriter(sa_engine.dialect)
    assert all(key in sqlite3.adapters for key in _NONE_AND_BOOL)
    with sa_engine.connect() as conn:
        row = conn.exec_driver_sql(
            "SELECT typeof(?), typeof(?), ?, ?, ? IS NULL", (None, True, True, False, None)
        ).one()
    assert tuple(row) == ("null", "integer", 1, 0, 1)


@pytest.mark.usefixtures("no_none_or_bool_adapter")
def test_an_adapter_the_program_registered_for_bool_is_left_as_it_is(sa_engine: Engine) -> None:
    if sa_engine.dialect.name != "sqlite":
        pytest.skip("sqlite3 adapters: this backend is not SQLite")

    def words(value: bool) -> str:
        return "yes" if value else "no"

    sqlite3.register_adapter(bool, words)
    BulkWriter(sa_engine.dialect)
    assert sqlite3.adapters[(bool, sqlite3.PrepareProtocol)] is words


@pytest.mark.parametrize("size", [1, SMALL_INSERT + 1], ids=["small", "bulk"])
def test_a_duplicate_key_in_a_bulk_insert_is_an_integrity_error_on_every_backend(
    sa_engine: Engine, frozen_now: datetime, size: int
) -> None:
    # The engine's retry judges a conflict by SQLAlchemy's wrapped error; PostgreSQL's COPY
    # path (past SMALL_INSERT rows) must raise the same one as an INSERT.
    bulk = BulkWriter(sa_engine.dialect)
    table = cast(Table, Recipient.__table__)
    rows = [_recipient_row(sa_engine.dialect, f"a{i}@example.com", frozen_now) for i in range(size)]
    with sa_engine.begin() as conn:
        bulk.insert_rows(conn, table, _RECIPIENT_COLUMNS, rows[-1:])
    with pytest.raises(IntegrityError), sa_engine.begin() as conn:
        bulk.insert_rows(conn, table, _RECIPIENT_COLUMNS, rows, returning="address_key")
    with sa_engine.connect() as conn:
        assert len(bulk.select_in(conn, table, ("id",), "domain", ["example.com"])) == 1


@pytest.mark.parametrize("size", [1, SMALL_INSERT, SMALL_INSERT + 1, 50])
def test_a_bulk_insert_returns_the_new_ids_by_a_unique_column_on_every_backend(
    sa_engine: Engine, frozen_now: datetime, size: int
) -> None:
    # Up to SMALL_INSERT rows (a record() call writes one per table) the INSERT is one statement
    # that returns the ids: PostgreSQL's COPY took two round trips and reading the ids a third.
    bulk = BulkWriter(sa_engine.dialect)
    table = cast(Table, Recipient.__table__)
    statements: list[str] = []

    @event.listens_for(sa_engine, "before_cursor_execute")
    def keep(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append(sql)

    with sa_engine.begin() as conn:
        # An earlier row, so that the new ids do not start at 1.
        first = _recipient_row(conn.dialect, "x@x.example", frozen_now)
        bulk.insert_rows(conn, table, _RECIPIENT_COLUMNS, [first])
        rows = [_recipient_row(conn.dialect, f"R{i}@example.com", frozen_now) for i in range(size)]
        statements.clear()
        ids = bulk.insert_rows(conn, table, _RECIPIENT_COLUMNS, rows, returning="address_key")
        if size <= SMALL_INSERT:
            assert len(statements) == 1, statements
            assert statements[0].startswith("INSERT INTO recipients"), statements
        stored = bulk.select_in(conn, table, ("id", "address_key"), "domain", ["example.com"])
    assert ids == {key: id_ for id_, key in stored}
    assert sorted(ids) == sorted(f"r{i}@example.com" for i in range(size))


def test_a_database_url_with_a_percent_sign_opens_and_gets_its_schema(tmp_path: Path) -> None:
    # A percent-encoded character ("%25", or a password's "%40") went into Alembic's options,
    # whose configparser interpolation refused it: every first use stopped with a ValueError.
    folder = tmp_path / "pct%dir"
    folder.mkdir()
    engine = open_engine(f"sqlite:///{folder}/x.db".replace("%", "%25"))
    try:
        assert current_revision(engine) == head_revision()
        assert check_schema(engine) == []
    finally:
        engine.dispose()


def test_the_alembic_options_never_hold_the_database_password() -> None:
    connection = SimpleNamespace(
        engine=SimpleNamespace(url=make_url("postgresql://app:s3cr%40t@db.example/mail"))
    )
    config = alembic_config(cast(Any, connection))
    shown = config.get_main_option("sqlalchemy.url") or ""
    assert "s3cr" not in shown
    assert shown == "postgresql://app:***@db.example/mail"


def test_a_database_url_with_a_nul_in_its_name_is_a_clear_error(tmp_path: Path) -> None:
    # "%00" reached the driver, whose ValueError ("embedded null byte") was an internal error.
    with pytest.raises(StoreError, match="a NUL character in the name"):
        create_engine(f"sqlite:///{tmp_path}/a%00b.db")


@pytest.mark.parametrize(
    ("url", "fix"),
    [
        # The scheme Heroku and many hosts hand out, which SQLAlchemy does not know.
        ("postgres://mailer:s3cr3t@db.example/mail", "postgresql+psycopg://"),
        # A driver deliverability does not install: name the URL that uses the one it does.
        ("postgresql+psycopg2://mailer:s3cr3t@db.example/mail", "postgresql+psycopg://"),
        ("mysql://mailer:s3cr3t@db.example/mail", "mysql+pymysql://"),
        ("mariadb://mailer:s3cr3t@db.example/mail", "mariadb+pymysql://"),
        ("nosuchdb://mailer:s3cr3t@db.example/mail", "postgresql+psycopg://"),
    ],
)
def test_a_database_url_a_new_user_gets_wrong_names_the_url_to_write(url: str, fix: str) -> None:
    driver = {"postgresql": "psycopg2", "mysql": "MySQLdb", "mariadb": "MySQLdb"}.get(
        url.split("+")[0].split(":")[0]
    )
    if url.startswith(("postgresql+psycopg2", "mysql:", "mariadb:")) and find_spec(str(driver)):
        pytest.skip(f"{driver} is installed here, so the URL works")
    with pytest.raises(StoreError) as info:
        create_engine(url)
    message = str(info.value)
    assert "s3cr3t" not in message
    assert f"(fix: write {fix}" in message


def test_a_sqlite_file_in_a_folder_that_does_not_exist_names_the_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(StoreError) as info:
        create_engine(f"sqlite:///{missing}/x.db")
    assert f"the folder {str(missing)!r} does not exist" in str(info.value)
    assert not missing.exists()


def test_a_sqlite_url_naming_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a folder, not a database file"):
        create_engine(f"sqlite:///{tmp_path}")


def test_a_store_made_by_a_newer_version_is_a_clear_error_not_an_internal_one(
    sa_engine: Engine, db_url: str
) -> None:
    with sa_engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999_future'"))
    with pytest.raises(StoreError) as caught:
        open_engine(db_url)
    message = str(caught.value)
    assert (
        "is at revision 0999_future, which this version of deliverability does not know" in message
    )
    assert f"(its newest is {head_revision()}): a newer version made it" in message
    assert current_revision(sa_engine) == "0999_future"  # left as it was
