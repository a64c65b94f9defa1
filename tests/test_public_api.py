"""The public surface: what `deliverability.__all__` names exists, and nothing else is promised."""

from __future__ import annotations

import subprocess
import sys

import pytest

import deliverability


def test_every_name_in_all_is_importable_from_the_package() -> None:
    for name in deliverability.__all__:
        assert getattr(deliverability, name) is not None, name


def test_all_is_sorted_and_has_no_duplicates() -> None:
    assert deliverability.__all__ == sorted(set(deliverability.__all__))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        deliverability.no_such_thing  # noqa: B018


def test_classifying_a_reply_does_not_load_the_store() -> None:
    code = (
        "import sys, deliverability as d;"
        "d.classify(d.parse_reply('550 5.1.1 User unknown'));"
        "print('sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_errors_about_bad_input_are_also_value_errors() -> None:
    for error in (
        deliverability.ReplyParseError,
        deliverability.AddressError,
        deliverability.InputError,
        deliverability.PolicyError,
        deliverability.IngestError,
    ):
        assert issubclass(error, ValueError)
        assert issubclass(error, deliverability.DeliverabilityError)
