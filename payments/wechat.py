"""WeChat Pay (API v3) through wechatpayv3, in public-key mode.

The only module that imports wechatpayv3. It signs our API requests with the merchant private key
(RSA-SHA256, `Authorization: WECHATPAY2-SHA256-RSA2048 …`), verifies WeChat Pay's notifications
and replies with the WeChat Pay public key (`PUB_KEY_ID_…`), and opens notification resources with
the API v3 key (AES-256-GCM). It never touches the database: whether a verified notification
credits anything (our appid and mchid, the order, the amount) is decided by the caller.

wechatpayv3 2.0.4 facts this module works around (see tests/payments/test_wechat.py):
- it loads only PKCS#8 private keys ("BEGIN PRIVATE KEY"): PKCS#1 PEM or bare base64 are
  converted here;
- its header lookup is all-or-nothing per spelling: lower-case keys work only if
  `wechatpay-signature` is lower-case too, so headers are lower-cased here as a whole; a missing
  or other `Wechatpay-Signature-Type` raises a bare `Exception`;
- a `Wechatpay-Serial` other than `public_key_id` makes it fetch /v3/certificates online (an
  outbound signed request, an exception when offline): refused here before the SDK sees it;
- it does not check `Wechatpay-Timestamp`: done here;
- it waits forever on the network unless given a timeout: given one here;
- `download_bill(url)` requests `_gate_way + url` unless `url` starts with `_gate_way`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import gzip
import hashlib
import json
import secrets
import time
import zlib
from collections.abc import Callable, Mapping
from datetime import date
from urllib.parse import quote

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from wechatpayv3 import WeChatPay, WeChatPayType

from payments.base import (BILL_PAYMENT, BILL_REFUND, REFUND_FAILED, REFUND_PROCESSING,
                           REFUND_SUCCEEDED, BillLine, Checkout, Notification, NotificationRejected,
                           OrderInfo, ProviderError, RefundResult)
from payments.bills import BillEntry, TradeBill, parse_trade_bill  # noqa: F401 (re-exported)

DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"
MAX_CLOCK_SKEW_S = 300
PAID_EVENT = "TRANSACTION.SUCCESS"
PAID_STATE = "SUCCESS"
REFUND_STATUSES = {"SUCCESS": REFUND_SUCCEEDED, "PROCESSING": REFUND_PROCESSING,
                   "CLOSED": REFUND_FAILED, "ABNORMAL": REFUND_FAILED}


class WechatPayError(ProviderError):
    """A WeChat Pay API call that did not succeed.

    `status` is the HTTP status (0 when there was no usable reply), `code` WeChat's error code
    ("ORDERPAID", "SIGN_ERROR", …) or ours ("NETWORK", "BAD_RESPONSE_SIGNATURE",
    "BILL_HASH_MISMATCH", …), `message` the explanation.
    """

    provider = "WeChat Pay"


class WechatPayProvider:
    """WeChat Pay: H5 (a phone browser outside WeChat), JSAPI (inside WeChat), notifications,
    query, close, refund and trade bills, in public-key mode.

    `gateway_url` None means WeChat's production API; the sandbox passes its stand-in's base URL
    (no trailing slash). `clock` gives the time in seconds (tests inject one). `timeout` is the
    (connect, read) timeout of every API call, in seconds.
    """

    identifier = "wechat"

    def __init__(
        self,
        appid: str,
        mchid: str,
        merchant_private_key_pem: str,
        merchant_serial_no: str,
        apiv3_key: str,
        wechatpay_public_key_pem: str,
        wechatpay_public_key_id: str,
        gateway_url: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        timeout: tuple[float, float] = (5.0, 15.0),
    ) -> None:
        if len(apiv3_key.encode("utf-8")) != 32:
            raise ValueError("the API v3 key must be 32 ASCII characters")
        if not wechatpay_public_key_id:
            raise ValueError("the WeChat Pay public key id (PUB_KEY_ID_…) is required")
        self.appid = self.app_id = str(appid)
        self.mchid = str(mchid)
        self.public_key_id = str(wechatpay_public_key_id)
        self.clock = clock
        self._client = WeChatPay(
            wechatpay_type=WeChatPayType.H5,
            mchid=self.mchid,
            private_key=pkcs8_private_pem(merchant_private_key_pem),
            cert_serial_no=str(merchant_serial_no),
            appid=self.appid,
            apiv3_key=apiv3_key,
            timeout=timeout,
            public_key=spki_public_pem(wechatpay_public_key_pem),
            public_key_id=self.public_key_id,
        )
        # No public setter; every API call and bill download goes to _gate_way + path.
        self.gateway_url = (gateway_url or DEFAULT_GATEWAY).rstrip("/")
        self._client._core._gate_way = self.gateway_url

    # -- paying

    def start(
        self, order: OrderInfo, *, notify_url: str, return_url: str, payer_client_ip: str = ""
    ) -> Checkout:
        """Create an H5 order and return its cashier URL, with `redirect_url` = `return_url`
        (where WeChat sends the browser afterwards, paid or not). Moves no money.

        `payer_client_ip` is required by WeChat (the resident's IP, as WeChat will see it when
        the browser opens the URL). Raises WechatPayError if WeChat refuses the order.
        """
        _check_order(order)
        if not payer_client_ip:
            raise ValueError("WeChat H5 pay needs payer_client_ip, the resident's IP")
        reply = self._expect(*self._call(
            self._client.pay,
            description=order.subject,
            out_trade_no=order.out_trade_no,
            amount={"total": order.amount_fen, "currency": "CNY"},  # int fen, never a float
            notify_url=notify_url,
            scene_info={"payer_client_ip": payer_client_ip, "h5_info": {"type": "Wap"}},
            time_expire=_rfc3339(order.expires_at),
            pay_type=WeChatPayType.H5,
        ))
        h5_url = reply.get("h5_url")
        if not isinstance(h5_url, str) or not h5_url:
            raise WechatPayError(200, "MALFORMED_REPLY", "no h5_url in the reply")
        return Checkout(url=f"{h5_url}&redirect_url={quote(return_url, safe='')}")

    def start_jsapi(self, order: OrderInfo, *, openid: str, notify_url: str) -> dict[str, str]:
        """Create a JSAPI order for the WeChat user `openid` (of our appid, an official account)
        and return the parameters of `WeixinJSBridge.invoke('getBrandWCPayRequest', …)`.
        Moves no money; `paySign` is RSA-SHA256 with the merchant key over
        "appId\\ntimeStamp\\nnonceStr\\npackage\\n"."""
        _check_order(order)
        if not openid:
            raise ValueError("JSAPI pay needs the payer's openid")
        reply = self._expect(*self._call(
            self._client.pay,
            description=order.subject,
            out_trade_no=order.out_trade_no,
            amount={"total": order.amount_fen, "currency": "CNY"},
            notify_url=notify_url,
            payer={"openid": openid},
            time_expire=_rfc3339(order.expires_at),
            pay_type=WeChatPayType.JSAPI,
        ))
        prepay_id = reply.get("prepay_id")
        if not isinstance(prepay_id, str) or not prepay_id:
            raise WechatPayError(200, "MALFORMED_REPLY", "no prepay_id in the reply")
        params = {
            "appId": self.appid,
            "timeStamp": str(int(self.clock())),
            "nonceStr": secrets.token_hex(16),
            "package": f"prepay_id={prepay_id}",
            "signType": "RSA",
        }
        params["paySign"] = self._client.sign(
            [params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]
        )
        return params

    # -- notifications

    def parse_notify(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify a notification (the request's headers and RAW body bytes) and parse it.

        Raises NotificationRejected: "stale_timestamp" if Wechatpay-Timestamp is more than 300 s
        from now; "bad_signature" if the serial is not our public key id, the signature does
        not verify, the signature type is missing or unknown, or the resource does not open with
        our API v3 key; "malformed" if the verified content is not a transaction or refund
        notice. Returns the appid (`app_id`, "" on refund notices, which carry none) and the
        mchid (`raw["mchid"]`) unchecked: comparing them with ours is the caller's job.
        """
        lowered = {str(name).lower(): str(value) for name, value in headers.items()}
        self._check_timestamp(lowered.get("wechatpay-timestamp", ""))
        serial = lowered.get("wechatpay-serial", "")
        if serial != self.public_key_id:
            raise NotificationRejected(
                "bad_signature", f"Wechatpay-Serial {serial!r} is not {self.public_key_id!r}")
        try:
            data = self._client.callback(lowered, bytes(body))
        except ValueError as exc:  # body not UTF-8, or verified content not JSON
            raise NotificationRejected("malformed", str(exc)) from exc
        except Exception as exc:
            if type(exc) is not Exception:  # the SDK raises bare Exception; anything else is a bug
                raise
            raise NotificationRejected("bad_signature", str(exc)) from exc
        if data is None:
            raise NotificationRejected(
                "bad_signature", "signature does not verify, or the resource does not open")
        return self._notification(data)

    def _check_timestamp(self, value: str) -> None:
        try:
            skew = abs(self.clock() - int(value))
        except ValueError:
            raise NotificationRejected("malformed", f"Wechatpay-Timestamp {value!r}") from None
        if skew > MAX_CLOCK_SKEW_S:
            raise NotificationRejected("stale_timestamp", f"{int(skew)} s from now")

    def _notification(self, data: dict) -> Notification:
        event_type = str(data.get("event_type", ""))
        resource = data.get("resource")
        is_refund = event_type.startswith("REFUND.")
        if not (is_refund or event_type.startswith("TRANSACTION.")):
            raise NotificationRejected("malformed", f"event_type {event_type!r}")
        if not isinstance(resource, dict):
            raise NotificationRejected("malformed", "resource is not an object")
        required = ("mchid", "out_trade_no", "transaction_id")
        required += () if is_refund else ("appid", "trade_state")
        missing = [name for name in required if not resource.get(name)]
        if missing:
            raise NotificationRejected("malformed", f"missing {', '.join(missing)}")
        paid = (not is_refund and event_type == PAID_EVENT
                and resource["trade_state"] == PAID_STATE)
        refund_fen = (resource.get("amount") or {}).get("refund", 0) if is_refund else 0
        if type(refund_fen) is not int or refund_fen < 0:
            raise NotificationRejected("malformed", f"amount.refund {refund_fen!r}")
        return Notification(
            channel=self.identifier,
            out_trade_no=str(resource["out_trade_no"]),
            amount_fen=_total_fen(resource),
            paid=paid,
            provider_trade_no=str(resource["transaction_id"]),
            app_id=str(resource.get("appid", "")),
            is_refund=is_refund,
            raw=resource | {"event_type": event_type, "notify_id": str(data.get("id", ""))},
            out_refund_no=str(resource.get("out_refund_no", "")) if is_refund else "",
            refund_status=REFUND_STATUSES.get(str(resource.get("refund_status", "")), "")
            if is_refund else "",
            refund_fen=refund_fen,
        )

    def ack(self) -> tuple[int, str, str]:
        """HTTP 200 with no body: WeChat stops retrying (204 would do too)."""
        return 200, "application/json", ""

    def failure(self, message: str = "失败", *, status: int = 400) -> tuple[int, str, str]:
        """A 4xx (or `status` 5xx) with {"code": "FAIL", "message": …}: WeChat retries."""
        body = json.dumps({"code": "FAIL", "message": message}, ensure_ascii=False)
        return status, "application/json", body

    # -- reconciling and refunds

    def query(self, out_trade_no: str) -> Notification | None:
        """The order as WeChat Pay holds it now, or None if WeChat does not know it
        (ORDER_NOT_EXIST: the cashier was never opened). `paid` is trade_state SUCCESS;
        `is_refund` marks REFUND (paid, then refunded: not a new payment); `raw["trade_state"]`
        tells NOTPAY, CLOSED, USERPAYING, …; `amount_fen` is 0 if WeChat gives no amount."""
        status, text = self._call(self._client.query, out_trade_no=out_trade_no)
        if status == 404 and _error_code(text) == "ORDER_NOT_EXIST":
            return None
        reply = self._expect(status, text)
        if reply.get("out_trade_no") != out_trade_no:
            raise WechatPayError(status, "MALFORMED_REPLY",
                                 f"asked for {out_trade_no!r}, got {reply.get('out_trade_no')!r}")
        trade_state = str(reply.get("trade_state", ""))
        try:
            amount_fen = _total_fen(reply) if "total" in (reply.get("amount") or {}) else 0
        except NotificationRejected as exc:
            raise WechatPayError(status, "MALFORMED_REPLY", exc.message) from exc
        return Notification(
            channel=self.identifier,
            out_trade_no=out_trade_no,
            amount_fen=amount_fen,
            paid=trade_state == PAID_STATE,
            provider_trade_no=str(reply.get("transaction_id", "")),
            app_id=str(reply.get("appid", "")),
            is_refund=trade_state == "REFUND",
            raw=reply | {"mchid": str(reply.get("mchid", ""))},
        )

    def close(self, out_trade_no: str) -> None:
        """Close an unpaid order so it can no longer be paid; quiet if WeChat never saw it.
        Raises WechatPayError (code "ORDERPAID" if it was paid meanwhile: then credit it)."""
        status, text = self._call(self._client.close, out_trade_no=out_trade_no)
        if status == 404 and _error_code(text) == "ORDER_NOT_EXIST":
            return
        self._expect(status, text)

    def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        refund_fen: int,
        total_fen: int,
        *,
        reason: str | None = None,
        notify_url: str | None = None,
    ) -> RefundResult:
        """Ask WeChat to refund `refund_fen` of the order's `total_fen` (both integer fen).
        Repeating the same `out_refund_no` refunds once. Returns WeChat's answer (`status`
        mostly PROCESSING, `raw` the reply); the outcome comes later as a REFUND.* notification
        to `notify_url`, or from `query_refund`. Writes nothing: recording the refund is the
        caller's job."""
        if type(refund_fen) is not int or type(total_fen) is not int:
            raise TypeError("refund_fen and total_fen are integer fen")
        if not 0 < refund_fen <= total_fen:
            raise ValueError(f"refund {refund_fen} fen must be in (0, {total_fen}]")
        reply = self._expect(*self._call(
            self._client.refund,
            out_refund_no=out_refund_no,
            amount={"refund": refund_fen, "total": total_fen, "currency": "CNY"},
            out_trade_no=out_trade_no,
            reason=reason,
            notify_url=notify_url,
        ))
        return self._refund_result(out_refund_no, reply)

    def query_refund(self, out_trade_no: str, out_refund_no: str) -> RefundResult | None:
        """GET /v3/refund/domestic/refunds/{out_refund_no}: where the refund stands (SUCCESS →
        succeeded, PROCESSING, CLOSED or ABNORMAL → failed), or None if WeChat does not know
        it."""
        status, text = self._call(self._client.query_refund, out_refund_no=out_refund_no)
        if status == 404 and _error_code(text) in ("RESOURCE_NOT_EXISTS", "ORDER_NOT_EXIST"):
            return None
        reply = self._expect(status, text)
        if reply.get("out_trade_no", out_trade_no) != out_trade_no:
            raise WechatPayError(status, "MALFORMED_REPLY", "the refund is of another order")
        return self._refund_result(out_refund_no, reply)

    @staticmethod
    def _refund_result(out_refund_no: str, reply: dict) -> RefundResult:
        refund_fen = (reply.get("amount") or {}).get("refund")
        if type(refund_fen) is not int or reply.get("out_refund_no") != out_refund_no:
            raise WechatPayError(200, "MALFORMED_REPLY", "not a reply about this refund")
        status = REFUND_STATUSES.get(str(reply.get("status", "")))
        if status is None:
            raise WechatPayError(200, "MALFORMED_REPLY", f"refund status {reply.get('status')!r}")
        return RefundResult(out_refund_no, refund_fen, status, str(reply.get("refund_id", "")),
                            reply)

    def trade_bill(self, bill_date: date | str, bill_type: str = "ALL") -> dict:
        """WeChat's reply to "apply for the trade bill": download_url, hash_type, hash_value.
        Bills exist for T-1 and earlier, from about 10:00 Beijing time."""
        return self._expect(*self._call(
            self._client.trade_bill, bill_date=str(bill_date), bill_type=bill_type,
            tar_type="GZIP",
        ))

    def download_trade_bill(self, bill_date: date | str, bill_type: str = "ALL") -> TradeBill:
        """The trade bill of `bill_date`, downloaded, checked against its SHA1 and parsed.

        WeChat documents hash_value as the digest of the uncompressed bill; the digest of the
        gzip file is accepted too (to be confirmed on a first real download). Raises
        WechatPayError("BILL_HASH_MISMATCH") if neither matches.
        """
        reply = self.trade_bill(bill_date, bill_type)
        url = str(reply.get("download_url", ""))
        if not url.startswith(self.gateway_url + "/"):
            # The SDK would request gateway + url: refuse rather than send a broken request.
            raise WechatPayError(200, "FOREIGN_DOWNLOAD_URL", f"{url!r} is not under the gateway")
        status, data = self._call(self._client.download_bill, url=url)
        if not 200 <= status < 300:
            self._expect(status, data)
        if isinstance(data, str):
            data = data.encode("utf-8")
        try:
            raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        except (OSError, EOFError, zlib.error) as exc:
            raise WechatPayError(status, "BILL_UNREADABLE", f"gzip: {exc}") from exc
        expected = str(reply.get("hash_value", "")).lower()
        if str(reply.get("hash_type", "")).upper() != "SHA1" or expected not in (
                hashlib.sha1(raw).hexdigest(), hashlib.sha1(data).hexdigest()):
            raise WechatPayError(status, "BILL_HASH_MISMATCH", f"{reply.get('hash_type')} "
                                 f"{expected!r} does not match the downloaded bill")
        try:
            return parse_trade_bill(raw.decode("utf-8-sig"))
        except ValueError as exc:  # UnicodeDecodeError too
            raise WechatPayError(status, "BILL_UNREADABLE", str(exc)) from exc

    def bill_lines(self, bill_date: date) -> list[BillLine]:
        """The payment (SUCCESS) and refund (REFUND) rows of the ALL trade bill of
        `bill_date` as BillLines: the order amount (订单金额) of a payment, the requested refund
        (申请退款金额) of a refund, the fee (手续费) as printed."""
        bill = self.download_trade_bill(bill_date)
        try:
            entries = bill.entries()
        except (KeyError, ValueError) as exc:
            raise WechatPayError(200, "BILL_UNREADABLE", str(exc)) from exc
        lines = []
        for e in entries:
            if e.trade_state not in ("SUCCESS", "REFUND"):
                continue  # REVOKED, … move no money
            refund = e.trade_state == "REFUND"
            lines.append(BillLine(
                channel=self.identifier, kind=BILL_REFUND if refund else BILL_PAYMENT,
                out_trade_no=e.out_trade_no, provider_trade_no=e.provider_trade_no,
                amount_fen=e.refund_fen if refund else e.amount_fen, fee_e5=e.fee_e5,
                out_refund_no=e.out_refund_no if refund else "", trade_time=e.trade_time))
        return lines

    # -- the SDK's calls

    @staticmethod
    def _call(method, **kwargs) -> tuple[int, str | bytes]:
        """Run one SDK request; translate its transport and verification failures."""
        try:
            return method(**kwargs)
        except requests.RequestException as exc:
            raise WechatPayError(0, "NETWORK", str(exc)) from exc
        except Exception as exc:
            if type(exc) is not Exception:  # the SDK raises bare Exception; anything else is a bug
                raise
            code = ("BAD_RESPONSE_SIGNATURE" if "verify the signature" in str(exc)
                    else "SDK_ERROR")
            raise WechatPayError(0, code, str(exc)) from exc

    @staticmethod
    def _expect(status: int, text: str | bytes) -> dict:
        """The JSON reply of a 2xx (an empty dict for 204); WechatPayError otherwise."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if not 200 <= status < 300:
            code, message = _error(text)
            raise WechatPayError(status, code, message)
        if not text:
            return {}
        try:
            reply = json.loads(text)
        except ValueError as exc:
            raise WechatPayError(status, "MALFORMED_REPLY", str(exc)) from exc
        if not isinstance(reply, dict):
            raise WechatPayError(status, "MALFORMED_REPLY", "reply is not a JSON object")
        return reply


def _check_order(order: OrderInfo) -> None:
    if type(order.amount_fen) is not int or order.amount_fen <= 0:
        raise ValueError(f"amount must be a positive integer of fen, got {order.amount_fen!r}")


def _total_fen(resource: Mapping) -> int:
    amount = resource.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    if type(total) is not int or total < 0:  # bool and float refused: WeChat sends int fen
        raise NotificationRejected("malformed", f"amount.total {total!r}")
    return total


def _error(text: str) -> tuple[str, str]:
    try:
        reply = json.loads(text)
        return str(reply.get("code", "UNKNOWN")), str(reply.get("message", ""))
    except (ValueError, AttributeError):
        return "UNKNOWN", text[:200]


def _error_code(text: str | bytes) -> str:
    return _error(text.decode("utf-8", "replace") if isinstance(text, bytes) else text)[0]


def pkcs8_private_pem(text: str) -> str:
    """The merchant RSA private key as PKCS#8 PEM, the only form wechatpayv3 loads. Accepts
    PKCS#8 or PKCS#1 PEM (indented or not) and bare base64 DER."""
    key = _load_key(text, private=True)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def spki_public_pem(text: str) -> str:
    """The WeChat Pay public key as "BEGIN PUBLIC KEY" PEM, the only form wechatpayv3 loads."""
    return _load_key(text, private=False).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def _load_key(text: str, *, private: bool):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    what = "private" if private else "public"
    try:
        if lines and lines[0].startswith("-----BEGIN"):
            data = ("\n".join(lines) + "\n").encode("ascii")
            key = (serialization.load_pem_private_key(data, password=None) if private
                   else serialization.load_pem_public_key(data))
        else:
            der = base64.b64decode("".join(lines), validate=True)
            key = (serialization.load_der_private_key(der, password=None) if private
                   else serialization.load_der_public_key(der))
    except (ValueError, TypeError, UnicodeEncodeError, binascii.Error) as exc:
        raise ValueError(f"not an RSA {what} key in PEM or base64 DER") from exc
    if not isinstance(key, rsa.RSAPrivateKey if private else rsa.RSAPublicKey):
        raise ValueError(f"the {what} key is not RSA")
    return key


def _rfc3339(when: dt.datetime | None) -> str | None:
    """WeChat Pay's `time_expire`: RFC 3339 in Beijing time, to the second ("…T10:34:56+08:00");
    None leaves it out (WeChat's own default then, two hours)."""
    if when is None:
        return None
    return when.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat(timespec="seconds")
