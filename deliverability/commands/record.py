"""`deliverability record | status | sendable | suppress | unsuppress`: the sender's API on the
command line."""

from __future__ import annotations

import getpass
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from deliverability.clock import parse_time
from deliverability.commands.base import AppContext
from deliverability.engine import Decision, Engine, RecipientStatus
from deliverability.errors import InputError

_FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Output for people (text) or programs (json).",
)


def _engine(ctx: click.Context) -> Engine:
    return ctx.ensure_object(AppContext).engine()


def _who() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


def _decision_text(d: Decision) -> str:
    v = d.verdict
    lines = [f"{d.address}: {v.outcome.value} ({v.reason.value}, fault {v.fault.value})"]
    lines.append(f"  rule: {v.rule}")
    if d.duplicate:
        lines.append("  already recorded: nothing changed")
    if d.delivery_state is not None:
        delivery = f"  delivery: {d.delivery_state.value}, attempt {d.attempt}"
        if d.next_attempt_at is not None:
            delivery += f", next attempt at {d.next_attempt_at.isoformat()}"
        if d.history_only:
            delivery += " (this reply is older news: kept in history only)"
        lines.append(delivery)
    for action in d.actions:
        summary = action.as_dict() if hasattr(action, "as_dict") else {"action": str(action)}
        lines.append(
            "  action: "
            + " ".join(f"{k}={summary[k]}" for k in ("kind", "scope", "target") if k in summary)
        )
    lines.append("  sendable: yes" if d.sendable else f"  sendable: no ({d.why_not})")
    return "\n".join(lines)


def _status_text(s: RecipientStatus) -> str:
    lines = [f"{s.address}: {s.standing.value} ({s.reason.value})"]
    if s.since is not None:
        lines.append(f"  since: {s.since.isoformat()}")
    if s.suppressed:
        until = s.suppressed_until.isoformat() if s.suppressed_until else "unsuppressed (no expiry)"
        lines.append(f"  suppressed: yes, until {until}")
    lines.append("  sendable: yes" if s.sendable else f"  sendable: no ({s.why_not})")
    if s.counters:
        lines.append(
            "  counts: "
            + ", ".join(f"{k.removesuffix('_count')} {v}" for k, v in s.counters.items())
        )
    if s.history:
        lines.append("  recent events:")
        for e in s.history:
            reply = " ".join(str(p) for p in (e.code, e.status, e.text) if p)
            # A give-up its delivery already had says so: it counts no second strike.
            again = " [restated: given up before, no second strike]" if e.restated else ""
            lines.append(
                f"    {e.at.isoformat()} {e.kind.value} {e.outcome.value} ({e.reason.value})"
                f" {e.message_id or '-'}: {reply}{again}"
            )
    return "\n".join(lines)


@click.command()
@click.option("--recipient", required=True, help="The address the reply is about.")
@click.option(
    "--reply", "reply_text", required=True, help="The SMTP reply as the mailer logged it."
)
@click.option("--message-id", help="The message's id (a delivery is one message to one address).")
@click.option("--attempt", type=int, help="The attempt number, when the mailer counts them.")
@click.option("--at", "at", help="When the reply came (ISO 8601; default: now).")
@click.option(
    "--mx-host",
    help="The MX host that gave the reply (a host name, or Postfix's host[ip]:port): it says "
    "which provider group hosts the recipient's domain.",
)
@_FORMAT
@click.pass_context
def record(
    ctx: click.Context,
    recipient: str,
    reply_text: str,
    message_id: str | None,
    attempt: int | None,
    at: str | None,
    mx_host: str | None,
    fmt: str,
) -> None:
    """Record one reply and print the decision."""
    if at:
        try:
            parse_time(at)
        except InputError as err:
            raise click.BadParameter(str(err), param_hint="--at") from None
    with _engine(ctx) as engine:
        decision = engine.record(
            recipient,
            reply_text,
            message_id=message_id,
            attempt=attempt,
            at=at,
            source="cli",
            mx_host=mx_host,
        )
    if fmt == "json":
        click.echo(json.dumps(decision.as_dict()))
    else:
        click.echo(_decision_text(decision))


@click.command()
@click.argument("address")
@_FORMAT
@click.pass_context
def status(ctx: click.Context, address: str, fmt: str) -> None:
    """Where an address stands, and why."""
    with _engine(ctx) as engine:
        result = engine.status(address)
    if fmt == "json":
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(_status_text(result))


def _addresses(args: tuple[str, ...], file: Path | None) -> Iterator[str]:
    yield from args
    if file is None:
        return
    # Bytes that are not UTF-8 become U+FFFD: the line is still listed, with a reason.
    if str(file) == "-":
        handle = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    else:
        handle = file.open(encoding="utf-8", errors="replace")
    try:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#"):
                yield line
    finally:
        if str(file) == "-":
            handle.detach()
        else:
            handle.close()


def _shown(text: str) -> str:
    """Text safe to print whatever it holds (a lone surrogate from argv becomes an escape)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@click.command()
@click.argument("addresses", nargs=-1)
@click.option(
    "--file",
    type=click.Path(dir_okay=False, path_type=Path, allow_dash=True),
    help="Read addresses from a file, one per line ('-': standard input).",
)
@click.pass_context
def sendable(ctx: click.Context, addresses: tuple[str, ...], file: Path | None) -> None:
    """Print the addresses that may be sent to now; the reasons for the rest go to stderr.

    Exit status: 0, or 1 when some input was not an email address (the rest is still listed).
    """
    if file is not None and str(file) != "-" and not file.exists():
        raise click.BadParameter(f"no such file: {file}", param_hint="--file")
    with _engine(ctx) as engine:
        ok, reasons = engine.sendable_with_reasons(_addresses(addresses, file))
    for address in ok:
        click.echo(_shown(address))
    for address, why in reasons.items():
        click.echo(_shown(f"{address}: {why}"), err=True)
    # AddressError messages start this way (errors.py): bad input, which the exit status says.
    if any(why.startswith("not an email address") for why in reasons.values()):
        ctx.exit(1)


@click.command()
@click.argument("address")
@click.option("--reason", required=True, help="Why (free text, or a reason name).")
@click.option("--by", "by", default=None, help="Who suppresses (default: the current user).")
@click.pass_context
def suppress(ctx: click.Context, address: str, reason: str, by: str | None) -> None:
    """Stop sending to an address (recorded as a suppress action with who and why)."""
    with _engine(ctx) as engine:
        action_id = engine.suppress(address, reason, by=by or _who())
    click.echo(f"suppressed {address} (action {action_id})")


@click.command()
@click.argument("address")
@click.option("--by", "by", default=None, help="Who lifts it (default: the current user).")
@click.option("--reason", default="", help="Why (free text).")
@click.pass_context
def unsuppress(ctx: click.Context, address: str, by: str | None, reason: str) -> None:
    """Lift a suppression (recorded as a release action with who and why)."""
    with _engine(ctx) as engine:
        action_id = engine.unsuppress(address, by=by or _who(), reason=reason)
    click.echo(f"released {address} (action {action_id})")
