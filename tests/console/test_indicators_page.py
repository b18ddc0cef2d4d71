"""The indicators page: the figures of app.estate.indicators for the manager's buildings, per
day or month, with a chart each; another building by URL: 404."""

from __future__ import annotations

import datetime as dt

from app.commands.models import Command
from app.db import transaction, utcnow
from tests.factories import meter_of


def test_the_fee_control_rate_of_today_with_its_numbers(console, engine, estate):
    now = utcnow()
    meter = meter_of(engine, estate.a_accounts[2]).id
    other = meter_of(engine, estate.b_accounts[0]).id
    with transaction(engine) as s:
        s.add_all([Command(meter_id=meter, action="cut", state="done", expires_at=now,
                           completed_at=now, created_at=now - dt.timedelta(minutes=1)),
                   Command(meter_id=meter, action="restore", state="expired", expires_at=now,
                           completed_at=now, created_at=now - dt.timedelta(minutes=1)),
                   Command(meter_id=other, action="cut", state="expired", expires_at=now,
                           completed_at=now, created_at=now - dt.timedelta(minutes=1))])
    client = console("b1")  # 1号楼 only: 2号楼's expired cut is not hers
    page = client.get("/manage/indicators").text
    today = page.split('<tr class="period">')[1]
    assert "50.00% <span class=\"muted\">1/2</span>" in today
    assert page.count('<figure class="chart">') == 5
    assert "采集成功率" in page and "电费回收率" in page
    assert client.get("/manage/indicators?period=month").status_code == 200
    assert client.get(f"/manage/indicators?building={estate.building_b}").status_code == 404
    admin = console("admin").get("/manage/indicators").text.split('<tr class="period">')[1]
    assert "33.33% <span class=\"muted\">1/3</span>" in admin
