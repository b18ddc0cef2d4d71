"""One household in the console: the usage charts drawn from the meters' days, the ledger with
the balance after each entry (a day's charges folded into one line), commands with every
attempt, payments, refunds and notices."""

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
    # both posted today: one line for the day (-5.58, 44.42 after), opened to show each
    day, opening = page.split('<tr class="entry day">')[1].split('<tr class="entry">')
    assert "-5.58" in day and "44.42" in day and "2 笔电费，10.00 kWh" in day
    rows = day.split('<tr class="entry folded">')[1:]
    assert "-3.91" in rows[0] and "44.42" in rows[0]
    assert "-1.67" in rows[1] and "48.33" in rows[1]
    assert "50.00" in opening  # the opening balance, and after it


def test_commands_with_every_attempt_payments_and_notices(console, engine, estate):
    from app.commands.models import Command, CommandAttempt
    from app.db import transaction
    from app.notices.models import Notice
    from app.orders.models import Order
    from tests.factories import account_by_number

    number = estate.a_accounts[2]
    account, meter = account_by_number(engine, number), meter_of(engine, number)
    now = utcnow()
    with transaction(engine) as s:
        command = Command(meter_id=meter.id, action="cut", state="done", reason="policy",
                          expires_at=now, attempts=2, completed_at=now)
        s.add(command)
        s.flush()
        s.add_all([CommandAttempt(command_id=command.id, started_at=now, finished_at=now,
                                  outcome="timeout", detail="no answer"),
                   CommandAttempt(command_id=command.id, started_at=now, finished_at=now,
                                  outcome="confirmed", relay_open=True),
                   Order(out_trade_no="FKSEEN0001", account_id=account.id, amount_fen=5000,
                         channel="wechat", status="paid", paid_at=now),
                   Notice(account_id=account.id, kind="power_cut")])
    page = console("b1").get(f"/manage/accounts/{number}").text
    attempts = page.split('class="attempts"')[1].split("</details>")[0]
    assert "timeout，no answer" in attempts and "confirmed，读回继电器：断开" in attempts
    assert "FKSEEN0001" in page and "power_cut" in page
