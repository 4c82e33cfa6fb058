"""Markdown of every report: tables, and the one way each kind of number is written in them.

A value that was not measured (None, NaN, an infinity) is written ``MISSING`` ("n/a") by every
formatter, whatever its kind.

    table(["h", "PSNR"], [[1, number(23.456)], [8, number(None)]])
    -> ["| h | PSNR |", "|---|---|", "| 1 | 23.46 |", "| 8 | n/a |"]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import SupportsFloat

MISSING = "n/a"


def table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> list[str]:
    """A markdown table's lines: the header, its rule and one line per row (cells as ``str`` gives them)."""
    lines = [_row(header), "|" + "---|" * len(header)]
    return lines + [_row(row) for row in rows]


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def measured(x: SupportsFloat | None) -> bool:
    """Whether ``x`` is a finite number (None, NaN and infinities are not)."""
    return x is not None and math.isfinite(float(x))


def number(x: SupportsFloat | None, digits: int = 2, unit: str = "", sign: bool = False) -> str:
    """``x`` with ``digits`` decimals and ``unit`` after it ("1.25 dB"; "+1.25 dB" with ``sign``), or MISSING."""
    if x is None or not measured(x):
        return MISSING
    return f"{float(x):{'+' if sign else ''}.{digits}f}{unit}"


def percent(share: SupportsFloat | None, digits: int = 0, sign: bool = False, unit: str = "%") -> str:
    """A share (0.25) as a percentage ("25%"; "+25.0 pts" with digits=1, sign and unit " pts"), or MISSING."""
    if share is None or not measured(share):
        return MISSING
    return number(100 * float(share), digits, unit, sign)


def duration(seconds: float) -> str:
    """A wall time: whole seconds under a minute ("42 s"), minutes with one decimal above ("1.5 min")."""
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"
