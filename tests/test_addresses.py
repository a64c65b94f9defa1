import pytest

from deliverability.addresses import Address, former_key, normalize_address
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


#: jörg with a precomposed ö (NFC) and with o and a combining diaeresis (NFD).
JOERG_NFC = "j\u00f6rg@example.de"
JOERG_NFD = "jo\u0308rg@example.de"


def test_a_local_part_in_nfc_and_in_nfd_is_one_address() -> None:
    # RFC 6532 section 3.1: NFC. A DSN from an SMTPUTF8 server may name the other form.
    nfc, nfd = normalize_address(JOERG_NFC), normalize_address(JOERG_NFD)
    assert nfc.key == nfd.key == JOERG_NFC
    assert nfc == nfd


def test_a_local_part_in_nfd_is_stored_in_nfc() -> None:
    assert normalize_address(f"<{JOERG_NFD}>").text == JOERG_NFC
    assert normalize_address('"jo\u0308rg x"@example.de').text == '"j\u00f6rg x"@example.de'


def test_a_unicode_local_part_is_compared_without_regard_to_case_in_either_form() -> None:
    keys = {
        normalize_address(raw).key
        for raw in ("J\u00d6RG@example.de", "JO\u0308RG@Example.DE", JOERG_NFC, JOERG_NFD)
    }
    assert keys == {JOERG_NFC}
    # The case as given is kept for storage, in NFC.
    assert normalize_address("JO\u0308RG@example.de").text == "J\u00d6RG@example.de"


def test_the_key_of_an_address_built_by_hand_is_the_same_as_the_normalisers() -> None:
    assert Address(local="JO\u0308RG", domain="example.de").key == JOERG_NFC


def test_lower_casing_does_not_fold_a_unicode_local_part_into_another_address() -> None:
    # str.lower, not str.casefold: straße and strasse stay two addresses (casefold would make
    # the first the ASCII second), and ΟΔΟΣ meets οδος, not οδοσ.
    assert normalize_address("STRA\u00dfE@example.de").key == "stra\u00dfe@example.de"
    assert normalize_address("strasse@example.de").key == "strasse@example.de"
    assert normalize_address("\u039f\u0394\u039f\u03a3@example.gr").key == (
        "\u03bf\u03b4\u03bf\u03c2@example.gr"
    )


def test_the_octet_limit_applies_to_the_local_part_in_nfc() -> None:
    # 32 ö: 64 octets in NFC (2 each), 96 in NFD (o and a 2-octet combining mark).
    assert normalize_address("o\u0308" * 32 + "@example.de").text == "\u00f6" * 32 + "@example.de"
    with pytest.raises(AddressError, match="longer than 64"):
        normalize_address("\u00f6" * 33 + "@example.de")


@pytest.mark.parametrize(
    ("raw", "then"),
    [
        # NFD, in any case and wrapping: the local part as written, lower-cased.
        (JOERG_NFD, JOERG_NFD),
        ("rfc822; <JO\u0308RG@Example.DE>", JOERG_NFD),
        ('"jo\u0308rg x"@example.de', '"jo\u0308rg x"@example.de'),
        # In NFC as written, but out of it once lower-cased: t and the diaeresis compose (U+1E97).
        ("T\u0308om@example.com", "t\u0308om@example.com"),
    ],
)
def test_the_key_before_nfc_keys_is_the_local_part_as_written_lower_cased(
    raw: str, then: str
) -> None:
    address = normalize_address(raw)
    assert address.key != then
    assert former_key(raw, address) == then


@pytest.mark.parametrize(
    "raw",
    [
        "Alice@Example.com",
        JOERG_NFC,
        "J\u00d6RG@example.de",
        "stra\u00dfe@example.de",
        "alice@b\u00fccher.example",  # an IDNA domain: its A-label, then as now
        "\u7528\u6237@example.jp",
    ],
)
def test_an_address_keyed_as_before_nfc_keys_has_no_former_key(raw: str) -> None:
    assert former_key(raw, normalize_address(raw)) is None
