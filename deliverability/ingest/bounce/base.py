"""What a detector finds, and the text helpers several detectors share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from typing import Protocol

from deliverability.clock import EARLIEST
from deliverability.ingest.bounce.mime import Parsed
from deliverability.vocabulary import EventKind

__all__ = [
    "ADDRESS_RE",
    "EAI_ADDRESS_RE",
    "STATUS_ALONE_RE",
    "Detector",
    "Hit",
    "address_re",
    "addresses_in",
    "parse_date",
    "parse_iso_date",
    "reply_in",
    "unfold",
    "usable_time",
]


@dataclass
class Hit:
    """One recipient as a detector read it, before normalisation (see messages.BounceRecord)."""

    recipient: str | None
    kind: EventKind = EventKind.BOUNCE
    original_recipient: str | None = None
    action: str | None = None
    #: The enhanced status as the report states it (RFC 3464 ``Status:``), when it does.
    status: str | None = None
    diagnostic: str = ""
    remote_mta: str | None = None
    reporting_mta: str | None = None
    arrival_date: datetime | None = None
    last_attempt: datetime | None = None
    feedback_type: str | None = None
    #: True when the message itself says the failure is temporary (still retrying).
    transient: bool = False
    #: The format recognised, when a detector reads several (the prose formats).
    detector: str | None = None
    #: The field `recipient` was read from (``Final-Recipient``), named when it is no address.
    recipient_field: str | None = None
    #: The block reports on delivering a bounce the message returns, not on a recipient
    #: (`mime.Parsed.bounce_of_bounce`).
    bounce_of_bounce: bool = False


class Detector(Protocol):
    """One bounce format: `detect` returns its hits, or an empty list when the message is not
    in its format (the next detector then tries)."""

    name: str

    def detect(self, parsed: Parsed) -> list[Hit]: ...


# Addresses as they appear in bounce texts: a dot-atom local part (RFC 5322 section 3.4.1) and a
# domain name, both ASCII. Quoted local parts are too rare in bounces to be worth the ambiguity.
ADDRESS_RE = re.compile(
    r"(?<![A-Za-z0-9.!#$%&'*+/=?^_`{|}~-])"
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*)"
)

# Internationalised addresses (RFC 6531 section 3.3 extends the local part and the domain with
# UTF-8 characters; RFC 6532 section 3.2 allows them in header fields): letters and digits of
# any script in the local part and the domain's labels. Text in scripts written without spaces
# (Chinese, Japanese, Thai, ...) runs words into an address ("a@example.jp您好", "您好a@..."),
# so: a top-level label is either all ASCII or all non-ASCII (as every delegated TLD is), which
# stops a domain at the word run into its end; and a local part that starts in such a script
# has only that script and digits, so a word run into the front of an ASCII local part is left
# out. A word of that script run into the front of a local part in the same script cannot be
# told apart from it; such text rarely sits right against an address in a bounce.
_UNSPACED = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3100-\u312f\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
_ATEXT = "A-Za-z0-9!#$%&'*+/=?^_`{|}~\\-"
_NON_ASCII = r"[^\W\x00-\x7f]"  # a letter or digit of any script but ASCII
_SPACED_NON_ASCII = rf"[^\W\x00-\x7f{_UNSPACED}]"
# A local part's atoms (RFC 5322 section 3.2.3) are each in one kind of script: ASCII and spaced
# scripts (Latin, Greek, Cyrillic, ...) together, or an unspaced one with digits. Keeping them
# apart is also what keeps the pattern linear on long runs of mixed text.
_SPACED_ATOM = rf"(?:[{_ATEXT}]|{_SPACED_NON_ASCII})+"
_UNSPACED_ATOM = rf"[{_UNSPACED}][{_UNSPACED}0-9]*"
EAI_ADDRESS_RE = re.compile(
    rf"(?<![{_ATEXT}.])(?<!{_SPACED_NON_ASCII})"
    rf"((?:(?<![{_UNSPACED}]){_UNSPACED_ATOM}|{_SPACED_ATOM})"
    rf"(?:\.(?:{_UNSPACED_ATOM}|{_SPACED_ATOM}))*"
    rf"@(?:[^\W_][\w-]*\.)+(?:[A-Za-z][A-Za-z0-9-]*|[^\W\d_\x00-\x7f]+))"
)


# Where a reply starts: a line that starts with a reply code, or a code before an enhanced
# status anywhere. Two patterns, each found by a fast scan for its first character: the first is
# matched against "\n" + text (its "\n" stands for a line start, where "^" in MULTILINE mode
# would be tried at every position), the second is checked for a word boundary before it in
# `_reply_start` (a leading \b, too, would be tried at every position).
_LINE_CODE_RE = re.compile(r"\n[ \t>]*#?[245]\d\d[ -]")
_CODE_STATUS_RE = re.compile(r"[245]\d\d[ -][245]\.\d{1,3}\.\d{1,3}\b")


def _reply_start(block: str) -> int:
    """Where the first reply in `block` starts (see the patterns above); -1 when none does."""
    line = _LINE_CODE_RE.search("\n" + block)
    start = line.start() if line else -1
    pos = 0
    while (m := _CODE_STATUS_RE.search(block, pos)) is not None:
        at = m.start()
        if start >= 0 and at >= start:
            break
        if at == 0 or not (block[at - 1].isalnum() or block[at - 1] == "_"):
            return at
        pos = at + 1
    return start


_SAID_RE = re.compile(
    # The lookahead lets the engine skip, cheaply, every position no keyword can start at.
    r"(?=[sSrReEfF<])(?:said|returned|replied|responded|reply was|error was|error is|"
    r"reported|reason|failed with|<<<)\s*:?\s*"
    r"['\"]?(?=#?[245]\d\d\b|#?[245]\.\d{1,3}\.\d{1,3})",
    re.I,
)
# An enhanced status standing alone ("(#5.1.1)", "status 5.2.2:"), not inside a version number.
# The leading lookahead lets the engine pass every other position before the lookbehind.
STATUS_ALONE_RE = re.compile(
    r"(?=[245]\.)(?:(?<=[\s(\[#:;='\"])|^)[245]\.\d{1,3}\.\d{1,3}(?=[\s)\],;:.]|$)"
)
# "<a@b>: 550 unknown user": a reply right after the address it is about.
_ADDR_COLON_RE = re.compile(r"@[\w.-]+>?[ \t]*:[ \t]*(?=#?[245]\d\d\b)")


# RFC 5321 section 4.5.3.1.5 limits a reply line to 512 octets; the multi-line replies seen in
# bounces (Gmail's, with a help URL) fit in a few of them. Longer is the text around a reply.
_MAX_REPLY = 2048
_PARAGRAPH_END_RE = re.compile(r"\n[ \t]*\n")
_CODE_HINT_RE = re.compile(r"[245]\d\d|[245]\.\d")
_COMMAND_CONTEXT_RE = re.compile(
    r"(?i)SMTP error from remote (?:mail server|mailer) after|"
    r"\bafter (?:RCPT TO|MAIL FROM|end of data|DATA|initial connection)\b"
)


def address_re(text: str) -> re.Pattern[str]:
    """The address pattern for `text`: ASCII text (most bounces) takes the ASCII one, which is
    cheaper and cannot be confused by words run into an address; any other the RFC 6531 one."""
    return ADDRESS_RE if text.isascii() else EAI_ADDRESS_RE


def addresses_in(text: str) -> list[str]:
    """Every address in a text, in order, without repeats (internationalised ones too)."""
    seen: dict[str, None] = {}
    for m in address_re(text).finditer(text):
        seen.setdefault(m.group(1).strip("."), None)
    return list(seen)


_FOLD_RE = re.compile(r"\r?\n[ \t]+")


def unfold(text: str) -> str:
    """Join RFC 5322 folded lines (a line starting with white space continues the previous)."""
    return _FOLD_RE.sub(" ", text)


# RFC 5322 section 3.3 in its usual form, "Thu, 29 Apr 2010 23:34:45 +0900": read directly,
# which is several times cheaper than the general parser used for everything else.
_DATE_RE = re.compile(
    r"\s*(?:[A-Za-z]{3},\s*)?(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s+(\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"\s+([+-])(\d{2})(\d{2})\b"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
_ZONES: dict[str, tzinfo] = {}


def _zone(sign: str, hours: str, minutes: str) -> tzinfo:
    key = sign + hours + minutes
    zone = _ZONES.get(key)
    if zone is None:
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        # RFC 5322 section 3.3: -0000 means "no local time zone information": UTC.
        zone = UTC if not offset else timezone(-offset if sign == "-" else offset)
        _ZONES[key] = zone
    return zone


# The year as a date writes it: after the day and the month name (RFC 5322 section 3.3).
_YEAR_RE = re.compile(r"\b\d{1,2}\s+[A-Za-z]{3}\s+(\d+)\b")


def usable_time(value: datetime | None) -> datetime | None:
    """`value` when it is a time a report can mean, else None.

    A report's date is a detail of its message: one that cannot be an instant in UTC (year 1
    east of Greenwich, year 9999 west of it) or lies before the Unix epoch is read as absent, so
    the message is still recorded (dated by what else it says) and one bad field never stops a
    batch. A naive value is taken to be UTC.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        return None
    return value if in_utc >= EARLIEST else None


# ISO 8601 in the RFC 3339 profile (section 5.6), "2026-11-28T03:14:15Z": RFC 3464's dates
# (sections 2.2.5, 2.3.7) are RFC 5322 date-times, but some appliances and cloud relays write
# them so. A space may stand for the "T" (RFC 3339 section 5.6, note), the zone may lack its colon
# or be absent, and a comment may follow, as after an RFC 5322 date. SendGrid writes the time
# with hyphens ("Arrival-Date: 2012-10-31 04-46-42", two reports of the shared corpus), read as
# the colons they stand for. Week and ordinal dates, and a day without a time of day, are no
# time an attempt can be dated by.
_ISO_DATE_RE = re.compile(
    r"\s*(\d{4}-\d\d-\d\d)[T ](\d\d([:-])\d\d(?:\3\d\d(?:[.,]\d{1,9})?)?)"
    r"\s*(Z|[+-]\d\d(?::?\d\d)?)?\s*(?:\([^()]*\)\s*)?",
    re.I,
)


def parse_iso_date(value: str | None) -> datetime | None:
    """An ISO 8601 date and time (see `_ISO_DATE_RE`) as an aware datetime, UTC when it names no
    zone; None when it is not one or not a usable time (`usable_time`)."""
    if not value:
        return None
    m = _ISO_DATE_RE.fullmatch(value)
    if m is None:
        return None
    day, time, _, zone = m.groups()
    stamp = f"{day}T{time.replace('-', ':')}{(zone or '').upper()}"
    try:
        return usable_time(datetime.fromisoformat(stamp))
    except ValueError:
        return None  # a month 13, an hour 25, a zone a day away: no date


def parse_date(value: str | None) -> datetime | None:
    """An RFC 5322 date as an aware datetime (UTC when the zone is -0000 or missing), else an
    ISO 8601 one (`parse_iso_date`); None when it is neither or not a usable time
    (`usable_time`)."""
    if not value:
        return None
    m = _DATE_RE.match(value)
    month = _MONTHS.get(m.group(2).lower()) if m else None
    if m and month:
        day, _, year, hour, minute, second, sign, zh, zm = m.groups()
        try:
            return usable_time(
                datetime(
                    int(year),
                    month,
                    int(day),
                    int(hour),
                    int(minute),
                    int(second or 0),
                    tzinfo=_zone(sign, zh, zm),
                )
            )
        except ValueError:
            return None
    if value.lstrip()[:4].isdigit() and (iso := parse_iso_date(value)) is not None:
        # A year first: no RFC 5322 date (section 3.3 starts with the day), but ISO 8601.
        return iso
    try:
        dt = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if dt is None:
        return None
    written = _YEAR_RE.search(value)
    if written and len(written.group(1)) >= 4 and int(written.group(1)) != dt.year:
        # The standard library adds 1900 or 2000 to any year below 100, however it is written;
        # RFC 5322 section 4.3 makes only two- and three-digit years abbreviations, so "0001"
        # is year 1, no time a report can mean.
        return None
    return usable_time(dt)


def reply_in(block: str) -> str:
    """The SMTP reply inside a block of explanation text, as one line; "" when there is none.

    Takes the text from the first place a reply starts (a line beginning with a reply code,
    "said: 550", a code before an enhanced status) to the end of that paragraph, so that
    multi-line replies (RFC 5321 section 4.2.1) stay whole.
    """
    if not _CODE_HINT_RE.search(block):
        return ""  # no reply code and no enhanced status: nothing to find
    m = _SAID_RE.search(block) or _ADDR_COLON_RE.search(block)
    start = m.end() if m else -1
    at = _reply_start(block)
    if at >= 0 and (start < 0 or at < start):
        start = at
    if start < 0:
        m3 = STATUS_ALONE_RE.search(block)
        if not m3:
            return ""
        line_start = block.rfind("\n", 0, m3.start()) + 1
        start = line_start
    # Keep the line that says which command the reply answered (Exim: "SMTP error from remote
    # mail server after RCPT TO:<a@b>:"), when it is in the same paragraph just before.
    para_start = max(block.rfind("\n\n", 0, start), 0)
    context = list(_COMMAND_CONTEXT_RE.finditer(block, para_start, start))
    if context:
        start = block.rfind("\n", 0, context[-1].start()) + 1
    rest = block[start : start + _MAX_REPLY]
    para = _PARAGRAPH_END_RE.split(rest, maxsplit=1)[0]
    return " ".join(para.split()).strip(" '\"")
