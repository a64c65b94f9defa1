"""SQLAlchemy 2 models: current state beside an append-only event history.

House rules: every time is timezone-aware UTC (`UTCDateTime`); every enum is stored by its string
value in a VARCHAR (no native enum types, so adding a value needs no migration); every string has a
length (MariaDB needs one for indexes). The schema is made only by the Alembic migrations in
`migrations/`; a test runs `alembic check` so models and migrations never drift.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeEngine

from deliverability.hygiene import BLOCK_FAULTS
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    DeliveryState,
    EventKind,
    Fault,
    Outcome,
    Reason,
    Standing,
)

# Stable constraint names on every backend, so migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: RFC 5321 4.5.3.1: 64 octets of local part + "@" + 255 of domain.
ADDRESS_LENGTH = 320
DOMAIN_LENGTH = 255
MESSAGE_ID_LENGTH = 255
TEXT_LENGTH = 2000


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as UTC and always returned timezone-aware.

    SQLite and MariaDB have no time-zone-aware type: values are stored as naive UTC there and
    given their zone back on load. Naive datetimes are refused on the way in, so a local time can
    never be stored as if it were UTC. MariaDB gets microsecond precision (DATETIME(6)).
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(DateTime(timezone=True))
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def enum_column(enum: type[StrEnum]) -> SAEnum:
    """An enum stored by value in a VARCHAR, with no CHECK constraint and no native type."""
    return SAEnum(
        enum,
        values_callable=lambda e: [m.value for m in e],
        native_enum=False,
        create_constraint=False,
        length=24,
        validate_strings=True,
    )


#: MariaDB/MySQL: compare keys byte for byte. The usual server default (utf8mb4_general_ci) makes a
#: unique index treat 'José' and 'jose ' as one value; keys here are compared exactly (addresses are
#: lower-cased in Python first). Ignored by SQLite and PostgreSQL.
MYSQL_TABLE_OPTIONS = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
RECIPIENT_TABLE_OPTIONS = {**MYSQL_TABLE_OPTIONS, "postgresql_with": {"fillfactor": 70}}


#: The WHERE of the block index (`Event`, `ix_events_blocks`), `false` the dialect's way of
#: writing it: a block is a `blocked` outcome or a deferral of the sender's or the message's
#: fault (`BLOCK_FAULTS`), and never a push-back (`deliverability.hygiene.evidence_of`; the
#: reasons it leaves out, a policy's, are checked on the rows). The queries write these two
#: terms exactly so (`store.hygiene._is_blocked`): SQLite uses a partial index only for a query
#: whose WHERE holds its terms as written (https://www.sqlite.org/partialindex.html, section 3).
#: The faults are equalities joined by OR, not an IN list, which PostgreSQL would keep as
#: `= ANY (ARRAY[...])`: so what it reflects reads as the models' WHERE does (the test that
#: compares the two, tests/test_migrations.py).
BLOCKS_WHERE = (
    "throttle = {false} AND (outcome = "
    f"'{Outcome.BLOCKED.value}' OR (outcome = '{Outcome.DEFERRED.value}' AND ("
    + " OR ".join(f"fault = '{fault.value}'" for fault in BLOCK_FAULTS)
    + ")))"
)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Recipient(Base):
    """One address, normalised (see addresses.py), with its standing and the counters the
    hygiene rules and reports read."""

    __tablename__ = "recipients"
    # PostgreSQL: room on each page for updated rows (migration 0004 says why).
    __table_args__ = RECIPIENT_TABLE_OPTIONS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: As first seen (local part case kept).
    address: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    #: Compared form: local part lower-cased; unique.
    address_key: Mapped[str] = mapped_column(String(ADDRESS_LENGTH), unique=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), index=True)
    standing: Mapped[Standing] = mapped_column(enum_column(Standing), index=True)
    reason: Mapped[Reason] = mapped_column(enum_column(Reason), default=Reason.UNDEFINED)
    standing_since: Mapped[datetime] = mapped_column(UTCDateTime())
    #: The time of the delivery result the standing follows: a result older than this (recorded
    #: late, or by another writer first) does not change the standing, so the standing is the
    #: same whatever order events are recorded in.
    standing_basis_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    suppressed_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    suppression_action_id: Mapped[int | None] = mapped_column(Integer, nullable=True)

    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_event_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_status: Mapped[str | None] = mapped_column(String(12), nullable=True)
    last_text: Mapped[str | None] = mapped_column(String(TEXT_LENGTH), nullable=True)

    # Counters (every event counts once; idempotency keeps replays from counting twice).
    events_count: Mapped[int] = mapped_column(Integer, default=0)
    delivered_count: Mapped[int] = mapped_column(Integer, default=0)
    deferred_count: Mapped[int] = mapped_column(Integer, default=0)
    bounced_count: Mapped[int] = mapped_column(Integer, default=0)
    blocked_count: Mapped[int] = mapped_column(Integer, default=0)
    complained_count: Mapped[int] = mapped_column(Integer, default=0)
    expired_count: Mapped[int] = mapped_column(Integer, default=0)

    deliveries: Mapped[list[Delivery]] = relationship(back_populates="recipient")


class Delivery(Base):
    """One message to one recipient, and where its delivery stands."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("recipient_id", "message_id"),
        Index("ix_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_LENGTH))
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH))
    state: Mapped[DeliveryState] = mapped_column(enum_column(DeliveryState))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    first_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    reason: Mapped[Reason] = mapped_column(enum_column(Reason), default=Reason.UNDEFINED)
    last_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_status: Mapped[str | None] = mapped_column(String(12), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    recipient: Mapped[Recipient] = relationship(back_populates="deliveries")


class Event(Base):
    """Append-only history: every reply, bounce, complaint, auto-reply and expiry recorded.

    `key` is the idempotency key (a hash of message id, recipient, attempt and reply by default):
    recording the same event twice changes nothing.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_recipient_id_at", "recipient_id", "at"),
        # Outcome, kind and restated last: per-domain reports (an expiry is no attempt, a
        # give-up reported again is counted once) and hygiene counts by outcome read the index
        # only (migrations 0003, 0008, 0018).
        Index(
            "ix_events_domain_at_outcome_kind_restated",
            "domain",
            "at",
            "outcome",
            "kind",
            "restated",
        ),
        Index("ix_events_at", "at"),
        # The push-backs alone, for the throttle rule's counts (hygiene._PUSHBACKS_IN_RANGE,
        # migration 0012 says why). Partial on SQLite and PostgreSQL: only push-back rows have
        # an entry, so an ordinary event costs nothing more to write. Their planners use it
        # only for a query whose WHERE holds this WHERE as written: SQLite matches the term
        # `throttle = 1` literally (https://www.sqlite.org/partialindex.html, section 3),
        # PostgreSQL proves `throttle` from `throttle = true` but not from `throttle IS true`
        # (https://www.postgresql.org/docs/current/indexes-partial.html). MariaDB has no
        # partial indexes: every event has an entry there, `throttle` before `at` so that the
        # equality `throttle = true` narrows the range to the push-backs.
        Index(
            "ix_events_pushbacks",
            "domain",
            "throttle",
            "at",
            sqlite_where=text("throttle = 1"),
            postgresql_where=text("throttle"),
        ),
        # The blocks: a `blocked` outcome or a deferral of the sender's or the message's fault,
        # never a push-back, for the repeated-blocks rule's windows (hygiene._is_blocked,
        # migrations 0013 and 0014 say why). Partial on SQLite and PostgreSQL, as the push-back
        # index, with the WHERE the queries hold as written (`BLOCKS_WHERE`). MariaDB has no
        # partial indexes: every event has an entry there, `outcome` before `at` so that
        # `outcome IN ('blocked', 'deferred')` narrows the range, `fault` and `throttle` after
        # it so that the other deferrals are ruled out from the entries (index condition
        # pushdown), not their rows.
        Index(
            "ix_events_blocks",
            "domain",
            "outcome",
            "at",
            "fault",
            "throttle",
            sqlite_where=text(BLOCKS_WHERE.format(false="0")),
            postgresql_where=text(BLOCKS_WHERE.format(false="false")),
        ),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    kind: Mapped[EventKind] = mapped_column(enum_column(EventKind))
    recipient_id: Mapped[int] = mapped_column(ForeignKey("recipients.id", ondelete="CASCADE"))
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH))
    message_id: Mapped[str | None] = mapped_column(String(MESSAGE_ID_LENGTH), nullable=True)
    attempt: Mapped[int | None] = mapped_column(Integer, nullable=True)
    code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[str | None] = mapped_column(String(12), nullable=True)
    text: Mapped[str | None] = mapped_column(String(TEXT_LENGTH), nullable=True)
    command: Mapped[str | None] = mapped_column(String(16), nullable=True)
    outcome: Mapped[Outcome] = mapped_column(enum_column(Outcome))
    reason: Mapped[Reason] = mapped_column(enum_column(Reason))
    fault: Mapped[Fault] = mapped_column(enum_column(Fault))
    rule: Mapped[str] = mapped_column(String(120))
    decisive: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The destination pushed back (Verdict.throttle): 421, 452, rate-limit texts.
    throttle: Mapped[bool] = mapped_column(Boolean, default=False)
    #: A provider rule's own throttle pause in seconds (Verdict.pause), else NULL.
    pause_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Where it came from: "api", or the path of the file it was read from, as the job was given it.
    source: Mapped[str] = mapped_column(String(255), default="api")
    position: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: A give-up (reason `expired`) of a delivery that had one recorded before it: the same
    #: give-up reported again (the engine's expiry and then Postfix's `status=expired`, or a
    #: relay's log line and its DSN). Kept in history; no second soft strike (migration 0015).
    #: A server default, so that writers naming the columns they fill (bulk loads) need not;
    #: written '0', which every backend reads as false and reflects alike for `alembic check`.
    restated: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")


class MinuteCount(Base):
    """Per domain and minute: how many of its events were `bounced` outcomes and how many were
    attempts (a reply to an attempt; an expiry is none). Appended by every writer of events, a
    row or more per minute; a minute's count is the sum of its rows (`deliverability.store.
    minutes`). The domain-incident rule reads these first, not every event around a bounce."""

    __tablename__ = "minute_counts"
    __table_args__ = (
        Index("ix_minute_counts_domain_minute", "domain", "minute"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH))
    #: Whole minutes since 1970-01-01 00:00 UTC.
    minute: Mapped[int] = mapped_column(BigInteger)
    bounced: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer)


class Action(Base):
    """A list-hygiene action: suppress an address, throttle a destination, alert the sender.

    `open_key` is ``kind:scope:target`` while the action is open or pending and NULL once it is
    resolved, expired or discarded: its unique index is what makes re-raising an action refresh
    it instead of duplicating it, even with many writers.
    """

    __tablename__ = "actions"
    __table_args__ = (
        Index("ix_actions_kind_scope_target", "kind", "scope", "target"),
        Index("ix_actions_status_expires_at", "status", "expires_at"),
        MYSQL_TABLE_OPTIONS,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[ActionKind] = mapped_column(enum_column(ActionKind))
    scope: Mapped[ActionScope] = mapped_column(enum_column(ActionScope))
    target: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    status: Mapped[ActionStatus] = mapped_column(enum_column(ActionStatus))
    open_key: Mapped[str | None] = mapped_column(String(400), unique=True, nullable=True)
    reason: Mapped[Reason] = mapped_column(enum_column(Reason))
    rule: Mapped[str] = mapped_column(String(120))
    detail: Mapped[str] = mapped_column(String(TEXT_LENGTH), default="")
    #: Evidence: event ids, counts, window, the policy numbers that applied.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Who raised or changed it: "policy" for rules, else the person or program named.
    created_by: Mapped[str] = mapped_column(String(120), default="policy")
    resolved_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    #: How many times the same action was raised again (refreshed).
    raised_count: Mapped[int] = mapped_column(Integer, default=1)
    #: Throttles: paused until, suggested maximum messages per minute, consecutive deliveries
    #: seen since (the throttle lifts after the policy's number of them).
    pause_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    max_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    step: Mapped[int] = mapped_column(Integer, default=0)
    deliveries_since: Mapped[int] = mapped_column(Integer, default=0)


class DomainProvider(Base):
    """A recipient domain learned to be hosted by a provider group of the policy.

    The engine writes it when an event names the MX host that answered (a Postfix ``relay=``,
    a DSN's ``Remote-MTA``, a reply log's ``mx_host``) and that host matches a group's
    ``mx_suffixes``. The store's throttles then treat the domain as if the policy listed it in
    that group's ``domains`` (the policy's own lists win; a group the policy no longer names
    stops applying). A newer sighting by an MX of no group deletes the row (the domain moved
    away), and ``prune`` deletes rows not seen since its cutoff.
    """

    __tablename__ = "domain_providers"
    __table_args__ = (Index("ix_domain_providers_provider", "provider"), MYSQL_TABLE_OPTIONS)

    domain: Mapped[str] = mapped_column(String(DOMAIN_LENGTH), primary_key=True)
    #: The provider group's name, as in ``[throttle.providers.NAME]``.
    provider: Mapped[str] = mapped_column(String(120))
    #: The MX host seen (at `last_seen_at`), lower-case, without trailing dot, [ip] or :port.
    mx_host: Mapped[str] = mapped_column(String(DOMAIN_LENGTH))
    #: The times of the events (not of recording) that first and last showed this group; the
    #: last is refreshed once a sighting is an hour newer (not a write per chunk).
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IngestSource(Base):
    """How far each input source has been read (a log file's identity and offset)."""

    __tablename__ = "ingest_sources"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The source's identity: a path, plus the device/inode or a fingerprint of its first bytes,
    #: so a rotated file is read from the start.
    identity: Mapped[str] = mapped_column(String(600), unique=True)
    path: Mapped[str] = mapped_column(String(1000))
    format: Mapped[str] = mapped_column(String(24))
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    items: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class IngestedMessage(Base):
    """A bounce message already read (by a hash of its bytes), so a re-run skips it."""

    __tablename__ = "ingested_messages"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(1000))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


#: Postfix queue ids: 5 to 20 characters as the log reader reads them (hexadecimal short ids,
#: or the longer ones of ``enable_long_queue_ids``).
QUEUE_ID_LENGTH = 20
#: A syslog host name (RFC 5424 section 6.2.4: at most 255 characters).
SYSLOG_HOST_LENGTH = 255
#: A Postfix instance's syslog name (``postfix``, ``postfix-out``).
POSTFIX_INSTANCE_LENGTH = 100


class PostfixQueueId(Base):
    """A queue id the Postfix log reader met and whose message may still be queued: what a
    later run needs to join its lines (`deliverability.store.postfix_queue`).

    Keyed by the queue it is an id in: the syslog host, the Postfix instance and the id.
    """

    __tablename__ = "postfix_queue_ids"
    __table_args__ = MYSQL_TABLE_OPTIONS

    #: First, so that a look-up by queue ids reads the primary key.
    queue_id: Mapped[str] = mapped_column(String(QUEUE_ID_LENGTH), primary_key=True)
    host: Mapped[str] = mapped_column(String(SYSLOG_HOST_LENGTH), primary_key=True)
    instance: Mapped[str] = mapped_column(String(POSTFIX_INSTANCE_LENGTH), primary_key=True)
    #: From the cleanup line; None when that line was not read.
    message_id: Mapped[str | None] = mapped_column(String(MESSAGE_ID_LENGTH), nullable=True)
    #: When a run first kept it: entries older than the bound are dropped.
    kept_since: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class PostfixDeferral(Base):
    """A recipient of a kept queue id that is still deferred: its last deferral line, whose
    reply an expiry of the message reports."""

    __tablename__ = "postfix_deferrals"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    queue_id: Mapped[str] = mapped_column(String(QUEUE_ID_LENGTH), index=True)
    host: Mapped[str] = mapped_column(String(SYSLOG_HOST_LENGTH))
    instance: Mapped[str] = mapped_column(String(POSTFIX_INSTANCE_LENGTH))
    recipient: Mapped[str] = mapped_column(String(ADDRESS_LENGTH))
    #: As the deferral was recorded with (its queue id's Message-ID, or the queue id).
    message_id: Mapped[str] = mapped_column(String(MESSAGE_ID_LENGTH))
    source: Mapped[str] = mapped_column(String(1000))
    position: Mapped[str] = mapped_column(String(120))
    line: Mapped[str] = mapped_column(Text)
    kept_since: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


#: A SHA-256 digest in hex. On MariaDB in ASCII: a unique key with the 600 + 120 characters of
#: utf8mb4 (4 bytes each) beside it would pass InnoDB's 3072-byte limit on an index key.
HEX_DIGEST = String(64).with_variant(
    mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)


class RejectedInput(Base):
    """Input that could not be read: where, why, and the raw text (cut to a sane length).

    An item is its source, its position and what was there (`raw_digest`): the position alone
    repeats when a rotated log has a new bad line at an old one's offset.
    """

    __tablename__ = "rejected_inputs"
    __table_args__ = (UniqueConstraint("source", "position", "raw_digest"), MYSQL_TABLE_OPTIONS)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(600))
    position: Mapped[str] = mapped_column(String(120))
    error: Mapped[str] = mapped_column(String(TEXT_LENGTH))
    raw: Mapped[str] = mapped_column(Text, default="")
    #: SHA-256 (hex) of `raw` as stored (deliverability.store.rejected.raw_digest).
    raw_digest: Mapped[str] = mapped_column(HEX_DIGEST)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Bookmark(Base):
    """Named positions the jobs keep: the last event id the nightly hygiene pass evaluated."""

    __tablename__ = "bookmarks"
    __table_args__ = MYSQL_TABLE_OPTIONS

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
