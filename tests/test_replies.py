"""Reply parsing: every form a mailer records, and nothing but ReplyParseError on bad input."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from deliverability.errors import ReplyParseError
from deliverability.replies import (
    Reply,
    StatusCode,
    _parse_full,
    _parse_simple,
    parse_reply,
    parse_status,
)


def test_a_plain_reply_has_code_status_and_text() -> None:
    reply = parse_reply("550 5.1.1 <a@example.com>: Recipient address rejected: User unknown")
    assert (reply.code, reply.status) == (550, StatusCode(5, 1, 1))
    assert reply.text == "<a@example.com>: Recipient address rejected: User unknown"
    assert reply.problems == ()


def test_a_multi_line_reply_is_joined_into_one_text() -> None:
    reply = parse_reply(
        "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
        "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
        "550 5.1.1 unnecessary spaces. https://support.google.com/mail/?p=NoSuchUser"
    )
    assert (reply.code, str(reply.status)) == (550, "5.1.1")
    assert reply.text.startswith("The email account that you tried to reach does not exist.")
    assert "550" not in reply.text
    assert "\n" not in reply.text


def test_a_flattened_multi_line_reply_drops_the_repeated_prefixes() -> None:
    reply = parse_reply("550-5.1.1 The email account 550-5.1.1 does not exist 550 5.1.1 https://x")
    assert reply.text == "The email account does not exist https://x"


def test_a_reply_without_an_enhanced_status() -> None:
    reply = parse_reply("421 Service not available, closing transmission channel")
    assert (reply.code, reply.status) == (421, None)


def test_an_enhanced_status_without_a_basic_code() -> None:
    reply = parse_reply("5.2.2 Mailbox full")
    assert (reply.code, reply.status, reply.text) == (None, StatusCode(5, 2, 2), "Mailbox full")


def test_a_postfix_log_fragment_keeps_the_command() -> None:
    reply = parse_reply(
        "host mx.example.com[192.0.2.1] said: 550 5.1.1 <a@example.com>: User unknown "
        "(in reply to RCPT TO command)"
    )
    assert (reply.code, str(reply.status), reply.command) == (550, "5.1.1", "RCPT TO")
    assert reply.text == "<a@example.com>: User unknown"


def test_a_dsn_diagnostic_code_field() -> None:
    reply = parse_reply("Diagnostic-Code: smtp; 552 5.2.2 Over quota")
    assert (reply.code, str(reply.status), reply.text) == (552, "5.2.2", "Over quota")


def test_an_exim_line_names_the_command() -> None:
    reply = parse_reply(
        "SMTP error from remote mail server after RCPT TO:<a@example.com>: "
        "host mx.example.com [192.0.2.1]: 550 5.7.1 Rejected"
    )
    assert (reply.code, reply.command) == (550, "RCPT TO")


def test_odd_spacing_and_case_are_tolerated() -> None:
    reply = parse_reply("   550    5.1.1    USER   unknown   ")
    assert (reply.code, str(reply.status), reply.text) == (550, "5.1.1", "USER unknown")


def test_an_enhanced_status_that_disagrees_with_the_code_is_kept_and_flagged() -> None:
    reply = parse_reply("550 4.2.2 Mailbox full")
    assert reply.inconsistent
    assert any("disagrees" in p for p in reply.problems)


def test_an_out_of_range_status_is_ignored_with_a_problem() -> None:
    reply = parse_reply("550 5.9.1 odd")
    assert reply.status is None
    assert any("subject 9" in p for p in reply.problems)


@pytest.mark.parametrize("text", ["550 5.1.1000 x", "550 5.1.9999 user unknown"])
def test_a_status_detail_over_999_is_ignored_with_a_problem_naming_the_range(text: str) -> None:
    reply = parse_reply(text)
    assert reply.code == 550
    assert reply.status is None
    assert any("is over 999" in p for p in reply.problems)
    assert not reply.text.startswith("5.1.")


def test_a_lone_status_with_a_detail_over_999_is_a_parse_error_naming_the_range() -> None:
    with pytest.raises(ReplyParseError, match="detail 1000 is over 999"):
        parse_reply("5.1.1000 x")


@pytest.mark.parametrize(
    ("text", "first", "other"),
    [("550-a\r\n551 b", 550, 551), ("421-4.7.0 x\n550 5.1.1 y", 421, 550)],
)
def test_a_multi_line_reply_whose_lines_carry_different_codes_is_flagged(
    text: str, first: int, other: int
) -> None:
    reply = parse_reply(text)
    assert reply.code == first
    assert any(str(first) in p and str(other) in p and "4.2.1" in p for p in reply.problems)


def test_a_multi_line_reply_with_one_code_has_no_problem() -> None:
    assert parse_reply("550-5.1.1 a\r\n550-5.1.1 b\r\n550 5.1.1 c").problems == ()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("   \n  ", "empty"),
        ("hello world", "no SMTP reply code"),
        ("error: connection refused", "no SMTP reply code"),
    ],
)
def test_text_that_holds_no_reply_is_a_parse_error_naming_it(text: str, problem: str) -> None:
    with pytest.raises(ReplyParseError, match=problem) as info:
        parse_reply(text)
    assert isinstance(info.value, ValueError)


def test_a_non_string_is_a_parse_error() -> None:
    with pytest.raises(ReplyParseError, match="expected a string"):
        parse_reply(550)  # type: ignore[arg-type]


def test_parse_status_checks_the_rfc_3463_ranges() -> None:
    assert parse_status("5.7.26") == StatusCode(5, 7, 26)
    for bad in ("3.1.1", "5.8.1", "5.1.1000", "5.1"):
        with pytest.raises(ReplyParseError):
            parse_status(bad)


@settings(max_examples=400, deadline=None)
@given(st.text())
@example("550")
@example("5.1.1")
@example("550-")
@example("\x00550 5.1.1 x")
@example("said: ")
def test_parse_reply_on_any_text_returns_a_reply_or_raises_reply_parse_error(text: str) -> None:
    try:
        reply = parse_reply(text)
    except ReplyParseError:
        return
    assert isinstance(reply, Reply)
    assert reply.code is not None or reply.status is not None


# Replies built from the pieces real logs have, to exercise the fast path and the full parser.
_codes = st.sampled_from(["250", "421", "450", "451", "452", "550", "552", "553", "554", "599"])
_statuses = st.sampled_from(["", "2.0.0 ", "4.2.2 ", "5.1.1 ", "5.7.26 ", "4.7.0 ", "5.9.1 "])
_words = st.lists(
    st.sampled_from(
        [
            "User",
            "unknown",
            "<a@example.com>:",
            "550",
            "5.1.1",
            "said:",
            "after",
            "#",
            "-",
            "  ",
            "rate",
            "limit",
            "(in",
            "reply",
            "to",
            "RCPT",
            "TO",
            "command)",
            "\t",
            "quota",
            "ok",
        ]
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None)
@given(_codes, st.sampled_from([" ", "-", ":", "  "]), _statuses, _words)
def test_the_fast_path_gives_what_the_full_parser_gives(
    code: str, sep: str, status: str, words: list[str]
) -> None:
    text = f"{code}{sep}{status}{' '.join(words)}"
    fast = _parse_simple(text)
    if fast is not None:
        assert fast == _parse_full(text)


@pytest.mark.parametrize(
    "text",
    [
        "250 2.0.0 OK 1700000000 a1si123 - gsmtp",
        "550 5.1.1 <a@b>: Recipient address rejected: User unknown",
        "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred",
        "550-5.7.26 This mail has been blocked",
        "552 Requested mail action aborted: exceeded storage allocation",
        "550 4.2.2 inconsistent",
        "250 ok",
        "550",
    ],
)
def test_the_fast_path_takes_plain_lines_and_agrees_with_the_full_parser(text: str) -> None:
    fast = _parse_simple(text)
    assert fast is not None
    assert fast == _parse_full(text)


@pytest.mark.parametrize(
    "text",
    [
        "host mx said: 550 5.1.1 x",
        "550 5.1.1 x (in reply to RCPT TO command)",
        "550-5.1.1 a\n550 5.1.1 b",
        "550-5.1.1 a 550 5.1.1 b",
        "550 5.9.1 odd status",
        "#550 5.1.1 exchange style",
    ],
)
def test_unusual_lines_go_to_the_full_parser(text: str) -> None:
    assert _parse_simple(text) is None
