"""Bounce messages: DSNs, prose bounces, complaints, auto-replies, and the mbox/Maildir readers.

The sample messages here are written for these tests in the shape each format has; the real-world
corpus is exercised in test_corpus.py.
"""

from __future__ import annotations

import gzip
import json
import mailbox
import tracemalloc
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deliverability.errors import IngestError
from deliverability.ingest import messages
from deliverability.ingest.bounce.base import parse_date
from deliverability.ingest.messages import (
    BounceRecord,
    VerpFormat,
    explain_message_file,
    iter_eml,
    iter_maildir,
    iter_mbox,
    parse_message,
    starts_mbox_message,
)
from deliverability.replies import StatusCode
from deliverability.vocabulary import EventKind

DSN = b"""\
Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.sender.example>
To: bounces+alice=example.com@lists.sender.example
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUND"

--BOUND
Content-Type: text/plain

This is the mail system at host mx.sender.example.

--BOUND
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.sender.example
Arrival-Date: Mon, 2 Mar 2026 10:00:00 +0100

Final-Recipient: rfc822; Alice@Example.COM
Original-Recipient: rfc822; alice@example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 550 5.1.1 <alice@example.com>: Recipient address
    rejected: User unknown in virtual mailbox table
Last-Attempt-Date: Mon, 2 Mar 2026 10:00:05 +0100

Final-Recipient: rfc822; bob@example.org
Action: delayed
Status: 4.4.1
Diagnostic-Code: smtp; 421 4.4.1 connection timed out

--BOUND
Content-Type: text/rfc822-headers

From: news@sender.example
To: alice@example.com
Message-ID: <issue-42@sender.example>
Subject: Our news

--BOUND--
"""


def _message(headers: str, body: str) -> bytes:
    return (headers.strip() + "\n\n" + body).encode()


QMAIL = _message(
    """
From: MAILER-DAEMON@mx.example.net
To: news@sender.example
Subject: failure notice
""",
    """Hi. This is the qmail-send program at mx.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<carol@example.net>:
192.0.2.7 does not like recipient.
Remote host said: 550 sorry, no mailbox here by that name (#5.1.1)
Giving up on 192.0.2.7.

--- Below this line is a copy of the message.

From: news@sender.example
To: carol@example.net
Message-ID: <q-1@sender.example>
""",
)

EXIM = _message(
    """
From: Mail Delivery System <Mailer-Daemon@mx.example.org>
To: news@sender.example
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied
X-Failed-Recipients: dave@example.org
""",
    """This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  dave@example.org
    host mx.example.org [192.0.2.9]
    SMTP error from remote mail server after RCPT TO:<dave@example.org>:
    550 5.2.1 The email account that you tried to reach is disabled

------ This is a copy of the message, including all the headers. ------

From: news@sender.example
To: dave@example.org
""",
)

SENDMAIL = _message(
    """
From: Mail Delivery Subsystem <MAILER-DAEMON@relay.example.com>
To: news@sender.example
Subject: Returned mail: see transcript for details
""",
    """   ----- Transcript of session follows -----
While talking to mx.example.edu:
>>> RCPT To:<erin@example.edu>
<<< 550 Requested action not taken: mailbox unavailable
554 <frank@example.edu>... 550 Host unknown (Authoritative answer from name server)
550 <erin@example.edu>... User unknown

   ----- Unsent message follows -----
From: news@sender.example
To: erin@example.edu, frank@example.edu
""",
)

EXCHANGE = _message(
    """
From: postmaster@outlook.example
To: news@sender.example
Subject: Undeliverable: Our news
""",
    """Delivery has failed to these recipients or groups:

grace@contoso.example
The email address you entered couldn't be found.

Diagnostic information for administrators:

Generating server: BY5PR.prod.outlook.example

grace@contoso.example
Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found'
""",
)

ARF = b"""\
From: feedback@isp.example
To: fbl@sender.example
Subject: complaint
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="ARF"

--ARF
Content-Type: text/plain

This is an email abuse report.

--ARF
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ISP-FBL/1.0
Version: 1
Original-Rcpt-To: heidi@isp.example
Original-Rcpt-To: ivan@isp.example
Arrival-Date: Tue, 3 Mar 2026 08:00:00 +0000

--ARF
Content-Type: message/rfc822

From: news@sender.example
To: heidi@isp.example
Message-ID: <complained@sender.example>
Subject: news

hello
--ARF--
"""

VACATION = _message(
    """
From: Judy <judy@example.com>
To: news@sender.example
Subject: Out of office: Our news
Auto-Submitted: auto-replied
""",
    "I am away until Monday.\n",
)

PLAIN = _message(
    """
From: Karl <karl@example.com>
To: news@sender.example
Subject: Hello
""",
    "Just a note, nothing bounced here.\n",
)


def _one(records: list[BounceRecord]) -> BounceRecord:
    assert len(records) == 1, records
    return records[0]


def test_dsn_gives_one_record_per_recipient_with_its_fields() -> None:
    first, second = parse_message(DSN)
    assert first.recipient == "Alice@example.com"
    assert first.original_recipient == "alice@example.com"
    assert first.kind is EventKind.BOUNCE
    assert first.detector == "rfc3464"
    assert first.action == "failed"
    assert first.status == StatusCode(5, 1, 1)
    assert first.code == 550
    assert first.remote_mta == "mx.example.com"
    assert first.reporting_mta == "mx.sender.example"
    assert first.last_attempt == datetime(2026, 3, 2, 9, 0, 5, tzinfo=UTC)
    assert first.arrival_date == datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
    assert first.original_message_id == "<issue-42@sender.example>"
    assert first.subject == "Undelivered Mail Returned to Sender"
    assert second.recipient == "bob@example.org"


def test_folded_diagnostic_code_is_unfolded_into_one_line() -> None:
    first = parse_message(DSN)[0]
    assert first.diagnostic == (
        "550 5.1.1 <alice@example.com>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert first.reply is not None
    assert first.reply.code == 550
    assert "virtual mailbox table" in first.reply.text


def test_delayed_dsn_action_is_a_transient_result() -> None:
    second = parse_message(DSN)[1]
    assert second.action == "delayed"
    assert second.klass == 4


def test_delayed_action_stays_transient_even_with_a_permanent_looking_code() -> None:
    data = DSN.replace(b"421 4.4.1 connection timed out", b"550 5.0.0 try later").replace(
        b"Status: 4.4.1", b"Status: 5.0.0"
    )
    second = parse_message(data)[1]
    assert second.action == "delayed"
    assert second.klass == 4


def test_dsn_blocks_without_blank_lines_still_split_per_recipient() -> None:
    data = DSN.replace(b"Last-Attempt-Date: Mon, 2 Mar 2026 10:00:05 +0100\n\n", b"")
    records = parse_message(data)
    assert [r.recipient for r in records] == ["Alice@example.com", "bob@example.org"]
    assert [r.action for r in records] == ["failed", "delayed"]


def test_verp_return_path_gives_the_recipient_it_encodes() -> None:
    assert parse_message(DSN)[0].verp_recipient == "alice@example.com"


def test_verp_format_with_a_prefix_ignores_other_local_parts() -> None:
    verp = VerpFormat(prefix="returns", separator="-", equals="#")
    assert verp.decode("returns-bob#example.org@lists.example") == "bob@example.org"
    assert verp.decode("bounces-bob#example.org@lists.example") is None
    assert parse_message(DSN, verp=verp)[0].verp_recipient is None


def test_qmail_bounce_gives_recipient_code_and_trailing_status() -> None:
    rec = _one(parse_message(QMAIL))
    assert rec.detector == "qmail"
    assert rec.recipient == "carol@example.net"
    assert rec.code == 550
    assert rec.status == StatusCode(5, 1, 1)
    assert rec.action == "failed"
    assert rec.original_message_id == "<q-1@sender.example>"


def test_exim_bounce_with_auto_submitted_header_is_a_bounce_not_an_auto_reply() -> None:
    rec = _one(parse_message(EXIM))
    assert rec.kind is EventKind.BOUNCE
    assert rec.detector == "exim"
    assert rec.recipient == "dave@example.org"
    assert (rec.code, str(rec.status)) == (550, "5.2.1")
    assert rec.reply is not None
    assert rec.reply.command == "RCPT TO"


def test_sendmail_transcript_takes_the_remote_servers_code_not_its_own() -> None:
    records = parse_message(SENDMAIL)
    by_rcpt = {r.recipient: r for r in records}
    assert set(by_rcpt) == {"erin@example.edu", "frank@example.edu"}
    assert by_rcpt["frank@example.edu"].code == 550
    assert "Host unknown" in by_rcpt["frank@example.edu"].diagnostic
    assert by_rcpt["erin@example.edu"].code == 550


def test_exchange_ndr_reads_the_remote_server_returned_line() -> None:
    rec = _one(parse_message(EXCHANGE))
    assert rec.detector == "exchange"
    assert rec.recipient == "grace@contoso.example"
    assert (rec.code, str(rec.status)) == (550, "5.1.10")


def test_arf_report_gives_a_complaint_per_original_recipient() -> None:
    records = parse_message(ARF)
    assert [r.recipient for r in records] == ["heidi@isp.example", "ivan@isp.example"]
    assert all(r.kind is EventKind.COMPLAINT for r in records)
    assert records[0].feedback_type == "abuse"
    assert records[0].original_message_id == "<complained@sender.example>"
    assert records[0].status is None
    assert records[0].klass is None


def test_arf_report_without_original_rcpt_to_uses_the_returned_messages_to() -> None:
    data = ARF.replace(b"Original-Rcpt-To: heidi@isp.example\n", b"").replace(
        b"Original-Rcpt-To: ivan@isp.example\n", b""
    )
    assert [r.recipient for r in parse_message(data)] == ["heidi@isp.example"]


def test_vacation_message_is_an_auto_reply_from_its_sender() -> None:
    rec = _one(parse_message(VACATION))
    assert rec.kind is EventKind.AUTO_REPLY
    assert rec.detector == "rfc3834"
    assert rec.recipient == "judy@example.com"
    assert rec.action is None


def test_a_message_that_is_no_bounce_gives_one_record_with_an_error() -> None:
    rec = _one(parse_message(PLAIN))
    assert rec.recipient is None
    assert rec.error is not None
    assert "no failed recipient" in rec.error


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "empty"),
        (b"   \n\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"just some words without any header\n", "no header fields"),
    ],
)
def test_unreadable_input_raises_ingest_error_naming_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(IngestError, match=problem) as info:
        parse_message(data, source="inbox.mbox")
    assert info.value.source == "inbox.mbox"


def test_crlf_line_endings_read_the_same_as_lf() -> None:
    crlf = DSN.replace(b"\n", b"\r\n")
    assert [(r.recipient, r.status, r.code) for r in parse_message(crlf)] == [
        (r.recipient, r.status, r.code) for r in parse_message(DSN)
    ]


def test_wrong_charset_and_8bit_bytes_are_replaced_not_fatal() -> None:
    data = QMAIL.replace(b"Subject: failure notice", b"Subject: =?x-unknown?B?AAAA?= \xff\xfe")
    data = data.replace(b"Hi. This", b"Hi\xe9\xff. This")
    rec = _one(parse_message(data))
    assert rec.recipient == "carol@example.net"


SAMPLES = [DSN, QMAIL, EXIM, SENDMAIL, EXCHANGE, ARF, VACATION, PLAIN]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(SAMPLES),
    st.lists(st.tuples(st.integers(0, 4000), st.binary(max_size=8)), max_size=6),
    st.integers(0, 4000),
)
def test_mangled_messages_give_records_or_ingest_error_never_anything_else(
    sample: bytes, edits: list[tuple[int, bytes]], cut: int
) -> None:
    data = bytearray(sample[: max(cut, 1)] if cut < len(sample) else sample)
    for pos, junk in edits:
        pos = min(pos, len(data))
        data[pos : pos + len(junk)] = junk
    try:
        records = parse_message(bytes(data))
    except IngestError:
        return
    assert records
    assert all(isinstance(r, BounceRecord) for r in records)
    assert all(r.recipient is not None or r.error for r in records)


# --- sources -----------------------------------------------------------------------------


def _write_mbox(path: Path, messages: list[bytes]) -> list[int]:
    offsets = []
    with path.open("wb") as fh:
        for msg in messages:
            offsets.append(fh.tell())
            fh.write(b"From MAILER-DAEMON Mon Mar  2 10:00:00 2026\n")
            body = b"".join(
                b">" + ln if ln.startswith(b"From ") else ln for ln in msg.splitlines(True)
            )
            fh.write(body if body.endswith(b"\n") else body + b"\n")
            fh.write(b"\n")
    return offsets


def test_mbox_yields_each_message_keyed_by_the_offset_of_its_from_line(tmp_path: Path) -> None:
    box = tmp_path / "bounces.mbox"
    body = QMAIL.replace(b"Sorry it didn't work out.", b"\nFrom the top: sorry.")
    offsets = _write_mbox(box, [DSN, body, ARF])
    got = list(iter_mbox(box))
    assert [k for k, _ in got] == [str(o) for o in offsets]
    assert got[0][1].rstrip(b"\n") == DSN.rstrip(b"\n")
    # mboxrd quoting (">From ") is undone.
    assert b"\nFrom the top" in got[1][1]
    assert parse_message(got[2][1])[0].recipient == "heidi@isp.example"


def test_mbox_keys_are_stable_when_the_file_grows(tmp_path: Path) -> None:
    box = tmp_path / "bounces.mbox"
    _write_mbox(box, [DSN, QMAIL])
    before = [k for k, _ in iter_mbox(box)]
    with box.open("ab") as fh:
        fh.write(b"From x Mon Mar  2 10:00:00 2026\n" + EXIM + b"\n")
    after = [k for k, _ in iter_mbox(box)]
    assert after[:2] == before
    assert len(after) == 3


def test_mbox_written_by_the_standard_library_reads_back_whole(tmp_path: Path) -> None:
    box = tmp_path / "std.mbox"
    mb = mailbox.mbox(box)
    for msg in (DSN, EXIM, VACATION):
        mb.add(msg)
    mb.flush()
    mb.close()
    kinds = [parse_message(data)[0].kind for _, data in iter_mbox(box)]
    assert kinds == [EventKind.BOUNCE, EventKind.BOUNCE, EventKind.AUTO_REPLY]


def test_mbox_reading_streams_without_holding_the_file(tmp_path: Path) -> None:
    box = tmp_path / "big.mbox"
    _write_mbox(box, [EXIM] * 3000)
    tracemalloc.start()
    count = sum(1 for _ in iter_mbox(box))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 3000
    assert peak < box.stat().st_size / 10


def test_maildir_keys_drop_the_flags_suffix(tmp_path: Path) -> None:
    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "new" / "1700000000.M1P1.host").write_bytes(DSN)
    (tmp_path / "cur" / "1700000001.M2P2.host:2,S").write_bytes(QMAIL)
    (tmp_path / "tmp" / "1700000002.M3P3.host").write_bytes(EXIM)
    got = dict(iter_maildir(tmp_path))
    assert set(got) == {"1700000000.M1P1.host", "1700000001.M2P2.host"}
    assert got["1700000001.M2P2.host"] == QMAIL


def test_eml_file_is_one_message_keyed_by_its_name(tmp_path: Path) -> None:
    file = tmp_path / "one.eml"
    file.write_bytes(EXIM)
    assert list(iter_eml(file)) == [("one.eml", EXIM)]


# --- explain --------------------------------------------------------------------------------


def test_explain_message_file_gives_one_verdict_row_per_recipient(tmp_path: Path) -> None:
    file = tmp_path / "dsn.eml"
    file.write_bytes(DSN)
    first, second = explain_message_file(file)
    assert first["file"] == str(file)
    assert first["recipient"] == "Alice@example.com"
    assert (first["code"], first["status"]) == (550, "5.1.1")
    assert (first["outcome"], first["reason"], first["fault"]) == (
        "bounced",
        "user_unknown",
        "recipient",
    )
    assert first["rule"]
    assert (first["action"], first["kind"], first["detector"]) == ("failed", "bounce", "rfc3464")
    assert second["outcome"] == "deferred"
    json.dumps([first, second])


def test_explain_says_delayed_action_is_a_deferral_whatever_the_code(tmp_path: Path) -> None:
    file = tmp_path / "delayed.eml"
    file.write_bytes(
        DSN.replace(b"421 4.4.1 connection timed out", b"550 5.1.1 no such user").replace(
            b"Status: 4.4.1", b"Status: 5.1.1"
        )
    )
    assert explain_message_file(file)[1]["outcome"] == "deferred"


def test_explain_says_a_failed_action_with_a_transient_status_is_the_relays_give_up(
    tmp_path: Path,
) -> None:
    # RFC 3464 section 2.3.3: "failed" means the reporting MTA stopped trying; the nightly job
    # records it so (test_nightly), and explain shows the same verdict.
    file = tmp_path / "expired.eml"
    file.write_bytes(DSN.replace(b"Action: delayed", b"Action: failed"))
    row = explain_message_file(file)[1]
    assert (row["outcome"], row["reason"], row["fault"]) == ("deferred", "expired", "destination")
    assert row["rule"].endswith("+dsn-action-failed")


def test_explain_complaint_and_auto_reply_rows(tmp_path: Path) -> None:
    (tmp_path / "arf.eml").write_bytes(ARF)
    (tmp_path / "away.eml").write_bytes(VACATION)
    complaint = explain_message_file(tmp_path / "arf.eml")[0]
    assert (complaint["kind"], complaint["outcome"], complaint["reason"]) == (
        "complaint",
        "complained",
        "feedback",
    )
    away = explain_message_file(tmp_path / "away.eml")[0]
    assert (away["kind"], away["outcome"], away["reason"]) == (
        "auto_reply",
        "informational",
        "vacation",
    )


def test_explain_without_recipient_gives_one_row_with_null_recipient_and_error(
    tmp_path: Path,
) -> None:
    (tmp_path / "plain.eml").write_bytes(PLAIN)
    (tmp_path / "empty.eml").write_bytes(b"")
    for name in ("plain.eml", "empty.eml"):
        (row,) = explain_message_file(tmp_path / name)
        assert row["recipient"] is None
        assert row["error"]
        assert row["outcome"] is None


def test_a_personal_message_naming_an_address_is_not_read_as_a_bounce() -> None:
    data = _message(
        """
From: Lena <lena@example.com>
To: news@sender.example
Subject: Re: Our news
""",
        "Please write to my new address instead:\n\n   lena.new@example.org\n\nThanks!\n",
    )
    rec = _one(parse_message(data))
    assert rec.recipient is None
    assert rec.error is not None


def test_a_bounce_in_an_unknown_format_is_read_when_the_headers_say_bounce() -> None:
    data = _message(
        """
From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>
To: news@sender.example
Subject: Undeliverable mail
""",
        "Your message could not reach\n\n   olga@example.net\n\nReason: 550 5.1.1 no such user\n",
    )
    rec = _one(parse_message(data))
    assert rec.recipient == "olga@example.net"
    assert (rec.code, str(rec.status)) == (550, "5.1.1")


def test_utf8_text_labelled_iso_2022_jp_is_read_as_utf8() -> None:
    body = "<pia@example.jp>:\n550 5.1.1 宛先が見つかりません (#5.1.1)\n".encode()
    data = (
        b"From: MAILER-DAEMON@mx.example.jp\nTo: news@sender.example\n"
        b"Subject: failure notice\nContent-Type: text/plain; charset=ISO-2022-JP\n\n"
        b"Hi. This is the qmail-send program at mx.example.jp.\n\n" + body
    )
    rec = _one(parse_message(data))
    assert rec.recipient == "pia@example.jp"
    assert "宛先が見つかりません" in rec.diagnostic


@pytest.mark.parametrize(
    "value",
    [
        "Thu, 29 Apr 2010 23:34:45 +0900",
        "29 Apr 2010 23:34 -0000",
        "Mon, 2 Mar 2026 10:00:05 +0100 (CET)",
        "Sun, 13 Sep 2015 03:10:06 -0530",
        "Thu, 29 Apr 1999 23:34:45 -0500 (CDT)",
    ],
)
def test_dsn_dates_read_as_the_standard_library_reads_them(value: str) -> None:
    expected = parsedate_to_datetime(value)
    if expected.tzinfo is None:
        expected = expected.replace(tzinfo=UTC)
    assert parse_date(value) == expected
    assert parse_date(value).utcoffset() == expected.utcoffset()  # type: ignore[union-attr]


def test_impossible_dsn_dates_are_none() -> None:
    assert parse_date("Thu, 31 Feb 2010 23:34:45 +0900") is None
    assert parse_date("not a date") is None


def test_a_bounce_listing_thousands_of_recipients_gives_a_record_for_each() -> None:
    # Before each recipient's own block is read, the text above the list is read once (a
    # per-recipient look back made this quadratic: minutes for a few thousand recipients).
    listing = "".join(f"  user{i}@example.com\n" for i in range(3000))
    data = _message(
        """
From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: news@sender.example
Subject: Undelivered Mail Returned to Sender
""",
        "550 5.1.1 The following addresses failed:\n\n" + listing,
    )
    records = parse_message(data)
    assert len(records) == 3000
    assert records[2999].recipient == "user2999@example.com"
    assert all(r.code == 550 for r in records)


def test_dsn_without_diagnostic_codes_takes_each_recipients_reply_from_the_prose() -> None:
    n = 2000
    blocks = "".join(
        f"Final-Recipient: rfc822; u{i}@example.com\nAction: failed\nStatus: 5.0.0\n\n"
        for i in range(n)
    )
    prose = "".join(
        f"<u{i}@example.com>: host mx said: {550 if i % 2 else 552} 5.{1 if i % 2 else 2}."
        f"{1 if i % 2 else 2} no\n"
        for i in range(n)
    )
    data = (
        "From: MAILER-DAEMON@mx.example\nTo: news@sender.example\nSubject: Undelivered\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThis is the mail system.\n\n" + prose + "\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx\n\n"
        + blocks
        + "--B--\n"
    ).encode()
    records = parse_message(data)
    assert len(records) == n
    assert [(r.code, str(r.status)) for r in records[:2]] == [(552, "5.2.2"), (550, "5.1.1")]
    assert records[-1].recipient == f"u{n - 1}@example.com"


# --- dates that cannot be used --------------------------------------------------------------


def _ses_bounce(timestamp: str) -> bytes:
    note = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [
                {
                    "emailAddress": "lena@example.com",
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": timestamp,
            "reportingMTA": "dsn; a1-2.smtp-out.amazonses.com",
        },
    }
    return _message(
        """
From: no-reply@sns.amazonaws.com
To: bounces@sender.example
Subject: AWS Notification Message
Date: Mon, 2 Mar 2026 10:00:05 +0000
""",
        json.dumps(note),
    )


@pytest.mark.parametrize(
    "value",
    [
        # Year 1 one hour east of UTC is before the first instant a UTC datetime can hold.
        "Mon, 1 Jan 0001 00:00:00 +0100",
        "Fri, 31 Dec 9999 23:30:00 -0100",
        # Written with four digits, year 1 is year 1, not 2001 (RFC 5322 section 4.3 reads
        # only two- and three-digit years as abbreviations).
        "1 Jan 0001 00:00:00 GMT",
        "Mon, 1 Jan 0001 00:00:00 EST",
        # Before the Unix epoch: a mail system whose clock says so is wrong.
        "Wed, 31 Dec 1969 23:59:59 +0000",
    ],
)
def test_a_date_that_is_no_usable_time_is_read_as_absent(value: str) -> None:
    assert parse_date(value) is None


def test_a_two_digit_year_is_still_read_as_an_abbreviation() -> None:
    assert parse_date("Thu, 29 Apr 10 23:34:45 +0900") == datetime(
        2010, 4, 29, 14, 34, 45, tzinfo=UTC
    )


def test_a_dsn_with_an_unusable_last_attempt_date_is_read_without_it() -> None:
    data = DSN.replace(
        b"Last-Attempt-Date: Mon, 2 Mar 2026 10:00:05 +0100",
        b"Last-Attempt-Date: Mon, 1 Jan 0001 00:00:00 +0100",
    ).replace(b"Arrival-Date: Mon, 2 Mar 2026", b"Arrival-Date: Mon, 1 Jan 0001")
    first = parse_message(data)[0]
    assert (first.recipient, first.last_attempt, first.arrival_date) == (
        "Alice@example.com",
        None,
        None,
    )
    assert first.status == StatusCode(5, 1, 1)


def test_an_arf_report_with_an_unusable_arrival_date_is_read_without_it() -> None:
    data = ARF.replace(
        b"Arrival-Date: Tue, 3 Mar 2026 08:00:00 +0000",
        b"Arrival-Date: Mon, 1 Jan 0001 00:00:00 +0100",
    )
    records = parse_message(data)
    assert [(r.recipient, r.arrival_date) for r in records] == [
        ("heidi@isp.example", None),
        ("ivan@isp.example", None),
    ]


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("0001-01-01T00:00:00.000+01:00", None),
        ("1969-12-31T23:59:59.000Z", None),
        ("2026-03-02T10:00:04.123Z", datetime(2026, 3, 2, 10, 0, 4, 123000, tzinfo=UTC)),
    ],
)
def test_an_amazon_ses_timestamp_is_read_only_when_it_is_a_usable_time(
    timestamp: str, expected: datetime | None
) -> None:
    record = _one(parse_message(_ses_bounce(timestamp)))
    assert (record.recipient, record.last_attempt) == ("lena@example.com", expected)


# --- mbox separators --------------------------------------------------------------------------


def test_a_from_line_inside_a_bounce_body_does_not_split_the_message(tmp_path: Path) -> None:
    # An unescaped "From " line after a blank line (mboxo writers that do not quote it) is
    # text unless it is a separator: "From ", an address-like token and a date (RFC 4155,
    # appendix A).
    body = DSN.replace(
        b"This is the mail system at host mx.sender.example.\n",
        b"This is the mail system at host mx.sender.example.\n\n"
        b"From the desk of the postmaster: sorry.\n",
    )
    box = tmp_path / "bounces.mbox"
    box.write_bytes(
        b"From MAILER-DAEMON Mon Mar  2 10:00:00 2026\n"
        + body
        + b"\nFrom MAILER-DAEMON Mon Mar  2 10:01:00 2026\n"
        + QMAIL
        + b"\n"
    )
    got = list(iter_mbox(box))
    assert len(got) == 2
    assert got[0][1] == body
    assert [r.recipient for r in parse_message(got[0][1])] == [
        "Alice@example.com",
        "bob@example.org",
    ]


def test_only_a_separator_line_is_where_an_mbox_can_resume(tmp_path: Path) -> None:
    box = tmp_path / "bounces.mbox"
    box.write_bytes(b"From x@y Mon Mar  2 10:00:00 2026\nSubject: a\n\nFrom the top\n\n")
    assert starts_mbox_message(box, 0)
    assert not starts_mbox_message(box, box.read_bytes().index(b"From the top"))


# --- recipients that are not addresses ---------------------------------------------------------


def _dsn_for(recipients: list[str]) -> bytes:
    blocks = "".join(
        f"Final-Recipient: rfc822; {r}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{r}>: User unknown\n\n"
        for r in recipients
    )
    returned = (
        "--BOUND\nContent-Type: text/rfc822-headers\n\n"
        f"From: news@sender.example\nTo: {recipients[0]}\nMessage-ID: <n@sender.example>\n\n"
    )
    return DSN.split(b"Final-Recipient:", 1)[0] + (blocks + returned).encode() + b"--BOUND--\n"


def test_a_dsn_recipient_that_is_not_an_address_is_an_error_naming_the_field() -> None:
    # The returned message's To names m1: the block that names no address is not m1's.
    records = parse_message(_dsn_for(["m1@example.com", "not an address", "m3@example.com"]))
    assert [(r.recipient, r.diagnostic) for r in records] == [
        ("m1@example.com", "550 5.1.1 <m1@example.com>: User unknown"),
        (None, "550 5.1.1 <not an address>: User unknown"),
        ("m3@example.com", "550 5.1.1 <m3@example.com>: User unknown"),
    ]
    assert records[1].error is not None
    assert records[1].error.startswith("Final-Recipient: not an email address 'not an address'")


def test_a_dsn_recipient_without_a_local_part_is_still_completed_from_the_prose() -> None:
    data = _dsn_for(["@mx.example.com"]).replace(
        b"This is the mail system at host mx.sender.example.",
        b"This is the mail system at host mx.sender.example.\n\n"
        b"<zoe@example.com>: host mx.example.com said: 550 5.1.1 User unknown",
    )
    [record] = parse_message(data)
    assert (record.recipient, record.error) == ("zoe@example.com", None)


def test_an_mbox_message_not_yet_terminated_by_a_blank_line_is_held_back(
    tmp_path: Path,
) -> None:
    # RFC 4155 appendix A: each message ends with an empty line. A last message without it may
    # still be being appended: read, it would be recorded half-written.
    box = tmp_path / "bounces.mbox"
    cut = DSN.index(b"Diagnostic-Code:")
    box.write_bytes(
        b"From MAILER-DAEMON Mon Mar  2 10:00:00 2026\n"
        + QMAIL
        + b"\nFrom MAILER-DAEMON Mon Mar  2 10:01:00 2026\n"
        + DSN[:cut]
    )
    assert [data for _, data in iter_mbox(box)] == [QMAIL]
    # Explaining a file shows all it holds, the unfinished message too.
    assert [data for _, data in iter_mbox(box, hold_unterminated=False)] == [QMAIL, DSN[:cut]]
    with box.open("ab") as fh:
        fh.write(DSN[cut:] + b"\n")
    assert [data for _, data in iter_mbox(box)] == [QMAIL, DSN]


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc/self/mem")
def test_an_unreadable_maildir_file_is_reported_and_the_rest_read(tmp_path: Path) -> None:
    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "new" / "1.M1.host").write_bytes(DSN)
    # Reading it fails with EIO: offset 0 of a process's memory is never mapped.
    (tmp_path / "new" / "2.M2.host").symlink_to("/proc/self/mem")
    (tmp_path / "cur" / "3.M3.host:2,S").write_bytes(QMAIL)
    problems: list[tuple[str, str]] = []
    got = dict(iter_maildir(tmp_path, unreadable=lambda key, why: problems.append((key, why))))
    assert got == {"1.M1.host": DSN, "3.M3.host": QMAIL}
    assert len(problems) == 1
    key, why = problems[0]
    assert key == "2.M2.host"
    assert why.startswith("cannot read the message file new/2.M2.host: ")
    assert "Input/output error" in why


@pytest.mark.parametrize(
    "separator",
    [
        b"From MAILER-DAEMON Mon Mar  2 10:01:00 2026",
        b"From MAILER-DAEMON Mon, 2 Mar 2026 10:01:00 +0000",
        b"From MAILER-DAEMON Mon Mar  2 10:01 2026",
        b"From  Mon Mar  2 10:01:00 2026",
    ],
)
def test_separators_with_other_date_forms_or_no_sender_still_start_a_message(
    tmp_path: Path, separator: bytes
) -> None:
    # Writers differ from RFC 4155's asctime: an RFC 5322 date, no seconds, an empty sender.
    # Taken for text, the next bounce was merged into the one before it, without a word.
    box = tmp_path / "bounces.mbox"
    box.write_bytes(b"From MAILER-DAEMON Mon Mar  2 10:00:00 2026\n" + DSN + b"\n" + separator
                    + b"\n" + QMAIL + b"\n")  # fmt: skip
    assert [data for _, data in iter_mbox(box)] == [DSN, QMAIL]


def test_a_message_cut_short_before_the_next_separator_is_reported_not_joined_to_it(
    tmp_path: Path,
) -> None:
    # RFC 4155 appendix A: every message ends with an empty line. A separator line right after
    # a line of text starts the next message all the same: the one before it was cut short (its
    # writer died before finishing it) and is reported, not read as part of the next.
    box = tmp_path / "bounces.mbox"
    cut = DSN[: DSN.index(b"Status:")]
    first = b"From MAILER-DAEMON Mon Mar  2 10:00:00 2026\n" + QMAIL + b"\n"
    second = b"From MAILER-DAEMON Mon Mar  2 10:01:00 2026\n" + cut
    third = b"From MAILER-DAEMON Mon Mar  2 10:02:00 2026\n" + EXIM + b"\n"
    box.write_bytes(first + second + third)
    problems: list[tuple[str, str]] = []
    got = list(iter_mbox(box, unreadable=lambda key, why: problems.append((key, why))))
    assert got == [("0", QMAIL), (str(len(first) + len(second)), EXIM)]
    [(key, why)] = problems
    assert key == str(len(first))
    assert why.startswith("the message is cut short")
    # Without a callback, as for a Maildir file that cannot be read, the error is raised.
    with pytest.raises(IngestError, match="cut short"):
        list(iter_mbox(box))
    # Explaining the file shows it as an error row between the two it explains.
    rows = explain_message_file(box)
    assert [(row["message"], row["recipient"]) for row in rows] == [
        ("0", "carol@example.net"),
        (str(len(first)), None),
        (str(len(first) + len(second)), "dave@example.org"),
    ]
    assert rows[1]["error"] == why


# --- a size limit per message ------------------------------------------------------------------


def test_an_mbox_message_over_the_size_limit_is_reported_read_past_and_never_held(
    tmp_path: Path,
) -> None:
    # A message of 20 MiB, most of it one line (base64 written without line breaks), between two
    # bounces: with a 1 MiB limit it is reported by its key and size, and the reader never
    # holds it (nor its one long line) in memory.
    box = tmp_path / "bounces.mbox"
    first = b"From MAILER-DAEMON Mon Mar  2 10:00:00 2026\n" + QMAIL + b"\n"
    huge = (
        b"From someone@example.com Mon Mar  2 10:01:00 2026\n"
        + b"Subject: a big file\n\n"
        + b"A" * (20 * 1024**2)
        + b"\n\n"
    )
    last = b"From MAILER-DAEMON Mon Mar  2 10:02:00 2026\n" + EXIM + b"\n"
    box.write_bytes(first + huge + last)
    problems: list[tuple[str, str]] = []
    tracemalloc.start()
    got = list(
        iter_mbox(box, unreadable=lambda key, why: problems.append((key, why)), max_message=1024**2)
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got == [("0", QMAIL), (str(len(first) + len(huge)), EXIM)]
    [(key, why)] = problems
    assert key == str(len(first))
    size = len(huge) - huge.index(b"\n") - 1
    assert why.startswith(f"the message is {size} bytes, over the limit of {1024**2} bytes")
    assert peak < 4 * 1024**2


def test_a_maildir_or_eml_message_over_the_size_limit_is_reported_unread(tmp_path: Path) -> None:
    for sub in ("new", "cur", "tmp"):
        (tmp_path / sub).mkdir()
    (tmp_path / "new" / "1.M1.host").write_bytes(DSN)
    (tmp_path / "new" / "2.M2.host").write_bytes(b"Subject: big\n\n" + b"A" * 5000)
    (tmp_path / "cur" / "3.M3.host:2,S").write_bytes(QMAIL)
    problems: list[tuple[str, str]] = []
    got = dict(
        iter_maildir(
            tmp_path, unreadable=lambda key, why: problems.append((key, why)), max_message=4096
        )
    )
    assert got == {"1.M1.host": DSN, "3.M3.host": QMAIL}
    assert problems == [
        (
            "2.M2.host",
            "the message file new/2.M2.host is 5014 bytes, over the limit of 4096 bytes for one "
            "message; not read (a bounce is far smaller: mail servers return at most the "
            "original, and most only its headers)",
        )
    ]
    big = tmp_path / "new" / "2.M2.host"
    with pytest.raises(IngestError, match="5014 bytes, over the limit"):
        list(iter_eml(big, max_message=4096))
    assert list(iter_eml(big, max_message=5014)) == [("2.M2.host", big.read_bytes())]


def test_explaining_a_message_file_over_the_size_limit_gives_an_error_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(messages, "MAX_MESSAGE", len(DSN) - 1)
    file = tmp_path / "dsn.eml"
    file.write_bytes(DSN)
    [row] = explain_message_file(file)
    assert row["recipient"] is None
    assert row["error"].startswith(f"the message is {len(DSN)} bytes, over the limit of")
    monkeypatch.setattr(messages, "MAX_MESSAGE", len(DSN))
    assert len(explain_message_file(file)) == 2


# --- a Maildir in use while it is read ---------------------------------------------------------


def _maildir(root: Path, files: dict[str, bytes]) -> None:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)


def test_a_maildir_message_renamed_by_a_mail_client_while_it_is_read_is_read_once(
    tmp_path: Path,
) -> None:
    # A mail client moves a message from new/ to cur/ when it is seen, and renames it in cur/
    # when its flags change (":2,S" to ":2,RS"). The reader lists a folder, then reads its
    # files one at a time: each message is read once, under the name it has by then, and one
    # deleted meanwhile is no error.
    _maildir(
        tmp_path,
        {
            "new/3.M3.host": QMAIL,
            "new/4.M4.host": EXIM,
            "new/5.M5.host": SENDMAIL,
            "cur/1.M1.host:2,S": DSN,
            "cur/2.M2.host:2,S": EXCHANGE,
        },
    )
    problems: list[tuple[str, str]] = []
    got: list[tuple[str, bytes]] = []
    for key, data in iter_maildir(tmp_path, unreadable=lambda k, why: problems.append((k, why))):
        got.append((key, data))
        if key == "3.M3.host":
            (tmp_path / "new/4.M4.host").rename(tmp_path / "cur/4.M4.host:2,S")
            (tmp_path / "new/5.M5.host").unlink()
        if key == "1.M1.host":
            (tmp_path / "cur/2.M2.host:2,S").rename(tmp_path / "cur/2.M2.host:2,RS")
    assert got == [
        ("3.M3.host", QMAIL),
        ("4.M4.host", EXIM),
        ("1.M1.host", DSN),
        ("2.M2.host", EXCHANGE),
    ]
    assert problems == []


def test_a_maildir_file_renamed_between_its_check_and_its_read_is_read_under_its_new_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _maildir(tmp_path, {"new/1.M1.host": DSN})
    read = messages._read_capped

    def renamed_first(file: Path, limit: int, what: str) -> tuple[bytes | None, str | None]:
        if file.name == "1.M1.host":
            file.rename(tmp_path / "cur/1.M1.host:2,S")
        return read(file, limit, what)

    monkeypatch.setattr(messages, "_read_capped", renamed_first)
    problems: list[tuple[str, str]] = []
    got = list(iter_maildir(tmp_path, unreadable=lambda k, why: problems.append((k, why))))
    assert (got, problems) == ([("1.M1.host", DSN)], [])


def test_a_gzip_compressed_maildir_message_is_read_decompressed(tmp_path: Path) -> None:
    # Dovecot's zlib plugin stores Maildir messages gzip-compressed; read as they are, every one
    # was binary data, not a message. A broken one, or one that expands past the limit (a
    # decompression bomb), is reported and the rest read.
    _maildir(
        tmp_path,
        {
            "cur/1.M1.host:2,S": gzip.compress(DSN),
            "cur/2.M2.host:2,S": gzip.compress(DSN)[:-30],
            "cur/3.M3.host:2,S": gzip.compress(b"Subject: x\n\n" + b"A" * 100_000),
            "new/4.M4.host": QMAIL,
        },
    )
    problems: list[tuple[str, str]] = []
    got = dict(
        iter_maildir(
            tmp_path, unreadable=lambda k, why: problems.append((k, why)), max_message=50_000
        )
    )
    assert got == {"1.M1.host": DSN, "4.M4.host": QMAIL}
    assert problems == [
        ("2.M2.host", "the message file cur/2.M2.host:2,S is gzip data cut short; not read"),
        (
            "3.M3.host",
            "the message file cur/3.M3.host:2,S decompresses to more than 50000 bytes, the "
            "limit for one message",
        ),
    ]
    assert [r.recipient for r in parse_message(got["1.M1.host"])] == [
        "Alice@example.com",
        "bob@example.org",
    ]
