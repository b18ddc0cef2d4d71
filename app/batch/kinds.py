"""What a batch job can be (`KINDS`): how the console's request is checked and turned into a job
(`prepare`, in the request, which writes nothing but the job), and how the job runs
(`run(context)`, in the background: app/batch/runner.py).

- `export`: an export of app/reports/exports.py (the month's bills of a building or of every
  building in scope) written to a file under `var_dir/exports`, audited when it is done.
  Resumable from the start (it writes nothing else).
- `import`: an estate workbook (app/estate/importing) checked on the import page, kept under
  `var_dir/jobs`, imported in one transaction with the job's end (so a crash leaves it not
  imported at all, and taking it up again imports it once). Progress: the import's six steps.
- `approve`: approve (or reject) the cuts waiting for approval that the manager ticked, each as
  the approvals page does (`decide_approval`, a reading queued, an audit entry); one already
  decided, or outside the manager's scope now, is a failure with its reason.
- `remind`: a low-balance reminder (a `low_balance` notice, which the message jobs turn into
  WeChat or SMS messages under their rules) to every household of a building below its
  low-balance line when the job starts; one that paid meanwhile, or was reminded today
  already, is skipped with its reason.
- `tariff`: every open household of a building put on a tariff (or back on its flat price)
  from its next charge, as `feikong tariff assign` does; each change audited.
Item kinds (approve, remind, tariff) fix their items when they start and do them `STEP` at a
time, each step one transaction with the job's advance: resumed at `done`, never twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import Session, select

from app.batch.models import BatchJob
from app.batch.context import Context, JobFailed, who_of
from app.console import audit, scope, states
from app.console.auth import Who
from app.db import is_postgres, transaction, utcnow
from app.estate.models import Account, Building, Meter
from app.i18n import N_
from app.ledger.days import day_start, local_day
from app.ledger.services import funds
from app.notices.models import LOW_BALANCE, Notice
from app.policy.models import PENDING as APPROVAL_PENDING
from app.policy.models import CutApproval
from app.policy.services import decide_approval
from app.tariffs.models import StoredTariff

BatchJobTable = BatchJob.__table__
STEP = 100  # items a transaction
WRITE_EVERY_S = 0.5  # live progress written at most this often


class KindRefused(ValueError):
    """A job the console cannot start as asked; the message (zh, marked) says why."""


@dataclass(frozen=True)
class Kind:
    name: str
    title: str  # zh, marked
    run: Callable[[Context], None]
    resumable: bool = True
    restarts: bool = False  # taken up again from the start (done = 0)


def _step_items(context: Context, list_items: Callable[[Session, Who | None], list],
                do_item: Callable[[Session, Who | None, dict, object], str],
                finish_message: Callable[[int, int], str]) -> None:
    """The item kinds' loop: items fixed at the start, then `STEP` at a time, each step one
    transaction with the job's advance (`Context.guard`)."""
    engine, params = context.engine, context.params
    items = context.items
    if items is None:
        with transaction(engine) as s:
            who = who_of(s, context.job)
            items = list_items(s, who)
            context.set_items(s, items)
    done = context.job.done
    while done < len(items):
        chunk = items[done:done + STEP]
        with transaction(engine) as s:
            context.guard(s, expect=done, to=done)  # ours still: lock the row first
            who = who_of(s, context.job)
            failures = []
            for item in chunk:
                reason = do_item(s, who, params, item)
                if reason:
                    failures.append({"item": str(item), "reason": reason})
            context.guard(s, expect=done, to=done + len(chunk), failures=failures)
        done += len(chunk)
    with transaction(engine) as s:
        failed = s.execute(sa.select(BatchJobTable.c.failure_count).where(
            BatchJobTable.c.id == context.job.id)).scalar() or 0
        context.finish(s, done, message=finish_message(done, failed))


# --- approve cuts -----------------------------------------------------------------------------

def prepare_approve(session: Session, who: Who, form: dict) -> tuple[dict, list[int]]:
    if not scope.may_decide_cuts(who):
        raise LookupError
    verb = form.get("verb", "approve")
    if verb not in ("approve", "reject"):
        raise LookupError
    ids = sorted({int(i) for i in form.get("ids", []) if str(i).isdigit()})
    reason = str(form.get("reason", "")).strip()
    if not ids:
        raise KindRefused(N_("请先勾选要处理的项目"))
    if not reason:
        raise KindRefused(N_("请写明理由"))
    in_scope = scope.building_ids(session, who) or [-1]
    found = session.execute(sa.select(CutApproval.id, Account.building_id)
                            .join(Account, Account.id == CutApproval.account_id)
                            .where(CutApproval.id.in_(ids),
                                   Account.building_id.in_(in_scope))).all()
    if len(found) != len(ids):
        raise LookupError  # one outside the scope: not found, nothing queued
    return ({"verb": verb, "ids": ids, "reason": reason[:500]},
            sorted({building for _id, building in found}))


def _approve_one(s: Session, who: Who | None, params: dict, item) -> str:
    from app.commands.services import queue_read

    in_scope = scope.building_ids(s, who) or [-1]
    row = s.execute(select(CutApproval).join(Account, Account.id == CutApproval.account_id)
                    .where(CutApproval.id == int(item), Account.building_id.in_(in_scope))
                    .with_for_update()).scalar()
    if row is None:
        return "不在管理范围内或不存在"
    if row.state != APPROVAL_PENDING:
        return f"已处理（{row.state}）"
    approve = params["verb"] == "approve"
    decide_approval(s, row, approve=approve, by=who.name, now=utcnow(), note=params["reason"])
    if approve:
        meter = s.get(Meter, row.meter_id)
        if meter is not None:
            queue_read(s, meter, f"cut approved by {who.name}")
    audit.record(s, who, f"cut.{params['verb']}", object_type="cut_approval", object_id=row.id,
                 before=APPROVAL_PENDING, after=row.state, reason=params["reason"],
                 client="batch")
    return ""


def run_approve(context: Context) -> None:
    ids = context.params["ids"]
    _step_items(context, lambda s, who: ids, _approve_one,
                lambda done, failed: f"已处理 {done - failed} 项，未处理 {failed} 项")


# --- reminders ----------------------------------------------------------------------------------

def prepare_remind(session: Session, who: Who, form: dict) -> tuple[dict, list[int]]:
    if not scope.may_decide_cuts(who):
        raise LookupError
    building = str(form.get("building", ""))
    if not building.isdigit() or scope.building(session, who, int(building)) is None:
        raise LookupError
    return {"building": int(building)}, [int(building)]


def _low_accounts(s: Session, who: Who | None, building_id: int) -> list[int]:
    query = (scope.accounts_query(who) if who else select(Account)).where(
        Account.building_id == building_id, Account.closed_at.is_(None))
    query = states.restrict(query, "low").order_by(Account.id)
    return [a.id for a in s.exec(query)]


def _remind_one(s: Session, who: Who | None, params: dict, item) -> str:
    account = s.get(Account, int(item))
    if account is None or account.closed_at is not None:
        return "已销户"
    if who is not None and scope.account(s, who, account.number) is None:
        return "不在管理范围内"
    balance = funds(s, {account.id})[account.id].balance_fen
    if balance >= account.low_balance_threshold_fen:
        return f"{account.number}：余额已不低"
    today = day_start(local_day(utcnow()))
    sent = s.execute(sa.select(Notice.id).where(
        Notice.account_id == account.id, Notice.kind == LOW_BALANCE,
        Notice.created_at >= today).limit(1)).first()
    if sent is not None:
        return f"{account.number}：今天已提醒过"
    s.add(Notice(account_id=account.id, kind=LOW_BALANCE, amount_fen=balance))
    return ""


def run_remind(context: Context) -> None:
    building = context.params["building"]
    _step_items(context, lambda s, who: _low_accounts(s, who, building), _remind_one,
                lambda done, failed: f"已提醒 {done - failed} 户，未提醒 {failed} 户")


# --- tariff -------------------------------------------------------------------------------------

def prepare_tariff(session: Session, who: Who, form: dict) -> tuple[dict, list[int]]:
    if not scope.may_administer(who):
        raise LookupError
    building = str(form.get("building", ""))
    if not building.isdigit() or scope.building(session, who, int(building)) is None:
        raise LookupError
    tariff = str(form.get("tariff", ""))
    if tariff == "flat":
        tariff_id = None
    elif tariff.isdigit() and session.get(StoredTariff, int(tariff)) is not None:
        tariff_id = int(tariff)
    else:
        raise KindRefused(N_("请选择电价"))
    return {"building": int(building), "tariff": tariff_id}, [int(building)]


def _tariff_one(s: Session, who: Who | None, params: dict, item) -> str:
    account = s.get(Account, int(item))
    if account is None or account.closed_at is not None:
        return "已销户"
    if who is not None and scope.account(s, who, account.number) is None:
        return "不在管理范围内"
    before, after = account.tariff_id, params["tariff"]
    if before == after:
        return ""
    account.tariff_id = after
    s.add(account)
    audit.record(s, who, "account.tariff", object_type="account", object_id=account.number,
                 before=f"tariff {before or 'flat'}", after=f"tariff {after or 'flat'}",
                 reason="batch", client="batch")
    return ""


def run_tariff(context: Context) -> None:
    params = context.params

    def listed(s: Session, who: Who | None) -> list[int]:
        query = (scope.accounts_query(who) if who else select(Account)).where(
            Account.building_id == params["building"], Account.closed_at.is_(None))
        return [a.id for a in s.exec(query.order_by(Account.id))]
    _step_items(context, listed, _tariff_one,
                lambda done, failed: f"已更换 {done - failed} 户，未更换 {failed} 户")


# --- exports ------------------------------------------------------------------------------------

def export_scope(who: Who | None, session: Session, estate_id: int):
    from app.console.models import BUILDING_MANAGER
    from app.reports.exports import Scope

    if who is None:
        ids = tuple(session.exec(select(Building.id).where(Building.estate_id == estate_id)
                                 .order_by(Building.id)))
        return Scope(estate_id, ids, True, True, "feikong")
    return Scope(who.estate_id, tuple(scope.building_ids(session, who)),
                 who.building_ids is None, who.role != BUILDING_MANAGER, who.name,
                 who.manager_id)


def prepare_export(session: Session, who: Who, form: dict) -> tuple[dict, list[int]]:
    from app.reports.exports import ExportRefused, buildings_of, check

    params = {k: str(form.get(k) or "") for k in ("export", "month", "day", "building")}
    fmt = str(form.get("format", "xlsx"))
    if fmt not in ("xlsx", "csv"):
        raise KindRefused(N_("格式应为 xlsx 或 csv"))
    kind = params.pop("export")
    the_scope = export_scope(who, session, who.estate_id)
    if params["building"] and (not params["building"].isdigit() or scope.building(
            session, who, int(params["building"])) is None):
        raise LookupError
    try:
        check(session, kind, the_scope, params)
    except ExportRefused as exc:
        raise KindRefused(str(exc)) from exc
    buildings = [b.id for b in buildings_of(session, the_scope, params)]
    return {"export": kind, "format": fmt, **{k: v for k, v in params.items() if v}}, buildings


def run_export(context: Context) -> None:
    from app.reports.exports import audit_values, build, file_name
    from app.reports.table import write

    params = dict(context.params)
    kind, fmt = params.pop("export"), params.pop("format")
    folder = Path(context.settings.var_dir) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"job-{context.job.id}-{secrets.token_hex(6)}.{fmt}"
    last = [0.0]

    def progress(done: int, total: int) -> None:
        import time

        if time.monotonic() - last[0] >= WRITE_EVERY_S or done == total:
            last[0] = time.monotonic()
            context.live(done, total)
    with transaction(context.engine, read_only=True) as s:  # one snapshot of the month
        who = who_of(s, context.job)
        the_scope = export_scope(who, s, context.job.estate_id)
        report = build(s, kind, the_scope, params, progress=progress)
        temporary = path.with_suffix(".part")
        with temporary.open("wb") as out:
            rows = write(report, fmt, out)
        os.replace(temporary, path)
    with transaction(context.engine) as s:
        values = audit_values(kind, params, fmt, rows)
        audit.record(s, who, values.pop("action"), estate_id=context.job.estate_id,
                     client="batch", **values)
        total = max(rows, 1)
        context.finish(s, total, total=total, message=f"{rows} 行",
                       result_path=str(path), result_name=file_name(kind, params, fmt))


# --- the estate import ----------------------------------------------------------------------------

def keep_upload(settings, data: bytes) -> tuple[str, str]:
    """An uploaded workbook kept for its import job: (path, sha256)."""
    digest = hashlib.sha256(data).hexdigest()
    folder = Path(settings.var_dir) / "jobs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"import-{digest}.bin"
    if not path.exists():
        temporary = folder / f".import-{digest}-{secrets.token_hex(4)}"
        temporary.write_bytes(data)
        os.replace(temporary, path)
    return str(path), digest


IMPORT_STEPS = 6  # app/estate/importing/apply.py's ticks


def run_import(context: Context) -> None:
    from app.estate.importing import import_file

    params = context.params
    try:
        data = Path(params["path"]).read_bytes()
    except OSError as exc:
        raise JobFailed(f"找不到上传的文件：{exc}") from exc
    if hashlib.sha256(data).hexdigest() != params["sha256"]:
        raise JobFailed("上传的文件已改变")
    context.live(0, IMPORT_STEPS)
    side = is_postgres(context.engine)  # progress from inside the import's transaction

    def progress(step: int, _steps: int) -> None:
        context.live(step, IMPORT_STEPS, write=side)
    with transaction(context.engine) as s:  # (the job's row is not locked here: the progress
        who = who_of(s, context.job)        # is written to it from another connection)
        result = import_file(s, data, estate_id=context.job.estate_id, who=who,
                             client=params.get("client", ""), file_name=params.get("name", ""),
                             progress=progress)
        if not result.ok:
            raise JobFailed("; ".join(p.text() for p in result.problems[:20]))
        summary = "; ".join(f"{title} 新增 {c.created} 更新 {c.updated} 不变 {c.unchanged}"
                            for title, c in result.counts.items())
        context.finish(s, IMPORT_STEPS, total=IMPORT_STEPS, message=summary)


KINDS = {
    "export": Kind("export", N_("导出"), run_export, restarts=True),
    "import": Kind("import", N_("导入小区资料"), run_import, restarts=True),
    "approve": Kind("approve", N_("批量审批停电"), run_approve),
    "remind": Kind("remind", N_("提醒余额不足的住户"), run_remind),
    "tariff": Kind("tariff", N_("楼栋更换电价"), run_tariff),
}
PREPARE = {"export": prepare_export, "approve": prepare_approve, "remind": prepare_remind,
           "tariff": prepare_tariff}


def describe(kind: str, params: dict, names: dict[int, str], tariffs: dict[int, str]) -> str:
    """A job's parameters for people, in the request's language."""
    from app.i18n import gettext

    if kind == "export":
        from app.reports.exports import KINDS as EXPORTS

        what = gettext(EXPORTS.get(params.get("export", ""), params.get("export", "")))
        period = params.get("day") or params.get("month") or ""
        building = (names.get(int(params["building"]), "") if params.get("building")
                    else gettext(N_("全部楼栋")))
        return " · ".join(x for x in (what, period, building, params.get("format", "")) if x)
    if kind == "import":
        return params.get("name", "")
    if kind == "approve":
        verb = gettext(N_("同意停电") if params.get("verb") == "approve" else N_("不停电"))
        return gettext(N_("{verb} {n} 项：{reason}")).format(
            verb=verb, n=len(params.get("ids", [])), reason=params.get("reason", ""))
    if kind == "remind":
        return names.get(params.get("building"), "")
    if kind == "tariff":
        tariff = params.get("tariff")
        return f"{names.get(params.get('building'), '')} → " + (
            tariffs.get(tariff, str(tariff)) if tariff else gettext(N_("单一电价")))
    return json.dumps(params, ensure_ascii=False)

