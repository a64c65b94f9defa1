from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deliverability.errors import IngestError
from deliverability.ingest.files import ReadLimits
from deliverability.ingest.mailer_log import parse_mailer_row, read_mailer_log
from deliverability.ingest.records import LogRecord, Rejected
from deliverability.replies import StatusCode

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

GOOD = {
    "at": "2026-11-28T03:14:15Z",
    "recipient": "Alice@Example.com",
    "message_id": "<20261128031415.4711@news.example.org>",
    "attempt": 2,
    "reply": "550 5.1.1 <alice@example.com>: Recipient address rejected: User unknown",
}


def jsonl(tmp_path: Path, *rows: object, name: str = "replies.jsonl") -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def items(path: Path, **kwargs: object) -> list[LogRecord | Rejected]:
    return [item for _, item in read_mailer_log(path, **kwargs)]  # type: ignore[arg-type]


def test_a_row_with_a_raw_reply_becomes_a_record_with_the_parsed_reply() -> None:
    record = parse_mailer_row(GOOD, "replies.jsonl", "byte 0")
    assert record.at == datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)
    assert record.recipient == "Alice@Example.com"
    assert record.message_id == "20261128031415.4711@news.example.org"
    assert record.attempt == 2
    assert record.reply.code == 550
    assert record.reply.status == StatusCode(5, 1, 1)
    assert "User unknown" in record.reply.text


def test_a_row_with_code_status_and_text_columns_becomes_a_reply() -> None:
    row = {k: v for k, v in GOOD.items() if k != "reply"}
    row |= {"code": "421", "status": "4.7.28", "text": "Our system has detected an unusual rate"}
    reply = parse_mailer_row(row, "r.csv", "byte 10").reply
    assert (reply.code, str(reply.status)) == (421, "4.7.28")
    assert reply.text == "Our system has detected an unusual rate"


def test_a_status_alone_is_enough_for_a_reply() -> None:
    row = {"at": GOOD["at"], "recipient": "a@example.com", "message_id": "m1", "status": "4.2.2"}
    reply = parse_mailer_row(row, "r.jsonl", "byte 0").reply
    assert reply.code is None
    assert reply.status == StatusCode(4, 2, 2)


def test_attempt_is_optional_and_a_time_without_zone_is_utc() -> None:
    row = {k: v for k, v in GOOD.items() if k != "attempt"} | {"at": "2026-11-28 03:14:15"}
    record = parse_mailer_row(row, "r.jsonl", "byte 0")
    assert record.attempt is None
    assert record.at.tzinfo is not None
    assert record.at.utcoffset() is not None


def test_a_time_with_an_offset_is_converted_to_utc() -> None:
    record = parse_mailer_row(GOOD | {"at": "2026-11-28T04:14:15+01:00"}, "r", "byte 0")
    assert record.at == datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"at": None}, "missing field 'at'"),
        ({"at": "yesterday"}, "field 'at'"),
        ({"at": 1764299655}, "field 'at' must be a string"),
        ({"recipient": ""}, "missing field 'recipient'"),
        ({"recipient": "not-an-address"}, "field 'recipient'"),
        ({"recipient": "al\ufffdce@example.com"}, "field 'recipient' is not valid UTF-8"),
        ({"message_id": None}, "missing field 'message_id'"),
        ({"attempt": 0}, "field 'attempt' must be 1 or more"),
        ({"attempt": "twice"}, "field 'attempt' must be a whole number"),
        ({"attempt": True}, "field 'attempt' must be a whole number"),
        ({"reply": "no code here at all"}, "field 'reply'"),
        ({"reply": 550}, "field 'reply' must be a string"),
        ({"reply": None}, "missing field 'reply'"),
    ],
)
def test_a_bad_row_is_an_ingest_error_naming_the_field(
    change: dict[str, object], named: str
) -> None:
    row = {k: v for k, v in (GOOD | change).items() if v is not None}
    with pytest.raises(IngestError, match=named.replace("(", r"\(")) as info:
        parse_mailer_row(row, "replies.jsonl", "byte 42")
    assert str(info.value).startswith("replies.jsonl:byte 42: ")


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        ({"code": "55", "text": "x"}, "field 'code' 55 is not an SMTP reply code"),
        ({"code": "abc"}, "field 'code' must be a reply code"),
        ({"status": "9.9.9"}, "field 'status'"),
        ({"code": "", "status": "", "text": "only text"}, "missing field 'reply'"),
    ],
)
def test_bad_code_or_status_columns_are_named(columns: dict[str, str], named: str) -> None:
    row = {k: v for k, v in GOOD.items() if k != "reply"} | columns
    with pytest.raises(IngestError, match=named):
        parse_mailer_row(row, "r.csv", "byte 1")


def test_jsonl_entries_come_with_the_offset_after_them_and_bad_lines_are_rejected(
    tmp_path: Path,
) -> None:
    path = jsonl(tmp_path, GOOD, "{not json", "[1, 2]", "", GOOD | {"attempt": "x"}, GOOD)
    got = list(read_mailer_log(path))
    kinds = [type(item).__name__ for _, item in got]
    assert kinds == ["LogRecord", "Rejected", "Rejected", "Rejected", "LogRecord"]
    offsets = [offset for offset, _ in got]
    assert offsets == sorted(offsets)
    assert offsets[-1] == path.stat().st_size
    broken = got[1][1]
    assert isinstance(broken, Rejected)
    assert broken.source == str(path)
    assert broken.error.startswith("broken JSON")
    assert broken.raw == "{not json"
    assert "expected a JSON object" in got[2][1].error  # type: ignore[union-attr]
    assert "attempt" in got[3][1].error  # type: ignore[union-attr]


def test_a_record_keeps_its_raw_line_and_byte_position(tmp_path: Path) -> None:
    path = jsonl(tmp_path, GOOD, GOOD | {"recipient": "bob@example.net"})
    first, second = items(path)
    assert isinstance(second, LogRecord)
    assert second.position == f"byte {len(json.dumps(GOOD)) + 1}"
    assert json.loads(second.raw)["recipient"] == "bob@example.net"
    assert first.position == "byte 0"


def test_reading_resumes_from_the_offset_after_the_last_item(tmp_path: Path) -> None:
    rows = [GOOD | {"recipient": f"user{i}@example.com"} for i in range(5)]
    path = jsonl(tmp_path, *rows)
    first_run = list(read_mailer_log(path))
    checkpoint = first_run[2][0]
    resumed = [item for _, item in read_mailer_log(path, start_offset=checkpoint)]
    assert [r.recipient for r in resumed] == ["user3@example.com", "user4@example.com"]  # type: ignore[union-attr]
    assert resumed[0].position == first_run[3][1].position


def test_invalid_utf8_in_the_reply_text_is_kept_but_in_an_essential_field_is_rejected(
    tmp_path: Path,
) -> None:
    ok = json.dumps(GOOD | {"reply": "550 5.7.1 Zugriff verweigert: XX"}).encode()
    ok = ok.replace(b"XX", b"\xfc")
    bad = json.dumps(GOOD | {"recipient": "jXX@example.com"}).encode().replace(b"XX", b"\xfc")
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(ok + b"\n" + bad + b"\n")
    kept, rejected = items(path)
    assert isinstance(kept, LogRecord)
    assert kept.reply.code == 550
    assert isinstance(rejected, Rejected)
    assert "'recipient' is not valid UTF-8" in rejected.error


def test_nul_bytes_and_over_long_lines_are_rejected_and_reading_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    good = json.dumps(GOOD).encode()
    path.write_bytes(good + b"\n\x00\x00\x00\n" + b'{"a": "' + b"x" * 3000 + b'"}\n' + good + b"\n")
    got = items(path, limits=ReadLimits(max_line=1000))
    assert [type(i).__name__ for i in got] == ["LogRecord", "Rejected", "Rejected", "LogRecord"]
    assert "NUL" in got[1].error  # type: ignore[union-attr]
    assert "longer than 1000 bytes" in got[2].error  # type: ignore[union-attr]


def test_a_gzip_compressed_reply_log_is_read(tmp_path: Path) -> None:
    path = tmp_path / "replies.jsonl.1"
    path.write_bytes(gzip.compress((json.dumps(GOOD) + "\n").encode()))
    (record,) = items(path)
    assert isinstance(record, LogRecord)


CSV_TEXT = (
    "at,recipient,message_id,attempt,code,status,text\n"
    "2026-11-28T03:00:00Z,bob@example.net,<m1@news.example.org>,1,250,2.0.0,OK\n"
    '2026-11-28T03:00:01Z,carol@gmail.com,<m2@news.example.org>,1,550,5.1.1,"The email account'
    ' that you tried to reach does not exist, please check"\n'
    "2026-11-28T03:00:02Z,dave@example.com,<m3@news.example.org>,1,250\n"
    '2026-11-28T03:00:03Z,erin@yahoo.com,<m4@news.example.org>,1,421,4.7.0,"[TSS04] Messages'
    ' from 192.0.2.10 temporarily deferred\nsecond line of the reply"\n'
    "at,recipient,message_id,attempt,code,status,text\n"
    "2026-11-28T03:00:04Z,frank@example.org,<m5@news.example.org>,,451,4.7.1,Greylisted\n"
)


def test_csv_rows_are_read_by_column_name_and_a_wrong_column_count_is_rejected(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replies.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    got = items(path)
    assert [type(i).__name__ for i in got] == [
        "LogRecord",
        "LogRecord",
        "Rejected",
        "LogRecord",
        "LogRecord",
    ]
    assert got[1].reply.text.startswith("The email account that you tried")  # type: ignore[union-attr]
    assert got[2].error == "expected 7 CSV columns, found 5"  # type: ignore[union-attr]
    tss04 = got[3]
    assert isinstance(tss04, LogRecord)
    assert (
        tss04.reply.text
        == "[TSS04] Messages from 192.0.2.10 temporarily deferred second line of the reply"
    )
    assert got[4].attempt is None  # type: ignore[union-attr]


def test_csv_reading_resumes_after_a_checkpoint_without_rereading_the_header(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replies.csv"
    path.write_text(CSV_TEXT, encoding="utf-8")
    first_run = list(read_mailer_log(path))
    resumed = [item for _, item in read_mailer_log(path, start_offset=first_run[1][0])]
    assert [i.position for i in resumed] == [i.position for _, i in first_run[2:]]


def test_a_csv_without_the_needed_columns_is_rejected_once(tmp_path: Path) -> None:
    path = tmp_path / "replies.csv"
    path.write_text("at,recipient,code\n2026-11-28T03:00:00Z,a@example.com,250\n")
    (item,) = items(path, format="csv")
    assert isinstance(item, Rejected)
    assert "lacks column(s): message_id" in item.error


def test_a_file_that_is_not_a_reply_log_is_an_ingest_error(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    path.write_text(
        "Nov 28 03:14:15 mx postfix/smtp[1]: 3F1A2B: to=<a@example.com>, dsn=2.0.0, status=sent\n"
    )
    with pytest.raises(IngestError, match="not a mailer reply log"):
        items(path)


def test_the_shipped_sample_reply_log_reads_without_a_reject() -> None:
    path = EXAMPLES / "mailer-replies.jsonl"
    got = items(path)
    records = [i for i in got if isinstance(i, LogRecord)]
    rejected = [i for i in got if isinstance(i, Rejected)]
    assert 300 <= len(got) <= 520
    # The samples feed the README's quick start, which must run clean.
    assert rejected == []
    codes = {r.reply.code for r in records}
    assert {250, 550, 421, 450, 451, 552} <= codes
    assert any("TSS04" in r.reply.text for r in records)


def test_a_byte_order_mark_at_the_start_of_the_file_is_ignored(tmp_path: Path) -> None:
    csv_path = tmp_path / "excel.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + CSV_TEXT.encode())
    assert isinstance(items(csv_path)[0], LogRecord)
    jsonl_path = tmp_path / "notepad.jsonl"
    jsonl_path.write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD).encode() + b"\n")
    assert isinstance(items(jsonl_path)[0], LogRecord)


def test_a_stray_quote_inside_an_unquoted_csv_field_does_not_swallow_the_next_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replies.csv"
    path.write_text(
        "at,recipient,message_id,reply\n"
        '2026-11-28T03:00:00Z,a@example.com,m1,550 5.7.1 attachment 5" floppy refused\n'
        "2026-11-28T03:00:01Z,b@example.com,m2,250 2.0.0 OK\n"
    )
    first, second = items(path)
    assert isinstance(first, LogRecord)
    assert first.reply.text == 'attachment 5" floppy refused'
    assert isinstance(second, LogRecord)


def test_an_unclosed_quoted_csv_field_at_the_end_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "replies.csv"
    path.write_text(
        "at,recipient,message_id,reply\n"
        '2026-11-28T03:00:00Z,a@example.com,m1,"550 5.1.1 no such user\n'
        "and the writer was killed here\n"
    )
    item, rest = items(path)
    assert isinstance(item, Rejected)
    assert item.position == "byte 30"
    assert "not closed" in item.error
    # The line after it is read on its own: here it is no row either.
    assert isinstance(rest, Rejected)
    assert rest.raw == "and the writer was killed here"


def _around(tmp_path: Path, bad: str) -> list[LogRecord | Rejected]:
    """The items of a JSON Lines log with `bad` between two good lines."""
    before = GOOD | {"recipient": "before@example.com"}
    after = GOOD | {"recipient": "after@example.com"}
    return items(jsonl(tmp_path, before, bad, after))


def test_a_reply_code_of_thousands_of_digits_is_rejected_naming_the_field(
    tmp_path: Path,
) -> None:
    # Python refuses to turn more than 4,300 digits into an int (sys.get_int_max_str_digits).
    bad = json.dumps({k: v for k, v in GOOD.items() if k != "reply"})[:-1]
    before, rejected, after = _around(tmp_path, bad + ', "code": ' + "9" * 5000 + "}")
    assert isinstance(before, LogRecord)
    assert isinstance(after, LogRecord)
    assert isinstance(rejected, Rejected)
    assert rejected.position.startswith("byte ")
    assert "field 'code'" in rejected.error
    assert "5000 digits" in rejected.error
    assert len(rejected.error) < 200


def test_an_attempt_of_thousands_of_digits_is_rejected_naming_the_field(tmp_path: Path) -> None:
    bad = json.dumps(GOOD)[:-1] + ', "attempt": ' + "1" * 5000 + "}"
    _, rejected, after = _around(tmp_path, bad.replace('"attempt": 2, ', ""))
    assert isinstance(rejected, Rejected)
    assert "field 'attempt'" in rejected.error
    assert isinstance(after, LogRecord)


def test_an_attempt_beyond_what_the_store_can_hold_is_rejected_naming_the_field(
    tmp_path: Path,
) -> None:
    _, rejected, after = _around(tmp_path, json.dumps(GOOD | {"attempt": "9223372036854775808"}))
    assert isinstance(rejected, Rejected)
    assert "field 'attempt'" in rejected.error
    assert isinstance(after, LogRecord)


def test_json_nested_a_hundred_thousand_deep_is_rejected_and_the_lines_around_it_are_read(
    tmp_path: Path,
) -> None:
    bad = json.dumps(GOOD)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    before, rejected, after = _around(tmp_path, bad)
    assert isinstance(before, LogRecord)
    assert isinstance(after, LogRecord)
    assert isinstance(rejected, Rejected)
    assert "nested too deep" in rejected.error


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_time_that_leaves_the_calendar_in_utc_is_rejected_naming_the_field(
    tmp_path: Path, at: str
) -> None:
    _, rejected, after = _around(tmp_path, json.dumps(GOOD | {"at": at}))
    assert isinstance(rejected, Rejected)
    assert "field 'at'" in rejected.error
    assert isinstance(after, LogRecord)


def test_a_stray_quote_opening_a_field_rejects_that_line_alone_and_the_next_rows_are_read(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replies.csv"
    header = "at,recipient,message_id,attempt,code,status,text\n"
    stray = '2026-11-28T02:00:10Z,"a@example.com,<m0@x>,1,550,5.1.1,User unknown\n'
    good = [
        f"2026-11-28T02:00:{n % 60:02d}Z,u{n}@example.com,<m{n}@x>,1,250,2.0.0,OK\n"
        for n in range(1, 60)
    ]
    path.write_text(header + stray + "".join(good))
    found = items(path)
    rejected = [item for item in found if isinstance(item, Rejected)]
    assert len(rejected) == 1
    assert rejected[0].position == f"byte {len(header)}"
    assert rejected[0].raw == stray.rstrip("\n")
    assert "not closed" in rejected[0].error
    assert [item.recipient for item in found if isinstance(item, LogRecord)] == [
        f"u{n}@example.com" for n in range(1, 60)
    ]


def test_a_multi_line_quoted_reply_is_still_one_csv_row(tmp_path: Path) -> None:
    path = tmp_path / "replies.csv"
    path.write_text(
        "at,recipient,message_id,reply\n"
        '2026-11-28T03:00:00Z,a@example.com,m1,"550-5.1.1 The email account does not exist.\n'
        '550 5.1.1 Please try again."\n'
        "2026-11-28T03:00:01Z,b@example.com,m2,250 2.0.0 OK\n"
    )
    first, second = items(path)
    assert isinstance(first, LogRecord)
    assert isinstance(second, LogRecord)
    assert first.reply.code == 550
    assert "Please try again" in first.reply.text


def test_quotes_pairing_across_rows_reject_the_first_row_alone_and_read_the_rest(
    tmp_path: Path,
) -> None:
    # Two stray quotes three rows apart make one "row" of the wrong width out of four lines.
    path = tmp_path / "replies.csv"
    path.write_text(
        "at,recipient,message_id,reply\n"
        '2026-11-28T03:00:00Z,"a@example.com,m1,550 5.1.1 unknown\n'
        "2026-11-28T03:00:01Z,b@example.com,m2,250 2.0.0 OK\n"
        "2026-11-28T03:00:02Z,c@example.com,m3,250 2.0.0 OK\n"
        '2026-11-28T03:00:03Z,d@example.com",m4,250 2.0.0 OK\n'
        "2026-11-28T03:00:04Z,e@example.com,m5,250 2.0.0 OK\n"
    )
    found = items(path)
    assert [type(item).__name__ for item in found] == [
        "Rejected",
        "LogRecord",
        "LogRecord",
        "Rejected",
        "LogRecord",
    ]


def test_a_csv_file_that_starts_with_a_blank_line_is_read(tmp_path: Path) -> None:
    path = tmp_path / "replies.csv"
    path.write_text(
        "\n\r\n  \nat,recipient,message_id,reply\n2026-11-28T03:00:00Z,a@example.com,m1,250 OK\n"
    )
    (record,) = items(path)
    assert isinstance(record, LogRecord)
    assert record.recipient == "a@example.com"
    # Resuming after the row finds the header past the blank lines again.
    assert items(path, start_offset=path.stat().st_size) == []


def test_an_unreadable_line_inside_an_open_quoted_field_loses_neither_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "replies.csv"
    path.write_bytes(
        b"at,recipient,message_id,reply\n"
        b'2026-11-28T03:00:00Z,a@example.com,m1,"550 5.1.1 no such user\n'
        b"\x00\x00\x00\n"
        b"2026-11-28T03:00:01Z,b@example.com,m2,250 2.0.0 OK\n"
    )
    opened, nul, good = items(path)
    assert isinstance(opened, Rejected)
    assert "not closed before an unreadable line" in opened.error
    assert isinstance(nul, Rejected)
    assert "NUL" in nul.error
    assert isinstance(good, LogRecord)


@pytest.mark.parametrize("field", ["reply", "text"])
def test_a_lone_surrogate_in_a_reply_field_is_rejected_naming_the_field(
    tmp_path: Path, field: str
) -> None:
    # A JSON "\udc00" escape is no Unicode text: the "text" field's was refused by the database
    # with a codec message that named no field.
    fields = {k: v for k, v in GOOD.items() if k != "reply"}
    if field == "reply":
        fields["reply"] = "550 5.1.1 no such user\udc00"
    else:
        fields |= {"code": 550, "status": "5.1.1", "text": "no such user\udc00"}
    before, rejected, after = _around(tmp_path, json.dumps(fields))
    assert isinstance(before, LogRecord)
    assert isinstance(after, LogRecord)
    assert isinstance(rejected, Rejected)
    assert f"field '{field}'" in rejected.error
    assert "not valid Unicode" in rejected.error


def test_an_attempt_in_digits_of_another_script_is_rejected_naming_the_field(
    tmp_path: Path,
) -> None:
    # int() reads any script's digits: "\u0661\u0662" (Arabic-Indic) was taken for 12.
    _, rejected, after = _around(tmp_path, json.dumps(GOOD | {"attempt": "\u0661\u0662"}))
    assert isinstance(rejected, Rejected)
    assert "field 'attempt'" in rejected.error
    assert isinstance(after, LogRecord)
