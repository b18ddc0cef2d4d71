"""The payment provider interface and the values that cross it.

No database and no HTML here: a provider turns an order into a place to send the resident's
browser, and a provider's notification into a `Notification`. Deciding whether that notification
credits an account (our app id, the order exists, the amount matches, pending → paid once) is the
caller's job (`orders.confirm_paid`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


class NotificationRejected(Exception):
    """A notification (or, in the sandbox, a pay request) that must not be trusted.

    `reason` is a short machine-readable code: "bad_signature", "malformed", "wrong_app_id".
    The provider must then get `failure()`, never `ack()`.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Notification:
    """A provider's notification whose signature verified. Nothing in it is checked against
    our database yet: `app_id`, `out_trade_no` and `amount_fen` are what the provider says.

    `amount_fen` is the order total in integer fen, converted exactly (Alipay "10.00" → 1000).
    `paid` is the provider's "this trade is paid" status; `is_refund` marks a refund notice
    (Alipay resends TRADE_SUCCESS for a partial refund): it is never a new payment.
    """

    channel: str
    out_trade_no: str
    amount_fen: int
    paid: bool
    provider_trade_no: str
    app_id: str
    is_refund: bool
    raw: dict[str, str] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Checkout:
    """Where to send the resident's browser to pay."""

    url: str


@dataclass(frozen=True)
class OrderInfo:
    """What a provider needs to start a payment. `amount_fen` is integer fen, > 0."""

    out_trade_no: str
    amount_fen: int
    subject: str


@runtime_checkable
class PaymentProvider(Protocol):
    identifier: str

    def start(self, order: OrderInfo, *, notify_url: str, return_url: str) -> Checkout:
        """Prepare the provider's cashier for `order`. Moves no money and writes nothing."""
        ...

    def parse_notify(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify and parse a notification from the raw request.

        Raises `NotificationRejected` if the signature is bad or the form malformed. Does not
        check app id, order or amount against our records: that is the caller's job.
        """
        ...

    def ack(self) -> tuple[int, str, str]:
        """(status, content_type, body) that tells the provider "received, stop retrying"."""
        ...

    def failure(self) -> tuple[int, str, str]:
        """(status, content_type, body) that tells the provider "not accepted, retry later"."""
        ...
