"""线损: a building's main meter (总表, `Meter.building_main`) against its households' and common
areas' meters, per local (China time) day; a day lost above the building's
`line_loss_threshold_pct` is an anomaly (`line_loss`) for a manager.

Rules (docs/console.md, "线损", says the same):
- A day's energy of a meter is its `DailyFrozen.used_wh` (what the worker counted in that local
  day and judged plausible: what households are charged). The main energy is that of the
  building's main meters (usually one; several are added up), the sum that of its households'
  meters (through their accounts) and its other meters without an account (common areas).
  loss = main − sum; loss % = loss × 100 ÷ main.
- A day is judged only when it can be: the building has a main meter (else nothing at all), every
  main meter was read that day (a `DailyFrozen` row: the worker writes one for every day a meter
  answers), every household and common-area meter that should have been read was (as the
  reading success rate says, app/estate/indicators.py: a meter not read counts its energy on the
  day it is next read, which would show as a loss today and a gain then), and the main meter
  counted energy. Otherwise the day says why (`reason`) and nothing is raised.
- Judged and loss % > the threshold (strictly; exact, no rounding): one open anomaly of kind
  `line_loss` naming the building, the day and the main meter, with the figures in its detail
  and the lost energy in `energy_wh`; never a second one for the same building and day (a
  UNIQUE index on kind, building, day: a rerun, or two processes, raise it once, and one a
  manager resolved is not raised again). A negative loss (the meters exceed the main meter) is
  shown, not raised.
- The billing jobs check once a local day, `CHECK_DELAY` after midnight, the last
  `CATCH_UP_DAYS` days ending yesterday (`check_due_line_losses`): a day missed while no process
  ran is checked the next day.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from app.anomalies.models import LINE_LOSS, Anomaly
from app.db import transaction, utcnow
from app.estate.indicators import (METERS_ACCOUNTS, meters_due_by_day, meters_of,
                                   of_buildings, open_in, percent, read_while_open)
from app.estate.models import Account, Building, DailyFrozen, Meter
from app.ledger.days import ONE_DAY, local_day
from app.tariffs.pricing import format_kwh_fixed

log = logging.getLogger(__name__)

CHECK_DELAY = dt.timedelta(minutes=10)  # yesterday's last readings are stored by then
CATCH_UP_DAYS = 3

# Why a day was not judged.
NO_MAIN_READING = "main_meter_not_read"
METERS_NOT_READ = "meters_not_read"
MAIN_USED_NOTHING = "main_meter_used_nothing"

_METER, _ACCOUNT, _DAY = Meter.__table__, Account.__table__, DailyFrozen.__table__
_BUILDING, _ANOMALY = Building.__table__, Anomaly.__table__


@dataclass(frozen=True)
class LineLossDay:
    """One building's day: the main meters' energy against the others', Wh."""

    building_id: int
    day: dt.date
    main_meter_id: int  # the building's (first) main meter
    main_wh: int | None  # None: a main meter was not read that day
    households_wh: int  # the households' meters
    common_wh: int  # the meters without an account (common areas)
    meters: int  # household and common-area meters that should have been read that day
    meters_read: int  # of them, read
    threshold_pct: Decimal
    reason: str = ""  # why not judged ("" when judged): NO_MAIN_READING, METERS_NOT_READ, …

    @property
    def judged(self) -> bool:
        return not self.reason

    @property
    def sum_wh(self) -> int:
        return self.households_wh + self.common_wh

    @property
    def loss_wh(self) -> int | None:
        return None if self.main_wh is None else self.main_wh - self.sum_wh

    @property
    def loss_pct(self) -> Decimal | None:
        """loss ÷ main in %, two places (half up), for showing; None when main is 0 or unread."""
        return None if self.main_wh is None else percent(self.loss_wh, self.main_wh)

    @property
    def above_threshold(self) -> bool:
        """Judged and loss × 100 > threshold × main, exactly."""
        return self.judged and Decimal(self.loss_wh) * 100 > self.threshold_pct * self.main_wh


def line_loss_days(session: Session, building_id: int, first_day: dt.date,
                   last_day: dt.date) -> list[LineLossDay]:
    """Each day of [first_day, last_day] of one building (for a page), judged or saying why
    not; [] when the building has no main meter."""
    mains = _main_meters(session, [building_id])
    if building_id not in mains:
        return []
    due = meters_due_by_day(session, [building_id], first_day, last_day, main_meters=False)
    return _days(session, mains, {building_id: due}, first_day, last_day)[building_id]


def line_losses_on(session: Session, day: dt.date,
                   building_ids: Sequence[int] | None = None) -> list[LineLossDay]:
    """One day of every building with a main meter (or of those of `building_ids`), in a few
    queries for them all."""
    mains = _main_meters(session, building_ids)
    if not mains:
        return []
    ids = sorted(mains)
    building = sa.func.coalesce(_ACCOUNT.c.building_id, _METER.c.building_id)
    due = {b: {day: int(n)} for b, n in session.execute(
        sa.select(building, sa.func.count()).select_from(METERS_ACCOUNTS)
        .where(of_buildings(ids, main_meters=False), open_in(day, day))
        .group_by(building)).all()}
    days = _days(session, mains, due, day, day)
    return [d for b in ids for d in days[b]]


def _main_meters(session: Session, building_ids: Sequence[int] | None
                 ) -> dict[int, tuple[list[int], Decimal]]:
    """Buildings with a main meter: (their main meter ids, the threshold %) by building id."""
    query = (sa.select(_METER.c.building_id, _METER.c.id, _BUILDING.c.line_loss_threshold_pct)
             .join(_BUILDING, _BUILDING.c.id == _METER.c.building_id)
             .where(_METER.c.building_main.is_(True), _METER.c.account_id.is_(None))
             .order_by(_METER.c.building_id, _METER.c.id))
    if building_ids is not None:
        query = query.where(_METER.c.building_id.in_(list(building_ids)))
    out: dict[int, tuple[list[int], Decimal]] = {}
    for building_id, meter_id, threshold in session.execute(query):
        out.setdefault(building_id, ([], threshold))[0].append(meter_id)
    return out


def _days(session: Session, mains: dict[int, tuple[list[int], Decimal]],
          due: dict[int, dict[dt.date, int]], first: dt.date, last: dt.date
          ) -> dict[int, list[LineLossDay]]:
    """The buildings' days from one grouped query over their meters' days."""
    ids = sorted(mains)
    building = sa.func.coalesce(_ACCOUNT.c.building_id, _METER.c.building_id)
    kind = sa.case((_METER.c.building_main.is_(True), "main"),
                   (_METER.c.account_id.is_(None), "common"), else_="household")
    got: dict[tuple[int, dt.date], dict[str, tuple[int, int]]] = defaultdict(dict)
    for b, day, k, wh, n in session.execute(
            sa.select(building, _DAY.c.day, kind, sa.func.sum(_DAY.c.used_wh), sa.func.count())
            .select_from(_DAY.join(METERS_ACCOUNTS, _METER.c.id == _DAY.c.meter_id))
            .where(_DAY.c.meter_id.in_(meters_of(ids)), _DAY.c.day >= first,
                   _DAY.c.day <= last, read_while_open())
            .group_by(building, _DAY.c.day, kind)):
        day = day if isinstance(day, dt.date) else dt.date.fromisoformat(str(day))
        got[(b, day)][k] = (int(wh), int(n))
    out: dict[int, list[LineLossDay]] = {}
    for b in ids:
        main_ids, threshold = mains[b]
        rows, day = [], first
        while day <= last:
            found = got.get((b, day), {})
            main_wh, main_read = found.get("main", (0, 0))
            homes_wh, homes_read = found.get("household", (0, 0))
            common_wh, common_read = found.get("common", (0, 0))
            meters = due.get(b, {}).get(day, 0)
            if main_read < len(main_ids):
                reason, main_wh = NO_MAIN_READING, None
            elif homes_read + common_read < meters:
                reason = METERS_NOT_READ
            elif main_wh <= 0:
                reason = MAIN_USED_NOTHING
            else:
                reason = ""
            rows.append(LineLossDay(b, day, main_ids[0], main_wh, homes_wh, common_wh, meters,
                                    homes_read + common_read, threshold, reason))
            day += ONE_DAY
        out[b] = rows
    return out


def check_line_losses(engine, day: dt.date) -> list[LineLossDay]:
    """Judge `day` (local, ended) for every building with a main meter and raise a `line_loss`
    anomaly for each above its threshold that has none for that day; returns the days
    raised now."""
    with transaction(engine, read_only=True) as s:
        above = [d for d in line_losses_on(s, day) if d.above_threshold]
    if not above:
        return []
    raised = []
    with transaction(engine) as s:
        known = set(s.execute(sa.select(_ANOMALY.c.building_id).where(
            _ANOMALY.c.kind == LINE_LOSS, _ANOMALY.c.day == day,
            _ANOMALY.c.building_id.in_([d.building_id for d in above]))).scalars())
        for d in above:
            if d.building_id in known:
                continue
            try:
                with s.begin_nested():  # the UNIQUE index: raised meanwhile by another process
                    s.add(Anomaly(kind=LINE_LOSS, building_id=d.building_id, day=day,
                                  meter_id=d.main_meter_id, energy_wh=d.loss_wh,
                                  detail=describe(d)))
            except IntegrityError:
                continue
            raised.append(d)
    return raised


def describe(d: LineLossDay) -> str:
    """The anomaly's detail: the day, the figures and the threshold."""
    return (f"{d.day:%Y-%m-%d} 线损 {d.loss_pct}% > {d.threshold_pct.normalize():f}%: "
            f"总表 {format_kwh_fixed(d.main_wh)} kWh − (户表 {format_kwh_fixed(d.households_wh)}"
            f" + 公共 {format_kwh_fixed(d.common_wh)} kWh) = {format_kwh_fixed(d.loss_wh)} kWh; "
            f"{d.meters_read}/{d.meters} 表已抄")[:500]


def check_due_line_losses(engine, now: dt.datetime | None = None) -> list[LineLossDay]:
    """`check_line_losses` for the last `CATCH_UP_DAYS` local days ending yesterday (as of
    `CHECK_DELAY` ago); returns the days raised now."""
    now = now or utcnow()
    yesterday = local_day(now - CHECK_DELAY) - ONE_DAY
    raised = []
    for k in range(CATCH_UP_DAYS - 1, -1, -1):
        raised += check_line_losses(engine, yesterday - dt.timedelta(days=k))
    return raised
