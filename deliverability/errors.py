"""One exception tree, rooted at `DeliverabilityError`.

Errors about bad input also subclass `ValueError`, so callers that already catch `ValueError`
keep working.
"""

from __future__ import annotations

from dataclasses import dataclass


class DeliverabilityError(Exception):
    """Base of every error deliverability raises on purpose."""


class ReplyParseError(DeliverabilityError, ValueError):
    """A text could not be read as an SMTP reply; the message names the text and what was wrong."""

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        shown = text if len(text) <= 200 else text[:200] + "..."
        super().__init__(f"cannot parse SMTP reply {shown!r}: {problem}")


class AddressError(DeliverabilityError, ValueError):
    """A string is not an email address."""

    def __init__(self, address: str, problem: str) -> None:
        self.address = address
        self.problem = problem
        shown = address if len(address) <= 200 else address[:200] + "..."
        super().__init__(f"not an email address {shown!r}: {problem}")


class InputError(DeliverabilityError, ValueError):
    """A value given to the API or found in input is out of range (a negative attempt, a time
    too far in the future, a missing field)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem found in a configuration or policy file."""

    severity: str  # "error" or "warning"
    file: str
    line: int | None
    key: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        text = f"{where}: {self.severity}: {self.key}: {self.message}"
        return f"{text} (fix: {self.fix})" if self.fix else text


class ConfigError(DeliverabilityError):
    """A configuration value is wrong: the message names the file or variable, the key and
    the fix."""


class PolicyError(ConfigError, ValueError):
    """A policy file has errors; `problems` lists every one with file and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        lines = "\n".join(f"  {p}" for p in errors)
        super().__init__(f"policy has {len(errors)} error(s):\n{lines}")


class StoreError(DeliverabilityError):
    """The store cannot be used as its URL says (a wrong password or user, a database or host
    that does not exist, a SQLite file that cannot be opened), or its schema is not what this
    version expects: a mistake to fix, which trying again will not."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached now: it closed the connection during a call, or no
    connection can be made to it (a server down, restarting, failing over or full), when an
    Engine or a command starts or later. The call's transaction was rolled back, so nothing of
    it was kept: make the call again once the database is back."""


class StoreBusyError(StoreError):
    """The database kept refusing a write for a lock another writer held (a lock wait past its
    limit, a deadlock, a serialization failure) until every retry was spent. The transaction
    was rolled back, so nothing of it was kept: make the call again later, or find the writer
    that holds its locks that long."""


class IngestError(DeliverabilityError, ValueError):
    """One item of an input source (a log line, a message) is malformed.

    `source` and `position` say where: a file name and a line number or byte offset or message key.
    """

    def __init__(self, source: str, position: str | int, problem: str, raw: str = "") -> None:
        self.source = source
        self.position = position
        self.problem = problem
        self.raw = raw
        super().__init__(f"{source}:{position}: {problem}")


def surrogate_at(text: str) -> int | None:
    """Where `text` holds a lone surrogate (None when nowhere).

    Such a string is not Unicode text: a JSON ``\\ud800`` escape or a file name read with
    Python's surrogateescape make one, UTF-8 cannot encode it, and so no database stores it."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def not_unicode(field: str, text: str) -> str | None:
    """The reason to refuse `text` as `field` when it is not Unicode text (`surrogate_at`)."""
    at = surrogate_at(text)
    if at is None:
        return None
    return f"{field} is not valid Unicode text (a lone surrogate at character {at + 1})"


def storable(text: str) -> str:
    """`text` with any lone surrogate written as its escape (``\\udce9``): for the texts that
    only say where something came from (a file name, a position), kept rather than refused."""
    if surrogate_at(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
