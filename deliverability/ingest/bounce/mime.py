"""One pass over a bounce message's MIME structure, shared by every detector.

Bounces are often broken MIME (wrong charsets, missing boundaries, 8-bit bytes in headers), so the
message is read with the ``compat32`` policy, which never raises on bad structure, and every text
is decoded with ``errors="replace"``.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser

__all__ = ["Parsed", "decode_header", "parse_bytes", "part_text"]

# A line that starts the copy of the returned message in a non-MIME bounce. Each mail system
# words it differently; these are the wordings seen in the wild (qmail, Exim, Sendmail, Gmail,
# Yahoo, DragonFly, Courier, ...).
_RETURNED_RE = re.compile(
    r"^\s*(?:"
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
    re.I | re.M,
)
_INLINE_HEADERS_RE = re.compile(r"\n[ \t]*\n(?=(?:Received|Return-Path)[ \t]*:[ \t]*\S)", re.I)
_TAG_RE = re.compile(r"<[^>]*>")
_BR_RE = re.compile(r"<\s*(?:br|/p|/div|/tr|p|div|tr)\b[^>]*>", re.I)
_ENTITY = {"&lt;": "<", "&gt;": ">", "&amp;": "&", "&nbsp;": " ", "&quot;": '"', "&#39;": "'"}
_HEADER_LINE_RE = re.compile(rb"^[!-9;-~]+[ \t]*:", re.M)


@dataclass
class Parsed:
    """What detectors look at: the top headers, the report parts, the human-readable text and
    the returned original's headers."""

    message: Message
    #: The human-readable explanation: the first text part, HTML turned into text.
    text: str = ""
    #: ``text`` cut before the copy of the returned message, when the copy is inline.
    explanation: str = ""
    #: Texts of ``message/delivery-status`` parts (RFC 3464 section 2), in order.
    delivery_status: list[str] = field(default_factory=list)
    #: Texts of ``message/feedback-report`` parts (RFC 5965 section 3.1).
    feedback_report: list[str] = field(default_factory=list)
    #: Headers of the returned original message, when the bounce carries them.
    returned: Message | None = None
    #: All text parts (decoded), for formats that put the explanation in a later part.
    texts: list[str] = field(default_factory=list)

    def header(self, name: str) -> str:
        """A top-level header, decoded (RFC 2047) and unfolded; "" when absent."""
        return decode_header(self.message.get(name))

    @property
    def content_type(self) -> str:
        return self.message.get_content_type()

    @property
    def report_type(self) -> str:
        return str(self.message.get_param("report-type", "") or "").lower()


def decode_header(value: object) -> str:
    """Decode an RFC 2047 header value to text, replacing what cannot be decoded."""
    if value is None:
        return ""
    raw = str(value)
    try:
        pieces = email.header.decode_header(raw)
    except Exception:  # email.header raises several error types on malformed encoded words
        return " ".join(raw.split())
    out: list[str] = []
    for chunk, charset in pieces:
        if isinstance(chunk, bytes):
            out.append(_decode(chunk, charset))
        else:
            out.append(chunk)
    return " ".join("".join(out).split())


def _decode(data: bytes, charset: str | None) -> str:
    for cs in (charset, "utf-8"):
        if not cs:
            continue
        try:
            return data.decode(cs, errors="replace")
        except LookupError:
            continue
    return data.decode("latin-1", errors="replace")


def part_text(part: Message) -> str:
    """The decoded text of a non-multipart part, whatever its transfer encoding and charset."""
    payload = part.get_payload()
    if isinstance(payload, list):
        # message/* parts: compat32 parses them into a list of messages (header blocks for
        # message/delivery-status); render them back to text.
        return "\n".join(_message_text(m) for m in payload if isinstance(m, Message))
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return str(payload)
    return _decode(raw, part.get_content_charset()).replace("\r\n", "\n")


def _message_text(msg: Message) -> str:
    lines = [f"{k}: {v}" for k, v in msg.items()]
    body = msg.get_payload()
    text = "\n".join(lines) + "\n"
    if isinstance(body, str) and body.strip():
        text += "\n" + body
    return text


def _html_text(html: str) -> str:
    html = re.sub(r"(?is)<(style|script)\b.*?</\1\s*>", " ", html)
    html = _BR_RE.sub("\n", html)
    text = _TAG_RE.sub("", html)
    for ent, ch in _ENTITY.items():
        text = text.replace(ent, ch)
    return re.sub(r"[ \t]+", " ", text)


def _headers_of(text: str) -> Message | None:
    text = text.lstrip("\n")
    if not _HEADER_LINE_RE.match(text.encode("utf-8", "replace")):
        return None
    try:
        return HeaderParser(policy=email.policy.compat32).parsestr(text, headersonly=True)
    except Exception:  # a header block too broken to read is simply not used
        return None


def parse_bytes(data: bytes) -> Parsed:
    """Parse a message and collect what detectors need, in one walk over its parts."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    parsed = Parsed(message=message)
    first_text: str | None = None
    first_html: str | None = None
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            parsed.delivery_status.append(part_text(part))
            continue
        if ctype == "message/feedback-report":
            parsed.feedback_report.append(part_text(part))
            continue
        if ctype in ("message/rfc822", "message/global", "message/partial"):
            inner = part.get_payload()
            if parsed.returned is None and isinstance(inner, list) and inner:
                candidate = inner[0]
                if isinstance(candidate, Message) and len(candidate.keys()) > 0:
                    parsed.returned = candidate
            continue
        if ctype in ("text/rfc822-headers", "text/global-headers", "message/rfc822-headers"):
            if parsed.returned is None:
                parsed.returned = _headers_of(part_text(part))
            continue
        if part.is_multipart():
            continue
        if ctype == "text/delivery-status":
            parsed.delivery_status.append(part_text(part))
            continue
        # A multipart whose boundary never shows is left as one text by the parser (a
        # StartBoundaryNotFoundDefect): its body is still the explanation.
        if ctype.startswith(("text/", "multipart/")) or (
            ctype == "application/octet-stream" and part is message
        ):
            text = part_text(part)
            if ctype == "text/html":
                text = _html_text(text)
                if first_html is None:
                    first_html = text
            elif first_text is None:
                first_text = text
            parsed.texts.append(text)
    parsed.text = first_text if first_text is not None and first_text.strip() else first_html or ""
    parsed.explanation = parsed.text
    m = _RETURNED_RE.search(parsed.text)
    h = _INLINE_HEADERS_RE.search(parsed.text)
    if m and (h is None or m.start() <= h.start()):
        parsed.explanation = parsed.text[: m.start()]
        if parsed.returned is None:
            rest = parsed.text[m.end() :].split("\n", 1)
            if len(rest) == 2:
                parsed.returned = _headers_of(rest[1].lstrip(" \t\n"))
    elif h:
        # The returned headers follow the explanation with no separator line (Zoho, some
        # Sendmail versions): they start at the first trace header after a blank line.
        parsed.explanation = parsed.text[: h.start()]
        if parsed.returned is None:
            parsed.returned = _headers_of(parsed.text[h.start() :].lstrip("\n"))
    return parsed
