"""`deliverability report undeliverable|domains|codes|reputation`: the reports on screen or in a
file, as a table, CSV, JSON or one self-contained HTML page with charts."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click
from sqlalchemy.orm import Session

from deliverability import report_html, reports
from deliverability.clock import check_run_time, parse_time, system_clock
from deliverability.errors import InputError
from deliverability.hygiene import provider_groups
from deliverability.output import emit_rows
from deliverability.policy import Policy, load_policy
from deliverability.store import hygiene as hygiene_store
from deliverability.store.session import open_engine, session_scope
from deliverability.vocabulary import Reason

#: When no --since is given, reports over events look back this far from --until.
DEFAULT_PERIOD = timedelta(days=30)
#: Console width for tables written to a file or a pipe.
TABLE_WIDTH = 240
#: Rows in the "worst destinations" and "reasons" charts.
CHART_ROWS = 12

_DATE_HELP = "YYYY-MM-DD (a whole UTC day) or an ISO 8601 time such as 2026-11-28T17:00:00Z"

#: Which options each report reads; any other given option is a usage error, not ignored.
_APPLIES: dict[str, frozenset[str]] = {
    "undeliverable": frozenset({"since", "until", "domain", "reason"}),
    "domains": frozenset({"since", "until", "domain", "top"}),
    "codes": frozenset({"since", "until", "domain", "reason", "daily"}),
    "reputation": frozenset({"until"}),
}
#: The columns a terminal table shows (CSV, JSON and HTML have every column of `COLUMNS`).
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "undeliverable": (
        "address",
        "standing",
        "reason",
        "since",
        "last_status",
        "failures",
        "last_text",
    ),
    "domains": (
        "domain",
        "attempts",
        "delivered",
        "deferred",
        "expired",
        "bounced",
        "blocked",
        "complaints",
        "bounce_rate",
        "throttled_until",
        "open_incidents",
    ),
    "codes": ("day", "code", "status", "reason", "outcome", "count", "example"),
    "reputation": ("window", "metric", "count", "base", "rate", "review_at", "pause_at", "level"),
}
_FRACTIONS = frozenset(
    {
        "bounce_rate",
        "block_rate",
        "deferral_rate",
        "complaint_rate",
        "rate",
        "review_at",
        "pause_at",
    }
)
_TITLES = {
    "undeliverable": "Undeliverable addresses",
    "domains": "Destination domains",
    "codes": "Reply codes",
    "reputation": "Sender reputation",
}


def _is_date(text: str) -> bool:
    """Whether `text` names a day, not a time: every form ISO 8601 has for one that the time
    parser also takes (2026-11-30, 20261130, 2026-W49-1), so none of them ends the period at
    the day's first instant instead of its last."""
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def parse_date(value: str, option: str, *, end: bool = False) -> datetime:
    """A --since/--until value: a bare date is midnight UTC of that day, or of the next day for
    `end` (so ``--until 2026-11-30`` includes the 30th)."""
    text = value.strip()
    try:
        moment = parse_time(text)
    except InputError:
        raise click.BadParameter(
            f"not a date: {value!r}; use {_DATE_HELP}", param_hint=option
        ) from None
    try:
        # The range --now takes: a period reaching the ends of the calendar (9999-12-31's next
        # day, 30 days before year 1) stopped the report with an OverflowError.
        check_run_time(moment, option)
    except InputError as err:
        raise click.BadParameter(str(err), param_hint=option) from None
    if end and _is_date(text):
        moment += timedelta(days=1)
    return moment


def _reason(ctx: click.Context, param: click.Parameter, value: str | None) -> Reason | None:
    if value is None:
        return None
    try:
        return reports.parse_reason(value)
    except InputError:
        valid = ", ".join(r.value for r in Reason)
        raise click.BadParameter(
            f"unknown reason {value!r}; valid reasons: {valid}", ctx, param
        ) from None


def _report_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    name = value.strip().lower()
    if name not in reports.REPORTS:
        raise click.BadParameter(
            f"unknown report {value!r}; valid reports: {', '.join(reports.REPORTS)}", ctx, param
        )
    return name


@contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    if path is None:
        yield sys.stdout
        return
    try:
        # newline="" so CSV rows end in "\n" exactly as on stdout.
        with path.open("w", encoding="utf-8", newline="") as handle:
            yield handle
    except OSError as err:
        # A usage error (exit 2, as every error that stops a command), not click's FileError,
        # whose exit 1 means "some input was rejected" here.
        raise click.BadParameter(
            f"cannot write {path}: {err.strerror or err}", param_hint="--output"
        ) from None


@click.command("report")
@click.argument("name", metavar="REPORT", callback=_report_name)
@click.option("--since", metavar="DATE", help=f"Start of the period (inclusive): {_DATE_HELP}.")
@click.option(
    "--until",
    metavar="DATE",
    help="End of the period (exclusive; a bare date includes that day). Default: now.",
)
@click.option("--domain", metavar="D", help="Only this destination domain.")
@click.option("--reason", metavar="R", callback=_reason, help="Only this reason (user_unknown...).")
@click.option("--top", type=click.IntRange(min=1), metavar="N", help="domains: the N worst only.")
@click.option("--daily", is_flag=True, help="codes: one row per UTC day.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json", "html"]),
    default="table",
    show_default=True,
    help="A table for people, CSV with a header row (texts a spreadsheet would run as a formula"
    " start with '), a JSON array of objects (for scripts: the texts exactly), or a"
    " self-contained HTML page with charts (docs/reports.md).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to FILE instead of standard output.",
)
@click.option("--now", metavar="ISO8601", help="The time the report is made at (default: now).")
@click.pass_context
def report(
    ctx: click.Context,
    name: str,
    since: str | None,
    until: str | None,
    domain: str | None,
    reason: Reason | None,
    top: int | None,
    daily: bool,
    fmt: str,
    output: Path | None,
    now: str | None,
) -> None:
    """Report on REPORT: undeliverable, domains, codes or reputation.

    \b
    undeliverable  every bounced or suppressed address, its reason, last reply and action
    domains        per destination: attempts, results, rates, throttle, incidents (worst first)
    codes          counts by reply code, enhanced status and reason (per day with --daily)
    reputation     bounce and complaint rates over 7 and 30 days against the thresholds

    Periods are UTC and half-open (--since <= time < --until); without --since, event reports
    look back 30 days. CSV always has a header row; JSON is one array of objects.
    undeliverable leaves out an address bounced only by an expiry the policy's
    hygiene.expiry_exempt_faults exempt from strikes (the sender's, the message's or the
    destination's trouble): it stays sendable.
    """
    given = {
        "since": since is not None,
        "until": until is not None,
        "domain": domain is not None,
        "reason": reason is not None,
        "top": top is not None,
        "daily": daily,
    }
    stray = sorted(opt for opt, on in given.items() if on and opt not in _APPLIES[name])
    if stray:
        allowed = ", ".join(f"--{o}" for o in sorted(_APPLIES[name])) or "none"
        raise click.UsageError(
            f"{', '.join('--' + o for o in stray)} does not apply to the {name} report "
            f"(it takes: {allowed})",
            ctx,
        )

    moment = parse_date(now, "--now") if now else system_clock()
    end = parse_date(until, "--until", end=True) if until else moment
    start = parse_date(since, "--since") if since else None
    if start is not None and start >= end:
        raise click.BadParameter(
            f"--since {since} is not before --until {until or end.isoformat()}",
            param_hint="--since",
        )
    window = start if start is not None else end - DEFAULT_PERIOD
    # Reputation reads its thresholds, domains its provider groups, undeliverable the faults
    # whose expiries say nothing about an address, from the effective policy.
    policy = (
        load_policy(ctx.obj.policy_path if ctx.obj else None)
        if name in ("domains", "reputation", "undeliverable")
        else None
    )

    # A report only reads: pointed at a store that is not there (a mistyped URL, another
    # directory), it says so rather than make an empty one and report that nothing bounced.
    engine = open_engine(ctx.obj.database_url if ctx.obj else None, create=False)
    try:
        with session_scope(engine) as session:
            rows, verdict, level = _rows(
                session,
                name,
                since=start if name == "undeliverable" else window,
                # Undeliverable is about standing, not events: no default period.
                until=end if until is not None or name != "undeliverable" else None,
                domain=domain,
                reason=reason,
                top=top,
                daily=daily,
                policy=policy,
                now=moment,
                stream=fmt in ("csv", "json"),
            )
            charts = None
            chart_since = window
            if fmt == "html":
                chart_since = (
                    end - max(policy.reputation.windows)
                    if name == "reputation" and policy
                    else window
                )
                charts = _charts(session, since=chart_since, until=end, domain=domain)
            period = f"{chart_since.isoformat()} to {end.isoformat()} (UTC)"
            if name == "undeliverable" and start is None:
                # Its rows are standings, not the events of a period: without --since it lists
                # every address bounced or suppressed, however long ago it got there, and a
                # 30-day period heading them read as if older ones were left out.
                before = f" before {end.isoformat()}" if until is not None else ""
                period = f"every address bounced or suppressed{before}; charts: {period}"
            if domain:
                period += f", domain {domain}"
            # Written within the session: CSV and JSON of undeliverable read its rows from the
            # database as they are written (`reports.iter_undeliverable`).
            with _output(output) as out:
                _write(
                    out,
                    name,
                    fmt,
                    rows,
                    verdict=verdict,
                    level=level,
                    charts=charts,
                    period=period,
                    daily=daily,
                    generated_at=moment,
                )
    finally:
        engine.dispose()


def _write(
    out: IO[str],
    name: str,
    fmt: str,
    rows: Iterable[dict[str, Any]],
    *,
    verdict: str | None,
    level: str,
    charts: report_html.Charts | None,
    period: str,
    daily: bool,
    generated_at: datetime,
) -> None:
    """Write report `name`'s rows to `out` in format `fmt`."""
    columns = reports.COLUMNS[name]
    if fmt == "html":
        assert charts is not None
        out.write(
            report_html.render_report(
                title=_TITLES[name],
                columns=columns,
                rows=list(rows),
                charts=charts,
                generated_at=generated_at,
                period=period,
                verdict=verdict,
                verdict_level=level,
            )
        )
    elif fmt == "table":
        shown = TABLE_COLUMNS[name]
        if name == "codes" and not daily:
            shown = shown[1:]
        # A terminal gets a table that fits it; a file or pipe gets one wide enough not to
        # cut addresses short.
        width = None if out.isatty() else TABLE_WIDTH
        compact = [_compact(row) for row in rows]
        emit_rows(compact, shown, fmt, out=out, title=_TITLES[name], width=width)
        if verdict:
            out.write(verdict + "\n")
    else:
        emit_rows(rows, columns, fmt, out=out)
        if verdict:
            # Keep CSV and JSON machine-readable: the verdict line goes to standard error.
            click.echo(verdict, err=True)


def _compact(row: dict[str, Any]) -> dict[str, Any]:
    """A row as a person reads it on a terminal: minutes, not microseconds; rates in percent."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            value = value.strftime("%Y-%m-%d %H:%M")
        elif key in _FRACTIONS and isinstance(value, float):
            value = f"{value * 100:.2f}%"
        out[key] = value
    return out


def _rows(
    session: Session,
    name: str,
    *,
    since: datetime | None,
    until: datetime | None,
    domain: str | None,
    reason: Reason | None,
    top: int | None,
    daily: bool,
    policy: Policy | None,
    now: datetime,
    stream: bool = False,
) -> tuple[Iterable[dict[str, Any]], str | None, str]:
    """The rows of report `name`, and for reputation the verdict line and its level; with
    `stream`, undeliverable's are read while they are iterated (for CSV and JSON, which are
    written a row at a time: a list of every suppressed address can be millions long)."""
    try:
        if name == "undeliverable":
            read = reports.iter_undeliverable if stream else reports.undeliverable
            return (
                read(
                    session,
                    since=since,
                    until=until,
                    domain=domain,
                    reason=reason,
                    policy=policy.hygiene if policy else None,
                ),
                None,
                "",
            )
        if name == "domains":
            # A group's domains as the throttles see them: the policy's and the learned ones.
            providers = (
                hygiene_store.members_of(
                    session.connection(), provider_groups(policy.throttle), policy
                )
                if policy
                else None
            )
            return (
                reports.domains(
                    session,
                    since=since,
                    until=until,
                    domain=domain,
                    top=top,
                    providers=providers,
                    now=now,
                ),
                None,
                "",
            )
        if name == "codes":
            return (
                reports.codes(
                    session, since=since, until=until, domain=domain, reason=reason, daily=daily
                ),
                None,
                "",
            )
    except InputError as err:
        # A bad --domain: the message names the option and what was wrong.
        raise click.UsageError(str(err)) from None
    assert until is not None
    rows = reports.reputation(session, now=until, policy=policy.reputation if policy else None)
    return rows, reports.reputation_verdict(rows), reports.worst_level(rows)


def _charts(
    session: Session, *, since: datetime, until: datetime, domain: str | None
) -> report_html.Charts:
    return report_html.Charts(
        outcomes_by_day=reports.outcomes_by_day(session, since=since, until=until, domain=domain),
        worst_domains=reports.domains(
            session, since=since, until=until, domain=domain, top=CHART_ROWS
        ),
        reasons=reports.reasons(session, since=since, until=until, domain=domain, top=CHART_ROWS),
    )
