"""Which messengers this process uses: the real providers the settings have credentials for, or,
in the sandbox, the same clients pointed at the local stand-ins mounted in our own web app.

The sandbox is what `app.orders.providers.build_providers` decides: no merchant keys at all.
There, SMS without FEIKONG_SMS_SECRET_ID goes to the Tencent Cloud SMS stand-in at
settings.base_url + SMS_STANDIN_PATH with local keys, and WeChat messages without the official
account's appsecret go to the WeChat stand-in at WECHAT_MESSAGES_STANDIN_PATH as the sandbox
official account (the OAuth stand-in's appid and appsecret, so the openids it hands out are its
followers). Next to real merchant keys nothing is played: a provider without credentials is
simply not used. The web app (create_app), the worker and the tests build them here alike.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount

from app.settings import Settings
from messaging import Messengers, SmsSender, WechatMessenger, build
from payments.wechat_oauth_standin import ensure_sandbox_appsecret
from payments.wechat_sandbox import SANDBOX_APPID
from standins.sms import (
    SANDBOX_SDK_APP_ID,
    SANDBOX_SIGN_NAME,
    SmsStandin,
    ensure_sms_sandbox_keys,
    make_sms_app,
)
from standins.wechat_messages import WechatMessagesStandin, make_wechat_messages_app

SMS_STANDIN_PATH = "/sandbox/sms"  # Tencent Cloud SMS's API, played
WECHAT_MESSAGES_STANDIN_PATH = "/sandbox/wechat/mp"  # api.weixin.qq.com/cgi-bin/…, played
SANDBOX_KEYS_DIR = "sandbox-keys"


def _played(settings: Settings) -> tuple[bool, bool]:
    """(SMS played, WeChat messages played) by the stand-ins."""
    if not (settings.sandbox and settings.wechat_sandbox):  # some merchant keys are real
        return False, False
    return not settings.sms_secret_id, not settings.wechat_appsecret_value()


def _keys_dir(settings: Settings) -> Path:
    return settings.var_dir / SANDBOX_KEYS_DIR


def build_messengers(settings: Settings) -> Messengers:
    """The messengers of this process. Raises ValueError naming a missing setting."""
    real = build(settings)
    sms_played, wechat_played = _played(settings)
    sms, wechat = real.sms, real.wechat
    if sms_played:
        keys = ensure_sms_sandbox_keys(_keys_dir(settings))
        sms = SmsSender(keys.secret_id, keys.secret_key, SANDBOX_SDK_APP_ID, SANDBOX_SIGN_NAME,
                        endpoint=settings.base_url + SMS_STANDIN_PATH, region=settings.sms_region)
    if wechat_played:
        wechat = WechatMessenger(SANDBOX_APPID, _sandbox_appsecret(settings),
                                 api_base_url=settings.base_url + WECHAT_MESSAGES_STANDIN_PATH)
    return Messengers(sms, wechat)


def _sandbox_appsecret(settings: Settings) -> str:
    return ensure_sandbox_appsecret(_keys_dir(settings))


def standin_mounts(settings: Settings) -> list[Mount]:
    """The messaging stand-ins to mount in the web app: none outside the sandbox."""
    sms_played, wechat_played = _played(settings)
    mounts = []
    if sms_played:
        standin = SmsStandin(settings.var_dir, ensure_sms_sandbox_keys(_keys_dir(settings)))
        mounts.append(Mount(SMS_STANDIN_PATH, app=make_sms_app(standin)))
    if wechat_played:
        standin = WechatMessagesStandin(settings.var_dir, SANDBOX_APPID,
                                        _sandbox_appsecret(settings))
        mounts.append(Mount(WECHAT_MESSAGES_STANDIN_PATH,
                            app=make_wechat_messages_app(standin)))
    return mounts
