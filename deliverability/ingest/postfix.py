"""Postfix logs: one delivery result per recipient line, joined to the message's Message-ID.

Postfix logs every delivery attempt of every recipient through its delivery agents (smtp, lmtp,
local, virtual, error, discard, pipe, retry) as ``QUEUEID: to=<...>, relay=..., delay=...,
delays=..., dsn=X.Y.Z, status=sent|deferred|bounced (text)``; the remote server's reply, when
there was one, follows ``said:`` in the text. The cleanup daemon logs the Message-ID once per
queue id, and the queue manager logs ``status=expired, returned to sender`` when a message has
been deferred past its lifetime (``maximal_queue_lifetime``) and ``removed`` when the queue file
is gone. See the Postfix documentation's "Postfix logging" and DSN_README pages.

Lines are matched by what they say, not their order; every other syslog line (connects,
disconnects, ``from=`` lines, other programs' lines) is passed over quietly. A line that is no
syslog line at all is rejected: a file of another format read as a Postfix log is told so.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple, TypeVar

from deliverability.clock import ensure_utc
from deliverability.errors import DeliverabilityError, IngestError
from deliverability.ingest.files import (
    SYSLOG_STAMP,
    Line,
    ReadLimits,
    read_lines,
    starts_like_syslog,
)
from deliverability.ingest.records import LogRecord, Rejected, normalize_message_id, position_of
from deliverability.replies import Reply, StatusCode, parse_reply, parse_status

__all__ = [
    "DELIVERY_AGENTS",
    "LogRecord",
    "PostfixStream",
    "QueueKey",
    "QueueLookup",
    "Queued",
    "Rejected",
    "SavedDeferral",
    "SavedQueueId",
    "parse_postfix_line",
    "read_postfix_log",
]

#: The Postfix programs that log one line per recipient delivery attempt (Postfix manual pages
#: smtp(8), lmtp(8), local(8), virtual(8), error(8), discard(8), pipe(8); "retry" is error(8)
#: under another name).
DELIVERY_AGENTS = frozenset(
    {"smtp", "lmtp", "local", "virtual", "error", "discard", "pipe", "retry"}
)

# Postfix's status words and what they mean here. With soft_bounce=yes (postconf(5)) a permanent
# failure is logged as SOFTBOUNCE and kept in the queue: a deferral.
_STATUSES = {
    "sent": "sent",
    "deferred": "deferred",
    "bounced": "bounced",
    "expired": "expired",
    "softbounce": "deferred",
}
# Address verification probes (ADDRESS_VERIFICATION_README) are not deliveries.
_PROBES = frozenset({"deliverable", "undeliverable"})

# The syslog header: a BSD syslog stamp (RFC 3164 section 4.1.2, no year, no zone) or an
# RFC 3339 one (rsyslog's high-precision format, journald's short-iso), the host, then a Postfix
# program: "postfix/smtp[123]:", multi-instance "postfix-out/smtp", service paths
# "postfix/submission/smtpd".
#
# Or the RFC 5424 format (section 6: "<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID
# STRUCTURED-DATA MSG"), as rsyslog's RSYSLOG_SyslogProtocol23Format and syslog-ng's syslog()
# destination write it: the Postfix program is the APP-NAME and its process id the PROCID, each
# field one space apart (section 6); STRUCTURED-DATA is "-" or SD-ELEMENTs "[id name="value"]"
# whose values escape '"', '\' and ']' with a backslash (section 6.3.3); MSG may start with a
# byte order mark (section 6.4). The TIMESTAMP is an RFC 3339 one (section 6.2.3), read as above.
_SD_ELEMENT = r'\[(?:[^\]"\\]|"(?:[^"\\]|\\.)*")*\]'
_HEADER_RE = re.compile(
    r"(?P<pri><\d{1,3}>[1-9]\d{0,2} )?"
    r"(?:(?P<syslog>(?P<mon>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<hms>\d\d:\d\d:\d\d))(?:\.\d+)?"
    r"|(?P<iso>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:?\d\d)?))"
    r"\s+(?P<host>\S+)\s+(?P<program>postfix[\w.-]*(?:/[\w.-]+)*?)/(?P<agent>[\w.-]+)"
    rf"(?(pri) \S+ \S+ (?:-|(?:{_SD_ELEMENT})+) \ufeff?|(?:\[\d+\])?:\s+)(?P<message>.*)"
)
# Where a second syslog line starts inside a line: two writers' lines run together (one written
# without its newline, the next glued to it). A BSD or RFC 3339 stamp, a host and a program with
# its colon, or an RFC 5424 "<PRI>VERSION" and three fields (section 6).
_GLUED_RE = re.compile(
    rf"<\d{{1,3}}>[1-9]\d{{0,2}} \S+ \S+ \S+ |{SYSLOG_STAMP}\S*\s+\S+\s+[\w./-]+(?:\[\d+\])?:"
)
# The ":MM:SS" of a time stamp's clock.
_CLOCK_RE = re.compile(r":\d\d:\d\d")
# An RFC 5424 line whose TIMESTAMP is the NILVALUE "-" (section 6.2.3): it cannot be dated.
_NIL_TIME_RE = re.compile(r"<\d{1,3}>[1-9]\d{0,2} - ")
_QUEUED_RE = re.compile(r"(?P<qid>[0-9A-Za-z]{5,20}): (?P<rest>.*)")
_TO_RE = re.compile(r"to=<(?P<to>[^>]*)>(?:, |$)")
_ORIG_TO_RE = re.compile(r"orig_to=<(?P<orig>[^>]*)>")
# A reply that starts with its basic code (RFC 5321 section 4.2), as in "status=sent (250 ...)".
_CODE_START_RE = re.compile(r"#?[2-5]\d\d[ -]")
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}
# RFC 3463 section 3.5: X.4.7 "delivery time expired"; for an expiry line without a dsn=.
_EXPIRED_STATUS = StatusCode(4, 4, 7)


_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class _Line:
    """A Postfix line with a queue id, split into its parts (the time is read when needed)."""

    match: re.Match[str]
    agent: str
    queue_id: str
    rest: str


class _Dater:
    """Dates time stamps the same way for every line of a stream, remembering recent ones
    (log lines come many to the second)."""

    __slots__ = ("_cache", "now", "tz", "year")

    def __init__(self, year: int | None, now: datetime | None, tz: tzinfo) -> None:
        # A naive `now` is UTC, as everywhere in deliverability.
        self.year, self.now, self.tz = year, None if now is None else ensure_utc(now), tz
        self._cache: dict[str, datetime] = {}

    def at(self, line: _Line, raw: str, source: str, position: str) -> datetime:
        key = line.match.group("iso") or line.match.group("syslog")
        stamp = self._cache.get(key)
        if stamp is None:
            try:
                stamp = _line_time(line.match, self.year, self.now, self.tz)
            except ValueError as exc:
                raise IngestError(source, position, f"invalid time stamp: {exc}", raw) from None
            except OverflowError:
                # Year 1 east of UTC or year 9999 west of it: datetime has no such time in UTC.
                problem = f"invalid time stamp: {key} is out of range once in UTC"
                raise IngestError(source, position, problem, raw) from None
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[key] = stamp
        return stamp


#: How far after `now` a syslog stamp without a year may be and still be this year's: stamps
#: are the host's local time (RFC 3164 section 4.1.2 has no zone, and a zone puts them up to 14
#: hours ahead of UTC), and the log is still being written while the job reads it. A line read
#: as a year older would have its deferrals expire at once and their retries lost. The engine
#: refuses times further ahead than this too (`engine.FUTURE_TOLERANCE`).
SYSLOG_AHEAD = timedelta(days=1)


def _line_time(
    match: re.Match[str], year: int | None, now: datetime | None, tz: tzinfo
) -> datetime:
    iso = match.group("iso")
    if iso:
        value = iso[:-1] + "+00:00" if iso[-1] in "Zz" else iso
        stamp = datetime.fromisoformat(value)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=tz)
        return stamp.astimezone(UTC)
    month = _MONTHS.get(match.group("mon"))
    if month is None:
        raise ValueError(f"unknown month {match.group('mon')!r}")
    day = int(match.group("day"))
    hour, minute, second = (int(p) for p in match.group("hms").split(":"))
    if year is not None:
        return datetime(year, month, day, hour, minute, second, tzinfo=tz).astimezone(UTC)
    if now is None:
        raise ValueError("a syslog time stamp has no year: pass year= or now=")
    # The latest time not more than `SYSLOG_AHEAD` after `now`: last year's December for a
    # January run, and for Feb 29 the last leap year (a ValueError from every candidate means
    # the date does not exist).
    problem: ValueError | None = None
    latest = now + SYSLOG_AHEAD
    for candidate in range(now.year, now.year - 8, -1):
        try:
            stamp = datetime(candidate, month, day, hour, minute, second, tzinfo=tz)
        except ValueError as exc:
            problem = exc
            continue
        if stamp <= latest:
            return stamp.astimezone(UTC)
    raise problem or ValueError("no year puts this time before now")


def _split(text: str, source: str, position: str) -> _Line | None:
    """The parts of a Postfix line that carries a queue id; None for any other line."""
    match = _HEADER_RE.match(text)
    if match is None:
        if "postfix" in text and "status=" in text:
            if _NIL_TIME_RE.match(text):
                raise IngestError(
                    source, position, 'no time stamp (RFC 5424 NILVALUE "-"): cannot date', text
                )
            raise IngestError(source, position, "not a syslog line from Postfix", text)
        return None
    queued = _QUEUED_RE.match(match.group("message"))
    if queued is None:
        return None
    return _Line(match, match.group("agent"), queued.group("qid"), queued.group("rest"))


def _fields(head: str) -> dict[str, str]:
    """The ``key=value`` fields between ``to=<...>`` and ``status=``."""
    fields: dict[str, str] = {}
    for part in head.split(", "):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


@functools.lru_cache(maxsize=512)
def _dsn_status(dsn: str) -> StatusCode:
    """A dsn= value read once: a log holds a few dozen distinct ones in millions of lines."""
    try:
        return parse_status(dsn)
    except DeliverabilityError:
        raise ValueError(f"bad dsn={dsn}") from None


def _reply(text: str, dsn: str | None, status_word: str) -> Reply:
    """The remote reply when the text holds one, else a reply made of Postfix's dsn= and text.

    Postfix writes ``dsn=`` on every result since version 2.3; when the remote server gave no
    enhanced status Postfix derives X.0.0 from the reply code, and for results of its own making
    (timeouts, DNS failures, local delivery) the dsn= is the only code there is.
    """
    dsn_status = _dsn_status(dsn) if dsn else None
    if text and (
        _CODE_START_RE.match(text) or " said: " in text or "refused to talk to me: " in text
    ):
        try:
            reply = parse_reply(text)
        except DeliverabilityError:
            reply = None
        if reply is not None and reply.code is not None:
            if reply.status is None and dsn_status and dsn_status.klass == reply.code // 100:
                reply = replace(reply, status=dsn_status)
            return reply
    if dsn_status is None and status_word == "expired":
        dsn_status = _EXPIRED_STATUS
    if dsn_status is None:
        raise ValueError(f"status={status_word} with neither dsn= nor a reply code")
    return Reply(code=None, status=dsn_status, text=" ".join(text.split()))


def _delivery(
    line: _Line, dater: _Dater, raw: str, message_id: str, source: str, position: str
) -> LogRecord | None:
    """A delivery result line (``to=<...>, ..., status=...``) as a record."""
    rest = line.rest
    to_match = _TO_RE.match(rest)
    cut = rest.find("status=")
    if to_match is None or cut < 0 or (cut and rest[cut - 2 : cut] != ", "):
        raise IngestError(source, position, "a delivery line without to=<...> and status=", raw)
    after = rest[cut + len("status=") :]
    word, _, text = after.partition(" ")
    word = word.rstrip(",").lower()
    if word in _PROBES:
        return None
    delivery_status = _STATUSES.get(word)
    if delivery_status is None:
        raise IngestError(source, position, f"unknown status={word!r}", raw)
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    recipient = to_match.group("to").strip()
    fields = _fields(rest[to_match.end() : max(cut - 2, to_match.end())])
    # When Postfix rewrote the address (aliases, virtual), orig_to= is the one the sender used,
    # which is the address on the sender's list.
    orig = _ORIG_TO_RE.search(rest, 0, cut)
    if orig is not None and orig.group("orig").strip():
        recipient = orig.group("orig").strip()
    if not recipient or "@" not in recipient:
        raise IngestError(source, position, f"to=<{recipient}> is not an address", raw)
    if "\ufffd" in recipient:
        raise IngestError(source, position, "the recipient is not valid UTF-8", raw)
    try:
        reply = _reply(text, fields.get("dsn"), word)
    except ValueError as exc:
        raise IngestError(source, position, str(exc), raw) from None
    relay = fields.get("relay")
    return LogRecord(
        at=dater.at(line, raw, source, position),
        recipient=recipient,
        message_id=message_id,
        attempt=None,
        reply=reply,
        source=source,
        position=position,
        raw=raw,
        queue_id=line.queue_id,
        relay=None if relay in (None, "", "none") else relay,
        delivery_status=delivery_status,
    )


def _is_delivery(line: _Line) -> bool:
    # A per-recipient result from qmgr (one it settles itself) is read like an agent's.
    return line.rest.startswith("to=") and (line.agent in DELIVERY_AGENTS or line.agent == "qmgr")


def parse_postfix_line(
    line: str,
    *,
    year: int | None = None,
    now: datetime | None = None,
    tz: tzinfo = UTC,
    message_ids: Mapping[str, str] | None = None,
    source: str = "",
    position: str = "",
) -> LogRecord | None:
    """Read one Postfix log line: a record for a delivery result, None for any other line.

    A syslog time stamp has no year: give `year`, or `now` to take the latest time not more than
    `SYSLOG_AHEAD` after it.
    Stamps without a zone are in `tz`. `message_ids` maps queue ids to Message-IDs; a queue id
    not in it stands in for the Message-ID. Raises IngestError for a broken delivery line.
    """
    text = line.rstrip("\r\n")
    if _may_matter(text) and _glued_at(text):
        raise IngestError(source, position, "two log lines run together", text)
    split = _split(text, source, position)
    if split is None or not _is_delivery(split):
        return None
    message_id = (message_ids or {}).get(split.queue_id, split.queue_id)
    return _delivery(split, _Dater(year, now, tz), text, message_id, source, position)


class QueueKey(NamedTuple):
    """A queue id and the queue it names a message in.

    Postfix makes a queue id unique within one queue, and only while the message is in it (it
    reuses ids once a queue file is gone). One log may hold several queues: a central syslog
    host's lines from many mail hosts, and a multi-instance host's instances (postfix-out,
    ..., each with its own queue directory and its own ``syslog_name``). So a queue id is told
    apart by the syslog host and the instance: the first part of the program name
    (``postfix-out`` of ``postfix-out/smtp``; ``postfix/submission/smtpd`` is a service of the
    ``postfix`` instance).
    """

    host: str
    instance: str
    queue_id: str


@dataclass(slots=True, eq=False)
class Queued:
    """What a stream knows of one queued message: its Message-ID (None until its cleanup line
    is read) and the last deferral of each recipient still deferred, by recipient."""

    message_id: str | None = None
    deferred: dict[str, LogRecord] = field(default_factory=dict)
    #: When a store first kept it (None: never kept), from which its age is counted.
    kept_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class SavedDeferral:
    """A recipient's last deferral as a store keeps it: the log line itself, read again when an
    expiry needs its reply, and the Message-ID it was recorded with."""

    message_id: str
    source: str
    position: str
    line: str


@dataclass(frozen=True, slots=True)
class SavedQueueId:
    """A queue id as a store keeps it between runs (see `Queued`)."""

    message_id: str | None
    kept_since: datetime
    deferrals: tuple[SavedDeferral, ...] = ()


#: Where a stream finds what earlier reads learnt of queue ids it has not seen: given keys, the
#: saved state of those it knows (`deliverability.store.postfix_queue.lookup`).
QueueLookup = Callable[[Collection[QueueKey]], Mapping[QueueKey, SavedQueueId]]


class PostfixStream:
    """Reads the lines of a Postfix log in order, remembering what later lines need.

    The cleanup line gives a queue id its Message-ID; the deferrals of a queue id are kept so
    that qmgr's per-message ``status=expired`` line can be reported per recipient. What is kept
    is bounded (`max_queue_ids` queue ids, the oldest forgotten first) and a queue id is dropped
    when qmgr (or postsuper, deleting it) logs it ``removed``, since Postfix then reuses the id.

    A message often stays queued across two reads of the log (a nightly job's runs, a log
    rotation): with `saved`, the stream asks it for what earlier reads learnt of a queue id it
    meets without knowing it (`prefetch`, a block of lines at a time), and notes what it learns
    for the caller to keep with the offset it belongs to (`take_changes`).
    """

    def __init__(
        self,
        *,
        source: str = "",
        year: int | None = None,
        now: datetime | None = None,
        tz: tzinfo = UTC,
        max_queue_ids: int = 100_000,
        saved: QueueLookup | None = None,
    ) -> None:
        if year is None and now is None:
            raise ValueError("a Postfix stream needs year= or now= to date syslog time stamps")
        self.source = source
        self._dater = _Dater(year, now, tz)
        self.max_queue_ids = max_queue_ids
        self._queue: dict[QueueKey, Queued] = {}
        self._saved = saved
        # What changed since `take_changes` (None: dropped), kept only when there is a store.
        self._changed: dict[QueueKey, Queued | None] = {}
        #: False while a line's records are handed out one by one and some are still to come:
        #: the stream has read the whole line, so what it knows is not that of the line's start
        #: (`read_postfix_log`). A caller keeps its state only where this is True.
        self.at_line_end = True

    def feed(self, text: str, position: str) -> list[LogRecord]:
        """The records one line yields (none, one, or one per recipient for an expiry).

        Raises IngestError for a broken delivery line, and for two lines run together (the
        reader splits those: `_line_items`).
        """
        if not _may_matter(text):
            return []
        if _glued_at(text):
            raise IngestError(self.source, position, "two log lines run together", text)
        return self._feed(text, position)

    def _feed(self, text: str, position: str) -> list[LogRecord]:
        """`feed` for a line known to matter and to be one line."""
        split = _split(text, self.source, position)
        if split is None:
            return []
        key = _key(split)
        if _is_delivery(split):
            queued = self._queue.get(key)
            message_id = split.queue_id
            if queued is not None and queued.message_id:
                message_id = queued.message_id
            record = _delivery(split, self._dater, text, message_id, self.source, position)
            if record is None:
                return []
            self._track(key, queued, record)
            return [record]
        rest = split.rest
        if split.agent == "cleanup" and rest.startswith("message-id="):
            message_id = normalize_message_id(rest[len("message-id=") :])
            if message_id:
                queued = self._queue.get(key)
                if queued is None or queued.message_id not in (None, message_id):
                    # cleanup names a message as it enters the queue: a queue id known with
                    # another Message-ID was reused after a removal this stream did not read
                    # (a log it was not given), and what it knew is another message's.
                    queued = self._add(key)
                queued.message_id = message_id
                self._note(key, queued)
        elif split.agent == "qmgr":
            if rest == "removed":
                self._drop(key)
            elif "status=expired" in rest:
                return self._expired(key, split, text, position)
        elif split.agent == "postsuper" and rest == "removed":
            # `postsuper -d` deletes a queued message itself and logs its removal; qmgr logs
            # nothing more of it (postsuper(1)). The id may be reused from then on.
            self._drop(key)
        return []

    def _add(self, key: QueueKey) -> Queued:
        queued = Queued()
        _remember(self._queue, key, queued, self.max_queue_ids)
        return queued

    def _note(self, key: QueueKey, queued: Queued) -> None:
        """Note a change to keep (with a store only)."""
        if self._saved is not None:
            _remember(self._changed, key, queued, self.max_queue_ids)

    def _drop(self, key: QueueKey) -> None:
        queued = self._queue.pop(key, None)
        if self._saved is None:
            return
        if queued is not None and queued.kept_since is None:
            # Never kept: nothing to delete (a message queued and gone between two saves).
            self._changed.pop(key, None)
        else:
            # Kept, or perhaps kept by an earlier read and not looked up since.
            _remember(self._changed, key, None, self.max_queue_ids)

    def _track(self, key: QueueKey, queued: Queued | None, record: LogRecord) -> None:
        if record.delivery_status == "deferred":
            if queued is None:
                queued = self._add(key)
            queued.deferred[record.recipient] = record
            self._note(key, queued)
        elif queued is not None and queued.deferred.pop(record.recipient, None) is not None:
            self._note(key, queued)

    def _expired(self, key: QueueKey, line: _Line, raw: str, position: str) -> list[LogRecord]:
        """One expiry record per recipient still deferred when qmgr gave the message up."""
        queued = self._queue.get(key)
        if queued is None or not queued.deferred:
            return []
        # The reply is the last deferral's: it says why the message never got through.
        pending, queued.deferred = queued.deferred, {}
        self._note(key, queued)
        at = self._dater.at(line, raw, self.source, position)
        # Where the record comes from is the expiry line, which may be in another file than the
        # deferrals (a rotation between them).
        return [
            replace(
                last,
                at=at,
                source=self.source,
                position=position,
                raw=raw,
                delivery_status="expired",
            )
            for last in pending.values()
        ]

    # -- what is kept between reads --------------------------------------------------------------

    def take_changes(self) -> dict[QueueKey, Queued | None]:
        """What the stream learnt since the last call, for the caller to keep: each queue id's
        state as it is now, or None for one dropped (``removed``). Only with `saved`."""
        changes, self._changed = self._changed, {}
        return changes

    def prefetch(self, lines: Iterable[Line]) -> None:
        """Ask `saved`, once for a block of lines, for the queue ids those lines need (delivery
        results and expiries) that the stream does not know."""
        if self._saved is None:
            return
        wanted: set[QueueKey] = set()
        # Queue ids whose cleanup line comes earlier in the block: new messages, none to ask for
        # (most of a log's, so most blocks need no look-up at all).
        queued_here: set[QueueKey] = set()
        for line in lines:
            text = line.text
            if line.problem is not None or not _may_matter(text):
                continue
            try:
                split = _split(text, self.source, "")
            except IngestError:
                continue
            if split is None:
                continue
            if split.agent == "cleanup" and split.rest.startswith("message-id="):
                queued_here.add(_key(split))
            elif _is_delivery(split) or (split.agent == "qmgr" and "status=expired" in split.rest):
                key = _key(split)
                if key in self._queue or key in queued_here:
                    continue
                if key in self._changed:
                    # Forgotten since (the bound), but not yet kept: what is noted is newer.
                    changed = self._changed[key]
                    if changed is not None:
                        _remember(self._queue, key, changed, self.max_queue_ids)
                    continue
                wanted.add(key)
        if not wanted:
            return
        for key, saved in self._saved(wanted).items():
            if key not in self._queue:
                _remember(self._queue, key, self._restore(key, saved), self.max_queue_ids)

    def _restore(self, key: QueueKey, saved: SavedQueueId) -> Queued:
        queued = Queued(saved.message_id, {}, saved.kept_since)
        for deferral in saved.deferrals:
            line, source, position = deferral.line, deferral.source, deferral.position
            try:
                split = _split(line, source, position)
                record = None
                if split is not None and _is_delivery(split):
                    message_id = deferral.message_id
                    record = _delivery(split, self._dater, line, message_id, source, position)
            except IngestError:
                record = None
            # A line this reader read once reads again; if it no longer does (a parser changed
            # since), the recipient is left out of a later expiry rather than stop the run.
            if record is not None:
                queued.deferred[record.recipient] = record
        return queued


def _key(line: _Line) -> QueueKey:
    program = line.match.group("program")
    return QueueKey(line.match.group("host"), program.partition("/")[0], line.queue_id)


def _may_matter(text: str) -> bool:
    """False for a line that cannot be a delivery result, a cleanup or a qmgr line (most of a
    busy mail.log: connects, TLS, other programs), passed over without a regex."""
    return "status=" in text or "to=<" in text or "message-id=" in text or "removed" in text


def _glued_at(text: str) -> int:
    """Where a second syslog line starts inside `text` (0: nowhere, the line is one line)."""
    # Every syslog stamp holds a clock: a line with one only is one line, found without the
    # slow search (a line is searched for a second header only from a little before a second).
    first = _CLOCK_RE.search(text)
    second = None if first is None else _CLOCK_RE.search(text, first.end())
    if second is None:
        return 0
    match = _GLUED_RE.search(text, max(1, second.start() - 40))
    return 0 if match is None else match.start()


def _line_items(stream: PostfixStream, line: Line, source: str) -> list[LogRecord | Rejected]:
    """What one line of a Postfix log yields: records, and Rejected for what cannot be read.

    A line that does not start as a syslog line is rejected, so a file of another format read
    as a Postfix log is told line by line; blank lines and journalctl's own ``-- ... --`` lines
    are passed over. Lines run together are cut where the next one starts: the part before is
    rejected (it may be cut short), the rest read as a line of its own.
    """
    if line.problem is not None:
        return [Rejected(source, position_of(line.start), line.problem, line.text)]
    text, start = line.text, line.start
    if not text.strip() or (text.startswith("-- ") and text.endswith(" --")):
        return []
    if not starts_like_syslog(text):
        problem = (
            "not a syslog line (a time stamp, a host, a program): is this a Postfix log? "
            "name the format with --format"
        )
        return [Rejected(source, position_of(start), problem, text)]
    items: list[LogRecord | Rejected] = []
    while _may_matter(text) and (cut := _glued_at(text)):
        head, text = text[:cut], text[cut:]
        # The next line's byte position (a line with bytes that are not UTF-8 holds U+FFFD
        # for them, so its positions after the first may be off by a few bytes).
        next_start = start + len(head.encode())
        problem = f"two log lines run together: another starts at byte {next_start}"
        items.append(Rejected(source, position_of(start), problem, head))
        start = next_start
    try:
        items.extend(stream._feed(text, position_of(start)) if _may_matter(text) else [])
    except IngestError as exc:
        items.append(Rejected(source, position_of(start), exc.problem, text))
    return items


def _remember(table: dict[_K, _V], key: _K, value: _V, limit: int) -> None:
    """Set `key` as the newest entry of `table`, forgetting the oldest beyond `limit`."""
    table.pop(key, None)
    table[key] = value
    while len(table) > limit:
        del table[next(iter(table))]


def read_postfix_log(
    path: str | os.PathLike[str],
    *,
    start_offset: int = 0,
    now: datetime | None = None,
    year: int | None = None,
    tz: tzinfo = UTC,
    limits: ReadLimits | None = None,
    hold_partial_line: bool = False,
    max_queue_ids: int = 100_000,
    stream: PostfixStream | None = None,
    scan_before: bool | None = None,
) -> Iterator[tuple[int, LogRecord | Rejected]]:
    """Yield (byte offset after the item, item) for every delivery result in a Postfix log.

    Plain, rotated and compressed (gzip, bzip2, xz) files are read alike. Syslog stamps get their
    year from `year`, else the latest time not more than `SYSLOG_AHEAD` after `now`, else after the
    file's modification time. When resuming from `start_offset`, the lines before it are scanned for
    Message-IDs and pending deferrals first, so records after it are joined as a full read would
    join them. Items name their source by the path as given (see `read_mailer_log`).

    `stream` is a stream that carries on from earlier reads (the nightly job's, whose state is
    kept in the store: `PostfixStream(saved=...)`); it is told this file's path, the lines before
    `start_offset` are not scanned unless `scan_before` says so (what they taught is in it
    already), and its `at_line_end` says when a caller may keep its state. `now`, `year`, `tz`
    and `max_queue_ids` are then its.
    """
    source = os.fspath(path)
    if scan_before is None:
        scan_before = stream is None
    if stream is not None:
        stream.source = source
    else:
        if now is None and year is None:
            try:
                mtime = os.stat(path).st_mtime
            except OSError as exc:
                problem = f"cannot open: {exc.strerror or exc}"
                raise IngestError(str(path), "file", problem) from None
            now = datetime.fromtimestamp(mtime, UTC)
        stream = PostfixStream(
            source=source, year=year, now=now, tz=tz, max_queue_ids=max_queue_ids
        )
    if start_offset and scan_before:
        for line in read_lines(path, limits=limits):
            if line.start >= start_offset:
                break
            # Broken lines were rejected by the run that read them.
            _line_items(stream, line, source)
    lines = read_lines(
        path, start_offset=start_offset, limits=limits, hold_partial_line=hold_partial_line
    )
    for line in _prefetched(stream, lines):
        items = _line_items(stream, line, source)
        # The offset moves past a line only with its last item, so a run stopped between two
        # items of one line reads that line again (the items are the same, and recording is
        # idempotent).
        for i, item in enumerate(items, 1):
            last = i == len(items)
            stream.at_line_end = last
            yield (line.end if last else line.start), item
        stream.at_line_end = True


#: Lines (and characters) read ahead of the stream, for one look-up of the queue ids they need.
_PREFETCH_LINES = 1000
_PREFETCH_CHARS = 1 << 20


def _prefetched(stream: PostfixStream, lines: Iterator[Line]) -> Iterator[Line]:
    """`lines`, read a block ahead when the stream looks queue ids up in a store: one query for
    a block rather than one for each line."""
    if stream._saved is None:
        yield from lines
        return
    block: list[Line] = []
    size = 0
    for line in lines:
        block.append(line)
        size += len(line.text)
        if len(block) >= _PREFETCH_LINES or size >= _PREFETCH_CHARS:
            stream.prefetch(block)
            yield from block
            block, size = [], 0
    stream.prefetch(block)
    yield from block
