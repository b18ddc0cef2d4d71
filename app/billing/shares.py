"""公摊: a building's common-area charge shared among its households, period by period.

Rules (docs/billing.md says the same):
- The period's common energy is, for each common-area meter of the building (`Meter.common_area`,
  `Meter.building_id`), its register at the last reading at or before the period's end minus
  its register at the last reading at or before the start (the first reading inside the period
  when there is none before; never below 0). It is priced at the building's
  `common_price_yuan_per_kwh`; the fen to share come from the one rounding rule
  (`app.money.post_increment` over the building's running exact total, the sub-fen remainder
  carried to the next period).
- Weights by the building's `share_scheme`: "area" (floor area, the default: 《民法典》 art. 283
  shares common costs by the owner's area), "equal" (per household), "usage" (the household's
  charged energy posted in the period). Each weight is multiplied by the seconds the account was
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
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import func, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.billing.services import E7
from app.db import utcnow
from app.estate.models import Account, Building, Meter, Reading, ShareRun
from app.ledger.models import CHARGE, SHARE, LedgerEntry
from app.money import energy_cost, fen_to_yuan_str, post_increment
from app.tariffs import CHINA_TZ
from app.tariffs.pricing import format_kwh_fixed

SCHEMES = ("area", "equal", "usage")
SCHEME_WORDS = {"area": "按面积", "equal": "按户均摊", "usage": "按用电量"}


class ShareError(ValueError):
    """A period that cannot be shared (overlaps one shared already, or is empty)."""


def largest_remainder(total: int, weights: Sequence[int]) -> list[int]:
    """Split the integer `total` (≥ 0) in proportion to non-negative integer `weights` (not all
    zero): each gets the floor of its exact part, and the units left over go one each to the
    largest remainders, ties to the first. The parts sum exactly to `total`."""
    whole = sum(weights)
    if total < 0 or whole <= 0 or any(w < 0 for w in weights):
        raise ValueError("largest_remainder: total ≥ 0 and non-negative weights, not all zero")
    parts = [divmod(total * w, whole) for w in weights]
    shares = [q for q, _ in parts]
    order = sorted(range(len(weights)), key=lambda i: (-parts[i][1], i))
    for i in order[:total - sum(shares)]:
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
    meter_ids = session.exec(select(Meter.id).where(Meter.building_id == building_id,
                                                    Meter.common_area.is_(True))).all()
    total = 0
    for meter_id in meter_ids:
        at_end = _register_at(session, meter_id, end)
        at_start = _register_at(session, meter_id, start)
        if at_start is None:  # no reading before the period: its first reading inside it
            at_start = session.exec(select(Reading.energy_wh).where(
                Reading.meter_id == meter_id, Reading.read_at > start, Reading.read_at <= end)
                .order_by(Reading.read_at).limit(1)).first()
        if at_end is not None and at_start is not None:
            total += max(0, at_end - at_start)
    return total


def _register_at(session: Session, meter_id: int, when: dt.datetime) -> int | None:
    return session.exec(select(Reading.energy_wh).where(Reading.meter_id == meter_id,
                                                        Reading.read_at <= when)
                        .order_by(Reading.read_at.desc(), Reading.id.desc()).limit(1)).first()


def post_shares(session: Session, building: Building, period_start: dt.datetime,
                period_end: dt.datetime, *, energy_wh: int | None = None) -> ShareRun | None:
    """Share `building`'s common-area charge for [period_start, period_end) (UTC-aware) among
    its households, in the caller's transaction. Returns the run, or None when the period was
    shared already (nothing changes). `energy_wh` overrides the measured common energy (a
    manager's figure, or the bench). Posts only debits (shares ≥ 0); raises `ShareError` for an
    empty period or one overlapping a period shared before."""
    if period_end <= period_start:
        raise ShareError("period_end must be after period_start")
    if building.share_scheme not in SCHEMES:
        raise ShareError(f"building {building.id}: unknown share_scheme {building.share_scheme!r}"
                         f" (one of {', '.join(SCHEMES)})")
    label = period_label(period_start, period_end)
    done = session.exec(select(ShareRun).where(
        ShareRun.building_id == building.id, ShareRun.period_start < period_end,
        ShareRun.period_end > period_start)).all()
    if any(r.period_start == period_start and r.period_end == period_end for r in done):
        return None
    if done:
        raise ShareError(f"building {building.id}: {label} overlaps a period already shared "
                         f"({period_label(done[0].period_start, done[0].period_end)})")
    if energy_wh is None:
        energy_wh = common_energy_wh(session, building.id, period_start, period_end)
    exact = energy_cost(energy_wh, building.common_price_yuan_per_kwh)
    charge_fen = post_increment(Decimal(building.shared_exact_e7) / E7, exact)
    households = _households(session, building.id, period_start, period_end)
    scheme, weights = _weights(session, building.share_scheme, households, period_start,
                               period_end)
    run = ShareRun(building_id=building.id, period_start=period_start, period_end=period_end,
                   scheme=scheme, energy_wh=energy_wh, exact_e7=int(exact * E7),
                   charge_fen=charge_fen if households else 0, households=len(households))
    try:
        with session.begin_nested():
            session.add(run)
    except IntegrityError:  # a concurrent run of the same period won
        return None
    if not households:  # nobody to share with: nothing posted, the run says so (households 0)
        return run
    building.shared_exact_e7 += run.exact_e7
    building.shared_fen += charge_fen
    session.add(building)
    shares = largest_remainder(charge_fen, [w for w, _ in weights])
    whole = sum(w for w, _ in weights)
    head = (f"公摊 {label}: 公共 {format_kwh_fixed(energy_wh)} kWh × "
            f"{building.common_price_yuan_per_kwh} = {fen_to_yuan_str(charge_fen)} 元; "
            f"{SCHEME_WORDS[scheme]}")
    if scheme != building.share_scheme:
        head += f" (无人用电, 不能{SCHEME_WORDS.get(building.share_scheme, building.share_scheme)})"
    now = utcnow()
    rows = [dict(account_id=a.id, amount_fen=-fen, kind=SHARE,
                 idempotency_key=f"share:{building.id}:{label}:{a.id}",
                 memo=f"{head} {how} ({len(households)} 户, 占 {_ratio(w, whole)}) → {fen} fen"[:500],
                 energy_wh=None, created_at=now)
            for fen, (w, how), a in zip(shares, weights, households)]
    session.execute(insert(LedgerEntry.__table__), rows)
    return run


def _ratio(part: int, whole: int) -> str:
    common = math.gcd(part, whole) or 1
    return f"{part // common}/{whole // common}"


def _households(session: Session, building_id: int, start: dt.datetime,
                end: dt.datetime) -> list:
    """The accounts of the building open at some time in the period (id, area, created, closed),
    by id."""
    rows = session.execute(select(Account.id, Account.floor_area_m2, Account.created_at,
                                  Account.closed_at)
                           .where(Account.building_id == building_id, Account.created_at < end)
                           .order_by(Account.id)).all()
    return [a for a in rows if a.closed_at is None or a.closed_at > start]


def _open_seconds(account, start: dt.datetime, end: dt.datetime) -> int:
    a = max(start, account.created_at)
    b = min(end, account.closed_at) if account.closed_at else end
    return max(0, int((b - a).total_seconds()))


def _weights(session: Session, scheme: str, households: list, start: dt.datetime,
             end: dt.datetime) -> tuple[str, list[tuple[int, str]]]:
    """(scheme used, [(integer weight, how it was computed)] in the order of `households`)."""
    if not households:
        return scheme, []
    span = int((end - start).total_seconds())
    seconds = [_open_seconds(a, start, end) for a in households]

    def part(s: int) -> str:
        return "" if s == span else f", 在户 {s}/{span} s"

    if scheme == "usage":
        used = dict(session.exec(
            select(LedgerEntry.account_id, func.coalesce(func.sum(LedgerEntry.energy_wh), 0))
            .where(LedgerEntry.account_id.in_([a.id for a in households]),
                   LedgerEntry.kind == CHARGE, LedgerEntry.created_at >= start,
                   LedgerEntry.created_at < end)
            .group_by(LedgerEntry.account_id)).all())
        weights = [(int(used.get(a.id, 0)) * s, f"自用 {format_kwh_fixed(int(used.get(a.id, 0)))} kWh"
                    f"{part(s)}") for a, s in zip(households, seconds)]
        if any(w for w, _ in weights):
            return scheme, weights
        scheme = "area"
    if scheme == "area":
        weights = [(int(a.floor_area_m2 * 10_000) * s, f"面积 {a.floor_area_m2.normalize():f} m²{part(s)}")
                   for a, s in zip(households, seconds)]
        if any(w for w, _ in weights):
            return scheme, weights
    return "equal", [(s, f"每户 1 份{part(s)}") for s in seconds]
