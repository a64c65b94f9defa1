"""`deliverability explain`: one reply, a stream of replies, JSON keys, errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from deliverability.cli import cli

GMAIL_UNKNOWN = (
    "host gmail-smtp-in.l.google.com[142.250.1.27] said: 550-5.1.1 The email account that you "
    "tried to reach does not exist. (in reply to RCPT TO command)"
)


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.output


def test_explain_prints_the_verdict_the_rule_and_the_meaning_of_the_codes() -> None:
    code, out = run("explain", GMAIL_UNKNOWN)
    assert code == 0
    assert "outcome:   bounced (decisive)" in out
    assert "reason:    user_unknown" in out
    assert "command:   RCPT TO" in out
    assert "rule:      std.status.bad_mailbox" in out
    assert "Bad destination mailbox address" in out


def test_explain_json_has_the_contract_keys() -> None:
    code, out = run("explain", "421 4.7.0 Try again later", "--format", "json")
    assert code == 0
    row = json.loads(out)
    for key in ("code", "status", "outcome", "reason", "fault", "rule"):
        assert key in row
    assert (row["code"], row["status"], row["outcome"], row["fault"]) == (
        421,
        "4.7.0",
        "deferred",
        "destination",
    )
    assert row["throttle"] is True
    for key in ("decisive", "retry_after", "inconsistent", "text", "command", "why"):
        assert key in row
    assert row["code_meaning"]
    assert row["status_meaning"].startswith("Other or undefined security status")


def test_explain_stream_prints_one_json_line_per_input_line_in_order() -> None:
    lines = [
        "250 2.0.0 OK",
        "this is not a reply",
        "",
        "451 4.7.1 Greylisting in action, please come back in 00:05:00",
        "550 5.1.1 User unknown",
    ]
    code, out = run("explain", "-", "--format", "json", stdin="\n".join(lines) + "\n")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == len(lines)
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["outcome"] == "delivered"
    assert "error" in rows[1]
    assert "not a reply" in rows[1]["error"]
    assert "empty" in rows[2]["error"]
    assert rows[3]["reason"] == "greylisted"
    assert rows[3]["retry_after"] == 300
    assert rows[4]["decisive"] is True
    # A bad line does not stop the stream, and the exit code says some input was bad.
    assert code == 1


def test_explain_stream_exits_zero_when_every_line_is_a_reply() -> None:
    code, out = run("explain", "-", stdin="250 OK\r\n550 5.7.1 Relay access denied\r\n")
    assert code == 0
    assert out.splitlines()[1].startswith("550 5.7.1: blocked no_relaying sender")


def test_explain_text_flags_an_inconsistent_reply() -> None:
    code, out = run("explain", "550 4.2.2 Mailbox full")
    assert code == 0
    assert "disagrees" in out


def test_explain_text_names_an_out_of_range_status_without_claiming_a_class_disagreement() -> None:
    code, out = run("explain", "550 5.1.9999 user unknown")
    assert code == 0
    assert "over 999" in out
    assert "disagrees" not in out


def test_explain_of_an_unparseable_reply_is_a_one_line_error() -> None:
    result = CliRunner().invoke(cli, ["explain", "hello"], standalone_mode=False)
    # main() turns this DeliverabilityError into "error: ..." with exit code 2.
    assert "no SMTP reply code" in str(result.exception)


def test_explain_needs_a_reply_or_a_message() -> None:
    code, out = run("explain")
    assert code == 2
    assert "give a REPLY" in out


def test_explain_uses_the_user_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        '[[rule]]\nid = "local.legacy_550"\ncode = [550]\noutcome = "blocked"\n'
        'reason = "policy_violation"\nfault = "sender"\nsource = "our postmaster"\n'
    )
    code, out = run("--policy", str(policy), "explain", "550 go away", "--format", "json")
    assert code == 0
    row = json.loads(out)
    assert (row["rule"], row["outcome"]) == ("local.legacy_550", "blocked")


DSN = """\
From: MAILER-DAEMON@mx.example.org
To: bounces@example.com
Subject: Undelivered Mail Returned to Sender
Date: Sat, 28 Nov 2026 10:00:00 +0000
Message-ID: <dsn-{n}@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org. Your message could not be delivered.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; {rcpt}
Original-Recipient: rfc822; {rcpt}
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown

--BOUNDARY--
"""


def test_explain_message_takes_several_files_after_one_option(tmp_path: Path) -> None:
    first, second = tmp_path / "one.eml", tmp_path / "two.eml"
    first.write_text(DSN.format(n=1, rcpt="alice@example.net"))
    second.write_text(DSN.format(n=2, rcpt="bob@example.net"))
    code, out = run("explain", "--format", "json", "--message", str(first), str(second))
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["file"], r["recipient"]) for r in rows] == [
        (str(first), "alice@example.net"),
        (str(second), "bob@example.net"),
    ]
    assert all(r["outcome"] == "bounced" and r["reason"] == "user_unknown" for r in rows)
    assert code == 0


def test_explain_message_without_a_recipient_gives_an_error_line_and_exit_1(
    tmp_path: Path,
) -> None:
    empty = tmp_path / "note.eml"
    empty.write_text("From: a@example.com\nSubject: hello\n\njust a note\n")
    code, out = run("explain", "--message", str(empty), "--format", "json")
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert row["recipient"] is None
    assert row["error"]
    assert code == 1


def test_an_unquoted_reply_is_read_as_one_reply() -> None:
    code, out = run("explain", "550", "5.1.1", "User", "unknown", "--format", "json")
    assert code == 0
    row = json.loads(out)
    assert (row["code"], row["status"], row["text"]) == (550, "5.1.1", "User unknown")


def test_explain_message_judges_by_the_policy_in_force(tmp_path: Path) -> None:
    # As `explain REPLY` does and the nightly job does: a site's rule applies to bounce messages.
    policy = tmp_path / "site.toml"
    policy.write_text(
        "[[rule]]\n"
        'id = "site.relay_user_unknown"\n'
        'status = ["5.1.1"]\n'
        'outcome = "deferred"\n'
        'reason = "system_error"\n'
        'fault = "destination"\n'
        'source = "test"\n'
    )
    message = tmp_path / "one.eml"
    message.write_text(DSN.format(n=1, rcpt="alice@example.net"))
    code, out = run(
        "--policy", str(policy), "explain", "--format", "json", "--message", str(message)
    )
    [row] = [json.loads(line) for line in out.splitlines()]
    assert (row["outcome"], row["rule"]) == ("deferred", "site.relay_user_unknown")
    assert code == 0
