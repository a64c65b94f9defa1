"""Email addresses, normalised once, in one place.

Storage keeps the local part's case as given (RFC 5321 section 2.4 says it may be case-sensitive)
but compares case-insensitively, as every large mailbox provider treats local parts; the domain is
lower-cased and IDNA-encoded (RFC 5890) so that a Unicode domain and its A-label are one address.
A UTF-8 local part (RFC 6531, 6532) is put in Unicode Normalization Form C, for storage and for
comparing: `jörg` written with a precomposed ö and with o and a combining diaeresis is one
address (RFC 6532 section 3.1 asks for NFC).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field

import idna

from deliverability.errors import AddressError, surrogate_at

__all__ = ["Address", "mx_host_of", "normalize_address"]

# RFC 5321 section 4.5.3.1: local part at most 64 octets, domain at most 255 (253 in DNS form).
_MAX_LOCAL = 64
_MAX_DOMAIN = 253
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DOT_ATOM_LOCAL_RE = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+"
    r"(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]+)*$"
)
_QUOTED_LOCAL_RE = re.compile(r'^"(?:[^"\\\r\n]|\\.)*"$')
_DOMAIN_LITERAL_RE = re.compile(r"^\[(?:IPv6:[0-9A-Fa-f:.]+|\d{1,3}(?:\.\d{1,3}){3})\]$")
# One search each instead of a test per character. For str patterns \s is exactly the set of
# str.isspace() (both use Python's Unicode white space table).
_SPACE_RE = re.compile(r"\s")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: The form nearly every address in a log has: an unquoted ASCII dot-atom local part, one @, a
#: domain of letters, digits, dots and hyphens, nothing around them. One match replaces the
#: checks below for it; anything else takes the long way.
_PLAIN_RE = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)@([A-Za-z0-9.-]+)"
)
#: Normalised domains by the domain part as written: a log names few domains many times.
_DOMAINS: dict[str, str] = {}
_DOMAINS_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Address:
    """A normalised address: `text` is what is stored and shown, `key` what is compared."""

    local: str
    domain: str
    #: The compared form, made once: the bulk paths ask for it several times per event.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", f"{_compared(self.local)}@{self.domain}")

    @property
    def text(self) -> str:
        return f"{self.local}@{self.domain}"

    def __str__(self) -> str:
        return self.text


# The slots' own setters, as the frozen class's generated __init__ sets them (through
# object.__setattr__): `_made` fills an Address whose key is already known without that
# __init__, its __post_init__ and `_compared`, most of what normalising a plain address cost
# (callgrind). `normalize_address` makes one for every address not seen lately.
_new = object.__new__
_set_local = Address.__dict__["local"].__set__
_set_domain = Address.__dict__["domain"].__set__
_set_key = Address.__dict__["key"].__set__


def _made(local: str, domain: str, key: str) -> Address:
    """`Address(local, domain)`, given its key (`f"{_compared(local)}@{domain}"`)."""
    address = _new(Address)
    _set_local(address, local)
    _set_domain(address, domain)
    _set_key(address, key)
    return address


def _compared(local: str) -> str:
    """The form of a local part that is compared: lower-cased, then in NFC.

    NFC because RFC 6532 section 3.1 asks for it while requiring no receiver to normalise: an
    SMTPUTF8 server's DSN (RFC 6533) or a mailer's log may name the address in another form
    than the sender did, and the two forms are one mailbox. NFC again after lower-casing, so
    that the key is the same whichever form (and case) it is made from, even from an `Address`
    built by hand.

    `str.lower`, as the keys were always made, not `str.casefold`: casefold also folds letters
    that are already lower case (ß to ss, the final ς to σ), so `straße` would become the ASCII
    `strasse`, another name a server may well have as a mailbox of its own; and a key made with
    casefold would differ from the stored one for such names. The domain needs neither: it is
    ASCII by now (an A-label) or an address literal.
    """
    if local.isascii():
        return local.lower()
    return unicodedata.normalize("NFC", local.lower())


def normalize_address(raw: str) -> Address:
    """Normalise an address as found in a reply log, a DSN or an API call.

    Accepts surrounding white space, angle brackets (``<a@b>``), a ``mailto:`` or RFC 3464
    ``rfc822;`` prefix. Raises AddressError (a ValueError) naming the problem otherwise.
    """
    if not isinstance(raw, str):
        raise AddressError(repr(raw), f"expected a string, got {type(raw).__name__}")
    plain = _PLAIN_RE.fullmatch(raw)
    if plain is not None:
        local, domain = plain.groups()
        normal = _DOMAINS.get(domain)
        if normal is not None and len(local) <= _MAX_LOCAL:
            # ASCII: its compared form is its lower case (`_compared`).
            return _made(local, normal, f"{local.lower()}@{normal}")
    local, domain = _given_parts(raw)
    if not local.isascii():
        # Stored in NFC too, not only compared so: RFC 6532 section 3.1 asks for NFC in what is
        # written, and the store writes the address out (reports, due retries, suppression
        # lists). Unlike case, which RFC 5321 section 2.4 lets a server tell apart (so the
        # sender's spelling is kept), the two forms look alike and name one mailbox: whichever a
        # DSN or a log used first, the recipient is shown the same. The octet limit below is
        # then the one of what is stored and sent.
        local = unicodedata.normalize("NFC", local)
    if not local:
        raise AddressError(raw, "the local part before @ is empty")
    if not domain:
        raise AddressError(raw, "the domain after @ is empty")
    if len(local.encode("utf-8")) > _MAX_LOCAL:
        raise AddressError(raw, f"the local part is longer than {_MAX_LOCAL} octets (RFC 5321)")
    if not (_DOT_ATOM_LOCAL_RE.match(local) or _QUOTED_LOCAL_RE.match(local)):
        raise AddressError(raw, "the local part has characters RFC 5322 does not allow unquoted")
    normal = _DOMAINS.get(domain)
    if normal is None:
        # Only domains that passed are kept: a bad one is reported with each address it is in.
        normal = normalize_domain(domain, raw)
        if len(_DOMAINS) >= _DOMAINS_MAX:
            _DOMAINS.clear()
        _DOMAINS[domain] = normal
    return Address(local=local, domain=normal)


def _given_parts(raw: str) -> tuple[str, str]:
    """The local part and the domain of `raw` as written, once white space, a prefix and angle
    brackets are taken off; raises AddressError for what no address can be."""
    at = surrogate_at(raw)
    if at is not None:
        raise AddressError(raw, f"it is not valid Unicode text (a lone surrogate at {at + 1})")
    text = raw.strip()
    low = text.lower()
    for prefix in ("rfc822;", "mailto:"):
        if low.startswith(prefix):
            text = text[len(prefix) :].strip()
            low = text.lower()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if not text:
        raise AddressError(raw, "it is empty")
    if _SPACE_RE.search(text) and not text.startswith('"'):
        raise AddressError(raw, "it contains white space")
    if _CONTROL_RE.search(text):
        raise AddressError(raw, "it contains control characters")
    local, sep, domain = text.rpartition("@")
    if not sep:
        raise AddressError(raw, "it has no @")
    return local, domain


def former_key(raw: str, address: Address) -> str | None:
    """The key versions before Unicode NFC keys (migration 0016) made of `raw`, when it is not
    `address.key` (`address` is `normalize_address(raw)`); None when it is the same.

    Those versions lower-cased the local part as written and stopped there: `jo\\u0308rg` (NFD)
    had a key of its own, and so had a name in NFC that lower-casing takes out of NFC (`T` with
    a combining diaeresis, whose small letter has a precomposed form). Event idempotency keys
    stored then were made of that key, so the engine looks for it (`engine._legacy_keys`). An
    ASCII address never had another key: one `isascii` answers for it.
    """
    if raw.isascii():
        return None
    local, _ = _given_parts(raw)
    if local.isascii():
        # A domain past ASCII (an IDNA U-label) was keyed by its A-label then as now.
        return None
    key = f"{local.lower()}@{address.domain}"
    return None if key == address.key else key


def normalize_domain(domain: str, raw: str | None = None) -> str:
    """Lower-case and IDNA-encode a domain; raises AddressError when it is not a domain."""
    shown = raw if raw is not None else domain
    domain = domain.strip().rstrip(".")
    if _DOMAIN_LITERAL_RE.match(domain):
        return domain
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise AddressError(shown, f"the domain is not a valid IDNA name ({exc})") from None
    domain = domain.lower()
    if len(domain) > _MAX_DOMAIN:
        raise AddressError(shown, f"the domain is longer than {_MAX_DOMAIN} characters")
    labels = domain.split(".")
    if any(not _LABEL_RE.match(label) for label in labels):
        raise AddressError(shown, "the domain has an empty or invalid label")
    return domain


#: What may follow the host name in a relay or Remote-MTA field: Postfix's ``host[ip]:port``,
#: a DSN's ``host [ip]`` or ``host (comment)``, a bare ``host:port``.
_MX_HOST_RE = re.compile(r"^([^\s\[\](),;]+?)(?::\d+)?(?=$|[\s\[(])")


#: Longer than any host name (253) with an IPv6 address and a port: not an MX host.
_MX_TEXT_MAX = 320


def mx_host_of(text: str | None) -> str | None:
    """The host name of the MX that answered, as a Postfix ``relay=`` field, an RFC 3464
    ``Remote-MTA`` value (its ``dns;`` type already dropped) or a caller gives it: lower-cased,
    IDNA-encoded, without the trailing dot, ``[ip]`` or ``:port``. None when it names no host
    (``none``, ``local``, an address literal, a socket path).
    """
    if not text or len(text) > _MX_TEXT_MAX:
        return None
    return _mx_host(text)


@functools.lru_cache(maxsize=4096)
def _mx_host(text: str) -> str | None:
    """`mx_host_of`, cached: a log names the same few hosts (with their addresses and ports)
    over and over."""
    m = _MX_HOST_RE.match(text.strip())
    if m is None:
        return None
    host = m.group(1).rstrip(".")
    if "." not in host or host.replace(".", "").isdigit():
        # A single label (Postfix's "local", "none") or an IPv4 address: no MX name.
        return None
    try:
        return normalize_domain(host)
    except AddressError:
        return None
