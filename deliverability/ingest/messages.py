"""Bounce messages: parse DSNs, prose bounces, complaints and auto-replies into records.

`parse_message` turns the bytes of one message into one `BounceRecord` per recipient it reports
on. The formats are read by the detectors in `deliverability.ingest.bounce` (one per format);
this module normalises what they find, builds the `Reply` the classifier reads, and links the
bounce to what was sent (the returned original's Message-ID, a VERP return path).

`iter_mbox`, `iter_maildir` and `iter_eml` stream raw messages from files and folders, one at a
time, with a key that stays the same from one run to the next.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from deliverability.addresses import normalize_address
from deliverability.errors import AddressError, IngestError, ReplyParseError
from deliverability.ingest.bounce import Hit, detect, parse_bytes
from deliverability.ingest.bounce.base import STATUS_ALONE_RE, addresses_in
from deliverability.ingest.bounce.mime import Parsed
from deliverability.ingest.files import (
    DECOMPRESSION_ERRORS,
    DECOMPRESSORS,
    MBOX_SEPARATOR_RE,
    compression_of,
    compression_refused,
    is_compressed,
    open_binary,
)
from deliverability.replies import Reply, StatusCode, parse_reply
from deliverability.verdicts import AUTO_REPLY_VERDICT, COMPLAINT_VERDICT
from deliverability.vocabulary import EventKind

if TYPE_CHECKING:
    from deliverability.policy import Policy

__all__ = [
    "DEFAULT_VERP",
    "BounceRecord",
    "PreambleFn",
    "UnreadableFn",
    "VerpFormat",
    "explain_message_file",
    "iter_eml",
    "iter_maildir",
    "iter_mbox",
    "mbox_last_message_unterminated",
    "parse_message",
    "starts_mbox_message",
]


@dataclass(frozen=True)
class VerpFormat:
    """How a VERP return path encodes the recipient (``bounces+alice=example.com@lists.org``).

    `prefix` is the local part before `separator` (any local part when None); the recipient
    follows, with its ``@`` written as `equals` (the last one counts, as a local part may hold
    the same character).
    """

    prefix: str | None = None
    separator: str = "+"
    equals: str = "="

    def decode(self, address: str) -> str | None:
        """The recipient encoded in `address`, or None when it is not a VERP address."""
        local, at, _domain = address.rpartition("@")
        if not at:
            return None
        head, sep, encoded = local.partition(self.separator)
        if not sep or (self.prefix is not None and head.lower() != self.prefix.lower()):
            return None
        rcpt_local, eq, rcpt_domain = encoded.rpartition(self.equals)
        if not eq or not rcpt_local or not rcpt_domain:
            return None
        try:
            return normalize_address(f"{rcpt_local}@{rcpt_domain}").text
        except AddressError:
            return None


#: Used when `parse_message` is given no format: ``anything+local=domain@host``.
DEFAULT_VERP = VerpFormat()

# Where the bounce's own envelope recipient (the original's return path) shows.
_VERP_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
# RFC 3464 section 2.3.3: "delayed" is a transient result, the others final.
_DELAYED = "delayed"


@dataclass(frozen=True)
class BounceRecord:
    """What a bounce message says about one recipient.

    `kind` tells a bounce (DSN or prose), a complaint (ARF) and an auto-reply apart. `status`
    and `code` are the enhanced status (RFC 3463) and basic reply code the message gives;
    `reply` is what the classifier reads. `error` is set, and `recipient` is None, when the
    message names no recipient or is none of the three kinds.
    """

    recipient: str | None
    kind: EventKind
    detector: str
    original_recipient: str | None = None
    action: str | None = None
    status: StatusCode | None = None
    code: int | None = None
    diagnostic: str = ""
    reply: Reply | None = None
    remote_mta: str | None = None
    reporting_mta: str | None = None
    arrival_date: datetime | None = None
    last_attempt: datetime | None = None
    original_message_id: str | None = None
    verp_recipient: str | None = None
    feedback_type: str | None = None
    subject: str | None = None
    error: str | None = None
    #: The block reports on delivering a bounce the message returns (a bounce of a bounce):
    #: `recipient` is that bounce's recipient, the return path of the message it returns, and
    #: the returned bounce's blocks have records of their own.
    bounce_of_bounce: bool = False

    @property
    def klass(self) -> int | None:
        """The class digit of the result: 2 delivered, 4 transient, 5 permanent (RFC 3463)."""
        if self.kind is not EventKind.BOUNCE:
            return None
        if self.action == _DELAYED:
            return 4
        if self.status is not None:
            return self.status.klass
        if self.code is not None:
            return self.code // 100
        if self.action in ("delivered", "relayed", "expanded"):
            return 2
        return 5 if self.recipient else None


# Control characters that never appear in mail text (TAB, LF, VT, FF, CR and ESC do: ESC
# starts ISO-2022-JP shifts, common in Japanese mail).
_CONTROL_BYTES = bytes([*range(9), *range(14, 27), *range(28, 32)])


def _check_readable(data: bytes, source: str) -> None:
    if not isinstance(data, (bytes, bytearray)):
        raise IngestError(source, 0, f"expected the bytes of a message, got {type(data).__name__}")
    if not data.strip():
        raise IngestError(source, 0, "the message is empty")
    head = data[:8192]
    if b"\x00" in head:
        raise IngestError(source, 0, "binary data (NUL bytes), not an email message")
    control = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if control > len(head) // 20:
        raise IngestError(source, 0, "binary data (control bytes), not an email message")


def parse_message(
    data: bytes, *, verp: VerpFormat | None = None, source: str = "message"
) -> list[BounceRecord]:
    """One record per recipient the message reports on (see `BounceRecord`).

    A message that is not a bounce, a complaint or an auto-reply, or names no recipient, gives
    one record with recipient None and `error` saying why. Raises IngestError (naming `source`)
    only when the input is not an email message at all: empty, binary, or without headers.
    """
    _check_readable(data, source)
    try:
        parsed = parse_bytes(bytes(data))
    except Exception as exc:  # the MIME reader is written not to raise: this is a last guard
        raise IngestError(source, 0, f"unreadable message ({type(exc).__name__}: {exc})") from None
    if not len(parsed.message):
        raise IngestError(source, 0, "no header fields: not an email message")
    try:
        return _records(parsed, verp or DEFAULT_VERP)
    except (ValueError, LookupError, TypeError, AttributeError, UnicodeError) as exc:
        # A detector tripping over a malformed message is a bad input, not a crash of the batch.
        raise IngestError(
            source, 0, f"cannot read the message ({type(exc).__name__}: {exc})"
        ) from None


def _records(parsed: Parsed, verp: VerpFormat) -> list[BounceRecord]:
    detector, hits = detect(parsed)
    subject = parsed.header("Subject") or None
    message_id = _original_message_id(parsed)
    verp_rcpt = _verp_recipient(parsed, verp)
    if verp_rcpt is None:
        # A bounce of a bounce names the returned bounce's recipient, the sender's return path.
        verp_rcpt = next(
            (d for h in hits if h.bounce_of_bounce and (d := verp.decode(h.recipient or ""))),
            None,
        )
    if not hits:
        return [
            BounceRecord(
                recipient=None,
                kind=EventKind.BOUNCE,
                detector=detector or "none",
                subject=subject,
                original_message_id=message_id,
                verp_recipient=verp_rcpt,
                error="not a bounce, complaint or auto-reply: no failed recipient found",
            )
        ]
    records = []
    for hit in hits:
        record = _record(hit, detector or "none", subject, message_id, verp_rcpt)
        records.append(record)
    return records


def _record(
    hit: Hit, detector: str, subject: str | None, message_id: str | None, verp_rcpt: str | None
) -> BounceRecord:
    recipient, error = _normalised(hit.recipient)
    if error is not None and hit.recipient and hit.recipient_field:
        # Say which field holds what is not an address (RFC 3464 section 2.3.2: the report is
        # about the address in Final-Recipient).
        error = f"{hit.recipient_field}: {error}"
    if hit.original_recipient and hit.original_recipient == hit.recipient:
        original = recipient
    else:
        original, _ = _normalised(hit.original_recipient)
    if recipient is None and original is not None:
        recipient, error = original, None
    status, code, reply = None, None, None
    action = hit.action
    if hit.kind is EventKind.BOUNCE:
        status, code, reply = _reply_of(hit)
        if action is None:
            action = _DELAYED if hit.transient else "failed"
    return BounceRecord(
        recipient=recipient,
        original_recipient=original,
        kind=hit.kind,
        action=action,
        status=status,
        code=code,
        diagnostic=hit.diagnostic,
        reply=reply,
        remote_mta=hit.remote_mta,
        reporting_mta=hit.reporting_mta,
        arrival_date=hit.arrival_date,
        last_attempt=hit.last_attempt,
        original_message_id=message_id,
        verp_recipient=verp_rcpt,
        feedback_type=hit.feedback_type,
        detector=hit.detector or detector,
        subject=subject,
        error=error,
        bounce_of_bounce=hit.bounce_of_bounce,
    )


def _normalised(raw: str | None) -> tuple[str | None, str | None]:
    """The normalised address, or None and why not."""
    if not raw:
        return None, "no recipient found in the message"
    try:
        return normalize_address(raw).text, None
    except AddressError as exc:
        return None, str(exc)


def _status(text: str | None) -> StatusCode | None:
    if not text:
        return None
    m = _STATUS_START_RE.match(text)
    if not m:
        return None
    klass, subject, detail = (int(g) for g in m.groups())
    if subject > 7:
        return None
    return StatusCode(klass, subject, detail)


def _reply_of(hit: Hit) -> tuple[StatusCode | None, int | None, Reply | None]:
    """The status, code and Reply of a bounce hit.

    The reply is read from the diagnostic (the remote server's reply a relay quotes, when it
    quotes one). The enhanced status is the report's Status field (RFC 3464 section 2.3.4),
    unless the reply carries its own that agrees with its code, or the field is a bare ``x.0.0``.
    """
    source = hit.diagnostic
    parsed_reply = _parsed(source)
    if parsed_reply is not None and not _CODE_START_RE.match(source):
        # A relay's own status first, then the remote reply it quotes ("5.1.0 - Unknown
        # address error 550-'5.7.1 ... Access denied'"): the remote reply is the evidence.
        inner = _INNER_REPLY_RE.search(source)
        inner_reply = _parsed(source[inner.start() :]) if inner else None
        if inner and inner_reply is not None:
            command = inner_reply.command or parsed_reply.command
            source, parsed_reply = source[inner.start() :], replace(inner_reply, command=command)
    if parsed_reply is not None and parsed_reply.status is None and parsed_reply.code:
        # qmail and others put the enhanced status last: "550 Unknown user (#5.1.1)".
        for m in STATUS_ALONE_RE.finditer(source):
            found = _status(m.group(0))
            if found is not None and found.klass == parsed_reply.code // 100:
                parsed_reply = replace(parsed_reply, status=found)
                break
    if (parsed_reply is None or parsed_reply.code is None) and hit.diagnostic:
        # "ERROR_CODE :550" (Zoho) and the like: a code named as such, anywhere in the text.
        named = _NAMED_CODE_RE.search(hit.diagnostic)
        if named:
            base = parsed_reply
            parsed_reply = Reply(
                code=int(named.group(1)),
                status=None if base is None else base.status,
                text=hit.diagnostic if base is None else base.text,
                command=None if base is None else base.command,
            )
    field_status = _status(hit.status)
    reply_status = parsed_reply.status if parsed_reply is not None else None
    code = parsed_reply.code if parsed_reply is not None else None
    status = field_status
    if reply_status is not None and (
        status is None
        or (status.subject == 0 and status.detail == 0 and reply_status.klass == status.klass)
        # The remote server's own reply, with a status that agrees with its code (RFC 3463
        # section 3.1), is first-hand; the reporting MTA's Status field is its translation
        # ("Status: 5.1.1" over "552 5.2.2 Over quota").
        or (
            code is not None
            and reply_status.klass == code // 100
            and (reply_status.subject, reply_status.detail) != (0, 0)
        )
    ):
        status = reply_status
    if parsed_reply is not None and code is not None and code // 100 not in (2, 4, 5):
        code = None
    if parsed_reply is not None and (code is not None or status is not None):
        reply = Reply(
            code=code,
            status=status,
            text=parsed_reply.text,
            command=parsed_reply.command,
            problems=parsed_reply.problems,
        )
    elif status is not None:
        reply = Reply(code=None, status=status, text=hit.diagnostic)
    else:
        reply = None
    return status, code, reply


_STATUS_START_RE = re.compile(r"\s*#?([245])\.(\d{1,3})\.(\d{1,3})")
_CODE_START_RE = re.compile(r"\s*#?[245]\d\d\b")
_MSGID_RE = re.compile(r"<[^<>\s]+>")
_NAMED_CODE_RE = re.compile(
    r"(?i)\b(?:error[_ ]code|reply code|smtp code|code)\s*[:=]?\s*([245]\d\d)\b"
)
_INNER_REPLY_RE = re.compile(r"(?<![\d.])[245]\d\d[ -]['\"]?[245]\.\d{1,3}\.\d{1,3}(?![\d.]*\d)")


def _parsed(text: str) -> Reply | None:
    if not text:
        return None
    try:
        return parse_reply(text)
    except ReplyParseError:
        return None


def _original_message_id(parsed: Parsed) -> str | None:
    if parsed.returned is not None:
        mid = parsed.returned.get("Message-ID")
        if mid:
            found = _MSGID_RE.search(mid)
            return found.group(0) if found else str(mid).strip() or None
    return None


@lru_cache(maxsize=32)
def _verp_like(verp: VerpFormat) -> re.Pattern[str]:
    """Something shaped like a VERP address in this format (a cheap test before the real one)."""
    return re.compile(
        rf"{re.escape(verp.separator)}[^@\s<>;,]*{re.escape(verp.equals)}[^@\s<>;,]*@"
    )


def _verp_recipient(parsed: Parsed, verp: VerpFormat) -> str | None:
    candidates: list[str] = []
    if _verp_like(verp).search(parsed.message.block):
        for name in _VERP_HEADERS:
            for value in parsed.message.get_all(name):
                if verp.separator in value and verp.equals in value:
                    candidates.extend(addresses_in(value))
    if parsed.returned is not None and _verp_like(verp).search(parsed.returned.block):
        candidates.extend(addresses_in(parsed.returned.get("Return-Path") or ""))
    for candidate in candidates:
        decoded = verp.decode(candidate)
        if decoded:
            return decoded
    return None


# --- sources -------------------------------------------------------------------------------


#: The largest message read, in bytes as it stands in its file. A bounce is far smaller (mail
#: servers cap what they accept, most at tens of megabytes, and return at most the original,
#: Postfix and Exim only its first 50 to 100 KB by default); what is larger is no bounce, and
#: parsing it would take several times its size in memory.
MAX_MESSAGE = 64 * 1024**2
#: The most one read of an mbox takes: a longer line (base64 written without line breaks) is
#: read in pieces.
_READ_PIECE = 1024**2
#: What an unreadable-message callback is given: the message's key and what went wrong (a
#: Maildir file that cannot be read, an mbox message cut short).
UnreadableFn = Callable[[str, str], None]


def iter_eml(
    path: Path | str, *, unreadable: UnreadableFn | None = None, max_message: int | None = None
) -> Iterator[tuple[str, bytes]]:
    """One message from a single ``.eml`` file, keyed by the file's name. A file over
    `max_message` bytes (`MAX_MESSAGE` when None) is not read: `unreadable` is told its name
    and why (without it, IngestError names the file)."""
    p = Path(path)
    data, problem = _read_capped(p, _limit(max_message), "the message")
    if data is not None:
        yield p.name, data
        return
    if unreadable is None:
        raise IngestError(str(p), "file", cast(str, problem))
    unreadable(p.name, cast(str, problem))


def _limit(max_message: int | None) -> int:
    limit = MAX_MESSAGE if max_message is None else max_message
    if limit < 1:
        raise ValueError("max_message must be positive")
    return limit


def _read_capped(path: Path, limit: int, what: str) -> tuple[bytes | None, str | None]:
    """The bytes of a message file, or None and why not (`what` names it): it holds more than
    `limit` bytes (then it is not read: a huge file never sits in memory), or its compressed
    data is broken.

    A file compressed in gzip, bzip2 or xz (told by its magic bytes, `files.compression_of`) is
    decompressed, up to `limit` bytes: Dovecot's zlib plugin stores Maildir messages so, and an
    archived message may be. One in zstd or lz4 is not read (`files.compression_refused`).
    """
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        data = fh.read(limit + 1) if size <= limit else b""
    if size > limit or len(data) > limit:
        return None, _too_big(what, max(size, len(data)), limit)
    kind = compression_of(data)
    if kind is None:
        return data, None
    if kind not in DECOMPRESSORS:
        return None, compression_refused(what, kind)
    unpack = DECOMPRESSORS[kind]()
    try:
        out = unpack.decompress(data, limit + 1)
    except DECOMPRESSION_ERRORS as exc:
        return None, f"{what} is {kind} data that is corrupt ({exc}); not read"
    if len(out) > limit:
        return None, f"{what} decompresses to more than {limit} bytes, the limit for one message"
    if not unpack.eof:
        return None, f"{what} is {kind} data cut short; not read"
    return out, None


def _is_separator(line: bytes) -> bool:
    """Whether `line` is an mbox separator: ``From ``, the envelope sender and a date with a
    time of day (RFC 4155, appendix A; `files.MBOX_SEPARATOR_RE` says which forms). A mere
    "From " line in a message's text is not one: mboxo writers leave it unquoted, and taking it
    for a separator cuts the message in two. The pattern is the one format detection uses, so
    both agree on where messages start."""
    return MBOX_SEPARATOR_RE.match(line.decode("latin-1")) is not None


#: What a preamble callback is given: the preamble's size in bytes, its first `PREAMBLE_SHOWN`
#: bytes, and whether a message follows it (False: the file has no "From " line at all).
PreambleFn = Callable[[int, bytes, bool], None]
PREAMBLE_SHOWN = 2000
_BOM = b"\xef\xbb\xbf"


def starts_mbox_message(path: Path | str, offset: int) -> bool:
    """Whether an mbox separator line (``From ``, RFC 4155) begins at byte `offset` of the file
    and follows a blank line or the file's start: where `iter_mbox` can start (offsets of a
    compressed mbox count decompressed bytes)."""
    try:
        with open_binary(path) as fh:
            if offset > 0:
                fh.seek(offset - 1)
                if fh.read(1) != b"\n":
                    return False
            line = fh.readline(_READ_PIECE)
    except DECOMPRESSION_ERRORS:
        return False  # compressed data cut short before it: read from the top
    return line.startswith(b"From ") and _is_separator(line)


def iter_mbox(
    path: Path | str,
    *,
    preamble: PreambleFn | None = None,
    start_offset: int = 0,
    hold_unterminated: bool = True,
    unreadable: UnreadableFn | None = None,
    max_message: int | None = None,
) -> Iterator[tuple[str, bytes]]:
    """Stream the messages of an mbox file, one at a time, keyed by the byte offset of each
    message's ``From `` separator line (stable from one run to the next as long as the file is
    only appended to). ``>From `` quoting (mboxrd/mboxo) is undone one level.

    Bytes before the first ``From `` line belong to no message (RFC 4155 section 2: each message
    begins with one). When they hold more than white space (or a UTF-8 byte order mark),
    `preamble` is called with them once, before the first message is yielded (or at the end,
    when no ``From `` line follows), so the caller can record them as rejected input.

    `start_offset` starts reading there instead of at the top: the offset of a message's
    ``From `` line, as a key of an earlier read gives it (`starts_mbox_message` checks one).

    Every message of an mbox ends with an empty line (RFC 4155, appendix A). A last message
    without it may still be being appended to (a delivery agent writes a message in more than
    one write): with `hold_unterminated` (the default) it is not yielded, so that it is read
    once it is whole, as log readers hold back a last line without its newline;
    `mbox_last_message_unterminated` tells whether a file ends so. Without it (to explain a
    file as it is) the last message is yielded however it ends.

    A separator line right after a line of text, not an empty line, starts the next message all
    the same: the message before it was cut short (its writer stopped before finishing it, and
    the next delivery was appended after it). It is not yielded: `unreadable` is told its key and
    why, and the messages after it are read (without `unreadable`, IngestError names it). So is
    a message over `max_message` bytes (`MAX_MESSAGE` when None), read past without being
    held: memory stays bounded whatever the file holds.
    """
    if start_offset < 0:
        raise ValueError("start_offset must not be negative")
    limit = _limit(max_message)
    p = Path(path)
    # A rotated mailbox may be compressed (gzip, bzip2 or xz, told by its magic bytes, as logs
    # are); such a file is complete, so its last message is read however it ends.
    hold_unterminated = hold_unterminated and not is_compressed(p)

    def report(where: str, problem: str) -> None:
        if unreadable is None:
            raise IngestError(str(p), where, problem)
        unreadable(where, problem)

    def ended(start: int, lines: list[bytes], size: int, problem: str | None) -> bytes | None:
        """The message that began at `start`, or None when it is reported instead."""
        if problem is None and size > limit:
            problem = _too_big("the message", size, limit)
        if problem is None:
            return _mbox_body(lines)
        report(str(start), problem)
        return None

    with open_binary(p) as fh:
        offset = start_offset
        start: int | None = None
        lines: list[bytes] = []
        size = 0  # the bytes of the current message after its "From " line
        previous_blank = True
        at_line_start = True  # the next piece read starts a line
        head = bytearray()
        loose = False  # the preamble holds more than white space
        try:
            fh.seek(start_offset)
        except DECOMPRESSION_ERRORS as exc:
            report(f"byte {start_offset}", _corrupt(start_offset, exc))
            return
        # Read in pieces of at most _READ_PIECE bytes: a line is not held whole, however long.
        while True:
            try:
                raw = fh.readline(_READ_PIECE)
            except DECOMPRESSION_ERRORS as exc:
                # Compressed data corrupt or cut short (a copy that stopped): what came before
                # is read, the message it cuts is reported, and nothing after it can be read.
                report(str(start) if start is not None else f"byte {offset}", _corrupt(offset, exc))
                return
            if not raw:
                break
            starts_line, at_line_start = at_line_start, raw.endswith(b"\n")
            line = raw[len(_BOM) :] if offset == 0 and raw.startswith(_BOM) else raw
            # A separator line (a "From " line with a sender and a date, not mere text that
            # starts with "From ") starts the next message; the first may come right after a
            # preamble line.
            if starts_line and line.startswith(b"From ") and _is_separator(line):
                if start is not None:
                    # RFC 4155 appendix A: every message ends with an empty line. Without it the
                    # message was cut short; read, a report cut before its Status field gives
                    # a guessed failure, so it is reported instead.
                    cut = None if previous_blank else _cut_short(offset)
                    message = ended(start, lines, size, cut)
                    if message is not None:
                        yield str(start), message
                elif loose and preamble is not None:
                    preamble(offset, bytes(head), True)
                start, lines, size = offset, [], 0
            elif start is not None:
                size += len(raw)
                if size <= limit:
                    lines.append(line)
                else:
                    lines = []  # past the limit: nothing of it is held
            else:
                if len(head) < PREAMBLE_SHOWN:
                    head += raw[: PREAMBLE_SHOWN - len(head)]
                loose = loose or bool(line.strip())
            offset += len(raw)
            previous_blank = starts_line and line in _BLANK_LINES
        if start is not None:
            if not hold_unterminated or previous_blank:
                message = ended(start, lines, size, None)
                if message is not None:
                    yield str(start), message
        elif loose and preamble is not None:
            preamble(offset, bytes(head), False)


def _corrupt(offset: int, exc: Exception) -> str:
    return (
        f"the compressed data is corrupt or cut short at byte {offset} ({exc}): the rest of the "
        "file is not read"
    )


def _cut_short(next_at: int) -> str:
    return (
        f'the message is cut short: the "From " line at byte {next_at} follows it without the '
        "empty line that ends every message (RFC 4155); not read"
    )


def _too_big(what: str, size: int, limit: int) -> str:
    return (
        f"{what} is {size} bytes, over the limit of {limit} bytes for one message; not read "
        "(a bounce is far smaller: mail servers return at most the original, and most only its "
        "headers)"
    )


_BLANK_LINES = (b"\n", b"\r\n")


def mbox_last_message_unterminated(path: Path | str) -> bool:
    """Whether an mbox's last message lacks the empty line that ends every message (RFC 4155,
    appendix A): the message `iter_mbox` holds back. A file with no message is not, nor a
    compressed one, which is complete."""
    p = Path(path)
    if is_compressed(p):
        return False
    with p.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(size - 3, 0))
        tail = fh.read()
    # The last line is an empty one: a line break right after another.
    return bool(tail) and not tail.endswith((b"\n\n", b"\n\r\n"))


def _mbox_body(lines: list[bytes]) -> bytes:
    if lines and lines[-1] in _BLANK_LINES:
        lines = lines[:-1]  # the blank line that precedes the next "From " belongs to the mbox
    return b"".join(
        ln[1:] if ln.startswith(b">") and ln.lstrip(b">").startswith(b"From ") else ln
        for ln in lines
    )


def iter_maildir(
    path: Path | str, *, unreadable: UnreadableFn | None = None, max_message: int | None = None
) -> Iterator[tuple[str, bytes]]:
    """The messages of a Maildir folder (``new/`` then ``cur/``), keyed by file name without
    the ``:2,flags`` info suffix, so that a message keeps its key when it is marked read.

    The folder is in use while it is read: a mail client moves a message from ``new/`` to
    ``cur/`` when it is seen and renames it there when its flags change. A message renamed
    between the listing and its read is read under its new name, each message once; one deleted
    meanwhile is passed over (nothing is left to read).

    A message file that cannot be read (an I/O error, no permission) is one bad message, not a
    bad folder: `unreadable` is told its key and the error, and the rest is read. Without
    `unreadable` the error is raised (IngestError naming the file). So is a file over
    `max_message` bytes (`MAX_MESSAGE` when None), which is not read.
    """
    root = Path(path)
    limit = _limit(max_message)
    done: set[str] = set()  # the keys read or reported in this pass
    for sub in ("new", "cur"):
        folder = root / sub
        if not folder.is_dir():
            continue
        for name in sorted(os.listdir(folder)):
            key = name.split(":", 1)[0]
            if name.startswith(".") or key in done:
                continue
            file: Path | None = folder / name
            data: bytes | None = None
            problem: str | None = None
            # A rename may race each look: a few tries, then the next night reads it.
            for _ in range(3):
                file = _maildir_file(root, file, key) if file is not None else None
                if file is None:
                    break
                shown = f"{file.parent.name}/{file.name}"
                try:
                    data, problem = _read_capped(file, limit, f"the message file {shown}")
                except FileNotFoundError:
                    continue  # renamed or deleted since it was found
                except OSError as exc:
                    problem = f"cannot read the message file {shown}: {exc.strerror or exc}"
                break
            if data is None and problem is None:
                continue  # not a message file, or deleted meanwhile
            done.add(key)
            if data is not None:
                yield key, data
            elif unreadable is None:
                raise IngestError(str(file), "file", cast(str, problem))
            else:
                unreadable(key, cast(str, problem))


def _maildir_file(root: Path, file: Path, key: str) -> Path | None:
    """The message file `key` of the Maildir at `root` as it is named now: `file` when it is
    still there, else its name in ``cur/`` (where a mail client moves a message it has seen and
    renames it as its flags change, Maildir's "info" after the colon); None when there is none
    or it is no regular file."""
    if file.is_file():
        return file
    if os.path.lexists(file):
        return None  # a folder, a FIFO, ...: never opened
    cur = root / "cur"
    try:
        names = os.listdir(cur)
    except OSError:
        return None
    for name in names:
        if name.split(":", 1)[0] == key:
            moved = cur / name
            return moved if moved.is_file() else None
    return None


# --- explain ---------------------------------------------------------------------------------


def explain_message_file(path: Path, policy: Policy | None = None) -> list[dict[str, Any]]:
    """What a bounce message file says, one dict per recipient (DESIGN.md, "Interfaces").

    Each dict has file, recipient, code, status, outcome, reason, fault, rule, action, kind,
    detector and diagnostic; a file with no recipient (or that cannot be read) gives one dict
    with recipient None and an `error`. Replies are judged by `policy` (the shipped one when
    None), as the nightly job judges them.
    """
    # Imported here: judging loads the packaged policy, which parsing alone never needs (and
    # the module that judges for the nightly job reads messages through this one).
    from deliverability.ingest.convert import judge_bounce

    def judge(rec: BounceRecord, reply: Reply) -> Any:
        return judge_bounce(rec, reply, policy)

    path = Path(path)
    try:
        # An mbox is streamed below; a single message over the limit is not read (`iter_eml`).
        data, problem = _read_capped(path, _limit(None), "the message")
    except OSError as exc:
        return [{"file": str(path), "recipient": None, "error": str(exc), **_NO_VERDICT}]
    if not _is_mbox(path, data or b""):
        if data is None:
            return [{"file": str(path), "recipient": None, "error": problem, **_NO_VERDICT}]
        return _explain_rows(str(path), data, judge)
    # An mbox holds many bounces: explain every one, each row saying which message it is.
    rows: list[dict[str, Any]] = []

    def preamble(size: int, head: bytes, followed: bool) -> None:
        # What the nightly job records as rejected input is an error row here.
        rows.append(
            {
                "file": str(path),
                "recipient": None,
                "message": "byte 0",
                "error": preamble_reason(size, followed),
                **_NO_VERDICT,
            }
        )

    def cut_short(key: str, problem: str) -> None:
        rows.append(
            {"file": str(path), "recipient": None, "message": key, "error": problem, **_NO_VERDICT}
        )

    # The file as it is now, a last message still being written too.
    found = iter_mbox(path, preamble=preamble, hold_unterminated=False, unreadable=cut_short)
    for key, raw in found:
        for row in _explain_rows(str(path), raw, judge):
            rows.append({**row, "message": key})
    return rows


def preamble_reason(size: int, follows: bool) -> str:
    """Why the bytes before an mbox's first "From " line are not read (see `iter_mbox`)."""
    if not follows:
        return 'not an mbox: it does not start with a "From " line'
    return (
        f'{size} bytes before the first "From " line belong to no message '
        "(an mbox starts with one, RFC 4155): not read"
    )


def _is_mbox(path: Path, data: bytes) -> bool:
    """An mbox as the nightly job's format detection sees it (one way to tell, for both)."""
    if data.startswith(b"From "):
        return True
    from deliverability.errors import IngestError
    from deliverability.ingest.files import detect_format

    try:
        return detect_format(path) == "mbox"
    except IngestError:
        return False


def reply_for(rec: BounceRecord) -> Reply | None:
    """The reply to classify for a bounce: the one it quotes, else a bare ``x.0.0`` of its class.

    A bounce with no code at all still tells transient from permanent by its action (RFC 3464
    section 2.3.3) or its wording, which the classifier reads as the bare class status.
    """
    if rec.reply is not None:
        return rec.reply
    if rec.recipient and rec.klass in (4, 5):
        return Reply(code=None, status=StatusCode(rec.klass or 5, 0, 0), text=rec.diagnostic)
    return None


def _explain_rows(file: str, data: bytes, judge: Any) -> list[dict[str, Any]]:
    try:
        records = parse_message(data, source=file)
    except IngestError as exc:
        return [{"file": file, "recipient": None, "error": str(exc), **_NO_VERDICT}]
    out: list[dict[str, Any]] = []
    for rec in records:
        row: dict[str, Any] = {
            "file": file,
            "recipient": rec.recipient,
            "code": rec.code,
            "status": None if rec.status is None else str(rec.status),
            "action": rec.action,
            "kind": rec.kind.value,
            "detector": rec.detector,
            "diagnostic": rec.diagnostic,
        }
        reply = reply_for(rec)
        by_kind = _KIND_VERDICTS.get(rec.kind)
        if by_kind is not None:
            # The same verdicts the nightly job records for these kinds of message.
            row.update(
                outcome=by_kind.outcome.value,
                reason=by_kind.reason.value,
                fault=by_kind.fault.value,
                rule=by_kind.rule,
            )
        elif reply is not None and rec.recipient:
            # The verdict the nightly job records: the reply's, in the light of the report's
            # Action (RFC 3464 section 2.3.3: "delayed" is still trying, "failed" gave up).
            verdict = judge(rec, reply)
            row.update(
                outcome=verdict.outcome.value,
                reason=verdict.reason.value,
                fault=verdict.fault.value,
                rule=verdict.rule,
            )
        else:
            row.update(_NO_VERDICT)
        if rec.error:
            row["error"] = rec.error
        out.append(row)
    return out


_KIND_VERDICTS = {EventKind.COMPLAINT: COMPLAINT_VERDICT, EventKind.AUTO_REPLY: AUTO_REPLY_VERDICT}
_NO_VERDICT: dict[str, Any] = {"outcome": None, "reason": None, "fault": None, "rule": None}
