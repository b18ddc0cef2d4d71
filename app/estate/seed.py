"""The demo estate: 2 buildings, 40 households, 2 gateways; some households low, one cut."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import select

from app.db import transaction
from app.estate.demo_workbook import (CUT_ACCOUNT, DEMO_GATEWAYS, DEMO_PRICE,  # noqa: F401
                                      DEMO_WORKBOOK, SURNAMES, demo_households,
                                      demo_workbook_bytes, gateway_name)
from app.estate.models import Account, Building, Estate, Meter

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


def seed_demo(engine: Engine, *, host: str, base_port: int, gateways: int = DEMO_GATEWAYS,
              per_gateway: int = 20) -> bool:
    """Create the demo estate unless one exists, by importing the demo workbook
    (`app/estate/demo_estate.xlsx`, or the same built for another size) through the import
    every manager's file goes through (`app.estate.importing`), its gateways where the
    simulator listens. Returns True when it created it."""
    from app.estate.importing import import_file

    with transaction(engine) as s:
        if s.exec(select(Estate)).first() is not None:
            return False
        estate = Estate(name="翠苑小区", manager_phone="0571-88886666")
        s.add(estate)
        s.flush()
        shipped = (gateways, per_gateway) == (DEMO_GATEWAYS, 20)
        data = DEMO_WORKBOOK.read_bytes() if shipped else demo_workbook_bytes(gateways,
                                                                               per_gateway)
        result = import_file(s, data, estate_id=estate.id, file_name=DEMO_WORKBOOK.name,
                             gateway_endpoints={gateway_name(g): (host, base_port + g)
                                                for g in range(gateways)})
        if not result.ok:
            raise RuntimeError("the demo workbook does not import: "
                               + "; ".join(p.text() for p in result.problems[:5]))
        # The simulated meters start with their relays as the demo's story has them (the
        # import leaves a new meter's relay unknown until it is read): closed, the cut
        # household's open.
        cut = {number: relay_open for _g, _u, number, _h, _b, relay_open
               in demo_households(gateways, per_gateway)}
        for meter, number in s.exec(select(Meter, Account.number)
                                    .join(Account, Account.id == Meter.account_id)
                                    .join(Building, Building.id == Account.building_id)
                                    .where(Building.estate_id == estate.id)):
            meter.relay_open = cut.get(number, False)
    return True
