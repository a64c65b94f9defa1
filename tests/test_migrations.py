from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, insert, inspect, select

from deliverability.store.models import Base
from deliverability.store.session import (
    alembic_config,
    check_schema,
    create_engine,
    current_revision,
    downgrade_schema,
    head_revision,
    upgrade_schema,
)

#: These tests walk migrations from an empty database.
pytestmark = pytest.mark.empty_database

REPO = Path(__file__).resolve().parents[1]


def _revisions_oldest_first() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_there_is_exactly_one_head() -> None:
    assert len(ScriptDirectory.from_config(alembic_config()).get_heads()) == 1


def test_upgrade_to_head_makes_every_table_of_the_models(sa_engine: Engine) -> None:
    assert _tables(sa_engine) == set(Base.metadata.tables)
    assert current_revision(sa_engine) == head_revision()


def test_models_and_migrations_do_not_drift(sa_engine: Engine) -> None:
    assert check_schema(sa_engine) == []


def _predicate(where: object) -> str:
    """An index's WHERE as text to compare: without parentheses, spaces or case, nor the casts
    PostgreSQL writes in what it reflects (`(outcome)::text = 'blocked'::text`)."""
    text = str(where).replace("::text", "").replace("(", "").replace(")", "")
    return "".join(text.lower().split())


def test_partial_indexes_keep_the_where_of_the_models(sa_engine: Engine) -> None:
    # `alembic check` compares an index's columns, not its WHERE: a migration that made the
    # push-back or the block index whole, or gave it another predicate (one the hygiene queries
    # no longer match), would pass it. SQLite and PostgreSQL reflect the predicate; MariaDB has
    # none.
    dialect = sa_engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        pytest.skip("partial indexes are a SQLite and PostgreSQL matter")
    inspector = inspect(sa_engine)
    expected: dict[str, str | None] = {}
    found: dict[str, str | None] = {}
    for table in Base.metadata.sorted_tables:
        for index in table.indexes:
            where = index.dialect_options[dialect]["where"]
            expected[str(index.name)] = None if where is None else _predicate(where)
        for reflected in inspector.get_indexes(table.name):
            where = reflected.get("dialect_options", {}).get(f"{dialect}_where")
            found[str(reflected["name"])] = None if where is None else _predicate(where)
    assert expected["ix_events_pushbacks"] is not None
    assert expected["ix_events_blocks"] is not None
    assert {name: found.get(name, "(missing)") for name in expected} == expected


def test_every_revision_walks_down_and_up_again(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        revisions = _revisions_oldest_first()
        for rev in revisions:
            upgrade_schema(engine, rev)
            assert current_revision(engine) == rev
        for index in range(len(revisions) - 1, -1, -1):
            below = revisions[index - 1] if index > 0 else "base"
            downgrade_schema(engine, below)
            assert current_revision(engine) == (None if below == "base" else below)
        assert _tables(engine) == set()
        upgrade_schema(engine)
        assert check_schema(engine) == []
    finally:
        engine.dispose()


def test_a_store_without_the_schema_reports_drift(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        assert check_schema(engine) != []
    finally:
        engine.dispose()


def test_alembic_ini_at_the_top_of_a_checkout_runs_the_same_migrations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ini = REPO / "alembic.ini"
    if not ini.exists():
        pytest.skip("alembic.ini is only in a checkout, not in an installed copy")
    monkeypatch.chdir(REPO)
    config = Config(str(ini))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "head")
    engine = create_engine(url)
    try:
        assert current_revision(engine) == head_revision()
        assert check_schema(engine) == []
    finally:
        engine.dispose()


def test_mariadb_tables_compare_keys_byte_for_byte(sa_engine: Engine) -> None:
    if sa_engine.dialect.name not in ("mysql", "mariadb"):
        pytest.skip("table collations are a MariaDB/MySQL matter")
    with sa_engine.connect() as conn:
        collations = dict(
            conn.exec_driver_sql(
                "SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME != 'alembic_version'"
            ).all()
        )
    assert collations
    assert set(collations.values()) == {"utf8mb4_bin"}


def test_postgresql_recipients_leave_room_on_each_page_for_updated_rows(sa_engine: Engine) -> None:
    if sa_engine.dialect.name != "postgresql":
        pytest.skip("fillfactor is a PostgreSQL storage parameter")
    with sa_engine.connect() as conn:
        options = conn.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE relname = 'recipients'"
        ).scalar_one()
    assert options == ["fillfactor=70"]
    downgrade_schema(sa_engine, "0003")
    with sa_engine.connect() as conn:
        options = conn.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE relname = 'recipients'"
        ).scalar_one()
    assert options is None
    upgrade_schema(sa_engine)


def test_message_ids_lose_their_angle_brackets_unless_the_bare_id_is_already_there(
    db_url: str,
) -> None:
    # Stores written before 0006 kept the brackets a sender gave the API; ingest sources never
    # did. A delivery recorded both ways keeps its two rows.
    engine = create_engine(db_url)
    try:
        upgrade_schema(engine, "0005")
        at = datetime(2026, 11, 1, tzinfo=UTC)
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("recipients", "deliveries", "events"))
            recipients, deliveries, events = (
                meta.tables[n] for n in ("recipients", "deliveries", "events")
            )
            counters = dict.fromkeys(
                (
                    "events_count",
                    "delivered_count",
                    "deferred_count",
                    "bounced_count",
                    "blocked_count",
                    "complained_count",
                    "expired_count",
                ),
                0,
            )
            conn.execute(
                insert(recipients),
                [
                    {
                        "id": 1,
                        "address": "ann@example.com",
                        "address_key": "ann@example.com",
                        "domain": "example.com",
                        "standing": "retrying",
                        "reason": "undefined",
                        "standing_since": at,
                        "first_seen_at": at,
                        "last_event_at": at,
                        **counters,
                    }
                ],
            )
            delivery = {
                "recipient_id": 1,
                "domain": "example.com",
                "state": "deferred",
                "attempt": 1,
                "first_attempt_at": at,
                "last_attempt_at": at,
                "reason": "undefined",
                "updated_at": at,
            }
            conn.execute(
                insert(deliveries),
                [
                    {**delivery, "id": 1, "message_id": "<m1@list.example>"},
                    {**delivery, "id": 2, "message_id": "<m2@list.example>"},
                    {**delivery, "id": 3, "message_id": "m2@list.example"},
                    {**delivery, "id": 4, "message_id": "m3@list.example"},
                ],
            )
            event = {
                "at": at,
                "recorded_at": at,
                "kind": "reply",
                "recipient_id": 1,
                "domain": "example.com",
                "outcome": "deferred",
                "reason": "undefined",
                "fault": "unknown",
                "rule": "test",
                "decisive": False,
                "throttle": False,
                "source": "api",
            }
            conn.execute(
                insert(events),
                [
                    {**event, "id": 1, "key": "k1", "message_id": "<m1@list.example>"},
                    {**event, "id": 2, "key": "k2", "message_id": "m3@list.example"},
                    {**event, "id": 3, "key": "k3", "message_id": None},
                ],
            )
        upgrade_schema(engine)
        with engine.connect() as conn:
            kept = dict(conn.execute(select(deliveries.c.id, deliveries.c.message_id)).all())
            history = dict(conn.execute(select(events.c.key, events.c.message_id)).all())
        assert kept == {
            1: "m1@list.example",
            2: "<m2@list.example>",
            3: "m2@list.example",
            4: "m3@list.example",
        }
        assert history == {"k1": "m1@list.example", "k2": "m3@list.example", "k3": None}
        assert check_schema(engine) == []
    finally:
        engine.dispose()


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_rejected_inputs_are_told_apart_by_their_raw_text_from_0007_on(db_url: str) -> None:
    # Before 0007 a rejected item was (source, position) alone: a rotated log's new bad line at
    # the same offset was never stored. Stored rows get the digest of their raw text.
    engine = create_engine(db_url)
    try:
        upgrade_schema(engine, "0006")
        at = datetime(2026, 11, 1, tzinfo=UTC)
        old = [
            {"id": 1, "source": "replies.jsonl", "position": "byte 0", "raw": "{broken"},
            {"id": 2, "source": "replies.jsonl", "position": "byte 9", "raw": "caf\u00e9"},
            {"id": 3, "source": "api", "position": "3", "raw": ""},
        ]
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("rejected_inputs",))
            rejected = meta.tables["rejected_inputs"]
            conn.execute(insert(rejected), [{**r, "error": "bad", "recorded_at": at} for r in old])
        upgrade_schema(engine)
        assert check_schema(engine) == []
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("rejected_inputs",))
            rejected = meta.tables["rejected_inputs"]
            digests = dict(conn.execute(select(rejected.c.id, rejected.c.raw_digest)).all())
            assert digests == {r["id"]: _digest(r["raw"]) for r in old}
            conn.execute(
                insert(rejected),
                {
                    "id": 4,
                    "source": "replies.jsonl",
                    "position": "byte 0",
                    "raw": "{new line",
                    "raw_digest": _digest("{new line"),
                    "error": "bad",
                    "recorded_at": at,
                },
            )
        # Down again, (source, position) must be unique: the first row of each position stays.
        downgrade_schema(engine, "0006")
        with engine.connect() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("rejected_inputs",))
            kept = conn.execute(select(meta.tables["rejected_inputs"].c.id)).scalars().all()
        assert sorted(kept) == [1, 2, 3]
    finally:
        engine.dispose()


def test_from_0009_an_expiry_is_no_recipients_last_failed_attempt(db_url: str) -> None:
    # Before 0009 an expiry moved last_failure_at (report undeliverable's last_attempt) to the
    # give-up time. The revision sets it to the latest failed reply or bounce message, for the
    # recipients with an expiry only.
    engine = create_engine(db_url)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    gave_up = at + timedelta(days=5)
    try:
        upgrade_schema(engine, "0008")
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("recipients", "events"))
            recipients, events = meta.tables["recipients"], meta.tables["events"]
            recipient = {
                "domain": "example.com",
                "standing": "retrying",
                "reason": "undefined",
                "standing_since": at,
                "first_seen_at": at,
                "last_event_at": gave_up,
                "events_count": 2,
                "delivered_count": 0,
                "deferred_count": 1,
                "bounced_count": 0,
                "blocked_count": 0,
                "complained_count": 0,
                "expired_count": 1,
                "last_failure_at": gave_up,
            }

            def named(id_: int, local: str, **extra: object) -> dict[str, object]:
                address = f"{local}@example.com"
                return {**recipient, "id": id_, "address": address, "address_key": address, **extra}

            conn.execute(
                insert(recipients),
                [
                    named(1, "a"),  # a deferral, then the engine's expiry
                    named(2, "b"),  # a relay's expiry alone: no attempt of its own refused
                    named(3, "c", expired_count=0),  # no expiry: untouched, whatever its events
                ],
            )
            event = {
                "recorded_at": gave_up,
                "domain": "example.com",
                "reason": "mailbox_full",
                "fault": "recipient",
                "rule": "test",
                "decisive": False,
                "throttle": False,
                "source": "test",
                "outcome": "deferred",
                "kind": "reply",
            }
            conn.execute(
                insert(events),
                [
                    {**event, "id": 1, "key": "k1", "recipient_id": 1, "at": at},
                    {**event, "id": 2, "key": "k2", "recipient_id": 1, "at": gave_up,
                     "kind": "expiry"},
                    {**event, "id": 3, "key": "k3", "recipient_id": 2, "at": gave_up,
                     "kind": "expiry"},
                    {**event, "id": 4, "key": "k4", "recipient_id": 3, "at": at},
                ],
            )  # fmt: skip
        upgrade_schema(engine)
        with engine.connect() as conn:
            last = dict(conn.execute(select(recipients.c.id, recipients.c.last_failure_at)).all())

        def utc(value: datetime | None) -> datetime | None:
            if value is None:
                return None
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

        assert {k: utc(v) for k, v in last.items()} == {1: at, 2: None, 3: gave_up}
        assert check_schema(engine) == []
    finally:
        engine.dispose()


def test_from_0011_an_expiry_keeps_the_fault_of_its_deliverys_last_deferral(db_url: str) -> None:
    # Before 0011 every expiry was stored with the fault "unknown" (and was a soft strike). The
    # revision gives each the fault of the latest deferral of its recipient and message at or
    # before it, so an expiry after a blocklisting stops counting against the address.
    engine = create_engine(db_url)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    gave_up = at + timedelta(days=5)
    try:
        upgrade_schema(engine, "0010")
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("recipients", "events"))
            recipients, events = meta.tables["recipients"], meta.tables["events"]
            counts = dict.fromkeys(
                ("events_count", "delivered_count", "deferred_count", "bounced_count",
                 "blocked_count", "complained_count", "expired_count"), 0,
            )  # fmt: skip
            conn.execute(
                insert(recipients),
                [{**counts, "id": 1, "address": "a@example.com", "address_key": "a@example.com",
                  "domain": "example.com", "standing": "retrying", "reason": "undefined",
                  "standing_since": at, "first_seen_at": at, "last_event_at": gave_up}],
            )  # fmt: skip
            event = {"recorded_at": gave_up, "recipient_id": 1, "domain": "example.com",
                     "reason": "blocked", "rule": "test", "decisive": False, "throttle": False,
                     "source": "test", "outcome": "deferred"}  # fmt: skip

            def row(
                id_: int, message: str, when: datetime, kind: str, fault: str
            ) -> dict[str, object]:
                return {**event, "id": id_, "key": f"k{id_}", "message_id": message, "at": when,
                        "kind": kind, "fault": fault}  # fmt: skip

            conn.execute(
                insert(events),
                [
                    row(1, "m1", at, "reply", "destination"),
                    row(2, "m1", at + timedelta(days=1), "reply", "sender"),  # the latest
                    row(3, "m1", gave_up, "expiry", "unknown"),
                    row(4, "m2", at, "reply", "network"),
                    row(5, "m2", gave_up, "expiry", "unknown"),
                    row(6, "m3", gave_up, "expiry", "unknown"),  # no deferral: stays
                    row(7, "m4", gave_up, "expiry", "unknown"),
                    row(8, "m4", gave_up + timedelta(hours=1), "reply", "sender"),  # after it
                    # A relay's give-up by DSN (reason expired), then the engine's own expiry:
                    # both take the blocklisting's fault, never each other's.
                    row(9, "m5", at, "reply", "sender"),
                    {**row(10, "m5", gave_up, "bounce", "unknown"), "reason": "expired"},
                    {**row(11, "m5", gave_up + timedelta(days=1), "expiry", "unknown"),
                     "reason": "expired"},
                ],
            )  # fmt: skip
        upgrade_schema(engine)
        with engine.connect() as conn:
            faults = dict(conn.execute(select(events.c.id, events.c.fault)).all())
        assert faults == {1: "destination", 2: "sender", 3: "sender", 4: "network",
                          5: "network", 6: "unknown", 7: "unknown", 8: "sender", 9: "sender",
                          10: "sender", 11: "sender"}  # fmt: skip
        assert check_schema(engine) == []
        downgrade_schema(engine, "0010")
        with engine.connect() as conn:
            faults = dict(conn.execute(select(events.c.id, events.c.fault)).all())
        assert {faults[i] for i in (3, 5, 6, 7, 10, 11)} == {"unknown"}
    finally:
        engine.dispose()


def test_from_0015_a_give_up_its_delivery_already_had_is_restated(db_url: str) -> None:
    # Before 0015 a delivery given up twice (the engine's expiry, then Postfix's line or a
    # relay's DSN for it) was two soft strikes. The revision marks every give-up of a recipient
    # and message recorded after another as restated, so it counts no second strike.
    engine = create_engine(db_url)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        upgrade_schema(engine, "0014")
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("recipients", "events"))
            recipients, events = meta.tables["recipients"], meta.tables["events"]
            counts = dict.fromkeys(
                ("events_count", "delivered_count", "deferred_count", "bounced_count",
                 "blocked_count", "complained_count", "expired_count"), 0,
            )  # fmt: skip
            conn.execute(
                insert(recipients),
                [{**counts, "id": id_, "address": f"{local}@example.com",
                  "address_key": f"{local}@example.com", "domain": "example.com",
                  "standing": "bounced", "reason": "expired", "standing_since": at,
                  "first_seen_at": at, "last_event_at": at}
                 for id_, local in ((1, "a"), (2, "b"))],
            )  # fmt: skip
            event = {"recorded_at": at, "domain": "example.com", "fault": "network",
                     "rule": "test", "decisive": False, "throttle": False,
                     "source": "test"}  # fmt: skip

            def row(
                id_: int,
                recipient: int,
                message: str | None,
                days: int,
                kind: str,
                outcome: str = "deferred",
                reason: str = "expired",
            ) -> dict[str, object]:
                return {**event, "id": id_, "key": f"k{id_}", "recipient_id": recipient,
                        "message_id": message, "at": at + timedelta(days=days), "kind": kind,
                        "outcome": outcome, "reason": reason}  # fmt: skip

            conn.execute(
                insert(events),
                [
                    row(1, 1, "m1", 0, "reply", reason="network_error"),  # a deferral
                    row(2, 1, "m1", 5, "expiry"),  # the engine gives up
                    row(3, 1, "m1", 6, "expiry"),  # Postfix says so the next day
                    row(4, 1, "m1", 7, "bounce", "bounced"),  # and its DSN: 5.4.7
                    # Recorded first, dated last: the first recorded counts.
                    row(5, 1, "m2", 9, "bounce"),  # a relay's DSN with 4.4.7
                    row(6, 1, "m2", 8, "expiry"),
                    row(7, 2, "m1", 6, "expiry"),  # another recipient's delivery
                    row(8, 1, "m3", 5, "expiry"),  # another message
                    row(9, 1, None, 5, "expiry"),  # no message: no delivery to tell
                    row(10, 1, None, 6, "expiry"),
                    row(11, 1, "m3", 6, "reply", reason="mailbox_full"),  # no give-up
                ],
            )
        upgrade_schema(engine)
        with engine.connect() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("events",))
            column = meta.tables["events"].c
            restated = dict(conn.execute(select(column.id, column.restated)).all())
        assert {id_ for id_, flag in restated.items() if flag} == {3, 4, 6}
        assert len(restated) == 11
        assert check_schema(engine) == []
        downgrade_schema(engine, "0014")
        with engine.connect() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("events",))
        assert "restated" not in meta.tables["events"].c
    finally:
        engine.dispose()
