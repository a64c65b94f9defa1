"""The nightly job and a Postfix queue that outlives a run: what the log reader learnt of a queue
id (its Message-ID, its recipients still deferred) is kept in the store with the offset it
belongs to, so the next run, or the next file after a rotation, joins its lines as one read of
the whole log would."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from deliverability import nightly
from deliverability.cli import cli
from deliverability.engine import Engine as DeliverabilityEngine
from deliverability.nightly import run_nightly
from deliverability.store.models import (
    Delivery,
    Event,
    PostfixDeferral,
    PostfixQueueId,
    Recipient,
)
from deliverability.vocabulary import DeliveryState, EventKind, Reason

NIGHT_1 = datetime(2026, 11, 28, 4, 0, tzinfo=UTC)
NIGHT_2 = NIGHT_1 + timedelta(days=1)
MESSAGE_ID = "m1@news.example.org"


@pytest.fixture
def db(db_url: str) -> str:
    return db_url


def _run(
    db_url: str, paths: list[Path], now: datetime, **options: object
) -> nightly.NightlySummary:
    with DeliverabilityEngine(db_url, clock=lambda: now) as engine:
        return run_nightly(engine, paths, now=now, **options)  # type: ignore[arg-type]


def cleanup(qid: str, at: str, message_id: str = MESSAGE_ID, host: str = "mx") -> str:
    return f"Nov {at} {host} postfix/cleanup[7]: {qid}: message-id=<{message_id}>"


def deferred(qid: str, recipient: str, at: str, host: str = "mx") -> str:
    return (
        f"Nov {at} {host} postfix/smtp[1]: {qid}: to=<{recipient}>, "
        "relay=mx.example.com[192.0.2.1]:25, delay=4, delays=0/0/0/4, dsn=4.2.1, "
        "status=deferred (host mx.example.com[192.0.2.1] said: 421 4.2.1 try later "
        "(in reply to RCPT TO command))"
    )


def sent(qid: str, recipient: str, at: str, host: str = "mx") -> str:
    return (
        f"Nov {at} {host} postfix/smtp[1]: {qid}: to=<{recipient}>, "
        "relay=mx.example.com[192.0.2.1]:25, delay=7204, delays=0/7200/0/4, dsn=2.0.0, "
        "status=sent (250 2.0.0 OK)"
    )


def expired(qid: str, at: str) -> str:
    return (
        f"Nov {at} mx postfix/qmgr[9]: {qid}: from=<bounces@news.example.org>, "
        "status=expired, returned to sender"
    )


def removed(qid: str, at: str) -> str:
    return f"Nov {at} mx postfix/qmgr[9]: {qid}: removed"


def write(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def append(path: Path, lines: list[str]) -> None:
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


def rotate(folder: Path, lines: list[str]) -> None:
    """logrotate's default: mail.log becomes mail.log.1 (same file), a new mail.log begins."""
    os.rename(folder / "mail.log", folder / "mail.log.1")
    write(folder / "mail.log", lines)


def _deliveries(db_url: str) -> dict[str, DeliveryState]:
    with DeliverabilityEngine(db_url) as engine, Session(engine.db) as s:
        return {d.message_id: d.state for d in s.scalars(select(Delivery))}


def _events(db_url: str) -> list[tuple[EventKind, str | None, str]]:
    with DeliverabilityEngine(db_url) as engine, Session(engine.db) as s:
        rows = s.execute(
            select(Event.kind, Event.message_id, Recipient.address)
            .join(Recipient, Recipient.id == Event.recipient_id)
            .order_by(Event.id)
        )
        return [(kind, message_id, address) for kind, message_id, address in rows]


def _kept(db_url: str) -> tuple[list[tuple[str, str, str, str | None]], list[tuple[str, str]]]:
    """The queue ids kept in the store (host, instance, queue id, Message-ID) and the deferrals
    kept (queue id, recipient)."""
    with DeliverabilityEngine(db_url) as engine, Session(engine.db) as s:
        ids = sorted(
            (q.host, q.instance, q.queue_id, q.message_id)
            for q in s.scalars(select(PostfixQueueId))
        )
        deferrals = sorted((d.queue_id, d.recipient) for d in s.scalars(select(PostfixDeferral)))
    return ids, deferrals


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "log"
    path.mkdir()
    return path


FIRST_NIGHT = [
    cleanup("3F1A2B", "28 03:00:00"),
    deferred("3F1A2B", "alice@example.com", "28 03:00:05"),
]


def test_a_message_deferred_before_a_rotation_and_delivered_after_it_is_one_delivery(
    db: str, folder: Path
) -> None:
    write(folder / "mail.log", FIRST_NIGHT)
    _run(db, [folder], NIGHT_1)
    rotate(
        folder,
        [sent("3F1A2B", "alice@example.com", "28 05:00:05"), removed("3F1A2B", "28 05:00:05")],
    )
    _run(db, [folder], NIGHT_2)
    # A week on, the engine's own expiry finds nothing of this message still deferred: the
    # delivery after the rotation was joined to its Message-ID, not to the queue id.
    summary = _run(db, [folder], NIGHT_1 + timedelta(days=7))
    assert summary.expired == 0
    assert _deliveries(db) == {MESSAGE_ID: DeliveryState.DELIVERED}
    assert {kind for kind, _, _ in _events(db)} == {EventKind.REPLY}


def test_a_message_deferred_before_a_run_and_delivered_after_it_in_the_same_file_is_joined(
    db: str, folder: Path
) -> None:
    write(folder / "mail.log", FIRST_NIGHT)
    _run(db, [folder], NIGHT_1)
    append(folder / "mail.log", [sent("3F1A2B", "alice@example.com", "28 05:00:05")])
    summary = _run(db, [folder], NIGHT_2)
    assert (
        summary.sources[0].note
        == f"resumed at byte {len(''.join(x + chr(10) for x in FIRST_NIGHT))}"
    )
    assert _deliveries(db) == {MESSAGE_ID: DeliveryState.DELIVERED}


def test_the_first_run_after_the_upgrade_reads_a_resumed_log_for_what_its_offset_left_behind(
    db: str, folder: Path
) -> None:
    write(folder / "mail.log", FIRST_NIGHT)
    _run(db, [folder], NIGHT_1)
    # A store from the version that kept nothing between runs.
    with DeliverabilityEngine(db) as engine, Session(engine.db) as s, s.begin():
        s.execute(delete(PostfixDeferral))
        s.execute(delete(PostfixQueueId))
    append(folder / "mail.log", [sent("3F1A2B", "alice@example.com", "28 05:00:05")])
    _run(db, [folder], NIGHT_2)
    assert _deliveries(db) == {MESSAGE_ID: DeliveryState.DELIVERED}


def test_postfix_giving_up_after_a_rotation_expires_the_recipients_deferred_before_it(
    db: str, folder: Path
) -> None:
    write(
        folder / "mail.log",
        [*FIRST_NIGHT, deferred("3F1A2B", "bob@example.com", "28 03:00:06")],
    )
    _run(db, [folder], NIGHT_1)
    rotate(
        folder,
        [
            sent("3F1A2B", "bob@example.com", "29 05:00:00"),
            expired("3F1A2B", "30 03:00:10"),
            removed("3F1A2B", "30 03:00:10"),
        ],
    )
    _run(db, [folder], NIGHT_1 + timedelta(days=2, hours=1))
    expiries = [(m, r) for kind, m, r in _events(db) if kind is EventKind.EXPIRY]
    assert expiries == [(MESSAGE_ID, "alice@example.com")]
    with DeliverabilityEngine(db) as engine, Session(engine.db) as s:
        expiry = s.scalars(select(Event).where(Event.kind == EventKind.EXPIRY)).one()
    # The reply is the last deferral's, read in the earlier run: why it never got through.
    assert (expiry.code, expiry.status, expiry.reason) == (421, "4.2.1", Reason.EXPIRED)


def test_lines_written_to_the_rotated_file_after_the_last_run_are_read_before_the_new_file(
    db: str, folder: Path
) -> None:
    write(folder / "mail.log", [sent("1A1A1A", "zoe@example.com", "28 02:00:00")])
    _run(db, [folder], NIGHT_1)
    # Between the run and the rotation a message was queued and deferred; it went out after it.
    append(folder / "mail.log", FIRST_NIGHT)
    rotate(folder, [sent("3F1A2B", "alice@example.com", "28 07:00:00")])
    summary = _run(db, [folder], NIGHT_2)
    assert [Path(s.path).name for s in summary.sources] == ["mail.log.1", "mail.log"]
    assert _deliveries(db)[MESSAGE_ID] == DeliveryState.DELIVERED
    assert "3F1A2B" not in _deliveries(db)


def test_a_queue_id_is_kept_while_queued_and_dropped_when_qmgr_removes_it(
    db: str, folder: Path
) -> None:
    write(folder / "mail.log", FIRST_NIGHT)
    _run(db, [folder], NIGHT_1)
    assert _kept(db) == (
        [("mx", "postfix", "3F1A2B", MESSAGE_ID)],
        [("3F1A2B", "alice@example.com")],
    )
    append(
        folder / "mail.log",
        [sent("3F1A2B", "alice@example.com", "28 05:00:05"), removed("3F1A2B", "28 05:00:05")],
    )
    _run(db, [folder], NIGHT_2)
    assert _kept(db) == ([], [])


def test_a_message_queued_and_removed_between_two_checkpoints_is_never_written(
    db: str, folder: Path
) -> None:
    write(
        folder / "mail.log",
        [
            cleanup("3F1A2B", "28 03:00:00"),
            sent("3F1A2B", "alice@example.com", "28 03:00:05"),
            removed("3F1A2B", "28 03:00:05"),
        ],
    )
    _run(db, [folder], NIGHT_1)
    assert _kept(db) == ([], [])


def test_queue_ids_of_two_hosts_and_two_instances_are_kept_apart(db: str, folder: Path) -> None:
    write(
        folder / "mail.log",
        [
            cleanup("3F1A2B", "28 03:00:00", "one@news.example.org", host="mx1"),
            cleanup("3F1A2B", "28 03:00:00", "two@news.example.org", host="mx2"),
            "Nov 28 03:00:00 mx1 postfix-out/cleanup[7]: 3F1A2B: "
            "message-id=<three@news.example.org>",
        ],
    )
    _run(db, [folder], NIGHT_1)
    rotate(
        folder,
        [
            sent("3F1A2B", "alice@example.com", "28 05:00:00", host="mx2"),
            "Nov 28 05:00:01 mx1 postfix-out/smtp[1]: 3F1A2B: to=<carol@example.com>, relay=none, "
            "delay=1, delays=0/0/1/0, dsn=2.0.0, status=sent (250 2.0.0 OK)",
        ],
    )
    _run(db, [folder], NIGHT_2)
    assert _deliveries(db) == {
        "two@news.example.org": DeliveryState.DELIVERED,
        "three@news.example.org": DeliveryState.DELIVERED,
    }


def test_queue_ids_kept_longer_than_twice_postfixs_queue_lifetime_are_dropped(
    db: str, folder: Path
) -> None:
    write(folder / "mail.log", FIRST_NIGHT)
    _run(db, [folder], NIGHT_1)
    write(folder / "other.log", [sent("9C9C9C", "bob@example.com", "28 05:00:00")])
    _run(db, [folder], NIGHT_1 + timedelta(days=9))
    assert len(_kept(db)[0]) == 1
    _run(db, [folder], NIGHT_1 + timedelta(days=10, seconds=1))
    assert _kept(db) == ([], [])


def test_a_dry_run_changes_no_queue_state(db: str, folder: Path) -> None:
    write(folder / "mail.log", FIRST_NIGHT)
    _run(db, [folder], NIGHT_1)
    kept = _kept(db)
    append(
        folder / "mail.log",
        [
            sent("3F1A2B", "alice@example.com", "28 05:00:05"),
            removed("3F1A2B", "28 05:00:05"),
            cleanup("4B4B4B", "28 05:00:06", "m2@news.example.org"),
            deferred("4B4B4B", "bob@example.com", "28 05:00:07"),
        ],
    )
    args = ["--database-url", db, "nightly", str(folder), "--now", NIGHT_2.isoformat()]
    result = CliRunner().invoke(cli, [*args, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert _kept(db) == kept
    # What the dry run did not keep, the real run does.
    assert CliRunner().invoke(cli, args).exit_code == 0
    assert _kept(db) == (
        [("mx", "postfix", "4B4B4B", "m2@news.example.org")],
        [("4B4B4B", "bob@example.com")],
    )


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nightly, "CHUNK", 2)


def test_a_run_stopped_after_recording_a_chunk_but_before_its_checkpoint_loses_no_state(
    db: str, folder: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [
        cleanup("3F1A2B", "28 03:00:00"),
        deferred("3F1A2B", "alice@example.com", "28 03:00:05"),
        deferred("3F1A2B", "bob@example.com", "28 03:00:06"),
        cleanup("4B4B4B", "28 03:00:07", "m2@news.example.org"),
        deferred("4B4B4B", "carol@example.com", "28 03:00:08"),
        sent("4B4B4B", "dave@example.com", "28 03:00:09"),
    ]
    write(folder / "mail.log", lines)
    real = nightly._checkpoint
    calls = 0

    def crash_on_the_second(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(nightly, "_checkpoint", crash_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        _run(db, [folder], NIGHT_1)
    monkeypatch.setattr(nightly, "_checkpoint", real)
    _run(db, [folder], NIGHT_1)
    assert _kept(db) == (
        [
            ("mx", "postfix", "3F1A2B", MESSAGE_ID),
            ("mx", "postfix", "4B4B4B", "m2@news.example.org"),
        ],
        [
            ("3F1A2B", "alice@example.com"),
            ("3F1A2B", "bob@example.com"),
            ("4B4B4B", "carol@example.com"),
        ],
    )
    rotate(folder, [expired("3F1A2B", "30 03:00:10"), expired("4B4B4B", "30 03:00:11")])
    _run(db, [folder], NIGHT_1 + timedelta(days=2))
    expiries = sorted((m, r) for kind, m, r in _events(db) if kind is EventKind.EXPIRY)
    assert expiries == [
        (MESSAGE_ID, "alice@example.com"),
        (MESSAGE_ID, "bob@example.com"),
        ("m2@news.example.org", "carol@example.com"),
    ]


def test_a_checkpoint_never_falls_between_the_expiry_records_of_one_line(
    db: str, folder: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saved at the start of the expiry line, the queue state would already lack the deferrals
    # that line gave up: a run stopped there would read the line again and expire nobody.
    lines = [
        deferred("3F1A2B", "a@example.com", "28 01:00:00"),
        deferred("3F1A2B", "b@example.com", "28 01:00:01"),
        deferred("3F1A2B", "c@example.com", "28 01:00:02"),
        expired("3F1A2B", "28 03:00:00"),
    ]
    write(folder / "mail.log", lines)
    expiry_start = sum(len(line) + 1 for line in lines[:3])
    real = nightly._checkpoint
    offsets: list[int] = []

    def spy(*args: object) -> object:
        offsets.append(args[4])  # type: ignore[arg-type]
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(nightly, "_checkpoint", spy)
    _run(db, [folder], NIGHT_1)
    assert expiry_start not in offsets
    assert offsets[-1] == (folder / "mail.log").stat().st_size
    assert sum(kind is EventKind.EXPIRY for kind, _, _ in _events(db)) == 3


def test_a_folder_is_read_in_name_order_with_rotated_logs_oldest_first(tmp_path: Path) -> None:
    names = [
        "replies.jsonl",
        "mail.log",
        "mail.log.1",
        "mail.log.2.gz",
        "mail.log.10.gz",
        "maillog",
        "maillog-20261128.gz",
        "maillog-20261127",
        "mail.err",
        "bounces.mbox",
    ]
    assert sorted(names, key=lambda n: nightly.reading_order(Path(n))) == [
        "bounces.mbox",
        "mail.err",
        "mail.log.10.gz",
        "mail.log.2.gz",
        "mail.log.1",
        "mail.log",
        "maillog-20261127",
        "maillog-20261128.gz",
        "maillog",
        "replies.jsonl",
    ]
