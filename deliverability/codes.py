"""The code catalogue: what each basic reply code and each enhanced status code means.

Two packaged data files, loaded once into immutable structures: `data/reply_codes.toml` (the
basic codes of RFC 5321 and its extensions, plus the non-standard ones in common use) and
`data/enhanced_status_codes.toml` (the whole IANA registry of enhanced status codes). Each entry
has a meaning in our own words and the RFC that defines it. The catalogue explains; the policy
(`default_policy.toml`) decides.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from deliverability.errors import ConfigError
from deliverability.replies import StatusCode, parse_status

__all__ = [
    "BasicCode",
    "EnhancedCode",
    "all_basic_codes",
    "all_enhanced_codes",
    "basic_code",
    "enhanced_status",
    "reply_class_meaning",
    "status_class_meaning",
    "status_subject_meaning",
]

_DATA = Path(__file__).with_name("data")


@dataclass(frozen=True, slots=True)
class BasicCode:
    """A basic SMTP reply code (``550``)."""

    code: int
    meaning: str
    rfc: str

    @property
    def klass(self) -> int:
        """The class digit (RFC 5321 section 4.2.1)."""
        return self.code // 100

    @property
    def class_meaning(self) -> str:
        return reply_class_meaning(self.klass)


@dataclass(frozen=True, slots=True)
class EnhancedCode:
    """An enhanced status code of the IANA registry, class-free as the registry lists it
    (``X.1.1``)."""

    status: str
    subject: int
    detail: int
    title: str
    meaning: str
    rfc: str

    @property
    def subject_meaning(self) -> str:
        return status_subject_meaning(self.subject)


@dataclass(frozen=True, slots=True)
class _Catalogue:
    basic: MappingProxyType[int, BasicCode]
    reply_classes: MappingProxyType[int, str]
    enhanced: MappingProxyType[tuple[int, int], EnhancedCode]
    status_classes: MappingProxyType[int, str]
    subjects: MappingProxyType[int, str]


def _load(name: str) -> dict[str, Any]:
    path = _DATA / name
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"the package data file {name} cannot be read ({exc}): reinstall"
        ) from None


@functools.cache
def _catalogue() -> _Catalogue:
    replies = _load("reply_codes.toml")
    basic = {
        int(row["code"]): BasicCode(int(row["code"]), row["meaning"], row["rfc"])
        for row in replies["code"]
    }
    statuses = _load("enhanced_status_codes.toml")
    enhanced: dict[tuple[int, int], EnhancedCode] = {}
    for row in statuses["code"]:
        _, subject, detail = row["status"].split(".")
        entry = EnhancedCode(
            row["status"], int(subject), int(detail), row["title"], row["meaning"], row["rfc"]
        )
        enhanced[(entry.subject, entry.detail)] = entry
    return _Catalogue(
        basic=MappingProxyType(basic),
        reply_classes=MappingProxyType({int(k): v for k, v in replies["class"].items()}),
        enhanced=MappingProxyType(enhanced),
        status_classes=MappingProxyType({int(k): v for k, v in statuses["class"].items()}),
        subjects=MappingProxyType({int(k): v for k, v in statuses["subject"].items()}),
    )


def basic_code(code: int) -> BasicCode | None:
    """The catalogue entry of a basic reply code, or None when it is not one we know."""
    return _catalogue().basic.get(code)


def enhanced_status(status: StatusCode | str) -> EnhancedCode | None:
    """The registry entry of an enhanced status code (any class), or None when the registry has
    no such subject and detail. A string is parsed first (ReplyParseError when it is not a code).
    """
    if isinstance(status, str):
        status = parse_status(status)
    return _catalogue().enhanced.get((status.subject, status.detail))


def all_basic_codes() -> tuple[BasicCode, ...]:
    """Every basic code of the catalogue, in numeric order."""
    return tuple(sorted(_catalogue().basic.values(), key=lambda c: c.code))


def all_enhanced_codes() -> tuple[EnhancedCode, ...]:
    """Every enhanced status code of the registry, in subject and detail order."""
    return tuple(sorted(_catalogue().enhanced.values(), key=lambda c: (c.subject, c.detail)))


def reply_class_meaning(klass: int) -> str:
    """What the first digit of a basic reply code means (RFC 5321 section 4.2.1)."""
    return _catalogue().reply_classes.get(klass, "not a reply class RFC 5321 defines")


def status_class_meaning(klass: int) -> str:
    """What the class of an enhanced status code means (RFC 3463 section 3.1)."""
    return _catalogue().status_classes.get(klass, "not a class RFC 3463 defines")


def status_subject_meaning(subject: int) -> str:
    """What the subject of an enhanced status code means (RFC 3463 section 3.1)."""
    return _catalogue().subjects.get(subject, "not a subject RFC 3463 defines")
