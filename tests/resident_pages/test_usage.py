"""Usage (/a/<户号>/usage): daily kWh of the last 30 days and monthly of the last 12, from the
meters' days (integer Wh), as SVG bar charts a screen reader can read (role=img, title, desc)
with the table behind them, whose every value is the metered Wh."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from app.db import transaction, utcnow
from app.estate.models import DailyFrozen, Meter
from app.ledger.days import local_day
from tests.factories import EstateFactory
from tests.resident_pages.helpers import account_id, resident, rows_of, sign_in


def _meter(engine, number: str) -> int:
    with transaction(engine, read_only=True) as s:
        return s.execute(sa.select(Meter.id).where(
            Meter.account_id == account_id(engine, number))).scalar_one()


def _days(engine, meter: int, rows: dict[dt.date, int]) -> None:
    with transaction(engine) as s:
        for day, wh in rows.items():
            s.add(DailyFrozen(meter_id=meter, day=day, opening_wh=0, register_wh=wh,
                              read_at=utcnow(), used_wh=wh))


def kwh(wh: int) -> str:
    return f"{wh // 1000}.{wh % 1000:03d}"


def test_usage_table_is_the_metered_wh(client, settings, engine):
    estate = EstateFactory(engine)
    gw = estate.gateway("127.0.0.1", 1)
    number = estate.account(gateway_id=gw, unit_id=1)
    neighbour = estate.account(gateway_id=gw, unit_id=2)
    today = local_day(utcnow())
    mine = {today - dt.timedelta(days=k): 5_000 + 37 * k for k in range(0, 400, 3)}
    mine[today - dt.timedelta(days=1)] = 0  # read, nothing used
    _days(engine, _meter(engine, number), mine)
    _days(engine, _meter(engine, neighbour), {day: 99_999 for day in list(mine)[:40]})
    sign_in(client, settings, resident(engine, "13900000021", number))

    html = client.get(f"/a/{number}/usage").text
    assert "<h1>用电量</h1>" in html
    daily = rows_of(html, "daily-table")
    assert len(daily) == 30
    expected_days = [today - dt.timedelta(days=k) for k in range(30)]  # newest first
    assert daily == [[d.isoformat(), kwh(mine.get(d, 0))] for d in expected_days]
    monthly = rows_of(html, "monthly-table")
    month, months = today.replace(day=1), []
    for _ in range(12):
        months.append(month)
        month = (month - dt.timedelta(days=1)).replace(day=1)
    assert monthly == [[m.strftime("%Y-%m"), kwh(sum(
        wh for d, wh in mine.items() if d.replace(day=1) == m))] for m in months]
    assert sum(int(v.replace(".", "")) for _, v in monthly) < sum(mine.values())  # a year only
    # the charts: an image with a name and a description, its table in a <details>
    for cid in ("daily", "monthly"):
        svg = re.search(rf'<svg[^>]*aria-labelledby="{cid}-title {cid}-desc"[^>]*>(.*?)</svg>',
                        html, re.S)
        assert svg and 'role="img"' in svg[0]
        assert f'<title id="{cid}-title">' in svg[1] and f'<desc id="{cid}-desc">' in svg[1]
        assert svg[1].count("<rect") == (30 if cid == "daily" else 12)
        assert 'viewBox="0 0 340 200"' in svg[0]
    total = sum(mine.get(d, 0) for d in expected_days)
    assert f"合计 {kwh(total)} kWh" in html
    assert html.count("<details") == 2 and "查看数据表" in html
    english = client.get(f"/a/{number}/usage?lang=en").text
    assert "Daily use, last 30 days" in english and "Show the table" in english
