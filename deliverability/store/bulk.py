"""Bulk writes and reads for the engine's chunk writer: plain SQL compiled once per dialect.

SQLAlchemy's per-row parameter processing costs more than the database's own work when a chunk
writes thousands of small rows. `BulkWriter` takes rows as tuples already in the driver's form
(the chunk writer keeps what it loaded as the driver gave it and converts only what it computes,
times with `time_writer`) and hands them to the fastest path of each backend.
`tests/test_store.py` checks that `time_writer` stores exactly what `UTCDateTime` stores.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.exc import DBAPIError

__all__ = ["SMALL_INSERT", "BulkWriter", "time_reader", "time_writer"]

#: Up to this many rows, `BulkWriter.insert_rows` writes one INSERT of their VALUES: one round
#: trip, where PostgreSQL's COPY takes two (the COPY, then its data) and reading the new ids
#: back a third. Past about 5 rows PostgreSQL takes a longer VALUES list slower than COPY and
#: the read (0.86 against 0.92 ms at 5 event rows, 1.02 against 0.91 at 10, on the development
#: machine); MariaDB and SQLite gain at every size measured, up to 100 rows, or lose nothing.
SMALL_INSERT = 5


#: "00" to "59": a time's hours, minutes and seconds, formatted once.
_TWO_DIGITS = tuple(f"{i:02d}" for i in range(60))
#: "YYYY-MM-DD" by the day's ordinal: the times a chunk writes fall on a few days.
_DAY_TEXTS: dict[int, str] = {}
_DAY_TEXTS_MAX = 4096


def _sqlite_time_text(value: datetime | None) -> str | None:
    # The text SQLAlchemy's SQLite DATETIME stores: "YYYY-MM-DD HH:MM:SS.ffffff", naive UTC.
    # Always 26 characters, so two of them compare as the times do.
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Put together from parts made once, the day's text and two-digit numbers: formatting the
    # seven fields with "%04d-%02d-%02d %02d:%02d:%02d.%06d" cost about 2.4 times the machine
    # instructions, and `replace(tzinfo=None).isoformat(" ", "microseconds")` 4 times
    # (callgrind); the chunk writer converts a time for every event.
    ordinal = value.toordinal()
    day = _DAY_TEXTS.get(ordinal)
    if day is None:
        if len(_DAY_TEXTS) >= _DAY_TEXTS_MAX:
            _DAY_TEXTS.clear()
        day = "%04d-%02d-%02d" % (value.year, value.month, value.day)  # noqa: UP031
        _DAY_TEXTS[ordinal] = day
    micro = value.microsecond
    return (
        f"{day} {_TWO_DIGITS[value.hour]}:{_TWO_DIGITS[value.minute]}:{_TWO_DIGITS[value.second]}."
        + ("%06d" % micro if micro else "000000")  # noqa: UP031
    )


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
    return value.astimezone(UTC).replace(tzinfo=None)


def _aware_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
    return value.astimezone(UTC)


def _sqlite_time_in(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _naive_time_in(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _aware_time_in(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def time_writer(dialect: Dialect) -> Callable[[datetime | None], Any]:
    """What the driver gets for a `UTCDateTime` column on this dialect."""
    if dialect.name == "sqlite":
        return _sqlite_time_text
    if dialect.name == "postgresql":
        return _aware_utc
    return _naive_utc


def time_reader(dialect: Dialect) -> Callable[[Any], datetime | None]:
    """The aware UTC datetime of what the driver returns for a `UTCDateTime` column."""
    if dialect.name == "sqlite":
        return _sqlite_time_in
    if dialect.name == "postgresql":
        return _aware_time_in
    return _naive_time_in


def _adapt_none_and_bool_directly() -> None:
    """Register sqlite3 adapters for None and bool that bind them as the driver already does
    (NULL; 0 or 1), unless the program registered its own.

    Python 3.11's sqlite3 binds only exact ints, floats, strings and bytearrays directly; any
    other value, None and bool included, is first looked up in the adapters' registry, then
    asked for `__adapt__` on the `PrepareProtocol` type, whose failed lookup formats an
    AttributeError's message each time (about 3,300 machine instructions a value, callgrind).
    A chunk's rows hold some eleven such values per event (times and counts not set yet, an
    event's position, its verdict's flags), so record_many spent more on them than on any of
    its statements but three. A registered adapter is found in the registry first: `{}.get`
    (a C function that gives None for any key) and `int` bind the same NULL, 0 and 1. The
    registry is the process's, so one a program registered for these types is left as it is.
    """
    registered = sqlite3.adapters
    if (type(None), sqlite3.PrepareProtocol) not in registered:
        nothing: dict[None, None] = {}
        sqlite3.register_adapter(type(None), nothing.get)
    if (bool, sqlite3.PrepareProtocol) not in registered:
        sqlite3.register_adapter(bool, int)


class _Compiled:
    def __init__(self, sql: str, columnar: bool = False) -> None:
        self.sql = sql
        #: One parameter per column holding the values of every row (PostgreSQL arrays).
        self.columnar = columnar
        #: MariaDB: the first and the other rows of a derived table (UNION ALL of SELECTs).
        self.derived: tuple[str, str] | None = None
        #: PostgreSQL: COPY FROM STDIN, the rows written to the copy stream.
        self.copy = False


class BulkWriter:
    """Bulk INSERTs, UPDATE ... WHERE id = ? and SELECT ... WHERE column IN (...) for one
    dialect, rows as tuples of driver values.

    A few rows (`SMALL_INSERT`, as a `record()` call writes) are one plain INSERT on every
    backend. More: SQLite and MariaDB get the driver's executemany (PyMySQL turns an INSERT's
    into multi-row VALUES). On PostgreSQL, psycopg's executemany runs one statement per row
    (pipelined, but still parsed, planned and executed row by row), many times slower: INSERTs
    go through COPY FROM STDIN straight into the table, and UPDATEs and SELECTs are one
    statement per chunk with every column sent as one array, turned back into rows by `unnest`
    on the server. Neither needs a temporary table, so both work unchanged behind a
    transaction-mode pooler.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[tuple[Any, ...], _Compiled] = {}
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        if dialect.name == "sqlite":
            _adapt_none_and_bool_directly()

    # -- tuple rows (driver values) ----------------------------------------------------------

    def insert_rows(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        returning: str | None = None,
    ) -> dict[Any, int]:
        """INSERT rows given as tuples of driver values in the order of `columns`.

        `returning`: a unique column among `columns`; the new rows' ids are then returned by
        their value of it (else an empty dict).

        Up to `SMALL_INSERT` rows (a `record()` call writes one per table) are one INSERT of
        their VALUES, with RETURNING when the ids are asked for: one statement on every backend.
        More go by the backend's bulk path, COPY or executemany, and their ids are read after.
        """
        if not rows:
            return {}
        if len(rows) <= SMALL_INSERT and (returning is None or self.dialect.insert_returning):
            shape: tuple[Any, ...] = ("values", table.name, tuple(columns), returning, len(rows))
            compiled = self._compiled.get(shape)
            if compiled is None:
                names = ", ".join(self._quote(c) for c in columns)
                values = "(" + ", ".join([self._mark] * len(columns)) + ")"
                tail = f" RETURNING id, {self._quote(returning)}" if returning else ""
                compiled = _Compiled(
                    f"INSERT INTO {table.name} ({names})"
                    f" VALUES {', '.join([values] * len(rows))}{tail}"
                )
                self._compiled[shape] = compiled
            result = conn.exec_driver_sql(
                compiled.sql, tuple(value for row in rows for value in row)
            )
            return {value: int(id_) for id_, value in result} if returning else {}
        key = ("insert", table.name, tuple(columns))
        compiled = self._compiled.get(key)
        if compiled is None:
            names = ", ".join(self._quote(c) for c in columns)
            if self.dialect.name == "postgresql":
                compiled = _Compiled(f"COPY {table.name} ({names}) FROM STDIN")
                compiled.copy = True
            else:
                marks = ", ".join([self._mark] * len(columns))
                compiled = _Compiled(f"INSERT INTO {table.name} ({names}) VALUES ({marks})")
            self._compiled[key] = compiled
        self._execute(conn, compiled, rows)
        if returning is None:
            return {}
        at = list(columns).index(returning)
        return self._inserted_ids(conn, table, returning, [row[at] for row in rows])

    def update_rows(
        self, conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """UPDATE `columns` WHERE id = ?, each row a tuple of driver values: the columns' new
        values in order, then the id."""
        if not rows:
            return
        key = ("update", table.name, tuple(columns))
        compiled = self._compiled.get(key)
        if compiled is None:
            names = (*columns, "id")
            q = self._quote
            if self.dialect.name == "postgresql":
                sets = ", ".join(f"{q(c)} = s.{q(c)}" for c in columns)
                compiled = _Compiled(
                    f"UPDATE {table.name} AS t SET {sets}"
                    f" FROM unnest({self._arrays(table, names)})"
                    f" AS s({', '.join(q(c) for c in names)})"
                    " WHERE t.id = s.id",
                    columnar=True,
                )
            elif self.dialect.name in ("mysql", "mariadb"):
                # The driver runs an UPDATE's executemany row by row (one round trip each); a
                # join with a derived table of the chunk's rows is one statement.
                sets = ", ".join(f"t.{q(c)} = s.{q(c)}" for c in columns)
                first = ", ".join(f"%s AS {q(c)}" for c in names)
                compiled = _Compiled(
                    f"UPDATE {table.name} AS t JOIN ({{rows}}) AS s ON t.id = s.id SET {sets}"
                )
                compiled.derived = (f"SELECT {first}", "SELECT " + ", ".join(["%s"] * len(names)))
            else:
                sets = ", ".join(f"{q(c)} = {self._mark}" for c in columns)
                compiled = _Compiled(f"UPDATE {table.name} SET {sets} WHERE id = {self._mark}")
            self._compiled[key] = compiled
        self._execute(conn, compiled, rows)

    def select_in(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        column: str,
        values: Sequence[Any],
        *,
        lock: bool = False,
    ) -> list[Sequence[Any]]:
        """SELECT `columns` (driver values) of the rows whose `column` is one of `values`.

        The list goes as one array parameter on PostgreSQL (`= ANY(...)`): psycopg otherwise
        splits and adapts a statement with a thousand placeholders on every call, and the server
        plans each one afresh. `lock`: FOR UPDATE, taken in `column` order (not on SQLite, whose
        writer holds the database's write lock since BEGIN IMMEDIATE).
        """
        if not values:
            return []
        names = ", ".join(self._quote(c) for c in columns)
        where = self._quote(column)
        tail = f" ORDER BY {where} FOR UPDATE" if lock and self.dialect.name != "sqlite" else ""
        if self.dialect.name == "postgresql":
            sql = (
                f"SELECT {names} FROM {table.name}"
                f" WHERE {where} = ANY({self._arrays(table, (column,))}){tail}"
            )
            return self._fetch(conn, sql, (list(values),))
        out: list[Sequence[Any]] = []
        # SQLite allows 32766 parameters per statement since 3.32; stay well below.
        step = 5000 if self.dialect.name == "sqlite" else len(values)
        for start in range(0, len(values), step):
            part = tuple(values[start : start + step])
            marks = ", ".join([self._mark] * len(part))
            sql = f"SELECT {names} FROM {table.name} WHERE {where} IN ({marks}){tail}"
            out.extend(self._fetch(conn, sql, part))
        return out

    def select_pairs(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        first: str,
        second: str,
        pairs: Sequence[tuple[Any, Any]],
    ) -> list[Sequence[Any]]:
        """SELECT `columns` (driver values) of the rows whose (`first`, `second`) is one of
        `pairs`, through the index on (first, second) on every backend: PostgreSQL plans a
        thousand-pair row-value IN list slower than it runs it, and SQLite 3.4x scans the whole
        table for one (EXPLAIN QUERY PLAN: "SCAN deliveries")."""
        if not pairs:
            return []
        q = self._quote
        names = ", ".join(f"t.{q(c)}" for c in columns)
        if self.dialect.name == "postgresql":
            sql = (
                f"SELECT {names} FROM unnest({self._arrays(table, (first, second))}) AS v(a, b)"
                f" JOIN {table.name} AS t ON t.{q(first)} = v.a AND t.{q(second)} = v.b"
            )
            return self._fetch(conn, sql, ([a for a, _ in pairs], [b for _, b in pairs]))
        out: list[Sequence[Any]] = []
        step = 5000 if self.dialect.name == "sqlite" else len(pairs)
        for start in range(0, len(pairs), step):
            part = pairs[start : start + step]
            flat = tuple(value for pair in part for value in pair)
            if self.dialect.name == "sqlite":
                # A row-value IN list is a scan on SQLite 3.4x; a join from a VALUES list is
                # looked up row by row in the index. SQLite names its columns column1, ...
                marks = ", ".join(["(?, ?)"] * len(part))
                sql = (
                    f"SELECT {names} FROM (VALUES {marks}) AS v JOIN {table.name} AS t"
                    f" ON t.{q(first)} = v.column1 AND t.{q(second)} = v.column2"
                )
            else:
                marks = ", ".join(["(%s, %s)"] * len(part))
                sql = (
                    f"SELECT {names} FROM {table.name} AS t"
                    f" WHERE (t.{q(first)}, t.{q(second)}) IN ({marks})"
                )
            out.extend(self._fetch(conn, sql, flat))
        return out

    # -- internals ---------------------------------------------------------------------------

    def _fetch(self, conn: Connection, sql: str, params: Any) -> list[Sequence[Any]]:
        """The rows of a SELECT as the driver's own tuples.

        `CursorResult.all()` makes a SQLAlchemy `Row` of each, which cost more than the driver's
        fetch of them for the thousands of rows a chunk reads. The statement still runs through
        `exec_driver_sql` (its events fire, its errors are wrapped); an error of the fetch is
        wrapped as SQLAlchemy wraps one, so the retry of conflicts judges it the same way.
        """
        result = conn.exec_driver_sql(sql, params)
        dbapi_error = self.dialect.loaded_dbapi.Error
        try:
            return list(result.cursor.fetchall())
        except dbapi_error as err:
            raise DBAPIError.instance(sql, params, err, dbapi_error) from err
        finally:
            result.close()

    def _inserted_ids(
        self, conn: Connection, table: Table, column: str, keys: list[Any]
    ) -> dict[Any, int]:
        """The ids of the rows just inserted by the bulk path, by `keys` (their unique `column`,
        in the order they were inserted in).

        On SQLite an executemany, then this: INSERT ... RETURNING in parameter order runs row
        by row there, many times slower.
        """
        if self.dialect.name == "sqlite":
            # This transaction holds SQLite's write lock (BEGIN IMMEDIATE) and the id is the
            # rowid, so the rows just inserted took the ids up to last_insert_rowid() in order
            # (https://sqlite.org/autoinc.html). Checked at both ends, else asked for by key.
            last = conn.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
            first = last - len(keys) + 1
            ends: dict[int, Any] = dict(
                conn.exec_driver_sql(
                    f"SELECT id, {self._quote(column)} FROM {table.name} WHERE id IN (?, ?)",
                    (first, last),
                ).all()
            )
            if ends.get(first) == keys[0] and ends.get(last) == keys[-1]:
                return {key: first + i for i, key in enumerate(keys)}
        return {
            key: int(id_) for id_, key in self.select_in(conn, table, ("id", column), column, keys)
        }

    def _quote(self, name: str) -> str:
        return str(self.dialect.identifier_preparer.quote(name))

    def _arrays(self, table: Table, columns: Sequence[str]) -> str:
        """`%s::type[]` for each column: the array parameters of a PostgreSQL statement."""
        casts = []
        for name in columns:
            sql_type = table.c[name].type.compile(dialect=self.dialect)
            # Text arrays for every string column: the assignment cast to VARCHAR(n) still
            # refuses a value that is too long, as a plain INSERT would.
            if sql_type.startswith(("VARCHAR", "TEXT", "CHAR")):
                sql_type = "TEXT"
            # %b: binary parameters; psycopg's text array dumper quotes value by value.
            casts.append(f"%b::{sql_type}[]")
        return ", ".join(casts)

    def _execute(
        self, conn: Connection, compiled: _Compiled, rows: Sequence[Sequence[Any]]
    ) -> None:
        if compiled.copy:
            # COPY writes new rows at a fraction of an INSERT's cost per row (psycopg streams
            # them; https://www.psycopg.org/psycopg3/docs/basic/copy.html). It runs on the
            # transaction's own connection, so it commits or rolls back with the chunk; a
            # duplicate key fails it like an INSERT (the engine's retry then runs the chunk
            # again). SQLAlchemy's cursor events do not see it.
            # psycopg's own connection (typed loosely: psycopg is an optional dependency).
            psycopg_conn: Any = conn.connection.driver_connection
            dbapi_error = self.dialect.loaded_dbapi.Error
            try:
                with psycopg_conn.cursor() as cursor, cursor.copy(compiled.sql) as copy:
                    write = copy.write_row
                    for row in rows:
                        write(row)
            except dbapi_error as err:
                # Wrapped as SQLAlchemy wraps a statement's error (a duplicate key becomes an
                # IntegrityError), so callers and the retry of conflicts judge it the same way.
                raise DBAPIError.instance(compiled.sql, None, err, dbapi_error) from err
            return
        if compiled.derived is not None:
            head, tail = compiled.derived
            for start in range(0, len(rows), 1000):
                part = rows[start : start + 1000]
                union = " UNION ALL ".join([head] + [tail] * (len(part) - 1))
                flat = tuple(value for row in part for value in row)
                conn.exec_driver_sql(compiled.sql.replace("{rows}", union), flat)
            return
        if compiled.columnar:
            arrays = tuple(list(values) for values in zip(*rows, strict=True))
            conn.exec_driver_sql(compiled.sql, arrays)
            return
        conn.exec_driver_sql(compiled.sql, list(rows))
