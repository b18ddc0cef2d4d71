"""Structured logs: JSON lines with the ids of their path (app/logs.py)."""

import io
import json
import logging

import pytest
import structlog

from app import logs
from tests.payflow import post_notification, start_payment


@pytest.fixture
def json_lines():
    """Logging configured as in production (JSON), into a buffer; the lines as dicts."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    assert logs.configure("json") == "json"
    buffer = io.StringIO()
    root.handlers[0].setStream(buffer)

    def lines():
        return [json.loads(line) for line in buffer.getvalue().splitlines()]

    yield lines
    root.handlers[:], level = saved
    root.setLevel(level)
    structlog.reset_defaults()


def test_a_line_carries_the_ids_bound_on_its_path_and_no_others(json_lines):
    log = logging.getLogger("app.orders.jobs")
    with logs.bound(order="FK1"):
        log.info("order %s queried", "FK1")
        with logs.bound(account=7):
            log.warning("late")
    log.info("after")
    first, second, third = json_lines()
    assert first["event"] == "order FK1 queried" and first["order"] == "FK1"
    assert first["level"] == "info" and first["logger"] == "app.orders.jobs"
    assert first["at"].endswith("Z") or first["at"].endswith("+00:00")
    assert (second["order"], second["account"], second["level"]) == ("FK1", 7, "warning")
    assert "order" not in third and "account" not in third


def test_binding_a_functions_argument(json_lines):
    @logs.binding("refund", "out_refund_no")
    def submit(engine, out_refund_no):
        logging.getLogger("x").info("submitting")
        return out_refund_no

    assert submit(None, out_refund_no="RF9") == "RF9"
    assert json_lines()[0]["refund"] == "RF9"


def test_an_unknown_format_is_refused():
    with pytest.raises(ValueError, match="FEIKONG_LOG_FORMAT"):
        logs.configure("xml")


def test_each_request_has_an_id_sent_back(client):
    mine = client.get("/healthz", headers={"x-request-id": "lb-1234-abcd"})
    assert mine.headers["x-request-id"] == "lb-1234-abcd"
    forged = client.get("/healthz", headers={"x-request-id": "x\" injected"})
    assert forged.headers["x-request-id"] != "x\" injected"
    assert len(forged.headers["x-request-id"]) == 16
    assert client.get("/healthz").headers["x-request-id"] != forged.headers["x-request-id"]


def test_a_refused_notification_is_logged_with_its_order_not_another_requests_id(
        client, engine, cut_account, json_lines):
    sandbox = client.app.state.providers.sandbox_alipay
    pay = start_payment(client, sandbox, cut_account)
    form = sandbox.build_notification(pay, amount_fen=1)
    reply = client.post("/notify/alipay", content=sandbox.encode_form(form),
                        headers={"content-type": "application/x-www-form-urlencoded",
                                 "x-request-id": "first-request"})
    assert reply.text == "failure"
    refused = [line for line in json_lines() if "refused" in line["event"]]
    assert refused and refused[0]["order"] == pay.out_trade_no
    assert refused[0]["level"] == "warning"
    # the notify desk batches many requests in a task of its own: no request's id on its lines
    assert all("request" not in line for line in refused)


def test_a_batch_of_notifications_is_one_line_naming_each_order_by_outcome(
        client, engine, cut_account, json_lines):
    from app.orders import desk

    sandbox = client.app.state.providers.sandbox_alipay
    provider = client.app.state.providers.by_channel("alipay")
    a, b = (start_payment(client, sandbox, cut_account) for _ in range(2))
    batch = [desk.Arrived("alipay", provider, {}, sandbox.encode_form(
        sandbox.build_notification(p)), done=None) for p in (a, b, a)]
    assert desk.handle_batch(engine, batch) == [True, True, True]
    handled = [line for line in json_lines() if line["event"].startswith("notifications")]
    assert [line["event"] for line in handled] == ["notifications handled: credited 2, duplicate 1"]
    assert handled[0]["orders"] == {"credited": sorted([a.out_trade_no, b.out_trade_no]),
                                    "duplicate": [a.out_trade_no]}
    assert handled[0]["level"] == "info" and "request" not in handled[0]


def test_the_sms_sdk_never_logs_a_request_even_at_debug(json_lines):
    logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("tencentcloud_sdk_common").debug("GetResponse: {'TemplateParamSet': ['483920']}")
    logging.getLogger("app.resident").debug("kept")
    assert [line["event"] for line in json_lines()] == ["kept"]
