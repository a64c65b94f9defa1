"""One pass over a bounce message's MIME structure, shared by every detector.

A bounce is read for a few things: its headers, its report parts (``message/delivery-status``,
``message/feedback-report``), its human-readable text, and the headers of the returned original.
This module reads exactly those and skips the rest, which is most of the bytes: the returned
original's body and attachments are never parsed. That is several times cheaper than a full
``email`` parse, and it has to be robust in the same ways: bounces are often broken MIME (no
closing boundary, no opening one, wrong charsets, 8-bit bytes in headers), so nothing here
raises on bad structure, and every text is decoded with ``errors="replace"``.

The rules followed: RFC 5322 (header fields, folding), RFC 2045/2046 (content types, transfer
encodings, multipart boundaries), RFC 2047 (encoded words), RFC 3462/6522 (multipart/report).
"""

from __future__ import annotations

import binascii
import codecs
import email.header
import re
from dataclasses import dataclass, field

__all__ = ["Headers", "Parsed", "decode_header", "lf_lines", "parse_bytes"]

# A line that starts the copy of the returned message in a non-MIME bounce. Each mail system
# words it differently; these are the wordings seen in the wild (qmail, Exim, Sendmail, Gmail,
# Yahoo, DragonFly, Courier, ...).
# Matched against "\n" + text (so "\n" stands for a line start): a pattern that starts with a
# line break is found by a fast scan for that character, where "^" in MULTILINE mode is tried
# at every position.
_RETURNED_RE = re.compile(
    r"\n[ \t]*(?:"
    r"-{2,}\s*(?:Below this line is a copy of the message|This is a copy of the message"
    r"|Original message|Unsent message follows|Returned message|Original Message"
    r"|The header of the original message|Message header follows|Unsent Message below"
    r"|original message follows|Copy of the original message)"
    r"|Message headers follow"
    r"|Included is a copy of the message header"
    r"|(?:Original|Returned) message (?:headers )?follow"
    r"|Below this line is a copy of the message"
    r"|-{5,}\s*Original message\s*-{5,}"
    r")",
    re.I,
)
_INLINE_HEADERS_RE = re.compile(r"\n[ \t]*\n(?=(?:Received|Return-Path)[ \t]*:[ \t]*\S)", re.I)
_TAG_RE = re.compile(r"<[^>]*>")
_BR_RE = re.compile(r"<\s*(?:br|/p|/div|/tr|p|div|tr)\b[^>]*>", re.I)
_ENTITY = {"&lt;": "<", "&gt;": ">", "&amp;": "&", "&nbsp;": " ", "&quot;": '"', "&#39;": "'"}
# RFC 5322 section 2.2: a field name is printable ASCII except the colon; a field runs on over
# the lines that start with white space.
_FIELD_BLOCK_RE = re.compile(r"(?m)^([!-9;-~]+)[ \t]*:[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")
# A line break followed by a line that is neither a field nor a continuation.
_NOT_FIELD_RE = re.compile(r"\n(?![!-9;-~]+[ \t]*:|[ \t]+\S)(?=[^\n])")
_FIRST_LINE_OK_RE = re.compile(r"[!-9;-~]+[ \t]*:|[ \t]+\S")
_PARAM_RE = re.compile(
    r";\s*([A-Za-z0-9*_.!#$%&'+^`|~-]+)\s*=\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^;\s]*))"
)
_MAX_DEPTH = 12  # nesting deeper than any real bounce; stops pathological inputs
_REPORT_TYPES = (
    "message/delivery-status",
    "message/global-delivery-status",
    "text/delivery-status",
)
_RETURNED_TYPES = ("message/rfc822", "message/global", "message/partial")
_HEADER_TYPES = ("text/rfc822-headers", "text/global-headers", "message/rfc822-headers")


class Headers:
    """A header block, read lazily: a field is looked for (case-insensitively, the first one
    wins) when it is asked for. A bounce's detectors ask for a dozen fields of blocks that hold
    many more (trace fields mostly), so this is cheaper than splitting every field."""

    __slots__ = ("_block", "_cache", "_lower", "_raw")

    def __init__(self, block: str, *, raw: bool = False) -> None:
        self._block = block
        self._raw = raw
        self._cache: dict[str, list[str]] = {}
        self._lower: str | None = None

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        values = self._cache.get(key)
        if values is None:
            values = self._cache[key] = [self._value(v) for v in self._find(key)]
        return list(values)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = name.lower()
        values = self._cache.get(key)
        if values is None:
            values = self._cache[key] = [self._value(v) for v in self._find(key)]
        return values[0] if values else default

    def _find(self, key: str) -> list[str]:
        """The raw values of field `key`, found by plain substring search in a lower-cased
        copy of the block (a field starts a line: RFC 5322 section 2.2)."""
        block = self._block
        if self._lower is None:
            self._lower = "\n" + block.lower()
        low = self._lower
        if len(low) != len(block) + 1:  # lower() changed a length: offsets would not match
            return [m.group(1) for m in _field_pattern(key).finditer(block)]
        out: list[str] = []
        needle = "\n" + key
        pos = low.find(needle)
        if pos < 0:
            return []
        while pos >= 0:
            j = pos + len(needle)
            while j < len(low) and low[j] in " \t":
                j += 1
            if j < len(low) and low[j] == ":":
                end = low.find("\n", j)
                while end >= 0 and low.startswith((" ", "\t"), end + 1):
                    end = low.find("\n", end + 1)
                end = len(low) if end < 0 else end
                out.append(block[j : end - 1].lstrip(" \t"))
                pos = low.find(needle, end)
            else:
                pos = low.find(needle, j)
        return out

    def _value(self, value: str) -> str:
        if "\n" in value:  # RFC 5322 section 2.2.3: unfold
            value = " ".join(value.split())
        value = value.rstrip()
        if self._raw and not value.isascii():
            # Raw 8-bit header values (RFC 6532) were read as latin-1: read them as UTF-8.
            value = value.encode("latin-1", "replace").decode("utf-8", "replace")
        return value

    @property
    def block(self) -> str:
        """The header block as it stands in the message (folded, undecoded)."""
        return self._block

    def keys(self) -> list[str]:
        return [m.group(1) for m in _FIELD_BLOCK_RE.finditer(self._block)]

    def __len__(self) -> int:
        return 1 if self._block.strip() else 0


_NAMED_FIELD_RE: dict[str, re.Pattern[str]] = {}


def _field_pattern(key: str) -> re.Pattern[str]:
    pattern = _NAMED_FIELD_RE.get(key)
    if pattern is None:
        pattern = re.compile(rf"(?mi)^{re.escape(key)}[ \t]*:[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")
        if len(_NAMED_FIELD_RE) < 256:
            _NAMED_FIELD_RE[key] = pattern
    return pattern


@dataclass
class Parsed:
    """What detectors look at: the top headers, the report parts, the human-readable text and
    the returned original's headers."""

    message: Headers
    #: The top-level content type (``text/plain`` when absent, RFC 2045 section 5.2).
    content_type: str = "text/plain"
    #: The ``report-type`` parameter of a top-level ``multipart/report`` (RFC 6522).
    report_type: str = ""
    #: The human-readable explanation: the first text part, HTML turned into text.
    text: str = ""
    #: ``text`` cut before the copy of the returned message, when the copy is inline.
    explanation: str = ""
    #: Texts of ``message/delivery-status`` parts (RFC 3464 section 2), in order.
    delivery_status: list[str] = field(default_factory=list)
    #: Which of `delivery_status` (their indexes) report on delivering a report the message
    #: returns: a bounce of a bounce (Postfix's postmaster copy of a bounce it could not
    #: deliver), whose recipient is the bounce's return path, not one of the sender's.
    bounce_of_bounce: set[int] = field(default_factory=set)
    #: Texts of ``message/feedback-report`` parts (RFC 5965 section 3.1).
    feedback_report: list[str] = field(default_factory=list)
    #: Headers of the returned original message, when the bounce carries them.
    returned: Headers | None = None
    #: All text parts (decoded), for formats that put the explanation in a later part.
    texts: list[str] = field(default_factory=list)

    def header(self, name: str) -> str:
        """A top-level header, decoded (RFC 2047) and unfolded; "" when absent."""
        return decode_header(self.message.get(name))


def decode_header(value: object) -> str:
    """Decode an RFC 2047 header value to text, replacing what cannot be decoded."""
    if value is None:
        return ""
    raw = str(value)
    if "=?" not in raw:
        return " ".join(raw.split())
    try:
        pieces = email.header.decode_header(raw)
    except Exception:  # email.header raises several error types on malformed encoded words
        return " ".join(raw.split())
    out: list[str] = []
    for chunk, charset in pieces:
        out.append(_decode(chunk, charset) if isinstance(chunk, bytes) else chunk)
    return " ".join("".join(out).split())


def _decode(data: bytes, charset: str | None) -> str:
    """Bytes to text in the declared charset, else UTF-8; never raises.

    8-bit bytes under a 7-bit charset label (ISO-2022-JP is the common case in Japanese
    bounces) are read as UTF-8 when they are valid UTF-8: the label is wrong, not the text.
    """
    if data.isascii():
        return data.decode("ascii")
    if charset and charset.strip().strip('"').lower().startswith("iso-2022"):
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            pass
    if charset:
        cs = charset.strip().strip('"').lower()
        if cs in ("us-ascii", "ascii", "7bit", "8bit", "unknown-8bit", "x-unknown"):
            cs = "utf-8"  # a superset: mislabelled 8-bit text is usually UTF-8
        try:
            codecs.lookup(cs)
        except LookupError:
            cs = "utf-8"
        try:
            return data.decode(cs, errors="replace")
        except Exception:  # some codecs (ISO-2022 family) fail on garbage despite "replace"
            pass
    return data.decode("utf-8", errors="replace")


def _read_headers(text: str, *, raw: bool = True) -> tuple[Headers, str]:
    """Split a message (LF line ends) into its header block and body; `raw` when the text is
    the message's bytes read as latin-1 (8-bit header values are then re-read as UTF-8).

    Like every lenient mail parser, the header block ends at the first empty line, or at the
    first line that is neither a field nor a continuation (which then starts the body).
    """
    start = 0
    if text.startswith("From "):  # an mbox separator line left in place
        nl = text.find("\n")
        start = len(text) if nl < 0 else nl + 1
    if text.startswith("\n", start):
        return Headers("", raw=raw), text[start + 1 :]
    nl2 = text.find("\n\n", start)
    block_end = len(text) if nl2 < 0 else nl2 + 1
    body_start = len(text) if nl2 < 0 else nl2 + 2
    # RFC 5322 section 2.1: the first line that is neither a field nor a continuation (a line
    # of spaces, or garbage) ends the header block and starts the body.
    stray_at = -1
    if not _FIRST_LINE_OK_RE.match(text, start):
        stray_at = start
    else:
        # Searching for a line break first lets the engine skip through the block quickly.
        stray = _NOT_FIELD_RE.search(text, start, block_end)
        if stray is not None:
            stray_at = stray.start() + 1
    if stray_at >= 0:
        block_end = body_start = stray_at
        line_end = text.find("\n", stray_at)
        if not text[stray_at : line_end if line_end >= 0 else len(text)].strip():
            body_start = line_end + 1 if line_end >= 0 else len(text)
    return Headers(text[start:block_end], raw=raw), text[body_start:]


def _content_type(headers: Headers, default: str = "text/plain") -> tuple[str, dict[str, str]]:
    raw = headers.get("Content-Type") or ""
    main = raw.split(";", 1)[0].strip().lower()
    if "/" not in main:
        main = default  # RFC 2045 section 5.2: a missing or invalid type means the default
    params: dict[str, str] = {}
    if ";" not in raw:
        return main, params
    for m in _PARAM_RE.finditer(raw):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params.setdefault(m.group(1).lower(), value.replace('\\"', '"'))
    return main, params


def _body_bytes(headers: Headers, body: str) -> bytes:
    """The body's octets after its Content-Transfer-Encoding (RFC 2045 section 6)."""
    raw = body.encode("latin-1", "replace")
    cte = (headers.get("Content-Transfer-Encoding") or "").strip().lower()
    if cte == "base64":
        try:
            # Non-strict decoding skips line breaks and other characters outside the alphabet.
            return binascii.a2b_base64(raw)
        except binascii.Error:
            pass
        cleaned = re.sub(rb"[^A-Za-z0-9+/=]", b"", raw)
        cleaned = cleaned[: len(cleaned) - len(cleaned) % 4] if b"=" not in cleaned else cleaned
        try:
            return binascii.a2b_base64(cleaned)
        except binascii.Error:
            return raw
    if cte == "quoted-printable":
        return binascii.a2b_qp(raw)
    return raw


def _body_text(headers: Headers, body: str, params: dict[str, str]) -> str:
    data = _body_bytes(headers, body)
    return lf_lines(_decode(data, params.get("charset")))


def lf_lines(text: str) -> str:
    """CRLF line ends as LF. Most messages in a mailbox have none: looking for a CR first is
    several times cheaper than a replace that finds nothing."""
    return text.replace("\r\n", "\n") if "\r" in text else text


def _html_text(html: str) -> str:
    html = re.sub(r"(?is)<(style|script)\b.*?</\1\s*>", " ", html)
    html = _BR_RE.sub("\n", html)
    text = _TAG_RE.sub("", html)
    for ent, ch in _ENTITY.items():
        text = text.replace(ent, ch)
    return re.sub(r"[ \t]+", " ", text)


def _split_multipart(body: str, boundary: str) -> list[str] | None:
    """The parts of a multipart body (RFC 2046 section 5.1.1), or None when the boundary never
    shows. A missing close delimiter ends the last part at the end of the body."""
    if not boundary:
        return None
    delim = "--" + boundary
    parts: list[str] = []
    start: int | None = None
    pos = 0 if body.startswith(delim) else body.find("\n" + delim)
    while pos >= 0:
        at = pos if pos == 0 and body.startswith(delim) else pos + 1  # the "--" of the line
        after = at + len(delim)
        line_end = body.find("\n", after)
        rest = body[after : line_end if line_end >= 0 else len(body)]
        closing = rest.startswith("--")
        if closing or not rest.strip():  # a delimiter line: nothing but white space after it
            if start is not None:
                # The line break before a delimiter belongs to the delimiter.
                parts.append(body[start : max(at - 1, start)])
            if closing:
                return parts
            start = len(body) if line_end < 0 else line_end + 1
        pos = body.find("\n" + delim, after)
    if start is None:
        return None
    parts.append(body[start:])
    return parts


class _Walker:
    def __init__(self, parsed: Parsed) -> None:
        self.parsed = parsed
        self.first_text: str | None = None
        self.first_html: str | None = None
        self.in_returned_report = False
        self.returns_report = False
        self.own_status: list[int] = []  # indexes of the message's own delivery-status parts

    def part(self, headers: Headers, body: str, default: str, depth: int, top: bool) -> None:
        ctype, params = _content_type(headers, default)
        if top:
            self.parsed.content_type = ctype
            self.parsed.report_type = params.get("report-type", "").lower()
        if ctype.startswith("multipart/") and depth < _MAX_DEPTH:
            parts = _split_multipart(body, params.get("boundary", ""))
            if parts is not None:
                # RFC 2046 section 5.1.5: in multipart/digest the default type is message/rfc822.
                child_default = "message/rfc822" if ctype == "multipart/digest" else "text/plain"
                for raw in parts:
                    child_headers, child_body = _read_headers(raw)
                    self.part(child_headers, child_body, child_default, depth + 1, top=False)
                return
            # No boundary in the body: the whole body is the explanation.
            self.text(headers, body, params, html=False)
            return
        if ctype in _REPORT_TYPES:
            if not self.in_returned_report:
                self.own_status.append(len(self.parsed.delivery_status))
            self.parsed.delivery_status.append(_body_text(headers, body, params))
        elif ctype == "message/feedback-report":
            self.parsed.feedback_report.append(_body_text(headers, body, params))
        elif ctype in _RETURNED_TYPES:
            inner, inner_body = _read_headers(_body_bytes(headers, body).decode("latin-1"))
            inner_type = (inner.get("Content-Type") or "").lstrip().lower()
            if inner_type.startswith("multipart/report") and depth < _MAX_DEPTH:
                # A report forwarded inside another message (a gateway relaying a DSN): the
                # report is the news, so it is read whole. Other returned bodies are skipped.
                outer, self.in_returned_report = self.in_returned_report, True
                self.returns_report = True
                self.part(inner, inner_body, "text/plain", depth + 1, top=False)
                self.in_returned_report = outer
            elif self.parsed.returned is None and len(inner):
                self.parsed.returned = inner
        elif ctype in _HEADER_TYPES:
            if self.parsed.returned is None:
                inner, _ = _read_headers(_body_text(headers, body, params).lstrip("\n"), raw=False)
                self.parsed.returned = inner if len(inner) else None
        elif ctype.startswith("text/") or (top and ctype == "application/octet-stream"):
            self.text(headers, body, params, html=ctype == "text/html")

    def text(self, headers: Headers, body: str, params: dict[str, str], *, html: bool) -> None:
        if html and (self.first_text is not None or self.first_html is not None):
            return  # an HTML alternative of a text already read says nothing new
        text = _body_text(headers, body, params)
        if html:
            text = _html_text(text)
            if self.first_html is None:
                self.first_html = text
        elif self.first_text is None and text.strip():
            self.first_text = text
        self.parsed.texts.append(text)


def parse_bytes(data: bytes) -> Parsed:
    """Read what detectors need from a message, in one pass over its parts."""
    text = lf_lines(data.decode("latin-1"))
    headers, body = _read_headers(text, raw=not data.isascii())
    parsed = Parsed(message=headers)
    walker = _Walker(parsed)
    walker.part(headers, body, "text/plain", 0, top=True)
    if walker.returns_report and parsed.content_type == "multipart/report":
        # The message is a report itself, returning a report it could not deliver: its own
        # report parts are about that delivery, and the returned report's about the recipients.
        parsed.bounce_of_bounce = set(walker.own_status)
    parsed.text = walker.first_text or walker.first_html or ""
    parsed.explanation = parsed.text
    # A match in "\n" + text starts where its line starts in the text, and ends one further.
    m = _RETURNED_RE.search("\n" + parsed.text)
    h = _INLINE_HEADERS_RE.search(parsed.text, 0, m.start() if m else len(parsed.text))
    if m and (h is None or m.start() <= h.start()):
        parsed.explanation = parsed.text[: m.start()]
        if parsed.returned is None:
            rest = parsed.text[m.end() - 1 :].split("\n", 1)
            if len(rest) == 2:
                parsed.returned = _inline_headers(rest[1].lstrip(" \t\n"))
    elif h:
        # The returned headers follow the explanation with no separator line (Zoho, some
        # Sendmail versions): they start at the first trace header after a blank line.
        parsed.explanation = parsed.text[: h.start()]
        if parsed.returned is None:
            parsed.returned = _inline_headers(parsed.text[h.start() :].lstrip("\n"))
    return parsed


def _inline_headers(text: str) -> Headers | None:
    headers, _ = _read_headers(text, raw=False)
    return headers if len(headers) else None
