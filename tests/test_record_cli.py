from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine as SAEngine
from sqlalchemy import event as sa_event

from deliverability.cli import cli, main


def run(url: str, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["--database-url", url, *args], input=input)


@pytest.fixture
def url(tmp_path: Path) -> str:
    """A SQLite store: these commands do the same on every backend (the engine and `db`
    tests run on all of them)."""
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_record_prints_the_decision_as_json(url: str) -> None:
    result = run(
        url,
        "record",
        "--recipient",
        "alice@example.com",
        "--reply",
        "452 4.2.2 Mailbox full",
        "--message-id",
        "<m1@list>",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["outcome"] == "deferred"
    assert data["reason"] == "mailbox_full"
    assert data["delivery_state"] == "deferred"
    assert data["attempt"] == 1
    assert data["next_attempt_at"]
    assert data["sendable"] is True


def test_record_as_text_names_the_outcome_and_the_rule(url: str) -> None:
    result = run(url, "record", "--recipient", "a@example.com", "--reply", "550 5.1.1 no such user")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("a@example.com: bounced (user_unknown")
    assert "rule: " in result.output


def test_record_refuses_a_negative_attempt(url: str) -> None:
    result = run(
        url,
        "record",
        "--recipient",
        "a@example.com",
        "--reply",
        "250 ok",
        "--message-id",
        "m1",
        "--attempt",
        "-2",
    )
    assert result.exit_code != 0
    assert "must be 1 or more" in str(result.exception)


def test_status_as_json_has_address_state_reason_and_suppressed(url: str) -> None:
    run(url, "record", "--recipient", "a@example.com", "--reply", "250 ok", "--message-id", "m")
    result = run(url, "status", "A@example.com", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["address"] == "a@example.com"
    assert data["state"] == "delivered"
    assert data["reason"] == "delivered"
    assert data["suppressed"] is False


def test_status_as_text_says_a_suppression_without_expiry_lasts_until_unsuppressed(
    url: str,
) -> None:
    run(url, "suppress", "b@example.com", "--reason", "asked by phone", "--by", "ann")
    result = run(url, "status", "b@example.com")
    assert result.exit_code == 0, result.output
    assert "  suppressed: yes, until unsuppressed (no expiry)\n" in result.output


def test_suppress_then_sendable_lists_only_the_others_with_reasons_on_stderr(
    url: str, tmp_path: Path
) -> None:
    result = run(url, "suppress", "b@example.com", "--reason", "asked by phone", "--by", "ann")
    assert result.exit_code == 0, result.output
    listing = tmp_path / "list.txt"
    listing.write_text("# today's list\nc@example.com\n\nnot-an-address\n", encoding="utf-8")
    result = run(url, "sendable", "a@example.com", "b@example.com", "--file", str(listing))
    assert result.exit_code == 1  # one line was not an address
    assert result.stdout.splitlines() == ["a@example.com", "c@example.com"]
    assert "b@example.com: suppressed" in result.stderr
    assert "not-an-address: not an email address" in result.stderr

    assert "by ann: asked by phone" in result.stderr

    status = json.loads(run(url, "status", "b@example.com", "--format", "json").output)
    assert status["suppressed"] is True
    assert status["state"] == "suppressed"
    assert "asked by phone" in status["why_not"]


def test_sendable_reads_standard_input(url: str) -> None:
    result = run(url, "sendable", "--file", "-", input="a@example.com\nb@example.org\n")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["a@example.com", "b@example.org"]


def test_unsuppress_makes_the_address_sendable_again(url: str) -> None:
    run(url, "suppress", "b@example.com", "--reason", "test", "--by", "ann")
    result = run(url, "unsuppress", "b@example.com", "--by", "bob")
    assert result.exit_code == 0, result.output
    assert run(url, "sendable", "b@example.com").stdout.splitlines() == ["b@example.com"]


def test_unsuppress_of_an_address_that_is_not_suppressed_fails(url: str) -> None:
    result = run(url, "unsuppress", "b@example.com")
    assert result.exit_code != 0
    assert "is not suppressed" in str(result.exception)


@pytest.mark.empty_database
def test_db_upgrade_current_and_check(db_url: str) -> None:
    current = run(db_url, "db", "current")
    assert "no schema" in current.output
    upgraded = run(db_url, "db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert "upgraded" in upgraded.output
    assert "already at revision" in run(db_url, "db", "upgrade").output
    assert "(head)" in run(db_url, "db", "current").output
    check = run(db_url, "db", "check")
    assert check.exit_code == 0, check.output
    assert "matches the models" in check.output


@pytest.mark.empty_database
def test_db_check_on_an_empty_database_fails(db_url: str) -> None:
    result = run(db_url, "db", "check")
    assert result.exit_code == 1
    assert "db upgrade" in result.stderr


def test_database_errors_are_one_line_and_never_show_the_password() -> None:
    url = "postgresql+psycopg://mailer:s3cr3t@127.0.0.1:1/nowhere"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from deliverability.cli import main; main()",
            "--database-url",
            url,
            "db",
            "current",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Nothing listens on port 1: the server is out of reach, exit 75 (tests/test_store_reach.py).
    assert proc.returncode == 75
    assert "s3cr3t" not in proc.stderr + proc.stdout
    error, *rest = proc.stderr.strip().splitlines()
    assert "mailer:***@127.0.0.1" in error
    assert len(rest) == 1
    assert "run the command again" in rest[0]


@pytest.mark.parametrize("command", [["db", "current"], ["db", "upgrade"], ["db", "check"]])
def test_db_commands_mask_the_password_in_their_output(command: list[str], tmp_path: Path) -> None:
    # SQLite URLs carry no password; a PostgreSQL URL that cannot connect shows the masking.
    result = run("postgresql+psycopg://mailer:s3cr3t@127.0.0.1:1/nowhere", *command)
    assert result.exit_code != 0
    assert "s3cr3t" not in result.output + str(result.exception)
    assert "***" in str(result.exception)


def test_sendable_exits_0_when_every_input_is_an_address(url: str) -> None:
    run(url, "suppress", "b@example.com", "--reason", "test", "--by", "ann")
    result = run(url, "sendable", "a@example.com", "b@example.com")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["a@example.com"]


@pytest.mark.parametrize(("command", "exit_code"), [("current", 0), ("check", 1)])
def test_db_current_and_check_leave_no_database_file_behind(
    tmp_path: Path, command: str, exit_code: int
) -> None:
    # Looking at a store that is not there made an empty SQLite file (a typo in the path
    # left one behind, and the next command found "no schema" there).
    path = tmp_path / "typo.db"
    result = run(f"sqlite:///{path}", "db", command)
    assert result.exit_code == exit_code, result.output
    assert "no database file" in result.output
    assert not path.exists()


def test_a_bad_at_is_a_usage_error_naming_the_option(url: str) -> None:
    result = run(url, "record", "--recipient", "a@example.com", "--reply", "250 ok", "--at", "x")
    assert result.exit_code == 2, result.output
    assert "--at" in result.output
    assert "not an ISO 8601 time" in result.output


def test_a_full_disk_under_a_command_is_a_one_line_error_to_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real "database or disk is full": SQLite's page limit set, on every new connection, to
    # the pages the store already holds; the nightly job's log needs more.
    url = f"sqlite:///{tmp_path / 'full.db'}"
    assert run(url, "db", "upgrade").exit_code == 0
    log = tmp_path / "replies.jsonl"
    log.write_text(
        "".join(
            json.dumps({"at": f"2026-11-28T02:{i // 60:02d}:{i % 60:02d}Z",
                        "recipient": f"user{i}@example.com", "message_id": f"<m{i}@example.com>",
                        "reply": "250 2.0.0 OK " + "x" * 200}) + "\n"
            for i in range(600)
        )
    )  # fmt: skip

    def no_room(dbapi_connection: Any, _record: Any) -> None:
        pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
        dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    sa_event.listen(SAEngine, "connect", no_room)
    try:
        argv = ["deliverability", "--database-url", url, "nightly", str(log),
                "--now", "2026-11-28T09:00:00Z"]  # fmt: skip
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as stopped:
            main()
    finally:
        sa_event.remove(SAEngine, "connect", no_room)
    err = capsys.readouterr().err
    assert stopped.value.code == 75, err
    assert err.startswith("error: the database failed: database or disk is full")
    assert "internal error" not in err
    assert "run the command again" in err
