"""Rendering rows for people and programs: a table on screen, CSV, JSON, JSON Lines."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import Enum
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


def plain(value: Any) -> Any:
    """A JSON-friendly form of a value: ISO times, enum values, seconds for durations."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


#: What a spreadsheet reads as the start of a formula when a CSV cell begins with it (OWASP, "CSV
#: Injection"): a reply text such as ``=HYPERLINK("http://...")`` from a remote server would run
#: as one in Excel or LibreOffice. TAB and CR are on the list because some spreadsheets skip them
#: before looking for the sign.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> str:
    """A CSV cell: a text that a spreadsheet would take for a formula gets a leading ``'``, which
    makes it text there (numbers stay numbers: only strings are touched). JSON carries the exact
    value for programs."""
    cell = _cell(value)
    if isinstance(plain(value), str) and cell.startswith(_FORMULA_STARTS):
        return "'" + cell
    return cell


def _cell(value: Any) -> str:
    value = plain(value)
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


#: Control characters (C0 but line feed, DEL, C1) a table cell shows as ``\\xNN`` instead of
#: sending them to the terminal: a reply text from a hostile server can hold ESC sequences
#: (ECMA-48) that clear the screen, retitle the window or hide what follows.
_TERMINAL_CONTROLS = {
    c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != ord("\n")
}


def _table_cell(value: Any) -> Text:
    """A table cell: plain Text, never markup, with control characters made visible."""
    return Text(_cell(value).translate(_TERMINAL_CONTROLS))


def emit_rows(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    fmt: str,
    out: IO[str] | None = None,
    title: str | None = None,
    width: int | None = None,
) -> None:
    """Write rows as `table`, `csv` (header row always, even with no rows; a text a spreadsheet
    would run as a formula starts with ``'``: `_csv_cell`), `json` (one array)
    or `jsonl` (one object per line). `width` sets the table's console width (default: the
    terminal's, at least 100)."""
    out = out or sys.stdout
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        # The csv module quotes a cell holding its line terminator ("\n") but not a bare CR,
        # which spreadsheets and RFC 4180 readers take for a line break: a row with one is
        # written with every cell quoted.
        quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(columns)
        for row in rows:
            cells = [_csv_cell(row.get(c)) for c in columns]
            (quoted if any("\r" in cell for cell in cells) else writer).writerow(cells)
    elif fmt == "json":
        # Written an object at a time, as json.dump(indent=2) lays out the whole array, so rows
        # read from the database as they are written are never all held at once.
        out.write("[")
        empty = True
        for row in rows:
            text = json.dumps({c: plain(row.get(c)) for c in columns}, indent=2)
            # json.dumps escapes a line break inside a string: every "\n" here is layout.
            out.write(("\n  " if empty else ",\n  ") + text.replace("\n", "\n  "))
            empty = False
        out.write("]\n" if empty else "\n]\n")
    elif fmt == "jsonl":
        for row in rows:
            out.write(json.dumps({c: plain(row.get(c)) for c in columns}) + "\n")
    else:
        table = Table(title=title, show_lines=False)
        for c in columns:
            table.add_column(c)
        for row in rows:
            # Cells are plain Text, never markup: reply texts come from remote servers and may
            # hold "[/bold]" or "[red]" that rich would otherwise interpret (or choke on).
            table.add_row(*(_table_cell(row.get(c)) for c in columns))
        Console(file=out, width=width or max(100, Console().width)).print(table)
