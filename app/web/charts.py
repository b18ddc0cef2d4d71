"""Charts drawn on the server as SVG (no script, no library): a page shows them with the CSP
that forbids inline script, and they print."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

WIDTH, HEIGHT, PAD_BOTTOM, PAD_TOP, PAD_SIDE = 720, 180, 28, 18, 24


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    kwh: str
    label: str
    show_label: bool


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    width: int
    height: int
    max_kwh: str
    total_kwh: str


def _kwh(wh: int) -> str:
    return f"{wh / 1000:.1f}"


def usage_chart(points: list[tuple[dt.date, int]], *, label: str) -> Chart:
    """Bars of Wh per period (day or month), oldest first; the template draws them."""
    top = max((wh for _, wh in points), default=0) or 1
    n = max(len(points), 1)
    slot = (WIDTH - 2 * PAD_SIDE) / n
    plot = HEIGHT - PAD_BOTTOM - PAD_TOP
    every = max(1, n // 10)  # at most about ten labels under the bars
    bars = []
    for i, (day, wh) in enumerate(points):
        h = plot * wh / top
        bars.append(Bar(x=round(PAD_SIDE + i * slot + slot * 0.15, 1), y=round(PAD_TOP + plot - h, 1),
                        width=round(slot * 0.7, 1), height=round(h, 1), kwh=_kwh(wh),
                        label=day.strftime(label), show_label=(n - 1 - i) % every == 0))
    return Chart(bars, WIDTH, HEIGHT, _kwh(top if top > 1 else 0),
                 _kwh(sum(wh for _, wh in points)))
