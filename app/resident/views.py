"""The resident's pages: find an account by 户号, see balance and supply, top up.

Who sees what (app/resident/identity.py holds the rules' parts):
- Anyone may look up a 户号 and pay for it: the unbound page shows the masked holder, the
  building, the balance and the top-up buttons, and a way to bind; nothing else (no address, no
  history, notices or emergency credit). Households looked up by a visitor not bound to them are
  counted per client address (and per openid and phone): distinct 户号 beyond the limit get 429.
- A resident bound to the household sees the whole page, once they have accepted the current
  prepaid agreement (else they are sent to it first), and may take 应急用电 when the balance is
  below the low-balance threshold or the household is cut.
- A stranger's anything else (emergency credit, the agreement, unbinding) is a 404.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.billing.emergency import (EmergencyCreditRefused, balance_and_advance_fen,
                                   emergency_credit_offered, take_emergency_credit)
from app.commands.services import (POWER_OFF, PRESS_BUTTON, RESTORING, meters_of,
                                   power_state)
from app.db import transaction, utcnow
from app.estate.models import Account, Building, Estate, Meter
from app.i18n import gettext as _
from app.ledger.services import funds
from app.notices.models import Notice
from app.money import yuan_str_to_fen
from app.resident import identity
from app.resident.agreement import Agreement, load_agreement
from app.resident.identity import bindings, bound_account, has_accepted, resident_id
from app.resident.models import Resident, ResidentAccount
from app.resident.subscribe import subscribe_offer, with_offer_csp
from app.resident.statements import latest_notice
from app.resident.supply import (Cut, amount_to_restore_fen, last_cut, restores,
                                 whole_yuan_at_least)
from app.web.ratelimit import Limits
from app.messages.services import set_reminders
from app.orders.jobs import query_order
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


class PaymentWatch:
    """The payment the visitor came back with (`?order=`), and how the page follows it."""

    order: Order | None
    power: str

    @property
    def watching(self) -> bool:
        """Keep refreshing while a restore is under way, or a payment is awaited (not for ever:
        see `refresh_every`)."""
        return self.refresh_every is not None

    @property
    def unpaid(self) -> bool:
        """The provider was asked about the pending order since it was made and said it is not
        paid: cancelled in the cashier, or abandoned. The page says so and offers to pay again
        (a payment that comes after all is still credited and shown)."""
        return (self.order is not None and self.order.status == PENDING
                and self.order.unpaid_at is not None)

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
        if self.power == PRESS_BUTTON:  # the page turns to 供电中 once the button is pressed
            return "2s"
        if self.order is None or self.order.status != PENDING or self.payment_overdue:
            return None
        return "500ms" if utcnow() - self.order.created_at < dt.timedelta(minutes=1) else "5s"


@dataclass
class Household:
    """One of the resident's households, for the switcher."""

    number: str
    household: str
    estate: str
    balance_fen: int


@dataclass(frozen=True)
class Preset:
    """A top-up button: whole yuan, and whether paying it brings the power back (when cut)."""

    yuan: int
    restores: bool = True
    checked: bool = False


@dataclass
class AccountView(PaymentWatch):
    """Everything the bound resident's account page shows, read in one transaction."""

    account: Account
    building: Building
    estate: Estate
    balance_fen: int
    power: str
    last_read_at: object
    order: Order | None
    notice: Notice | None = None  # the latest notice, when the resident has not read it yet
    emergency_offer_fen: int = 0  # 应急用电 the page offers now (0: none)
    emergency_owed_fen: int = 0  # taken and not yet repaid
    households: list[Household] = field(default_factory=list)  # all the resident's, for the switcher
    power_confirmed_at: dt.datetime | None = None  # when the relay was last read back
    cut: Cut | None = None  # why and since when, while the supply is off
    to_restore_fen: int = 0  # the least top-up that brings the power back (0: none needed)
    reminders: bool = True  # this resident wants the balance reminders of this household
    openid: str | None = None  # the resident's: the subscribe button (resident/subscribe.py)

    @property
    def low(self) -> bool:
        """Below the low-balance threshold now (the warning goes as soon as a top-up lifts it)."""
        return self.balance_fen < self.account.low_balance_threshold_fen

    @property
    def presets(self) -> list[Preset]:
        """The top-up buttons: when the power is off, the amount that restores it (in whole yuan)
        first and chosen, and each of the usual amounts marked if it would not restore."""
        if not self.to_restore_fen:
            return [Preset(y, checked=y == 50) for y in PRESET_YUAN]
        needed = whole_yuan_at_least(self.to_restore_fen)
        amounts = sorted({needed, *PRESET_YUAN})
        return [Preset(y, restores=restores(self.account, self.balance_fen,
                                            self.emergency_owed_fen, y * 100),
                       checked=y == needed) for y in amounts][:5]

    @property
    def days_left(self) -> int | None:
        """Whole days the balance lasts at the recent daily rate (None when unknown)."""
        rate = self.account.daily_rate_fen
        if rate <= 0 or self.balance_fen <= 0:
            return None
        return self.balance_fen // rate


@dataclass
class PublicView(PaymentWatch):
    """What anyone who types the 户号 sees: the masked holder, the building, the balance, the
    top-up buttons (and the state of the payment they came back with)."""

    account: Account
    building: Building
    balance_fen: int
    order: Order | None
    power: str = ""  # not shown: the payment alone is followed

    @property
    def presets(self) -> list[Preset]:
        return [Preset(y, checked=y == 50) for y in PRESET_YUAN]


def emergency_needed(account: Account, balance_fen: int, power: str) -> bool:
    """应急用电 is for a household below its low-balance threshold or cut."""
    return power == POWER_OFF or balance_fen < account.low_balance_threshold_fen


def _order_of(session: Session, account_id: int, out_trade_no: str | None) -> Order | None:
    if not out_trade_no:
        return None
    return session.exec(select(Order).where(Order.out_trade_no == out_trade_no,
                                            Order.account_id == account_id)).first()


def load_account_view(session: Session, account: Account, out_trade_no: str | None,
                      resident_id_: int | None = None,
                      binding: ResidentAccount | None = None) -> AccountView:
    building = session.get(Building, account.building_id)
    meters: list[Meter] = meters_of(session, account.id)
    read_times = [m.last_read_at for m in meters if m.last_read_at is not None]
    confirmed = [m.relay_read_at for m in meters if m.relay_read_at is not None]
    balance, owed = balance_and_advance_fen(session, account.id)  # one pass over the ledger
    power = power_state(session, account.id)
    offer = (account.emergency_credit_fen
             if emergency_needed(account, balance, power) and power != RESTORING
             and emergency_credit_offered(session, account) else 0)
    households = []
    if resident_id_ is not None:
        bound = bindings(session, resident_id_)
        if len(bound) > 1:
            money = funds(session, {a.id for a, _ in bound})
            estates = {e.id: e.name for e in session.exec(select(Estate).join(
                Building, Building.estate_id == Estate.id).where(
                Building.id.in_({a.building_id for a, _ in bound})))}
            names = {b.id: estates.get(b.estate_id, "") for b in session.exec(
                select(Building).where(Building.id.in_({a.building_id for a, _ in bound})))}
            households = [Household(a.number, a.household, names.get(a.building_id, ""),
                                    money[a.id].balance_fen) for a, _ in bound]
    notice = latest_notice(session, account.id)
    read_at = binding.notices_read_at if binding is not None else None
    if notice is not None and (read_at is not None and notice.created_at <= read_at
                               or notice.created_at < utcnow() - NOTICES_SHOWN_FOR):
        notice = None  # read already, or old news
    return AccountView(
        account=account, building=building, estate=session.get(Estate, building.estate_id),
        balance_fen=balance, power=power,
        emergency_offer_fen=offer, emergency_owed_fen=owed,
        last_read_at=max(read_times) if read_times else None,
        order=_order_of(session, account.id, out_trade_no),
        notice=notice, households=households,
        power_confirmed_at=max(confirmed) if confirmed else None,
        cut=last_cut(session, account.id) if power == POWER_OFF else None,
        to_restore_fen=(amount_to_restore_fen(account, balance, owed)
                        if power == POWER_OFF else 0),
        openid=(getattr(session.get(Resident, resident_id_), "openid", None)
                if resident_id_ is not None else None),
        reminders=binding.reminders if binding is not None else True,
    )


def load_public_view(session: Session, number: str, out_trade_no: str | None) -> PublicView | None:
    account = session.exec(select(Account).where(Account.number == number)).first()
    if account is None:
        return None
    return PublicView(account=account, building=session.get(Building, account.building_id),
                      balance_fen=funds(session, {account.id})[account.id].balance_fen,
                      order=_order_of(session, account.id, out_trade_no))


def render(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
    token = request.scope.get("csrftoken")  # asgi-csrf's (app/resident/security.py)
    if token is not None and "csrftoken" not in context:
        context = {**context, "csrftoken": token()}
    return request.app.state.templates.TemplateResponse(request, name, context,
                                                       status_code=status_code)


def too_many(request: Request, retry_after: float) -> Response:
    """429: a limit is spent; the page says for how long."""
    minutes = max(1, -(-int(retry_after) // 60))
    reply = render(request, "resident/error.html", {
        "status_code": 429, "title": _("操作太频繁"),
        "message": _("为保护住户信息，操作次数有限制。请 {minutes} 分钟后再试。").format(
            minutes=minutes),
        "back_url": None}, 429)
    reply.headers["Retry-After"] = str(int(retry_after) + 1)
    return reply


def not_found(request: Request, number: str) -> Response:
    return render(request, "resident/not_found.html", {"number": number[:40]}, 404)


def current_agreement(request: Request) -> Agreement:
    return load_agreement(request.app.state.settings.agreement_file)


async def home(request: Request) -> Response:
    raw = request.query_params.get("number", "")
    if raw.strip():
        number = identity.normalize_number(raw)
        if number is None:
            return await _home_page(request, _("户号格式不对，请核对后重新输入"), raw.strip()[:40],
                                    400)
        return RedirectResponse(request.url_for("account", number=number), status_code=303)
    return await _home_page(request, None, "")


async def _home_page(request: Request, error: str | None, number: str,
                     status_code: int = 200) -> Response:
    rid = resident_id(request)
    engine = request.app.state.engine

    def load():
        with transaction(engine, read_only=True) as session:
            resident = identity.get_resident(session, rid)
            if resident is None:
                return None, []
            bound = bindings(session, resident.id)
            money = funds(session, {a.id for a, _ in bound}) if bound else {}
            buildings = {b.id: b for b in session.exec(select(Building).where(
                Building.id.in_({a.building_id for a, _ in bound} or {-1})))}
            estates = {e.id: e.name for e in session.exec(select(Estate).where(
                Estate.id.in_({b.estate_id for b in buildings.values()} or {-1})))}
            return resident, [Household(a.number, a.household,
                                        estates.get(buildings[a.building_id].estate_id, ""),
                                        money[a.id].balance_fen) for a, _ in bound]

    resident, households = await run_in_threadpool(load) if rid else (None, [])
    unbound = identity.normalize_number(request.query_params.get("unbound", ""))
    return render(request, "resident/home.html", {
        "error": error, "number": number, "resident": resident, "households": households,
        "unbound": unbound}, status_code)


def _askers(session: Session, request: Request, rid: int | None) -> tuple[str, ...]:
    resident = identity.get_resident(session, rid)
    return identity.askers(resident, identity.cookie_openid(request))


def count_lookup(request: Request, session: Session, rid: int | None,
                 number: str) -> float | None:
    """A visitor not bound to `number` looks it up: counted once per 户号 and hour (per client
    address, and per openid and phone); returns the seconds to wait when the limit is spent."""
    limits = Limits(request.app.state.engine)
    client = identity.client_of(request)
    pair = f"{client}|{number}"
    if limits.seen(identity.LOOKUP_SEEN, "lookup-seen", pair):
        return None
    retry = limits.hit(identity.lookup_rules(client, _askers(session, request, rid)))
    if retry is None:
        limits.hit([(identity.LOOKUP_SEEN, "lookup-seen", pair)])
    return retry


AGREEMENT = "agreement"  # the bound resident has not accepted the current agreement


async def _bound_or_public(request: Request, number: str):
    """(AccountView, None) for a bound resident who accepted the agreement; (AGREEMENT, None)
    for one who has not; (PublicView, None) for anyone else; or (None, a 404 or 429 reply)."""
    if not identity.NUMBER.match(number):  # no account has such a 户号: nothing to count
        return None, not_found(request, number)
    out_trade_no = request.query_params.get("order")
    engine = request.app.state.engine
    rid = resident_id(request)
    version = current_agreement(request).version

    def load():
        with transaction(engine, read_only=True) as session:
            found = bound_account(session, rid, number)
            if found is not None:
                account, binding = found
                if not has_accepted(session, rid, account.id, version):
                    return AGREEMENT, None
                return load_account_view(session, account, out_trade_no, rid, binding), None
            retry = count_lookup(request, session, rid, number)
            if retry is not None:
                return None, retry
            return load_public_view(session, number, out_trade_no), None

    view, retry = await run_in_threadpool(load)
    if retry is not None:
        return None, too_many(request, retry)
    if view is None:
        return None, not_found(request, number)
    return view, None


def render_account(request: Request, view: AccountView | PublicView, error: str | None = None,
                   status_code: int = 200) -> Response:
    offer = (subscribe_offer(request, view.estate, view.openid)
             if isinstance(view, AccountView) else None)
    return with_offer_csp(render(request, "resident/account.html" if isinstance(view, AccountView)
                                 else "resident/account_public.html", {
        "subscribe": offer,
        "v": view, "error": error,
        "channels": request.app.state.providers.channels,
        "in_wechat": in_wechat(request) and not jsapi_offered(request),
        "inside_wechat": in_wechat(request),  # where WeChat blocks Alipay's pages
        "wechat_inside": wechat_inside_message(),
        "signed_in": resident_id(request) is not None,
    }, status_code), offer)


def _to_agreement(request: Request, number: str) -> Response:
    return RedirectResponse(request.url_for("agreement", number=number), status_code=303)


ASK_AGAIN_AFTER = dt.timedelta(seconds=5)


def ask_provider(engine, providers, number: str, out_trade_no: str) -> str | None:
    """Back from the cashier with `?order=` still pending: ask the provider now rather than wait
    for its notification (credited at once if paid; else the page says it was not paid). Not
    for an order of another household, one that is not pending or past the page's watch, nor
    more often than every `ASK_AGAIN_AFTER`. Returns `query_order`'s outcome, or None."""
    now = utcnow()
    with transaction(engine, read_only=True) as session:
        order = session.exec(select(Order).join(Account, Account.id == Order.account_id)
                             .where(Order.out_trade_no == out_trade_no,
                                    Account.number == number)).first()
    if (order is None or order.status != PENDING or now - order.created_at > PAYMENT_WATCH_FOR
            or order.queried_at is not None and now - order.queried_at < ASK_AGAIN_AFTER):
        return None
    return query_order(engine, providers, out_trade_no, now=now)


async def account(request: Request) -> Response:
    number = request.path_params["number"]
    out_trade_no = request.query_params.get("order")
    if out_trade_no and identity.NUMBER.match(number):
        await run_in_threadpool(ask_provider, request.app.state.engine,
                                request.app.state.providers, number, out_trade_no)
    view, reply = await _bound_or_public(request, number)
    if reply is not None:
        return reply
    if view == AGREEMENT:
        return _to_agreement(request, number)
    return render_account(request, view)


async def account_status(request: Request) -> Response:
    number = request.path_params["number"]
    view, reply = await _bound_or_public(request, number)
    if reply is not None:
        return reply
    if view == AGREEMENT:  # the page it polls is the agreement's: nothing to refresh
        return Response(status_code=204)
    if isinstance(view, PublicView):
        return render(request, "resident/_status_public.html", {"v": view})
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
    view, reply = await _bound_or_public(request, number)
    if reply is not None:
        return reply
    if view == AGREEMENT:
        return _to_agreement(request, number)
    return render_account(request, view, error, status_code)


def _topup_lookup(request: Request, number: str) -> float | None:
    """A top-up by someone not bound to the household counts as a look-up of it (a 303 or a
    404 would tell whether the 户号 exists)."""
    rid = resident_id(request)
    if not identity.NUMBER.match(number):  # no account has such a 户号 (a 404 follows)
        return None
    with transaction(request.app.state.engine, read_only=True) as session:
        if bound_account(session, rid, number) is not None:
            return None
        return count_lookup(request, session, rid, number)


async def topup(request: Request) -> Response:
    """Create a pending order and send the browser to the provider's cashier. Moves no money.
    Anyone may pay for any 户号 (a look-up, counted, for someone not bound to it).

    WeChat Pay's `start` is a blocking HTTP call (in the sandbox, to this very server): it runs
    in a thread, or the event loop would wait for itself. If WeChat refuses the order, the page
    says so (502) and nothing changes but the pending order, which is never paid."""
    number = request.path_params["number"]
    form = await request.form()
    providers = request.app.state.providers
    channel = form.get("channel") or next(iter(providers.channels), "")
    engine = request.app.state.engine
    settings = request.app.state.settings
    retry = await run_in_threadpool(_topup_lookup, request, number)
    if retry is not None:
        return too_many(request, retry)
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
        return not_found(request, number)
    provider = providers.by_channel(channel)
    start = {"notify_url": settings.base_url + NOTIFY_PATHS[channel],
             "return_url": f"{settings.base_url}/a/{number}?order={info.out_trade_no}"}
    if channel == "wechat":
        start["payer_client_ip"] = identity.client_of(request)
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
        return not_found(request, number)
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
        return not_found(request, number)
    return RedirectResponse(
        f"{request.app.state.settings.base_url}{WECHAT_JSAPI_PAY_PATH}/{info.out_trade_no}",
        status_code=303)


def _oauth_failed(request: Request, message: str, number: str | None,
                  status_code: int) -> Response:
    return render(request, "resident/wechat_oauth_error.html",
                  {"message": message, "number": number}, status_code)


def resident_by_openid(engine, openid: str, current_id: int | None) -> int:
    with transaction(engine) as session:
        current = identity.get_resident(session, current_id)
        return identity.resident_for_openid(session, openid, current).id


def safe_next(target: str | None, default: str = "/") -> str:
    """A local path to go to after signing in (never another site: "//evil", "https://…")."""
    target = (target or "").strip()
    if not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(ch) < 32 for ch in target):
        return default
    return target[:300]


async def wechat_oauth_callback(request: Request) -> Response:
    """WeChat's OAuth sends the browser back here with `code` and `state`. The state must be
    the one this browser's signed cookie holds; the code is exchanged (wechatpy, in a thread) for
    the openid, which is kept in a signed cookie; the visitor becomes (or is signed in as) the
    resident of that openid; then the top-up goes on (the order, and its pay page), or, for a
    sign-in, the page they came from. A forged, expired or reused state or code gets a clear
    page and changes nothing: no order, no cookie."""
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
        log.warning("WeChat OAuth code refused for %s: %s %s", pending.number or "sign-in",
                    exc.code, exc.message)
        network = exc.code == "NETWORK"
        if pending.sign_in:
            message = (_("暂时连不上微信，请稍后再试。") if network else
                       _("微信授权已失效，请重新登录。"))
        else:
            message = (_("暂时连不上微信，请稍后再试。您的余额没有变化。") if network else
                       _("微信授权已失效，请回到账户页重新充值。您的余额没有变化。"))
        return _oauth_failed(request, message, pending.number or None, 502 if network else 400)
    log.info("WeChat OAuth: openid %s for %s", mask_openid(openid), pending.number or "sign-in")
    rid = await run_in_threadpool(resident_by_openid, request.app.state.engine, openid,
                                  resident_id(request))
    if pending.sign_in:
        reply = RedirectResponse(safe_next(pending.next), status_code=303)
    else:
        reply = await _order_for_jsapi(request, pending.number, pending.amount_fen)
    cookies.set_openid(reply, openid)
    cookies.clear_pending(reply)
    identity.sign_in(request, reply, rid)
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
    advance is repaid from the next top-up. Only for a resident bound to the household (anyone
    else: 404, nothing changes) who has accepted the agreement, and only when the balance is
    below the low-balance threshold or the household is cut. Refused (the page says why,
    nothing changes) otherwise, when not offered, or when already taken this month."""
    number = request.path_params["number"]
    engine = request.app.state.engine
    rid = resident_id(request)
    version = current_agreement(request).version

    def take() -> str | None:
        with transaction(engine) as session:
            found = bound_account(session, rid, number)
            if found is None:
                return None
            acct, _binding = found
            if not has_accepted(session, rid, acct.id, version):
                return AGREEMENT
            balance, _owed = balance_and_advance_fen(session, acct.id)
            if emergency_credit_offered(session, acct) \
                    and not emergency_needed(acct, balance, power_state(session, acct.id)):
                log.info("emergency credit refused for %s: balance and supply fine", number)
                return _("余额高于提醒金额且正在供电，暂不需要应急用电。"
                         "余额低于提醒金额或停电时可以使用。")
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
        return not_found(request, number)
    if error == AGREEMENT:
        return _to_agreement(request, number)
    if error:
        return await _account_with_error(request, number, error, 409)
    return RedirectResponse(request.url_for("account", number=number), status_code=303)


def _closed_message() -> str:
    return _("本户已销户，不能充值。如有疑问请联系物业。")


async def reminders(request: Request) -> Response:
    """The bound resident turns this household's balance reminders (low balance, less than a
    day, exhausted) on or off; the cut notice and the confirmations are sent regardless
    (app/messages). A stranger's household: the 404."""
    number = request.path_params["number"]
    wanted = (await request.form()).get("on") == "1"
    rid, engine = resident_id(request), request.app.state.engine

    def switch() -> bool:
        with transaction(engine) as session:
            found = bound_account(session, rid, number)
            if found is None:
                return False
            set_reminders(session, rid, found[0].id, wanted)
            return True

    if not await run_in_threadpool(switch):
        return not_found(request, number)
    return RedirectResponse(str(request.url_for("account", number=number)) + "#reminders",
                            status_code=303)
