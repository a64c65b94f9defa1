"""The mailer reply log: what a sender writes as it goes, one SMTP result per line.

DESIGN.md "Mailer reply log": JSON Lines, or CSV with a header row, with the fields `at`
(ISO 8601), `recipient`, `message_id`, `attempt` (optional), and either `reply` (the raw reply
text) or `code` / `status` / `text`. An optional `mx_host` names the MX host that answered (it
teaches the store which provider group hosts the recipient's domain). Other fields are ignored,
so a mailer may log more.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping

from deliverability.addresses import normalize_address
from deliverability.clock import parse_time
from deliverability.errors import AddressError, DeliverabilityError, IngestError, not_unicode
from deliverability.ingest.files import Line, ReadLimits, detect_format, read_lines
from deliverability.ingest.records import (
    MAX_ATTEMPT,
    LogRecord,
    Rejected,
    normalize_message_id,
    position_of,
)
from deliverability.replies import Reply, parse_reply, parse_status

__all__ = ["LogRecord", "Rejected", "parse_mailer_row", "read_mailer_log"]

#: Builds the IngestError for a problem with the entry at hand.
_Fail = Callable[[str], IngestError]

_REQUIRED_COLUMNS = ("at", "recipient", "message_id")
_REPLY_COLUMNS = ("reply", "code", "status")
# A CSV field may hold a multi-line reply inside quotes (RFC 4180 section 2.6); a row is looked
# for over at most this many physical lines, so one stray quote cannot swallow the rest of the
# file.
_MAX_CSV_RECORD_LINES = 50
#: More digits than any field needs. Python refuses to read an int of more than 4,300 digits
#: (sys.get_int_max_str_digits), and a number that long is garbage whatever the field.
_MAX_NUMBER_DIGITS = 100


class _LongNumber:
    """A JSON number of more than `_MAX_NUMBER_DIGITS` digits, kept as its length only: the field
    check that meets it rejects it by name, and a field the reader ignores costs nothing."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"a number of {self.digits} digits"


def _json_int(text: str) -> int | _LongNumber:
    """`json.loads`' parse_int: an int, or a `_LongNumber` instead of int()'s ValueError."""
    digits = len(text.lstrip("-"))
    return int(text) if digits <= _MAX_NUMBER_DIGITS else _LongNumber(digits)


def _shown(value: object) -> str:
    """A field's value for a reason, cut short: the reason is a line of text, not the input."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


# The reasons for a bad attempt or code, made only when one is bad (a good row's value is never
# shown, and each row of a log passes here).
def _not_whole(value: object) -> str:
    return f"field 'attempt' must be a whole number, not {_shown(value)}"


def _not_a_code(value: object) -> str:
    return f"field 'code' must be a reply code such as 550, not {_shown(value)}"


def parse_mailer_row(row: Mapping[str, object], source: str, position: str) -> LogRecord:
    """Read one reply log entry (a JSON object or a CSV row by column name).

    Raises IngestError naming the field that is missing or bad. `raw` is left empty; the readers
    fill it with the line as found.
    """

    def fail(problem: str) -> IngestError:
        return IngestError(source, position, problem)

    def required(name: str) -> str:
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise fail(f"missing field {name!r}")
        if not isinstance(value, str):
            raise fail(f"field {name!r} must be a string, not {type(value).__name__}")
        if "\ufffd" in value:
            raise fail(f"field {name!r} is not valid UTF-8: {value!r}")
        return value.strip()

    at_text = required("at")
    recipient = required("recipient")
    message_id = required("message_id")
    try:
        at = parse_time(at_text)
    except DeliverabilityError as exc:
        # Also a time out of range once in UTC (year 1 east of UTC, 9999 west): parse_time says.
        raise fail(f"field 'at': {exc}") from None
    try:
        normalize_address(recipient)
    except AddressError as exc:
        raise fail(f"field 'recipient': {exc}") from None
    return LogRecord(
        at=at,
        recipient=recipient,
        message_id=normalize_message_id(message_id),
        attempt=_attempt(row.get("attempt"), fail),
        reply=_reply(row, fail),
        source=source,
        position=position,
        raw="",
        relay=_mx_host(row.get("mx_host"), fail),
    )


def _mx_host(value: object, fail: _Fail) -> str | None:
    """The optional `mx_host` field, as written (the engine normalises it)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise fail(f"field 'mx_host' must be a string, not {type(value).__name__}")
    return value.strip()


def _attempt(value: object, fail: _Fail) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None

    # int() reads any script's digits ("١٢" is 12): a log's attempt is written in ASCII.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise fail(_not_whole(value))
    if isinstance(value, str) and not value.strip().isascii():
        raise fail(_not_whole(value))
    try:
        attempt = int(value)
    except ValueError:
        raise fail(_not_whole(value)) from None
    if attempt < 1:
        raise fail(f"field 'attempt' must be 1 or more, not {attempt}")
    if attempt > MAX_ATTEMPT:
        raise fail(f"field 'attempt' must be at most {MAX_ATTEMPT}, not {_shown(attempt)}")
    return attempt


def _reply(row: Mapping[str, object], fail: _Fail) -> Reply:
    """The reply from `reply` when present (it wins), else from `code` / `status` / `text`."""
    raw = row.get("reply")
    if isinstance(raw, str) and raw.strip():
        try:
            return parse_reply(raw)
        except DeliverabilityError as exc:
            raise fail(f"field 'reply': {exc}") from None
    if raw is not None and not isinstance(raw, str):
        raise fail(f"field 'reply' must be a string, not {type(raw).__name__}")

    code_value, status_value, text_value = row.get("code"), row.get("status"), row.get("text")
    code: int | None = None
    if code_value is not None and code_value != "":
        if isinstance(code_value, bool) or not isinstance(code_value, int | str):
            raise fail(_not_a_code(code_value))
        try:
            code = int(code_value)
        except ValueError:
            raise fail(_not_a_code(code_value)) from None
        # RFC 5321 section 4.2: a reply code is three digits, the first 2 to 5.
        if not 200 <= code <= 599:
            raise fail(f"field 'code' {code} is not an SMTP reply code (200-599)")
    status = None
    if isinstance(status_value, str) and status_value.strip():
        try:
            status = parse_status(status_value)
        except DeliverabilityError as exc:
            raise fail(f"field 'status': {exc}") from None
    elif status_value not in (None, ""):
        raise fail(f"field 'status' must be a string such as \"5.1.1\", not {status_value!r}")
    if code is None and status is None:
        raise fail("missing field 'reply' (or 'code' / 'status')")
    if text_value is not None and not isinstance(text_value, str):
        raise fail(f"field 'text' must be a string, not {type(text_value).__name__}")
    problem = not_unicode("field 'text'", text_value) if text_value else None
    if problem is not None:
        raise fail(problem)
    text = " ".join((text_value or "").split())
    return Reply(code=code, status=status, text=text)


def read_mailer_log(
    path: str | os.PathLike[str],
    *,
    start_offset: int = 0,
    format: str | None = None,
    limits: ReadLimits | None = None,
    hold_partial_line: bool = False,
) -> Iterator[tuple[int, LogRecord | Rejected]]:
    """Yield (byte offset after the item, item) for every entry of a reply log from `start_offset`.

    `format` is ``jsonl`` or ``csv``; by default it is detected from the content. A bad entry
    becomes a `Rejected` and reading goes on. Raises IngestError when the file cannot be opened or
    is not a reply log at all. Items name their source by the path as given: the file name alone
    would make two folders' ``replies.jsonl`` one source.
    """
    source = os.fspath(path)
    if format is None:
        format = detect_format(path)
    if format == "jsonl":
        yield from _read_jsonl(path, source, start_offset, limits, hold_partial_line)
    elif format == "csv":
        yield from _read_csv(path, source, start_offset, limits, hold_partial_line)
    else:
        raise IngestError(
            str(path), "file", f"not a mailer reply log (JSON Lines or CSV): looks like {format}"
        )


def _without_bom(line: Line) -> str:
    """The text of a line, without the byte order mark some Windows tools start a file with."""
    return line.text.removeprefix("\ufeff") if line.start == 0 else line.text


def _unusable(line: Line, source: str) -> Rejected | None:
    """A Rejected for a line the reader already found unusable, else None."""
    if line.problem is not None:
        return Rejected(source, position_of(line.start), line.problem, line.text)
    return None


def _read_jsonl(
    path: str | os.PathLike[str],
    source: str,
    start_offset: int,
    limits: ReadLimits | None,
    hold_partial_line: bool,
) -> Iterator[tuple[int, LogRecord | Rejected]]:
    for line in read_lines(
        path, start_offset=start_offset, limits=limits, hold_partial_line=hold_partial_line
    ):
        bad = _unusable(line, source)
        if bad is not None:
            yield line.end, bad
            continue
        if not line.text.strip():
            continue
        position = position_of(line.start)
        try:
            obj = json.loads(_without_bom(line), parse_int=_json_int)
        except json.JSONDecodeError as exc:
            yield line.end, Rejected(source, position, f"broken JSON: {exc}", line.text)
            continue
        except RecursionError:
            # The json module's decoder recurses once per level of nesting.
            problem = "broken JSON: arrays or objects nested too deep"
            yield line.end, Rejected(source, position, problem, line.text)
            continue
        if not isinstance(obj, dict):
            problem = f"expected a JSON object, found {type(obj).__name__}"
            yield line.end, Rejected(source, position, problem, line.text)
            continue
        yield line.end, _record_or_rejected(obj, source, position, line.text)


def _record_or_rejected(
    row: Mapping[str, object], source: str, position: str, raw: str
) -> LogRecord | Rejected:
    try:
        record = parse_mailer_row(row, source, position)
    except IngestError as exc:
        return Rejected(source, position, exc.problem, raw)
    return dataclasses.replace(record, raw=raw)


def _read_csv(
    path: str | os.PathLike[str],
    source: str,
    start_offset: int,
    limits: ReadLimits | None,
    hold_partial_line: bool,
) -> Iterator[tuple[int, LogRecord | Rejected]]:
    # The header is the first line that is not blank, as for `detect_format`.
    header_line = next(
        (
            line
            for line in read_lines(path, limits=limits)
            if line.problem is not None or _without_bom(line).strip()
        ),
        None,
    )
    if header_line is None:
        return
    header = _csv_fields(_without_bom(header_line))
    columns = [c.strip().lower() for c in header]
    missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
    if not any(c in columns for c in _REPLY_COLUMNS):
        missing.append("reply (or code / status)")
    if header_line.problem is not None or missing:
        problem = header_line.problem or f"the CSV header lacks column(s): {', '.join(missing)}"
        yield 0, Rejected(source, position_of(header_line.start), problem, header_line.text)
        return

    lines = iter(
        read_lines(
            path,
            start_offset=max(start_offset, header_line.end),
            limits=limits,
            hold_partial_line=hold_partial_line,
        )
    )
    # Lines to read again: those after a line whose quote opened a field that did not end in a
    # good row.
    again: deque[Line] = deque()
    pending: list[Line] = []
    while True:
        line = again.popleft() if again else next(lines, None)
        if line is not None and (line.problem is None or not pending):
            bad = _unusable(line, source)
            if bad is not None:
                yield line.end, bad
                continue
            if not pending and not line.text.strip():
                continue
            pending.append(line)
            text = "\n".join(ln.text for ln in pending)
            unclosed = _unclosed(text)
            if unclosed and len(pending) < _MAX_CSV_RECORD_LINES:
                continue  # a quoted field goes on to the next line
        elif pending:
            # The file ends, or an unreadable line comes (rejected next), inside a quoted field.
            if line is not None:
                again.appendleft(line)
            text = "\n".join(ln.text for ln in pending)
            unclosed = True
        else:
            return
        first, last = pending[0], pending[-1]
        item = None if unclosed else _csv_item(text, columns, header, source, first.start)
        if len(pending) > 1 and (unclosed or isinstance(item, Rejected)):
            # A row over several lines that is no good row: the quote that opened it was most
            # likely a stray one (RFC 4180 section 2.6: only a quoted field holds a line break).
            # Its first line is rejected alone, and the lines after it are read again on their
            # own, so one stray quote costs one row.
            again.extendleft(reversed(pending[1:]))
            pending = []
            problem = (
                "a quoted CSV field opened on this line is not closed into a good row by the "
                f"{len(again)} line(s) after it (a stray quote?): they are read on their own"
            )
            yield first.end, Rejected(source, position_of(first.start), problem, first.text)
            continue
        pending = []
        if unclosed:
            where = "the end of the file" if line is None else "an unreadable line"
            problem = f"a quoted CSV field is not closed before {where}"
            item = Rejected(source, position_of(first.start), problem, text)
        if item is not None:
            yield last.end, item


def _csv_fields(text: str) -> list[str]:
    return next(csv.reader(text.splitlines(keepends=True) or [""]), [])


def _unclosed(text: str) -> bool:
    """True when `text` ends inside a quoted CSV field (a quote inside an unquoted field, as in
    ``5" disk``, does not open one)."""
    if '"' not in text:
        return False
    try:
        next(csv.reader(text.splitlines(keepends=True), strict=True), None)
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _csv_item(
    text: str, columns: list[str], header: list[str], source: str, start: int
) -> LogRecord | Rejected | None:
    """The item a CSV record starting at byte `start` holds; None for a repeated header row."""
    position = position_of(start)
    try:
        fields = _csv_fields(text)
    except csv.Error as exc:
        return Rejected(source, position, f"broken CSV: {exc}", text)
    if fields == header:
        # The same header again: logs concatenated from several files.
        return None
    if len(fields) != len(columns):
        problem = f"expected {len(columns)} CSV columns, found {len(fields)}"
        return Rejected(source, position, problem, text)
    return _record_or_rejected(dict(zip(columns, fields, strict=True)), source, position, text)
