"""Run the benchmarks: every ``bench/bench_*.py`` module that has a ``main()``.

    python -m bench.run              # all of them
    python -m bench.run classify     # bench_classify only (the "bench_" prefix is optional)
    python -m bench.run --list       # the names it found

Each benchmark runs with its own defaults (no arguments are passed on); run a module directly,
``python -m bench.bench_classify --help``, for its options. Exits 1 when a benchmark fails
(raises, or returns a non-zero status such as a missed target).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def discover() -> list[str]:
    """The names of the benchmark modules, without the ``bench_`` prefix, sorted."""
    return sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))


def run_one(name: str) -> int:
    module = importlib.import_module(f"bench.bench_{name}")
    main = getattr(module, "main", None)
    if main is None:
        print(f"bench_{name}: no main(), skipped", flush=True)
        return 0
    print(f"=== bench_{name} ===", flush=True)
    started = time.perf_counter()
    try:
        status = main([])
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:
        traceback.print_exc()
        status = 1
    status = status if isinstance(status, int) else 0
    print(
        f"=== bench_{name}: {'ok' if status == 0 else 'FAILED'} "
        f"in {time.perf_counter() - started:.1f}s ===\n",
        flush=True,
    )
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the deliverability benchmarks.")
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    found = discover()
    if args.list:
        print("\n".join(found))
        return 0
    wanted = [n.removeprefix("bench_").removesuffix(".py") for n in args.names] or found
    unknown = [n for n in wanted if n not in found]
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (have: {', '.join(found)})")
    failed = [n for n in wanted if run_one(n) != 0]
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
