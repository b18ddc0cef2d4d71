"""Signing in, binding households and accepting the prepaid agreement.

- Sign in (`/login`): in a phone browser, the phone number, then the 6-digit code sent to it by
  SMS; inside WeChat, the official account's OAuth (snsapi_base, silent) gives the openid
  (`/login/wechat`, back through `views.wechat_oauth_callback`). A resident known by openid may
  add a phone the same way: then the two are one resident.
- Bind (`/bind`) a household, proved either by (a) a code sent to the household's registered
  phone (at once when the resident's own proved phone is that phone), or (b) the 户号, the
  holder's surname and the registered phone's last four digits, then a code to the resident's
  own phone. Unbind (`/a/<n>/unbind`) deletes the binding.
- The agreement (`/a/<n>/agreement`): read, accept; recorded with who, when, which version and
  from which address.

What a reply may tell: a code "sent" reads the same whether or not the 户号 exists or has a
registered phone, and wrong holder details (户号, surname or last four) are one message. Codes,
attempts and wrong codes are limited per phone, per openid and per client address (see
`identity`): over a limit, 429. An SMS goes out in a thread; its code is never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote

from sqlmodel import select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.db import transaction
from app.estate.models import Account, Building
from app.i18n import gettext as _
from app.privacy import mask_phone
from app.resident import identity
from app.resident.identity import (CODE_LOCKED, CODE_NONE, CODE_OK, CODE_TRIES, bound_account,
                                   resident_id)
from app.resident.models import BY_HOLDER_DETAILS, BY_HOLDER_PHONE, CODE_BIND, CODE_LOGIN
from app.resident.views import (current_agreement, in_wechat, not_found, render,
                                resident_by_openid, safe_next, too_many)
from app.resident.wechat import WechatCookies
from app.orders.providers import WECHAT_OAUTH_CALLBACK_PATH
from app.web.ratelimit import Limits
from messaging.base import DeliveryError

log = logging.getLogger(__name__)

CODE_MINUTES = int(identity.CODE_VALID.total_seconds() // 60)


@dataclass
class Asker:
    """Who is asking: their address, the signed-in resident (detached), their openid."""

    client: str
    resident_id: int | None
    phone: str | None
    openid: str | None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(k for k in (self.phone and "phone:" + self.phone,
                                 self.openid and "openid:" + self.openid) if k)


def _asker(request: Request) -> Asker:
    rid = resident_id(request)
    phone = openid = None
    if rid is not None:
        with transaction(request.app.state.engine, read_only=True) as session:
            resident = identity.get_resident(session, rid)
            if resident is None:
                rid = None
            else:
                phone, openid = resident.phone, resident.openid
    return Asker(identity.client_of(request), rid, phone,
                 openid or identity.cookie_openid(request))


def _limits(request: Request) -> Limits:
    return Limits(request.app.state.engine)


def _sms(request: Request):
    messengers = getattr(request.app.state, "messengers", None)
    return getattr(messengers, "sms", None)


def _send_code(request: Request, phone: str, purpose: str, account_id: int | None) -> str | None:
    """Store a new code and send it by SMS (blocking: call in a thread). None when sent, else
    what went wrong, for the page (the code is withdrawn)."""
    sms, settings = _sms(request), request.app.state.settings
    with transaction(request.app.state.engine) as session:
        code_id, code = identity.issue_code(session, settings.secret_key, phone, purpose,
                                            account_id)
    try:
        if sms is None:
            raise DeliveryError("NO_SMS", "no SMS provider is set up", permanent=True)
        sms.send(phone, settings.sms_template_code, [code, str(CODE_MINUTES)])
    except DeliveryError as exc:
        log.warning("SMS code (%s) to %s not sent: %s", purpose, mask_phone(phone), exc.code)
        with transaction(request.app.state.engine) as session:
            identity.withdraw_code(session, code_id)
        return (_("短信服务暂未开通，请联系物业。") if exc.code == "NO_SMS" else
                _("短信暂时发送失败，请稍后再试。"))
    log.info("SMS code (%s) sent to %s", purpose, mask_phone(phone))
    return None


def _wrong_code_message(outcome: str) -> str:
    if outcome == CODE_LOCKED:
        return _("验证码输错次数过多，已失效。请重新获取验证码。")
    if outcome == CODE_NONE:
        return _("验证码已过期或尚未获取，请重新获取验证码。")
    return _("验证码不对，请核对短信后重新输入。")


# --- signing in ---------------------------------------------------------------------------------

def _login_page(request: Request, *, step: str = "phone", phone: str = "", error: str = "",
                notice: str = "", status_code: int = 200, next_: str = "/",
                resident=None) -> Response:
    oauth = request.app.state.providers.wechat_oauth is not None
    return render(request, "resident/login.html", {
        "step": step, "phone": phone, "masked_phone": mask_phone(phone) if phone else "",
        "error": error, "notice": notice, "next": next_, "resident": resident,
        "wechat_login": oauth and in_wechat(request), "code_minutes": CODE_MINUTES,
        "page_url": "/login",
    }, status_code)


async def login(request: Request) -> Response:
    """GET: the phone form. POST: the phone and its code: signed in, on to `next`."""
    if request.method == "GET":
        next_ = safe_next(request.query_params.get("next"))

        def who():
            with transaction(request.app.state.engine, read_only=True) as session:
                return identity.get_resident(session, resident_id(request))

        resident = await run_in_threadpool(who)
        return _login_page(request, next_=next_, resident=resident)
    form = await request.form()
    next_ = safe_next(form.get("next"))
    phone = identity.normalize_phone(form.get("phone"))
    if phone is None:
        return _login_page(request, error=_("请输入 11 位手机号"), status_code=400, next_=next_)
    code = identity.normalize_code(form.get("code"))
    if code is None:
        return _login_page(request, step="code", phone=phone, next_=next_, status_code=400,
                           error=_("请输入短信里的 6 位数字验证码"))
    asker = await run_in_threadpool(_asker, request)
    limits = _limits(request)
    rules = identity.wrong_code_rules(phone, asker.client, asker.keys)
    engine, secret = request.app.state.engine, request.app.state.settings.secret_key

    def check() -> tuple[str, int | None]:
        if limits.spent(rules) is not None:
            return "limited", None
        with transaction(engine) as session:
            outcome = identity.check_code(session, secret, phone, CODE_LOGIN, None, code)
            if outcome != CODE_OK:
                return outcome, None
            current = identity.get_resident(session, asker.resident_id)
            return outcome, identity.resident_for_phone(session, phone, current).id

    outcome, rid = await run_in_threadpool(check)
    if outcome == "limited":
        return too_many(request, await run_in_threadpool(limits.spent, rules))
    if outcome != CODE_OK:
        retry = await run_in_threadpool(limits.hit, rules)
        if retry is not None:
            return too_many(request, retry)
        return _login_page(request, step="code", phone=phone, next_=next_, status_code=400,
                           error=_wrong_code_message(outcome))
    log.info("resident %s signed in by phone %s", rid, mask_phone(phone))
    reply = RedirectResponse(next_, status_code=303)
    identity.sign_in(request, reply, rid)
    return reply


async def login_code(request: Request) -> Response:
    """POST the phone: a code is sent (one per 60 s per phone, and limits per address and
    openid); the page asks for it."""
    form = await request.form()
    next_ = safe_next(form.get("next"))
    phone = identity.normalize_phone(form.get("phone"))
    if phone is None:
        return _login_page(request, error=_("请输入 11 位手机号"), status_code=400, next_=next_)
    asker = await run_in_threadpool(_asker, request)
    limits = _limits(request)
    retry = await run_in_threadpool(limits.hit, identity.send_rules(phone, asker.client,
                                                                    asker.keys))
    if retry is not None:
        return _login_page(request, step="code", phone=phone, next_=next_, status_code=429,
                           error=_("获取验证码太频繁，请 {seconds} 秒后再试。已收到的验证码仍可使用。"
                                   ).format(seconds=int(retry) + 1))
    error = await run_in_threadpool(_send_code, request, phone, CODE_LOGIN, None)
    if error:
        return _login_page(request, error=error, phone=phone, status_code=502, next_=next_)
    return _login_page(request, step="code", phone=phone, next_=next_,
                       notice=_("验证码已发送至 {phone}，{minutes} 分钟内有效。").format(
                           phone=mask_phone(phone), minutes=CODE_MINUTES))


async def login_wechat(request: Request) -> Response:
    """Inside WeChat: the openid this browser already proved (its signed cookie), or WeChat's
    silent OAuth (snsapi_base) for it; then signed in as that openid's resident."""
    providers = request.app.state.providers
    next_ = safe_next(request.query_params.get("next"))
    if providers.wechat_oauth is None:
        return render(request, "resident/error.html", {
            "status_code": 404, "title": _("微信登录未开通"),
            "message": _("请用手机号和短信验证码登录。"), "back_url": "/login"}, 404)
    cookies = WechatCookies.for_request(request)
    openid = cookies.openid(request)
    if openid is not None:
        rid = await run_in_threadpool(resident_by_openid, request.app.state.engine, openid,
                                      resident_id(request))
        reply = RedirectResponse(next_, status_code=303)
        identity.sign_in(request, reply, rid)
        return reply
    pending = cookies.new_pending("", 0, next_)
    callback = request.app.state.settings.base_url + WECHAT_OAUTH_CALLBACK_PATH
    reply = RedirectResponse(providers.wechat_oauth.authorize_url(callback, pending.state),
                             status_code=303)
    cookies.set_pending(reply, pending)
    return reply


async def logout(request: Request) -> Response:
    reply = RedirectResponse("/", status_code=303)
    identity.sign_out(request, reply)
    return reply


# --- binding --------------------------------------------------------------------------------------

def _to_login(next_: str) -> Response:
    return RedirectResponse(f"/login?next={quote(next_)}", status_code=303)


def _bind_page(request: Request, asker: Asker, *, step: str = "choose", number: str = "",
               error: str = "", notice: str = "", status_code: int = 200) -> Response:
    return render(request, "resident/bind.html", {
        "step": step, "number": number, "error": error, "notice": notice,
        "has_phone": asker.phone is not None,
        "masked_phone": mask_phone(asker.phone) if asker.phone else "",
        "code_minutes": CODE_MINUTES, "page_url": "/bind" + (f"?number={number}" if number
                                                            else ""),
    }, status_code)


def _account_by_number(request: Request, number: str | None) -> Account | None:
    if number is None:
        return None
    with transaction(request.app.state.engine, read_only=True) as session:
        return session.exec(select(Account).where(Account.number == number)).first()


def _bind_now(request: Request, rid: int, account_id: int, how: str) -> None:
    with transaction(request.app.state.engine) as session:
        identity.bind(session, rid, account_id, how)
    log.info("resident %s bound to account %s (%s)", rid, account_id, how)


def _bound_reply(number: str) -> Response:
    return RedirectResponse(f"/a/{number}", status_code=303)


async def bind(request: Request) -> Response:
    """The binding page: the two ways to prove the household."""
    asker = await run_in_threadpool(_asker, request)
    number = identity.normalize_number(request.query_params.get("number", "")) or ""
    if asker.resident_id is None:
        return _to_login("/bind" + (f"?number={number}" if number else ""))
    return _bind_page(request, asker, number=number)


async def bind_holder_code(request: Request) -> Response:
    """(a) A code to the household's registered phone; the resident asks the holder for it. The
    page reads the same whatever the 户号 (unknown, no phone, a code sent a minute ago)."""
    form = await request.form()
    asker = await run_in_threadpool(_asker, request)
    number = identity.normalize_number(form.get("number"))
    if asker.resident_id is None:
        return _to_login("/bind")
    if number is None:
        return _bind_page(request, asker, error=_("户号格式不对，请核对后重新输入"),
                          status_code=400)
    limits = _limits(request)
    retry = await run_in_threadpool(
        limits.hit, identity.bind_attempt_rules(asker.client)
        + identity.send_rules("", asker.client, asker.keys))
    if retry is not None:
        return too_many(request, retry)
    account = await run_in_threadpool(_account_by_number, request, number)
    holder = account.holder_phone if account is not None else ""
    if account is not None and holder and asker.phone == holder:
        await run_in_threadpool(_bind_now, request, asker.resident_id, account.id,
                                BY_HOLDER_PHONE)
        return _bound_reply(number)
    if account is not None and identity.normalize_phone(holder):
        if await run_in_threadpool(limits.hit, identity.send_rules(holder, "", ())) is None:
            await run_in_threadpool(_send_code, request, holder, CODE_BIND, account.id)
    return _bind_page(request, asker, step="holder_code", number=number,
                      notice=_("如果户号正确且登记了手机号，户主的手机会收到验证码，"
                               "{minutes} 分钟内有效。请向户主索取验证码并填写。").format(
                          minutes=CODE_MINUTES))


async def bind_holder(request: Request) -> Response:
    """(a) The code the holder's phone received: bound."""
    form = await request.form()
    asker = await run_in_threadpool(_asker, request)
    number = identity.normalize_number(form.get("number"))
    code = identity.normalize_code(form.get("code"))
    if asker.resident_id is None:
        return _to_login("/bind")
    if number is None or code is None:
        return _bind_page(request, asker, step="holder_code", number=number or "",
                          error=_("请输入户号和 6 位数字验证码"), status_code=400)
    return await _bind_by_code(request, asker, number, code, holder=True)


async def _bind_by_code(request: Request, asker: Asker, number: str, code: str, *,
                        holder: bool) -> Response:
    """Check a CODE_BIND code: sent to the holder's phone (a), or to the resident's own after
    the holder's details matched (b). Any failure reads the same: no oracle for the 户号."""
    limits = _limits(request)
    engine, secret = request.app.state.engine, request.app.state.settings.secret_key
    rid = asker.resident_id

    def check() -> tuple[str, str]:
        with transaction(engine) as session:
            account = session.exec(select(Account).where(Account.number == number)).first()
            phone = (account.holder_phone if holder else asker.phone) if account else None
            rules = identity.wrong_code_rules(phone or "", asker.client, asker.keys)
            if limits.spent(rules) is not None:
                return "limited", phone or ""
            if account is None or not phone:
                outcome = CODE_NONE
            else:
                outcome = identity.check_code(session, secret, phone, CODE_BIND, account.id,
                                              code)
            if outcome == CODE_OK:
                identity.bind(session, rid, account.id,
                              BY_HOLDER_PHONE if holder else BY_HOLDER_DETAILS)
            return outcome, phone or ""

    outcome, phone = await run_in_threadpool(check)
    rules = identity.wrong_code_rules(phone, asker.client, asker.keys)
    if outcome == "limited":
        return too_many(request, await run_in_threadpool(limits.spent, rules) or 60)
    if outcome == CODE_OK:
        log.info("resident %s bound to %s (%s)", rid, number,
                 BY_HOLDER_PHONE if holder else BY_HOLDER_DETAILS)
        return _bound_reply(number)
    retry = await run_in_threadpool(limits.hit, rules)
    if retry is not None:
        return too_many(request, retry)
    return _bind_page(request, asker, step="holder_code" if holder else "own_code",
                      number=number, status_code=400,
                      error=_("验证码不对或已失效（输错 {tries} 次需重新获取）。").format(
                          tries=CODE_TRIES))


async def bind_details(request: Request) -> Response:
    """(b) 户号 + the holder's surname + the registered phone's last four digits; if they match,
    a code to the resident's own phone (which they must have proved: a WeChat-only resident
    adds one first). One message for any mismatch."""
    form = await request.form()
    asker = await run_in_threadpool(_asker, request)
    if asker.resident_id is None:
        return _to_login("/bind")
    if asker.phone is None:
        return _to_login("/bind")
    number = identity.normalize_number(form.get("number"))
    surname = str(form.get("surname") or "").strip()[:4]
    last4 = str(form.get("last4") or "").strip()[:8]
    if number is None or not surname or not last4:
        return _bind_page(request, asker, number=number or "", status_code=400,
                          error=_("请填写户号、户主姓氏和登记手机号的后四位"))
    limits = _limits(request)
    failures = identity.bind_failure_rules(number, asker.keys)

    def attempt() -> tuple[float | None, Account | None]:
        retry = limits.hit(identity.bind_attempt_rules(asker.client))
        if retry is None:
            retry = limits.spent(failures)
        if retry is not None:
            return retry, None
        account = _account_by_number(request, number)
        if account is None or not identity.holder_details_match(account, surname, last4):
            return limits.hit(failures), None
        return None, account

    retry, account = await run_in_threadpool(attempt)
    if retry is not None:
        return too_many(request, retry)
    if account is None:
        return _bind_page(request, asker, number=number, status_code=400,
                          error=_("户号、户主姓氏或手机后四位不对，请核对后重试。"))
    if account.holder_phone == asker.phone:
        await run_in_threadpool(_bind_now, request, asker.resident_id, account.id,
                                BY_HOLDER_PHONE)
        return _bound_reply(number)
    retry = await run_in_threadpool(limits.hit, identity.send_rules(asker.phone, asker.client,
                                                                    asker.keys))
    if retry is not None:
        return _bind_page(request, asker, step="own_code", number=number, status_code=429,
                          error=_("获取验证码太频繁，请 {seconds} 秒后再试。已收到的验证码仍可使用。"
                                  ).format(seconds=int(retry) + 1))
    error = await run_in_threadpool(_send_code, request, asker.phone, CODE_BIND, account.id)
    if error:
        return _bind_page(request, asker, number=number, error=error, status_code=502)
    return _bind_page(request, asker, step="own_code", number=number,
                      notice=_("信息核对无误。验证码已发送至您的手机 {phone}，{minutes} 分钟内有效。"
                               ).format(phone=mask_phone(asker.phone), minutes=CODE_MINUTES))


async def bind_confirm(request: Request) -> Response:
    """(b) The code the resident's own phone received: bound."""
    form = await request.form()
    asker = await run_in_threadpool(_asker, request)
    if asker.resident_id is None or asker.phone is None:
        return _to_login("/bind")
    number = identity.normalize_number(form.get("number"))
    code = identity.normalize_code(form.get("code"))
    if number is None or code is None:
        return _bind_page(request, asker, step="own_code", number=number or "",
                          error=_("请输入户号和 6 位数字验证码"), status_code=400)
    return await _bind_by_code(request, asker, number, code, holder=False)


async def unbind(request: Request) -> Response:
    """Delete the binding: the next request no longer sees the household."""
    number = request.path_params["number"]
    rid = resident_id(request)

    def drop() -> bool:
        with transaction(request.app.state.engine) as session:
            found = bound_account(session, rid, number)
            if found is None:
                return False
            return identity.unbind(session, rid, found[0].id)

    if not await run_in_threadpool(drop):
        return not_found(request, number)
    log.info("resident %s unbound from %s", rid, number)
    return RedirectResponse(f"/?unbound={number}", status_code=303)


# --- the prepaid agreement ------------------------------------------------------------------------

async def agreement(request: Request) -> Response:
    """GET: the agreement's text and the accept button. POST: accepted (who, when, version,
    from where). Only for a resident bound to the household; anyone else: 404."""
    number = request.path_params["number"]
    rid = resident_id(request)
    current = current_agreement(request)
    engine = request.app.state.engine
    client = identity.client_of(request)
    accept = request.method == "POST"
    if accept:
        await request.form()  # read (asgi-csrf checked its token)

    def load():
        with transaction(engine) if accept else transaction(engine, read_only=True) as session:
            found = bound_account(session, rid, number)
            if found is None:
                return None
            account = found[0]
            if accept:
                identity.accept_agreement(session, rid, account.id, current.version, client)
                return account, True
            building = session.get(Building, account.building_id)
            return (account, building), identity.has_accepted(session, rid, account.id,
                                                              current.version)

    found = await run_in_threadpool(load)
    if found is None:
        return not_found(request, number)
    if accept:
        log.info("resident %s accepted agreement %s for %s", rid, current.version, number)
        return RedirectResponse(f"/a/{number}", status_code=303)
    (account, building), accepted = found
    return render(request, "resident/agreement.html", {
        "agreement": current, "account": account, "building": building, "accepted": accepted})
