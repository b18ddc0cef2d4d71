"""One household in the console: the usage charts drawn from the meters' days, the ledger with
the balance after each entry."""

import datetime as dt

from app.billing.services import post_stale_accruals
from app.db import utcnow
from tests.factories import meter_of, store_readings


def test_the_charts_and_the_running_balance(console, engine, estate):
    number = estate.a_accounts[0]  # 50.00 元
    meter_id = meter_of(engine, number).id
    today = utcnow().replace(hour=4, minute=0, second=0, microsecond=0)  # 12:00 in Beijing
    store_readings(engine, meter_id, [(today - dt.timedelta(days=2), 10_000),
                                      (today - dt.timedelta(days=1), 13_000),  # 3 kWh
                                      (today, 20_000)])  # 7 kWh
    post_stale_accruals(engine, utcnow() + dt.timedelta(hours=1))
    page = console("b1").get(f"/manage/accounts/{number}").text
    assert "近 30 天每日用电：合计 10.0 kWh" in page
    assert "近 12 个月每月用电：合计 10.0 kWh" in page
    # 3 kWh and 7 kWh at 0.5583 元: 1.67 then 3.91 元 posted (the one rounding rule)
    rows = page.split('<tr class="entry">')[1:]
    assert "-3.91" in rows[0] and "44.42" in rows[0]
    assert "-1.67" in rows[1] and "48.33" in rows[1]
    assert "50.00" in rows[2]  # the opening balance, and after it
