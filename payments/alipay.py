"""Alipay WAP payment through python-alipay-sdk (`AliPay`, RSA2).

The only module that imports the Alipay SDK. It signs pay requests and server API calls (query,
close, refund, refund query, bill download URL) with our app private key, and verifies
notifications and the server APIs' replies with Alipay's public key (not our app's public key).
It never touches the database: whether a verified notification credits anything is decided by
the caller.

python-alipay-sdk 3.4.0 facts this module works around (see tests/payments/test_alipay_api.py):
- server APIs are GET requests to `_gateway` through urllib; the reply's signature covers the
  inner JSON text, which the SDK finds by brace matching and verifies (AliPayValidationError);
  an unsigned reply or an `error_response` raises AliPayException;
- business failures (ACQ.TRADE_NOT_EXIST, …) come back signed, with `code` other than 10000:
  the SDK returns them as if they succeeded, so every reply's code is checked here;
- urllib's errors (URLError, HTTPError, timeouts) pass through the SDK untouched.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import urllib.error
from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

import httpx
from alipay import AliPay
from alipay.exceptions import AliPayException, AliPayValidationError
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from app.money import fen_to_yuan_str, yuan_str_to_fen
from payments.base import (REFUND_PROCESSING, REFUND_SUCCEEDED, BillLine, Checkout, Notification,
                           NotificationRejected, OrderInfo, ProviderError, RefundResult)
from payments.bills import AlipayBill, parse_alipay_bill_zip

BEIJING = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")  # Alipay's clock, no tzdata needed
PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
REQUIRED_FIELDS = ("app_id", "out_trade_no", "trade_no", "total_amount", "trade_status")
MAX_FORM_FIELDS = 100
SUCCESS_CODE = "10000"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
BILL_DOWNLOAD_TIMEOUT_S = 20.0  # the URL lives 30 s


class AlipayError(ProviderError):
    """An Alipay server API call that did not succeed (see ProviderError). `code` is Alipay's
    sub_code when it gives one ("ACQ.TRADE_STATUS_ERROR"), else its code or ours."""

    provider = "Alipay"


class _AliPay(AliPay):
    """python-alipay-sdk's `AliPay` with its RSA2 check done by `cryptography` (OpenSSL), the
    library WeChat Pay's SDK already verifies with, instead of pycryptodome: the same PKCS#1
    v1.5 / SHA-256 check over the same bytes, which the SDK still builds (field filtering and
    sorting for notifications, the reply text for server APIs). 0.025 instead of 0.5 ms per
    check on this machine; pycryptodome's was the largest single cost of an Alipay
    notification (bench.notify). Anything but RSA2 is left to the SDK."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._openssl_public_key = serialization.load_pem_public_key(
            kwargs["alipay_public_key_string"].encode())

    def _verify(self, raw_content: str, signature: str) -> bool:
        if self._sign_type != "RSA2":
            return super()._verify(raw_content, signature)
        try:
            self._openssl_public_key.verify(base64.decodebytes(signature.encode()),
                                            raw_content.encode(), padding.PKCS1v15(),
                                            hashes.SHA256())
        except InvalidSignature:
            return False
        return True


class AlipayProvider:
    """Alipay WAP pay (alipay.trade.wap.pay) and its asynchronous notifications.

    `gateway_url` is where the resident's browser goes (production
    "https://openapi.alipay.com/gateway.do", or the local sandbox); None keeps the SDK's default
    for `debug`. Keys are PEM text; bare base64 as pasted from Alipay's console is accepted too.
    """

    identifier = "alipay"

    def __init__(
        self,
        app_id: str,
        app_private_key_pem: str,
        alipay_public_key_pem: str,
        gateway_url: str | None,
        *,
        debug: bool = False,
    ) -> None:
        self.app_id = str(app_id)
        self._client = _AliPay(
            appid=self.app_id,
            app_notify_url=None,
            app_private_key_string=normalize_private_pem(app_private_key_pem),
            alipay_public_key_string=normalize_public_pem(alipay_public_key_pem),
            sign_type="RSA2",
            debug=debug,
        )
        if gateway_url:
            # The SDK has no public setter; server APIs (query, refund) use it too.
            self._client._gateway = gateway_url
        self.gateway_url: str = self._client._gateway

    def start(self, order: OrderInfo, *, notify_url: str, return_url: str) -> Checkout:
        """The signed cashier URL for `order`. Moves no money, makes no network call."""
        if order.amount_fen <= 0:
            raise ValueError(f"amount must be positive, got {order.amount_fen} fen")
        extra = {}
        if order.expires_at is not None:  # Alipay's absolute expiry: Beijing time, to the second
            extra["time_expire"] = order.expires_at.astimezone(BEIJING).strftime(
                "%Y-%m-%d %H:%M:%S")
        order_string = self._client.api_alipay_trade_wap_pay(
            subject=order.subject,
            out_trade_no=order.out_trade_no,
            total_amount=fen_to_yuan_str(order.amount_fen),  # "10.00", never a float
            notify_url=notify_url,
            return_url=return_url,
            **extra,
        )
        return Checkout(url=f"{self.gateway_url}?{order_string}")

    def parse_notify(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify an asynchronous notification (a urlencoded POST body) and parse it.

        Raises NotificationRejected("bad_signature") unless Alipay's RSA2 signature verifies,
        NotificationRejected("malformed") if the form cannot be read or lacks a field.
        The app id, order and amount are returned, not checked.
        """
        form = _parse_form(body)
        signature = form.pop("sign", "")
        if not signature:
            raise NotificationRejected("bad_signature", "notification has no sign")
        try:
            # verify() pops sign_type from the dict it is given: hand it a copy.
            verified = self._client.verify(dict(form), signature)
        except AliPayException as exc:  # sign_type other than RSA2
            raise NotificationRejected("bad_signature", str(exc)) from exc
        except (ValueError, TypeError) as exc:  # sign is not base64
            raise NotificationRejected("bad_signature", f"unreadable sign: {exc}") from exc
        if not verified:
            raise NotificationRejected("bad_signature", "RSA2 signature does not verify")

        missing = [name for name in REQUIRED_FIELDS if not form.get(name)]
        if missing:
            raise NotificationRejected("malformed", f"missing {', '.join(missing)}")
        try:
            amount_fen = yuan_str_to_fen(form["total_amount"])
        except ValueError as exc:
            raise NotificationRejected("malformed", f"total_amount: {exc}") from exc

        # Partial refunds come as TRADE_SUCCESS, full ones as TRADE_CLOSED, both with these;
        # Alipay notifies a refund once it succeeded, naming it in out_biz_no.
        is_refund = bool(form.get("refund_fee") or form.get("gmt_refund"))
        try:
            refund_fen = yuan_str_to_fen(form["refund_fee"]) if form.get("refund_fee") else 0
        except ValueError as exc:
            raise NotificationRejected("malformed", f"refund_fee: {exc}") from exc
        return Notification(
            channel=self.identifier,
            out_trade_no=form["out_trade_no"],
            amount_fen=amount_fen,
            paid=form["trade_status"] in PAID_STATUSES,
            provider_trade_no=form["trade_no"],
            app_id=form["app_id"],
            is_refund=is_refund,
            raw=form,
            out_refund_no=form.get("out_biz_no", "") if is_refund else "",
            refund_status=REFUND_SUCCEEDED if is_refund else "",
            refund_fen=refund_fen,
        )

    def ack(self) -> tuple[int, str, str]:
        return 200, "text/plain", "success"

    def failure(self) -> tuple[int, str, str]:
        return 200, "text/plain", "failure"

    # -- server APIs: query, close, refund, bills

    def query(self, out_trade_no: str) -> Notification | None:
        """alipay.trade.query: the trade as Alipay holds it now, or None if Alipay does not know
        it (ACQ.TRADE_NOT_EXIST: the cashier was never opened). `paid` is TRADE_SUCCESS or
        TRADE_FINISHED; `raw["trade_status"]` tells WAIT_BUYER_PAY, TRADE_CLOSED, … The reply
        answers our own signed request and verified with Alipay's key: its app id is ours.
        Raises AlipayError."""
        reply = self._api("alipay.trade.query", {"out_trade_no": out_trade_no})
        if reply.get("sub_code") == TRADE_NOT_EXIST:
            return None
        self._expect(reply)
        if reply.get("out_trade_no") != out_trade_no:
            raise AlipayError(200, "MALFORMED_REPLY",
                              f"asked for {out_trade_no!r}, got {reply.get('out_trade_no')!r}")
        try:
            amount_fen = yuan_str_to_fen(str(reply.get("total_amount", "")))
        except ValueError as exc:
            raise AlipayError(200, "MALFORMED_REPLY", f"total_amount: {exc}") from exc
        return Notification(
            channel=self.identifier,
            out_trade_no=out_trade_no,
            amount_fen=amount_fen,
            paid=reply.get("trade_status") in PAID_STATUSES,
            provider_trade_no=str(reply.get("trade_no", "")),
            app_id=self.app_id,
            is_refund=False,
            raw=reply | {"app_id": self.app_id},
        )

    def close(self, out_trade_no: str) -> None:
        """alipay.trade.close: an unpaid trade can no longer be paid. Quiet when Alipay does not
        know the trade (the cashier was never opened; a cashier opened later creates it anew,
        so a notification may still come). Raises AlipayError ("ACQ.TRADE_STATUS_ERROR" when it
        was paid meanwhile: query it)."""
        reply = self._api("alipay.trade.close", {"out_trade_no": out_trade_no})
        if reply.get("sub_code") == TRADE_NOT_EXIST:
            return
        self._expect(reply)

    def refund(self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, *,
               reason: str | None = None, notify_url: str | None = None) -> RefundResult:
        """alipay.trade.refund of `refund_fen` (integer fen) of the trade; `out_refund_no` is
        Alipay's out_request_no, so repeating it refunds once. `total_fen` is checked here only
        (Alipay knows the trade's total); `notify_url` is not Alipay's to take: its refund notice
        goes to the trade's notify_url. The reply is "accepted" (REFUND_PROCESSING); a refund
        notice or `query_refund` confirms it. Writes nothing; raises AlipayError."""
        _check_refund(refund_fen, total_fen)
        biz = {"out_trade_no": out_trade_no, "refund_amount": fen_to_yuan_str(refund_fen),
               "out_request_no": out_refund_no}
        if reason:
            biz["refund_reason"] = reason
        reply = self._expect(self._api("alipay.trade.refund", biz))
        return RefundResult(out_refund_no, refund_fen, REFUND_PROCESSING,
                            str(reply.get("trade_no", "")), reply)

    def query_refund(self, out_trade_no: str, out_refund_no: str) -> RefundResult | None:
        """alipay.trade.fastpay.refund.query: succeeded when Alipay returns the refund with
        refund_status REFUND_SUCCESS (or none, as older replies do); None when Alipay has no such
        refund (never made, or refused: submitting it again is safe)."""
        reply = self._api("alipay.trade.fastpay.refund.query", {
            "out_trade_no": out_trade_no, "out_request_no": out_refund_no,
            "query_options": ["gmt_refund_pay"]})
        if reply.get("sub_code") == TRADE_NOT_EXIST:
            return None
        self._expect(reply)
        if not reply.get("refund_amount"):
            return None
        try:
            refund_fen = yuan_str_to_fen(str(reply["refund_amount"]))
        except ValueError as exc:
            raise AlipayError(200, "MALFORMED_REPLY", f"refund_amount: {exc}") from exc
        status = str(reply.get("refund_status") or "REFUND_SUCCESS")
        return RefundResult(out_refund_no, refund_fen,
                            REFUND_SUCCEEDED if status == "REFUND_SUCCESS" else REFUND_PROCESSING,
                            str(reply.get("trade_no", "")), reply)

    def bill_download_url(self, bill_date: dt.date | str) -> str:
        """alipay.data.dataservice.bill.downloadurl.query for the trade bill of `bill_date`
        (T-1 or earlier, ready by about 09:00 Beijing time). The URL expires after 30 s."""
        reply = self._expect(self._api("alipay.data.dataservice.bill.downloadurl.query",
                                       {"bill_type": "trade", "bill_date": str(bill_date)}))
        url = reply.get("bill_download_url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise AlipayError(200, "MALFORMED_REPLY", "no bill_download_url in the reply")
        return url

    def download_trade_bill(self, bill_date: dt.date | str) -> AlipayBill:
        """The trade bill of `bill_date`: its URL asked for, the zip downloaded at once (the URL
        lives 30 s), its GBK detail file parsed and checked against its own totals."""
        url = self.bill_download_url(bill_date)
        try:
            reply = httpx.get(url, timeout=BILL_DOWNLOAD_TIMEOUT_S, follow_redirects=True)
        except httpx.HTTPError as exc:
            raise AlipayError(0, "NETWORK", f"bill download: {exc}") from exc
        if reply.status_code != 200:
            raise AlipayError(reply.status_code, "BILL_DOWNLOAD_FAILED", reply.text[:200])
        try:
            return parse_alipay_bill_zip(reply.content)
        except ValueError as exc:
            raise AlipayError(200, "BILL_UNREADABLE", str(exc)) from exc

    def bill_lines(self, bill_date: dt.date) -> list[BillLine]:
        bill = self.download_trade_bill(bill_date)
        try:
            return bill.lines(self.identifier)
        except (KeyError, ValueError) as exc:
            raise AlipayError(200, "BILL_UNREADABLE", str(exc)) from exc

    def _api(self, method: str, biz_content: dict) -> dict:
        """One server API call through the SDK (signed request, verified reply)."""
        try:
            reply = self._client.server_api(method, biz_content)
        except AliPayValidationError as exc:
            raise AlipayError(0, "BAD_RESPONSE_SIGNATURE",
                              f"{method}: the reply's signature does not verify") from exc
        except AliPayException as exc:  # an unsigned reply, or an error_response
            raise AlipayError(0, "ERROR_RESPONSE", f"{method}: {exc}") from exc
        except urllib.error.HTTPError as exc:
            raise AlipayError(exc.code, "HTTP_ERROR", f"{method}: {exc}") from exc
        except (urllib.error.URLError, OSError) as exc:  # refused, timed out
            raise AlipayError(0, "NETWORK", f"{method}: {exc}") from exc
        except (ValueError, KeyError, AttributeError, TypeError) as exc:  # not the JSON expected
            raise AlipayError(0, "MALFORMED_REPLY", f"{method}: {exc}") from exc
        if not isinstance(reply, dict):
            raise AlipayError(0, "MALFORMED_REPLY", f"{method}: the reply is not an object")
        return reply

    @staticmethod
    def _expect(reply: dict) -> dict:
        if reply.get("code") != SUCCESS_CODE:
            raise AlipayError(200, str(reply.get("sub_code") or reply.get("code") or "UNKNOWN"),
                              str(reply.get("sub_msg") or reply.get("msg") or ""))
        return reply


def _check_refund(refund_fen: int, total_fen: int) -> None:
    if type(refund_fen) is not int or type(total_fen) is not int:
        raise TypeError("refund_fen and total_fen are integer fen")
    if not 0 < refund_fen <= total_fen:
        raise ValueError(f"refund {refund_fen} fen must be in (0, {total_fen}]")


def _parse_form(body: bytes) -> dict[str, str]:
    """The notification form as plain str → str, '+' and %XX decoded as UTF-8: what
    `parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FORM_FIELDS)`
    gives (tests/payments/test_alipay.py compares them), in half its time. The body is ASCII,
    so a field is one ASCII run and `unquote` comes down to `unquote_to_bytes(…).decode()`; a
    field with neither '%' nor '+' is taken as it is."""
    try:
        text = body.decode("ascii")  # urlencoded bodies are ASCII; anything else is not ours
    except UnicodeDecodeError as exc:
        raise NotificationRejected("malformed", f"unreadable form: {exc}") from exc
    if text and text.count("&") >= MAX_FORM_FIELDS:
        raise NotificationRejected("malformed", "unreadable form: Max number of fields exceeded")
    form: dict[str, str] = {}
    for field in text.split("&"):
        if not field:
            continue
        name, _, value = field.partition("=")
        try:
            if "%" in name or "+" in name:
                name = unquote_to_bytes(name.replace("+", " ")).decode("utf-8")
            if "%" in value or "+" in value:
                value = unquote_to_bytes(value.replace("+", " ")).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotificationRejected("malformed", f"unreadable form: {exc}") from exc
        if name in form:
            raise NotificationRejected("malformed", "a field appears twice")
        form[name] = value
    return form


def normalize_private_pem(text: str) -> str:
    """PEM the SDK can load: lines stripped (indented PEM fails to load); bare base64
    (PKCS#1 or PKCS#8 DER, as Alipay's key tool prints it) is wrapped."""
    return _normalize_pem(text, private=True)


def normalize_public_pem(text: str) -> str:
    return _normalize_pem(text, private=False)


def _normalize_pem(text: str, *, private: bool) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("-----BEGIN"):
        return "\n".join(lines) + "\n"
    what = "private" if private else "public"
    try:
        der = base64.b64decode("".join(lines), validate=True)
        if private:
            key = serialization.load_der_private_key(der, password=None)
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        else:
            pem = serialization.load_der_public_key(der).public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not an RSA {what} key in PEM or base64 DER") from exc
    return pem.decode("ascii")
