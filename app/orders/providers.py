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
from payments.alipay_standin import AlipayStandin
from payments.sandbox import SandboxAlipay, ensure_sandbox_keys
from payments.wechat import WechatPayProvider
from payments.wechat_sandbox import WechatSandbox, ensure_wechat_sandbox_keys
from payments.wechat_standin import WechatStandin

SANDBOX_ALIPAY_APP_ID = "2021000000000000"
ALIPAY_NOTIFY_PATH = "/notify/alipay"
WECHAT_NOTIFY_PATH = "/notify/wechat"
NOTIFY_PATHS = {"alipay": ALIPAY_NOTIFY_PATH, "wechat": WECHAT_NOTIFY_PATH}
SANDBOX_GATEWAY_PATH = "/sandbox/alipay/gateway.do"  # Alipay's cashier and its server API
SANDBOX_ALIPAY_BILL_PATH = "/sandbox/alipay/bill"  # where its bill download URLs point
WECHAT_STANDIN_PATH = "/sandbox/wechat/api"  # the stand-in of WeChat's API, mounted in our app
WECHAT_CASHIER_PATH = "/sandbox/wechat/h5"  # where the stand-in's h5_url sends the browser
SANDBOX_KEYS_DIR = "sandbox-keys"


@dataclass
class Providers:
    alipay: AlipayProvider | None
    sandbox_alipay: SandboxAlipay | None  # set when the sandbox plays Alipay
    wechat: WechatPayProvider | None = None
    sandbox_wechat: WechatSandbox | None = None  # set when the sandbox plays WeChat Pay
    wechat_standin: WechatStandin | None = None  # WeChat's server side, for the sandbox
    alipay_standin: AlipayStandin | None = None  # Alipay's server side, for the sandbox

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
        return Providers(alipay, None, wechat)
    keys = ensure_sandbox_keys(settings.var_dir / SANDBOX_KEYS_DIR)
    alipay = AlipayProvider(SANDBOX_ALIPAY_APP_ID, keys.app_private_pem, keys.alipay_public_pem,
                            settings.base_url + SANDBOX_GATEWAY_PATH)
    wechat, standin = build_wechat_sandbox(settings)
    sandbox_alipay = SandboxAlipay(keys, SANDBOX_ALIPAY_APP_ID)
    return Providers(alipay, sandbox_alipay, wechat, standin.sandbox, standin,
                     AlipayStandin(sandbox_alipay))


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
