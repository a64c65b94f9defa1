"""Run a transaction again when the database asks for it: lock waits, deadlocks, serialization
failures.

Many senders write the same recipients and destinations at the same time. Each database then
sometimes refuses one of two colliding transactions, and says the right answer is to run it again:

- SQLite: ``database is locked`` (SQLITE_BUSY, https://www.sqlite.org/rescode.html#busy) when the
  busy timeout ran out, and SQLITE_LOCKED;
- PostgreSQL: SQLSTATE 40001 serialization_failure and 40P01 deadlock_detected
  (https://www.postgresql.org/docs/current/mvcc-serialization-failure-handling.html), and 55P03
  lock_not_available when a ``lock_timeout`` ran out;
- MariaDB/MySQL: 1213 ER_LOCK_DEADLOCK (the transaction was rolled back) and 1205
  ER_LOCK_WAIT_TIMEOUT (https://mariadb.com/kb/en/mariadb-error-codes/).

`run_in_transaction` runs a function in a transaction and, on one of these, rolls back, waits a
jittered, doubling delay and runs the whole function again, so the caller never sees them. The
function must therefore do all its work through the connection it is given (no side effects
outside the transaction that a second run would repeat).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from deliverability.errors import StoreBusyError
from deliverability.store.session import mask_url, write_engine

__all__ = ["DEFAULT_ATTEMPTS", "is_retryable", "run_in_transaction"]

T = TypeVar("T")

DEFAULT_ATTEMPTS = 10
#: First wait and the cap of the doubling waits, in seconds. Full jitter (a random wait between
#: zero and the cap) spreads colliding writers apart instead of making them collide again in step.
BASE_DELAY_S = 0.02
MAX_DELAY_S = 2.0

_SQLITE_BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (extended codes share the low byte)
_SQLITE_BUSY_TEXTS = ("database is locked", "database table is locked", "database is busy")
_POSTGRES_RETRY_STATES = {"40001", "40P01", "55P03"}
_MYSQL_RETRY_CODES = {1213, 1205}

# Unique-key races: two writers both found no row and both inserted it. Running the transaction
# again finds the other writer's row. Only retried when the caller says its function is written
# for it (`conflicts=True`): elsewhere a duplicate is a real error.
_POSTGRES_UNIQUE_STATE = "23505"
_MYSQL_DUPLICATE_CODE = 1062
_SQLITE_UNIQUE_TEXT = "unique constraint failed"


def is_retryable(error: BaseException, *, conflicts: bool = False) -> bool:
    """True when `error` is a database's way of saying "run this transaction again"."""
    if not isinstance(error, DBAPIError) or error.connection_invalidated:
        return False
    orig = error.orig
    args = getattr(orig, "args", ())
    # PyMySQL / mysqlclient: (errno, message). Checked first: PyMySQL also sets a `sqlstate`,
    # and its SQLSTATE (HY000 for a lock wait timeout) is not the one to judge by.
    if args and isinstance(args[0], int):
        return args[0] in _MYSQL_RETRY_CODES or (conflicts and args[0] == _MYSQL_DUPLICATE_CODE)
    if type(orig).__module__.startswith("sqlite3"):
        code = getattr(orig, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_BUSY_CODES:
            return True
        message = str(orig).lower()
        return any(t in message for t in _SQLITE_BUSY_TEXTS) or (
            conflicts and _SQLITE_UNIQUE_TEXT in message
        )
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str):  # psycopg
        return sqlstate in _POSTGRES_RETRY_STATES or (
            conflicts and sqlstate == _POSTGRES_UNIQUE_STATE
        )
    return False


def run_in_transaction(
    engine: Engine,
    fn: Callable[[Connection], T],
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    conflicts: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
) -> T:
    """Run ``fn(connection)`` in one transaction, committed when it returns; run it again from
    the start when the database reports a lock wait, deadlock or serialization failure.

    On SQLite the transaction takes the write lock at BEGIN (`write_engine`), so readers that
    write later do not deadlock on lock upgrade. After `attempts` tries the last error is raised
    as a `StoreBusyError` (a `StoreError`) naming the database (password masked). `sleep` and
    `jitter` are for tests.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    writer = write_engine(engine)
    for attempt in range(1, attempts + 1):
        try:
            with writer.begin() as conn:
                return fn(conn)
        except DBAPIError as err:
            if not is_retryable(err, conflicts=conflicts):
                raise
            if attempt == attempts:
                raise StoreBusyError(
                    f"gave up after {attempts} attempts on {mask_url(engine.url)}: "
                    f"{str(err.orig).strip().splitlines()[0]}"
                ) from err
            cap = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1))
            sleep(cap * jitter())
    raise AssertionError("unreachable")  # pragma: no cover
