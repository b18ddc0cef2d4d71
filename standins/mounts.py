"""Every stand-in's routes in our web app, for the sandbox only: `mount(settings, providers)`."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route

from app.messaging_setup import played
from app.settings import Settings
from standins import cashiers
from standins.outbox_page import outbox_page
from standins.paths import (
    OUTBOX_PATH,
    SANDBOX_ALIPAY_BILL_PATH,
    SANDBOX_GATEWAY_PATH,
    SANDBOX_KEYS_DIR,
    SMS_STANDIN_PATH,
    WECHAT_CASHIER_PATH,
    WECHAT_JSAPI_CASHIER_PATH,
    WECHAT_MESSAGES_STANDIN_PATH,
    WECHAT_OAUTH_STANDIN_PATH,
    WECHAT_STANDIN_PATH,
)
from standins.sms import SmsStandin, ensure_sms_sandbox_keys, make_sms_app
from standins.wechat_jssdk import make_jssdk_routes
from standins.wechat_messages import WechatMessagesStandin, make_wechat_messages_app
from standins.wechat_oauth import ensure_sandbox_appsecret, make_oauth_app
from standins.wechat_pay import make_wechat_api_app
from standins.wechat_pay_sandbox import SANDBOX_APPID


def mount(settings: Settings, providers) -> list[BaseRoute]:
    """The routes of the sandbox: Alipay's cashier and server API, WeChat Pay's API, H5 cashier
    and JSAPI sheet, WeChat's web OAuth, the notify-behaviour switches, the messaging
    stand-ins (Tencent Cloud SMS, WeChat's message API) and the page of their outbox. `providers` is
    `app.orders.providers.Providers` built for the sandbox (its stand-ins are served here).
    Call it only in sandbox mode: next to real merchant keys nothing may be played."""
    routes: list[BaseRoute] = [
        Route(SANDBOX_GATEWAY_PATH, cashiers.cashier, methods=["GET", "POST"],
              name="sandbox_cashier"),  # Alipay's cashier, and its server API for our provider
        Route(SANDBOX_ALIPAY_BILL_PATH + "/{token}", cashiers.alipay_bill, name="sandbox_bill"),
        Route("/sandbox/notify-behaviour", cashiers.notify_behaviour, methods=["GET", "POST"],
              name="sandbox_notify_behaviour"),
        Route("/sandbox/notifications/release", cashiers.release_notifications,
              methods=["POST"], name="sandbox_release"),
        Route("/sandbox/alipay/pay", cashiers.pay, methods=["POST"], name="sandbox_pay"),
        Route(WECHAT_CASHIER_PATH, cashiers.wechat_cashier, name="sandbox_wechat_cashier"),
        Route("/sandbox/wechat/pay", cashiers.wechat_pay, methods=["POST"],
              name="sandbox_wechat_pay"),
        Route(WECHAT_JSAPI_CASHIER_PATH, cashiers.wechat_jsapi_sheet,
              name="sandbox_wechat_jsapi"),
        Route(WECHAT_JSAPI_CASHIER_PATH + "/pay", cashiers.wechat_jsapi_pay, methods=["POST"],
              name="sandbox_wechat_jsapi_pay"),
        Route(OUTBOX_PATH, outbox_page, name="sandbox_outbox"),  # what the residents received
    ]
    if providers.wechat_standin is not None:  # WeChat's API, played for our own provider
        routes.append(Mount(WECHAT_STANDIN_PATH, app=make_wechat_api_app(
            providers.wechat_standin, cashier_url=settings.base_url + WECHAT_CASHIER_PATH)))
    if providers.wechat_oauth_standin is not None:  # WeChat's web OAuth, played
        routes.append(Mount(WECHAT_OAUTH_STANDIN_PATH,
                            app=make_oauth_app(providers.wechat_oauth_standin)))
    return routes + messaging_mounts(settings)


def messaging_mounts(settings: Settings) -> list[BaseRoute]:
    """The messaging stand-ins the sandbox's messengers are pointed at
    (`app.messaging_setup.build_messengers`): none for a service with real credentials."""
    sms_played, wechat_played = played(settings)
    keys_dir = settings.var_dir / SANDBOX_KEYS_DIR
    mounts: list[BaseRoute] = []
    if sms_played:
        standin = SmsStandin(settings.var_dir, ensure_sms_sandbox_keys(keys_dir))
        mounts.append(Mount(SMS_STANDIN_PATH, app=make_sms_app(standin)))
    if wechat_played:
        standin = WechatMessagesStandin(settings.var_dir, SANDBOX_APPID,
                                        ensure_sandbox_appsecret(keys_dir))
        mounts.append(Mount(WECHAT_MESSAGES_STANDIN_PATH,
                            app=make_wechat_messages_app(standin)))
        mounts += make_jssdk_routes(settings, SANDBOX_APPID)  # the subscribe button's WeChat
    return mounts
