"""A building in the console: its common-area meters, its share runs, and one run opened to
every household's share, summing exactly to the run's charge; another building's run: 404."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import sqlalchemy as sa

from app.billing.shares import post_shares
from app.db import transaction
from app.estate.models import Account, Building
from tests.console.conftest import csrf
from tests.factories import common_meter, store_readings

UTC = dt.timezone.utc
DAY = (dt.datetime(2026, 11, 21, 16, tzinfo=UTC), dt.datetime(2026, 11, 22, 16, tzinfo=UTC))


def test_a_run_opens_to_every_household_s_share(console, engine, estate):
    with transaction(engine) as s:  # the households lived there that day
        s.execute(sa.update(Account).values(created_at=DAY[0] - dt.timedelta(days=30)))
    meter = common_meter(engine, building_id=estate.building_a, gateway_id=1, unit_id=99)
    store_readings(engine, meter, [(DAY[0] - dt.timedelta(minutes=1), 0),
                                   (DAY[1] - dt.timedelta(minutes=1), 10_000)])
    with transaction(engine) as s:
        run = post_shares(s, s.get(Building, estate.building_a), *DAY)  # 10 kWh: 558 fen
        other = post_shares(s, s.get(Building, estate.building_b), *DAY)
    client = console("b1")
    page = client.get(f"/manage/buildings/{estate.building_a}").text
    assert f"{meter} / 99" in page  # the common-area meter
    assert "<title>1号楼 · " in page and page.count('id="shares"') == 1
    shares = page.split('id="shares"')[1]
    amounts = re.findall(r'<tr class="share">.*?<td class="num">([\d.]+)</td>', shares, re.S)
    assert len(amounts) == 3 and sum(Decimal(x) for x in amounts) == Decimal("5.58")
    assert "5.58" in shares.split('class="share-total"')[1]
    assert "面积 89.5 m²" in shares
    assert client.get(f"/manage/buildings/{estate.building_a}?run={run.id}").status_code == 200
    assert client.get(f"/manage/buildings/{estate.building_a}?run={other.id}").status_code == 404
    assert client.get(f"/manage/buildings/{estate.building_b}?run={other.id}").status_code == 404


def test_line_loss_days_and_the_threshold_setting(console, engine, estate):
    from app.estate.models import DailyFrozen, Meter
    from app.tariffs import CHINA_TZ
    from app.db import utcnow
    from tests.factories import meter_of

    yesterday = utcnow().astimezone(CHINA_TZ).date() - dt.timedelta(days=1)
    at = dt.datetime.combine(yesterday, dt.time(23, 0), CHINA_TZ).astimezone(UTC)
    homes = [meter_of(engine, n).id for n in estate.a_accounts]
    with transaction(engine) as s:
        s.execute(sa.update(Account).values(created_at=at - dt.timedelta(days=30)))
        main = Meter(building_id=estate.building_a, building_main=True, gateway_id=1,
                     unit_id=98, max_power_w=200_000)
        s.add(main)
        s.flush()
        for meter_id, wh in [(main.id, 10_000)] + [(m, 3_000) for m in homes]:
            s.add(DailyFrozen(meter_id=meter_id, day=yesterday, opening_wh=0, register_wh=wh,
                              read_at=at, used_wh=wh))
    client = console("admin")
    page = client.get(f"/manage/buildings/{estate.building_a}").text
    row = page.split('id="line-loss"')[1].split('<tr class="loss above">')[1].split("</tr>")[0]
    assert str(yesterday) in row and "10.00" in row and "9.00" in row and "超过告警线" in row
    assert 'id="no-main-meter"' in client.get(f"/manage/buildings/{estate.building_b}").text
    token = csrf(client)
    bad = client.post(f"/manage/buildings/{estate.building_a}",
                      data={"share_scheme": "area", "share_period": "day",
                            "line_loss_threshold_pct": "-3", "csrftoken": token})
    assert bad.status_code == 400 and "线损告警线" in bad.text
    client.post(f"/manage/buildings/{estate.building_a}",
                data={"share_scheme": "area", "share_period": "day",
                      "line_loss_threshold_pct": "12.5", "csrftoken": token})
    page = client.get(f"/manage/buildings/{estate.building_a}").text
    assert '<tr class="loss above">' not in page  # 10 % is within 12.5 %
    with transaction(engine, read_only=True) as s:
        assert s.get(Building, estate.building_a).line_loss_threshold_pct == Decimal("12.5")


def test_the_building_page_shows_its_floor_area_beside_its_households(console, engine, estate):
    with transaction(engine) as s:
        s.get(Building, estate.building_a).floor_area_m2 = Decimal("5230.5")
        for account in s.exec(sa.select(Account).where(
                Account.building_id == estate.building_a)).scalars():
            account.floor_area_m2 = Decimal("89.25")
    page = console("admin").get(f"/manage/buildings/{estate.building_a}").text
    assert re.search(r'id="areas">建筑面积：5230.5 ㎡；3 户面积合计 267.75 ㎡', page)
    page = console("admin").get(f"/manage/buildings/{estate.building_b}").text
    assert "建筑面积：未填写" in page
