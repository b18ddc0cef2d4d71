"""Alipay WAP payment through python-alipay-sdk (`AliPay`, RSA2).

The only module that imports the Alipay SDK. It signs pay requests with our app private key and
verifies notifications with Alipay's public key (not our app's public key). It never touches the
database: whether a verified notification credits anything is decided by the caller.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from urllib.parse import parse_qsl

from alipay import AliPay
from alipay.exceptions import AliPayException
from cryptography.hazmat.primitives import serialization

from app.money import fen_to_yuan_str, yuan_str_to_fen
from payments.base import Checkout, Notification, NotificationRejected, OrderInfo

PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
REQUIRED_FIELDS = ("app_id", "out_trade_no", "trade_no", "total_amount", "trade_status")
MAX_FORM_FIELDS = 100


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
        self._client = AliPay(
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
        order_string = self._client.api_alipay_trade_wap_pay(
            subject=order.subject,
            out_trade_no=order.out_trade_no,
            total_amount=fen_to_yuan_str(order.amount_fen),  # "10.00", never a float
            notify_url=notify_url,
            return_url=return_url,
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

        return Notification(
            channel=self.identifier,
            out_trade_no=form["out_trade_no"],
            amount_fen=amount_fen,
            paid=form["trade_status"] in PAID_STATUSES,
            provider_trade_no=form["trade_no"],
            app_id=form["app_id"],
            # Partial refunds come as TRADE_SUCCESS, full ones as TRADE_CLOSED, both with these.
            is_refund=bool(form.get("refund_fee") or form.get("gmt_refund")),
            raw=form,
        )

    def ack(self) -> tuple[int, str, str]:
        return 200, "text/plain", "success"

    def failure(self) -> tuple[int, str, str]:
        return 200, "text/plain", "failure"

    def query(self, out_trade_no: str) -> Notification:
        raise NotImplementedError(
            "AlipayProvider.query (alipay.trade.query) is not written yet; reconcile by hand"
        )


def _parse_form(body: bytes) -> dict[str, str]:
    """The notification form as plain str → str, '+' and %XX decoded as UTF-8."""
    try:
        text = body.decode("ascii")  # urlencoded bodies are ASCII; anything else is not ours
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except ValueError as exc:  # UnicodeDecodeError too
        raise NotificationRejected("malformed", f"unreadable form: {exc}") from exc
    form = dict(pairs)
    if len(form) != len(pairs):
        raise NotificationRejected("malformed", "a field appears twice")
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
