"""Initial schema: recipients, deliveries, events, actions, ingest bookkeeping.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 17:35:53

House rules for a migration:
- Migrations are the only way the schema is made: change models.py and add a revision together;
  `alembic check` (tests/test_migrations.py) fails on any drift between the two.
- Every revision has a working downgrade; the test walks every revision down and up.
- Use `op.batch_alter_table` for ALTERs, so SQLite (copy-and-move) works like the servers.
- Enums are VARCHARs storing values: adding a value needs no migration, renaming one does.
- Give every string a length (MariaDB indexes need one) and every constraint a name (models.py
  NAMING_CONVENTION), so later revisions can drop it on every backend.
- Times are UTC: UTCDateTime in the models; plain DateTime here (timezone=True on PostgreSQL).
- Data changes are set-based SQL (UPDATE ... WHERE), never Python loops over rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def utc_datetime() -> sa.types.TypeEngine[Any]:
    """The column type of models.UTCDateTime, frozen here so later model edits cannot change
    what this revision made: timezone-aware on PostgreSQL, microseconds on MariaDB, naive UTC
    text on SQLite."""
    return sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("scope", sa.String(length=24), nullable=False),
        sa.Column("target", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("open_key", sa.String(length=400), nullable=True),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("rule", sa.String(length=120), nullable=False),
        sa.Column("detail", sa.String(length=2000), nullable=False),
        sa.Column("evidence", sa.JSON(), nullable=False),
        sa.Column("created_at", utc_datetime(), nullable=False),
        sa.Column("updated_at", utc_datetime(), nullable=False),
        sa.Column("expires_at", utc_datetime(), nullable=True),
        sa.Column("resolved_at", utc_datetime(), nullable=True),
        sa.Column("created_by", sa.String(length=120), nullable=False),
        sa.Column("resolved_by", sa.String(length=120), nullable=True),
        sa.Column("raised_count", sa.Integer(), nullable=False),
        sa.Column("pause_until", utc_datetime(), nullable=True),
        sa.Column("max_rate", sa.Float(), nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("deliveries_since", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_actions")),
        sa.UniqueConstraint("open_key", name=op.f("uq_actions_open_key")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_actions_kind_scope_target", ["kind", "scope", "target"], unique=False
        )
        batch_op.create_index(
            "ix_actions_status_expires_at", ["status", "expires_at"], unique=False
        )

    op.create_table(
        "bookmarks",
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("updated_at", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_bookmarks")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_table(
        "ingest_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("identity", sa.String(length=600), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("format", sa.String(length=24), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("updated_at", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_sources")),
        sa.UniqueConstraint("identity", name=op.f("uq_ingest_sources_identity")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_table(
        "ingested_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=1000), nullable=False),
        sa.Column("recorded_at", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingested_messages")),
        sa.UniqueConstraint("key", name=op.f("uq_ingested_messages_key")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_table(
        "recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("address_key", sa.String(length=320), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("standing", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("standing_since", utc_datetime(), nullable=False),
        sa.Column("suppressed_until", utc_datetime(), nullable=True),
        sa.Column("suppression_action_id", sa.Integer(), nullable=True),
        sa.Column("first_seen_at", utc_datetime(), nullable=False),
        sa.Column("last_event_at", utc_datetime(), nullable=False),
        sa.Column("last_delivered_at", utc_datetime(), nullable=True),
        sa.Column("last_failure_at", utc_datetime(), nullable=True),
        sa.Column("last_event_id", sa.BigInteger(), nullable=True),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_status", sa.String(length=12), nullable=True),
        sa.Column("last_text", sa.String(length=2000), nullable=True),
        sa.Column("events_count", sa.Integer(), nullable=False),
        sa.Column("delivered_count", sa.Integer(), nullable=False),
        sa.Column("deferred_count", sa.Integer(), nullable=False),
        sa.Column("bounced_count", sa.Integer(), nullable=False),
        sa.Column("blocked_count", sa.Integer(), nullable=False),
        sa.Column("complained_count", sa.Integer(), nullable=False),
        sa.Column("expired_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recipients")),
        sa.UniqueConstraint("address_key", name=op.f("uq_recipients_address_key")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("recipients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recipients_domain"), ["domain"], unique=False)
        batch_op.create_index(batch_op.f("ix_recipients_standing"), ["standing"], unique=False)

    op.create_table(
        "rejected_inputs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=600), nullable=False),
        sa.Column("position", sa.String(length=120), nullable=False),
        sa.Column("error", sa.String(length=2000), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("recorded_at", utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_inputs")),
        sa.UniqueConstraint("source", "position", name=op.f("uq_rejected_inputs_source_position")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("first_attempt_at", utc_datetime(), nullable=False),
        sa.Column("last_attempt_at", utc_datetime(), nullable=False),
        sa.Column("next_attempt_at", utc_datetime(), nullable=True),
        sa.Column("expires_at", utc_datetime(), nullable=True),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("last_code", sa.Integer(), nullable=True),
        sa.Column("last_status", sa.String(length=12), nullable=True),
        sa.Column("updated_at", utc_datetime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["recipients.id"],
            name=op.f("fk_deliveries_recipient_id_recipients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint(
            "recipient_id", "message_id", name=op.f("uq_deliveries_recipient_id_message_id")
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_deliveries_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )

    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", utc_datetime(), nullable=False),
        sa.Column("recorded_at", utc_datetime(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=True),
        sa.Column("text", sa.String(length=2000), nullable=True),
        sa.Column("command", sa.String(length=16), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(length=24), nullable=False),
        sa.Column("fault", sa.String(length=24), nullable=False),
        sa.Column("rule", sa.String(length=120), nullable=False),
        sa.Column("decisive", sa.Boolean(), nullable=False),
        sa.Column("throttle", sa.Boolean(), nullable=False),
        sa.Column("pause_seconds", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("position", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["recipients.id"],
            name=op.f("fk_events_recipient_id_recipients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("key", name=op.f("uq_events_key")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_bin",
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_at", ["at"], unique=False)
        batch_op.create_index("ix_events_domain_at", ["domain", "at"], unique=False)
        batch_op.create_index("ix_events_recipient_id_at", ["recipient_id", "at"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes; dropping them one by one first fails on MariaDB, which
    # needs an index on a foreign key column while the constraint exists.
    for table in (
        "events",
        "deliveries",
        "rejected_inputs",
        "recipients",
        "ingested_messages",
        "ingest_sources",
        "bookmarks",
        "actions",
    ):
        op.drop_table(table)
