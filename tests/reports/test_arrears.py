"""Arrears and their age (账龄): households below zero since known days, each in its bucket
(0–30, 31–90, 91–180, over 180 days, the bounds on both sides), the age counted from the start
of the last episode below zero (one that came back above zero and fell again starts anew), an
emergency advance not hiding arrears; the same before, during and after the days are frozen;
and the export's sheet, its bucket columns and totals."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlmodel import select

from app.billing.services import insert_entries
from app.console.managers import add_manager
from app.console.models import ESTATE_ADMIN
from app.db import transaction, utcnow
from app.estate.freeze import freeze_due_days
from app.estate.models import Account
from app.ledger.days import day_start, local_day
from app.ledger.models import CHARGE, EMERGENCY_CREDIT, OPENING, TOPUP
from app.reports.arrears import arrears
from tests.console.conftest import PASSWORD, log_in
from tests.factories import EstateFactory
from tests.reports.conftest import fen, sheet_rows

# 户号 → its entries (days ago, fen, kind), and the days ago its arrears began (None: not owing)
HISTORIES = {
    "800001": ([(250, 1_000, OPENING), (200, -1_500, CHARGE)], 200),
    "800002": ([(150, 500, OPENING), (100, -600, CHARGE)], 100),
    "800003": ([(60, 100, OPENING), (45, -300, CHARGE)], 45),
    "800004": ([(100, -200, CHARGE), (50, 500, TOPUP), (10, -400, CHARGE)], 10),  # anew
    "800005": ([(5, 100, OPENING), (0, -300, CHARGE)], 0),  # below since today
    "800006": ([(20, -50, CHARGE), (19, 2_000, EMERGENCY_CREDIT)], 20),  # advance: still owes
    "800007": ([(40, 1_000, OPENING)], None),
    "800008": ([(40, 300, OPENING), (39, -300, CHARGE)], None),  # exactly zero: owes nothing
    **{f"81{n:04d}": ([(n, -100, CHARGE)], n) for n in (30, 31, 90, 91, 180, 181)},
}
BUCKET = {0: "0–30 天", 10: "0–30 天", 20: "0–30 天", 30: "0–30 天", 31: "31–90 天",
          45: "31–90 天", 90: "31–90 天", 91: "91–180 天", 100: "91–180 天", 180: "91–180 天",
          181: "180 天以上", 200: "180 天以上"}


@pytest.fixture
def owing(engine):
    factory = EstateFactory(engine)
    gateway = factory.gateway("127.0.0.1", 1)
    now = utcnow()
    today = local_day(now)
    ids = {}
    for unit, (number, (entries, _since)) in enumerate(sorted(HISTORIES.items()), start=1):
        factory.account(gateway_id=gateway, unit_id=unit, number=number)
        with transaction(engine) as s:
            account = s.exec(select(Account).where(Account.number == number)).one()
            ids[number] = account.id
            for k, (ago, amount, kind) in enumerate(entries):
                at = (day_start(today - dt.timedelta(days=ago)) + dt.timedelta(hours=12)
                      if ago else now)
                insert_entries(s.connection(), [(account.id, amount, kind,
                                                 f"test:{number}:{k}", "", None)], created_at=at)
    with transaction(engine) as s:
        add_manager(s, "admin", role=ESTATE_ADMIN, estate_id=factory.estate_id,
                    password=PASSWORD)
    return factory.building_id, today


def expected(today: dt.date) -> dict[str, tuple[dt.date, int]]:
    return {number: (today - dt.timedelta(days=since), since)
            for number, (_entries, since) in HISTORIES.items() if since is not None}


def found(engine, building_id: int) -> dict[str, tuple[dt.date, int]]:
    with transaction(engine, read_only=True) as s:
        return {a.number: (a.since, a.age_days) for a in arrears(s, [building_id])}


def test_each_household_below_zero_is_aged_from_its_last_fall(engine, owing):
    building_id, today = owing
    want = expected(today)
    assert found(engine, building_id) == want  # nothing frozen: from the ledger
    freeze_due_days(engine, limit=120)  # frozen in part: the rest walked from the ledger
    assert found(engine, building_id) == want
    while freeze_due_days(engine):
        pass
    assert found(engine, building_id) == want
    with transaction(engine, read_only=True) as s:
        by_number = {a.number: a for a in arrears(s, [building_id])}
    assert by_number["800006"].owed_fen == 50 and by_number["800004"].owed_fen == 100
    assert [a.number for a in sorted(by_number.values(), key=lambda a: -a.age_days)][:2] == \
        ["800001", "810181"]


def test_the_arrears_sheet_buckets_and_totals(engine, owing, client):
    building_id, today = owing
    assert log_in(client, "admin").status_code == 303
    reply = client.get("/manage/exports/download", params={"kind": "arrears", "format": "xlsx"})
    assert reply.status_code == 200
    header, rows = sheet_rows(reply.content)
    col = {name: i for i, name in enumerate(header)}
    body, totals = rows[:-1], rows[-1]
    want = expected(today)
    assert {r[col["户号"]] for r in body} == set(want)
    for r in body:
        since, age = want[r[col["户号"]]]
        assert r[col["账龄（天）"]] == age and r[col["欠费起始日"]].date() == since
        assert r[col["账龄段"]] == BUCKET[age]
        assert fen(r[col[BUCKET[age]]]) == fen(r[col["欠费"]]) > 0
        assert sum(1 for b in set(BUCKET.values()) if r[col[b]] is not None) == 1
    buckets = {label: 0 for label in set(BUCKET.values())}
    for r in body:
        buckets[r[col["账龄段"]]] += fen(r[col["欠费"]])
    for label, owed in buckets.items():
        assert fen(totals[col[label]]) == owed
    assert fen(totals[col["欠费"]]) == sum(buckets.values()) == 500 + 100 + 200 + 100 + 200 \
        + 50 + 600
    assert totals[col["账龄（天）"]] is None
