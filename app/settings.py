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
    # The reverse proxies in front of us (comma-separated IPs or CIDR networks; default none):
    # only a request from one of them has its X-Forwarded-For believed for the client's address
    # (rate limits, records). Without it, the peer's address is the client's.
    trusted_proxies: str = ""
    # The prepaid agreement (预付费协议) residents accept: a text file with a `version:` in its
    # front matter (or `-v<version>` in its name). Empty: the one shipped in
    # app/resident/agreement/. A new version is accepted again by every resident.
    agreement_file: Path | None = None
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
    # Message jobs (`app.messages.jobs`), run by the same commands: notices become WeChat or SMS
    # messages, due messages are sent (and retried). 0: not in this process.
    message_jobs_every_s: float = 2.0
    # Batch jobs (`app.batch.runner`: imports, large exports, bulk approvals, reminders, tariff
    # changes), run by the same commands in the same process: a queued job is looked for this
    # often when none runs. 0: not in this process.
    batch_jobs_every_s: float = 1.0

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
    # WeChat messages to followers of the official account (messaging/wechat.py) use the same
    # appid and appsecret, at wechat_oauth_api_url + "cgi-bin/". Template ids: the template
    # messages' (模板消息) and the subscription notices' (订阅通知) of the account; the defaults
    # are the sandbox's.
    wechat_template_low_balance: str = "sandbox-tpl-low-balance"
    wechat_template_exhausted: str = "sandbox-tpl-exhausted"
    wechat_template_cut: str = "sandbox-tpl-cut"
    wechat_template_restored: str = "sandbox-tpl-restored"
    wechat_template_payment: str = "sandbox-tpl-payment"
    wechat_template_emergency: str = "sandbox-tpl-emergency"
    wechat_subscribe_low_balance: str = "sandbox-sub-low-balance"
    wechat_subscribe_exhausted: str = "sandbox-sub-exhausted"
    wechat_subscribe_cut: str = "sandbox-sub-cut"
    wechat_subscribe_restored: str = "sandbox-sub-restored"
    wechat_subscribe_payment: str = "sandbox-sub-payment"
    wechat_subscribe_emergency: str = "sandbox-sub-emergency"

    # SMS through Tencent Cloud SMS (messaging/sms.py). Empty secret id: no SMS, except in the
    # sandbox (no merchant keys), where a local stand-in plays Tencent with local keys. The
    # SecretKey as the value or as a file holding it (one of the two). Template ids are the
    # approved templates of sms_sdk_app_id; the defaults are the sandbox's.
    sms_secret_id: str = ""
    sms_secret_key: str = ""
    sms_secret_key_file: Path | None = None
    sms_sdk_app_id: str = ""  # 短信 SdkAppId, "1400…"
    sms_sign_name: str = ""  # the approved signature (签名), e.g. the property company's name
    sms_endpoint: str = "https://sms.tencentcloudapi.com"
    sms_region: str = "ap-guangzhou"
    sms_template_code: str = "2000001"  # verification code: {1} the code, {2} minutes
    sms_template_low_balance: str = "2000002"
    sms_template_exhausted: str = "2000003"
    sms_template_cut: str = "2000004"
    sms_template_restored: str = "2000005"
    sms_template_payment: str = "2000006"
    sms_template_emergency: str = "2000007"  # 应急用电 taken: {1} 户号, {2} the advance

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

    def sms_secret_key_value(self) -> str:
        """Tencent Cloud's SecretKey for SMS, from the setting or its file ("" when neither).
        Raises ValueError if both are set."""
        if self.sms_secret_key and self.sms_secret_key_file:
            raise ValueError("set FEIKONG_SMS_SECRET_KEY or FEIKONG_SMS_SECRET_KEY_FILE, not both")
        if self.sms_secret_key_file:
            return self.sms_secret_key_file.read_text().strip()
        return self.sms_secret_key.strip()

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
