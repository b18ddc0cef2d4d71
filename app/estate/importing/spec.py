"""What an estate workbook holds: its four sheets (楼栋, 网关, 电表, 账户), their columns with
the Chinese header a manager sees, the note written on the header (a cell comment in the
template), whether the column must be filled, and the fixed values a column takes (a data
validation list in the template; the codes stored are the right-hand side).

The headers are the file format: they stay Chinese whatever the console's language (a CSV is
recognised by them). A header is matched after Unicode NFKC folding (full-width brackets equal
ASCII ones), without spaces and without a trailing "*" or "（必填）"."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from app.billing.shares import SCHEMES
from app.policy.strategies import STRATEGIES
from meters import protocol

# Fixed values: label shown (and written in a template's list) → the code stored.
SHARE_SCHEMES = {"按面积": "area", "平均": "equal", "按用电": "usage"}
SHARE_PERIODS = {"按日": "day", "按月": "month"}
STRATEGY_LABELS = {s.label_zh: s.name for s in STRATEGIES.values()}
YES_NO = {"是": True, "否": False}
# Gateways speak Modbus TCP today; the protocols of other meters come with their own issue.
PROTOCOLS = {name: name for name in protocol.PROTOCOLS}
HOUSEHOLD, COMMON, MAIN = "household", "common", "main"
METER_KINDS = {"户表": HOUSEHOLD, "公区表": COMMON, "总表": MAIN}
FLAT_TARIFF = "单一电价"  # in the tariff column: the account's own flat price, no tariff

assert set(SHARE_SCHEMES.values()) == set(SCHEMES)

DEFAULT_PORT = 502  # Modbus TCP's registered port
DEFAULT_MAX_POWER_W = 13_800
MAX_UNIT = 247  # Modbus unit addresses 1–247 (a DL/T 645 address is 12 digits)


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    note: str
    required: bool = False
    choices: dict = field(default_factory=dict)
    width: int = 14
    text: bool = False  # a text column in the template (keeps leading zeros, long digits)


@dataclass(frozen=True)
class Sheet:
    key: str
    title: str
    columns: tuple[Column, ...]

    def column(self, key: str) -> Column:
        return next(c for c in self.columns if c.key == key)

    def header(self, key: str) -> str:
        return self.column(key).header


BUILDINGS = Sheet("buildings", "楼栋", (
    Column("name", "楼栋名称", "必填。小区内唯一，例如 1号楼。再次导入时按名称找到同一楼栋。",
           required=True, width=16),
    Column("floor_area", "建筑面积（㎡）", "整栋楼的建筑面积，大于 0，最多四位小数；可不填。按面积公摊"
           "用各户的建筑面积（账户表）；控制台把两者并列显示以便核对。", width=16),
    Column("share_scheme", "公摊方式", "按面积（默认，按住户建筑面积分摊公区电费）、平均（每户相同）"
           "或 按用电（按各户用电量比例）。", choices=SHARE_SCHEMES),
    Column("share_period", "公摊周期", "按日（默认）或 按月：公区电费多久分摊一次。",
           choices=SHARE_PERIODS),
    Column("common_price", "公区电价（元/千瓦时）", "公区电表（电梯、照明、水泵）的电价，最多四位"
           "小数；默认 0.5583。", width=20),
    Column("line_loss_pct", "线损告警线（%）", "总表与分表电量之差超过总表电量的这个百分比即告警；"
           "大于 0、不超过 100，最多两位小数；默认 5。", width=16),
))

GATEWAYS = Sheet("gateways", "网关", (
    Column("name", "网关名称", "必填。唯一，例如 1号楼集中器；电表表按此名称找到网关。",
           required=True, width=18),
    Column("host", "地址", "必填。网关的 IP 地址或主机名，例如 192.168.1.20。", required=True,
           width=18, text=True),
    Column("port", "端口", "1–65535 的整数；默认 502（Modbus TCP）。"),
    Column("protocol", "协议", "modbus_tcp（Modbus TCP 网关，默认）、modbus_rtu_over_tcp（串口服务器"
           "透传的 Modbus-RTU）或 dlt645_tcp（串口服务器透传的 DL/T 645-2007）。",
           choices=PROTOCOLS, width=20),
))

METERS = Sheet("meters", "电表", (
    Column("gateway", "网关名称", "必填。网关表中的名称（或系统中已有的网关）。", required=True,
           width=18),
    Column("unit", "表地址", "必填。电表在该网关总线上的地址：Modbus 为 1–247 的整数，DL/T 645 为"
           "铭牌上的 12 位表号（可省略前导 0）；同一网关上不能重复。",
           required=True, width=16, text=True),
    Column("kind", "类型", "户表（默认，归属账户表中填写它的户号）、公区表（电梯、照明、水泵，"
           "费用由楼栋住户分摊）或 总表（楼栋进线总表，用于线损核对，不计费）。",
           choices=METER_KINDS),
    Column("building", "楼栋", "公区表和总表必填：它所属的楼栋。户表可不填（随其账户的楼栋）。",
           width=16),
    Column("max_power", "最大功率（W）", "电表回路能通过的最大功率，用于识别异常跳变；默认 "
           "13800（60 A × 230 V）。总表填楼栋进线的功率。", width=16),
))

ACCOUNTS = Sheet("accounts", "账户", (
    Column("number", "户号", "必填。住户充值时输入的号码：数字、字母或 -，最长 32 位；全系统唯一。"
           "请以文本格式填写，以免丢失开头的 0。", required=True, width=14, text=True),
    Column("building", "楼栋", "必填。楼栋表中的名称（或系统中已有的楼栋）。", required=True,
           width=12),
    Column("household", "房号", "必填。例如 1-2-301。", required=True, width=12, text=True),
    Column("holder_name", "户主姓名", "可不填。页面和操作记录上只显示姓，例如 张*。", width=12),
    Column("phone", "联系电话", "可不填。中国大陆手机号（11 位，例如 13812345678）或固定电话"
           "（带区号，例如 0571-88886666）。请以文本格式填写。", width=16, text=True),
    Column("floor_area", "建筑面积（㎡）", "按面积公摊时使用；不小于 0，最多四位小数；默认 0。",
           width=14),
    Column("gateway", "网关名称", "该户电表所在的网关；与表地址一起填写。电表表中没有的，按户表、"
           "默认最大功率新建。", width=16),
    Column("unit", "表地址", "该户电表的地址（Modbus 1–247，DL/T 645 为 12 位表号）；一块电表只能属于"
           "一个户号。", text=True),
    Column("tariff", "电价方案", "系统中已有电价方案的名称（feikong tariff list）；不填或填 "
           "单一电价 则按下一列的单一电价计费。", width=18),
    Column("price", "单一电价（元/千瓦时）", "必填。大于 0，最多四位小数，例如 0.5583；不用电价"
           "方案时按此价计费。", required=True, width=20),
    Column("uplift", "一户多人口", "是 或 否（默认）：电价方案的阶梯电量是否按一户多人口上浮。",
           choices=YES_NO),
    Column("strategy", "收费策略", "居民（默认）、商铺 或 公共区域（公共区域余额用尽不自动停电）。",
           choices=STRATEGY_LABELS),
    Column("opening", "期初余额（元）", "新开户时的余额，可为负数（欠费），最多两位小数；作为"
           "「期初余额」记入账本。已有账户不能改：请在控制台做调账。", width=14),
    Column("care", "爱心档案", "是 或 否（默认）：爱心档案户余额用尽时不自动停电，转人工处理。",
           choices=YES_NO),
    Column("low_balance", "低余额提醒线（元）", "余额低于此数时提醒住户；默认 10.00。", width=18),
    Column("cut_below", "停电线（元）", "余额低于此数时停电，可为负数（允许透支）；默认 0。",
           width=14),
    Column("restore_above", "复电线（元）", "充值后余额高于此数时复电，不能低于停电线；默认 0。",
           width=14),
    Column("emergency", "应急用电额度（元）", "停电后每月可借用一次的额度，0–500；默认 0（不提供）。",
           width=18),
))

SHEETS = (BUILDINGS, GATEWAYS, METERS, ACCOUNTS)
SHEETS_BY_TITLE = {s.title: s for s in SHEETS}


def fold(text: str) -> str:
    """A header or label as compared: NFKC, no spaces, no trailing required marker."""
    text = re.sub(r"\s+", "", unicodedata.normalize("NFKC", str(text)))
    return re.sub(r"(\*|\(必填\))$", "", text)


def header_map(sheet: Sheet) -> dict[str, Column]:
    return {fold(c.header): c for c in sheet.columns}


def choice_map(choices: dict) -> dict[str, object]:
    """Labels and codes, folded (case-insensitive), → the stored value."""
    found = {}
    for label, value in choices.items():
        found[fold(label).lower()] = value
        if isinstance(value, str):
            found[fold(value).lower()] = value
    return found
