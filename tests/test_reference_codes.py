"""Every code of the reference table (shared/reference/smtp-reply-codes.txt) and its default
verdict under the shipped policy, as a bare reply with no enhanced status and no text.

The table is written out here (the test reads nothing from shared/), and docs/codes.md shows the
same table; a test below keeps the two in step.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from deliverability.classify import classify
from deliverability.codes import basic_code, enhanced_status
from deliverability.replies import Reply, StatusCode
from deliverability.vocabulary import Fault, Outcome, Reason

# (code, outcome, reason, fault, decisive)
REFERENCE = [
    (211, "informational", "informational", "unknown", False),
    (214, "informational", "informational", "unknown", False),
    (220, "informational", "informational", "unknown", False),
    (221, "informational", "informational", "unknown", False),
    (250, "delivered", "delivered", "unknown", False),
    (251, "delivered", "delivered", "unknown", False),
    (252, "delivered", "delivered", "unknown", False),
    (253, "informational", "informational", "unknown", False),
    (354, "informational", "informational", "unknown", False),
    (355, "informational", "informational", "unknown", False),
    (421, "deferred", "rate_limited", "destination", False),
    (432, "deferred", "security_error", "sender", False),
    (450, "deferred", "undefined", "recipient", False),
    (451, "deferred", "system_error", "destination", False),
    (452, "deferred", "system_full", "destination", False),
    (453, "informational", "informational", "unknown", False),
    (454, "deferred", "security_error", "sender", False),
    (458, "informational", "informational", "unknown", False),
    (459, "informational", "informational", "unknown", False),
    (500, "blocked", "syntax_error", "sender", False),
    (501, "blocked", "syntax_error", "sender", False),
    (502, "blocked", "mailer_error", "sender", False),
    (503, "blocked", "mailer_error", "sender", False),
    (504, "blocked", "mailer_error", "sender", False),
    (505, "blocked", "security_error", "sender", False),
    (521, "bounced", "not_accept", "domain", True),
    (530, "blocked", "security_error", "sender", False),
    (534, "blocked", "security_error", "sender", False),
    (538, "blocked", "security_error", "sender", False),
    (550, "bounced", "user_unknown", "recipient", False),
    (551, "bounced", "has_moved", "recipient", True),
    (552, "deferred", "mailbox_full", "recipient", False),
    (553, "bounced", "user_unknown", "recipient", False),
    (554, "blocked", "undefined", "unknown", False),
    (571, "blocked", "policy_violation", "sender", False),
    (572, "blocked", "policy_violation", "sender", False),
]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "codes.md"


@pytest.mark.parametrize(
    ("code", "outcome", "reason", "fault", "decisive"),
    REFERENCE,
    ids=[str(r[0]) for r in REFERENCE],
)
def test_reference_code_has_its_default_verdict(
    code: int, outcome: str, reason: str, fault: str, decisive: bool
) -> None:
    verdict = classify(Reply(code=code, status=None, text=""))
    assert (verdict.outcome, verdict.reason, verdict.fault, verdict.decisive) == (
        Outcome(outcome),
        Reason(reason),
        Fault(fault),
        decisive,
    ), verdict.rule


@pytest.mark.parametrize("code", [r[0] for r in REFERENCE])
def test_reference_code_is_in_the_catalogue_with_a_meaning_and_an_rfc(code: int) -> None:
    entry = basic_code(code)
    assert entry is not None
    assert entry.klass == code // 100
    assert entry.meaning
    assert entry.rfc


def test_permanent_reference_codes_never_say_deferred_unless_the_rfc_says_retry() -> None:
    # 552 is the one 5xx the RFC asks clients to treat as temporary (RFC 5321 4.5.3.1.10).
    deferred_5xx = [c for c, outcome, *_ in REFERENCE if c >= 500 and outcome == "deferred"]
    assert deferred_5xx == [552]


def test_no_transient_reference_code_is_final() -> None:
    for code, outcome, *_ in REFERENCE:
        if 400 <= code < 500:
            assert not Outcome(outcome).is_final, code


def test_docs_codes_table_matches_the_default_verdicts() -> None:
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\|\s*(\d{3})\s*\|\s*(\w+)\s*\|\s*(\w+)\s*\|\s*(\w+)\s*\|", line)
        if m:
            rows[int(m.group(1))] = m.group(2, 3, 4)
    assert set(rows) == {r[0] for r in REFERENCE}
    for code, outcome, reason, fault, _ in REFERENCE:
        assert rows[code] == (outcome, reason, fault), code


@pytest.mark.parametrize("subject", range(8))
def test_subject_only_statuses_leave_the_decision_to_the_basic_code(subject: int) -> None:
    # X.n.0 says only the subject ("other ... status"), so 550 5.n.0 is judged as a bare 550,
    # except where the subject itself decides (2.x.x success, 5.7.x policy, 5.6.x content).
    verdict = classify(Reply(code=550, status=StatusCode(5, subject, 0), text=""))
    expected = {6: "std.status.media", 7: "std.status.policy"}.get(subject, "std.code.550")
    assert verdict.rule == expected


def test_every_registry_code_of_class_5_has_a_standards_verdict() -> None:
    for subject in range(8):
        for detail in range(31):
            status = StatusCode(5, subject, detail)
            if enhanced_status(status) is None:
                continue
            verdict = classify(Reply(code=None, status=status, text=""))
            assert verdict.rule.startswith("std."), status
            assert verdict.outcome is not Outcome.INFORMATIONAL, status
