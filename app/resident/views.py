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

from app.billing.emergency import (EmergencyCreditRefused, balance_and_advance_fen,
                                   emergency_credit_offered, take_emergency_credit)
from app.commands.services import POWER_OFF, RESTORING, meters_of, power_state
from app.db import transaction, utcnow
from app.estate.models import Account, Building, Estate, Meter
from app.i18n import gettext as _
from app.ledger.models import LedgerEntry
from app.ledger.services import recent_entries
from app.notices.models import Notice
from app.money import yuan_str_to_fen
from app.orders.models import PENDING, Order
from app.orders.providers import NOTIFY_PATHS, WECHAT_JSAPI_PAY_PATH, WECHAT_OAUTH_CALLBACK_PATH
from app.orders.services import (MAX_TOPUP_FEN, MIN_TOPUP_FEN, AccountClosed, create_order,
                                 order_info)
from app.resident.wechat import WechatCookies
from payments.base import OrderInfo
from payments.wechat import WechatPayError
from payments.wechat_oauth import WechatOAuthError, mask_openid

log = logging.getLogger(__name__)

PRESET_YUAN = (20, 50, 100, 200)
NOTICES_SHOWN_FOR = dt.timedelta(days=7)
PAYMENT_WATCH_FOR = dt.timedelta(minutes=10)  # then a pending order is most likely not paid
ACCOUNT_NUMBER = re.compile(r"^[0-9A-Za-z-]{1,32}$")
WECHAT_BROWSER = "micromessenger"  # in the user agent of WeChat's built-in browser


def in_wechat(request: Request) -> bool:
    """Inside WeChat's browser, where WeChat Pay allows JSAPI only, not H5."""
    return WECHAT_BROWSER in request.headers.get("user-agent", "").lower()


def jsapi_offered(request: Request) -> bool:
    """JSAPI pay inside WeChat: WeChat Pay is offered and the official account's OAuth is set
    up (its appsecret), so the payer's openid can be had."""
    providers = request.app.state.providers
    return "wechat" in providers.channels and providers.wechat_oauth is not None


def wechat_inside_message() -> str:
    return _("在微信里暂时不能用微信支付。"
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
        """Keep refreshing while a restore is under way, or a payment is awaited (not for ever:
        see `refresh_every`)."""
        return self.refresh_every is not None

    @property
    def payment_overdue(self) -> bool:
        """The resident came back from the cashier long ago and no payment came: most likely
        they did not pay (or cancelled). The page says so and stops asking."""
        return (self.order is not None and self.order.status == PENDING
                and utcnow() - self.order.created_at > PAYMENT_WATCH_FOR)

    @property
    def refresh_every(self) -> str | None:
        """How often the page asks for news (htmx's `every …`), or None: every 500 ms while a
        restore is under way or a payment is fresh, every 5 s for a payment a minute old, not
        at all past `PAYMENT_WATCH_FOR` (one open page must not poll for the order's whole
        life)."""
        if self.power == RESTORING:
            return "500ms"
        if self.order is None or self.order.status != PENDING or self.payment_overdue:
            return None
        return "500ms" if utcnow() - self.order.created_at < dt.timedelta(minutes=1) else "5s"


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
    balance, owed = balance_and_advance_fen(session, account.id)  # one pass over the ledger
    power = power_state(session, account.id)
    needs_power = power == POWER_OFF or balance <= account.restore_threshold_fen
    offer = (account.emergency_credit_fen
             if needs_power and power != RESTORING and emergency_credit_offered(session, account)
             else 0)
    return AccountView(
        account=account, building=building, estate=session.get(Estate, building.estate_id),
        balance_fen=balance, power=power,
        emergency_offer_fen=offer, emergency_owed_fen=owed,
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
        "channels": request.app.state.providers.channels,
        "in_wechat": in_wechat(request) and not jsapi_offered(request),
        "inside_wechat": in_wechat(request),  # where WeChat blocks Alipay's pages
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
        if channel == "wechat" and in_wechat(request) and not jsapi_offered(request):
            raise ValueError(wechat_inside_message())
    except ValueError as exc:
        return await _account_with_error(request, number, str(exc), 400)
    if channel == "wechat" and in_wechat(request):
        return await _topup_inside_wechat(request, number, amount_fen)

    try:
        info = await run_in_threadpool(create_order_info, engine, number, amount_fen, channel)
    except AccountClosed:
        return await _account_with_error(request, number, _closed_message(), 409)
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


def create_order_info(engine, number: str, amount_fen: int, channel: str) -> OrderInfo | None:
    """A pending order for the account `number` (None if there is no such account), as the
    provider needs it. Moves no money."""
    with transaction(engine) as session:
        acct = session.exec(select(Account).where(Account.number == number)).first()
        if acct is None:
            return None
        return order_info(create_order(session, acct, amount_fen, channel), acct.household)


# -- inside WeChat: the official account's OAuth for the openid, then JSAPI pay -----------------

def _account_exists(engine, number: str) -> bool:
    with transaction(engine, read_only=True) as session:
        return session.exec(select(Account.id).where(Account.number == number)).first() is not None


async def _topup_inside_wechat(request: Request, number: str, amount_fen: int) -> Response:
    """With this browser's openid: the order, then its JSAPI pay page. Without: off to WeChat's
    OAuth (snsapi_base, no consent screen), the top-up kept in a signed cookie until WeChat sends
    the browser back to `wechat_oauth_callback`. Creates no order before the openid is known."""
    cookies = WechatCookies.for_request(request)
    if cookies.openid(request) is not None:
        return await _order_for_jsapi(request, number, amount_fen)
    if not await run_in_threadpool(_account_exists, request.app.state.engine, number):
        return render(request, "resident/not_found.html", {"number": number[:40]}, 404)
    pending = cookies.new_pending(number, amount_fen)
    callback = request.app.state.settings.base_url + WECHAT_OAUTH_CALLBACK_PATH
    reply = RedirectResponse(
        request.app.state.providers.wechat_oauth.authorize_url(callback, pending.state),
        status_code=303)
    cookies.set_pending(reply, pending)
    return reply


async def _order_for_jsapi(request: Request, number: str, amount_fen: int) -> Response:
    """A pending WeChat order, then (303) its JSAPI pay page: every page that opens WeChat's pay
    sheet lives in one directory, /wechat/pay/, the JSAPI 支付授权目录 WeChat checks exactly."""
    engine = request.app.state.engine
    try:
        info = await run_in_threadpool(create_order_info, engine, number, amount_fen, "wechat")
    except AccountClosed:
        return await _account_with_error(request, number, _closed_message(), 409)
    if info is None:
        return render(request, "resident/not_found.html", {"number": number[:40]}, 404)
    return RedirectResponse(
        f"{request.app.state.settings.base_url}{WECHAT_JSAPI_PAY_PATH}/{info.out_trade_no}",
        status_code=303)


def _oauth_failed(request: Request, message: str, number: str | None,
                  status_code: int) -> Response:
    return render(request, "resident/wechat_oauth_error.html",
                  {"message": message, "number": number}, status_code)


async def wechat_oauth_callback(request: Request) -> Response:
    """WeChat's OAuth sends the browser back here with `code` and `state`. The state must be
    the one this browser's signed cookie holds; the code is exchanged (wechatpy, in a thread) for
    the openid, which is kept in a signed cookie; then the top-up goes on: the order, and its
    pay page. A forged, expired or reused state or code gets a clear page and changes nothing:
    no order, no cookie."""
    oauth = request.app.state.providers.wechat_oauth
    if oauth is None:
        return _oauth_failed(request, _("微信内支付未开通。"), None, 404)
    cookies = WechatCookies.for_request(request)
    pending = cookies.pending(request, request.query_params.get("state", ""))
    if pending is None:
        log.info("WeChat OAuth callback refused: no pending top-up of this browser has its state")
        return _oauth_failed(request, _("这个支付链接已失效（超过 10 分钟，或已经用过）。"
                                        "请回到账户页重新充值，您的余额没有变化。"), None, 400)
    try:
        openid = await run_in_threadpool(oauth.fetch_openid, request.query_params.get("code", ""))
    except WechatOAuthError as exc:
        log.warning("WeChat OAuth code refused for %s: %s %s", pending.number, exc.code,
                    exc.message)
        network = exc.code == "NETWORK"
        message = (_("暂时连不上微信，请稍后再试。您的余额没有变化。") if network else
                   _("微信授权已失效，请回到账户页重新充值。您的余额没有变化。"))
        return _oauth_failed(request, message, pending.number, 502 if network else 400)
    log.info("WeChat OAuth: openid %s for %s", mask_openid(openid), pending.number)
    reply = await _order_for_jsapi(request, pending.number, pending.amount_fen)
    cookies.set_openid(reply, openid)
    cookies.clear_pending(reply)
    return reply


def _jsapi_order(engine, out_trade_no: str) -> tuple[OrderInfo, str, str] | None:
    """(the order as the provider needs it, its account's 户号, its status), or None."""
    with transaction(engine, read_only=True) as session:
        row = session.exec(select(Order, Account).join(Account, Account.id == Order.account_id)
                           .where(Order.out_trade_no == out_trade_no,
                                  Order.channel == "wechat")).first()
        if row is None:
            return None
        order, acct = row
        return order_info(order, acct.household), acct.number, order.status


async def wechat_pay(request: Request) -> Response:
    """The JSAPI pay page of a pending WeChat order, for this browser's openid: a prepay at
    WeChat Pay (a blocking call, in a thread; the same order again gives the same prepay) and
    the page that opens WeChat's pay sheet, then returns to the account page whatever happens.
    Moves no money: the credit comes only from WeChat Pay's verified notification. An order no
    longer pending goes to the account page; without the openid cookie, a clear page."""
    out_trade_no = request.path_params["out_trade_no"]
    engine, settings = request.app.state.engine, request.app.state.settings
    providers = request.app.state.providers
    if providers.wechat_oauth is None:
        return _oauth_failed(request, _("微信内支付未开通。"), None, 404)
    found = await run_in_threadpool(_jsapi_order, engine, out_trade_no)
    if found is None:
        return _oauth_failed(request, _("没有这笔充值订单。您的余额没有变化。"), None, 404)
    info, number, status = found
    back = f"/a/{number}?order={out_trade_no}"
    if status != PENDING:
        return RedirectResponse(back, status_code=303)
    openid = WechatCookies.for_request(request).openid(request)
    if openid is None:
        return _oauth_failed(request, _("微信授权已失效，请回到账户页重新充值。您的余额没有变化。"),
                             number, 400)
    try:
        params = await run_in_threadpool(
            providers.wechat.start_jsapi, info, openid=openid,
            notify_url=settings.base_url + NOTIFY_PATHS["wechat"])
    except (WechatPayError, ValueError) as exc:
        log.warning("wechat could not start JSAPI order %s: %s", out_trade_no, exc)
        return await _account_with_error(
            request, number, _("微信支付暂时无法下单，请稍后再试。您的余额没有变化。"), 502)
    reply = render(request, "resident/wechat_pay.html", {
        "params": params, "amount_fen": info.amount_fen, "number": number, "return_url": back,
        "sandbox_bridge": providers.wechat_standin is not None,
    })
    reply.headers["Cache-Control"] = "no-store"  # a one-time paySign
    return reply


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
                return (_("本户已销户。") if acct.closed_at is not None else
                        _("本月已使用过应急用电，请充值恢复供电。")
                        if acct.emergency_credit_fen > 0 else _("本户未开通应急用电。"))
            return ""

    error = await run_in_threadpool(take)
    if error is None:
        return render(request, "resident/not_found.html", {"number": number[:40]}, 404)
    if error:
        return await _account_with_error(request, number, error, 409)
    return RedirectResponse(request.url_for("account", number=number), status_code=303)


def _closed_message() -> str:
    return _("本户已销户，不能充值。如有疑问请联系物业。")
