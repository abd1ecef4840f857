"""Input that cannot hurt: spreadsheet formulas in CSV cells (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io

import pytest

from distretto_shared.csvsafe import SafeWriter, formula_warnings, is_formula_like, neutralise


@pytest.mark.parametrize("cell", ["=1+2", "+1+2", "-2+3+cmd|' /C calc'!A0", "@SUM(A1)", "\t=1", "\r=1", "=", "-"])
def test_formula_cells_are_prefixed_with_a_quote(cell: str) -> None:
    assert is_formula_like(cell)
    assert neutralise(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["Siena", "", "'=1", " biotech", "12", "-3", "+39", "1.5e3", "a=b"])
def test_harmless_cells_pass(cell: str) -> None:
    assert not is_formula_like(cell)
    assert neutralise(3) == 3 and neutralise(-3.5) == -3.5


def test_the_safe_writer_writes_no_cell_a_spreadsheet_would_run() -> None:
    out = io.StringIO()
    SafeWriter(out).writerow(['=HYPERLINK("http://x")', "@SUM(1)", "\rX", "ok", 5, -5])
    [row] = list(csv.reader(io.StringIO(out.getvalue())))
    assert row == ['\'=HYPERLINK("http://x")', "'@SUM(1)", "'\rX", "ok", "5", "-5"]


def test_import_warnings_name_line_and_column() -> None:
    warnings = formula_warnings(7, ["name", "city"], ["Acme", "\r=cmd"], file="x.csv")
    assert [w.as_dict()["column"] for w in warnings] == ["city"]
    assert warnings[0].as_dict()["line"] == 7 and warnings[0].as_dict()["file"] == "x.csv"


# -- templates ------------------------------------------------------------------------------------

TEMPLATE_BOMBS = [
    "{{ 'a' * 100000000 }}",
    "{% for i in range(100000000) %}x{% endfor %}",
    "{{ ''|center(100000000) }}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
]


@pytest.mark.parametrize("bomb", TEMPLATE_BOMBS)
def test_template_bombs_are_refused_when_saved(bomb: str) -> None:
    # Before: `{{ 'a' * 100000000 }}` was saved, and rendering it kept the newsletter busy for 30 s.
    from newsletter.delivery import rendering

    with pytest.raises(ValueError, match="rendering limits"):
        rendering.check_template(bomb, html=True)
