"""Which payment providers this process uses: real merchant keys, or the local sandbox.

Without any merchant keys (development, the demo, the tests) the sandbox plays both Alipay and
WeChat Pay with local keys. As soon as one provider has real keys, no sandbox is served at all:
a sandbox credits whoever presses 确认付款, so next to a real merchant it would hand out
electricity for nothing. A provider without keys is then simply not offered.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import Settings
from payments.alipay import AlipayProvider
from payments.wechat import WechatPayProvider
from payments.wechat_oauth import WechatOAuthClient
from standins.alipay import AlipayStandin
from standins.alipay_sandbox import SandboxAlipay, ensure_sandbox_keys
from standins.paths import (  # noqa: F401 (re-exported: the sandbox's paths)
    SANDBOX_ALIPAY_BILL_PATH,
    SANDBOX_GATEWAY_PATH,
    SANDBOX_KEYS_DIR,
    WECHAT_CASHIER_PATH,
    WECHAT_JSAPI_CASHIER_PATH,
    WECHAT_OAUTH_STANDIN_PATH,
    WECHAT_STANDIN_PATH,
)
from standins.wechat_oauth import OAuthStandin, ensure_sandbox_appsecret
from standins.wechat_pay import WechatStandin
from standins.wechat_pay_sandbox import WechatSandbox, ensure_wechat_sandbox_keys

SANDBOX_ALIPAY_APP_ID = "2021000000000000"
ALIPAY_NOTIFY_PATH = "/notify/alipay"
WECHAT_NOTIFY_PATH = "/notify/wechat"
NOTIFY_PATHS = {"alipay": ALIPAY_NOTIFY_PATH, "wechat": WECHAT_NOTIFY_PATH}
WECHAT_OAUTH_CALLBACK_PATH = "/wechat/oauth"  # our redirect_uri for WeChat's web OAuth
WECHAT_JSAPI_PAY_PATH = "/wechat/pay"  # + "/{out_trade_no}": register …/wechat/pay/ at WeChat Pay
MIN_SECRET_KEY_CHARS = 32


@dataclass
class Providers:
    alipay: AlipayProvider | None
    sandbox_alipay: SandboxAlipay | None  # set when the sandbox plays Alipay
    wechat: WechatPayProvider | None = None
    sandbox_wechat: WechatSandbox | None = None  # set when the sandbox plays WeChat Pay
    wechat_standin: WechatStandin | None = None  # WeChat's server side, for the sandbox
    alipay_standin: AlipayStandin | None = None  # Alipay's server side, for the sandbox
    wechat_oauth: WechatOAuthClient | None = None  # set when JSAPI pay inside WeChat is offered
    wechat_oauth_standin: OAuthStandin | None = None  # WeChat's web OAuth, for the sandbox

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels a resident may pay with, in the order the page offers them."""
        return tuple(channel for channel in NOTIFY_PATHS if self._by_name(channel) is not None)

    def by_channel(self, channel: str):
        provider = self._by_name(channel)
        if provider is None:
            raise KeyError(channel)
        return provider

    def _by_name(self, channel: str):
        return {"alipay": self.alipay, "wechat": self.wechat}.get(channel)


def build_providers(settings: Settings) -> Providers:
    merchant = not settings.sandbox or not settings.wechat_sandbox  # some real keys are set
    if merchant:
        alipay = None if settings.sandbox else build_alipay(settings)
        wechat = None if settings.wechat_sandbox else build_wechat(settings)
        providers = Providers(alipay, None, wechat)
        if wechat is not None:
            providers.wechat_oauth = build_wechat_oauth(settings)
        return providers
    keys = ensure_sandbox_keys(settings.var_dir / SANDBOX_KEYS_DIR)
    alipay = AlipayProvider(SANDBOX_ALIPAY_APP_ID, keys.app_private_pem, keys.alipay_public_pem,
                            settings.base_url + SANDBOX_GATEWAY_PATH)
    wechat, standin = build_wechat_sandbox(settings)
    sandbox_alipay = SandboxAlipay(keys, SANDBOX_ALIPAY_APP_ID)
    providers = Providers(alipay, sandbox_alipay, wechat, standin.sandbox, standin,
                          AlipayStandin(sandbox_alipay))
    providers.wechat_oauth, providers.wechat_oauth_standin = build_wechat_oauth_sandbox(
        settings, wechat.appid)
    return providers


def build_alipay(settings: Settings) -> AlipayProvider:
    return AlipayProvider(
        settings.alipay_app_id,
        settings.alipay_app_private_key_file.read_text(),
        settings.alipay_public_key_file.read_text(),
        settings.alipay_gateway,
    )


def build_wechat(settings: Settings) -> WechatPayProvider:
    """WeChat Pay with the merchant's real keys, read from the files the settings name.
    Raises ValueError naming the missing settings (never a key's content)."""
    required = ("wechat_appid", "wechat_mchid", "wechat_merchant_private_key_file",
                "wechat_merchant_serial_no", "wechat_apiv3_key_file", "wechat_public_key_file",
                "wechat_public_key_id")
    missing = [name for name in required if not getattr(settings, name)]
    if missing:
        raise ValueError("WeChat Pay needs " + ", ".join(f"FEIKONG_{n.upper()}" for n in missing))
    return WechatPayProvider(
        appid=settings.wechat_appid,
        mchid=settings.wechat_mchid,
        merchant_private_key_pem=settings.wechat_merchant_private_key_file.read_text(),
        merchant_serial_no=settings.wechat_merchant_serial_no,
        apiv3_key=settings.wechat_apiv3_key_file.read_text().strip(),
        wechatpay_public_key_pem=settings.wechat_public_key_file.read_text(),
        wechatpay_public_key_id=settings.wechat_public_key_id,
        gateway_url=settings.wechat_gateway,
    )


def build_wechat_sandbox(settings: Settings) -> tuple[WechatPayProvider, WechatStandin]:
    """WeChat Pay played by the sandbox: local keys under var_dir, and the provider's API calls
    sent to the stand-in mounted in this very app (settings.base_url + WECHAT_STANDIN_PATH).
    Those calls are blocking HTTP requests to our own server: run them in a thread."""
    keys = ensure_wechat_sandbox_keys(settings.var_dir / SANDBOX_KEYS_DIR)
    provider = WechatPayProvider(
        appid=keys.appid,
        mchid=keys.mchid,
        merchant_private_key_pem=keys.merchant_private_pem,
        merchant_serial_no=keys.merchant_serial_no,
        apiv3_key=keys.apiv3_key,
        wechatpay_public_key_pem=keys.platform_public_pem,
        wechatpay_public_key_id=keys.public_key_id,
        gateway_url=settings.base_url + WECHAT_STANDIN_PATH,
    )
    return provider, WechatStandin(WechatSandbox(keys))


def build_wechat_oauth(settings: Settings) -> WechatOAuthClient | None:
    """The official account's web OAuth with the real appsecret, or None when no appsecret is
    set (then JSAPI pay inside WeChat is not offered). Raises ValueError naming the setting when
    FEIKONG_SECRET_KEY, which signs the openid cookie, is still the default or short."""
    secret = settings.wechat_appsecret_value()
    if not secret:
        return None
    default_key = type(settings).model_fields["secret_key"].default
    if settings.secret_key == default_key or len(settings.secret_key) < MIN_SECRET_KEY_CHARS:
        raise ValueError(f"WeChat OAuth needs FEIKONG_SECRET_KEY: at least {MIN_SECRET_KEY_CHARS}"
                         " random characters (it signs the cookie that keeps the openid)")
    return WechatOAuthClient(settings.wechat_appid, secret,
                             authorize_base_url=settings.wechat_oauth_authorize_url,
                             api_base_url=settings.wechat_oauth_api_url)


def build_wechat_oauth_sandbox(settings: Settings,
                               appid: str) -> tuple[WechatOAuthClient, OAuthStandin]:
    """WeChat's web OAuth played by the sandbox: a local appsecret under var_dir, the authorize
    page and the token endpoint mounted in this very app (WECHAT_OAUTH_STANDIN_PATH), and the
    domain of base_url registered as the 网页授权域名. The code exchange is a blocking HTTP request
    to our own server: run it in a thread."""
    secret = ensure_sandbox_appsecret(settings.var_dir / SANDBOX_KEYS_DIR)
    base = settings.base_url + WECHAT_OAUTH_STANDIN_PATH
    client = WechatOAuthClient(appid, secret, authorize_base_url=base + "/connect/",
                               api_base_url=base + "/")
    domain = settings.base_url.split("://", 1)[-1].split("/", 1)[0]
    return client, OAuthStandin(appid, secret, domain)
