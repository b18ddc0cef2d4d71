"""`feikong check`: the settings read as an operator would, in plain words: what is configured,
what is missing, what is dangerous. Exit 1 when anything would make the service wrong in
production (docs/deploy.md); `serve` and `run` refuse the worst of it themselves
(`refuse_to_serve`): the sandbox cashiers on a public https address."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from app.settings import Settings

OK, WARN, ERROR = "ok", "warn", "error"
DEFAULT_SECRET = "dev-only-change-me"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


@dataclass(frozen=True)
class Finding:
    level: str
    topic: str
    text: str

    def __str__(self) -> str:
        mark = {OK: "  ok ", WARN: "warn ", ERROR: "FAIL "}[self.level]
        return f"{mark} {self.topic}: {self.text}"


def public(settings: Settings) -> bool:
    """Served at an https address that is not this machine's loopback."""
    parts = urlsplit(settings.public_url)
    return parts.scheme == "https" and (parts.hostname or "") not in LOCAL_HOSTS


def sandbox_mode(settings: Settings) -> bool:
    return settings.sandbox and settings.wechat_sandbox


def refuse_to_serve(settings: Settings) -> str | None:
    """Why this process must not serve at all, or None: a sandbox (local cashiers that move no
    money and credit anyway) on a public https address would let anyone top up for free."""
    # sandbox mode is all or nothing (app/orders/providers.py): with no merchant keys at all,
    # both cashiers are played; with either provider's keys, the other is simply not offered
    if public(settings) and sandbox_mode(settings):
        return (f"the local sandbox cashiers (Alipay, WeChat Pay) would take payments on the "
                f"public address {settings.public_url}: configure the real merchant keys, or "
                "serve on a private address (docs/deploy.md)")
    return None


def _key_file(topic: str, path: Path | None, what: str) -> Finding:
    if path is None:
        return Finding(ERROR, topic, f"{what}: not set")
    if not path.is_file():
        return Finding(ERROR, topic, f"{what}: {path} does not exist")
    if not os.access(path, os.R_OK):
        return Finding(ERROR, topic, f"{what}: {path} cannot be read by this user")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Finding(ERROR, topic, f"{what}: {path} is readable by others (mode "
                                     f"{mode:o}); chmod 600 and owned by the service user")
    return Finding(OK, topic, f"{what}: {path}")


def check(settings: Settings) -> list[Finding]:
    found: list[Finding] = []
    add = found.append
    refusal = refuse_to_serve(settings)
    if refusal:
        add(Finding(ERROR, "sandbox", refusal))
    # where residents reach us
    if not settings.public_url:
        add(Finding(WARN, "address", f"FEIKONG_PUBLIC_URL not set: pages and the providers' "
                                     f"notify URLs use {settings.base_url}"))
    elif not settings.public_url.startswith("https://"):
        add(Finding(WARN if not public(settings) else ERROR, "address",
                    f"{settings.public_url} is not https: the providers require https notify "
                    "URLs and sessions would travel in clear"))
    else:
        add(Finding(OK, "address", settings.public_url))
    # secrets
    if settings.secret_key == DEFAULT_SECRET or len(settings.secret_key) < 32:
        add(Finding(ERROR if public(settings) else WARN, "secret key",
                    "FEIKONG_SECRET_KEY is the development default or shorter than 32 "
                    "characters: sessions and CSRF tokens could be forged "
                    "(python -c 'import secrets; print(secrets.token_urlsafe(48))')"))
    else:
        add(Finding(OK, "secret key", "set"))
    # the database
    found += _database(settings)
    # payments
    if sandbox_mode(settings):
        add(Finding(WARN, "payments", "no merchant keys: the local sandbox cashiers play Alipay "
                                      "and WeChat Pay (no money moves)"))
    elif settings.sandbox:
        add(Finding(WARN, "Alipay", "no FEIKONG_ALIPAY_APP_ID: Alipay is not offered"))
    else:
        add(Finding(OK, "Alipay", f"app id {settings.alipay_app_id}"))
        add(_key_file("Alipay", settings.alipay_app_private_key_file, "app private key"))
        add(_key_file("Alipay", settings.alipay_public_key_file, "Alipay public key"))
    if settings.wechat_sandbox:
        if not settings.sandbox:
            add(Finding(WARN, "WeChat Pay", "no FEIKONG_WECHAT_MCHID: WeChat Pay is not offered"))
    else:
        add(Finding(OK, "WeChat Pay", f"merchant {settings.wechat_mchid}"))
        for value, name in ((settings.wechat_appid, "FEIKONG_WECHAT_APPID"),
                            (settings.wechat_merchant_serial_no,
                             "FEIKONG_WECHAT_MERCHANT_SERIAL_NO"),
                            (settings.wechat_public_key_id, "FEIKONG_WECHAT_PUBLIC_KEY_ID")):
            if not value:
                add(Finding(ERROR, "WeChat Pay", f"{name} not set"))
        add(_key_file("WeChat Pay", settings.wechat_merchant_private_key_file,
                      "merchant private key (apiclient_key.pem)"))
        add(_key_file("WeChat Pay", settings.wechat_apiv3_key_file, "API v3 key"))
        add(_key_file("WeChat Pay", settings.wechat_public_key_file, "WeChat Pay public key"))
    try:
        secret = settings.wechat_appsecret_value()
    except (ValueError, OSError) as exc:
        add(Finding(ERROR, "WeChat login", str(exc)))
    else:
        add(Finding(OK, "WeChat login", "appsecret set") if secret else
            Finding(WARN, "WeChat login", "no appsecret: inside WeChat, residents pay with "
                                          "the sandbox's openid only"))
    if settings.wechat_appsecret and public(settings):
        add(Finding(WARN, "WeChat login", "the appsecret is in the environment: prefer "
                                          "FEIKONG_WECHAT_APPSECRET_FILE (mode 600)"))
    # what residents must accept before using a household (app/resident/agreement)
    from app.resident.agreement import AgreementError, load_agreement

    try:
        agreement = load_agreement(settings.agreement_file)
    except (AgreementError, OSError) as exc:
        add(Finding(ERROR, "agreement", f"the prepaid agreement cannot be read: {exc}"))
    else:
        add(Finding(OK, "agreement", f"version {agreement.version}"))
    if public(settings) and not settings.trusted_proxies:
        add(Finding(WARN, "proxy", "FEIKONG_TRUSTED_PROXIES not set: behind a proxy every "
                                   "resident counts as the proxy's address in the rate limits"))
    # the machine
    var = settings.var_dir
    if var.exists() and not os.access(var, os.W_OK):
        add(Finding(ERROR, "var dir", f"{var} is not writable by this user"))
    else:
        add(Finding(OK, "var dir", str(var)))
    return found


def _database(settings: Settings) -> list[Finding]:
    import sqlalchemy as sa

    from app.db import make_engine
    from app.migrate import current_revision, head_revision

    url = sa.engine.make_url(settings.database_url)
    shown = url.render_as_string(hide_password=True)
    try:
        engine = make_engine(settings.database_url)
        with engine.connect() as conn:
            current = current_revision(conn)
        engine.dispose()
        head = head_revision()
    except Exception as exc:  # noqa: BLE001 - whatever it is, the operator reads it
        return [Finding(ERROR, "database", f"{shown}: cannot connect ({str(exc).splitlines()[0]})")]
    out = [Finding(OK, "database", f"{shown} ({url.get_backend_name()})")]
    if current != head:
        out.append(Finding(ERROR, "database", f"schema at {current}, the code needs {head}: "
                                              "run `feikong db upgrade` before starting"))
    return out
