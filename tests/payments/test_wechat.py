"""WechatPayProvider against the local WeChat Pay sandbox: real keys, real RSA-SHA256, real
AES-256-GCM, wechatpayv3's own verification, and the SDK's HTTP calls served by the stand-in on
loopback (which checks our request signatures and signs its replies)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import socket
import stat
import time
import uuid
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import Route
from wechatpayv3 import WeChatPay, WeChatPayType

from payments.base import (BILL_PAYMENT, BILL_REFUND, REFUND_PROCESSING, REFUND_SUCCEEDED,
                           NotificationRejected, OrderInfo, PaymentProvider)
from payments.bills import BillOverride
from standins.alipay_sandbox import BEIJING, generate_rsa_keypair
from payments.wechat import WechatPayError, WechatPayProvider, parse_trade_bill
from standins.wechat_pay_sandbox import WechatSandbox, ensure_wechat_sandbox_keys
from standins.wechat_pay import WechatStandin, make_wechat_api_app, serve_in_thread

NOTIFY_URL = "https://feikong.example/notify/wechat"
RETURN_URL = "https://feikong.example/a/101020?paid=1&x=两"
CASHIER = "http://127.0.0.1:8000/sandbox/wechat/h5"
NOW = int(time.time())


@pytest.fixture(autouse=True)
def now_at_each_test():
    """NOW is the time the test starts, not the time the module was imported: the stand-in
    signs with the real clock, and a long run (the whole suite on PostgreSQL under load) once
    passed WeChat's 300 s window between the import and these tests."""
    global NOW
    NOW = int(time.time())


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return ensure_wechat_sandbox_keys(tmp_path_factory.mktemp("wechat-keys"))


@pytest.fixture(scope="module")
def other_private_pem():
    return generate_rsa_keypair()[0]


@pytest.fixture(scope="module")
def sandbox(keys):
    return WechatSandbox(keys)


@pytest.fixture(scope="module")
def standin(sandbox):
    return WechatStandin(sandbox)


@pytest.fixture(scope="module")
def gateway(standin):
    with serve_in_thread(make_wechat_api_app(standin, cashier_url=CASHIER)) as base_url:
        yield base_url


def make_provider(keys, gateway=None, **overrides):
    args = dict(appid=keys.appid, mchid=keys.mchid,
                merchant_private_key_pem=keys.merchant_private_pem,
                merchant_serial_no=keys.merchant_serial_no, apiv3_key=keys.apiv3_key,
                wechatpay_public_key_pem=keys.platform_public_pem,
                wechatpay_public_key_id=keys.public_key_id, gateway_url=gateway,
                clock=lambda: NOW)
    return WechatPayProvider(**(args | overrides))


@pytest.fixture
def provider(keys, gateway):
    return make_provider(keys, gateway)


def order(amount_fen=5000) -> OrderInfo:
    return OrderInfo(out_trade_no="FK" + uuid.uuid4().hex[:20].upper(), amount_fen=amount_fen,
                     subject="电费充值 1-2-301")


def as_starlette(headers) -> dict[str, str]:
    """What the notify view passes: dict(request.headers), lower-case names."""
    return dict(Headers(headers=headers))


def notice(sandbox, out_trade_no="FK1", amount_fen=5000, **kwargs):
    return sandbox.build_notification(out_trade_no, amount_fen, timestamp=NOW, **kwargs)


def paid_order(provider, standin, amount_fen=5000) -> OrderInfo:
    o = order(amount_fen)
    provider.start(o, notify_url=NOTIFY_URL, return_url=RETURN_URL, payer_client_ip="10.1.2.3")
    standin.pay(o.out_trade_no)
    return o


# -- notifications ------------------------------------------------------------------------------

def test_provider_meets_the_protocol(provider):
    assert isinstance(provider, PaymentProvider)
    assert provider.identifier == "wechat"
    assert provider.ack() == (200, "application/json", "")
    status, content_type, body = provider.failure()
    assert 400 <= status < 600 and content_type == "application/json"
    assert json.loads(body)["code"] == "FAIL"


@pytest.mark.parametrize("shape", [as_starlette, dict, Headers],
                         ids=["lower", "as_sent", "Headers"])
def test_notification_parses(provider, sandbox, keys, shape):
    headers, body = notice(sandbox, "FK1", 5000, transaction_id="4200000000000000000000000001")

    note = provider.parse_notify(shape(headers), body)

    assert (note.channel, note.out_trade_no, note.amount_fen) == ("wechat", "FK1", 5000)
    assert (note.paid, note.is_refund) == (True, False)
    assert note.provider_trade_no == "4200000000000000000000000001"
    assert (note.app_id, note.raw["mchid"]) == (keys.appid, keys.mchid) == (
        provider.app_id, provider.mchid)
    assert note.raw["event_type"] == "TRANSACTION.SUCCESS" and note.raw["amount"]["total"] == 5000


def test_a_duplicate_parses_the_same(provider, sandbox):
    headers, body = notice(sandbox)
    assert provider.parse_notify(as_starlette(headers), body) == provider.parse_notify(
        as_starlette(headers), body)


def test_a_notification_signed_with_another_key_is_rejected(provider, sandbox, other_private_pem):
    headers, body = notice(sandbox, private_pem=other_private_pem)
    with pytest.raises(NotificationRejected) as exc:
        provider.parse_notify(as_starlette(headers), body)
    assert exc.value.reason == "bad_signature"


def test_a_body_altered_after_signing_is_rejected(provider, sandbox):
    headers, body = notice(sandbox, "FK1", 5000)
    altered = body.replace(b'"summary":"\xe6\x94\xaf', b'"summary":"\xe5\xb7\xb2')  # 支付 → 已付
    assert altered != body
    with pytest.raises(NotificationRejected, match="bad_signature"):
        provider.parse_notify(as_starlette(headers), altered)


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_timestamp_more_than_300_s_away_is_rejected(provider, sandbox, offset):
    headers, body = sandbox.build_notification("FK1", 5000, timestamp=NOW + offset)
    assert provider._client.callback(as_starlette(headers), body)  # the SDK does not look
    with pytest.raises(NotificationRejected) as exc:
        provider.parse_notify(as_starlette(headers), body)
    assert exc.value.reason == "stale_timestamp"


def test_a_timestamp_300_s_old_is_accepted(provider, sandbox):
    headers, body = sandbox.build_notification("FK1", 5000, timestamp=NOW - 300)
    assert provider.parse_notify(as_starlette(headers), body).paid


def test_another_appid_and_mchid_are_returned_for_the_caller_to_refuse(provider, sandbox):
    headers, body = notice(sandbox, appid="wx00000000000other", mchid="1900009999")
    note = provider.parse_notify(as_starlette(headers), body)
    assert note.app_id == "wx00000000000other" != provider.app_id
    assert note.raw["mchid"] == "1900009999" != provider.mchid


def test_a_refund_notice_is_marked_and_never_paid(provider, sandbox, keys):
    headers, body = notice(sandbox, "FK1", 5000, event_type="REFUND.SUCCESS", refund_fen=2000)
    note = provider.parse_notify(as_starlette(headers), body)
    assert (note.is_refund, note.paid, note.amount_fen) == (True, False, 5000)
    assert note.app_id == ""  # WeChat's refund resource carries mchid but no appid
    assert note.raw["mchid"] == keys.mchid and note.raw["amount"]["refund"] == 2000


def test_a_trade_state_other_than_success_is_not_paid(provider, sandbox):
    headers, body = notice(sandbox, trade_state="PAYERROR")
    assert provider.parse_notify(as_starlette(headers), body).paid is False


def test_without_signature_type_the_sdk_raises_and_the_provider_rejects(provider, sandbox):
    headers, body = notice(sandbox)
    del headers["Wechatpay-Signature-Type"]  # what a handler copying four headers sends on
    with pytest.raises(Exception, match="does not support this algorithm: $") as sdk:
        provider._client.callback(as_starlette(headers), body)
    assert type(sdk.value) is Exception  # a bare Exception, not None as for a bad signature
    with pytest.raises(NotificationRejected, match="bad_signature"):
        provider.parse_notify(as_starlette(headers), body)


def test_mixed_case_header_names_defeat_the_sdk_but_not_the_provider(provider, sandbox):
    headers, body = notice(sandbox)
    headers["wechatpay-signature"] = headers.pop("Wechatpay-Signature")
    with pytest.raises(Exception, match="does not support this algorithm"):
        provider._client.callback(headers, body)  # it switches spelling on wechatpay-signature
    assert provider.parse_notify(headers, body).paid


def test_another_serial_is_rejected_before_the_sdk_goes_online(keys, sandbox):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    provider = make_provider(keys, closed)
    headers, body = notice(sandbox, serial="PUB_KEY_ID_0000000000000000000000000001")
    with pytest.raises(requests.ConnectionError):  # the SDK fetches /v3/certificates
        provider._client.callback(as_starlette(headers), body)
    with pytest.raises(NotificationRejected, match="bad_signature"):
        provider.parse_notify(as_starlette(headers), body)


def test_a_resource_sealed_with_another_api_v3_key_is_rejected(keys, sandbox):
    provider = make_provider(keys, apiv3_key="B" * 32)
    headers, body = notice(sandbox)
    with pytest.raises(NotificationRejected, match="bad_signature"):
        provider.parse_notify(as_starlette(headers), body)


def test_a_pkcs1_merchant_key_is_converted_for_the_sdk(keys, gateway):
    pkcs1 = serialization.load_pem_private_key(keys.merchant_private_pem.encode(), None)
    pkcs1_pem = pkcs1.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption()).decode()
    with pytest.raises(Exception, match="failed to load private key"):
        WeChatPay(WeChatPayType.H5, keys.mchid, pkcs1_pem, keys.merchant_serial_no, keys.appid,
                  keys.apiv3_key, public_key=keys.platform_public_pem,
                  public_key_id=keys.public_key_id)
    provider = make_provider(keys, gateway, merchant_private_key_pem="  " + pkcs1_pem)
    assert provider.start(order(), notify_url=NOTIFY_URL, return_url=RETURN_URL,
                          payer_client_ip="10.1.2.3").url


# -- the API, through the SDK, against the stand-in ----------------------------------------------

def test_h5_start_returns_the_h5_url_with_the_return_url(provider, standin):
    o = order()
    checkout = provider.start(o, notify_url=NOTIFY_URL, return_url=RETURN_URL,
                              payer_client_ip="10.1.2.3")

    query = parse_qs(urlsplit(checkout.url).query)
    held = standin.orders[o.out_trade_no]
    assert checkout.url.startswith(CASHIER + "?prepay_id=")
    assert query["redirect_url"] == [RETURN_URL] and query["prepay_id"] == [held.prepay_id]
    assert (held.amount_fen, held.notify_url, held.trade_type) == (5000, NOTIFY_URL, "MWEB")
    assert held.description == "电费充值 1-2-301" and held.trade_state == "NOTPAY"


def test_h5_start_needs_the_payer_ip(provider):
    with pytest.raises(ValueError, match="payer_client_ip"):
        provider.start(order(), notify_url=NOTIFY_URL, return_url=RETURN_URL)


def test_jsapi_params_carry_a_pay_sign_of_the_merchant_key(provider, standin, keys):
    o = order()
    params = provider.start_jsapi(o, openid="oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", notify_url=NOTIFY_URL)

    assert params["package"] == f"prepay_id={standin.orders[o.out_trade_no].prepay_id}"
    assert (params["appId"], params["signType"], params["timeStamp"]) == (keys.appid, "RSA",
                                                                         str(NOW))
    message = "".join(params[k] + "\n" for k in ("appId", "timeStamp", "nonceStr", "package"))
    serialization.load_pem_public_key(keys.merchant_public_pem.encode()).verify(
        base64.b64decode(params["paySign"]), message.encode(), padding.PKCS1v15(),
        hashes.SHA256())  # raises InvalidSignature otherwise


def test_query_of_a_paid_order_is_a_paid_notification(provider, standin, keys):
    o = paid_order(provider, standin)
    note = provider.query(o.out_trade_no)
    assert (note.paid, note.is_refund, note.amount_fen) == (True, False, 5000)
    assert note.provider_trade_no == standin.orders[o.out_trade_no].transaction_id
    assert (note.app_id, note.raw["mchid"]) == (keys.appid, keys.mchid)


def test_query_of_an_unpaid_order_is_not_paid(provider):
    o = order()
    provider.start(o, notify_url=NOTIFY_URL, return_url=RETURN_URL, payer_client_ip="10.1.2.3")
    note = provider.query(o.out_trade_no)
    assert (note.paid, note.raw["trade_state"], note.provider_trade_no) == (False, "NOTPAY", "")


def test_query_of_an_order_wechat_never_saw_is_none(provider):
    assert provider.query("FK_NEVER_STARTED") is None


def test_close_closes_an_unpaid_order(provider, standin):
    o = order()
    provider.start(o, notify_url=NOTIFY_URL, return_url=RETURN_URL, payer_client_ip="10.1.2.3")
    assert provider.close(o.out_trade_no) is None  # 204, its empty body signed and verified
    assert provider.query(o.out_trade_no).raw["trade_state"] == "CLOSED"


def test_close_of_a_paid_order_raises_orderpaid(provider, standin):
    o = paid_order(provider, standin)
    with pytest.raises(WechatPayError) as exc:
        provider.close(o.out_trade_no)
    assert (exc.value.status, exc.value.code) == (400, "ORDERPAID")


def test_refund_is_accepted_and_the_order_turns_refund(provider, standin):
    o = paid_order(provider, standin)
    reply = provider.refund(o.out_trade_no, "RF" + o.out_trade_no, 2000, 5000)
    assert (reply.status, reply.refund_fen, reply.raw["status"]) == (
        REFUND_PROCESSING, 2000, "PROCESSING")
    note = provider.query(o.out_trade_no)
    assert (note.is_refund, note.paid) == (True, False)
    with pytest.raises(WechatPayError) as exc:
        provider.refund(o.out_trade_no, "RF2" + o.out_trade_no, 3001, 5000)
    assert exc.value.status == 400


def test_close_of_an_order_wechat_never_saw_is_quiet(provider):
    assert provider.close("FK_NEVER_STARTED") is None


def test_a_payment_in_flight_is_invisible_then_lands_after_the_close(provider, standin):
    o = order()
    provider.start(o, notify_url=NOTIFY_URL, return_url=RETURN_URL, payer_client_ip="10.1.2.3")
    standin.pay(o.out_trade_no, in_flight=True)
    assert provider.query(o.out_trade_no).raw["trade_state"] == "NOTPAY"
    provider.close(o.out_trade_no)
    standin.settle(o.out_trade_no)
    assert provider.query(o.out_trade_no).paid is True  # the misbehaviour, on purpose


def test_a_refund_turns_success_and_is_confirmed_by_query(provider, standin):
    o = paid_order(provider, standin)
    provider.refund(o.out_trade_no, "RFq" + o.out_trade_no, 1500, 5000)

    result = provider.query_refund(o.out_trade_no, "RFq" + o.out_trade_no)

    assert (result.status, result.refund_fen) == (REFUND_SUCCEEDED, 1500)
    assert result.provider_refund_no == standin.refunds["RFq" + o.out_trade_no].refund_id
    assert provider.query_refund(o.out_trade_no, "RF_UNKNOWN") is None


def test_the_refund_notice_names_the_refund(provider, standin):
    o = paid_order(provider, standin)
    provider.refund(o.out_trade_no, "RFn" + o.out_trade_no, 1500, 5000)
    headers, body = standin.refund_notification("RFn" + o.out_trade_no)

    note = provider.parse_notify(as_starlette(headers), body)

    assert (note.is_refund, note.out_refund_no, note.refund_status, note.refund_fen) == (
        True, "RFn" + o.out_trade_no, REFUND_SUCCEEDED, 1500)


def test_bill_lines_are_payments_and_refunds_in_fen_with_exact_fees(provider, standin):
    o = paid_order(provider, standin, amount_fen=1234)
    provider.refund(o.out_trade_no, "RFl" + o.out_trade_no, 234, 1234)
    planted = paid_order(provider, standin, amount_fen=5000)
    standin.bill_overrides[planted.out_trade_no] = BillOverride(amount_fen=4999, fee_fen=50)
    gone = paid_order(provider, standin)
    standin.bill_overrides[gone.out_trade_no] = BillOverride(omit=True)
    today = datetime.fromtimestamp(time.time(), BEIJING).date()

    lines = {(line.out_trade_no, line.kind): line for line in provider.bill_lines(today)}

    pay_line, refund_line = lines[o.out_trade_no, BILL_PAYMENT], lines[o.out_trade_no, BILL_REFUND]
    assert (pay_line.amount_fen, pay_line.fee_e5) == (1234, 7404)  # 0.6 %, five decimals
    assert (refund_line.amount_fen, refund_line.fee_e5, refund_line.out_refund_no) == (
        234, -1404, "RFl" + o.out_trade_no)
    assert pay_line.provider_trade_no == standin.orders[o.out_trade_no].transaction_id
    assert (lines[planted.out_trade_no, BILL_PAYMENT].amount_fen,
            lines[planted.out_trade_no, BILL_PAYMENT].fee_e5) == (4999, 50_000)
    assert (gone.out_trade_no, BILL_PAYMENT) not in lines


def test_trade_bill_download_matches_its_sha1_and_parses(provider, standin):
    o = paid_order(provider, standin, amount_fen=1234)
    provider.refund(o.out_trade_no, "RF" + o.out_trade_no, 234, 1234)
    today = datetime.fromtimestamp(time.time(), BEIJING).date()

    reply = provider.trade_bill(today)
    bill = provider.download_trade_bill(today)

    mine = [e for e in bill.entries() if e.out_trade_no == o.out_trade_no]
    assert [(e.trade_state, e.amount_fen, e.refund_fen) for e in mine] == [
        ("SUCCESS", 1234, 0), ("REFUND", 1234, 234)]
    assert int(bill.summary["总交易单数"]) == len(bill.rows) >= 2
    assert reply["hash_type"] == "SHA1" and len(reply["hash_value"]) == 40
    raw = gzip.decompress(standin.bill_file(urlsplit(reply["download_url"]).query[6:]))
    assert hashlib.sha1(raw).hexdigest() == reply["hash_value"]
    assert raw.startswith("\ufeff交易时间,".encode()) and b"\r\n`" in raw


def test_a_paid_order_notified_over_http_parses_from_the_raw_request(provider, sandbox, standin):
    received = []

    async def notify(request):  # what the notify view does: dict(headers), raw body
        try:
            received.append(provider.parse_notify(dict(request.headers), await request.body()))
            reply = provider.ack()
        except NotificationRejected as exc:
            reply = provider.failure(exc.reason)
        return Response(reply[2], status_code=reply[0], media_type=reply[1])

    o = paid_order(provider, standin)
    headers, body = standin.notification_for(o.out_trade_no)
    with serve_in_thread(Starlette(routes=[Route("/n", notify, methods=["POST"])])) as base:
        replies = [sandbox.post_notification(headers, body, base + "/n") for _ in range(2)]

    assert [r.status_code for r in replies] == [200, 200]
    assert received[0] == received[1] == provider.query(o.out_trade_no)
    assert (received[0].paid, received[0].amount_fen) == (True, 5000)


def test_parse_trade_bill_takes_columns_by_name():
    text = ("商户订单号,交易时间\n`FK1,`2024-01-01 10:00:00\n"
            "总交易单数,订单总金额\n`1,`10.00\n")
    bill = parse_trade_bill(text)
    assert bill.rows == [{"商户订单号": "FK1", "交易时间": "2024-01-01 10:00:00"}]
    assert bill.summary == {"总交易单数": "1", "订单总金额": "10.00"}


def test_the_stand_in_refuses_a_request_signed_with_another_key(keys, gateway, other_private_pem):
    forger = make_provider(keys, gateway, merchant_private_key_pem=other_private_pem)
    with pytest.raises(WechatPayError) as exc:
        forger.query("FK1")
    assert (exc.value.status, exc.value.code) == (401, "SIGN_ERROR")


def test_a_reply_signed_with_another_platform_key_fails_the_sdk_check(keys, gateway):
    _, other_public = generate_rsa_keypair()
    provider = make_provider(keys, gateway, wechatpay_public_key_pem=other_public)
    with pytest.raises(WechatPayError) as exc:
        provider.start(order(), notify_url=NOTIFY_URL, return_url=RETURN_URL,
                       payer_client_ip="10.1.2.3")
    assert exc.value.code == "BAD_RESPONSE_SIGNATURE"


# -- keys ---------------------------------------------------------------------------------------

def test_sandbox_keys_are_created_once_and_private(tmp_path, keys):
    again = ensure_wechat_sandbox_keys(tmp_path)
    assert ensure_wechat_sandbox_keys(tmp_path) == again != keys
    for name in ("wechat_merchant_private.pem", "wechat_platform_private.pem", "wechat_apiv3_key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert len(again.apiv3_key) == 32 and again.apiv3_key.isascii() and again.apiv3_key.isalnum()
    assert again.public_key_id.startswith("PUB_KEY_ID_SANDBOX")
    assert len(again.merchant_serial_no) == 40
    assert again.merchant_private_pem.startswith("-----BEGIN PRIVATE KEY-----")
