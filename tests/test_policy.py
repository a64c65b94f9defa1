"""Policy as data: loading, layering, overriding, and `check_policy_file` with line numbers."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliverability.classify import classify_text
from deliverability.errors import ConfigError, PolicyError, Problem
from deliverability.policy import (
    PROVIDER_RULES_FILE,
    StatusPattern,
    check_policy_file,
    check_shipped_files,
    default_policy,
    expand_code_pattern,
    format_duration,
    load_policy,
    parse_duration,
)
from deliverability.replies import StatusCode
from deliverability.vocabulary import Outcome, Reason

RULE = """
[[rule]]
id = "{id}"
{conditions}
outcome = "{outcome}"
reason = "user_unknown"
fault = "recipient"
source = "test"
"""


def write(tmp_path: Path, text: str, name: str = "policy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_by_line(path: Path) -> dict[int | None, list[Problem]]:
    found: dict[int | None, list[Problem]] = {}
    for p in check_policy_file(path):
        found.setdefault(p.line, []).append(p)
    return found


def test_the_shipped_policy_files_have_no_problems() -> None:
    assert [str(p) for p in check_shipped_files()] == []


def test_the_default_policy_is_loaded_once() -> None:
    assert load_policy() is default_policy()
    assert load_policy(None) is load_policy()


def test_shipped_rules_are_ordered_provider_rules_then_standards_then_class_digit() -> None:
    policy = default_policy()
    ids = [r.id for r in policy.rules]
    first_std = next(i for i, rule_id in enumerate(ids) if rule_id.startswith("std."))
    assert all(not rule_id.startswith("std.") for rule_id in ids[:first_std])
    assert all(rule_id.startswith("std.") for rule_id in ids[first_std:])
    assert (
        ids.index("std.status.bad_mailbox") < ids.index("std.code.550") < ids.index("std.class.5")
    )
    assert ids[-4:] == ["std.class.2", "std.class.4", "std.class.5", "std.class.other"]
    if first_std:
        assert policy.source_files[0] == PROVIDER_RULES_FILE


def test_user_rules_come_first_and_win(tmp_path: Path) -> None:
    path = write(tmp_path, RULE.format(id="local.x", conditions="code = [250]", outcome="bounced"))
    policy = load_policy(path)
    assert policy.rules[0].id == "local.x"
    assert policy.source_files[0] == str(path)
    assert classify_text("250 2.0.0 OK", policy).rule == "local.x"
    # The shipped policy is untouched.
    assert classify_text("250 2.0.0 OK").outcome is Outcome.DELIVERED


def test_a_user_rule_with_a_shipped_id_replaces_the_shipped_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        RULE.format(id="std.code.552", conditions="code = [552]", outcome="bounced"),
    )
    policy = load_policy(path)
    assert [r.id for r in policy.rules].count("std.code.552") == 1
    assert classify_text("552 Requested mail action aborted", policy).outcome is Outcome.BOUNCED


def test_user_numbers_override_only_what_they_set(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[backoff]\nlifetime = "4d"\n[hygiene]\nambiguous_count = 3\n'
        '[hygiene.suppression_expiry]\nmailbox_full = "90d"\n'
        '[throttle.providers.example]\ndomains = ["Example.COM"]\n',
    )
    policy = load_policy(path)
    assert policy.backoff.lifetime == timedelta(days=4)
    assert policy.backoff.first_retry == timedelta(minutes=30)
    assert policy.hygiene.ambiguous_count == 3
    assert policy.hygiene.suppression_expiry == {Reason.MAILBOX_FULL: timedelta(days=90)}
    assert policy.throttle.provider_domains["example"] == ("example.com",)
    # The shipped provider groups stay.
    assert "gmail.com" in policy.throttle.provider_domains["google"]


def test_the_shipped_numbers_are_the_design_defaults() -> None:
    policy = default_policy()
    assert policy.backoff.first_retry == timedelta(minutes=30)
    assert policy.backoff.max_interval == timedelta(hours=4)
    assert policy.backoff.lifetime == timedelta(days=5)
    assert policy.throttle.initial_pause == timedelta(minutes=15)
    assert policy.throttle.max_pause == timedelta(hours=4)
    assert (policy.hygiene.ambiguous_count, policy.hygiene.ambiguous_window) == (
        2,
        timedelta(days=30),
    )
    assert policy.hygiene.soft_strikes == 3
    assert policy.hygiene.soft_span == timedelta(days=7)
    assert policy.hygiene.soft_reasons == {Reason.MAILBOX_FULL, Reason.SUSPEND, Reason.EXPIRED}
    assert policy.hygiene.incident_addresses == 20
    assert policy.reputation.bounce_review == 0.05


def test_load_policy_refuses_a_file_with_errors_listing_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, '[backoff]\nlifetime = "long"\nfirst_retry = "x"\n')
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert len(info.value.problems) == 2
    assert f"{path}:2" in str(info.value)
    assert f"{path}:3" in str(info.value)


def test_load_policy_of_a_missing_file_is_a_config_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml"):
        load_policy(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        ("[backof]\nx = 1\n", 1, "backof", "unknown key 'backof'"),
        ("[backoff]\n\nlifetme = '5d'\n", 3, "backoff.lifetme", "unknown key 'lifetme'"),
        ("[backoff]\nlifetime = '5 days'\n", 2, "backoff.lifetime", "not a duration"),
        ("[backoff]\nmultiplier = 0.5\n", 2, "backoff.multiplier", "between 1 and 10"),
        ("[hygiene]\nambiguous_count = 0\n", 2, "hygiene.ambiguous_count", "at least 1"),
        ("[hygiene]\nincident_fraction = 1.5\n", 2, "hygiene.incident_fraction", "at most 1"),
        ("[hygiene]\nsoft_reasons = ['full']\n", 2, "hygiene.soft_reasons", "unknown reason"),
        ("[reputation]\nbounce_review = 0.2\n", 2, "reputation.bounce_review", "below"),
        ("[backoff]\nlifetime = 5\n", 2, "backoff.lifetime", "not a duration"),
        ("[hygiene]\nsoft_strikes = 'three'\n", 2, "hygiene.soft_strikes", "whole number"),
        ("[backoff]\nx = [\n", 2, "(syntax)", "not valid TOML"),
        ("[backoff]\nx = = 1\n", 2, "(syntax)", "not valid TOML"),
    ],
)
def test_check_reports_number_problems_with_their_line(
    tmp_path: Path, text: str, line: int, key: str, message: str
) -> None:
    problems = check_policy_file(write(tmp_path, text))
    assert any(
        p.line == line and p.key == key and message in p.message and p.severity == "error"
        for p in problems
    ), [str(p) for p in problems]


def test_check_reports_every_rule_problem_with_its_line(tmp_path: Path) -> None:
    text = (
        "[[rule]]\n"  # 1
        'id = "a.one"\n'  # 2
        'text = "(?i)ok("\n'  # 3
        'status = ["5.9.x"]\n'  # 4
        'code = ["6xx"]\n'  # 5
        'outcome = "maybe"\n'  # 6
        'reason = "sad"\n'  # 7
        'fault = "nobody"\n'  # 8
        'retry_after = "soon"\n'  # 9
        'colour = "red"\n'  # 10
        'source = "test"\n'  # 11
        "\n"
        "[[rule]]\n"  # 13
        'id = "a.two"\n'  # 14
        'outcome = "bounced"\n'
        'reason = "user_unknown"\n'
        'fault = "recipient"\n'
    )
    by_line = problems_by_line(write(tmp_path, text))
    messages = {line: " | ".join(p.message for p in ps) for line, ps in by_line.items()}
    assert "bad regular expression" in messages[3]
    assert "status pattern" in messages[4]
    assert "not a reply code pattern" in messages[5]
    assert "unknown outcome 'maybe'" in messages[6]
    assert "unknown reason 'sad'" in messages[7]
    assert "unknown fault 'nobody'" in messages[8]
    assert "not a duration" in messages[9]
    assert "unknown key 'colour'" in messages[10]
    assert "no condition" in messages[13]
    # A user rule without a source is only a warning.
    assert any(p.severity == "warning" and p.key == "rule a.two.source" for p in by_line[13])


def test_check_finds_a_rule_shadowed_by_an_earlier_one(tmp_path: Path) -> None:
    text = (
        RULE.format(id="a.broad", conditions='status = ["5.1.*"]', outcome="bounced")
        + RULE.format(
            id="a.narrow", conditions='status = ["5.1.1"]\ncode = [550]', outcome="bounced"
        )
        + RULE.format(
            id="a.with_text", conditions='status = ["5.1.1"]\ntext = "x"', outcome="bounced"
        )
    )
    problems = check_policy_file(write(tmp_path, text))
    shadowed = [p for p in problems if "can never match" in p.message]
    assert [p.key for p in shadowed] == ["rule a.narrow", "rule a.with_text"]
    assert shadowed[0].line == 10
    assert "a.broad" in shadowed[0].message


def test_a_narrower_rule_first_is_not_shadowing(tmp_path: Path) -> None:
    text = RULE.format(
        id="a.narrow", conditions='status = ["5.1.1"]', outcome="bounced"
    ) + RULE.format(id="a.broad", conditions='status = ["5.1.*"]', outcome="bounced")
    assert check_policy_file(write(tmp_path, text)) == []


def test_a_class_rule_shadows_a_code_rule_of_the_same_class(tmp_path: Path) -> None:
    text = RULE.format(id="a.all5", conditions="class = [5]", outcome="bounced") + RULE.format(
        id="a.550", conditions="code = ['55x']", outcome="bounced"
    )
    problems = check_policy_file(write(tmp_path, text))
    assert [p.key for p in problems] == ["rule a.550"]


def test_check_finds_duplicate_rule_ids(tmp_path: Path) -> None:
    text = RULE.format(id="a.same", conditions="code = [550]", outcome="bounced") + RULE.format(
        id="a.same", conditions="code = [551]", outcome="bounced"
    )
    problems = check_policy_file(write(tmp_path, text))
    assert any("duplicate rule id" in p.message and p.line == 11 for p in problems)


def test_a_duplicate_rule_id_is_reported_even_when_that_rule_has_other_errors(
    tmp_path: Path,
) -> None:
    text = RULE.format(id="a.same", conditions="code = [550]", outcome="bounced") + RULE.format(
        id="a.same", conditions="code = [551]", outcome="maybe"
    )
    problems = check_policy_file(write(tmp_path, text))
    assert any("duplicate rule id" in p.message and p.line == 11 for p in problems)
    assert any("unknown outcome" in p.message for p in problems)


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("text = '(?i)spam'", "text = '(?i)spam detected'\ncode = [550]"),
        ("text = '(?i)SPAM'\ncode = ['5xx']", "text = '(?i)spam detected'\ncode = [550]"),
        ("text = 'blocked'", "text = 'you are blocked here'"),
    ],
)
def test_a_literal_text_rule_hidden_behind_an_earlier_broader_literal_is_shadowed(
    tmp_path: Path, earlier: str, later: str
) -> None:
    text = RULE.format(id="a.broad", conditions=earlier, outcome="bounced") + RULE.format(
        id="a.narrow", conditions=later, outcome="bounced"
    )
    problems = check_policy_file(write(tmp_path, text))
    shadowed = [p for p in problems if "can never match" in p.message]
    later_line = text.count("\n", 0, text.rindex("[[rule]]")) + 1
    assert [(p.key, p.line) for p in shadowed] == [("rule a.narrow", later_line)], problems
    assert "a.broad" in shadowed[0].message
    assert shadowed[0].fix


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        # Different flags: the earlier one is case-sensitive.
        ("text = 'spam'", "text = '(?i)spam detected'"),
        ("text = 'Spam'", "text = 'spam detected'"),
        # The earlier pattern is a regular expression, not a plain literal.
        ("text = '(?i)sp.m'", "text = '(?i)spam detected'"),
        # The later pattern is a regular expression.
        ("text = '(?i)spam'", "text = '(?i)spam (detected|found)'"),
        # The earlier rule's other conditions are narrower.
        ("text = '(?i)spam'\ncode = [550]", "text = '(?i)spam detected'"),
    ],
)
def test_a_text_rule_is_not_called_shadowed_when_it_is_not_decidably_so(
    tmp_path: Path, earlier: str, later: str
) -> None:
    text = RULE.format(id="a.first", conditions=earlier, outcome="bounced") + RULE.format(
        id="a.second", conditions=later, outcome="bounced"
    )
    problems = check_policy_file(write(tmp_path, text))
    assert [p for p in problems if "can never match" in p.message] == []


@pytest.mark.parametrize(("pattern", "what"), [("5.9.1", "subject 9"), ("X.8.*", "subject 8")])
def test_a_status_pattern_no_reply_can_carry_is_a_warning(
    tmp_path: Path, pattern: str, what: str
) -> None:
    text = RULE.format(id="a.odd", conditions=f"status = ['{pattern}']", outcome="bounced")
    problems = check_policy_file(write(tmp_path, text))
    assert [(p.severity, p.line) for p in problems] == [("warning", 4)], problems
    assert what in problems[0].message
    assert "RFC 3463" in problems[0].message


def test_problem_text_has_file_line_severity_key_message_and_fix(tmp_path: Path) -> None:
    path = write(tmp_path, "[backoff]\nlifetime = 'x'\n")
    (problem,) = check_policy_file(path)
    assert str(problem) == (
        f"{path}:2: error: backoff.lifetime: not a duration: 'x' (expected a number and a unit "
        "s, m, h, d or w, like '30m') (fix: write a duration like '30m', '4h' or '5d')"
    )


@pytest.mark.parametrize("text", ["3000000d", "99999999999d", "5300w"])
def test_a_duration_longer_than_a_century_is_a_problem_with_its_line(
    tmp_path: Path, text: str
) -> None:
    # "3000000d" passed the check and then stopped every nightly run ("date value out of
    # range"); "99999999999d" stopped the check itself (OverflowError).
    path = write(tmp_path, f"[backoff]\nlifetime = '{text}'\n")
    (problem,) = check_policy_file(path)
    assert f"{path}:2: error: backoff.lifetime: duration '{text}' is longer than" in str(problem)
    with pytest.raises(ValueError, match="100 years"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h30m", timedelta(minutes=90)),
        ("5d", timedelta(days=5)),
        ("1w", timedelta(days=7)),
    ],
)
def test_parse_duration_reads_units(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


@given(st.integers(min_value=0, max_value=10**8))
def test_format_duration_reads_back_to_the_same_value(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


def test_status_patterns_match_class_wildcards_and_subject_wildcards() -> None:
    assert StatusPattern.parse("X.1.1").matches(StatusCode(4, 1, 1))
    assert StatusPattern.parse("5.7.*").matches(StatusCode(5, 7, 26))
    assert not StatusPattern.parse("5.7.*").matches(StatusCode(4, 7, 26))
    assert StatusPattern.parse("5.*.*").covers(StatusPattern.parse("5.7.1"))
    assert not StatusPattern.parse("5.7.1").covers(StatusPattern.parse("X.7.1"))
    with pytest.raises(ValueError, match="class must be"):
        StatusPattern.parse("3.1.1")


def test_code_patterns_expand_x_to_any_digit() -> None:
    assert expand_code_pattern(550) == {550}
    assert expand_code_pattern("55x") == set(range(550, 560))
    assert expand_code_pattern("5XX") == set(range(500, 600))
    with pytest.raises(ValueError, match="not a reply code pattern"):
        expand_code_pattern("5x")


def test_a_deeply_nested_file_is_a_syntax_problem_not_a_crash(tmp_path: Path) -> None:
    (problem,) = check_policy_file(write(tmp_path, "a = " + "[" * 100_000))
    assert (problem.key, problem.severity) == ("(syntax)", "error")
    assert "nested too deep" in problem.message


def test_an_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    text = '[[rule]]\nid = "x"\ntext = "' + "a" * 2_000_000 + '"\n'
    (problem,) = check_policy_file(write(tmp_path, text))
    assert problem.key == "(size)"
    assert "limit" in problem.message


def test_an_oversized_rule_pattern_is_refused_with_its_line(tmp_path: Path) -> None:
    text = RULE.format(id="a.big", conditions='text = "' + "a" * 5000 + '"', outcome="bounced")
    problems = check_policy_file(write(tmp_path, text))
    assert [(p.line, p.key) for p in problems] == [(4, "rule a.big.text")]


# ---- every problem comes with a fix ---------------------------------------------------------


def test_an_unknown_top_level_key_lists_every_section_of_the_schema(tmp_path: Path) -> None:
    from deliverability.policy import SECTIONS

    (problem,) = check_policy_file(write(tmp_path, "[reputaton]\nbounce_review = 0.05\n"))
    assert problem.line == 1
    assert problem.key == "reputaton"
    for name in [*SECTIONS, "rule"]:
        assert name in problem.fix
    assert "reputation" in problem.fix


@pytest.mark.parametrize(
    ("text", "key", "fix"),
    [
        (
            '[hygiene]\nsoft_strikes = "three"\n',
            "hygiene.soft_strikes",
            "write a whole number, like soft_strikes = 3",
        ),
        (
            "[hygiene]\nincident_fraction = 'half'\n",
            "hygiene.incident_fraction",
            "write a number, like incident_fraction = 0.5",
        ),
        (
            "[throttle]\nrelease_after_deliveries = 2.5\n",
            "throttle.release_after_deliveries",
            "write a whole number, like release_after_deliveries = 20",
        ),
        (
            "[backoff]\nfirst_retry = 30\n",
            "backoff.first_retry",
            "write a duration like '30m', '4h' or '5d'",
        ),
        (
            "[hygiene]\nsoft_reasons = 3\n",
            "hygiene.soft_reasons",
            "write a list of reasons, like soft_reasons = ['expired', 'mailbox_full', 'suspend']",
        ),
        (
            "[reputation]\nwindows = 7\n",
            "reputation.windows",
            "write a list of durations like ['7d', '30d']",
        ),
    ],
)
def test_a_value_of_the_wrong_type_names_the_expected_type_and_an_example(
    tmp_path: Path, text: str, key: str, fix: str
) -> None:
    path = write(tmp_path, text)
    (problem,) = check_policy_file(path)
    assert (problem.file, problem.line, problem.key) == (str(path), 2, key)
    assert problem.fix == fix, str(problem)


@pytest.mark.parametrize(
    "text", ["# mine\nhygiene = 3\n", "# mine\n[[hygiene]]\nsoft_strikes = 3\n"]
)
def test_a_section_that_is_not_a_table_is_reported_at_its_line_with_a_fix(
    tmp_path: Path, text: str
) -> None:
    path = write(tmp_path, text)
    (problem,) = check_policy_file(path)
    assert (problem.line, problem.key, problem.message) == (2, "hygiene", "must be a table")
    assert problem.fix == "write it as [hygiene]"


def test_every_problem_of_a_file_full_of_mistakes_has_a_line_and_a_fix(tmp_path: Path) -> None:
    text = (
        "colour = 'red'\n"
        "[backoff]\n"
        "jitter = 'some'\n"
        "multiplier = true\n"
        "lifetime = ['5d']\n"
        "[hygiene]\n"
        "soft_strikes = 'three'\n"
        "suppression_expiry = 'never'\n"
        "soft_reasons = ['full']\n"
        "[reputation]\n"
        "min_messages = -1\n"
        "windows = []\n"
        "[[rule]]\n"
        "id = 'a.one'\n"
        "class = ['five']\n"
        "command = 'MAIL'\n"
        "decisive = 'yes'\n"
        "why = 3\n"
        "outcome = 'bounced'\n"
        "reason = 'user_unknown'\n"
        "fault = 'recipient'\n"
        "source = 'test'\n"
        "[[rule]]\n"
        "id = 'a.two'\n"
        "text = ''\n"
        "outcome = 'bounced'\n"
        "reason = 'user_unknown'\n"
        "fault = 'recipient'\n"
        "source = 'test'\n"
        "[throttle.providers.big]\n"
        "domains = 'big.example'\n"
        "hosts = ['mx.big.example']\n"
    )
    problems = check_policy_file(write(tmp_path, text))
    assert len(problems) >= 14, [str(p) for p in problems]
    for problem in problems:
        assert problem.line is not None, str(problem)
        assert problem.fix, str(problem)


def test_a_rule_written_as_a_plain_table_is_named_with_its_line(tmp_path: Path) -> None:
    (problem,) = check_policy_file(
        write(tmp_path, "[hygiene]\nsoft_strikes = 3\n\n[rule]\nid = 'x'\n")
    )
    assert (problem.line, problem.key, problem.fix) == (4, "rule", "write [[rule]]")


def test_a_file_that_is_not_utf8_is_a_problem_with_its_line_and_a_fix(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[backoff]\n# caf\xe9\nlifetime = '5d'\n")
    (problem,) = check_policy_file(path)
    assert (problem.file, problem.line, problem.key) == (str(path), 2, "(encoding)")
    assert "UTF-8" in problem.fix
    with pytest.raises(PolicyError, match=r"latin1\.toml:2"):
        load_policy(path)


@pytest.mark.parametrize(
    ("text", "line", "key", "severity", "message"),
    [
        (
            "[hygiene]\nsoft_span = '40d'\n",
            2,
            "hygiene.soft_span",
            "error",
            "must not be longer than soft_window (40d is longer than 30d)",
        ),
        (
            "[hygiene]\nsoft_window = '5d'\n",
            2,
            "hygiene.soft_window",
            "error",
            "must not be shorter than soft_span (5d is shorter than 7d)",
        ),
        (
            "[backoff]\nfirst_retry = '6h'\n",
            2,
            "backoff.first_retry",
            "warning",
            "must not be longer than max_interval (6h is longer than 4h)",
        ),
        (
            "[throttle]\ninitial_pause = '5h'\nrepeat_window = '8h'\n",
            2,
            "throttle.initial_pause",
            "warning",
            "must not be longer than max_pause (5h is longer than 4h)",
        ),
        (
            # Push-backs once the pause is over fall outside the window: the pause never grows.
            "[throttle]\nrepeat_window = '10m'\n",
            2,
            "throttle.repeat_window",
            "warning",
            "must not be shorter than initial_pause (10m is shorter than 15m)",
        ),
        (
            "[throttle]\nmin_rate = 100.0\n",
            2,
            "throttle.min_rate",
            "warning",
            "must not be above initial_rate (100.0 is above 60.0)",
        ),
    ],
)
def test_numbers_that_contradict_each_other_are_reported_at_the_key_set(
    tmp_path: Path, text: str, line: int, key: str, severity: str, message: str
) -> None:
    (problem,) = check_policy_file(write(tmp_path, text))
    assert (problem.line, problem.key, problem.severity) == (line, key, severity)
    assert problem.message == message
    assert problem.fix


def test_a_soft_span_longer_than_its_window_is_refused_by_load_policy(tmp_path: Path) -> None:
    # Strikes are counted within soft_window: they could never span a longer soft_span.
    with pytest.raises(PolicyError, match="soft_span"):
        load_policy(write(tmp_path, "[hygiene]\nsoft_span = '60d'\nsoft_window = '30d'\n"))


def test_relay_hosts_are_read_as_lower_case_host_names_and_shown(tmp_path: Path) -> None:
    policy = load_policy(write(tmp_path, "[throttle]\nrelay_hosts = ['Smarthost.Example.NET.']\n"))
    assert policy.throttle.relay_hosts == ("smarthost.example.net",)
    assert policy.as_dict()["throttle"]["relay_hosts"] == ["smarthost.example.net"]
    # None by default: every relay= names the recipient's MX.
    assert default_policy().throttle.relay_hosts == ()


@pytest.mark.parametrize(
    "value", ["'smarthost.example.net'", "[1, 2]", "['']", "['*.relay.example.net']"]
)
def test_relay_hosts_that_are_not_a_list_of_host_names_are_a_problem_with_a_fix(
    tmp_path: Path, value: str
) -> None:
    (problem,) = check_policy_file(write(tmp_path, f"[throttle]\nrelay_hosts = {value}\n"))
    assert (problem.line, problem.key) == (2, "throttle.relay_hosts")
    assert "relay_hosts = ['smtp.relay.example.net']" in problem.fix


def test_a_rule_source_of_the_wrong_type_is_one_problem_not_also_a_missing_source(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "[[rule]]\nid = 'mine.x'\ncode = 550\noutcome = 'bounced'\nreason = 'user_unknown'\n"
        "fault = 'recipient'\nsource = 5\n",
    )
    (problem,) = check_policy_file(path)
    assert (problem.line, problem.key, problem.message) == (
        7,
        "rule mine.x.source",
        "expected a string, got 5",
    )


def test_a_rule_with_an_empty_source_is_still_warned_about(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[[rule]]\nid = 'mine.x'\ncode = 550\noutcome = 'bounced'\nreason = 'user_unknown'\n"
        "fault = 'recipient'\nsource = ' '\n",
    )
    (problem,) = check_policy_file(path)
    assert (problem.severity, problem.message) == (
        "warning",
        "the rule does not say where it comes from",
    )


def test_a_wrong_value_is_quoted_as_the_toml_file_writes_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[backoff]\nmultiplier = true\n[reputation]\nwindows = [true]\n")
    messages = [p.message for p in check_policy_file(path)]
    assert any(m.endswith("got true") for m in messages), messages
    assert not any("True" in m for m in messages), messages


@pytest.mark.parametrize(
    ("days", "text"), [(7, "1w"), (14, "2w"), (30, "30d"), (90, "90d"), (36_500, "36500d")]
)
def test_a_duration_is_written_in_weeks_only_where_that_is_shorter(days: int, text: str) -> None:
    # `policy show` wrote the shipped "90d" as "12w6d": the same value, harder to read.
    assert format_duration(timedelta(days=days)) == text


def test_a_zero_rule_retry_after_or_pause_is_a_problem_with_its_line(tmp_path: Path) -> None:
    # A retry at once or a throttle that pauses nothing is no setting anyone means: the numbers
    # sections refuse a zero duration, and a rule's durations must too.
    path = write(
        tmp_path,
        RULE.format(
            id="my.zero",
            conditions='code = [421]\nretry_after = "0s"\npause = "0m"',
            outcome="deferred",
        ),
    )
    found = {p.key: p for p in check_policy_file(path)}
    assert found["rule my.zero.retry_after"].line == 5
    assert found["rule my.zero.pause"].line == 6
    assert "longer than zero" in found["rule my.zero.pause"].message
    with pytest.raises(PolicyError):
        load_policy(path)


def test_a_suppression_expiry_of_zero_is_a_problem_not_a_suppression_that_never_holds(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, '[hygiene.suppression_expiry]\nmailbox_full = "0s"\n')
    (problem,) = check_policy_file(path)
    assert (problem.line, problem.key) == (2, "hygiene.suppression_expiry.mailbox_full")
    assert "longer than zero" in problem.message
    with pytest.raises(PolicyError):
        load_policy(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("mx_suffixes", "''"),
        ("mx_suffixes", "'.'"),
        ("mx_suffixes", "'*.messagingengine.com'"),
        ("domains", "'@fastmail.com'"),
        ("domains", "'fastmail com'"),
    ],
)
def test_a_provider_group_entry_that_is_no_host_name_is_a_problem_with_its_line(
    tmp_path: Path, key: str, value: str
) -> None:
    # Such an entry never matched a recipient's domain or an MX host, silently: a wildcard or a
    # stray character made the whole group a no-op.
    path = write(tmp_path, f"[throttle.providers.fastmail]\n{key} = ['fastmail.com', {value}]\n")
    (problem,) = check_policy_file(path)
    assert (problem.line, problem.key) == (2, f"throttle.providers.fastmail.{key}")
    assert value.strip("'") in problem.message
    with pytest.raises(PolicyError):
        load_policy(path)


def test_provider_group_entries_are_read_as_the_store_writes_domains(tmp_path: Path) -> None:
    # Recipient domains are kept lower-case, IDNA-encoded and without a final dot
    # (addresses.normalize_domain): a group entry written otherwise never met one.
    policy = load_policy(
        write(
            tmp_path,
            "[throttle.providers.example]\n"
            "domains = ['Example.COM.', 'bücher.example']\n"
            "mx_suffixes = ['.MX.Example.NET', 'mx.bücher.example']\n"
            "[throttle]\nrelay_hosts = ['relay.bücher.example']\n",
        )
    )
    throttle = policy.throttle
    assert throttle.provider_domains["example"] == ("example.com", "xn--bcher-kva.example")
    assert throttle.provider_mx_suffixes["example"] == (
        ".mx.example.net",
        "mx.xn--bcher-kva.example",
    )
    assert throttle.relay_hosts == ("relay.xn--bcher-kva.example",)
