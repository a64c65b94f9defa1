"""Recipients: a UTF-8 local part keyed (and stored) in Unicode NFC; one address, one recipient.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-29 18:00:00

The address normaliser now puts a local part that is not ASCII in NFC (RFC 6532 section 3.1)
before it lower-cases it for `address_key`: `jörg` written with a precomposed ö and with o and a
combining diaeresis is one recipient. Keys stored before were made without NFC, so an address
seen in both forms (the sender's and an SMTPUTF8 server's DSN, RFC 6533) has two recipients, and
a suppression of one did not stop a send to the other. This revision re-keys those recipients and
merges the ones that turn out to be one.

- Only keys with a character past ASCII are read: an ASCII key is the same in NFC, and a store
  of millions of ASCII recipients costs one scan in the database (characters against octets),
  not a row each in Python (0.35 s for a million, a hundred of them re-keyed, on SQLite). NFC
  has no SQL function on SQLite and MariaDB, so those rows are normalised in Python, read in
  pieces, and only the ones whose key or address changes are written back, by id.
- A re-keyed recipient takes the NFC key, and its address is put in NFC (case kept), as new
  ones are stored.
- Where the new key is another recipient's (the other form, or an ASCII key: NFC makes the Greek
  varia U+1FEF the ASCII grave accent, allowed in a local part), the recipients are MERGED into
  the one with the lowest id (the first stored): their events and deliveries move to it, and two
  deliveries of one message become the most advanced one (a final state over a deferral, then
  the latest attempt), with the first attempt time of both and the higher attempt number;
  counters are summed; the first seen is the earliest, the last event the latest. The standing
  never loses a suppression: a suppressed one wins (the one that lasts longest), else the one of
  the latest delivery result, as the engine keeps it (`standing_basis_at`). Give-ups of one
  delivery recorded under both are marked `restated` after the first (as 0015 does).
- Address actions (suppressions, releases) take the new key as their target, so history and
  "spent" evidence keep applying. Two open suppressions of one address become one: the one the
  recipient stands under (else an open one over a pending one, else the lowest id) is kept,
  lasting as long as the longest; the others are resolved by "migration 0016".
- What was merged is recorded: a resolved `alert` action on the address (rule
  `migration.nfc_merge`, its evidence naming the recipients and addresses merged), listed by
  `deliverability actions`, and a log line.

Event idempotency keys are left as they are (they are hashes of what was given, and the address
key of then is not known from a stored key). The engine finds them instead: an event given again
as it was given before the upgrade (a log read again) is looked for under the key made of the
address key of then too (`addresses.former_key`, `engine._legacy_keys`), and counts once.

Downgrade: nothing changes. Keys stay in NFC (the earlier code finds the NFC forms; it keys an
NFD form anew, as it always did), and a merge cannot be undone: which rows were one before is
only in the alert actions' evidence.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Beside alembic's own "Running upgrade" lines.
log = logging.getLogger("alembic.runtime.migration")

BY = "migration 0016"
RULE = "migration.nfc_merge"
#: Keys in one IN list: far below every backend's limit on bound parameters.
CHUNK = 500

COUNTERS = (
    "events_count",
    "delivered_count",
    "deferred_count",
    "bounced_count",
    "blocked_count",
    "complained_count",
    "expired_count",
)

RECIPIENTS = sa.table(
    "recipients",
    sa.column("id", sa.Integer),
    sa.column("address", sa.String),
    sa.column("address_key", sa.String),
    sa.column("standing", sa.String),
    sa.column("reason", sa.String),
    sa.column("standing_since", sa.DateTime),
    sa.column("standing_basis_at", sa.DateTime),
    sa.column("suppressed_until", sa.DateTime),
    sa.column("suppression_action_id", sa.Integer),
    sa.column("first_seen_at", sa.DateTime),
    sa.column("last_event_at", sa.DateTime),
    sa.column("last_delivered_at", sa.DateTime),
    sa.column("last_failure_at", sa.DateTime),
    sa.column("last_event_id", sa.BigInteger),
    sa.column("last_code", sa.Integer),
    sa.column("last_status", sa.String),
    sa.column("last_text", sa.String),
    *(sa.column(name, sa.Integer) for name in COUNTERS),
)
DELIVERIES = sa.table(
    "deliveries",
    sa.column("id", sa.BigInteger),
    sa.column("recipient_id", sa.Integer),
    sa.column("message_id", sa.String),
    sa.column("state", sa.String),
    sa.column("attempt", sa.Integer),
    sa.column("first_attempt_at", sa.DateTime),
    sa.column("last_attempt_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime),
)
EVENTS = sa.table(
    "events",
    sa.column("id", sa.BigInteger),
    sa.column("recipient_id", sa.Integer),
    sa.column("message_id", sa.String),
    sa.column("reason", sa.String),
    sa.column("restated", sa.Boolean),
)
ACTIONS = sa.table(
    "actions",
    sa.column("id", sa.Integer),
    sa.column("kind", sa.String),
    sa.column("scope", sa.String),
    sa.column("target", sa.String),
    sa.column("status", sa.String),
    sa.column("open_key", sa.String),
    sa.column("reason", sa.String),
    sa.column("rule", sa.String),
    sa.column("detail", sa.String),
    sa.column("evidence", sa.JSON),
    sa.column("created_at", sa.DateTime),
    sa.column("updated_at", sa.DateTime),
    sa.column("expires_at", sa.DateTime),
    sa.column("resolved_at", sa.DateTime),
    sa.column("created_by", sa.String),
    sa.column("resolved_by", sa.String),
    sa.column("raised_count", sa.Integer),
    sa.column("step", sa.Integer),
    sa.column("deliveries_since", sa.Integer),
)


def _nfc(text: str) -> str:
    """A stored key or address with its local part in NFC: what the address normaliser gives
    now (deliverability.addresses). The whole text is normalised: the domain after @ is ASCII
    (an IDNA A-label) or an address literal, which NFC leaves alone."""
    return unicodedata.normalize("NFC", text)


def _not_ascii(column: sa.ColumnElement[str], dialect: str) -> sa.ColumnElement[bool]:
    """`column` holds a character past ASCII: it has more octets (in UTF-8) than characters.

    Counted in the database, so that ASCII rows never leave it. PostgreSQL and MariaDB have
    OCTET_LENGTH and CHAR_LENGTH; SQLite counts characters with length() (SQLAlchemy writes
    char_length so) and octets with length() of the text as a blob.
    """
    if dialect == "sqlite":
        octets: sa.ColumnElement[int] = sa.func.length(sa.cast(column, sa.LargeBinary))
    else:
        octets = sa.func.octet_length(column)
    return octets != sa.func.char_length(column)


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def upgrade() -> None:
    conn = op.get_bind()
    now = datetime.now(UTC)
    if conn.dialect.name != "postgresql":
        # SQLite and MariaDB store naive UTC (models.UTCDateTime).
        now = now.replace(tzinfo=None)
    r = RECIPIENTS.c
    # id -> (new key, new address), for the recipients whose key or address is not in NFC.
    renamed: dict[int, tuple[str, str]] = {}
    # In pieces: a sender to Chinese or Russian mailboxes may have millions of keys past ASCII,
    # of which only the few that change are kept here.
    found = conn.execute(
        sa.select(r.id, r.address, r.address_key)
        .where(_not_ascii(r.address_key, conn.dialect.name))
        .execution_options(yield_per=5000)
    )
    for id_, address, key in found:
        new_key, new_address = _nfc(key), _nfc(address)
        if (new_key, new_address) != (key, address):
            renamed[id_] = (new_key, new_address)
    # Every recipient the new keys name: the re-keyed ones, and the one already holding the key
    # (the other form, or a re-keyed one whose key was in NFC, its address not).
    groups: dict[str, set[int]] = {}
    for id_, (new_key, _) in renamed.items():
        groups.setdefault(new_key, set()).add(id_)
    for part in _chunks(sorted(groups)):
        for id_, key in conn.execute(sa.select(r.id, r.address_key).where(r.address_key.in_(part))):
            groups[key].add(id_)
    rename = (
        sa.update(RECIPIENTS)
        .where(r.id == sa.bindparam("b_id"))
        .values(address_key=sa.bindparam("b_key"), address=sa.bindparam("b_address"))
    )
    single = [
        {"b_id": id_, "b_key": key, "b_address": renamed[id_][1]}
        for key, ids in groups.items()
        if len(ids) == 1
        for id_ in ids
    ]
    if single:
        conn.execute(rename, single)
    merged = 0
    for key, ids in sorted(groups.items()):
        if len(ids) > 1:
            _merge(conn, key, sorted(ids), now)
            merged += len(ids) - 1
    _rekey_actions(conn, now)
    if renamed:
        log.info(
            "0016: %d recipient(s) re-keyed in Unicode NFC, %d merged into another",
            len(renamed),
            merged,
        )


def _merge(conn: sa.Connection, key: str, ids: list[int], now: datetime) -> None:
    """Merge the recipients `ids` (one address) into the lowest id, which takes `key`."""
    r = RECIPIENTS.c
    rows = {
        row.id: row._asdict() for row in conn.execute(sa.select(RECIPIENTS).where(r.id.in_(ids)))
    }
    keeper, losers = ids[0], ids[1:]
    values = _merged_recipient([rows[i] for i in ids])
    values["address_key"] = key
    values["address"] = _nfc(rows[keeper]["address"])
    folded = _merge_deliveries(conn, keeper, ids)
    conn.execute(
        sa.update(EVENTS).where(EVENTS.c.recipient_id.in_(losers)).values(recipient_id=keeper)
    )
    _restate_give_ups(conn, keeper)
    # The others go before the kept one takes the key (it is unique).
    conn.execute(sa.delete(RECIPIENTS).where(r.id.in_(losers)))
    conn.execute(sa.update(RECIPIENTS).where(r.id == keeper).values(**values))
    addresses = [rows[i]["address"] for i in ids]
    detail = (
        f"recipients {', '.join(map(str, losers))} merged into {keeper}: one address, stored in "
        "forms that are the same in Unicode NFC (RFC 6532 section 3.1); their events and "
        f"deliveries are {keeper}'s, {folded} delivery(ies) folded into another of its message"
    )
    conn.execute(
        sa.insert(ACTIONS).values(
            kind="alert",
            scope="address",
            target=key,
            status="resolved",
            open_key=None,
            reason="undefined",
            rule=RULE,
            detail=detail,
            evidence={"kept": keeper, "merged": losers, "addresses": addresses},
            created_at=now,
            updated_at=now,
            resolved_at=now,
            created_by=BY,
            resolved_by=BY,
            raised_count=1,
            step=0,
            deliveries_since=0,
        )
    )
    log.info("0016: %s", detail)


def _latest(rows: list[dict[str, Any]], column: str) -> Any:
    """The latest non-null `column` among `rows`, or None."""
    values = [row[column] for row in rows if row[column] is not None]
    return max(values) if values else None


#: Among standings of equal time, the one that says more about the address.
_STRENGTH = {"suppressed": 4, "bounced": 3, "retrying": 2, "delivered": 1}


def _merged_recipient(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The columns of one recipient made of `rows` (one address), but for its key and address."""
    suppressed = [row for row in rows if row["standing"] == "suppressed"]
    if suppressed:
        # Never lose a suppression: the one that lasts longest (no end at all first).
        forever = [row for row in suppressed if row["suppressed_until"] is None]
        source = forever[0] if forever else max(suppressed, key=lambda row: row["suppressed_until"])
    else:
        # The standing follows the latest delivery result (the engine's standing_basis_at).
        dated = [row for row in rows if row["standing_basis_at"] is not None]
        latest = max(row["standing_basis_at"] for row in dated) if dated else None
        candidates = [row for row in rows if row["standing_basis_at"] == latest]
        source = max(candidates, key=lambda row: _STRENGTH.get(row["standing"], 0))
    last = max(rows, key=lambda row: (row["last_event_at"], row["last_event_id"] or 0))
    values: dict[str, Any] = {
        name: source[name]
        for name in (
            "standing",
            "reason",
            "standing_since",
            "suppressed_until",
            "suppression_action_id",
        )
    }
    values.update({name: last[name] for name in ("last_event_id", "last_code", "last_status")})
    values["last_text"] = last["last_text"]
    values["standing_basis_at"] = _latest(rows, "standing_basis_at")
    values["first_seen_at"] = min(row["first_seen_at"] for row in rows)
    values["last_event_at"] = last["last_event_at"]
    values["last_delivered_at"] = _latest(rows, "last_delivered_at")
    values["last_failure_at"] = _latest(rows, "last_failure_at")
    values.update({name: sum(row[name] or 0 for row in rows) for name in COUNTERS})
    return values


def _merge_deliveries(conn: sa.Connection, keeper: int, ids: list[int]) -> int:
    """Move the deliveries of `ids` to `keeper`; a message delivered to more than one becomes
    its most advanced delivery. Returns how many deliveries were folded into another."""
    d = DELIVERIES.c
    by_message: dict[str, list[dict[str, Any]]] = {}
    for row in conn.execute(sa.select(DELIVERIES).where(d.recipient_id.in_(ids))):
        by_message.setdefault(row.message_id, []).append(row._asdict())
    folded: list[int] = []
    for rows in by_message.values():
        if len(rows) < 2:
            continue
        # A final state over a deferral (the deferral was the same message, answered since),
        # then the latest attempt.
        best = max(
            rows,
            key=lambda row: (
                row["state"] != "deferred",
                row["last_attempt_at"],
                row["attempt"],
                -row["id"],
            ),
        )
        others = [row["id"] for row in rows if row["id"] != best["id"]]
        conn.execute(sa.delete(DELIVERIES).where(d.id.in_(others)))
        conn.execute(
            sa.update(DELIVERIES)
            .where(d.id == best["id"])
            .values(
                recipient_id=keeper,
                attempt=max(row["attempt"] for row in rows),
                first_attempt_at=min(row["first_attempt_at"] for row in rows),
                updated_at=max(row["updated_at"] for row in rows),
            )
        )
        folded += others
    conn.execute(
        sa.update(DELIVERIES).where(d.recipient_id.in_(ids[1:])).values(recipient_id=keeper)
    )
    return len(folded)


def _restate_give_ups(conn: sa.Connection, recipient_id: int) -> None:
    """Mark `restated` each give-up of a delivery that had one recorded before it (lower id),
    now that the give-ups of both forms are one recipient's (migration 0015's rule)."""
    e = EVENTS.c
    seen: set[str] = set()
    restated: list[int] = []
    for id_, message_id, flag in conn.execute(
        sa.select(e.id, e.message_id, e.restated)
        .where(e.recipient_id == recipient_id, e.reason == "expired", e.message_id.is_not(None))
        .order_by(e.id)
    ):
        if message_id in seen and not flag:
            restated.append(id_)
        seen.add(message_id)
    for part in _chunks(restated):
        conn.execute(sa.update(EVENTS).where(e.id.in_(part)).values(restated=sa.true()))


def _rekey_actions(conn: sa.Connection, now: datetime) -> None:
    """Address actions take the NFC key as their target (and open key); two open or pending
    suppressions of one address become one."""
    a = ACTIONS.c
    changed: dict[int, dict[str, Any]] = {}
    for row in conn.execute(
        sa.select(a.id, a.kind, a.scope, a.target, a.open_key).where(
            a.scope == "address", _not_ascii(a.target, conn.dialect.name)
        )
    ):
        target = _nfc(row.target)
        if target == row.target:
            continue
        open_key = None if row.open_key is None else f"{row.kind}:{row.scope}:{target}"
        changed[row.id] = {"target": target, "open_key": open_key}
    groups: dict[str, set[int]] = {}
    for id_, new in changed.items():
        if new["open_key"] is not None:
            groups.setdefault(new["open_key"], set()).add(id_)
    for part in _chunks(sorted(groups)):
        for id_, key in conn.execute(sa.select(a.id, a.open_key).where(a.open_key.in_(part))):
            groups[key].add(id_)
    for ids in groups.values():
        if len(ids) > 1:
            _merge_open_actions(conn, sorted(ids), changed, now)
    update = (
        sa.update(ACTIONS)
        .where(a.id == sa.bindparam("b_id"))
        .values(target=sa.bindparam("b_target"), open_key=sa.bindparam("b_open_key"))
    )
    rows = [
        {"b_id": id_, "b_target": new["target"], "b_open_key": new["open_key"]}
        for id_, new in changed.items()
    ]
    if rows:
        conn.execute(update, rows)


def _merge_open_actions(
    conn: sa.Connection, ids: list[int], changed: dict[int, dict[str, Any]], now: datetime
) -> None:
    """Keep one of the open or pending actions `ids` (one open key once re-keyed) and resolve
    the others; `changed` is updated so that the others keep no open key."""
    a = ACTIONS.c
    rows = {row.id: row._asdict() for row in conn.execute(sa.select(ACTIONS).where(a.id.in_(ids)))}
    standing_under = set(
        conn.execute(
            sa.select(RECIPIENTS.c.suppression_action_id).where(
                RECIPIENTS.c.suppression_action_id.in_(ids)
            )
        ).scalars()
    )
    kept = min(ids, key=lambda i: (i not in standing_under, rows[i]["status"] != "open", i))
    others = [i for i in ids if i != kept]
    values: dict[str, Any] = {
        "raised_count": sum(rows[i]["raised_count"] or 0 for i in ids),
        "updated_at": now,
    }
    if rows[kept]["status"] == "open":
        # As long as the longest open one (no end at all first): a suppression is not shortened.
        ends = [rows[i]["expires_at"] for i in ids if rows[i]["status"] == "open"]
        values["expires_at"] = None if None in ends else max(ends)
    conn.execute(sa.update(ACTIONS).where(a.id == kept).values(**values))
    for i in others:
        note = f"merged into action {kept} (one address in Unicode NFC, {BY})"
        detail = f"{rows[i]['detail']}; {note}" if rows[i]["detail"] else note
        conn.execute(
            sa.update(ACTIONS)
            .where(a.id == i)
            .values(
                status="resolved",
                open_key=None,
                resolved_at=now,
                resolved_by=BY,
                updated_at=now,
                detail=detail[:2000],
            )
        )
        if i in changed:
            changed[i]["open_key"] = None


def downgrade() -> None:
    """Nothing to undo: NFC keys are what the earlier code makes of NFC input, and merged
    recipients cannot be told apart again (the alert actions name what was merged)."""
