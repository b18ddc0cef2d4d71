"""A resident's payment, driven over HTTP (TestClient or a live server): top up, then notify."""

from urllib.parse import parse_qs, parse_qsl, urlsplit
from tests.identity.support import post

NOTIFY = "/notify/alipay"
WECHAT_NOTIFY = "/notify/wechat"


def start_payment(client, sandbox, number: str, yuan: str = "50"):
    """Top up through the account page; return the pay request the sandbox cashier verified."""
    reply = post(client, f"/a/{number}/topup", {"amount": yuan, "channel": "alipay"})
    assert reply.status_code == 303, reply.text
    query = dict(parse_qsl(urlsplit(reply.headers["location"]).query, keep_blank_values=True))
    return sandbox.parse_pay_request(query)


def post_notification(client, sandbox, form):
    return client.post(NOTIFY, content=sandbox.encode_form(form),
                       headers={"content-type": "application/x-www-form-urlencoded"})


def start_wechat_payment(client, standin, number: str, yuan: str = "50"):
    """Top up with WeChat Pay through the account page (a live server: our provider calls the
    stand-in mounted in it); return the order as the stand-in of WeChat holds it."""
    reply = post(client, f"/a/{number}/topup", {"amount": yuan, "channel": "wechat"})
    assert reply.status_code == 303, reply.text
    prepay_id = parse_qs(urlsplit(reply.headers["location"]).query)["prepay_id"][0]
    return standin.order_by_prepay_id(prepay_id)


def post_wechat_notification(client, headers, body: bytes):
    return client.post(WECHAT_NOTIFY, content=body, headers=headers)
