import pytest

from deliverability.addresses import normalize_address
from deliverability.errors import AddressError


def test_domain_is_lower_cased_and_local_part_case_is_kept_for_storage() -> None:
    address = normalize_address("  <Alice.Smith@Example.COM> ")
    assert address.text == "Alice.Smith@example.com"
    assert address.key == "alice.smith@example.com"


def test_unicode_domain_is_idna_encoded() -> None:
    assert normalize_address("bob@bücher.de").text == "bob@xn--bcher-kva.de"


def test_dsn_rfc822_prefix_is_accepted() -> None:
    assert normalize_address("rfc822; carol@example.org").key == "carol@example.org"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        ("alice", "no @"),
        ("alice@", "domain after @ is empty"),
        ("@example.com", "local part before @ is empty"),
        ("a b@example.com", "white space"),
        ("a@exa..mple.com", "invalid label"),
        ("a@-example.com", "invalid label"),
        ("x" * 65 + "@example.com", "longer than 64"),
    ],
)
def test_a_string_that_is_not_an_address_is_rejected_with_its_problem(
    raw: str, problem: str
) -> None:
    with pytest.raises(AddressError, match=problem):
        normalize_address(raw)


def test_address_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="not an email address"):
        normalize_address("nope")


def _spaces() -> list[str]:
    return [chr(c) for c in range(0x110000) if chr(c).isspace()]


@pytest.mark.parametrize("space", _spaces())
def test_every_unicode_white_space_character_is_rejected_as_white_space(space: str) -> None:
    with pytest.raises(AddressError, match="white space"):
        normalize_address(f"a{space}b@example.com")


@pytest.mark.parametrize("code", [*range(32), 127])
def test_a_control_character_in_a_quoted_local_part_is_rejected_as_a_control_character(
    code: int,
) -> None:
    with pytest.raises(AddressError, match="control characters"):
        normalize_address(f'"a{chr(code)}b"@example.com')


def test_the_same_domain_in_two_addresses_gives_the_same_normalised_domain() -> None:
    first = normalize_address("a@B\u00fccher.DE")
    second = normalize_address("b@b\u00fccher.de")
    assert first.domain == second.domain == "xn--bcher-kva.de"


def test_a_bad_domain_is_rejected_every_time_it_is_seen() -> None:
    for raw in ("a@exa..mple.com", "b@exa..mple.com"):
        with pytest.raises(AddressError, match=f"{raw}.*invalid label"):
            normalize_address(raw)


def test_the_plain_address_shortcut_gives_what_the_full_checks_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Random ASCII strings built from the characters a plain address may have, and some it may
    # not, at lengths around the 64-octet limit: each must come out (or be refused) the same
    # way with the shortcut as through the full checks alone.
    import random
    import re

    from deliverability import addresses

    rng = random.Random(3463)
    local_chars = "abcXYZ019.!#$%&'*+/=?^_`{|}~-"
    domain_chars = "abcXYZ019.-"
    samples = [f"{'x' * n}@Example.COM" for n in (63, 64, 65)]
    for _ in range(3000):
        local = "".join(rng.choice(local_chars) for _ in range(rng.choice((1, 3, 10, 64, 65))))
        domain = "".join(rng.choice(domain_chars) for _ in range(rng.randint(1, 12)))
        samples.append(f"{local}@{domain}")

    def outcome(raw: str) -> str:
        try:
            return normalize_address(raw).text
        except AddressError as err:
            return f"error: {err}"

    # Twice with the shortcut: the second time every valid domain is in the domain cache, which
    # the shortcut needs.
    [outcome(raw) for raw in samples]
    quick = [outcome(raw) for raw in samples]
    monkeypatch.setattr(addresses, "_PLAIN_RE", re.compile(r"(?!)"))
    full = [outcome(raw) for raw in samples]
    assert quick == full
    assert sum(not text.startswith("error") for text in full) > 500
