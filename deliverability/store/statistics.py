"""The planner's statistics on PostgreSQL, kept up while a store grows fast.

PostgreSQL plans every query from the statistics ANALYZE gathers (row counts, the common values
of `outcome` and `reason`, ...). Its autovacuum daemon refreshes a table's statistics once
`autovacuum_analyze_threshold` + `autovacuum_analyze_scale_factor` x its rows have changed (50 +
10% by default), looking every `autovacuum_naptime` (one minute); the PostgreSQL documentation,
"Routine Vacuuming", section "Updating Planner Statistics" and "The Autovacuum Daemon". That
keeps up with a store in steady use, but not with one that grows from nothing in one go (a first
import of a year of logs, eight senders starting on a new store): for its first minutes the
hygiene rules' queries are planned for tables of a few rows. Measured on PostgreSQL 15 with 36,500
events recorded through `record_many` into a new store (240 addresses, a reply every second):
the soft-strike rule walked every suppression for each event it judged (3.0 s a chunk, 0.9 s with
current statistics), the destination rule read every block of the store for each domain
(1.25 s a chunk, 0.7 ms with them); the whole run took 58.5 s, 16.3 s with an ANALYZE after
every chunk.

So an `Engine` on PostgreSQL counts the events it records and, once they are many against what
the last ANALYZE saw of `events` (`stale`), runs ANALYZE on the store's tables itself, after a
chunk's commit, outside its transaction. ANALYZE reads a sample of each table (at most 300 x
`default_statistics_target` rows), so its cost does not grow with the table, and with the growth
factor below it runs a few times while a store grows by orders of magnitude, then no more than
autovacuum would. Writers in other processes take turns through an advisory lock, and one that
finds the lock taken or a table locked skips its turn: statistics are an optimisation, so a
failed refresh is logged and never fails the recording that came before it (already committed).

MariaDB's InnoDB recalculates a table's persistent statistics by itself, in the background, once
a tenth of it changed (`innodb_stats_auto_recalc`); SQLite's planner uses statistics only where
ANALYZE was run, and the store's queries are written for its plans without them: neither needs
this.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

__all__ = ["ANALYZED_TABLES", "CHECK_EVERY", "GROWTH", "MIN_EVENTS", "Statistics", "stale"]

logger = logging.getLogger(__name__)

#: The tables the hygiene rules, the sender's questions and the reports query.
ANALYZED_TABLES = ("events", "recipients", "deliveries", "actions", "minute_counts")
#: Events recorded by this engine before it asks the server how current its statistics are.
CHECK_EVERY = 1_000
#: No refresh for fewer new events than this: a store this small is planned well either way.
MIN_EVENTS = 1_000
#: A refresh once this engine's new events are this share of what the last ANALYZE counted: a
#: store one engine fills from nothing is analysed each time it grew by half (about 1k, 2k,
#: 3k, 4.5k, ... events, as its chunks end).
GROWTH = 0.5

#: Any 64-bit key: b"dlvstats" read as an integer.
_LOCK_KEY = int.from_bytes(b"dlvstats", "big") & 0x7FFF_FFFF_FFFF_FFFF
_LOCK_TIMEOUT_MS = 1_000


def stale(new_events: int, counted: float) -> bool:
    """Whether `new_events` since the last ANALYZE, which counted `counted` events (-1 or 0:
    the table was never analysed), make `events`' statistics worth gathering again."""
    return new_events >= MIN_EVENTS and new_events >= GROWTH * max(counted, 0.0)


class Statistics:
    """Keeps the planner's statistics current for one `Engine` (a no-op but on PostgreSQL).

    `recorded(n)` after every committed chunk. Safe to call from several threads: the counters
    are only ever a hint (a lost increment delays a refresh by one chunk).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.enabled = engine.dialect.name == "postgresql"
        #: Events this engine recorded since its last ANALYZE (another writer's, or
        #: autovacuum's, raise the count `stale` compares them with).
        self.since_analyze = 0
        self._since_check = 0
        #: How many ANALYZE runs this engine made (for tests and benchmarks).
        self.refreshes = 0

    def recorded(self, events: int) -> None:
        if not self.enabled or events <= 0:
            return
        self.since_analyze += events
        self._since_check += events
        if self._since_check < CHECK_EVERY:
            return
        self._since_check = 0
        try:
            self._refresh()
        except SQLAlchemyError as err:
            # The chunk is committed; a sender must not see it fail for want of statistics.
            logger.warning("could not refresh the planner statistics: %s", err)

    def _refresh(self) -> None:
        """Analyse the store's tables when what the last ANALYZE counted of `events` is stale."""
        with self.engine.connect() as conn:
            counted = conn.exec_driver_sql(
                "SELECT reltuples FROM pg_class WHERE oid = to_regclass('events') AND relkind = 'r'"
            ).scalar()
            if counted is None:
                # No plain `events` table (partitioned by hand, docs/scaling.md): its partitions
                # are autovacuum's, and ANALYZE of the parent reads every one of them.
                self.enabled = False
                return
            if not stale(self.since_analyze, float(counted)):
                return
            turn = conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({_LOCK_KEY})").scalar()
            if not turn:
                conn.rollback()
                return
            # A table another session holds (autovacuum analysing it, a schema change) is
            # skipped after a second, not waited for.
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = {_LOCK_TIMEOUT_MS}")
            conn.exec_driver_sql("ANALYZE " + ", ".join(ANALYZED_TABLES))
            conn.commit()
        self.refreshes += 1
        self.since_analyze = 0
