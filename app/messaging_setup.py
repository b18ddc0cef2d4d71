"""Which messengers this process uses: the real providers the settings have credentials for, or,
in the sandbox, the same clients pointed at the local stand-ins mounted in our own web app.

The sandbox is what `app.orders.providers.build_providers` decides: no merchant keys at all.
There, SMS without FEIKONG_SMS_SECRET_ID goes to the Tencent Cloud SMS stand-in at
settings.base_url + SMS_STANDIN_PATH with local keys, and WeChat messages without the official
account's appsecret go to the WeChat stand-in at WECHAT_MESSAGES_STANDIN_PATH as the sandbox
official account (the OAuth stand-in's appid and appsecret, so the openids it hands out are its
followers); `standins.mounts.mount` serves those stand-ins. Next to real merchant keys nothing
is played: a service without credentials is simply not used. The web app (create_app, on
app.state.messengers), the worker and the tests build them here alike.
"""

from __future__ import annotations

from app.settings import Settings
from messaging import Messengers, SmsSender, WechatMessenger, build
from standins.paths import SANDBOX_KEYS_DIR, SMS_STANDIN_PATH, WECHAT_MESSAGES_STANDIN_PATH
from standins.sms import SANDBOX_SDK_APP_ID, SANDBOX_SIGN_NAME, ensure_sms_sandbox_keys
from standins.wechat_oauth import ensure_sandbox_appsecret
from standins.wechat_pay_sandbox import SANDBOX_APPID


def played(settings: Settings) -> tuple[bool, bool]:
    """(SMS played, WeChat messages played) by the stand-ins."""
    if not (settings.sandbox and settings.wechat_sandbox):  # some merchant keys are real
        return False, False
    return not settings.sms_secret_id, not settings.wechat_appsecret_value()


def build_messengers(settings: Settings) -> Messengers:
    """The messengers of this process. Raises ValueError naming a missing setting."""
    real = build(settings)
    sms_played, wechat_played = played(settings)
    sms, wechat = real.sms, real.wechat
    keys_dir = settings.var_dir / SANDBOX_KEYS_DIR
    if sms_played:
        keys = ensure_sms_sandbox_keys(keys_dir)
        sms = SmsSender(keys.secret_id, keys.secret_key, SANDBOX_SDK_APP_ID, SANDBOX_SIGN_NAME,
                        endpoint=settings.base_url + SMS_STANDIN_PATH, region=settings.sms_region)
    if wechat_played:
        wechat = WechatMessenger(SANDBOX_APPID, ensure_sandbox_appsecret(keys_dir),
                                 api_base_url=settings.base_url + WECHAT_MESSAGES_STANDIN_PATH)
    return Messengers(sms, wechat)
