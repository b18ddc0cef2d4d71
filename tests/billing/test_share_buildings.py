"""公摊 for many buildings at once (`share_buildings`): the same runs and the same ledger rows as
`post_shares` building by building, whatever the batches; and `insert_entries`, the batch insert
both use."""

import datetime as dt
from decimal import Decimal

import pytest
from sqlmodel import Session, select

import app.billing.shares as shares
from app.billing.services import insert_entries
from app.billing.shares import ShareError, common_energies_wh, post_shares, share_buildings
from app.db import transaction
from app.estate.models import Account, Building, Meter, ShareRun
from app.ledger.models import CHARGE, LedgerEntry
from tests.factories import EstateFactory, store_readings

UTC = dt.timezone.utc
DAY = (dt.datetime(2026, 11, 21, 16, tzinfo=UTC), dt.datetime(2026, 11, 22, 16, tzinfo=UTC))
LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=UTC)
HOUR = dt.timedelta(hours=1)


@pytest.fixture
def estate(engine):
    """Five buildings: by area, equally, by usage (some use), by usage (nobody used anything:
    falls back to area), and one without households; households opened and closed at odd
    times, common-area meters measured in the different ways the rule allows."""
    factory = EstateFactory(engine)
    gateway = factory.gateway("127.0.0.1", 1)
    unit = iter(range(1, 1000))
    common: list[tuple[int, list]] = []  # each common meter's readings, stored after
    used: list[tuple[int, list]] = []  # and the households' that used energy
    with transaction(engine) as s:
        buildings = [s.get(Building, factory.building_id)] + [
            Building(estate_id=factory.estate_id, name=f"{n}号楼") for n in range(2, 6)]
        for building, scheme, price in zip(buildings, ["area", "equal", "usage", "usage", "area"],
                                           ["0.5583", "0.6001", "0.4883", "0.5", "0.55"]):
            building.share_scheme = scheme
            building.common_price_yuan_per_kwh = Decimal(price)
            building.shared_exact_e7 = 3_333  # a sub-fen remainder carried from before
            s.add(building)
        s.flush()
        ids = [b.id for b in buildings]
        readings = {  # common meter → [(read_at, Wh)]
            0: [(DAY[0] - HOUR, 1_000), (DAY[1] - HOUR, 11_234)],
            1: [(DAY[0] + HOUR, 500), (DAY[1] - HOUR, 4_500), (DAY[1] + HOUR, 9_999)],
            2: [(DAY[0] - HOUR, 7_000), (DAY[1] - HOUR, 20_001)],
            3: [(DAY[0] - HOUR, 100), (DAY[1] - HOUR, 3_100)],
            4: [(DAY[0] - HOUR, 0), (DAY[1] - HOUR, 5_000)],
        }
        for i, building_id in enumerate(ids):
            meter = Meter(account_id=None, building_id=building_id, common_area=True,
                          gateway_id=gateway, unit_id=next(unit), relay_open=False)
            s.add(meter)
            s.flush()
            common.append((meter.id, readings[i]))
        opened = [LONG_AGO, LONG_AGO, DAY[0] + 5 * HOUR, LONG_AGO, DAY[0], LONG_AGO,
                  DAY[1] + HOUR, LONG_AGO]
        closed = [None, DAY[0] + 7 * HOUR, None, DAY[1], None, DAY[0] - HOUR, None, None]
        n = 0
        for i, building_id in enumerate(ids[:4]):
            for j, (created_at, closed_at) in enumerate(zip(opened, closed)):
                n += 1
                account = Account(number=f"8{n:05d}", building_id=building_id,
                                  household=f"{i}-{j}", holder_name="", holder_phone="",
                                  floor_area_m2=Decimal(60 + 7 * j) + Decimal("0.25"),
                                  price_yuan_per_kwh=Decimal("0.5583"), created_at=created_at,
                                  closed_at=closed_at)
                s.add(account)
                s.flush()
                if i == 2 and j % 3 == 0:  # some households of the usage building used energy
                    meter = Meter(account_id=account.id, gateway_id=gateway,
                                  unit_id=next(unit), relay_open=False)
                    s.add(meter)
                    s.flush()
                    used.append((meter.id, [(DAY[0] + HOUR, 0),
                                            (DAY[0] + 3 * HOUR, 1_000 + j)]))
    for meter_id, readings in common + used:
        store_readings(engine, meter_id, readings)
    return ids


def posted(engine):
    """Everything the sharing wrote: runs, entries and the buildings' running totals."""
    with transaction(engine) as s:
        return posted_in(s)


def test_many_buildings_at_once_post_what_one_by_one_posts(engine, estate, monkeypatch):
    with Session(engine) as s:  # building by building, then undone
        with s.begin():
            for building_id in estate:
                post_shares(s, s.get(Building, building_id), *DAY)
            s.flush()
            one_by_one = posted_in(s)
            s.rollback()
    monkeypatch.setattr(shares, "BATCH", 2)  # batches split the buildings
    with transaction(engine) as s:
        buildings = [s.get(Building, i) for i in estate]
        runs = share_buildings(s, buildings + buildings[:1], *DAY)  # the first listed twice
    assert runs[-1] is None and all(runs[:-1])
    assert [r.scheme for r in runs[:-1]] == ["area", "equal", "usage", "area", "area"]
    assert runs[4].households == 0 and runs[4].charge_fen == 0
    assert posted(engine) == one_by_one
    runs, entries, totals = one_by_one
    assert len(entries) == 4 * 6  # 8 households a building, one closed before, one opened after
    for building_id, _, _, _, charge_fen, households in runs:
        assert -sum(e[1] for e in entries if e[3].startswith(f"share:{building_id}:")) == \
            (charge_fen if households else 0)
    memo = next(e[4] for e in entries if e[3] == f"share:{estate[0]}:2026-11-22:2")
    assert "在户 25200/86400 s" in memo  # closed 7 h into the day


def posted_in(s):
    """`posted`, read in the session `s` (which may not have committed it)."""
    runs = [(r.building_id, r.scheme, r.energy_wh, r.exact_e7, r.charge_fen, r.households)
            for r in s.exec(select(ShareRun).order_by(ShareRun.building_id))]
    entries = [(e.account_id, e.amount_fen, e.kind, e.idempotency_key, e.memo, e.energy_wh)
               for e in s.exec(select(LedgerEntry).where(LedgerEntry.kind == "share")
                               .order_by(LedgerEntry.idempotency_key))]
    totals = [(b.id, b.shared_exact_e7, b.shared_fen)
              for b in s.exec(select(Building).order_by(Building.id))]
    return runs, entries, totals


def test_common_energy_by_the_readings_rule(engine, estate):
    with transaction(engine) as s:
        assert common_energies_wh(s, estate, *DAY) == {
            estate[0]: 10_234, estate[1]: 4_000, estate[2]: 13_001, estate[3]: 3_000,
            estate[4]: 5_000}  # building 2: no reading before the start: from its first inside


def test_shared_buildings_are_left_alone_and_overlaps_refused_before_any_write(engine, estate):
    with transaction(engine) as s:
        share_buildings(s, [s.get(Building, estate[1])], *DAY)
    before = posted(engine)
    with pytest.raises(ShareError):
        with transaction(engine) as s:
            share_buildings(s, [s.get(Building, i) for i in estate],
                            DAY[0] + HOUR, DAY[1] + HOUR)
    assert posted(engine) == before
    with transaction(engine) as s:
        runs = share_buildings(s, [s.get(Building, i) for i in estate], *DAY)
    assert runs[1] is None and all(r is not None for i, r in enumerate(runs) if i != 1)


def test_insert_entries_writes_the_rows_as_the_orm_would(engine, estate):
    at = dt.datetime(2026, 11, 22, 15, 59, 59, tzinfo=UTC)
    with transaction(engine) as s:
        account_id = s.exec(select(Account.id).order_by(Account.id)).first()
        insert_entries(s.connection(), [(account_id, -123, CHARGE, "k:1", "备注 1", 456),
                                        (account_id, -1, CHARGE, "k:2", "", None)],
                       created_at=at)
        insert_entries(s.connection(), [], created_at=at)
    with transaction(engine) as s:
        rows = s.exec(select(LedgerEntry).where(LedgerEntry.idempotency_key.in_(["k:1", "k:2"]))
                      .order_by(LedgerEntry.idempotency_key)).all()
        assert [(e.amount_fen, e.memo, e.energy_wh, e.created_at) for e in rows] == \
            [(-123, "备注 1", 456, at), (-1, "", None, at)]
        assert s.exec(select(LedgerEntry.id).where(LedgerEntry.created_at >= at)).all()
