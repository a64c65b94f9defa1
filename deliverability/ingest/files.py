"""Opening inputs: plain, rotated and compressed (gzip, bzip2, xz) log files and mailboxes, read
resumably and defensively.

`read_lines` yields each line with the byte offsets where it starts and ends, so a run can record
how far it got and the next run can resume there. `file_identity` tells a file that was read
before from a new one that took its name (rotation) or the same one cut short (truncation), so a
new file is read from the start. Compressed files (gzip, bzip2, xz) are recognised by their magic
bytes, not their names; the offsets of a compressed file count decompressed bytes.

Hostile or broken input never crashes a read: a line over the length cap, a line with NUL bytes,
corrupt or truncated compressed data and a file that decompresses past the size cap all come back
as a `Line` with a `problem`, and reading goes on where it can.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import lzma
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from deliverability.errors import IngestError

__all__ = [
    "DECOMPRESSION_ERRORS",
    "DECOMPRESSORS",
    "FORMATS",
    "READ_COMPRESSIONS",
    "FileIdentity",
    "Line",
    "ReadLimits",
    "compression",
    "compression_of",
    "compression_refused",
    "detect_format",
    "file_identity",
    "is_compressed",
    "open_binary",
    "partial_last_line",
    "read_lines",
    "resume_offset",
    "same_file",
    "starts_like_syslog",
]

#: The formats `detect_format` tells apart (the names `ingest --format` takes).
FORMATS = ("jsonl", "csv", "postfix", "mbox", "maildir", "eml")

# RFC 1952 section 2.3.1: every gzip member starts with ID1=0x1f, ID2=0x8b.
GZIP_MAGIC = b"\x1f\x8b"
# How the other compressed formats start: bzip2 with "BZh", the block size digit and the magic of
# its first block (pi) or of its end (sqrt(pi)) in an empty stream (bzip2's reference
# implementation, no RFC); xz with its stream header magic (the .xz file format, section 2.1.1.1);
# zstd with its frame magic number (RFC 8878 section 3.1.1); LZ4 with its frame magic number
# (the LZ4 frame format description).
_BZIP2_RE = re.compile(rb"BZh[1-9](?:1AY&SY|\x17rE8P\x90)")
_MAGIC = (
    ("gzip", GZIP_MAGIC),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("lz4", b"\x04\x22\x4d\x18"),
)
#: The compressions read, with the standard library's gzip, bz2 and lzma modules. zstd and lz4
#: (which Dovecot's zlib plugin can write too) need packages outside it: they are refused.
READ_COMPRESSIONS: dict[str, Callable[..., Any]] = {
    "gzip": gzip.open,
    "bzip2": bz2.open,
    "xz": lzma.open,
}
#: One-shot decompressors of the same compressions, for data already in memory: each takes the
#: most it may give (`max_length`), so a decompression bomb is never expanded past a limit.
DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),  # RFC 1952 framing
    "bzip2": bz2.BZ2Decompressor,
    "xz": lzma.LZMADecompressor,
}
#: What reading compressed data raises when the data is corrupt or cut short (lzma's errors are
#: no OSError).
DECOMPRESSION_ERRORS = (EOFError, OSError, zlib.error, lzma.LZMAError)
#: How much of a file's start its fingerprint covers.
FINGERPRINT_SIZE = 4096
_SKIP_CHUNK = 64 * 1024
_RAW_SHOWN = 200


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Caps that keep a hostile or broken file from exhausting memory or disk time.

    `max_decompressed` bounds what one compressed file may expand to (a gzip "bomb" expands about
    1000 to 1); `max_line` bounds one line, which real log lines never come near.
    """

    max_decompressed: int = 2 * 1024**3
    max_line: int = 1024**2

    def __post_init__(self) -> None:
        if self.max_decompressed < 1 or self.max_line < 1:
            raise ValueError("read limits must be positive")


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a file: byte offsets of its start and of what follows it, and its text.

    `end` is where the next read resumes. `problem` is set when the line cannot be used (too long,
    NUL bytes) or the file cannot be read further (corrupt compressed data, over the size cap; then
    `end` equals `start`, so a later run retries from there). `bad_utf8` says the bytes were not
    valid UTF-8 and `text` holds U+FFFD replacement characters: the parser decides whether the
    fields it needs survived.
    """

    start: int
    end: int
    text: str
    problem: str | None = None
    bad_utf8: bool = False


@dataclass(frozen=True, slots=True)
class FileIdentity:
    """Which file this is, independent of its name.

    The device and inode say which file a name points to now; the fingerprint (SHA-256 of the
    first `fingerprint_size` bytes of content, decompressed) guards against an inode reused after
    a deletion and against a file truncated and rewritten in place. `key` is a one-line text form
    for storage; `from_key` reads it back. `compressed` is for any compression read (its key
    says "gz", as it did when gzip was the only one).
    """

    device: int
    inode: int
    fingerprint: str
    fingerprint_size: int
    compressed: bool = False

    @property
    def key(self) -> str:
        kind = "gz" if self.compressed else "plain"
        return f"{kind}:{self.device}:{self.inode}:{self.fingerprint_size}:{self.fingerprint}"

    @classmethod
    def from_key(cls, key: str) -> FileIdentity:
        try:
            kind, device, inode, size, fingerprint = key.split(":")
            if kind not in ("gz", "plain"):
                raise ValueError(kind)
            return cls(int(device), int(inode), fingerprint, int(size), kind == "gz")
        except ValueError:
            raise IngestError(key, "identity", "not a file identity key") from None


def compression_of(data: bytes) -> str | None:
    """The compressed format `data` starts as (gzip, bzip2, xz, zstd, lz4), or None."""
    if data.startswith(b"BZh"):
        return "bzip2" if _BZIP2_RE.match(data) else None
    return next((name for name, magic in _MAGIC if data.startswith(magic)), None)


def compression(path: str | os.PathLike[str]) -> str | None:
    """The compressed format of the file, told by its magic bytes whatever its name, or None."""
    try:
        with open(path, "rb") as f:
            return compression_of(f.read(10))
    except OSError as exc:
        raise _open_error(path, exc) from None


def is_compressed(path: str | os.PathLike[str]) -> bool:
    """True when the file is compressed in a format that is read (`READ_COMPRESSIONS`)."""
    return compression(path) in READ_COMPRESSIONS


def compression_refused(what: str, name: str) -> str:
    """Why `what`, compressed in `name` (zstd, lz4), is not read, and what to do."""
    return (
        f"{what} is {name}-compressed, which is not read (it needs a package outside Python's "
        f"standard library): decompress it first ({name} -d), or have it written in gzip, "
        "bzip2 or xz (Dovecot: zlib_save = gz, bz2 or xz; logrotate: compresscmd)"
    )


def open_binary(path: str | os.PathLike[str]) -> io.BufferedIOBase:
    """Open a file for reading bytes, decompressing it when it is gzip, bzip2 or xz data (read
    as a stream: memory stays bounded). Raises IngestError naming the format for a compressed
    one that is not read (`compression_refused`)."""
    kind = compression(path)
    if kind is not None and kind not in READ_COMPRESSIONS:
        raise IngestError(str(path), "file", compression_refused("the file", kind))
    try:
        if kind is not None:
            return cast(io.BufferedIOBase, READ_COMPRESSIONS[kind](path, "rb"))
        return open(path, "rb")
    except OSError as exc:
        raise _open_error(path, exc) from None


def _open_error(path: str | os.PathLike[str], exc: OSError) -> IngestError:
    return IngestError(str(path), "file", f"cannot open: {exc.strerror or exc}")


def _read_head(path: str | os.PathLike[str], size: int) -> bytes:
    """The first `size` bytes of content (decompressed), as far as they can be read."""
    with open_binary(path) as f:
        try:
            return f.read(size)
        except DECOMPRESSION_ERRORS:
            return b""


def _compressed_problem(path: str | os.PathLike[str]) -> str | None:
    """Why a compressed file gives no data, when it is broken rather than empty."""
    try:
        with open_binary(path) as f:
            f.read(_DETECT_BYTES)
    except DECOMPRESSION_ERRORS as exc:
        return f"the {compression(path)} data is truncated or corrupt ({exc})"
    return None


def file_identity(path: str | os.PathLike[str]) -> FileIdentity:
    """The identity of the file at `path` now (see FileIdentity)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _open_error(path, exc) from None
    head = _read_head(path, FINGERPRINT_SIZE)
    return FileIdentity(
        device=st.st_dev,
        inode=st.st_ino,
        fingerprint=hashlib.sha256(head).hexdigest(),
        fingerprint_size=len(head),
        compressed=is_compressed(path),
    )


def same_file(saved: FileIdentity, path: str | os.PathLike[str]) -> bool:
    """True when `path` holds the file `saved` describes, possibly grown since.

    The content that was fingerprinted must still be there, byte for byte. When that content is a
    full `FINGERPRINT_SIZE` bytes of log lines, it alone decides: it carries time stamps, so no
    other file starts the same, and a rotated log copied (``copytruncate``) or compressed into a
    new file keeps its identity. A shorter fingerprint (a young file, perhaps a header row alone)
    could match another file's start, so the device and inode must match too.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _open_error(path, exc) from None
    if saved.fingerprint_size < FINGERPRINT_SIZE and (st.st_dev, st.st_ino) != (
        saved.device,
        saved.inode,
    ):
        return False
    head = _read_head(path, saved.fingerprint_size)
    return len(head) == saved.fingerprint_size and (
        hashlib.sha256(head).hexdigest() == saved.fingerprint
    )


def resume_offset(path: str | os.PathLike[str], saved: FileIdentity | None, offset: int) -> int:
    """Where to start reading `path`, given the identity and offset a previous run recorded.

    The saved offset when the file is the same one and not shorter than it; otherwise 0: the
    name now holds a new file (rotation) or the file was truncated, so all of it is new.
    """
    if saved is None or offset <= 0 or not same_file(saved, path):
        return 0
    if not is_compressed(path):
        try:
            if os.path.getsize(path) < offset:
                return 0
        except OSError as exc:
            raise _open_error(path, exc) from None
    return offset


def partial_last_line(path: str | os.PathLike[str]) -> int | None:
    """Where the last line of a plain file starts when it has no newline yet, else None.

    That line is still being written (a mailer or syslog appends a line in more than one write):
    `read_lines(..., hold_partial_line=True)` leaves it for the next run. A compressed file is
    complete, so it never has one.
    """
    if is_compressed(path):
        return None
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            pos = end
            while pos > 0:
                step = min(_SKIP_CHUNK, pos)
                f.seek(pos - step)
                chunk = f.read(step)
                if pos == end and chunk.endswith((b"\n", b"\r")):
                    return None
                # A CR alone ends a line too (`_cr_lines`).
                newline = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
                if newline != -1:
                    return pos - step + newline + 1
                pos -= step
            return 0 if end else None
    except OSError as exc:
        raise _open_error(path, exc) from None


def _cr_lines(raw: bytes) -> list[bytes]:
    """`raw` (up to and with its LF) cut after each CR that no LF follows.

    Classic Mac OS tools end lines with CR alone; read up to LF only, such a file is one long
    line, and without a final LF it would be held back for ever as a half-written last line.
    A CR that ends a line being written before its LF makes an empty line of the LF, passed over.
    """
    body_end = len(raw) - (2 if raw.endswith(b"\r\n") else 1 if raw.endswith(b"\n") else 0)
    if raw.find(b"\r", 0, body_end) == -1:
        return [raw]
    pieces = []
    start = 0
    while (cr := raw.find(b"\r", start, body_end)) != -1:
        pieces.append(raw[start : cr + 1])
        start = cr + 1
    if start < len(raw):
        pieces.append(raw[start:])
    return pieces


def _decoded(raw: bytes, start: int, end: int) -> Line:
    body = raw
    if body.endswith(b"\n"):
        body = body[:-2] if body.endswith(b"\r\n") else body[:-1]
    elif body.endswith(b"\r"):
        body = body[:-1]
    if b"\x00" in body:
        shown = body[:_RAW_SHOWN].replace(b"\x00", b"\\0").decode("utf-8", "replace")
        return Line(start, end, shown, problem="NUL bytes in the line (binary data?)")
    try:
        return Line(start, end, body.decode("utf-8"))
    except UnicodeDecodeError:
        return Line(start, end, body.decode("utf-8", "replace"), bad_utf8=True)


def read_lines(
    path: str | os.PathLike[str],
    *,
    start_offset: int = 0,
    limits: ReadLimits | None = None,
    hold_partial_line: bool = False,
) -> Iterator[Line]:
    """Yield the lines of `path` from byte `start_offset` on (see Line).

    A line ends at LF, or at a CR that no LF follows (`_cr_lines`).
    `hold_partial_line` leaves a last line without its newline unread in a plain file, for a log
    that is still being written: the next run reads it whole. A compressed file is complete once it
    exists (logrotate compresses a closed log), so its last line is read either way. Raises
    IngestError only when the file cannot be opened at all.
    """
    limits = limits or ReadLimits()
    if start_offset < 0:
        raise ValueError("start_offset must not be negative")
    compressed = is_compressed(path)
    hold_partial_line = hold_partial_line and not compressed
    cap = limits.max_decompressed if compressed else None
    with open_binary(path) as f:
        pos = start_offset
        try:
            if start_offset:
                f.seek(start_offset)
        except DECOMPRESSION_ERRORS as exc:
            yield Line(0, 0, "", problem=f"compressed data is corrupt or truncated: {exc}")
            return
        if cap is not None and pos > cap:
            yield _over_cap(pos, cap)
            return
        while True:
            try:
                raw = f.readline(limits.max_line + 1)
            except DECOMPRESSION_ERRORS as exc:
                yield Line(pos, pos, "", problem=f"compressed data is corrupt or truncated: {exc}")
                return
            if not raw:
                return
            end = pos + len(raw)
            if cap is not None and end > cap:
                yield _over_cap(pos, cap)
                return
            if len(raw) > limits.max_line and not raw.endswith(b"\n"):
                skipped, failure = _skip_rest_of_line(f, end, cap)
                if failure:
                    yield Line(pos, pos, "", problem=failure)
                    return
                shown = raw[:_RAW_SHOWN].decode("utf-8", "replace")
                problem = f"line longer than {limits.max_line} bytes ({skipped - pos} bytes)"
                yield Line(pos, skipped, shown, problem=problem)
                pos = skipped
                continue
            for piece in _cr_lines(raw):
                if hold_partial_line and not piece.endswith((b"\n", b"\r")):
                    return
                yield _decoded(piece, pos, pos + len(piece))
                pos += len(piece)


def _over_cap(pos: int, cap: int) -> Line:
    return Line(
        pos,
        pos,
        "",
        problem=(
            f"decompresses to more than {cap} bytes (the per-file limit): the rest is not read; "
            "raise the limit if this is a genuine log"
        ),
    )


def _skip_rest_of_line(f: io.BufferedIOBase, pos: int, cap: int | None) -> tuple[int, str | None]:
    """Read past the rest of an over-long line without keeping it.

    Returns the offset after the line, and a problem when the file ended in a read error or
    went over the cap first.
    """
    while True:
        try:
            chunk = f.readline(_SKIP_CHUNK)
        except DECOMPRESSION_ERRORS as exc:
            return pos, f"compressed data is corrupt or truncated: {exc}"
        pos += len(chunk)
        if cap is not None and pos > cap:
            return pos, _over_cap(pos, cap).problem
        if not chunk or chunk.endswith(b"\n"):
            return pos, None


# --- format detection ---------------------------------------------------------------------------

_DETECT_BYTES = 64 * 1024
# How a syslog line starts: an RFC 5424 header's "<PRI>VERSION " (section 6), or a BSD time
# stamp (RFC 3164 section 4.1.2, "Nov 28 03:14:15") or an RFC 3339 one (rsyslog's high-precision
# format, journald's short-iso), as the Postfix reader reads them.
#: A BSD or an RFC 3339 time stamp, as it starts a syslog line (the Postfix reader finds where a
#: second line starts inside one by it too).
SYSLOG_STAMP = r"(?:[A-Z][a-z]{2}\s+\d{1,2}\s+\d\d:\d\d:\d\d|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d)"
_SYSLOG_START = rf"(?:<\d{{1,3}}>[1-9]\d{{0,2}} |{SYSLOG_STAMP})"
_SYSLOG_START_RE = re.compile(_SYSLOG_START)
# A whole syslog header: a BSD or RFC 3339 stamp, the host and "program[pid]:"; or an RFC 5424
# line ("<PRI>1 TIMESTAMP HOST APP-NAME PROCID ...", section 6). A Postfix program is
# "postfix/smtp", also multi-instance names such as "postfix-out/smtp" and service paths
# "postfix/submission/smtpd".
_SYSLOG_LINE_RE = re.compile(
    r"^(<\d{1,3}>[1-9]\d{0,2} )?(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+)"
    r"\s+\S+\s+(?P<program>[\w./-]+?)(?(1) |(?:\[\d+\])?:)"
)
_POSTFIX_PROGRAM_RE = re.compile(r"postfix[\w.-]*/")
# RFC 5322 section 3.6.8: a field name is printable US-ASCII except the colon.
_HEADER_RE = re.compile(r"^[!-9;-~]+:[ \t]?")
#: An mbox separator line in its usual form (RFC 4155 section 2: "From ", the envelope sender,
#: then an asctime() date): strict enough that a line of prose is not taken for one.
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
#: An mbox separator line: "From ", the envelope sender (which some writers leave empty), and a
#: date with a time of day (RFC 4155 appendix A: asctime, "Sat Nov 28 03:14:15 2026"; also seen
#: without the seconds, or as an RFC 5322 date, "Sat, 28 Nov 2026 03:14:15 +0000"). A line of a
#: message's text that starts with "From " carries no such date: it does not split the message.
MBOX_SEPARATOR_RE = re.compile(
    rf"^From (?:\S+)? +(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),? +)?"
    rf"(?:{_MONTH} +\d{{1,2}}|\d{{1,2}} +{_MONTH}) .*?\d\d:\d\d"
)
_CONTROL_BYTES = bytes(c for c in range(32) if c not in b"\t\n\r\f\x1b")
_CSV_REPLY_COLUMNS = ({"reply"}, {"code"}, {"status"})


def detect_format(path: str | os.PathLike[str]) -> str:
    """Tell which of FORMATS `path` is in, from its content (never its name).

    A folder with ``cur`` and ``new`` is a Maildir; a file whose first line starts with
    ``From `` is an mbox; a JSON object on the first non-empty line is JSON Lines; a header row
    with the mailer reply log columns is CSV; a syslog line first, or syslog lines from a
    ``postfix/`` program, are a Postfix log; RFC 5322 header fields are a single message; other
    lines followed by an mbox separator line are an mbox with a preamble. Raises IngestError
    otherwise.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "cur").is_dir() and (p / "new").is_dir():
            return "maildir"
        raise IngestError(str(p), "folder", "a folder without cur/ and new/ is not a Maildir")
    head = _detect_head(p)
    if not head.strip():
        if is_compressed(p):
            problem = _compressed_problem(p)
            if problem:
                raise IngestError(str(p), "file", problem)
        raise IngestError(str(p), "file", "the file is empty: no format to detect")
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    lines = [ln for ln in text.splitlines() if ln.strip()][:50]
    # A few NUL bytes further on (a crash can leave a run of them in a log) are the reader's to
    # reject line by line; NUL bytes on the very first line, or control bytes all over, mean
    # binary data.
    controls = sum(head.count(bytes([c])) for c in _CONTROL_BYTES)
    if "\x00" in lines[0] or controls * 10 > len(head):
        raise IngestError(str(p), "file", "binary data (NUL bytes), not a log or a message")
    lines = [ln for ln in lines if "\x00" not in ln]
    first = lines[0]
    if first.startswith("From "):
        return "mbox"
    if first.lstrip().startswith("{"):
        return "jsonl"
    if _is_mailer_csv_header(first):
        return "csv"
    if _SYSLOG_LINE_RE.match(first) or any(_is_postfix_line(ln) for ln in lines):
        # A mail.log holds other programs' lines too (dovecot, opendkim, ...), often many before
        # Postfix's first; syslog is the one line format read, and its other lines are passed
        # over. An RFC 3339 stamp ("2026-11-28T03:14:15") is not a mail header field.
        return "postfix"
    if _HEADER_RE.match(first) and not first.startswith((" ", "\t")):
        return "eml"
    if any(MBOX_SEPARATOR_RE.match(ln) for ln in lines[1:]):
        # An mbox with something before its first message (an export tool's banner): the
        # reader records those bytes as rejected input and reads the messages after them.
        return "mbox"
    raise IngestError(
        str(p),
        "file",
        "cannot tell the format (not JSON Lines, the reply log CSV, a Postfix log, an mbox, "
        f"a Maildir or a message); name it with --format ({'|'.join(FORMATS)})",
        raw=first[:_RAW_SHOWN],
    )


def _detect_head(path: Path) -> bytes:
    """The first `_DETECT_BYTES` of content, decompressed as far as the data allows.

    A gzip file cut short (a copy that stopped, a disk that filled) still starts with whole
    deflate blocks: an incremental decompressor gives what they hold, where `gzip.open` gives up
    on the whole read. Its lines before the cut are readable, so its format is told from them.
    So are an xz file's (LZMA decodes as it goes) and a bzip2 file's whole blocks before the cut.
    """
    kind = compression(path)
    if kind in ("bzip2", "xz"):
        return _stream_head(path, DECOMPRESSORS[kind])
    if kind != "gzip":
        return _read_head(path, _DETECT_BYTES)
    out = b""
    try:
        with open(path, "rb") as f:
            unzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
            pending = b""
            while len(out) < _DETECT_BYTES:
                if not pending:
                    pending = f.read(_DETECT_BYTES)
                    if not pending:
                        break
                if unzip.eof:
                    # RFC 1952 section 2.2: a file may hold several members, one after another.
                    unzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
                out += unzip.decompress(pending, _DETECT_BYTES - len(out))
                pending = unzip.unused_data if unzip.eof else unzip.unconsumed_tail
    except zlib.error:
        pass  # corrupt from here on: what came before is the head
    except OSError as exc:
        raise _open_error(path, exc) from None
    return out[:_DETECT_BYTES]


def _stream_head(path: Path, new: Callable[[], Any]) -> bytes:
    """`_detect_head` for bzip2 and xz: the first `_DETECT_BYTES` the data decompresses to,
    up to where it is cut short or corrupt. Their decompressors keep the input they have not
    decoded yet (`needs_input`), unlike zlib's."""
    out = bytearray()
    try:
        with open(path, "rb") as f:
            unpack = new()
            while len(out) < _DETECT_BYTES:
                if unpack.eof:
                    # Several streams may follow one another (pbzip2, xz --block-list): each
                    # is decoded as it comes.
                    data = unpack.unused_data or f.read(_DETECT_BYTES)
                    if not data:
                        break
                    unpack = new()
                elif unpack.needs_input:
                    data = f.read(_DETECT_BYTES)
                    if not data:
                        break
                else:
                    data = b""  # more output is waiting in the decompressor
                try:
                    out += unpack.decompress(data, _DETECT_BYTES - len(out))
                except DECOMPRESSION_ERRORS:
                    break  # corrupt from here on: what came before is the head
    except OSError as exc:
        raise _open_error(path, exc) from None
    return bytes(out)


def starts_like_syslog(text: str) -> bool:
    """True when `text` starts as a syslog line does (see `_SYSLOG_START`), whatever follows."""
    return _SYSLOG_START_RE.match(text) is not None


def _is_postfix_line(line: str) -> bool:
    match = _SYSLOG_LINE_RE.match(line)
    return match is not None and _POSTFIX_PROGRAM_RE.match(match.group("program")) is not None


def _is_mailer_csv_header(line: str) -> bool:
    try:
        row = next(csv.reader(io.StringIO(line)))
    except (csv.Error, StopIteration):
        return False
    columns = {c.strip().lower() for c in row}
    return {"at", "recipient"} <= columns and any(c <= columns for c in _CSV_REPLY_COLUMNS)
