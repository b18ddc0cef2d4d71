"""Fault 4: a SQLite deployment runs out of space. The database may not grow past the pages it
has (`PRAGMA max_page_count`, set on every connection as it is checked out of the pool, as a
full disk would stop it); notifications are credited until one needs a page more. That one gets
Alipay's failure reply and a log line saying why, and nothing of it is written: no order paid
without its top-up, every balance its ledger's sum. With the space back, Alipay's next try
credits it, once. Degraded: from the first refused write until a notification is credited
again (most of it the time the space took to come back)."""

import logging
import re
import time

import pytest
from sqlalchemy import event
from sqlmodel import select

from app.db import transaction
from app.orders.models import PENDING, Order
from app.orders.providers import SANDBOX_ALIPAY_APP_ID
from standins.alipay_sandbox import PayRequest
from tests.conftest import USE_POSTGRES
from tests.faults.figures import audit
from tests.faults.storm import make_orders
from tests.payflow import post_notification

pytestmark = pytest.mark.skipif(USE_POSTGRES, reason="a SQLite file's size cap: SQLite only")

NO_CAP = 1073741823  # SQLite's default max_page_count


def test_sqlite_out_of_space(engine, client, caplog, fault_report):
    orders = make_orders(engine, 400, accounts=20)
    with engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    cap = {"pages": pages + 8}  # room for a few pages more, no more

    @event.listens_for(engine, "checkout")
    def _cap(dbapi_conn, _record, _proxy):
        dbapi_conn.execute(f"PRAGMA max_page_count = {cap['pages']}")

    sandbox = client.app.state.providers.sandbox_alipay
    credited: dict[str, int] = {}
    refused = None
    with caplog.at_level(logging.WARNING):
        for no, fen in orders.items():  # credited until one needs a page more
            form = sandbox.build_notification(
                PayRequest(no, fen, "电费充值", None, None, SANDBOX_ALIPAY_APP_ID))
            reply = post_notification(client, sandbox, form)
            if reply.text != "success":
                refused, refused_at = (no, fen, form, reply), time.monotonic()
                break
            credited[no] = fen
    assert refused is not None, "the capped file never filled up"
    no, fen, form, reply = refused
    assert (reply.status_code, reply.text) == (200, "failure")  # Alipay's: it will retry
    lines = [r.getMessage() for r in caplog.records if "database or disk is full" in r.getMessage()]
    assert any("notification not handled, the database failed" in line for line in lines), \
        [r.getMessage() for r in caplog.records]
    failed_at = {m.group(1) for r in caplog.records if r.exc_text
                 for m in [re.search(r"\[SQL: (\w+ \w+ \w+)", r.exc_text)] if m}
    half = audit(engine, credited)  # nothing of the refused one written, all before it whole
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(Order.status).where(Order.out_trade_no == no)).one() == PENDING
    again = post_notification(client, sandbox, form)  # Alipay tries again: still full
    assert again.text == "failure"

    cap_pages, cap["pages"] = cap["pages"], NO_CAP  # the space comes back
    retried = post_notification(client, sandbox, form)  # Alipay's next try
    degraded_s = time.monotonic() - refused_at
    duplicate = post_notification(client, sandbox, form)  # and once more, late
    credited[no] = fen
    loss = audit(engine, credited)
    fault_report("SQLite out of space", loss, degraded_s,
                 f"{len(credited) - 1} notifications credited in the capped file "
                 f"({cap_pages} pages), then Alipay's failure reply and the log line "
                 f"“{lines[-1][:110]}” (failed at {' / '.join(sorted(failed_at)) or '?'}, "
                 f"rolled back whole); while full, lost {half}; the space given back at once")
    assert half.nothing(), half
    assert (retried.text, duplicate.text) == ("success", "success")
    assert loss.nothing(), loss
    assert degraded_s < 45  # a sanity bound, not a timing test
