"""RFC 3464 delivery status notifications: ``multipart/report; report-type=delivery-status``.

The ``message/delivery-status`` part holds one block of per-message fields (Reporting-MTA,
Arrival-Date: RFC 3464 section 2.2) and one block per recipient (Final-Recipient, Action, Status,
Diagnostic-Code, Remote-MTA, Last-Attempt-Date: section 2.3). Some mail systems put the same
fields in a ``text/plain`` part or leave out the blank lines between blocks, so the fields are
read as a stream and a new recipient starts at each repeated recipient field.
"""

from __future__ import annotations

import re
from datetime import datetime

from deliverability.ingest.bounce.base import Hit, addresses_in, parse_date, unfold
from deliverability.ingest.bounce.mime import Parsed, lf_lines

__all__ = ["Rfc3464", "read_fields"]

_PER_RECIPIENT = {
    "final-recipient",
    "original-recipient",
    "action",
    "status",
    "diagnostic-code",
    "remote-mta",
    "last-attempt-date",
    "will-retry-until",
    "x-actual-recipient",
    "final-log-id",
}
_PER_MESSAGE = {"reporting-mta", "arrival-date", "received-from-mta", "x-postfix-sender"}
_KNOWN = _PER_RECIPIENT | _PER_MESSAGE
# Matched against "\n" + text: a pattern that starts with a line break is found by a fast
# scan for that character, where "^" in MULTILINE mode is tried at every position.
_FINAL_RECIPIENT_RE = re.compile(r"(?i)\nfinal-recipient\s*:")
# RFC 3464 section 2.3.3: the five actions.
_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")


def read_fields(text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """Split delivery-status text into per-message fields and one dict per recipient."""
    per_message: dict[str, str] = {}
    recipients: list[dict[str, str]] = []
    current: dict[str, str] = {}
    # Continuation lines (section 2.1 uses RFC 822 folding) are joined first.
    for raw in unfold(lf_lines(text)).split("\n"):
        line = raw.strip()
        if not line:
            if "final-recipient" in current or "original-recipient" in current:
                recipients.append(current)
                current = {}
            continue
        # Only the fields named below matter, and each of them is a valid field name: a line
        # is read when the text before its first colon is one of them (several times cheaper
        # than matching every line against the field grammar).
        name, colon, rest = line.partition(":")
        if not colon:
            continue
        key = name.rstrip(" \t").lower()
        if key not in _KNOWN:
            continue
        value = rest.strip()
        if key in _PER_MESSAGE:
            per_message.setdefault(key, value)
            continue
        # Without blank lines between blocks, a recipient field that repeats starts the next
        # recipient. Fields may come in any order (section 2.3), so a block with no recipient
        # field yet (a blank line inside a multi-line Diagnostic-Code) runs on into the next.
        starts_new = key in ("final-recipient", "original-recipient") and key in current
        if starts_new:
            recipients.append(current)
            current = {}
        current.setdefault(key, value)
    if "final-recipient" in current or "original-recipient" in current:
        recipients.append(current)
    return per_message, recipients


def _typed_value(value: str) -> str:
    """Drop the type prefix of an address-type or diagnostic-type field ("rfc822; a@b")."""
    _, sep, rest = value.partition(";")
    return rest.strip() if sep else value.strip()


# RFC 6533 section 3: the "utf-8" address type writes a character as \x{HEX}, its code point in
# hexadecimal: in its 7-bit form every non-ASCII one, and in every form a backslash, "+" and "="
# (which its plain characters leave out), so "utf-8; j\x{F6}rg@example.com" is jörg@example.com.
_EMBEDDED_CHAR_RE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


def _embedded_char(m: re.Match[str]) -> str:
    point = int(m.group(1), 16)
    if point > 0x10FFFF or 0xD800 <= point <= 0xDFFF:
        return m.group(0)  # names no character: left for the address check to refuse
    return chr(point)


def _address(value: str | None) -> str | None:
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    typed = rest.strip() if sep else value.strip()
    if sep and kind.strip().lower() == "utf-8" and "\\" in typed:
        typed = _EMBEDDED_CHAR_RE.sub(_embedded_char, typed)
        if "\\" in typed:
            # An escape left undecoded: searching the text for an address would take the part
            # after it ("x{D800}@example.com") for one.
            return typed
    found = addresses_in(typed)
    if found:
        return found[0]
    return typed or None


def _valid(address: str | None) -> bool:
    """The shape of an address: a local part, an @ and a dotted domain (checked in full later,
    by normalize_address)."""
    return bool(address) and _SHAPE_RE.fullmatch(address) is not None  # type: ignore[arg-type]


_SHAPE_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class Rfc3464:
    """Reads every ``message/delivery-status`` part, or DSN fields written into a text part."""

    name = "rfc3464"

    def detect(self, parsed: Parsed) -> list[Hit]:
        texts = parsed.delivery_status
        about_bounce = parsed.bounce_of_bounce
        if not texts:
            # Some MTAs (and some relays that flatten MIME) put the fields in the body.
            texts = [t for t in parsed.texts if _FINAL_RECIPIENT_RE.search("\n" + t)]
            about_bounce = set()
        hits: list[Hit] = []
        for index, text in enumerate(texts):
            per_message, recipients = read_fields(text)
            reporting = per_message.get("reporting-mta")
            arrival = parse_date(per_message.get("arrival-date"))
            for fields in recipients:
                hit = self._hit(fields, reporting, arrival)
                hit.bounce_of_bounce = index in about_bounce
                hits.append(hit)
        return hits

    def _hit(
        self,
        fields: dict[str, str],
        reporting: str | None,
        arrival: datetime | None,
    ) -> Hit:
        final = _address(fields.get("final-recipient"))
        final_field = "Final-Recipient"
        if final is None:
            final, final_field = _address(fields.get("x-actual-recipient")), "X-Actual-Recipient"
        original = _address(fields.get("original-recipient"))
        use_final = _valid(final) or not original
        action_raw = fields.get("action", "").strip().lower()
        action = next((a for a in _ACTIONS if action_raw.startswith(a)), None)
        status = fields.get("status", "").split()[0] if fields.get("status", "").split() else None
        diagnostic = " ".join(_typed_value(fields.get("diagnostic-code", "")).split())
        return Hit(
            # RFC 3464 section 2.3.2: Final-Recipient is required, and is the address the
            # report is about; Original-Recipient (the sender's ORCPT) is optional and kept
            # beside it. An unusable Final-Recipient falls back to the original.
            recipient=final if use_final else original,
            recipient_field=final_field if use_final else "Original-Recipient",
            original_recipient=original,
            action=action,
            status=status,
            diagnostic=diagnostic,
            remote_mta=_typed_value(fields["remote-mta"]) if "remote-mta" in fields else None,
            reporting_mta=_typed_value(reporting) if reporting else None,
            arrival_date=arrival,
            last_attempt=parse_date(fields.get("last-attempt-date")),
            transient=action == "delayed",
        )
