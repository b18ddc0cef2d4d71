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
    shares = page.split('id="shares"')[1]
    amounts = re.findall(r'<tr class="share">.*?<td class="num">([\d.]+)</td>', shares, re.S)
    assert len(amounts) == 3 and sum(Decimal(x) for x in amounts) == Decimal("5.58")
    assert "5.58" in shares.split('class="share-total"')[1]
    assert "面积 89.5 m²" in shares
    assert client.get(f"/manage/buildings/{estate.building_a}?run={run.id}").status_code == 200
    assert client.get(f"/manage/buildings/{estate.building_a}?run={other.id}").status_code == 404
    assert client.get(f"/manage/buildings/{estate.building_b}?run={other.id}").status_code == 404
