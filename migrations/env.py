"""Alembic environment: runs the migrations against the store.

Works both ways it is called:
- from the `alembic` command line with alembic.ini (the URL from ``sqlalchemy.url``, else
  ``DELIVERABILITY_DATABASE_URL``, else the default SQLite file);
- programmatically from `deliverability.store.session`, which passes an open connection in
  ``config.attributes["connection"]``: on a server not in a transaction, so that each revision
  runs in one of its own (`upgrade_schema` takes the upgrade lock and sets the lock timeout on
  that connection first); on SQLite in one, which every revision then runs in.

``render_as_batch`` makes ALTER TABLE work on SQLite (copy-and-move), so one migration serves every
backend.
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from deliverability.store.models import Base
from deliverability.store.session import create_engine, resolve_url

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and not config.attributes.get("connection"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        compare_server_default=True,
        # One transaction per revision, each with its revision number: an index built
        # CONCURRENTLY on PostgreSQL must run outside any transaction (migrations/online.py),
        # and the locks a revision takes (0015's ADD COLUMN on `events`) are let go at its end,
        # not held until the last revision of a long upgrade. A revision that fails leaves the
        # store at the one before it, which the next upgrade goes on from. (On SQLite
        # `upgrade_schema` passes a connection already in a transaction: all revisions are in it.)
        transaction_per_migration=True,
    )


def run_migrations_offline() -> None:
    """Emit SQL to standard output instead of running it (`alembic upgrade head --sql`)."""
    context.configure(
        url=resolve_url(config.get_main_option("sqlalchemy.url")),
        target_metadata=target_metadata,
        render_as_batch=True,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(resolve_url(config.get_main_option("sqlalchemy.url")))
    try:
        with engine.connect() as conn:
            _configure(conn)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
