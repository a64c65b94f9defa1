"""From what the sources yield (log records, bounce messages) to what the engine records.

One place decides how each kind of input becomes a `ReplyRecord`: a log line is a reply; a Postfix
deferral (``status=deferred``, ``SOFTBOUNCE``) and an RFC 3464 ``Action: delayed`` notice are
deferrals whatever their codes say; an ARF report is a complaint; an RFC 3834 auto-reply goes
into history only. Everything the engine cannot take becomes a `Rejected`
with its source and position, so a batch goes on.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from deliverability.classify import classify
from deliverability.clock import ensure_utc
from deliverability.engine import EXPIRY_VERDICT, ReplyRecord
from deliverability.errors import ConfigError, IngestError
from deliverability.ingest.bounce.base import parse_date
from deliverability.ingest.mailer_log import read_mailer_log
from deliverability.ingest.messages import (
    DEFAULT_VERP,
    BounceRecord,
    PreambleFn,
    UnreadableFn,
    VerpFormat,
    iter_eml,
    iter_maildir,
    iter_mbox,
    parse_message,
    reply_for,
)
from deliverability.ingest.postfix import PostfixStream, read_postfix_log
from deliverability.ingest.records import LogRecord, Rejected, normalize_message_id
from deliverability.policy import Policy
from deliverability.replies import Reply
from deliverability.verdicts import AUTO_REPLY_VERDICT, COMPLAINT_VERDICT, Verdict
from deliverability.vocabulary import EventKind, Outcome, Reason

__all__ = [
    "charged_addresses",
    "judge_bounce",
    "log_item",
    "message_items",
    "parse_verp_template",
    "read_log",
    "read_messages",
]

#: Postfix logs status=expired when a message stayed queued past its maximal_queue_lifetime: the
#: relay gave up, as the engine does when a delivery outlives the policy's lifetime.
POSTFIX_EXPIRED_VERDICT = dataclasses.replace(
    EXPIRY_VERDICT,
    rule="postfix.expired",
    why="Postfix gave up: the message stayed queued past its maximal_queue_lifetime "
    "(RFC 5321 section 4.5.4.1 give-up time)",
)


def read_log(
    path: Path,
    kind: str,
    *,
    start_offset: int,
    now: datetime,
    log_tz: tzinfo = UTC,
    stream: PostfixStream | None = None,
    scan_before: bool | None = None,
) -> Iterator[tuple[int, LogRecord | Rejected]]:
    """(offset after the item, item) for a reply log or a Postfix log, from `start_offset`.

    A last line without its newline in a plain file is still being written: it is not read (not
    parsed, not rejected), so the offset stays before it and the next run reads it whole.
    `log_tz` is the zone of syslog time stamps, which carry none (the mail host's local time).
    `stream` carries a Postfix log's queue state on from earlier reads, and `scan_before` says
    whether the lines before `start_offset` are scanned into it all the same
    (`read_postfix_log`).
    """
    if kind == "postfix":
        return read_postfix_log(
            path,
            start_offset=start_offset,
            now=now,
            tz=log_tz,
            hold_partial_line=True,
            stream=stream,
            scan_before=scan_before,
        )
    return read_mailer_log(path, start_offset=start_offset, format=kind, hold_partial_line=True)


def log_item(record: LogRecord, policy: Policy | None = None) -> ReplyRecord:
    """A log line's reply, as the engine records it (a Postfix expiry as an expiry, a Postfix
    deferral as a deferral whatever its reply's class). `policy` is the recording engine's (the
    shipped one when None): a verdict made here must be the one the engine would make."""
    expired = record.delivery_status == "expired"
    verdict: Verdict | None = None
    if expired:
        # The reply is the last deferral's: whose trouble it was decides whether the expiry is a
        # strike on the address (hygiene.expiry_exempt_faults), as for the engine's own expiries,
        # which read the fault the engine's policy gave that deferral.
        fault = classify(record.reply, policy).fault
        verdict = dataclasses.replace(POSTFIX_EXPIRED_VERDICT, fault=fault)
    if record.delivery_status == "deferred":
        # Postfix kept the message queued and will try again: status=deferred, and SOFTBOUNCE,
        # a permanent failure held back by soft_bounce = yes (postconf(5), soft_bounce). A 5xx
        # reply there is no bounce yet. Other deferrals are left to the engine's own policy.
        judged = classify(record.reply, policy)
        if judged.outcome is not Outcome.DEFERRED:
            verdict = _still_trying(judged)
    return ReplyRecord(
        recipient=record.recipient,
        message_id=record.message_id,
        reply=record.reply,
        attempt=record.attempt,
        at=record.at,
        source=record.source,
        position=record.position,
        kind=EventKind.EXPIRY if expired else EventKind.REPLY,
        verdict=verdict,
        raw=record.raw,
        mx_host=record.relay,
    )


def _still_trying(verdict: Verdict) -> Verdict:
    """`verdict` for a reply after which the sending MTA kept the message and goes on trying:
    a deferral, with the reason and fault the reply gave."""
    return dataclasses.replace(verdict, outcome=Outcome.DEFERRED, decisive=False)


def read_messages(
    path: Path,
    kind: str,
    *,
    preamble: PreambleFn | None = None,
    start_offset: int = 0,
    unreadable: UnreadableFn | None = None,
) -> Iterator[tuple[str, bytes]]:
    """(message key, raw bytes) for each message of an mbox, a Maildir or a single file;
    `preamble` is told of bytes before an mbox's first "From " line (see `iter_mbox`), an mbox
    is read from `start_offset` (a message's key) on, and `unreadable` is told of a Maildir's
    message file that cannot be read (see `iter_maildir`), of an mbox message cut short (see
    `iter_mbox`) and of a message over the size limit (`messages.MAX_MESSAGE`)."""
    if kind == "mbox":
        return iter_mbox(path, preamble=preamble, start_offset=start_offset, unreadable=unreadable)
    if kind == "maildir":
        return iter_maildir(path, unreadable=unreadable)
    return iter_eml(path, unreadable=unreadable)


def parse_verp_template(template: str) -> VerpFormat:
    """A VERP format from a template such as ``bounces+{local}={domain}`` (the return path's
    local part, with the recipient's local part and domain where they go).

    Raises ConfigError naming the template and the fix when it is not of that shape.
    """
    m = re.fullmatch(r"([^{}]*?)([^{}\w])\{local\}([^{}]+)\{domain\}(@.*)?", template.strip())
    if not m:
        raise ConfigError(
            f"VERP template {template!r} is not of the form PREFIX+{{local}}={{domain}} "
            "(example: bounces+{local}={domain})"
        )
    return VerpFormat(prefix=m.group(1) or None, separator=m.group(2), equals=m.group(3))


def message_items(
    data: bytes,
    *,
    source: str,
    position: str,
    now: datetime,
    verp: VerpFormat = DEFAULT_VERP,
    policy: Policy | None = None,
) -> tuple[list[ReplyRecord], Rejected | None]:
    """What one bounce message says, as records; a message that says nothing usable is rejected.

    Each recipient is charged to the address the sender sent to (`charged_addresses`). Its
    replies are judged by `policy`, the recording engine's (the shipped one when None), as the
    engine judges the replies of a log: a site's own rules apply to bounce messages too.
    """
    try:
        records = parse_message(data, verp=verp)
    except IngestError as exc:
        return [], Rejected(source, position, exc.problem, data[:2000].decode("utf-8", "replace"))
    items: list[ReplyRecord] = []
    problems: list[str] = []
    sent_at = message_date(data)
    charged = charged_addresses(records)
    for index, (bounce, recipient) in enumerate(zip(records, charged, strict=True)):
        where = position if len(records) == 1 else f"{position}#{index}"
        item = _bounce_item(
            bounce,
            recipient,
            source=source,
            position=where,
            now=now,
            sent_at=sent_at,
            policy=policy,
        )
        if isinstance(item, str):
            problems.append(item)
        else:
            items.append(item)
    if not problems:
        return items, None
    # The blocks that were read are recorded; the others are one rejected item beside them (a
    # DSN whose one Final-Recipient is no address still reports on its other recipients).
    raw = data[:2000].decode("utf-8", "replace")
    return items, Rejected(source, position, "; ".join(dict.fromkeys(problems)), raw)


_DATE_RE = re.compile(rb"^Date:[ \t]*(.+(?:\r?\n[ \t]+.+)*)", re.I | re.M)


def message_date(data: bytes) -> datetime | None:
    """The message's own Date header (RFC 5322 3.6.1), from its header block only, or None."""
    end = data.find(b"\n\n")
    end_crlf = data.find(b"\r\n\r\n")
    if end_crlf != -1 and (end == -1 or end_crlf < end):
        end = end_crlf
    head = data if end == -1 else data[:end]
    m = _DATE_RE.search(head[:65536])
    if not m:
        return None
    # One reading of an RFC 5322 date for every reader: `bounce.base.parse_date` keeps a
    # four-digit year as written (the standard library took "0001" for 2001) and reads a time
    # that cannot be one (before the epoch, outside UTC) as absent.
    value = parse_date(m.group(1).decode("ascii", "replace").strip())
    return None if value is None else ensure_utc(value)


def charged_addresses(records: list[BounceRecord]) -> list[str | None]:
    """The address each of a message's records is charged to: the one the sender sent to.

    A report's Final-Recipient is the mailbox the reporting MTA last tried, which "may differ
    from the address originally provided by the sender" after forwarding or aliasing (RFC 3464
    section 2.3.2): an address the sender's list does not have, so a bounce charged to it leaves
    the list's address mailed on. The address the sender gave is, in order:

    - for a message that reports on one recipient, the recipient its VERP return path encodes:
      the sender wrote that path for the one address it sent to;
    - the report's Original-Recipient, the sender's ORCPT (RFC 3464 section 2.3.1, RFC 3461
      section 4.2: relays pass it on unchanged), when it is an address, unless several blocks
      of the report share it: that address was expanded (an alias, a list) to several
      mailboxes, and one of them failing is no failure of the address the others receive at;
    - the recipient the record names (Final-Recipient, or what a prose bounce names).

    A report on several recipients cannot all be about the one address a VERP path names: a
    block that names no address is not charged to it (it stays None, and is rejected). Nor is
    a block about delivering a bounce the message returns (`BounceRecord.bounce_of_bounce`):
    the bounce's own blocks are counted, and charged, instead.
    """
    about = [r for r in records if not r.bounce_of_bounce]
    if len(about) == 1:
        [record] = about
        one = record.verp_recipient or record.original_recipient or record.recipient
        return [None if r.bounce_of_bounce else one for r in records]
    shared = Counter(r.original_recipient for r in records if r.original_recipient)
    return [
        r.original_recipient
        if r.original_recipient and shared[r.original_recipient] == 1
        else r.recipient
        for r in records
    ]


def _bounce_item(
    bounce: BounceRecord,
    recipient: str | None,
    *,
    source: str,
    position: str,
    now: datetime,
    sent_at: datetime | None = None,
    policy: Policy | None = None,
) -> ReplyRecord | str:
    if bounce.bounce_of_bounce:
        return (
            f"a bounce of a bounce: {bounce.recipient or 'the return path'} did not take the "
            f"bounce the message returns ({bounce.diagnostic or bounce.status or 'no reply'}); "
            "that is about the sender's return path, no recipient, and is not charged: the "
            "returned bounce is read for its own recipients"
        )
    if recipient is None:
        return bounce.error or "the message names no recipient"
    # When it happened: the last attempt the report names (RFC 3464 section 2.3.7), else when
    # the report was written (its Date: the qmail and Exim prose bounces carry no dates of their
    # own, and Postfix's reports no Last-Attempt-Date), else now; never in the future. A
    # bounce's Arrival-Date (section 2.2.5) is when the reporting MTA took the message: for a
    # relay, before the "250 queued" the sender logged, so a bounce dated by it came before
    # the delivery it reports on; and a delay warning and the final failure of one message
    # shared it, the same reply then giving the failure the warning's idempotency key. It
    # dates only a report that has no Date. A complaint (RFC 5965 section 3.1) keeps its
    # Arrival-Date first: one complaint reported twice stays one event.
    if bounce.kind is EventKind.COMPLAINT:
        at = bounce.last_attempt or bounce.arrival_date or sent_at or now
    else:
        at = bounce.last_attempt or sent_at or bounce.arrival_date or now
    at = min(at, now)
    original = bounce.original_message_id
    message_id = normalize_message_id(original) if original else None

    def item(verdict: Verdict, reply: Reply | None = None) -> ReplyRecord:
        return ReplyRecord(
            recipient=recipient,
            message_id=message_id,
            reply=reply,
            at=at,
            source=source,
            position=position,
            kind=bounce.kind,
            verdict=verdict,
            # RFC 3464 section 2.3.5: the MTA that gave the reply (its "dns;" type dropped).
            mx_host=bounce.remote_mta,
        )

    if bounce.kind is EventKind.COMPLAINT:
        return item(COMPLAINT_VERDICT)
    if bounce.kind is EventKind.AUTO_REPLY:
        return item(AUTO_REPLY_VERDICT)
    reply = reply_for(bounce)
    if reply is None:
        return bounce.error or "the bounce gives no status code, reply code or diagnostic"
    return item(judge_bounce(bounce, reply, policy), reply)


def judge_bounce(bounce: BounceRecord, reply: Reply, policy: Policy | None = None) -> Verdict:
    """The verdict on a bounce's reply (`messages.reply_for`), as the nightly job records it and
    `explain --message` shows it: the reply's, read in the light of the report's Action."""
    verdict = classify(reply, policy)
    if bounce.action == "delayed" and verdict.outcome is not Outcome.DEFERRED:
        # RFC 3464 2.3.3: "delayed" means the reporting MTA is still trying: a deferral, whatever
        # class the last reply had.
        return dataclasses.replace(
            _still_trying(verdict), rule=f"{verdict.rule}+dsn-action-delayed"
        )
    if (
        bounce.action == "failed"
        and bounce.detector == "rfc3464"
        and bounce.klass == 4
        and verdict.outcome is Outcome.DEFERRED
        and verdict.reason is not Reason.EXPIRED
    ):
        return _gave_up(verdict)
    return verdict


def _gave_up(verdict: Verdict) -> Verdict:
    """`verdict` of a 4.x.x reply in a DSN whose Action is "failed": the reporting MTA has
    stopped trying (RFC 3464 section 2.3.3). Postfix, when a message outlives its
    maximal_queue_lifetime, reports it so with the status and text of the last deferral. It is
    the relay's give-up, as a "failed" X.4.7 is: a deferral of reason `expired` (the delivery
    stays deferred, as after any relay's give-up reported as a reply), with the fault of what the
    relay kept getting, which decides whether it is a strike on the address
    (hygiene.expiry_exempt_faults). Only a DSN's own Action field says so (a prose bounce's
    "failed" is the reader's guess), and only of a transient status: a site rule that reads a
    5xx as a deferral keeps its own verdict."""
    return dataclasses.replace(
        verdict,
        reason=Reason.EXPIRED,
        decisive=False,
        throttle=False,
        rule=f"{verdict.rule}+dsn-action-failed",
        why=f"The reporting MTA gave up (DSN Action: failed) after: {verdict.why}",
    )
