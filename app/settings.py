"""Settings from environment variables (prefix FEIKONG_), read once per process."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FEIKONG_", env_file=None, extra="ignore")

    database_url: str = f"sqlite:///{ROOT / 'var' / 'feikong.db'}"
    var_dir: Path = ROOT / "var"

    web_host: str = "127.0.0.1"
    web_port: int = 8000
    # How residents' browsers and the payment providers reach us; notify URLs are built on it.
    public_url: str = ""
    secret_key: str = "dev-only-change-me"

    # Simulator and demo estate.
    sim_host: str = "127.0.0.1"
    sim_base_port: int = 15020

    # Worker timing.
    poll_interval_s: float = 5.0
    sweep_interval_s: float = 1.0
    gateway_reload_s: float = 30.0
    lease_ttl_s: float = 15.0  # a dead worker's gateways are taken over within ttl × 4/3
    breaker_failures: int = 3  # failed polls in a row before a meter is marked offline
    breaker_probe_s: float = 60.0  # how often an offline meter is probed
    # Raw readings older than this are dropped (the load curve, daily frozen registers and relay
    # changes they were rolled up into stay); 0 keeps them all.
    reading_retention_days: int = 7
    # /metrics answers only these client addresses (comma-separated IPs or CIDR networks):
    # the monitoring host's; others get 404. Behind a proxy, the proxy's address is the client.
    metrics_allow: str = "127.0.0.1,::1"
    console_idle_minutes: int = 30  # a console session ends after this long without a request
    full_check_s: float = 60.0  # unchanged readings are judged again (policy, notices) this often
    modbus_timeout_s: float = 1.0
    confirm_timeout_s: float = 5.0
    restore_expiry_s: float = 24 * 3600.0
    cut_expiry_s: float = 3600.0
    read_expiry_s: float = 120.0  # an on-demand read not done by then is dropped (expired)
    # Order jobs (`app.orders.jobs`), run by `feikong run`, `serve` and `demo`: how often pending
    # orders are queried, expired ones closed, refunds followed and yesterday reconciled. 0: not
    # in this process. On PostgreSQL one process sweeps at a time (an advisory lock).
    order_jobs_every_s: float = 30.0
    # Billing jobs (`app.billing.jobs`), run by the same commands: common-area shares of every
    # ended day or month. 0: not in this process.
    billing_jobs_every_s: float = 300.0

    # Alipay. Empty app id = the local sandbox cashier plays Alipay with local keys.
    alipay_app_id: str = ""
    alipay_app_private_key_file: Path | None = None
    alipay_public_key_file: Path | None = None
    alipay_gateway: str = "https://openapi.alipay.com/gateway.do"

    # WeChat Pay (API v3, public-key mode). Empty merchant id = no WeChat merchant keys: the local
    # sandbox plays WeChat Pay, unless Alipay has real keys (then WeChat Pay is not offered).
    wechat_appid: str = ""  # the official account's (or app's) appid bound to the merchant
    wechat_mchid: str = ""  # 商户号
    wechat_merchant_private_key_file: Path | None = None  # apiclient_key.pem
    wechat_merchant_serial_no: str = ""  # the serial number of the merchant API certificate
    wechat_apiv3_key_file: Path | None = None  # a file holding the 32-character API v3 key
    wechat_public_key_file: Path | None = None  # pub_key.pem: WeChat Pay's public key
    wechat_public_key_id: str = ""  # "PUB_KEY_ID_…"
    wechat_gateway: str = "https://api.mch.weixin.qq.com"
    # Paying inside WeChat's browser (JSAPI) needs the payer's openid from the official account's
    # web OAuth (snsapi_base): the appsecret of FEIKONG_WECHAT_APPID, given as the value or as a
    # file holding it (one of the two). Without it, inside WeChat the page asks the resident to
    # open it in a phone browser (H5). The openid is kept in a cookie signed with secret_key.
    wechat_appsecret: str = ""
    wechat_appsecret_file: Path | None = None
    wechat_oauth_authorize_url: str = "https://open.weixin.qq.com/connect/"  # …oauth2/authorize
    wechat_oauth_api_url: str = "https://api.weixin.qq.com/"  # …sns/oauth2/access_token

    @property
    def sandbox(self) -> bool:
        return not self.alipay_app_id

    @property
    def wechat_sandbox(self) -> bool:
        return not self.wechat_mchid

    def wechat_appsecret_value(self) -> str:
        """The official account's appsecret, from the setting or its file ("" when neither).
        Raises ValueError if both are set (which one would be meant?)."""
        if self.wechat_appsecret and self.wechat_appsecret_file:
            raise ValueError("set FEIKONG_WECHAT_APPSECRET or FEIKONG_WECHAT_APPSECRET_FILE, "
                             "not both")
        if self.wechat_appsecret_file:
            return self.wechat_appsecret_file.read_text().strip()
        return self.wechat_appsecret.strip()

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")


_current: Settings | None = None


def get_settings() -> Settings:
    """The process's settings: from the environment, unless `use_settings` chose others."""
    global _current
    if _current is None:
        _current = Settings()
    return _current


def use_settings(settings: Settings) -> Settings:
    global _current
    _current = settings
    return settings
