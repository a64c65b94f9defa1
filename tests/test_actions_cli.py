"""`deliverability throttles` and `deliverability actions`: listing, formats, settling incidents."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from factories_hygiene import History, write_history
from freezegun import freeze_time
from sqlalchemy.orm import Session

from deliverability.cli import cli, main
from deliverability.errors import InputError
from deliverability.hygiene import RULE_INCIDENT
from deliverability.policy import Policy, ThrottlePolicy
from deliverability.store.models import Action
from deliverability.store.session import open_engine
from deliverability.vocabulary import ActionKind, ActionStatus

POLICY = Policy(rules=())
H = POLICY.hygiene
T = POLICY.throttle


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    # The CLI layer is the same on every backend (the store tests cover those): SQLite only.
    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    engine = open_engine(db_url)
    yield db_url
    engine.dispose()


def _write(db_url: str, build: Callable[[History], object]) -> None:
    write_history(db_url, POLICY, build)


def _run(db_url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--database-url", db_url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_throttles_json_lists_each_paused_destination_with_domain_until_and_reason(
    store: str, frozen_now: datetime
) -> None:
    def build(h: History) -> None:
        h.pushback("a@busy.example", frozen_now)
        h.pushback("b@slow.example", frozen_now - timedelta(minutes=5))

    _write(store, build)
    with freeze_time(frozen_now):
        rows = json.loads(_run(store, "throttles", "--format", "json"))
    assert [r["target"] for r in rows] == ["slow.example", "busy.example"]
    assert [r["domain"] for r in rows] == ["slow.example", "busy.example"]
    assert {r["scope"] for r in rows} == {"domain"}
    assert rows[1]["until"] == (frozen_now + T.initial_pause).isoformat()
    assert rows[1]["reason"] == "rate_limited"


def test_an_expired_throttle_is_not_listed(store: str, frozen_now: datetime) -> None:
    _write(store, lambda h: h.pushback("a@busy.example", frozen_now))
    with freeze_time(frozen_now + T.initial_pause):
        assert json.loads(_run(store, "throttles", "--format", "json")) == []
    with freeze_time(frozen_now):
        assert "busy.example" in _run(store, "throttles")


def test_actions_csv_has_a_header_and_one_row_per_action(store: str, frozen_now: datetime) -> None:
    _write(store, lambda h: (h.hard("gone@example.com", frozen_now),
                             h.blocked("x@corp.example", frozen_now)))  # fmt: skip
    with freeze_time(frozen_now):
        rows = list(csv.DictReader(io.StringIO(_run(store, "actions", "--format", "csv"))))
    assert {(r["kind"], r["target"]) for r in rows} == {
        ("suppress", "gone@example.com"),
        ("alert", "corp.example"),
    }


def test_actions_open_leaves_out_closed_ones(store: str, frozen_now: datetime) -> None:
    _write(store, lambda h: (h.hard("gone@example.com", frozen_now),
                             h.pushback("a@busy.example", frozen_now)))  # fmt: skip
    _run(store, "nightly", "--now", (frozen_now + timedelta(days=1)).isoformat())
    with freeze_time(frozen_now + timedelta(days=1)):
        everything = json.loads(_run(store, "actions", "--format", "json"))
        open_only = json.loads(_run(store, "actions", "--open", "--format", "json"))
    assert {a["kind"] for a in everything} >= {"suppress", "throttle"}
    assert [a["kind"] for a in open_only] == ["suppress"]


def test_actions_open_leaves_out_an_action_whose_time_is_up_with_no_job_run_since(
    store: str, frozen_now: datetime
) -> None:
    # Issue 4: an expired throttle stops applying without any job running; `throttles` and
    # `actions --open` both compare with now, the nightly sweep only tidies the status later.
    _write(store, lambda h: (h.hard("gone@example.com", frozen_now),
                             h.pushback("a@busy.example", frozen_now)))  # fmt: skip
    with freeze_time(frozen_now + T.initial_pause - timedelta(seconds=1)):
        before = json.loads(_run(store, "actions", "--open", "--format", "json"))
    with freeze_time(frozen_now + T.initial_pause):
        at_the_end = json.loads(_run(store, "actions", "--open", "--format", "json"))
        everything = json.loads(_run(store, "actions", "--format", "json"))
    assert sorted(a["kind"] for a in before) == ["suppress", "throttle"]
    assert [a["kind"] for a in at_the_end] == ["suppress"]
    # The whole list says the throttle's time is up, as the sweep will record it.
    assert {(a["kind"], a["status"]) for a in everything} == {
        ("suppress", "open"),
        ("throttle", "expired"),
    }


def _incident(h: History, now: datetime) -> None:
    for i in range(H.incident_addresses):
        h.hard(f"u{i}@broken.example", now + timedelta(seconds=i))


def _incident_id(db_url: str) -> int:
    engine = open_engine(db_url)
    try:
        with Session(engine) as session:
            return session.scalars(sa.select(Action.id).where(Action.rule == RULE_INCIDENT)).one()
    finally:
        engine.dispose()


def _statuses(db_url: str) -> list[ActionStatus]:
    engine = open_engine(db_url)
    try:
        with Session(engine) as session:
            return list(
                session.scalars(sa.select(Action.status).where(Action.kind == ActionKind.SUPPRESS))
            )
    finally:
        engine.dispose()


def test_actions_confirm_applies_the_held_suppressions(store: str, frozen_now: datetime) -> None:
    _write(store, lambda h: _incident(h, frozen_now))
    incident = _incident_id(store)
    with freeze_time(frozen_now + timedelta(hours=1)):
        shown = _run(store, "actions", "--open")
        out = _run(store, "actions", "confirm", str(incident), "--by", "ops")
    assert "pending" in shown
    assert f"confirmed {H.incident_addresses} held" in out
    assert _statuses(store) == [ActionStatus.OPEN] * H.incident_addresses


def test_actions_discard_drops_the_held_suppressions(store: str, frozen_now: datetime) -> None:
    _write(store, lambda h: _incident(h, frozen_now))
    incident = _incident_id(store)
    with freeze_time(frozen_now + timedelta(hours=1)):
        out = _run(store, "actions", "discard", str(incident))
    assert f"discarded {H.incident_addresses} held" in out
    assert _statuses(store) == [ActionStatus.DISCARDED] * H.incident_addresses


@pytest.mark.parametrize("verb", ["confirm", "discard"])
def test_settling_an_incident_by_a_name_over_120_characters_is_refused_and_changes_nothing(
    store: str, frozen_now: datetime, verb: str
) -> None:
    _write(store, lambda h: _incident(h, frozen_now))
    incident = _incident_id(store)
    with freeze_time(frozen_now + timedelta(hours=1)):
        result = CliRunner().invoke(
            cli, ["--database-url", store, "actions", verb, str(incident), "--by", "x" * 121]
        )
    assert isinstance(result.exception, InputError)
    assert "longer than 120 characters" in str(result.exception)
    assert _statuses(store) == [ActionStatus.PENDING] * H.incident_addresses


def test_confirming_an_unknown_id_is_a_clear_error(store: str, frozen_now: datetime) -> None:
    result = CliRunner().invoke(cli, ["--database-url", store, "actions", "confirm", "999"])
    assert isinstance(result.exception, InputError)
    assert "action 999" in str(result.exception)


def test_throttles_as_csv_have_a_header_row_even_when_none_are_in_force(db_url: str) -> None:
    result = CliRunner().invoke(cli, ["--database-url", db_url, "throttles", "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("target,scope,domain,until,")


GROUPED = Policy(rules=(), throttle=ThrottlePolicy(provider_domains={"google": ("gmail.com",)}))


def _grouped_and_plain_throttles(db_url: str, now: datetime) -> None:
    engine = open_engine(db_url)
    try:
        with Session(engine) as session:
            history = History(session, GROUPED)
            history.pushback("a@gmail.com", now)
            history.pushback("b@busy.example", now + timedelta(minutes=1))
            session.commit()
    finally:
        engine.dispose()


def test_throttles_json_never_puts_a_provider_group_name_in_the_domain_field(
    store: str, frozen_now: datetime
) -> None:
    _grouped_and_plain_throttles(store, frozen_now)
    with freeze_time(frozen_now):
        rows = json.loads(_run(store, "throttles", "--format", "json"))
    by_target = {r["target"]: r for r in rows}
    assert (by_target["google"]["scope"], by_target["google"]["domain"]) == ("provider", None)
    assert (by_target["busy.example"]["scope"], by_target["busy.example"]["domain"]) == (
        "domain",
        "busy.example",
    )


def test_throttles_csv_and_json_have_the_same_columns_and_the_table_names_them_alike(
    store: str, frozen_now: datetime
) -> None:
    _grouped_and_plain_throttles(store, frozen_now)
    with freeze_time(frozen_now):
        rows = json.loads(_run(store, "throttles", "--format", "json"))
        csv_rows = list(csv.DictReader(io.StringIO(_run(store, "throttles", "--format", "csv"))))
        table = _run(store, "throttles")
    assert list(rows[0]) == list(csv_rows[0])
    assert [(r["target"], r["scope"], r["domain"] or "") for r in rows] == [
        (r["target"], r["scope"], r["domain"]) for r in csv_rows
    ]
    header = table.splitlines()[2]
    for column in ("target", "scope", "until", "reason"):
        assert column in header
    assert "google" in table
    assert "provider" in table


def test_confirming_a_throttle_says_what_the_id_is_and_what_confirm_applies_to(
    store: str, frozen_now: datetime
) -> None:
    _write(store, lambda h: h.pushback("a@busy.example", frozen_now))
    engine = open_engine(store)
    try:
        with Session(engine) as session:
            throttle_id = session.scalars(sa.select(Action.id)).one()
    finally:
        engine.dispose()
    result = CliRunner().invoke(
        cli, ["--database-url", store, "actions", "confirm", str(throttle_id)]
    )
    assert result.exit_code != 0
    message = str(result.exception)
    assert f"action {throttle_id} is a throttle of domain busy.example" in message
    assert "not a domain incident" in message
    assert RULE_INCIDENT in message
    assert _statuses(store) == []


def _refused(db_url: str, verb: str, action_id: int) -> str:
    result = CliRunner().invoke(cli, ["--database-url", db_url, "actions", verb, str(action_id)])
    assert isinstance(result.exception, InputError), result.output
    return str(result.exception)


def _id_of(db_url: str, kind: ActionKind) -> int:
    engine = open_engine(db_url)
    try:
        with Session(engine) as session:
            return session.scalars(sa.select(Action.id).where(Action.kind == kind)).first() or 0
    finally:
        engine.dispose()


@pytest.mark.parametrize("verb", ["confirm", "discard"])
def test_settling_an_alert_or_a_suppression_names_its_kind_in_plain_words(
    store: str, frozen_now: datetime, verb: str
) -> None:
    _write(store, lambda h: (h.hard("gone@example.com", frozen_now),
                             h.blocked("x@corp.example", frozen_now)))  # fmt: skip
    alert = _refused(store, verb, _id_of(store, ActionKind.ALERT))
    suppression = _refused(store, verb, _id_of(store, ActionKind.SUPPRESS))
    assert " is an alert of sender corp.example " in alert
    assert " is a suppression of address gone@example.com " in suppression
    assert "not a domain incident" in suppression


@pytest.mark.parametrize("verb", ["confirm", "discard"])
def test_settling_a_held_suppression_names_the_incident_to_settle_instead(
    store: str, frozen_now: datetime, verb: str
) -> None:
    # `actions --open` lists the held suppressions (pending) beside their incident: a person
    # may well pass one of their ids.
    _write(store, lambda h: _incident(h, frozen_now))
    incident = _incident_id(store)
    held = _id_of(store, ActionKind.SUPPRESS)
    message = _refused(store, verb, held)
    assert f"action {held} is a suppression of address u0@broken.example" in message
    assert f"held by the domain incident {incident} at broken.example" in message
    assert f"`deliverability actions {verb} {incident}`" in message
    assert _statuses(store) == [ActionStatus.PENDING] * H.incident_addresses


def test_the_console_script_prints_the_confirm_mistake_and_exits_non_zero(
    store: str,
    frozen_now: datetime,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _write(store, lambda h: h.pushback("a@busy.example", frozen_now))
    monkeypatch.setattr(
        "sys.argv", ["deliverability", "--database-url", store, "actions", "confirm", "1"]
    )
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code != 0
    err = capsys.readouterr().err
    assert "is a throttle of domain busy.example" in err
    assert "not a domain incident" in err
