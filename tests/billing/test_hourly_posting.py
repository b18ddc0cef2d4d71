"""Charges posted per hour (and when a line is crossed) instead of per reading: the balance
everyone reads is, at every reading, the balance per-reading posting gives; the ledger ends with
the same money to the fen; the ledger has one row an hour, not one a reading."""

import datetime as dt
import itertools
import json
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st
from sqlmodel import select

from app.billing.services import post_consumption, post_stale_accruals
from app.db import transaction
from app.estate.models import Account, Meter
from app.ledger.models import CHARGE, LedgerEntry
from app.ledger.services import balance_fen, kept_balance_fen
from app.tariffs import CHINA_TZ
from tests.factories import EstateFactory, add_tariff, entries_of

EXAMPLES = Path(__file__).parent.parent / "tariffs" / "examples"
GOLDEN = {name: (EXAMPLES / f"{name}.json").read_text()
          for name in ("flat", "beijing_tiered", "zhejiang_tiered_tou", "seasonal_tiered",
                       "tou_three_periods")}
UTC = dt.timezone.utc


def local(text: str) -> dt.datetime:
    """China wall-clock time as an aware UTC instant."""
    return (dt.datetime.fromisoformat(text) - dt.timedelta(hours=8)).replace(tzinfo=UTC)


NAMES = itertools.count()


def raised(text: str) -> str:
    """The tariff with every price 0.0111 元/kWh higher (a new version)."""
    def walk(node):
        if isinstance(node, dict):
            return {k: (str(Decimal(v) + Decimal("0.0111")) if k == "price" else walk(v))
                    for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node
    return json.dumps(walk(json.loads(text)))


class Household:
    """An account with one meter, fed readings straight to `post_consumption` (the worker's
    judging aside), each reading its own transaction as the worker stores them."""

    def __init__(self, engine, estate, gateway_id, unit_id, every_reading=False, **fields):
        self.engine, self.every_reading = engine, every_reading
        self.number = estate.account(gateway_id=gateway_id, unit_id=unit_id,
                                     number=f"8{next(NAMES):05d}", **fields)
        self.register = 0
        self.last_at = None

    def read(self, wh: int, at: dt.datetime, deltas=None) -> None:
        with transaction(self.engine) as s:
            account = s.exec(select(Account).where(Account.number == self.number)).one()
            meter = s.exec(select(Meter).where(Meter.account_id == account.id)).one()
            post_consumption(s, meter, account, wh, interval=f"{self.register}:{self.register + wh}",
                             start_at=self.last_at, end_at=at, period_deltas_wh=deltas,
                             every_reading=self.every_reading)
        self.register += wh
        self.last_at = at

    def balance(self) -> int:
        with transaction(self.engine, read_only=True) as s:
            account = s.exec(select(Account).where(Account.number == self.number)).one()
            return balance_fen(s, account.id)

    def ledger(self) -> int:
        with transaction(self.engine, read_only=True) as s:
            account = s.exec(select(Account).where(Account.number == self.number)).one()
            return kept_balance_fen(s, account.id)

    def accrued_wh(self) -> int:
        with transaction(self.engine, read_only=True) as s:
            account = s.exec(select(Account).where(Account.number == self.number)).one()
            return s.exec(select(Meter.accrued_wh).where(Meter.account_id == account.id)).one()

    def charges(self) -> list[LedgerEntry]:
        return entries_of(self.engine, self.number, CHARGE)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tariff=st.sampled_from(sorted(GOLDEN) + ["account price"]),
       second_version=st.booleans(),
       start=st.sampled_from(["2026-11-30 21:40", "2026-12-31 22:50", "2026-07-31 23:10",
                              "2026-11-05 07:55"]),
       opening_wh=st.sampled_from([0, 179_500, 239_900, 399_000, 2_759_000]),
       steps=st.lists(st.tuples(st.integers(1, 2_400), st.integers(0, 1_500)),
                      min_size=1, max_size=40),
       balance=st.integers(-500, 3_000))
def test_hourly_posting_reads_and_posts_what_per_reading_posting_does(
        engine, tariff, second_version, start, opening_wh, steps, balance):
    """Random streams across time-of-use boundaries (readings seconds to 40 minutes apart), tier
    bounds (opening figures just under them), month and year ends, a price change (a second
    version from the 1st of the next month, every price +0.0111) and the low-balance and cut
    lines (balances around them)."""
    at = local(start)
    tariff_id = None
    if tariff != "account price":
        versions = [("2020-01-01", GOLDEN[tariff])]
        if second_version:
            month = at.astimezone(CHINA_TZ).date().replace(day=28) + dt.timedelta(days=4)
            versions.append((month.replace(day=1).isoformat(), raised(GOLDEN[tariff])))
        tariff_id = add_tariff(engine, f"t{next(NAMES)}", *versions)
    estate = EstateFactory(engine)
    gateway = estate.gateway("127.0.0.1", 1)
    fields = dict(balance_fen=balance, tariff_id=tariff_id, cycle_wh=opening_wh,
                  low_balance_threshold_fen=1000, cut_below_fen=0)
    reference = Household(engine, estate, gateway, 1, every_reading=True, **fields)
    hourly = Household(engine, estate, gateway, 2, **fields)
    for gap_s, wh in steps:
        at += dt.timedelta(seconds=gap_s)
        for h in (reference, hourly):
            h.read(wh, at)
        assert hourly.balance() == reference.balance()
    post_stale_accruals(engine, at + dt.timedelta(hours=1))
    assert hourly.ledger() == reference.ledger() == reference.balance() == hourly.balance()
    # every Wh is in a posted charge, or still accruing (less than a fen since the last one)
    assert sum(e.energy_wh for e in hourly.charges()) + hourly.accrued_wh() == reference.register
    assert len(hourly.charges()) <= len(reference.charges())


def household(engine, **fields) -> Household:
    estate = EstateFactory(engine)
    return Household(engine, estate, estate.gateway("127.0.0.1", 1), 1, **fields)


def test_an_hour_of_readings_is_one_charge_posted_by_the_next_hour(engine):
    home = household(engine, balance_fen=50_000)
    for minute in range(0, 60, 5):  # 12 readings of 10 Wh at 0.5583 元/kWh
        home.read(10, local(f"2026-11-05 10:{minute:02d}"))
    assert home.charges() == []
    assert home.balance() == 50_000 - 7  # 120 Wh × 0.5583 = 6.6996 分 → 7 fen, accrued
    home.read(10, local("2026-11-05 11:00"))
    [charge] = home.charges()
    assert (charge.amount_fen, charge.energy_wh) == (-7, 120)
    assert charge.memo == "120 Wh × 0.5583 元/kWh"
    assert charge.idempotency_key.endswith(":0:120")
    assert home.balance() == 50_000 - 7  # 130 Wh: 7.2579 分, still 7 fen
    assert home.ledger() == 50_000 - 7


def test_less_than_a_fen_in_an_hour_keeps_accruing(engine):
    home = household(engine, balance_fen=50_000)
    home.read(5, local("2026-11-05 10:30"))  # 0.279 分
    post_stale_accruals(engine, local("2026-11-05 12:00"))
    assert home.charges() == []
    home.read(15, local("2026-11-05 12:10"))  # 20 Wh: 1.1166 分
    post_stale_accruals(engine, local("2026-11-05 13:00"))
    [charge] = home.charges()
    assert (charge.amount_fen, charge.energy_wh) == (-1, 20)


def test_crossing_the_low_balance_line_posts_at_once(engine):
    home = household(engine, balance_fen=1_003, low_balance_threshold_fen=1_000)
    home.read(40, local("2026-11-05 10:00"))  # 2.2 分: 1,001 fen, above the line
    assert home.charges() == []
    home.read(40, local("2026-11-05 10:05"))  # 4.5 分: 998 fen, below it
    assert [c.amount_fen for c in home.charges()] == [-4]
    assert home.ledger() == home.balance() == 999


def test_crossing_the_cut_line_posts_at_once(engine):
    home = household(engine, balance_fen=3, low_balance_threshold_fen=0, cut_below_fen=0)
    home.read(100, local("2026-11-05 10:00"))  # 5.6 分: below zero
    assert [c.amount_fen for c in home.charges()] == [-6]
    assert home.balance() == -3


def test_a_meter_that_stops_gets_its_last_hour_posted_by_the_sweep(engine):
    home = household(engine, balance_fen=50_000)
    home.read(1_000, local("2026-11-05 10:20"))
    assert post_stale_accruals(engine, local("2026-11-05 10:59")) == 0  # the hour is not over
    assert post_stale_accruals(engine, local("2026-11-05 11:00")) == 56
    assert [c.amount_fen for c in home.charges()] == [-56]
    assert post_stale_accruals(engine, local("2026-11-05 12:00")) == 0


def test_the_worker_s_batch_posts_at_the_line_with_the_balances_it_read_once(engine):
    """Through `record_readings` (the batch's kept balances read once, moved on as it posts):
    two meters' readings in one batch, one crossing its low-balance line."""
    from meters.store import ReadingResult, record_readings
    from tests.factories import meter_of

    estate = EstateFactory(engine)
    gateway = estate.gateway("127.0.0.1", 1)
    near = estate.account(gateway_id=gateway, unit_id=1, balance_fen=1_003, number="700001",
                          max_power_w=10**9)
    far = estate.account(gateway_id=gateway, unit_id=2, balance_fen=50_000, number="700002",
                         max_power_w=10**9)
    meters = [meter_of(engine, n).id for n in (near, far)]
    record_readings(engine, [ReadingResult(m, 0, False, local("2026-11-05 10:00"))
                             for m in meters])
    record_readings(engine, [ReadingResult(m, 40 * k, False, local(f"2026-11-05 10:0{k}"))
                             for k in (1, 2) for m in meters])  # 2.2 分, then 4.5 分
    assert [c.amount_fen for c in entries_of(engine, near, CHARGE)] == [-4]
    assert entries_of(engine, far, CHARGE) == []  # far from its line: accruing
