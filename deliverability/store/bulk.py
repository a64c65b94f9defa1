"""Bulk writes: one INSERT or UPDATE statement, compiled once, run with executemany.

SQLAlchemy's per-row parameter processing costs more than the database's own work when a chunk
writes thousands of small rows; `BulkWriter` compiles each statement once per dialect and converts
values with one small function per column (enums to their value, times to what `UTCDateTime`
stores on that backend), then hands the rows to the driver's executemany. `tests/test_store.py`
checks that the converters store exactly what `UTCDateTime` and the enum columns store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import (
    Boolean,
    Connection,
    Dialect,
    Table,
    select,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.sql.expression import ColumnElement, type_coerce
from sqlalchemy.types import NullType

from deliverability.store.models import UTCDateTime

__all__ = [
    "BulkWriter",
    "converter_for",
    "reader_for",
    "time_reader",
    "time_writer",
]

Converter = Callable[[Any], Any] | None


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _sqlite_time_text(value: datetime | None) -> str | None:
    # The text SQLAlchemy's SQLite DATETIME stores: "YYYY-MM-DD HH:MM:SS.ffffff", naive UTC.
    # Always 26 characters, so two of them compare as the times do.
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


# Cached for the builder of dict rows: a chunk repeats its `now` in every row.
_sqlite_time = functools.lru_cache(maxsize=8192)(_sqlite_time_text)


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


def converter_for(column_type: Any, dialect: Dialect) -> Converter:
    """The function that turns a Python value into what the driver should get for a column of
    this type (None: pass it through)."""
    if isinstance(column_type, UTCDateTime):
        if dialect.name == "sqlite":
            return _sqlite_time
        if dialect.name == "postgresql":
            return _aware_utc
        return _naive_utc
    if isinstance(column_type, SAEnum):
        return _enum_value
    return None


def _sqlite_time_in(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


def _naive_time_in(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


def _aware_time_in(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _bool_in(value: Any) -> bool | None:
    return None if value is None else bool(value)


def reader_for(column_type: Any, dialect: Dialect) -> Converter:
    """The function that turns what the driver returns for a column of this type into the
    Python value the models use (None: take it as it is)."""
    if isinstance(column_type, UTCDateTime):
        if dialect.name == "sqlite":
            return _sqlite_time_in
        if dialect.name == "postgresql":
            return _aware_time_in
        return _naive_time_in
    if isinstance(column_type, SAEnum) and column_type.enum_class is not None:
        members = dict(column_type.enum_class._value2member_map_)

        def enum_in(value: Any) -> Any:
            return None if value is None else members[value]

        return enum_in
    if isinstance(column_type, Boolean):
        return _bool_in
    return None


def time_writer(dialect: Dialect) -> Callable[[datetime | None], Any]:
    """What the driver gets for a `UTCDateTime` column on this dialect (no cache: for values
    that do not repeat, such as the times of a log's events)."""
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


class _Compiled:
    def __init__(self, sql: str, names: Sequence[str], columnar: bool = False) -> None:
        self.sql = sql
        #: The columns of each row's parameters, in order.
        self.names = tuple(names)
        #: One parameter per column holding the values of every row (PostgreSQL arrays).
        self.columnar = columnar
        #: MariaDB: the first and the other rows of a derived table (UNION ALL of SELECTs).
        self.derived: tuple[str, str] | None = None


class BulkWriter:
    """Bulk INSERTs, UPDATE ... WHERE id = ? and SELECT ... WHERE column IN (...) for one
    dialect, as plain SQL compiled once.

    SQLite and MariaDB get the driver's executemany (PyMySQL turns an INSERT's into multi-row
    VALUES). PostgreSQL gets one statement per chunk and table, every column sent as one array
    and turned back into rows by `unnest` on the server: psycopg's executemany runs one statement
    per row (pipelined, but still parsed, planned and executed row by row), many times slower.
    A single statement with arrays also needs no temporary table, so it works unchanged behind
    a transaction-mode pooler.

    Two ways in: rows as dicts of model values (`insert`, `update_by_id`, `load`: converted by
    generated functions), or rows as tuples already in the driver's form (`insert_rows`,
    `update_rows`, `select_in`: for the engine's chunk writer, which keeps the values it loaded
    as the driver gave them and converts only what it computes).
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[tuple[str, str, tuple[str, ...]], _Compiled] = {}
        self._builders: dict[tuple[str, tuple[str, ...]], Callable[..., Any]] = {}
        self._readers: dict[str, Callable[..., Any]] = {}
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"

    # -- dict rows (model values) ------------------------------------------------------------

    def insert(self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """INSERT every row (all rows have the same keys: the columns to write)."""
        if not rows:
            return
        columns = tuple(rows[0])
        build = self._builder(table, columns)
        self.insert_rows(conn, table, columns, [build(row) for row in rows])

    def update_by_id(
        self,
        conn: Connection,
        table: Table,
        columns: Sequence[str],
        rows: Sequence[dict[str, Any]],
    ) -> None:
        """UPDATE `columns` of each row WHERE id = row["id"]."""
        if not rows:
            return
        build = self._builder(table, (*columns, "id"))
        self.update_rows(conn, table, columns, [build(row) for row in rows])

    def load(
        self, conn: Connection, table: Table, where: ColumnElement[bool]
    ) -> list[dict[str, Any]]:
        """SELECT every column of `table` WHERE `where`, as dicts of model values."""
        columns = list(table.c)
        reader = self._readers.get(table.name)
        if reader is None:
            env: dict[str, Any] = {}
            parts = []
            for i, column in enumerate(columns):
                convert = reader_for(column.type, self.dialect)
                value = f"r[{i}]"
                if convert is not None:
                    env[f"c{i}"] = convert
                    value = f"c{i}({value})"
                parts.append(f"{column.name!r}: {value}")
            exec(f"def read(r):\n    return {{{', '.join(parts)}}}\n", env)
            reader = self._readers[table.name] = env["read"]
        # NullType: the raw driver values, converted above in one generated function.
        stmt = select(*[type_coerce(c, NullType()).label(c.name) for c in columns]).where(where)
        return [reader(row) for row in conn.execute(stmt).all()]

    # -- tuple rows (driver values) ----------------------------------------------------------

    def insert_rows(
        self, conn: Connection, table: Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """INSERT rows given as tuples of driver values in the order of `columns`."""
        if not rows:
            return
        key = ("insert", table.name, tuple(columns))
        compiled = self._compiled.get(key)
        if compiled is None:
            names = ", ".join(self._quote(c) for c in columns)
            if self.dialect.name == "postgresql":
                compiled = _Compiled(
                    f"INSERT INTO {table.name} ({names})"
                    f" SELECT * FROM unnest({self._arrays(table, columns)})",
                    columns,
                    columnar=True,
                )
            else:
                marks = ", ".join([self._mark] * len(columns))
                compiled = _Compiled(
                    f"INSERT INTO {table.name} ({names}) VALUES ({marks})", columns
                )
            self._compiled[key] = compiled
        self._execute(conn, compiled, rows)

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
                    names,
                    columnar=True,
                )
            elif self.dialect.name in ("mysql", "mariadb"):
                # The driver runs an UPDATE's executemany row by row (one round trip each); a
                # join with a derived table of the chunk's rows is one statement.
                sets = ", ".join(f"t.{q(c)} = s.{q(c)}" for c in columns)
                first = ", ".join(f"%s AS {q(c)}" for c in names)
                compiled = _Compiled(
                    f"UPDATE {table.name} AS t JOIN ({{rows}}) AS s ON t.id = s.id SET {sets}",
                    names,
                )
                compiled.derived = (f"SELECT {first}", "SELECT " + ", ".join(["%s"] * len(names)))
            else:
                sets = ", ".join(f"{q(c)} = {self._mark}" for c in columns)
                compiled = _Compiled(
                    f"UPDATE {table.name} SET {sets} WHERE id = {self._mark}", names
                )
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
            return list(conn.exec_driver_sql(sql, (list(values),)).all())
        out: list[Sequence[Any]] = []
        # SQLite allows 32766 parameters per statement since 3.32; stay well below.
        step = 5000 if self.dialect.name == "sqlite" else len(values)
        for start in range(0, len(values), step):
            part = tuple(values[start : start + step])
            marks = ", ".join([self._mark] * len(part))
            sql = f"SELECT {names} FROM {table.name} WHERE {where} IN ({marks}){tail}"
            out.extend(conn.exec_driver_sql(sql, part).all())
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
            return list(
                conn.exec_driver_sql(sql, ([a for a, _ in pairs], [b for _, b in pairs])).all()
            )
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
            out.extend(conn.exec_driver_sql(sql, flat).all())
        return out

    # -- internals ---------------------------------------------------------------------------

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

    def _builder(self, table: Table, names: tuple[str, ...]) -> Callable[..., Any]:
        """A function turning one dict row into the tuple of driver values for `names`,
        generated once per column list: a loop over columns per value costs more than the
        driver's own work on small rows."""
        builder = self._builders.get((table.name, names))
        if builder is None:
            env: dict[str, Any] = {}
            parts = []
            for i, name in enumerate(names):
                column = table.c[name]
                convert = converter_for(column.type, self.dialect)
                value = f"row[{name!r}]"
                if convert is _enum_value and not column.nullable:
                    # A plain attribute read: faster than the `value` property, per value.
                    value = f"{value}._value_"
                elif convert is not None:
                    env[f"c{i}"] = convert
                    value = f"c{i}({value})"
                parts.append(value)
            exec(f"def build(row):\n    return ({', '.join(parts)},)\n", env)
            builder = env["build"]
            self._builders[(table.name, names)] = builder
        return builder

    def _execute(
        self, conn: Connection, compiled: _Compiled, rows: Sequence[Sequence[Any]]
    ) -> None:
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
