from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from click.testing import CliRunner
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
)
from sqlalchemy.exc import DBAPIError, OperationalError

from deliverability.cli import cli
from deliverability.commands import db as db_commands
from deliverability.errors import StoreError
from deliverability.store import session
from deliverability.store.models import Base
from deliverability.store.session import (
    UPGRADE_LOCK_TIMEOUT_S,
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


#: jörg with a precomposed ö (NFC) and with o and a combining diaeresis (NFD).
JOERG_NFC = "j\u00f6rg@example.de"
JOERG_NFD = "jo\u0308rg@example.de"
RENE_NFD = "rene\u0301@example.fr"


def test_only_keys_past_ascii_are_read_by_0016_on_every_backend(sa_engine: Engine) -> None:
    # The revision reads the keys with a character past ASCII only, counted in the database: a
    # store of millions of ASCII recipients is one scan, none of its rows sent to Python.
    import importlib

    revision = importlib.import_module("deliverability.migrations.versions.0016_nfc_address_keys")
    keys = {
        1: "ann@example.com",
        2: '"a\\\\b c"@example.com',  # a quoted local part with a backslash: still ASCII
        3: "x~!#$%&'*+/=?^_`{|}-@example.com",
        4: JOERG_NFC,  # 2 octets a character
        5: "\u7528\u6237@example.jp",  # 3
        6: "\U0001f600@example.com",  # 4
        7: JOERG_NFD,
    }
    at = datetime(2026, 11, 1, tzinfo=UTC)
    counts = dict.fromkeys(
        ("events_count", "delivered_count", "deferred_count", "bounced_count", "blocked_count",
         "complained_count", "expired_count"), 0,
    )  # fmt: skip
    with sa_engine.begin() as conn:
        meta = MetaData()
        meta.reflect(conn, only=("recipients",))
        recipients = meta.tables["recipients"]
        conn.execute(
            insert(recipients),
            [{"id": id_, "address": key, "address_key": key, "domain": key.rsplit("@", 1)[1],
              "standing": "retrying", "reason": "undefined", "standing_since": at,
              "first_seen_at": at, "last_event_at": at, **counts}
             for id_, key in keys.items()],
        )  # fmt: skip
        found = conn.execute(
            select(recipients.c.id).where(
                revision._not_ascii(recipients.c.address_key, sa_engine.dialect.name)
            )
        ).scalars()
        assert sorted(found) == [4, 5, 6, 7]


def test_from_0016_one_address_stored_in_two_unicode_forms_is_one_recipient(db_url: str) -> None:
    # Before 0016 a key was the lower-cased local part as given: jörg in NFD (a DSN) and in NFC
    # (the sender) were two recipients, and the suppression of one did not stop a send to the
    # other. The revision re-keys the recipients past ASCII in NFC and merges those that are one.
    from deliverability.addresses import normalize_address
    from deliverability.engine import Engine as Sender
    from deliverability.policy import load_policy

    engine = create_engine(db_url)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    t1, t2 = t0 + timedelta(days=1), t0 + timedelta(days=2)
    try:
        upgrade_schema(engine, "0015")
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("recipients", "deliveries", "events"))
            recipients, deliveries, events = (
                meta.tables[n] for n in ("recipients", "deliveries", "events")
            )
            # The models' table: its JSON column is text to MariaDB's reflection. The revision
            # changes no column of it.
            actions = Base.metadata.tables["actions"]
            counts = dict.fromkeys(
                ("events_count", "delivered_count", "deferred_count", "bounced_count",
                 "blocked_count", "complained_count", "expired_count"), 0,
            )  # fmt: skip

            def recipient(id_: int, address: str, **extra: object) -> dict[str, object]:
                local, domain = address.rsplit("@", 1)
                return {**counts, "id": id_, "address": address,
                        "address_key": f"{local.lower()}@{domain}", "domain": domain,
                        "standing": "delivered", "reason": "delivered", "standing_since": t0,
                        "standing_basis_at": t0, "first_seen_at": t0, "last_event_at": t0,
                        "last_code": None, "suppression_action_id": None, **extra}  # fmt: skip

            conn.execute(
                insert(recipients),
                [
                    # The sender's form, in NFD (its list was), first seen: kept.
                    recipient(1, "Jo\u0308rg@example.de", standing="retrying",
                              reason="mailbox_full", standing_since=t2, standing_basis_at=t2,
                              first_seen_at=t1, last_event_at=t2, last_code=452,
                              events_count=3, deferred_count=1, expired_count=1),
                    # The DSN's form, in NFC: a hard bounce suppressed it.
                    recipient(2, JOERG_NFC, standing="suppressed", reason="user_unknown",
                              standing_since=t1, standing_basis_at=t1,
                              suppression_action_id=1, first_seen_at=t0, last_event_at=t1,
                              last_code=550, events_count=3, bounced_count=1,
                              delivered_count=1, expired_count=1),
                    recipient(3, "ann@example.com"),  # ASCII: untouched
                    recipient(4, RENE_NFD),  # re-keyed, nothing to merge with
                    recipient(5, "zo\u00eb@example.nl"),  # in NFC already: untouched
                    # NFC makes the Greek varia the ASCII grave accent: one with the first.
                    recipient(6, "a`b@example.com", events_count=1, last_event_at=t1),
                    recipient(7, "a\u1fefb@example.com", events_count=2, first_seen_at=t1),
                ],
            )  # fmt: skip
            delivery = {"domain": "example.de", "reason": "undefined", "updated_at": t1}

            def sent(
                id_: int, rid: int, message: str, state: str, attempt: int, at: datetime
            ) -> dict[str, object]:
                return {**delivery, "id": id_, "recipient_id": rid, "message_id": message,
                        "state": state, "attempt": attempt, "first_attempt_at": at,
                        "last_attempt_at": at}  # fmt: skip

            conn.execute(
                insert(deliveries),
                [
                    sent(1, 1, "m1", "deferred", 2, t0),  # the sender's retries of m1
                    sent(2, 2, "m1", "bounced", 1, t1),  # and the DSN that ended them
                    sent(3, 2, "m2", "delivered", 1, t1),
                    sent(4, 1, "m3", "deferred", 1, t2),
                ],
            )
            event = {"recorded_at": t2, "domain": "example.de", "fault": "recipient",
                     "rule": "test", "decisive": False, "throttle": False, "source": "test",
                     "kind": "reply", "restated": False}  # fmt: skip

            def happened(
                id_: int, rid: int, message: str, outcome: str, reason: str, at: datetime
            ) -> dict[str, object]:
                return {**event, "id": id_, "key": f"k{id_}", "recipient_id": rid,
                        "message_id": message, "outcome": outcome, "reason": reason,
                        "at": at}  # fmt: skip

            conn.execute(
                insert(events),
                [
                    happened(1, 1, "m1", "deferred", "mailbox_full", t0),
                    happened(2, 2, "m1", "bounced", "user_unknown", t1),
                    happened(3, 2, "m2", "delivered", "delivered", t1),
                    happened(4, 1, "m3", "deferred", "mailbox_full", t2),
                    # One give-up of m4 in each form: the second recorded is restated.
                    happened(5, 2, "m4", "deferred", "expired", t0),
                    happened(6, 1, "m4", "deferred", "expired", t1),
                ],
            )
            action = {"kind": "suppress", "scope": "address", "reason": "user_unknown",
                      "rule": "hygiene.hard_bounce", "detail": "", "evidence": {},
                      "created_at": t1, "updated_at": t1, "created_by": "policy",
                      "raised_count": 1, "step": 0, "deliveries_since": 0}  # fmt: skip
            # Ids from the table's own sequence (PostgreSQL does not move it past given ones),
            # as the revision's record of the merge takes the next.
            conn.execute(
                insert(actions),
                [
                    {**action, "target": JOERG_NFC, "status": "open",
                     "open_key": f"suppress:address:{JOERG_NFC}"},
                    # Held by a domain incident, in the other form: one of the two stays open.
                    {**action, "target": JOERG_NFD, "status": "pending",
                     "open_key": f"suppress:address:{JOERG_NFD}", "raised_count": 2},
                    {**action, "kind": "release", "target": RENE_NFD,
                     "status": "resolved", "open_key": None, "rule": "manual",
                     "resolved_at": t1, "resolved_by": "support"},
                ],
            )  # fmt: skip
        upgrade_schema(engine)
        assert check_schema(engine) == []
        with engine.connect() as conn:
            kept = {r.id: r._asdict() for r in conn.execute(select(recipients))}
            delivered = {r.id: r._asdict() for r in conn.execute(select(deliveries))}
            history = {r.id: r._asdict() for r in conn.execute(select(events))}
            acted = {r.id: r._asdict() for r in conn.execute(select(actions))}

        def utc(value: datetime | None) -> datetime | None:
            if value is None:
                return None
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

        assert sorted(kept) == [1, 3, 4, 5, 6]
        assert (kept[6]["address_key"], kept[6]["events_count"]) == ("a`b@example.com", 3)
        joerg = kept[1]
        assert (joerg["address"], joerg["address_key"]) == ("J\u00f6rg@example.de", JOERG_NFC)
        assert joerg["address_key"] == normalize_address(JOERG_NFD).key
        # The suppression wins over the later deferral; it stands under its action still.
        assert (joerg["standing"], joerg["reason"]) == ("suppressed", "user_unknown")
        assert (utc(joerg["standing_since"]), joerg["suppressed_until"]) == (t1, None)
        assert joerg["suppression_action_id"] == 1
        assert (utc(joerg["first_seen_at"]), utc(joerg["last_event_at"])) == (t0, t2)
        assert (utc(joerg["standing_basis_at"]), joerg["last_code"]) == (t2, 452)
        # Summed by 0016; then 0018 takes the give-up the merge made restated (a relay's
        # deferral, event 6 below) out of its outcome's counter.
        assert {name: joerg[name] for name in counts} == {
            **counts, "events_count": 6, "deferred_count": 0, "bounced_count": 1,
            "delivered_count": 1, "expired_count": 2,
        }  # fmt: skip
        assert (kept[4]["address"], kept[4]["address_key"]) == ("ren\u00e9@example.fr",) * 2
        assert kept[3]["address_key"] == "ann@example.com"
        assert kept[5]["address_key"] == "zo\u00eb@example.nl"
        # m1: the bounce that ended the retries, with their first attempt and count.
        assert {i: (d["recipient_id"], d["message_id"], d["state"], d["attempt"],
                    utc(d["first_attempt_at"])) for i, d in delivered.items()} == {
            2: (1, "m1", "bounced", 2, t0),
            3: (1, "m2", "delivered", 1, t1),
            4: (1, "m3", "deferred", 1, t2),
        }  # fmt: skip
        assert {e["recipient_id"] for e in history.values()} == {1}
        assert {i for i, e in history.items() if e["restated"]} == {6}
        assert {i: (a["target"], a["status"], a["open_key"]) for i, a in acted.items()
                if i <= 3} == {
            1: (JOERG_NFC, "open", f"suppress:address:{JOERG_NFC}"),
            2: (JOERG_NFC, "resolved", None),
            3: ("ren\u00e9@example.fr", "resolved", None),
        }  # fmt: skip
        assert acted[1]["raised_count"] == 3
        assert acted[2]["resolved_by"] == "migration 0016"
        records = {a["target"]: a for i, a in acted.items() if i > 3}
        assert {(a["kind"], a["scope"], a["rule"], a["status"]) for a in records.values()} == {
            ("alert", "address", "migration.nfc_merge", "resolved")
        }
        assert records["a`b@example.com"]["evidence"]["merged"] == [7]
        record = records[JOERG_NFC]
        assert record["evidence"] == {
            "kept": 1,
            "merged": [2],
            "addresses": ["Jo\u0308rg@example.de", JOERG_NFC],
        }
        # Either form is now the suppressed recipient.
        with Sender(db_url, policy=load_policy()) as sender:
            assert sender.filter_sendable([JOERG_NFD, JOERG_NFC, "ann@example.com"]) == [
                "ann@example.com"
            ]
            assert sender.status(JOERG_NFD).counters["events_count"] == 6
        # Down again: it runs, and the keys stay as they are (a merge is not undone).
        downgrade_schema(engine, "0015")
        with engine.connect() as conn:
            keys = set(conn.execute(select(recipients.c.address_key)).scalars())
        assert keys == {
            JOERG_NFC, "ann@example.com", "ren\u00e9@example.fr", "zo\u00eb@example.nl",
            "a`b@example.com",
        }  # fmt: skip
    finally:
        engine.dispose()


def test_after_0016_an_event_recorded_in_nfd_before_it_is_a_duplicate_given_again(
    db_url: str,
) -> None:
    # A version before 0016 keyed `Jo\u0308rg` by its local part lower-cased, in NFD, and made
    # the idempotency keys of its events of that key. The nightly job reading the same log again
    # after the upgrade (or record_many over the same input) gives the events as they were
    # given then: each is found, and counted no second time (no second strike).
    from conftest import dump_store

    from deliverability.engine import Engine as Sender
    from deliverability.engine import ReplyRecord, event_key
    from deliverability.policy import load_policy
    from deliverability.replies import parse_reply

    engine = create_engine(db_url)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    given = "Jo\u0308rg@Example.de"
    full = "452 4.2.2 mailbox full"
    records = [
        ReplyRecord(recipient=given, reply=full, message_id="m1", attempt=1, at=t0),
        # Given with its id in brackets before 0006 too: the key of both as given.
        ReplyRecord(recipient=given, reply=full, message_id="<m2@x>", attempt=1, at=t0),
    ]
    reply = parse_reply(full)
    then = {
        1: event_key("m1", JOERG_NFD, 1, t0, reply),
        2: hashlib.sha256(
            "\x1f".join(("<m2@x>", JOERG_NFD, "1", "452|4.2.2|mailbox full")).encode()
        ).hexdigest(),
    }
    try:
        upgrade_schema(engine, "0015")
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("recipients", "deliveries", "events"))
            recipients, deliveries, events = (
                meta.tables[n] for n in ("recipients", "deliveries", "events")
            )
            conn.execute(
                insert(recipients),
                {"id": 1, "address": "Jo\u0308rg@example.de", "address_key": JOERG_NFD,
                 "domain": "example.de", "standing": "retrying", "reason": "mailbox_full",
                 "standing_since": t0, "standing_basis_at": t0, "first_seen_at": t0,
                 "last_event_at": t0, "last_code": 452, "events_count": 2,
                 "delivered_count": 0, "deferred_count": 2, "bounced_count": 0,
                 "blocked_count": 0, "complained_count": 0, "expired_count": 0},
            )  # fmt: skip
            conn.execute(
                insert(deliveries),
                [{"id": id_, "recipient_id": 1, "message_id": message, "domain": "example.de",
                  "state": "deferred", "reason": "mailbox_full", "attempt": 1,
                  "first_attempt_at": t0, "last_attempt_at": t0, "updated_at": t0}
                 for id_, message in ((1, "m1"), (2, "m2@x"))],
            )  # fmt: skip
            conn.execute(
                insert(events),
                [{"id": id_, "key": key, "recipient_id": 1, "message_id": message,
                  "at": t0, "recorded_at": t0, "domain": "example.de", "outcome": "deferred",
                  "reason": "mailbox_full", "fault": "recipient", "rule": "test",
                  "decisive": False, "throttle": False, "source": "test", "kind": "reply",
                  "restated": False, "attempt": 1, "code": 452}
                 for (id_, key), message in zip(then.items(), ("m1", "m2@x"), strict=True)],
            )  # fmt: skip
        upgrade_schema(engine)
        before = dump_store(db_url)
        with Sender(db_url, policy=load_policy(), clock=lambda: t0 + timedelta(days=1)) as sender:
            again = sender.record_many(records)
            singles = [
                sender.record(r.recipient, full, message_id=r.message_id, attempt=1, at=t0)
                for r in records
            ]
            status = sender.status(given)
        assert (again.recorded, again.duplicates) == (0, 2)
        assert [decision.duplicate for decision in singles] == [True, True]
        assert dump_store(db_url) == before
        assert (status.counters["events_count"], status.counters["deferred_count"]) == (2, 2)
    finally:
        engine.dispose()


def test_from_0018_a_restated_give_up_counts_in_no_counter_and_the_domain_index_holds_it(
    db_url: str,
) -> None:
    # Before 0018 the engine counted a restated give-up as a second expiry (or, for a relay's
    # DSN, a second deferral or bounce): `status` said 2 expiries for one message. The revision
    # takes the restated events still stored out of their recipients' counters, and puts
    # `restated` at the end of the (domain, at, outcome, kind) index; down, both go back.
    engine = create_engine(db_url)
    at = datetime(2026, 11, 1, tzinfo=UTC)
    try:
        upgrade_schema(engine, "0017")
        with engine.begin() as conn:
            meta = MetaData()
            meta.reflect(conn, only=("recipients", "events"))
            recipients, events = meta.tables["recipients"], meta.tables["events"]
            stored = {
                # events, delivered, deferred, bounced, blocked, complained, expired
                1: (6, 1, 2, 1, 0, 0, 2),  # an expiry told twice, a DSN of it (5.4.7)
                2: (3, 0, 2, 0, 0, 0, 1),  # a relay's DSN (X.4.7), then the engine's expiry
                3: (2, 0, 1, 0, 0, 0, 1),  # nothing restated: untouched
            }
            names = ("events_count", "delivered_count", "deferred_count", "bounced_count",
                     "blocked_count", "complained_count", "expired_count")  # fmt: skip
            conn.execute(
                insert(recipients),
                [{**dict(zip(names, counts, strict=True)), "id": id_,
                  "address": f"r{id_}@example.com", "address_key": f"r{id_}@example.com",
                  "domain": "example.com", "standing": "bounced", "reason": "expired",
                  "standing_since": at, "first_seen_at": at, "last_event_at": at}
                 for id_, counts in stored.items()],
            )  # fmt: skip
            event = {"recorded_at": at, "at": at, "domain": "example.com", "fault": "network",
                     "rule": "test", "decisive": False, "throttle": False, "source": "test",
                     "message_id": "m1", "reason": "expired"}  # fmt: skip
            rows = [
                (1, "reply", "delivered", False),
                (1, "reply", "deferred", False),
                (1, "reply", "deferred", False),
                (1, "expiry", "deferred", False),
                (1, "expiry", "deferred", True),
                (1, "bounce", "bounced", True),
                (2, "reply", "deferred", False),
                (2, "bounce", "deferred", False),
                (2, "expiry", "deferred", True),
                (3, "reply", "deferred", False),
                (3, "expiry", "deferred", False),
            ]
            conn.execute(
                insert(events),
                [{**event, "id": n, "key": f"k{n}", "recipient_id": recipient, "kind": kind,
                  "outcome": outcome, "restated": restated}
                 for n, (recipient, kind, outcome, restated) in enumerate(rows, start=1)],
            )  # fmt: skip

        def counters() -> dict[int, tuple[int, ...]]:
            with engine.connect() as conn:
                columns = [recipients.c.id, *(recipients.c[name] for name in names)]
                return {row[0]: tuple(row[1:]) for row in conn.execute(select(*columns))}

        upgrade_schema(engine)
        assert counters() == {
            1: (6, 1, 2, 0, 0, 0, 1),
            2: (3, 0, 2, 0, 0, 0, 0),
            3: (2, 0, 1, 0, 0, 0, 1),
        }
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("events")}
        assert indexes["ix_events_domain_at_outcome_kind_restated"] == [
            "domain", "at", "outcome", "kind", "restated"
        ]  # fmt: skip
        assert "ix_events_domain_at_outcome_kind" not in indexes
        assert check_schema(engine) == []
        downgrade_schema(engine, "0017")
        assert counters() == stored
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("events")}
        assert indexes["ix_events_domain_at_outcome_kind"] == ["domain", "at", "outcome", "kind"]
        assert "ix_events_domain_at_outcome_kind_restated" not in indexes
    finally:
        engine.dispose()


def _at_0017_with_one_event(engine: Engine) -> None:
    upgrade_schema(engine, "0017")
    at = datetime(2026, 11, 1, tzinfo=UTC)
    with engine.begin() as conn:
        meta = MetaData()
        meta.reflect(conn, only=("recipients", "events"))
        conn.execute(
            insert(meta.tables["recipients"]),
            {"id": 1, "address": "a@example.com", "address_key": "a@example.com",
             "domain": "example.com", "standing": "ok", "reason": "none", "standing_since": at,
             "first_seen_at": at, "last_event_at": at, "events_count": 1, "delivered_count": 1,
             "deferred_count": 0, "bounced_count": 0, "blocked_count": 0, "complained_count": 0,
             "expired_count": 0},
        )  # fmt: skip
        conn.execute(
            insert(meta.tables["events"]),
            {"id": 1, "key": "k1", "recipient_id": 1, "at": at, "recorded_at": at,
             "kind": "reply", "domain": "example.com", "outcome": "delivered", "reason": "none",
             "fault": "none", "rule": "test", "decisive": True, "throttle": False,
             "source": "test", "restated": False},
        )  # fmt: skip


def test_postgresql_index_changes_on_events_leave_the_senders_writing(db_url: str) -> None:
    # A plain CREATE INDEX holds a SHARE lock on `events` until the revision's transaction ends
    # (every sender's INSERT waits for the whole build), and a plain DROP INDEX an ACCESS
    # EXCLUSIVE one. Right after each index statement of the upgrade, a writer must get its lock
    # on `events` at once (NOWAIT: no waiting in the test, a held lock fails it).
    if not db_url.startswith("postgresql"):
        pytest.skip("CREATE INDEX CONCURRENTLY is a PostgreSQL matter")
    engine = create_engine(db_url)
    writer = create_engine(db_url)
    seen: list[tuple[str, str]] = []

    def try_to_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(("CREATE INDEX", "DROP INDEX")):
            return
        try:
            with writer.begin() as other:
                other.exec_driver_sql("LOCK TABLE events IN ROW EXCLUSIVE MODE NOWAIT")
            seen.append((statement.split(" ON ")[0].strip(), "written"))
        except OperationalError:
            seen.append((statement.split(" ON ")[0].strip(), "held back"))

    try:
        _at_0017_with_one_event(engine)
        event.listen(engine, "after_cursor_execute", try_to_write)
        upgrade_schema(engine)
        event.remove(engine, "after_cursor_execute", try_to_write)
        assert seen == [
            (
                "CREATE INDEX CONCURRENTLY ix_events_domain_at_outcome_kind_restated",
                "written",
            ),
            ("DROP INDEX CONCURRENTLY IF EXISTS ix_events_domain_at_outcome_kind", "written"),
        ]
        assert check_schema(engine) == []
    finally:
        writer.dispose()
        engine.dispose()


def test_postgresql_0015_lets_the_senders_write_while_it_looks_for_restated_give_ups(
    db_url: str,
) -> None:
    # 0015 adds `restated` to `events` (ACCESS EXCLUSIVE), then reads every give-up for an
    # earlier one of its delivery: 3.6 s over 1M events, during which, in one transaction with
    # the ALTER, no sender could write an event. The ALTER now commits first.
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL lock matter (MariaDB commits after the ALTER by itself)")
    engine = create_engine(db_url)
    writer = create_engine(db_url)
    seen: list[str] = []

    def try_to_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "EXISTS" not in statement or "earlier" not in statement:
            return
        try:
            with writer.begin() as other:
                other.exec_driver_sql("LOCK TABLE events IN ROW EXCLUSIVE MODE NOWAIT")
            seen.append("written")
        except OperationalError:
            seen.append("held back")

    try:
        upgrade_schema(engine, "0014")
        event.listen(engine, "after_cursor_execute", try_to_write)
        upgrade_schema(engine, "0015")
        event.remove(engine, "after_cursor_execute", try_to_write)
        assert seen == ["written"]
        upgrade_schema(engine)
        assert check_schema(engine) == []
    finally:
        writer.dispose()
        engine.dispose()


def test_postgresql_an_index_a_failed_concurrent_build_left_invalid_is_built_again(
    db_url: str,
) -> None:
    # A concurrent build that fails (cancelled, a lock wait cut short, the server stopped)
    # leaves an INVALID index under its name: run again, the revision must not stop at "already
    # exists", nor keep an index PostgreSQL never reads.
    if not db_url.startswith("postgresql"):
        pytest.skip("invalid indexes are left by PostgreSQL's concurrent builds")
    engine = create_engine(db_url)
    name = "ix_events_domain_at_outcome_kind_restated"
    try:
        _at_0017_with_one_event(engine)
        broken = f"CREATE INDEX CONCURRENTLY {name} ON events ((1 / (id - id)))"
        with (
            engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
            pytest.raises(DBAPIError, match="division by zero"),
        ):
            conn.exec_driver_sql(broken)
        valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%(n)s)"
        with engine.connect() as conn:
            assert conn.exec_driver_sql(valid, {"n": name}).scalar_one() is False
        upgrade_schema(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql(valid, {"n": name}).scalar_one() is True
        assert check_schema(engine) == []
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("events")}
        assert indexes[name] == ["domain", "at", "outcome", "kind", "restated"]
    finally:
        engine.dispose()


def _upgrade_lock_is_free(other: Engine) -> bool:
    """Whether another process could take the upgrade lock now (it is let go at once)."""
    with other.connect() as probe:
        if probe.dialect.name == "postgresql":
            key = session._UPGRADE_LOCK_KEY
            got = probe.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar_one()
            if got:
                probe.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
            return bool(got)
        name = session.mariadb_lock_name("schema_upgrade", other.url.database)
        return bool(probe.execute(select(func.is_free_lock(name))).scalar_one() == 1)


def test_an_upgrade_holds_the_upgrade_lock_from_its_first_revision_to_its_last(
    db_url: str,
) -> None:
    # Two processes upgrading at once (senders starting on a new version) must take turns, as
    # the single transaction of every revision made them: between revisions, and in the
    # autocommit blocks of the concurrent index builds, the lock must still be held.
    if make_url(db_url).get_backend_name() == "sqlite":
        pytest.skip("SQLite's write lock, taken at each revision's BEGIN IMMEDIATE, does it")
    engine = create_engine(db_url)
    other = create_engine(db_url)
    free: list[bool] = []

    def look(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "alembic_version" in statement or "INDEX" in statement:
            free.append(_upgrade_lock_is_free(other))

    try:
        upgrade_schema(engine, "0016")
        event.listen(engine, "after_cursor_execute", look)
        upgrade_schema(engine)
        event.remove(engine, "after_cursor_execute", look)
        assert len(free) > 2
        assert not any(free)
        assert _upgrade_lock_is_free(other)
    finally:
        other.dispose()
        engine.dispose()


def test_the_upgrade_lock_is_named_after_the_database_within_the_length_a_server_takes() -> None:
    # MariaDB's named locks are the whole server's: one name for every database would make the
    # stores of one server take turns to upgrade.
    def name(database: str) -> str:
        return session.mariadb_lock_name("schema_upgrade", database)

    assert name("lists") != name("newsletters")
    names = {name("a" * 63 + "x"), name("a" * 63 + "y")}
    assert len(names) == 2
    assert all(len(name) <= 64 for name in names)


def test_an_upgrade_does_not_wait_for_an_upgrade_of_another_database_on_the_server(
    db_url: str,
) -> None:
    if make_url(db_url).get_backend_name() not in ("mysql", "mariadb"):
        pytest.skip(
            "a MariaDB named lock is the server's: PostgreSQL's advisory lock and "
            "SQLite's write lock are the database's own"
        )
    engine = create_engine(db_url)
    done = threading.Event()
    failed: list[BaseException] = []

    def upgrade() -> None:
        try:
            upgrade_schema(engine)
        except BaseException as err:  # reported below
            failed.append(err)
        finally:
            done.set()

    other_database = session.mariadb_lock_name("schema_upgrade", "another_store_on_this_server")
    try:
        with engine.connect() as holder:
            got = holder.execute(select(func.get_lock(other_database, 0))).scalar_one()
            assert got == 1
            # A daemon thread: were the lock shared, the upgrade would wait for it for a year.
            threading.Thread(target=upgrade, daemon=True).start()
            finished = done.wait(60)
            holder.execute(select(func.release_lock(other_database)))
        assert finished, "the upgrade waited for another database's lock"
        assert not failed, failed
    finally:
        done.wait(60)
        engine.dispose()


def test_an_upgrade_that_is_not_granted_the_upgrade_lock_stops_and_says_so(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if make_url(db_url).get_backend_name() not in ("mysql", "mariadb"):
        pytest.skip("only MariaDB's GET_LOCK gives up (PostgreSQL's advisory lock waits)")
    # A wait of 0 seconds stands for the year an upgrade waits for another one.
    monkeypatch.setattr(session, "_UPGRADE_LOCK_WAIT_S", 0)
    engine = create_engine(db_url)
    name = session.mariadb_lock_name("schema_upgrade", engine.url.database)
    try:
        with engine.connect() as holder:
            assert holder.execute(select(func.get_lock(name, 0))).scalar_one() == 1
            try:
                with pytest.raises(StoreError, match=r"upgrade lock .* was not granted"):
                    upgrade_schema(engine)
            finally:
                holder.execute(select(func.release_lock(name)))
        assert _upgrade_lock_is_free(engine)
    finally:
        engine.dispose()


def _session_setting(conn: Connection, dialect: str) -> tuple[object, object]:
    """The upgrade's lock limit as this session has it, and as a new session gets it."""
    if dialect == "postgresql":
        query = (
            "SELECT current_setting('lock_timeout'), reset_val FROM pg_settings"
            " WHERE name = 'lock_timeout'"
        )
    else:
        query = "SELECT @@SESSION.lock_wait_timeout, @@GLOBAL.lock_wait_timeout"
    now, default = conn.exec_driver_sql(query).one()
    return now, default


def test_an_upgrade_waiting_behind_a_long_transaction_gives_up_with_what_to_do(
    db_url: str,
) -> None:
    # 0015 adds a column to `events` (an ACCESS EXCLUSIVE lock on PostgreSQL, an exclusive
    # metadata lock on MariaDB). Behind a transaction that read `events` and stays open it
    # waits, and every sender's write to `events` queues behind it: the upgrade gives up after
    # its lock timeout instead, says what to do, and leaves the store at 0014.
    dialect = make_url(db_url).get_backend_name()
    if dialect == "sqlite":
        pytest.skip("SQLite's writers wait through busy_timeout, one writer at a time")
    engine = create_engine(db_url, pool_size=1, max_overflow=0)
    holder = create_engine(db_url)
    try:
        upgrade_schema(engine, "0014")
        with holder.connect() as long_transaction:
            long_transaction.exec_driver_sql("SELECT count(*) FROM events").one()
            with pytest.raises(StoreError) as raised:
                upgrade_schema(engine, "0015", lock_timeout=0.2 if dialect == "postgresql" else 1)
            long_transaction.rollback()
        message = str(raised.value)
        assert "waited for 0.2 s" in message or "waited for 1 s" in message
        assert "at revision 0014" in message
        assert "run it again" in message
        assert "--lock-timeout" in message
        assert current_revision(engine) == "0014"
        upgrade_schema(engine)
        assert current_revision(engine) == head_revision()
        # The pool's one connection ran the upgrade: it went back with the server's own limit,
        # not the upgrade's (a sender's statement would fail on it after 10 s of waiting).
        with engine.connect() as conn:
            now, default = _session_setting(conn, dialect)
        assert str(now) == str(default)
    finally:
        holder.dispose()
        engine.dispose()


def test_db_upgrade_takes_its_lock_timeout_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    given: list[float | None] = []
    monkeypatch.setattr(
        db_commands,
        "upgrade_schema",
        lambda engine, *, lock_timeout: given.append(lock_timeout),
    )
    runner = CliRunner()
    args = ["--database-url", db_url, "db", "upgrade"]
    assert runner.invoke(cli, [*args, "--lock-timeout", "2.5"]).exit_code == 0
    assert runner.invoke(cli, args).exit_code == 0
    assert given == [2.5, UPGRADE_LOCK_TIMEOUT_S]
    result = runner.invoke(cli, [*args, "--lock-timeout", "0"])
    assert result.exit_code == 2
    assert "--lock-timeout" in result.output
