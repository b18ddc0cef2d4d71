"""The notify URLs' own lane (app/web/lanes.py): a provider's POST skips the residents'
middleware and the router, and still gets what every request gets (its request id, its timing
by route, the body limit, HSTS over HTTPS) and its provider's reply; anything else at those
paths goes the usual way."""

from prometheus_client import REGISTRY
from sqlmodel import select
from starlette.testclient import TestClient

from app.db import transaction
from app.main import create_app
from app.orders.models import PAID, Order
from app.settings import Settings
from tests.factories import balance_of
from tests.payflow import NOTIFY, post_notification, start_payment

FORM = {"content-type": "application/x-www-form-urlencoded"}


def timed(route: str, status: str) -> float:
    return REGISTRY.get_sample_value("feikong_http_request_seconds_count",
                                     {"route": route, "method": "POST", "status": status}) or 0


def test_a_notification_credits_with_its_request_id_and_its_route_timed(
        client, engine, cut_account):
    sandbox = client.app.state.providers.sandbox_alipay
    pay = start_payment(client, sandbox, cut_account)
    before = timed(NOTIFY, "200")
    reply = client.post(NOTIFY, content=sandbox.encode_form(sandbox.build_notification(pay)),
                        headers={**FORM, "x-request-id": "alipay-retry-1"})
    assert (reply.status_code, reply.text) == (200, "success")
    assert reply.headers["x-request-id"] == "alipay-retry-1"
    assert timed(NOTIFY, "200") == before + 1
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(Order.status).where(Order.out_trade_no == pay.out_trade_no)
                      ).one() == PAID
    assert balance_of(engine, cut_account) == -500 + 5000


def test_a_forged_notification_still_gets_the_failure_reply(client, cut_account):
    sandbox = client.app.state.providers.sandbox_alipay
    pay = start_payment(client, sandbox, cut_account)
    form = sandbox.build_notification(pay)
    form["total_amount"] = "5000.00"  # changed after signing
    reply = post_notification(client, sandbox, form)
    assert (reply.status_code, reply.text) == (200, "failure")
    assert balance_of(client.app.state.engine, cut_account) == -500


def test_other_methods_and_paths_go_the_usual_way(client):
    assert client.get(NOTIFY).status_code == 405
    assert client.post(NOTIFY + "/", content=b"x=1", headers=FORM).status_code in (307, 404, 405)
    assert client.post("/notify/paypal", content=b"x=1", headers=FORM).status_code == 404
    oversize = client.post(NOTIFY, content=b"a=" + b"x" * (16 * 1024), headers=FORM)
    assert oversize.status_code == 413


def test_hsts_on_a_notification_reply_over_https(engine, settings):
    https = Settings(**{**settings.model_dump(), "public_url": "https://dian.example.cn"})
    with TestClient(create_app(https, engine), base_url="https://dian.example.cn") as c:
        reply = c.post(NOTIFY, content=b"sign=forged&out_trade_no=FK1", headers=FORM)
        assert (reply.status_code, reply.text) == (200, "failure")
        assert reply.headers["strict-transport-security"] == "max-age=31536000"
