"""Every route has a body limit: oversize gets 413 before the body is read (by its
Content-Length) or as soon as it passes the limit (chunked), and changes nothing. On a database
error the notify URL answers the provider's own failure reply (it retries), not HTTP 500."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from sqlmodel import select

from app.db import make_engine, transaction
from app.orders.models import RefusedNotification
from app.web.limits import BODY_LIMITS, DEFAULT_BODY_LIMIT, body_limit
from tests.factories import balance_of, entries_of
from tests.payflow import NOTIFY, post_notification, start_payment
from tests.identity.support import post


def test_the_limits_by_path():
    assert body_limit("/notify/alipay") == BODY_LIMITS["/notify/"] == 16 * 1024
    assert body_limit("/a/100001/topup") == DEFAULT_BODY_LIMIT
    assert body_limit("/manage/holidays") == 256 * 1024


def test_an_oversize_notification_is_refused_unread(client, engine):
    reply = client.post(NOTIFY, content=b"a=" + b"x" * (16 * 1024),
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 413
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(RefusedNotification)).all() == []


def _raw(base_url: str, head: bytes, chunks, timeout: float = 5.0) -> tuple[bytes, int]:
    """Send `head` then as many `chunks` as the server takes before it answers, on a raw
    socket to the live server; returns (its status line, the chunks sent)."""
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    sent = 0
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        reply = b""
        for chunk in chunks:
            try:
                reply += sock.recv(4096)
            except BlockingIOError:
                pass
            if reply:
                break
            try:
                sock.sendall(chunk)
            except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                break
            sent += 1
        sock.setblocking(True)
        while b"\r\n" not in reply:
            more = sock.recv(4096)
            if not more:
                break
            reply += more
    return reply.split(b"\r\n", 1)[0], sent


def test_a_300_mb_notification_is_refused_without_reading_it(stack):
    stack.start_web()
    head = (f"POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-"
            f"urlencoded\r\nContent-Length: {300 * 1024 * 1024}\r\n\r\n").encode()
    status, sent = _raw(stack.base_url, head, (b"x" * 65536 for _ in range(4800)))
    assert status.startswith(b"HTTP/1.1 413"), status
    assert sent < 100  # answered before the body came, not after 300 MB


def test_a_chunked_body_is_cut_off_at_the_limit(stack):
    stack.start_web()
    head = (f"POST {NOTIFY} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-"
            f"urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    chunk = b"10000\r\n" + b"x" * 65536 + b"\r\n"
    status, sent = _raw(stack.base_url, head, (chunk for _ in range(4800)))
    assert status.startswith(b"HTTP/1.1 413"), status
    assert sent < 100


def test_a_form_above_the_default_limit(client, cut_account):
    reply = post(client, f"/a/{cut_account}/topup",
                 {"amount": "50", "custom": "x" * DEFAULT_BODY_LIMIT})
    assert reply.status_code == 413


def test_with_the_database_down_the_provider_gets_its_failure_reply(client, engine, cut_account,
                                                                  tmp_path, caplog):
    sandbox = client.app.state.providers.sandbox_alipay
    pay = start_payment(client, sandbox, cut_account)
    form = sandbox.build_notification(pay)
    client.app.state.engine = make_engine(f"sqlite:///{tmp_path / 'gone' / 'feikong.db'}")
    client.app.state.notify_desk = None
    caplog.set_level("INFO")
    caplog.clear()
    reply = post_notification(client, sandbox, form)
    assert (reply.status_code, reply.text) == (200, "failure")  # Alipay's: it will retry
    # logged once: one warning naming the database, no traceback
    failures = [r for r in caplog.records if r.levelno >= 30]
    assert [r.getMessage()[:54] for r in failures] == [
        "alipay notification not handled, the database failed: "]
    assert failures[0].exc_info is None
    client.app.state.engine, client.app.state.notify_desk = engine, None
    assert post_notification(client, sandbox, form).text == "success"  # the retry credits once
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]
    assert balance_of(engine, cut_account) == 4500
