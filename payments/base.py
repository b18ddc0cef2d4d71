"""The payment provider interface and the values that cross it.

No database and no HTML here: a provider turns an order into a place to send the resident's
browser, and a provider's notification into a `Notification`. Deciding whether that notification
credits an account (our app id, the order exists, the amount matches, pending → paid once) is the
caller's job (`orders.confirm_paid`). Its server APIs answer in the same values: a query is a
`Notification` too, a refund a `RefundResult`, a day's bill a list of `BillLine`; a call that
fails raises `ProviderError`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

# Where a refund stands, as both providers' answers map to it.
REFUND_PROCESSING = "processing"  # accepted, money not yet back with the payer (or not known)
REFUND_SUCCEEDED = "succeeded"  # the provider says the money went back
REFUND_FAILED = "failed"  # the provider says it did not and will not

# Kinds of bill line.
BILL_PAYMENT = "payment"
BILL_REFUND = "refund"


class NotificationRejected(Exception):
    """A notification (or, in the sandbox, a pay request) that must not be trusted.

    `reason` is a short machine-readable code: "bad_signature", "malformed", "wrong_app_id".
    The provider must then get `failure()`, never `ack()`.
    """

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


class ProviderError(Exception):
    """A provider API call (query, close, refund, bill) that did not succeed.

    `status` is the HTTP status (0 when there was no usable reply), `code` the provider's error
    code ("ORDERPAID", "ACQ.TRADE_NOT_EXIST", …) or ours ("NETWORK", "BAD_RESPONSE_SIGNATURE",
    "BILL_UNREADABLE", …), `message` the explanation. Nothing was changed on our side.
    """

    provider = "provider"

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(f"{self.provider} {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Notification:
    """A provider's notification whose signature verified. Nothing in it is checked against
    our database yet: `app_id`, `out_trade_no` and `amount_fen` are what the provider says.

    `amount_fen` is the order total in integer fen, converted exactly (Alipay "10.00" → 1000).
    `paid` is the provider's "this trade is paid" status; `is_refund` marks a refund notice
    (Alipay resends TRADE_SUCCESS for a partial refund): it is never a new payment. A refund
    notice names the refund (`out_refund_no`, ours) and where it stands (`refund_status`, one of
    REFUND_*; "" when the notice does not say); `refund_fen` is what the provider reports as
    refunded (WeChat: this refund; Alipay: the trade's refunds so far).
    """

    channel: str
    out_trade_no: str
    amount_fen: int
    paid: bool
    provider_trade_no: str
    app_id: str
    is_refund: bool
    raw: dict[str, str] = field(repr=False, compare=False)
    out_refund_no: str = ""
    refund_status: str = ""
    refund_fen: int = 0


@dataclass(frozen=True)
class RefundResult:
    """A provider's word on one refund (our `out_refund_no`): `refund_fen` integer fen,
    `status` one of REFUND_*, `provider_refund_no` the provider's id when it gives one."""

    out_refund_no: str
    refund_fen: int
    status: str
    provider_refund_no: str = ""
    raw: dict = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class BillLine:
    """One line of a provider's daily trade bill, in our terms.

    `kind` is BILL_PAYMENT or BILL_REFUND. `amount_fen` is integer fen, positive for both kinds
    (a payment's order amount, a refund's refunded amount). `fee_e5` is the provider's fee in
    1/100000 yuan, exact (WeChat prints five decimals, Alipay two): positive when the provider
    keeps money (a payment), negative when it gives some back (a refund). `trade_time` is the
    provider's time of the line, Beijing time "YYYY-MM-DD HH:MM:SS", as printed.
    """

    channel: str
    kind: str
    out_trade_no: str
    provider_trade_no: str
    amount_fen: int
    fee_e5: int
    out_refund_no: str = ""
    trade_time: str = ""


@dataclass(frozen=True)
class Checkout:
    """Where to send the resident's browser to pay."""

    url: str


@dataclass(frozen=True)
class OrderInfo:
    """What a provider needs to start a payment. `amount_fen` is integer fen, > 0.
    `expires_at` (aware): after it the provider must refuse to take the payment (we close the
    order then; without it a resident could pay an order we no longer wait for)."""

    out_trade_no: str
    amount_fen: int
    subject: str
    expires_at: dt.datetime | None = None


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

    def query(self, out_trade_no: str) -> Notification | None:
        """The order as the provider holds it now (a signed, verified reply), or None if the
        provider never saw it. Credits nothing: pass a paid result to `orders.confirm_paid`.
        Raises ProviderError."""
        ...

    def close(self, out_trade_no: str) -> None:
        """Close an unpaid order so it can no longer be paid; quiet if the provider never saw
        it. Raises ProviderError otherwise (a paid order among others: query it then)."""
        ...

    def refund(self, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int, *,
               reason: str | None = None, notify_url: str | None = None) -> RefundResult:
        """Ask the provider to give `refund_fen` of the order's `total_fen` back to the payer.
        The same `out_refund_no` again refunds once. Writes nothing; raises ProviderError."""
        ...

    def query_refund(self, out_trade_no: str, out_refund_no: str) -> RefundResult | None:
        """Where the refund stands at the provider, or None if it does not know it."""
        ...

    def bill_lines(self, bill_date: dt.date) -> list[BillLine]:
        """Every payment and refund line of the provider's trade bill of `bill_date` (Beijing
        date, T-1 or earlier), downloaded and checked. Raises ProviderError."""
        ...
