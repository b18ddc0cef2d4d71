"""Reading the providers' daily trade bills: exact amounts, WeChat Pay's and Alipay's bill files.

WeChat Pay's trade bill is a CSV (gzip on the wire, downloaded by `payments/wechat.py`): a
header, rows whose every field starts with a backtick, then a summary header and one summary row;
amounts in yuan, fees with five decimals. Alipay's trade bill comes as a zip of CSV files in
GBK: a detail file (业务明细) and a summary file (业务明细(汇总)); the detail file has `#` comment
lines around one CSV table and its totals at the end (#交易合计：N笔…, #退款合计：M笔…), and
Alipay ends ids with a tab so spreadsheets keep them as text. Amounts are yuan strings; fees
are negative on payments (the merchant pays them) and positive on refunds (returned).
Nothing here touches the network or the database.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from app.money import yuan_str_to_fen
from payments.base import BILL_PAYMENT, BILL_REFUND, BillLine

FEN_PER_YUAN = 100
E5_PER_YUAN = 100_000
ALIPAY_DETAIL_BEGIN = "业务明细列表"
ALIPAY_DETAIL_END = "业务明细列表结束"
ALIPAY_PAYMENT = "交易"
ALIPAY_REFUND = "退款"
_TOTAL = re.compile(r"#(交易|退款)合计[:：]\s*(\d+)\s*笔")
MAX_BILL_BYTES = 200 * 1024 * 1024  # uncompressed; a bill larger than this is refused


def yuan_to_units(text: str, per_yuan: int) -> int:
    """An exact signed yuan amount ("-0.30", "0.07404", "12") in units of 1/`per_yuan` yuan.
    Raises ValueError if it is not a number or is finer than the unit."""
    try:
        value = Decimal(text.strip()) * per_yuan
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {text!r}") from exc
    if not value.is_finite() or value != value.to_integral_value():
        raise ValueError(f"amount finer than 1/{per_yuan} yuan: {text!r}")
    return int(value)


def yuan_to_fen_signed(text: str) -> int:
    return yuan_to_units(text, FEN_PER_YUAN)


def yuan_to_e5(text: str) -> int:
    return yuan_to_units(text, E5_PER_YUAN)


@dataclass(frozen=True)
class BillEntry:
    """One row of a trade bill. Amounts in integer fen (the bill prints yuan)."""

    trade_time: str  # Beijing time, "YYYY-MM-DD HH:MM:SS"
    appid: str
    mchid: str
    provider_trade_no: str  # 微信订单号
    out_trade_no: str
    trade_type: str
    trade_state: str  # SUCCESS for a payment, REFUND for a refund row
    amount_fen: int  # 订单金额
    refund_fen: int  # 申请退款金额, 0 on payment rows
    out_refund_no: str
    fee_e5: int = 0  # 手续费 in 1/100000 yuan (five decimals), negative on refund rows


@dataclass(frozen=True)
class TradeBill:
    """A downloaded trade bill: detail rows and the summary, by column name, backticks removed."""

    rows: list[dict[str, str]]
    summary: dict[str, str]
    text: str = field(repr=False)

    def entries(self) -> list[BillEntry]:
        return [
            BillEntry(
                trade_time=row["交易时间"], appid=row["公众账号ID"], mchid=row["商户号"],
                provider_trade_no=row["微信订单号"], out_trade_no=row["商户订单号"],
                trade_type=row["交易类型"], trade_state=row["交易状态"],
                amount_fen=yuan_str_to_fen(row["订单金额"] or "0"),
                refund_fen=yuan_str_to_fen(row["申请退款金额"] or "0"),
                out_refund_no=row["商户退款单号"] if row["商户退款单号"] != "0" else "",
                fee_e5=yuan_to_e5(row.get("手续费") or "0"),
            )
            for row in self.rows
        ]


def parse_trade_bill(text: str) -> TradeBill:
    """Parse a WeChat trade bill (CSV): the detail header, rows whose every field starts with a
    backtick, then the summary header and one summary row. Columns are taken by name (their
    order is not promised). Raises ValueError if the text is not such a bill."""
    lines = [line for line in text.lstrip("\ufeff").splitlines() if line.strip()]
    table = list(csv.reader(lines))
    if len(table) < 3:
        raise ValueError("a trade bill has at least a header, a summary header and a summary")
    header = [name.strip() for name in table[0]]
    body = table[1:]
    split = next((i for i, row in enumerate(body) if row and not row[0].startswith("`")), None)
    if split is None or split + 1 >= len(body):
        raise ValueError("no summary at the end of the bill")
    summary_header = [name.strip() for name in body[split]]
    rows = []
    for row in body[:split]:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} fields, the header {len(header)}")
        rows.append(dict(zip(header, (_unquote(v) for v in row))))
    summary_values = body[split + 1]
    if len(summary_values) != len(summary_header):
        raise ValueError("the summary does not match its header")
    summary = dict(zip(summary_header, (_unquote(v) for v in summary_values)))
    return TradeBill(rows=rows, summary=summary, text=text)


def _unquote(value: str) -> str:
    return value[1:] if value.startswith("`") else value


@dataclass(frozen=True)
class BillOverride:
    """A difference a stand-in plants in its bills for one order (tests): another amount or fee
    (integer fen) on its payment line, or no line at all."""

    amount_fen: int | None = None
    fee_fen: int | None = None
    omit: bool = False


@dataclass(frozen=True)
class AlipayBill:
    """Alipay's trade bill of one day: the detail rows by column name (tabs and spaces
    stripped), the totals its footer announces, and the summary file's text."""

    rows: list[dict[str, str]]
    totals: dict[str, int]  # {"交易": N, "退款": M} as the footer says
    summary_text: str = field(default="", repr=False)

    def lines(self, channel: str = "alipay") -> list[BillLine]:
        """Every row as a BillLine. Raises ValueError on a row that is neither 交易 nor 退款, or
        whose amounts are not exact."""
        result = []
        for row in self.rows:
            kind = row.get("业务类型", "")
            if kind not in (ALIPAY_PAYMENT, ALIPAY_REFUND):
                raise ValueError(f"业务类型 {kind!r} is neither {ALIPAY_PAYMENT} nor {ALIPAY_REFUND}")
            refund = kind == ALIPAY_REFUND
            result.append(BillLine(
                channel=channel,
                kind=BILL_REFUND if refund else BILL_PAYMENT,
                out_trade_no=row["商户订单号"],
                provider_trade_no=row["支付宝交易号"],
                amount_fen=abs(yuan_to_fen_signed(row["订单金额（元）"] or "0")),
                fee_e5=-yuan_to_e5(row.get("服务费（元）") or "0"),
                out_refund_no=row.get("退款批次号/请求号", "") if refund else "",
                trade_time=row.get("完成时间", ""),
            ))
        return result


def parse_alipay_bill_zip(data: bytes) -> AlipayBill:
    """Open Alipay's bill zip and parse its detail file (GBK, or UTF-8). The files are told
    apart by their content, not their names (Alipay writes the names in GBK without the zip's
    UTF-8 flag).
    Raises ValueError if it is not such a zip, or if the rows do not add up to the footer."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        texts = []
        for info in archive.infolist():
            if info.is_dir():
                continue
            if info.file_size > MAX_BILL_BYTES:
                raise ValueError(f"{info.filename!r} is larger than {MAX_BILL_BYTES} bytes")
            texts.append(_decode(archive.read(info)))
    except (zipfile.BadZipFile, UnicodeDecodeError, OSError, EOFError) as exc:
        raise ValueError(f"not an Alipay bill zip: {exc}") from exc
    details = [t for t in texts if _has_marker(t, ALIPAY_DETAIL_BEGIN)]
    if len(details) != 1:
        raise ValueError(f"expected one detail file (业务明细), found {len(details)}")
    summary = next((t for t in texts if t is not details[0]), "")
    return parse_alipay_detail(details[0], summary)


def _decode(data: bytes) -> str:
    """Alipay's CSV files are GBK; UTF-8 is accepted too (strict UTF-8 fails on GBK Chinese, so
    trying it first cannot misread a GBK file)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030")


def _has_marker(text: str, marker: str) -> bool:
    return any(line.startswith("#") and marker in line and ALIPAY_DETAIL_END not in line
               for line in text.splitlines())


def parse_alipay_detail(text: str, summary_text: str = "") -> AlipayBill:
    """Parse the detail file (业务明细) of Alipay's trade bill, already decoded."""
    lines = text.lstrip("\ufeff").splitlines()
    try:
        begin = next(i for i, line in enumerate(lines) if line.startswith("#")
                     and ALIPAY_DETAIL_BEGIN in line and ALIPAY_DETAIL_END not in line)
        end = next(i for i, line in enumerate(lines) if i > begin and line.startswith("#")
                   and ALIPAY_DETAIL_END in line)
    except StopIteration:
        raise ValueError("no 业务明细列表 … 业务明细列表结束 section") from None
    table = list(csv.reader([line for line in lines[begin + 1:end] if line.strip()]))
    if not table:
        raise ValueError("the detail section has no header")
    header = [name.strip() for name in table[0]]
    for needed in ("支付宝交易号", "商户订单号", "业务类型", "订单金额（元）", "服务费（元）"):
        if needed not in header:
            raise ValueError(f"the detail header lacks {needed}")
    rows = []
    for values in table[1:]:
        if len(values) != len(header):
            raise ValueError(f"a row has {len(values)} fields, the header {len(header)}")
        rows.append({name: value.strip() for name, value in zip(header, values)})
    totals = {}
    for line in lines[end + 1:]:
        match = _TOTAL.match(line.strip())
        if match:
            totals[match.group(1)] = int(match.group(2))
    for kind, count in totals.items():
        found = sum(1 for row in rows if row["业务类型"] == kind)
        if found != count:
            raise ValueError(f"the footer says {count} {kind} rows, the table has {found}")
    return AlipayBill(rows=rows, totals=totals, summary_text=summary_text)
