"""What an estate administrator may change in the console, checked field by field: the estate's
cut policy and contact, a household's thresholds, care list, emergency credit, strategy and
tariff (which of the append-only tariffs it is priced by; `feikong tariff assign` alike), a
building's share scheme and period. `validate_*` read a submitted form and return the changes
(column → new value) or the errors (field → a message in Chinese); nothing is written unless
every field is right, and every change is audited with before → after. The values are read by
the worker and the web at their next decision: no restart."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from app.billing.shares import SCHEMES
from app.money import yuan_str_to_fen
from app.policy.strategies import STRATEGIES

PHONE = re.compile(r"^[0-9][0-9-]{6,19}$")
MAX_LEAD_H = 168
MAX_EMERGENCY_FEN = 50_000  # 500 元: an advance, not a loan
MAX_THRESHOLD_FEN = 10_000_000  # 100,000 元


def _time(value: str) -> str | None:
    try:
        parsed = dt.time.fromisoformat(value)
    except ValueError:
        return None
    if parsed.second or parsed.microsecond or not re.fullmatch(r"\d{2}:\d{2}", value):
        return None
    return value


def yuan(value: str, *, negative: bool = False) -> int | None:
    """Whole fen from a yuan amount with at most two decimals (`app.money.yuan_str_to_fen`,
    below zero where `negative`); None when it is not one, or beyond the bound."""
    text = value.strip()
    below = negative and text.startswith("-")
    try:
        fen = yuan_str_to_fen(text[1:] if below else text)
    except ValueError:
        return None
    fen = -fen if below else fen
    return fen if abs(fen) <= MAX_THRESHOLD_FEN else None


def validate_estate(form) -> tuple[dict, dict]:
    changes, errors = {}, {}
    for field in ("quiet_start", "quiet_end", "message_start", "message_end"):
        if field.startswith("message") and field not in form:
            continue  # a form from before messaging hours: they stay as they are
        value = _time(str(form.get(field, "")).strip())
        if value is None:
            errors[field] = "时间格式应为 HH:MM，例如 20:00"
        else:
            changes[field] = value
    if changes.get("message_start") and changes.get("message_start") == changes.get("message_end"):
        errors["message_end"] = "提醒时段的开始和结束不能相同"
    lead = str(form.get("cut_notice_lead_h", "")).strip()
    if not lead.isdigit() or int(lead) > MAX_LEAD_H:
        errors["cut_notice_lead_h"] = f"提醒后停电的间隔应为 0–{MAX_LEAD_H} 之间的整数小时"
    else:
        changes["cut_notice_lead_h"] = int(lead)
    phone = str(form.get("manager_phone", "")).strip()
    if not PHONE.match(phone):
        errors["manager_phone"] = "请填写物业电话，例如 0571-88886666"
    else:
        changes["manager_phone"] = phone
    changes["cut_requires_approval"] = form.get("cut_requires_approval") == "on"
    return ({} if errors else changes), errors


def validate_account(form, tariff_ids: set[int] = frozenset()) -> tuple[dict, dict]:
    """A household's settings; `tariff_ids`: the tariffs it may be put on (`flat`: its own
    flat price; no field: unchanged)."""
    changes, errors = {}, {}
    tariff = str(form.get("tariff", "")).strip()
    if tariff == "flat":
        changes["tariff_id"] = None
    elif tariff.isdigit() and int(tariff) in tariff_ids:
        changes["tariff_id"] = int(tariff)
    elif tariff:
        errors["tariff"] = "未知的电价"
    if tariff:  # a form without the field leaves the tariff as it is
        changes["tariff_uplift"] = form.get("tariff_uplift") == "on"
    limits = {"low_balance_threshold_fen": ("low_balance", False, "低余额提醒线"),
              "cut_below_fen": ("cut_below", True, "停电线"),
              "restore_threshold_fen": ("restore_above", True, "复电线")}
    for column, (field, negative, label) in limits.items():
        fen = yuan(str(form.get(field, "")), negative=negative)
        if fen is None:
            errors[field] = (f"{label}应为金额（元），最多两位小数"
                             + ("" if negative else "，不能为负"))
        else:
            changes[column] = fen
    if not errors and changes["restore_threshold_fen"] < changes["cut_below_fen"]:
        errors["restore_above"] = "复电线不能低于停电线"
    emergency = yuan(str(form.get("emergency_credit", "")))
    if emergency is None or emergency > MAX_EMERGENCY_FEN:
        errors["emergency_credit"] = (f"应急用电额度应为 0–{MAX_EMERGENCY_FEN // 100} 元，"
                                      "最多两位小数")
    else:
        changes["emergency_credit_fen"] = emergency
    strategy = str(form.get("strategy", ""))
    if strategy not in STRATEGIES:
        errors["strategy"] = "未知的收费策略"
    else:
        changes["strategy"] = strategy
    changes["care_list"] = form.get("care_list") == "on"
    return ({} if errors else changes), errors


def validate_building(form) -> tuple[dict, dict]:
    changes, errors = {}, {}
    scheme = str(form.get("share_scheme", ""))
    if scheme not in SCHEMES:
        errors["share_scheme"] = "公摊方式应为 按面积、平均 或 按用电"
    else:
        changes["share_scheme"] = scheme
    period = str(form.get("share_period", ""))
    if period not in ("day", "month"):
        errors["share_period"] = "公摊周期应为 按日 或 按月"
    else:
        changes["share_period"] = period
    if "line_loss_threshold_pct" in form:
        text = str(form.get("line_loss_threshold_pct", "")).strip()
        if not re.fullmatch(r"\d{1,2}(\.\d{1,2})?|100(\.0{1,2})?", text) or Decimal(text) <= 0:
            errors["line_loss_threshold_pct"] = "线损告警线应为大于 0、不超过 100 的百分数，最多两位小数"
        else:
            changes["line_loss_threshold_pct"] = Decimal(text).quantize(Decimal("0.0001"))
    return ({} if errors else changes), errors


def apply(row, changes: dict) -> tuple[str, str]:
    """Set the changed columns on `row`; returns (before, after) of what changed, for the
    audit log ("" when nothing did)."""
    before, after = [], []
    for column, value in changes.items():
        old = getattr(row, column)
        if old != value:
            before.append(f"{column}={old}")
            after.append(f"{column}={value}")
            setattr(row, column, value)
    return "; ".join(before), "; ".join(after)
