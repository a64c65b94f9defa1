"""The dates of a DSN (RFC 3464 sections 2.2.5 and 2.3.7) as some MTAs write them: ISO 8601.

RFC 3464 asks for an RFC 5322 date-time; some appliances and cloud relays write an ISO 8601 one
(``2026-11-28T03:14:15Z``) instead. It is read as a fallback; what is no date at all is read as
absent, and the bounce is dated by what else it says.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from deliverability.ingest.bounce.base import parse_date
from deliverability.ingest.convert import message_items
from deliverability.ingest.messages import parse_message

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "bounces"


def _dsn(arrival: str, last_attempt: str) -> bytes:
    return f"""\
From: Mail Delivery System <MAILER-DAEMON@relay.cloud.example>
To: bounces@sender.example
Date: Sat, 28 Nov 2026 09:00:00 +0000
Subject: Undeliverable
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Delivery failed.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.cloud.example
Arrival-Date: {arrival}

Final-Recipient: rfc822; kim@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 user unknown
Last-Attempt-Date: {last_attempt}

--B--
""".encode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-28T03:14:15Z", datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)),
        ("2026-11-28t03:14:15z", datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)),
        (
            "2026-11-28T03:14:15.250+01:00",
            datetime(2026, 11, 28, 3, 14, 15, 250000, tzinfo=timezone(timedelta(hours=1))),
        ),
        (
            "2026-11-28 03:14:15 -0530",
            datetime(2026, 11, 28, 3, 14, 15, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
        ),
        ("2026-11-28T03:14:15+00:00 (UTC)", datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)),
        # No zone: UTC, as an RFC 5322 date with -0000 (no zone information) is read.
        ("2026-11-28T03:14:15", datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)),
        ("2026-11-28T03:14", datetime(2026, 11, 28, 3, 14, tzinfo=UTC)),
    ],
)
def test_an_iso_8601_date_is_read_with_its_zone_and_without_one_as_utc(
    value: str, expected: datetime
) -> None:
    got = parse_date(value)
    assert got == expected
    assert got is not None
    assert got.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "value",
    [
        "2026-13-45T03:14:15Z",
        "2026-11-28T25:14:15Z",
        "2026-11-28T03:14:15+25:00",
        "2026-11-28T03:14:15Z trailing words",
        "2026-11-28",  # a day, not a time: no attempt can be dated by it
        "0001-01-01T00:00:00+01:00",  # before the first instant in UTC
        "1969-12-31T23:59:59Z",  # before the epoch: a wrong clock
        "2026-W48-6T03:14:15Z",
    ],
)
def test_a_garbled_or_unusable_iso_date_is_read_as_absent(value: str) -> None:
    assert parse_date(value) is None


def test_a_dsn_with_iso_8601_dates_keeps_them() -> None:
    [record] = parse_message(_dsn("2026-11-28T03:14:10Z", "2026-11-28T03:14:15Z"))
    assert record.arrival_date == datetime(2026, 11, 28, 3, 14, 10, tzinfo=UTC)
    assert record.last_attempt == datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)


def test_a_bounce_is_dated_by_an_iso_8601_last_attempt_date_not_by_the_reports_date() -> None:
    [item], rejected = message_items(
        _dsn("2026-11-28T03:14:10Z", "2026-11-28T03:14:15+01:00"),
        source="bounces.mbox",
        position="0",
        now=NOW,
    )
    assert rejected is None
    assert item.at == datetime(2026, 11, 28, 2, 14, 15, tzinfo=UTC)


def test_a_bounce_with_garbled_dates_is_kept_and_dated_by_the_reports_date() -> None:
    [item], rejected = message_items(
        _dsn("2026-11-28T99:14:10Z", "yesterday, around three"),
        source="bounces.mbox",
        position="0",
        now=NOW,
    )
    assert rejected is None
    assert (item.recipient, item.at) == ("kim@example.com", datetime(2026, 11, 28, 9, tzinfo=UTC))


def test_sendgrids_arrival_date_with_hyphens_in_its_time_is_read() -> None:
    assert parse_date("2012-10-31 04-46-42") == datetime(2012, 10, 31, 4, 46, 42, tzinfo=UTC)
    assert parse_date("2012-10-31 04-46:42") is None


@pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the shared bounce corpus is not here ({CORPUS})")
def test_the_sendgrid_reports_of_the_corpus_keep_their_arrival_dates() -> None:
    got = [
        record.arrival_date
        for name in ("lhost-sendgrid-01.eml", "lhost-sendgrid-03.eml")
        for record in parse_message((CORPUS / name).read_bytes())
    ]
    assert got == [
        datetime(2012, 10, 31, 4, 46, 42, tzinfo=UTC),
        datetime(2013, 7, 8, 18, 21, 1, tzinfo=UTC),
    ]
