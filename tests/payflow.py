"""A resident's payment, driven over HTTP (TestClient or a live server): top up, then notify."""

from urllib.parse import parse_qsl, urlsplit

NOTIFY = "/notify/alipay"


def start_payment(client, sandbox, number: str, yuan: str = "50"):
    """Top up through the account page; return the pay request the sandbox cashier verified."""
    reply = client.post(f"/a/{number}/topup", data={"amount": yuan, "channel": "alipay"})
    assert reply.status_code == 303, reply.text
    query = dict(parse_qsl(urlsplit(reply.headers["location"]).query, keep_blank_values=True))
    return sandbox.parse_pay_request(query)


def post_notification(client, sandbox, form):
    return client.post(NOTIFY, content=sandbox.encode_form(form),
                       headers={"content-type": "application/x-www-form-urlencoded"})
