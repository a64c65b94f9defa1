"""The nightly job: idempotent, resumable, and it never loses good input to a bad item."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from conftest import FakeClock
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.orm import Session

from deliverability import reports
from deliverability.cli import cli
from deliverability.engine import Engine as DeliverabilityEngine
from deliverability.errors import ConfigError, IngestError
from deliverability.ingest import messages
from deliverability.ingest.convert import message_date, message_items, parse_verp_template
from deliverability.ingest.messages import iter_mbox
from deliverability.nightly import run_nightly
from deliverability.policy import load_policy
from deliverability.store.models import (
    Action,
    Delivery,
    Event,
    IngestedMessage,
    IngestSource,
    Recipient,
    RejectedInput,
)
from deliverability.vocabulary import DeliveryState, EventKind, Fault, Outcome, Reason, Standing

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


def _counts(sa_engine: Engine) -> dict[str, int]:
    with Session(sa_engine) as s:
        return {
            "events": s.scalar(select(func.count(Event.id))) or 0,
            "actions": s.scalar(select(func.count(Action.id))) or 0,
            "messages": s.scalar(select(func.count(IngestedMessage.id))) or 0,
            "rejected": s.scalar(select(func.count(RejectedInput.id))) or 0,
        }


def _write_log(path: Path, lines: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _line(n: int, reply: str = "250 2.0.0 OK", domain: str = "example.com") -> dict[str, object]:
    return {
        "at": f"2026-11-27T22:{n // 60 % 60:02d}:{n % 60:02d}Z",
        "recipient": f"user{n}@{domain}",
        "message_id": f"m{n}@lists.example.org",
        "reply": reply,
    }


@pytest.fixture
def engine(db_url: str) -> DeliverabilityEngine:
    eng = DeliverabilityEngine(db_url, clock=lambda: NOW)
    yield eng
    eng.close()


def test_running_the_job_twice_over_the_same_inputs_changes_nothing_the_second_time(
    engine: DeliverabilityEngine,
) -> None:
    first = run_nightly(engine, [EXAMPLES], now=NOW)
    after_first = _counts(engine.db)
    second = run_nightly(engine, [EXAMPLES], now=NOW)
    assert first.recorded > 0
    assert second.recorded == 0
    assert _counts(engine.db) == after_first


def test_the_shipped_samples_record_replies_bounces_complaints_and_auto_replies(
    engine: DeliverabilityEngine,
) -> None:
    summary = run_nightly(engine, [EXAMPLES], now=NOW)
    assert summary.rejected_count == 0, summary.rejected
    with Session(engine.db) as s:
        kinds = {k for (k,) in s.execute(select(Event.kind).distinct())}
    assert {EventKind.REPLY, EventKind.BOUNCE, EventKind.COMPLAINT, EventKind.AUTO_REPLY} <= kinds
    assert summary.by_outcome["bounced"] > 0
    assert summary.by_outcome["complained"] >= 1


def test_a_log_that_grew_is_read_from_where_the_last_run_stopped(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    log = tmp_path / "replies.jsonl"
    _write_log(log, [_line(n) for n in range(10)])
    run_nightly(engine, [log], now=NOW)
    with log.open("a") as f:
        f.write(json.dumps(_line(10)) + "\n")
    summary = run_nightly(engine, [log], now=NOW)
    assert summary.sources[0].items == 1
    assert summary.recorded == 1


def _mbox_offsets(path: Path) -> list[int]:
    """Where each message of an mbox begins: the keys `iter_mbox` gives them."""
    return [int(key) for key, _ in iter_mbox(path)]


def test_an_mbox_that_grew_is_read_from_its_last_message_on(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    # Bounces are appended to a mailbox all day: a night reads what came since the last one
    # (and the last message it read, which might have been cut short then), not the whole
    # file again.
    data = (EXAMPLES / "bounces.mbox").read_bytes()
    starts = _mbox_offsets(EXAMPLES / "bounces.mbox")
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(data[: starts[6]])
    first = run_nightly(engine, [mbox], now=NOW)
    assert first.sources[0].items == 6
    with mbox.open("ab") as f:
        f.write(data[starts[6] :])
    second = run_nightly(engine, [mbox], now=NOW)
    [source] = second.sources
    assert source.note == f"resumed at byte {starts[5]}"
    assert (source.items, source.duplicates) == (len(starts) - 5, 1)
    # The two nights recorded what one night over the whole file records.
    whole = DeliverabilityEngine(f"sqlite:///{tmp_path / 'whole.db'}", clock=lambda: NOW)
    try:
        once = run_nightly(whole, [EXAMPLES / "bounces.mbox"], now=NOW)
    finally:
        whole.close()
    assert first.recorded + second.recorded == once.recorded


def test_an_mbox_rewritten_where_its_last_message_began_is_read_from_the_top(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    data = (EXAMPLES / "bounces.mbox").read_bytes()
    starts = _mbox_offsets(EXAMPLES / "bounces.mbox")
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(data)
    run_nightly(engine, [mbox], now=NOW)
    # The same file (its first 4 KiB unchanged), but a message near the end is now longer:
    # the saved offset falls inside a message. (The header goes after the separator line: one
    # cut into the separator would leave no separator there.)
    cut = data.index(b"\n", starts[-2]) + 1
    mbox.write_bytes(data[:cut] + b"X-Added: a header line of some length\n" + data[cut:])
    second = run_nightly(engine, [mbox], now=NOW)
    [source] = second.sources
    assert source.note == ""
    assert source.items == len(starts)


def test_a_broken_line_is_rejected_with_its_position_and_the_rest_is_recorded(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    log = tmp_path / "replies.jsonl"
    good = [json.dumps(_line(n)) for n in range(5)]
    log.write_text("\n".join([*good[:2], "{not json", *good[2:]]) + "\n")
    summary = run_nightly(engine, [log], now=NOW)
    assert summary.recorded == 5
    assert summary.rejected_count == 1
    with Session(engine.db) as s:
        row = s.scalars(select(RejectedInput)).one()
    # The path as given (the file name alone would make two folders' logs one source).
    assert row.source == str(log)
    assert row.position.startswith("byte ")
    assert "{not json" in row.raw


def test_an_escaped_nul_in_a_log_line_rejects_that_line_and_the_job_goes_on(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    # JSON may escape a NUL ("\u0000") in a line without a NUL byte: on PostgreSQL such a line
    # stopped every run at the same place.
    log = tmp_path / "replies.jsonl"
    bad = {**_line(2), "message_id": "m2\x00@lists.example.org"}
    texty = {**_line(3), "reply": None, "code": 550, "text": "no such\x00user"}
    _write_log(log, [_line(0), _line(1), bad, texty, _line(4)])
    summary = run_nightly(engine, [log], now=NOW)
    assert summary.recorded == 4
    assert summary.rejected_count == 1
    assert "NUL" in summary.rejected[0].error


def test_a_suppression_that_ran_out_no_longer_lists_the_address_as_suppressed(
    db_url: str, tmp_path: Path
) -> None:
    # A suppression with an expiry (a person's "until", or hygiene's own) stops applying when it
    # runs out: the nightly job closes its action, and the standing follows the deliveries
    # again, as after `unsuppress`, so status and the undeliverable report stop calling the
    # address suppressed.
    clock = FakeClock(NOW)
    with DeliverabilityEngine(db_url, clock=clock) as engine:
        engine.record("a@example.com", "250 2.0.0 OK", message_id="m1", at=NOW)
        engine.suppress("a@example.com", "on holiday", by="support", until=NOW + timedelta(hours=1))
        assert engine.status("a@example.com").standing is Standing.SUPPRESSED
        later = clock.advance(timedelta(hours=2))
        run_nightly(engine, [], now=later)
        status = engine.status("a@example.com")
        assert (status.standing, status.suppressed, status.sendable) == (
            Standing.DELIVERED,
            False,
            True,
        )
        with Session(engine.db) as s:
            assert reports.undeliverable(s) == []


def test_a_message_that_is_not_a_bounce_is_rejected_and_the_mailbox_goes_on(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    mbox = tmp_path / "bounces.mbox"
    good = (EXAMPLES / "bounces.mbox").read_bytes()
    junk = b"From someone  Fri Nov 27 10:00:00 2026\nSubject: hello\n\njust a note\n\n"
    mbox.write_bytes(junk + good)
    summary = run_nightly(engine, [mbox], now=NOW)
    assert summary.rejected_count == 1
    assert summary.recorded > 5


def test_nightly_exits_1_and_lists_rejected_input_when_some_input_was_bad(
    db_url: str, tmp_path: Path
) -> None:
    log = tmp_path / "replies.jsonl"
    log.write_text(json.dumps(_line(1)) + "\n" + "garbage\n")
    runner = CliRunner()
    args = ["--database-url", db_url]
    result = runner.invoke(cli, [*args, "nightly", str(log), "--now", "2026-11-28T06:00:00Z"])
    assert result.exit_code == 1, result.output
    assert "1 rejected" in result.output
    listed = runner.invoke(cli, [*args, "rejected", "--format", "json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [r["source"] for r in rows] == [str(log)]


def test_rejected_with_a_source_counts_only_that_sources_input_in_its_title(
    db_url: str, tmp_path: Path
) -> None:
    (tmp_path / "a.jsonl").write_text("garbage\nmore garbage\n")
    (tmp_path / "b.jsonl").write_text(json.dumps(_line(1)) + "\nrubbish\n")
    runner = CliRunner()
    args = ["--database-url", db_url]
    runner.invoke(cli, [*args, "nightly", str(tmp_path), "--now", "2026-11-28T06:00:00Z"])
    listed = runner.invoke(cli, [*args, "rejected", "--source", "b.jsonl"])
    assert listed.exit_code == 0, listed.output
    assert "Rejected input (1 in all)" in listed.output


def test_dry_run_reports_what_would_change_and_writes_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    runner = CliRunner()
    args = ["--database-url", url]
    result = runner.invoke(
        cli, [*args, "nightly", str(EXAMPLES), "--dry-run", "--now", "2026-11-28T06:00:00Z"]
    )
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    with DeliverabilityEngine(url) as eng:
        assert _counts(eng.db)["events"] == 0


_CHILD = """
import sys
from datetime import datetime, timezone
from deliverability.engine import Engine
from deliverability import nightly
now = datetime(2026, 11, 28, 6, 0, tzinfo=timezone.utc)
nightly.CHUNK = 50
engine = Engine(sys.argv[1], clock=lambda: now)
print("started", flush=True)
nightly.run_nightly(
    engine, [sys.argv[2]], now=now, progress=lambda path, n: print("chunk", n, flush=True)
)
print("finished", flush=True)
"""


@pytest.mark.slow
def test_a_run_killed_midway_loses_nothing_and_duplicates_nothing_when_run_again(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    log = tmp_path / "replies.jsonl"
    total = 6000
    _write_log(log, [_line(n, domain=f"d{n % 40}.example") for n in range(total)])
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, url, str(log)],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"started"
    # The child reports each chunk it has recorded; after the fourth, kill it without warning.
    for _ in range(4):
        assert child.stdout.readline().startswith(b"chunk")
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    with DeliverabilityEngine(url) as probe:
        partial = _counts(probe.db)["events"]
        assert 0 < partial < total
        run_nightly(probe, [log], now=NOW)
        assert _counts(probe.db)["events"] == total
        run_nightly(probe, [log], now=NOW)
        assert _counts(probe.db)["events"] == total


def test_a_verp_template_gives_prefix_separator_and_equals() -> None:
    verp = parse_verp_template("listbounce-{local}={domain}")
    assert verp.decode("listbounce-alice=example.com@lists.example.org") == "alice@example.com"
    assert verp.decode("other-alice=example.com@lists.example.org") is None


def test_a_verp_template_without_both_placeholders_is_refused_with_an_example() -> None:
    with pytest.raises(ConfigError, match=r"bounces\+\{local\}=\{domain\}"):
        parse_verp_template("bounces+{local}")


def test_a_binary_file_in_a_folder_is_rejected_and_the_other_files_are_read(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    folder = tmp_path / "night"
    folder.mkdir()
    _write_log(folder / "replies.jsonl", [_line(n) for n in range(3)])
    (folder / "core.bin").write_bytes(b"\x7fELF\x00\x00\x01" * 100)
    (folder / "notes.txt").write_text("remember to renew the certificate\n")
    summary = run_nightly(engine, [folder], now=NOW)
    assert summary.recorded == 3
    expected = [str(folder / "core.bin"), str(folder / "notes.txt")]
    assert sorted(r.source for r in summary.rejected) == expected
    with Session(engine.db) as s:
        stored = sorted(s.scalars(select(RejectedInput.source)))
    assert stored == expected


def test_an_empty_file_is_nothing_to_read_not_an_error(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "mail.log").write_bytes(b"")
    summary = run_nightly(engine, [folder], now=NOW)
    assert summary.rejected_count == 0
    assert summary.sources[0].note == "empty"


def test_strict_stops_at_an_unreadable_file(engine: DeliverabilityEngine, tmp_path: Path) -> None:
    binary = tmp_path / "core.bin"
    binary.write_bytes(b"\x00\x01" * 50)
    with pytest.raises(IngestError, match="binary"):
        run_nightly(engine, [binary], now=NOW, strict=True)


def test_a_postfix_expiry_expires_the_delivery_in_the_store(
    engine: DeliverabilityEngine,
) -> None:
    # The sample log's qmgr line "26749A79C3: ... status=expired" follows four deferrals of
    # emma.wilson@legacy.example.net: Postfix gave up, and so does the delivery.
    # The job runs after the log's last line (07:13 here): syslog times carry no year, and a time
    # after "now" would be read as last year's.
    after_the_log = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    url = engine.db.url.render_as_string(hide_password=False)
    engine_at_nine = DeliverabilityEngine(url, clock=lambda: after_the_log)
    run_nightly(engine_at_nine, [EXAMPLES / "postfix-mail.log"], now=after_the_log)
    engine_at_nine.close()
    with Session(engine.db) as s:
        recipient = s.scalars(
            select(Recipient).where(Recipient.address_key == "emma.wilson@legacy.example.net")
        ).one()
        states = {
            d.state
            for d in s.scalars(select(Delivery).where(Delivery.recipient_id == recipient.id))
        }
        kinds = [e.kind for e in s.scalars(select(Event).where(Event.recipient_id == recipient.id))]
    assert states == {DeliveryState.EXPIRED}
    assert EventKind.EXPIRY in kinds


def test_a_prose_bounce_is_dated_by_its_own_date_header_not_the_run(
    engine: DeliverabilityEngine,
) -> None:
    # The Exim and qmail samples carry no per-recipient dates; their Date headers say 23:20/23:21.
    run_nightly(engine, [EXAMPLES / "bounces.mbox"], now=NOW)
    with Session(engine.db) as s:
        at = s.scalars(
            select(Event.at)
            .join(Recipient, Recipient.id == Event.recipient_id)
            .where(Recipient.address_key == "k.ivanova@example.net")
        ).one()
    assert at == datetime(2026, 11, 27, 23, 20, tzinfo=UTC)


def test_a_rejected_log_line_is_stored_as_the_line_itself(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    log = tmp_path / "replies.jsonl"
    bad = {**_line(1), "recipient": "not-an-address"}
    _write_log(log, [bad])
    summary = run_nightly(engine, [log], now=NOW)
    assert summary.rejected_count == 1
    with Session(engine.db) as s:
        raw = s.scalars(select(RejectedInput.raw)).one()
    assert raw == json.dumps(bad)


def test_a_file_read_as_mbox_without_a_from_line_is_rejected_not_silently_empty(
    engine: DeliverabilityEngine,
) -> None:
    summary = run_nightly(engine, [EXAMPLES / "postfix-mail.log"], now=NOW, fmt="mbox")
    assert [r.error for r in summary.rejected] == [
        'not an mbox: it does not start with a "From " line'
    ]


def test_maildir_named_for_a_plain_file_is_rejected_with_the_reason(
    engine: DeliverabilityEngine,
) -> None:
    summary = run_nightly(engine, [EXAMPLES / "postfix-mail.log"], now=NOW, fmt="maildir")
    assert [r.error for r in summary.rejected] == [
        "not a Maildir folder (no cur/ and new/ folders)"
    ]


def test_explaining_an_mbox_explains_every_message_in_it() -> None:
    result = CliRunner().invoke(
        cli, ["explain", "--format", "json", "--message", str(EXAMPLES / "bounces.mbox")]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert len({row["message"] for row in rows}) == 11
    assert {row["recipient"] for row in rows} >= {"k.ivanova@example.net", "d.mensah@example.com"}


def test_explain_and_the_nightly_job_judge_a_complaint_and_an_auto_reply_alike(
    engine: DeliverabilityEngine,
) -> None:
    result = CliRunner().invoke(
        cli, ["explain", "--format", "json", "--message", str(EXAMPLES / "bounces.mbox")]
    )
    explained = {
        row["recipient"]: row["rule"]
        for row in map(json.loads, result.output.splitlines())
        if row["kind"] in ("complaint", "auto_reply")
    }
    run_nightly(engine, [EXAMPLES / "bounces.mbox"], now=NOW)
    with Session(engine.db) as s:
        rows = s.execute(
            select(Recipient.address_key, Event.rule)
            .join(Event, Event.recipient_id == Recipient.id)
            .where(Event.kind.in_([EventKind.COMPLAINT, EventKind.AUTO_REPLY]))
        )
        recorded = dict(rows.all())  # a list of rows, not the Result (which has keys())
    assert (
        explained
        == recorded
        == {
            "r.gupta@example.net": "arf.complaint",
            "e.moreau@example.org": "rfc3834.auto_reply",
        }
    )


def _stored_rejected(sa_engine: Engine) -> list[tuple[str, str, str]]:
    with Session(sa_engine) as s:
        rows = s.execute(
            select(RejectedInput.source, RejectedInput.position, RejectedInput.raw).order_by(
                RejectedInput.id
            )
        ).all()
    return [tuple(r) for r in rows]


def test_a_rotated_log_with_a_new_bad_line_where_the_old_one_was_keeps_both_lines(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    # logrotate renames replies.jsonl to replies.jsonl.1 and the mailer starts a new file: a bad
    # first line in each is at byte 0 of a file of the same name.
    log = tmp_path / "replies.jsonl"
    log.write_text('{"broken": 1\n' + json.dumps(_line(1)) + "\n")
    run_nightly(engine, [tmp_path], now=NOW)
    log.rename(tmp_path / "replies.jsonl.1")
    log.write_text('{"broken": 2\n' + json.dumps(_line(2)) + "\n")
    summary = run_nightly(engine, [tmp_path], now=NOW)
    assert summary.rejected_count == 1
    stored = _stored_rejected(engine.db)
    assert [(source, position) for source, position, _ in stored] == [(str(log), "byte 0")] * 2
    assert [raw for _, _, raw in stored] == ['{"broken": 1', '{"broken": 2']


def test_logs_of_the_same_name_in_two_folders_keep_their_own_rejected_lines(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    logs = [tmp_path / host / "replies.jsonl" for host in ("mx1", "mx2")]
    for log in logs:
        log.parent.mkdir()
        log.write_text("{not json\n" + json.dumps(_line(1)) + "\n")
    summary = run_nightly(engine, [tmp_path], now=NOW)
    assert summary.rejected_count == 2
    assert sorted(r.source for r in summary.rejected) == [str(log) for log in logs]
    assert _stored_rejected(engine.db) == [(str(log), "byte 0", "{not json") for log in logs]


def test_reading_a_log_again_from_the_start_stores_its_rejected_lines_once(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    log = tmp_path / "replies.jsonl"
    log.write_text("{not json\n" + json.dumps(_line(1)) + '\n{"also": "not a reply"}\n')
    run_nightly(engine, [log], now=NOW)
    with Session(engine.db) as s, s.begin():
        # The bookkeeping lost (a restored store, a wrong --format once): all of it is read again.
        s.execute(delete(IngestSource))
    again = run_nightly(engine, [log], now=NOW)
    assert again.rejected_count == 2
    assert len(_stored_rejected(engine.db)) == 2


#: A Postfix line from a host whose syslog stamps are Berlin time (UTC+1 in November).
BERLIN_LINE = (
    "Nov 28 03:14:15 mx postfix/smtp[1234]: 3F1A2B: to=<alice@example.com>, "
    "relay=mx.example.com[192.0.2.1]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=5.1.1, "
    "status=bounced (host mx.example.com[192.0.2.1] said: 550 5.1.1 <alice@example.com>: "
    "Recipient address rejected: User unknown (in reply to RCPT TO command))\n"
)


def _event_times(url: str) -> list[datetime]:
    with DeliverabilityEngine(url, clock=lambda: NOW) as probe, Session(probe.db) as s:
        return list(s.scalars(select(Event.at)))


@pytest.mark.parametrize("command", ["nightly", "ingest"])
def test_log_tz_reads_syslog_stamps_in_the_mail_hosts_zone(
    db_url: str, tmp_path: Path, command: str
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(BERLIN_LINE)
    args = [command, str(log), "--now", NOW.isoformat(), "--log-tz", "Europe/Berlin"]
    result = CliRunner().invoke(cli, ["--database-url", db_url, *args])
    assert result.exit_code == 0, result.output
    assert _event_times(db_url) == [datetime(2026, 11, 28, 2, 14, 15, tzinfo=UTC)]


def test_log_tz_can_come_from_the_environment(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(BERLIN_LINE)
    result = CliRunner().invoke(
        cli,
        ["--database-url", db_url, "nightly", str(log), "--now", NOW.isoformat()],
        env={"DELIVERABILITY_LOG_TZ": "Europe/Berlin"},
    )
    assert result.exit_code == 0, result.output
    assert _event_times(db_url) == [datetime(2026, 11, 28, 2, 14, 15, tzinfo=UTC)]


def test_without_log_tz_syslog_stamps_are_utc(engine: DeliverabilityEngine, tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text(BERLIN_LINE)
    run_nightly(engine, [log], now=NOW)
    with Session(engine.db) as s:
        assert list(s.scalars(select(Event.at))) == [datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)]


def test_the_job_passes_its_log_zone_to_the_postfix_reader(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    log = tmp_path / "mail.log"
    log.write_text(BERLIN_LINE)
    run_nightly(engine, [log], now=NOW, log_tz=ZoneInfo("America/New_York"))
    with Session(engine.db) as s:
        assert list(s.scalars(select(Event.at))) == [datetime(2026, 11, 28, 8, 14, 15, tzinfo=UTC)]


@pytest.mark.parametrize("command", ["nightly", "ingest"])
def test_an_unknown_log_tz_is_a_usage_error_naming_the_option(tmp_path: Path, command: str) -> None:
    log = tmp_path / "mail.log"
    log.write_text(BERLIN_LINE)
    args = [command, str(log), "--log-tz", "Mars/Olympus_Mons"]
    result = CliRunner().invoke(cli, ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", *args])
    assert result.exit_code == 2
    assert "--log-tz" in result.output
    assert "Mars/Olympus_Mons" in result.output
    assert "Europe/Berlin" in result.output
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("command", ["nightly", "ingest"])
def test_an_empty_log_tz_variable_is_a_usage_error_not_utc(tmp_path: Path, command: str) -> None:
    # Set from a secret or a host setting that did not load: going on in UTC would shift every
    # syslog stamp of a host on another clock by its offset, in silence.
    log = tmp_path / "mail.log"
    log.write_text(BERLIN_LINE)
    result = CliRunner().invoke(
        cli,
        ["--database-url", f"sqlite:///{tmp_path / 'x.db'}", command, str(log)],
        env={"DELIVERABILITY_LOG_TZ": ""},
    )
    assert result.exit_code == 2
    assert "DELIVERABILITY_LOG_TZ is set but empty" in result.output
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["nightly", "--now", "9999-12-31T23:59:59Z"],
        ["nightly", "--now", "0001-01-01T00:00:00+01:00"],
        ["prune", "--older-than", "999999999d"],
        ["report", "domains", "--now", "9999-12-31"],
    ],
)
def test_a_run_time_or_duration_past_the_calendar_is_refused_by_name(
    db_url: str, tmp_path: Path, command: list[str]
) -> None:
    # Each one was an "internal error" (exit 70): a run adds its windows and lifetimes to now.
    if command[0] == "nightly":
        command = [*command, str(tmp_path)]
    result = CliRunner().invoke(cli, ["--database-url", db_url, *command])
    assert result.exit_code == 2, result.output
    option = command[1] if command[0] != "report" else "--now"
    assert option in result.output
    assert "internal error" not in result.output


# -- bad bounces and unreadable files in a batch ---------------------------------------------------

_SEPARATOR = b"From MAILER-DAEMON Sat Nov 28 03:14:15 2026\n"


def _dsn(
    recipients: list[str],
    *,
    prose: str = "This is the mail system at host mx.example.net.",
    last_attempt: str = "Sat, 28 Nov 2026 03:14:15 +0000",
) -> bytes:
    """An RFC 3464 report, one failed block per recipient (written here, not taken from a
    sample, so each test shows what it changes)."""
    blocks = "".join(
        f"Final-Recipient: rfc822; {rcpt}\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        f"Last-Attempt-Date: {last_attempt}\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: User unknown\n\n"
        for rcpt in recipients
    )
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\n"
        "To: bounces@lists.example.org\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Date: Sat, 28 Nov 2026 03:14:15 +0000\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        f"--B\nContent-Type: text/plain\n\n{prose}\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mx.example.net\n\n{blocks}"
        "--B\nContent-Type: text/rfc822-headers\n\n"
        f"From: news@lists.example.org\nTo: {recipients[0]}\nMessage-ID: <n1@lists.example.org>\n\n"
        "--B--\n"
    ).encode()


def _events(sa_engine: Engine) -> list[tuple[str, int | None, str | None, str]]:
    """(address, code, status, text) of every event, in address order."""
    with Session(sa_engine) as s:
        rows = s.execute(
            select(Recipient.address, Event.code, Event.status, Event.text)
            .join(Recipient, Recipient.id == Event.recipient_id)
            .order_by(Recipient.address, Event.id)
        ).all()
    return [(a, c, None if st is None else str(st), t) for a, c, st, t in rows]


def test_bounces_with_dates_before_the_first_utc_instant_are_recorded_not_a_crash(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    year_one = "Mon, 1 Jan 0001 00:00:00 +0100"
    arf = (
        "From: fbl@isp.example\nTo: fbl@lists.example.org\nSubject: complaint\n"
        "Date: Sat, 28 Nov 2026 03:14:15 +0000\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="A"\n\n'
        "--A\nContent-Type: text/plain\n\nAn abuse report.\n\n"
        "--A\nContent-Type: message/feedback-report\n\n"
        f"Feedback-Type: abuse\nVersion: 1\nOriginal-Rcpt-To: m2@example.com\n"
        f"Arrival-Date: {year_one}\n\n--A--\n"
    )
    ses = {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bouncedRecipients": [{"emailAddress": "m3@example.com", "status": "5.1.1"}],
            "timestamp": "0001-01-01T00:00:00.000+01:00",
        },
    }
    folder = tmp_path / "bounces"
    folder.mkdir()
    (folder / "dsn.eml").write_bytes(_dsn(["m1@example.com"], last_attempt=year_one))
    (folder / "arf.eml").write_text(arf)
    (folder / "ses.eml").write_text(
        "From: no-reply@sns.amazonaws.com\nTo: bounces@lists.example.org\n"
        "Subject: AWS Notification Message\nDate: Sat, 28 Nov 2026 03:14:15 +0000\n\n"
        + json.dumps(ses)
    )
    summary = run_nightly(engine, [folder], now=NOW)
    assert summary.rejected == []
    with Session(engine.db) as s:
        dated = set(
            s.execute(
                select(Recipient.address, Event.at).join(
                    Recipient, Recipient.id == Event.recipient_id
                )
            ).all()
        )
    # Dated by what else the message says: its own Date header.
    when = datetime(2026, 11, 28, 3, 14, 15, tzinfo=UTC)
    assert dated == {(f"m{n}@example.com", when) for n in (1, 2, 3)}


def test_a_dsn_block_that_names_no_address_is_not_charged_to_another_recipient(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    mbox = tmp_path / "bounces.mbox"
    dsn = _dsn(["m1@example.com", "not an address", "m3@example.com"])
    mbox.write_bytes(_SEPARATOR + dsn + b"\n")
    run_nightly(engine, [mbox], now=NOW)
    assert _events(engine.db) == [
        ("m1@example.com", 550, "5.1.1", "<m1@example.com>: User unknown"),
        ("m3@example.com", 550, "5.1.1", "<m3@example.com>: User unknown"),
    ]


def test_a_half_written_last_mbox_message_is_recorded_once_when_it_is_finished(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    mbox = tmp_path / "bounces.mbox"
    first, last = _dsn(["m1@example.com"]), _dsn(["m2@example.com"])
    cut = last.index(b"Diagnostic-Code:")
    mbox.write_bytes(_SEPARATOR + first + b"\n" + _SEPARATOR + last[:cut])
    held = run_nightly(engine, [mbox], now=NOW)
    [source] = held.sources
    assert (source.items, source.rejected) == (1, 0)
    assert "an unterminated last message" in source.note
    with mbox.open("ab") as f:
        f.write(last[cut:] + b"\n")
    run_nightly(engine, [mbox], now=NOW)
    assert _events(engine.db) == [
        ("m1@example.com", 550, "5.1.1", "<m1@example.com>: User unknown"),
        ("m2@example.com", 550, "5.1.1", "<m2@example.com>: User unknown"),
    ]


def test_a_dangling_link_in_a_folder_is_rejected_and_the_other_files_are_read(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.log").symlink_to(tmp_path / "nonexistent")
    _write_log(folder / "b.jsonl", [_line(n) for n in range(3)])
    summary = run_nightly(engine, [folder], now=NOW)
    assert summary.recorded == 3
    assert [(r.source, r.error) for r in summary.rejected] == [
        (str(folder / "a.log"), "a link to a file that does not exist: not read")
    ]


@pytest.mark.timeout(20)  # opened, a FIFO with no writer would block the run for ever
def test_a_fifo_in_a_folder_is_rejected_without_being_opened(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    os.mkfifo(folder / "a.pipe")
    _write_log(folder / "b.jsonl", [_line(n) for n in range(3)])
    summary = run_nightly(engine, [folder], now=NOW)
    assert summary.recorded == 3
    assert [(r.source, r.error) for r in summary.rejected] == [
        (str(folder / "a.pipe"), "not a regular file (a FIFO): not read")
    ]


def test_a_path_named_on_the_command_line_that_does_not_exist_is_still_an_error(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    with pytest.raises(IngestError, match="no such file or folder"):
        run_nightly(engine, [tmp_path / "missing.log"], now=NOW)


@pytest.mark.skipif(not Path("/proc/self/mem").exists(), reason="needs Linux's /proc/self/mem")
def test_an_unreadable_maildir_file_is_rejected_and_the_rest_of_the_maildir_read(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    maildir = tmp_path / "bounces"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.M1.host").write_bytes(_dsn(["m1@example.com"]))
    (maildir / "new" / "2.M2.host").symlink_to("/proc/self/mem")  # reading it gives EIO
    (maildir / "cur" / "3.M3.host:2,S").write_bytes(_dsn(["m3@example.com"]))
    summary = run_nightly(engine, [maildir], now=NOW)
    [bad] = summary.rejected
    assert (bad.source, bad.position) == (str(maildir), "2.M2.host")
    assert bad.error.startswith("cannot read the message file new/2.M2.host: ")
    assert [e[0] for e in _events(engine.db)] == ["m1@example.com", "m3@example.com"]
    with Session(engine.db) as s:
        assert s.scalars(select(RejectedInput.position)).all() == ["2.M2.host"]


def _ingest(db_url: str, path: Path, now: str, *options: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli,
        ["--database-url", db_url, "ingest", str(path), "--now", now, "--output", "json", *options],
    )
    assert result.exit_code in (0, 1), result.output
    return cast(dict[str, Any], json.loads(result.stdout))


def test_from_start_reads_again_what_a_wrong_now_rejected_and_records_it_once(
    db_url: str, tmp_path: Path
) -> None:
    # Lines rejected for a reason since fixed (here: --now three days early, so they seemed to
    # be in the future) were never read again: the next run resumed after them.
    log = tmp_path / "replies.jsonl"
    log.write_text("".join(json.dumps(_line(n)) + "\n" for n in range(3)))
    early, right = "2026-11-25T00:00:00Z", "2026-11-28T06:00:00Z"
    assert _ingest(db_url, log, early)["recorded"] == 0
    assert _ingest(db_url, log, right)["recorded"] == 0
    assert _ingest(db_url, log, right, "--from-start")["recorded"] == 3
    again = _ingest(db_url, log, right, "--from-start")
    assert (again["recorded"], again["duplicates"]) == (0, 3)


def test_from_start_reads_every_message_again_and_records_none_twice(
    db_url: str, tmp_path: Path
) -> None:
    maildir = tmp_path / "bounces"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.M1.host").write_bytes(_dsn(["gone@example.net"]))
    right = "2026-11-28T06:00:00Z"
    assert _ingest(db_url, maildir, right)["recorded"] == 1
    again = _ingest(db_url, maildir, right, "--from-start")
    assert (again["recorded"], again["duplicates"]) == (0, 1)


@pytest.mark.parametrize("status", ["SOFTBOUNCE", "deferred"])
def test_a_postfix_deferral_with_a_5xx_reply_is_recorded_as_deferred_not_bounced(
    engine: DeliverabilityEngine, tmp_path: Path, status: str
) -> None:
    # With soft_bounce = yes (postconf(5)) Postfix keeps a hard-bounced message queued and
    # retries it: the address must not be suppressed for it.
    log = tmp_path / "mail.log"
    log.write_text(
        "Nov 28 03:14:15 mx postfix/smtp[1]: AAAAC6: to=<b24@example.com>, relay=x[1.2.3.4]:25, "
        f"dsn=5.1.1, status={status} (host x said: 550 5.1.1 nope)\n"
    )
    summary = run_nightly(engine, [log], now=NOW)
    assert summary.recorded == 1
    with Session(engine.db) as s:
        event = s.scalars(select(Event)).one()
        recipient = s.scalars(select(Recipient)).one()
    assert event.outcome == Outcome.DEFERRED
    assert (event.code, event.status, event.text) == (550, "5.1.1", "nope")
    assert recipient.standing == Standing.RETRYING


@pytest.mark.parametrize(
    "date", ["Mon, 1 Jan 0001 00:00:00 +0100", "Fri, 31 Dec 9999 23:30:00 -0100", "not a date"]
)
def test_a_bounce_whose_date_header_is_no_usable_time_is_read_as_undated(date: str) -> None:
    # Year 0001 came back as 2000-12-31 (a two-digit year guess); 9999 west of UTC stopped the
    # run. The message is dated by what else it says instead.
    data = _dsn(["gone@example.net"]).replace(
        b"Date: Sat, 28 Nov 2026 03:14:15 +0000", f"Date: {date}".encode()
    )
    assert message_date(data) is None
    items, bad = message_items(data, source="b.mbox", position="byte 0", now=NOW)
    assert bad is None
    assert [item.recipient for item in items] == ["gone@example.net"]


def test_a_dsn_with_one_recipient_that_is_no_address_records_the_others_and_rejects_it() -> None:
    # The good blocks were dropped with the bad one, or the bad one charged to another address.
    data = _dsn(["gone@example.net", "not an address", "left@example.net"])
    items, bad = message_items(data, source="b.mbox", position="byte 0", now=NOW)
    assert [item.recipient for item in items] == ["gone@example.net", "left@example.net"]
    assert bad is not None
    assert "Final-Recipient" in bad.error


def test_a_sites_own_rule_judges_the_replies_of_bounce_messages_too(
    db_url: str, tmp_path: Path
) -> None:
    # The replies of a log were judged by the engine's policy, those of a bounce message by the
    # shipped one: a site's rule never applied to its DSNs.
    path = tmp_path / "site.toml"
    path.write_text(
        "[[rule]]\n"
        'id = "site.our_relay_says_user_unknown"\n'
        'text = "(?i)user unknown"\n'
        'outcome = "deferred"\n'
        'reason = "system_error"\n'
        'fault = "destination"\n'
        'source = "our relay answers this for a directory outage"\n'
    )
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(_SEPARATOR + _dsn(["gone@example.net"]) + b"\n")
    with DeliverabilityEngine(db_url, policy=load_policy(path), clock=lambda: NOW) as eng:
        run_nightly(eng, [mbox], now=NOW)
        with Session(eng.db) as s:
            rules = list(s.scalars(select(Event.rule)))
    assert rules == ["site.our_relay_says_user_unknown"]


def test_a_message_cut_short_before_the_next_one_is_rejected_and_the_next_one_read_whole(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    # The writer of the second message died before its Status line and its closing empty line;
    # the next delivery appended the third after it. Read as one message, the cut report gave
    # m2 a guessed failure linked to the third message's send, and the third was not read.
    mbox = tmp_path / "bounces.mbox"
    cut = _dsn(["m2@example.com"])
    cut = cut[: cut.index(b"Status:")]
    mbox.write_bytes(
        _SEPARATOR
        + _dsn(["m1@example.com"])
        + b"\n"
        + _SEPARATOR
        + cut
        + _SEPARATOR
        + _dsn(["m3@example.com"])
        + b"\n"
    )
    summary = run_nightly(engine, [mbox], now=NOW)
    assert _events(engine.db) == [
        ("m1@example.com", 550, "5.1.1", "<m1@example.com>: User unknown"),
        ("m3@example.com", 550, "5.1.1", "<m3@example.com>: User unknown"),
    ]
    [bad] = summary.rejected
    second = len(_SEPARATOR) + len(_dsn(["m1@example.com"])) + 1
    assert (bad.source, bad.position) == (str(mbox), str(second))
    assert "cut short" in bad.error
    assert f"byte {second + len(_SEPARATOR) + len(cut)}" in bad.error
    # The next night reads nothing again.
    again = run_nightly(engine, [mbox], now=NOW)
    assert again.recorded == 0


def test_a_message_over_the_size_limit_is_rejected_by_name_and_the_mailbox_read_on(
    engine: DeliverabilityEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(messages, "MAX_MESSAGE", 8192)
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.M1.host").write_bytes(_dsn(["m1@example.com"]))
    (maildir / "new" / "2.M2.host").write_bytes(b"Subject: big\n\n" + b"A" * 10000)
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(
        _SEPARATOR
        + b"Subject: big\n\n"
        + b"A" * 10000
        + b"\n\n"
        + _SEPARATOR
        + _dsn(["m3@example.com"])
        + b"\n"
    )
    summary = run_nightly(engine, [maildir, mbox], now=NOW)
    assert [e[0] for e in _events(engine.db)] == ["m1@example.com", "m3@example.com"]
    assert [(r.source, r.position) for r in summary.rejected] == [
        (str(maildir), "2.M2.host"),
        (str(mbox), "0"),
    ]
    assert all("over the limit of 8192 bytes" in r.error for r in summary.rejected)
    with Session(engine.db) as s:
        stored = s.scalars(select(RejectedInput.position).order_by(RejectedInput.id)).all()
    assert stored == ["2.M2.host", "0"]


def test_a_maildir_message_a_mail_client_marked_read_between_runs_is_recorded_once(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.M1.host").write_bytes(_dsn(["m1@example.com"]))
    (maildir / "tmp" / "2.M2.host").write_bytes(_dsn(["m2@example.com"])[:100])  # being delivered
    first = run_nightly(engine, [maildir], now=NOW)
    assert (first.recorded, first.rejected_count) == (1, 0)
    # Seen in a mail client: moved to cur/ with its flags; the next delivery lands in new/.
    (maildir / "new" / "1.M1.host").rename(maildir / "cur" / "1.M1.host:2,S")
    (maildir / "tmp" / "2.M2.host").unlink()
    (maildir / "new" / "2.M2.host").write_bytes(_dsn(["m2@example.com"]))
    second = run_nightly(engine, [maildir], now=NOW)
    assert (second.recorded, second.duplicates, second.rejected_count) == (1, 1, 0)
    assert [e[0] for e in _events(engine.db)] == ["m1@example.com", "m2@example.com"]


def _relay_dsn(action: str, date: str, diagnostic: str) -> bytes:
    """A Postfix relay's report as Postfix writes it: an Arrival-Date (when the relay took the
    message) and no Last-Attempt-Date; its own Date says when it was written."""
    return (
        f"From MAILER-DAEMON {date}\n"
        f"Date: {date}\n"
        "From: MAILER-DAEMON@relay.lists.example.org (Mail Delivery System)\n"
        "To: bounces@lists.example.org\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nThis is the mail system at host relay.\n\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; relay.lists.example.org\n"
        "X-Postfix-Sender: rfc822; bounces@lists.example.org\n"
        "Arrival-Date: Fri, 27 Nov 2026 02:00:04 +0000 (UTC)\n\n"
        "Final-Recipient: rfc822; reader@example.com\n"
        "Original-Recipient: rfc822;reader@example.com\n"
        f"Action: {action}\n"
        f"Status: {diagnostic.split()[1]}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n\n"
        "--B\nContent-Type: text/rfc822-headers\n\nMessage-ID: <n1@lists.example.org>\n\n"
        "--B--\n\n"
    ).encode()


def test_a_relays_dsn_is_dated_when_it_was_written_not_when_the_relay_took_the_message(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    # The sender hands its mail to a Postfix relay, whose "250 queued" is in the reply log; the
    # relay's DSN comes later. Dated by its Arrival-Date (RFC 3464 section 2.2.5: when the
    # relay received the message, so before that 250), the bounce came before the delivery it
    # reports on and went into history only: the address stayed deliverable.
    log = tmp_path / "replies.jsonl"
    _write_log(
        log,
        [
            {
                "at": "2026-11-27T02:00:05Z",
                "recipient": "reader@example.com",
                "message_id": "<n1@lists.example.org>",
                "reply": "250 2.0.0 Ok: queued as 4F1AB2C3D",
            }
        ],
    )
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(
        _relay_dsn("failed", "Fri, 27 Nov 2026 02:00:09 +0000", "550 5.1.1 User unknown")
    )
    run_nightly(engine, [log, mbox], now=NOW)
    with Session(engine.db) as s:
        bounce = s.scalars(select(Event).where(Event.kind == EventKind.BOUNCE)).one()
        delivery = s.scalars(select(Delivery)).one()
        recipient = s.scalars(select(Recipient)).one()
    assert bounce.at == datetime(2026, 11, 27, 2, 0, 9, tzinfo=UTC)
    assert delivery.state is DeliveryState.BOUNCED
    assert recipient.standing is not Standing.DELIVERED


def test_a_relays_delay_warning_and_its_final_failure_with_the_same_reply_are_two_events(
    db_url: str, tmp_path: Path
) -> None:
    # Both reports carry the Arrival-Date of the one message and, for a host that never
    # answered, the same status and text: dated alike, the failure five days later had the
    # delay warning's idempotency key and was dropped as a duplicate of it.
    timeout = "451 4.4.1 connect to mx.example.com[192.0.2.9]:25: Connection timed out"
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(
        _relay_dsn("delayed", "Fri, 27 Nov 2026 06:00:00 +0000", timeout)
        + _relay_dsn("failed", "Wed, 2 Dec 2026 02:00:04 +0000", timeout)
    )
    later = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    engine = DeliverabilityEngine(db_url, clock=lambda: later)
    try:
        summary = run_nightly(engine, [mbox], now=later)
        assert (summary.recorded, summary.duplicates) == (2, 0)
        with Session(engine.db) as s:
            dates = s.scalars(select(Event.at).where(Event.kind == EventKind.BOUNCE)).all()
    finally:
        engine.close()
    assert sorted(dates) == [
        datetime(2026, 11, 27, 6, 0, tzinfo=UTC),
        datetime(2026, 12, 2, 2, 0, 4, tzinfo=UTC),
    ]


@pytest.mark.parametrize(
    ("diagnostic", "fault"),
    [
        ("451 4.4.1 connect to mx.example.com[192.0.2.9]:25: Connection timed out", Fault.NETWORK),
        ("452 4.2.2 The email account that you tried to reach is over quota", Fault.RECIPIENT),
    ],
)
def test_a_relays_failed_dsn_with_a_4xx_status_is_its_give_up_not_a_deferral(
    db_url: str, tmp_path: Path, diagnostic: str, fault: Fault
) -> None:
    # RFC 3464 section 2.3.3: "failed" means the reporting MTA stopped trying. When a message
    # outlives Postfix's maximal_queue_lifetime, its report says "failed" with the status and
    # text of the last deferral: the relay's give-up, as a "failed" X.4.7 is, keeping the fault
    # of what it kept getting. Recorded as one more deferral, the address never had it.
    later = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    mbox = tmp_path / "bounces.mbox"
    mbox.write_bytes(
        _relay_dsn("delayed", "Fri, 27 Nov 2026 06:00:00 +0000", diagnostic)
        + _relay_dsn("failed", "Wed, 2 Dec 2026 02:00:04 +0000", diagnostic)
    )
    engine = DeliverabilityEngine(db_url, clock=lambda: later)
    try:
        run_nightly(engine, [mbox], now=later)
        with Session(engine.db) as s:
            rows = s.execute(
                select(Event.outcome, Event.reason, Event.fault, Event.rule)
                .where(Event.kind == EventKind.BOUNCE)
                .order_by(Event.at)
            ).all()
    finally:
        engine.close()
    delayed, failed = rows
    assert delayed.reason is not Reason.EXPIRED
    assert (failed.outcome, failed.reason, failed.fault) == (
        Outcome.DEFERRED,
        Reason.EXPIRED,
        fault,
    )
    assert failed.rule.endswith("+dsn-action-failed")


def test_a_gzip_compressed_mbox_is_read_and_one_cut_short_keeps_its_messages_before_the_cut(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    # An mbox rotated and compressed (bounces.mbox.1.gz) was told an mbox by its decompressed
    # start, then read compressed: rejected whole as 'not an mbox'.
    messages_ = [_SEPARATOR + _dsn([f"m{i}@example.com"]) + b"\n" for i in (1, 2, 3)]
    whole = tmp_path / "bounces.mbox.1.gz"
    # Complete by nature: its last message is read without the empty line that ends it.
    whole.write_bytes(gzip.compress(b"".join(messages_)[:-1]))
    summary = run_nightly(engine, [whole], now=NOW)
    assert (summary.recorded, summary.rejected_count) == (3, 0)
    assert summary.sources[0].note == ""
    assert run_nightly(engine, [whole], now=NOW).recorded == 0
    # A copy cut short: the messages before the cut are read, the cut is one rejected item.
    more = [_SEPARATOR + _dsn([f"n{i}@example.com"]) + b"\n" for i in range(1, 30)]
    data = gzip.compress(b"".join(messages_ + more))
    cut = tmp_path / "bounces.mbox.2.gz"
    cut.write_bytes(data[: len(data) * 3 // 4])
    summary = run_nightly(engine, [cut], now=NOW)
    assert summary.recorded >= 1
    [bad] = summary.rejected
    assert bad.source == str(cut)
    assert "compressed data is corrupt or cut short" in bad.error


def test_a_forwarded_subscribers_bounce_is_charged_to_the_address_the_verp_path_names(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    # The subscriber's address forwards to another mailbox, which refuses: the report's
    # Final-Recipient is the mailbox forwarded to, an address not on the list. The return path
    # the sender wrote for this one recipient (VERP) names the address it sent to: the bounce
    # is that address's, or the list would keep mailing it.
    mbox = tmp_path / "bounces.mbox"
    report = _dsn(["reader.smith@othermail.example"]).replace(
        b"To: bounces@lists.example.org",
        b"To: bounces+reader=example.com@lists.example.org",
    )
    report = report.replace(
        b"Action: failed", b"Original-Recipient: rfc822;reader@example.com\nAction: failed"
    )
    mbox.write_bytes(_SEPARATOR + report + b"\n")
    run_nightly(engine, [mbox], now=NOW)
    assert [e[0] for e in _events(engine.db)] == ["reader@example.com"]


def test_a_report_on_several_recipients_keeps_each_blocks_own_address_whatever_the_verp_path(
    engine: DeliverabilityEngine, tmp_path: Path
) -> None:
    mbox = tmp_path / "bounces.mbox"
    report = _dsn(["m1@example.com", "m2@example.com"]).replace(
        b"To: bounces@lists.example.org",
        b"To: bounces+m1=example.com@lists.example.org",
    )
    mbox.write_bytes(_SEPARATOR + report + b"\n")
    run_nightly(engine, [mbox], now=NOW)
    assert [e[0] for e in _events(engine.db)] == ["m1@example.com", "m2@example.com"]
