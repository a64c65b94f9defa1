from __future__ import annotations

import gzip
import os
import re
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from deliverability.errors import IngestError
from deliverability.ingest.files import (
    FileIdentity,
    ReadLimits,
    compression,
    detect_format,
    file_identity,
    partial_last_line,
    read_lines,
    resume_offset,
    same_file,
)
from deliverability.ingest.records import Rejected

LINES = [b"first line\n", b"second line\n", b"third line\n"]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_lines_carry_the_byte_offsets_where_they_start_and_end(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.log", b"".join(LINES))
    lines = list(read_lines(path))
    assert [ln.text for ln in lines] == ["first line", "second line", "third line"]
    assert [(ln.start, ln.end) for ln in lines] == [(0, 11), (11, 23), (23, 34)]
    assert all(ln.problem is None and not ln.bad_utf8 for ln in lines)


def test_reading_from_a_saved_offset_yields_only_the_lines_after_it(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.log", b"".join(LINES))
    first_run = list(read_lines(path))
    resumed = list(read_lines(path, start_offset=first_run[0].end))
    assert [ln.text for ln in resumed] == ["second line", "third line"]
    assert resumed[0].start == 11


def test_gzip_is_recognised_by_its_magic_bytes_and_not_by_its_name(tmp_path: Path) -> None:
    compressed = write(tmp_path / "mail.log.1", gzip.compress(b"".join(LINES)))
    plain_named_gz = write(tmp_path / "mail.log.2.gz", b"".join(LINES))
    assert compression(compressed) == "gzip"
    assert compression(plain_named_gz) is None
    assert [ln.text for ln in read_lines(compressed)] == ["first line", "second line", "third line"]
    assert next(ln.text for ln in read_lines(plain_named_gz)) == "first line"


def test_offsets_in_a_compressed_file_count_decompressed_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.log.3.gz", gzip.compress(b"".join(LINES)))
    lines = list(read_lines(path))
    assert [ln.end for ln in lines] == [11, 23, 34]
    assert [ln.text for ln in read_lines(path, start_offset=23)] == ["third line"]


def test_concatenated_gzip_members_are_read_as_one_file(tmp_path: Path) -> None:
    path = write(tmp_path / "m.gz", gzip.compress(LINES[0]) + gzip.compress(LINES[1]))
    assert [ln.text for ln in read_lines(path)] == ["first line", "second line"]


def test_an_over_long_line_is_a_problem_and_reading_goes_on(tmp_path: Path) -> None:
    path = write(tmp_path / "m.log", b"short\n" + b"x" * 5000 + b"\nafter\n")
    lines = list(read_lines(path, limits=ReadLimits(max_line=1000)))
    assert [ln.text for ln in lines if ln.problem is None] == ["short", "after"]
    long = lines[1]
    assert long.problem is not None
    assert "longer than 1000 bytes" in long.problem
    assert (long.start, long.end) == (6, 6 + 5001)
    assert len(long.text) <= 200


def test_a_line_with_nul_bytes_is_a_problem(tmp_path: Path) -> None:
    path = write(tmp_path / "m.log", b"ok\nbin\x00ary\nok again\n")
    lines = list(read_lines(path))
    assert lines[1].problem is not None
    assert "NUL" in lines[1].problem
    assert lines[2].text == "ok again"


def test_invalid_utf8_is_replaced_and_flagged_for_the_parser_to_judge(tmp_path: Path) -> None:
    path = write(tmp_path / "m.log", b"caf\xe9 au lait\nplain\n")
    bad, good = read_lines(path)
    assert bad.bad_utf8
    assert bad.text == "caf\ufffd au lait"
    assert bad.problem is None
    assert not good.bad_utf8


def test_crlf_line_endings_are_stripped_and_counted_in_the_offsets(tmp_path: Path) -> None:
    path = write(tmp_path / "m.log", b"one\r\ntwo\r\n")
    lines = list(read_lines(path))
    assert [ln.text for ln in lines] == ["one", "two"]
    assert lines[1].end == 10


def test_a_last_line_without_newline_is_read_unless_held_back(tmp_path: Path) -> None:
    path = write(tmp_path / "m.log", b"complete\nhalf writ")
    assert [ln.text for ln in read_lines(path)] == ["complete", "half writ"]
    held = list(read_lines(path, hold_partial_line=True))
    assert [ln.text for ln in held] == ["complete"]
    assert held[-1].end == 9


def test_a_gzip_file_is_complete_so_its_last_line_is_read_even_when_held_back(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "m.log.gz", gzip.compress(b"complete\nlast"))
    assert [ln.text for ln in read_lines(path, hold_partial_line=True)] == ["complete", "last"]
    assert partial_last_line(path) is None


def test_the_start_of_a_half_written_last_line_is_found_only_in_a_plain_file(
    tmp_path: Path,
) -> None:
    assert partial_last_line(write(tmp_path / "a.log", b"one\ntwo")) == 4
    assert partial_last_line(write(tmp_path / "b.log", b"one\ntwo\n")) is None
    assert partial_last_line(write(tmp_path / "c.log", b"half")) == 0
    assert partial_last_line(write(tmp_path / "d.log", b"")) is None
    long_tail = b"x\n" + b"y" * 200_000
    assert partial_last_line(write(tmp_path / "e.log", long_tail)) == 2


def test_a_truncated_gzip_file_gives_its_lines_then_a_problem(tmp_path: Path) -> None:
    data = gzip.compress(b"".join(f"line {i}\n".encode() for i in range(2000)))
    path = write(tmp_path / "cut.gz", data[: len(data) // 2])
    lines = list(read_lines(path))
    assert lines[0].text == "line 0"
    assert lines[-1].problem is not None
    assert "corrupt or truncated" in lines[-1].problem
    assert lines[-1].start == lines[-1].end == lines[-2].end


def test_a_decompression_bomb_stops_at_the_cap_without_reading_the_rest(tmp_path: Path) -> None:
    bomb = gzip.compress(b"".join([b"a" * 99 + b"\n"] * 100_000))  # 10 MB from about 30 kB
    path = write(tmp_path / "bomb.log.gz", bomb)
    lines = list(read_lines(path, limits=ReadLimits(max_decompressed=1_000_000)))
    assert len(lines) == 10_001
    last = lines[-1]
    assert last.problem is not None
    assert "more than 1000000 bytes" in last.problem
    assert last.start == last.end == 1_000_000


def test_a_missing_file_is_an_ingest_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"nowhere\.log"):
        list(read_lines(tmp_path / "nowhere.log"))


def test_a_grown_file_is_the_same_file_and_resumes_at_the_saved_offset(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.log", LINES[0])
    saved = file_identity(path)
    with path.open("ab") as f:
        f.write(LINES[1])
    assert same_file(saved, path)
    assert resume_offset(path, saved, 11) == 11


def test_a_rotated_log_is_found_under_its_new_name_and_the_new_file_starts_at_zero(
    tmp_path: Path,
) -> None:
    path = write(tmp_path / "mail.log", b"".join(LINES))
    saved = file_identity(path)
    path.rename(tmp_path / "mail.log.1")
    write(path, b"Nov 29 00:00:01 a fresh log\n")
    assert resume_offset(path, saved, 34) == 0
    assert resume_offset(tmp_path / "mail.log.1", saved, 34) == 34


def test_a_file_truncated_and_rewritten_in_place_is_read_from_the_start(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.log", b"".join(LINES))
    saved = file_identity(path)
    with path.open("r+b") as f:
        f.truncate(0)
        f.write(b"new content\n")
    assert file_identity(path).inode == saved.inode
    assert not same_file(saved, path)
    assert resume_offset(path, saved, 34) == 0


def test_a_file_cut_shorter_than_the_saved_offset_is_read_from_the_start(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.log", b"".join(LINES) + b"x" * 5000 + b"\n")
    saved = file_identity(path)
    os.truncate(path, 4200)  # same first 4 KiB, but shorter than where the last run stopped
    assert same_file(saved, path)
    assert resume_offset(path, saved, 5000) == 0


BIG_LOG = b"".join(
    f"Nov 28 03:{i // 60:02d}:{i % 60:02d} mx line {i}\n".encode() for i in range(300)
)


def test_a_rotated_log_compressed_into_a_new_file_keeps_its_identity(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.log.1", BIG_LOG)
    saved = file_identity(path)
    compressed = write(tmp_path / "mail.log.2.gz", gzip.compress(path.read_bytes()))
    path.unlink()
    assert same_file(saved, compressed)
    assert resume_offset(compressed, saved, 5000) == 5000


def test_a_log_copied_away_by_copytruncate_keeps_its_identity(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.log", BIG_LOG)
    saved = file_identity(path)
    copy = write(tmp_path / "mail.log.1", path.read_bytes())
    with path.open("r+b") as f:
        f.truncate(0)
    assert same_file(saved, copy)
    assert not same_file(saved, path)


def test_a_young_file_is_not_mistaken_for_another_that_starts_the_same(tmp_path: Path) -> None:
    header = b"at,recipient,message_id,reply\n"
    first = write(tmp_path / "monday.csv", header)
    saved = file_identity(first)
    other = write(
        tmp_path / "tuesday.csv", header + b"2026-11-28T03:00:00Z,a@example.com,m,250 ok\n"
    )
    assert not same_file(saved, other)
    assert resume_offset(other, saved, len(header)) == 0


def test_identity_key_round_trips_and_a_bad_key_is_refused() -> None:
    identity = FileIdentity(2049, 123456, "ab" * 32, 4096, compressed=True)
    assert FileIdentity.from_key(identity.key) == identity
    with pytest.raises(IngestError, match="not a file identity key"):
        FileIdentity.from_key("plain:1:2")


POSTFIX_LINE = (
    "Nov 28 03:14:15 mx postfix/smtp[1234]: 3F1A2B: to=<alice@example.com>, relay=none, "
    "delay=1, delays=0/0/1/0, dsn=4.4.1, status=deferred (connect to mx.example.com: timeout)\n"
)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"at": "2026-11-28T03:00:00Z", "recipient": "a@example.com"}\n', "jsonl"),
        ("\n\n  {broken json on the first line\n", "jsonl"),
        ("at,recipient,message_id,reply\n2026-11-28T03:00:00Z,a@example.com,x,250 ok\n", "csv"),
        ("At,Recipient,Message_ID,Code,Status,Text\n", "csv"),
        (POSTFIX_LINE, "postfix"),
        ("2026-11-28T03:14:15.123456+00:00 mx postfix/qmgr[9]: 3F1A2B: removed\n", "postfix"),
        (
            "Nov 28 03:14:10 mx dovecot: imap-login: Login\n"
            "Nov 28 03:14:15 mx postfix-out/submission/smtpd[77]: connect from x\n",
            "postfix",
        ),
        ("From MAILER-DAEMON Sat Nov 28 03:14:15 2026\nSubject: x\n", "mbox"),
        ("Return-Path: <>\nFrom: MAILER-DAEMON@example.com\n\nbody\n", "eml"),
    ],
)
def test_format_is_detected_from_the_content(tmp_path: Path, content: str, expected: str) -> None:
    path = write(tmp_path / "input.dat", content.encode())
    assert detect_format(path) == expected


def test_a_compressed_postfix_log_is_detected_as_postfix(tmp_path: Path) -> None:
    path = write(tmp_path / "mail.log.4.gz", gzip.compress(POSTFIX_LINE.encode()))
    assert detect_format(path) == "postfix"


def test_a_folder_with_cur_and_new_is_a_maildir(tmp_path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "bounces" / sub).mkdir(parents=True)
    assert detect_format(tmp_path / "bounces") == "maildir"
    with pytest.raises(IngestError, match="not a Maildir"):
        detect_format(tmp_path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data"),
        (b"just some words\nnothing more\n", "cannot tell the format"),
        (b"name,email\nbob,bob@example.com\n", "cannot tell the format"),
    ],
)
def test_undetectable_input_is_an_ingest_error_that_says_why(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = write(tmp_path / "odd.txt", content)
    with pytest.raises(IngestError, match=problem) as info:
        detect_format(path)
    assert "odd.txt" in str(info.value)


# Bytes that make lines interesting: a CR before the LF or alone, invalid UTF-8, multi-byte UTF-8.
LINE_BYTES = [b"a", b"z", b" ", b"\r", b"\xe9", "é".encode(), b"\xff\xfe"]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    lines=st.lists(st.lists(st.sampled_from(LINE_BYTES), max_size=12).map(b"".join)),
    compressed=st.booleans(),
    final_newline=st.booleans(),
)
@example(lines=[b"\r", b""], compressed=False, final_newline=False)  # ends in CRLF anyway
def test_offsets_tile_the_file_and_resuming_at_any_of_them_gives_the_rest(
    tmp_path: Path, lines: list[bytes], compressed: bool, final_newline: bool
) -> None:
    content = b"\n".join(lines) + (b"\n" if final_newline and lines else b"")
    path = tmp_path / "prop.log"
    path.write_bytes(gzip.compress(content) if compressed else content)
    got = list(read_lines(path))
    assert all(a.end == b.start for a, b in pairwise(got))
    assert (got[-1].end if got else 0) == len(content)
    # A line ends at LF, CRLF or a CR alone, and is read without them; what follows the last
    # line end is a line only when there is something there.
    pieces = re.findall(rb"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+\Z", content)
    expected = [re.sub(rb"(?:\r\n|\n|\r)\Z", b"", raw) for raw in pieces]
    assert [ln.text for ln in got] == [raw.decode("utf-8", "replace") for raw in expected]
    for i, line in enumerate(got):
        assert list(read_lines(path, start_offset=line.end)) == got[i + 1 :]


def test_a_rejected_item_keeps_no_nul_bytes_and_at_most_2000_characters_of_raw_text() -> None:
    rejected = Rejected("core.bin", "file", "binary\x00data", "\x7fELF\x00\x00\x01" + "x" * 5000)
    assert "\x00" not in rejected.raw
    assert "\x00" not in rejected.error
    assert rejected.raw.startswith("\x7fELF\\0\\0\x01")
    assert len(rejected.raw) <= 2000 + len("...") + 2


def test_a_gzip_file_cut_before_its_first_line_is_named_as_truncated_not_empty(
    tmp_path: Path,
) -> None:
    data = gzip.compress(b"Nov 28 03:14:15 mx postfix/smtp[1]: A1: to=<a@b.c>, status=sent\n" * 300)
    path = tmp_path / "mail.log.gz"
    # The 10-byte member header (RFC 1952 section 2.3) and nothing of the deflate data.
    path.write_bytes(data[:10])
    with pytest.raises(IngestError, match="truncated or corrupt"):
        detect_format(path)


def test_a_gzip_file_of_nothing_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "mail.log.gz"
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(IngestError, match="the file is empty"):
        detect_format(path)


def test_a_truncated_gzip_postfix_log_is_detected_from_what_decompresses(tmp_path: Path) -> None:
    lines = b"".join(
        b"Nov 28 02:00:%02d mx1 postfix/smtp[8244]: 3558557CB2: to=<u%d@example.com>, "
        b"relay=none, delay=1, dsn=2.0.0, status=sent (250 2.0.0 OK)\n" % (i % 60, i)
        for i in range(200)
    )
    # Cut inside the first 64 KiB of content, the part detection looks at.
    data = gzip.compress(lines)
    path = write(tmp_path / "mail.log.1.gz", data[: len(data) // 2])
    assert detect_format(path) == "postfix"


def test_a_gzip_file_of_several_members_is_detected_past_a_first_small_one(
    tmp_path: Path,
) -> None:
    line = b'{"at": "2026-11-27T22:00:00Z", "recipient": "a@example.com", "reply": "250 ok"}\n'
    path = write(tmp_path / "r.jsonl.gz", gzip.compress(b"\n") + gzip.compress(line))
    assert detect_format(path) == "jsonl"


_BOUNCE = (
    "mx postfix/smtp[1]: AAAAC6: to=<b24@example.com>, relay=x[1.2.3.4]:25, dsn=5.1.1, "
    "status=bounced (host x said: 550 5.1.1 nope)\n"
)


@pytest.mark.parametrize(
    "content",
    [
        "Nov 28 03:14:10 mx dovecot: imap-login: Login: user=<a@example.com>\n" * 25
        + "Nov 28 03:14:15 "
        + _BOUNCE,
        "2026-11-28T03:14:10.123456+00:00 mx opendkim[12]: AAAAC6: DKIM-Signature field added\n"
        * 25
        + "2026-11-28T03:14:15.123456+00:00 "
        + _BOUNCE,
        "Nov  8 03:14:10 mx dovecot[7]: imap(a@example.com): Disconnected\n" * 200
        + "Nov  8 03:14:15 "
        + _BOUNCE,
    ],
    ids=["syslog-dovecot-first", "rfc3339-opendkim-first", "syslog-no-postfix-in-the-head"],
)
def test_a_mail_log_that_starts_with_other_programs_lines_is_a_postfix_log(
    tmp_path: Path, content: str
) -> None:
    path = write(tmp_path / "mail.log", content.encode())
    assert detect_format(path) == "postfix"


def test_a_file_with_cr_only_line_endings_is_read_line_by_line_even_when_held_back(
    tmp_path: Path,
) -> None:
    # Classic Mac OS tools end lines with CR alone: the file is one "line" to a reader that
    # splits at LF, held back for ever as an incomplete last line.
    path = write(tmp_path / "old-mac.log", b"first line\rsecond line\rthird\r")
    got = list(read_lines(path, hold_partial_line=True))
    assert [line.text for line in got] == ["first line", "second line", "third"]
    assert [(line.start, line.end) for line in got] == [(0, 11), (11, 23), (23, 29)]
    assert partial_last_line(path) is None
    # Resuming after the second line gives the third alone.
    assert [line.text for line in read_lines(path, start_offset=23)] == ["third"]


def test_a_half_written_last_line_after_cr_line_endings_is_held_back(tmp_path: Path) -> None:
    path = write(tmp_path / "old-mac.log", b"first line\rsecond, still being wri")
    got = list(read_lines(path, hold_partial_line=True))
    assert [line.text for line in got] == ["first line"]
    assert partial_last_line(path) == 11
