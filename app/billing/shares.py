"""公摊: a building's common-area charge shared among its households, period by period.

Rules (docs/billing.md says the same):
- The period's common energy is, for each common-area meter of the building (`Meter.common_area`,
  `Meter.building_id`), its register at the last reading before the period's end minus its
  register at the last reading before the start (the first reading inside the period when there
  is none before; never below 0). Periods of whole local days (days, months) read the meters'
  days (`DailyFrozen`), kept for good, where a reading at midnight belongs to the day it starts;
  other periods read the raw readings (kept for `reading_retention_days`), "at or before". It
  is priced at the building's
  `common_price_yuan_per_kwh`; the fen to share come from the one rounding rule
  (`app.money.post_increment` over the building's running exact total, the sub-fen remainder
  carried to the next period).
- Weights by the building's `share_scheme`: "area" (floor area, the default: 《民法典》 art. 283
  shares common costs by the owner's area), "equal" (per household), "usage" (the household's
  energy used in the period: its meters' days for a period of whole days, else its charges
  posted in the period). Each weight is multiplied by the seconds the account was
  open in the period (from `created_at` to `closed_at`): an account opened or closed mid-period
  pays for the time it was open; one not open at all pays nothing. A vacant household (open,
  no use) pays under "area" and "equal" like any owner, and nothing under "usage"; when no one
  used anything under "usage", the period falls back to "area" (then to "equal" when no area is
  known), and the entry says so.
- The fen are split by the largest-remainder method (`largest_remainder`): the shares sum
  exactly to the charge; leftover fen go to the largest remainders, ties to the lower account id.
- Once per building and period: a `ShareRun` row (UNIQUE building, start, end) records what was
  measured and how it was split; each household's share is a ledger entry of kind "share" with
  the key `share:<building>:<period>:<account>` whose memo says how it was computed. A period
  overlapping one already shared for the building is refused (daily or monthly, not both).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.billing.services import E7, insert_entries
from app.ledger.services import lock_balances
from app.db import driver_rows, utcnow
from app.estate.models import Account, Building, DailyFrozen as Day, Meter, Reading, ShareRun
from app.ledger.models import CHARGE, SHARE, LedgerEntry
from app.money import energy_cost, fen_to_yuan_str, post_increment
from app.tariffs import CHINA_TZ
from app.tariffs.pricing import format_kwh_fixed

SCHEMES = ("area", "equal", "usage")
AREA_PLACES = Decimal("0.0001")  # floor areas in m², as `app.db.Decimal4` keeps them
SCHEME_WORDS = {"area": "按面积", "equal": "按户均摊", "usage": "按用电量"}


class ShareError(ValueError):
    """A period that cannot be shared (overlaps one shared already, or is empty)."""


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split the integer `total` (≥ 0) in proportion to non-negative integer `weights` (not all
    zero): each gets the floor of its exact part, and the units left over go one each to the
    largest remainders, ties to the first. The parts sum exactly to `total`."""
    whole = sum(weights)
    if total < 0 or whole <= 0 or min(weights) < 0:
        raise ValueError("largest_remainder: total ≥ 0 and non-negative weights, not all zero")
    parts = [divmod(total * w, whole) for w in weights]
    shares = [q for q, _ in parts]
    left = total - sum(shares)
    if left:
        minus = [-r for _, r in parts]  # a stable sort by it: ties stay in order, to the first
        for i in sorted(range(len(weights)), key=minus.__getitem__)[:left]:
            shares[i] += 1
    return shares


def period_label(start: dt.datetime, end: dt.datetime) -> str:
    """"2026-11-22" for a local (China time) day, "2026-11" for a local month, else the UTC
    instants "20261122T1600Z-20261123T1600Z"."""
    a, b = start.astimezone(CHINA_TZ), end.astimezone(CHINA_TZ)
    if a.time() == dt.time(0) and b.time() == dt.time(0):
        if b.date() - a.date() == dt.timedelta(days=1):
            return f"{a:%Y-%m-%d}"
        if a.day == 1 and b.day == 1 and (b.year * 12 + b.month) - (a.year * 12 + a.month) == 1:
            return f"{a:%Y-%m}"
    u, v = start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)
    return f"{u:%Y%m%dT%H%M}Z-{v:%Y%m%dT%H%M}Z"


def common_energy_wh(session: Session, building_id: int, start: dt.datetime,
                     end: dt.datetime) -> int:
    """The building's common-area energy in [start, end), Wh (see the module's rule)."""
    return common_energies_wh(session, [building_id], start, end).get(building_id, 0)


def common_energies_wh(session: Session, building_ids: Sequence[int], start: dt.datetime,
                       end: dt.datetime) -> dict[int, int]:
    """`common_energy_wh` of many buildings in one query: Wh by building id (buildings without a
    common-area meter, or without the readings to measure one, are left out). A period of
    whole local days (the billing jobs' days and months) is measured on the meters' days
    (`DailyFrozen`: the register at the last reading of the day before each end; the opening
    register of the first day inside when there is none before), which last; any other period on
    the raw readings, which are kept only for the retention period."""
    if _local_midnight(start) and _local_midnight(end):
        first, last = _local_day(start), _local_day(end)

        def register(*where, newest: bool = True, column=Day.register_wh):
            return (select(column).where(Day.meter_id == Meter.id, *where)
                    .order_by(Day.day.desc() if newest else Day.day).limit(1)
                    .correlate(Meter).scalar_subquery())

        at_end, at_start = register(Day.day < last), register(Day.day < first)
        first_inside = register(Day.day >= first, Day.day < last, newest=False,
                                column=Day.opening_wh)
    else:
        def register(*where, newest: bool = True):
            order = (Reading.read_at.desc(), Reading.id.desc()) if newest else \
                (Reading.read_at, Reading.id)
            return (select(Reading.energy_wh).where(Reading.meter_id == Meter.id, *where)
                    .order_by(*order).limit(1).correlate(Meter).scalar_subquery())

        at_end, at_start = register(Reading.read_at <= end), register(Reading.read_at <= start)
        first_inside = register(Reading.read_at > start, Reading.read_at <= end, newest=False)
    rows = session.execute(select(Meter.building_id, at_end, at_start, first_inside)
                           .where(Meter.building_id.in_(building_ids),
                                  Meter.common_area.is_(True))).all()
    total: dict[int, int] = {}
    for building_id, at_end, at_start, first_inside in rows:
        if at_start is None:  # no reading before the period: its first reading inside it
            at_start = first_inside
        if at_end is not None and at_start is not None:
            total[building_id] = total.get(building_id, 0) + max(0, at_end - at_start)
    return total


def _local_midnight(moment: dt.datetime) -> bool:
    return moment.astimezone(CHINA_TZ).time() == dt.time(0)


def _local_day(moment: dt.datetime) -> dt.date:
    return moment.astimezone(CHINA_TZ).date()


def post_shares(session: Session, building: Building, period_start: dt.datetime,
                period_end: dt.datetime, *, energy_wh: int | None = None) -> ShareRun | None:
    """Share `building`'s common-area charge for [period_start, period_end) (UTC-aware) among
    its households, in the caller's transaction. Returns the run, or None when the period was
    shared already (nothing changes). `energy_wh` overrides the measured common energy (a
    manager's figure, or the bench). Posts only debits (shares ≥ 0); raises `ShareError` for an
    empty period or one overlapping a period shared before."""
    energies = None if energy_wh is None else {building.id: energy_wh}
    return share_buildings(session, [building], period_start, period_end,
                           energy_wh=energies)[0]


BATCH = 500  # buildings per set of queries (bounds the IN lists)


def share_buildings(session: Session, buildings: Sequence[Building], period_start: dt.datetime,
                    period_end: dt.datetime, *, energy_wh: Mapping[int, int] | None = None
                    ) -> list[ShareRun | None]:
    """`post_shares` for each of `buildings` (the estate's, for the day or the month), in the
    caller's transaction, with the same rows and rules: the run of each building in order, None
    where its period was shared already (or the building is listed twice). `energy_wh` (by
    building id) overrides the measured common energy of the buildings it names.

    Set-wise: the runs already made, the common energy, the households and their use are read
    with one query each per batch of buildings (not per building), the runs are inserted
    together and every household's entry in one executemany (`insert_entries`). Raises
    `ShareError`, before anything is written, for an empty period, an unknown scheme or a period
    overlapping one shared before."""
    if period_end <= period_start:
        raise ShareError("period_end must be after period_start")
    for building in buildings:
        if building.share_scheme not in SCHEMES:
            raise ShareError(f"building {building.id}: unknown share_scheme "
                             f"{building.share_scheme!r} (one of {', '.join(SCHEMES)})")
    session.flush()  # the queries below read through the session's connection
    runs: list[ShareRun | None] = []
    seen: set[int] = set()
    for i in range(0, len(buildings), BATCH):
        runs += _share_batch(session, buildings[i:i + BATCH], period_start, period_end,
                             energy_wh or {}, seen)
    return runs


def _share_batch(session: Session, buildings: Sequence[Building], start: dt.datetime,
                 end: dt.datetime, energy_wh: Mapping[int, int], seen: set[int]
                 ) -> list[ShareRun | None]:
    label = period_label(start, end)
    ids = [b.id for b in buildings]
    done: dict[int, list] = {}
    for run in session.execute(select(ShareRun.building_id, ShareRun.period_start,
                                      ShareRun.period_end)
                               .where(ShareRun.building_id.in_(ids), ShareRun.period_start < end,
                                      ShareRun.period_end > start)).all():
        done.setdefault(run.building_id, []).append(run)
    todo = []
    for building in buildings:
        earlier = done.get(building.id, [])
        if building.id in seen or any(r.period_start == start and r.period_end == end
                                      for r in earlier):
            todo.append(None)
            continue
        if earlier:
            raise ShareError(f"building {building.id}: {label} overlaps a period already shared "
                             f"({period_label(earlier[0].period_start, earlier[0].period_end)})")
        seen.add(building.id)
        todo.append(building)
    measured = [b.id for b in todo if b is not None and b.id not in energy_wh]
    energies = common_energies_wh(session, measured, start, end) if measured else {}
    energies.update(energy_wh)
    households = _households(session, [b.id for b in todo if b is not None], start, end)
    usage_ids = [b.id for b in todo if b is not None and b.share_scheme == "usage"]
    used = _used_wh(session, usage_ids, start, end) if usage_ids else {}

    runs: list[ShareRun | None] = []
    plans = []  # (run, building, households, scheme, weights)
    for building in todo:
        if building is None:
            runs.append(None)
            continue
        wh = energies.get(building.id, 0)
        exact = energy_cost(wh, building.common_price_yuan_per_kwh)
        charge_fen = post_increment(Decimal(building.shared_exact_e7) / E7, exact)
        homes = households.get(building.id, [])
        scheme, weights = _weights(building.share_scheme, homes, start, end, used)
        run = ShareRun(building_id=building.id, period_start=start, period_end=end,
                       scheme=scheme, energy_wh=wh, exact_e7=int(exact * E7),
                       charge_fen=charge_fen if homes else 0, households=len(homes))
        runs.append(run)
        plans.append((run, building, homes, scheme, weights))
    runs = _insert_runs(session, runs)
    inserted = {id(run) for run in runs if run is not None}
    rows = []
    for run, building, homes, scheme, weights in plans:
        if id(run) not in inserted or not homes:  # lost to a concurrent run, or nobody to share
            continue
        building.shared_exact_e7 += run.exact_e7
        building.shared_fen += run.charge_fen
        session.add(building)
        rows += _share_rows(building, label, run, homes, scheme, weights)
    lock_balances(session, (row[0] for row in rows))  # in account order: no deadlock
    insert_entries(session.connection(), rows, created_at=utcnow())
    return runs


def _insert_runs(session: Session, runs: list[ShareRun | None]) -> list[ShareRun | None]:
    """Insert the new runs together; if one loses to a concurrent run of the same period
    (UNIQUE building, start, end), insert them one by one and return None for the losers."""
    new = [run for run in runs if run is not None]
    try:
        with session.begin_nested():
            session.add_all(new)
        return runs
    except IntegrityError:
        pass
    kept: list[ShareRun | None] = []
    for run in runs:
        if run is not None:
            try:
                with session.begin_nested():
                    session.add(run)
            except IntegrityError:
                run = None
        kept.append(run)
    return kept


def _share_rows(building: Building, label: str, run: ShareRun, households: list, scheme: str,
                weights: list[tuple[int, str]]) -> list[tuple]:
    """The ledger rows (see `insert_entries`) of one building's shares: largest remainder."""
    charge_fen = run.charge_fen
    parts = [w for w, _ in weights]
    shares = largest_remainder(charge_fen, parts)
    whole = sum(parts)
    head = (f"公摊 {label}: 公共 {format_kwh_fixed(run.energy_wh)} kWh × "
            f"{building.common_price_yuan_per_kwh} = {fen_to_yuan_str(charge_fen)} 元; "
            f"{SCHEME_WORDS[scheme]}")
    if scheme != building.share_scheme:
        head += f" (无人用电, 不能{SCHEME_WORDS.get(building.share_scheme, building.share_scheme)})"
    key = f"share:{building.id}:{label}:"
    # memo: "<head> <how> (<count> 户, 占 <w/whole reduced>) → <fen> fen", at most 500 characters
    head, tail = f"{head} ", f" ({len(households)} 户, 占 "
    gcd = math.gcd
    return [(a, -fen, SHARE, f"{key}{a}",
             f"{head}{how}{tail}{w // (g := gcd(w, whole) or 1)}/{whole // g}) → {fen} fen"[:500],
             None)
            for fen, (w, how), (a, _, _) in zip(shares, weights, households)]


def _households(session: Session, building_ids: Sequence[int], start: dt.datetime,
                end: dt.datetime) -> dict[int, list[tuple[int, Decimal, int]]]:
    """By building id, its accounts open at some time in the period, by id: (id, floor area,
    seconds open in the period). Only the accounts not open all along (created after the start,
    closed before the end) have their times read and counted in Python."""
    out: dict[int, list] = {}
    if not building_ids:
        return out
    span = int((end - start).total_seconds())
    all_along = sa.and_(Account.created_at <= start,
                        sa.or_(Account.closed_at.is_(None), Account.closed_at >= end))
    # The driver's plain rows (`driver_rows`: no ORM, no SQLAlchemy row, for 100,000s), the
    # area as the driver gives it (text on SQLite, NUMERIC on PostgreSQL) made the Decimal of 4
    # places `Decimal4` would make, and whether open all along as 1 or 0 (a Boolean would be
    # processed row by row)
    area = sa.type_coerce(Account.floor_area_m2, sa.String)
    rows = driver_rows(session.connection(), (
        select(Account.building_id, Account.id, area, sa.case((all_along, 1), else_=0))
        .where(Account.building_id.in_(building_ids), Account.created_at < end,
               sa.or_(Account.closed_at.is_(None), Account.closed_at > start))
        .order_by(Account.building_id, Account.id)))
    partial = [account_id for _, account_id, _, whole in rows if not whole]
    seconds = {}
    for i in range(0, len(partial), 1000):
        for a in session.execute(select(Account.id, Account.created_at, Account.closed_at)
                                 .where(Account.id.in_(partial[i:i + 1000]))).all():
            seconds[a.id] = _open_seconds(a, start, end)
    areas: dict = {}  # one Decimal per distinct area
    last, homes = None, []
    for building_id, account_id, raw, whole in rows:  # by building
        if building_id != last:
            last, homes = building_id, out.setdefault(building_id, [])
        area = areas.get(raw)
        if area is None:
            area = areas[raw] = Decimal(str(raw if raw is not None else 0)).quantize(AREA_PLACES)
        homes.append((account_id, area, span if whole else seconds[account_id]))
    return out


def _used_wh(session: Session, building_ids: Sequence[int], start: dt.datetime,
             end: dt.datetime) -> dict[int, int]:
    """Energy each account of these buildings used in the period, Wh by account id: for a
    period of whole local days, its meters' plausible energy of those days (`DailyFrozen`,
    what is charged); for any other, its `charge` entries posted in the period."""
    if _local_midnight(start) and _local_midnight(end):
        return {account_id: int(wh) for account_id, wh in session.execute(
            select(Meter.account_id, func.coalesce(func.sum(Day.used_wh), 0))
            .join(Day, Day.meter_id == Meter.id)
            .join(Account, Account.id == Meter.account_id)
            .where(Account.building_id.in_(building_ids), Day.day >= _local_day(start),
                   Day.day < _local_day(end))
            .group_by(Meter.account_id)).all()}
    return {account_id: int(wh) for account_id, wh in session.execute(
        select(LedgerEntry.account_id, func.coalesce(func.sum(LedgerEntry.energy_wh), 0))
        .join(Account, Account.id == LedgerEntry.account_id)
        .where(Account.building_id.in_(building_ids), LedgerEntry.kind == CHARGE,
               LedgerEntry.created_at >= start, LedgerEntry.created_at < end)
        .group_by(LedgerEntry.account_id)).all()}


def _open_seconds(account, start: dt.datetime, end: dt.datetime) -> int:
    if account.created_at <= start and account.closed_at is None:
        return int((end - start).total_seconds())  # open all along (most)
    a = max(start, account.created_at)
    b = min(end, account.closed_at) if account.closed_at else end
    return max(0, int((b - a).total_seconds()))


_AREA_WEIGHTS: dict[Decimal, tuple[int, str]] = {}  # area → its weight per second, its words


def _area_weight(area: Decimal) -> tuple[int, str]:
    if len(_AREA_WEIGHTS) >= 100_000:
        _AREA_WEIGHTS.clear()
    found = _AREA_WEIGHTS[area] = (int(area * 10_000), f"面积 {area.normalize():f} m²")
    return found


def _weights(scheme: str, households: list[tuple[int, Decimal, int]], start: dt.datetime,
             end: dt.datetime, used_wh: Mapping[int, int]) -> tuple[str, list[tuple[int, str]]]:
    """(scheme used, [(integer weight, how it was computed)] in the order of `households`
    (id, area, seconds open)); `used_wh`: the energy charged in the period by account id."""
    if not households:
        return scheme, []
    span = int((end - start).total_seconds())

    def part(s: int) -> str:
        return "" if s == span else f", 在户 {s}/{span} s"

    if scheme == "usage":
        used = used_wh.get
        if any(used(a) and s for a, _, s in households):  # else no weight: by area
            return scheme, [(int(used(a, 0)) * s,
                             f"自用 {format_kwh_fixed(int(used(a, 0)))} kWh{part(s)}")
                            for a, _, s in households]
        scheme = "area"
    if scheme == "area":
        known = _AREA_WEIGHTS.get  # one weight and text per distinct area, not per household
        weights = [((k := known(area) or _area_weight(area))[0] * s,
                    k[1] if s == span else k[1] + part(s)) for _, area, s in households]
        if any(w for w, _ in weights):
            return scheme, weights
    return "equal", [(s, "每户 1 份" if s == span else f"每户 1 份{part(s)}")
                     for _, _, s in households]
