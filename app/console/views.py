"""The property managers' console, mounted at /manage/: log in and out, the dashboard of the
manager's buildings, the accounts list and one account, cut approvals and manager tasks, the
audit log. Every read goes through `app.console.scope` (outside it: 404); every act through the
services the worker and the CLI use, recorded in the audit log in the same transaction.

Protection: sessions in the database (`app.console.auth`), CSRF by the maintained `asgi-csrf`
middleware (double-submit cookie; forms carry `csrftoken`, htmx sends the `x-csrftoken` header),
security headers on every console response (`SecurityHeaders`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
import re
import secrets
from urllib.parse import quote

import sqlalchemy as sa
from asgi_csrf import asgi_csrf
from sqlmodel import select
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route

from app.anomalies.models import Anomaly
from app.anomalies.review import resolve_anomaly
from app.billing.closing import CARRY, REFUND, ClosingRefused, close_account, reopen_account
from app.billing.emergency import EmergencyCreditRefused, take_emergency_credit
from app.billing.shares import period_label
from app.commands.models import PENDING as COMMAND_PENDING
from app.commands.models import Command, CommandAttempt
from app.commands.services import queue_cut, queue_read, queue_restore, restore_if_allowed
from app.console import audit, charts, exports, imports, scope, states
from app.console import settings as rules
from app.console.auth import COOKIE, LoginLimiter, check_login, open_session, revoke, who_is
from app.console.managers import (ManagerError, add_manager, disable_manager, list_managers,
                                  scope_manager)
from app.console.models import ESTATE_ADMIN, FINANCE, ROLE_ZH, AuditEntry, Manager
from app.db import transaction, utcnow
from app.estate.indicators import daily, monthly
from app.estate.lineloss import line_loss_days
from app.estate.models import Account, Building, DailyFrozen, Estate, Gateway, Meter, ShareRun
from app.i18n import N_
from app.ledger.models import ADJUSTMENT, CHARGE, SHARE, LedgerEntry
from app.ledger.services import funds, kept_balance_fen, lock_balances, post_entry
from app.messages.services import failed_messages, mask_recipient, messages_of
from app.notices.models import Notice
from app.orders.models import (PAID, PAID_AFTER_CLOSE, Order, ReconcileDifference, Refund,
                               RefusedCount)
from app.orders.services import credit_late_payment
from app.orders.refunds import RefundRefused, RefundRequest, request_refund, submit_refund
from app.policy.arrangements import (ArrangementError, calendar_status, decode_file,
                                     load_arrangement, parse_arrangement, year_listing)
from app.policy.models import PENDING as APPROVAL_PENDING
from app.policy.models import CutApproval, CutDecision, ManagerTask
from app.policy.services import complete_task, decide_approval
from app.policy.strategies import STRATEGIES
from app.tariffs import CHINA_TZ
from app.tariffs.models import StoredTariff
from app.resident.identity import acceptances_of, residents_of
from app.web.ratelimit import request_client
from app.web.charts import count_chart, rate_chart, usage_chart
from meters.protocol import format_address

PREFIX = "/manage"
PAGE = 50  # accounts per page
STATES = {"low": N_("余额不足"), "exhausted": N_("余额用尽"), "cut": N_("已停电"),
          "offline": N_("电表离线"), "care": N_("爱心档案")}


class SecurityHeaders:
    """Headers every console response carries: a CSP without inline script, no framing, no
    MIME sniffing, no referrer to other sites, and no caching of pages with personal data."""

    HEADERS = [
        (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; "
                                     b"img-src 'self' data:; frame-ancestors 'none'; "
                                     b"form-action 'self'; base-uri 'none'; object-src 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
        (b"cache-control", b"no-store"),
    ]

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope_, receive, send):
        if scope_["type"] != "http":
            await self.app(scope_, receive, send)
            return

        async def with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.HEADERS
            await send(message)

        await self.app(scope_, receive, with_headers)


class MultipartTokenInHeader:
    """A multipart POST must carry its CSRF token in the `x-csrftoken` header (the console's
    htmx upload forms do), else 403 here. asgi-csrf 0.11 falls back to parsing a multipart
    body for the token, which fails with python-multipart 0.0.34 (an exception, not a refusal);
    a matching header it verifies itself, never reaching that code."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope_, receive, send):
        if scope_["type"] == "http" and scope_["method"] == "POST":
            headers = dict(scope_.get("headers") or [])
            if headers.get(b"content-type", b"").startswith(b"multipart/form-data"):
                token = headers.get(b"x-csrftoken", b"").decode("latin-1")
                cookie = HTTPConnection(scope_).cookies.get("csrftoken", "")
                if not token or not secrets.compare_digest(token, cookie):
                    await PlainTextResponse("CSRF check failed", status_code=403)(
                        scope_, receive, send)
                    return
        await self.app(scope_, receive, send)


def _client(request: Request) -> str:
    return request_client(request)  # X-Forwarded-For only from FEIKONG_TRUSTED_PROXIES


def _render(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
    context = {"csrftoken": request.scope["csrftoken"](), "prefix": PREFIX,
               "role_zh": ROLE_ZH, **context}
    return request.app.state.templates.TemplateResponse(request, name, context,
                                                        status_code=status_code)


def _who(request: Request):
    settings = request.app.state.settings
    idle = dt.timedelta(minutes=settings.console_idle_minutes)
    return who_is(request.app.state.engine, request.cookies.get(COOKIE), idle)


def _login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/login?next={quote(target)}", status_code=303)


def _back(path: str, error: str = "") -> Response:
    """After a form: back to a console page (`path` under /manage), with an error to show."""
    query = f"?error={quote(error)}" if error else ""
    return RedirectResponse(f"{PREFIX}{path}{query}", status_code=303)


def _not_found() -> HTTPException:
    return HTTPException(404, "没有找到")


def _local_today_start() -> dt.datetime:
    local = utcnow().astimezone(CHINA_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


# --- logging in and out --------------------------------------------------------------------------

async def login(request: Request) -> Response:
    if request.method == "GET":
        return _render(request, "console/login.html", {"next": request.query_params.get("next", "")})
    form = await request.form()
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    target = str(form.get("next", ""))
    if not target.startswith(PREFIX + "/") or target.startswith("//"):
        target = PREFIX + "/"
    engine, client = request.app.state.engine, _client(request)
    limiter = LoginLimiter(engine)
    if not limiter.allowed(name, client):
        return _render(request, "console/login.html",
                       {"error": N_("登录失败次数过多，请 15 分钟后再试"), "next": target,
                        "name": name}, status_code=429)
    with transaction(engine) as s:
        manager = check_login(s, name, password)
        if manager is not None:
            token = open_session(s, manager, client)
            audit.record(s, None, "login", estate_id=manager.estate_id, object_type="manager",
                         object_id=manager.id, client=client, after=manager.name)
    if manager is None:
        limiter.failed(name, client)
        return _render(request, "console/login.html",
                       {"error": N_("用户名或密码不对"), "next": target, "name": name},
                       status_code=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="lax", path=PREFIX,
                        secure=request.app.state.settings.base_url.startswith("https://"))
    return response


async def logout(request: Request) -> Response:
    who = _who(request)
    if who is not None:
        everywhere = request.url.path.endswith("/everywhere")
        with transaction(request.app.state.engine) as s:
            if everywhere:
                revoke(s, manager_id=who.manager_id)
            else:
                revoke(s, token_sha256=who.token_sha256)
            audit.record(s, who, "logout.everywhere" if everywhere else "logout",
                         object_type="manager", object_id=who.manager_id,
                         client=_client(request))
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


# --- the dashboard -------------------------------------------------------------------------------

async def dashboard(request: Request) -> Response:
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    today = _local_today_start()
    with transaction(request.app.state.engine, read_only=True) as s:
        buildings = scope.buildings(s, who)
        ids = [b.id for b in buildings]
        counted = states.counts(s, scope.accounts_query(who).where(Account.closed_at.is_(None)))
        rows = [{"building": b, **counted[b.id]} for b in buildings]
        in_scope = Account.building_id.in_(ids or [-1])
        payments = s.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(
            Order.amount_fen), 0)).join(Account, Account.id == Order.account_id)
            .where(in_scope, Order.status == PAID, Order.paid_at >= today)).one()
        pending_commands = s.execute(sa.select(sa.func.count()).select_from(Command)
                                     .join(Meter, Meter.id == Command.meter_id)
                                     .join(Account, Account.id == Meter.account_id)
                                     .where(in_scope, Command.state == COMMAND_PENDING)).scalar()
        anomalies = s.execute(sa.select(sa.func.count()).select_from(
            _anomaly_scope(s, who).where(Anomaly.resolved_at.is_(None)).subquery())).scalar()
        approvals = s.execute(sa.select(sa.func.count()).select_from(CutApproval)
                              .join(Account, Account.id == CutApproval.account_id)
                              .where(in_scope, CutApproval.state == APPROVAL_PENDING)).scalar()
        tasks = s.execute(sa.select(sa.func.count()).select_from(ManagerTask)
                          .join(Account, Account.id == ManagerTask.account_id)
                          .where(in_scope, ManagerTask.done_at.is_(None))).scalar()
        status = calendar_status(s, utcnow().astimezone(CHINA_TZ).date())
    return _render(request, "console/dashboard.html", {
        "who": who, "rows": rows, "payments": payments, "pending_commands": pending_commands,
        "anomalies": anomalies, "approvals": approvals, "tasks": tasks,
        "calendar_warning": status.warning if status else None,
        "may_administer": scope.may_administer(who)})


# --- the field's indicators --------------------------------------------------------------------

async def indicators_page(request: Request) -> Response:
    """采集成功率, 费控执行成功率, 电费回收率, cuts and payment→power of the manager's buildings
    (or one), for the last 30 days or the last 12 months, with a chart each
    (`app.estate.indicators`; docs/console.md says how each is computed)."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    q = request.query_params
    by_month = q.get("period") == "month"
    building_id = q.get("building", "")
    today = utcnow().astimezone(CHINA_TZ).date()
    with transaction(request.app.state.engine, read_only=True) as s:
        buildings = scope.buildings(s, who)
        ids = [b.id for b in buildings]
        if building_id:
            if not building_id.isdigit() or int(building_id) not in ids:
                raise _not_found()
            ids = [int(building_id)]
        if by_month:
            first = (today.replace(day=1) - dt.timedelta(days=335)).replace(day=1)
            rows = monthly(s, ids, first, today, today=today)
        else:
            rows = daily(s, ids, today - dt.timedelta(days=29), today, today=today)
    label = "%Y-%m" if by_month else "%m-%d"
    charts = [
        (N_("采集成功率"), rate_chart([(r.first_day, r.reading_rate_pct) for r in rows],
                                      label=label)),
        (N_("费控执行成功率"), rate_chart([(r.first_day, r.fee_control_rate_pct) for r in rows],
                                        label=label)),
        (N_("电费回收率"), rate_chart([(r.first_day, r.collection_rate_pct) for r in rows],
                                      label=label)),
        (N_("停电次数"), count_chart([(r.first_day, r.cuts) for r in rows], label=label,
                                     unit=N_("次"))),
        (N_("缴费到复电（中位数）"), count_chart(
            [(r.first_day, None if r.payment_to_power_median_s is None
              else round(r.payment_to_power_median_s, 1)) for r in rows],
            label=label, unit="s")),
    ]
    return _render(request, "console/indicators.html", {
        "who": who, "rows": list(reversed(rows)), "charts": charts, "by_month": by_month,
        "building": building_id, "buildings": {b.id: b.name for b in buildings}})


# --- accounts ----------------------------------------------------------------------------------

SORTS = {"number": N_("户号"), "household": N_("房号"), "balance": N_("余额从低到高")}


async def accounts(request: Request) -> Response:
    """The accounts in scope: filtered (state, building, tariff, a search of 户号, 房号 or the
    holder's name: the page shows it masked), sorted (户号, 房号, balance), paged by keyset (`after`: the last row's sort key and 户号), so that the 200th
    page of 10,000 accounts costs what the first does."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    q = request.query_params
    state, text, after = q.get("state", ""), q.get("q", "").strip(), q.get("after", "")
    building_id, tariff = q.get("building", ""), q.get("tariff", "")
    sort = q.get("sort", "number") if q.get("sort", "number") in SORTS else "number"
    with transaction(request.app.state.engine, read_only=True) as s:
        query = scope.accounts_query(who)
        if building_id:
            if not building_id.isdigit() or scope.building(s, who, int(building_id)) is None:
                raise _not_found()
            query = query.where(Account.building_id == int(building_id))
        if tariff == "flat":
            query = query.where(Account.tariff_id.is_(None))
        elif tariff.isdigit():
            query = query.where(Account.tariff_id == int(tariff))
        if text:
            like = f"%{text[:40]}%"
            query = query.where(sa.or_(Account.number.like(like), Account.household.like(like),
                                       Account.holder_name.like(like)))
        if state not in STATES:
            state = ""
        key, number = after.rpartition("~")[::2] if "~" in after else ("", after)
        if sort == "balance":
            query, balance = states.with_balance(query)
            if number and re.fullmatch(r"-?\d{1,15}", key):
                query = query.where(sa.tuple_(balance, Account.number) > (int(key), number))
            query = query.order_by(balance, Account.number)
        elif sort == "household":
            if number:
                query = query.where(sa.tuple_(Account.household, Account.number) > (key, number))
            query = query.order_by(Account.household, Account.number)
        else:
            if number:
                query = query.where(Account.number > number)
            query = query.order_by(Account.number)
        page, found = states.page(s, query, state, PAGE + 1)
        more = len(page) > PAGE
        page = page[:PAGE]
        names = {b.id: b.name for b in scope.buildings(s, who)}
        tariffs = {t.id: t.name for t in s.exec(select(StoredTariff).order_by(StoredTariff.name))}
    next_after = ""
    if more:
        last = page[-1]
        next_after = (f"{found[last.id][1]}~{last.number}" if sort == "balance" else
                      f"{last.household}~{last.number}" if sort == "household" else last.number)
    return _render(request, "console/accounts.html", {
        "who": who, "accounts": page, "states": found, "more": more, "state": state,
        "q": text, "building": building_id, "buildings": names, "state_names": STATES,
        "tariff": tariff, "tariffs": tariffs, "sort": sort, "sorts": SORTS,
        "next_after": next_after})


async def account(request: Request) -> Response:
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    with transaction(request.app.state.engine, read_only=True) as s:
        a = scope.account(s, who, request.path_params["number"])
        if a is None:
            raise _not_found()
        building = s.get(Building, a.building_id)
        money = funds(s, {a.id})[a.id]
        meters = list(s.exec(select(Meter).where(Meter.account_id == a.id).order_by(Meter.id)))
        gateways = {g.id: g for g in s.exec(select(Gateway).where(
            Gateway.id.in_({m.gateway_id for m in meters} or {-1})))}
        entries = list(s.exec(select(LedgerEntry).where(LedgerEntry.account_id == a.id)
                              .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id.desc())
                              .limit(LEDGER_ROWS)))
        commands = _commands_of(s, meters)
        attempts = _attempts_of(s, commands)
        orders = list(s.exec(select(Order).where(Order.account_id == a.id)
                             .order_by(Order.created_at.desc(), Order.id.desc()).limit(20)))
        refunds = list(s.exec(select(Refund).where(Refund.account_id == a.id)
                              .order_by(Refund.created_at.desc(), Refund.id.desc()).limit(20)))
        notices = list(s.exec(select(Notice).where(Notice.account_id == a.id)
                              .order_by(Notice.created_at.desc(), Notice.id.desc()).limit(20)))
        messages = [(m, mask_recipient(m.channel, m.recipient)) for m in messages_of(s, a.id)]
        bound_residents, acceptances = residents_of(s, a.id), acceptances_of(s, a.id)
        decisions = list(s.exec(select(CutDecision).where(CutDecision.account_id == a.id)
                                .order_by(CutDecision.id.desc()).limit(20)))
        kept = kept_balance_fen(s, a.id)
        tariffs = {t.id: t.name for t in s.exec(select(StoredTariff).order_by(StoredTariff.name))}
        today = utcnow().astimezone(CHINA_TZ).date()
        days = dict(s.execute(
            sa.select(DailyFrozen.day, sa.func.sum(DailyFrozen.used_wh))
            .where(DailyFrozen.meter_id.in_([m.id for m in meters] or [-1]),
                   DailyFrozen.day > today - dt.timedelta(days=366))
            .group_by(DailyFrozen.day)).all())
    lines = _ledger_lines(entries, kept)
    daily = usage_chart([(today - dt.timedelta(days=k), int(days.get(
        today - dt.timedelta(days=k), 0))) for k in range(29, -1, -1)], label="%m-%d")
    months: dict = {}
    for day, wh in days.items():
        months[(day.year, day.month)] = months.get((day.year, day.month), 0) + int(wh)
    month_keys = []
    y, m = today.year, today.month
    for _ in range(12):
        month_keys.append((y, m))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    monthly = usage_chart([(dt.date(y, m, 1), months.get((y, m), 0))
                           for y, m in reversed(month_keys)], label="%Y-%m")
    return _render(request, "console/account.html", {
        "who": who, "a": a, "building": building, "funds": money, "meters": meters,
        "gateways": gateways, "format_address": format_address, "lines": lines, "commands": commands, "attempts": attempts, "decisions": decisions,
        "orders": orders, "refunds": refunds, "notices": notices, "messages": messages,
        "bound_residents": bound_residents, "acceptances": acceptances,
        "daily": daily, "monthly": monthly, "strategies": STRATEGIES, "tariffs": tariffs,
        "may_administer": scope.may_administer(who), "may_move_money": may_move_money(who),
        "saved": request.query_params.get("saved") == "1",
        "may_act": scope.may_decide_cuts(who), "error": request.query_params.get("error", "")})


async def account_commands(request: Request) -> Response:
    """The household's commands, as an htmx fragment the page polls while one is under way."""
    who = _who(request)
    if who is None:
        return Response(status_code=401)
    with transaction(request.app.state.engine, read_only=True) as s:
        a = scope.account(s, who, request.path_params["number"])
        if a is None:
            raise _not_found()
        meters = list(s.exec(select(Meter).where(Meter.account_id == a.id).order_by(Meter.id)))
        commands = _commands_of(s, meters)
        attempts = _attempts_of(s, commands)
    return _render(request, "console/_commands.html", {"a": a, "meters": meters,
                                                       "commands": commands,
                                                       "attempts": attempts})


LEDGER_ROWS = 200  # the newest entries shown; a day's charges fold into one line


def _ledger_lines(entries: list[LedgerEntry], kept: int) -> list[dict]:
    """The newest entries as lines, each with the balance after it (from the kept balance,
    backwards); a local day's consecutive charges fold into one line (`day`, `entries`, the
    sum, the energy) that the page opens to show each."""
    lines: list[dict] = []
    after = kept
    for entry in entries:
        day = entry.created_at.astimezone(CHINA_TZ).date()
        last = lines[-1] if lines else None
        if (entry.kind == CHARGE and last is not None and last["kind"] == CHARGE
                and last["day"] == day):
            last["entries"].append((entry, after))
            last["amount_fen"] += entry.amount_fen
            last["energy_wh"] += entry.energy_wh or 0
        else:
            lines.append({"kind": entry.kind, "day": day, "entries": [(entry, after)],
                          "amount_fen": entry.amount_fen, "energy_wh": entry.energy_wh or 0,
                          "after": after, "entry": entry})
        after -= entry.amount_fen
    return lines


def _attempts_of(s, commands: list[Command]) -> dict[int, list[CommandAttempt]]:
    found: dict[int, list[CommandAttempt]] = {c.id: [] for c in commands}
    if commands:
        for attempt in s.exec(select(CommandAttempt)
                              .where(CommandAttempt.command_id.in_(list(found)))
                              .order_by(CommandAttempt.id)):
            found[attempt.command_id].append(attempt)
    return found


def _commands_of(s, meters: list[Meter]) -> list[Command]:
    return list(s.exec(select(Command).where(Command.meter_id.in_([m.id for m in meters] or [-1]))
                       .order_by(Command.id.desc()).limit(20)))


async def manual_command(request: Request) -> Response:
    """A manual cut or restore of every meter of a household, with a reason: the same command
    rows the cut policy and a payment queue (`queue_cut`, `queue_restore`), confirmed by the
    worker's read-back; 404 outside the manager's scope or for finance."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not scope.may_decide_cuts(who):
        raise _not_found()
    action = request.path_params["action"]
    if action not in ("cut", "restore"):
        raise _not_found()
    form = await request.form()
    reason = str(form.get("reason", "")).strip()
    number = request.path_params["number"]
    with transaction(request.app.state.engine) as s:
        a = scope.account(s, who, number)
        if a is None:
            raise _not_found()
        if not reason:
            return _back(f"/accounts/{number}", N_("请写明理由"))
        if a.closed_at is not None:
            return _back(f"/accounts/{number}", N_("该户已销户，不能停电或复电"))
        queued = []
        for meter in s.exec(select(Meter).where(Meter.account_id == a.id).order_by(Meter.id)):
            why = f"manual {action} by {who.name}: {reason}"
            command = (queue_restore(s, meter, why) if action == "restore"
                       else queue_cut(s, meter, why))
            if command is not None:
                queued.append(command.id)
        audit.record(s, who, f"account.{action}", object_type="account", object_id=a.number,
                     after=f"commands {queued}", reason=reason, client=_client(request))
    return RedirectResponse(f"{PREFIX}/accounts/{number}", status_code=303)


def may_move_money(who) -> bool:
    """Adjust a balance, refund: estate administrators and finance."""
    return who.role in (ESTATE_ADMIN, FINANCE)


async def adjust(request: Request) -> Response:
    """A credit or debit with a reason: a ledger entry of kind `adjustment` (never an edit);
    a credit that brings the balance above the restore line restores, as a payment does."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not may_move_money(who):
        raise _not_found()
    form = await request.form()
    number = request.path_params["number"]
    reason = str(form.get("reason", "")).strip()
    direction = str(form.get("direction", ""))
    fen = rules.yuan(str(form.get("amount", "")))
    with transaction(request.app.state.engine) as s:
        a = scope.account(s, who, number)
        if a is None:
            raise _not_found()
        error = (N_("请写明理由") if not reason else
                 N_("金额应大于 0，最多两位小数") if not fen else
                 N_("请选择增加或扣减") if direction not in ("credit", "debit") else "")
        if error:
            return _back(f"/accounts/{number}", error)
        amount = fen if direction == "credit" else -fen
        lock_balances(s, [a.id])
        post_entry(s, account_id=a.id, amount_fen=amount, kind=ADJUSTMENT,
                   idempotency_key=f"adjustment:{a.id}:{secrets.token_hex(8)}",
                   memo=f"调整 {who.name}: {reason}"[:500])
        if amount > 0:
            restore_if_allowed(s, a, funds(s, {a.id})[a.id].balance_fen,
                               reason=f"adjustment by {who.name}")
        audit.record(s, who, "account.adjust", object_type="account", object_id=a.number,
                     after=f"{amount:+d} fen", reason=reason, client=_client(request))
    return RedirectResponse(f"{PREFIX}/accounts/{number}?saved=1", status_code=303)


async def refund(request: Request) -> Response:
    """Refund part or all of the unspent balance through the providers that took it
    (`request_refund` in this transaction with the audit entry, then `submit_refund`)."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not may_move_money(who):
        raise _not_found()
    form = await request.form()
    number = request.path_params["number"]
    reason, note = str(form.get("reason", "")), str(form.get("note", "")).strip()
    everything = form.get("all") == "on"
    fen = None if everything else rules.yuan(str(form.get("amount", "")))
    engine, providers = request.app.state.engine, request.app.state.providers
    if not note or (fen is None and not everything) or fen == 0:
        error = N_("请写明理由") if not note else N_("金额应大于 0，最多两位小数")
        return _back(f"/accounts/{number}", error)
    try:
        with transaction(engine) as s:
            a = scope.account(s, who, number)
            if a is None:
                raise _not_found()
            ask = RefundRequest(a.number, fen, reason, who.name, note)
            numbers = [r.out_refund_no for r in request_refund(s, ask,
                                                               channels=providers.channels)]
            audit.record(s, who, "account.refund", object_type="account", object_id=a.number,
                         after=f"{'all' if everything else fen} fen: {', '.join(numbers)}",
                         reason=f"{reason}: {note}", client=_client(request))
    except RefundRefused as exc:
        return _back(f"/accounts/{number}", str(exc))
    for out_refund_no in numbers:
        await asyncio.to_thread(submit_refund, engine, providers,
                                request.app.state.settings, out_refund_no)
    return RedirectResponse(f"{PREFIX}/accounts/{number}?saved=1", status_code=303)


async def emergency(request: Request) -> Response:
    """应急用电 taken on a resident's behalf (they phoned the office): `take_emergency_credit`,
    the same advance and restore as the resident's own button, with a reason; estate
    administrators and building managers (it restores power)."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not scope.may_decide_cuts(who):
        raise _not_found()
    reason = str((await request.form()).get("reason", "")).strip()
    number = request.path_params["number"]
    with transaction(request.app.state.engine) as s:
        a = scope.account(s, who, number)
        if a is None:
            raise _not_found()
        if not reason:
            return _back(f"/accounts/{number}", N_("请写明理由"))
        try:
            take_emergency_credit(s, a)
        except EmergencyCreditRefused as exc:
            return _back(f"/accounts/{number}", str(exc))
        audit.record(s, who, "account.emergency_credit", object_type="account",
                     object_id=number, after=f"+{a.emergency_credit_fen} fen advanced",
                     reason=reason, client=_client(request))
    return RedirectResponse(f"{PREFIX}/accounts/{number}?saved=1", status_code=303)


async def close(request: Request) -> Response:
    """Close an account (销户: `close_account`: the final reading billed, the balance refunded
    or carried, no more reading, charging or cutting) or reopen it, with a reason; estate
    administrators and finance."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not may_move_money(who):
        raise _not_found()
    form = await request.form()
    number, reopen = request.path_params["number"], request.url.path.endswith("/reopen")
    reason = str(form.get("reason", "")).strip()
    settle = str(form.get("settle", ""))
    engine, providers = request.app.state.engine, request.app.state.providers
    try:
        with transaction(engine) as s:
            a = scope.account(s, who, number)
            if a is None:
                raise _not_found()
            if not reason:
                return _back(f"/accounts/{number}", N_("请写明理由"))
            if reopen:
                reopen_account(s, a)
                audit.record(s, who, "account.reopen", object_type="account", object_id=number,
                             before="closed", after="open", reason=reason,
                             client=_client(request))
                refunds = []
            else:
                if settle not in (REFUND, CARRY):
                    return _back(f"/accounts/{number}", N_("请选择退还余额或保留余额"))
                closing = close_account(s, a, by=who.name, reason=reason, settle=settle,
                                        channels=providers.channels)
                refunds = [r.out_refund_no for r in closing.refunds]
                audit.record(s, who, "account.close", object_type="account", object_id=number,
                             before=f"open, {closing.balance_fen} fen",
                             after=f"closed ({settle}); final charge {closing.final_fen} fen; "
                                   f"refunds {', '.join(refunds) or '-'}",
                             reason=reason, client=_client(request))
    except ClosingRefused as exc:
        return _back(f"/accounts/{number}", str(exc))
    for out_refund_no in refunds:
        await asyncio.to_thread(submit_refund, engine, providers,
                                request.app.state.settings, out_refund_no)
    return RedirectResponse(f"{PREFIX}/accounts/{number}?saved=1", status_code=303)


# --- approvals and tasks -------------------------------------------------------------------------

async def approvals(request: Request) -> Response:
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    with transaction(request.app.state.engine, read_only=True) as s:
        in_scope = Account.building_id.in_(scope.building_ids(s, who) or [-1])
        waiting = list(s.execute(select(CutApproval, Account)
                                 .join(Account, Account.id == CutApproval.account_id)
                                 .where(in_scope, CutApproval.state == APPROVAL_PENDING)
                                 .order_by(CutApproval.requested_at)).all())
        tasks = list(s.execute(select(ManagerTask, Account)
                               .join(Account, Account.id == ManagerTask.account_id)
                               .where(in_scope, ManagerTask.done_at.is_(None))
                               .order_by(ManagerTask.created_at)).all())
    return _render(request, "console/approvals.html", {
        "who": who, "waiting": waiting, "tasks": tasks, "may_decide": scope.may_decide_cuts(who),
        "error": request.query_params.get("error", "")})


async def decide(request: Request) -> Response:
    """Approve or reject a waiting cut (`decide_approval`), or close a task
    (`complete_task`), with a reason; 404 outside the manager's scope or for finance.
    `/approvals/bulk/<verb>` does the same to every checked item (`id`), with one reason, in
    one transaction: one item outside the scope and nothing is done."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not scope.may_decide_cuts(who):
        raise _not_found()
    form = await request.form()
    reason, verb = str(form.get("reason", "")).strip(), request.path_params["verb"]
    if verb not in ("approve", "reject", "done"):
        raise _not_found()
    if "item_id" in request.path_params:
        items = [request.path_params["item_id"]]
    else:
        items = sorted({int(i) for i in form.getlist("id") if str(i).isdigit()})
        if not items:
            return _back("/approvals", N_("请先勾选要处理的项目"))
    if not reason:
        return _back("/approvals", N_("请写明理由"))
    with transaction(request.app.state.engine) as s:
        in_scope = Account.building_id.in_(scope.building_ids(s, who) or [-1])
        handled = [_decide_one(s, who, request, verb, item_id, reason, in_scope)
                   for item_id in items]
    if len(items) == 1 and not handled[0]:
        return _back("/approvals", N_("该审批已处理"))
    return RedirectResponse(f"{PREFIX}/approvals", status_code=303)


def _decide_one(s, who, request: Request, verb: str, item_id: int, reason: str,
                in_scope) -> bool:
    """One approval or task decided (True), or found decided already (False); 404 when
    outside the scope."""
    if verb in ("approve", "reject"):
        row = s.execute(select(CutApproval).join(Account, Account.id == CutApproval.account_id)
                        .where(CutApproval.id == item_id, in_scope)
                        .with_for_update()).scalar()
        if row is None:
            raise _not_found()
        if row.state != APPROVAL_PENDING:
            return False
        decide_approval(s, row, approve=verb == "approve", by=who.name, now=utcnow(),
                        note=reason)
        if verb == "approve":  # the worker reads the meter now and applies the policy
            meter = s.get(Meter, row.meter_id)
            if meter is not None:
                queue_read(s, meter, f"cut approved by {who.name}")
        audit.record(s, who, f"cut.{verb}", object_type="cut_approval", object_id=row.id,
                     before=APPROVAL_PENDING, after=row.state, reason=reason,
                     client=_client(request))
        return True
    task = s.execute(select(ManagerTask).join(Account, Account.id == ManagerTask.account_id)
                     .where(ManagerTask.id == item_id, in_scope)).scalar()
    if task is None:
        raise _not_found()
    if task.done_at is not None:
        return True  # done already: nothing to say
    complete_task(s, task, by=who.name, now=utcnow(), resolution=reason)
    audit.record(s, who, "task.done", object_type="manager_task", object_id=task.id,
                 before="open", after="done", reason=reason, client=_client(request))
    return True


# --- settings ------------------------------------------------------------------------------------

def _save(s, who, request: Request, row, changes: dict, kind: str, object_id) -> None:
    """Checked settings onto `row`, and the change (if any) into the audit log."""
    before, after = rules.apply(row, changes)
    if after:
        s.add(row)
        audit.record(s, who, f"{kind}.settings", object_type=kind, object_id=object_id,
                     before=before, after=after, client=_client(request))


async def estate_settings(request: Request) -> Response:
    """The estate's cut policy and contact (estate administrators change them)."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    errors, saved = {}, False
    engine = request.app.state.engine
    if request.method == "POST":
        if not scope.may_administer(who):
            raise _not_found()
        form = await request.form()
        changes, errors = rules.validate_estate(form)
        if not errors:
            with transaction(engine) as s:
                estate = s.get(Estate, who.estate_id)
                _save(s, who, request, estate, changes, "estate", estate.id)
            saved = True
    with transaction(engine, read_only=True) as s:
        estate = s.get(Estate, who.estate_id)
        buildings = scope.buildings(s, who)
    form = (await request.form()) if errors else None
    return _render(request, "console/settings.html", {
        "who": who, "estate": estate, "buildings": buildings, "errors": errors, "saved": saved,
        "form": form, "may_administer": scope.may_administer(who)},
        status_code=400 if errors else 200)


async def account_settings(request: Request) -> Response:
    """A household's thresholds, care list, emergency credit and strategy."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not scope.may_administer(who):
        raise _not_found()
    number = request.path_params["number"]
    form = await request.form()
    with transaction(request.app.state.engine) as s:
        a = scope.account(s, who, number)
        if a is None:
            raise _not_found()
        changes, errors = rules.validate_account(form, set(s.exec(select(StoredTariff.id))))
        if errors:
            message = "；".join(errors.values())
            return _back(f"/accounts/{number}", message)
        _save(s, who, request, a, changes, "account", a.number)
    return RedirectResponse(f"{PREFIX}/accounts/{number}?saved=1", status_code=303)


async def building_page(request: Request) -> Response:
    """A building: its share scheme and period (estate administrators change them) and its
    latest common-area shares."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    engine, errors, saved = request.app.state.engine, {}, False
    building_id = request.path_params["building_id"]
    if request.method == "POST":
        if not scope.may_administer(who):
            raise _not_found()
        changes, errors = rules.validate_building(await request.form())
        with transaction(engine) as s:
            building = scope.building(s, who, building_id)
            if building is None:
                raise _not_found()
            if not errors:
                _save(s, who, request, building, changes, "building", building.id)
                saved = True
    with transaction(engine, read_only=True) as s:
        building = scope.building(s, who, building_id)
        if building is None:
            raise _not_found()
        runs = list(s.exec(select(ShareRun).where(ShareRun.building_id == building.id)
                           .order_by(ShareRun.period_start.desc()).limit(31)))
        common = list(s.exec(select(Meter).where(Meter.building_id == building.id,
                                                 Meter.account_id.is_(None))
                             .order_by(Meter.id)))
        run_id = request.query_params.get("run", "")
        shown = next((r for r in runs if str(r.id) == run_id), runs[0] if runs else None)
        if run_id and (shown is None or str(shown.id) != run_id):
            shown = s.exec(select(ShareRun).where(ShareRun.building_id == building.id,
                                                  ShareRun.id == int(run_id))).first() \
                if run_id.isdigit() else None
            if shown is None:
                raise _not_found()
        shares = _shares_of(s, shown) if shown else []
        today = utcnow().astimezone(CHINA_TZ).date()
        losses = list(reversed(line_loss_days(s, building.id, today - dt.timedelta(days=30),
                                              today - dt.timedelta(days=1))))
        main = s.exec(select(Meter).where(Meter.building_id == building.id,
                                          Meter.building_main.is_(True))).first()
        areas = s.exec(select(Account.floor_area_m2).where(  # exact (SQLite keeps them as text)
            Account.building_id == building.id, Account.closed_at.is_(None))).all()
    return _render(request, "console/building.html", {
        "who": who, "building": building, "runs": runs, "errors": errors, "saved": saved,
        "households": len(areas), "household_area": sum(areas, Decimal(0)),
        "common": common, "shown": shown, "shares": shares, "losses": losses, "main": main,
        "form": (await request.form()) if errors else None,
        "shares_fen": sum(e.amount_fen for e, _ in shares),
        "schemes": SCHEME_NAMES, "may_administer": scope.may_administer(who)},
        status_code=400 if errors else 200)


SCHEME_NAMES = {"area": N_("按面积"), "equal": N_("平均"), "usage": N_("按用电")}


def _shares_of(s, run: ShareRun) -> list[tuple[LedgerEntry, Account]]:
    """Every household's `share` entry of one run (their keys share a prefix: read by a range
    of the idempotency key's unique index), with its account."""
    prefix = f"share:{run.building_id}:{period_label(run.period_start, run.period_end)}:"
    return list(s.execute(
        select(LedgerEntry, Account).join(Account, Account.id == LedgerEntry.account_id)
        .where(LedgerEntry.idempotency_key >= prefix,
               LedgerEntry.idempotency_key < prefix + "\U0010ffff",
               LedgerEntry.kind == SHARE)
        .order_by(Account.household, Account.number)).all())


# --- managers -------------------------------------------------------------------------------------

async def managers(request: Request) -> Response:
    """The estate's managers; an estate administrator adds one (with its buildings) or disables
    one (its sessions end) — `app.console.managers`, audited."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not scope.may_administer(who):
        raise _not_found()
    engine, error, done = request.app.state.engine, "", ""
    if request.method == "POST":
        form = await request.form()
        try:
            with transaction(engine) as s:
                if form.get("scope"):
                    buildings = [int(b) for b in form.getlist("building") if str(b).isdigit()]
                    if not set(buildings) <= set(scope.building_ids(s, who)):
                        raise _not_found()
                    done = scope_manager(s, str(form.get("scope")), buildings,
                                         estate_id=who.estate_id, by=who).name
                elif form.get("disable"):
                    target = s.exec(select(Manager).where(
                        Manager.name == str(form.get("disable")),
                        Manager.estate_id == who.estate_id)).first()
                    if target is None:
                        raise _not_found()
                    if target.id == who.manager_id:
                        raise ManagerError(N_("不能停用自己"))
                    disable_manager(s, target.name, by=who)
                    done = target.name
                else:
                    buildings = [int(b) for b in form.getlist("building") if str(b).isdigit()]
                    allowed = set(scope.building_ids(s, who))
                    if not set(buildings) <= allowed:
                        raise _not_found()
                    m = add_manager(s, str(form.get("name", "")), role=str(form.get("role", "")),
                                    estate_id=who.estate_id,
                                    password=str(form.get("password", "")),
                                    building_ids=buildings, by=who)
                    done = m.name
        except ManagerError as exc:
            error = str(exc)
    with transaction(engine, read_only=True) as s:
        rows = [r for r in list_managers(s) if r.estate_id == who.estate_id]
        names = {b.id: b.name for b in scope.buildings(s, who)}
    return _render(request, "console/managers.html", {
        "who": who, "rows": rows, "buildings": names, "error": error, "done": done},
        status_code=400 if error else 200)


# --- anomalies ----------------------------------------------------------------------------------

def _anomaly_scope(s, who):
    """Anomalies of accounts in scope, of common-area meters of buildings in scope, or of a
    gateway that serves a meter of a building in scope (a whole gateway down)."""
    ids = scope.building_ids(s, who) or [-1]
    served = (sa.select(Meter.gateway_id).outerjoin(Account, Account.id == Meter.account_id)
              .where(sa.or_(Account.building_id.in_(ids), Meter.building_id.in_(ids))))
    return (select(Anomaly, Account.number, Account.household)
            .outerjoin(Account, Account.id == Anomaly.account_id)
            .outerjoin(Meter, Meter.id == Anomaly.meter_id)
            .where(sa.or_(Account.building_id.in_(ids),
                          sa.and_(Anomaly.account_id.is_(None), Meter.building_id.in_(ids)),
                          sa.and_(Anomaly.gateway_id.is_not(None),
                                  Anomaly.gateway_id.in_(served)))))


async def anomalies(request: Request) -> Response:
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    since = utcnow() - dt.timedelta(days=7)
    with transaction(request.app.state.engine, read_only=True) as s:
        rows = list(s.execute(_anomaly_scope(s, who).where(Anomaly.resolved_at.is_(None))
                              .order_by(Anomaly.created_at, Anomaly.id)).all())
        late = list(s.execute(
            select(Order, Account.number).join(Account, Account.id == Order.account_id)
            .where(Account.building_id.in_(scope.building_ids(s, who) or [-1]),
                   Order.status == PAID_AFTER_CLOSE).order_by(Order.closed_at)).all())
        failed = [(m, number, household, mask_recipient(m.channel, m.recipient))
                  for m, number, household in failed_messages(
                      s, scope.building_ids(s, who), since)]
        refused, differences = [], []
        if who.building_ids is None:  # not tied to a building: the estate-wide roles see them
            differences = list(s.exec(
                select(ReconcileDifference)
                .where(ReconcileDifference.bill_date >= since.astimezone(CHINA_TZ).date()
                       - dt.timedelta(days=23))
                .order_by(ReconcileDifference.bill_date.desc(), ReconcileDifference.id)
                .limit(200)))
            refused = list(s.execute(
                sa.select(RefusedCount.channel, RefusedCount.reason,
                          sa.func.sum(RefusedCount.count), sa.func.max(RefusedCount.last_at))
                .where(RefusedCount.hour >= since.replace(minute=0, second=0, microsecond=0))
                .group_by(RefusedCount.channel, RefusedCount.reason)
                .order_by(sa.func.sum(RefusedCount.count).desc())).all())
    return _render(request, "console/anomalies.html", {
        "who": who, "rows": rows, "late": late, "refused": refused, "differences": differences,
        "failed_messages": failed,
        "may_act": scope.may_decide_cuts(who), "may_move_money": may_move_money(who),
        "error": request.query_params.get("error", "")})


async def credit_late(request: Request) -> Response:
    """Credit a payment that came after its order was closed (`credit_late_payment`: the
    credit a notification would have made, once), with a reason; estate administrators and
    finance, within their scope."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not may_move_money(who):
        raise _not_found()
    reason = str((await request.form()).get("reason", "")).strip()
    out_trade_no = request.path_params["out_trade_no"]
    with transaction(request.app.state.engine) as s:
        order = s.execute(
            select(Order).join(Account, Account.id == Order.account_id)
            .where(Order.out_trade_no == out_trade_no,
                   Account.building_id.in_(scope.building_ids(s, who) or [-1]))).scalar()
        if order is None:
            raise _not_found()
        if not reason:
            return _back("/anomalies", N_("请写明理由"))
        try:
            credit_late_payment(s, out_trade_no, by=who.name)
        except ValueError:
            return _back("/anomalies", N_("该付款已处理"))
        audit.record(s, who, "payment.credit_late", object_type="order", object_id=out_trade_no,
                     before=PAID_AFTER_CLOSE, after=f"paid, {order.amount_fen} fen credited",
                     reason=reason, client=_client(request))
    return RedirectResponse(f"{PREFIX}/anomalies", status_code=303)


async def resolve(request: Request) -> Response:
    """Resolve an anomaly with a note (`resolve_anomaly`); 404 outside scope or for finance."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    if not scope.may_decide_cuts(who):
        raise _not_found()
    note = str((await request.form()).get("note", "")).strip()
    anomaly_id = request.path_params["anomaly_id"]
    with transaction(request.app.state.engine) as s:
        found = s.execute(_anomaly_scope(s, who).where(Anomaly.id == anomaly_id)).first()
        if found is None:
            raise _not_found()
        if not note:
            return _back("/anomalies", N_('请写明处理结果'))
        try:
            anomaly = resolve_anomaly(s, anomaly_id, by=who.name, note=note)
        except ValueError:
            return _back("/anomalies", N_('该异常已处理'))
        audit.record(s, who, "anomaly.resolve", object_type="anomaly", object_id=anomaly.id,
                     before=anomaly.kind, after="resolved", reason=note, client=_client(request))
    return RedirectResponse(f"{PREFIX}/anomalies", status_code=303)


# --- public holidays -------------------------------------------------------------------------------

async def holidays(request: Request) -> Response:
    """A year's arrangement with its sources; an estate administrator loads a file here, as
    `feikong holidays load` does (app/policy/arrangements.py, docs/holidays.md)."""
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    engine = request.app.state.engine
    year_text = request.query_params.get("year", "")
    today = utcnow().astimezone(CHINA_TZ).date()
    year = int(year_text) if year_text.isdigit() and 2000 <= int(year_text) <= 2199 \
        else today.year + 1
    problems, loaded = [], None
    if request.method == "POST":
        if not scope.may_administer(who):
            raise _not_found()
        form = await request.form()
        upload = form.get("file")
        data = await upload.read() if hasattr(upload, "read") else b""
        try:
            parsed = parse_arrangement(decode_file(data))
        except ArrangementError as exc:
            problems = exc.problems
        else:
            with transaction(engine) as s:
                row = load_arrangement(s, parsed, by=who.name,
                                       file_name=getattr(upload, "filename", "") or "",
                                       now=utcnow())
                if row is not None:
                    audit.record(s, who, "holidays.load", object_type="holiday_arrangement",
                                 object_id=row.id, after=f"{parsed.year}: {parsed.source}",
                                 client=_client(request))
            loaded, year = parsed.year, parsed.year
    with transaction(engine, read_only=True) as s:
        listing = year_listing(s, year)
        status = calendar_status(s, today)
    return _render(request, "console/holidays.html", {
        "who": who, "year": year, "listing": listing.splitlines(), "problems": problems,
        "loaded": loaded, "calendar_warning": status.warning if status else None,
        "may_administer": scope.may_administer(who)},
        status_code=400 if problems else 200)


# --- the audit log ----------------------------------------------------------------------------

async def audit_log(request: Request) -> Response:
    who = _who(request)
    if who is None:
        return _login_redirect(request)
    with transaction(request.app.state.engine, read_only=True) as s:
        entries = list(s.exec(select(AuditEntry).where(AuditEntry.estate_id == who.estate_id)
                              .order_by(AuditEntry.at.desc(), AuditEntry.id.desc()).limit(200)))
    return _render(request, "console/audit.html", {"who": who, "entries": entries})


def console_mount(settings) -> Mount:
    """/manage/ with its middleware: security headers outside, CSRF inside."""
    routes = [
        Route("/", dashboard, name="console_dashboard"),
        Route("/login", login, methods=["GET", "POST"], name="console_login"),
        Route("/logout", logout, methods=["POST"], name="console_logout"),
        Route("/logout/everywhere", logout, methods=["POST"], name="console_logout_everywhere"),
        Route("/indicators", indicators_page, name="console_indicators"),
        Route("/accounts", accounts, name="console_accounts"),
        Route("/accounts/{number}", account, name="console_account"),
        Route("/accounts/{number}/_commands", account_commands, name="console_commands"),
        Route("/accounts/{number}/settings", account_settings, methods=["POST"],
              name="console_account_settings"),
        Route("/accounts/{number}/adjust", adjust, methods=["POST"], name="console_adjust"),
        Route("/accounts/{number}/refund", refund, methods=["POST"], name="console_refund"),
        Route("/accounts/{number}/emergency", emergency, methods=["POST"],
              name="console_emergency"),
        Route("/accounts/{number}/close", close, methods=["POST"], name="console_close"),
        Route("/accounts/{number}/reopen", close, methods=["POST"], name="console_reopen"),
        Route("/accounts/{number}/{action}", manual_command, methods=["POST"],
              name="console_manual_command"),
        Route("/approvals", approvals, name="console_approvals"),
        Route("/approvals/{item_id:int}/{verb}", decide, methods=["POST"],
              name="console_decide"),
        Route("/approvals/bulk/{verb}", decide, methods=["POST"], name="console_decide_bulk"),
        Route("/audit", audit_log, name="console_audit"),
        Route("/anomalies", anomalies, name="console_anomalies"),
        Route("/managers", managers, methods=["GET", "POST"], name="console_managers"),
        Route("/settings", estate_settings, methods=["GET", "POST"], name="console_settings"),
        Route("/buildings/{building_id:int}", building_page, methods=["GET", "POST"],
              name="console_building"),
        Route("/anomalies/{anomaly_id:int}/resolve", resolve, methods=["POST"],
              name="console_resolve"),
        Route("/payments/{out_trade_no}/credit", credit_late, methods=["POST"],
              name="console_credit_late"),
        Route("/holidays", holidays, methods=["GET", "POST"], name="console_holidays"),
        Route("/import", imports.import_page, methods=["GET", "POST"], name="console_import"),
        Route("/import/template", imports.template_download, name="console_import_template"),
        *exports.routes(),  # /exports, /jobs (app/console/exports.py)
        *charts.routes(),  # /charts (app/console/charts.py)
    ]
    return Mount(PREFIX, routes=routes, middleware=[
        Middleware(SecurityHeaders),
        Middleware(MultipartTokenInHeader),
        Middleware(asgi_csrf, signing_secret=f"{settings.secret_key}:console-csrf",
                   cookie_path=PREFIX, always_protect={f"{PREFIX}/login"},
                   cookie_secure=settings.base_url.startswith("https://")),
    ])
