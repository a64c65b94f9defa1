"""The database backends the store tests run on: SQLite, PostgreSQL and MariaDB.

`tests/conftest.py` parametrises its `db_url` fixture over `BACKEND_NAMES`, so every test that
asks for a database (directly or through `sa_engine` / `session`) runs once per backend; tests
that need no database (the pure core) run once.

How each backend gives every test an empty store, cheaply (`migrated_url`):
- SQLite: a copy of a file migrated to head once per pytest process;
- a server: each pytest process (each xdist worker) owns one database of its own there, named
  after the configured test database plus the process id, created on first use and dropped at
  exit, so two test runs on one machine (or two xdist workers) never see each other's rows. It
  is migrated once; before each later test, other connections to it (left over from the previous
  test) are ended and the tables emptied (on PostgreSQL only those the last test wrote to).
A test marked ``empty_database`` gets a store with no schema at all (`fresh_url`): PostgreSQL
drops and re-creates the `public` schema, MariaDB the database, SQLite has no file yet.

Where the servers are: `DELIVERABILITY_TEST_POSTGRES_URL` and `DELIVERABILITY_TEST_MARIADB_URL`,
else the local defaults below (what `.ci/services.sh` prepares). A server that cannot be reached
makes its tests skip with the reason, unless `DELIVERABILITY_REQUIRE_BACKENDS` (comma separated:
``postgresql,mariadb``) names it: then they fail, so CI can never pass by skipping.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy import URL, Engine, create_engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

REQUIRE_ENV = "DELIVERABILITY_REQUIRE_BACKENDS"


@dataclass(frozen=True)
class ServerBackend:
    name: str
    url_env: str
    default_url: str
    #: The DBAPI module SQLAlchemy needs for it (an install extra of the package).
    driver: str
    extra: str


POSTGRESQL = ServerBackend(
    name="postgresql",
    url_env="DELIVERABILITY_TEST_POSTGRES_URL",
    default_url="postgresql+psycopg://postgres@127.0.0.1:5432/deliverability_test",
    driver="psycopg",
    extra="postgres",
)
MARIADB = ServerBackend(
    name="mariadb",
    url_env="DELIVERABILITY_TEST_MARIADB_URL",
    default_url="mysql+pymysql://root@127.0.0.1:3306/deliverability_test",
    driver="pymysql",
    extra="mysql",
)
SERVERS: dict[str, ServerBackend] = {b.name: b for b in (POSTGRESQL, MARIADB)}

#: Every backend, SQLite first.
BACKEND_NAMES: tuple[str, ...] = ("sqlite", *SERVERS)

_CONNECT_TIMEOUT_S = 5
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def required_backends() -> set[str]:
    """The backends DELIVERABILITY_REQUIRE_BACKENDS names (lower-cased)."""
    raw = os.environ.get(REQUIRE_ENV, "")
    return {part.strip().lower() for part in raw.split(",") if part.strip()}


def backend_params(names: Iterable[str] = BACKEND_NAMES) -> list[Any]:
    """`pytest.param`s for a fixture over `names`; server ones carry the `backend` mark, so
    ``-m "not backend"`` runs the suite on SQLite only."""
    return [
        pytest.param(name, id=name, marks=pytest.mark.backend if name in SERVERS else ())
        for name in names
    ]


def unavailable(name: str, reason: str) -> NoReturn:
    """Skip the test, or fail it when the backend is required."""
    if name in required_backends():
        pytest.fail(f"{name} backend required by {REQUIRE_ENV} but unavailable: {reason}")
    pytest.skip(f"{name} backend unavailable: {reason} (start it, or see .ci/services.sh)")


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'deliverability.db'}"


def _masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def _admin_engine(url: URL) -> Engine:
    """An engine without pooling, for the few administrative statements made here."""
    args: dict[str, Any] = {"connect_timeout": _CONNECT_TIMEOUT_S}
    return create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args=args)


class _Server:
    """One server backend in this pytest process: reachable or not, and its own database."""

    def __init__(self, backend: ServerBackend) -> None:
        self.backend = backend
        self.base_url = make_url(os.environ.get(backend.url_env) or backend.default_url)
        base_db = self.base_url.database or "deliverability_test"
        self.database = f"{base_db}_p{os.getpid()}"
        if not _SAFE_NAME.match(self.database):
            raise ValueError(f"{backend.url_env}: database name {base_db!r} must be [A-Za-z0-9_]")
        if backend is MARIADB and not any(key.startswith("ssl") for key in self.base_url.query):
            # PyMySQL (1.2) tries TLS on every connection unless told otherwise, and first builds
            # a default SSL context, reading the system's certificate store: about 45 ms a
            # connection, two of them in a MariaDB test's set-up of about 0.3 s. The test server
            # is local; a URL that names ssl options keeps them.
            self.base_url = self.base_url.update_query_dict({"ssl_disabled": "true"})
        self.url = self.base_url.set(database=self.database)
        self.problem: str | None = None
        self.created = False

    def _server_url(self) -> URL:
        """Where administrative statements run: a database that always exists."""
        if self.backend is POSTGRESQL:
            return self.base_url.set(database="postgres")
        return self.base_url.set(database=None)

    def create(self) -> None:
        try:
            __import__(self.backend.driver)
        except ImportError:
            self.problem = (
                f"the {self.backend.driver} driver is not installed "
                f"(pip install 'deliverability[{self.backend.extra}]')"
            )
            return
        engine = _admin_engine(self._server_url())
        try:
            with engine.connect() as conn:
                if self.backend is POSTGRESQL:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
                    conn.execute(text(f'CREATE DATABASE "{self.database}"'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{self.database}`"))
                    conn.execute(text(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4"))
        except SQLAlchemyError as err:
            first_line = str(err.orig if hasattr(err, "orig") else err).strip().splitlines()[0]
            self.problem = f"cannot reach {_masked(self.base_url)}: {first_line}"
            return
        finally:
            engine.dispose()
        self.created = True
        atexit.register(self.drop)

    def reset(self) -> None:
        """Make the database empty: no tables, no schema revision, nobody else connected."""
        if self.backend is POSTGRESQL:
            engine = _admin_engine(self.url)
            try:
                with engine.connect() as conn:
                    self._end_other_sessions(conn)
                    conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                    conn.execute(text("CREATE SCHEMA public"))
            finally:
                engine.dispose()
            return
        engine = _admin_engine(self._server_url())
        try:
            with engine.connect() as conn:
                self._end_other_sessions(conn)
                conn.execute(text(f"DROP DATABASE IF EXISTS `{self.database}`"))
                conn.execute(text(f"CREATE DATABASE `{self.database}` CHARACTER SET utf8mb4"))
        finally:
            engine.dispose()

    def emptied(self) -> bool:
        """Empty every table of a database already migrated to head, for the next test.

        Far cheaper than dropping the database and running every migration again. False when
        the database is not at head (a test migrated it down, or this is the first use), and
        the caller resets and migrates it instead.
        """
        from deliverability.store.models import Base
        from deliverability.store.session import head_revision

        tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
        engine = _admin_engine(self.url)
        try:
            with engine.connect() as conn:
                try:
                    revision = conn.execute(
                        text("SELECT version_num FROM alembic_version")
                    ).scalar()
                except SQLAlchemyError:
                    return False
                if revision != head_revision():
                    return False
                # A session a previous test left open would hold locks that TRUNCATE waits on.
                self._end_other_sessions(conn)
                if self.backend is POSTGRESQL:
                    # Only the tables the last test wrote to (rows, or a sequence it moved):
                    # TRUNCATE costs about 4 ms a table even when the table is empty.
                    touched = conn.execute(
                        text(" UNION ALL ".join(_touched_test(t) for t in tables))
                    ).scalars()
                    names = ", ".join(f'"{t}"' for t in touched)
                    if names:
                        conn.execute(text(f"TRUNCATE TABLE {names} RESTART IDENTITY CASCADE"))
                else:
                    conn.execute(text("SET FOREIGN_KEY_CHECKS = 0"))
                    for table in tables:
                        conn.execute(text(f"TRUNCATE TABLE `{table}`"))
                    conn.execute(text("SET FOREIGN_KEY_CHECKS = 1"))
            return True
        except SQLAlchemyError:
            return False
        finally:
            engine.dispose()

    def _end_other_sessions(self, conn: Any) -> None:
        if self.backend is POSTGRESQL:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            return
        ids = conn.execute(
            text(
                "SELECT id FROM information_schema.processlist"
                " WHERE db = :db AND id <> CONNECTION_ID()"
            ),
            {"db": self.database},
        ).scalars()
        for thread_id in list(ids):
            # It may have ended by itself in the meantime.
            with contextlib.suppress(SQLAlchemyError):
                conn.execute(text(f"KILL CONNECTION {int(thread_id)}"))

    def drop(self) -> None:
        engine = _admin_engine(self._server_url())
        try:
            with engine.connect() as conn:
                if self.backend is POSTGRESQL:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'))
                else:
                    conn.execute(text(f"DROP DATABASE IF EXISTS `{self.database}`"))
        except SQLAlchemyError:
            pass  # best effort at exit; .ci/services.sh starts CI from a clean server anyway
        finally:
            engine.dispose()


def _touched_test(table: str) -> str:
    """A PostgreSQL SELECT giving `table`'s name when it holds rows or its id sequence moved."""
    from deliverability.store.models import Base

    moved = (
        f" OR pg_sequence_last_value(pg_get_serial_sequence('\"{table}\"', 'id')) IS NOT NULL"
        if "id" in Base.metadata.tables[table].c
        else ""
    )
    return f"SELECT '{table}' WHERE EXISTS (SELECT 1 FROM \"{table}\"){moved}"


_servers: dict[str, _Server] = {}


def _server(name: str) -> _Server:
    server = _servers.get(name)
    if server is None:
        server = _servers[name] = _Server(SERVERS[name])
        server.create()
    return server


_template: list[Path] = []


def _sqlite_template() -> Path:
    """A SQLite file at the latest revision, made once per test process, nothing in its log."""
    if _template and _template[0].exists():
        return _template[0]
    from deliverability.store.session import create_engine as store_engine
    from deliverability.store.session import upgrade_schema

    folder = Path(tempfile.mkdtemp(prefix="deliverability-template-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "template.db"
    engine = store_engine(f"sqlite:///{path}")
    try:
        upgrade_schema(engine)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    _template[:] = [path]
    return path


def migrated_url(name: str, tmp_path: Path) -> str:
    """A URL to a database at the latest revision with every table empty, for one test.

    Migrates once per test process and backend, then empties the tables between tests; a
    test that leaves the schema elsewhere (migrations walked down) gets a fresh one next time.
    """
    if name == "sqlite":
        # A copy of a file migrated once per process: a fresh migration costs about 0.25 s.
        shutil.copyfile(_sqlite_template(), tmp_path / "deliverability.db")
        return sqlite_url(tmp_path)
    server = _server(name)
    if server.problem is not None:
        unavailable(name, server.problem)
    if server.emptied():
        return server.url.render_as_string(hide_password=False)
    url = fresh_url(name, tmp_path)
    from deliverability.store.session import create_engine as store_engine
    from deliverability.store.session import upgrade_schema

    engine = store_engine(url)
    try:
        upgrade_schema(engine)
    finally:
        engine.dispose()
    return url


def fresh_url(name: str, tmp_path: Path) -> str:
    """A URL to a fresh, empty database (no schema yet) on backend `name`, for one test.

    Skips (or fails, when required) when the backend cannot be reached.
    """
    if name == "sqlite":
        return sqlite_url(tmp_path)
    server = _server(name)
    if server.problem is not None:
        unavailable(name, server.problem)
    try:
        server.reset()
    except SQLAlchemyError as err:
        unavailable(name, f"cannot reset {server.database}: {err}")
    return server.url.render_as_string(hide_password=False)
