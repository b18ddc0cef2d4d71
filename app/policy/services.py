"""The cut policy (停电策略): whether a meter whose account is exhausted may be cut now.

`decide_cut` is pure: everything it needs, `now` included, comes in as arguments, and it returns
a `Decision` with a code for programs and a reason in Chinese for people. `review_cut` is the
database side: it gathers those arguments, records the decision, and queues the cut or the
manager task or the approval request the decision calls for.

The rules, in order (the first that applies decides):
1. balance at or above the account's cut line → nothing to decide;
2. the account's kept balance differs from its ledger's sum (app/ledger/checks.py) → refused
   until a manager resolved it; an earlier command for this meter expired unconfirmed and is
   not resolved → wait for a person;
3. an unknown strategy → refused; a household on the care list (爱心档案), or a strategy that is
   never cut automatically → a manager task, never a command;
4. an estate that requires approval (停电审批): rejected → refused for this episode; not yet
   approved → an approval request;
5. no balance-exhausted notice yet, or sent less than the estate's lead time ago → wait;
6. a public holiday today (local) → wait; where no official arrangement covers today the
   calendar computes the statutory holidays (app/policy/holidays.py), and the decision says so
   (`Decision.calendar` == "computed", and a note in its reason); an estate naming a calendar
   we do not have → refused;
7. within the estate's quiet hours → wait;
8. otherwise cut.
A wait carries `not_before`, the first moment rules 5–7 all allow (when the calendar knows it);
the worker re-decides at every poll, so the cut happens at the first poll from then on.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

from sqlmodel import Session, select

from app.anomalies.models import (COMMAND_EXPIRED, CUT_REFUSED_KEEP_POWER, RELAY_FAULT,
                                  Anomaly)

# An open anomaly of these kinds on a meter: a cut was not carried out, and the system does not
# try again until a manager has resolved it.
CUT_BLOCKED_BY = (COMMAND_EXPIRED, CUT_REFUSED_KEEP_POWER, RELAY_FAULT)
from app.commands.models import CUT as CUT_ACTION
from app.commands.models import RESTORE, Command
from app.commands.services import pending_command, queue_cut
from app.estate.models import Account, Building, Estate, Meter
from app.money import fen_to_yuan_str
from app.notices.services import cut_notice_at
from app.policy.clock import local_midnight, local_str, to_local
from app.ledger.checks import balance_unverified
from app.policy.arrangements import estate_calendar
from app.policy.holidays import COMPUTED, HolidayCalendar, PolicyUndecidable
from app.policy.models import (APPROVAL, APPROVED, CARE_LIST_EXHAUSTED, CUT, CUT_UNDECIDED,
                               MANUAL_CUT, NONE, PENDING, REFUSED, REJECTED, TASK, WAIT,
                               CutApproval, CutDecision, ManagerTask)
from app.policy.strategies import Strategy, strategy_named


@dataclass(frozen=True)
class Decision:
    outcome: str  # cut | wait | task | approval | refused | none
    code: str
    reason: str  # zh, for residents and managers
    not_before: dt.datetime | None = None
    calendar: str | None = None  # the holiday calendar's source for today (holidays.py)


@dataclass(frozen=True)
class QuietHours:
    start: dt.time
    end: dt.time

    @property
    def none(self) -> bool:
        return self.start == self.end

    def contains(self, moment: dt.time) -> bool:
        if self.none:
            return False
        if self.start < self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end  # across midnight

    def __str__(self) -> str:
        return f"{self.start:%H:%M}–{self.end:%H:%M}"


def quiet_hours_of(estate) -> QuietHours:
    try:
        return QuietHours(dt.time.fromisoformat(estate.quiet_start),
                          dt.time.fromisoformat(estate.quiet_end))
    except (TypeError, ValueError):
        raise PolicyUndecidable("settings_invalid",
                                f"小区夜间不停电时段设置有误（{estate.quiet_start!r}–"
                                f"{estate.quiet_end!r}），不自动停电，请更正") from None


def decide_cut(now: dt.datetime, *, balance_fen: int, account, estate,
               strategy: Strategy | None, warned_at: dt.datetime | None,
               approval: str | None, holidays: HolidayCalendar,
               unconfirmed_command: bool = False, balance_unverified: bool = False) -> Decision:
    """Decide whether the exhausted supply of one meter of `account` may be cut at `now`.

    `account` needs `cut_below_fen`, `care_list`, `strategy`; `estate` needs `quiet_start`,
    `quiet_end`, `cut_notice_lead_h`, `cut_requires_approval`. `warned_at`: when this
    exhaustion episode's balance-exhausted notice went out (None: not yet). `approval`: the state
    of this episode's approval request (None: none). No clock, no database: the same arguments
    give the same decision. `Decision.calendar` says where the calendar's word on today came
    from; on a computed day, a decision that depended on the calendar says so in its reason."""
    decision = _decide(now, balance_fen=balance_fen, account=account, estate=estate,
                       strategy=strategy, warned_at=warned_at, approval=approval,
                       holidays=holidays, unconfirmed_command=unconfirmed_command,
                       balance_unverified=balance_unverified)
    try:
        source = holidays.day(to_local(now).date()).source
    except PolicyUndecidable:
        source = None
    if source == COMPUTED and decision.code in _CALENDAR_DEPENDENT:
        decision = replace(decision, reason=decision.reason + COMPUTED_NOTE)
    return replace(decision, calendar=source)


COMPUTED_NOTE = "（今天不在已载入的国务院节假日安排内：节假日按规则推算，非正式安排）"
_CALENDAR_DEPENDENT = frozenset({"allowed", "holiday", "quiet_hours", "notice_lead"})


def _decide(now: dt.datetime, *, balance_fen: int, account, estate,
            strategy: Strategy | None, warned_at: dt.datetime | None,
            approval: str | None, holidays: HolidayCalendar,
            unconfirmed_command: bool, balance_unverified: bool) -> Decision:
    if balance_fen >= account.cut_below_fen:
        return Decision(NONE, "not_exhausted", "余额未低于停电线，无需停电")
    if balance_unverified:
        return Decision(REFUSED, "balance_unverified",
                        "账户余额与账目合计不符，已列为异常；核实前不自动停电")
    if unconfirmed_command:
        return Decision(WAIT, "command_unconfirmed",
                        "该电表上一条命令未被确认执行，已列为异常；物业处理前不再自动停电")
    if strategy is None:
        return Decision(REFUSED, "unknown_strategy",
                        f"未知的收费策略“{account.strategy}”，无法自动判断是否停电，请人工处理")
    if account.care_list:
        return Decision(TASK, "care_list", "爱心档案住户，不自动停电，已转物业经理处理")
    if not strategy.automatic_cut:
        return Decision(TASK, "manual_strategy",
                        f"{strategy.label_zh}账户不自动停电，已转物业经理处理")
    if estate.cut_requires_approval:
        if approval == REJECTED:
            return Decision(REFUSED, "approval_rejected", "停电审批未通过，本次欠费不自动停电")
        if approval != APPROVED:
            return Decision(APPROVAL, "approval_required",
                            "本小区停电须经审批，已提交停电审批，等待物业审批")
    try:
        quiet = quiet_hours_of(estate)
        if warned_at is None:
            return Decision(WAIT, "no_notice", "尚未发出余额用尽（停电）提醒：先提醒，后停电")
        lead = dt.timedelta(hours=estate.cut_notice_lead_h)
        local_now = to_local(now)
        holiday = holidays.holiday_name(local_now.date())
        if now < warned_at + lead:
            allowed = _first_allowed(warned_at + lead, quiet, holidays)
            return Decision(WAIT, "notice_lead",
                            f"停电提醒于 {local_str(warned_at)} 发出，未满 "
                            f"{estate.cut_notice_lead_h} 小时{_until(allowed)}", allowed)
        if holiday is not None:
            allowed = _first_allowed(now, quiet, holidays)
            return Decision(WAIT, "holiday",
                            f"今天（{local_now:%Y-%m-%d}）是法定节假日（{holiday}），"
                            f"节假日不停电{_until(allowed)}", allowed)
        if quiet.contains(local_now.time()):
            allowed = _first_allowed(now, quiet, holidays)
            return Decision(WAIT, "quiet_hours",
                            f"现在是夜间（{quiet}），夜间不停电{_until(allowed)}", allowed)
    except PolicyUndecidable as exc:
        return Decision(REFUSED, exc.code, exc.reason)
    return Decision(CUT, "allowed",
                    f"余额 {fen_to_yuan_str(balance_fen)} 元，低于停电线 "
                    f"{fen_to_yuan_str(account.cut_below_fen)} 元；停电提醒已于 "
                    f"{local_str(warned_at)} 发出，依策略停电")


def _first_allowed(start: dt.datetime, quiet: QuietHours,
                   holidays: HolidayCalendar) -> dt.datetime | None:
    """The first moment from `start` on outside quiet hours and public holidays; None where
    the calendar does not know the days in between."""
    moment = start
    try:
        for _ in range(100):
            local = to_local(moment)
            if holidays.holiday_name(local.date()) is not None:
                moment = local_midnight(local.date() + dt.timedelta(days=1))
            elif quiet.contains(local.time()):
                end = dt.datetime.combine(local.date(), quiet.end, local.tzinfo)
                moment = end if end > local else end + dt.timedelta(days=1)
            else:
                return moment
    except PolicyUndecidable:
        return None
    return None


def _until(allowed: dt.datetime | None) -> str:
    return f"，最早 {local_str(allowed)} 停电" if allowed is not None else ""


# --- the database side -------------------------------------------------------------------------

def note_exhaustion(account: Account, balance_fen: int, now: dt.datetime) -> bool:
    """Keep `account.exhausted_at`: set when the balance first falls below the cut line,
    cleared once it is back at or above it. Returns whether the account is exhausted."""
    exhausted = balance_fen < account.cut_below_fen
    if exhausted and account.exhausted_at is None:
        account.exhausted_at = now
    elif not exhausted and account.exhausted_at is not None:
        account.exhausted_at = None
    return exhausted


def estate_of(session: Session, account: Account) -> Estate:
    building = session.get(Building, account.building_id)
    return session.get(Estate, building.estate_id)


def review_cut(session: Session, meter: Meter, account: Account, balance_fen: int,
               now: dt.datetime) -> bool:
    """Apply the cut policy to `meter`, whose supply is on and whose account is exhausted
    (`note_exhaustion` was called, and the balance-exhausted notice added where due).

    In the caller's transaction: queues the cut when the policy allows (True), else records
    why not (once per run of the same outcome and code in this exhaustion episode) with what
    the decision calls for: a manager task, or an approval request. Nothing while a cut or a
    restore is already pending for the meter (a restore wins; a cut is under way)."""
    if pending_command(session, meter.id, CUT_ACTION) or pending_command(session, meter.id, RESTORE):
        return False
    episode = account.exhausted_at or now
    estate = estate_of(session, account)
    approval = session.exec(
        select(CutApproval).where(CutApproval.meter_id == meter.id,
                                  CutApproval.requested_at >= episode)
        .order_by(CutApproval.id.desc())).first()
    unconfirmed = session.exec(
        select(Anomaly.id).where(Anomaly.meter_id == meter.id, Anomaly.kind.in_(CUT_BLOCKED_BY),
                                 Anomaly.resolved_at.is_(None))).first() is not None
    decision = decide_cut(
        now, balance_fen=balance_fen, account=account, estate=estate,
        strategy=strategy_named(account.strategy), warned_at=cut_notice_at(session, account),
        approval=approval.state if approval is not None else None,
        holidays=estate_calendar(session, estate), unconfirmed_command=unconfirmed,
        balance_unverified=balance_unverified(session, account.id))
    if decision.outcome == NONE:
        return False
    if decision.outcome == CUT:
        command = queue_cut(session, meter, reason=f"balance exhausted; {decision.reason}")
        if command is None:
            return False
        _record(session, meter, account, balance_fen, now, decision, command)
        return True
    last = session.exec(
        select(CutDecision).where(CutDecision.meter_id == meter.id,
                                  CutDecision.decided_at >= episode)
        .order_by(CutDecision.id.desc())).first()
    if last is not None and (last.outcome, last.code) == (decision.outcome, decision.code):
        return False
    _record(session, meter, account, balance_fen, now, decision)
    if decision.outcome == APPROVAL and approval is None:
        session.add(CutApproval(meter_id=meter.id, account_id=account.id, state=PENDING,
                                balance_fen=balance_fen, requested_at=now))
    elif decision.outcome == TASK or (decision.outcome == REFUSED
                                      and decision.code != "approval_rejected"):
        kind = {"care_list": CARE_LIST_EXHAUSTED, "manual_strategy": MANUAL_CUT}.get(
            decision.code, CUT_UNDECIDED)
        _task_once(session, kind, meter, account, episode, now,
                   f"{account.number} {account.household}：余额 "
                   f"{fen_to_yuan_str(balance_fen)} 元。{decision.reason}")
    return False


def _record(session: Session, meter: Meter, account: Account, balance_fen: int,
            now: dt.datetime, decision: Decision, command: Command | None = None) -> None:
    session.add(CutDecision(meter_id=meter.id, account_id=account.id, decided_at=now,
                            outcome=decision.outcome, code=decision.code,
                            reason=decision.reason[:500], not_before=decision.not_before,
                            balance_fen=balance_fen, calendar=decision.calendar,
                            command_id=command.id if command is not None else None))


def _task_once(session: Session, kind: str, meter: Meter, account: Account,
               episode: dt.datetime, now: dt.datetime, detail: str) -> None:
    """One task of `kind` per meter and exhaustion episode, even once a manager closed it."""
    exists = session.exec(
        select(ManagerTask.id).where(ManagerTask.kind == kind, ManagerTask.meter_id == meter.id,
                                     ManagerTask.created_at >= episode)).first()
    if exists is None:
        session.add(ManagerTask(kind=kind, account_id=account.id, meter_id=meter.id,
                                detail=detail[:500], created_at=now))


def decide_approval(session: Session, approval: CutApproval, *, approve: bool, by: str,
                    now: dt.datetime, note: str = "") -> CutApproval:
    """A manager's answer to a pending cut approval. Moves no relay: the worker's next poll
    applies the policy again (an approved cut still waits for notice, holidays, quiet hours)."""
    if approval.state != PENDING:
        raise ValueError(f"approval {approval.id} is {approval.state}, not pending")
    approval.state = APPROVED if approve else REJECTED
    approval.decided_by, approval.decided_at, approval.note = by, now, note
    session.add(approval)
    return approval


def complete_task(session: Session, task: ManagerTask, *, by: str, now: dt.datetime,
                  resolution: str = "") -> ManagerTask:
    task.done_at, task.done_by, task.resolution = now, by, resolution
    session.add(task)
    return task
