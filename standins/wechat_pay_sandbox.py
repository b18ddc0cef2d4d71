"""A local stand-in for WeChat Pay (API v3): its keys and its wire format, for the demo and the
tests when there are no merchant credentials.

It holds what WeChat Pay holds: a "WeChat Pay platform" key pair (public-key mode, `PUB_KEY_ID_…`),
our API v3 key, and our merchant public key. It signs and encrypts notifications exactly in
WeChat's v3 format (RSA-SHA256 over "timestamp\\nnonce\\nbody\\n", `resource` sealed with
AEAD_AES_256_GCM), signs API replies the same way, and checks our signed API requests. It is
written against WeChat's documented rules with `cryptography`, not with wechatpayv3, so the two
implementations check each other. WeChat's server side (orders, refunds, bills, HTTP) is
`standins/wechat_pay.py`. Nothing here touches our database.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import string
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from standins.alipay_sandbox import BEIJING, _create_if_absent, _ensure_pair

SANDBOX_MCHID = "1900000001"
SANDBOX_APPID = "wxsandbox000000001"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
MAX_REQUEST_SKEW_S = 300
_ALNUM = string.ascii_letters + string.digits
_AUTH_FIELD = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class WechatSandboxKeys:
    merchant_private_pem: str  # ours, PKCS#8 like apiclient_key.pem: signs API requests, paySign
    merchant_public_pem: str  # the stand-in checks our requests with it
    merchant_serial_no: str  # 40 hex digits, like an API certificate's serial number
    platform_private_pem: str  # the sandbox's "WeChat Pay" key: signs notifications and replies
    platform_public_pem: str  # like pub_key.pem: WechatPayProvider verifies with it
    public_key_id: str  # "PUB_KEY_ID_SANDBOX…", sent as Wechatpay-Serial
    apiv3_key: str  # 32 ASCII characters: the AES-256-GCM key of notification resources
    mchid: str = SANDBOX_MCHID
    appid: str = SANDBOX_APPID


def ensure_wechat_sandbox_keys(directory: Path) -> WechatSandboxKeys:
    """Load the WeChat sandbox's keys from `directory`, creating them the first time.

    Private keys and the API v3 key are written 0600, each atomically and only if absent (two
    processes starting together end up with the same keys); the merchant serial number and the
    public key id are derived from the keys, so they change only with them. The file names do not
    clash with `ensure_sandbox_keys`' (Alipay), so both may share a directory.
    """
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    merchant_private, merchant_public = _ensure_pair(directory, "wechat_merchant")
    platform_private, platform_public = _ensure_pair(directory, "wechat_platform")
    key_path = directory / "wechat_apiv3_key"
    if not key_path.exists():
        _create_if_absent(key_path, "".join(secrets.choice(_ALNUM) for _ in range(32)), mode=0o600)
    apiv3_key = key_path.read_text(encoding="ascii").strip()
    if len(apiv3_key) != 32:
        raise ValueError(f"{key_path}: the API v3 key must be 32 ASCII characters")
    return WechatSandboxKeys(
        merchant_private_pem=_pkcs8(merchant_private),
        merchant_public_pem=merchant_public,
        merchant_serial_no=_fingerprint(merchant_public).upper(),
        platform_private_pem=platform_private,
        platform_public_pem=platform_public,
        public_key_id="PUB_KEY_ID_SANDBOX" + _fingerprint(platform_public)[:20].upper(),
        apiv3_key=apiv3_key,
    )


def _pkcs8(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _fingerprint(public_pem: str) -> str:
    der = serialization.load_pem_public_key(public_pem.encode()).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha1(der).hexdigest()


class StandinError(Exception):
    """A WeChat Pay API error reply: HTTP `status` and the JSON {"code", "message"}."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class WechatSandbox:
    """Plays WeChat Pay's signatures with local keys: signs and seals notifications and API
    replies, checks our API requests. Keeps no state and moves no money."""

    def __init__(self, keys: WechatSandboxKeys, *, clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.appid = keys.appid
        self.mchid = keys.mchid
        self.clock = clock
        self._merchant_public_key = serialization.load_pem_public_key(
            keys.merchant_public_pem.encode()
        )
        self._platform_key = serialization.load_pem_private_key(
            keys.platform_private_pem.encode(), password=None
        )

    # -- notifications: what WeChat Pay POSTs to notify_url

    def build_notification(
        self,
        out_trade_no: str,
        amount_fen: int,
        *,
        event_type: str = "TRANSACTION.SUCCESS",
        trade_state: str = "SUCCESS",
        appid: str | None = None,
        mchid: str | None = None,
        timestamp: int | None = None,
        transaction_id: str | None = None,
        trade_type: str = "MWEB",
        out_refund_no: str | None = None,
        refund_fen: int | None = None,
        private_pem: str | None = None,
        serial: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """(headers, raw body) of a v3 notification, as WeChat Pay sends it.

        TRANSACTION.* events carry a transaction resource (`associated_data` "transaction");
        REFUND.* events a refund resource ("refund": no appid, `amount.refund`, `refund_status`
        from the event name). `appid`/`mchid` override ours (a misrouted notice), `timestamp`
        the clock (a stale one), `private_pem` the platform key and `serial` the public key id
        (a forgery). Encryption and signing come last, so every override is sealed and signed.
        """
        now = datetime.fromtimestamp(self.clock(), BEIJING)
        transaction_id = transaction_id or new_transaction_id()
        if event_type.startswith("REFUND."):
            status = event_type.split(".", 1)[1]
            resource = {
                "mchid": self.mchid if mchid is None else mchid,
                "out_trade_no": out_trade_no,
                "transaction_id": transaction_id,
                "out_refund_no": out_refund_no or "RF" + out_trade_no,
                "refund_id": new_refund_id(),
                "refund_status": status,
                "success_time": rfc3339(now) if status == "SUCCESS" else None,
                "user_received_account": "支付用户零钱",
                "amount": {
                    "total": amount_fen,
                    "refund": amount_fen if refund_fen is None else refund_fen,
                    "payer_total": amount_fen,
                    "payer_refund": amount_fen if refund_fen is None else refund_fen,
                },
            }
            if appid is not None:  # WeChat's refund resource has no appid; only to play a liar
                resource["appid"] = appid
            resource = {k: v for k, v in resource.items() if v is not None}
            original_type, summary = "refund", "退款成功" if status == "SUCCESS" else "退款异常"
        else:
            resource = {
                "mchid": self.mchid if mchid is None else mchid,
                "appid": self.appid if appid is None else appid,
                "out_trade_no": out_trade_no,
                "transaction_id": transaction_id,
                "trade_type": trade_type,
                "trade_state": trade_state,
                "trade_state_desc": "支付成功" if trade_state == "SUCCESS" else trade_state,
                "bank_type": "OTHERS",
                "attach": "",
                "success_time": rfc3339(now),
                "payer": {"openid": "o" + secrets.token_urlsafe(20)[:27]},
                "amount": {
                    "total": amount_fen,
                    "payer_total": amount_fen,
                    "currency": "CNY",
                    "payer_currency": "CNY",
                },
            }
            original_type, summary = "transaction", "支付成功"
        envelope = {
            "id": "EV-" + secrets.token_hex(12),
            "create_time": rfc3339(now),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": self.encrypt_resource(resource, original_type),
        }
        body = json.dumps(envelope, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = self.signed_headers(
            body, timestamp=timestamp, private_pem=private_pem, serial=serial
        )
        return headers | {"Content-Type": "application/json"}, body

    def encrypt_resource(self, resource: Mapping, original_type: str) -> dict[str, str]:
        """`resource` sealed with AEAD_AES_256_GCM under the API v3 key; the associated data is
        the original type ("transaction", "refund"), the nonce 12 ASCII characters."""
        nonce = "".join(secrets.choice(_ALNUM) for _ in range(12))
        plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":"))
        sealed = AESGCM(self.keys.apiv3_key.encode("ascii")).encrypt(
            nonce.encode("ascii"), plaintext.encode("utf-8"), original_type.encode("ascii")
        )
        return {
            "original_type": original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(sealed).decode("ascii"),
            "associated_data": original_type,
            "nonce": nonce,
        }

    def signed_headers(
        self,
        body: bytes,
        *,
        timestamp: int | None = None,
        private_pem: str | None = None,
        serial: str | None = None,
    ) -> dict[str, str]:
        """The Wechatpay-* headers WeChat Pay puts on a notification or an API reply: RSA-SHA256
        with the platform key (or `private_pem`) over "timestamp\\nnonce\\nbody\\n"."""
        ts = str(int(self.clock()) if timestamp is None else int(timestamp))
        nonce = secrets.token_hex(16).upper()
        key = self._platform_key if private_pem is None else serialization.load_pem_private_key(
            private_pem.encode(), password=None
        )
        message = ts.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"
        signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        return {
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": base64.b64encode(signature).decode("ascii"),
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Serial": self.keys.public_key_id if serial is None else serial,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
        }

    @staticmethod
    def post_notification(
        headers: Mapping[str, str],
        body: bytes,
        notify_url: str,
        *,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        """POST a notification to `notify_url`; 200 or 204 means WeChat would stop retrying."""
        if client is None:
            return httpx.post(notify_url, content=body, headers=dict(headers), timeout=10)
        return client.post(notify_url, content=body, headers=dict(headers))

    # -- our API requests: the Authorization header WeChat Pay checks

    def verify_request(self, method: str, path: str, body: bytes, authorization: str) -> None:
        """Check a merchant API request like WeChat Pay does; raise StandinError(401) if not ours.

        `path` is the absolute path with its query string, as signed: the signed message is
        "METHOD\\npath\\ntimestamp\\nnonce_str\\nbody\\n", RSA-SHA256 with the merchant key.
        """
        scheme, _, params = authorization.partition(" ")
        fields = dict(_AUTH_FIELD.findall(params))
        if scheme != SIGNATURE_TYPE:
            raise StandinError(401, "SIGN_ERROR", f"authorization scheme {scheme!r}")
        if fields.get("mchid") != self.mchid:
            raise StandinError(401, "SIGN_ERROR", f"mchid {fields.get('mchid')!r} is not ours")
        if fields.get("serial_no") != self.keys.merchant_serial_no:
            raise StandinError(401, "SIGN_ERROR", f"serial_no {fields.get('serial_no')!r}")
        try:
            skew = abs(self.clock() - int(fields.get("timestamp", "")))
        except ValueError:
            raise StandinError(401, "SIGN_ERROR", "timestamp is not a number") from None
        if skew > MAX_REQUEST_SKEW_S:
            raise StandinError(401, "SIGN_ERROR", "timestamp too far from now")
        message = "\n".join(
            [method, path, fields["timestamp"], fields.get("nonce_str", ""), body.decode("utf-8")]
        ) + "\n"
        try:
            self._merchant_public_key.verify(
                base64.b64decode(fields.get("signature", ""), validate=True),
                message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256(),
            )
        except (InvalidSignature, ValueError):
            raise StandinError(401, "SIGN_ERROR", "signature does not verify") from None


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def new_transaction_id() -> str:
    """WeChat-shaped: 28 digits starting with 4200."""
    return "4200" + "".join(secrets.choice(string.digits) for _ in range(24))


def new_refund_id() -> str:
    return "50" + "".join(secrets.choice(string.digits) for _ in range(27))
