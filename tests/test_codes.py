"""The code catalogue: loaded once, immutable, complete for the IANA enhanced status registry."""

from __future__ import annotations

import dataclasses

import pytest

from deliverability.codes import (
    EnhancedCode,
    all_basic_codes,
    all_enhanced_codes,
    basic_code,
    enhanced_status,
    reply_class_meaning,
    status_class_meaning,
    status_subject_meaning,
)
from deliverability.errors import ReplyParseError
from deliverability.replies import StatusCode

# The registry's detail codes per subject (IANA "SMTP Enhanced Status Codes", as of RFC 8689).
REGISTRY_DETAILS = {
    0: range(1),
    1: range(11),
    2: range(5),
    3: range(7),
    4: range(8),
    5: range(7),
    6: range(11),
    7: range(31),
}


def test_the_catalogue_holds_the_whole_enhanced_status_registry() -> None:
    expected = {f"X.{s}.{d}" for s, details in REGISTRY_DETAILS.items() for d in details}
    assert {c.status for c in all_enhanced_codes()} == expected


@pytest.mark.parametrize("entry", all_enhanced_codes(), ids=lambda e: e.status)
def test_every_enhanced_code_has_a_title_a_meaning_and_an_rfc_or_registry_source(
    entry: EnhancedCode,
) -> None:
    assert entry.title
    assert entry.meaning
    assert entry.rfc.startswith(("RFC ", "IANA "))


def test_enhanced_status_looks_up_any_class_by_subject_and_detail() -> None:
    assert enhanced_status(StatusCode(5, 1, 1)) is enhanced_status(StatusCode(4, 1, 1))
    entry = enhanced_status("5.7.26")
    assert entry is not None
    assert entry.status == "X.7.26"
    assert "RFC 7372" in entry.rfc


def test_later_rfcs_are_credited_for_their_codes() -> None:
    sources = {
        "5.1.10": "RFC 7505",
        "5.7.17": "RFC 7293",
        "5.7.13": "RFC 5248",
        "5.5.6": "RFC 4954",
        "5.6.6": "RFC 4468",
        "5.3.6": "RFC 6710",
        "5.6.7": "RFC 6531",
        "5.7.29": "RFC 8617",
        "5.7.30": "RFC 8689",
    }
    for status, rfc in sources.items():
        entry = enhanced_status(status)
        assert entry is not None
        assert rfc in entry.rfc, status


def test_an_unregistered_status_is_none_not_an_error() -> None:
    assert enhanced_status(StatusCode(5, 7, 99)) is None
    assert basic_code(599) is None


def test_a_malformed_status_string_is_a_parse_error() -> None:
    with pytest.raises(ReplyParseError):
        enhanced_status("5.9")


def test_basic_codes_know_their_class_and_its_meaning() -> None:
    entry = basic_code(421)
    assert entry is not None
    assert entry.klass == 4
    assert "Transient" in entry.class_meaning
    assert {c.code for c in all_basic_codes()} >= {250, 421, 550, 554}


def test_catalogue_entries_are_immutable() -> None:
    entry = basic_code(550)
    assert entry is not None
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.meaning = "x"  # type: ignore[misc]


def test_class_and_subject_meanings_cover_the_rfc_values() -> None:
    assert all(status_class_meaning(k) != "not a class RFC 3463 defines" for k in (2, 4, 5))
    assert all(status_subject_meaning(s) != "not a subject RFC 3463 defines" for s in range(8))
    assert "Permanent" in reply_class_meaning(5)
    assert status_subject_meaning(9) == "not a subject RFC 3463 defines"
