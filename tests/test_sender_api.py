"""The sender's Python API as a mailing-list sender uses it every day (README.md, docs/api.md):
ask before each send, record after each reply, retry what is due, manage addresses by hand, from
several threads, forked workers and beside the nightly job."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeClock
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from deliverability.engine import Engine
from deliverability.errors import InputError
from deliverability.nightly import run_nightly
from deliverability.policy import load_policy
from deliverability.store.models import Delivery, Event, Recipient
from deliverability.vocabulary import DeliveryState

POLICY = load_policy()
ROOT = Path(__file__).resolve().parent.parent
#: Yahoo's push-back: the provider group is paused for an hour (the shipped provider rules).
YAHOO_PUSHBACK = (
    "421 4.7.0 [TSS04] Messages from 203.0.113.25 temporarily deferred due to unexpected volume"
)


@pytest.fixture
def engine(db_url: str, clock: FakeClock) -> Iterator[Engine]:
    with Engine(db_url, policy=POLICY, clock=clock) as e:
        yield e


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), re.S)


# -- the documents' examples ------------------------------------------------------------------


@pytest.mark.parametrize("doc", ["README.md", "docs/api.md"])
def test_the_python_examples_of_the_docs_run_as_written(
    doc: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The examples open the default store, deliverability.db in the working directory.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DELIVERABILITY_DATABASE_URL", raising=False)
    monkeypatch.delenv("DELIVERABILITY_POLICY", raising=False)
    blocks = [b for b in _python_blocks(ROOT / doc) if "Engine(" in b]
    assert blocks
    for block in blocks:
        exec(compile(block, doc, "exec"), {})
