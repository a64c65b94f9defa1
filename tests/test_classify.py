"""The default verdicts the issue fixes, one test per rule of thumb, through the shipped policy."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deliverability.classify import classify, classify_text, retry_hint
from deliverability.errors import ReplyParseError
from deliverability.policy import load_policy
from deliverability.replies import Reply, StatusCode, parse_reply, parse_status
from deliverability.vocabulary import Fault, Outcome, Reason

# (reply, outcome, reason, fault, decisive)
DEFAULTS = [
    # 5.1.1, 5.1.10, 5.1.2 and user-unknown texts are decisive hard bounces.
    ("550 5.1.1 <a@example.com>... User unknown", "bounced", "user_unknown", "recipient", True),
    ("550 5.1.1 Mailbox does not accept mail", "bounced", "user_unknown", "recipient", True),
    ("556 5.1.10 Recipient address has null MX", "bounced", "host_unknown", "domain", True),
    ("550 5.1.2 Host unknown", "bounced", "host_unknown", "domain", True),
    ("550 No such user here", "bounced", "user_unknown", "recipient", True),
    ("553 Unknown recipient", "bounced", "user_unknown", "recipient", True),
    # Bare 550/553: bounced, not decisive.
    (
        "550 Requested action not taken: mailbox unavailable",
        "bounced",
        "user_unknown",
        "recipient",
        False,
    ),
    (
        "553 Requested action not taken: mailbox name not allowed",
        "bounced",
        "user_unknown",
        "recipient",
        False,
    ),
    # 5.7.x and the auth/TLS codes are blocked, the sender's fault, never a hard bounce.
    (
        "550 5.7.1 Delivery not authorized, message refused",
        "blocked",
        "policy_violation",
        "sender",
        False,
    ),
    ("550 5.7.23 SPF validation failed", "blocked", "auth_failure", "sender", False),
    ("550 5.7.25 Reverse DNS validation failed", "blocked", "require_ptr", "sender", False),
    (
        "550 5.7.26 Multiple authentication checks failed",
        "blocked",
        "auth_failure",
        "sender",
        False,
    ),
    ("554 5.7.1 <x@y>: Relay access denied", "blocked", "no_relaying", "sender", False),
    ("530 5.7.0 Must issue a STARTTLS command first", "blocked", "security_error", "sender", False),
    (
        "534 5.7.9 Authentication mechanism is too weak",
        "blocked",
        "security_error",
        "sender",
        False,
    ),
    (
        "538 5.7.11 Encryption required for requested authentication mechanism",
        "blocked",
        "security_error",
        "sender",
        False,
    ),
    ("505 Authentication required", "blocked", "security_error", "sender", False),
    (
        "571 Delivery not authorized, message refused",
        "blocked",
        "policy_violation",
        "sender",
        False,
    ),
    ("572 Bounces are blocked due to system abuse", "blocked", "policy_violation", "sender", False),
    ("554 Message refused for policy reasons", "blocked", "policy_violation", "sender", False),
    (
        "554 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org",
        "blocked",
        "blocked",
        "sender",
        False,
    ),
    # The 5.7.x exceptions: account disabled, owner changed.
    ("550 5.7.13 User account disabled", "bounced", "suspend", "recipient", False),
    ("550 5.7.17 Mailbox owner has changed", "bounced", "has_moved", "recipient", True),
    ("550 5.7.18 Domain owner has changed", "bounced", "has_moved", "domain", True),
    # Mailbox full is deferred unless the text says it is for good.
    (
        "552 Requested mail action aborted: exceeded storage allocation",
        "deferred",
        "mailbox_full",
        "recipient",
        False,
    ),
    ("552 5.2.2 Over quota", "deferred", "mailbox_full", "recipient", False),
    (
        "550 5.2.2 The mailbox is permanently over quota",
        "bounced",
        "mailbox_full",
        "recipient",
        False,
    ),
    ("550 5.2.1 This mailbox is inactive", "bounced", "suspend", "recipient", False),
    (
        "552 5.2.2 The email account that you tried to reach is over quota and inactive",
        "bounced",
        "mailbox_full",
        "recipient",
        False,
    ),
    ("550 5.2.2 Mailbox over quota for a long time", "bounced", "mailbox_full", "recipient", False),
    ("452 4.2.2 Mailbox over quota and inactive", "deferred", "mailbox_full", "recipient", False),
    # 452 depends on its enhanced code.
    ("452 4.2.2 Mailbox full", "deferred", "mailbox_full", "recipient", False),
    ("452 4.3.1 Insufficient system storage", "deferred", "system_full", "destination", False),
    ("452 4.5.3 Too many recipients", "deferred", "rate_limited", "destination", False),
    (
        "452 Requested action not taken: insufficient system storage",
        "deferred",
        "system_full",
        "destination",
        False,
    ),
    # 421 and rate-limit texts: deferred, the destination's, throttled.
    (
        "421 Service not available, closing transmission channel",
        "deferred",
        "rate_limited",
        "destination",
        False,
    ),
    (
        "451 4.7.1 Too many connections from your IP, slow down",
        "deferred",
        "rate_limited",
        "destination",
        False,
    ),
    (
        "450 4.7.1 Sending rate exceeded, try again later",
        "deferred",
        "rate_limited",
        "destination",
        False,
    ),
    # Greylisting.
    (
        "450 4.2.0 <a@b>: Recipient address rejected: Greylisted, see http://x/",
        "deferred",
        "greylisted",
        "destination",
        False,
    ),
    # Delivery and not-a-delivery-result.
    ("250 2.0.0 OK queued as 4B2C1", "delivered", "delivered", "unknown", False),
    ("251 User not local; will forward", "delivered", "delivered", "unknown", False),
    ("252 Cannot VRFY user, but will accept message", "delivered", "delivered", "unknown", False),
    ("220 mx.example.com ESMTP ready", "informational", "informational", "unknown", False),
    ("221 2.0.0 Bye", "informational", "informational", "unknown", False),
    ("334 VXNlcm5hbWU6", "informational", "informational", "unknown", False),
    (
        "354 Start mail input; end with <CRLF>.<CRLF>",
        "informational",
        "informational",
        "unknown",
        False,
    ),
    ("211 System status", "informational", "informational", "unknown", False),
    ("214 Help message", "informational", "informational", "unknown", False),
]


@pytest.mark.parametrize(
    ("text", "outcome", "reason", "fault", "decisive"),
    DEFAULTS,
    ids=[row[0][:48] for row in DEFAULTS],
)
def test_default_policy_gives_the_issue_s_verdict(
    text: str, outcome: str, reason: str, fault: str, decisive: bool
) -> None:
    verdict = classify_text(text)
    assert (verdict.outcome, verdict.reason, verdict.fault, verdict.decisive) == (
        Outcome(outcome),
        Reason(reason),
        Fault(fault),
        decisive,
    ), verdict.rule


def test_the_class_digit_turns_a_blocking_rule_on_a_4xx_reply_into_a_deferral() -> None:
    verdict = classify_text("451 4.7.1 Client host blocked using bl.spamcop.net")
    assert verdict.outcome is Outcome.DEFERRED
    assert verdict.reason is Reason.BLOCKED
    assert verdict.fault is Fault.SENDER
    assert not verdict.decisive


def test_a_4xx_user_unknown_status_is_deferred_and_not_decisive() -> None:
    verdict = classify_text("450 4.1.1 <a@b>: Recipient address rejected: unverified address")
    assert verdict.outcome is Outcome.DEFERRED
    assert verdict.reason is Reason.USER_UNKNOWN
    assert verdict.decisive is False


def test_rate_limit_and_421_replies_ask_to_throttle_the_destination() -> None:
    assert classify_text("421 4.7.0 Try again later, closing connection").throttle
    assert classify_text("451 4.7.1 Rate limit exceeded").throttle
    assert not classify_text("550 5.1.1 User unknown").throttle


def test_452_replies_ask_to_throttle_the_destination_but_a_full_mailbox_does_not() -> None:
    # DESIGN.md "List hygiene defaults": 421, 452 and rate-limit texts throttle the destination.
    # A 452 says the server takes no more now (RFC 5321 sections 4.2.2 and 4.5.3.1.10); X.2.2
    # says one mailbox is full (RFC 3463 section 3.3): that recipient's, not the destination's.
    assert classify_text("452 Insufficient system storage").throttle
    assert classify_text("452 4.3.1 Insufficient system storage").throttle
    assert classify_text("452 4.5.3 Too many recipients").throttle
    assert not classify_text(
        "452 4.2.2 The email account that you tried to reach is over quota"
    ).throttle


def test_greylisting_gets_the_policy_s_short_retry_when_the_text_gives_none() -> None:
    verdict = classify_text("450 4.2.0 Recipient address rejected: Greylisted")
    assert verdict.retry_after == load_policy().backoff.greylist_retry == timedelta(minutes=5)


def test_a_try_again_in_n_seconds_text_becomes_the_retry_hint() -> None:
    assert classify_text("451 4.7.1 Please try again in 300 seconds").retry_after == timedelta(
        seconds=300
    )
    verdict = classify_text("451 4.7.1 Greylisting in action, please come back in 00:05:00")
    assert verdict.retry_after == timedelta(minutes=5)


def test_a_retry_hint_is_capped_at_the_policy_s_maximum() -> None:
    verdict = classify_text("451 4.7.1 try again in 99 hours")
    assert verdict.retry_after == load_policy().backoff.max_hint


def test_a_final_reply_carries_no_retry_hint() -> None:
    assert classify_text("550 5.1.1 User unknown, try again in 5 minutes").retry_after is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("retry in 5 minutes", timedelta(minutes=5)),
        ("try again after 90s", timedelta(seconds=90)),
        ("please wait 2 hours", timedelta(hours=2)),
        ("come back in 00:10:30", timedelta(minutes=10, seconds=30)),
        ("try again later", None),
        ("mailbox 300 seconds", None),
    ],
)
def test_retry_hint_reads_numbers_and_units_after_a_retry_verb(
    text: str, expected: timedelta | None
) -> None:
    assert retry_hint(text) == expected


def test_an_inconsistent_reply_is_flagged_and_the_basic_code_decides_retry_or_stop() -> None:
    verdict = classify_text("550 4.1.1 User unknown")
    assert verdict.inconsistent
    assert verdict.outcome is Outcome.BOUNCED
    transient = classify_text("450 5.1.1 <a@b>: try later")
    assert transient.inconsistent
    assert transient.outcome is Outcome.DEFERRED


def test_an_enhanced_status_out_of_range_is_ignored_and_the_verdict_flagged() -> None:
    # RFC 3463 section 3.1: subject 0 to 7. The status is not used, and the verdict says so.
    verdict = classify_text("550 5.9.1 User unknown")
    assert verdict.inconsistent
    assert verdict.rule == "std.user_unknown_text"
    assert classify(parse_reply("550 5.9.1 User unknown")) == verdict


def test_an_inconsistent_status_alone_is_not_decisive_evidence() -> None:
    # "550 4.1.1" contradicts itself: a bounce, but not one that suppresses on first sight.
    by_status = classify_text("550 4.1.1 <a@example.com>")
    assert (by_status.outcome, by_status.rule) == (Outcome.BOUNCED, "std.status.bad_mailbox")
    assert not by_status.decisive
    # A decisive text still is.
    assert classify_text("550 4.1.1 <a@example.com>: User unknown").decisive


def test_a_consistent_reply_is_not_flagged() -> None:
    assert not classify_text("550 5.1.1 User unknown").inconsistent


def test_an_enhanced_status_alone_is_classified_by_its_class() -> None:
    verdict = classify(Reply(code=None, status=StatusCode(5, 1, 1), text=""))
    assert (verdict.outcome, verdict.decisive) == (Outcome.BOUNCED, True)
    assert classify(Reply(code=None, status=StatusCode(4, 4, 1))).outcome is Outcome.DEFERRED


def test_classify_and_classify_text_agree() -> None:
    text = (
        "host mx.example.com[192.0.2.1] said: 550 5.1.1 <a@b>: User unknown "
        "(in reply to RCPT TO command)"
    )
    assert classify(parse_reply(text)) == classify_text(text)


def test_the_verdict_names_the_rule_that_decided() -> None:
    assert classify_text("550 5.1.1 x").rule == "std.status.bad_mailbox"
    assert classify_text("599 odd").rule == "std.class.5"


def test_classify_text_raises_a_parse_error_naming_the_text() -> None:
    with pytest.raises(ReplyParseError, match="no SMTP reply code"):
        classify_text("hello there")
    # The failure is cached too, and still raised every time.
    with pytest.raises(ReplyParseError):
        classify_text("hello there")


def test_every_reply_code_from_100_to_599_gets_a_verdict_with_a_rule() -> None:
    for code in range(100, 600):
        verdict = classify(Reply(code=code, status=None, text=""))
        assert verdict.rule.startswith("std."), code


# ---- the rule index and the literal prefilter never change a result --------------------------


def _naive_rule(reply: Reply) -> str:
    """First matching rule by trying every rule in order, without any index or prefilter."""
    from deliverability.classify import _conditions_match
    from deliverability.policy import default_policy

    code, status = reply.code, reply.status
    if code is not None and status is not None and status.klass != code // 100:
        status = StatusCode(code // 100, status.subject, status.detail)
    klass = code // 100 if code is not None else status.klass if status else 0
    for rule in default_policy().rules:
        if not _conditions_match(rule, code, status, klass, reply.command):
            continue
        if rule.regex is None or rule.regex.search(reply.text):
            return rule.id
    return "builtin.class_digit"


def _policy_words() -> list[str]:
    """Words of the rules' patterns, and the exact literals their prefilters look for, so that
    generated texts often come close to matching a rule (where a wrong prefilter would show)."""
    from deliverability.classify import required_clauses
    from deliverability.policy import default_policy

    words: set[str] = set()
    for rule in default_policy().rules:
        if rule.text:
            words.update(w for w in re.findall(r"[A-Za-z]{3,}", rule.text))
            for conjunction in required_clauses(rule.text) or ():
                for _, literals in conjunction:
                    words.update(literals)
    return sorted(words)


_WORDS = _policy_words()


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([250, 421, 450, 451, 452, 550, 552, 553, 554, 571]),
    st.sampled_from([None, "5.1.1", "5.7.1", "4.7.0", "5.2.2", "4.2.2", "5.0.0", "5.7.26"]),
    st.lists(st.sampled_from(_WORDS), min_size=0, max_size=8),
    st.sampled_from(["", " ", "-", ".", "'"]),
)
def test_the_indexed_classifier_picks_the_same_rule_as_trying_every_rule_in_order(
    code: int, status: str | None, words: list[str], joiner: str
) -> None:
    text = joiner.join(words)
    reply = Reply(code=code, status=None if status is None else parse_status(status), text=text)
    assert classify(reply).rule == _naive_rule(reply)


def test_the_prefilter_words_of_a_pattern_are_necessary_for_a_match() -> None:
    from deliverability.classify import required_clauses

    clauses = required_clauses(r"(?i)invalid (?:recipient|mailbox)|user unknown")
    assert clauses == (
        (
            (frozenset({"invalid"}), frozenset({"invalid "})),
            (frozenset({"recipient", "mailbox"}), frozenset({"recipient", "mailbox"})),
        ),
        ((frozenset({"unknown"}), frozenset({"user unknown"})),),
    )
    # A literal without a run of letters to look for ("5.7.1", "[bl21]") is still required: it
    # is checked as a substring, with no words to index it.
    with_status = required_clauses(r"(?i)user unknown|5\.7\.1")
    assert with_status is not None
    assert with_status[1] == ((frozenset(), frozenset({"5.7.1"})),)
    # An alternative without a usable literal means the rule is always tried.
    assert required_clauses(r"(?i)user unknown|\d+x") is None


@pytest.mark.parametrize(
    "text",
    ["this message is \u017fpam", "R\u00e9cipient unknown", "Relay access denied \u00e9"],
)
def test_non_ascii_texts_are_classified_without_the_prefilter_and_agree(text: str) -> None:
    reply = Reply(code=550, status=None, text=text)
    assert classify(reply).rule == _naive_rule(reply)


# ---- case-insensitive patterns run on the lower-cased text ---------------------------------

_TRICKY_PATTERNS = [
    r"(?i)[A-Z]{2}\d",
    r"(?i)[^a-c]x",
    r"(?i)\bspam\b|[^)]+:blocked\)",
    r"(?i)(ab)c\1",
    r"(?i)user.?unknown|no such (?:user|mailbox)",
    r"(?i)^service unavailable$",
    r"(?i)(?<=x)Y+",
]


def _translated_patterns() -> list[tuple[re.Pattern[str], re.Pattern[str]]]:
    """(original, lowered form) of the tricky patterns and of every shipped rule's pattern."""
    from deliverability.classify import lowered_regex
    from deliverability.policy import default_policy

    shipped = sorted({rule.text for rule in default_policy().rules if rule.text})
    pairs = []
    for pattern in [*_TRICKY_PATTERNS, *shipped]:
        fast = lowered_regex(pattern)
        if fast is not None:
            pairs.append((re.compile(pattern), fast))
    return pairs


_TRANSLATED = _translated_patterns()


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([*_WORDS, "X", "y", "AB", "ab", "Ab", "[", ")", ":"]),
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=4),
        ),
        max_size=8,
    ).map(" ".join)
)
def test_a_lowered_pattern_finds_what_the_original_finds_in_any_ascii_text(text: str) -> None:
    lowered = text.lower()
    for original, fast in _TRANSLATED:
        expected, found = original.search(text), fast.search(lowered)
        assert (found and found.span()) == (expected and expected.span()), original.pattern


def test_patterns_the_lowered_form_cannot_mimic_keep_their_original() -> None:
    from deliverability.classify import lowered_regex

    assert lowered_regex(r"RESOLVER\.ADR") is None  # case-sensitive
    assert lowered_regex(r"(?i)user (?-i:Unknown)") is None  # a case-sensitive part
    assert lowered_regex("(?i)\u017fpam") is None  # the long s folds to an ASCII "s"
    assert lowered_regex(r"(?i)[\u0100-\u017f]") is None
    assert lowered_regex(r"(?i)user unknown") is not None


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["250", "421", "450", "451", "550", "552", "553", "554", "5.1.1", "#550"]),
    st.sampled_from([" ", "-", ":", "  ", ""]),
    st.sampled_from(["", "2.0.0 ", "4.2.2 ", "5.1.1 ", "5.7.26 ", "5.9.1 ", "4.7.0  "]),
    st.lists(
        st.sampled_from([*_WORDS, "550", "said:", "(in reply to RCPT TO command)"]), max_size=6
    ),
)
def test_classifying_a_text_gives_the_verdict_of_its_parsed_reply(
    code: str, sep: str, status: str, words: list[str]
) -> None:
    text = f"{code}{sep}{status}{' '.join(words)}"
    try:
        reply = parse_reply(text)
    except ReplyParseError:
        with pytest.raises(ReplyParseError):
            classify_text(text)
        return
    assert classify_text(text) == classify(reply)


def test_the_token_memory_of_a_bucket_is_bounded_and_results_do_not_change() -> None:
    from deliverability.classify import _matcher
    from deliverability.policy import default_policy

    texts = [f"<user{i}x{'abcdefghij'[i % 10] * 3}q@example.com>: User unknown" for i in range(60)]
    expected = [classify(Reply(code=550, status=None, text=t)).rule for t in texts]
    bucket = _matcher(default_policy()).bucket(550, None, 5, None)
    limit = bucket.MAX_TOKENS
    try:
        type(bucket).MAX_TOKENS = 5
        bucket.tokens.clear()
        for text, rule in zip(texts, expected, strict=True):
            assert bucket.first_match(text) is default_policy().rule(rule)
            assert len(bucket.tokens) <= 5
    finally:
        type(bucket).MAX_TOKENS = limit


def test_a_pattern_letter_that_folds_to_ascii_is_not_a_prefilter_literal(tmp_path: Path) -> None:
    # Under IGNORECASE the Kelvin sign matches "k" and the long s matches "s": an ASCII reply can
    # match such a pattern, so those letters must not become literals the reply has to contain.
    policy_file = tmp_path / "p.toml"
    policy_file.write_text(
        '[[rule]]\nid = "local.long_s"\ntext = "(?i)\\u017fpam listed"\nclass = [5]\n'
        'outcome = "blocked"\nreason = "blocked"\nfault = "sender"\nsource = "test"\n',
        encoding="utf-8",
    )
    policy = load_policy(policy_file)
    assert classify(Reply(code=550, status=None, text="SPAM listed here"), policy).rule == (
        "local.long_s"
    )


@pytest.mark.parametrize(
    "text",
    [
        "550 5.7.1 user unknown",
        "550 5.7.1 Recipient address rejected: User unknown in virtual mailbox table",
        "554 5.7.0 no such user here",
    ],
)
def test_a_5_7_x_reply_that_says_user_unknown_is_a_bounce_but_not_decisive(text: str) -> None:
    # RFC 3463 section 3.8: X.7.x says the refusal is policy, so the words alone do not prove
    # the mailbox is gone; repeated, the address is suppressed as ambiguous.
    verdict = classify_text(text)
    assert verdict.outcome is Outcome.BOUNCED
    assert verdict.reason is Reason.USER_UNKNOWN
    assert not verdict.decisive


@pytest.mark.parametrize(
    "text", ["550 5.7.13 user unknown", "550 5.7.17 user unknown", "550 5.7.18 user unknown"]
)
def test_the_5_7_x_codes_about_the_account_itself_stay_decisive_with_user_unknown_words(
    text: str,
) -> None:
    verdict = classify_text(text)
    assert (verdict.outcome, verdict.decisive) == (Outcome.BOUNCED, True)


@pytest.mark.parametrize("text", ["550 5.1.1 user unknown", "550 user unknown"])
def test_user_unknown_words_outside_5_7_x_stay_decisive(text: str) -> None:
    verdict = classify_text(text)
    assert (verdict.outcome, verdict.reason, verdict.decisive) == (
        Outcome.BOUNCED,
        Reason.USER_UNKNOWN,
        True,
    )
