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
    ARRAY,
    Boolean,
    Connection,
    Dialect,
    Table,
    any_,
    bindparam,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.sql.expression import ColumnElement, type_coerce
from sqlalchemy.types import NullType

from deliverability.store.models import UTCDateTime

__all__ = ["BulkWriter", "converter_for", "in_values", "pairs_in", "reader_for"]

Converter = Callable[[Any], Any] | None


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


@functools.lru_cache(maxsize=8192)
def _sqlite_time(value: datetime | None) -> str | None:
    # The text SQLAlchemy's SQLite DATETIME stores: "YYYY-MM-DD HH:MM:SS.ffffff", naive UTC.
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


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


def in_values(
    conn: Connection, column: ColumnElement[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """WHERE column IN values, for the long lists of a chunk (a thousand keys).

    On PostgreSQL the list goes as one array parameter (`= ANY(...)`): psycopg otherwise splits
    and adapts a statement with a thousand placeholders on every call, and the server plans
    each one afresh; the index is used the same way.
    """
    if conn.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(list(values))


def pairs_in(
    conn: Connection, table: Table, first: str, second: str, pairs: Sequence[tuple[Any, Any]]
) -> ColumnElement[bool]:
    """WHERE (first, second) IN pairs, written so that every backend finds the rows through the
    index on (first, second) rather than by reading the table.

    PostgreSQL and MariaDB turn a row-value IN list into index lookups; SQLite (3.4x) scans the
    whole table for it (EXPLAIN QUERY PLAN: "SCAN deliveries"), which made every chunk cost as much
    as the history. A join from a VALUES list is looked up row by row in the index there: this
    finds the ids that way (one raw statement), and the caller's SELECT takes the rows by id.
    """
    if conn.dialect.name == "postgresql":
        # A row-value IN list of a thousand pairs costs PostgreSQL more to plan (a thousand
        # OR branches) than to run; a join from two unnested arrays is one index lookup each.
        kinds = [
            "TEXT" if t.startswith(("VARCHAR", "TEXT", "CHAR")) else t
            for t in (table.c[c].type.compile(dialect=conn.dialect) for c in (first, second))
        ]
        found = conn.exec_driver_sql(
            f"SELECT t.id FROM unnest(%b::{kinds[0]}[], %b::{kinds[1]}[]) AS v(a, b)"
            f" JOIN {table.name} AS t ON t.{first} = v.a AND t.{second} = v.b",
            ([a for a, _ in pairs], [b for _, b in pairs]),
        )
        return in_values(conn, table.c.id, [row[0] for row in found])
    if conn.dialect.name != "sqlite":
        return tuple_(table.c[first], table.c[second]).in_(pairs)
    ids: list[int] = []
    # SQLite allows 32766 parameters per statement since 3.32; stay well below.
    for start in range(0, len(pairs), 5000):
        part = pairs[start : start + 5000]
        marks = ", ".join(["(?, ?)"] * len(part))
        # SQLite names the columns of a VALUES list column1, column2, ...
        sql = (
            f"SELECT t.id FROM (VALUES {marks}) AS v JOIN {table.name} AS t"
            f" ON t.{first} = v.column1 AND t.{second} = v.column2"
        )
        flat = [value for pair in part for value in pair]
        ids.extend(row[0] for row in conn.exec_driver_sql(sql, tuple(flat)))
    return table.c.id.in_(ids)


class _Compiled:
    def __init__(
        self, sql: str, names: Sequence[str], positional: bool, columnar: bool = False
    ) -> None:
        self.sql = sql
        self.names = tuple(names)
        self.positional = positional
        #: One parameter per column holding the values of every row (PostgreSQL arrays).
        self.columnar = columnar
        #: MariaDB: the first and the other rows of a derived table (UNION ALL of SELECTs).
        self.derived: tuple[str, str] | None = None


class BulkWriter:
    """Bulk INSERTs and UPDATE ... WHERE id = ? for one dialect.

    SQLite and MariaDB get the driver's executemany (PyMySQL turns an INSERT's into multi-row
    VALUES). PostgreSQL gets one statement per chunk and table, every column sent as one array
    and turned back into rows by `unnest` on the server: psycopg's executemany runs one statement
    per row (pipelined, but still parsed, planned and executed row by row), many times slower.
    A single statement with arrays also needs no temporary table, so it works unchanged behind
    a transaction-mode pooler.
    """

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[tuple[str, str, tuple[str, ...]], _Compiled] = {}
        self._builders: dict[str, Callable[..., Any]] = {}
        self._readers: dict[str, Callable[..., Any]] = {}

    def insert(self, conn: Connection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
        """INSERT every row (all rows have the same keys: the columns to write)."""
        if not rows:
            return
        columns = tuple(rows[0])
        key = ("insert", table.name, columns)
        compiled = self._compiled.get(key)
        if compiled is None:
            if self.dialect.name == "postgresql":
                compiled = _Compiled(
                    f"INSERT INTO {table.name} ({', '.join(columns)})"
                    f" SELECT * FROM unnest({self._arrays(table, columns)})",
                    columns,
                    positional=True,
                    columnar=True,
                )
            else:
                stmt = insert(table).values({c: bindparam(f"b_{c}") for c in columns})
                compiled = self._compile(stmt, {f"b_{c}": c for c in columns})
            self._compiled[key] = compiled
        self._run(conn, table, compiled, rows)

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
        key = ("update", table.name, tuple(columns))
        compiled = self._compiled.get(key)
        if compiled is None and self.dialect.name == "postgresql":
            names = ("id", *columns)
            sets = ", ".join(f"{c} = s.{c}" for c in columns)
            compiled = _Compiled(
                f"UPDATE {table.name} AS t SET {sets}"
                f" FROM unnest({self._arrays(table, names)}) AS s({', '.join(names)})"
                " WHERE t.id = s.id",
                names,
                positional=True,
                columnar=True,
            )
            self._compiled[key] = compiled
        if compiled is None and self.dialect.name in ("mysql", "mariadb"):
            # The driver runs an UPDATE's executemany row by row (one round trip each); a join
            # with a derived table of the chunk's rows is one statement.
            names = ("id", *columns)
            sets = ", ".join(f"t.{self._quote(c)} = s.{self._quote(c)}" for c in columns)
            first = ", ".join(f"%s AS {self._quote(c)}" for c in names)
            compiled = _Compiled(
                f"UPDATE {table.name} AS t JOIN ({{rows}}) AS s ON t.id = s.id SET {sets}",
                names,
                positional=True,
            )
            compiled.derived = (f"SELECT {first}", "SELECT " + ", ".join(["%s"] * len(names)))
            self._compiled[key] = compiled
        if compiled is None:
            stmt = (
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values({c: bindparam(f"b_{c}") for c in columns})
            )
            compiled = self._compile(stmt, {"b_id": "id", **{f"b_{c}": c for c in columns}})
            self._compiled[key] = compiled
        self._run(conn, table, compiled, rows)

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

    def _compile(self, stmt: Any, column_of: dict[str, str]) -> _Compiled:
        compiled = stmt.compile(dialect=self.dialect)
        if compiled.positional:
            order = [column_of[name] for name in compiled.positiontup]
            return _Compiled(str(compiled), order, True)
        return _Compiled(str(compiled), list(column_of.values()), False)

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

    def _builder(self, table: Table, compiled: _Compiled) -> Callable[..., Any]:
        """A function building one row's parameters, generated once per statement: a loop over
        columns per value costs more than the driver's own work on small rows."""
        builder = self._builders.get(compiled.sql)
        if builder is None:
            env: dict[str, Any] = {}
            parts = []
            for i, name in enumerate(compiled.names):
                column = table.c[name]
                convert = converter_for(column.type, self.dialect)
                value = f"row[{name!r}]"
                if convert is _enum_value and not column.nullable:
                    # A plain attribute read: faster than the `value` property, per value.
                    value = f"{value}._value_"
                elif convert is not None:
                    env[f"c{i}"] = convert
                    value = f"c{i}({value})"
                parts.append(value if compiled.positional else f"{'b_' + name!r}: {value}")
            body = f"({', '.join(parts)},)" if compiled.positional else f"{{{', '.join(parts)}}}"
            exec(f"def build(row):\n    return {body}\n", env)
            builder = env["build"]
            self._builders[compiled.sql] = builder
        return builder

    def _run(
        self, conn: Connection, table: Table, compiled: _Compiled, rows: Sequence[dict[str, Any]]
    ) -> None:
        build = self._builder(table, compiled)
        if compiled.derived is not None:
            head, tail = compiled.derived
            for start in range(0, len(rows), 1000):
                part = rows[start : start + 1000]
                union = " UNION ALL ".join([head] + [tail] * (len(part) - 1))
                flat = tuple(value for row in part for value in build(row))
                conn.exec_driver_sql(compiled.sql.replace("{rows}", union), flat)
            return
        if compiled.columnar:
            built = [build(row) for row in rows]
            arrays = tuple(list(values) for values in zip(*built, strict=True))
            conn.exec_driver_sql(compiled.sql, arrays)
            return
        conn.exec_driver_sql(compiled.sql, [build(row) for row in rows])
