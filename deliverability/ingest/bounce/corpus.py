"""Accuracy of the parser over a corpus of real bounces with an ``expected.tsv`` table.

The table (one row per failed recipient: file, index, recipient, status, replycode, reason,
hardbounce) is the format of the Sisimai project's test corpus. Statuses ``x.0.9NN`` there are
placeholders for "the message carries no code": only their class digit is compared.
The test suite and the benchmark both score with `score_corpus`, so they agree.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deliverability.vocabulary import EventKind

__all__ = ["Accuracy", "Expected", "Mismatch", "read_expected", "score_corpus"]

_PLACEHOLDER_RE = re.compile(r"^[245]\.0\.9\d\d$")


@dataclass(frozen=True)
class Expected:
    file: str
    index: int
    recipient: str
    status: str
    replycode: str
    reason: str

    @property
    def placeholder(self) -> bool:
        return bool(_PLACEHOLDER_RE.match(self.status))


@dataclass(frozen=True)
class Mismatch:
    file: str
    index: int
    what: str  # "recipient", "status", "code", "class", "kind"
    expected: str
    got: str


@dataclass
class Accuracy:
    """Counts of agreements; each ratio is agreements over the rows the measure applies to."""

    rows: int = 0
    recipient_rows: int = 0
    recipient_found: int = 0
    status_rows: int = 0
    status_agree: int = 0
    code_rows: int = 0
    code_agree: int = 0
    class_rows: int = 0
    class_agree: int = 0
    complaint_rows: int = 0
    complaint_agree: int = 0
    vacation_rows: int = 0
    vacation_agree: int = 0
    messages: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @staticmethod
    def ratio(n: int, d: int) -> float:
        return n / d if d else 1.0

    def figures(self) -> dict[str, float]:
        r = self.ratio
        return {
            "recipient": r(self.recipient_found, self.recipient_rows),
            "status": r(self.status_agree, self.status_rows),
            "code": r(self.code_agree, self.code_rows),
            "class": r(self.class_agree, self.class_rows),
            "complaint": r(self.complaint_agree, self.complaint_rows),
            "auto_reply": r(self.vacation_agree, self.vacation_rows),
        }

    def summary(self) -> str:
        parts = [
            f"recipient found {self.recipient_found}/{self.recipient_rows}",
            f"enhanced status {self.status_agree}/{self.status_rows}",
            f"reply code {self.code_agree}/{self.code_rows}",
            f"class {self.class_agree}/{self.class_rows}",
            f"complaints {self.complaint_agree}/{self.complaint_rows}",
            f"auto-replies {self.vacation_agree}/{self.vacation_rows}",
        ]
        figs = self.figures()
        keys = ["recipient", "status", "code", "class", "complaint", "auto_reply"]
        return "; ".join(f"{p} ({figs[k]:.1%})" for p, k in zip(parts, keys, strict=True))


def read_expected(path: Path) -> list[Expected]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        return [
            Expected(
                file=row["file"],
                index=int(row["index"]),
                recipient=(row["recipient"] or "").strip(),
                status=(row["status"] or "").strip(),
                replycode=(row["replycode"] or "").strip(),
                reason=(row["reason"] or "").strip(),
            )
            for row in reader
        ]


def score_corpus(
    corpus: Path,
    parse: Callable[[bytes], Sequence[object]],
    *,
    skip: frozenset[tuple[str, int, str]] = frozenset(),
) -> Accuracy:
    """Run `parse` (``messages.parse_message``) over ``corpus/bounces`` and compare with
    ``corpus/expected.tsv``. `skip` holds (file, index, measure) rows left out of a measure
    because the message says otherwise (each one justified where it is listed)."""
    expected = read_expected(corpus / "expected.tsv")
    by_file: dict[str, list[Expected]] = {}
    for row in expected:
        by_file.setdefault(row.file, []).append(row)
    acc = Accuracy()
    for name, rows in sorted(by_file.items()):
        data = (corpus / "bounces" / name).read_bytes()
        try:
            records = list(parse(data))
        except Exception as exc:  # scored as finding nothing; the mismatch says why
            records = []
            acc.mismatches.append(Mismatch(name, -1, "error", "", f"{type(exc).__name__}: {exc}"))
        acc.messages += 1
        _score_file(acc, name, rows, records, skip)
    return acc


def _score_file(
    acc: Accuracy,
    name: str,
    rows: list[Expected],
    records: list[object],
    skip: frozenset[tuple[str, int, str]],
) -> None:
    found = [r for r in records if getattr(r, "recipient", None)]
    by_rcpt = {str(getattr(r, "recipient", "")).lower(): r for r in found}
    for row in rows:
        acc.rows += 1
        rec = None
        if row.recipient:
            rec = by_rcpt.get(row.recipient.lower())
            if (name, row.index, "recipient") not in skip:
                acc.recipient_rows += 1
                if rec is not None:
                    acc.recipient_found += 1
                else:
                    got = ", ".join(sorted(by_rcpt)) or "(none)"
                    acc.mismatches.append(
                        Mismatch(name, row.index, "recipient", row.recipient, got)
                    )
        if rec is None:
            pool = found or records
            rec = pool[row.index] if row.index < len(pool) else (pool[0] if pool else None)
        _score_row(acc, row, rec, skip)


def _score_row(
    acc: Accuracy, row: Expected, rec: object, skip: frozenset[tuple[str, int, str]]
) -> None:
    kind = getattr(rec, "kind", None)
    if row.reason == "feedback":
        acc.complaint_rows += 1
        if kind is EventKind.COMPLAINT:
            acc.complaint_agree += 1
        else:
            acc.mismatches.append(Mismatch(row.file, row.index, "kind", "complaint", str(kind)))
        return
    if row.reason == "vacation":
        acc.vacation_rows += 1
        if kind is EventKind.AUTO_REPLY:
            acc.vacation_agree += 1
        else:
            acc.mismatches.append(Mismatch(row.file, row.index, "kind", "auto_reply", str(kind)))
        return
    status = getattr(rec, "status", None)
    code = getattr(rec, "code", None)
    klass = getattr(rec, "klass", None)
    key = (row.file, row.index)
    if row.status and (*key, "class") not in skip:
        acc.class_rows += 1
        if klass is not None and str(klass) == row.status[0]:
            acc.class_agree += 1
        else:
            acc.mismatches.append(Mismatch(row.file, row.index, "class", row.status[0], str(klass)))
    if row.status and not row.placeholder and (*key, "status") not in skip:
        acc.status_rows += 1
        if str(status) == row.status:
            acc.status_agree += 1
        else:
            acc.mismatches.append(Mismatch(row.file, row.index, "status", row.status, str(status)))
    if row.replycode and (*key, "code") not in skip:
        acc.code_rows += 1
        if str(code) == row.replycode:
            acc.code_agree += 1
        else:
            acc.mismatches.append(Mismatch(row.file, row.index, "code", row.replycode, str(code)))
