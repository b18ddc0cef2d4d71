"""The billing jobs: charges accrued in past hours posted (`post_stale_accruals`: a meter that
stopped using energy sends no reading to post them); common-area shares (公摊) posted period by
period, without anyone asking; raw readings past the retention period dropped (what lasts is
in the meters' days, app/estate/rollup.py); each ended local day frozen
(`app.estate.freeze.freeze_due_days`: the accounts' ledger days and the buildings' figures,
what the indicators read); and, once a local day, the proof that every kept balance is its
ledger's sum (`app.ledger.checks.verify_balances`) and the line-loss check of the days ending
yesterday (`app.estate.lineloss.check_due_line_losses`).

Each building with a common-area meter is shared every local (China time) day or calendar
month, as its `share_period` says ("day" or "month"), by `app.billing.shares`.
A period is shared once it has ended and `SHARE_DELAY` has passed (the common meters' readings
at the period's end are in by then; a reading that is late anyway only moves energy into the next
period, whose start is measured from the same reading: nothing is lost or counted twice).
The first period is the one holding the building's first common-area reading; after that, each
period follows the last one shared. A sweep shares every period due, oldest first (at most
`MAX_PERIODS` per building, so a long outage catches up over a few sweeps), one transaction per
period for all the buildings due for it. Posting is idempotent per building and period
(`share_run` is UNIQUE), so two processes sweeping at once post each period once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict

from sqlalchemy import func
from sqlmodel import select

from app.billing.services import post_stale_accruals
from app.billing.shares import ShareError, post_shares, share_buildings
from app.db import transaction, utcnow
from app.estate.freeze import freeze_due_days
from app.estate.lineloss import CHECK_DELAY, check_due_line_losses
from app.estate.models import Building, DailyFrozen as Day, Meter, ShareRun
from app.estate.rollup import drop_old_readings
from app.jobs.runs import BILLING_JOBS, record_run
from app.ledger.checks import verify_balances
from app.tariffs import CHINA_TZ

log = logging.getLogger(__name__)

DAY, MONTH = "day", "month"
SHARE_PERIODS = (DAY, MONTH)
SHARE_DELAY = dt.timedelta(minutes=10)
MAX_PERIODS = 62
SWEEP_EVERY_S = 300.0


def period_containing(when: dt.datetime, kind: str) -> tuple[dt.datetime, dt.datetime]:
    """The local day or month holding `when`, as [start, end) in UTC."""
    local = when.astimezone(CHINA_TZ)
    if kind == DAY:
        start = dt.datetime(local.year, local.month, local.day, tzinfo=CHINA_TZ)
        end = start + dt.timedelta(days=1)
    elif kind == MONTH:
        start = dt.datetime(local.year, local.month, 1, tzinfo=CHINA_TZ)
        end = dt.datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=CHINA_TZ)
    else:
        raise ShareError(f"unknown share_period {kind!r} (one of {', '.join(SHARE_PERIODS)})")
    return start.astimezone(dt.timezone.utc), end.astimezone(dt.timezone.utc)


def due_periods(session, building: Building, now: dt.datetime,
                limit: int = MAX_PERIODS) -> list[tuple[dt.datetime, dt.datetime]]:
    """The building's periods ended (and `SHARE_DELAY` past) but not shared yet, oldest first."""
    last_end = session.exec(select(func.max(ShareRun.period_end))
                            .where(ShareRun.building_id == building.id)).one()
    if last_end is None:
        first = session.exec(
            select(func.min(Day.day)).join(Meter, Meter.id == Day.meter_id)
            .where(Meter.building_id == building.id, Meter.common_area.is_(True))).one()
        if first is None:
            return []
        noon = dt.datetime.combine(first, dt.time(12), CHINA_TZ)  # inside the first day
        start, end = period_containing(noon, building.share_period)
    else:  # from where the last one ended (after a switch of share_period, a part period)
        start, end = last_end, period_containing(last_end, building.share_period)[1]
    periods = []
    while end + SHARE_DELAY <= now and len(periods) < limit:
        periods.append((start, end))
        start, end = period_containing(end, building.share_period)
    return periods


def share_due(engine, now: dt.datetime | None = None) -> list[ShareRun]:
    """Post every period due for every building with a common-area meter; returns the runs
    posted. The buildings due for the same period are shared together (`share_buildings`: a
    few queries for them all), periods oldest first; should that fail for one of them, each is
    shared alone, and a building whose period cannot be shared is logged and skipped (its later
    periods wait for it), the others go on."""
    now = now or utcnow()
    due: dict[tuple[dt.datetime, dt.datetime], list[int]] = defaultdict(list)
    with transaction(engine, read_only=True) as session:
        building_ids = sorted(session.exec(
            select(Meter.building_id).where(Meter.common_area.is_(True),
                                            Meter.building_id.is_not(None)).distinct()))
        for building_id in building_ids:
            for period in due_periods(session, session.get(Building, building_id), now):
                due[period].append(building_id)
    runs, failed = [], set()
    for (start, end), ids in sorted(due.items()):
        ids = [i for i in ids if i not in failed]
        try:
            with transaction(engine) as session:
                buildings = list(session.exec(select(Building).where(Building.id.in_(ids))
                                              .order_by(Building.id)))
                runs += [r for r in share_buildings(session, buildings, start, end) if r]
            continue
        except ShareError:
            pass
        for building_id in ids:  # one by one, to find the one that cannot be shared
            try:
                with transaction(engine) as session:
                    run = post_shares(session, session.get(Building, building_id), start, end)
            except ShareError as exc:
                log.warning("shares of building %s: %s", building_id, exc)
                failed.add(building_id)
                continue
            if run is not None:
                runs.append(run)
    return runs


async def run_billing_jobs(engine, *, every_s: float = SWEEP_EVERY_S,
                           retention_days: int = 7) -> None:
    """Every `every_s` seconds until cancelled: the accrued charges of past hours posted
    (`post_stale_accruals`), `share_due`, the raw readings older than `retention_days`
    dropped (`drop_old_readings`) and the ended days frozen (`freeze_due_days`); the
    balance check at the first sweep of each local day (the first after the process started
    included), the line-loss check at the first sweep `CHECK_DELAY` after each local midnight
    (likewise). A failing part is logged and the next sweep comes all the same."""
    checked_on = line_loss_on = None
    while True:
        failed: list[Exception] = []  # this sweep's failures, for /readyz (`record_run`)
        try:
            dropped = await asyncio.to_thread(drop_old_readings, engine, utcnow(),
                                              retention_days)
            if dropped:
                log.info("raw readings older than %d days dropped: %d", retention_days, dropped)
        except Exception as exc:
            failed.append(exc)
            log.exception("billing jobs: dropping old readings failed")
        try:
            fen = await asyncio.to_thread(post_stale_accruals, engine)
            if fen:
                log.info("accrued charges of past hours posted: %d fen", fen)
        except Exception as exc:
            failed.append(exc)
            log.exception("billing jobs: posting accrued charges failed")
        try:
            runs = await asyncio.to_thread(share_due, engine)
            if runs:
                log.info("shares posted: %s", [(r.building_id, str(r.period_start), r.charge_fen)
                                               for r in runs])
        except Exception as exc:
            failed.append(exc)
            log.exception("billing jobs: the sweep failed")
        try:
            days = await asyncio.to_thread(freeze_due_days, engine)
            if days:
                log.info("days frozen: %s to %s", days[0], days[-1])
        except Exception as exc:
            failed.append(exc)
            log.exception("billing jobs: freezing the days failed")
        today = utcnow().astimezone(CHINA_TZ).date()
        line_loss_day = (utcnow() - CHECK_DELAY).astimezone(CHINA_TZ).date()
        if line_loss_on != line_loss_day:
            try:
                raised = await asyncio.to_thread(check_due_line_losses, engine)
                line_loss_on = line_loss_day
                log.log(logging.WARNING if raised else logging.INFO,
                        "line loss checked: %d buildings above their threshold %s",
                        len(raised), [(d.building_id, str(d.day), str(d.loss_pct))
                                      for d in raised][:20])
            except Exception as exc:
                failed.append(exc)
                log.exception("billing jobs: the line-loss check failed")
        if checked_on != today:
            try:
                result = await asyncio.to_thread(verify_balances, engine)
                checked_on = today
                log.log(logging.ERROR if result.mismatches else logging.INFO,
                        "balances checked: %d accounts, %d entries, %d mismatches %s",
                        result.accounts, result.entries, len(result.mismatches),
                        [m.account_id for m in result.mismatches][:20])
            except Exception as exc:
                failed.append(exc)
                log.exception("billing jobs: the balance check failed")
        try:
            await asyncio.to_thread(record_run, engine, BILLING_JOBS,
                                    failed[0] if failed else None)
        except Exception:
            log.warning("billing jobs: their run could not be recorded", exc_info=True)
        await asyncio.sleep(every_s)
