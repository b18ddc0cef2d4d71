"""The demo estate: 2 buildings, 40 households, 2 gateways; some households low, one cut."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.engine import Engine
from sqlmodel import select

from app.db import transaction
from app.estate.models import Account, Building, Estate, Gateway, Meter
from app.ledger.models import OPENING
from app.ledger.services import post_entry

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
DEMO_PRICE = Decimal("0.5583")
CUT_ACCOUNT = "101020"  # building 1, the 20th household: cut, at -5.00 元


def demo_households(gateways: int = 2, per_gateway: int = 20):
    """(gateway index, unit id, account number, household, opening balance in fen, relay open)."""
    for g in range(gateways):
        for unit in range(1, per_gateway + 1):
            number = f"1{g + 1:02d}{unit:03d}"
            floor, room = (unit - 1) // 4 + 1, (unit - 1) % 4 + 1
            household = f"{g + 1}-{floor}-{floor}0{room}"
            if number == CUT_ACCOUNT:
                balance, cut = -500, True
            elif unit % 7 == 3:
                balance, cut = 350 + unit * 10, False  # low
            else:
                balance, cut = 5_000 + unit * 731 % 20_000, False
            yield g, unit, number, household, balance, cut


DEMO_MANAGER_PASSWORD = "feikong-demo-2026"  # printed by `feikong demo`: a demo, not a secret


def seed_demo_managers(engine: Engine) -> bool:
    """The demo's console managers, unless any manager exists: `admin` (estate administrator),
    `b1` (building manager of 1号楼 only), `finance`; all with `DEMO_MANAGER_PASSWORD`."""
    from app.console.managers import add_manager
    from app.console.models import BUILDING_MANAGER, ESTATE_ADMIN, FINANCE, Manager

    with transaction(engine) as s:
        if s.exec(select(Manager)).first() is not None:
            return False
        estate = s.exec(select(Estate).order_by(Estate.id)).first()
        if estate is None:
            return False
        first = s.exec(select(Building).where(Building.estate_id == estate.id)
                       .order_by(Building.id)).first()
        for name, role, buildings in (("admin", ESTATE_ADMIN, []),
                                      ("b1", BUILDING_MANAGER, [first.id]),
                                      ("finance", FINANCE, [])):
            add_manager(s, name, role=role, estate_id=estate.id, password=DEMO_MANAGER_PASSWORD,
                        building_ids=buildings)
    return True


def seed_demo(engine: Engine, *, host: str, base_port: int, gateways: int = 2,
              per_gateway: int = 20) -> bool:
    """Create the demo estate unless one exists. Returns True when it created it."""
    with transaction(engine) as s:
        if s.exec(select(Estate)).first() is not None:
            return False
        estate = Estate(name="翠苑小区", manager_phone="0571-88886666")
        s.add(estate)
        s.flush()
        buildings, gws = [], []
        for g in range(gateways):
            b = Building(estate_id=estate.id, name=f"{g + 1}号楼")
            gw = Gateway(name=f"{g + 1}号楼集中器", host=host, port=base_port + g)
            s.add(b)
            s.add(gw)
            buildings.append(b)
            gws.append(gw)
        s.flush()
        for g, unit, number, household, balance, cut in demo_households(gateways, per_gateway):
            account = Account(number=number, building_id=buildings[g].id, household=household,
                              holder_name=SURNAMES[unit % len(SURNAMES)] + "先生",
                              holder_phone=f"138{unit:04d}{g:04d}",
                              floor_area_m2=Decimal(80 + unit % 5 * 10),
                              price_yuan_per_kwh=DEMO_PRICE)
            s.add(account)
            s.flush()
            s.add(Meter(account_id=account.id, gateway_id=gws[g].id, unit_id=unit,
                        relay_open=cut))
            post_entry(s, account_id=account.id, amount_fen=balance, kind=OPENING,
                       idempotency_key=f"opening:{number}", memo="期初余额")
    return True

