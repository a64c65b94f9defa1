"""Benchmarks: plain scripts, each printing its figures as ratios against a floor measured in the
same run. Run them all with ``python -m bench.run`` or one with ``python -m bench.run classify``."""
