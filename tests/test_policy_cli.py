"""`deliverability policy show | check FILE`."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from click.testing import CliRunner

from deliverability.cli import cli
from deliverability.policy import default_policy, load_policy


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_policy_show_toml_reads_back_as_the_same_policy(tmp_path: Path) -> None:
    code, out = run("policy", "show")
    assert code == 0
    tomllib.loads(out)
    copy = tmp_path / "copy.toml"
    copy.write_text(out)
    again = load_policy(copy)
    shipped = default_policy()
    assert [r.id for r in again.rules] == [r.id for r in shipped.rules]
    assert [r.as_dict() | {"origin": ""} for r in again.rules] == [
        r.as_dict() | {"origin": ""} for r in shipped.rules
    ]
    assert again.backoff == shipped.backoff
    assert again.hygiene == shipped.hygiene
    assert again.throttle == shipped.throttle
    assert again.reputation == shipped.reputation


def test_policy_show_json_lists_numbers_and_rules_in_order() -> None:
    code, out = run("policy", "show", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["backoff"]["first_retry"] == "30m"
    ids = [r["id"] for r in data["rule"]]
    assert ids[-1] == "std.class.other"
    assert ids.index("std.status.bad_mailbox") < ids.index("std.code.550")


def test_policy_show_reflects_the_user_file(tmp_path: Path) -> None:
    user = tmp_path / "p.toml"
    user.write_text('[backoff]\nlifetime = "4d"\n')
    code, out = run("--policy", str(user), "policy", "show", "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["backoff"]["lifetime"] == "4d"
    assert data["source_files"][0] == str(user)


def test_policy_check_prints_each_problem_with_file_and_line_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "[backoff]\n"
        'first_retry = "soon"\n'
        "\n"
        "[[rule]]\n"
        'id = "x.one"\n'
        'text = "(unclosed"\n'
        'outcome = "bounced"\n'
        'reason = "user_unknown"\n'
        'fault = "recipient"\n'
        'source = "test"\n'
    )
    code, out = run("policy", "check", str(bad))
    assert code == 1
    assert f"{bad}:2: error: backoff.first_retry: not a duration" in out
    assert f"{bad}:6: error: rule x.one.text: bad regular expression" in out
    assert "(fix: " in out


def test_policy_check_exits_0_for_a_clean_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[hygiene]\nambiguous_count = 3\n")
    code, out = run("policy", "check", str(good))
    assert code == 0
    assert "no problems" in out


def test_policy_check_warnings_alone_exit_0(tmp_path: Path) -> None:
    warn = tmp_path / "warn.toml"
    warn.write_text('[backoff]\nfirst_retry = "5m"\n')
    code, out = run("policy", "check", str(warn))
    assert code == 0
    assert f"{warn}:2: warning: backoff.first_retry: RFC 5321" in out


def test_policy_check_of_a_missing_file_names_it() -> None:
    result = CliRunner().invoke(cli, ["policy", "check", "nope.toml"], standalone_mode=False)
    assert "nope.toml" in str(result.exception)
    assert "does not exist" in str(result.exception)


def test_policy_check_gives_a_wrong_type_its_expected_type_and_an_example(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[hygiene]\nsoft_strikes = "three"\n')
    code, out = run("policy", "check", str(bad))
    assert code == 1
    assert (
        f"{bad}:2: error: hygiene.soft_strikes: expected a whole number, got 'three' "
        "(fix: write a whole number, like soft_strikes = 3)"
    ) in out


def test_policy_check_names_every_section_for_an_unknown_top_level_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[reputaton]\nbounce_review = 0.05\n")
    code, out = run("policy", "check", str(bad))
    assert code == 1
    assert (
        f"{bad}:1: error: reputaton: unknown key 'reputaton' "
        "(fix: the top-level keys are: backoff, throttle, hygiene, reputation, rule)"
    ) in out


def test_an_empty_policy_variable_is_an_error_not_the_shipped_policy_in_silence() -> None:
    # DELIVERABILITY_POLICY set from a missing secret or a typo'd variable: the user's own rules
    # and numbers were silently left out.
    result = CliRunner().invoke(
        cli, ["explain", "550 5.1.1 User unknown"], env={"DELIVERABILITY_POLICY": ""}
    )
    assert result.exit_code != 0
    assert "DELIVERABILITY_POLICY is set but empty" in result.output


def test_an_empty_policy_option_is_an_error_naming_it_not_a_folder_read_error() -> None:
    # `--policy "$FILE"` with FILE unset: click reads "" as the working folder.
    result = CliRunner().invoke(cli, ["--policy", "", "explain", "550 x"])
    assert result.exit_code != 0
    assert "Invalid value for --policy: is empty" in result.output
