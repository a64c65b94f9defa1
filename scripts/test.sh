#!/usr/bin/env bash
# Install into a local virtual environment, check style and types, run the tests.
# This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/ruff check deliverability tests bench migrations
.venv/bin/mypy
set +e
# The slowest tests are listed at the end: what to look at when CI nears its 15 minutes.
# worksteal: a worker that runs out of tests takes some of the other's queue, so the last
# minutes are not one worker finishing a run of long tests alone.
.venv/bin/pytest -n 2 --dist worksteal -q --durations=25 "$@"
status=$?
set -e
# pytest exits 5 when it collected no test: that is a failure here, never a pass.
if [ "$status" -eq 5 ]; then echo "no test ran" >&2; exit 1; fi
exit "$status"
