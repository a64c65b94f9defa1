"""What the log sources yield: one `LogRecord` per delivery result, one `Rejected` per bad item.

Both are plain frozen data; the nightly job decides what to record. Reading never stops at a bad
item: it becomes a `Rejected` with the source, the position and the reason, and reading goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from deliverability.replies import Reply

__all__ = ["LogRecord", "Rejected", "normalize_message_id", "position_of"]

#: How much of a bad item's raw text is kept: enough to recognise it, not a whole binary blob.
RAW_KEPT = 2000


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One SMTP result for one recipient, as a mailer reply log or an MTA log recorded it.

    `recipient` is the address exactly as found (normalising is the store's job). `message_id`
    has no angle brackets. `position` is where the item starts in `source`, as ``byte N``: a byte
    offset stays the same whether a run read the file from the start or resumed in the middle.
    `relay` is the MX host that answered as the source wrote it (Postfix's ``relay=host[ip]:port``,
    a reply log's ``mx_host``), or None. The other Postfix fields are None for other sources;
    `delivery_status` is Postfix's own verdict (``sent``, ``deferred``, ``bounced`` or
    ``expired``).
    """

    at: datetime
    recipient: str
    message_id: str | None
    attempt: int | None
    reply: Reply
    source: str
    position: str
    raw: str
    queue_id: str | None = None
    relay: str | None = None
    delivery_status: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An item that could not be read: where it is, why, and its raw text (cut to a sane size)."""

    source: str
    position: str
    error: str
    raw: str

    def __post_init__(self) -> None:
        raw = self.raw if len(self.raw) <= RAW_KEPT else self.raw[:RAW_KEPT] + "..."
        # NUL bytes are shown as \0: PostgreSQL text cannot hold them, and they would hide the
        # rest of the text from most terminals and tools anyway.
        object.__setattr__(self, "raw", raw.replace("\x00", "\\0"))
        object.__setattr__(self, "error", self.error.replace("\x00", "\\0"))


#: The largest attempt number: what an INTEGER column holds on every backend (32 bits). A log
#: reader and the engine both refuse a larger one, by name, rather than fail a chunk in SQL.
MAX_ATTEMPT = 2**31 - 1


def position_of(offset: int) -> str:
    """The position text for an item that starts at byte `offset` of its file."""
    return f"byte {offset}"


def normalize_message_id(value: str) -> str:
    """A message id without white space or its angle brackets.

    RFC 5322 section 3.6.4: the brackets of a msg-id are delimiters, not part of the id; logs
    write the same id with and without them, so they are dropped to let sources join.
    """
    text = value.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    return text
