"""The report functions, on a store filled by the factories (no engine, no hygiene rules)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import factories_reports as f
import pytest
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.orm import Session

from deliverability import reports
from deliverability.errors import InputError
from deliverability.hygiene import RULE_INCIDENT
from deliverability.policy import HygienePolicy, ReputationPolicy, load_policy
from deliverability.vocabulary import (
    ActionKind,
    ActionScope,
    ActionStatus,
    EventKind,
    Fault,
    Outcome,
    Reason,
    Standing,
)

NOW = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
#: The shipped hygiene policy, whose expiry exemptions the undeliverable report follows.
H = load_policy().hygiene


# ------------------------------------------------------------------------------------------
# undeliverable


def test_undeliverable_lists_bounced_and_suppressed_addresses_only(session: Session) -> None:
    f.recipient(session, "ok@example.com", at=NOW, standing=Standing.DELIVERED)
    f.recipient(session, "later@example.com", at=NOW, standing=Standing.RETRYING)
    f.recipient(
        session, "gone@example.com", at=NOW, standing=Standing.BOUNCED, reason=Reason.USER_UNKNOWN
    )
    f.recipient(
        session, "spam@example.org", at=NOW, standing=Standing.SUPPRESSED, reason=Reason.FEEDBACK
    )

    rows = reports.undeliverable(session)

    assert sorted(r["address"] for r in rows) == ["gone@example.com", "spam@example.org"]
    assert set(rows[0]) == set(reports.COLUMNS["undeliverable"])


def test_undeliverable_row_has_the_last_reply_failures_and_the_suppressing_action(
    session: Session,
) -> None:
    suppress = f.action(
        session,
        kind=ActionKind.SUPPRESS,
        scope=ActionScope.ADDRESS,
        target="bob@example.com",
        at=NOW - DAY,
        reason=Reason.USER_UNKNOWN,
        rule="hard-bounce-decisive",
    )
    f.recipient(
        session,
        "Bob@Example.com",
        at=NOW - 10 * DAY,
        standing=Standing.SUPPRESSED,
        reason=Reason.USER_UNKNOWN,
        since=NOW - DAY,
        action=suppress,
        last_code=550,
        last_status="5.1.1",
        last_text="550 5.1.1 <Bob@example.com>: no such user",
        bounced_count=1,
        deferred_count=2,
        expired_count=1,
        delivered_count=7,
        last_failure_at=NOW - DAY,
        last_event_at=NOW - DAY,
    )

    [row] = reports.undeliverable(session)

    assert row["address"] == "Bob@example.com"
    assert row["domain"] == "example.com"
    assert row["standing"] is Standing.SUPPRESSED
    assert row["reason"] is Reason.USER_UNKNOWN
    assert row["since"] == NOW - DAY
    assert (row["last_code"], row["last_status"]) == (550, "5.1.1")
    assert row["last_text"] == "550 5.1.1 <Bob@example.com>: no such user"
    assert row["failures"] == 4  # deliveries are not failures
    assert row["last_attempt"] == NOW - DAY
    assert (row["action_id"], row["action_rule"], row["action_by"]) == (
        suppress.id,
        "hard-bounce-decisive",
        "policy",
    )


def test_undeliverable_last_attempt_is_empty_for_an_address_the_destination_never_refused(
    session: Session,
) -> None:
    # Suppressed for a complaint after its last delivery, and by hand after one: neither was
    # ever refused, so neither has a time the destination last refused it.
    f.recipient(
        session,
        "spam@example.org",
        at=NOW - 10 * DAY,
        standing=Standing.SUPPRESSED,
        reason=Reason.FEEDBACK,
        since=NOW - DAY,
        complained_count=1,
        delivered_count=1,
        last_delivered_at=NOW - 2 * DAY,
        last_event_at=NOW - DAY,
    )
    f.recipient(
        session,
        "asked@example.org",
        at=NOW - 10 * DAY,
        standing=Standing.SUPPRESSED,
        reason=Reason.UNDEFINED,
        since=NOW - DAY,
        delivered_count=1,
        last_delivered_at=NOW - 3 * DAY,
        last_event_at=NOW - 3 * DAY,
    )

    rows = reports.undeliverable(session)

    assert {r["address"]: r["last_attempt"] for r in rows} == {
        "spam@example.org": None,
        "asked@example.org": None,
    }


def test_undeliverable_filters_combine(session: Session) -> None:
    def bad(address: str, reason: Reason, since: datetime) -> None:
        f.recipient(
            session, address, at=since, standing=Standing.BOUNCED, reason=reason, since=since
        )

    bad("a@one.example", Reason.USER_UNKNOWN, NOW - 5 * DAY)
    bad("b@one.example", Reason.MAILBOX_FULL, NOW - 5 * DAY)
    bad("c@two.example", Reason.USER_UNKNOWN, NOW - 5 * DAY)
    bad("d@one.example", Reason.USER_UNKNOWN, NOW - 40 * DAY)

    def addresses(**kw: object) -> list[str]:
        return sorted(r["address"] for r in reports.undeliverable(session, **kw))  # type: ignore[arg-type]

    assert addresses(domain="ONE.example") == ["a@one.example", "b@one.example", "d@one.example"]
    assert addresses(domain="one.example", reason="user_unknown") == [
        "a@one.example",
        "d@one.example",
    ]
    assert addresses(domain="one.example", reason=Reason.USER_UNKNOWN, since=NOW - 30 * DAY) == [
        "a@one.example"
    ]
    assert addresses(until=NOW - 30 * DAY) == ["d@one.example"]


def test_undeliverable_lists_newest_first(session: Session) -> None:
    for i, name in enumerate(["old", "mid", "new"]):
        f.recipient(
            session, f"{name}@example.com", at=NOW, standing=Standing.BOUNCED, since=NOW + i * DAY
        )
    assert [r["address"] for r in reports.undeliverable(session)] == [
        "new@example.com",
        "mid@example.com",
        "old@example.com",
    ]


def _given_up(
    session: Session, local: str, *faults: Fault, standing: Standing = Standing.BOUNCED
) -> None:
    """An address whose standing follows its deliveries' give-ups at one time (the engine's
    expiries, or a relay's X.4.7 bounce), each keeping its last deferral's fault."""
    at = NOW - DAY
    who = f.recipient(
        session,
        f"{local}@example.com",
        at=NOW - 6 * DAY,
        standing=standing,
        reason=Reason.EXPIRED,
        since=at,
        standing_basis_at=at,
        last_code=451,
        last_status="4.7.1",
        last_text="Client host [192.0.2.1] blocked using zen.spamhaus.org",
    )
    for i, fault in enumerate(faults):
        outcome, kind = (Outcome.BOUNCED, EventKind.BOUNCE) if i else (
            Outcome.DEFERRED, EventKind.EXPIRY)  # fmt: skip
        f.event(session, who, at=at, outcome=outcome, reason=Reason.EXPIRED, kind=kind,
                fault=fault)  # fmt: skip


def test_undeliverable_leaves_out_an_address_bounced_only_by_an_expiry_exempt_from_strikes(
    session: Session,
) -> None:
    # An expiry after the sender's, the message's or the destination's own trouble (a 4xx
    # blocklisting, a content refusal, push-back) is no strike on the address
    # (hygiene.expiry_exempt_faults): it stays sendable, so the list to remove leaves it out.
    exempt = sorted(H.expiry_exempt_faults)
    counted = sorted(set(Fault) - H.expiry_exempt_faults)
    for fault in Fault:
        _given_up(session, f"after-{fault.value}", fault)
    # Two deliveries given up at once: one that counts is enough to list it.
    _given_up(session, "both", exempt[0], counted[0])
    _given_up(session, "both-exempt", exempt[0], exempt[-1])
    # A suppression is listed whatever its reason; a give-up not stored cannot be judged.
    _given_up(session, "suppressed", exempt[0], standing=Standing.SUPPRESSED)
    _given_up(session, "pruned")

    def listed(policy: HygienePolicy | None = None) -> list[str]:
        rows = reports.undeliverable(session, policy=policy)
        return sorted(r["address"].split("@")[0] for r in rows)

    expected = sorted(
        [f"after-{fault.value}" for fault in counted] + ["both", "suppressed", "pruned"]
    )
    assert listed() == expected
    assert listed(H) == expected
    assert (
        sorted(r["address"].split("@")[0] for r in reports.undeliverable(session, reason="expired"))
        == expected
    )
    # A policy that exempts no fault counts every expiry, and lists every such address.
    strict = dataclasses.replace(H, expiry_exempt_faults=frozenset())
    assert len(listed(strict)) == len(Fault) + 4


def test_an_unknown_reason_is_an_error_that_lists_the_valid_reasons(session: Session) -> None:
    with pytest.raises(InputError, match="unknown reason 'no_such_reason'") as caught:
        reports.undeliverable(session, reason="no_such_reason")
    assert "user_unknown" in str(caught.value)
    assert "mailbox_full" in str(caught.value)


def test_a_bad_domain_filter_is_an_error_naming_it(session: Session) -> None:
    with pytest.raises(InputError, match="bad --domain 'not a domain'"):
        reports.domains(session, since=NOW - DAY, until=NOW, domain="not a domain")


def test_a_period_that_ends_before_it_starts_is_an_error(session: Session) -> None:
    with pytest.raises(InputError, match="empty period"):
        reports.codes(session, since=NOW, until=NOW - DAY)


def test_an_empty_database_gives_empty_reports(session: Session) -> None:
    assert reports.undeliverable(session) == []
    assert reports.domains(session, since=NOW - DAY, until=NOW) == []
    assert reports.codes(session, since=NOW - DAY, until=NOW, daily=True) == []
    assert reports.outcomes_by_day(session, since=NOW - DAY, until=NOW) == []
    assert reports.reasons(session, since=NOW - DAY, until=NOW) == []
    rows = reports.reputation(session, now=NOW)
    assert [(r["window"], r["metric"], r["count"], r["rate"]) for r in rows] == [
        ("7d", "bounce", 0, None),
        ("7d", "complaint", 0, None),
        ("30d", "bounce", 0, None),
        ("30d", "complaint", 0, None),
    ]
    assert {r["level"] for r in rows} == {"insufficient"}


# ------------------------------------------------------------------------------------------
# domains


def test_domains_counts_outcomes_and_rates_within_the_half_open_period(session: Session) -> None:
    a = f.recipient(session, "a@one.example", at=NOW - 10 * DAY)
    f.events(session, a, 6, at=NOW - DAY, outcome=Outcome.DELIVERED)
    f.events(session, a, 2, at=NOW - DAY, outcome=Outcome.DEFERRED)
    f.events(session, a, 3, at=NOW - DAY, outcome=Outcome.BOUNCED)
    f.events(session, a, 1, at=NOW - DAY, outcome=Outcome.BLOCKED)
    f.events(session, a, 2, at=NOW - DAY, outcome=Outcome.COMPLAINED)
    # Outside the period: one at `until` exactly, one before `since`.
    f.event(session, a, at=NOW, outcome=Outcome.BOUNCED)
    f.event(session, a, at=NOW - 3 * DAY, outcome=Outcome.BOUNCED)

    [row] = reports.domains(session, since=NOW - 2 * DAY, until=NOW)

    assert row == {
        "domain": "one.example",
        "attempts": 12,
        "sent": 10,
        "delivered": 6,
        "deferred": 2,
        "expired": 0,
        "bounced": 3,
        "blocked": 1,
        "complaints": 2,
        "bounce_rate": 0.3,
        "block_rate": 0.1,
        "deferral_rate": 2 / 12,
        "complaint_rate": 2 / 6,
        "throttled_until": None,
        "max_rate": None,
        "open_incidents": 0,
    }


def test_domains_count_an_expiry_as_expired_not_as_a_deferred_attempt(session: Session) -> None:
    # An expiry is stored with outcome `deferred` (the closed outcome vocabulary has no other),
    # but it is the engine (or a relay) giving up, not a reply the destination gave.
    a = f.recipient(session, "a@one.example", at=NOW - 10 * DAY)
    f.events(session, a, 3, at=NOW - DAY, outcome=Outcome.DELIVERED)
    f.event(session, a, at=NOW - DAY, outcome=Outcome.DEFERRED)
    f.events(
        session,
        a,
        2,
        at=NOW - DAY,
        outcome=Outcome.DEFERRED,
        kind=EventKind.EXPIRY,
        reason=Reason.EXPIRED,
    )

    [row] = reports.domains(session, since=NOW - 2 * DAY, until=NOW)

    assert (row["attempts"], row["sent"], row["deferred"]) == (4, 3, 1)
    assert row["deferral_rate"] == 1 / 4
    assert row["expired"] == 2


def test_domains_are_sorted_worst_bounce_rate_first_and_top_keeps_the_worst(
    session: Session,
) -> None:
    for name, bounced in [("fine", 0), ("worst", 5), ("bad", 2)]:
        r = f.recipient(session, f"x@{name}.example", at=NOW - 10 * DAY)
        f.events(session, r, 10 - bounced, at=NOW - DAY, outcome=Outcome.DELIVERED)
        f.events(session, r, bounced, at=NOW - DAY, outcome=Outcome.BOUNCED)

    rows = reports.domains(session, since=NOW - 7 * DAY, until=NOW)
    assert [r["domain"] for r in rows] == ["worst.example", "bad.example", "fine.example"]
    top = reports.domains(session, since=NOW - 7 * DAY, until=NOW, top=2)
    assert [r["domain"] for r in top] == ["worst.example", "bad.example"]
    with pytest.raises(InputError, match="--top must be at least 1"):
        reports.domains(session, since=NOW - 7 * DAY, until=NOW, top=0)


def test_domains_filter_keeps_one_domain(session: Session) -> None:
    for name in ("one", "two"):
        r = f.recipient(session, f"x@{name}.example", at=NOW - 10 * DAY)
        f.event(session, r, at=NOW - DAY, outcome=Outcome.DELIVERED)
    rows = reports.domains(session, since=NOW - 7 * DAY, until=NOW, domain="Two.Example")
    assert [r["domain"] for r in rows] == ["two.example"]


def test_domains_show_the_open_throttle_and_open_incidents_but_not_resolved_ones(
    session: Session,
) -> None:
    r = f.recipient(session, "x@slow.example", at=NOW - 10 * DAY)
    f.event(session, r, at=NOW - DAY, outcome=Outcome.DEFERRED, reason=Reason.RATE_LIMITED)
    pause = NOW + timedelta(minutes=30)
    f.action(
        session,
        kind=ActionKind.THROTTLE,
        scope=ActionScope.DOMAIN,
        target="slow.example",
        at=NOW - DAY,
        pause_until=pause,
        max_rate=30.0,
    )
    f.action(
        session,
        kind=ActionKind.THROTTLE,
        scope=ActionScope.DOMAIN,
        target="slow.example",
        at=NOW - 2 * DAY,
        status=ActionStatus.RESOLVED,
        pause_until=NOW + DAY,
        max_rate=1.0,
    )
    f.action(
        session,
        kind=ActionKind.ALERT,
        scope=ActionScope.DOMAIN,
        target="slow.example",
        at=NOW - DAY,
        rule=RULE_INCIDENT,
    )
    # A block alert is raised at sender scope: not an incident at the destination.
    f.action(
        session,
        kind=ActionKind.ALERT,
        scope=ActionScope.SENDER,
        target="slow.example",
        at=NOW - DAY,
        rule="hygiene.blocked",
    )

    [row] = reports.domains(session, since=NOW - 7 * DAY, until=NOW)

    assert row["throttled_until"] == pause
    assert row["max_rate"] == 30.0
    assert row["open_incidents"] == 1
    # Once its pause is over, an open throttle no longer applies (the sweep expires it later).
    [later] = reports.domains(session, since=NOW - 7 * DAY, until=NOW, now=pause)
    assert (later["throttled_until"], later["max_rate"]) == (None, None)
    assert later["open_incidents"] == 1


def test_a_provider_group_throttle_shows_on_each_of_its_domains(session: Session) -> None:
    for domain in ("gmail.com", "googlemail.com", "other.example"):
        r = f.recipient(session, f"x@{domain}", at=NOW - 10 * DAY)
        f.event(session, r, at=NOW - DAY, outcome=Outcome.DEFERRED, reason=Reason.RATE_LIMITED)
    pause = NOW + timedelta(hours=1)
    f.action(
        session,
        kind=ActionKind.THROTTLE,
        scope=ActionScope.PROVIDER,
        target="google",
        at=NOW - DAY,
        pause_until=pause,
        max_rate=15.0,
    )
    providers = {"google": ("gmail.com", "googlemail.com")}

    rows = reports.domains(session, since=NOW - 7 * DAY, until=NOW, providers=providers)

    by = {r["domain"]: r for r in rows}
    assert (by["gmail.com"]["throttled_until"], by["gmail.com"]["max_rate"]) == (pause, 15.0)
    assert by["googlemail.com"]["throttled_until"] == pause
    assert by["other.example"]["throttled_until"] is None
    # Without the provider map the group's throttle cannot be placed on a domain.
    plain = reports.domains(session, since=NOW - 7 * DAY, until=NOW)
    assert {r["throttled_until"] for r in plain} == {None}


# ------------------------------------------------------------------------------------------
# codes, outcomes per day, reasons


def _mixed_history(session: Session) -> None:
    a = f.recipient(session, "a@one.example", at=NOW - 10 * DAY)
    b = f.recipient(session, "b@two.example", at=NOW - 10 * DAY)
    day1 = datetime(2026, 10, 30, 23, 59, tzinfo=UTC)
    day2 = datetime(2026, 10, 31, 0, 1, tzinfo=UTC)
    f.events(session, a, 3, at=day1, outcome=Outcome.BOUNCED)
    f.events(session, a, 1, at=day2, outcome=Outcome.BOUNCED)
    f.events(session, b, 2, at=day2, outcome=Outcome.DEFERRED)
    f.events(session, b, 4, at=day2, outcome=Outcome.DELIVERED)
    f.event(session, b, at=day2, outcome=Outcome.BLOCKED, code=550, status="5.7.1", text="spam")


def test_codes_count_by_code_status_reason_and_outcome_most_frequent_first(
    session: Session,
) -> None:
    _mixed_history(session)
    rows = reports.codes(session, since=NOW - 7 * DAY, until=NOW)
    assert [(r["code"], r["status"], r["reason"], r["outcome"], r["count"]) for r in rows] == [
        (250, "2.0.0", Reason.DELIVERED, Outcome.DELIVERED, 4),
        (550, "5.1.1", Reason.USER_UNKNOWN, Outcome.BOUNCED, 4),
        (452, "4.2.2", Reason.MAILBOX_FULL, Outcome.DEFERRED, 2),
        (550, "5.7.1", Reason.BLOCKED, Outcome.BLOCKED, 1),
    ]
    assert rows[3]["example"] == "spam"
    assert {r["day"] for r in rows} == {None}


def test_codes_daily_splits_counts_by_utc_day(session: Session) -> None:
    _mixed_history(session)
    rows = reports.codes(session, since=NOW - 7 * DAY, until=NOW, daily=True, domain="one.example")
    assert [(r["day"], r["status"], r["count"]) for r in rows] == [
        ("2026-10-30", "5.1.1", 3),
        ("2026-10-31", "5.1.1", 1),
    ]


def test_codes_reason_filter_keeps_that_reason_only(session: Session) -> None:
    _mixed_history(session)
    rows = reports.codes(session, since=NOW - 7 * DAY, until=NOW, reason="mailbox_full")
    assert [(r["reason"], r["count"]) for r in rows] == [(Reason.MAILBOX_FULL, 2)]


def test_outcomes_by_day_has_one_row_per_day_with_every_outcome(session: Session) -> None:
    _mixed_history(session)
    rows = reports.outcomes_by_day(session, since=NOW - 7 * DAY, until=NOW)
    assert [r["day"] for r in rows] == ["2026-10-30", "2026-10-31"]
    assert rows[0]["bounced"] == 3
    assert (rows[1]["bounced"], rows[1]["deferred"], rows[1]["delivered"]) == (1, 2, 4)
    assert rows[1]["blocked"] == 1
    assert rows[0]["complained"] == 0


def test_reasons_count_failures_only_most_frequent_first(session: Session) -> None:
    _mixed_history(session)
    rows = reports.reasons(session, since=NOW - 7 * DAY, until=NOW)
    assert rows == [
        {"reason": Reason.USER_UNKNOWN, "count": 4},
        {"reason": Reason.MAILBOX_FULL, "count": 2},
        {"reason": Reason.BLOCKED, "count": 1},
    ]


def _deferrals_and_expiries(session: Session) -> None:
    """Deferrals, and the expiries the engine and a relay record when the retries ran out."""
    a = f.recipient(session, "a@one.example", at=NOW - 10 * DAY)
    day1 = datetime(2026, 10, 30, 9, tzinfo=UTC)
    day2 = datetime(2026, 10, 31, 9, tzinfo=UTC)
    f.events(session, a, 3, at=day1, outcome=Outcome.DEFERRED)
    f.events(session, a, 1, at=day2, outcome=Outcome.DELIVERED)
    # The engine's own give-up: no reply, reason `expired`, stored with outcome `deferred`.
    f.events(
        session,
        a,
        2,
        at=day2,
        outcome=Outcome.DEFERRED,
        kind=EventKind.EXPIRY,
        reason=Reason.EXPIRED,
    )
    # A relay's give-up (Postfix status=expired) keeps the last deferral's reply.
    f.event(
        session,
        a,
        at=day2,
        outcome=Outcome.DEFERRED,
        kind=EventKind.EXPIRY,
        reason=Reason.EXPIRED,
        code=452,
        status="4.2.2",
        text="mailbox full",
    )


def test_outcomes_by_day_count_an_expiry_as_expired_not_as_deferred(session: Session) -> None:
    _deferrals_and_expiries(session)
    rows = reports.outcomes_by_day(session, since=NOW - 7 * DAY, until=NOW)
    assert [(r["day"], r["deferred"], r["expired"]) for r in rows] == [
        ("2026-10-30", 3, 0),
        ("2026-10-31", 0, 3),
    ]
    assert rows[1]["delivered"] == 1


def test_codes_show_an_expiry_as_its_own_line_with_outcome_expired(session: Session) -> None:
    _deferrals_and_expiries(session)
    rows = reports.codes(session, since=NOW - 7 * DAY, until=NOW)
    assert [(r["code"], r["status"], r["reason"], r["outcome"], r["count"]) for r in rows] == [
        (452, "4.2.2", Reason.MAILBOX_FULL, Outcome.DEFERRED, 3),
        (None, None, Reason.EXPIRED, reports.EXPIRED, 2),
        (250, "2.0.0", Reason.DELIVERED, Outcome.DELIVERED, 1),
        (452, "4.2.2", Reason.EXPIRED, reports.EXPIRED, 1),
    ]


def test_codes_daily_show_an_expiry_as_expired_on_its_day(session: Session) -> None:
    _deferrals_and_expiries(session)
    rows = reports.codes(session, since=NOW - 7 * DAY, until=NOW, daily=True)
    assert [(r["day"], r["outcome"], r["count"]) for r in rows] == [
        ("2026-10-30", Outcome.DEFERRED, 3),
        ("2026-10-31", reports.EXPIRED, 2),
        ("2026-10-31", Outcome.DELIVERED, 1),
        ("2026-10-31", reports.EXPIRED, 1),
    ]


def test_codes_keep_an_expiry_recorded_with_a_deferrals_verdict_apart_from_the_deferrals(
    session: Session,
) -> None:
    # A caller that records an expiry with the relay's last reply and no verdict of its own
    # (Engine.record(..., kind=EventKind.EXPIRY)) gets that reply's verdict stored: the reason
    # and outcome of a deferral. It is still the relay giving up, not a deferral.
    a = f.recipient(session, "a@one.example", at=NOW - 10 * DAY)
    f.events(session, a, 3, at=NOW - DAY, outcome=Outcome.DEFERRED)
    f.event(
        session,
        a,
        at=NOW - DAY,
        outcome=Outcome.DEFERRED,
        kind=EventKind.EXPIRY,
        code=452,
        status="4.2.2",
        text="mailbox full",
    )
    rows = reports.codes(session, since=NOW - 7 * DAY, until=NOW)
    assert [(r["code"], r["status"], r["reason"], r["outcome"], r["count"]) for r in rows] == [
        (452, "4.2.2", Reason.MAILBOX_FULL, Outcome.DEFERRED, 3),
        (452, "4.2.2", Reason.MAILBOX_FULL, reports.EXPIRED, 1),
    ]


def test_reasons_count_an_expiry_as_a_failure_of_its_own_reason_expired(
    session: Session,
) -> None:
    _deferrals_and_expiries(session)
    rows = reports.reasons(session, since=NOW - 7 * DAY, until=NOW)
    assert rows == [
        {"reason": Reason.EXPIRED, "count": 3},
        {"reason": Reason.MAILBOX_FULL, "count": 3},
    ]


# ------------------------------------------------------------------------------------------
# reputation


def _sends(
    session: Session, *, delivered: int, bounced: int, complaints: int, at: datetime
) -> None:
    r = f.recipient(session, f"r{next(_counter)}@example.com", at=at)
    f.events(session, r, delivered, at=at, outcome=Outcome.DELIVERED)
    f.events(session, r, bounced, at=at, outcome=Outcome.BOUNCED)
    f.events(session, r, complaints, at=at, outcome=Outcome.COMPLAINED)


_counter = iter(range(1_000_000))


def _levels(rows: list[dict[str, object]]) -> dict[tuple[object, object], object]:
    return {(r["window"], r["metric"]): r["level"] for r in rows}


@pytest.mark.parametrize(
    ("bounced", "level"),
    [(4, "ok"), (5, "review"), (9, "review"), (10, "pause")],
)
def test_bounce_rate_is_judged_at_the_review_and_pause_thresholds(
    session: Session, bounced: int, level: str
) -> None:
    # 100 messages sent: the rate in percent is the number bounced.
    _sends(session, delivered=100 - bounced, bounced=bounced, complaints=0, at=NOW - DAY)
    rows = reports.reputation(session, now=NOW, policy=ReputationPolicy())
    assert _levels(rows)[("7d", "bounce")] == level
    assert _levels(rows)[("30d", "bounce")] == level


@pytest.mark.parametrize(
    ("complaints", "level"),
    [(1, "ok"), (2, "review"), (9, "review"), (10, "pause")],
)
def test_complaint_rate_is_judged_against_deliveries_at_the_thresholds(
    session: Session, complaints: int, level: str
) -> None:
    # 2000 delivered: 0.1% is 2 complaints, 0.5% is 10.
    _sends(session, delivered=2000, bounced=0, complaints=complaints, at=NOW - DAY)
    rows = reports.reputation(session, now=NOW)
    assert _levels(rows)[("7d", "complaint")] == level


def test_an_old_bounce_wave_shows_in_the_30_day_window_but_not_the_7_day_one(
    session: Session,
) -> None:
    _sends(session, delivered=90, bounced=20, complaints=0, at=NOW - 8 * DAY)
    _sends(session, delivered=200, bounced=0, complaints=0, at=NOW - DAY)
    rows = reports.reputation(session, now=NOW)
    by = {(r["window"], r["metric"]): r for r in rows}
    assert (by["7d", "bounce"]["count"], by["7d", "bounce"]["base"]) == (0, 200)
    assert (by["30d", "bounce"]["count"], by["30d", "bounce"]["base"]) == (20, 310)
    assert by["7d", "bounce"]["level"] == "ok"
    assert by["30d", "bounce"]["level"] == "review"
    assert by["7d", "bounce"]["since"] == NOW - 7 * DAY
    assert by["7d", "bounce"]["until"] == NOW


def test_events_at_or_after_now_and_older_than_30_days_are_not_counted(session: Session) -> None:
    _sends(session, delivered=100, bounced=50, complaints=0, at=NOW)
    _sends(session, delivered=100, bounced=50, complaints=0, at=NOW - 30 * DAY - timedelta(1))
    rows = reports.reputation(session, now=NOW)
    assert {r["base"] for r in rows} == {0}


def test_reputation_counts_an_expiry_neither_as_sent_nor_as_a_bounce(session: Session) -> None:
    # 100 sent, 5 bounced: review. An expiry is the engine or a relay giving up, not a result
    # the destination gave: not sent, whatever outcome it was stored with. One recorded with
    # the relay's last reply and no verdict of its own (Engine.record(..., kind=EXPIRY)) has
    # that reply's outcome: bounced, for a 550 that Postfix's soft_bounce kept deferring.
    _sends(session, delivered=95, bounced=5, complaints=0, at=NOW - DAY)
    r = f.recipient(session, "late@example.com", at=NOW - 10 * DAY)
    f.events(
        session,
        r,
        20,
        at=NOW - DAY,
        outcome=Outcome.DEFERRED,
        kind=EventKind.EXPIRY,
        reason=Reason.EXPIRED,
    )
    f.events(session, r, 10, at=NOW - DAY, outcome=Outcome.BOUNCED, kind=EventKind.EXPIRY)

    rows = reports.reputation(session, now=NOW)

    by = {(r["window"], r["metric"]): r for r in rows}
    assert (by["7d", "bounce"]["count"], by["7d", "bounce"]["base"]) == (5, 100)
    assert (by["7d", "complaint"]["count"], by["7d", "complaint"]["base"]) == (0, 95)
    assert by["7d", "bounce"]["level"] == "review"


def test_too_few_messages_are_shown_but_not_judged(session: Session) -> None:
    _sends(session, delivered=1, bounced=1, complaints=0, at=NOW - DAY)
    rows = reports.reputation(session, now=NOW)
    assert rows[0]["rate"] == 0.5
    assert rows[0]["level"] == "insufficient"
    assert reports.reputation_verdict(rows).startswith("verdict: NOT ENOUGH DATA - 2 message(s)")
    lax = reports.reputation(session, now=NOW, policy=ReputationPolicy(min_messages=2))
    assert lax[0]["level"] == "pause"


def test_verdict_names_the_worst_level_and_the_numbers_behind_it(session: Session) -> None:
    _sends(session, delivered=88, bounced=12, complaints=0, at=NOW - DAY)
    verdict = reports.reputation_verdict(reports.reputation(session, now=NOW))
    assert verdict.startswith("verdict: PAUSE - 7d bounce rate 12% (12 of 100) >= 10%")
    assert "30d bounce rate 12%" in verdict


def test_verdict_is_ok_when_every_rate_is_below_review(session: Session) -> None:
    _sends(session, delivered=1000, bounced=10, complaints=0, at=NOW - DAY)
    verdict = reports.reputation_verdict(reports.reputation(session, now=NOW))
    assert verdict == (
        "verdict: OK - bounce and complaint rates are below the review thresholds over the "
        "last 7d and 30d"
    )


def test_verdict_review_for_complaints_says_review(session: Session) -> None:
    _sends(session, delivered=1000, bounced=0, complaints=2, at=NOW - DAY)
    verdict = reports.reputation_verdict(reports.reputation(session, now=NOW))
    assert verdict.startswith("verdict: REVIEW - 7d complaint rate 0.2% (2 of 1000) >= 0.1%")


def test_report_ties_and_examples_compare_text_bytewise_on_postgresql_whatever_its_collation() -> (
    None
):
    # A PostgreSQL column follows the database's collation: on an ICU en-US database the
    # undeliverable report's ties and the codes report's example differed from SQLite's and
    # MariaDB's. Both now compare as the other two do.
    from sqlalchemy.dialects import postgresql, sqlite

    from deliverability.reports import codes_query, undeliverable_query

    session = Session(sa_create_engine("sqlite://"))
    queries = [undeliverable_query(), codes_query(session, since=None, until=None)]
    for query in queries:
        assert 'COLLATE "C"' in str(query.compile(dialect=postgresql.dialect()))
        assert "COLLATE" not in str(query.compile(dialect=sqlite.dialect()))
