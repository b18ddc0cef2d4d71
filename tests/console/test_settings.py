"""Settings an estate administrator changes in the console: each field checked (a bad time, a
negative threshold: a clear message, nothing saved), every change audited, in effect at once;
other roles cannot."""

import pytest
from sqlmodel import select

from app.db import transaction
from app.estate.models import Building, Estate
from tests.console.conftest import csrf
from tests.factories import account_by_number

GOOD = {"quiet_start": "21:00", "quiet_end": "07:30", "cut_notice_lead_h": "48",
        "manager_phone": "0571-88886666", "cut_requires_approval": "on",
        "message_start": "09:00", "message_end": "20:30"}


def estate_row(engine, estate_id):
    with transaction(engine, read_only=True) as s:
        return s.get(Estate, estate_id)


def test_the_estate_s_cut_policy_is_saved_and_audited(console, engine, estate):
    client = console("admin")
    reply = client.post("/manage/settings", data={**GOOD, "csrftoken": csrf(client)})
    assert reply.status_code == 200 and "已保存，立即生效" in reply.text
    row = estate_row(engine, estate.estate_id)
    assert (row.quiet_start, row.quiet_end, row.cut_notice_lead_h, row.cut_requires_approval,
            row.message_start, row.message_end) == ("21:00", "07:30", 48, True, "09:00", "20:30")
    log = client.get("/manage/audit").text
    assert "estate.settings" in log and "quiet_start=21:00" in log


@pytest.mark.parametrize("field, value, message", [
    ("quiet_start", "25:00", "时间格式应为 HH:MM"),
    ("quiet_end", "8点", "时间格式应为 HH:MM"),
    ("cut_notice_lead_h", "-1", "0–168 之间的整数小时"),
    ("cut_notice_lead_h", "1000", "0–168 之间的整数小时"),
    ("manager_phone", "call us", "请填写物业电话"),
    ("message_start", "9:00", "时间格式应为 HH:MM"),
    ("message_end", "09:00", "开始和结束不能相同"),  # from 09:00 to 09:00
])
def test_a_bad_estate_setting_says_why_and_saves_nothing(console, engine, estate, field, value,
                                                         message):
    before = estate_row(engine, estate.estate_id)
    client = console("admin")
    reply = client.post("/manage/settings",
                        data={**GOOD, field: value, "csrftoken": csrf(client)})
    assert reply.status_code == 400 and message in reply.text
    assert estate_row(engine, estate.estate_id) == before


def test_household_settings_are_checked_then_saved(console, engine, estate):
    number = estate.a_accounts[0]
    client = console("admin")
    token = csrf(client)
    good = {"low_balance": "20.00", "cut_below": "-5", "restore_above": "0",
            "emergency_credit": "10", "strategy": "residential", "care_list": "on",
            "csrftoken": token}
    bad = client.post(f"/manage/accounts/{number}/settings", data={**good, "low_balance": "-1"})
    assert "低余额提醒线应为金额" in client.get(bad.headers["location"]).text
    bad = client.post(f"/manage/accounts/{number}/settings",
                      data={**good, "restore_above": "-10"})
    assert "复电线不能低于停电线" in client.get(bad.headers["location"]).text
    assert account_by_number(engine, number).care_list is False
    client.post(f"/manage/accounts/{number}/settings", data=good)
    account = account_by_number(engine, number)
    assert (account.low_balance_threshold_fen, account.cut_below_fen,
            account.emergency_credit_fen, account.care_list) == (2000, -500, 1000, True)
    assert "account.settings" in client.get("/manage/audit").text


def test_a_household_is_put_on_a_tariff_and_back_on_its_flat_price(console, engine, estate):
    from pathlib import Path

    from tests.factories import add_tariff

    example = (Path(__file__).parent.parent / "tariffs" / "examples" / "beijing_tiered.json")
    tariff_id = add_tariff(engine, "北京居民阶梯", ("2020-01-01", example.read_text()))
    number = estate.a_accounts[0]
    client = console("admin")
    good = {"low_balance": "10", "cut_below": "0", "restore_above": "0", "emergency_credit": "0",
            "strategy": "residential", "csrftoken": csrf(client)}
    page = client.get(f"/manage/accounts/{number}").text
    assert "北京居民阶梯" in page
    unknown = client.post(f"/manage/accounts/{number}/settings",
                          data={**good, "tariff": str(tariff_id + 1)})
    assert "未知的电价" in client.get(unknown.headers["location"]).text
    assert account_by_number(engine, number).tariff_id is None
    client.post(f"/manage/accounts/{number}/settings",
                data={**good, "tariff": str(tariff_id), "tariff_uplift": "on"})
    account = account_by_number(engine, number)
    assert (account.tariff_id, account.tariff_uplift) == (tariff_id, True)
    client.post(f"/manage/accounts/{number}/settings", data=good)  # no tariff field: unchanged
    assert account_by_number(engine, number).tariff_id == tariff_id
    client.post(f"/manage/accounts/{number}/settings", data={**good, "tariff": "flat"})
    assert account_by_number(engine, number).tariff_id is None
    assert f"tariff_id={tariff_id}" in client.get("/manage/audit").text


def test_a_building_s_share_scheme(console, engine, estate):
    client = console("admin")
    token = csrf(client)
    reply = client.post(f"/manage/buildings/{estate.building_a}",
                        data={"share_scheme": "usage", "share_period": "month",
                              "csrftoken": token})
    assert reply.status_code == 200 and "已保存" in reply.text
    reply = client.post(f"/manage/buildings/{estate.building_a}",
                        data={"share_scheme": "by luck", "share_period": "month",
                              "csrftoken": token})
    assert reply.status_code == 400 and "公摊方式应为" in reply.text
    with transaction(engine, read_only=True) as s:
        b = s.get(Building, estate.building_a)
        assert (b.share_scheme, b.share_period) == ("usage", "month")


@pytest.mark.parametrize("name", ["b1", "finance"])
def test_only_an_estate_administrator_changes_settings(console, engine, estate, name):
    before = estate_row(engine, estate.estate_id)
    client = console(name)
    token = csrf(client)
    assert client.post("/manage/settings", data={**GOOD, "csrftoken": token}).status_code == 404
    number = estate.a_accounts[0]
    assert client.post(f"/manage/accounts/{number}/settings",
                       data={"low_balance": "1", "csrftoken": token}).status_code == 404
    assert client.post(f"/manage/buildings/{estate.building_a}",
                       data={"share_scheme": "equal", "share_period": "day",
                             "csrftoken": token}).status_code == 404
    assert estate_row(engine, estate.estate_id) == before
    assert 'name="quiet_start"' in client.get("/manage/settings").text  # read, disabled


def test_b1_cannot_reach_2号楼_s_building_page(console, estate):
    client = console("b1")
    assert client.get(f"/manage/buildings/{estate.building_b}").status_code == 404
    assert client.get(f"/manage/buildings/{estate.building_a}").status_code == 200
