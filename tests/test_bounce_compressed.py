"""Compressed mailboxes: mbox files and Maildir message files in gzip, bzip2 or xz.

Dovecot's zlib (mail_compress) plugin stores Maildir messages compressed with any of them, and
logrotate compresses a rotated mbox with whichever its configuration names. zstd and lz4 need
packages outside Python's standard library: they are refused with the format and what to do.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deliverability.engine import Engine as DeliverabilityEngine
from deliverability.errors import IngestError
from deliverability.ingest.files import ReadLimits, detect_format, read_lines
from deliverability.ingest.messages import (
    iter_maildir,
    iter_mbox,
    mbox_last_message_unterminated,
    parse_message,
    starts_mbox_message,
)
from deliverability.nightly import run_nightly

Compress = Callable[[bytes], bytes]
READABLE: dict[str, Compress] = {"gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress}
# Frame headers as the formats' specifications give them (RFC 8878 section 3.1.1 for zstd; the
# LZ4 frame format's magic number), then bytes of no importance: the reader stops at the magic.
UNREADABLE = {
    "zstd": b"\x28\xb5\x2f\xfd\x24\x00\x01\x00\x00" + b"\x00" * 32,
    "lz4": b"\x04\x22\x4d\x18\x64\x40\xa7" + b"\x00" * 32,
}


def _dsn(rcpt: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.org\n"
        "To: bounces@sender.example\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThe mail system.\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.org\n\n"
        f"Final-Recipient: rfc822; {rcpt}\nAction: failed\nStatus: 5.1.1\n\n--B--\n"
    ).encode()


MESSAGES = [_dsn(f"m{i}@example.com") for i in range(1, 4)]


def _mbox(messages: list[bytes]) -> bytes:
    return b"".join(b"From MAILER-DAEMON Sat Nov 28 03:14:15 2026\n" + m + b"\n" for m in messages)


@pytest.mark.parametrize("fmt", sorted(READABLE))
def test_a_compressed_mbox_is_detected_and_read_whole_its_last_message_too(
    tmp_path: Path, fmt: str
) -> None:
    box = tmp_path / f"bounces.mbox.1.{fmt}"
    # Complete by nature: its last message is read without the empty line that ends it.
    box.write_bytes(READABLE[fmt](_mbox(MESSAGES)[:-1]))
    assert detect_format(box) == "mbox"
    got = list(iter_mbox(box))
    assert [data for _, data in got] == MESSAGES
    assert not mbox_last_message_unterminated(box)
    # Keys count decompressed bytes: an earlier read's key is where a later read can start.
    second = got[1][0]
    assert starts_mbox_message(box, int(second))
    assert [data for _, data in iter_mbox(box, start_offset=int(second))] == MESSAGES[1:]


@pytest.mark.parametrize("fmt", sorted(READABLE))
def test_a_compressed_mbox_cut_short_gives_its_messages_before_the_cut_and_reports_the_cut(
    tmp_path: Path, fmt: str
) -> None:
    # 2 MB: bzip2 decodes whole blocks of 900 kB, so a cut loses the block it falls in.
    many = [_dsn(f"n{i}@example.com") + f"X-Pad: {i * 7919:x}\n".encode() for i in range(5000)]
    data = READABLE[fmt](_mbox(many))
    box = tmp_path / f"bounces.mbox.2.{fmt}"
    box.write_bytes(data[: len(data) * 3 // 4])
    # Its format is told from what comes before the cut, as a whole file's is.
    assert detect_format(box) == "mbox"
    problems: list[tuple[str, str]] = []
    got = list(iter_mbox(box, unreadable=lambda key, why: problems.append((key, why))))
    assert got
    assert [data for _, data in got] == many[: len(got)]
    [(_, why)] = problems
    assert "compressed data is corrupt or cut short" in why


@pytest.mark.parametrize("fmt", ["bzip2", "xz"])
def test_a_compressed_mbox_message_over_the_limit_is_read_past_and_never_held(
    tmp_path: Path, fmt: str
) -> None:
    huge = b"Subject: a big file\n\n" + b"A" * (20 * 1024**2) + b"\n"
    box = tmp_path / f"bounces.mbox.{fmt}"
    box.write_bytes(READABLE[fmt](_mbox([MESSAGES[0], huge, MESSAGES[1]])))
    problems: list[tuple[str, str]] = []
    tracemalloc.start()
    got = list(
        iter_mbox(box, unreadable=lambda key, why: problems.append((key, why)), max_message=1024**2)
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert [data for _, data in got] == MESSAGES[:2]
    [(_, why)] = problems
    assert why.startswith(f"the message is {len(huge) + 1} bytes, over the limit of {1024**2}")
    # An xz decoder holds the stream's dictionary, whatever the message's size: 8 MiB at xz's
    # default preset (6), which the writer chose.
    assert peak < 4 * 1024**2 + (8 * 1024**2 if fmt == "xz" else 0)


def _maildir(root: Path, files: dict[str, bytes]) -> None:
    for sub in ("new", "cur", "tmp"):
        (root / sub).mkdir()
    for name, data in files.items():
        (root / name).write_bytes(data)


@pytest.mark.parametrize("fmt", ["bzip2", "xz"])
def test_a_compressed_maildir_message_is_read_and_a_bad_one_reported(
    tmp_path: Path, fmt: str
) -> None:
    # Dovecot's zlib plugin (zlib_save = bz2 or xz) compresses each message file; read as they
    # were, every one was binary data, not a message. One cut short, or one that expands past
    # the limit (a decompression bomb), is reported and the rest read.
    compress = READABLE[fmt]
    _maildir(
        tmp_path,
        {
            "cur/1.M1.host:2,S": compress(MESSAGES[0]),
            "cur/2.M2.host:2,S": compress(MESSAGES[1])[:-30],
            "cur/3.M3.host:2,S": compress(b"Subject: x\n\n" + b"A" * 100_000),
            "new/4.M4.host": MESSAGES[2],
        },
    )
    problems: list[tuple[str, str]] = []
    got = dict(
        iter_maildir(
            tmp_path, unreadable=lambda k, why: problems.append((k, why)), max_message=50_000
        )
    )
    assert got == {"1.M1.host": MESSAGES[0], "4.M4.host": MESSAGES[2]}
    assert problems == [
        ("2.M2.host", f"the message file cur/2.M2.host:2,S is {fmt} data cut short; not read"),
        (
            "3.M3.host",
            "the message file cur/3.M3.host:2,S decompresses to more than 50000 bytes, the "
            "limit for one message",
        ),
    ]
    assert [r.recipient for r in parse_message(got["1.M1.host"])] == ["m1@example.com"]


@pytest.mark.parametrize("fmt", ["bzip2", "xz"])
def test_a_corrupt_compressed_maildir_message_is_reported(tmp_path: Path, fmt: str) -> None:
    data = bytearray(READABLE[fmt](MESSAGES[0]))
    data[len(data) // 2 : len(data) // 2 + 8] = b"\xff" * 8
    _maildir(tmp_path, {"cur/1.M1.host:2,S": bytes(data)})
    problems: list[tuple[str, str]] = []
    got = list(iter_maildir(tmp_path, unreadable=lambda k, why: problems.append((k, why))))
    assert got == []
    [(key, why)] = problems
    assert key == "1.M1.host"
    assert why.startswith(f"the message file cur/1.M1.host:2,S is {fmt} data that is corrupt")


@pytest.mark.parametrize("fmt", sorted(UNREADABLE))
def test_a_zstd_or_lz4_mbox_is_refused_naming_the_format_and_what_to_do(
    tmp_path: Path, fmt: str
) -> None:
    box = tmp_path / f"bounces.mbox.{fmt}"
    box.write_bytes(UNREADABLE[fmt])
    with pytest.raises(IngestError) as caught:
        detect_format(box)
    problem = caught.value.problem
    assert f"{fmt}-compressed" in problem
    assert f"{fmt} -d" in problem
    with pytest.raises(IngestError, match=f"{fmt}-compressed"):
        list(iter_mbox(box))


@pytest.mark.parametrize("fmt", sorted(UNREADABLE))
def test_a_zstd_or_lz4_maildir_message_is_refused_naming_the_format_and_the_rest_read(
    tmp_path: Path, fmt: str
) -> None:
    _maildir(tmp_path, {"cur/1.M1.host:2,S": UNREADABLE[fmt], "new/2.M2.host": MESSAGES[0]})
    problems: list[tuple[str, str]] = []
    got = list(iter_maildir(tmp_path, unreadable=lambda k, why: problems.append((k, why))))
    assert got == [("2.M2.host", MESSAGES[0])]
    [(key, why)] = problems
    assert key == "1.M1.host"
    assert f"is {fmt}-compressed" in why
    assert "gz, bz2 or xz" in why


def test_the_nightly_job_records_bzip2_and_xz_mailboxes_and_rejects_a_zstd_one_by_name(
    db_url: str, tmp_path: Path
) -> None:
    now = datetime(2026, 11, 29, 6, 0, tzinfo=UTC)
    folder = tmp_path / "bounces"
    folder.mkdir()
    (folder / "bounces.mbox.1.bz2").write_bytes(bz2.compress(_mbox(MESSAGES[:2])))
    (folder / "bounces.mbox.2.xz").write_bytes(lzma.compress(_mbox(MESSAGES[2:])))
    (folder / "bounces.mbox.3.zst").write_bytes(UNREADABLE["zstd"])
    engine = DeliverabilityEngine(db_url, clock=lambda: now)
    try:
        summary = run_nightly(engine, [folder], now=now)
        again = run_nightly(engine, [folder], now=now)
    finally:
        engine.close()
    assert summary.recorded == 3
    [bad] = summary.rejected
    assert bad.source == str(folder / "bounces.mbox.3.zst")
    assert "zstd-compressed" in bad.error
    assert again.recorded == 0


@pytest.mark.parametrize("fmt", sorted(READABLE))
def test_a_compressed_log_is_read_under_the_same_cap_as_a_gzip_one(
    tmp_path: Path, fmt: str
) -> None:
    # Mailboxes and logs are opened by one function (files.open_binary): the bzip2 and xz a
    # mailbox may be in are read for a log too, complete (its last line read without its
    # newline) and capped in what it may expand to.
    log = tmp_path / f"mail.log.1.{fmt}"
    lines = [f"line {i}" for i in range(1000)]
    log.write_bytes(READABLE[fmt]("\n".join(lines).encode()))
    assert [line.text for line in read_lines(log, hold_partial_line=True)] == lines
    *_, over = read_lines(log, limits=ReadLimits(max_decompressed=5000))
    assert over.problem is not None
    assert over.problem.startswith("decompresses to more than 5000 bytes")


@pytest.mark.parametrize("fmt", ["gzip", "xz"])
def test_a_small_compressed_mbox_cut_short_is_still_told_an_mbox_by_what_precedes_the_cut(
    tmp_path: Path, fmt: str
) -> None:
    # Under the 64 KiB format detection reads, the cut falls inside what it decompresses: the
    # format is told from what comes before it (bzip2 gives nothing of a block it cuts).
    many = [_dsn(f"n{i}@example.com") for i in range(40)]
    data = READABLE[fmt](_mbox(many))
    box = tmp_path / f"bounces.mbox.3.{fmt}"
    box.write_bytes(data[: len(data) * 3 // 4])
    assert detect_format(box) == "mbox"
    got = list(iter_mbox(box, unreadable=lambda key, why: None))
    assert got
    assert [data for _, data in got] == many[: len(got)]
