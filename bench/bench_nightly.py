"""The whole nightly job on a generated night: 200k log lines and 20k bounce messages.

    python -m bench.bench_nightly              # 100k reply-log + 100k Postfix lines, 20k DSNs
    python -m bench.bench_nightly --lines 20000 --bounces 2000

Prints, for one run into a fresh SQLite file:
- the floor: the same inputs read and parsed with no store (the readers, the bounce parser and
  classification alone), measured in the same process just before;
- the whole job (ingest, expiry, hygiene evaluation) and its ratio to the floor;
- a second run over the same inputs (nothing new: it must record nothing);
- peak memory of each child process (its own high-water mark, bench/peak_memory.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

_DSN = """From MAILER-DAEMON  Sat Nov 28 0{h}:{m:02d}:00 2026
Return-Path: <>
From: MAILER-DAEMON@news.example.org (Mail Delivery System)
To: bounces@news.example.org
Subject: Undelivered Mail Returned to Sender
Date: Sat, 28 Nov 2026 0{h}:{m:02d}:00 +0000
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b{n}"
Message-Id: <dsn{n}@news.example.org>

--b{n}
Content-Type: text/plain; charset=us-ascii

This is the mail system at host news.example.org.
Your message could not be delivered to one or more recipients.

--b{n}
Content-Type: message/delivery-status

Reporting-MTA: dns; news.example.org

Final-Recipient: rfc822; {rcpt}
Action: {action}
Status: {status}
Remote-MTA: dns; mx.{domain}
Diagnostic-Code: smtp; {diag}

--b{n}
Content-Type: text/rfc822-headers

From: news@news.example.org
To: {rcpt}
Message-ID: <{mid}>

--b{n}--

"""

_FAILURES = (
    ("failed", "5.1.1", "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown"),
    ("failed", "5.2.2", "552 5.2.2 <{rcpt}>: Mailbox full"),
    ("delayed", "4.7.0", "421 4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred"),
    (
        "failed",
        "5.7.1",
        "554 5.7.1 Service unavailable; client [192.0.2.10] blocked using zen.spamhaus.org",
    ),
    ("failed", "5.1.2", "550 5.1.2 Host or domain name not found"),
)


def write_bounces(path: Path, count: int) -> Path:
    """An mbox of `count` RFC 3464 DSNs about varied recipients and failures."""
    domains = ("example.com", "example.net", "example.org", "gmail.com", "yahoo.com")
    with path.open("w") as out:
        for n in range(count):
            action, status, diag = _FAILURES[n % len(_FAILURES)]
            domain = domains[n % len(domains)]
            rcpt = f"user{n % (count // 2 or 1)}@{domain}"
            out.write(
                _DSN.format(
                    h=2 + n * 6 // max(count, 1),
                    m=n % 60,
                    n=n,
                    rcpt=rcpt,
                    domain=domain,
                    action=action,
                    status=status,
                    diag=diag.format(rcpt=rcpt),
                    mid=f"{n}.night@news.example.org",
                )
            )
    return path


_CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from bench.peak_memory import peak_rss_mib
from datetime import datetime
from pathlib import Path
mode, url, now = sys.argv[2], sys.argv[3], datetime.fromisoformat(sys.argv[4])
paths = [Path(p) for p in sys.argv[5:]]
start = time.perf_counter()
if mode == "floor":
    from deliverability.nightly import expand_paths
    from deliverability.ingest import convert
    from deliverability.ingest.records import LogRecord
    items = 0
    for found in expand_paths(paths):
        path, kind = found.path, found.format
        if kind in ("jsonl", "csv", "postfix"):
            for _, item in convert.read_log(path, kind, start_offset=0, now=now):
                if isinstance(item, LogRecord):
                    convert.log_item(item)
                items += 1
        else:
            for key, data in convert.read_messages(path, kind):
                convert.message_items(data, source=path.name, position=key, now=now)
                items += 1
    result = {"items": items}
else:
    from deliverability.engine import Engine
    from deliverability.nightly import run_nightly
    with Engine(url, clock=lambda: now) as engine:
        summary = run_nightly(engine, paths, now=now)
    result = {"recorded": summary.recorded, "known": summary.duplicates,
              "rejected": summary.rejected_count, "items": sum(s.items for s in summary.sources),
              "actions": sum(summary.actions.values())}
result["seconds"] = time.perf_counter() - start
# Not ru_maxrss: a child keeps its parent's peak across fork and exec (bench/peak_memory.py).
result["max_rss_mb"] = peak_rss_mib()
print(json.dumps(result))
"""


def _child(mode: str, url: str, paths: list[Path]) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(HERE.parent),
            mode,
            url,
            NOW.isoformat(),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000, help="log lines in all (half each)")
    parser.add_argument("--bounces", type=int, default=20_000)
    args = parser.parse_args(argv)

    from bench.gen_logs import write_mailer_log, write_postfix_log

    with tempfile.TemporaryDirectory(prefix="bench-nightly-") as tmp:
        night = Path(tmp) / "night"
        night.mkdir()
        t0 = time.perf_counter()
        write_mailer_log(night / "replies.jsonl", args.lines // 2, broken=False)
        write_postfix_log(night / "mail.log", args.lines // 2, broken=False)
        write_bounces(night / "bounces.mbox", args.bounces)
        print(
            f"generated {args.lines} log lines and {args.bounces} DSNs "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        url = f"sqlite:///{Path(tmp) / 'store.db'}"
        floor = _child("floor", url, [night])
        first = _child("run", url, [night])
        second = _child("run", url, [night])

    def line(name: str, r: dict[str, float]) -> None:
        rate = r["items"] / r["seconds"] if r["seconds"] else 0.0
        extra = "".join(
            f", {k} {int(r[k])}" for k in ("recorded", "known", "rejected", "actions") if k in r
        )
        print(
            f"{name:<28} {r['seconds']:8.1f} s  {rate:10.0f} items/s  "
            f"peak {r['max_rss_mb']:6.0f} MB{extra}"
        )

    line("floor (read + parse only)", floor)
    line("nightly, first run", first)
    line("nightly, same inputs again", second)
    print(f"ratio first run / floor speed: {floor['seconds'] / first['seconds']:.2f}")
    ok = second["recorded"] == 0 and first["rejected"] == 0
    print("re-run recorded nothing: " + ("PASS" if second["recorded"] == 0 else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
