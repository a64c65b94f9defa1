"""What the Postfix log reader knows of queued messages, kept between the nightly job's runs.

A message stays in a Postfix queue from the cleanup line that names its Message-ID until qmgr
logs it ``removed``: seconds for most, days for one that is deferred (until Postfix gives it up
at ``maximal_queue_lifetime``, 5 days by default, postconf(5)). The log lines of such a message
span runs of the job and rotations of the log, while the reader learns a queue id's Message-ID
and its pending deferrals from earlier lines (`PostfixStream`). This module keeps that state in
the store: a run asks for the queue ids its lines need (`lookup`) and saves what it learnt
(`save`) in the transaction that saves the offset it belongs to, so a run stopped at any point
starts again from a state and an offset that match.

The state is bounded: a queue id is dropped when qmgr (or postsuper) logs it removed, and any
kept longer than `KEEP_FOR` is dropped (`prune`): its message cannot still be queued, and its
removal was not in the logs read (a log the job was not given, lines lost).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, exists, insert, select, tuple_
from sqlalchemy.orm import Session

from deliverability.errors import storable
from deliverability.ingest.postfix import Queued, QueueKey, SavedDeferral, SavedQueueId
from deliverability.store.models import (
    ADDRESS_LENGTH,
    MESSAGE_ID_LENGTH,
    POSTFIX_INSTANCE_LENGTH,
    SYSLOG_HOST_LENGTH,
    PostfixDeferral,
    PostfixQueueId,
)

__all__ = ["KEEP_FOR", "any_kept", "lookup", "prune", "save"]

#: How long a queue id is kept at most: twice Postfix's default maximal_queue_lifetime (5 days,
#: postconf(5)). A message is given up (qmgr's ``status=expired``) once it has been queued that
#: long, at its next delivery attempt, so no message is still queued after it and a little more
#: (the backoff between attempts, at most maximal_backoff_time, 4000 seconds by default). Twice
#: leaves room for a site that raised the lifetime a little, and for logs read late.
KEEP_FOR = timedelta(days=10)

#: Keys per statement: well under SQLite's 32,766 bound parameters (three a key).
_BATCH = 500
#: The longest deferral line kept (MariaDB's TEXT holds 65,535 bytes, four a character at
#: most); a Postfix line is a few hundred characters, syslog daemons cut them at a few KiB.
_LINE_LENGTH = 16_000

_T = TypeVar("_T")


def _batches(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def any_kept(session: Session) -> bool:
    """Whether any queue id is kept."""
    return bool(session.scalar(select(exists().select_from(PostfixQueueId))))


def lookup(session: Session, keys: Collection[QueueKey]) -> dict[QueueKey, SavedQueueId]:
    """The kept state of those of `keys` the store has."""
    wanted = set(keys)
    queue_ids = sorted({key.queue_id for key in wanted})
    found: dict[QueueKey, tuple[str | None, datetime]] = {}
    deferrals: dict[QueueKey, list[SavedDeferral]] = {}
    for batch in _batches(queue_ids):
        # By queue id alone, which the primary key starts with; hosts are told apart here.
        for row in session.scalars(
            select(PostfixQueueId).where(PostfixQueueId.queue_id.in_(batch))
        ):
            key = QueueKey(row.host, row.instance, row.queue_id)
            if key in wanted:
                found[key] = (row.message_id, row.kept_since)
        query = (
            select(PostfixDeferral)
            .where(PostfixDeferral.queue_id.in_(batch))
            .order_by(PostfixDeferral.id)
        )
        for d in session.scalars(query):
            key = QueueKey(d.host, d.instance, d.queue_id)
            if key in wanted:
                saved = SavedDeferral(d.message_id, d.source, d.position, d.line)
                deferrals.setdefault(key, []).append(saved)
    return {
        key: SavedQueueId(message_id, kept_since, tuple(deferrals.get(key, ())))
        for key, (message_id, kept_since) in found.items()
    }


def _keyable(key: QueueKey) -> bool:
    return len(key.host) <= SYSLOG_HOST_LENGTH and len(key.instance) <= POSTFIX_INSTANCE_LENGTH


def save(session: Session, changes: Mapping[QueueKey, Queued | None], now: datetime) -> None:
    """Keep `changes` (a stream's `take_changes`) in the session's transaction: each queue id
    as it is now, or dropped (None). A queue id first kept is stamped with `now`."""
    keys = [key for key in changes if _keyable(key)]
    if not keys:
        return
    for batch in _batches(keys):
        tuples = [tuple(key) for key in batch]
        for table in (PostfixQueueId, PostfixDeferral):
            columns = tuple_(table.host, table.instance, table.queue_id)
            session.execute(delete(table).where(columns.in_(tuples)))
    queue_rows: list[dict[str, Any]] = []
    deferral_rows: list[dict[str, Any]] = []
    for key in keys:
        queued = changes[key]
        if queued is None:
            continue
        if queued.kept_since is None:
            queued.kept_since = now
        message_id = queued.message_id
        if message_id is not None and len(message_id) > MESSAGE_ID_LENGTH:
            message_id = None  # the engine refuses such an id: the queue id stands in for it
        where = {"host": key.host, "instance": key.instance, "queue_id": key.queue_id}
        queue_rows.append({**where, "message_id": message_id, "kept_since": queued.kept_since})
        for recipient, record in queued.deferred.items():
            line = record.raw
            recorded_as = record.message_id or key.queue_id
            if (
                len(recipient) > ADDRESS_LENGTH
                or len(recorded_as) > MESSAGE_ID_LENGTH
                or len(line) > _LINE_LENGTH
            ):
                # Not a line the engine records, or none Postfix writes: not kept.
                continue
            deferral_rows.append(
                {
                    **where,
                    "recipient": recipient,
                    "message_id": recorded_as,
                    "source": storable(record.source)[:1000],
                    "position": record.position[:120],
                    "line": line,
                    "kept_since": queued.kept_since,
                }
            )
    if queue_rows:
        session.execute(insert(PostfixQueueId), queue_rows)
    if deferral_rows:
        session.execute(insert(PostfixDeferral), deferral_rows)


def prune(session: Session, now: datetime) -> int:
    """Drop the queue ids kept longer than `KEEP_FOR` before `now`; how many."""
    cutoff = now - KEEP_FOR
    session.execute(delete(PostfixDeferral).where(PostfixDeferral.kept_since < cutoff))
    result = session.execute(delete(PostfixQueueId).where(PostfixQueueId.kept_since < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
