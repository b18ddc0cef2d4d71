"""线损: a building's main meter against its households' and common areas' meters, per local
day; above the building's threshold one anomaly per building and day, never two; no judgement
without a main meter, without its reading, or with a meter below it unread."""

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from sqlmodel import select

from app.anomalies.models import LINE_LOSS, Anomaly
from app.anomalies.review import resolve_anomaly
from app.billing.jobs import run_billing_jobs
from app.db import transaction, utcnow
from app.estate.lineloss import (METERS_NOT_READ, NO_MAIN_READING, check_due_line_losses,
                                 check_line_losses, line_loss_days)
from app.tariffs import CHINA_TZ
from tests.conftest import wait_until
from tests.estate.field import Field, day, local


class Building:
    """A building of two households and a common-area meter below a main meter."""

    def __init__(self, field: Field, building_id: int | None = None, main: bool = True):
        self.field, self.id = field, building_id or field.building_id
        self.main = field.meter(building_id=self.id, building_main=True) if main else None
        _, self.home_a = field.household(building_id=self.id)
        _, self.home_b = field.household(building_id=self.id)
        self.common = field.meter(building_id=self.id, common_area=True)

    def day(self, on: str, main_wh: int | None, homes_wh: tuple[int, int | None],
            common_wh: int = 14_000) -> None:
        """The meters' energy of a day (None: that meter was not read)."""
        for meter, wh in ((self.main, main_wh), (self.home_a, homes_wh[0]),
                          (self.home_b, homes_wh[1]), (self.common, common_wh)):
            if meter is not None and wh is not None:
                self.field.read(meter, on, used_wh=wh)


@pytest.fixture
def field(engine) -> Field:
    return Field(engine)


def anomalies(engine) -> list[Anomaly]:
    with transaction(engine, read_only=True) as s:
        return list(s.exec(select(Anomaly).where(Anomaly.kind == LINE_LOSS).order_by(Anomaly.id)))


def test_six_percent_lost_above_five_is_one_anomaly_and_a_rerun_raises_no_second(engine, field):
    b = Building(field)
    b.day("2026-11-10", 100_000, (50_000, 30_000))  # 94 kWh below a 100 kWh main: 6 %
    [raised] = check_line_losses(engine, day("2026-11-10"))
    assert (raised.loss_wh, raised.loss_pct) == (6_000, Decimal("6.00"))
    assert check_line_losses(engine, day("2026-11-10")) == []
    [anomaly] = anomalies(engine)
    assert (anomaly.building_id, anomaly.day, anomaly.meter_id, anomaly.energy_wh) == (
        b.id, day("2026-11-10"), b.main, 6_000)
    assert anomaly.detail == ("2026-11-10 线损 6.00% > 5%: 总表 100.000 kWh − (户表 80.000 + 公共 "
                              "14.000 kWh) = 6.000 kWh; 3/3 表已抄")


def test_a_resolved_line_loss_is_not_raised_again(engine, field):
    b = Building(field)
    b.day("2026-11-10", 100_000, (50_000, 30_000))
    check_line_losses(engine, day("2026-11-10"))
    with transaction(engine) as s:
        resolve_anomaly(s, anomalies(engine)[0].id, by="王经理", note="换了电缆")
    assert check_line_losses(engine, day("2026-11-10")) == []
    assert len(anomalies(engine)) == 1


def test_four_percent_is_within_five(engine, field):
    b = Building(field)
    b.day("2026-11-10", 100_000, (50_000, 32_000))
    assert check_line_losses(engine, day("2026-11-10")) == []
    with transaction(engine, read_only=True) as s:
        [d] = line_loss_days(s, b.id, day("2026-11-10"), day("2026-11-10"))
    assert (d.judged, d.main_wh, d.sum_wh, d.loss_pct) == (True, 100_000, 96_000, Decimal("4.00"))


@pytest.mark.parametrize("threshold, raised", [("5", 0), ("4.9999", 1), ("8", 0)])
def test_the_threshold_is_the_building_s_and_must_be_exceeded(engine, field, threshold, raised):
    b = Building(field, field.building(line_loss_threshold_pct=Decimal(threshold)))
    b.day("2026-11-10", 100_000, (50_000, 31_000))  # exactly 5 %
    assert len(check_line_losses(engine, day("2026-11-10"))) == raised


def test_without_a_main_meter_nothing_is_judged(engine, field):
    b = Building(field, main=False)
    b.day("2026-11-10", None, (50_000, 30_000))
    with transaction(engine, read_only=True) as s:
        assert line_loss_days(s, b.id, day("2026-11-10"), day("2026-11-10")) == []
    assert check_line_losses(engine, day("2026-11-10")) == []


def test_a_day_the_main_meter_was_not_read_is_not_judged(engine, field):
    b = Building(field)
    b.day("2026-11-10", None, (50_000, 0))  # the households' 64 kWh against nothing read
    assert check_line_losses(engine, day("2026-11-10")) == []
    with transaction(engine, read_only=True) as s:
        [d] = line_loss_days(s, b.id, day("2026-11-10"), day("2026-11-10"))
    assert (d.judged, d.reason, d.main_wh, d.loss_pct) == (False, NO_MAIN_READING, None, None)


def test_a_household_not_read_that_day_suspends_the_judgement(engine, field):
    b = Building(field)
    b.day("2026-11-10", 100_000, (50_000, None))  # its energy will count on a later day
    assert check_line_losses(engine, day("2026-11-10")) == []
    with transaction(engine, read_only=True) as s:
        [d] = line_loss_days(s, b.id, day("2026-11-10"), day("2026-11-10"))
    assert (d.reason, d.meters_read, d.meters, d.loss_wh) == (METERS_NOT_READ, 2, 3, 36_000)


def test_a_page_gets_each_day_of_a_building(engine, field):
    b = Building(field)
    b.day("2026-11-10", 100_000, (50_000, 30_000))
    b.day("2026-11-11", None, (50_000, 30_000))
    b.day("2026-11-12", 100_000, (50_000, 32_000))
    with transaction(engine, read_only=True) as s:
        days = line_loss_days(s, b.id, day("2026-11-10"), day("2026-11-12"))
    assert [(d.day, d.main_wh, d.sum_wh, d.loss_pct, d.reason) for d in days] == [
        (day("2026-11-10"), 100_000, 94_000, Decimal("6.00"), ""),
        (day("2026-11-11"), None, 94_000, None, NO_MAIN_READING),
        (day("2026-11-12"), 100_000, 96_000, Decimal("4.00"), "")]


def test_each_building_is_judged_on_its_own_meters(engine, field):
    losing = Building(field)
    fine = Building(field, field.building())
    losing.day("2026-11-10", 100_000, (50_000, 30_000))
    fine.day("2026-11-10", 100_000, (50_000, 33_000))
    assert [d.building_id for d in check_line_losses(engine, day("2026-11-10"))] == [losing.id]


def test_the_days_missed_are_caught_up(engine, field):
    b = Building(field)
    for on in ("2026-11-08", "2026-11-09", "2026-11-10"):
        b.day(on, 100_000, (50_000, 30_000))
    raised = check_due_line_losses(engine, local("2026-11-11 00:10"))
    assert [d.day for d in raised] == [day("2026-11-08"), day("2026-11-09"), day("2026-11-10")]
    assert check_due_line_losses(engine, local("2026-11-11 09:00")) == []


def test_the_billing_jobs_check_yesterday(engine, field):
    b = Building(field)
    yesterday = (utcnow() - dt.timedelta(minutes=10)).astimezone(CHINA_TZ).date() \
        - dt.timedelta(days=1)
    b.day(yesterday.isoformat(), 100_000, (50_000, 30_000))

    async def sweep_once():
        jobs = asyncio.create_task(run_billing_jobs(engine, every_s=3600))
        await asyncio.to_thread(wait_until, lambda: anomalies(engine), 20.0)
        jobs.cancel()

    asyncio.run(sweep_once())
    assert [(a.building_id, a.day) for a in anomalies(engine)] == [(b.id, yesterday)]
