"""The benchmarks run: a change that breaks one is found by CI, not by the next person who
measures. Tiny sizes, so these check that the figures are printed and the checks inside the
benchmark hold (its floor writes the engine's rows), not the speed, which is never asserted."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    """What a benchmark of bench/ prints, run as a user runs it; it must exit 0."""
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout


@pytest.mark.slow
def test_the_record_benchmark_runs_and_prints_every_figure() -> None:
    out = _run(
        "bench_record.py",
        "--n",
        "400",
        "--memory-sizes",
        "100,200",
        "--calls",
        "3",
        "--sender-chunks",
        "100",
        "--rounds",
        "2",
    )
    for line in (
        "floor (sqlite3 executemany, 1 transaction)",
        "ratio record_many / floor",
        "round 2: floor",
        "median ratio record_many / floor over 2 rounds",
        "(sqlite3, the engine's SQL alone)",
        "ratio that / floor (the most this SQL allows)",
        "record_many's time outside that SQL",
        "the floor's own Python",
        "(sqlite3, events + recipients, that cache)",
        "peak memory of record_many",
        "single record() median latency, with the hygiene hook",
        "a sender's record() calls beside record_many of 400 events",
        "chunks of    100",
    ):
        assert line in out, f"{line!r} missing from:\n{out}"


def test_the_record_benchmark_times_single_calls_on_the_store_a_url_names(
    tmp_path: Path,
) -> None:
    # --url measures only the single record() calls, on any backend; run twice on one store,
    # the second run still records new replies (a duplicate would write nothing).
    url = f"sqlite:///{tmp_path / 'scratch.db'}"
    for _ in range(2):
        out = _run("bench_record.py", "--url", url, "--calls", "3")
        assert "floor" not in out, out
        for label in ("without hygiene", "with the hygiene hook"):
            assert f"single record() median latency, {label}" in out, out
        assert "95th percentile" in out, out
        assert "statements a call" in out, out
    with sqlite3.connect(tmp_path / "scratch.db") as conn:
        ((calls,),) = conn.execute(
            "SELECT count(*) FROM events WHERE message_id LIKE 'lat%'"
        ).fetchall()
    # Two runs, each of 10 untimed and 3 timed calls without and with the hook.
    assert calls == 2 * 2 * (10 + 3)


@pytest.mark.slow
def test_the_hygiene_benchmark_runs_and_prints_every_figure() -> None:
    out = _run(
        "bench_hygiene.py",
        *("--history", "2000,4000", "--new", "200", "--record", "400", "--rounds", "2"),
        *("--burst", "40,80"),
        *("--traffic", "1,20", "--traffic-hours", "0.05", "--traffic-new", "400"),
    )
    for line in (
        "ratio record_many / floor",
        "of which the hook (CPU)",
        "round 2:",
        "median ratio over 2 rounds",
        "20 events/s: record_many + hygiene",
        "ratio of the hook's cost an event, 20 / 1 events/s",
        "ratio 4000 / 2000",
        "40 bounces: evaluate",
        "40 bounces from 10 addresses: evaluate",
        "ratio 80 / 40 bounces",
    ):
        assert line in out, f"{line!r} missing from:\n{out}"
    # The incident's burst raises an alert and holds a suppression for each bounced address:
    # the benchmark timed a real incident, not an empty evaluation.
    assert "raised 41" in out, out
    assert "raised 81" in out, out


def test_every_benchmark_takes_the_arguments_bench_run_gives_it() -> None:
    # bench/run.py calls each module's main() with an argument list (empty: its defaults).
    import importlib
    import inspect

    sys.path.insert(0, str(ROOT))
    try:
        run = importlib.import_module("bench.run")
        for name in run.discover():
            main = getattr(importlib.import_module(f"bench.bench_{name}"), "main", None)
            if main is not None:
                inspect.signature(main).bind([])
    finally:
        sys.path.remove(str(ROOT))


@pytest.mark.parametrize("script", ["bench_record.py", "bench_hygiene.py"])
@pytest.mark.parametrize("rounds", ["0", "-1", "three"])
def test_a_record_benchmark_refuses_rounds_that_are_not_one_or_more(
    script: str, rounds: str
) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--rounds", rounds],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "argument --rounds" in done.stderr
