"""The field's indicators on small fields whose answers are known: reading success (a day a
meter answered, moved or not, survives its raw readings), fee-control success (an expired
command failed, a pending one is not judged yet), cuts, collection (arrears in, billing, arrears
out; frozen days and the ledger give the same), and the seconds from payment to power."""

import datetime as dt
from decimal import Decimal

import pytest
from sqlmodel import select

from app.commands.models import CANCELLED, CUT, DONE, EXPIRED, PENDING, READ, RESTORE
from app.db import transaction, utcnow
from app.estate.freeze import freeze_due_days
from app.estate.indicators import daily, figures_by_day, monthly, quantile
from app.estate.models import BuildingDay, DailyFrozen, FrozenDay
from app.estate.rollup import drop_old_readings
from app.ledger.models import CHARGE, EMERGENCY_CREDIT, OPENING, SHARE, TOPUP, LedgerDay
from app.tariffs import CHINA_TZ
from meters.store import ReadingResult, record_poll, record_readings
from tests.estate.field import Field, day, local

TODAY = day("2026-11-30")


@pytest.fixture
def field(engine) -> Field:
    return Field(engine)


def one_day(engine, field: Field, on: str, **kw):
    with transaction(engine, read_only=True) as s:
        [figures] = daily(s, [field.building_id], day(on), day(on), today=TODAY, **kw)
    return figures


# --- 采集成功率 --------------------------------------------------------------------------------

def test_two_of_three_meters_read_is_two_thirds(engine, field):
    _, read = field.household()
    _, unread = field.household()
    common = field.meter(common_area=True)
    field.read(read, "2026-11-10", used_wh=500)
    field.read(common, "2026-11-10")  # read, nothing used
    figures = one_day(engine, field, "2026-11-10")
    assert (figures.meters_read, figures.meters) == (2, 3)
    assert figures.reading_rate_pct == Decimal("66.67")


def test_a_meter_read_with_its_register_unchanged_counts_as_read_after_its_readings_go(engine,
                                                                                     field):
    _, meter_id = field.household()
    record_readings(engine, [ReadingResult(meter_id, 1_000, False, local("2026-11-09 23:00"))])
    # the next day: an unchanged poll judged again, then the day after only touched
    record_readings(engine, [ReadingResult(meter_id, 1_000, False, local("2026-11-10 08:00"))])
    record_poll(engine, [], [meter_id], local("2026-11-11 08:00"))
    record_poll(engine, [], [meter_id], local("2026-11-11 09:00"))  # the day has its row
    drop_old_readings(engine, local("2026-11-30 00:00"), 7)
    with transaction(engine, read_only=True) as s:
        days = [(d.day, d.used_wh, d.register_wh) for d in s.exec(
            select(DailyFrozen).where(DailyFrozen.meter_id == meter_id).order_by(DailyFrozen.day))]
        figures = daily(s, [field.building_id], day("2026-11-10"), day("2026-11-12"), today=TODAY)
    assert days == [(day("2026-11-09"), 0, 1_000), (day("2026-11-10"), 0, 1_000),
                    (day("2026-11-11"), 0, 1_000)]
    assert [(f.meters_read, f.meters) for f in figures] == [(1, 1), (1, 1), (0, 1)]


def test_a_household_counts_only_while_its_account_is_open(engine, field):
    _, old = field.household()
    _, new = field.household(created_at=local("2026-11-11 15:00"))
    _, gone = field.household(closed_at=local("2026-11-11 09:00"))
    for on in ("2026-11-10", "2026-11-11", "2026-11-12"):
        field.read(old, on)
    field.read(new, "2026-11-11", at="16:00")
    field.read(new, "2026-11-12")
    field.read(gone, "2026-11-11", at="08:30")
    with transaction(engine, read_only=True) as s:
        days = daily(s, [field.building_id], day("2026-11-10"), day("2026-11-12"), today=TODAY)
        [month] = monthly(s, [field.building_id], day("2026-11-01"), day("2026-11-01"),
                          today=TODAY)
    assert [(f.meters_read, f.meters) for f in days] == [(1, 2), (3, 3), (2, 2)]
    assert (month.meters_read, month.meters) == (6, 2 * 10 + 3 + 2 * 19)  # meter-days


def test_a_meter_of_another_building_is_not_counted(engine, field):
    other = field.building()
    _, mine = field.household()
    _, theirs = field.household(building_id=other)
    field.meter(building_id=other, common_area=True)
    field.read(mine, "2026-11-10")
    field.read(theirs, "2026-11-10")
    figures = one_day(engine, field, "2026-11-10")
    assert (figures.meters_read, figures.meters) == (1, 1)


# --- 费控执行成功率, 停电次数 -------------------------------------------------------------------

def test_an_expired_command_was_issued_and_not_confirmed_a_pending_one_is_not_judged(engine,
                                                                                   field):
    _, meter = field.household()
    field.command(meter, CUT, DONE, "2026-11-10 09:00", "2026-11-10 09:00:02")
    field.command(meter, RESTORE, DONE, "2026-11-10 10:00", "2026-11-10 10:00:01")
    field.command(meter, CUT, EXPIRED, "2026-11-10 11:00", "2026-11-10 13:00")
    field.command(meter, RESTORE, PENDING, "2026-11-10 23:59")
    field.command(meter, CUT, CANCELLED, "2026-11-10 14:00", "2026-11-10 14:05")
    field.command(meter, READ, DONE, "2026-11-10 15:00", "2026-11-10 15:00:01")  # not fee control
    figures = one_day(engine, field, "2026-11-10")
    assert (figures.commands_confirmed, figures.commands_judged) == (2, 3)
    assert (figures.commands_pending, figures.commands_cancelled) == (1, 1)
    assert figures.fee_control_rate_pct == Decimal("66.67")


def test_a_cut_counts_on_the_day_it_was_confirmed(engine, field):
    _, meter = field.household()
    field.command(meter, CUT, DONE, "2026-11-10 23:59:30", "2026-11-11 00:00:10")
    field.command(meter, CUT, EXPIRED, "2026-11-11 09:00", "2026-11-11 11:00")
    with transaction(engine, read_only=True) as s:
        figures = daily(s, [field.building_id], day("2026-11-10"), day("2026-11-11"), today=TODAY)
    assert [(f.cuts, f.commands_confirmed, f.commands_expired) for f in figures] == [
        (0, 1, 0), (1, 0, 1)]


# --- 缴费→复电 ---------------------------------------------------------------------------------

def test_payment_at_ten_restore_confirmed_a_second_and_a_half_later_is_1_5_s(engine, field):
    account, meter = field.household()
    field.payment(account, "2026-11-10 10:00:00")
    field.command(meter, RESTORE, DONE, "2026-11-10 10:00:00.004", "2026-11-10 10:00:01.5")
    figures = one_day(engine, field, "2026-11-10")
    assert figures.restores_after_payment == figures.restores_confirmed == 1
    assert figures.payment_to_power_median_s == figures.payment_to_power_p95_s == 1.5


def test_waits_are_summarised_over_the_confirmed_restores(engine, field):
    quick, quick_meter = field.household()
    slow, slow_meter = field.household()
    lost, lost_meter = field.household()
    waiting, waiting_meter = field.household()
    supplied, _ = field.household()  # not cut: its payment has no restore to wait for
    field.payment(quick, "2026-11-10 10:00:00")
    field.command(quick_meter, RESTORE, DONE, "2026-11-10 10:00:00.01", "2026-11-10 10:00:01.5")
    field.payment(slow, "2026-11-10 11:00:00")
    field.command(slow_meter, RESTORE, DONE, "2026-11-10 11:00:00.01", "2026-11-10 11:00:03")
    field.payment(lost, "2026-11-10 12:00:00")
    field.command(lost_meter, RESTORE, EXPIRED, "2026-11-10 12:00:00.01", "2026-11-10 14:00")
    # a restore already pending (from an earlier payment) when this one came: waited on
    field.command(waiting_meter, RESTORE, DONE, "2026-11-10 12:30", "2026-11-10 13:00:06")
    field.payment(waiting, "2026-11-10 13:00:00")
    field.payment(supplied, "2026-11-10 13:00:00")
    field.command(quick_meter, RESTORE, DONE, "2026-11-10 18:00", "2026-11-10 18:00:01")  # later
    figures = one_day(engine, field, "2026-11-10")
    assert (figures.restores_after_payment, figures.restores_unconfirmed) == (4, 1)
    assert figures.payment_to_power_median_s == 3.0  # of 1.5, 3, 6
    assert figures.payment_to_power_p95_s == pytest.approx(5.7)


def test_quantiles_are_linear_between_ranks():
    assert quantile([1.5, 3.0], 0.5) == 2.25
    assert quantile([1.0, 2.0, 3.0, 4.0, 5.0], 0.95) == pytest.approx(4.8)
    assert quantile([], 0.5) is None


# --- 电费回收率 --------------------------------------------------------------------------------

def collection_field(field: Field) -> None:
    """Three households over 2026-11-10: one paid ahead, one running into arrears (its
    emergency advance is lent, not paid), one paying its arrears off."""
    paid_ahead, _ = field.household()
    into_arrears, _ = field.household()
    paying_off, _ = field.household()
    field.entry(paid_ahead, 1_000, OPENING, "2026-11-09 09:00")
    field.entry(paid_ahead, -250, CHARGE, "2026-11-10 09:00")
    field.entry(paid_ahead, -50, SHARE, "2026-11-10 00:12")
    field.entry(into_arrears, -200, CHARGE, "2026-11-10 10:00")
    field.entry(into_arrears, 300, EMERGENCY_CREDIT, "2026-11-10 11:00")
    field.entry(paying_off, -500, CHARGE, "2026-11-09 20:00")
    field.entry(paying_off, 500, TOPUP, "2026-11-10 12:00")
    field.entry(paying_off, -100, CHARGE, "2026-11-11 12:00")  # the next day


def test_collection_is_receivable_less_the_arrears_left(engine, field):
    collection_field(field)
    figures = one_day(engine, field, "2026-11-10")
    assert (figures.arrears_start_fen, figures.charged_fen, figures.shared_fen,
            figures.arrears_end_fen) == (500, 450, 50, 200)
    assert (figures.collected_fen, figures.receivable_fen) == (800, 1_000)
    assert figures.collection_rate_pct == Decimal("80.00")


def test_frozen_days_give_what_the_meters_and_the_ledger_give(engine, field):
    collection_field(field)
    _, read = field.household()
    field.household(created_at=local("2026-11-10 12:00"))  # due from the 10th, never read
    for on in ("2026-11-08", "2026-11-10", "2026-11-11"):
        field.read(read, on)
    ids = [field.building_id]

    def figures():
        with transaction(engine, read_only=True) as s:
            return figures_by_day(s, ids, day("2026-11-07"), day("2026-11-12"))

    live = figures()
    assert freeze_due_days(engine, local("2026-11-11 00:10")) == [day("2026-11-09"),
                                                                  day("2026-11-10")]
    half = figures()  # the 9th and the 10th frozen, the days around them not
    assert freeze_due_days(engine, local("2026-11-30 00:10"), limit=31) == [
        day("2026-11-11") + dt.timedelta(days=k) for k in range(19)]
    assert live == half == figures()
    assert [(f.day, f.meters_read, f.meters, f.arrears_start_fen, f.arrears_end_fen)
            for f in live] == [
        (day("2026-11-07"), 0, 4, 0, 0), (day("2026-11-08"), 1, 4, 0, 0),
        (day("2026-11-09"), 0, 4, 0, 500), (day("2026-11-10"), 1, 5, 500, 200),
        (day("2026-11-11"), 1, 5, 200, 300), (day("2026-11-12"), 0, 5, 300, 300)]
    with transaction(engine, read_only=True) as s:
        rows = s.exec(select(LedgerDay).order_by(LedgerDay.account_id, LedgerDay.day)).all()
        buildings = s.exec(select(BuildingDay).where(BuildingDay.day == day("2026-11-10"))).all()
    assert [(r.day, r.net_fen, r.own_fen) for r in rows][-3:] == [
        (day("2026-11-09"), -500, -500), (day("2026-11-10"), 500, 0),
        (day("2026-11-11"), -100, -100)]
    assert [(b.building_id, b.charged_fen, b.shared_fen, b.arrears_end_fen) for b in buildings] == [
        (field.building_id, 450, 50, 200)]


def test_a_day_is_frozen_once(engine, field):
    collection_field(field)
    assert freeze_due_days(engine, local("2026-11-11 00:10")) != []
    with transaction(engine, read_only=True) as s:
        assert [(d.day, d.accounts) for d in s.exec(select(FrozenDay).order_by(FrozenDay.day))] \
            == [(day("2026-11-09"), 2), (day("2026-11-10"), 3)]
    assert freeze_due_days(engine, local("2026-11-11 00:10")) == []
    assert freeze_due_days(engine, local("2026-11-11 00:05")) == []  # not due before 00:10


def test_a_month_adds_its_days_and_takes_the_arrears_at_its_ends(engine, field):
    collection_field(field)
    freeze_due_days(engine, local("2026-11-11 00:10"))
    with transaction(engine, read_only=True) as s:
        oct_, nov = monthly(s, [field.building_id], day("2026-10-15"), day("2026-11-15"),
                            today=TODAY)
    assert (oct_.first_day, oct_.last_day, oct_.billed_fen) == (day("2026-10-01"),
                                                                day("2026-10-31"), 0)
    assert (nov.first_day, nov.last_day) == (day("2026-11-01"), TODAY)
    assert (nov.arrears_start_fen, nov.billed_fen, nov.arrears_end_fen) == (0, 1_100, 300)
    assert nov.collection_rate_pct == Decimal("72.73")  # 800 / 1,100


def test_today_is_read_from_the_ledger_as_it_stands(engine, field):
    paid_ahead, _ = field.household()
    into_arrears, _ = field.household()
    paying_some, _ = field.household()
    now, yesterday = utcnow(), utcnow() - dt.timedelta(days=1)
    for account, fen, kind, at in [(paid_ahead, 1_000, OPENING, yesterday),
                                   (paid_ahead, -300, CHARGE, now),
                                   (into_arrears, -200, CHARGE, now),
                                   (paying_some, -400, CHARGE, yesterday),
                                   (paying_some, 100, TOPUP, now)]:
        field.entry(account, fen, kind, at.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S.%f"))
    today = now.astimezone(CHINA_TZ).date()

    def figures():
        with transaction(engine, read_only=True) as s:
            [figures] = daily(s, [field.building_id], today, today)
        return (figures.arrears_start_fen, figures.billed_fen, figures.arrears_end_fen)

    before = figures()
    freeze_due_days(engine)  # yesterday, unless it ended less than 10 minutes ago
    assert before == figures() == (400, 500, 500)
