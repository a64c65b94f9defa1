"""Bounce-message parsing: speed, accuracy and memory, over the shared corpus of real bounces.

    python -m bench.bench_messages [--passes 7] [--sizes 10000,100000] [--no-sisimai]
    python bench/bench_messages.py --corpus PATH

Figures:
- messages per second of `parse_message` over the corpus (best of N passes), as a ratio against
  a floor measured in the same run: `email.message_from_bytes` alone over the same bytes (the
  parse every reader of mail pays before looking at anything);
- accuracy against the corpus's expected.tsv (the same scorer as tests/test_corpus.py);
- peak memory (max RSS of a child process) while streaming generated mboxes of 10k and 100k
  corpus messages through `iter_mbox` and `parse_message`: flat memory means it streams;
- where Debian's libsisimai-perl is installed, Sisimai over the same messages in the same run
  (in-memory, no process start-up counted), and the ratio of our rate to its rate.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (the memory runs start this file in a child process).
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.peak_memory import peak_rss_mib
from deliverability.ingest.bounce.corpus import score_corpus
from deliverability.ingest.messages import iter_mbox, parse_message
from deliverability.vocabulary import EventKind

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
# Issue 5's targets: accuracy over the corpus, and at least three times Sisimai's rate.
TARGETS = {"recipient": 0.97, "class": 0.97, "status": 0.95, "code": 0.95, "complaint": 1.0}
SPEED_TARGET = 3.0

# Sisimai, in Perl: read every file first, warm up, then time `Sisimai->make` over the in-memory
# texts (Sisimai::Mail::Memory) in CPU time, and print one line per recipient for scoring. The
# CPU time is read from the same clock as Python's time.process_time (CLOCK_PROCESS_CPUTIME_ID,
# through the core module Time::HiRes): Perl's `times` counts clock ticks (10 ms), which on a
# pass of about 0.2 s moved Sisimai's rate by up to 5%, and the best of the passes then kept
# whichever tick error was luckiest.
_SISIMAI_SCRIPT = r"""
use strict; use warnings; use Sisimai;
use Time::HiRes qw(clock_gettime CLOCK_PROCESS_CPUTIME_ID);
my $passes = shift @ARGV; my $records = shift @ARGV;
my @names = @ARGV; my @data;
for my $f (@names) { open my $fh, '<', $f or die "$f: $!"; local $/; push @data, scalar <$fh>; }
# One untimed pass first: Sisimai loads its per-MTA modules on first use.
for my $d (@data) { my $v = Sisimai->make(\$d, 'delivered' => 1); }
my $best;
for my $p (1 .. $passes) {
    my $t0 = clock_gettime(CLOCK_PROCESS_CPUTIME_ID);
    for my $d (@data) { my $v = Sisimai->make(\$d, 'delivered' => 1); }
    my $e = clock_gettime(CLOCK_PROCESS_CPUTIME_ID) - $t0;
    $best = $e if !defined $best || $e < $best;
}
printf "TIME\t%d\t%.6f\n", scalar(@data), $best;
exit 0 unless $records;
for my $i (0 .. $#data) {
    my $v = Sisimai->make(\$data[$i], 'delivered' => 1) || [];
    for my $r (@$v) {
        print join("\t", "REC", $i, $r->recipient->address // '', $r->deliverystatus // '',
                   $r->replycode // '', $r->reason // ''), "\n";
    }
}
"""


@dataclass(frozen=True)
class _SisimaiRecord:
    """One Sisimai result in the shape the corpus scorer reads."""

    recipient: str | None
    status: str | None
    code: str | None
    kind: EventKind

    @property
    def klass(self) -> int | None:
        return int(self.status[0]) if self.status and self.status[0] in "245" else None


def _cpu_seconds(messages: Sequence[bytes], parse: Callable[[bytes], object]) -> float:
    """CPU time of one pass: on a shared machine, CPU time is what another load disturbs least."""
    start = time.process_time()
    for data in messages:
        parse(data)
    return time.process_time() - start


def _floor(data: bytes) -> object:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def _sisimai_run(files: list[Path], *, records: bool) -> tuple[float, str]:
    """One timed Sisimai pass (its own CPU time, start-up excluded) and, if asked, its records."""
    out = subprocess.run(
        ["perl", "-e", _SISIMAI_SCRIPT, "1", "1" if records else "0", *map(str, files)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds = next(float(ln.split("\t")[2]) for ln in out.splitlines() if ln.startswith("TIME"))
    return seconds, out


def _sisimai_records(files: list[Path], out: str) -> dict[bytes, list[_SisimaiRecord]]:
    by_index: dict[int, list[_SisimaiRecord]] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if parts[0] != "REC":
            continue
        _, index, rcpt, status, code, reason = (parts + [""] * 6)[:6]
        kind = {"feedback": EventKind.COMPLAINT, "vacation": EventKind.AUTO_REPLY}.get(
            reason, EventKind.BOUNCE
        )
        by_index.setdefault(int(index), []).append(
            _SisimaiRecord(rcpt or None, status or None, code or None, kind)
        )
    return {f.read_bytes(): by_index.get(i, []) for i, f in enumerate(files)}


def _sisimai_version() -> str:
    probe = subprocess.run(
        ["perl", "-MSisimai", "-e", "print $Sisimai::VERSION"], capture_output=True, text=True
    )
    return probe.stdout.strip()


def _sisimai_available() -> str | None:
    if shutil.which("perl") is None:
        return "perl is not installed"
    probe = subprocess.run(
        ["perl", "-MSisimai", "-e", "print $Sisimai::VERSION"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return "the Sisimai Perl module is not installed (Debian: apt-get install libsisimai-perl)"
    return None


def _write_mbox(path: Path, messages: Sequence[bytes], count: int) -> None:
    with path.open("wb") as fh:
        for i in range(count):
            data = messages[i % len(messages)]
            fh.write(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026\n")
            for line in data.splitlines(keepends=True):
                # mboxrd: a body line starting with ">*From " gets one more ">".
                fh.write(b">" + line if line.lstrip(b">").startswith(b"From ") else line)
            if not data.endswith(b"\n"):
                fh.write(b"\n")
            fh.write(b"\n")


def _stream(path: str) -> None:
    """Child process: stream an mbox through the parser and report peak RSS."""
    start = time.process_time()
    count = records = 0
    for _key, data in iter_mbox(path):
        count += 1
        records += len(parse_message(data))
    elapsed = time.process_time() - start
    # Not ru_maxrss: a child keeps its parent's peak across fork and exec (bench/peak_memory.py).
    peak_kib = peak_rss_mib() * 1024
    print(
        json.dumps(
            {"messages": count, "records": records, "seconds": elapsed, "peak_kib": peak_kib}
        )
    )


def _stream_child(path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--stream", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--passes", type=int, default=7)
    ap.add_argument("--sizes", default="10000,100000", help="mbox sizes for the memory figure")
    ap.add_argument("--no-sisimai", action="store_true")
    ap.add_argument("--stream", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.stream:
        _stream(args.stream)
        return 0

    folder = args.corpus / "bounces"
    if not folder.is_dir():
        print(f"no corpus at {args.corpus} (expected {folder}); pass --corpus", file=sys.stderr)
        return 2
    files = sorted(folder.glob("*.eml"))
    messages = [f.read_bytes() for f in files]
    size_mb = sum(map(len, messages)) / 1e6
    print(f"corpus: {len(messages)} messages, {size_mb:.2f} MB, {args.passes} passes")

    why_not = "skipped (--no-sisimai)" if args.no_sisimai else _sisimai_available()
    # Passes interleave the three parsers, so a load that comes and goes hits all of them.
    best = {"floor": float("inf"), "ours": float("inf"), "sisimai": float("inf")}
    sisimai_out = ""
    rate = 0.0
    for n in range(args.passes):
        best["floor"] = min(best["floor"], _cpu_seconds(messages, _floor))
        best["ours"] = min(best["ours"], _cpu_seconds(messages, parse_message))
        if not why_not:
            seconds, out = _sisimai_run(files, records=n == 0)
            best["sisimai"] = min(best["sisimai"], seconds)
            sisimai_out = sisimai_out or out
    floor, ours = len(messages) / best["floor"], len(messages) / best["ours"]
    print("rates: best CPU time of the passes")
    print(f"  floor   message_from_bytes:  {floor:7.0f} messages/s")
    print(f"  ours    parse_message:       {ours:7.0f} messages/s = {ours / floor:.2f} x floor")
    accuracy = score_corpus(args.corpus, parse_message)
    print(f"accuracy (ours): {accuracy.summary()}")
    if why_not:
        print(f"sisimai: not run: {why_not}")
    else:
        rate = len(messages) / best["sisimai"]
        _sisimai_by_bytes = _sisimai_records(files, sisimai_out)
        print(f"  sisimai Sisimai->make:       {rate:7.0f} messages/s = {rate / floor:.2f} x floor")
        print(f"ours / sisimai: {ours / rate:.2f} x (target >= {SPEED_TARGET:.0f})")
        sis_acc = score_corpus(args.corpus, lambda data: _sisimai_by_bytes.get(data, []))
        print(f"accuracy (sisimai {_sisimai_version()}): {sis_acc.summary()}")

    missed = [k for k, v in accuracy.figures().items() if k in TARGETS and v < TARGETS[k]]
    if rate and ours / rate < SPEED_TARGET:
        missed.append(f"speed {ours / rate:.2f} x sisimai")

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if sizes:
        with tempfile.TemporaryDirectory(prefix="bench-messages-") as tmp:
            baseline = Path(tmp) / "empty.mbox"
            baseline.write_bytes(b"")
            base = _stream_child(baseline)
            print(
                f"memory: baseline (imports, no message) peak RSS {base['peak_kib'] / 1024:.1f} MiB"
            )
            for size in sizes:
                box = Path(tmp) / f"{size}.mbox"
                _write_mbox(box, messages, size)
                mb = box.stat().st_size / 2**20
                got = _stream_child(box)
                os.unlink(box)
                peak, ratio = got["peak_kib"] / 1024, got["peak_kib"] / base["peak_kib"]
                print(
                    f"memory: {size:>7} messages ({mb:.0f} MiB mbox): peak RSS {peak:.1f} MiB "
                    f"(= {ratio:.2f} x baseline), "
                    f"{got['messages'] / got['seconds']:.0f} messages/s streamed (CPU time)"
                )
    if missed:
        print(f"targets missed: {', '.join(missed)}")
        return 1
    print("targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
