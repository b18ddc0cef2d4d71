"""Build estates in a real database. An account's balance is always posted as a ledger entry."""

from __future__ import annotations

from decimal import Decimal

from sqlmodel import select

from app.db import transaction
from app.estate.models import Account, Building, Estate, Gateway, Meter
from app.ledger.models import LedgerEntry, OPENING
from app.ledger.services import balance_fen, post_entry


# The cut policy of a test estate: cut at once, at any wall-clock date and time (no quiet hours,
# no holiday rule, no lead time after the balance-exhausted notice, no approval). Policy tests
# pass the real rules (`REAL_POLICY`) or their own.
ANYTIME_POLICY = dict(quiet_start="00:00", quiet_end="00:00", holiday_calendar="none",
                      cut_notice_lead_h=0, cut_requires_approval=False)
REAL_POLICY = dict(quiet_start="20:00", quiet_end="08:00", holiday_calendar="cn",
                   cut_notice_lead_h=24, cut_requires_approval=False)


class EstateFactory:
    def __init__(self, engine, name: str = "测试小区", **policy):
        self.engine = engine
        with transaction(engine) as s:
            estate = Estate(name=name, manager_phone="0571-88886666",
                            **{**ANYTIME_POLICY, **policy})
            s.add(estate)
            s.flush()
            building = Building(estate_id=estate.id, name="1号楼")
            s.add(building)
            s.flush()
            self.estate_id, self.building_id = estate.id, building.id
        self._count = 0

    @classmethod
    def of(cls, engine, estate_id: int, building_id: int, first: int = 0) -> "EstateFactory":
        """A factory adding to an estate that exists (its building `building_id`); the 户号 it
        makes count on from `first`."""
        factory = cls.__new__(cls)
        factory.engine, factory.estate_id, factory.building_id = engine, estate_id, building_id
        factory._count = first
        return factory

    def gateway(self, host: str, port: int, protocol: str = "modbus_tcp") -> int:
        with transaction(self.engine) as s:
            gw = Gateway(name=f"gw {port}", host=host, port=port, protocol=protocol)
            s.add(gw)
            s.flush()
            return gw.id

    def account(self, *, gateway_id: int, unit_id: int, balance_fen: int = 0,
                relay_open: bool | None = False, price: str = "0.5583",
                number: str | None = None, holder_name: str = "张三",
                max_power_w: int = 13_800, **account_fields) -> str:
        """An account with one meter; returns its 户号. `account_fields` set any other column
        of the account (`care_list=True`, `strategy="shop"`, `cut_below_fen=-500`, …)."""
        self._count += 1
        number = number or f"9{self._count:05d}"
        account_fields.setdefault("floor_area_m2", Decimal("89.5"))
        with transaction(self.engine) as s:
            account = Account(number=number, building_id=self.building_id,
                              household=f"1-1-{100 + self._count}", holder_name=holder_name,
                              holder_phone="13812345678", price_yuan_per_kwh=Decimal(price),
                              **account_fields)
            s.add(account)
            s.flush()
            s.add(Meter(account_id=account.id, gateway_id=gateway_id, unit_id=unit_id,
                        relay_open=relay_open, max_power_w=max_power_w))
            if balance_fen:
                post_entry(s, account_id=account.id, amount_fen=balance_fen, kind=OPENING,
                           idempotency_key=f"opening:{number}")
        return number


def account_by_number(engine, number: str) -> Account:
    with transaction(engine) as s:
        return s.exec(select(Account).where(Account.number == number)).one()


def balance_of(engine, number: str) -> int:
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        return balance_fen(s, account.id)


def entries_of(engine, number: str, kind: str | None = None) -> list[LedgerEntry]:
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        q = select(LedgerEntry).where(LedgerEntry.account_id == account.id)
        if kind:
            q = q.where(LedgerEntry.kind == kind)
        return list(s.exec(q.order_by(LedgerEntry.id)))


def meter_of(engine, number: str) -> Meter:
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        return s.exec(select(Meter).where(Meter.account_id == account.id)).one()


# --- billing: tariffs, common-area meters, share schemes -----------------------------------------

def add_tariff(engine, name: str, *versions: tuple[str, str]) -> int:
    """A stored tariff with its versions given as (effective_from "YYYY-MM-DD", JSON text);
    returns its id (pass as `tariff_id=` to `EstateFactory.account`)."""
    import datetime as dt

    from app.tariffs.store import add_tariff as store_tariff, add_version

    with transaction(engine) as s:
        (first_day, first_json), *rest = versions
        tariff = store_tariff(s, name, first_json, dt.date.fromisoformat(first_day))
        for day, text in rest:
            add_version(s, tariff.id, dt.date.fromisoformat(day), text)
        return tariff.id


def store_readings(engine, meter_id: int, readings: list[tuple]) -> None:
    """Readings [(UTC time, Wh)] of one meter stored as the worker stores a poll's (judged,
    charged, rolled up into the load curve and the daily registers), oldest first."""
    from meters.store import ReadingResult, record_readings

    for at, wh in sorted(readings):
        record_readings(engine, [ReadingResult(meter_id, wh, False, at)])


def common_meter(engine, *, building_id: int, gateway_id: int, unit_id: int) -> int:
    """A common-area meter (no account) of a building; returns its id."""
    with transaction(engine) as s:
        meter = Meter(account_id=None, building_id=building_id, common_area=True,
                      gateway_id=gateway_id, unit_id=unit_id, relay_open=False)
        s.add(meter)
        s.flush()
        return meter.id


def set_building(engine, building_id: int, **fields) -> None:
    """Set a building's columns (`share_scheme="equal"`, `common_price_yuan_per_kwh=…`)."""
    with transaction(engine) as s:
        building = s.get(Building, building_id)
        for name, value in fields.items():
            setattr(building, name, value)
        s.add(building)
