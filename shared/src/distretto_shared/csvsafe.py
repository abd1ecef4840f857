"""CSV cells that cannot become spreadsheet formulas (OWASP "CSV injection").

A spreadsheet opening a CSV file treats a cell starting with ``=``, ``+``,
``-`` or ``@`` as a formula (``=HYPERLINK(…)``, ``@SUM(…)``, ``+1+2``), and a
leading tab or carriage return can hide such a prefix. OWASP's rule, applied on
every export: such a text cell is written with a single quote in front, which
spreadsheets show as text. On import, such a cell is *flagged* (a warning with
file, line and column) and kept as sent: the value is data, and every export
neutralises it again.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+([.,]\d*)?|[.,]\d+)([eE][+-]?\d+)?$")


def is_formula_like(value: str) -> bool:
    """True for a text cell a spreadsheet could run as a formula (a plain signed number is not)."""
    return value.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.match(value)


def neutralise(value: Any) -> Any:
    """A cell safe to write: text starting with a trigger gets a leading single quote; numbers pass."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


class SafeWriter:
    """``csv.writer`` whose rows are neutralised cell by cell."""

    def __init__(self, out: Any, **kwargs: Any) -> None:
        self._writer = csv.writer(out, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        """Write one row, every text cell neutralised."""
        return self._writer.writerow([neutralise(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        """Write many rows, every text cell neutralised."""
        for row in rows:
            self.writerow(row)


@dataclass(frozen=True)
class FormulaWarning:
    """A cell of an imported file that a spreadsheet would run as a formula."""

    line: int
    column: str
    file: str = ""

    @property
    def message(self) -> str:
        """Why the cell is flagged."""
        return (
            f"{self.column}: starts with a formula character (=, +, -, @, tab or carriage return); "
            "kept as text, and written with a leading ' on export"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON shape of the warning (``file`` only when set)."""
        out: dict[str, Any] = {"line": self.line, "column": self.column, "warning": self.message}
        if self.file:
            out["file"] = self.file
        return out


def formula_warnings(
    line: int, columns: Sequence[str], cells: Sequence[str], *, file: str = ""
) -> list[FormulaWarning]:
    """A warning for each formula-like cell of one row (``cells`` as read, before stripping)."""
    return [
        FormulaWarning(line, column, file)
        for column, cell in zip(columns, cells, strict=False)
        if is_formula_like(cell) or is_formula_like(cell.strip())
    ]
