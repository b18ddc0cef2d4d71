"""What a visitor sees of a household without a binding and with one; the prepaid agreement
before the first use (and again for a new version); 应急用电's rules."""

import datetime as dt

import pytest
from sqlmodel import select

from app.db import transaction
from app.estate.models import Account
from app.ledger.models import LedgerEntry
from app.notices.models import LOW_BALANCE, Notice
from app.resident.agreement import AgreementError, load_agreement, parse_agreement
from app.resident.models import AgreementAcceptance
from tests.factories import entries_of
from tests.identity.support import bind, bound_resident, post, resident, sign_in


@pytest.fixture
def estate(engine):
    from tests.factories import EstateFactory

    return EstateFactory(engine)


@pytest.fixture
def gateway(estate):
    return estate.gateway("127.0.0.1", 1)


def household(engine, estate, gateway, **fields) -> str:
    number = estate.account(gateway_id=gateway, unit_id=1, holder_name="张三丰", **fields)
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        s.add(Notice(account_id=account.id, kind=LOW_BALANCE, amount_fen=800))
    return number


def acceptances(engine) -> list[AgreementAcceptance]:
    with transaction(engine, read_only=True) as s:
        return list(s.exec(select(AgreementAcceptance).order_by(AgreementAcceptance.id)))


# --- unbound and bound ----------------------------------------------------------------------------

HIDDEN_UNBOUND = ("测试小区", "1-1-101",  # the address: estate and household
                  'id="power"', "已停电", "最近抄表", 'id="cut"', "即可恢复供电",  # supply
                  'id="latest-notice"', "余额不足：仅剩", 'id="emergency"', "使用应急用电",
                  "0571-88886666", "/history", "/bills", "/usage")


def test_an_unbound_visitor_sees_enough_to_pay_and_nothing_more(client, engine, estate, gateway):
    number = household(engine, estate, gateway, balance_fen=-500, relay_open=True,
                       emergency_credit_fen=1000)
    page = client.get(f"/a/{number}")
    assert page.status_code == 200
    text = page.text
    assert "张**" in text and "张三丰" not in text and "1号楼" in text
    assert "-5.00" in text and 'value="alipay"' in text and 'value="wechat"' in text
    assert f'href="/bind?number={number}"' in text and "登录并绑定此户号" in text
    for hidden in HIDDEN_UNBOUND:
        assert hidden not in text, hidden
    status = client.get(f"/a/{number}/_status")
    assert status.status_code == 200 and "-5.00" in status.text
    for hidden in HIDDEN_UNBOUND:
        assert hidden not in status.text, hidden


def test_a_signed_in_resident_not_bound_sees_the_unbound_page(client, engine, settings, estate,
                                                              gateway):
    number = household(engine, estate, gateway, balance_fen=700)
    other = estate.account(gateway_id=gateway, unit_id=2)
    bound_resident(engine, client, settings, other)  # bound to another household
    text = client.get(f"/a/{number}").text
    assert "7.00" in text and "绑定此户号" in text
    for hidden in HIDDEN_UNBOUND:
        assert hidden not in text, hidden


def test_a_bound_resident_sees_the_whole_page(client, engine, settings, estate, gateway):
    number = household(engine, estate, gateway, balance_fen=-500, relay_open=True,
                       emergency_credit_fen=1000)
    bound_resident(engine, client, settings, number)
    text = client.get(f"/a/{number}").text
    for shown in ("测试小区 1-1-101", "张**", "-5.00", "已停电", "充值 5.01 元即可恢复供电",
                  "余额不足：仅剩 8.00 元",
                  "使用应急用电 10.00 元", "0571-88886666", f'href="/a/{number}/bills"',
                  f'href="/a/{number}/history"', f'href="/a/{number}/usage"',
                  f'href="/a/{number}/notices"', "解除绑定本户"):
        assert shown in text, shown
    assert "充值 5.01 元即可恢复供电" in client.get(f"/a/{number}/_status").text


# --- the agreement --------------------------------------------------------------------------------

def test_the_agreement_comes_first_and_its_acceptance_is_recorded(client, engine, settings,
                                                                  estate, gateway):
    number = household(engine, estate, gateway, balance_fen=900)
    rid = bound_resident(engine, client, settings, number, accepted=False)
    reply = client.get(f"/a/{number}")
    assert reply.status_code == 303 and reply.headers["location"].endswith(f"/a/{number}/agreement")
    assert client.get(f"/a/{number}/_status").status_code == 204  # nothing shown before
    page = client.get(f"/a/{number}/agreement").text
    version = load_agreement().version
    assert "预付费用电协议" in page and "先充值，后用电" in page and version in page
    before = dt.datetime.now(dt.timezone.utc)
    assert post(client, f"/a/{number}/agreement").status_code == 303
    [row] = acceptances(engine)
    assert (row.resident_id, row.version, row.client) == (rid, version, "testclient")
    assert before - dt.timedelta(seconds=1) <= row.accepted_at <= dt.datetime.now(dt.timezone.utc)
    assert 'id="household-links"' in client.get(f"/a/{number}").text
    assert post(client, f"/a/{number}/agreement").status_code == 303  # again: recorded once
    assert len(acceptances(engine)) == 1
    assert "您已同意本版本的协议" in client.get(f"/a/{number}/agreement").text


def test_a_new_version_is_accepted_again(client, engine, settings, estate, gateway, tmp_path):
    number = household(engine, estate, gateway, balance_fen=900)
    bound_resident(engine, client, settings, number)  # the shipped version accepted
    assert client.get(f"/a/{number}").status_code == 200
    replaced = tmp_path / "agreement.md"
    replaced.write_text("---\nversion: 2099-01\ntitle: 预付费用电协议（修订）\n---\n"
                        "# 一、新条款\n电价调整后按新价计费。\n", "utf-8")
    client.app.state.settings.agreement_file = replaced  # FEIKONG_AGREEMENT_FILE
    reply = client.get(f"/a/{number}")
    assert reply.status_code == 303 and reply.headers["location"].endswith("/agreement")
    page = client.get(f"/a/{number}/agreement").text
    assert "预付费用电协议（修订）" in page and "电价调整后按新价计费" in page and "2099-01" in page
    post(client, f"/a/{number}/agreement")
    assert [a.version for a in acceptances(engine)] == [load_agreement().version, "2099-01"]
    assert client.get(f"/a/{number}").status_code == 200
    # the operator edits the file in place: read again, a new version
    replaced.write_text("---\nversion: 2099-02\n---\n电价再调整。\n", "utf-8")
    assert client.get(f"/a/{number}").status_code == 303


def test_the_agreement_file_version_rules(tmp_path):
    named = tmp_path / "agreement-v7.md"
    named.write_text("# 条款\n正文。\n", "utf-8")
    assert load_agreement(named).version == "7"
    plain = tmp_path / "agreement.md"
    plain.write_text("正文。\n", "utf-8")
    hashed = load_agreement(plain).version
    assert len(hashed) == 12 and hashed != parse_agreement("正文改了。", plain).version
    for bad in ("", "---\nversion: a b\n---\n正文", "---\nversion: 1\n正文"):
        with pytest.raises(AgreementError):
            parse_agreement(bad, plain)
    with pytest.raises(AgreementError):
        load_agreement(tmp_path / "missing.md")


# --- 应急用电 --------------------------------------------------------------------------------------

def emergency_rows(engine, number):
    return entries_of(engine, number, "emergency_credit")


def test_emergency_credit_is_a_404_to_anyone_not_bound(client, engine, settings, estate, gateway):
    number = household(engine, estate, gateway, balance_fen=-500, relay_open=True,
                       emergency_credit_fen=1000)
    reply = post(client, f"/a/{number}/emergency")
    assert reply.status_code == 404 and "未找到该户号" in reply.text
    other = estate.account(gateway_id=gateway, unit_id=2)
    bound_resident(engine, client, settings, other)  # signed in, bound elsewhere
    assert post(client, f"/a/{number}/emergency").status_code == 404
    assert emergency_rows(engine, number) == []


def test_emergency_credit_refused_to_a_healthy_household(client, engine, settings, estate,
                                                         gateway):
    number = household(engine, estate, gateway, balance_fen=2000, relay_open=False,
                       emergency_credit_fen=1000)  # 20.00 元 ≥ the 10.00 元 threshold, power on
    bound_resident(engine, client, settings, number)
    assert "使用应急用电" not in client.get(f"/a/{number}").text
    reply = post(client, f"/a/{number}/emergency")
    assert reply.status_code == 409 and "暂不需要应急用电" in reply.text
    assert emergency_rows(engine, number) == []


def test_emergency_credit_below_the_threshold_once_a_month(client, engine, settings, estate,
                                                           gateway):
    number = household(engine, estate, gateway, balance_fen=500, relay_open=False,
                       emergency_credit_fen=1000)  # 5.00 元 < 10.00 元, still on
    bound_resident(engine, client, settings, number)
    page = client.get(f"/a/{number}").text
    assert "使用应急用电 10.00 元" in page and "从下一次充值中优先扣还" in page  # terms first
    reply = post(client, f"/a/{number}/emergency")
    assert reply.status_code == 303
    assert [e.amount_fen for e in emergency_rows(engine, number)] == [1000]
    again = post(client, f"/a/{number}/emergency")
    assert again.status_code == 409 and "本月已使用过应急用电" in again.text
    assert [e.amount_fen for e in emergency_rows(engine, number)] == [1000]


def test_emergency_credit_for_a_cut_household_before_the_agreement(client, engine, settings,
                                                                   estate, gateway):
    number = household(engine, estate, gateway, balance_fen=-500, relay_open=True,
                       emergency_credit_fen=1000)
    rid = resident(engine)
    bind(engine, rid, number, accepted=False)
    sign_in(client, settings, rid)
    reply = post(client, f"/a/{number}/emergency")
    assert reply.status_code == 303 and reply.headers["location"].endswith("/agreement")
    assert emergency_rows(engine, number) == []
    post(client, f"/a/{number}/agreement")
    assert post(client, f"/a/{number}/emergency").status_code == 303
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(LedgerEntry).where(LedgerEntry.kind == "emergency_credit")).one()
