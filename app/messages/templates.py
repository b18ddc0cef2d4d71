"""What each notice says outside the portal: the WeChat template's data, the subscription
notice's data and the SMS template's parameters, and which template of the provider carries it.

The provider holds the text; we send the values. The template ids are settings
(`app/settings.py`: `wechat_template_*`, `wechat_subscribe_*`, `sms_template_*`, one per
`TEMPLATE_NAMES` value; their defaults are the sandbox's). A kind whose template id is empty
(or whose setting does not exist) is not sent on that channel: its message is `skipped`.

WeChat data. Since 2023-05-04 a template message shows neither its `first` nor its `remark` line
and each keyword line at most 20 characters; the templates of WeChat's library now name their
keywords by type, as subscription notices always did (`thing` ≤ 20 characters, `amount` a
number with an optional "元", `time` such as "2026年12月3日 10:00", `character_string` ≤ 32
letters, digits or symbols). So both channels send the same typed keys (no first/remark), and
the templates chosen in the official account's back office must have these keywords
(`WECHAT_FIELDS`, per kind; the sandbox's are standins/wechat_messages.py's).

SMS parameters follow the sandbox's approved texts (standins/sms.py `SANDBOX_TEMPLATES`):
  low balance  "您的户号{1}电费余额为{2}元，已低于提醒金额，请及时充值。"
  exhausted    "您的户号{1}电费余额已用尽，将于{2}停电，请尽快充值。"
  cut          "您的户号{1}已于{2}欠费停电，充值{3}元即可恢复供电。"
  restored     "您的户号{1}已于{2}恢复供电，当前余额{3}元。"
  payment      "您的户号{1}充值{2}元已到账，当前余额{3}元。"
  emergency    "您的户号{1}已使用应急用电{2}元，将从下次充值中扣回。"
A real deployment has the same texts approved under its own signature and sets their ids.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from app.i18n import N_
from app.money import fen_to_yuan_str
from app.notices.models import (BALANCE_EXHAUSTED, EMERGENCY_CREDIT, LESS_THAN_A_DAY,
                                LOW_BALANCE, PAYMENT_RECEIVED, POWER_CUT, POWER_RESTORED)
from app.policy.clock import to_local

# Reminders wait for the estate's messaging hours, go only to bindings with reminders on and
# at most once a day to a resident; the rest go at once, to everyone bound.
REMINDERS = frozenset({LOW_BALANCE, LESS_THAN_A_DAY, BALANCE_EXHAUSTED})
CONFIRMATIONS = frozenset({POWER_RESTORED, PAYMENT_RECEIVED, EMERGENCY_CREDIT})
KINDS = REMINDERS | CONFIRMATIONS | {POWER_CUT}

# kind → the name in the settings' template ids (less than a day left shares the low-balance
# template: "余额为{2}元，已低于提醒金额" says it as well).
TEMPLATE_NAMES = {
    LOW_BALANCE: "low_balance", LESS_THAN_A_DAY: "low_balance",
    BALANCE_EXHAUSTED: "exhausted", POWER_CUT: "cut", POWER_RESTORED: "restored",
    PAYMENT_RECEIVED: "payment", EMERGENCY_CREDIT: "emergency",
}

# What the templates of each kind must show, in order (the official account's back office; the
# sandbox's are standins/wechat_messages.py `SANDBOX_TEMPLATES`).
WECHAT_FIELDS = {
    LOW_BALANCE: ("character_string1 户号", "amount2 当前余额", "thing3 温馨提示"),
    LESS_THAN_A_DAY: ("character_string1 户号", "amount2 当前余额", "thing3 温馨提示"),
    BALANCE_EXHAUSTED: ("character_string1 户号", "amount2 当前余额", "time3 预计停电时间"),
    POWER_CUT: ("character_string1 户号", "time2 停电时间", "amount3 恢复供电需充值",
                "thing4 停电原因"),
    POWER_RESTORED: ("character_string1 户号", "time2 恢复时间", "amount3 当前余额"),
    PAYMENT_RECEIVED: ("character_string1 户号", "amount2 充值金额", "amount3 当前余额",
                       "time4 到账时间"),
    EMERGENCY_CREDIT: ("character_string1 户号", "amount2 应急用电金额", "thing3 温馨提示"),
}

SMS_PARAM_MAX = 35  # Tencent's limit per variable for an enterprise account

# Lines that reach residents, in Chinese whatever the portal's language (the templates are
# approved in Chinese); marked for the translation list so the console can show them.
TIP_LOW = N_("余额不足，请及时充值")
TIP_A_DAY = N_("余额约够用一天，请及时充值")
TIP_EMERGENCY = N_("将从下次充值中扣回")
CUT_REASON = N_("余额不足")


@dataclass(frozen=True)
class Facts:
    """What a message about one notice says."""

    kind: str
    number: str  # 户号
    household: str  # building and household, e.g. "1号楼 1-1-101"
    at: dt.datetime  # when it happened (the notice's time)
    amount_fen: int | None  # the notice's amount: a payment, an advance, a balance
    balance_fen: int  # the balance when the message was made
    to_restore_fen: int  # the least top-up that restores (cut)
    cut_at: dt.datetime | None  # the earliest cut (exhausted)
    manager_phone: str


def template_id(settings, channel: str, kind: str) -> str:
    """The provider's template for `kind` on `channel` ("wechat_template", "wechat_subscribe",
    "sms"); "" when none is set (the kind is then not sent that way)."""
    prefix = {"wechat_template": "wechat_template_", "wechat_subscribe": "wechat_subscribe_",
              "sms": "sms_template_"}[channel]
    name = TEMPLATE_NAMES.get(kind)
    return str(getattr(settings, prefix + name, "") or "").strip() if name else ""


def yuan(fen: int) -> str:
    return fen_to_yuan_str(fen)


def wechat_time(moment: dt.datetime) -> str:
    """WeChat's `time`: "2026年12月3日 10:00" (local)."""
    local = to_local(moment)
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


def sms_time(moment: dt.datetime) -> str:
    """"12月3日 10:00" (local)."""
    local = to_local(moment)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


def wechat_data(facts: Facts) -> dict[str, str]:
    """The data of the WeChat message (template or subscription notice) for `facts`: the keys
    of `WECHAT_FIELDS[kind]`."""
    kind, amount = facts.kind, facts.amount_fen or 0
    number = facts.number[:32]
    if kind in (LOW_BALANCE, LESS_THAN_A_DAY):
        return {"character_string1": number, "amount2": _amount(amount),
                "thing3": TIP_LOW if kind == LOW_BALANCE else TIP_A_DAY}
    if kind == BALANCE_EXHAUSTED:
        return {"character_string1": number, "amount2": _amount(amount),
                "time3": wechat_time(facts.cut_at or facts.at)}
    if kind == POWER_CUT:
        return {"character_string1": number, "time2": wechat_time(facts.at),
                "amount3": _amount(facts.to_restore_fen), "thing4": CUT_REASON}
    if kind == POWER_RESTORED:
        return {"character_string1": number, "time2": wechat_time(facts.at),
                "amount3": _amount(facts.balance_fen)}
    if kind == PAYMENT_RECEIVED:
        return {"character_string1": number, "amount2": _amount(amount),
                "amount3": _amount(facts.balance_fen), "time4": wechat_time(facts.at)}
    if kind == EMERGENCY_CREDIT:
        return {"character_string1": number, "amount2": _amount(amount),
                "thing3": TIP_EMERGENCY}
    raise ValueError(f"no message for a notice of kind {kind!r}")


def _amount(fen: int) -> str:
    return yuan(fen) + "元"


def sms_params(facts: Facts) -> list[str]:
    """The SMS template's parameters for `facts` ({1}, {2}, … in order)."""
    kind, amount = facts.kind, facts.amount_fen or 0
    if kind in (LOW_BALANCE, LESS_THAN_A_DAY):
        params = [facts.number, yuan(amount)]
    elif kind == BALANCE_EXHAUSTED:
        params = [facts.number, sms_time(facts.cut_at or facts.at)]
    elif kind == POWER_CUT:
        params = [facts.number, sms_time(facts.at), yuan(facts.to_restore_fen)]
    elif kind == POWER_RESTORED:
        params = [facts.number, sms_time(facts.at), yuan(facts.balance_fen)]
    elif kind == PAYMENT_RECEIVED:
        params = [facts.number, yuan(amount), yuan(facts.balance_fen)]
    elif kind == EMERGENCY_CREDIT:
        params = [facts.number, yuan(amount)]
    else:
        raise ValueError(f"no message for a notice of kind {kind!r}")
    return [p[:SMS_PARAM_MAX] for p in params]
