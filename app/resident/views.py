"""The resident's pages: find an account by 户号, see balance and supply, top up."""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.billing.emergency import (EmergencyCreditRefused, emergency_credit_offered,
                                   outstanding_emergency_fen, take_emergency_credit)
from app.commands.services import POWER_OFF, RESTORING, meters_of, power_state
from app.db import transaction, utcnow
from app.estate.models import Account, Building, Estate, Meter
from app.i18n import gettext as _
from app.ledger.models import LedgerEntry
from app.ledger.services import balance_fen, recent_entries
from app.notices.models import Notice
from app.money import yuan_str_to_fen
from app.orders.models import PENDING, Order
from app.orders.providers import NOTIFY_PATHS
from app.orders.services import MAX_TOPUP_FEN, MIN_TOPUP_FEN, create_order
from payments.base import OrderInfo
from payments.wechat import WechatPayError

log = logging.getLogger(__name__)

PRESET_YUAN = (20, 50, 100, 200)
NOTICES_SHOWN_FOR = dt.timedelta(days=7)
ACCOUNT_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,32}$")
WECHAT_BROWSER = "micromessenger"  # in the user agent of WeChat's built-in browser


def in_wechat(request: Request) -> bool:
    """Inside WeChat's browser, where WeChat Pay allows JSAPI only, not H5."""
    return WECHAT_BROWSER in request.headers.get("user-agent", "").lower()


def wechat_inside_message() -> str:
    return _("在微信里暂时不能用微信支付：公众号内支付将随公众号登录一起开通。"
             "请点右上角「···」，选「在浏览器打开」，再用微信支付。")


@dataclass
class AccountView:
    """Everything the account page shows, read in one transaction."""

    account: Account
    building: Building
    estate: Estate
    balance_fen: int
    power: str
    last_read_at: object
    entries: list[LedgerEntry]
    order: Order | None
    notices: list[Notice]
    emergency_offer_fen: int = 0  # 应急用电 the page offers now (0: none)
    emergency_owed_fen: int = 0  # taken and not yet repaid

    @property
    def days_left(self) -> int | None:
        """Whole days the balance lasts at the recent daily rate (None when unknown)."""
        rate = self.account.daily_rate_fen
        if rate <= 0 or self.balance_fen <= 0:
            return None
        return self.balance_fen // rate

    @property
    def watching(self) -> bool:
        """Keep refreshing while a payment or a restore is under way."""
        return self.power == RESTORING or (self.order is not None and self.order.status == PENDING)


def load_account_view(session: Session, number: str, out_trade_no: str | None) -> AccountView | None:
    account = session.exec(select(Account).where(Account.number == number)).first()
    if account is None:
        return None
    building = session.get(Building, account.building_id)
    meters: list[Meter] = meters_of(session, account.id)
    read_times = [m.last_read_at for m in meters if m.last_read_at is not None]
    order = None
    if out_trade_no:
        order = session.exec(select(Order).where(Order.out_trade_no == out_trade_no,
                                                 Order.account_id == account.id)).first()
    balance = balance_fen(session, account.id)
    power = power_state(session, account.id)
    needs_power = power == POWER_OFF or balance <= account.restore_threshold_fen
    offer = (account.emergency_credit_fen
             if needs_power and power != RESTORING and emergency_credit_offered(session, account)
             else 0)
    return AccountView(
        account=account, building=building, estate=session.get(Estate, building.estate_id),
        balance_fen=balance, power=power,
        emergency_offer_fen=offer, emergency_owed_fen=outstanding_emergency_fen(session, account.id),
        last_read_at=max(read_times) if read_times else None,
        entries=recent_entries(session, account.id), order=order,
        notices=list(session.exec(
            select(Notice).where(Notice.account_id == account.id,
                                 Notice.created_at >= utcnow() - NOTICES_SHOWN_FOR)
            .order_by(Notice.created_at.desc(), Notice.id.desc()).limit(3))),
    )


def render(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context,
                                                       status_code=status_code)


async def home(request: Request) -> Response:
    number = request.query_params.get("number", "").strip()
    if number:
        if not ACCOUNT_NUMBER.match(number):
            return render(request, "resident/home.html",
                          {"error": _("户号格式不对，请核对后重新输入"), "number": number[:40]}, 400)
        return RedirectResponse(request.url_for("account", number=number), status_code=303)
    return render(request, "resident/home.html", {"error": None, "number": ""})


async def _view_or_404(request: Request, number: str):
    out_trade_no = request.query_params.get("order")
    engine = request.app.state.engine

    def load():
        with transaction(engine, read_only=True) as session:
            return load_account_view(session, number, out_trade_no)

    view = await run_in_threadpool(load)
    if view is None:
        return None, render(request, "resident/not_found.html", {"number": number[:40]}, 404)
    return view, None


def render_account(request: Request, view: AccountView, error: str | None = None,
                   status_code: int = 200) -> Response:
    return render(request, "resident/account.html", {
        "v": view, "presets": PRESET_YUAN, "error": error,
        "channels": request.app.state.providers.channels, "in_wechat": in_wechat(request),
        "wechat_inside": wechat_inside_message(),
    }, status_code)


async def account(request: Request) -> Response:
    view, missing = await _view_or_404(request, request.path_params["number"])
    if missing:
        return missing
    return render_account(request, view)


async def account_status(request: Request) -> Response:
    view, missing = await _view_or_404(request, request.path_params["number"])
    if missing:
        return missing
    return render(request, "resident/_status.html", {"v": view})


def parse_topup_amount(form) -> int:
    """The top-up amount in fen from the form: a preset (`amount` in whole yuan) or a custom
    amount in yuan with at most two decimals. Raises ValueError with a message for the page."""
    raw = (form.get("custom") or "").strip() or (form.get("amount") or "").strip()
    if not raw:
        raise ValueError(_("请选择或输入充值金额"))
    try:
        fen = yuan_str_to_fen(raw)
    except ValueError:
        raise ValueError(_("金额格式不对：最多两位小数，例如 50 或 35.50")) from None
    if not MIN_TOPUP_FEN <= fen <= MAX_TOPUP_FEN:
        raise ValueError(_("充值金额须在 {low} 元到 {high} 元之间").format(
            low=MIN_TOPUP_FEN // 100, high=MAX_TOPUP_FEN // 100))
    return fen


async def _account_with_error(request: Request, number: str, error: str,
                              status_code: int) -> Response:
    view, missing = await _view_or_404(request, number)
    if missing:
        return missing
    return render_account(request, view, error, status_code)


async def topup(request: Request) -> Response:
    """Create a pending order and send the browser to the provider's cashier. Moves no money.

    WeChat Pay's `start` is a blocking HTTP call (in the sandbox, to this very server): it runs
    in a thread, or the event loop would wait for itself. If WeChat refuses the order, the page
    says so (502) and nothing changes but the pending order, which is never paid."""
    number = request.path_params["number"]
    form = await request.form()
    providers = request.app.state.providers
    channel = form.get("channel") or next(iter(providers.channels), "")
    engine = request.app.state.engine
    settings = request.app.state.settings
    try:
        amount_fen = parse_topup_amount(form)
        if channel not in providers.channels:
            raise ValueError(_("不支持的支付方式"))
        if channel == "wechat" and in_wechat(request):
            raise ValueError(wechat_inside_message())
    except ValueError as exc:
        return await _account_with_error(request, number, str(exc), 400)

    def create():
        with transaction(engine) as session:
            acct = session.exec(select(Account).where(Account.number == number)).first()
            if acct is None:
                return None
            order = create_order(session, acct, amount_fen, channel)
            return OrderInfo(order.out_trade_no, order.amount_fen,
                             subject=f"电费充值 {acct.household}")

    info = await run_in_threadpool(create)
    if info is None:
        return render(request, "resident/not_found.html", {"number": number[:40]}, 404)
    provider = providers.by_channel(channel)
    start = {"notify_url": settings.base_url + NOTIFY_PATHS[channel],
             "return_url": f"{settings.base_url}/a/{number}?order={info.out_trade_no}"}
    if channel == "wechat":
        start["payer_client_ip"] = request.client.host if request.client else ""
    try:
        checkout = await run_in_threadpool(provider.start, info, **start)
    except (WechatPayError, ValueError) as exc:
        if channel != "wechat":
            raise
        log.warning("%s could not start order %s: %s", channel, info.out_trade_no, exc)
        return await _account_with_error(
            request, number, _("微信支付暂时无法下单，请稍后再试。您的余额没有变化。"), 502)
    return RedirectResponse(checkout.url, status_code=303)


async def emergency(request: Request) -> Response:
    """应急用电: the household takes its advance for the month; power is restored at once and the
    advance is repaid from the next top-up. Refused (the page says why, nothing changes) when
    not offered or already taken this month."""
    number = request.path_params["number"]
    engine = request.app.state.engine

    def take() -> str | None:
        with transaction(engine) as session:
            acct = session.exec(select(Account).where(Account.number == number)).first()
            if acct is None:
                return None
            try:
                take_emergency_credit(session, acct)
            except EmergencyCreditRefused as exc:
                log.info("emergency credit refused for %s: %s", number, exc)
                return (_("本月已使用过应急用电，请充值恢复供电。")
                        if acct.emergency_credit_fen > 0 else _("本户未开通应急用电。"))
            return ""

    error = await run_in_threadpool(take)
    if error is None:
        return render(request, "resident/not_found.html", {"number": number[:40]}, 404)
    if error:
        return await _account_with_error(request, number, error, 409)
    return RedirectResponse(request.url_for("account", number=number), status_code=303)
