"""Amazon SES notifications mailed as JSON (directly, or wrapped in an Amazon SNS envelope).

The fields are those of the SES notification contents documented by AWS ("Amazon SES notification
contents": ``notificationType`` Bounce / Complaint / Delivery, ``bounce.bouncedRecipients[]`` with
``emailAddress``, ``action``, ``status``, ``diagnosticCode``; ``complaint.complainedRecipients[]``;
``delivery.recipients`` with ``smtpResponse``).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from deliverability.ingest.bounce.base import Hit, parse_iso_date
from deliverability.ingest.bounce.mime import Parsed
from deliverability.vocabulary import EventKind

__all__ = ["AmazonSes"]


def _load(text: str) -> dict[str, Any] | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        # Amazon SNS breaks long lines of the notification mail with "!", newline, space.
        try:
            obj, _ = json.JSONDecoder().raw_decode(text[start:].replace("!\n ", ""))
        except ValueError:
            return None
    if not isinstance(obj, dict):
        return None
    inner = obj.get("Message")
    if isinstance(inner, str):
        # The SNS envelope carries the SES notification as a JSON string.
        try:
            obj = json.loads(inner)
        except ValueError:
            return None
    return obj if isinstance(obj, dict) and "notificationType" in obj else None


def _when(value: object) -> datetime | None:
    """An ISO 8601 time stamp of the notification, or None when it is none or no usable time
    (``0001-01-01T00:00:00+01:00`` is before the first UTC instant: `usable_time`)."""
    return parse_iso_date(value) if isinstance(value, str) else None


class AmazonSes:
    name = "amazonses"

    def detect(self, parsed: Parsed) -> list[Hit]:
        text = parsed.text.lstrip()
        if not text.startswith("{"):
            return []
        note = _load(text)
        if note is None:
            return []
        kind = str(note.get("notificationType", "")).lower()
        if kind == "bounce":
            return self._bounces(note.get("bounce") or {})
        if kind == "complaint":
            body = note.get("complaint") or {}
            return [
                Hit(
                    recipient=str(r.get("emailAddress", "")) or None,
                    kind=EventKind.COMPLAINT,
                    feedback_type=str(body.get("complaintFeedbackType") or "abuse"),
                    arrival_date=_when(body.get("timestamp")),
                    diagnostic=str(body.get("userAgent") or ""),
                )
                for r in body.get("complainedRecipients") or []
                if isinstance(r, dict)
            ]
        if kind == "delivery":
            body = note.get("delivery") or {}
            return [
                Hit(
                    recipient=str(r),
                    action="delivered",
                    diagnostic=str(body.get("smtpResponse") or ""),
                    reporting_mta=body.get("reportingMTA"),
                    last_attempt=_when(body.get("timestamp")),
                )
                for r in body.get("recipients") or []
            ]
        return []

    def _bounces(self, body: dict[str, Any]) -> list[Hit]:
        # "Transient" bounce types are soft: SES may still deliver (AWS docs, bounce types).
        transient = str(body.get("bounceType", "")).lower() == "transient"
        hits = []
        for r in body.get("bouncedRecipients") or []:
            if not isinstance(r, dict):
                continue
            diagnostic = str(r.get("diagnosticCode") or "")
            _, sep, rest = diagnostic.partition(";")
            hits.append(
                Hit(
                    recipient=str(r.get("emailAddress", "")) or None,
                    action=str(r.get("action") or "") or None,
                    status=str(r.get("status") or "") or None,
                    diagnostic=(rest if sep else diagnostic).strip(),
                    reporting_mta=str(body.get("reportingMTA") or "").partition(";")[2].strip()
                    or None,
                    last_attempt=_when(body.get("timestamp")),
                    transient=transient,
                )
            )
        return hits
