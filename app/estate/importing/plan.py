"""Every row of an estate file checked, and what importing it would change, before anything is
written: `make_plan` reads the database (the estate's buildings, the gateways and meters the
file names, the accounts of its 户号, the tariffs) and returns a `Plan`, whose `problems` list
everything wrong by sheet, row and column. A plan with no problem is written by
`app.estate.importing.apply`; one with problems never is.

What the file is matched by (so that importing the same file twice changes nothing): a
building by its name within the estate, a gateway by its name, a meter by its gateway and unit
address, an account by its 户号. An empty optional cell leaves an existing object's value as it
is, and gives a new one the default. The rules of a field are the console's where it has one
(`app.console.settings.validate_building`, `validate_account`), so a value the console refuses
the import refuses too, with the same words."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, select

from app.console.settings import validate_account, validate_building, yuan
from app.estate.importing.read import Problem, Row, SheetRows
from app.estate.importing.spec import (ACCOUNTS, BUILDINGS, COMMON, DEFAULT_MAX_POWER_W,
                                       DEFAULT_PORT, FLAT_TARIFF, GATEWAYS, HOUSEHOLD, MAIN,
                                       MAX_UNIT, METER_KINDS, METERS, PROTOCOLS, SHARE_PERIODS,
                                       SHARE_SCHEMES, STRATEGY_LABELS, YES_NO, Sheet, choice_map,
                                       fold)
from app.estate.models import Account, Building, Estate, Gateway, Meter
from app.i18n import N_
from app.ledger.models import OPENING, LedgerEntry
from app.money import fen_to_yuan_str, parse_price
from app.privacy import mask_name, mask_phone
from app.tariffs.models import StoredTariff
from meters.protocol import DLT645_TCP, MODBUS_TCP

# The 户号 a resident can type on the resident pages (app/resident/views.py: ACCOUNT_NUMBER).
ACCOUNT_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,32}$")
# Mainland China: a mobile number (11 digits from 13–19, optionally +86), or a landline with
# its area code (010, 02x, 0xxx) and a 7–8 digit number, optionally an extension.
MOBILE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")
LANDLINE = re.compile(r"^(0\d{2,3})-?([2-9]\d{6,7})(?:-(\d{1,6}))?$")
HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
MAX_TEXT = 64
MAX_AREA = Decimal("100000")
MAX_POWER_W = 100_000_000
DEFAULT_COMMON_PRICE = Decimal("0.5583")
ACCOUNT_DEFAULTS = dict(low_balance_threshold_fen=1000, cut_below_fen=0, restore_threshold_fen=0,
                        emergency_credit_fen=0, strategy="residential", care_list=False,
                        tariff_id=None, tariff_uplift=False)
MAX_LISTED_CHANGES = 200


def mainland_phone(text: str) -> str | None:
    """The phone as stored (a mobile as its 11 digits; a landline as written, spaces dropped),
    or None when it is neither a mainland mobile nor a landline with its area code."""
    raw = re.sub(r"[\s()]", "", unicodedata.normalize("NFKC", text))
    if not raw.startswith("0"):
        mobile = MOBILE.match(raw.replace("-", ""))
        return mobile.group(1) if mobile else None
    return raw if LANDLINE.match(raw) else None


def _integer(text: str, low: int, high: int) -> int | None:
    raw = unicodedata.normalize("NFKC", text).strip()
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        return None
    return int(raw)


def _host(text: str) -> str | None:
    raw = text.strip()
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    return raw if HOSTNAME.match(raw) else None


# --- what the plan holds ---------------------------------------------------------------------

@dataclass
class Op:
    """One row's object: created (`existing` None) or updated (`changed` not empty), with the
    values it will hold (model columns; references by name, resolved when written)."""

    sheet: Sheet
    row: int
    key: str  # what the row is found by, as shown: a name, "网关 / 地址", a 户号
    existing: object | None
    values: dict
    changed: dict = field(default_factory=dict)  # column → (before, after)
    created: object | None = None  # the row written for it (app.estate.importing.apply)

    @property
    def action(self) -> str:
        return "create" if self.existing is None else ("update" if self.changed else "same")


@dataclass
class Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


@dataclass
class Plan:
    estate_id: int
    problems: list[Problem] = field(default_factory=list)
    buildings: list[Op] = field(default_factory=list)
    gateways: list[Op] = field(default_factory=list)
    meters: list[Op] = field(default_factory=list)
    accounts: list[Op] = field(default_factory=list)
    openings: dict[str, int] = field(default_factory=dict)  # new 户号 → opening balance, fen
    tariff_names: dict[int, str] = field(default_factory=dict)

    def ops(self) -> list[Op]:
        return self.buildings + self.gateways + self.meters + self.accounts

    def counts(self) -> dict[str, Counts]:
        found = {s.title: Counts() for s in (BUILDINGS, GATEWAYS, METERS, ACCOUNTS)}
        for op in self.ops():
            c = found[op.sheet.title]
            if op.action == "create":
                c.created += 1
            elif op.action == "update":
                c.updated += 1
            else:
                c.unchanged += 1
        return found

    def changes(self) -> list[Op]:
        return [op for op in self.ops() if op.action != "same"]

    @property
    def ok(self) -> bool:
        return not self.problems


# How each column is shown in a change (the console's preview, the audit log): its header and
# how its value is written. Personal data is masked (app/privacy.py).
FIELDS = {
    "building": {"share_scheme": "公摊方式", "share_period": "公摊周期",
                 "common_price_yuan_per_kwh": "公区电价", "line_loss_threshold_pct": "线损告警线",
                 "floor_area_m2": "建筑面积"},
    "gateway": {"host": "地址", "port": "端口", "protocol": "协议"},
    "meter": {"kind": "类型", "building": "楼栋", "max_power_w": "最大功率", "account": "户号"},
    "account": {"building": "楼栋", "household": "房号", "holder_name": "户主姓名",
                "holder_phone": "联系电话", "floor_area_m2": "建筑面积",
                "tariff_id": "电价方案", "price_yuan_per_kwh": "单一电价",
                "tariff_uplift": "一户多人口", "strategy": "收费策略",
                "care_list": "爱心档案", "low_balance_threshold_fen": "低余额提醒线",
                "cut_below_fen": "停电线", "restore_threshold_fen": "复电线",
                "emergency_credit_fen": "应急用电额度", "meter": "电表"},
}
_LABELS = {**{v: k for k, v in SHARE_SCHEMES.items()}, **{v: k for k, v in SHARE_PERIODS.items()},
           **{v: k for k, v in STRATEGY_LABELS.items()}, **{v: k for k, v in METER_KINDS.items()}}


def show(column: str, value, tariff_names: dict[int, str] | None = None) -> str:
    if value is None:
        return FLAT_TARIFF if column == "tariff_id" else ""
    if isinstance(value, tuple):  # a meter: (gateway, unit)
        return f"{value[0]} / {value[1]}"
    if column == "holder_phone":
        return mask_phone(value)
    if column == "holder_name":
        return mask_name(value)
    if column == "tariff_id":
        return (tariff_names or {}).get(value, str(value))
    if isinstance(value, bool):
        return "是" if value else "否"
    if column.endswith("_fen"):
        return fen_to_yuan_str(value)
    if isinstance(value, Decimal):
        text = format(value, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, str) and value in _LABELS and column in (
            "share_scheme", "share_period", "strategy", "kind"):
        return _LABELS[value]
    return str(value)


def describe(op: Op, tariff_names: dict[int, str] | None = None) -> tuple[str, str]:
    """(before, after) of an op as "字段=值; …": for an update the changed fields, for a
    creation every field it is given."""
    labels = FIELDS[_OBJECT[op.sheet.key]]
    if op.existing is None:
        after = [f"{labels[c]}={show(c, v, tariff_names)}" for c, v in op.values.items()
                 if c in labels and v not in (None, "")]
        return "", "; ".join(after)
    before = [f"{labels[c]}={show(c, old, tariff_names)}" for c, (old, _new) in op.changed.items()]
    after = [f"{labels[c]}={show(c, new, tariff_names)}" for c, (_old, new) in op.changed.items()]
    return "; ".join(before), "; ".join(after)


_OBJECT = {"buildings": "building", "gateways": "gateway", "meters": "meter",
           "accounts": "account"}


# --- what the database holds -----------------------------------------------------------------

def _chunks(items: list, size: int = 900):
    for i in range(0, len(items), size):
        yield items[i:i + size]


class State:
    """What the database holds that the file may refer to or change."""

    def __init__(self, session: Session, estate_id: int, sheets: dict[str, SheetRows]):
        self.buildings = {b.name: b for b in session.exec(
            select(Building).where(Building.estate_id == estate_id))}
        self.building_names = {b.id: name for name, b in self.buildings.items()}
        self.gateways: dict[str, list[Gateway]] = {}
        for gw in session.exec(select(Gateway).order_by(Gateway.id)):
            self.gateways.setdefault(gw.name, []).append(gw)
        self.gateway_names = {gw.id: gw.name for gws in self.gateways.values() for gw in gws}
        self.tariffs = {name: tid for tid, name in session.execute(
            sa.select(StoredTariff.id, StoredTariff.name))}
        named_gateways = {r.cells.get("gateway", "") for key in ("meters", "accounts")
                          if key in sheets for r in sheets[key].rows}
        named_gateways |= {r.cells.get("name", "") for r in sheets["gateways"].rows} \
            if "gateways" in sheets else set()
        gateway_ids = sorted(gw.id for name in named_gateways for gw in self.gateways.get(name, []))
        # Meters of the gateways the file names, and the estates their owners belong to.
        self.meters: dict[tuple[int, int], Meter] = {}
        self.gateway_estates: dict[int, set[int]] = {}
        owners: set[int] = set()
        for ids in _chunks(gateway_ids):
            for meter in session.exec(select(Meter).where(Meter.gateway_id.in_(ids))):
                self.meters[(meter.gateway_id, meter.unit_id)] = meter
                if meter.account_id is not None:
                    owners.add(meter.account_id)
            rows = session.execute(
                sa.select(Meter.gateway_id, Building.estate_id).select_from(Meter)
                .outerjoin(Account, Account.id == Meter.account_id)
                .join(Building, Building.id == sa.func.coalesce(Account.building_id,
                                                                 Meter.building_id))
                .where(Meter.gateway_id.in_(ids)).distinct())
            for gateway_id, owner_estate in rows:
                self.gateway_estates.setdefault(gateway_id, set()).add(owner_estate)
        numbers = sorted({r.cells.get("number", "") for r in sheets["accounts"].rows}
                         if "accounts" in sheets else set())
        self.accounts: dict[str, Account] = {}
        self.account_estate: dict[int, int] = {}
        for chunk in _chunks(numbers):
            for account, owner_estate in session.execute(
                    select(Account, Building.estate_id)
                    .join(Building, Building.id == Account.building_id)
                    .where(Account.number.in_(chunk))):
                self.accounts[account.number] = account
                self.account_estate[account.id] = owner_estate
        ids = sorted(a.id for a in self.accounts.values())
        self.account_meters: dict[int, list[tuple[int, int]]] = {}
        self.openings: dict[int, int] = {}
        for chunk in _chunks(ids):
            for account_id, gateway_id, unit in session.execute(
                    sa.select(Meter.account_id, Meter.gateway_id, Meter.unit_id)
                    .where(Meter.account_id.in_(chunk))):
                self.account_meters.setdefault(account_id, []).append((gateway_id, unit))
            self.openings.update(session.execute(
                sa.select(LedgerEntry.account_id, sa.func.sum(LedgerEntry.amount_fen))
                .where(LedgerEntry.account_id.in_(chunk), LedgerEntry.kind == OPENING)
                .group_by(LedgerEntry.account_id)).all())
        self.owner_numbers: dict[int, str] = {}
        owner_ids = sorted(owners)
        for chunk in _chunks(owner_ids):
            self.owner_numbers.update(session.execute(
                sa.select(Account.id, Account.number).where(Account.id.in_(chunk))).all())


# --- one row's cells -------------------------------------------------------------------------

class Cells:
    def __init__(self, plan: Plan, sheet: Sheet, row: Row):
        self.plan, self.sheet, self.row = plan, sheet, row
        self.ok = True

    def __getitem__(self, key: str) -> str:
        return self.row.cells.get(key, "")

    def bad(self, key: str, message: str, **params) -> None:
        self.ok = False
        column = self.sheet.header(key) if key else ""
        self.plan.problems.append(Problem(self.sheet.title, self.row.number, column, message,
                                          params))

    def required(self, key: str) -> str:
        value = self[key]
        if not value:
            self.bad(key, N_("必填，不能为空"))
        elif len(value) > MAX_TEXT:
            self.bad(key, N_("太长：最多 {n} 个字"), n=MAX_TEXT)
            return ""
        return value

    def optional_text(self, key: str) -> str:
        value = self[key]
        if len(value) > MAX_TEXT:
            self.bad(key, N_("太长：最多 {n} 个字"), n=MAX_TEXT)
            return ""
        return value

    def choice(self, key: str, choices: dict):
        """The value of a fixed-value column, None when empty; `False` marks a bad value."""
        text = self[key]
        if not text:
            return None
        value = choice_map(choices).get(fold(text).lower())
        if value is None:
            self.bad(key, N_("应为 {choices} 之一"), choices="、".join(choices))
            return ...
        return value

    def integer(self, key: str, low: int, high: int) -> int | None:
        text = self[key]
        if not text:
            return None
        value = _integer(text, low, high)
        if value is None:
            self.bad(key, N_("应为 {low}–{high} 的整数"), low=low, high=high)
        return value


def _diff(existing, values: dict, getter=getattr) -> dict:
    if existing is None:
        return {}
    return {c: (getter(existing, c), v) for c, v in values.items() if getter(existing, c) != v}


# --- the plan --------------------------------------------------------------------------------

def make_plan(session: Session, sheets: dict[str, SheetRows], estate_id: int,
              problems: list[Problem] | None = None,
              gateway_endpoints: dict[str, tuple[str, int]] | None = None) -> Plan:
    """Check every row of `sheets` against each other and the database; nothing is written.
    `gateway_endpoints` replaces the host and port of the named gateways (the demo's simulated
    gateways listen where the settings say)."""
    plan = Plan(estate_id, problems=list(problems or []))
    if session.get(Estate, estate_id) is None:
        plan.problems.append(Problem("", None, "", N_("小区 {id} 不存在"), {"id": estate_id}))
        return plan
    state = State(session, estate_id, sheets)
    plan.tariff_names = {tid: name for name, tid in state.tariffs.items()}
    file_buildings = _buildings(plan, state, sheets.get("buildings"))
    file_gateways = _gateways(plan, state, sheets.get("gateways"), gateway_endpoints or {})
    refs = _Refs(plan, state, file_buildings, file_gateways)
    meters = _meters(plan, state, refs, sheets.get("meters"))
    _accounts(plan, state, refs, meters, sheets.get("accounts"))
    return plan


MAX_BUILDING_AREA = Decimal(10_000_000)  # m²


def _buildings(plan: Plan, state: State, rows: SheetRows | None) -> set[str]:
    names: dict[str, int] = {}
    for row in rows.rows if rows else ():
        c = Cells(plan, BUILDINGS, row)
        name = c.required("name")
        if name in names:
            c.bad("name", N_("楼栋名称重复（第 {row} 行已有）"), row=names[name])
            continue
        if name:
            names[name] = row.number
        existing = state.buildings.get(name)
        form = {}
        for key, choices, default in (("share_scheme", SHARE_SCHEMES, "area"),
                                      ("share_period", SHARE_PERIODS, "day")):
            text = c[key]
            if text:
                form[key] = choice_map(choices).get(fold(text).lower(), text)
            else:
                form[key] = getattr(existing, key) if existing else default
        if c["line_loss_pct"]:
            form["line_loss_threshold_pct"] = unicodedata.normalize("NFKC", c["line_loss_pct"])
        elif existing is None:
            form["line_loss_threshold_pct"] = "5"
        changes, errors = validate_building(form)
        for field_name, message in errors.items():
            c.bad({"line_loss_threshold_pct": "line_loss_pct"}.get(field_name, field_name),
                  message)
        price = existing.common_price_yuan_per_kwh if existing else DEFAULT_COMMON_PRICE
        if c["common_price"]:
            try:
                price = parse_price(c["common_price"])
            except ValueError:
                c.bad("common_price", N_("应为不小于 0 的电价（元/千瓦时），最多四位小数"))
        area = existing.floor_area_m2 if existing else None
        if c["floor_area"]:
            try:
                area = parse_price(c["floor_area"])
            except ValueError:
                area = None
            if area is None or not 0 < area <= MAX_BUILDING_AREA:
                c.bad("floor_area", N_("应为大于 0、不超过 10000000 的面积（平方米），最多四位小数"))
        if not c.ok:
            continue
        values = {**changes, "common_price_yuan_per_kwh": price, "floor_area_m2": area}
        plan.buildings.append(Op(BUILDINGS, row.number, name, existing, values,
                                 _diff(existing, values)))
    return set(names)


def _gateways(plan: Plan, state: State, rows: SheetRows | None,
              endpoints: dict[str, tuple[str, int]]) -> set[str]:
    names: dict[str, int] = {}
    for row in rows.rows if rows else ():
        c = Cells(plan, GATEWAYS, row)
        name = c.required("name")
        if name in names:
            c.bad("name", N_("网关名称重复（第 {row} 行已有）"), row=names[name])
            continue
        if name:
            names[name] = row.number
        existing = None
        if name in state.gateways:
            if len(state.gateways[name]) > 1:
                c.bad("name", N_("系统中有多个名为「{name}」的网关，无法确定是哪一个"), name=name)
            else:
                existing = state.gateways[name][0]
                if state.gateway_estates.get(existing.id, set()) - {plan.estate_id}:
                    c.bad("name", N_("网关「{name}」已属于其他小区，请换一个名称"), name=name)
        host = None
        if c["host"]:
            host = _host(c["host"])
            if host is None:
                c.bad("host", N_("应为 IP 地址或主机名，例如 192.168.1.20"))
        else:
            c.required("host")
        port = c.integer("port", 1, 65535)
        protocol = c.choice("protocol", PROTOCOLS)
        if not c.ok:
            continue
        if name in endpoints:
            host, port = endpoints[name]
        values = {"host": host, "port": port if port is not None
                  else (existing.port if existing else DEFAULT_PORT),
                  "protocol": protocol or (existing.protocol if existing else MODBUS_TCP)}
        plan.gateways.append(Op(GATEWAYS, row.number, name, existing, values,
                                _diff(existing, values)))
    return set(names)


class _Refs:
    """Names the rows refer to: in the file, or in the database."""

    def __init__(self, plan: Plan, state: State, buildings: set[str], gateways: set[str]):
        self.plan, self.state = plan, state
        self.file_buildings, self.file_gateways = buildings, gateways

    def building(self, c: Cells, key: str) -> str | None:
        name = c[key]
        if name in self.file_buildings or name in self.state.buildings:
            return name
        c.bad(key, N_("楼栋「{name}」不存在：请先在楼栋表中添加"), name=name)
        return None

    def protocol(self, gateway: str | None) -> str:
        """The protocol the named gateway speaks: as its row in the file says, or its database
        row (Modbus TCP when neither can say)."""
        for op in self.plan.gateways:
            if op.key == gateway:
                return op.values["protocol"]
        found = self.state.gateways.get(gateway, [])
        return found[0].protocol if len(found) == 1 else MODBUS_TCP

    def unit(self, c: Cells, key: str, gateway: str | None) -> int | None:
        """A meter's address on its gateway's bus, checked for the gateway's protocol: a Modbus
        unit id 1–247, or a DL/T 645 address of up to 12 digits (leading zeros may be left out)."""
        if self.protocol(gateway) != DLT645_TCP:
            return c.integer(key, 1, MAX_UNIT)
        text = c[key]
        if not text:
            return None
        value = _integer(text, 0, 10**12 - 2) if len(text) <= 12 else None
        if value is None:
            c.bad(key, N_("应为 DL/T 645 表地址：铭牌上的 12 位表号，例如 000012345678"))
        return value

    def gateway(self, c: Cells, key: str) -> str | None:
        """The gateway's name if known (its database row, when it has one, in `db_gateway`)."""
        name = c[key]
        if name in self.file_gateways:
            return name
        found = self.state.gateways.get(name, [])
        if not found:
            c.bad(key, N_("网关「{name}」不存在：请先在网关表中添加"), name=name)
            return None
        if len(found) > 1:
            c.bad(key, N_("系统中有多个名为「{name}」的网关，无法确定是哪一个"), name=name)
            return None
        if self.state.gateway_estates.get(found[0].id, set()) - {self.plan.estate_id}:
            c.bad(key, N_("网关「{name}」已属于其他小区"), name=name)
            return None
        return name

    def db_meter(self, gateway: str, unit: int) -> Meter | None:
        found = self.state.gateways.get(gateway, [])
        if len(found) != 1:
            return None
        return self.state.meters.get((found[0].id, unit))


def _meter_kind(meter: Meter) -> str:
    return MAIN if meter.building_main else COMMON if meter.common_area else HOUSEHOLD


def _meter_get(meter: Meter, column: str, building_names: dict[int, str] = None):
    if column == "kind":
        return _meter_kind(meter)
    if column == "building":
        return building_names.get(meter.building_id) if meter.building_id else None
    return getattr(meter, column)


def _meters(plan: Plan, state: State, refs: _Refs, rows: SheetRows | None) -> dict:
    """The meter sheet's rows by (gateway, unit): (row number, kind, building or None)."""
    found: dict[tuple[str, int], tuple[int, str, str | None, Op]] = {}
    for row in rows.rows if rows else ():
        c = Cells(plan, METERS, row)
        gateway = refs.gateway(c, "gateway") if c.required("gateway") else None
        unit = refs.unit(c, "unit", gateway) if c.required("unit") else None
        kind = c.choice("kind", METER_KINDS)
        building = None
        if c["building"]:
            building = refs.building(c, "building")
        elif kind in (COMMON, MAIN):
            c.bad("building", N_("公区表和总表必须填写所属楼栋"))
        max_power = c.integer("max_power", 1, MAX_POWER_W)
        if gateway is None or unit is None:
            continue
        key = (gateway, unit)
        if key in found:
            c.bad("unit", N_("网关「{gateway}」上表地址 {unit} 重复（第 {row} 行已有）"),
                  gateway=gateway, unit=unit, row=found[key][0])
            continue
        existing = refs.db_meter(gateway, unit)
        if kind is None:
            kind = _meter_kind(existing) if existing else HOUSEHOLD
        if kind is ...:
            continue
        if existing is not None and existing.account_id is not None and kind != HOUSEHOLD:
            c.bad("kind", N_("这块电表属于户号 {number}，不能改为{kind}"),
                  number=state.owner_numbers.get(existing.account_id, "?"),
                  kind=next(k for k, v in METER_KINDS.items() if v == kind))
        if not c.ok:
            found[key] = (row.number, kind, None, None)
            continue
        values = {"kind": kind, "building": building if kind != HOUSEHOLD else None,
                  "max_power_w": max_power if max_power is not None
                  else (existing.max_power_w if existing else DEFAULT_MAX_POWER_W)}
        if kind == HOUSEHOLD:
            values.pop("building")
        op = Op(METERS, row.number, f"{gateway} / {unit}", existing, values,
                _diff(existing, values, lambda m, col: _meter_get(m, col, state.building_names)))
        plan.meters.append(op)
        found[key] = (row.number, kind, building, op)
    return found


def _accounts(plan: Plan, state: State, refs: _Refs, meters: dict, rows: SheetRows | None):
    numbers: dict[str, int] = {}
    owners: dict[tuple[str, int], tuple[str, int]] = {}  # meter → (户号, row) in this file
    tariff_ids = set(state.tariffs.values())
    for row in rows.rows if rows else ():
        c = Cells(plan, ACCOUNTS, row)
        number = c.required("number")
        if number and not ACCOUNT_NUMBER.match(number):
            c.bad("number", N_("户号只能由数字、字母和 - 组成，最长 32 位"))
            number = ""
        if number in numbers:
            c.bad("number", N_("户号重复（第 {row} 行已有）"), row=numbers[number])
            continue
        if number:
            numbers[number] = row.number
        existing = state.accounts.get(number)
        if existing is not None and state.account_estate.get(existing.id) != plan.estate_id:
            c.bad("number", N_("这个户号已属于其他小区"))
            existing = None
        building = refs.building(c, "building") if c.required("building") else None
        household = c.required("household")
        holder_name = c.optional_text("holder_name")
        phone = ""
        if c["phone"]:
            phone = mainland_phone(c["phone"])
            if phone is None:
                c.bad("phone", N_("不是有效的电话号码：应为 11 位手机号或带区号的固定电话"
                                  "（例如 0571-88886666）"))
        area = None
        if c["floor_area"]:
            try:
                area = parse_price(c["floor_area"])
            except ValueError:
                area = None
            if area is None or area > MAX_AREA:
                c.bad("floor_area", N_("应为 0–100000 的面积（平方米），最多四位小数"))
        tariff_id = existing.tariff_id if existing else None
        if c["tariff"]:
            if fold(c["tariff"]) == fold(FLAT_TARIFF):
                tariff_id = None
            elif c["tariff"] in state.tariffs:
                tariff_id = state.tariffs[c["tariff"]]
            else:
                c.bad("tariff", N_("电价方案「{name}」不存在（feikong tariff list 可查看已有方案）"),
                      name=c["tariff"])
        price = None
        if c.required("price"):
            try:
                price = parse_price(c["price"])
            except ValueError:
                price = None
            if price is None or price <= 0:
                c.bad("price", N_("应为大于 0 的电价（元/千瓦时），最多四位小数，例如 0.5583"))
        uplift, care = c.choice("uplift", YES_NO), c.choice("care", YES_NO)
        strategy = c.choice("strategy", STRATEGY_LABELS)
        current = {k: (getattr(existing, k) if existing else v) for k, v in ACCOUNT_DEFAULTS.items()}
        form = {"tariff": str(tariff_id) if tariff_id is not None else "flat",
                "tariff_uplift": "on" if (current["tariff_uplift"] if uplift is None else uplift)
                is True else "",
                "strategy": current["strategy"] if strategy in (None, ...) else strategy,
                "care_list": "on" if (current["care_list"] if care is None else care)
                is True else ""}
        for key, field_name, column in (("low_balance", "low_balance", "low_balance_threshold_fen"),
                                        ("cut_below", "cut_below", "cut_below_fen"),
                                        ("restore_above", "restore_above",
                                         "restore_threshold_fen"),
                                        ("emergency", "emergency_credit", "emergency_credit_fen")):
            form[field_name] = (unicodedata.normalize("NFKC", c[key]) if c[key]
                                else fen_to_yuan_str(current[column]))
        settings, errors = validate_account(form, tariff_ids)
        for field_name, message in errors.items():
            if field_name == "strategy" and strategy is ...:
                continue  # said already
            c.bad({"emergency_credit": "emergency", "tariff": "tariff"}.get(field_name, field_name),
                  message)
        opening = None
        if c["opening"]:
            opening = yuan(unicodedata.normalize("NFKC", c["opening"]), negative=True)
            if opening is None:
                c.bad("opening", N_("应为金额（元），最多两位小数，可为负数"))
            elif existing is not None and opening != state.openings.get(existing.id, 0):
                c.bad("opening", N_("已有账户的期初余额不能修改（系统中为 {was} 元）：请在控制台"
                                    "对该户做调账"),
                      was=fen_to_yuan_str(state.openings.get(existing.id, 0)))
        meter_key = _account_meter(c, state, refs, meters, owners, number, existing)
        if not c.ok:
            continue
        values = {"building": building, "household": household,
                  "holder_name": holder_name or (existing.holder_name if existing else ""),
                  "holder_phone": phone or (existing.holder_phone if existing else ""),
                  "floor_area_m2": area if area is not None
                  else (existing.floor_area_m2 if existing else Decimal("0")),
                  "price_yuan_per_kwh": price, **settings, "meter": meter_key}

        def get(account, column):
            if column == "building":
                return state.building_names.get(account.building_id)
            if column == "meter":  # the meter is attached, never moved (checked above)
                return meter_key
            return getattr(account, column)

        op = Op(ACCOUNTS, row.number, number, existing, values, _diff(existing, values, get))
        plan.accounts.append(op)
        if existing is None and opening:
            plan.openings[number] = opening
        if meter_key is not None:
            _meter_for_account(plan, state, refs, meters, meter_key, number, existing, building)


def _account_meter(c: Cells, state: State, refs: _Refs, meters: dict, owners: dict,
                   number: str, existing: Account | None):
    """The (gateway, unit) of the account's meter, checked: known gateway, household kind, on
    no other account; None when the row names none."""
    if not c["gateway"] and not c["unit"]:
        return None
    if not c["gateway"] or not c["unit"]:
        c.bad("gateway" if not c["gateway"] else "unit", N_("网关名称和表地址要一起填写"))
        return None
    gateway = refs.gateway(c, "gateway")
    unit = refs.unit(c, "unit", gateway)
    if gateway is None or unit is None:
        return None
    key = (gateway, unit)
    if key in owners:
        c.bad("unit", N_("这块电表（{gateway} / {unit}）已是户号 {number} 的电表（第 {row} 行）："
                         "一块电表只能属于一个户号"),
              gateway=gateway, unit=unit, number=owners[key][0], row=owners[key][1])
        return None
    if number:
        owners[key] = (number, c.row.number)
    if key in meters and meters[key][1] != HOUSEHOLD:
        c.bad("unit", N_("这块电表（{gateway} / {unit}）在电表表第 {row} 行是{kind}，不能作为住户"
                         "的电表"), gateway=gateway, unit=unit, row=meters[key][0],
              kind=next(k for k, v in METER_KINDS.items() if v == meters[key][1]))
        return None
    db_meter = refs.db_meter(gateway, unit)
    if db_meter is not None:
        owner = state.owner_numbers.get(db_meter.account_id) if db_meter.account_id else None
        if owner is not None and owner != number:
            c.bad("unit", N_("这块电表（{gateway} / {unit}）已属于户号 {number}：一块电表只能属于"
                             "一个户号"), gateway=gateway, unit=unit, number=owner)
            return None
        if key not in meters and _meter_kind(db_meter) != HOUSEHOLD:
            c.bad("unit", N_("这块电表（{gateway} / {unit}）是公区表或总表，不能作为住户的电表"),
                  gateway=gateway, unit=unit)
            return None
    if existing is not None:
        has = state.account_meters.get(existing.id, [])
        if has and (db_meter is None or (db_meter.gateway_id, db_meter.unit_id) not in has):
            shown = "、".join(f"{state.gateway_names.get(g, g)} / {u}" for g, u in has)
            c.bad("unit", N_("户号 {number} 已有电表 {meters}：导入不能换表"), number=number,
                  meters=shown)
            return None
    return key


def _meter_for_account(plan: Plan, state: State, refs: _Refs, meters: dict, key, number: str,
                       existing: Account | None, building: str | None) -> None:
    """The meter an account row names: attached to its account (the meter sheet's op, a meter
    in the database, or a new household meter)."""
    gateway, unit = key
    row_number, _kind, meter_building, op = meters.get(key, (None, None, None, None))
    if meter_building and meter_building != building:
        plan.problems.append(Problem(METERS.title, row_number, METERS.header("building"), N_(
            "户表的楼栋「{meter}」与户号 {number} 的楼栋「{account}」不一致"),
            {"meter": meter_building, "number": number, "account": building}))
        return
    if op is None and key in meters:
        return  # its row is wrong: said already
    if op is None:
        db_meter = refs.db_meter(gateway, unit)
        op = Op(METERS, 0, f"{gateway} / {unit}", db_meter,
                {"kind": HOUSEHOLD, "max_power_w": db_meter.max_power_w if db_meter
                 else DEFAULT_MAX_POWER_W})
        plan.meters.append(op)
    op.values["account"] = number
    if op.existing is not None:
        was = state.owner_numbers.get(op.existing.account_id) if op.existing.account_id else None
        if was != number:
            op.changed["account"] = (was, number)
