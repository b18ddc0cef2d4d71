"""What a bound resident reads about their household: the month's bill (账单), the history (明细)
with the charges folded by day, the usage by day and by month (用电), and the notices (消息).
Reads only (but `mark_notices_read`, the binding's read mark); no web: app/resident/pages.py
shows them.

Rules:
- Days and months are local (China time), an entry belonging to the local day and month of its
  `created_at`, as `LedgerDay` counts them (app/ledger/days.py). Money is integer fen, energy
  integer Wh; nothing here formats either.
- A balance is the sum of the account's ledger entries (emergency advances included): at a local
  midnight (`balance_at`) it is the account's own balance at the end of the day before, read
  from its latest `LedgerDay` row (one index probe; the days not frozen yet summed from the
  ledger), plus the emergency advance outstanding then (`advance_at`: nothing, with one probe of
  the unique keys, for an account that never took one; else its emergency entries since the
  first advance).
- A month's bill is its opening balance, its entries by kind, and its closing balance, the
  opening plus the entries: closing − opening is the month's entries summed, and every figure
  of the bill is a sum of some of them, each entry counted once. The month's own energy comes
  with its breakdown by tariff line (price step 第N档, time-of-use period, price): that is kept
  only in the memos of the `charge` entries (`app.billing.pricing.describe_accrued`), so the
  bill reads the month's charges (about 24 a day: one index range of the ledger, ~750 rows)
  grouped by memo in the database (an hour's Wh and prices repeat: a few hundred memos, each
  read once) and adds up the memos' Wh per line; each line's fen are the month's charged fen
  apportioned by the lines' exact amounts (Wh × price) by largest remainder, so they sum to the
  ledger's to the fen (the exact amounts differ from the posted fen by the sub-fen carried
  across the month's ends). A memo that cannot be read (truncated, older wording) puts its
  entries on a line of their own, with their own Wh and fen. The month's other entries (shares,
  payments, …: a few dozen) are read one by one.
- The common-area share (公摊) of the month is its `share` entries; how each was apportioned is
  its building's `ShareRun` (scheme, the building's common energy and charge, households), found
  from the entry's key (`share:<building>:<period>:<account>`), and the household's own basis
  (area, use) from the entry's memo (`app.billing.shares._share_rows`).
- The history pages by local days with entries, newest first, `HISTORY_DAYS` a page (keyset: the
  days before a day): payments, refunds, adjustments, openings and emergency advances one by
  one, each day's charges and shares folded into one line with their kWh and fen. Which days
  have entries is read from `LedgerDay` (frozen days) and the ledger (the days since).
- Usage is what the meters measured (`DailyFrozen.used_wh`, summed over the account's meters):
  by day for `USAGE_DAYS` days and by month for `USAGE_MONTHS` months, today and this month
  included (so far).
- Notices newer than the binding's `notices_read_at` are unread.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlmodel import Session

from app.billing.shares import largest_remainder
from app.db import local_date, utcnow
from app.estate.models import Account, DailyFrozen, FrozenDay, Meter, ShareRun
from app.ledger.days import ONE_DAY, day_start, local_day
from app.ledger.models import (ADJUSTMENT, CHARGE, EMERGENCY_CREDIT, OPENING, REFUND, SHARE,
                               TOPUP, LedgerDay, LedgerEntry)
from app.ledger.services import funds, kept_balance_fen
from app.notices.models import Notice
from app.resident.models import ResidentAccount

HISTORY_DAYS = 30  # local days with entries on a page of the history
USAGE_DAYS, USAGE_MONTHS = 30, 12
NOTICES_PER_PAGE = 20

_ENTRY, _LDAY, _RUN = LedgerEntry.__table__, LedgerDay.__table__, ShareRun.__table__
_DAY, _METER, _NOTICE = DailyFrozen.__table__, Meter.__table__, Notice.__table__
_OWN = sa.case((_ENTRY.c.kind == EMERGENCY_CREDIT, 0), else_=_ENTRY.c.amount_fen)
_FOLDED = (CHARGE, SHARE)  # what the history folds per day


def frozen_through(session: Session) -> dt.date | None:
    """The last local day frozen (`app.estate.freeze`: days are frozen in order from the
    ledger's first, so every day up to it is): `max` alone, which both databases answer from
    the primary key's end."""
    last = session.execute(sa.select(sa.func.max(FrozenDay.__table__.c.day))).scalar()
    return None if last is None else _as_date(last)


# --- months and balances -------------------------------------------------------------------------

def month_of(day: dt.date) -> dt.date:
    return day.replace(day=1)


def next_month(month: dt.date) -> dt.date:
    return (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def previous_month(month: dt.date) -> dt.date:
    return (month.replace(day=1) - ONE_DAY).replace(day=1)


_MONTH_TEXT = re.compile(r"(\d{4})-(\d{2})")


def parse_month(text: str) -> dt.date | None:
    """"2026-11" → 2026-11-01; None for anything else (a month 2000–2999)."""
    match = _MONTH_TEXT.fullmatch(text or "")
    if match is None:
        return None
    year, month = int(match[1]), int(match[2])
    return dt.date(year, month, 1) if 2000 <= year <= 2999 and 1 <= month <= 12 else None


_OWN_AT = (sa.select(_LDAY.c.own_fen)
           .where(_LDAY.c.account_id == bindparam("a"), _LDAY.c.day <= bindparam("d"))
           .order_by(_LDAY.c.day.desc()).limit(1))
_FIRST_ENTRY = (sa.select(_ENTRY.c.created_at).where(_ENTRY.c.account_id == bindparam("a"))
                .order_by(_ENTRY.c.created_at).limit(1))


def balance_at(session: Session, account: Account, day: dt.date, *,
               frozen: dt.date | None | bool = True) -> int:
    """The account's balance, fen (its entries summed, emergency advances included), at the
    local midnight that starts `day`. `frozen`: the last frozen day when the caller has read it
    (`frozen_through`), else read here."""
    if frozen is True:
        frozen = frozen_through(session)
    at, before = day_start(day), day - ONE_DAY
    base = before if frozen is not None and frozen >= before else frozen
    own = 0
    if base is not None:
        own = int(session.execute(_OWN_AT, {"a": account.id, "d": base}).scalar() or 0)
    if base is None or base < before:  # the days not frozen yet: from the ledger
        query = sa.select(sa.func.coalesce(sa.func.sum(_OWN), 0)).where(
            _ENTRY.c.account_id == account.id, _ENTRY.c.created_at < at)
        if base is not None:
            query = query.where(_ENTRY.c.created_at >= day_start(base + ONE_DAY))
        own += int(session.execute(query).scalar())
    return own + advance_at(session, account, at)


def advance_at(session: Session, account: Account, at: dt.datetime) -> int:
    """The emergency advance (应急用电) outstanding at `at`, fen: the sum of the account's
    `emergency_credit` entries before it. Every advance is keyed `emergency:<account>:<YYYY-MM>`
    (app/billing/emergency.py) and every repayment follows one, so the months' keys, probed on
    the unique index, tell whether there was any before `at`; only then are the emergency entries
    since the first advance summed."""
    first = session.execute(_FIRST_ENTRY, {"a": account.id}).scalar()
    if first is None or first >= at:
        return 0
    month, last = month_of(local_day(first)), month_of(local_day(at))
    keys = []
    while month <= last:
        keys.append(f"emergency:{account.id}:{month:%Y-%m}")
        month = next_month(month)
    # the keys alone in the WHERE: the planner must probe their unique index, not read the
    # account's ledger range
    taken = [when for when in session.execute(
        sa.select(_ENTRY.c.created_at).where(_ENTRY.c.idempotency_key.in_(keys))).scalars()
        if when < at]
    if not taken:
        return 0
    taken = min(taken)
    return int(session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(_ENTRY.c.amount_fen), 0))
        .where(_ENTRY.c.account_id == account.id, _ENTRY.c.kind == EMERGENCY_CREDIT,
               _ENTRY.c.created_at >= taken, _ENTRY.c.created_at < at)).scalar())


# --- the bill ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class EnergyLine:
    """A line of the month's own energy: a price step (None: the tariff has none), a
    time-of-use period (None: none), the price (None: the memo did not say), its Wh and fen
    (signed as the ledger's: a charge is negative)."""

    tier: int | None
    period: str | None
    price_yuan_per_kwh: Decimal | None
    energy_wh: int
    amount_fen: int


@dataclass(frozen=True)
class ShareBasis:
    """How the month's shares of one scheme were apportioned: `runs` periods (days or the
    month) of the building, its common-area energy and charge over them, its households (the
    most of any period), this household's fen, and its own basis where the memos say it: its
    floor area (m², as written), its use (Wh) summed over the periods; `households_share_bp`:
    this household's part of the building's charge in 1/10,000 (rounded down)."""

    scheme: str  # area | equal | usage | "" (unknown)
    runs: int
    building_wh: int
    building_fen: int
    households: int
    household_fen: int
    area_m2: str | None
    usage_wh: int | None
    share_bp: int | None


@dataclass(frozen=True)
class MoneyLine:
    """An entry shown on its own: a payment, a refund, an adjustment, an opening balance, an
    emergency advance or its repayment."""

    at: dt.datetime
    kind: str
    amount_fen: int
    channel: str = ""  # alipay | wechat | "" (payments and refunds)
    note: str = ""  # an adjustment's reason


@dataclass
class Bill:
    """A local month of an account. Fen signed as the ledger's (a charge is negative):
    `closing_fen` = `opening_fen` + every `*_fen` total below; the lines of each sum to it."""

    month: dt.date
    opening_fen: int
    closing_fen: int
    energy_wh: int = 0
    charges_fen: int = 0
    energy_lines: list[EnergyLine] = field(default_factory=list)
    by_time: bool = False  # some periods were shared by time (no usable period registers)
    shares_fen: int = 0
    shares: list[ShareBasis] = field(default_factory=list)
    payments: list[MoneyLine] = field(default_factory=list)
    refunds: list[MoneyLine] = field(default_factory=list)
    adjustments: list[MoneyLine] = field(default_factory=list)
    emergency: list[MoneyLine] = field(default_factory=list)
    openings: list[MoneyLine] = field(default_factory=list)
    entries: int = 0
    current: bool = False  # the month is not over
    pending_fen: int = 0  # (current month) charged, accrued, not yet posted: not in the bill

    @property
    def payments_fen(self) -> int:
        return sum(line.amount_fen for line in self.payments)

    @property
    def refunds_fen(self) -> int:
        return sum(line.amount_fen for line in self.refunds)

    @property
    def adjustments_fen(self) -> int:
        return sum(line.amount_fen for line in self.adjustments)

    @property
    def emergency_fen(self) -> int:
        return sum(line.amount_fen for line in self.emergency)

    @property
    def openings_fen(self) -> int:
        return sum(line.amount_fen for line in self.openings)

    @property
    def moved_fen(self) -> int:
        """The month's entries summed, as the bill's totals add them."""
        return (self.charges_fen + self.shares_fen + self.payments_fen + self.refunds_fen
                + self.adjustments_fen + self.emergency_fen + self.openings_fen)


_IN_MONTH = (_ENTRY.c.account_id == bindparam("a"), _ENTRY.c.created_at >= bindparam("s"),
          _ENTRY.c.created_at < bindparam("e"))
_MONTH_ROWS = (sa.select(_ENTRY.c.kind, _ENTRY.c.amount_fen, _ENTRY.c.memo,
                         _ENTRY.c.idempotency_key, _ENTRY.c.created_at)
               .where(*_IN_MONTH, _ENTRY.c.kind != CHARGE)
               .order_by(_ENTRY.c.created_at, _ENTRY.c.id))
# The charges by memo: ~720 entries a month, far fewer memos (an hour's Wh and prices repeat),
# each read once; summed by the database.
_MONTH_CHARGES = (sa.select(_ENTRY.c.memo, sa.func.sum(_ENTRY.c.amount_fen),
                            sa.func.sum(_ENTRY.c.energy_wh), sa.func.count(_ENTRY.c.energy_wh),
                            sa.func.count())
                  .where(*_IN_MONTH, _ENTRY.c.kind == CHARGE).group_by(_ENTRY.c.memo))


def add_entry(bill: Bill, kind: str, amount: int, memo: str | None, at: dt.datetime) -> bool:
    """One of the month's entries (not a charge) onto `bill`: its count and closing balance, and
    its line: payments, refunds (退款), emergency credit, openings, and any other kind as an
    adjustment with its reason. Returns True for a share, which the caller itemizes its way
    (the page with how it was apportioned; a sheet as one sum)."""
    bill.entries += 1
    bill.closing_fen += amount
    if kind == SHARE:
        bill.shares_fen += amount
        return True
    if kind == TOPUP:
        bill.payments.append(MoneyLine(at, kind, amount, channel_of(memo)))
    elif kind == REFUND:
        bill.refunds.append(MoneyLine(at, kind, amount, channel_of(memo)))
    elif kind == EMERGENCY_CREDIT:
        bill.emergency.append(MoneyLine(at, kind, amount))
    elif kind == OPENING:
        bill.openings.append(MoneyLine(at, kind, amount))
    else:  # ADJUSTMENT, and any kind a bill does not know: shown as an adjustment
        bill.adjustments.append(MoneyLine(at, kind, amount, note=reason_of(memo)))
    return False


def month_bill(session: Session, account: Account, month: dt.date,
               now: dt.datetime | None = None) -> Bill:
    """The bill of the local `month` (its first day) of `account` (see the module's rules)."""
    month = month_of(month)
    today = local_day(now or utcnow())
    window = {"a": account.id, "s": day_start(month), "e": day_start(next_month(month))}
    opening = balance_at(session, account, month)
    bill = Bill(month=month, opening_fen=opening, closing_fen=opening,
                current=month_of(today) == month)
    shares = []
    for kind, amount, memo, key, at in session.execute(_MONTH_ROWS, window):
        if add_entry(bill, kind, amount, memo, at):
            shares.append((amount, memo, key))
    charges = [ChargeGroup(memo or "", int(amount), int(wh or 0), with_wh, count)
               for memo, amount, wh, with_wh, count in session.execute(_MONTH_CHARGES, window)]
    for group in charges:
        bill.entries += group.count
        bill.closing_fen += group.amount_fen
        bill.charges_fen += group.amount_fen
        bill.energy_wh += group.energy_wh
    bill.energy_lines, bill.by_time = energy_lines(charges)
    bill.shares_fen = sum(amount for amount, _, _ in shares)
    bill.shares = share_bases(session, shares)
    if bill.current:  # what the meters charged and the ledger has not yet been posted
        bill.pending_fen = max(0, kept_balance_fen(session, account.id)
                               - funds(session, {account.id})[account.id].balance_fen)
    return bill


@dataclass(frozen=True)
class ChargeGroup:
    """The month's `charge` entries of one memo: their fen and Wh summed, how many carry Wh,
    how many they are."""

    memo: str
    amount_fen: int
    energy_wh: int
    with_wh: int
    count: int


CHANNELS = ("alipay", "wechat")


def channel_of(memo: str) -> str:
    """The channel of a top-up or refund entry: its memo's first word ("alipay 2026…")."""
    word = (memo or "").split(" ", 1)[0]
    return word if word in CHANNELS else ""


def reason_of(memo: str) -> str:
    """An adjustment's reason: its memo is "调整 <manager>: <reason>" (app/console/views.py);
    the manager's name is not the resident's business."""
    head, sep, reason = (memo or "").partition(": ")
    return reason.strip() if sep and head.startswith("调整") else ""


_PART = re.compile(r"(?:第(\d+)档 )?(?:(.+?) )?(\d+) Wh × (\d+(?:\.\d+)?)(?: 元/kWh)?")
BY_TIME_NOTE = " (periods shared by time: no usable period registers)"


def parse_charge_memo(memo: str, energy_wh: int | None
                      ) -> tuple[list[tuple[int | None, str | None, Decimal, int]], bool] | None:
    """The lines of a charge's memo (`describe_accrued`, `describe`): [(tier, period, price,
    Wh)] and whether periods were shared by time; None when it cannot be read whole (its Wh
    must add up to the entry's)."""
    text = memo or ""
    by_time = text.endswith(BY_TIME_NOTE)
    if by_time:
        text = text[:-len(BY_TIME_NOTE)]
    lines = []
    for part in text.split("; "):
        match = _PART.fullmatch(part)
        if match is None:
            return None
        try:
            price = Decimal(match[4])
        except InvalidOperation:
            return None
        lines.append((int(match[1]) if match[1] else None, match[2] or None, price,
                      int(match[3])))
    if energy_wh is not None and sum(line[3] for line in lines) != energy_wh:
        return None
    return lines, by_time


_PERIOD_ORDER = {name: i for i, names in enumerate(
    (("spike", "尖", "尖峰"), ("peak", "峰", "高峰"), ("flat", "平", "平段"),
     ("valley", "谷", "低谷"))) for name in names}


def energy_lines(charges: list[ChargeGroup]) -> tuple[list[EnergyLine], bool]:
    """The month's charges, by memo, as lines of (step, period, price): Wh summed from the
    memos, the charged fen apportioned by the lines' exact amounts (largest remainder); the
    entries whose memo cannot be read on a line of their own. Returns (lines, any by time)."""
    wh_of: dict[tuple, int] = {}
    parsed_fen, unread_fen, unread_wh, by_time = 0, 0, 0, False
    for group in charges:
        found = parse_charge_memo(group.memo, None)
        if found is not None and group.with_wh == group.count and \
                sum(line[3] for line in found[0]) * group.count != group.energy_wh:
            found = None  # its Wh are not the entries'
        if found is None:
            unread_fen, unread_wh = unread_fen - group.amount_fen, unread_wh + group.energy_wh
            continue
        parsed_fen -= group.amount_fen
        by_time = by_time or found[1]
        for tier, period, price, wh in found[0]:
            wh_of[(tier, period, price)] = wh_of.get((tier, period, price), 0) + wh * group.count
    keys = sorted(wh_of, key=lambda k: (k[0] or 0, _PERIOD_ORDER.get(k[1] or "", 9), k[1] or "",
                                        k[2]))
    keys = [k for k in keys if wh_of[k]] or keys[:1]
    lines = []
    if keys:
        exact = [int(wh_of[k] * k[2] * 10_000) for k in keys]  # 1e-7 元: Wh × 4-place price
        weights = exact if any(exact) else [wh_of[k] for k in keys]
        fens = (largest_remainder(parsed_fen, weights) if parsed_fen >= 0 and any(weights)
                else [parsed_fen] + [0] * (len(keys) - 1))
        lines = [EnergyLine(k[0], k[1], k[2], wh_of[k], -fen) for k, fen in zip(keys, fens)]
    if unread_fen or unread_wh:
        lines.append(EnergyLine(None, None, None, unread_wh, -unread_fen))
    return lines, by_time


_SHARE_KEY = re.compile(r"share:(\d+):([^:]+):\d+")
_AREA = re.compile(r"面积 ([0-9.]+) m²")
_USE = re.compile(r"自用 ([0-9]+)\.([0-9]{3}) kWh")
_SCHEME_WORDS = {"按面积": "area", "按户均摊": "equal", "按用电量": "usage"}


def share_period(label: str) -> tuple[dt.datetime, dt.datetime] | None:
    """The period of a share key's label (`app.billing.shares.period_label`): a local day
    "2026-11-22", a local month "2026-11", or UTC instants "20261122T1600Z-20261123T1600Z"."""
    try:
        if len(label) == 10:
            day = dt.date.fromisoformat(label)
            return day_start(day), day_start(day + ONE_DAY)
        if len(label) == 7:
            month = dt.date.fromisoformat(label + "-01")
            return day_start(month), day_start(next_month(month))
        a, b = label.split("-")
        return tuple(dt.datetime.strptime(x, "%Y%m%dT%H%MZ").replace(tzinfo=dt.timezone.utc)
                     for x in (a, b))  # type: ignore[return-value]
    except ValueError:
        return None


def share_bases(session: Session, shares: list[tuple[int, str, str]]) -> list[ShareBasis]:
    """How the month's `share` entries (amount, memo, key) were apportioned, by scheme: each
    entry's run (building, period) read from `share_run` (one query a building)."""
    wanted: dict[int, list[dt.datetime]] = {}
    parsed = []
    for amount, memo, key in shares:
        match = _SHARE_KEY.fullmatch(key or "")
        period = share_period(match[2]) if match else None
        building = int(match[1]) if match else None
        if period is not None:
            wanted.setdefault(building, []).append(period[0])
        parsed.append((amount, memo or "", building, period))
    runs = {}
    for building, starts in wanted.items():
        for run in session.execute(
                sa.select(_RUN.c.period_start, _RUN.c.period_end, _RUN.c.scheme,
                          _RUN.c.energy_wh, _RUN.c.charge_fen, _RUN.c.households)
                .where(_RUN.c.building_id == building, _RUN.c.period_start >= min(starts),
                       _RUN.c.period_start <= max(starts))):
            runs[(building, run.period_start, run.period_end)] = run
    by_scheme: dict[str, dict] = {}
    for amount, memo, building, period in parsed:
        run = runs.get((building, *period)) if period is not None else None
        scheme = run.scheme if run is not None else next(
            (s for word, s in _SCHEME_WORDS.items() if word in memo), "")
        acc = by_scheme.setdefault(scheme, dict(runs=0, building_wh=0, building_fen=0,
                                                households=0, household_fen=0, area=None,
                                                usage_wh=None))
        acc["household_fen"] -= amount
        if run is not None:
            acc["runs"] += 1
            acc["building_wh"] += run.energy_wh
            acc["building_fen"] += run.charge_fen
            acc["households"] = max(acc["households"], run.households)
        if (area := _AREA.search(memo)) is not None:
            acc["area"] = area[1]
        if (use := _USE.search(memo)) is not None:
            acc["usage_wh"] = (acc["usage_wh"] or 0) + int(use[1]) * 1000 + int(use[2])
    out = []
    for scheme, acc in sorted(by_scheme.items()):
        whole = acc["building_fen"]
        out.append(ShareBasis(
            scheme=scheme, runs=acc["runs"], building_wh=acc["building_wh"], building_fen=whole,
            households=acc["households"], household_fen=acc["household_fen"],
            area_m2=acc["area"], usage_wh=acc["usage_wh"],
            share_bp=acc["household_fen"] * 10_000 // whole if whole > 0 else None))
    return out


# --- the months with activity --------------------------------------------------------------------

@dataclass(frozen=True)
class MonthTotal:
    """A month with entries: what was billed in it (charges, shares: positive fen)."""

    month: dt.date
    charged_fen: int
    shared_fen: int

    @property
    def billed_fen(self) -> int:
        return self.charged_fen + self.shared_fen


def bill_months(session: Session, account: Account) -> list[MonthTotal]:
    """The local months with entries, newest first, with their charges and shares: the frozen
    days' `LedgerDay` rows (a row a day with entries), the days since from the ledger."""
    frozen = frozen_through(session)
    months: dict[dt.date, list[int]] = {}
    for day, charged, shared in session.execute(
            sa.select(_LDAY.c.day, _LDAY.c.charged_fen, _LDAY.c.shared_fen)
            .where(_LDAY.c.account_id == account.id)):
        total = months.setdefault(month_of(_as_date(day)), [0, 0])
        total[0] += charged
        total[1] += shared
    day = local_date(_ENTRY.c.created_at)
    query = (sa.select(day, _ENTRY.c.kind, sa.func.sum(_ENTRY.c.amount_fen))
             .where(_ENTRY.c.account_id == account.id).group_by(day, _ENTRY.c.kind))
    if frozen is not None:
        query = query.where(_ENTRY.c.created_at >= day_start(frozen + ONE_DAY))
    for day, kind, amount in session.execute(query):
        total = months.setdefault(month_of(_as_date(day)), [0, 0])
        if kind == CHARGE:
            total[0] -= amount
        elif kind == SHARE:
            total[1] -= amount
    return [MonthTotal(month, charged, shared)
            for month, (charged, shared) in sorted(months.items(), reverse=True)]


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


# --- the history ---------------------------------------------------------------------------------

@dataclass
class HistoryDay:
    """A local day of the history: its charges and shares folded (billed: positive fen; the
    charges' Wh; how many entries), and its other entries one by one, newest first."""

    day: dt.date
    charged_fen: int = 0
    energy_wh: int = 0
    charges: int = 0
    shared_fen: int = 0
    shares: int = 0
    events: list[MoneyLine] = field(default_factory=list)

    @property
    def billed_fen(self) -> int:
        return self.charged_fen + self.shared_fen


@dataclass(frozen=True)
class HistoryPage:
    days: list[HistoryDay]  # newest first
    older: dt.date | None  # the next page: the days before this one (None: no more)


def history_page(session: Session, account: Account, before: dt.date | None = None, *,
                 days: int = HISTORY_DAYS, now: dt.datetime | None = None) -> HistoryPage:
    """The `days` newest local days with entries before `before` (None: up to today)."""
    end = local_day(now or utcnow()) + ONE_DAY
    if before is not None:
        end = min(end, before)
    frozen = frozen_through(session)
    found: list[dt.date] = []
    if frozen is None or frozen + ONE_DAY < end:  # the days not frozen yet: from the ledger
        day = local_date(_ENTRY.c.created_at)
        query = (sa.select(day).where(_ENTRY.c.account_id == account.id,
                                      _ENTRY.c.created_at < day_start(end))
                 .group_by(day).order_by(day.desc()).limit(days + 1))
        if frozen is not None:
            query = query.where(_ENTRY.c.created_at >= day_start(frozen + ONE_DAY))
        found += [_as_date(d) for d in session.execute(query).scalars()]
    if frozen is not None and len(found) <= days:
        found += [_as_date(d) for d in session.execute(
            sa.select(_LDAY.c.day).where(_LDAY.c.account_id == account.id,
                                         _LDAY.c.day < min(end, frozen + ONE_DAY))
            .order_by(_LDAY.c.day.desc()).limit(days + 1 - len(found))).scalars()]
    shown = found[:days]
    if not shown:
        return HistoryPage([], None)
    start, stop = day_start(shown[-1]), day_start(end)
    by_day = {d: HistoryDay(d) for d in shown}
    day = local_date(_ENTRY.c.created_at)
    for d, kind, amount, wh, count in session.execute(
            sa.select(day, _ENTRY.c.kind, sa.func.sum(_ENTRY.c.amount_fen),
                      sa.func.coalesce(sa.func.sum(_ENTRY.c.energy_wh), 0), sa.func.count())
            .where(_ENTRY.c.account_id == account.id, _ENTRY.c.created_at >= start,
                   _ENTRY.c.created_at < stop, _ENTRY.c.kind.in_(_FOLDED))
            .group_by(day, _ENTRY.c.kind)):
        target = by_day.setdefault(_as_date(d), HistoryDay(_as_date(d)))
        if kind == CHARGE:
            target.charged_fen, target.energy_wh, target.charges = -amount, int(wh), count
        else:
            target.shared_fen, target.shares = -amount, count
    for kind, amount, memo, at in session.execute(
            sa.select(_ENTRY.c.kind, _ENTRY.c.amount_fen, _ENTRY.c.memo, _ENTRY.c.created_at)
            .where(_ENTRY.c.account_id == account.id, _ENTRY.c.created_at >= start,
                   _ENTRY.c.created_at < stop, _ENTRY.c.kind.not_in(_FOLDED))
            .order_by(_ENTRY.c.created_at.desc(), _ENTRY.c.id.desc())):
        target = by_day.setdefault(local_day(at), HistoryDay(local_day(at)))
        target.events.append(MoneyLine(
            at, kind, amount, channel_of(memo) if kind in (TOPUP, REFUND) else "",
            reason_of(memo) if kind == ADJUSTMENT else ""))
    return HistoryPage(sorted(by_day.values(), key=lambda d: d.day, reverse=True),
                       shown[-1] if len(found) > days else None)


# --- usage ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Usage:
    days: list[tuple[dt.date, int]]  # (day, Wh), oldest first, today last
    months: list[tuple[dt.date, int]]  # (first day of the month, Wh), oldest first


def usage(session: Session, account: Account, now: dt.datetime | None = None) -> Usage:
    """What the account's meters measured (`DailyFrozen.used_wh`) by day for the last
    `USAGE_DAYS` days and by month for the last `USAGE_MONTHS` months, today's so far."""
    today = local_day(now or utcnow())
    first_month = month_of(today)
    for _ in range(USAGE_MONTHS - 1):
        first_month = previous_month(first_month)
    first_day = today - dt.timedelta(days=USAGE_DAYS - 1)
    meters = sa.select(_METER.c.id).where(_METER.c.account_id == account.id)
    wh_of = {_as_date(day): int(wh) for day, wh in session.execute(
        sa.select(_DAY.c.day, sa.func.sum(_DAY.c.used_wh))
        .where(_DAY.c.meter_id.in_(meters), _DAY.c.day >= min(first_month, first_day),
               _DAY.c.day <= today).group_by(_DAY.c.day))}
    months, month = [], first_month
    for _ in range(USAGE_MONTHS):
        months.append((month, 0))
        month = next_month(month)
    index = {m: i for i, (m, _) in enumerate(months)}
    for day, wh in wh_of.items():
        i = index.get(month_of(day))
        if i is not None:
            months[i] = (months[i][0], months[i][1] + wh)
    return Usage([(first_day + dt.timedelta(days=k), wh_of.get(first_day + dt.timedelta(days=k), 0))
                  for k in range(USAGE_DAYS)], months)


# --- notices -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NoticePage:
    notices: list[Notice]  # newest first
    older: str | None  # the cursor of the next page (None: no more)


_CURSOR = re.compile(r"(\d{1,20})-(\d{1,18})")


def notice_cursor(notice: Notice) -> str:
    """A notice's place in the list: its time (µs since the epoch) and id."""
    at = notice.created_at
    micros = (at - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(microseconds=1)
    return f"{micros}-{notice.id}"


def parse_notice_cursor(text: str) -> tuple[dt.datetime, int] | None:
    match = _CURSOR.fullmatch(text or "")
    if match is None:
        return None
    try:
        at = (dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
              + dt.timedelta(microseconds=int(match[1])))
    except OverflowError:
        return None
    return at, int(match[2])


def notices_page(session: Session, account_id: int, before: tuple[dt.datetime, int] | None = None,
                 *, limit: int = NOTICES_PER_PAGE) -> NoticePage:
    """The account's notices, newest first, `limit` a page, before the cursor `before`."""
    query = sa.select(Notice).where(Notice.account_id == account_id)
    if before is not None:
        query = query.where(sa.or_(Notice.created_at < before[0],
                                   sa.and_(Notice.created_at == before[0], Notice.id < before[1])))
    rows = list(session.execute(query.order_by(Notice.created_at.desc(), Notice.id.desc())
                                .limit(limit + 1)).scalars())
    return NoticePage(rows[:limit], notice_cursor(rows[limit - 1]) if len(rows) > limit else None)


def unread_count(session: Session, account_id: int, read_at: dt.datetime | None) -> int:
    """How many of the account's notices are newer than `read_at` (the binding's
    `notices_read_at`; None: never read, all of them)."""
    query = sa.select(sa.func.count()).select_from(_NOTICE).where(
        _NOTICE.c.account_id == account_id)
    if read_at is not None:
        query = query.where(_NOTICE.c.created_at > read_at)
    return int(session.execute(query).scalar())


def latest_notice(session: Session, account_id: int) -> Notice | None:
    """The account's newest notice (None: none yet)."""
    return session.execute(sa.select(Notice).where(Notice.account_id == account_id)
                           .order_by(Notice.created_at.desc(), Notice.id.desc()).limit(1)
                           ).scalars().first()


def is_unread(notice: Notice, read_at: dt.datetime | None) -> bool:
    return read_at is None or notice.created_at > read_at


def mark_notices_read(session: Session, resident_id: int, account_id: int,
                      at: dt.datetime | None = None) -> None:
    """The binding's notices read up to `at` (now): the one write of this module, in the
    caller's transaction. Never moves the mark back."""
    at = at or utcnow()
    session.execute(sa.update(ResidentAccount.__table__)
                    .where(ResidentAccount.resident_id == resident_id,
                           ResidentAccount.account_id == account_id,
                           sa.or_(ResidentAccount.notices_read_at.is_(None),
                                  ResidentAccount.notices_read_at < at))
                    .values(notices_read_at=at))

