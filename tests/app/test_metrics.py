"""/metrics: Prometheus text for the allowed addresses only (404 to others); notifications by
outcome, requests by route (never by raw path), meters by state and the jobs' ages read from
the database; a confirmed restore observed from queue to read-back."""

from __future__ import annotations

import datetime as dt

import httpx

from app.jobs.runs import ORDER_JOBS, record_run
from app.web.metrics import allowed
from meters.store import CONFIRMED, AttemptResult, record_attempt
from tests.factories import meter_of


def test_who_may_read_them():
    assert allowed("127.0.0.1", "127.0.0.1,::1") and allowed("::1", "127.0.0.1,::1")
    assert allowed("10.1.2.3", "10.0.0.0/8") and not allowed("192.168.1.9", "10.0.0.0/8")
    assert not allowed("testclient", "127.0.0.1") and not allowed("127.0.0.1", "")


def value(text: str, series: str) -> float:
    """The value of one series (name with its labels, as printed) in a scrape."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not in the scrape")


def test_the_scrape_counts_what_happened(stack, engine, settings, cut_account):
    from app.commands.services import queue_restore
    from app.db import transaction
    from app.estate.models import Meter

    stack.start_web()
    record_run(engine, ORDER_JOBS)
    meter_id = meter_of(engine, cut_account).id
    with transaction(engine) as s:
        meter = s.get(Meter, meter_id)
        command = queue_restore(s, meter, "test")
        queued_at, command_id = command.created_at, command.id
    record_attempt(engine, command_id, AttemptResult(
        queued_at, queued_at + dt.timedelta(seconds=0.3), CONFIRMED, relay_open=False))
    with httpx.Client(base_url=stack.base_url) as web:
        before = web.get("/metrics").text
        web.post("/notify/alipay", content=b"sign=forged&out_trade_no=FK1",
                 headers={"content-type": "application/x-www-form-urlencoded"})
        web.get(f"/a/{cut_account}")
        after = web.get("/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text
    refused = 'feikong_notifications_total{outcome="refused",provider="alipay"}'
    assert value(text, refused) == (value(before, refused) if refused in before else 0) + 1
    # by route, never by raw path: no label holds the 户号 (the bare digits may well appear in
    # a sample's value, e.g. a byte count, so the check is on the label)
    assert 'route="/a/{number}"' in text and f'"/a/{cut_account}"' not in text
    assert value(text, 'feikong_meters{state="online"}') == 1
    assert value(text, f'feikong_job_last_run_age_seconds{{job="{ORDER_JOBS}"}}') < 60
    assert value(text, 'feikong_command_attempts_total{action="restore",outcome="confirmed"}') >= 1
    assert value(text, 'feikong_restore_seconds_bucket{le="0.5"}') >= 1


def test_not_served_to_other_addresses(stack, settings):
    settings.metrics_allow = "10.0.0.0/8"
    stack.start_web()
    with httpx.Client(base_url=stack.base_url) as web:
        assert web.get("/metrics").status_code == 404
