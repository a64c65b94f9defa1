"""`deliverability explain`: what a reply (or a bounce message) means, and the rule that decided.

``explain "<reply>"`` explains one reply; ``explain -`` reads one reply per line from standard
input and prints one result per line, in order, flushing each (so it can classify a whole log in
a pipe); ``explain --message FILE...`` explains bounce messages, one result per recipient.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import click

from deliverability.classify import classify
from deliverability.codes import basic_code, enhanced_status
from deliverability.errors import ReplyParseError
from deliverability.policy import Policy, load_policy
from deliverability.replies import Reply, parse_reply
from deliverability.verdicts import Verdict


def explain_reply(reply: Reply, policy: Policy) -> dict[str, Any]:
    """The verdict on one reply with everything `explain` shows, as plain data."""
    verdict = classify(reply, policy)
    basic = basic_code(reply.code) if reply.code is not None else None
    enhanced = enhanced_status(reply.status) if reply.status is not None else None
    try:
        rule = policy.rule(verdict.rule)
        source, origin = rule.source, rule.origin
    except KeyError:  # the built-in class-digit fallback
        source, origin = "RFC 5321 section 4.2.1", ""
    row: dict[str, Any] = {
        "code": reply.code,
        "status": None if reply.status is None else str(reply.status),
        "text": reply.text,
        "command": reply.command,
    }
    row.update(_verdict_fields(verdict))
    row.update(
        source=source,
        origin=origin,
        code_meaning=None if basic is None else basic.meaning,
        status_meaning=None if enhanced is None else f"{enhanced.title}: {enhanced.meaning}",
        problems=list(reply.problems),
    )
    return row


def _verdict_fields(verdict: Verdict) -> dict[str, Any]:
    data = verdict.as_dict()
    return {
        key: data[key]
        for key in (
            "outcome",
            "reason",
            "fault",
            "rule",
            "decisive",
            "throttle",
            "retry_after",
            "pause",
            "inconsistent",
            "why",
        )
    }


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    seconds = int(value)
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _text_block(row: dict[str, Any]) -> str:
    """A few labelled lines for a person."""
    lines = []
    if row["code"] is not None:
        meaning = row["code_meaning"] or "not a code the catalogue knows"
        lines.append(f"code:      {row['code']}  {meaning}")
    if row["status"] is not None:
        meaning = row["status_meaning"] or "not in the IANA registry"
        lines.append(f"status:    {row['status']}  {meaning}")
    if row["command"]:
        lines.append(f"command:   {row['command']}")
    if row["text"]:
        lines.append(f"text:      {row['text']}")
    outcome = row["outcome"]
    if outcome == "bounced":
        outcome += " (decisive)" if row["decisive"] else " (not decisive)"
    lines += [
        f"outcome:   {outcome}",
        f"reason:    {row['reason']}",
        f"fault:     {row['fault']}",
    ]
    if row["retry_after"] is not None:
        lines.append(f"retry:     after {_seconds(row['retry_after'])}")
    if row["throttle"]:
        pause = f" (pause {_seconds(row['pause'])})" if row["pause"] is not None else ""
        lines.append(f"throttle:  yes, the destination is pushing back{pause}")
    # The parser names each inconsistency itself (a class that disagrees, a status out of
    # range, lines with different codes); the flag alone only says that there is one.
    for problem in row["problems"]:
        lines.append(f"warning:   {problem}")
    if row["inconsistent"] and not row["problems"]:
        lines.append("warning:   the reply's codes are inconsistent (RFC 3463 3.1)")
    origin = f"  ({row['origin']})" if row["origin"] else ""
    lines.append(f"rule:      {row['rule']}{origin}")
    if row["why"]:
        lines.append(f"why:       {row['why']}")
    lines.append(f"source:    {row['source']}")
    return "\n".join(lines)


def _text_line(row: dict[str, Any]) -> str:
    """One line per reply, for streams."""
    if "error" in row:
        return f"error: {row['error']}"
    head = " ".join(str(p) for p in (row["code"], row["status"]) if p is not None)
    extra = []
    if row["outcome"] == "bounced":
        extra.append("decisive" if row["decisive"] else "not decisive")
    if row["throttle"]:
        extra.append("throttle")
    if row["retry_after"] is not None:
        extra.append(f"retry after {_seconds(row['retry_after'])}")
    if row["inconsistent"]:
        extra.append("inconsistent")
    more = f" ({', '.join(extra)})" if extra else ""
    return f"{head}: {row['outcome']} {row['reason']} {row['fault']}{more} [{row['rule']}]"


def _stream(lines: Iterable[str], policy: Policy, fmt: str, out: IO[str]) -> int:
    """Explain each input line; returns how many lines could not be read as a reply."""
    failed = 0
    for number, raw in enumerate(lines, start=1):
        text = raw.rstrip("\r\n")
        try:
            row: dict[str, Any] = explain_reply(parse_reply(text), policy)
        except ReplyParseError as exc:
            failed += 1
            row = {"error": str(exc)}
        row = {"line": number, **row}
        out.write((json.dumps(row) if fmt == "json" else _text_line(row)) + "\n")
        out.flush()
    return failed


def _explain_messages(
    paths: tuple[Path, ...], fmt: str, out: IO[str], policy: Policy | None = None
) -> int:
    try:
        from deliverability.ingest.messages import explain_message_file
    except ImportError:
        raise click.UsageError("explaining bounce messages is not available yet") from None
    failed = 0
    for path in paths:
        for row in explain_message_file(path, policy):
            if row.get("error"):
                failed += 1
            if fmt == "json":
                out.write(json.dumps(row, default=str) + "\n")
            else:
                who = row.get("recipient") or "(no recipient)"
                if row.get("outcome") is None:
                    verdict = f"error: {row.get('error', 'no verdict')}"
                else:
                    verdict = f"{row['outcome']} {row['reason']} {row['fault']} [{row['rule']}]"
                code = " ".join(str(row[k]) for k in ("code", "status") if row.get(k) is not None)
                out.write(f"{row['file']}: {who}: {code + ': ' if code else ''}{verdict}\n")
            out.flush()
    return failed


@click.command()
@click.argument("reply", nargs=-1)
@click.option(
    "--message",
    "messages",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bounce message files (.eml) to explain, one result per recipient; the arguments that "
    "follow are more message files.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people; json prints one object (JSON Lines for '-' and --message).",
)
@click.pass_context
def explain(
    ctx: click.Context, reply: tuple[str, ...], messages: tuple[Path, ...], fmt: str
) -> None:
    """Explain an SMTP REPLY: its verdict, the meaning of its codes and the rule that decided.

    Give "-" as REPLY to read one reply per line from standard input (one result per line, in
    order; a line that is not a reply gives an "error"). With --message FILE..., explain bounce
    messages instead, one result per recipient. Exits 1 when some input could not be explained.

    \b
    Examples:
      deliverability explain "550 5.1.1 <a@example.com>: User unknown"
      tail -f replies.log | deliverability explain - --format json
      deliverability explain --message bounce1.eml bounce2.eml --format json
    """
    if messages:
        files = (*messages, *(Path(arg) for arg in reply))
        # The policy in force (--policy), as for a reply: the nightly job judges bounce
        # messages by it too.
        policy = ctx.obj.policy() if ctx.obj is not None else load_policy()
        ctx.exit(1 if _explain_messages(files, fmt, sys.stdout, policy) else 0)
    if not reply:
        raise click.UsageError(
            'give a REPLY, "-" to read replies from standard input, or --message'
        )
    policy = ctx.obj.policy() if ctx.obj is not None else load_policy()
    if reply == ("-",):
        ctx.exit(1 if _stream(sys.stdin, policy, fmt, sys.stdout) else 0)
    # An unquoted reply arrives as several arguments: it is one reply all the same.
    row = explain_reply(parse_reply(" ".join(reply)), policy)
    click.echo(json.dumps(row, indent=2) if fmt == "json" else _text_block(row))
