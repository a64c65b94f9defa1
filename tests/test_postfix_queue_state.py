"""What the Postfix reader knows of queued messages: told apart by mail host and instance, looked
up from earlier reads a block of lines at a time, handed over as changes to keep, and kept in the
store (`deliverability.store.postfix_queue`) on every backend."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from deliverability.ingest import postfix
from deliverability.ingest.files import Line
from deliverability.ingest.postfix import (
    PostfixStream,
    QueueKey,
    SavedDeferral,
    SavedQueueId,
    read_postfix_log,
)
from deliverability.ingest.records import LogRecord
from deliverability.store import postfix_queue
from deliverability.store.models import PostfixDeferral, PostfixQueueId

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
KEY = QueueKey("mx", "postfix", "3F1A2B")


def cleanup(qid: str, message_id: str, host: str = "mx", program: str = "postfix") -> str:
    return f"Nov 28 03:00:00 {host} {program}/cleanup[7]: {qid}: message-id=<{message_id}>"


def line(qid: str, recipient: str, status: str, host: str = "mx", program: str = "postfix") -> str:
    reply = {
        "sent": "dsn=2.0.0, status=sent (250 2.0.0 OK)",
        "deferred": "dsn=4.4.1, status=deferred (connect to mx.example.net[203.0.113.9]:25: "
        "Connection timed out)",
    }[status]
    return (
        f"Nov 28 03:00:05 {host} {program}/smtp[1]: {qid}: to=<{recipient}>, relay=none, "
        f"delay=1, delays=0/0/1/0, {reply}"
    )


def expired(qid: str) -> str:
    return (
        f"Nov 28 06:00:00 mx postfix/qmgr[9]: {qid}: from=<bounces@news.example.org>, "
        "status=expired, returned to sender"
    )


def removed(qid: str) -> str:
    return f"Nov 28 06:00:01 mx postfix/qmgr[9]: {qid}: removed"


def records(stream: PostfixStream, *lines: str) -> list[LogRecord]:
    return [r for n, text in enumerate(lines) for r in stream.feed(text, f"byte {n}")]


def test_the_same_queue_id_on_two_hosts_or_two_instances_names_two_messages() -> None:
    stream = PostfixStream(now=NOW)
    got = records(
        stream,
        cleanup("3F1A2B", "one@x.example", host="mx1"),
        cleanup("3F1A2B", "two@x.example", host="mx2"),
        cleanup("3F1A2B", "three@x.example", host="mx1", program="postfix-out"),
        line("3F1A2B", "a@example.com", "sent", host="mx2"),
        line("3F1A2B", "b@example.com", "sent", host="mx1", program="postfix-out"),
        line("3F1A2B", "c@example.com", "sent", host="mx1", program="postfix/submission"),
    )
    assert [r.message_id for r in got] == ["two@x.example", "three@x.example", "one@x.example"]


class Saved:
    """A store of queue state in a dict, counting the look-ups asked of it."""

    def __init__(self, kept: Mapping[QueueKey, SavedQueueId] | None = None) -> None:
        self.kept = dict(kept or {})
        self.asked: list[set[QueueKey]] = []

    def __call__(self, keys: Collection[QueueKey]) -> Mapping[QueueKey, SavedQueueId]:
        self.asked.append(set(keys))
        return {key: self.kept[key] for key in keys if key in self.kept}


def _deferral(recipient: str, message_id: str = "m1@x.example") -> SavedDeferral:
    return SavedDeferral(message_id, "mail.log.1", "byte 40", line("3F1A2B", recipient, "deferred"))


def _log(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "mail.log"
    path.write_text("".join(text + "\n" for text in lines))
    return path


def test_a_stream_looks_up_the_queue_ids_it_does_not_know_once_for_a_block_of_lines(
    tmp_path: Path,
) -> None:
    saved = Saved({KEY: SavedQueueId("m1@x.example", NOW, (_deferral("a@example.com"),))})
    stream = PostfixStream(now=NOW, saved=saved)
    path = _log(
        tmp_path,
        cleanup("4B4B4B", "m2@x.example"),
        line("4B4B4B", "z@example.com", "sent"),
        line("3F1A2B", "b@example.com", "sent"),
        expired("3F1A2B"),
    )
    got = [item for _, item in read_postfix_log(path, stream=stream)]
    # Not the queue id whose cleanup line comes first in the block: a new message.
    assert saved.asked == [{KEY}]
    assert [(r.recipient, r.message_id, r.delivery_status) for r in got] == [  # type: ignore[union-attr]
        ("z@example.com", "m2@x.example", "sent"),
        ("b@example.com", "m1@x.example", "sent"),
        ("a@example.com", "m1@x.example", "expired"),
    ]
    expiry = got[-1]
    assert isinstance(expiry, LogRecord)
    # The last deferral's reply, read in an earlier run from another file; the place of the
    # expiry line.
    assert "Connection timed out" in expiry.reply.text
    expiry_start = path.stat().st_size - len(expired("3F1A2B")) - 1
    assert (expiry.source, expiry.position) == (str(path), f"byte {expiry_start}")


def test_a_stream_hands_over_what_changed_for_the_caller_to_keep() -> None:
    stream = PostfixStream(now=NOW, saved=Saved())
    records(
        stream,
        cleanup("3F1A2B", "m1@x.example"),
        line("3F1A2B", "a@example.com", "deferred"),
        cleanup("4B4B4B", "m2@x.example"),
        line("4B4B4B", "z@example.com", "sent"),
        removed("4B4B4B"),
    )
    changes = stream.take_changes()
    # A message queued and gone between two hand-overs is nothing to keep.
    assert list(changes) == [KEY]
    queued = changes[KEY]
    assert queued is not None
    assert (queued.message_id, list(queued.deferred)) == ("m1@x.example", ["a@example.com"])
    assert stream.take_changes() == {}
    queued.kept_since = NOW  # the caller kept it
    records(stream, removed("3F1A2B"))
    assert stream.take_changes() == {KEY: None}


def test_a_queue_id_removed_that_the_stream_never_looked_up_is_dropped_from_the_store() -> None:
    stream = PostfixStream(now=NOW, saved=Saved())
    records(stream, removed("3F1A2B"))
    assert stream.take_changes() == {KEY: None}


def test_a_message_deleted_by_postsuper_is_dropped_as_one_qmgr_removed_is() -> None:
    # `postsuper -d` deletes the queue file itself and logs the removal; qmgr then logs
    # nothing of it, so its line is the last word on that queue id (postsuper(1)).
    stream = PostfixStream(now=NOW, saved=Saved())
    records(stream, cleanup("3F1A2B", "m1@x.example"), line("3F1A2B", "a@example.com", "deferred"))
    queued = stream.take_changes()[KEY]
    assert queued is not None
    queued.kept_since = NOW  # the caller kept it
    records(stream, "Nov 28 06:00:01 mx postfix/postsuper[31]: 3F1A2B: removed")
    assert stream.take_changes() == {KEY: None}
    # Nothing of it is left to expire: an expiry line for a reused id names no one.
    assert records(stream, expired("3F1A2B")) == []


def test_a_reused_queue_id_forgets_the_deferrals_of_its_earlier_message() -> None:
    stream = PostfixStream(now=NOW)
    # The first message's removal was in a log the stream was not given.
    records(stream, cleanup("3F1A2B", "m1@x.example"), line("3F1A2B", "a@example.com", "deferred"))
    records(stream, cleanup("3F1A2B", "m2@x.example"), line("3F1A2B", "b@example.com", "deferred"))
    got = records(stream, expired("3F1A2B"))
    assert [(r.recipient, r.message_id) for r in got] == [("b@example.com", "m2@x.example")]


def test_a_stream_without_a_store_keeps_no_changes() -> None:
    stream = PostfixStream(now=NOW)
    records(stream, cleanup("3F1A2B", "m1@x.example"), line("3F1A2B", "a@example.com", "deferred"))
    assert stream.take_changes() == {}


def test_a_saved_deferral_line_that_no_longer_reads_is_left_out_of_the_expiry() -> None:
    broken = SavedDeferral("m1@x.example", "mail.log.1", "byte 1", "Nov 28 garbage postfix status=")
    kept = SavedQueueId("m1@x.example", NOW, (broken, _deferral("a@example.com")))
    stream = PostfixStream(now=NOW, saved=Saved({KEY: kept}))
    stream.prefetch([Line(0, 10, expired("3F1A2B"))])
    assert [r.recipient for r in records(stream, expired("3F1A2B"))] == ["a@example.com"]


def test_a_resumed_read_with_a_stream_does_not_read_the_lines_before_the_offset_again(
    tmp_path: Path,
) -> None:
    path = _log(
        tmp_path, cleanup("3F1A2B", "m1@x.example"), line("3F1A2B", "a@example.com", "sent")
    )
    start = len(cleanup("3F1A2B", "m1@x.example")) + 1
    stream = PostfixStream(now=NOW, saved=Saved())
    ((_, record),) = read_postfix_log(path, start_offset=start, stream=stream)
    assert record.message_id == "3F1A2B"  # type: ignore[union-attr]


def test_the_stream_says_when_the_records_of_a_line_are_all_handed_out(tmp_path: Path) -> None:
    path = _log(
        tmp_path,
        line("3F1A2B", "a@example.com", "deferred"),
        line("3F1A2B", "b@example.com", "deferred"),
        expired("3F1A2B"),
    )
    stream = PostfixStream(now=NOW, saved=Saved())
    ends = [stream.at_line_end for _ in read_postfix_log(path, stream=stream)]
    assert ends == [True, True, False, True]


# -- the store ------------------------------------------------------------------------------------


def _queued(stream: PostfixStream, *lines: str) -> dict[QueueKey, postfix.Queued | None]:
    records(stream, *lines)
    return stream.take_changes()


def test_kept_queue_ids_are_found_again_by_host_instance_and_queue_id(session: Session) -> None:
    stream = PostfixStream(now=NOW, saved=Saved())
    changes = _queued(
        stream,
        cleanup("3F1A2B", "m1@x.example"),
        line("3F1A2B", "a@example.com", "deferred"),
        cleanup("3F1A2B", "other@x.example", host="mx2"),
        line("5C5C5C", "q@example.com", "deferred"),
    )
    postfix_queue.save(session, changes, NOW)
    session.commit()
    found = postfix_queue.lookup(
        session, [KEY, QueueKey("mx2", "postfix", "3F1A2B"), QueueKey("mx", "postfix", "5C5C5C")]
    )
    assert found[KEY].message_id == "m1@x.example"
    assert found[KEY].kept_since == NOW
    ((deferral),) = found[KEY].deferrals
    assert deferral.line == line("3F1A2B", "a@example.com", "deferred")
    assert (deferral.message_id, deferral.position) == ("m1@x.example", "byte 1")
    assert found[QueueKey("mx2", "postfix", "3F1A2B")].deferrals == ()
    # Deferred before its cleanup line was read: the queue id stands in for the Message-ID.
    unknown = found[QueueKey("mx", "postfix", "5C5C5C")]
    assert (unknown.message_id, unknown.deferrals[0].message_id) == (None, "5C5C5C")
    assert postfix_queue.lookup(session, [QueueKey("mx", "postfix-out", "3F1A2B")]) == {}


def test_saving_a_queue_id_again_replaces_it_and_keeps_when_it_was_first_kept(
    session: Session,
) -> None:
    stream = PostfixStream(now=NOW, saved=Saved())
    postfix_queue.save(
        session,
        _queued(
            stream,
            cleanup("3F1A2B", "m1@x.example"),
            line("3F1A2B", "a@example.com", "deferred"),
            line("3F1A2B", "b@example.com", "deferred"),
        ),
        NOW,
    )
    later = NOW + timedelta(days=1)
    postfix_queue.save(session, _queued(stream, line("3F1A2B", "a@example.com", "sent")), later)
    session.commit()
    (kept,) = postfix_queue.lookup(session, [KEY]).values()
    assert kept.kept_since == NOW
    assert [d.line for d in kept.deferrals] == [line("3F1A2B", "b@example.com", "deferred")]
    postfix_queue.save(session, _queued(stream, removed("3F1A2B")), later)
    session.commit()
    assert session.scalar(select(func.count()).select_from(PostfixQueueId)) == 0
    assert session.scalar(select(func.count()).select_from(PostfixDeferral)) == 0


def test_what_no_column_can_hold_is_not_kept_and_stops_nothing(session: Session) -> None:
    long_host = "h" * 300
    other = QueueKey("mx", "postfix", "5C5C5C")
    stream = PostfixStream(now=NOW, saved=Saved())
    changes = _queued(
        stream,
        # Longer than the engine takes: the queue id stands in for it, as when it is unknown.
        cleanup("3F1A2B", "m" * 300 + "@x.example"),
        cleanup("5C5C5C", "m3@x.example"),
        line("5C5C5C", "a" * 400 + "@example.com", "deferred"),
        line("5C5C5C", "b@example.com", "deferred"),
        cleanup("4B4B4B", "m2@x.example", host=long_host),
    )
    postfix_queue.save(session, changes, NOW)
    session.commit()
    found = postfix_queue.lookup(session, [KEY, other, QueueKey(long_host, "postfix", "4B4B4B")])
    assert sorted(found) == [KEY, other]
    assert found[KEY].message_id is None
    assert [d.line for d in found[other].deferrals] == [line("5C5C5C", "b@example.com", "deferred")]


@pytest.mark.parametrize("age", [timedelta(days=10), timedelta(days=10, seconds=1)])
def test_queue_ids_kept_longer_than_the_bound_are_dropped(session: Session, age: timedelta) -> None:
    stream = PostfixStream(now=NOW, saved=Saved())
    changes = _queued(stream, cleanup("3F1A2B", "m1"), line("3F1A2B", "a@example.com", "deferred"))
    postfix_queue.save(session, changes, NOW)
    dropped = postfix_queue.prune(session, NOW + age)
    session.commit()
    gone = age > postfix_queue.KEEP_FOR
    assert dropped == (1 if gone else 0)
    assert session.scalar(select(func.count()).select_from(PostfixDeferral)) == (0 if gone else 1)
