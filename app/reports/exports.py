"""The exports (导出) the console offers: each a `Report` made from the database for a scope (the
buildings a manager sees) and its parameters, written as XLSX or CSV (app/reports/table.py).

    report = build(session, "bills", Scope(...), {"month": "2026-11"})
    data = to_bytes(report, "xlsx")

Kinds: `bills` (a month's bills, one row per household: app/reports/bills.py), `payments`
(a local day's or month's payments and refunds by channel, beside the reconciliation:
app/reports/payments.py), `arrears` (households below zero and their age: app/reports/arrears.py),
`commands` (a month's cuts, restores and reads, with their outcome), `anomalies` (a month's) and
`audit` (a month's audit log). Nothing here writes; the caller records the audit entry of the
export in its own transaction (`audit_values`).

Personal data: a holder's name and phone are written whole for the roles entitled to them
(`Scope.personal`: estate administrators and finance), masked (张*, 138****5678) otherwise.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import Session

from app.anomalies.models import Anomaly
from app.commands.models import Command, CommandAttempt
from app.console.models import AuditEntry
from app.db import utcnow
from app.estate.models import Account, Building, Estate, Gateway, Meter
from app.i18n import N_, gettext
from app.ledger.days import day_start
from app.privacy import mask_name, mask_phone
from app.reports import arrears as arrears_module
from app.reports import bills as bills_module
from app.reports import payments as payments_module
from app.reports.table import (COUNT, DATE, KWH, TEXT, TIME, YUAN, Column, Report, Table)
from app.resident.statements import next_month, parse_month
from app.tariffs import CHINA_TZ


class ExportRefused(ValueError):
    """Parameters an export cannot take; the message (zh, marked) says which."""


@dataclass(frozen=True)
class Scope:
    """What an export may show: the estate, the buildings (ids, already narrowed to what the
    manager sees), whether every building of the estate is in it, whether holders' names and
    phones are shown whole, and who exports (for the 说明 sheet)."""

    estate_id: int
    building_ids: tuple[int, ...]
    whole_estate: bool
    personal: bool
    by: str
    manager_id: int | None = None


KINDS = {
    "bills": N_("月度账单（按楼栋，每户一行）"),
    "payments": N_("缴费明细与渠道汇总（按日或按月，对照对账）"),
    "arrears": N_("欠费与账龄"),
    "commands": N_("停复电命令及结果"),
    "anomalies": N_("异常"),
    "audit": N_("操作记录"),
}
FILE_NAMES = {"bills": "月度账单", "payments": "缴费", "arrears": "欠费账龄",
              "commands": "停复电命令", "anomalies": "异常", "audit": "操作记录"}
MONTHLY = {"bills", "commands", "anomalies", "audit"}
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def period(kind: str, params: dict) -> tuple[dt.date, dt.date, str]:
    """The local days [first, last] an export covers, and their label; ExportRefused when the
    parameters do not say (a month "YYYY-MM"; payments also a day "YYYY-MM-DD")."""
    if kind == "arrears":
        today = utcnow().astimezone(CHINA_TZ).date()
        return today, today, today.isoformat()
    day_text = str(params.get("day") or "")
    if kind == "payments" and day_text:
        try:
            day = dt.date.fromisoformat(day_text) if _DAY.fullmatch(day_text) else None
        except ValueError:
            day = None
        if day is None or not 2000 <= day.year <= 2999:
            raise ExportRefused(N_("日期应为 YYYY-MM-DD"))
        return day, day, day.isoformat()
    month = parse_month(str(params.get("month") or ""))
    if month is None:
        raise ExportRefused(N_("月份应为 YYYY-MM"))
    return month, next_month(month) - dt.timedelta(days=1), f"{month:%Y-%m}"


def buildings_of(session: Session, scope: Scope, params: dict) -> list[Building]:
    """The buildings the export covers: the one chosen (`building`, an id within the scope),
    or every building in scope. ExportRefused for a building outside it (the console answers
    404 before asking)."""
    chosen = str(params.get("building") or "")
    rows = list(session.execute(sa.select(Building).where(
        Building.id.in_(list(scope.building_ids) or [-1])).order_by(Building.id)).scalars())
    if chosen:
        rows = [b for b in rows if str(b.id) == chosen]
        if not rows:
            raise ExportRefused(N_("没有这个楼栋"))
    return rows


def check(session: Session, kind: str, scope: Scope, params: dict) -> None:
    """Raise ExportRefused unless `build` would take these parameters."""
    if kind not in KINDS:
        raise ExportRefused(N_("没有这种导出"))
    period(kind, params)
    buildings_of(session, scope, params)


def file_name(kind: str, params: dict, fmt: str) -> str:
    label = period(kind, params)[2]
    building = str(params.get("building") or "")
    return f"{FILE_NAMES[kind]}-{label}{'-楼栋' + building if building else ''}.{fmt}"


def audit_values(kind: str, params: dict, fmt: str, rows: int) -> dict:
    """The audit entry of an export (action, object, after): what, which period, building."""
    label = period(kind, params)[2]
    building = str(params.get("building") or "") or "all"
    return dict(action=f"export.{kind}", object_type="export", object_id=kind,
                after=f"{fmt}; period {label}; building {building}; {rows} rows")


def build(session: Session, kind: str, scope: Scope, params: dict, *,
          progress=None, now: dt.datetime | None = None) -> Report:
    """The report of `kind` for `scope` and `params` (see `check`). Its rows may be produced
    while it is written (the bills: a chunk of households at a time): write it inside the same
    transaction. `progress(done, total)` for the bills."""
    check(session, kind, scope, params)
    first, last, label = period(kind, params)
    buildings = buildings_of(session, scope, params)
    ids = [b.id for b in buildings]
    estate = session.get(Estate, scope.estate_id)
    about = [(N_("导出内容"), gettext(KINDS[kind])), (N_("小区"), estate.name if estate else ""),
             (N_("楼栋"), "、".join(b.name for b in buildings) or "—"),
             (N_("期间"), label),
             (N_("导出人"), scope.by),
             (N_("导出时间"), (now or utcnow()).astimezone(CHINA_TZ)
              .strftime("%Y-%m-%d %H:%M:%S")),
             (N_("金额"), gettext(N_("单位为元，由账本的整数分精确换算，无公式")))]
    if not scope.personal:
        about.append((N_("个人信息"), gettext(N_("户主姓名和电话已打码"))))
    maker = {"bills": _bills, "payments": _payments, "arrears": _arrears,
             "commands": _commands, "anomalies": _anomalies, "audit": _audit}[kind]
    tables, notes = maker(session, scope, ids, first, last, progress=progress, now=now)
    about += [(N_("说明"), note) for note in notes]
    name = f"{FILE_NAMES[kind]}-{label}"
    return Report(name=name, tables=tables, about=about)


def _name(scope: Scope, name: str) -> str:
    return name if scope.personal else mask_name(name)


def _phone(scope: Scope, phone: str) -> str:
    return phone if scope.personal else mask_phone(phone)


# --- the bills -----------------------------------------------------------------------------------

def _bills(session, scope, ids, first, last, *, progress=None, now=None):
    month = first
    rows = list(bills_module.month_bills(session, ids, month, now=now, progress=progress))
    periods, tiers = [], []
    for _h, bill in rows:
        for line in bill.energy_lines:
            if line.period is not None and line.period not in periods:
                periods.append(line.period)
            if line.tier is not None and line.tier not in tiers:
                tiers.append(line.tier)
    order = {name: i for i, name in enumerate(("尖", "尖峰", "spike", "峰", "高峰", "peak", "平",
                                               "平段", "flat", "谷", "低谷", "valley"))}
    periods.sort(key=lambda p: (order.get(p, 99), p))
    tiers.sort()
    columns = [Column(N_("楼栋"), TEXT, 10), Column(N_("户号"), TEXT, 12),
               Column(N_("房号"), TEXT, 12), Column(N_("户主"), TEXT, 10),
               Column(N_("电话"), TEXT, 14), Column(N_("期初余额"), YUAN, 13),
               Column(N_("用电量（kWh）"), KWH, 13), Column(N_("电费"), YUAN, 12)]
    for p in periods:
        columns += [Column(f"{p} " + gettext(N_("电量（kWh）")), KWH, 12),
                    Column(f"{p} " + gettext(N_("电费")), YUAN, 12)]
    for t in tiers:
        columns += [Column(gettext(N_("第{n}档")).format(n=t) + " " + gettext(N_("电量（kWh）")),
                           KWH, 13),
                    Column(gettext(N_("第{n}档")).format(n=t) + " " + gettext(N_("电费")),
                           YUAN, 12)]
    columns += [Column(N_("公摊"), YUAN, 12), Column(N_("缴费"), YUAN, 12),
                Column(N_("调账"), YUAN, 12), Column(N_("退款"), YUAN, 12),
                Column(N_("应急用电"), YUAN, 12), Column(N_("开户余额"), YUAN, 12),
                Column(N_("期末余额"), YUAN, 13)]

    def row(h, bill) -> list:
        values = [h.building, h.number, h.household, _name(scope, h.holder_name),
                  _phone(scope, h.holder_phone), bill.opening_fen, bill.energy_wh,
                  -bill.charges_fen]
        for p in periods:
            values += [sum(x.energy_wh for x in bill.energy_lines if x.period == p),
                       -sum(x.amount_fen for x in bill.energy_lines if x.period == p)]
        for t in tiers:
            values += [sum(x.energy_wh for x in bill.energy_lines if x.tier == t),
                       -sum(x.amount_fen for x in bill.energy_lines if x.tier == t)]
        return values + [-bill.shares_fen, bill.payments_fen, bill.adjustments_fen,
                         -bill.refunds_fen, bill.emergency_fen, bill.openings_fen,
                         bill.closing_fen]

    main = Table(N_("月度账单"), columns, [row(h, b) for h, b in rows])
    by_building: dict[str, list] = {}
    summed = [c for c in columns[5:]]
    for h, bill in rows:
        values = row(h, bill)[5:]
        acc = by_building.setdefault(h.building, [0] * len(values) + [0])
        for i, v in enumerate(values):
            acc[i] += v
        acc[-1] += 1
    per_building = Table(N_("楼栋合计"), [Column(N_("楼栋"), TEXT, 12)] + summed
                         + [Column(N_("户数"), COUNT, 8)],
                         [[name] + acc for name, acc in by_building.items()])
    notes = [gettext(N_("期末余额 = 期初余额 − 电费 − 公摊 + 缴费 + 调账 − 退款 + 应急用电 + "
                        "开户余额；电费、公摊、退款以正数列出")),
             gettext(N_("按时段、按阶梯的电费由每小时扣费的说明按电量与单价精确分摊，合计等于电费"))]
    if rows and rows[0][1].current:
        notes.append(gettext(N_("本月尚未结束：截至导出时已记账的金额")))
    return [main, per_building], notes


# --- payments ------------------------------------------------------------------------------------

def _payments(session, scope, ids, first, last, *, progress=None, now=None):
    found = payments_module.payments(session, ids, first, last,
                                     with_reconciliation=scope.whole_estate)
    columns = [Column(N_("日期"), DATE, 12), Column(N_("渠道"), TEXT, 10),
               Column(N_("缴费笔数"), COUNT, 9), Column(N_("缴费金额"), YUAN, 14),
               Column(N_("退款笔数"), COUNT, 9), Column(N_("退款金额"), YUAN, 14),
               Column(N_("净额"), YUAN, 14)]
    if scope.whole_estate:
        columns += [Column(N_("对账单笔数"), COUNT, 10), Column(N_("对账单净额"), YUAN, 14),
                    Column(N_("差异数"), COUNT, 8), Column(N_("与对账单一致"), TEXT, 12)]
    rows = []
    for d in found.days:
        values = [d.day, gettext(payments_module.CHANNEL_ZH.get(d.channel, d.channel)),
                  d.payments, d.paid_fen, d.refunds, d.refunded_fen, d.net_fen]
        if scope.whole_estate:
            run = d.run
            if run is None:
                values += [None, None, None, gettext(N_("未对账"))]
            else:
                same = run.bill_amount_fen == d.net_fen and run.lines == d.payments + d.refunds
                values += [run.lines, run.bill_amount_fen, run.differences,
                           gettext(N_("一致")) if same and not run.differences
                           else gettext(N_("不一致"))]
        rows.append(values)
    summary = Table(N_("渠道汇总"), columns, rows)
    lines = Table(N_("明细"), [
        Column(N_("时间"), TIME, 19), Column(N_("类型"), TEXT, 8), Column(N_("渠道"), TEXT, 10),
        Column(N_("楼栋"), TEXT, 10), Column(N_("户号"), TEXT, 12), Column(N_("房号"), TEXT, 12),
        Column(N_("商户单号"), TEXT, 26), Column(N_("渠道单号"), TEXT, 30),
        Column(N_("金额"), YUAN, 12)],
        [[at, gettext(N_("缴费") if kind == "payment" else N_("退款")),
          gettext(payments_module.CHANNEL_ZH.get(channel, channel)), building, number,
          household, out_no, provider_no, fen]
         for at, kind, channel, number, building, household, out_no, provider_no, fen
         in found.lines])
    notes = [gettext(N_("按北京时间的付款成功时间（退款为退款成功时间）归日，与对账相同"))]
    if not scope.whole_estate:
        notes.append(gettext(N_("对账按商户号进行，只对可查看全部楼栋的角色列出")))
    return [summary, lines], notes


# --- arrears -------------------------------------------------------------------------------------

def _arrears(session, scope, ids, first, last, *, progress=None, now=None):
    found = arrears_module.arrears(session, ids, now=now)
    columns = [Column(N_("楼栋"), TEXT, 10), Column(N_("户号"), TEXT, 12),
               Column(N_("房号"), TEXT, 12), Column(N_("户主"), TEXT, 10),
               Column(N_("电话"), TEXT, 14), Column(N_("欠费"), YUAN, 12),
               Column(N_("欠费起始日"), DATE, 12), Column(N_("账龄（天）"), COUNT, 10, total=False),
               Column(N_("账龄段"), TEXT, 12)]
    columns += [Column(label, YUAN, 12) for _low, _high, label in arrears_module.BUCKETS]
    rows = []
    for a in found:
        buckets = [None] * len(arrears_module.BUCKETS)
        buckets[a.bucket] = a.owed_fen
        rows.append([a.building, a.number, a.household, _name(scope, a.holder_name),
                     _phone(scope, a.holder_phone), a.owed_fen, a.since, a.age_days,
                     arrears_module.BUCKETS[a.bucket][2]] + buckets)
    notes = [gettext(N_("欠费 = 账本余额减去未还的应急用电（自有余额）低于零的部分")),
             gettext(N_("账龄 = 自余额最后一次在日终降到零以下起的天数（当天为 0）"))]
    return [Table(N_("欠费与账龄"), columns, rows)], notes


# --- commands, anomalies, the audit log ----------------------------------------------------------

ACTION_ZH = {"cut": N_("停电"), "restore": N_("复电"), "read": N_("抄表")}
STATE_ZH = {"pending": N_("执行中"), "done": N_("已完成"), "expired": N_("已过期"),
            "cancelled": N_("已取消")}


def _window(first, last):
    return day_start(first), day_start(last + dt.timedelta(days=1))


def _meter_scope(ids):
    """Meters of the buildings: households' (through their account) and the buildings' own."""
    return sa.or_(Account.building_id.in_(ids or [-1]),
                  sa.and_(Meter.account_id.is_(None), Meter.building_id.in_(ids or [-1])))


def _commands(session, scope, ids, first, last, *, progress=None, now=None):
    start, end = _window(first, last)
    found = session.execute(
        sa.select(Command, Account.number, Account.household, Gateway.name, Meter.unit_id)
        .join(Meter, Meter.id == Command.meter_id)
        .join(Gateway, Gateway.id == Meter.gateway_id)
        .outerjoin(Account, Account.id == Meter.account_id)
        .where(_meter_scope(ids), Command.created_at >= start, Command.created_at < end)
        .order_by(Command.created_at, Command.id)).all()
    last_attempt = {}
    command_ids = [c.id for c, *_ in found]
    for i in range(0, len(command_ids), 500):
        for attempt in session.execute(
                sa.select(CommandAttempt).where(CommandAttempt.command_id.in_(
                    command_ids[i:i + 500])).order_by(CommandAttempt.id)).scalars():
            last_attempt[attempt.command_id] = attempt
    rows = []
    for c, number, household, gateway, unit in found:
        attempt = last_attempt.get(c.id)
        rows.append([c.created_at, number or "", household or "", f"{gateway} / {unit}",
                     gettext(ACTION_ZH.get(c.action, c.action)),
                     gettext(STATE_ZH.get(c.state, c.state)), c.reason, c.attempts,
                     c.completed_at,
                     f"{attempt.outcome} {attempt.detail}".strip() if attempt else ""])
    columns = [Column(N_("时间"), TIME, 19), Column(N_("户号"), TEXT, 12),
               Column(N_("房号"), TEXT, 12), Column(N_("电表"), TEXT, 16),
               Column(N_("命令"), TEXT, 8), Column(N_("结果"), TEXT, 10),
               Column(N_("原因"), TEXT, 40), Column(N_("尝试次数"), COUNT, 9),
               Column(N_("完成时间"), TIME, 19), Column(N_("最后一次尝试"), TEXT, 40)]
    return [Table(N_("停复电命令"), columns, rows)], []


def _anomalies(session, scope, ids, first, last, *, progress=None, now=None):
    start, end = _window(first, last)
    found = session.execute(
        sa.select(Anomaly, Account.number, Account.household)
        .outerjoin(Account, Account.id == Anomaly.account_id)
        .outerjoin(Meter, Meter.id == Anomaly.meter_id)
        .where(sa.or_(Account.building_id.in_(ids or [-1]),
                      sa.and_(Anomaly.account_id.is_(None), Meter.building_id.in_(ids or [-1])),
                      sa.and_(Anomaly.account_id.is_(None), Anomaly.meter_id.is_(None),
                              Anomaly.building_id.in_(ids or [-1]))),
               Anomaly.created_at >= start, Anomaly.created_at < end)
        .order_by(Anomaly.created_at, Anomaly.id)).all()
    rows = [[a.created_at, a.kind, number or "", household or "", a.detail,
             a.energy_wh, a.resolved_at, a.resolution] for a, number, household in found]
    columns = [Column(N_("时间"), TIME, 19), Column(N_("类型"), TEXT, 20),
               Column(N_("户号"), TEXT, 12), Column(N_("房号"), TEXT, 12),
               Column(N_("详情"), TEXT, 50), Column(N_("未计费电量（kWh）"), KWH, 14),
               Column(N_("处理时间"), TIME, 19), Column(N_("处理结果"), TEXT, 40)]
    return [Table(N_("异常"), columns, rows)], []


def _audit(session, scope, ids, first, last, *, progress=None, now=None):
    start, end = _window(first, last)
    query = (sa.select(AuditEntry).where(AuditEntry.estate_id == scope.estate_id,
                                         AuditEntry.at >= start, AuditEntry.at < end)
             .order_by(AuditEntry.at, AuditEntry.id))
    notes = []
    if not scope.whole_estate:  # their own acts, and acts on their buildings and households
        numbers = sa.select(Account.number).where(Account.building_id.in_(ids or [-1]))
        query = query.where(sa.or_(
            AuditEntry.manager_id == scope.manager_id,
            sa.and_(AuditEntry.object_type == "account", AuditEntry.object_id.in_(numbers)),
            sa.and_(AuditEntry.object_type == "building",
                    AuditEntry.object_id.in_([str(i) for i in ids] or ["-1"]))))
        notes.append(gettext(N_("楼栋经理的导出只含本人的操作和所管楼栋、住户的操作")))
    rows = [[e.at, e.manager_name, e.client, e.action, e.object_type, e.object_id, e.before,
             e.after, e.reason] for e in session.execute(query).scalars()]
    columns = [Column(N_("时间"), TIME, 19), Column(N_("操作人"), TEXT, 12),
               Column(N_("地址"), TEXT, 15), Column(N_("操作"), TEXT, 20),
               Column(N_("对象类型"), TEXT, 12), Column(N_("对象"), TEXT, 14),
               Column(N_("变更前"), TEXT, 30), Column(N_("变更后"), TEXT, 40),
               Column(N_("理由"), TEXT, 30)]
    return [Table(N_("操作记录"), columns, rows, totals=False)], notes
