"""AlipayProvider's server APIs (query, close, refund, refund query, bill download) through
python-alipay-sdk against the local stand-in of Alipay on loopback: our requests signed and
checked there, its replies signed and checked by the SDK's own response verification."""

from __future__ import annotations

import datetime as dt
import io
import json
import time
import uuid
import zipfile
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from payments.alipay import AlipayError, AlipayProvider
from standins.alipay import AlipayStandin, make_alipay_api_app
from payments.base import (BILL_PAYMENT, BILL_REFUND, REFUND_PROCESSING, REFUND_SUCCEEDED,
                           BillLine, OrderInfo, PaymentProvider)
from payments.bills import BillOverride, parse_alipay_bill_zip
from standins.alipay_sandbox import BEIJING, SandboxAlipay, ensure_sandbox_keys, generate_rsa_keypair
from payments.serving import serve_in_thread

APP_ID = "2021000000000001"
NOTIFY_URL = "https://feikong.example/notify/alipay"


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return ensure_sandbox_keys(tmp_path_factory.mktemp("alipay-api-keys"))


@pytest.fixture(scope="module")
def sandbox(keys):
    return SandboxAlipay(keys, APP_ID)


@pytest.fixture(scope="module")
def clock():
    return Clock()


@pytest.fixture(scope="module")
def standin(sandbox, clock):
    return AlipayStandin(sandbox, clock=clock)


@pytest.fixture(scope="module")
def base_url(standin):
    with serve_in_thread(make_alipay_api_app(standin)) as url:
        yield url


@pytest.fixture
def provider(keys, base_url):
    return AlipayProvider(APP_ID, keys.app_private_pem, keys.alipay_public_pem,
                          base_url + "/gateway.do")


def opened(provider, sandbox, standin, amount_fen=5000) -> str:
    """An order whose cashier the resident opened (the trade exists at Alipay)."""
    order = OrderInfo("FK" + uuid.uuid4().hex[:20].upper(), amount_fen, "电费充值 1-2-301")
    url = provider.start(order, notify_url=NOTIFY_URL, return_url="https://feikong.example/a/1")
    standin.open_trade(sandbox.parse_pay_request(dict(parse_qsl(urlsplit(url.url).query))))
    return order.out_trade_no


def paid(provider, sandbox, standin, amount_fen=5000) -> str:
    no = opened(provider, sandbox, standin, amount_fen)
    standin.pay(no)
    return no


def test_the_provider_meets_the_whole_interface(provider):
    assert isinstance(provider, PaymentProvider)


def test_query_of_a_trade_alipay_never_saw_is_none(provider):
    assert provider.query("FK_NEVER_OPENED") is None


def test_query_of_an_open_trade_is_not_paid(provider, sandbox, standin):
    no = opened(provider, sandbox, standin)
    note = provider.query(no)
    assert (note.paid, note.amount_fen, note.raw["trade_status"]) == (False, 5000,
                                                                      "WAIT_BUYER_PAY")


def test_query_of_a_paid_trade_is_a_paid_notification_of_our_app(provider, sandbox, standin):
    no = paid(provider, sandbox, standin, 1234)
    note = provider.query(no)
    assert (note.channel, note.out_trade_no, note.amount_fen, note.paid) == ("alipay", no, 1234,
                                                                            True)
    assert note.provider_trade_no == standin.trades[no].trade_no and note.app_id == APP_ID
    assert "alipay.trade.query" in standin.methods_seen


def test_close_closes_an_open_trade_and_is_quiet_for_an_unknown_one(provider, sandbox, standin):
    no = opened(provider, sandbox, standin)
    assert provider.close(no) is None
    assert provider.query(no).raw["trade_status"] == "TRADE_CLOSED"
    assert provider.close("FK_NEVER_OPENED") is None


def test_close_of_a_paid_trade_is_refused(provider, sandbox, standin):
    no = paid(provider, sandbox, standin)
    with pytest.raises(AlipayError) as exc:
        provider.close(no)
    assert exc.value.code == "ACQ.TRADE_STATUS_ERROR"


def test_a_payment_in_flight_is_invisible_then_lands_after_the_close(provider, sandbox, standin):
    no = opened(provider, sandbox, standin)
    standin.pay(no, in_flight=True)
    assert provider.query(no).paid is False
    provider.close(no)
    standin.settle(no)
    assert provider.query(no).paid is True  # the misbehaviour the sandbox plays on purpose


def test_refund_is_accepted_once_and_confirmed_by_query(provider, sandbox, standin):
    no = paid(provider, sandbox, standin, 5000)

    first = provider.refund(no, "RF1" + no, 2000, 5000, reason="电费余额退款")
    again = provider.refund(no, "RF1" + no, 2000, 5000)  # the same request: refunded once

    assert (first.status, first.refund_fen, first.raw["fund_change"]) == (REFUND_PROCESSING, 2000,
                                                                          "Y")
    assert again.raw["fund_change"] == "N" and standin.trades[no].refunded_fen == 2000
    confirmed = provider.query_refund(no, "RF1" + no)
    assert (confirmed.status, confirmed.refund_fen) == (REFUND_SUCCEEDED, 2000)
    assert provider.query_refund(no, "RF_UNKNOWN") is None


def test_a_refund_beyond_what_is_left_is_refused(provider, sandbox, standin):
    no = paid(provider, sandbox, standin, 1000)
    provider.refund(no, "RFa" + no, 600, 1000)
    with pytest.raises(AlipayError) as exc:
        provider.refund(no, "RFb" + no, 500, 1000)
    assert exc.value.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    with pytest.raises(ValueError):
        provider.refund(no, "RFc" + no, 1001, 1000)  # refused before anything is sent


def test_the_refund_notice_names_the_refund(provider, sandbox, standin):
    no = paid(provider, sandbox, standin, 5000)
    provider.refund(no, "RFn" + no, 1500, 5000)
    form = standin.refund_notification(standin.refunds[(no, "RFn" + no)])

    note = provider.parse_notify({}, sandbox.encode_form(form))

    assert (note.is_refund, note.out_refund_no, note.refund_status, note.refund_fen) == (
        True, "RFn" + no, REFUND_SUCCEEDED, 1500)
    assert form["trade_status"] == "TRADE_SUCCESS"  # some of the trade is left


def test_a_request_signed_with_another_key_gets_an_unsigned_refusal(keys, base_url):
    forger = AlipayProvider(APP_ID, generate_rsa_keypair()[0], keys.alipay_public_pem,
                            base_url + "/gateway.do")
    with pytest.raises(AlipayError) as exc:
        forger.query("FK1")
    assert exc.value.code == "ERROR_RESPONSE" and "isv.invalid-signature" in exc.value.message


def test_a_reply_signed_with_another_key_fails_the_sdks_check(keys, base_url):
    _, other_public = generate_rsa_keypair()
    provider = AlipayProvider(APP_ID, keys.app_private_pem, other_public,
                              base_url + "/gateway.do")
    with pytest.raises(AlipayError) as exc:
        provider.query("FK1")
    assert exc.value.code == "BAD_RESPONSE_SIGNATURE"


def test_an_unreachable_gateway_is_a_network_error(keys):
    provider = AlipayProvider(APP_ID, keys.app_private_pem, keys.alipay_public_pem,
                              "http://127.0.0.1:9/gateway.do")
    with pytest.raises(AlipayError) as exc:
        provider.query("FK1")
    assert exc.value.code == "NETWORK"


# -- bills --------------------------------------------------------------------------------------

def test_the_trade_bill_is_a_zip_of_gbk_csv_files_behind_a_short_lived_url(
        provider, sandbox, standin, clock):
    no = paid(provider, sandbox, standin, 1234)
    provider.refund(no, "RFbill" + no, 234, 1234)
    today = dt.datetime.now(BEIJING).date()

    url = provider.bill_download_url(today)
    data = httpx.get(url).content
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    detail = archive.read(next(n for n in names if n.endswith("业务明细.csv"))).decode("gbk")

    assert len(names) == 2 and any("汇总" in n for n in names)
    assert "#-----------------------------------------业务明细列表----" in detail
    assert f"{no}\t," in detail  # ids end with a tab, as Alipay's do
    clock.now += 31
    try:
        assert httpx.get(url).status_code == 404  # the URL lives 30 s
    finally:
        clock.now -= 31
    mine = [line for line in provider.bill_lines(today) if line.out_trade_no == no]
    assert mine == [
        BillLine("alipay", BILL_PAYMENT, no, standin.trades[no].trade_no, 1234, 7000, "",
                 mine[0].trade_time),
        BillLine("alipay", BILL_REFUND, no, standin.trades[no].trade_no, 234, -1000,
                 "RFbill" + no, mine[1].trade_time),
    ]  # fees: 0.6 % of 12.34 is 0.07, of 2.34 is 0.01 (given back)


def test_a_planted_difference_shows_in_the_bill(provider, sandbox, standin):
    no = paid(provider, sandbox, standin, 5000)
    standin.bill_overrides[no] = BillOverride(amount_fen=4999, fee_fen=50)
    today = dt.datetime.now(BEIJING).date()
    [line] = [line for line in provider.bill_lines(today) if line.out_trade_no == no]
    assert (line.amount_fen, line.fee_e5) == (4999, 50_000)


def test_a_bill_whose_rows_do_not_add_up_to_its_footer_is_unreadable(standin):
    detail, _summary = standin.bill_csv(dt.datetime.now(BEIJING).date())
    broken = detail.replace("#交易合计：", "#交易合计：9", 1)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("detail.csv", broken.encode("gbk"))
    with pytest.raises(ValueError, match="the footer says"):
        parse_alipay_bill_zip(out.getvalue())


def test_the_bill_query_for_another_bill_type_is_refused(provider):
    with pytest.raises(AlipayError) as exc:
        provider._expect(provider._api("alipay.data.dataservice.bill.downloadurl.query",
                                       {"bill_type": "signcustomer", "bill_date": "2026-01-01"}))
    assert exc.value.code == "isp.bill_type_not_supported"


def test_the_reply_is_the_signed_inner_json_emitted_verbatim(standin, sandbox):
    body = standin.signed_reply("alipay_trade_query_response", {"code": "10000", "x": "两"})
    text = body.decode("utf-8")
    inner = text[len('{"alipay_trade_query_response":'):text.index(',"sign":')]
    assert json.loads(inner) == {"code": "10000", "x": "两"}
    assert json.loads(text)["sign"] == sandbox.sign_text(inner)
