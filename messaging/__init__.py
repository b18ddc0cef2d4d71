"""Messages to residents through outside services: SMS (Tencent Cloud SMS, `messaging.sms`) and
the official account's WeChat messages (`messaging.wechat`), both raising
`messaging.base.DeliveryError`.

Real providers only: their local stand-ins live in `standins/`, and the sandbox wiring (which
builds these same clients pointed at the stand-ins) in `app/messaging_setup.py`. Nothing here
imports the web, `standins` or our database."""

from __future__ import annotations

from dataclasses import dataclass

from messaging.base import DeliveryError
from messaging.sms import SmsSender
from messaging.wechat import WechatMessenger

__all__ = ["DeliveryError", "Messengers", "SmsSender", "WechatMessenger", "build"]


@dataclass(frozen=True)
class Messengers:
    sms: SmsSender | None  # None: no SMS is sent
    wechat: WechatMessenger | None  # None: no WeChat message is sent


def build(settings) -> Messengers:
    """The real messengers the settings give credentials for (`app.settings.Settings`; read,
    not imported): SMS when FEIKONG_SMS_SECRET_ID is set, WeChat when the official account's
    appid and appsecret are. No sandbox here: `app.messaging_setup.build_messengers` adds the
    stand-ins' when there are no merchant keys. Raises ValueError naming a missing setting."""
    sms = None
    if settings.sms_secret_id:
        missing = [name for name in ("sms_sdk_app_id", "sms_sign_name")
                   if not getattr(settings, name)]
        secret_key = settings.sms_secret_key_value()
        if not secret_key:
            missing.append("sms_secret_key")
        if missing:
            raise ValueError("SMS needs " + ", ".join(f"FEIKONG_{n.upper()}" for n in missing))
        sms = SmsSender(settings.sms_secret_id, secret_key, settings.sms_sdk_app_id,
                        settings.sms_sign_name, endpoint=settings.sms_endpoint,
                        region=settings.sms_region)
    wechat = None
    secret = settings.wechat_appsecret_value()
    if settings.wechat_appid and secret:
        wechat = WechatMessenger(settings.wechat_appid, secret,
                                 api_base_url=settings.wechat_oauth_api_url)
    return Messengers(sms, wechat)
