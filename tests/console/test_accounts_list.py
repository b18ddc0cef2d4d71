"""The accounts list: every sort walks all accounts page by page (keyset), none twice, none
missed; the filters by tariff and the search by holder name; at 120 accounts (3 pages)."""

from __future__ import annotations

import html
import random
import re

from sqlmodel import select

from app.db import transaction
from app.estate.models import Account
from app.ledger.services import balances_fen
from tests.factories import EstateFactory

ROW = re.compile(r'<tr class="account">\s*<td><a href="/manage/accounts/(\d+)">')


def walk(client, query: str) -> list[str]:
    """Every 户号 the list shows, following 下一页 to the end."""
    numbers, url = [], f"/manage/accounts?{query}"
    for _ in range(20):
        page = client.get(url)
        assert page.status_code == 200
        numbers += ROW.findall(page.text)
        nxt = re.search(r'<a class="next" href="([^"]+)"', page.text)
        if not nxt:
            return numbers
        url = "/manage/accounts" + html.unescape(nxt.group(1))
    raise AssertionError("more than 20 pages")


def test_every_sort_pages_through_every_account_once(console, engine, estate):
    factory = EstateFactory(engine, name="另一个小区")
    factory.building_id = estate.building_a  # its accounts made in the estate's 1号楼
    rng = random.Random(5)
    gateway = factory.gateway("127.0.0.1", 9)
    surnames = "王李张刘陈"
    for u in range(120):
        factory.account(gateway_id=gateway, unit_id=u + 1, number=f"5{u:05d}",
                        balance_fen=rng.choice([-300, 0, 150, 150, 2_000, 9_999]),
                        holder_name=surnames[u % 5] + "某")
    with transaction(engine) as s:
        for a in s.exec(select(Account).where(Account.number.like("5%"))):
            a.household = f"3-{rng.randint(1, 9)}-{a.number}"  # 房号 order ≠ 户号 order
            s.add(a)
    client = console("admin")
    with transaction(engine, read_only=True) as s:
        every = list(s.exec(select(Account)))
        money = balances_fen(s, {a.id for a in every})
    by_number = sorted(a.number for a in every)
    assert walk(client, "sort=number") == by_number
    assert walk(client, "sort=household") == [
        a.number for a in sorted(every, key=lambda a: (a.household, a.number))]
    assert walk(client, "sort=balance") == [
        a.number for a in sorted(every, key=lambda a: (money[a.id], a.number))]
    low = walk(client, "sort=balance&state=low")
    assert low == [a.number for a in sorted(every, key=lambda a: (money[a.id], a.number))
                   if money[a.id] < a.low_balance_threshold_fen]
    wang = walk(client, "q=" + "王")
    assert wang == sorted(a.number for a in every if a.holder_name.startswith("王"))
    assert "王某" not in client.get("/manage/accounts?q=王").text  # shown masked
    assert walk(client, "tariff=flat") == by_number and walk(client, "tariff=999") == []
