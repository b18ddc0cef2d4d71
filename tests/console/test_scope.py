"""Every console route and action, as the building manager of 1号楼, against 2号楼's objects:
404 (its existence is not revealed) and nothing changes. And what each role may do."""

import sqlalchemy as sa
from sqlmodel import select

from app.console.models import AuditEntry
from app.db import transaction
from app.estate.models import Account, Meter
from app.policy.models import APPROVED, PENDING, CutApproval, ManagerTask
from tests.console.conftest import csrf
from tests.factories import account_by_number


def waiting(engine, number: str) -> tuple[int, int]:
    """A pending cut approval and an open task for the account: (approval id, task id)."""
    account = account_by_number(engine, number)
    with transaction(engine) as s:
        meter_id = s.exec(select(Meter.id).where(Meter.account_id == account.id)).one()
        approval = CutApproval(meter_id=meter_id, account_id=account.id, state=PENDING,
                               balance_fen=-200)
        task = ManagerTask(kind="care_list_exhausted", account_id=account.id, meter_id=meter_id,
                           detail=f"{number} 爱心档案")
        s.add_all([approval, task])
        s.flush()
        return approval.id, task.id


def snapshot(engine) -> tuple:
    with transaction(engine, read_only=True) as s:
        return (s.exec(select(CutApproval.id, CutApproval.state).order_by(CutApproval.id)).all(),
                s.exec(select(ManagerTask.id, ManagerTask.done_at).order_by(ManagerTask.id)).all(),
                s.execute(sa.select(sa.func.count()).select_from(AuditEntry)).scalar())


def test_building_b_is_not_found_by_b1_anywhere(console, engine, estate):
    stranger = estate.b_accounts[0]
    approval_b, task_b = waiting(engine, stranger)
    client = console("b1")
    before = snapshot(engine)
    for path in (f"/manage/accounts/{stranger}", f"/manage/accounts?building={estate.building_b}",
                 f"/manage/accounts?building={estate.building_b}&state=exhausted"):
        assert client.get(path).status_code == 404, path
    token = csrf(client)
    for verb, item in (("approve", approval_b), ("reject", approval_b), ("done", task_b)):
        reply = client.post(f"/manage/approvals/{item}/{verb}",
                            data={"reason": "越权", "csrftoken": token})
        assert reply.status_code == 404, verb
    assert snapshot(engine) == before
    # And nothing of 2号楼 shows on b1's pages.
    for path in ("/manage/", "/manage/accounts", "/manage/approvals", "/manage/accounts?q=20"):
        page = client.get(path)
        assert page.status_code == 200 and stranger not in page.text and "2号楼" not in page.text


def test_the_estate_administrator_sees_both_buildings(console, estate):
    page = console("admin").get("/manage/").text
    assert "1号楼" in page and "2号楼" in page
    accounts = console("admin").get("/manage/accounts").text
    assert all(n in accounts for n in estate.a_accounts + estate.b_accounts)


def test_the_dashboard_counts_what_the_lists_show(console, estate):
    client = console("b1")
    page = client.get("/manage/").text
    assert "1号楼" in page
    low = client.get(f"/manage/accounts?building={estate.building_a}&state=low").text
    exhausted = client.get(f"/manage/accounts?building={estate.building_a}&state=exhausted").text
    # 5,000 fen is fine; 300 fen is low; -500 fen is low and exhausted
    assert estate.a_accounts[1] in low and estate.a_accounts[2] in low
    assert estate.a_accounts[0] not in low
    assert estate.a_accounts[2] in exhausted and estate.a_accounts[1] not in exhausted


def test_finance_reads_but_does_not_decide(console, engine, estate):
    approval, _ = waiting(engine, estate.a_accounts[2])
    client = console("finance")
    page = client.get("/manage/approvals").text
    assert estate.a_accounts[2] in page and "只读" in page
    reply = client.post(f"/manage/approvals/{approval}/approve",
                        data={"reason": "月底清欠", "csrftoken": csrf(client)})
    assert reply.status_code == 404
    assert snapshot(engine)[0] == [(approval, PENDING)]


def test_b1_approves_a_cut_with_a_reason_and_the_audit_log_says_so(console, engine, estate):
    number = estate.a_accounts[2]
    approval, task = waiting(engine, number)
    client = console("b1")
    token = csrf(client)
    no_reason = client.post(f"/manage/approvals/{approval}/approve",
                            data={"reason": " ", "csrftoken": token})
    assert "请写明理由" in client.get(no_reason.headers["location"]).text
    assert snapshot(engine)[0] == [(approval, PENDING)]
    reply = client.post(f"/manage/approvals/{approval}/approve",
                        data={"reason": "已电话通知住户", "csrftoken": token})
    assert reply.status_code == 303
    client.post(f"/manage/approvals/{task}/done", data={"reason": "已上门", "csrftoken": token})
    with transaction(engine, read_only=True) as s:
        decided = s.get(CutApproval, approval)
        assert (decided.state, decided.decided_by, decided.note) == (APPROVED, "b1",
                                                                      "已电话通知住户")
        assert s.get(ManagerTask, task).done_by == "b1"
    log = client.get("/manage/audit").text
    assert "cut.approve" in log and "已电话通知住户" in log and "task.done" in log
    assert number not in client.get("/manage/approvals").text  # nothing waits any more


def test_bulk_decisions_with_one_reason(console, engine, estate):
    first, second = (waiting(engine, n) for n in estate.a_accounts[1:3])
    client = console("b1")
    token = csrf(client)
    nothing = client.post("/manage/approvals/bulk/reject", data={"reason": "x", "csrftoken": token})
    assert "请先勾选" in client.get(nothing.headers["location"]).text
    client.post("/manage/approvals/bulk/reject",
                data={"id": [first[0], second[0]], "reason": "冬季不停电", "csrftoken": token})
    client.post("/manage/approvals/bulk/done",
                data={"id": [first[1], second[1]], "reason": "已上门", "csrftoken": token})
    with transaction(engine, read_only=True) as s:
        assert {s.get(CutApproval, a).state for a in (first[0], second[0])} == {"rejected"}
        assert all(s.get(ManagerTask, t).done_by == "b1" for t in (first[1], second[1]))
    assert client.get("/manage/audit").text.count("冬季不停电") == 2


def test_a_bulk_decision_with_one_stranger_s_item_does_nothing(console, engine, estate):
    mine = waiting(engine, estate.a_accounts[2])
    theirs = waiting(engine, estate.b_accounts[0])
    client = console("b1")
    before = snapshot(engine)
    reply = client.post("/manage/approvals/bulk/approve",
                        data={"id": [mine[0], theirs[0]], "reason": "越权",
                              "csrftoken": csrf(client)})
    assert reply.status_code == 404 and snapshot(engine) == before


def offline(engine, number: str) -> int:
    """A meter_offline anomaly of the account's meter; its id."""
    from app.anomalies.models import METER_OFFLINE, Anomaly

    account = account_by_number(engine, number)
    with transaction(engine) as s:
        meter_id = s.exec(select(Meter.id).where(Meter.account_id == account.id)).one()
        anomaly = Anomaly(kind=METER_OFFLINE, meter_id=meter_id, account_id=account.id,
                          detail="3 failed polls in a row")
        s.add(anomaly)
        s.flush()
        return anomaly.id


def test_anomalies_are_resolved_with_a_note_within_scope(console, engine, estate):
    from app.anomalies.models import Anomaly

    mine, theirs = offline(engine, estate.a_accounts[0]), offline(engine, estate.b_accounts[0])
    client = console("b1")
    page = client.get("/manage/anomalies").text
    assert f'id="anomaly-{mine}"' in page and f'id="anomaly-{theirs}"' not in page
    token = csrf(client)
    assert client.post(f"/manage/anomalies/{theirs}/resolve",
                       data={"note": "越权", "csrftoken": token}).status_code == 404
    reply = client.post(f"/manage/anomalies/{mine}/resolve",
                        data={"note": "集中器断电，已恢复", "csrftoken": token})
    assert reply.status_code == 303
    with transaction(engine, read_only=True) as s:
        assert s.get(Anomaly, mine).resolution == "b1: 集中器断电，已恢复"
        assert s.get(Anomaly, theirs).resolved_at is None
    assert "anomaly.resolve" in client.get("/manage/audit").text


def test_a_late_payment_is_credited_from_the_anomalies_page(console, engine, estate):
    import datetime as dt

    from app.db import utcnow
    from app.orders.models import Order, ReconcileDifference
    from tests.factories import balance_of

    mine, theirs = estate.a_accounts[1], estate.b_accounts[0]
    ids = {n: account_by_number(engine, n).id for n in (mine, theirs)}
    with transaction(engine) as s:
        for no, number in (("FKLATE0001", mine), ("FKLATE0002", theirs)):
            s.add(Order(out_trade_no=no, account_id=ids[number],
                        amount_fen=2000, channel="alipay", status="paid_after_close",
                        provider_trade_no=f"T{no}", closed_at=utcnow()))
        s.add(ReconcileDifference(bill_date=utcnow().date() - dt.timedelta(days=1),
                                  channel="alipay", kind="missing_in_bill",
                                  out_trade_no="FKDIFF0001", our_amount_fen=3000,
                                  detail="not in the bill"))
    b1 = console("b1")
    assert "FKLATE0001" in b1.get("/manage/anomalies").text
    assert "FKDIFF0001" not in b1.get("/manage/anomalies").text  # estate-wide roles only
    assert b1.post("/manage/payments/FKLATE0001/credit",
                   data={"reason": "x", "csrftoken": csrf(b1)}).status_code == 404  # no money
    finance = console("finance")
    page = finance.get("/manage/anomalies").text
    assert "FKDIFF0001" in page and "30.00" in page
    token = csrf(finance)
    no_reason = finance.post("/manage/payments/FKLATE0001/credit",
                             data={"reason": "", "csrftoken": token})
    assert "请写明理由" in finance.get(no_reason.headers["location"]).text
    finance.post("/manage/payments/FKLATE0001/credit",
                 data={"reason": "住户来电确认", "csrftoken": token})
    assert balance_of(engine, mine) == 300 + 2000
    again = finance.post("/manage/payments/FKLATE0001/credit",
                         data={"reason": "再来", "csrftoken": token})
    assert "该付款已处理" in finance.get(again.headers["location"]).text
    assert balance_of(engine, mine) == 300 + 2000
    assert "payment.credit_late" in finance.get("/manage/audit").text


def test_a_gateway_down_is_seen_by_the_managers_of_the_buildings_it_serves(console, engine,
                                                                          estate):
    """Issue 18: a whole gateway down is one anomaly; a building manager sees it when the
    gateway serves a meter of their buildings, and not otherwise. A DL/T 645 meter's address
    shows as its 12-digit 表号."""
    from app.anomalies.models import GATEWAY_OFFLINE, Anomaly
    from tests.factories import EstateFactory

    factory = EstateFactory.of(engine, estate.estate_id, estate.building_b, first=100)  # 2号楼
    far = factory.gateway("127.0.0.1", 2, "dlt645_tcp")
    number = factory.account(gateway_id=far, unit_id=12345, number="209999", balance_fen=100)
    shared = account_by_number(engine, estate.a_accounts[0])
    with transaction(engine) as s:
        near = s.exec(select(Meter.gateway_id).where(Meter.account_id == shared.id)).one()
        ids = []
        for gateway_id in (near, far):
            anomaly = Anomaly(kind=GATEWAY_OFFLINE, gateway_id=gateway_id,
                              detail=f"gateway {gateway_id} down")
            s.add(anomaly)
            s.flush()
            ids.append(anomaly.id)
    page = console("b1").get("/manage/anomalies").text
    assert f'id="anomaly-{ids[0]}"' in page and f'id="anomaly-{ids[1]}"' not in page
    page = console("admin").get("/manage/anomalies").text
    assert f'id="anomaly-{ids[0]}"' in page and f'id="anomaly-{ids[1]}"' in page
    account = console("admin").get(f"/manage/accounts/{number}").text
    assert "000000012345" in account and "dlt645_tcp" in account
