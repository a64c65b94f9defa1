"""Index changes on the big tables that leave the senders writing while they run.

A plain ``CREATE INDEX`` on PostgreSQL holds a SHARE lock on its table until the transaction
ends: every INSERT, UPDATE and DELETE of `events` (hundreds of millions of rows on a store of a
few years) waits for the whole build, and a plain ``DROP INDEX`` takes an ACCESS EXCLUSIVE lock,
which queues every reader and writer behind the longest open transaction. ``CREATE INDEX
CONCURRENTLY`` and ``DROP INDEX CONCURRENTLY`` take SHARE UPDATE EXCLUSIVE instead, which no
INSERT, UPDATE, DELETE or SELECT waits for
(https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY,
https://www.postgresql.org/docs/current/explicit-locking.html). They may not run inside a
transaction block, so on PostgreSQL these helpers commit the revision's transaction so far and
run in Alembic's autocommit block (the revision's later steps start a new transaction; its
revision number is written at its end, as for every revision, see env.py).

What a revision makes with them is the index it made before with ``batch_op.create_index``:
same name, columns and WHERE. SQLite and MariaDB take the same path as before (MariaDB/InnoDB
adds and drops a secondary index in place without blocking writes; docs/scaling.md, "Upgrading
a big store").

A concurrent build that fails (a lock wait cut short, a cancelled upgrade, the server stopping)
leaves an INVALID index behind under its name, which takes writes but is never read. Run again,
`create_index` drops such an index and builds it anew; one already built and valid (the build
finished, but the revision did not reach its end) is kept.

Changing this module changes every revision that uses it: keep what they make the same.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from alembic import op


def _on_postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


@contextmanager
def _outside_transaction() -> Iterator[None]:
    """Alembic's autocommit block, with no `lock_timeout`: a concurrent build or drop blocks no
    reader or writer while it waits (for the transactions open when it started), so cutting the
    wait short would only leave an invalid index behind. The upgrade's own lock timeout
    (`store.session.upgrade_schema`) is put back after it."""
    context = op.get_context()
    with context.autocommit_block():
        if context.as_sql:
            yield
            return
        bind = op.get_bind()
        before = bind.exec_driver_sql("SELECT current_setting('lock_timeout')").scalar_one()
        bind.exec_driver_sql("SET lock_timeout = 0")
        try:
            yield
        finally:
            bind.execute(
                sa.text("SELECT set_config('lock_timeout', :value, false)"), {"value": before}
            )


def _valid(name: str) -> bool | None:
    """Whether the index `name` (in the search path) is valid; None when there is none."""
    found = op.get_bind().execute(
        sa.text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(quote_ident(:n))"),
        {"n": name},
    )
    valid = found.scalar_one_or_none()
    return None if valid is None else bool(valid)


def create_index(table: str, name: str, columns: Sequence[str], **dialect_kw: Any) -> None:
    """`batch_op.create_index(name, columns, **dialect_kw)` on `table`; CONCURRENTLY on
    PostgreSQL, after dropping an invalid index of that name a failed build left."""
    if not _on_postgresql():
        with op.batch_alter_table(table) as batch_op:
            batch_op.create_index(name, list(columns), **dialect_kw)
        return
    with _outside_transaction():
        if not op.get_context().as_sql:
            valid = _valid(name)
            if valid:
                return
            if valid is False:
                op.drop_index(name, table_name=table, postgresql_concurrently=True)
        op.create_index(name, table, list(columns), postgresql_concurrently=True, **dialect_kw)


def drop_index(table: str, name: str) -> None:
    """`batch_op.drop_index(name)` on `table`; CONCURRENTLY on PostgreSQL (and without error
    when a run stopped after dropping it already)."""
    if not _on_postgresql():
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_index(name)
        return
    with _outside_transaction():
        op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
