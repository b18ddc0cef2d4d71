"""Charts drawn on the server as SVG (no script, no library): a page shows them with the CSP
that forbids inline script, and they print. Each has a table behind it for screen readers
(the template's figure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

WIDTH, HEIGHT, PAD_BOTTOM, PAD_TOP, PAD_SIDE = 720, 180, 28, 18, 24


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    value: str  # as shown, without its unit ("" where there is none: a rate of nothing)
    label: str
    show_label: bool


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    max_value: str
    total: str | None  # the sum, where a sum means something (energy; not a rate)
    unit: str


def _kwh(wh: int) -> str:
    return f"{wh / 1000:.1f}"


def _bars(points: list[tuple[dt.date, float, str]], top: float, label: str) -> list[Bar]:
    n = max(len(points), 1)
    slot = (WIDTH - 2 * PAD_SIDE) / n
    plot = HEIGHT - PAD_BOTTOM - PAD_TOP
    every = max(1, n // 10)  # at most about ten labels under the bars
    bars = []
    for i, (day, size, shown) in enumerate(points):
        h = plot * size / (top or 1)
        bars.append(Bar(x=round(PAD_SIDE + i * slot + slot * 0.15, 1),
                        y=round(PAD_TOP + plot - h, 1), width=round(slot * 0.7, 1),
                        height=round(h, 1), value=shown, label=day.strftime(label),
                        show_label=(n - 1 - i) % every == 0))
    return bars


def usage_chart(points: list[tuple[dt.date, int]], *, label: str) -> Chart:
    """Bars of Wh per period (day or month), oldest first, shown in kWh."""
    top = max((wh for _, wh in points), default=0)
    return Chart(_bars([(d, wh, _kwh(wh)) for d, wh in points], top, label), WIDTH, HEIGHT,
                 _kwh(top), _kwh(sum(wh for _, wh in points)), "kWh")


def rate_chart(points: list[tuple[dt.date, Decimal | None]], *, label: str) -> Chart:
    """Bars of a rate in % (0–100) per period, oldest first; None (nothing to judge): no bar."""
    return Chart(_bars([(d, float(p or 0), "" if p is None else f"{p}")
                        for d, p in points], 100, label), WIDTH, HEIGHT, "100", None, "%")


def count_chart(points: list[tuple[dt.date, int | float | None]], *, label: str,
                unit: str) -> Chart:
    """Bars of a count or a duration per period, oldest first (None: no bar)."""
    top = max((v or 0 for _, v in points), default=0)
    return Chart(_bars([(d, v or 0, "" if v is None else f"{v:g}") for d, v in points], top,
                       label), WIDTH, HEIGHT, f"{top:g}", None, unit)
