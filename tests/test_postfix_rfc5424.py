"""Postfix logs written in the RFC 5424 syslog format (section 6: PRI, VERSION, TIMESTAMP,
HOSTNAME, APP-NAME, PROCID, MSGID, STRUCTURED-DATA, MSG), as rsyslog's
RSYSLOG_SyslogProtocol23Format and syslog-ng's syslog() destination write them: read like the
classic formats, and detected by their content."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from deliverability.errors import IngestError
from deliverability.ingest.files import detect_format
from deliverability.ingest.postfix import PostfixStream, parse_postfix_line, read_postfix_log
from deliverability.ingest.records import LogRecord, Rejected
from deliverability.replies import StatusCode

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
DELIVERY = (
    "4F1AB2C3D: to=<alice@example.com>, relay=mx.example.com[192.0.2.1]:25, delay=1.2, "
    "delays=0.1/0/0.5/0.6, dsn=5.1.1, status=bounced (host mx.example.com[192.0.2.1] said: "
    "550 5.1.1 <alice@example.com>: Recipient address rejected: User unknown "
    "(in reply to RCPT TO command))"
)
BOUNCED = f"<22>1 2026-11-27T23:59:01.123456+00:00 mx1 postfix/smtp 1234 - - {DELIVERY}"
AT = datetime(2026, 11, 27, 23, 59, 1, 123456, tzinfo=UTC)


def parse(line: str) -> LogRecord:
    record = parse_postfix_line(line, now=NOW, source="mail.log", position="byte 0")
    assert record is not None
    return record


def test_an_rfc5424_delivery_line_gives_its_time_recipient_and_remote_reply() -> None:
    record = parse(BOUNCED)
    assert record.at == AT
    assert record.recipient == "alice@example.com"
    assert record.queue_id == "4F1AB2C3D"
    assert record.delivery_status == "bounced"
    assert (record.reply.code, record.reply.status) == (550, StatusCode(5, 1, 1))
    assert record.reply.command == "RCPT TO"
    assert record.raw == BOUNCED


@pytest.mark.parametrize(
    "structured_data",
    [
        '[meta sequenceId="17"]',
        '[timeQuality tzKnown="1" isSynced="1"][meta sequenceId="17" sysUpTime="3712"]',
        # PARAM-VALUE escapes '"', '\' and ']' with a backslash (RFC 5424 section 6.3.3).
        r'[origin ip="192.0.2.9" software="rsyslogd \"8\" [x\]"]',
        '[exampleSDID@32473 iut="3" eventSource="Application"]',
    ],
)
def test_structured_data_in_place_of_the_nil_value_is_passed_over(structured_data: str) -> None:
    line = f"<22>1 2026-11-27T23:59:01.123456+00:00 mx1 postfix/smtp 1234 - {structured_data} "
    record = parse(line + DELIVERY)
    assert (record.at, record.recipient) == (AT, "alice@example.com")
    assert record.reply.status == StatusCode(5, 1, 1)


def test_a_message_marked_utf8_by_a_byte_order_mark_is_read() -> None:
    # RFC 5424 section 6.4: MSG-UTF8 starts with a BOM.
    line = f"<22>1 2026-11-27T23:59:01.123456+00:00 mx1 postfix/smtp 1234 - - \ufeff{DELIVERY}"
    assert parse(line).recipient == "alice@example.com"


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-28T00:59:01.5+01:00", datetime(2026, 11, 27, 23, 59, 1, 500000, tzinfo=UTC)),
        ("2026-11-27T23:59:01Z", datetime(2026, 11, 27, 23, 59, 1, tzinfo=UTC)),
        ("2026-11-27T18:59:01.003-05:00", datetime(2026, 11, 27, 23, 59, 1, 3000, tzinfo=UTC)),
    ],
)
def test_the_time_stamp_carries_its_year_and_offset(stamp: str, expected: datetime) -> None:
    assert parse(f"<22>1 {stamp} mx1 postfix/smtp 1234 - - {DELIVERY}").at == expected


def test_nil_procid_and_msgid_and_other_postfix_programs_are_read() -> None:
    line = f"<22>1 2026-11-27T23:59:01Z mx1 postfix-out/lmtp - - - {DELIVERY}"
    assert parse(line).recipient == "alice@example.com"


def test_a_line_without_a_time_stamp_is_rejected_with_the_reason() -> None:
    # RFC 5424 section 6.2.3: "-" when the originator knows no time; a delivery cannot be dated.
    with pytest.raises(IngestError, match="no time stamp"):
        parse_postfix_line(f"<22>1 - mx1 postfix/smtp 1234 - - {DELIVERY}", now=NOW)


@pytest.mark.parametrize(
    "line",
    [
        "<22>1 2026-11-27T23:59:01Z mx1 dovecot 77 - - lmtp(alice): saved mail to INBOX",
        "<22>1 2026-11-27T23:59:01Z mx1 postfix/smtpd 88 - - connect from a.example[192.0.2.5]",
        "<22>1 2026-11-27T23:59:01Z mx1 postfix/qmgr 89 - - 4F1AB2C3D: removed",
    ],
)
def test_lines_that_are_not_delivery_results_give_none(line: str) -> None:
    assert parse_postfix_line(line, now=NOW) is None


def test_a_stream_of_rfc5424_lines_joins_message_ids_and_reports_expiries() -> None:
    stream = PostfixStream(source="mail.log", now=NOW)
    head = "<22>1 2026-11-27T23:00:00Z mx1"
    assert stream.feed(f"{head} postfix/cleanup 7 - - 9E8D7C: message-id=<m1@x.example>", "0") == []
    (deferred,) = stream.feed(
        f"{head} postfix/smtp 8 - - 9E8D7C: to=<carol@example.net>, relay=none, delay=30, "
        "dsn=4.4.1, status=deferred (connect to mx.example.net[203.0.113.9]:25: Connection "
        "timed out)",
        "1",
    )
    assert deferred.message_id == "m1@x.example"
    (expired,) = stream.feed(
        f"{head} postfix/qmgr 9 - - 9E8D7C: from=<news@x.example>, status=expired, "
        "returned to sender",
        "2",
    )
    assert (expired.recipient, expired.delivery_status) == ("carol@example.net", "expired")


def test_an_rfc5424_log_is_detected_as_postfix_and_read_to_the_end(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    lines = [
        "<22>1 2026-11-27T23:58:00Z mx1 postfix/cleanup 7 - - 4F1AB2C3D: message-id=<m2@x.example>",
        BOUNCED,
        "<22>1 2026-11-27T23:59:02Z mx1 postfix/smtp 1234 - - broken: to=<x@y.example>, status=",
    ]
    path.write_text("\n".join(lines) + "\n")
    assert detect_format(path) == "postfix"
    got = [item for _, item in read_postfix_log(path, now=NOW)]
    assert isinstance(got[0], LogRecord)
    assert got[0].message_id == "m2@x.example"
    assert isinstance(got[1], Rejected)
