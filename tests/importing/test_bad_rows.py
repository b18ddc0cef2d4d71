"""Each kind of wrong row is named by sheet, row and column in plain Chinese, and nothing at all
is imported while any row is wrong."""

from __future__ import annotations

import pytest
from sqlmodel import select

from app.db import transaction
from app.estate.importing import import_file
from app.estate.models import Account, Building, Estate
from tests.factories import EstateFactory
from tests.importing.conftest import small_estate, table_counts, workbook

A, M, B, G = "accounts", "meters", "buildings", "gateways"
CASES = {
    "required": ((A, 1, "household", None), "「账户」表第 3 行「房号」：必填，不能为空"),
    "type": ((A, 0, "unit", "abc"), "「账户」表第 2 行「表地址」：应为 1–247 的整数"),
    "unknown building": ((A, 2, "building", "9号楼"),
                         "「账户」表第 4 行「楼栋」：楼栋「9号楼」不存在：请先在楼栋表中添加"),
    "unknown gateway": ((M, 0, "gateway", "GW9"),
                        "「电表」表第 2 行「网关名称」：网关「GW9」不存在：请先在网关表中添加"),
    "unknown tariff": ((A, 0, "tariff", "峰谷电价"),
                       "「账户」表第 2 行「电价方案」：电价方案「峰谷电价」不存在（feikong tariff "
                       "list 可查看已有方案）"),
    "duplicate number": ((A, 3, "number", "1001"), "「账户」表第 5 行「户号」：户号重复（第 2 行已有）"),
    "meter on two accounts": ((A, 1, "unit", 1),
                              "「账户」表第 3 行「表地址」：这块电表（GW1 / 1）已是户号 1001 的电表"
                              "（第 2 行）：一块电表只能属于一个户号"),
    "common meter as a household's": ((A, 0, "unit", 240),
                                      "「账户」表第 2 行「表地址」：这块电表（GW1 / 240）在电表表第 2 "
                                      "行是公区表，不能作为住户的电表"),
    "phone": ((A, 0, "phone", "12345678"),
              "「账户」表第 2 行「联系电话」：不是有效的电话号码：应为 11 位手机号或带区号的固定电话"
              "（例如 0571-88886666）"),
    "landline without area code": ((A, 0, "phone", "88886666"),
                                   "「账户」表第 2 行「联系电话」：不是有效的电话号码：应为 11 位手机号"
                                   "或带区号的固定电话（例如 0571-88886666）"),
    "amount finer than a fen": ((A, 0, "opening", "12.345"),
                                "「账户」表第 2 行「期初余额（元）」：应为金额（元），最多两位小数，可为负数"),
    "threshold not an amount": ((A, 2, "low_balance", "十元"),
                                "「账户」表第 4 行「低余额提醒线（元）」：低余额提醒线应为金额（元），"
                                "最多两位小数，不能为负"),
    "restore below cut": ((A, 0, "cut_below", "5"),
                          "「账户」表第 2 行「复电线（元）」：复电线不能低于停电线"),
    "fixed value": ((B, 0, "share_scheme", "随便"),
                    "「楼栋」表第 2 行「公摊方式」：公摊方式应为 按面积、平均 或 按用电"),
    "yes or no": ((A, 0, "care", "也许"), "「账户」表第 2 行「爱心档案」：应为 是、否 之一"),
    "strategy": ((A, 0, "strategy", "工厂"),
                 "「账户」表第 2 行「收费策略」：应为 居民、居民（按钮合闸）、商铺、公共区域 之一"),
    "common meter without building": ((M, 0, "building", None),
                                      "「电表」表第 2 行「楼栋」：公区表和总表必须填写所属楼栋"),
    "port": ((G, 1, "port", 70000), "「网关」表第 3 行「端口」：应为 1–65535 的整数"),
    "protocol": ((G, 0, "protocol", "dlt645"), "「网关」表第 2 行「协议」：应为 modbus_tcp、"
                 "modbus_rtu_over_tcp、dlt645_tcp 之一"),
    "modbus unit": ((M, 0, "unit", 248), "「电表」表第 2 行「表地址」：应为 1–247 的整数"),
    "host": ((G, 0, "host", "http://x"), "「网关」表第 2 行「地址」：应为 IP 地址或主机名，例如 192.168.1.20"),
    "price": ((A, 3, "price", "0"),
              "「账户」表第 5 行「单一电价（元/千瓦时）」：应为大于 0 的电价（元/千瓦时），最多四位小数，"
              "例如 0.5583"),
    "line loss": ((B, 1, "line_loss_pct", "150"),
                  "「楼栋」表第 3 行「线损告警线（%）」：线损告警线应为大于 0、不超过 100 的百分数，最多两位小数"),
}


def import_rows(engine, estate_id, rows):
    with transaction(engine) as s:
        return import_file(s, workbook(rows), estate_id=estate_id)


@pytest.mark.parametrize("case", CASES)
def test_a_wrong_row_is_named_and_nothing_is_imported(engine, estate_id, case):
    (sheet, index, column, value), expected = CASES[case]
    rows = small_estate(2, 2)
    rows[sheet][index][column] = value
    result = import_rows(engine, estate_id, rows)
    assert [p.text() for p in result.problems] == [expected]
    assert not result.written
    assert set(table_counts(engine).values()) == {0}


def test_a_duplicate_unit_address_on_one_gateway(engine, estate_id):
    rows = small_estate(2, 2)
    rows[M].append({"gateway": "GW1", "unit": 240, "kind": "总表", "building": "1号楼"})
    assert [p.text() for p in import_rows(engine, estate_id, rows).problems] == [
        "「电表」表第 6 行「表地址」：网关「GW1」上表地址 240 重复（第 2 行已有）"]


def test_every_wrong_row_is_listed_at_once(engine, estate_id):
    rows = small_estate(2, 2)
    rows[A][1]["phone"] = "110"
    rows[A][3]["opening"] = "1.001"
    rows[B][0]["name"] = None
    texts = [p.text() for p in import_rows(engine, estate_id, rows).problems]
    assert texts[0] == "「楼栋」表第 2 行「楼栋名称」：必填，不能为空"
    assert "「账户」表第 3 行「联系电话」：不是有效的电话号码" in texts[-2]
    assert texts[-1] == "「账户」表第 5 行「期初余额（元）」：应为金额（元），最多两位小数，可为负数"
    assert set(table_counts(engine).values()) == {0}


def test_a_number_or_gateway_of_another_estate_is_refused(engine, estate_id):
    other = EstateFactory(engine, name="别的小区")
    gateway = other.gateway("10.0.0.1", 502)
    other.account(gateway_id=gateway, unit_id=1, number="1001")
    with transaction(engine) as s:
        from app.estate.models import Gateway

        s.get(Gateway, gateway).name = "GW2"
    before = table_counts(engine)
    texts = [p.text() for p in import_rows(engine, estate_id, small_estate(2, 2)).problems]
    assert texts == ["「网关」表第 3 行「网关名称」：网关「GW2」已属于其他小区，请换一个名称",
                     "「账户」表第 2 行「户号」：这个户号已属于其他小区",
                     "「账户」表第 4 行「表地址」：这块电表（GW2 / 1）已属于户号 1001：一块电表只能"
                     "属于一个户号"]
    assert table_counts(engine) == before
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(Estate).where(Estate.id == estate_id)).one()
        assert s.exec(select(Building).where(Building.estate_id == estate_id)).all() == []
        assert len(s.exec(select(Account)).all()) == 1


def test_a_missing_required_column_and_an_unknown_one(engine, estate_id):
    header = "户号,楼栋,房号,电话号码\n1001,1号楼,1-1-101,13812345678\n"
    with transaction(engine) as s:
        result = import_file(s, header.encode(), estate_id=estate_id)
    texts = [p.text() for p in result.problems]
    assert texts[0].startswith("「账户」表第 1 行「电话号码」：不认识的列名；可用的列：户号、楼栋、房号")
    assert "「账户」表「单一电价（元/千瓦时）」列：缺少必填列" in texts
    assert set(table_counts(engine).values()) == {0}


def test_an_old_xls_file_is_refused_with_what_to_do(engine, estate_id):
    with transaction(engine) as s:
        result = import_file(s, b"\xd0\xcf\x11\xe0" + b"\0" * 100, estate_id=estate_id)
    assert [p.text() for p in result.problems] == [
        "这是旧版 Excel（.xls）文件：请在 Excel 中另存为 .xlsx 或 CSV 后再导入"]
