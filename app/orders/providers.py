"""Which payment providers this process uses: real merchant keys, or the local sandbox."""

from __future__ import annotations

from dataclasses import dataclass

from app.settings import Settings
from payments.alipay import AlipayProvider
from payments.sandbox import SandboxAlipay, ensure_sandbox_keys

SANDBOX_ALIPAY_APP_ID = "2021000000000000"
ALIPAY_NOTIFY_PATH = "/notify/alipay"
SANDBOX_GATEWAY_PATH = "/sandbox/alipay/gateway.do"


@dataclass
class Providers:
    alipay: AlipayProvider
    sandbox_alipay: SandboxAlipay | None  # set when no merchant credentials are configured

    def by_channel(self, channel: str):
        if channel == "alipay":
            return self.alipay
        raise KeyError(channel)


def build_providers(settings: Settings) -> Providers:
    if settings.sandbox:
        keys = ensure_sandbox_keys(settings.var_dir / "sandbox-keys")
        alipay = AlipayProvider(SANDBOX_ALIPAY_APP_ID, keys.app_private_pem, keys.alipay_public_pem,
                                settings.base_url + SANDBOX_GATEWAY_PATH)
        return Providers(alipay, SandboxAlipay(keys, SANDBOX_ALIPAY_APP_ID))
    alipay = AlipayProvider(
        settings.alipay_app_id,
        settings.alipay_app_private_key_file.read_text(),
        settings.alipay_public_key_file.read_text(),
        settings.alipay_gateway,
    )
    return Providers(alipay, None)
