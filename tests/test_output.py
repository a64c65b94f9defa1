"""Rendering rows: text from remote servers is shown as it is, never read as markup."""

from __future__ import annotations

import io

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
