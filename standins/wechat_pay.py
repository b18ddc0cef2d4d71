"""WeChat Pay's server side for the sandbox: orders, refunds and bills in memory, and the
merchant API (v3) over HTTP.

`WechatStandin(sandbox)` keeps what WeChat Pay keeps: orders (NOTPAY → SUCCESS when the sandbox
cashier "pays" → REFUND, or → CLOSED), refunds (PROCESSING → SUCCESS, with a REFUND.SUCCESS
notification), and the trade bills it issues.
`make_wechat_api_app(standin)` is a small Starlette app serving the endpoints `WechatPayProvider`
calls through wechatpayv3: H5 and JSAPI orders, query, close, refund and its query, trade bill and
its download.
It checks each request's `Authorization: WECHATPAY2-SHA256-RSA2048 …` with the merchant public key
and signs each reply with the sandbox platform key (Wechatpay-* headers), so the SDK's own response
verification runs. Point the SDK at it with `wxpay._core._gate_way = base_url` (no trailing slash).
It may be served alone (`serve_in_thread`, tests) or mounted in the web app (the demo); paths are
checked relative to the mount, as the SDK signs them. It renders no HTML: `h5_url` points at
`cashier_url`, a page of the web app's sandbox. It may misbehave on purpose: a payment "in
flight" is invisible to queries and lands even after the order was closed (`pay(…,
in_flight=True)`, then `settle`), and `bill_overrides` plants differences in its bills. Nothing
here touches our database.
"""

from __future__ import annotations

import base64
import binascii
import csv
import gzip
import hashlib
import io
import json
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import quote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.money import fen_to_yuan_str
from payments.bills import BillOverride
from standins.alipay_sandbox import BEIJING
from payments.serving import serve_in_thread  # noqa: F401 (re-exported: tests serve it alone)
from standins.wechat_pay_sandbox import (
    StandinError,
    WechatSandbox,
    new_refund_id,
    new_transaction_id,
    rfc3339,
)

# The sandbox's delivery hook: (notify URL, build) where build() gives (headers, body).
Deliver = Callable[[str, Callable[[], tuple[dict[str, str], bytes]]], None]

REAL_H5_CASHIER = "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb"

TRADE_BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
    "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
    "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
TRADE_BILL_SUMMARY_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
SANDBOX_FEE_PER_FEN = 6  # 0.60 %: a fee in 1/100000 yuan is fen * 6, exact (bills print 5 places)


@dataclass
class SandboxOrder:
    """One order as WeChat Pay would hold it. Amounts in integer fen."""

    out_trade_no: str
    appid: str
    mchid: str
    description: str
    amount_fen: int
    notify_url: str
    trade_type: str  # "MWEB" (H5) or "JSAPI"
    prepay_id: str
    openid: str = ""
    trade_state: str = "NOTPAY"  # NOTPAY → SUCCESS → REFUND, or NOTPAY → CLOSED
    transaction_id: str = ""
    success_time: datetime | None = None
    refunded_fen: int = 0
    in_flight: bool = False  # paid, not visible yet (see WechatStandin.pay)
    time_expire: datetime | None = None  # the merchant's: no payment after it


@dataclass
class SandboxRefund:
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    refund_fen: int
    total_fen: int
    notify_url: str
    created_at: datetime
    status: str = "PROCESSING"  # → SUCCESS (settle_refund)
    success_time: datetime | None = None


@dataclass
class _Bill:
    gzip_bytes: bytes
    sha1: str  # of the uncompressed bill, as WeChat documents hash_value


class WechatStandin:
    """WeChat Pay's records for the sandbox, in memory. Thread-safe: the stand-in's HTTP
    handlers, the sandbox cashier and the tests share one. Moves no money.

    A refund is PROCESSING when WeChat answers the request; with `settle_refunds_at_once` (the
    default) it turns SUCCESS right after, and its REFUND.SUCCESS notification goes to
    `deliver(notify_url, build)` when that is set (`build()` gives its headers and body; the web
    app's sandbox sets it)."""

    def __init__(self, sandbox: WechatSandbox) -> None:
        self.sandbox = sandbox
        self.appid = sandbox.appid
        self.mchid = sandbox.mchid
        self._lock = threading.RLock()
        self.orders: dict[str, SandboxOrder] = {}
        self.refunds: dict[str, SandboxRefund] = {}
        self._bills: dict[str, _Bill] = {}
        self.requests_seen: list[tuple[str, str]] = []  # (method, signed path), verified ones
        self.bill_overrides: dict[str, BillOverride] = {}
        self.settle_refunds_at_once = True
        self.deliver: Deliver | None = None

    def verify_request(self, method: str, path: str, body: bytes, authorization: str) -> None:
        """Check our signed request (StandinError 401 if not ours) and note it."""
        self.sandbox.verify_request(method, path, body, authorization)
        with self._lock:
            self.requests_seen.append((method, path))

    def notification_for(self, out_trade_no: str) -> tuple[dict[str, str], bytes]:
        """The TRANSACTION.SUCCESS notification of a paid sandbox order."""
        with self._lock:
            order = self._order(out_trade_no)
            if order.trade_state not in ("SUCCESS", "REFUND"):
                raise StandinError(400, "ORDERNOTPAID", f"order is {order.trade_state}")
            args = dict(appid=order.appid, mchid=order.mchid, trade_type=order.trade_type,
                        transaction_id=order.transaction_id)
        return self.sandbox.build_notification(order.out_trade_no, order.amount_fen, **args)

    def create_order(self, params: Mapping, trade_type: str) -> SandboxOrder:
        """A prepay order from a /v3/pay/transactions/{h5,jsapi} body. Repeating the same order
        returns the same prepay; the same out_trade_no with other details is refused."""
        try:
            appid, mchid = str(params["appid"]), str(params["mchid"])
            out_trade_no, description = str(params["out_trade_no"]), str(params["description"])
            notify_url, total = str(params["notify_url"]), params["amount"]["total"]
        except (KeyError, TypeError) as exc:
            raise StandinError(400, "PARAM_ERROR", f"missing {exc}") from None
        if mchid != self.mchid or appid != self.appid:
            raise StandinError(400, "APPID_MCHID_NOT_MATCH", "appid和mch_id不匹配")
        if type(total) is not int or total <= 0:
            raise StandinError(400, "PARAM_ERROR", "amount.total must be a positive integer")
        openid = ""
        if trade_type == "JSAPI":
            openid = str((params.get("payer") or {}).get("openid") or "")
            if not openid:
                raise StandinError(400, "PARAM_ERROR", "payer.openid is required")
        elif not (params.get("scene_info") or {}).get("payer_client_ip"):
            raise StandinError(400, "PARAM_ERROR", "scene_info.payer_client_ip is required")
        time_expire = None
        if params.get("time_expire"):
            try:
                time_expire = datetime.fromisoformat(str(params["time_expire"]))
            except ValueError:
                raise StandinError(400, "PARAM_ERROR", "time_expire is not RFC 3339") from None
            if time_expire.tzinfo is None:
                raise StandinError(400, "PARAM_ERROR", "time_expire needs its offset")
        with self._lock:
            order = self.orders.get(out_trade_no)
            if order is not None:
                if order.trade_state != "NOTPAY":
                    raise StandinError(400, "ORDERPAID" if order.trade_state != "CLOSED"
                                       else "ORDER_CLOSED", f"order is {order.trade_state}")
                if (order.amount_fen, order.trade_type, order.description) != (
                        total, trade_type, description):
                    raise StandinError(400, "OUT_TRADE_NO_USED", "商户订单号重复")
                return order
            now = datetime.fromtimestamp(self.sandbox.clock(), BEIJING)
            order = SandboxOrder(
                out_trade_no=out_trade_no, appid=appid, mchid=mchid, description=description,
                amount_fen=total, notify_url=notify_url, trade_type=trade_type,
                prepay_id="wx" + now.strftime("%Y%m%d%H%M%S") + secrets.token_hex(11),
                openid=openid, time_expire=time_expire,
            )
            self.orders[out_trade_no] = order
            return order

    def order_by_prepay_id(self, prepay_id: str) -> SandboxOrder | None:
        with self._lock:
            return next((o for o in self.orders.values() if o.prepay_id == prepay_id), None)

    def check_pay_request(self, params: Mapping) -> SandboxOrder:
        """What WeChat's client checks before it opens its pay sheet for
        `WeixinJSBridge.invoke('getBrandWCPayRequest', params)`: our appId, signType RSA, a
        package "prepay_id=…" of a JSAPI order it issued, and a paySign that verifies with the
        merchant public key (RSA-SHA256 over "appId\ntimeStamp\nnonceStr\npackage\n").
        Returns the order; raises StandinError (400) otherwise. Moves no money."""
        fields = {name: params.get(name) for name in
                  ("appId", "timeStamp", "nonceStr", "package", "signType", "paySign")}
        missing = [name for name, value in fields.items() if not isinstance(value, str) or not value]
        if missing:
            raise StandinError(400, "PARAM_ERROR", f"missing {', '.join(missing)}")
        if fields["appId"] != self.appid:
            raise StandinError(400, "APPID_MCHID_NOT_MATCH", f"appId {fields['appId']!r}")
        if fields["signType"] != "RSA":
            raise StandinError(400, "PARAM_ERROR", f"signType {fields['signType']!r}")
        if not fields["timeStamp"].isdigit() or len(fields["nonceStr"]) > 32:
            raise StandinError(400, "PARAM_ERROR", "timeStamp or nonceStr malformed")
        message = "".join(fields[name] + "\n"
                          for name in ("appId", "timeStamp", "nonceStr", "package"))
        public_key = serialization.load_pem_public_key(
            self.sandbox.keys.merchant_public_pem.encode())
        try:
            public_key.verify(base64.b64decode(fields["paySign"], validate=True),
                              message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        except (InvalidSignature, binascii.Error, ValueError):
            raise StandinError(400, "SIGN_ERROR", "paySign does not verify") from None
        prepay_id = fields["package"].removeprefix("prepay_id=")
        order = self.order_by_prepay_id(prepay_id) if fields["package"] != prepay_id else None
        if order is None or order.trade_type != "JSAPI":
            raise StandinError(400, "PARAM_ERROR", "package is not a JSAPI prepay_id of ours")
        return order

    def pay(self, out_trade_no: str, *, openid: str | None = None,
            in_flight: bool = False) -> SandboxOrder:
        """The resident pays in the sandbox cashier: NOTPAY → SUCCESS (idempotent).
        `in_flight` plays a payment WeChat takes a while to register: queries still say NOTPAY,
        a close still succeeds, and `settle` lands it later anyway (a misbehaviour, on
        purpose)."""
        with self._lock:
            order = self._order(out_trade_no)
            if (order.trade_state == "NOTPAY" and order.time_expire is not None
                    and datetime.fromtimestamp(self.sandbox.clock(), BEIJING) > order.time_expire):
                order.trade_state = "CLOSED"  # WeChat closes an order past its time_expire
            if order.trade_state == "CLOSED":
                raise StandinError(400, "ORDER_CLOSED", "order is closed")
            if order.trade_state == "NOTPAY":
                order.openid = order.openid or openid or "o" + secrets.token_urlsafe(20)[:27]
                if in_flight:
                    order.in_flight = True
                else:
                    self._land(order)
            return order

    def settle(self, out_trade_no: str) -> SandboxOrder:
        """Land a payment that was in flight: SUCCESS, even if the order was closed since."""
        with self._lock:
            order = self._order(out_trade_no)
            if order.in_flight:
                order.in_flight = False
                self._land(order)
            return order

    def _land(self, order: SandboxOrder) -> None:
        order.trade_state = "SUCCESS"
        order.transaction_id = new_transaction_id()
        order.success_time = datetime.fromtimestamp(self.sandbox.clock(), BEIJING)

    def query(self, out_trade_no: str) -> dict:
        """The body of GET /v3/pay/transactions/out-trade-no/{no}."""
        with self._lock:
            order = self._order(out_trade_no)
            reply = {
                "appid": order.appid,
                "mchid": order.mchid,
                "out_trade_no": order.out_trade_no,
                "trade_type": order.trade_type,
                "trade_state": order.trade_state,
                "trade_state_desc": _TRADE_STATE_DESC[order.trade_state],
                "attach": "",
                "amount": {"total": order.amount_fen, "currency": "CNY", "payer_currency": "CNY"},
            }
            if order.transaction_id:
                reply |= {
                    "transaction_id": order.transaction_id,
                    "bank_type": "OTHERS",
                    "success_time": rfc3339(order.success_time),
                    "payer": {"openid": order.openid},
                }
                reply["amount"]["payer_total"] = order.amount_fen
            return reply

    def close(self, out_trade_no: str) -> None:
        with self._lock:
            order = self._order(out_trade_no)
            if order.trade_state in ("SUCCESS", "REFUND"):
                raise StandinError(400, "ORDERPAID", "订单已支付")
            order.trade_state = "CLOSED"

    def refund(self, params: Mapping) -> SandboxRefund:
        """A refund from a /v3/refund/domestic/refunds body; the same out_refund_no again
        returns the same refund."""
        try:
            out_trade_no, out_refund_no = str(params["out_trade_no"]), str(params["out_refund_no"])
            refund_fen, total_fen = params["amount"]["refund"], params["amount"]["total"]
        except (KeyError, TypeError) as exc:
            raise StandinError(400, "PARAM_ERROR", f"missing {exc}") from None
        if type(refund_fen) is not int or type(total_fen) is not int or refund_fen <= 0:
            raise StandinError(400, "PARAM_ERROR", "amounts must be positive integers (fen)")
        with self._lock:
            existing = self.refunds.get(out_refund_no)
            if existing is not None:
                return existing
            order = self._order(out_trade_no)
            if order.trade_state not in ("SUCCESS", "REFUND"):
                raise StandinError(400, "INVALID_REQUEST", f"order is {order.trade_state}")
            if total_fen != order.amount_fen:
                raise StandinError(400, "PARAM_ERROR", "amount.total differs from the order's")
            if order.refunded_fen + refund_fen > order.amount_fen:
                raise StandinError(400, "INVALID_REQUEST", "refund exceeds what is left")
            refund = SandboxRefund(
                out_refund_no=out_refund_no, refund_id=new_refund_id(), out_trade_no=out_trade_no,
                transaction_id=order.transaction_id, refund_fen=refund_fen, total_fen=total_fen,
                notify_url=str(params.get("notify_url") or ""),
                created_at=datetime.fromtimestamp(self.sandbox.clock(), BEIJING),
            )
            order.refunded_fen += refund_fen
            order.trade_state = "REFUND"
            self.refunds[out_refund_no] = refund
            return refund

    def query_refund(self, out_refund_no: str) -> SandboxRefund:
        with self._lock:
            refund = self.refunds.get(out_refund_no)
            if refund is None:
                raise StandinError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
            return refund

    def settle_refund(self, out_refund_no: str) -> SandboxRefund:
        """PROCESSING → SUCCESS, and the REFUND.SUCCESS notification to `deliver` (once)."""
        with self._lock:
            refund = self.query_refund(out_refund_no)
            if refund.status != "PROCESSING":
                return refund
            refund.status = "SUCCESS"
            refund.success_time = datetime.fromtimestamp(self.sandbox.clock(), BEIJING)
            order = self.orders[refund.out_trade_no]
            url = refund.notify_url or order.notify_url
        if self.deliver is not None:
            self.deliver(url, lambda: self.refund_notification(out_refund_no))
        return refund

    def refund_notification(self, out_refund_no: str) -> tuple[dict[str, str], bytes]:
        """The REFUND.SUCCESS notification of a settled refund, as WeChat Pay posts it."""
        with self._lock:
            refund = self.query_refund(out_refund_no)
            order = self.orders[refund.out_trade_no]
            args = dict(mchid=order.mchid, transaction_id=refund.transaction_id,
                        out_refund_no=refund.out_refund_no, refund_fen=refund.refund_fen)
        return self.sandbox.build_notification(
            refund.out_trade_no, refund.total_fen, event_type=f"REFUND.{refund.status}", **args)

    @staticmethod
    def refund_reply(refund: SandboxRefund) -> dict:
        reply = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": refund.transaction_id,
            "out_trade_no": refund.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": rfc3339(refund.created_at),
            "success_time": rfc3339(refund.success_time) if refund.success_time else None,
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": refund.total_fen, "refund": refund.refund_fen,
                "payer_total": refund.total_fen, "payer_refund": refund.refund_fen,
                "settlement_total": refund.total_fen, "settlement_refund": refund.refund_fen,
                "discount_refund": 0, "currency": "CNY",
            },
        }
        return {name: value for name, value in reply.items() if value is not None}

    def _order(self, out_trade_no: str) -> SandboxOrder:
        order = self.orders.get(out_trade_no)
        if order is None:
            raise StandinError(404, "ORDER_NOT_EXIST", "订单不存在")
        return order

    # -- bills

    def trade_bill_csv(self, bill_date: date) -> str:
        """The ALL trade bill of `bill_date` (Beijing time) in WeChat's format: a header, one row
        per payment and per refund with every field prefixed by a backtick, then the summary
        header and the summary. Amounts in yuan. CRLF line ends, a UTF-8 BOM, as downloads show."""
        with self._lock:
            paid = [o for o in self.orders.values()
                    if o.success_time and o.success_time.date() == bill_date]
            refunds = [r for r in self.refunds.values() if r.created_at.date() == bill_date]
            orders = dict(self.orders)
            overrides = dict(self.bill_overrides)
        rows, settled, refunded, fees = [], 0, 0, 0
        for o in paid:
            plant = overrides.get(o.out_trade_no, BillOverride())
            if plant.omit:
                continue
            amount = o.amount_fen if plant.amount_fen is None else plant.amount_fen
            fee = (amount * SANDBOX_FEE_PER_FEN if plant.fee_fen is None
                   else plant.fee_fen * 1000)
            rows.append([
                o.success_time.strftime("%Y-%m-%d %H:%M:%S"), o.appid, o.mchid, "0", "",
                o.transaction_id, o.out_trade_no, o.openid, o.trade_type, "SUCCESS", "OTHERS",
                "CNY", fen_to_yuan_str(amount), "0.00", "0", "0", "0.00", "0.00", "", "",
                o.description, "", _yuan5(fee), "0.60%", fen_to_yuan_str(amount), "0.00", "",
            ])
            settled += amount
            fees += fee
        for r in refunds:
            o = orders[r.out_trade_no]
            fee = -r.refund_fen * SANDBOX_FEE_PER_FEN
            rows.append([
                r.created_at.strftime("%Y-%m-%d %H:%M:%S"), o.appid, o.mchid, "0", "",
                r.transaction_id, r.out_trade_no, o.openid, o.trade_type, "REFUND", "OTHERS",
                "CNY", "0.00", "0.00", r.refund_id, r.out_refund_no,
                fen_to_yuan_str(r.refund_fen), "0.00", "ORIGINAL", r.status, o.description, "",
                _yuan5(fee), "0.60%", fen_to_yuan_str(o.amount_fen),
                fen_to_yuan_str(r.refund_fen), "",
            ])
            refunded += r.refund_fen
            fees += fee
        summary = [str(len(rows)), fen_to_yuan_str(settled), fen_to_yuan_str(refunded), "0.00",
                   _yuan5(fees), fen_to_yuan_str(settled), fen_to_yuan_str(refunded)]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        out.write(TRADE_BILL_HEADER + "\r\n")
        for row in rows:
            writer.writerow(["`" + value for value in row])
        out.write(TRADE_BILL_SUMMARY_HEADER + "\r\n")
        writer.writerow(["`" + value for value in summary])
        return "\ufeff" + out.getvalue()

    def issue_trade_bill(self, bill_date: date) -> tuple[str, str]:
        """(token, hash_value) for GET /v3/bill/tradebill: the gzip file is kept for download;
        the SHA1 is of the uncompressed bill ("原始账单（gzip需要解压缩）的摘要值")."""
        raw = self.trade_bill_csv(bill_date).encode("utf-8")
        token = secrets.token_urlsafe(24)
        bill = _Bill(gzip.compress(raw, mtime=0), hashlib.sha1(raw).hexdigest())
        with self._lock:
            self._bills[token] = bill
        return token, bill.sha1

    def bill_file(self, token: str) -> bytes:
        with self._lock:
            bill = self._bills.get(token)
        if bill is None:
            raise StandinError(404, "RESOURCE_NOT_EXISTS", "账单文件不存在或已过期")
        return bill.gzip_bytes


_TRADE_STATE_DESC = {
    "NOTPAY": "未支付", "SUCCESS": "支付成功", "REFUND": "转入退款", "CLOSED": "已关闭",
}


def _yuan5(hundred_thousandths: int) -> str:
    """An exact amount in 1/100000 yuan as the bills print fees: 30000 → "0.30000"."""
    sign = "-" if hundred_thousandths < 0 else ""
    whole, part = divmod(abs(hundred_thousandths), 100_000)
    return f"{sign}{whole}.{part:05d}"


def make_wechat_api_app(standin: WechatStandin, *, cashier_url: str | None = None) -> Starlette:
    """The stand-in API app. `cashier_url` is where `h5_url` sends the browser (the web app's
    sandbox cashier); by default WeChat's real H5 cashier address, as a real reply has it."""

    def signed(status: int, payload: dict | None = None) -> Response:
        body = b"" if payload is None else json.dumps(
            payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = standin.sandbox.signed_headers(body)
        headers["Request-ID"] = f"sandbox-{time.time_ns()}"
        if payload is None:
            return Response(status_code=status, headers=headers)
        return Response(body, status_code=status, headers=headers,
                        media_type="application/json; charset=utf-8")

    def endpoint(handler):
        async def wrapped(request: Request) -> Response:
            body = await request.body()
            try:
                standin.verify_request(request.method, _signed_path(request), body,
                                       request.headers.get("authorization", ""))
                payload = json.loads(body) if body else {}
                if not isinstance(payload, dict):
                    raise StandinError(400, "PARAM_ERROR", "body is not a JSON object")
                return handler(request, payload)
            except json.JSONDecodeError:
                return signed(400, {"code": "PARAM_ERROR", "message": "body is not JSON"})
            except StandinError as exc:
                return signed(exc.status, {"code": exc.code, "message": exc.message})
        return wrapped

    def check_mchid(value) -> None:
        if value != standin.mchid:
            raise StandinError(400, "MCH_NOT_EXISTS", f"mchid {value!r} is not ours")

    def h5(request: Request, payload: dict) -> Response:
        order = standin.create_order(payload, "MWEB")
        base = cashier_url or REAL_H5_CASHIER
        return signed(200, {"h5_url": f"{base}?prepay_id={quote(order.prepay_id)}"
                                      f"&package={secrets.randbelow(10**10)}"})

    def jsapi(request: Request, payload: dict) -> Response:
        return signed(200, {"prepay_id": standin.create_order(payload, "JSAPI").prepay_id})

    def query(request: Request, payload: dict) -> Response:
        check_mchid(request.query_params.get("mchid"))
        return signed(200, standin.query(request.path_params["out_trade_no"]))

    def close(request: Request, payload: dict) -> Response:
        check_mchid(payload.get("mchid"))
        standin.close(request.path_params["out_trade_no"])
        return signed(204)

    def refund(request: Request, payload: dict) -> Response:
        created = standin.refund(payload)
        reply = signed(200, standin.refund_reply(created))  # as it stood when asked: PROCESSING
        if standin.settle_refunds_at_once:
            standin.settle_refund(created.out_refund_no)
        return reply

    def query_refund(request: Request, payload: dict) -> Response:
        return signed(200, standin.refund_reply(
            standin.query_refund(request.path_params["out_refund_no"])))

    def trade_bill(request: Request, payload: dict) -> Response:
        try:
            bill_date = date.fromisoformat(request.query_params.get("bill_date", ""))
        except ValueError:
            raise StandinError(400, "PARAM_ERROR", "bill_date must be YYYY-MM-DD") from None
        if request.query_params.get("tar_type", "GZIP") != "GZIP":
            raise StandinError(400, "PARAM_ERROR", "the sandbox serves GZIP bills only")
        token, sha1 = standin.issue_trade_bill(bill_date)
        # The SDK downloads only a URL that starts with its _gate_way: build it the same way.
        download_url = f"{_gateway(request)}/v3/billdownload/file?token={token}"
        return signed(200, {"hash_type": "SHA1", "hash_value": sha1, "download_url": download_url})

    def bill_file(request: Request, payload: dict) -> Response:
        # WeChat does not sign bill downloads (the SDK skips the check): a bare data stream.
        data = standin.bill_file(request.query_params.get("token", ""))
        return Response(data, media_type="application/octet-stream")

    prefix = "/v3/pay/transactions"
    return Starlette(routes=[
        Route(f"{prefix}/h5", endpoint(h5), methods=["POST"]),
        Route(f"{prefix}/jsapi", endpoint(jsapi), methods=["POST"]),
        Route(f"{prefix}/out-trade-no/{{out_trade_no}}", endpoint(query), methods=["GET"]),
        Route(f"{prefix}/out-trade-no/{{out_trade_no}}/close", endpoint(close), methods=["POST"]),
        Route("/v3/refund/domestic/refunds", endpoint(refund), methods=["POST"]),
        Route("/v3/refund/domestic/refunds/{out_refund_no}", endpoint(query_refund),
              methods=["GET"]),
        Route("/v3/bill/tradebill", endpoint(trade_bill), methods=["GET"]),
        Route("/v3/billdownload/file", endpoint(bill_file), methods=["GET"]),
    ])


def _signed_path(request: Request) -> str:
    """The path and query as the SDK signed them: raw, relative to where the app is mounted."""
    path = (request.scope.get("raw_path") or request.scope["path"].encode()).decode("latin-1")
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def _gateway(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"
