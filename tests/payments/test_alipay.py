"""AlipayProvider against the local Alipay sandbox: real keys, real RSA2, the SDK's own verify."""

from __future__ import annotations

import json
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from payments.alipay import AlipayProvider
from payments.base import Notification, NotificationRejected, OrderInfo, PaymentProvider
from standins.alipay_sandbox import SandboxAlipay, ensure_sandbox_keys, generate_rsa_keypair

APP_ID = "2021000000000001"
GATEWAY = "http://127.0.0.1:8000/sandbox/alipay/gateway.do"
NOTIFY_URL = "https://feikong.example/pay/alipay/notify"
RETURN_URL = "https://feikong.example/pay/done?order=A1&x=1"
ORDER = OrderInfo(out_trade_no="T20240101000001", amount_fen=5000, subject="电费充值 1-2-301")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return ensure_sandbox_keys(tmp_path_factory.mktemp("alipay-keys"))


@pytest.fixture(scope="module")
def other_private_pem():
    return generate_rsa_keypair()[0]


@pytest.fixture
def provider(keys):
    return AlipayProvider(APP_ID, keys.app_private_pem, keys.alipay_public_pem, GATEWAY)


@pytest.fixture
def sandbox(keys):
    return SandboxAlipay(keys, APP_ID)


def pay_query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def paid_request(provider, sandbox, order=ORDER):
    checkout = provider.start(order, notify_url=NOTIFY_URL, return_url=RETURN_URL)
    return sandbox.parse_pay_request(pay_query(checkout.url))


def parse(provider, sandbox, form):
    return provider.parse_notify({}, sandbox.encode_form(form))


def test_provider_meets_the_protocol(provider):
    assert isinstance(provider, PaymentProvider)
    assert provider.ack() == (200, "text/plain", "success")
    assert provider.failure() == (200, "text/plain", "failure")


def test_start_builds_a_wap_url_the_sandbox_accepts(provider, sandbox):
    checkout = provider.start(ORDER, notify_url=NOTIFY_URL, return_url=RETURN_URL)
    query = pay_query(checkout.url)
    req = sandbox.parse_pay_request(query)

    assert checkout.url.startswith(GATEWAY + "?")
    assert query["method"] == "alipay.trade.wap.pay" and query["sign_type"] == "RSA2"
    assert json.loads(query["biz_content"])["total_amount"] == "50.00"  # a string, not a float
    assert (req.out_trade_no, req.amount_fen) == (ORDER.out_trade_no, 5000)
    assert req.subject == ORDER.subject
    assert (req.notify_url, req.return_url, req.app_id) == (NOTIFY_URL, RETURN_URL, APP_ID)


def _change_amount(query):
    biz = json.loads(query["biz_content"])
    biz["total_amount"] = "0.01"
    query["biz_content"] = json.dumps(biz, separators=(",", ":"))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_change_amount, id="amount"),
        pytest.param(lambda q: q.update(notify_url="https://evil.example/n"), id="notify_url"),
        pytest.param(lambda q: q.update(sign_type="RSA"), id="sign_type"),
        pytest.param(lambda q: q.pop("sign"), id="no_sign"),
    ],
)
def test_sandbox_rejects_a_tampered_pay_request(provider, sandbox, tamper):
    query = pay_query(provider.start(ORDER, notify_url=NOTIFY_URL, return_url=RETURN_URL).url)
    tamper(query)
    with pytest.raises(NotificationRejected) as exc:
        sandbox.parse_pay_request(query)
    assert exc.value.reason == "bad_signature"


def test_sandbox_rejects_a_pay_request_signed_with_another_key(keys, sandbox, other_private_pem):
    forger = AlipayProvider(APP_ID, other_private_pem, keys.alipay_public_pem, GATEWAY)
    query = pay_query(forger.start(ORDER, notify_url=NOTIFY_URL, return_url=RETURN_URL).url)
    with pytest.raises(NotificationRejected, match="bad_signature"):
        sandbox.parse_pay_request(query)


def test_sandbox_rejects_a_pay_request_for_another_app(keys, provider):
    sandbox = SandboxAlipay(keys, "2021000000009999")
    query = pay_query(provider.start(ORDER, notify_url=NOTIFY_URL, return_url=RETURN_URL).url)
    with pytest.raises(NotificationRejected) as exc:
        sandbox.parse_pay_request(query)
    assert exc.value.reason == "wrong_app_id"


def test_start_refuses_a_zero_amount(provider):
    with pytest.raises(ValueError):
        provider.start(OrderInfo("T0", 0, "x"), notify_url=NOTIFY_URL, return_url=RETURN_URL)


def test_notification_parses(provider, sandbox):
    req = paid_request(provider, sandbox)
    form = sandbox.build_notification(req, trade_no="2024010122001400000000000001")

    note = parse(provider, sandbox, form)

    assert note == Notification(
        channel="alipay", out_trade_no=ORDER.out_trade_no, amount_fen=5000, paid=True,
        provider_trade_no="2024010122001400000000000001", app_id=APP_ID, is_refund=False, raw={},
    )
    assert form["total_amount"] == "50.00"
    assert note.raw["sign_type"] == "RSA2"  # verify() got a copy: it pops sign_type
    assert "sign" not in note.raw


@pytest.mark.parametrize(
    ("trade_status", "paid"),
    [
        ("TRADE_SUCCESS", True),
        ("TRADE_FINISHED", True),
        ("TRADE_CLOSED", False),
        ("WAIT_BUYER_PAY", False),
    ],
)
def test_paid_follows_trade_status(provider, sandbox, trade_status, paid):
    form = sandbox.build_notification(paid_request(provider, sandbox), trade_status=trade_status)
    assert parse(provider, sandbox, form).paid is paid


@pytest.mark.parametrize(
    ("amount_fen", "total_amount"), [(1, "0.01"), (1010, "10.10"), (10_000_000, "100000.00")]
)
def test_amount_is_converted_exactly(provider, sandbox, amount_fen, total_amount):
    form = sandbox.build_notification(paid_request(provider, sandbox), amount_fen=amount_fen)
    assert form["total_amount"] == total_amount
    assert parse(provider, sandbox, form).amount_fen == amount_fen


def test_a_partial_refund_notice_is_not_a_payment(provider, sandbox):
    extra = {"refund_fee": "10.00", "gmt_refund": "2024-01-02 10:00:00.123", "out_biz_no": "R1"}
    form = sandbox.build_notification(paid_request(provider, sandbox), extra=extra)

    note = parse(provider, sandbox, form)

    assert (note.paid, note.is_refund, note.amount_fen) == (True, True, 5000)


def test_another_app_id_is_exposed_not_judged(provider, sandbox):
    form = sandbox.build_notification(paid_request(provider, sandbox), app_id="2021000000009999")
    assert parse(provider, sandbox, form).app_id == "2021000000009999"


def _amount_after_signing(form):
    form["total_amount"] = "5000.00"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_amount_after_signing, id="amount_after_signing"),
        pytest.param(lambda f: f.update(out_trade_no="T2"), id="order_after_signing"),
        pytest.param(lambda f: f.pop("sign"), id="no_sign"),
        pytest.param(lambda f: f.update(sign="not base64!"), id="garbage_sign"),
        pytest.param(lambda f: f.update(sign_type="RSA"), id="sign_type_rsa"),
    ],
)
def test_a_tampered_notification_is_rejected(provider, sandbox, tamper):
    form = sandbox.build_notification(paid_request(provider, sandbox))
    tamper(form)
    with pytest.raises(NotificationRejected) as exc:
        parse(provider, sandbox, form)
    assert exc.value.reason == "bad_signature"


def test_a_notification_signed_with_another_key_is_rejected(provider, sandbox, other_private_pem):
    form = sandbox.build_notification(paid_request(provider, sandbox))
    forged = sandbox.sign_form(form, private_pem=other_private_pem)
    with pytest.raises(NotificationRejected) as exc:
        parse(provider, sandbox, forged)
    assert exc.value.reason == "bad_signature"


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"out_trade_no": None}, id="no_out_trade_no"),
        pytest.param({"total_amount": None}, id="no_total_amount"),
        pytest.param({"trade_no": ""}, id="blank_trade_no"),
        pytest.param({"total_amount": "50.001"}, id="three_decimals"),
        pytest.param({"total_amount": "-1.00"}, id="negative"),
        pytest.param({"total_amount": "abc"}, id="not_a_number"),
    ],
)
def test_a_signed_but_malformed_notification_is_rejected(provider, sandbox, extra):
    form = sandbox.build_notification(paid_request(provider, sandbox), extra=extra)
    with pytest.raises(NotificationRejected) as exc:
        parse(provider, sandbox, form)
    assert exc.value.reason == "malformed"


@pytest.mark.parametrize(
    "body",
    [b"\xff\xfe", "subject=%FF%FE&sign=x".encode(), b"a=1&a=2&sign=x"],
    ids=["not_ascii", "not_utf8", "duplicate_field"],
)
def test_an_unreadable_body_is_malformed(provider, body):
    with pytest.raises(NotificationRejected) as exc:
        provider.parse_notify({}, body)
    assert exc.value.reason == "malformed"


@pytest.mark.parametrize(
    "text",
    [
        "a=1&b=&c&&d=x=y&e=%zz&f=%E7%94%B5+1%2B1&g+h=i%20j&%E6%88%B7=%26",
        "&&",
        "",
        "sign=abc%2F%2B%3D&sign_type=RSA2&subject=" + "%E7%94%B5" * 40,
        "&".join(f"k{i}=v" for i in range(100)),  # as many fields as allowed
    ],
    ids=["mixed", "only_separators", "empty", "encoded", "hundred_fields"],
)
def test_the_form_parser_reads_what_parse_qsl_reads(text):
    from payments.alipay import MAX_FORM_FIELDS, _parse_form

    expected = dict(parse_qsl(text, keep_blank_values=True, errors="strict",
                              max_num_fields=MAX_FORM_FIELDS))
    assert _parse_form(text.encode("ascii")) == expected


@pytest.mark.parametrize(
    "body", [b"&".join(b"k%d=v" % i for i in range(101)), b"a=%FF", b"x=1&x=1"],
    ids=["too_many_fields", "not_utf8", "duplicate"])
def test_the_form_parser_refuses_what_parse_qsl_refuses_or_repeats(body):
    from payments.alipay import _parse_form

    with pytest.raises(NotificationRejected) as exc:
        _parse_form(body)
    assert exc.value.reason == "malformed"


def test_non_ascii_and_ampersands_round_trip(provider, sandbox):
    order = OrderInfo("T20240101000002", 3000, "电费充值 1-2-301 & 公摊 a=b+c %20")
    req = paid_request(provider, sandbox, order)
    extra = {"body": "户号 A&B=1&c", "passback_params": "x=1&y=%E4"}
    form = sandbox.build_notification(req, extra=extra)

    note = parse(provider, sandbox, form)

    assert req.subject == order.subject
    assert note.raw["subject"] == order.subject
    assert (note.raw["body"], note.raw["passback_params"]) == ("户号 A&B=1&c", "x=1&y=%E4")


def test_keys_are_created_once_with_private_files_0600(tmp_path):
    first = ensure_sandbox_keys(tmp_path / "keys")
    again = ensure_sandbox_keys(tmp_path / "keys")

    assert again == first
    assert first.app_private_pem != first.alipay_private_pem
    for name in ("app_private.pem", "alipay_private.pem"):
        assert stat.S_IMODE((tmp_path / "keys" / name).stat().st_mode) == 0o600
    assert (tmp_path / "keys" / "alipay_public.pem").read_text() == first.alipay_public_pem


def test_keys_may_be_indented_or_bare_base64(keys):
    indented = "\n".join("    " + line for line in keys.app_private_pem.splitlines())
    bare = "".join(keys.alipay_public_pem.splitlines()[1:-1])
    AlipayProvider(APP_ID, indented, bare, GATEWAY)
    with pytest.raises(ValueError):
        AlipayProvider(APP_ID, "not a key", bare, GATEWAY)


class _NotifyHandler(BaseHTTPRequestHandler):
    provider: AlipayProvider
    received: list[Notification]

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            self.received.append(self.provider.parse_notify(dict(self.headers), body))
            status, content_type, text = self.provider.ack()
        except NotificationRejected:
            status, content_type, text = self.provider.failure()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args):
        pass


def test_post_notification_reaches_a_notify_url_twice(provider, sandbox, other_private_pem):
    handler = type("Handler", (_NotifyHandler,), {"provider": provider, "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/pay/alipay/notify"
    try:
        form = sandbox.build_notification(paid_request(provider, sandbox))
        replies = [sandbox.post_notification(form, url).text for _ in range(2)]
        forged = sandbox.post_notification(sandbox.sign_form(form, other_private_pem), url)
    finally:
        server.shutdown()
        server.server_close()

    assert replies == ["success", "success"] and forged.text == "failure"
    assert [n.out_trade_no for n in handler.received] == [ORDER.out_trade_no] * 2


def test_the_openssl_check_agrees_with_the_sdks_own(provider, sandbox, other_private_pem):
    """The provider verifies RSA2 with `cryptography` in place of the SDK's pycryptodome: both
    must say the same of a good signature, an altered message and another key's signature."""
    from alipay import AliPay

    sdk_check = AliPay._verify.__get__(provider._client)  # the SDK's own, pycryptodome
    form = sandbox.build_notification(paid_request(provider, sandbox))
    forged = sandbox.sign_form(dict(form), private_pem=other_private_pem)
    message = "&".join(f"{k}={v}" for k, v in provider._client._ordered_data(
        {k: v for k, v in form.items() if k not in ("sign", "sign_type")}))
    cases = [(message, form["sign"], True),
             (message.replace("total_amount=50.00", "total_amount=5000.00"), form["sign"], False),
             (message, forged["sign"], False)]
    for text, signature, expected in cases:
        assert provider._client._verify(text, signature) is expected
        assert sdk_check(text, signature) is expected
