"""A local stand-in for Alipay, for the demo and the tests when there are no merchant credentials.

It plays both sides Alipay plays: it checks the merchant's RSA2-signed WAP pay request with the
app's public key, and it signs asynchronous notifications with its own "Alipay" private key, in
Alipay's format, so that `AlipayProvider.parse_notify` runs its real verification path.
It is written against Alipay's documented signing rules with `cryptography`, not with the SDK,
so the two implementations check each other.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.money import fen_to_yuan_str, yuan_str_to_fen
from payments.base import NotificationRejected

BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")  # Alipay's clock, no tzdata needed
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
SANDBOX_SELLER_ID = "2088000000000001"


def generate_rsa_keypair() -> tuple[str, str]:
    """A fresh 2048-bit RSA key pair as (private PEM, public PEM).

    The private key is PKCS#1 ("BEGIN RSA PRIVATE KEY", what Alipay's tool gives non-Java
    merchants); the public key is SubjectPublicKeyInfo ("BEGIN PUBLIC KEY", what Alipay
    publishes). python-alipay-sdk loads both, and PKCS#8 too.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _private_pem(key), _public_pem(key)


@dataclass(frozen=True)
class SandboxKeys:
    app_private_pem: str  # ours: signs pay requests (AlipayProvider)
    app_public_pem: str  # the sandbox checks pay requests with it
    alipay_private_pem: str  # the sandbox's "Alipay" key: signs notifications
    alipay_public_pem: str  # AlipayProvider verifies notifications with it


def ensure_sandbox_keys(directory: Path) -> SandboxKeys:
    """Load the sandbox's two key pairs from `directory`, creating them the first time.

    Private keys are written 0600. Two processes starting together end up with the same keys:
    each private key file is created atomically and only if absent, and the public keys are
    always derived from the private ones.
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    app_private, app_public = _ensure_pair(directory, "app")
    alipay_private, alipay_public = _ensure_pair(directory, "alipay")
    return SandboxKeys(app_private, app_public, alipay_private, alipay_public)


def _ensure_pair(directory: Path, name: str) -> tuple[str, str]:
    private_path = directory / f"{name}_private.pem"
    if not private_path.exists():
        private_pem, _ = generate_rsa_keypair()
        _create_if_absent(private_path, private_pem, mode=0o600)
    key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    private_pem, public_pem = _private_pem(key), _public_pem(key)
    public_path = directory / f"{name}_public.pem"
    if not public_path.exists() or public_path.read_text() != public_pem:
        _replace(public_path, public_pem, mode=0o644)
    return private_pem, public_pem


def _create_if_absent(path: Path, text: str, *, mode: int) -> None:
    tmp = _write_temp(path, text, mode)
    try:
        os.link(tmp, path)  # fails if another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)


def _replace(path: Path, text: str, *, mode: int) -> None:
    os.replace(_write_temp(path, text, mode), path)


def _write_temp(path: Path, text: str, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
    os.chmod(tmp, mode)
    return tmp


def _private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def _public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


@dataclass(frozen=True)
class PayRequest:
    """A WAP pay request whose signature the sandbox verified."""

    out_trade_no: str
    amount_fen: int
    subject: str
    notify_url: str | None
    return_url: str | None
    app_id: str
    time_expire: datetime | None = None  # Beijing time: no payment after it


class SandboxAlipay:
    """Plays Alipay: checks the merchant's signed WAP request, signs notifications with its own
    'Alipay' key. Moves no money and keeps no state."""

    def __init__(self, keys: SandboxKeys, app_id: str) -> None:
        self.keys = keys
        self.app_id = str(app_id)
        self._app_public_key = serialization.load_pem_public_key(keys.app_public_pem.encode())
        self._alipay_private_key = serialization.load_pem_private_key(
            keys.alipay_private_pem.encode(), password=None)

    # -- the cashier side: what Alipay does with GET gateway.do?...

    def parse_pay_request(self, query: Mapping[str, str]) -> PayRequest:
        """Verify an alipay.trade.wap.pay request (the decoded query of the cashier URL).

        Alipay's rule for requests: every parameter except `sign` and empty ones (sign_type is
        signed), sorted by name, `k=v` joined by '&', RSA-SHA256 with the app's key.
        """
        params = {str(k): str(v) for k, v in query.items()}
        if params.get("sign_type") != "RSA2":
            raise NotificationRejected("bad_signature", f"sign_type {params.get('sign_type')!r}")
        signature = params.pop("sign", "")
        content = _signing_content({k: v for k, v in params.items() if v != ""})
        if not _verify(self._app_public_key, content, signature):
            raise NotificationRejected("bad_signature", "pay request signature does not verify")
        if params.get("app_id") != self.app_id:
            raise NotificationRejected("wrong_app_id", f"unknown app_id {params.get('app_id')!r}")
        if params.get("method") != "alipay.trade.wap.pay":
            raise NotificationRejected("malformed", f"method {params.get('method')!r}")
        try:
            # numbers kept as text: Alipay takes total_amount as a string or a JSON number
            biz = json.loads(params["biz_content"], parse_float=str, parse_int=str)
            amount_fen = yuan_str_to_fen(biz["total_amount"])
            out_trade_no, subject = str(biz["out_trade_no"]), str(biz["subject"])
        except (KeyError, TypeError, ValueError) as exc:
            raise NotificationRejected("malformed", f"biz_content: {exc}") from exc
        if amount_fen <= 0 or not out_trade_no or not subject:
            raise NotificationRejected("malformed", "empty out_trade_no, subject or amount")
        time_expire = None
        if biz.get("time_expire"):
            try:
                time_expire = datetime.strptime(str(biz["time_expire"]), "%Y-%m-%d %H:%M:%S"
                                                ).replace(tzinfo=BEIJING)
            except ValueError as exc:
                raise NotificationRejected("malformed", f"time_expire: {exc}") from exc
        return PayRequest(
            out_trade_no=out_trade_no,
            amount_fen=amount_fen,
            subject=subject,
            notify_url=params.get("notify_url") or None,
            return_url=params.get("return_url") or None,
            app_id=params["app_id"],
            time_expire=time_expire,
        )

    # -- the notifying side: what Alipay POSTs to notify_url

    def build_notification(
        self,
        req: PayRequest,
        *,
        trade_no: str | None = None,
        trade_status: str = "TRADE_SUCCESS",
        amount_fen: int | None = None,
        app_id: str | None = None,
        extra: Mapping[str, str | None] | None = None,
    ) -> dict[str, str]:
        """A signed asynchronous notification for `req`, as Alipay would send it.

        `amount_fen` and `app_id` override the request's (to play a lying or misrouted notice);
        `extra` adds fields (refund_fee, gmt_refund, ...) or, with a None value, removes one.
        Signing comes last, so every override is signed.
        """
        now = datetime.now(BEIJING)
        created = now - timedelta(seconds=30)
        total = fen_to_yuan_str(req.amount_fen if amount_fen is None else amount_fen)
        form = {
            "notify_time": now.strftime(TIME_FORMAT),
            "notify_type": "trade_status_sync",
            "notify_id": secrets.token_hex(16),
            "charset": "utf-8",
            "version": "1.0",
            "auth_app_id": self.app_id,
            "app_id": self.app_id if app_id is None else app_id,
            "trade_no": trade_no or _trade_no(now),
            "out_trade_no": req.out_trade_no,
            "buyer_id": "2088" + "".join(secrets.choice("0123456789") for _ in range(12)),
            "buyer_logon_id": "138****5678",
            "seller_id": SANDBOX_SELLER_ID,
            "trade_status": trade_status,
            "total_amount": total,
            "subject": req.subject,
            "gmt_create": created.strftime(TIME_FORMAT),
        }
        if trade_status in PAID_STATUSES:
            form |= {
                "receipt_amount": total,
                "invoice_amount": total,
                "buyer_pay_amount": total,
                "point_amount": "0.00",
                "gmt_payment": now.strftime(TIME_FORMAT),
                "fund_bill_list": json.dumps(
                    [{"amount": total, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
                ),
            }
        elif trade_status == "TRADE_CLOSED":
            form["gmt_close"] = now.strftime(TIME_FORMAT)
        for name, value in (extra or {}).items():
            if value is None:
                form.pop(name, None)
            else:
                form[name] = str(value)
        return self.sign_form(form)

    def sign_form(self, form: Mapping[str, str], private_pem: str | None = None) -> dict[str, str]:
        """A copy of `form` signed the way Alipay signs notifications: every field except
        `sign` and `sign_type`, sorted, `k=v` joined by '&', RSA-SHA256. `private_pem`
        defaults to the sandbox's Alipay key; pass another to forge."""
        unsigned = {k: v for k, v in form.items() if k not in ("sign", "sign_type")}
        signature = self.sign_text(_signing_content(unsigned), private_pem)
        return unsigned | {"sign_type": "RSA2", "sign": signature}

    def sign_text(self, text: str, private_pem: str | None = None) -> str:
        """RSA2 (SHA256withRSA, PKCS#1 v1.5) of `text`'s UTF-8 bytes, base64: how Alipay signs
        notifications (over their sorted fields) and server API replies (over the inner JSON)."""
        if private_pem is None:
            key = self._alipay_private_key
        else:
            key = serialization.load_pem_private_key(private_pem.encode(), password=None)
        signature = key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")

    @staticmethod
    def encode_form(form: Mapping[str, str]) -> bytes:
        """application/x-www-form-urlencoded, UTF-8, as Alipay posts it."""
        return urlencode(form).encode("ascii")

    def post_notification(
        self, form: Mapping[str, str], notify_url: str, *, client: httpx.Client | None = None
    ) -> httpx.Response:
        """POST the notification to `notify_url`; the response body should be "success"."""
        content = self.encode_form(form)
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        if client is None:
            return httpx.post(notify_url, content=content, headers=headers, timeout=10)
        return client.post(notify_url, content=content, headers=headers)


def _signing_content(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()))


def _verify(public_key, content: str, signature: str) -> bool:
    try:
        public_key.verify(
            base64.b64decode(signature, validate=True),
            content.encode("utf-8"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def _trade_no(now: datetime) -> str:
    """Alipay-shaped: 28 digits starting with the date."""
    return now.strftime("%Y%m%d") + "".join(secrets.choice("0123456789") for _ in range(20))
