"""Postfix log lines per second, against a floor measured in the same run.

The floor is the least any reader does: read the same file as text and ``line.split()`` each line.
Then the parser alone (`PostfixStream.feed` over lines already in memory) and the whole reader
(`read_postfix_log`: reading, offsets, decoding checks and parsing). Figures are the best of
`--repeat` runs; ratios say what fraction of the floor's speed each reaches.

    python bench/bench_postfix.py [--lines 200000] [--repeat 3]
    python -m bench.bench_postfix
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from deliverability.errors import IngestError
from deliverability.ingest.postfix import PostfixStream, read_postfix_log
from deliverability.ingest.records import LogRecord

try:
    from bench.gen_logs import write_postfix_log
except ImportError:  # run as a script: bench/ itself is on the path
    from gen_logs import write_postfix_log  # type: ignore[no-redef,import-not-found]

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def best_of(repeat: int, run: Callable[[], int]) -> tuple[float, int]:
    """The shortest time of `repeat` runs, and what the run counted."""
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - start)
    return best, count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Postfix log parsing speed")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = write_postfix_log(Path(tmp) / "mail.log", args.lines, seed=7)
        lines = path.read_text(encoding="utf-8").splitlines()
        size_mb = path.stat().st_size / 1e6

        def floor() -> int:
            n = 0
            with path.open(encoding="utf-8") as f:
                for line in f:
                    line.split()
                    n += 1
            return n

        def parse_alone() -> int:
            stream = PostfixStream(source="mail.log", now=NOW)
            records = 0
            for i, line in enumerate(lines):
                # The generator writes a few deliberately broken lines.
                with contextlib.suppress(IngestError):
                    records += len(stream.feed(line, f"byte {i}"))
            return records

        def reader() -> int:
            return sum(isinstance(item, LogRecord) for _, item in read_postfix_log(path, now=NOW))

        floor_s, n = best_of(args.repeat, floor)
        parse_s, records = best_of(args.repeat, parse_alone)
        read_s, records_read = best_of(args.repeat, reader)

    # The reader also reads a whole line that syslog glued after a cut one (gen_logs'
    # POSTFIX_BROKEN), which `feed` alone rejects with the cut one.
    assert records_read == records + 1, (records, records_read)
    floor_rate, parse_rate, read_rate = n / floor_s, n / parse_s, n / read_s
    print(f"Postfix log: {n} lines ({size_mb:.1f} MB), {records} delivery records")
    print(f"  floor (read + line.split()): {floor_rate:12,.0f} lines/s")
    print(
        f"  parse alone (feed):          {parse_rate:12,.0f} lines/s"
        f"  ratio to floor {parse_rate / floor_rate:.3f} ({floor_rate / parse_rate:.1f}x slower)"
    )
    print(
        f"  read_postfix_log (file):     {read_rate:12,.0f} lines/s"
        f"  ratio to floor {read_rate / floor_rate:.3f} ({floor_rate / read_rate:.1f}x slower)"
    )


if __name__ == "__main__":
    main()
