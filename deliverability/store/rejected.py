"""Rejected input in the store: every item once, however often it is read.

An item is its source, its position and the digest of its raw text: the position alone is not
enough, since a rotated log has new lines at the offsets of old ones. Reading the same file again
(a re-run after lost bookkeeping, another ``--format``) finds the same three and stores nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime
from typing import cast

from sqlalchemy import Connection, String, Table, insert, select

from deliverability.errors import storable
from deliverability.store.models import RejectedInput

__all__ = ["RAW_STORED", "raw_digest", "store_rejected"]

_REJECTED = cast(Table, RejectedInput.__table__)
_SOURCE_LENGTH = cast(String, _REJECTED.c.source.type).length or 600
_POSITION_LENGTH = cast(String, _REJECTED.c.position.type).length or 120
_ERROR_LENGTH = cast(String, _REJECTED.c.error.type).length or 2000

#: How much raw text a rejected item's digest covers (a line is at most 1 MiB; a tenth of it
#: identifies it).
RAW_STORED = 100_000
#: How much of it a row keeps, in UTF-8 bytes: what MariaDB's TEXT holds (65,535 bytes; a longer
#: value failed the whole chunk there), with room to spare.
RAW_BYTES = 64_000


def _fitting(text: str, limit: int) -> str:
    """`text` cut to at most `limit` bytes of UTF-8, never inside a character."""
    if len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def raw_digest(raw: str) -> str:
    """The SHA-256 (hex) of a rejected item's raw text, as stored."""
    # surrogatepass: an API caller's string with a lone surrogate still gets a digest.
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def store_rejected(
    conn: Connection, items: Iterable[tuple[str, str, str, str]], now: datetime
) -> int:
    """Store the rejected items (source, position, error, raw) not stored yet, each cut to its
    column; returns how many rows were added."""
    rows: dict[tuple[str, str, str], dict[str, object]] = {}
    for source, position, error, raw in items:
        raw = raw[:RAW_STORED]
        # The digest of the text as given (as earlier versions stored it); the texts themselves
        # with any lone surrogate escaped: the item is refused for it, its row must still store.
        digest = raw_digest(raw)
        source, position, error, raw = (storable(t) for t in (source, position, error, raw))
        # Without trailing spaces: MariaDB's collations ignore them in comparisons, so two
        # items apart only there were one key to its unique index, a duplicate-key error on
        # every retry, and the batch lost.
        key = (source[:_SOURCE_LENGTH].rstrip(), position[:_POSITION_LENGTH].rstrip(), digest)
        if key not in rows:
            if len(error) > _ERROR_LENGTH:
                error = error[: _ERROR_LENGTH - 3] + "..."
            rows[key] = {
                "source": key[0],
                "position": key[1],
                "raw_digest": key[2],
                "error": error,
                "raw": _fitting(raw, RAW_BYTES),
                "recorded_at": now,
            }
    if not rows:
        return 0
    for source in {s for s, _, _ in rows}:
        positions = sorted({p for s, p, _ in rows if s == source})
        stored = conn.execute(
            select(_REJECTED.c.position, _REJECTED.c.raw_digest).where(
                _REJECTED.c.source == source, _REJECTED.c.position.in_(positions)
            )
        )
        for position, digest in stored:
            rows.pop((source, position, digest), None)
    if rows:
        conn.execute(insert(_REJECTED), list(rows.values()))
    return len(rows)
