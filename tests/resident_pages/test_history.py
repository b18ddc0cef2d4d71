"""The history (/a/<户号>/history): payments, refunds, adjustments and emergency credit one by one,
never pushed out by the hourly charges, which fold into one line a day with its kWh and fen;
paged by local days (keyset: the days before one), the same before and after the freeze."""

from __future__ import annotations

import datetime as dt
import re

from app.db import utcnow
from app.estate.freeze import freeze_due_days
from app.ledger.days import local_day
from app.ledger.models import ADJUSTMENT, CHARGE, REFUND, SHARE, TOPUP
from tests.factories import EstateFactory
from tests.resident_pages.helpers import account_id, post, resident, sign_in

HOUR = dt.timedelta(hours=1)


def _days(html: str) -> list[tuple[str, str]]:
    """(day, that day's lines' text) of a history page, newest first."""
    out = []
    for day, body in re.findall(r'<h2 class="day-title">([0-9-]+)</h2>(.*?)</ul>', html, re.S):
        out.append((day, " ".join(re.sub(r"<[^>]+>", " ", body).split())))
    return out


def test_a_payment_stays_in_view_after_200_hourly_charges(client, settings, engine):
    estate = EstateFactory(engine)
    gw = estate.gateway("127.0.0.1", 1)
    now = utcnow().replace(minute=30, second=0, microsecond=0) - HOUR
    number = estate.account(gateway_id=gw, unit_id=1, created_at=now - dt.timedelta(days=90))
    a = account_id(engine, number)
    # 40 days ago a payment, then a charge a day (so 40 days with entries), then a payment, a
    # refund and an adjustment, then 200 hourly charges and a share a day
    old = now - dt.timedelta(days=40)
    post(engine, old, [(a, 20_000, TOPUP, "order:OLD", "wechat 4200old", None)])
    for k in range(1, 32):
        post(engine, old + k * dt.timedelta(days=1) - 12 * HOUR,
             [(a, -300, CHARGE, f"charge:1:d{k}", "5000 Wh × 0.5583 元/kWh", 5_000)])
    paid = now - 202 * HOUR
    post(engine, paid, [(a, 5_000, TOPUP, "order:NEW", "alipay 2026001", None)])
    post(engine, paid + HOUR // 2, [(a, -1_000, REFUND, "refund:R1", "alipay refund of NEW (x)",
                                     None)])
    post(engine, paid + HOUR // 2 + dt.timedelta(minutes=5),
         [(a, 88, ADJUSTMENT, "adjustment:1:x", "调整 经理甲: 多扣退回", None)])
    expected: dict[str, list[int]] = {}  # local day → [charges, Wh, fen billed, share fen]
    for k in range(200, 0, -1):
        at = now - k * HOUR
        wh, fen = 400 + k % 7 * 10, 22 + k % 3
        post(engine, at, [(a, -fen, CHARGE, f"charge:1:{k}", f"{wh} Wh × 0.5583 元/kWh", wh)])
        day = local_day(at).isoformat()
        row = expected.setdefault(day, [0, 0, 0, 0])
        row[0], row[1], row[2] = row[0] + 1, row[1] + wh, row[2] + fen
    for day in sorted(expected)[:-1]:  # a share 12 minutes after each whole day
        at = dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone(dt.timedelta(hours=8))) \
            + dt.timedelta(days=1, minutes=12)
        post(engine, at, [(a, -17, SHARE, f"share:1:{day}:{a}", "公摊", None)])
        nxt = local_day(at).isoformat()
        expected.setdefault(nxt, [0, 0, 0, 0])[3] += 17
    sign_in(client, settings, resident(engine, "13900000011", number))

    page = client.get(f"/a/{number}/history")
    assert page.status_code == 200
    html = page.text
    assert "<h1>收支明细</h1>" in html
    days = _days(html)
    assert len(days) == 30  # a page: 30 local days with entries
    text = " ".join(t for _, t in days)
    assert "充值 · 支付宝 +50.00" in text  # 200 hourly charges later, still there
    assert "退款 · 支付宝 -10.00" in text and "调整：多扣退回 +0.88" in text
    assert "经理甲" not in html
    for day, lines in days:  # each day's charges and shares folded into one line
        charges, wh, fen, share = expected.get(day, [0, 0, 0, 0])
        if charges or share:
            assert f"用电 {wh // 1000}.{wh % 1000:03d} kWh" in lines, (day, lines)
            billed = fen + share
            assert f"-{billed // 100}.{billed % 100:02d}" in lines, (day, lines)
            assert lines.count("用电") == 1
    assert html.count('class="line folded"') == len(days)
    assert "wechat 4200old" not in html and "+200.00" not in html  # on the next page
    older = re.search(r'href="(/a/\d+/history\?before=[0-9-]+)" rel="next"', html)
    assert older, "a link to the older days"
    second = client.get(older[1]).text
    assert "充值 · 微信支付 +200.00" in " ".join(t for _, t in _days(second))
    assert not set(d for d, _ in _days(second)) & set(d for d, _ in days)
    # frozen (账日冻结), the same pages
    while freeze_due_days(engine):
        pass
    assert _days(client.get(f"/a/{number}/history").text) == days
    assert _days(client.get(older[1]).text) == _days(second)


def test_a_bad_cursor_is_a_404(client, settings, engine):
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1)
    sign_in(client, settings, resident(engine, "13900000012", number))
    assert client.get(f"/a/{number}/history").status_code == 200
    assert "暂无记录" in client.get(f"/a/{number}/history").text
    for bad in ("2025-13-01", "yesterday", "2025-1-1"):
        assert client.get(f"/a/{number}/history?before={bad}").status_code == 404
