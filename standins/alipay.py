"""Alipay's server side for the sandbox: trades, refunds and bills in memory, and Alipay's server
API (gateway.do) over HTTP.

`AlipayStandin(sandbox)` keeps what Alipay keeps: trades (created when the cashier opens,
WAIT_BUYER_PAY → TRADE_SUCCESS when the sandbox cashier "pays", or → TRADE_CLOSED), refunds, and
the trade bills it issues (a zip of GBK CSV files, as Alipay's bill download gives). It answers
alipay.trade.query, alipay.trade.close, alipay.trade.refund, alipay.trade.fastpay.refund.query and
alipay.data.dataservice.bill.downloadurl.query: it checks each request's RSA2 signature with our
app's public key and signs each reply with its "Alipay" key the way Alipay does (the exact inner
JSON text signed and emitted verbatim), so python-alipay-sdk's own response check runs. Point the
SDK at it with `alipay._gateway = "http://127.0.0.1:PORT/gateway.do"`.

`make_alipay_api_app(standin)` serves it alone (tests); the web app's sandbox serves the same
`standin.handle` at its cashier URL, since Alipay's browser cashier and its server API share one
gateway. It may misbehave on purpose: a payment "in flight" is invisible to queries and may land
after the trade was closed (`pay(…, in_flight=True)`, then `settle`), and `bill_overrides` plants
differences in its bills. Nothing here touches our database.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import secrets
import threading
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.money import fen_to_yuan_str, yuan_str_to_fen
from payments.bills import BillOverride
from standins.alipay_sandbox import (BEIJING, SANDBOX_SELLER_ID, PayRequest, SandboxAlipay,
                              _signing_content, _trade_no, _verify)

SUCCESS = {"code": "10000", "msg": "Success"}
BILL_URL_LIFE_S = 30.0
FEE_PER_MILLE = 6  # 0.6 %, rounded to the fen half up, as Alipay charges it per trade
SERVER_METHODS = frozenset({
    "alipay.trade.query", "alipay.trade.close", "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query", "alipay.data.dataservice.bill.downloadurl.query",
})
DETAIL_HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,"
    "对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注"
)
SUMMARY_HEADER = (
    "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,"
    "商家优惠（元）,卡消费金额（元）,服务费（元）,分润（元）,实收净额（元）"
)
RULE = "#-----------------------------------------"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


# The sandbox's delivery hook: (notify URL, build) where build() gives (headers, body).
Deliver = Callable[[str, Callable[[], tuple[dict[str, str], bytes]]], None]


class AlipayBusinessError(Exception):
    """A business failure Alipay answers with a signed reply: code 40004 and a sub_code."""

    def __init__(self, sub_code: str, sub_msg: str, code: str = "40004",
                 msg: str = "Business Failed") -> None:
        super().__init__(f"{sub_code}: {sub_msg}")
        self.reply = {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


@dataclass
class AlipayTrade:
    """One trade as Alipay would hold it. Amounts in integer fen; times aware, Beijing."""

    out_trade_no: str
    trade_no: str
    amount_fen: int
    subject: str
    notify_url: str
    created_at: dt.datetime
    status: str = "WAIT_BUYER_PAY"  # → TRADE_SUCCESS, or → TRADE_CLOSED
    paid_at: dt.datetime | None = None
    in_flight: bool = False  # paid, but not visible yet (see `pay`)
    refunded_fen: int = 0
    buyer_logon_id: str = "138****5678"
    time_expire: dt.datetime | None = None  # the merchant's: no payment after it


@dataclass
class AlipayRefund:
    out_trade_no: str
    out_request_no: str
    refund_fen: int
    refunded_at: dt.datetime


@dataclass
class _Bill:
    data: bytes
    expires_at: float


class AlipayStandin:
    """Alipay's records for the sandbox, in memory. Thread-safe: the HTTP handlers, the sandbox
    cashier and the tests share one. Moves no money.

    `deliver(notify_url, build)`, when set, is called (outside the lock) for every refund
    notification Alipay would post; `build()` gives its (headers, body). The web app's sandbox
    sets it."""

    def __init__(self, sandbox: SandboxAlipay, *, clock: Callable[[], float] = time.time) -> None:
        self.sandbox = sandbox
        self.app_id = sandbox.app_id
        self.clock = clock
        self._lock = threading.RLock()
        self.trades: dict[str, AlipayTrade] = {}
        self.refunds: dict[tuple[str, str], AlipayRefund] = {}
        self.bill_overrides: dict[str, BillOverride] = {}
        self._bills: dict[str, _Bill] = {}
        self.methods_seen: list[str] = []  # server API methods of verified requests
        self.deliver: Deliver | None = None

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), BEIJING)

    # -- the cashier: what the resident does

    def open_trade(self, req: PayRequest) -> AlipayTrade:
        """The resident opened the cashier: the trade exists from now on (WAIT_BUYER_PAY).
        Opening it again returns it; a closed one, or other details, are refused."""
        with self._lock:
            trade = self.trades.get(req.out_trade_no)
            if trade is None:
                now = self.now()
                trade = AlipayTrade(req.out_trade_no, _trade_no(now), req.amount_fen,
                                    req.subject, req.notify_url or "", now,
                                    time_expire=req.time_expire)
                self.trades[req.out_trade_no] = trade
            elif trade.amount_fen != req.amount_fen:
                raise AlipayBusinessError("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            elif trade.status == "TRADE_CLOSED":
                raise AlipayBusinessError("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            return trade

    def pay(self, out_trade_no: str, *, in_flight: bool = False) -> AlipayTrade:
        """The resident pays: WAIT_BUYER_PAY → TRADE_SUCCESS (idempotent). `in_flight` plays a
        payment Alipay takes a while to register: queries still say WAIT_BUYER_PAY, a close still
        succeeds, and `settle` later lands it anyway (a misbehaviour, on purpose)."""
        with self._lock:
            trade = self._trade(out_trade_no)
            if (trade.status == "WAIT_BUYER_PAY" and trade.time_expire is not None
                    and self.now() > trade.time_expire):
                trade.status = "TRADE_CLOSED"  # Alipay closes a trade past its time_expire
            if trade.status == "TRADE_CLOSED":
                raise AlipayBusinessError("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if trade.status == "WAIT_BUYER_PAY":
                if in_flight:
                    trade.in_flight = True
                else:
                    self._land(trade)
            return trade

    def settle(self, out_trade_no: str) -> AlipayTrade:
        """Land a payment that was in flight: TRADE_SUCCESS, even if the trade was closed."""
        with self._lock:
            trade = self._trade(out_trade_no)
            if trade.in_flight:
                trade.in_flight = False
                self._land(trade)
            return trade

    def _land(self, trade: AlipayTrade) -> None:
        trade.status = "TRADE_SUCCESS"
        trade.paid_at = self.now()

    def notification_for(self, out_trade_no: str) -> dict[str, str]:
        """The signed TRADE_SUCCESS notification of a paid trade, as Alipay posts it."""
        with self._lock:
            trade = self._trade(out_trade_no)
            if trade.status != "TRADE_SUCCESS":
                raise AlipayBusinessError("ACQ.TRADE_STATUS_ERROR", f"trade is {trade.status}")
            req, trade_no = self._request_of(trade), trade.trade_no
        return self.sandbox.build_notification(req, trade_no=trade_no)

    def _request_of(self, trade: AlipayTrade) -> PayRequest:
        return PayRequest(trade.out_trade_no, trade.amount_fen, trade.subject,
                          trade.notify_url or None, None, self.app_id)

    def _trade(self, out_trade_no: str) -> AlipayTrade:
        trade = self.trades.get(out_trade_no)
        if trade is None:
            raise AlipayBusinessError("ACQ.TRADE_NOT_EXIST", "交易不存在")
        return trade

    # -- the server API

    def handle(self, params: Mapping[str, str], bill_url_base: str) -> tuple[int, bytes]:
        """Answer one gateway.do server API request (its decoded parameters) like Alipay:
        (HTTP status, body). `bill_url_base` is where this stand-in's bill files are served
        (".../bill"), for the download URLs it hands out."""
        params = {str(k): str(v) for k, v in params.items()}
        method = params.get("method", "")
        response_type = method.replace(".", "_") + "_response"
        if method not in SERVER_METHODS:
            return self._unsigned("error_response", "40004", "isv.invalid-method", method)
        problem = self._check_request(params)
        if problem:  # Alipay does not sign a reply to a request it cannot trust
            return self._unsigned(response_type, "40002", *problem)
        with self._lock:
            self.methods_seen.append(method)
        try:
            biz = json.loads(params.get("biz_content") or "{}")
            if not isinstance(biz, dict):
                raise ValueError("biz_content is not an object")
            reply = SUCCESS | self._dispatch(method, biz, bill_url_base)
        except (ValueError, KeyError, TypeError) as exc:
            reply = {"code": "40002", "msg": "Invalid Arguments",
                     "sub_code": "isv.invalid-parameter", "sub_msg": str(exc)}
        except AlipayBusinessError as exc:
            reply = exc.reply
        return 200, self.signed_reply(response_type, reply)

    def _check_request(self, params: dict[str, str]) -> tuple[str, str] | None:
        if params.get("sign_type") != "RSA2":
            return "isv.invalid-signature-type", f"sign_type {params.get('sign_type')!r}"
        signature = params.pop("sign", "")
        content = _signing_content({k: v for k, v in params.items() if v != ""})
        if not _verify(self.sandbox._app_public_key, content, signature):
            return "isv.invalid-signature", "验签出错"
        if params.get("app_id") != self.app_id:
            return "isv.invalid-app-id", "无效的AppID参数"
        if params.get("charset", "utf-8").lower() != "utf-8":
            return "isv.invalid-charset", "字符集错误"
        return None

    def signed_reply(self, response_type: str, payload: Mapping) -> bytes:
        """Alipay's reply: {"<method>_response": <inner JSON>, "sign": RSA2 of the exact inner
        JSON text}. The inner text is emitted verbatim, as the SDK finds it by brace matching."""
        inner = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        sign = self.sandbox.sign_text(inner)
        return f'{{"{response_type}":{inner},"sign":"{sign}"}}'.encode("utf-8")

    @staticmethod
    def _unsigned(response_type: str, code: str, sub_code: str, sub_msg: str) -> tuple[int, bytes]:
        payload = {"code": code, "msg": "Invalid Arguments", "sub_code": sub_code,
                   "sub_msg": sub_msg}
        return 200, json.dumps({response_type: payload}, ensure_ascii=False).encode("utf-8")

    def _dispatch(self, method: str, biz: dict, bill_url_base: str) -> dict:
        if method == "alipay.data.dataservice.bill.downloadurl.query":
            if biz.get("bill_type") != "trade":
                raise AlipayBusinessError("isp.bill_type_not_supported", "账单类型不支持")
            bill_date = dt.date.fromisoformat(str(biz["bill_date"]))
            return {"bill_download_url": f"{bill_url_base}/{self.issue_bill(bill_date)}"}
        out_trade_no = str(biz["out_trade_no"])
        with self._lock:
            if method == "alipay.trade.query":
                return self._query(self._trade(out_trade_no))
            if method == "alipay.trade.close":
                return self._close(self._trade(out_trade_no))
            if method == "alipay.trade.refund":
                reply, refund = self._refund(self._trade(out_trade_no), biz)
            else:
                return self._refund_query(self._trade(out_trade_no), str(biz["out_request_no"]))
        if refund is not None and self.deliver is not None:
            trade = self.trades[out_trade_no]
            self.deliver(trade.notify_url, lambda: (
                dict(FORM_HEADERS), self.sandbox.encode_form(self.refund_notification(refund))))
        return reply

    def _query(self, trade: AlipayTrade) -> dict:
        reply = {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                 "buyer_logon_id": trade.buyer_logon_id, "trade_status": trade.status,
                 "total_amount": fen_to_yuan_str(trade.amount_fen)}
        if trade.status == "TRADE_SUCCESS":
            total = fen_to_yuan_str(trade.amount_fen)
            reply |= {"buyer_pay_amount": total, "point_amount": "0.00",
                      "invoice_amount": total, "receipt_amount": total,
                      "send_pay_date": trade.paid_at.strftime(TIME_FORMAT),
                      "fund_bill_list": [{"fund_channel": "ALIPAYACCOUNT", "amount": total}],
                      "buyer_user_id": "2088102177846880"}
        return reply

    def _close(self, trade: AlipayTrade) -> dict:
        if trade.status != "WAIT_BUYER_PAY":
            raise AlipayBusinessError("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade.status = "TRADE_CLOSED"
        return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no}

    def _refund(self, trade: AlipayTrade, biz: dict) -> tuple[dict, AlipayRefund | None]:
        out_request_no = str(biz.get("out_request_no") or trade.out_trade_no)
        refund_fen = yuan_str_to_fen(str(biz["refund_amount"]))
        existing = self.refunds.get((trade.out_trade_no, out_request_no))
        if existing is not None:  # the same request again: refunded once, fund_change N
            if existing.refund_fen != refund_fen:
                raise AlipayBusinessError("ACQ.REFUND_AMT_RESTRICTION", "退款金额与原请求不一致")
            return self._refund_reply(trade, existing, "N"), None
        if trade.status != "TRADE_SUCCESS":
            raise AlipayBusinessError("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        if refund_fen <= 0 or trade.refunded_fen + refund_fen > trade.amount_fen:
            raise AlipayBusinessError("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
        refund = AlipayRefund(trade.out_trade_no, out_request_no, refund_fen, self.now())
        self.refunds[(trade.out_trade_no, out_request_no)] = refund
        trade.refunded_fen += refund_fen
        return self._refund_reply(trade, refund, "Y"), refund

    @staticmethod
    def _refund_reply(trade: AlipayTrade, refund: AlipayRefund, fund_change: str) -> dict:
        return {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                "buyer_logon_id": trade.buyer_logon_id, "fund_change": fund_change,
                "refund_fee": fen_to_yuan_str(trade.refunded_fen),
                "gmt_refund_pay": refund.refunded_at.strftime(TIME_FORMAT),
                "buyer_user_id": "2088102177846880"}

    def _refund_query(self, trade: AlipayTrade, out_request_no: str) -> dict:
        reply = {"trade_no": trade.trade_no, "out_trade_no": trade.out_trade_no,
                 "out_request_no": out_request_no}
        refund = self.refunds.get((trade.out_trade_no, out_request_no))
        if refund is None:  # Alipay says "success" and gives no refund
            return reply
        return reply | {"total_amount": fen_to_yuan_str(trade.amount_fen),
                        "refund_amount": fen_to_yuan_str(refund.refund_fen),
                        "refund_status": "REFUND_SUCCESS",
                        "gmt_refund_pay": refund.refunded_at.strftime(TIME_FORMAT)}

    def refund_notification(self, refund: AlipayRefund) -> dict[str, str]:
        """The signed trade_status_sync Alipay posts after a refund: TRADE_SUCCESS while some of
        the trade is left, TRADE_CLOSED once all of it went back; refund_fee is the trade's
        refunds so far, out_biz_no names this refund."""
        with self._lock:
            trade = self.trades[refund.out_trade_no]
            req, trade_no, refunded = self._request_of(trade), trade.trade_no, trade.refunded_fen
            status = "TRADE_CLOSED" if refunded >= trade.amount_fen else "TRADE_SUCCESS"
        return self.sandbox.build_notification(req, trade_no=trade_no, trade_status=status, extra={
            "refund_fee": fen_to_yuan_str(refunded), "out_biz_no": refund.out_request_no,
            "gmt_refund": refund.refunded_at.strftime(TIME_FORMAT) + ".000"})

    # -- bills

    def issue_bill(self, bill_date: dt.date) -> str:
        """A token for the bill zip of `bill_date`, downloadable for 30 s. (Alipay issues T-1
        and earlier; the sandbox issues any day, today's included, for the tests.)"""
        token = secrets.token_urlsafe(24)
        bill = _Bill(self.bill_zip(bill_date), self.clock() + BILL_URL_LIFE_S)
        with self._lock:
            self._bills[token] = bill
        return token

    def bill_file(self, token: str) -> bytes | None:
        """The zip behind `token`, or None once it expired (or never was)."""
        with self._lock:
            bill = self._bills.get(token)
            if bill is not None and bill.expires_at < self.clock():
                del self._bills[token]
                bill = None
        return None if bill is None else bill.data

    def bill_zip(self, bill_date: dt.date) -> bytes:
        """The trade bill of `bill_date` (Beijing) as Alipay ships it: a zip of two GBK CSV
        files, the detail (业务明细) and the summary (业务明细(汇总))."""
        detail, summary = self.bill_csv(bill_date)
        stem = f"{SANDBOX_SELLER_ID}0156_{bill_date:%Y%m%d}"
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{stem}_业务明细.csv", detail.encode("gbk", "replace"))
            archive.writestr(f"{stem}_业务明细(汇总).csv", summary.encode("gbk", "replace"))
        return out.getvalue()

    def bill_csv(self, bill_date: dt.date) -> tuple[str, str]:
        """(detail, summary) texts of the bill of `bill_date`; ids end with a tab, as Alipay's."""
        with self._lock:
            paid = [t for t in self.trades.values() if t.paid_at and t.paid_at.date() == bill_date]
            refunds = [r for r in self.refunds.values() if r.refunded_at.date() == bill_date]
            trades = dict(self.trades)
            overrides = dict(self.bill_overrides)
        rows, totals = [], {"交易": [0, 0, 0], "退款": [0, 0, 0]}  # count, amount, fee (fen)
        for t in sorted(paid, key=lambda t: t.paid_at):
            plant = overrides.get(t.out_trade_no, BillOverride())
            if plant.omit:
                continue
            amount = t.amount_fen if plant.amount_fen is None else plant.amount_fen
            fee = _fee_fen(amount) if plant.fee_fen is None else plant.fee_fen
            rows.append(_detail_row(t, "交易", t.created_at, t.paid_at, amount, -fee, ""))
            _add(totals["交易"], amount, -fee)
        for r in sorted(refunds, key=lambda r: r.refunded_at):
            t = trades[r.out_trade_no]
            fee = _fee_fen(r.refund_fen)
            rows.append(_detail_row(t, "退款", r.refunded_at, r.refunded_at, -r.refund_fen, fee,
                                    r.out_request_no))
            _add(totals["退款"], -r.refund_fen, fee)
        start = dt.datetime.combine(bill_date, dt.time())
        span = (f"#起始日期：[{start:%Y年%m月%d日 %H:%M:%S}]   "
                f"终止日期：[{start + dt.timedelta(days=1):%Y年%m月%d日 %H:%M:%S}]")
        exported = f"#导出时间：[{self.now():%Y年%m月%d日 %H:%M:%S}]"
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        for line in ("#支付宝业务明细查询", f"#账号：[{SANDBOX_SELLER_ID}0156]", span,
                     f"{RULE}业务明细列表----------------------------------------", DETAIL_HEADER):
            out.write(line + "\r\n")
        writer.writerows(rows)
        (pays, pay_in, _), (refs, ref_in, _) = totals["交易"], totals["退款"]
        for line in (f"{RULE}业务明细列表结束------------------------------------",
                     f"#交易合计：{pays}笔，商家实收共{fen_to_yuan_str(pay_in)}元，商家优惠共0.00元",
                     f"#退款合计：{refs}笔，商家实收退款共{fen_to_yuan_str(ref_in)}元，"
                     "商家优惠退款共0.00元", exported):
            out.write(line + "\r\n")
        fees = totals["交易"][2] + totals["退款"][2]
        summary = "\r\n".join([
            "#支付宝业务汇总查询", f"#账号：[{SANDBOX_SELLER_ID}0156]", span,
            f"{RULE}业务汇总列表----------------------------------------", SUMMARY_HEADER,
            ",".join(["合计", "", str(pays), str(refs), fen_to_yuan_str(pay_in + ref_in),
                      fen_to_yuan_str(pay_in + ref_in), "0.00", "0.00", "0.00",
                      fen_to_yuan_str(fees), "0.00", fen_to_yuan_str(pay_in + ref_in + fees)]),
            f"{RULE}业务汇总列表结束------------------------------------", exported, ""])
        return out.getvalue(), summary


def _fee_fen(amount_fen: int) -> int:
    """0.6 % of `amount_fen`, rounded to the fen half up (integer arithmetic, no float)."""
    return (abs(amount_fen) * FEE_PER_MILLE + 500) // 1000


def _add(total: list[int], amount_fen: int, fee_fen: int) -> None:
    total[0] += 1
    total[1] += amount_fen
    total[2] += fee_fen


def _detail_row(trade: AlipayTrade, kind: str, created: dt.datetime, done: dt.datetime,
                amount_fen: int, fee_fen: int, out_request_no: str) -> list[str]:
    amount = fen_to_yuan_str(amount_fen)
    return [trade.trade_no + "\t", trade.out_trade_no + "\t", kind, trade.subject,
            created.strftime(TIME_FORMAT), done.strftime(TIME_FORMAT), "", "", "", "",
            trade.buyer_logon_id, amount, amount, "0.00", "0.00", "0.00", "0.00", "0.00", "",
            "0.00", "0.00", out_request_no + "\t" if out_request_no else "",
            fen_to_yuan_str(fee_fen), "0.00", ""]


def make_alipay_api_app(standin: AlipayStandin) -> Starlette:
    """The stand-in alone: GET or POST /gateway.do (the server API), GET /bill/{token} (bill
    files, unsigned, as Alipay's download server serves them)."""

    async def gateway(request: Request) -> Response:
        status, body = standin.handle(await request_params(request), _base(request) + "/bill")
        return Response(body, status_code=status, media_type="application/json;charset=utf-8")

    async def bill(request: Request) -> Response:
        return bill_response(standin, request.path_params["token"])

    return Starlette(routes=[Route("/gateway.do", gateway, methods=["GET", "POST"]),
                             Route("/bill/{token}", bill, methods=["GET"])])


async def request_params(request: Request) -> dict[str, str]:
    """A gateway.do request's parameters: the query string and, for a POST, the form body."""
    params = dict(parse_qsl(request.url.query, keep_blank_values=True))
    if request.method == "POST":
        body = (await request.body()).decode("utf-8", "replace")
        params |= dict(parse_qsl(body, keep_blank_values=True))
    return params


def bill_response(standin: AlipayStandin, token: str) -> Response:
    data = standin.bill_file(token)
    if data is None:
        return Response("the bill URL expired", status_code=404, media_type="text/plain")
    return Response(data, media_type="application/zip")


def _base(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"
