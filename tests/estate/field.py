"""A small field built row by row, whose indicators and line losses are known: households,
common-area and main meters, their days, commands, payments and ledger entries, at given local
(China time) times."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from app.commands.models import Command
from app.db import transaction
from app.estate.models import Account, Building, DailyFrozen, Meter
from app.ledger.models import LedgerEntry
from app.orders.models import PAID, Order
from tests.factories import EstateFactory

CHINA = dt.timezone(dt.timedelta(hours=8))
LONG_AGO = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def local(text: str) -> dt.datetime:
    """A local (China time) "YYYY-MM-DD HH:MM[:SS.ffffff]" as an aware UTC datetime."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=CHINA).astimezone(dt.timezone.utc)


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


class Field:
    """One estate; `building()` adds buildings, the rest adds rows to a building."""

    def __init__(self, engine):
        self.engine = engine
        self.estate = EstateFactory(engine)
        self.building_id = self.estate.building_id
        self.gateway_id = self.estate.gateway("127.0.0.1", 1)
        self._units = 0
        self._keys = 0

    def building(self, name: str = "2号楼", **fields) -> int:
        with transaction(self.engine) as s:
            building = Building(estate_id=self.estate.estate_id, name=name, **fields)
            s.add(building)
            s.flush()
            return building.id

    def _unit(self) -> int:
        self._units += 1
        return self._units

    def household(self, *, building_id: int | None = None, created_at: dt.datetime = LONG_AGO,
                  closed_at: dt.datetime | None = None) -> tuple[int, int]:
        """A household open from `created_at` (to `closed_at`); (account id, meter id)."""
        with transaction(self.engine) as s:
            self._keys += 1
            account = Account(number=f"8{self._keys:05d}", household=f"1-{self._keys}",
                              building_id=building_id or self.building_id,
                              price_yuan_per_kwh=Decimal("0.5583"), created_at=created_at,
                              closed_at=closed_at)
            s.add(account)
            s.flush()
            meter = Meter(account_id=account.id, gateway_id=self.gateway_id, unit_id=self._unit(),
                          relay_open=False)
            s.add(meter)
            s.flush()
            return account.id, meter.id

    def meter(self, *, building_id: int | None = None, common_area: bool = False,
              building_main: bool = False) -> int:
        """A meter without an account: common-area, or the building's main meter."""
        with transaction(self.engine) as s:
            meter = Meter(account_id=None, building_id=building_id or self.building_id,
                          common_area=common_area, building_main=building_main,
                          gateway_id=self.gateway_id, unit_id=self._unit(), relay_open=False,
                          max_power_w=10**9)
            s.add(meter)
            s.flush()
            return meter.id

    def read(self, meter_id: int, on: str, used_wh: int = 0, at: str = "12:00") -> None:
        """The meter's day `on` (local date), read at `at` local time, `used_wh` counted."""
        with transaction(self.engine) as s:
            s.add(DailyFrozen(meter_id=meter_id, day=day(on), opening_wh=0, register_wh=used_wh,
                              read_at=local(f"{on} {at}"), used_wh=used_wh))

    def command(self, meter_id: int, action: str, state: str, created: str,
                completed: str | None = None) -> None:
        with transaction(self.engine) as s:
            at = local(created)
            s.add(Command(meter_id=meter_id, action=action, state=state, created_at=at,
                          next_attempt_at=at, expires_at=at + dt.timedelta(hours=2),
                          completed_at=local(completed) if completed else None))

    def payment(self, account_id: int, paid: str, amount_fen: int = 5000) -> None:
        with transaction(self.engine) as s:
            self._keys += 1
            at = local(paid)
            s.add(Order(out_trade_no=f"T{self._keys}", account_id=account_id,
                        amount_fen=amount_fen, channel="sandbox", status=PAID, created_at=at,
                        paid_at=at))

    def entry(self, account_id: int, amount_fen: int, kind: str, at: str) -> None:
        with transaction(self.engine) as s:
            self._keys += 1
            s.add(LedgerEntry(account_id=account_id, amount_fen=amount_fen, kind=kind,
                              idempotency_key=f"test:{self._keys}", created_at=local(at)))
