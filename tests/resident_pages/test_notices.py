"""Notices (/a/<户号>/notices): every kind, in Chinese and in English; those newer than the
binding's `notices_read_at` marked unread (to the eye and to a screen reader); opening the page
marks them read; paged; `unread_count` and `latest_notice` for the home page."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from app.db import transaction, utcnow
from app.notices.models import (BALANCE_EXHAUSTED, EMERGENCY_CREDIT, LESS_THAN_A_DAY,
                                LOW_BALANCE, PAYMENT_RECEIVED, POWER_CUT, POWER_RESTORED, Notice)
from app.resident.models import ResidentAccount
from app.resident.statements import latest_notice, unread_count
from tests.factories import EstateFactory
from tests.resident_pages.helpers import account_id, resident, sign_in

KINDS = [(LOW_BALANCE, 800, "余额不足：仅剩 8.00 元，请及时充值"),
         (LESS_THAN_A_DAY, 500, "按近期用电，余额 5.00 元可能不足一天，请及时充值"),
         (BALANCE_EXHAUSTED, -20, "余额已用尽（-0.20 元）"),
         (POWER_CUT, None, "因余额不足已停电。充值后自动恢复供电。"),
         (EMERGENCY_CREDIT, 3_000, "已使用应急用电 30.00 元，正在恢复供电；下次充值时自动扣还。"),
         (PAYMENT_RECEIVED, 10_000, "充值 100.00 元已到账"),
         (POWER_RESTORED, None, "已恢复供电")]


def _read_at(engine, rid: int, a: int):
    with transaction(engine, read_only=True) as s:
        return s.execute(sa.select(ResidentAccount.notices_read_at).where(
            ResidentAccount.resident_id == rid, ResidentAccount.account_id == a)).scalar_one()


def _unread(html: str) -> int:
    assert html.count('class="notice-item') >= html.count(" unread\"")
    return html.count('<span class="sr-only">未读：</span>')


def test_unread_then_read(client, settings, engine):
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1)
    a = account_id(engine, number)
    start = utcnow().replace(microsecond=0) - dt.timedelta(days=3)
    times = [start + dt.timedelta(hours=5 * k) for k in range(len(KINDS))]
    with transaction(engine) as s:
        for (kind, amount, _), at in zip(KINDS, times):
            s.add(Notice(account_id=a, kind=kind, amount_fen=amount, created_at=at))
    read_at = times[3] + dt.timedelta(minutes=1)  # read up to the cut: three unread
    rid = resident(engine, "13900000031", number, read_at=read_at)
    with transaction(engine, read_only=True) as s:
        assert unread_count(s, a, read_at) == 3 and unread_count(s, a, None) == 7
        assert latest_notice(s, a).kind == POWER_RESTORED
    sign_in(client, settings, rid)

    html = client.get(f"/a/{number}/notices").text
    assert "<h1>消息</h1>" in html and "3 条未读" in html
    assert _unread(html) == 3
    unread = re.findall(r'<li class="notice-item notice-(\w+) unread">', html)
    assert unread == [POWER_RESTORED, PAYMENT_RECEIVED, EMERGENCY_CREDIT]  # newest first
    for _, _, text in KINDS:
        assert text in html
    assert _read_at(engine, rid, a) == times[-1]  # read, up to the newest shown

    again = client.get(f"/a/{number}/notices").text
    assert _unread(again) == 0 and "没有未读消息" in again and "unread\"" not in again
    with transaction(engine) as s:
        s.add(Notice(account_id=a, kind=LOW_BALANCE, amount_fen=700, created_at=utcnow()))
    with transaction(engine, read_only=True) as s:
        assert unread_count(s, a, _read_at(engine, rid, a)) == 1
    english = client.get(f"/a/{number}/notices?lang=en").text
    assert "1 unread" in english and "Emergency credit of ¥30.00 taken" in english
    assert english.count('<span class="sr-only">Unread: </span>') == 1


def test_pages_of_notices(client, settings, engine):
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1)
    a = account_id(engine, number)
    at = utcnow().replace(microsecond=0) - dt.timedelta(days=30)
    with transaction(engine) as s:  # 25 notices; the 20th and 21st newest at the same instant
        for k in range(25):
            s.add(Notice(account_id=a, kind=PAYMENT_RECEIVED, amount_fen=100 * (k + 1),
                         created_at=at + dt.timedelta(hours=k + (k == 4))))
    rid = resident(engine, "13900000032", number)
    sign_in(client, settings, rid)
    first = client.get(f"/a/{number}/notices").text
    amounts = re.findall(r"充值 (\d+)\.00 元已到账", first)
    assert amounts == [str(k) for k in range(25, 5, -1)]
    older = re.search(r'href="(/a/\d+/notices\?before=[0-9-]+)" rel="next"', first)
    marked = _read_at(engine, rid, a)
    second = client.get(older[1]).text
    rest = re.findall(r"充值 (\d+)\.00 元已到账", second)
    assert rest == ["5", "4", "3", "2", "1"]  # the tie across the pages: neither lost nor twice
    assert 'rel="next"' not in second
    assert _read_at(engine, rid, a) == marked  # an older page moves no mark
    assert client.get(f"/a/{number}/notices?before=x1").status_code == 404
