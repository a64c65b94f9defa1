"""Bounce-message formats: one detector per format behind one interface (`Detector`).

`detect` tries the detectors in order, most specific first, and returns the first one's hits:
complaints before DSNs (an ARF report is also a ``multipart/report``), DSNs before auto-replies
(bounces often carry ``Auto-Submitted``), and the prose formats last.
"""

from __future__ import annotations

import re

from deliverability.ingest.bounce.amazonses import AmazonSes
from deliverability.ingest.bounce.base import Detector, Hit, reply_in
from deliverability.ingest.bounce.feedback import Arf, AutoReply
from deliverability.ingest.bounce.mime import Parsed, parse_bytes
from deliverability.ingest.bounce.rfc3464 import Rfc3464
from deliverability.ingest.bounce.text import TextBounce

__all__ = ["DETECTORS", "Detector", "Hit", "Parsed", "detect", "parse_bytes"]

_TEXT = TextBounce()
DETECTORS: tuple[Detector, ...] = (Arf(), Rfc3464(), AmazonSes(), AutoReply(), _TEXT)


def detect(parsed: Parsed) -> tuple[str | None, list[Hit]]:
    """The name of the detector that read the message, and what it found."""
    for detector in DETECTORS:
        hits = detector.detect(parsed)
        if hits:
            if detector.name == "rfc3464":
                _complete_from_text(parsed, hits)
            return detector.name, hits
    return None, []


def _complete_from_text(parsed: Parsed, hits: list[Hit]) -> None:
    """Fill what a DSN's fields leave out (a Final-Recipient with no local part, a missing
    Diagnostic-Code) from its human-readable part, which RFC 3464 section 2.1 makes the first
    part of every report."""
    missing = {id(h) for h in hits if not _looks_like_address(h.recipient)}
    uncoded = {id(h) for h in hits if not _CODE_RE.search(h.diagnostic)}
    if not missing and not uncoded:
        return
    text_hits = _TEXT.detect(parsed)
    if not text_hits:
        # No recipient named in the prose: a reply it quotes applies to them all (read once).
        quoted = reply_in(parsed.explanation) if uncoded else ""
        for hit in hits:
            hit.diagnostic = hit.diagnostic or quoted
        return
    by_rcpt = {(h.recipient or "").lower(): h for h in text_hits}
    # A recipient the prose names is the one a block without an address is about only when no
    # other block reports on it, and only for one block: else that block's failure would be
    # charged to someone else (a "Final-Recipient: rfc822; not an address" beside a block for
    # m1, with m1 in the returned To). A block left without an address is rejected by name.
    claimed = {(h.recipient or "").lower() for h in hits if id(h) not in missing}
    spare = iter([h for h in text_hits if (h.recipient or "").lower() not in claimed])
    for hit in hits:
        if id(hit) in missing:
            source = next(spare, None)
            if source is not None:
                hit.recipient = source.recipient
                hit.recipient_field = None
                hit.diagnostic = hit.diagnostic or source.diagnostic
        elif id(hit) in uncoded:
            # No Diagnostic-Code, or one that says less than the prose ("X-Unix; 77"): the
            # human-readable part's reply for the same recipient.
            same = by_rcpt.get((hit.recipient or "").lower())
            if same is not None and (_CODE_RE.search(same.diagnostic) or not hit.diagnostic):
                hit.diagnostic = same.diagnostic


# A reply code at the start of a line or before an enhanced status.
_CODE_RE = re.compile(r"(?:^|\s)[245]\d\d(?:[ -]|$)|\b[245]\d\d[ -][245]\.\d")


def _looks_like_address(value: str | None) -> bool:
    return bool(value) and "@" in value.strip("@<> ")[1:]  # type: ignore[union-attr]
