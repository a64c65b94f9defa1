"""A list owner settling domain incidents and lifting suppressions on the command line: what each
command says, its exit status, and that running one again changes nothing (issue 4)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from factories_hygiene import History, write_history
from freezegun import freeze_time
from sqlalchemy.orm import Session

from deliverability.cli import main
from deliverability.policy import Policy
from deliverability.store.models import Action
from deliverability.store.session import open_engine
from deliverability.vocabulary import ActionKind, ActionStatus

POLICY = Policy(rules=())
H = POLICY.hygiene
DAY = timedelta(days=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    # The command layer is the same on every backend (tests/test_hygiene_operator.py plays the
    # store on each): SQLite only.
    db_url = f"sqlite:///{tmp_path / 'operator.db'}"
    engine = open_engine(db_url)
    yield db_url
    engine.dispose()


def _write(db_url: str, build: Callable[[History], object]) -> None:
    write_history(db_url, POLICY, build)


def _incident(h: History, now: datetime) -> None:
    for i in range(H.incident_addresses):
        h.hard(f"u{i}@broken.example", now + timedelta(seconds=i))


def _actions(db_url: str) -> list[tuple[int, ActionKind, ActionStatus, str | None, str]]:
    engine = open_engine(db_url)
    try:
        with Session(engine) as session:
            return [
                (a.id, a.kind, a.status, a.resolved_by, a.detail)
                for a in session.scalars(sa.select(Action).order_by(Action.id))
            ]
    finally:
        engine.dispose()


def _incident_id(db_url: str) -> int:
    return next(i for i, kind, *_ in _actions(db_url) if kind is ActionKind.ALERT)


def _cli(
    db_url: str,
    at: datetime,
    *args: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> tuple[int, str, str]:
    """Run the console script as a person would: (exit status, stdout, stderr)."""
    monkeypatch.setattr("sys.argv", ["deliverability", "--database-url", db_url, *args])
    with freeze_time(at), pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    def run(db_url: str, at: datetime, *args: str) -> tuple[int, str, str]:
        return _cli(db_url, at, *args, monkeypatch=monkeypatch, capsys=capsys)

    return run


# ---- settling an incident twice ------------------------------------------------------------


@pytest.mark.parametrize("verb", ["confirm", "discard"])
def test_settling_an_incident_the_same_way_twice_succeeds_and_changes_nothing_the_second_time(
    store: str, frozen_now: datetime, cli: Callable[..., tuple[int, str, str]], verb: str
) -> None:
    # A script that settles an incident and is run again (a retry after a lost connection)
    # must not fail: the incident is settled as asked.
    _write(store, lambda h: _incident(h, frozen_now))
    incident = _incident_id(store)
    settled_at = frozen_now + timedelta(hours=1)
    code, out, _ = cli(store, settled_at, "actions", verb, str(incident), "--by", "ops")
    assert code == 0
    assert f"{verb}ed {H.incident_addresses} held suppression(s)" in out
    after_first = _actions(store)
    code, out, err = cli(
        store, settled_at + timedelta(hours=1), "actions", verb, str(incident), "--by", "other"
    )
    assert (code, err) == (0, "")
    assert out.strip() == (
        f"incident #{incident} at broken.example: already {verb}ed by ops at "
        f"{settled_at.isoformat()}; nothing changed"
    )
    assert _actions(store) == after_first


@pytest.mark.parametrize(
    ("first", "then", "state"),
    [("confirm", "discard", "in force"), ("discard", "confirm", "were dropped")],
)
def test_settling_an_incident_the_other_way_afterwards_says_how_who_and_when_it_was_settled(
    store: str,
    frozen_now: datetime,
    cli: Callable[..., tuple[int, str, str]],
    first: str,
    then: str,
    state: str,
) -> None:
    _write(store, lambda h: _incident(h, frozen_now))
    incident = _incident_id(store)
    settled_at = frozen_now + timedelta(hours=1)
    assert cli(store, settled_at, "actions", first, str(incident), "--by", "ops")[0] == 0
    after_first = _actions(store)
    code, out, err = cli(store, settled_at, "actions", then, str(incident), "--by", "other")
    assert code == 2
    assert out == ""
    assert (
        f"incident at broken.example was already {first}ed by ops at {settled_at.isoformat()}"
        in err
    )
    assert state in err
    assert _actions(store) == after_first


# ---- unsuppress ------------------------------------------------------------------------------


def test_unsuppress_of_an_address_never_seen_says_it_is_not_suppressed_and_exits_2(
    store: str, frozen_now: datetime, cli: Callable[..., tuple[int, str, str]]
) -> None:
    code, out, err = cli(store, frozen_now, "unsuppress", "nobody@example.com", "--by", "ops")
    assert (code, out) == (2, "")
    assert err.strip() == "error: nobody@example.com is not suppressed"
    assert _actions(store) == []


def test_unsuppress_of_a_suppression_that_ran_out_says_when_and_records_nothing(
    store: str,
    frozen_now: datetime,
    cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
) -> None:
    # The policy ends mailbox_full suppressions after 20 days; 10 days after that, with no
    # nightly sweep run, the address is sendable already: an unsuppress then would record a
    # person lifting a suppression the policy had ended, at the wrong time.
    policy = tmp_path / "expiry.toml"
    policy.write_text('[hygiene.suppression_expiry]\nmailbox_full = "20d"\n')
    a = "full@example.com"
    days = [frozen_now + H.soft_span * i / (H.soft_strikes - 1) for i in range(H.soft_strikes)]
    for i, at in enumerate(days):
        code, _, _ = cli(
            store, at, "--policy", str(policy), "record", "--recipient", a,
            "--reply", "452 4.2.2 Mailbox full", "--message-id", f"m{i}",
        )  # fmt: skip
        assert code == 0
    ran_out = days[-1] + timedelta(days=20)
    later = ran_out + timedelta(days=10)
    assert cli(store, later, "--policy", str(policy), "sendable", a)[:2] == (0, f"{a}\n")
    before = _actions(store)
    assert [(kind, status) for _, kind, status, *_ in before] == [
        (ActionKind.SUPPRESS, ActionStatus.OPEN)
    ]
    code, out, err = cli(store, later, "--policy", str(policy), "unsuppress", a, "--by", "ops")
    assert (code, out) == (2, "")
    assert err.strip() == (
        f"error: {a} is not suppressed: its suppression ran out at {ran_out.isoformat()}"
    )
    assert _actions(store) == before


# ---- who, when and why of every change ---------------------------------------------------------


def test_actions_json_says_when_and_by_whom_each_held_suppression_and_its_incident_were_settled(
    store: str, frozen_now: datetime, cli: Callable[..., tuple[int, str, str]]
) -> None:
    _write(store, lambda h: _incident(h, frozen_now))
    incident = _incident_id(store)
    settled_at = frozen_now + timedelta(hours=1)
    assert cli(store, settled_at, "actions", "discard", str(incident), "--by", "ops")[0] == 0
    code, out, _ = cli(store, settled_at + DAY, "actions", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == H.incident_addresses + 1
    assert {(r["status"], r["resolved_at"], r["resolved_by"]) for r in rows} == {
        ("discarded", settled_at.isoformat(), "ops"),
        ("resolved", settled_at.isoformat(), "ops"),
    }
    assert all("by ops" in r["detail"] for r in rows)


def test_an_expiry_shows_when_and_by_whom_it_ended_the_same_before_and_after_the_sweep(
    store: str, frozen_now: datetime, cli: Callable[..., tuple[int, str, str]]
) -> None:
    _write(store, lambda h: h.pushback("a@busy.example", frozen_now))
    later = frozen_now + DAY

    def shown() -> list[dict[str, object]]:
        code, out, _ = cli(store, later, "actions", "--format", "csv")
        assert code == 0
        return list(csv.DictReader(io.StringIO(out)))

    before = shown()
    assert [(r["status"], r["resolved_by"]) for r in before] == [("expired", "policy")]
    assert before[0]["resolved_at"] == before[0]["expires_at"] != ""
    assert cli(store, later, "nightly", "--now", later.isoformat())[0] == 0

    def ended(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(r["id"], r["status"], r["resolved_at"], r["resolved_by"]) for r in rows]

    assert ended(shown()) == ended(before)
