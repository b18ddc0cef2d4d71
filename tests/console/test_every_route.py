"""Every console route and action that names an object, walked by someone outside its scope:
the building manager of 1号楼 against 2号楼's objects, and an estate administrator and finance
of one estate against another estate's. Each answers 404 and nothing in the database changes.
A route added to the console with a path parameter this test does not know fails it, so the
walk stays complete."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel, select

from app.anomalies.models import METER_OFFLINE, Anomaly
from app.batch.models import BatchJob
from app.console.views import console_mount
from app.db import transaction, utcnow
from app.estate.models import Account, Building, Meter, ShareRun
from app.orders.models import Order
from app.policy.models import PENDING, CutApproval, ManagerTask
from tests.console.conftest import csrf
from tests.factories import EstateFactory

# what a request may change without acting on anything: the session's last click, the login
# limiter's counters
UNTOUCHED = {"manager_session", "rate_counter"}
FORM = {"reason": "越权", "note": "越权", "settle": "carry", "amount": "1",
        "direction": "credit", "all": "on", "share_scheme": "equal", "share_period": "day",
        "low_balance": "1", "cut_below": "0", "restore_above": "0", "emergency_credit": "0",
        "strategy": "residential", "tariff": "flat"}


def objects_of(engine, number: str, building_id: int) -> dict[str, str]:
    """One of each kind of object of the account `number` and its building, by the path
    parameter that names it."""
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        meter = s.exec(select(Meter).where(Meter.account_id == account.id)).one()
        approval = CutApproval(meter_id=meter.id, account_id=account.id, state=PENDING,
                               balance_fen=-200)
        task = ManagerTask(kind="care_list_exhausted", account_id=account.id, meter_id=meter.id,
                           detail="x")
        anomaly = Anomaly(kind=METER_OFFLINE, meter_id=meter.id, account_id=account.id,
                          detail="x")
        order = Order(out_trade_no=f"FKLATE{number}", account_id=account.id, amount_fen=100,
                      channel="alipay", status="paid_after_close", closed_at=utcnow())
        start = dt.datetime(2026, 11, 21, 16, tzinfo=dt.timezone.utc)
        run = ShareRun(building_id=building_id, period_start=start,
                       period_end=start + dt.timedelta(days=1), scheme="area", energy_wh=0,
                       exact_e7=0, charge_fen=0)
        account.emergency_credit_fen = 500
        job = BatchJob(estate_id=s.get(Building, building_id).estate_id, kind="remind",
                       params=f'{{"building": {building_id}}}', building_ids=str(building_id))
        s.add_all([approval, task, anomaly, order, run, account, job])
        s.flush()
        return {"number": number, "building_id": str(building_id), "anomaly_id": str(anomaly.id),
                "out_trade_no": order.out_trade_no, "run": str(run.id), "job_id": str(job.id),
                "item_id": {"approve": str(approval.id), "reject": str(approval.id),
                            "done": str(task.id)}}


def requests_for(objects: dict) -> list[tuple[str, str, dict]]:
    """(method, path, form) for every console route that names an object."""
    known = {"number", "building_id", "anomaly_id", "out_trade_no", "item_id", "action", "verb",
             "job_id", "kind"}
    walked = []
    for route in console_mount(_Settings()).routes:
        params = set(re.findall(r"{(\w+)(?::\w+)?}", route.path))
        assert params <= known, f"{route.path}: teach this test its parameters {params - known}"
        if not params:
            continue
        for verb in (["approve", "reject", "done"] if "verb" in params else [None]):
            for action in (["cut", "restore"] if "action" in params else [None]):
                values = {**objects, "verb": verb, "action": action, "kind": "approve",
                          "item_id": objects["item_id"][verb or "approve"]}
                path = "/manage" + re.sub(r"{(\w+)(?::\w+)?}", lambda m: values[m.group(1)],
                                          route.path)
                for method in sorted(route.methods - {"HEAD"}):
                    walked.append((method, path, {**FORM, "id": values["item_id"]}))
    walked.append(("GET", f"/manage/buildings/{objects['building_id']}?run={objects['run']}",
                   {}))
    walked.append(("GET", f"/manage/accounts?building={objects['building_id']}", {}))
    building = objects["building_id"]  # batch jobs and exports of the building
    for kind in ("remind", "tariff"):
        walked.append(("POST", f"/manage/jobs/{kind}", {**FORM, "building": building}))
    walked.append(("POST", "/manage/jobs/export", {**FORM, "export": "bills", "month": "2026-11",
                                                   "building": building}))
    walked.append(("GET", "/manage/exports/download?kind=payments&format=xlsx&month=2026-11"
                          f"&building={building}", {}))
    return walked


class _Settings:
    secret_key = "x"
    base_url = "http://localhost"


def everything(engine) -> dict:
    with transaction(engine, read_only=True) as s:
        return {table.name: sorted(map(repr, s.execute(sa.select(table)).all()))
                for table in SQLModel.metadata.sorted_tables if table.name not in UNTOUCHED}


def walk(client, engine, objects: dict) -> None:
    token = csrf(client)
    before = everything(engine)
    walked = requests_for(objects)
    assert len(walked) > 20
    for method, path, form in walked:
        if method == "GET":
            reply = client.get(path)
        else:
            reply = client.post(path, data={**form, "csrftoken": token})
        assert reply.status_code == 404, (method, path, reply.status_code)
    after = everything(engine)
    assert after == before, [name for name in before if after[name] != before[name]]


def test_b1_reaches_nothing_of_building_b(console, engine, estate):
    objects = objects_of(engine, estate.b_accounts[0], estate.building_b)
    walk(console("b1"), engine, objects)


@pytest.mark.parametrize("name", ["admin", "finance"])
def test_an_estate_s_managers_reach_nothing_of_another_estate(console, engine, estate, name):
    other = EstateFactory(engine, name="别的小区")
    number = other.account(gateway_id=other.gateway("127.0.0.1", 2), unit_id=1, number="900001",
                           balance_fen=-100)
    objects = objects_of(engine, number, other.building_id)
    walk(console(name), engine, objects)
