"""Batch jobs: started from the console, run by the runner in the background, their page showing
done/total while htmx polls and the outcome after; a runner process that dies in the middle of
a step (a process of its own, killed by os._exit: tests/reports/crash_runner.py) leaves exactly
the steps it committed, and the job is taken up again from there by the next runner, nothing
done twice; a job whose process died too often is marked interrupted with what was done; a job
taken up elsewhere stops without changing anything. Reminders, bulk approvals, a building's
tariff, an export."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import select

from app.batch.models import DONE, INTERRUPTED, QUEUED, RUNNING, BatchJob
from app.batch.runner import MAX_RESUMES, STALE_AFTER, Runner
from app.commands.models import READ, Command
from app.console.managers import add_manager
from app.console.models import BUILDING_MANAGER, ESTATE_ADMIN, AuditEntry
from app.db import transaction, utcnow
from app.estate.models import Account, Building, Meter
from app.notices.models import LOW_BALANCE, Notice
from app.policy.models import APPROVED, PENDING, CutApproval
from tests.console.conftest import PASSWORD, csrf, log_in
from tests.factories import EstateFactory, add_tariff

ROOT = Path(__file__).resolve().parents[2]
LOW = 250  # low households of 1号楼: three steps of 100


@pytest.fixture
def estate(engine):
    """1号楼 with 250 low households (5.00 元, under the 10.00 元 line) and 3 with money; 2号楼
    with 2 low ones; admin, and b1 (1号楼) as managers."""
    factory = EstateFactory(engine, name="任务小区")
    gateway = factory.gateway("127.0.0.1", 1)
    with transaction(engine) as s:
        rows = [Account(number=f"1{k:05d}", building_id=factory.building_id,
                        household=f"1-{k}", price_yuan_per_kwh="0.5583")
                for k in range(LOW + 3)]
        s.add_all(rows)
        s.flush()
        s.add_all([Meter(account_id=a.id, gateway_id=gateway, unit_id=k % 240 + 1)
                   for k, a in enumerate(rows)])
        from app.ledger.services import post_entries
        from app.ledger.models import OPENING
        post_entries(s, [dict(account_id=a.id, amount_fen=500 if k < LOW else 50_000,
                              kind=OPENING, idempotency_key=f"opening:{a.number}", memo="",
                              energy_wh=None) for k, a in enumerate(rows)])
        other = Building(estate_id=factory.estate_id, name="2号楼")
        s.add(other)
        s.flush()
        building_b = other.id
    factory.building_id = building_b
    b_numbers = [factory.account(gateway_id=gateway, unit_id=241 + k, number=f"2{k:05d}",
                                 balance_fen=300) for k in range(2)]
    with transaction(engine) as s:
        building_a = s.exec(select(Building.id).where(Building.name == "1号楼",
                                                      Building.estate_id == factory.estate_id)
                            ).one()
        add_manager(s, "admin", role=ESTATE_ADMIN, estate_id=factory.estate_id,
                    password=PASSWORD)
        add_manager(s, "b1", role=BUILDING_MANAGER, estate_id=factory.estate_id,
                    password=PASSWORD, building_ids=[building_a])
    return {"a": building_a, "b": building_b, "b_numbers": b_numbers,
            "estate_id": factory.estate_id}


def start(client, kind: str, **form) -> int:
    reply = client.post(f"/manage/jobs/{kind}", data={**form, "csrftoken": csrf(client)})
    assert reply.status_code == 303, reply.text
    return int(reply.headers["location"].rsplit("/", 1)[1])


def job(engine, job_id: int) -> BatchJob:
    with transaction(engine, read_only=True) as s:
        return s.get(BatchJob, job_id)


def reminders(engine) -> dict[int, int]:
    with transaction(engine, read_only=True) as s:
        return dict(s.execute(sa.select(Notice.account_id, sa.func.count())
                              .where(Notice.kind == LOW_BALANCE)
                              .group_by(Notice.account_id)).all())


def crash(settings, stop_at: int) -> None:
    """The queued jobs run by a runner process that dies at its `stop_at`-th progress update."""
    done = subprocess.run([sys.executable, "-m", "tests.reports.crash_runner",
                           settings.database_url, str(settings.var_dir), str(stop_at)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr


def test_the_job_page_shows_done_of_total_and_polls_while_it_runs(engine, settings, estate,
                                                                  client):
    log_in(client, "admin")
    job_id = start(client, "remind", building=estate["a"])
    page = client.get(f"/manage/jobs/{job_id}")
    assert page.status_code == 200 and "排队中" in page.text
    assert 'hx-trigger="every 1s"' in page.text
    assert f'hx-get="/manage/jobs/{job_id}/_progress"' in page.text
    assert Runner(engine, settings).run_pending() == 1
    fragment = client.get(f"/manage/jobs/{job_id}/_progress")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert re.search(rf'<progress id="job-progress" max="{LOW}" value="{LOW}"', fragment.text)
    assert f"已完成 {LOW} / {LOW}（100%）" in fragment.text and "已完成</strong>" in fragment.text
    assert "hx-trigger" not in fragment.text  # ended: the page stops polling
    listing = client.get("/manage/jobs")
    assert f"{LOW}/{LOW}" in listing.text and "提醒余额不足的住户" in listing.text
    assert set(reminders(engine).values()) == {1} and len(reminders(engine)) == LOW
    with transaction(engine, read_only=True) as s:
        audited = s.exec(select(AuditEntry).where(AuditEntry.action == "job.remind")).one()
    assert audited.manager_name == "admin" and audited.object_id == str(job_id)


def test_a_runner_that_dies_mid_step_is_taken_up_where_it_stopped(engine, settings, estate,
                                                                 client):
    log_in(client, "admin")
    job_id = start(client, "remind", building=estate["a"])
    crash(settings, stop_at=5)  # items fixed, step 1 committed, dies at the end of step 2
    left = job(engine, job_id)
    host, _, pid = left.runner.rpartition(":")
    assert (left.state, left.done, left.total) == (RUNNING, 100, LOW)
    assert host == socket.gethostname() and pid.isdigit()
    assert len(reminders(engine)) == 100  # step 2's reminders went with its transaction
    page = client.get(f"/manage/jobs/{job_id}")
    assert "已完成 100 / 250（40%）" in page.text and "进行中" in page.text

    assert Runner(engine, settings).run_pending() == 1  # the next runner: taken up, finished
    done = job(engine, job_id)
    assert (done.state, done.done, done.resumes, done.failure_count) == (DONE, LOW, 1, 0)
    counts = reminders(engine)
    assert len(counts) == LOW and set(counts.values()) == {1}  # each household once
    assert Runner(engine, settings).run_pending() == 0
    assert reminders(engine) == counts


def test_an_export_that_died_writing_its_end_is_made_once(engine, settings, estate, client):
    log_in(client, "admin")
    month = f"{utcnow():%Y-%m}"
    job_id = start(client, "export", export="bills", month=month, format="xlsx")
    crash(settings, stop_at=2)  # dies as it records its end (the file written, not audited)
    assert job(engine, job_id).state == RUNNING
    assert Runner(engine, settings).run_pending() == 1
    done = job(engine, job_id)
    assert (done.state, done.resumes) == (DONE, 1) and Path(done.result_path).is_file()
    with transaction(engine, read_only=True) as s:
        audited = list(s.exec(select(AuditEntry).where(AuditEntry.action == "export.bills")))
    assert len(audited) == 1 and audited[0].after.endswith(f"{LOW + 5} rows")
    reply = client.get(f"/manage/jobs/{job_id}/download")
    assert reply.status_code == 200 and reply.content[:2] == b"PK"


def test_a_job_whose_process_died_too_often_is_interrupted_with_what_was_done(engine, settings,
                                                                              estate, client):
    log_in(client, "admin")
    job_id = start(client, "remind", building=estate["a"])
    crash(settings, stop_at=5)
    with transaction(engine) as s:
        row = s.get(BatchJob, job_id)
        row.resumes = MAX_RESUMES  # it was taken up as often as a job is
        s.add(row)
    assert Runner(engine, settings).run_pending() == 0
    left = job(engine, job_id)
    assert (left.state, left.done) == (INTERRUPTED, 100) and "100/250" in left.message
    assert len(reminders(engine)) == 100
    page = client.get(f"/manage/jobs/{job_id}")
    assert "已中断" in page.text and "100/250" in page.text and "hx-trigger" not in page.text


def test_a_job_is_left_alone_while_its_runner_lives_and_taken_up_when_it_stops_beating(
        engine, settings, estate, client):
    log_in(client, "admin")
    job_id = start(client, "remind", building=estate["a"])
    with transaction(engine) as s:  # running on another machine, which beat a minute ago
        row = s.get(BatchJob, job_id)
        row.state, row.runner = RUNNING, "another-host:4242"
        row.started_at = row.heartbeat_at = utcnow() - dt.timedelta(minutes=1)
        s.add(row)
    runner = Runner(engine, settings)
    assert runner.recover() == {} and runner.run_pending() == 0
    assert job(engine, job_id).state == RUNNING
    with transaction(engine) as s:  # …and then no more
        s.get(BatchJob, job_id).heartbeat_at = utcnow() - STALE_AFTER - dt.timedelta(seconds=1)
    assert runner.recover() == {job_id: QUEUED}
    assert runner.run_pending() == 1 and job(engine, job_id).state == DONE
    assert len(reminders(engine)) == LOW


def test_a_step_of_a_job_taken_up_elsewhere_changes_nothing(engine, settings, estate, client):
    log_in(client, "admin")
    job_id = start(client, "remind", building=estate["a"])
    runner = Runner(engine, settings)
    claimed = runner.claim()
    with transaction(engine) as s:  # meanwhile judged dead and taken by another process
        s.get(BatchJob, job_id).runner = "another-host:1"
    assert runner.run(claimed) == "lost"
    assert reminders(engine) == {} and job(engine, job_id).done == 0


def test_bulk_approvals_in_the_background(engine, settings, estate, client):
    with transaction(engine) as s:
        meters = {a.number: m for a, m in s.execute(
            select(Account, Meter).join(Meter, Meter.account_id == Account.id)).all()}
        approvals = []
        for number in ("100001", "100002", "100003"):
            m = meters[number]
            approvals.append(CutApproval(meter_id=m.id, account_id=m.account_id,
                                         balance_fen=-100, state=PENDING))
        other = meters[estate["b_numbers"][0]]
        approvals.append(CutApproval(meter_id=other.id, account_id=other.account_id,
                                     balance_fen=-100, state=PENDING))
        s.add_all(approvals)
        s.flush()
        ids = [a.id for a in approvals]
    b1 = client
    log_in(b1, "b1")
    reply = b1.post("/manage/jobs/approve", data={"id": ids, "reason": "已电话通知",
                                                  "verb": "approve", "csrftoken": csrf(b1)})
    assert reply.status_code == 404  # 2号楼's approval among them: nothing queued
    with transaction(engine) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(BatchJob)).scalar() == 0
        s.get(CutApproval, ids[2]).state = "rejected"  # decided meanwhile
    job_id = start(b1, "approve", id=ids[:3], reason="已电话通知", verb="approve")
    assert Runner(engine, settings).run_pending() == 1
    done = job(engine, job_id)
    assert (done.state, done.done, done.failure_count) == (DONE, 3, 1)
    assert json.loads(done.failures) == [{"item": str(ids[2]), "reason": "已处理（rejected）"}]
    page = b1.get(f"/manage/jobs/{job_id}")
    assert "未完成 1 项" in page.text and "已处理（rejected）" in page.text
    with transaction(engine, read_only=True) as s:
        states = [s.get(CutApproval, i).state for i in ids]
        reads = s.execute(sa.select(sa.func.count()).select_from(Command)
                          .where(Command.action == READ)).scalar()
        acts = [(e.manager_name, e.action) for e in s.exec(
            select(AuditEntry).where(AuditEntry.action == "cut.approve"))]
    assert states == [APPROVED, APPROVED, "rejected", PENDING]
    assert reads == 2 and acts == [("b1", "cut.approve")] * 2


def test_a_building_moves_to_a_tariff(engine, settings, estate, client):
    tariff_id = add_tariff(engine, "分时电价", ("2020-01-01", (
        ROOT / "tests" / "tariffs" / "examples" / "zhejiang_tiered_tou.json").read_text()))
    log_in(client, "b1")
    assert client.post("/manage/jobs/tariff", data={
        "building": estate["a"], "tariff": tariff_id, "csrftoken": csrf(client)}
    ).status_code == 404  # an estate administrator's act
    client.cookies.clear()
    log_in(client, "admin")
    job_id = start(client, "tariff", building=estate["a"], tariff=tariff_id)
    assert Runner(engine, settings).run_pending() == 1
    assert job(engine, job_id).state == DONE
    with transaction(engine, read_only=True) as s:
        on = dict(s.execute(sa.select(Account.building_id, sa.func.count())
                            .where(Account.tariff_id == tariff_id)
                            .group_by(Account.building_id)).all())
        audited = s.execute(sa.select(sa.func.count()).select_from(AuditEntry)
                            .where(AuditEntry.action == "account.tariff")).scalar()
    assert on == {estate["a"]: LOW + 3} and audited == LOW + 3


def test_the_exports_page_offers_each_export_within_the_scope(engine, settings, estate, client):
    log_in(client, "b1")
    page = client.get("/manage/exports")
    assert page.status_code == 200 and 'href="/manage/exports"' in page.text  # the nav link
    for title in ("月度账单（按楼栋，每户一行）", "缴费明细与渠道汇总", "欠费与账龄", "停复电命令及结果",
                  "异常", "操作记录"):
        assert title in page.text
    assert f'<option value="{estate["a"]}">1号楼</option>' in page.text
    assert "2号楼" not in page.text and "已打码" in page.text
    refused = client.get("/manage/exports/download", params={
        "kind": "commands", "format": "xlsx", "month": "2026-13"})
    assert refused.status_code == 303 and "error=" in refused.headers["location"]
    assert "月份应为 YYYY-MM" in client.get(refused.headers["location"]).text
    assert client.get("/manage/exports/download", params={
        "kind": "bills", "format": "xlsx", "month": "2026-11"}).status_code == 404  # a job
    assert client.get("/manage/exports/download", params={
        "kind": "arrears", "format": "pdf"}).status_code == 404
    with transaction(engine, read_only=True) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(AuditEntry)
                         .where(AuditEntry.action.like("export.%"))).scalar() == 0
