from __future__ import annotations

import gzip
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from deliverability.errors import IngestError
from deliverability.ingest.postfix import (
    PostfixStream,
    parse_postfix_line,
    read_postfix_log,
)
from deliverability.ingest.records import LogRecord, Rejected
from deliverability.replies import StatusCode

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

BOUNCED = (
    "Nov 28 03:14:15 mx postfix/smtp[1234]: 3F1A2B: to=<alice@example.com>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.1.1, "
    "status=bounced (host mx.example.com[192.0.2.1] said: 550 5.1.1 <alice@example.com>: "
    "Recipient address rejected: User unknown (in reply to RCPT TO command))"
)
SENT = (
    "Nov 28 03:14:16 mx postfix/smtp[1235]: 4B2C3D: to=<bob@gmail.com>, "
    "relay=gmail-smtp-in.l.google.com[198.51.100.26]:25, delay=0.9, delays=0.1/0/0.3/0.5, "
    "dsn=2.0.0, status=sent (250 2.0.0 OK  1764299655 x12si123456qkb.12 - gsmtp)"
)
TIMED_OUT = (
    "Nov 28 03:20:00 mx postfix/smtp[1236]: 5C3D4E: to=<carol@legacy.example.net>, relay=none, "
    "delay=30, delays=0/0/30/0, dsn=4.4.1, status=deferred "
    "(connect to mx.legacy.example.net[203.0.113.99]:25: Connection timed out)"
)


def parse(line: str, **kwargs: object) -> LogRecord:
    record = parse_postfix_line(line, now=NOW, **kwargs)  # type: ignore[arg-type]
    assert record is not None
    return record


def test_a_bounced_line_gives_the_remote_reply_with_its_code_status_and_command() -> None:
    record = parse(BOUNCED, source="mail.log", position="byte 0")
    assert record.at == datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)
    assert record.recipient == "alice@example.com"
    assert record.delivery_status == "bounced"
    assert record.queue_id == "3F1A2B"
    assert record.relay == "mx.example.com[192.0.2.1]:25"
    assert (record.reply.code, record.reply.status) == (550, StatusCode(5, 1, 1))
    assert record.reply.command == "RCPT TO"
    assert record.reply.text == "<alice@example.com>: Recipient address rejected: User unknown"
    assert (record.source, record.position, record.raw) == ("mail.log", "byte 0", BOUNCED)


def test_a_sent_line_gives_the_250_reply() -> None:
    record = parse(SENT)
    assert record.delivery_status == "sent"
    assert (record.reply.code, str(record.reply.status)) == (250, "2.0.0")
    assert record.reply.text.endswith("- gsmtp")


def test_a_deferral_without_a_remote_reply_takes_its_status_from_dsn() -> None:
    record = parse(TIMED_OUT)
    assert record.delivery_status == "deferred"
    assert record.reply.code is None
    assert record.reply.status == StatusCode(4, 4, 1)
    assert "Connection timed out" in record.reply.text
    assert record.relay is None


def test_a_remote_reply_without_enhanced_status_gets_postfix_dsn() -> None:
    line = BOUNCED.replace("550 5.1.1 <alice", "550 <alice").replace("dsn=5.1.1", "dsn=5.0.0")
    reply = parse(line).reply
    assert (reply.code, str(reply.status)) == (550, "5.0.0")


def test_a_multi_line_gmail_reply_flattened_by_postfix_is_read_once() -> None:
    line = BOUNCED.replace(
        "550 5.1.1 <alice@example.com>: Recipient address rejected: User unknown",
        "550-5.1.1 The email account that you tried to reach does not exist. Please try "
        "550-5.1.1 double-checking the recipient's email address for typos or 550 5.1.1 "
        "https://support.google.com/mail/?p=NoSuchUser x12si - gsmtp",
    )
    reply = parse(line).reply
    assert (reply.code, str(reply.status)) == (550, "5.1.1")
    assert "550-" not in reply.text


@pytest.mark.parametrize(
    ("agent", "tail", "status", "code", "dsn"),
    [
        (
            "lmtp",
            "relay=mail.example.org[private/dovecot-lmtp], delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, "
            "status=sent (250 2.0.0 <d@example.org> kLmN8x Saved)",
            "sent",
            250,
            "2.0.0",
        ),
        (
            "local",
            "relay=local, delay=0.01, delays=0/0/0/0, dsn=5.1.1, "
            'status=bounced (unknown user: "d")',
            "bounced",
            None,
            "5.1.1",
        ),
        (
            "virtual",
            "relay=virtual, delay=0.02, delays=0/0/0/0.02, dsn=5.2.2, "
            "status=bounced (cannot update mailbox /var/mail/vhosts/example.org/d for user d. "
            "file too large)",
            "bounced",
            None,
            "5.2.2",
        ),
        (
            "error",
            "relay=none, delay=9000, delays=9000/0/0/0, dsn=4.4.1, status=deferred "
            "(delivery temporarily suspended: connect to mx.example.org[192.0.2.26]:25: "
            "Connection refused)",
            "deferred",
            None,
            "4.4.1",
        ),
        (
            "discard",
            "relay=none, delay=0.01, delays=0/0/0/0, dsn=2.0.0, status=sent (example.org)",
            "sent",
            None,
            "2.0.0",
        ),
        (
            "pipe",
            "relay=spamfilter, delay=1.1, delays=0.1/0/0/1, dsn=2.0.0, "
            "status=sent (delivered via spamfilter service)",
            "sent",
            None,
            "2.0.0",
        ),
        (
            "smtp",
            "relay=mx.example.org[192.0.2.26]:25, delay=1, delays=0/0/0.5/0.5, dsn=5.7.1, "
            "status=SOFTBOUNCE (host mx.example.org[192.0.2.26] said: 554 5.7.1 Rejected: "
            "192.0.2.10 listed at b.barracudacentral.org (in reply to RCPT TO command))",
            "deferred",
            554,
            "5.7.1",
        ),
    ],
)
def test_every_delivery_agent_gives_a_record(
    agent: str, tail: str, status: str, code: int | None, dsn: str
) -> None:
    line = f"Nov 28 04:00:00 mx postfix/{agent}[77]: 9A8B7C6D: to=<d@example.org>, {tail}"
    record = parse(line)
    assert record.delivery_status == status
    assert record.reply.code == code
    assert str(record.reply.status) == dsn


def test_multi_instance_and_service_program_names_are_postfix_too() -> None:
    line = SENT.replace("postfix/smtp[1235]", "postfix-out/smtp[1235]")
    assert parse(line).recipient == "bob@gmail.com"
    line = SENT.replace("postfix/smtp[1235]", "postfix/relay/smtp[1235]")
    assert parse(line).recipient == "bob@gmail.com"


def test_orig_to_is_the_recipient_when_postfix_rewrote_the_address() -> None:
    line = (
        "Nov 28 04:00:00 mx postfix/smtp[1]: 1A2B3C4D: to=<alice@mail.example.com>, "
        "orig_to=<alice@example.com>, relay=mail.example.com[192.0.2.3]:25, delay=1, "
        "delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 7F)"
    )
    assert parse(line).recipient == "alice@example.com"


@pytest.mark.parametrize(
    "line",
    [
        "Nov 28 03:14:15 mx postfix/smtp[1234]: connect to mx.example.net[203.0.113.9]:25: "
        "Connection timed out",
        "Nov 28 03:14:15 mx postfix/smtpd[99]: disconnect from unknown[198.51.100.1] ehlo=1 quit=1",
        "Nov 28 03:14:15 mx postfix/qmgr[1987]: 3F1A2B: from=<bounces@news.example.org>, "
        "size=2417, nrcpt=1 (queue active)",
        "Nov 28 03:14:15 mx postfix/cleanup[7]: 3F1A2B: message-id=<a@news.example.org>",
        "Nov 28 03:14:15 mx postfix/pickup[6]: 3F1A2B: uid=1001 from=<bounces@news.example.org>",
        "Nov 28 03:14:15 mx postfix/qmgr[1987]: 3F1A2B: removed",
        "Nov 28 03:14:15 mx postfix/bounce[8]: 3F1A2B: sender non-delivery notification: 4C2D1E",
        "Nov 28 03:14:15 mx postfix/smtpd[99]: NOQUEUE: reject: RCPT from unknown[198.51.100.1]: "
        "554 5.7.1 <x@example.com>: Relay access denied; from=<a@example.net> "
        "to=<x@example.com> proto=ESMTP helo=<x>",
        "Nov 28 03:14:15 mx postfix/smtp[5]: Trusted TLS connection established to "
        "mx.example.com[192.0.2.1]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)",
        "Nov 28 03:14:15 mx postfix/smtp[5]: 3F1A2B: to=<a@example.com>, relay=mx.example.com"
        "[192.0.2.1]:25, delay=1, delays=0/0/0/1, dsn=2.1.5, status=deliverable (250 2.1.5 Ok)",
        "Nov 28 03:14:15 mx dovecot: imap-login: Login: user=<a@example.com>, method=PLAIN",
        "Nov 28 03:14:15 mx postfix/qmgr[1987]: 3F1A2B: from=<bounces@news.example.org>, "
        "status=expired, returned to sender",
        "",
    ],
)
def test_lines_that_are_not_delivery_results_give_none(line: str) -> None:
    assert parse_postfix_line(line, now=NOW) is None


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (BOUNCED[:120], "without to=<...> and status="),
        (SENT.replace("status=sent", "status=frozen"), "unknown status='frozen'"),
        (SENT.replace("dsn=2.0.0", "dsn=2.0"), "bad dsn=2.0"),
        (
            TIMED_OUT.replace("dsn=4.4.1, ", ""),
            "status=deferred with neither dsn= nor a reply code",
        ),
        (SENT.replace("to=<bob@gmail.com>", "to=<>"), "to=<> is not an address"),
        (SENT.replace("Nov 28", "Nov 31"), "invalid time stamp"),
        (SENT[:60] + BOUNCED, "two log lines run together"),
        ("Nov 28 03:1 mx postfix/smtp[1]: 3F1A2B: to=<a@example.com>, status=sent", "not a syslog"),
    ],
)
def test_a_broken_delivery_line_is_an_ingest_error_saying_where_and_why(
    line: str, problem: str
) -> None:
    with pytest.raises(IngestError) as info:
        parse_postfix_line(line, now=NOW, source="mail.log", position="byte 99")
    assert problem in info.value.problem
    assert str(info.value).startswith("mail.log:byte 99: ")
    assert info.value.raw == line


def test_a_syslog_time_takes_the_latest_year_that_is_at_most_a_day_after_now() -> None:
    new_year = datetime(2027, 1, 1, 0, 10, tzinfo=UTC)
    december = SENT.replace("Nov 28 03:14:16", "Dec 31 23:59:59")
    assert parse_postfix_line(december, now=new_year).at.year == 2026  # type: ignore[union-attr]
    past = SENT.replace("Nov 28 03:14:16", "Jan  1 00:05:00")
    assert parse_postfix_line(past, now=new_year).at.year == 2027  # type: ignore[union-attr]
    # Written while the job reads the log, or stamped in a zone ahead of UTC: this year, not
    # the last (a year back, its deferrals expired at once and their retries were lost).
    soon = SENT.replace("Nov 28 03:14:16", "Jan  1 09:15:00")
    assert parse_postfix_line(soon, now=new_year).at.year == 2027  # type: ignore[union-attr]
    beyond = SENT.replace("Nov 28 03:14:16", "Jan  2 00:15:00")
    assert parse_postfix_line(beyond, now=new_year).at.year == 2026  # type: ignore[union-attr]


def test_an_explicit_year_is_used_as_given() -> None:
    assert parse_postfix_line(SENT, year=2031).at.year == 2031  # type: ignore[union-attr]


def test_february_29_goes_back_to_the_last_leap_year() -> None:
    leap_day = SENT.replace("Nov 28", "Feb 29")
    at = parse_postfix_line(leap_day, now=datetime(2027, 3, 1, tzinfo=UTC)).at  # type: ignore[union-attr]
    assert at.date().isoformat() == "2024-02-29"


def test_a_syslog_time_without_zone_is_read_in_the_given_zone() -> None:
    cet = timezone(timedelta(hours=1))
    assert parse(SENT, tz=cet).at == datetime(2026, 11, 28, 2, 14, 16, tzinfo=UTC)


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2026-11-28T03:14:15.123456+00:00", datetime(2026, 11, 28, 3, 14, 15, 123456, UTC)),
        ("2026-11-28T04:14:15+0100", datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)),
        ("2026-11-28T03:14:15Z", datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)),
    ],
)
def test_rfc3339_time_stamps_carry_their_year_and_zone(stamp: str, expected: datetime) -> None:
    line = SENT.replace("Nov 28 03:14:16", stamp)
    assert parse_postfix_line(line).at == expected  # type: ignore[union-attr]


def test_a_syslog_time_without_year_or_now_is_refused() -> None:
    with pytest.raises(IngestError, match="pass year= or now="):
        parse_postfix_line(SENT)


def cleanup(qid: str, message_id: str, at: str = "Nov 28 03:14:00") -> str:
    return f"{at} mx postfix/cleanup[7]: {qid}: message-id=<{message_id}>"


def test_a_stream_joins_the_queue_id_to_the_message_id_seen_earlier() -> None:
    stream = PostfixStream(source="mail.log", now=NOW)
    assert stream.feed(cleanup("3F1A2B", "20261128.1@news.example.org"), "byte 0") == []
    (record,) = stream.feed(BOUNCED, "byte 80")
    assert record.message_id == "20261128.1@news.example.org"
    (unknown,) = stream.feed(SENT, "byte 400")
    assert unknown.message_id == "4B2C3D"


def test_a_removed_queue_id_is_forgotten_so_a_reused_id_is_not_misjoined() -> None:
    stream = PostfixStream(now=NOW)
    stream.feed(cleanup("3F1A2B", "first@news.example.org"), "byte 0")
    stream.feed("Nov 28 03:14:20 mx postfix/qmgr[1987]: 3F1A2B: removed", "byte 1")
    (record,) = stream.feed(BOUNCED.replace("03:14:15", "03:30:00"), "byte 2")
    assert record.message_id == "3F1A2B"


def test_the_queue_id_map_is_bounded_and_forgets_the_oldest_first() -> None:
    stream = PostfixStream(now=NOW, max_queue_ids=2)
    for qid in ("AAAAA1", "BBBBB2", "3F1A2B"):
        stream.feed(cleanup(qid, f"{qid}@news.example.org"), "byte 0")
    forgotten = BOUNCED.replace("3F1A2B", "AAAAA1")
    assert stream.feed(forgotten, "byte 9")[0].message_id == "AAAAA1"
    kept = BOUNCED.replace("3F1A2B", "BBBBB2")
    assert stream.feed(kept, "byte 9")[0].message_id == "BBBBB2@news.example.org"
    assert stream.feed(BOUNCED, "byte 9")[0].message_id == "3F1A2B@news.example.org"


def deferred(qid: str, recipient: str, at: str) -> str:
    return (
        f"Nov 28 {at} mx postfix/smtp[1]: {qid}: to=<{recipient}>, relay=none, delay=9, "
        "delays=0/0/9/0, dsn=4.4.1, status=deferred (connect to mx.legacy.example.net"
        "[203.0.113.99]:25: Connection timed out)"
    )


def test_qmgr_expiry_gives_one_expired_record_per_recipient_still_deferred() -> None:
    stream = PostfixStream(now=NOW)
    stream.feed(deferred("5C3D4E", "a@legacy.example.net", "01:00:00"), "byte 0")
    stream.feed(deferred("5C3D4E", "b@legacy.example.net", "01:00:01"), "byte 1")
    stream.feed(deferred("5C3D4E", "c@legacy.example.net", "01:00:02"), "byte 2")
    sent = SENT.replace("4B2C3D", "5C3D4E").replace("bob@gmail.com", "c@legacy.example.net")
    stream.feed(sent, "byte 3")
    expired = stream.feed(
        "Nov 28 06:00:00 mx postfix/qmgr[1987]: 5C3D4E: from=<bounces@news.example.org>, "
        "status=expired, returned to sender",
        "byte 4",
    )
    assert [r.recipient for r in expired] == ["a@legacy.example.net", "b@legacy.example.net"]
    assert {r.delivery_status for r in expired} == {"expired"}
    assert {r.position for r in expired} == {"byte 4"}
    assert expired[0].at == datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    assert expired[0].reply.status == StatusCode(4, 4, 1)
    assert "Connection timed out" in expired[0].reply.text


def test_a_per_recipient_expiry_line_without_dsn_is_delivery_time_expired() -> None:
    line = (
        "Nov 28 06:00:00 mx postfix/qmgr[1987]: 5C3D4E: to=<a@legacy.example.net>, relay=none, "
        "delay=432000, delays=432000/0/0/0, status=expired, returned to sender"
    )
    record = parse(line)
    assert record.delivery_status == "expired"
    assert record.reply.status == StatusCode(4, 4, 7)


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reading_a_log_yields_records_and_rejects_with_offsets_and_goes_on(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mail.log", [cleanup("3F1A2B", "m1@x.example"), BOUNCED, "junk", SENT[:90], SENT]
    )
    got = list(read_postfix_log(path, now=NOW))
    kinds = ["LogRecord", "Rejected", "Rejected", "LogRecord"]
    assert [type(i).__name__ for _, i in got] == kinds
    assert got[0][1].message_id == "m1@x.example"  # type: ignore[union-attr]
    junk, rejected = got[1][1], got[2][1]
    assert isinstance(junk, Rejected)
    assert "not a syslog line" in junk.error
    assert isinstance(rejected, Rejected)
    assert rejected.source == str(path)
    assert rejected.raw == SENT[:90]
    assert got[-1][0] == path.stat().st_size


def test_a_resumed_read_still_knows_the_message_ids_from_before_the_offset(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "mail.log", [cleanup("3F1A2B", "m1@x.example"), SENT, BOUNCED])
    first_run = list(read_postfix_log(path, now=NOW))
    checkpoint = first_run[0][0]
    ((offset, record),) = list(read_postfix_log(path, start_offset=checkpoint, now=NOW))
    assert record.message_id == "m1@x.example"  # type: ignore[union-attr]
    assert record.position == first_run[1][1].position
    assert offset == first_run[1][0]


def test_records_of_one_line_move_the_offset_past_it_only_with_the_last(tmp_path: Path) -> None:
    expiry = (
        "Nov 28 06:00:00 mx postfix/qmgr[1987]: 5C3D4E: from=<bounces@news.example.org>, "
        "status=expired, returned to sender"
    )
    lines = [
        deferred("5C3D4E", "a@legacy.example.net", "01:00:00"),
        deferred("5C3D4E", "b@legacy.example.net", "01:00:01"),
        expiry,
    ]
    path = write(tmp_path / "mail.log", lines)
    got = list(read_postfix_log(path, now=NOW))
    expiry_start = len(lines[0]) + len(lines[1]) + 2
    assert [offset for offset, _ in got[2:]] == [expiry_start, path.stat().st_size]
    again = list(read_postfix_log(path, start_offset=expiry_start, now=NOW))
    assert [r.recipient for _, r in again] == ["a@legacy.example.net", "b@legacy.example.net"]  # type: ignore[union-attr]


def test_a_rotated_compressed_log_is_read_and_dated_by_its_modification_time(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mail.log.2.gz"
    path.write_bytes(gzip.compress((BOUNCED + "\n").encode()))
    january = datetime(2027, 1, 3, tzinfo=UTC).timestamp()
    os.utime(path, (january, january))
    ((_, record),) = list(read_postfix_log(path))
    assert record.at == datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)  # type: ignore[union-attr]


def test_the_shipped_sample_log_reads_without_a_reject() -> None:
    # The samples feed the README's quick start, which must run clean; broken lines are tested
    # above with lines made for the purpose.
    got = [item for _, item in read_postfix_log(EXAMPLES / "postfix-mail.log", now=NOW)]
    rejected = [i for i in got if isinstance(i, Rejected)]
    records = [i for i in got if isinstance(i, LogRecord)]
    assert rejected == []
    assert len(records) >= 80
    statuses = {r.delivery_status for r in records}
    assert statuses == {"sent", "deferred", "bounced", "expired"}
    joined = [r for r in records if r.message_id != r.queue_id]
    assert all(r.message_id.endswith("@news.example.org") for r in joined)  # type: ignore[union-attr]
    # Only the mail queued before this log began (the unreachable destination) has no cleanup line.
    assert {r.recipient.split("@")[1] for r in records if r.message_id == r.queue_id} == {
        "legacy.example.net"
    }


def test_a_naive_now_is_taken_as_utc() -> None:
    naive = datetime(2027, 1, 1, 0, 10)
    december = SENT.replace("Nov 28 03:14:16", "Dec 31 23:59:59")
    assert parse_postfix_line(december, now=naive).at.year == 2026  # type: ignore[union-attr]


#: A log zone east of UTC: a stamp of year 1 without an offset falls before year 1 in UTC.
EAST = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00"]
)
def test_a_time_stamp_that_leaves_the_calendar_in_utc_is_rejected_and_the_lines_around_it_are_read(
    tmp_path: Path, stamp: str
) -> None:
    log = tmp_path / "mail.log"
    bad = BOUNCED.replace("Nov 28 03:14:15", stamp)
    log.write_text(f"{SENT}\n{bad}\n{BOUNCED}\n")
    before, rejected, after = [item for _, item in read_postfix_log(log, now=NOW, tz=EAST)]
    assert isinstance(before, LogRecord)
    assert isinstance(after, LogRecord)
    assert isinstance(rejected, Rejected)
    assert rejected.position == f"byte {len(SENT) + 1}"
    assert "invalid time stamp" in rejected.error
    assert rejected.raw == bad


def test_a_file_of_other_lines_read_as_a_postfix_log_rejects_every_line(tmp_path: Path) -> None:
    # A reply log named with --format postfix: the user must be told, not shown 0 items.
    log = tmp_path / "replies.jsonl"
    log.write_text(
        '{"at": "2026-11-28T03:00:00Z", "recipient": "a@example.com", "reply": "250 OK"}\n'
        "\n"
        '{"at": "2026-11-28T03:00:01Z", "recipient": "b@example.com", "reply": "250 OK"}\n'
    )
    got = [item for _, item in read_postfix_log(log, now=NOW)]
    assert len(got) == 2
    for item in got:
        assert isinstance(item, Rejected)
        assert "not a syslog line" in item.error


def test_journalctl_markers_and_other_programs_lines_are_passed_over(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(
        "-- Logs begin at Fri 2026-11-27 00:00:01 UTC, end at Sat 2026-11-28 12:00:00 UTC. --\n"
        "Nov 28 03:14:14 mx dovecot: imap-login: Login: user=<a@example.com>\n"
        "Nov 28 03:14:14 mx last message repeated 2 times\n"
        f"{BOUNCED}\n"
    )
    (record,) = [item for _, item in read_postfix_log(log, now=NOW)]
    assert isinstance(record, LogRecord)


@pytest.mark.parametrize(
    "glued",
    [SENT, "Nov 28 03:14:16 mx dovecot: imap-login: Login: user=<a@example.com>"],
    ids=["postfix", "other-program"],
)
def test_a_line_glued_after_a_status_text_is_rejected_and_the_line_glued_to_it_is_read(
    tmp_path: Path, glued: str
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(f"{BOUNCED}{glued}\n{TIMED_OUT}\n")
    got = list(read_postfix_log(log, now=NOW))
    first = got[0][1]
    assert isinstance(first, Rejected)
    assert "two log lines run together" in first.error
    assert first.position == "byte 0"
    assert first.raw == BOUNCED
    records = [item for _, item in got[1:]]
    assert all(isinstance(item, LogRecord) for item in records)
    recipients = [item.recipient for item in records]  # type: ignore[union-attr]
    if glued == SENT:
        assert recipients == ["bob@gmail.com", "carol@legacy.example.net"]
        assert records[0].position == f"byte {len(BOUNCED)}"
        assert records[0].raw == SENT  # type: ignore[union-attr]
    else:
        assert recipients == ["carol@legacy.example.net"]
    # The offsets move past the glued line only with its last item.
    assert got[-2][0] == len(BOUNCED) + len(glued) + 1


def test_a_single_glued_line_is_an_ingest_error() -> None:
    with pytest.raises(IngestError, match="two log lines run together"):
        parse_postfix_line(BOUNCED + SENT, now=NOW)
