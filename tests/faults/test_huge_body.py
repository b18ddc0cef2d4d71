"""Fault 5: 100 MB posted to the notify URL of a live server (`feikong serve`, a process of its
own, on a real socket), once with a Content-Length that says so and once chunked (no length
given). The server answers 413 at once, reads no more of it (its peak RSS does not grow by
anything like 100 MB) and closes the connection; the next genuine notification is credited.
Degraded: from the start of the upload until that notification was acknowledged."""

import select
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from app.orders.providers import SANDBOX_ALIPAY_APP_ID
from standins.alipay_sandbox import PayRequest
from tests.faults.figures import audit
from tests.faults.storm import FORM, alipay_signer, make_orders, serve
from tests.payflow import NOTIFY

MB = 1024 * 1024
TOTAL = 100 * MB
CHUNK = 64 * 1024


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines()
                    if line.startswith("VmHWM:"))) / 1024


def upload(base_url: str, chunked: bool, give_up_s: float = 30.0) -> dict:
    """POST 100 MB to the notify URL over a raw socket, sending as long as the server takes it
    (a client that does not wait for an early answer); stops when the server closes the
    connection. What came back and when, and how much the server let in."""
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    framing = ("Transfer-Encoding: chunked" if chunked else f"Content-Length: {TOTAL}")
    head = (f"POST {NOTIFY} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/"
            f"x-www-form-urlencoded\r\n{framing}\r\n\r\n").encode()
    chunk = (b"%x\r\n" % CHUNK + b"x" * CHUNK + b"\r\n") if chunked else b"x" * CHUNK
    started = time.monotonic()
    out = {"status": b"", "answered_s": None, "sent_when_answered": None, "sent": 0,
           "closed_s": None}
    reply, pending = b"", memoryview(b"")
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        while time.monotonic() - started < give_up_s:
            body_left = out["sent"] < TOTAL
            readable, writable, _ = select.select([sock], [sock] if body_left else [], [], 1.0)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:  # the server closed the connection
                    out["closed_s"] = time.monotonic() - started
                    break
                reply += data
                if out["answered_s"] is None and b"\r\n" in reply:
                    out["answered_s"] = time.monotonic() - started
                    out["sent_when_answered"] = out["sent"]
                    out["status"] = reply.split(b"\r\n", 1)[0]
            if writable and body_left:
                if not pending:
                    pending = memoryview(chunk)
                try:
                    n = sock.send(pending)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):  # closed under our feet
                    out["closed_s"] = time.monotonic() - started
                    break
                pending = pending[n:]
                out["sent"] += n
    out["status"] = out["status"] or reply.split(b"\r\n", 1)[0]
    return out


def test_100_mb_posted_to_a_notify_url(engine, settings, tmp_path, fault_report):
    orders = make_orders(engine, 2, accounts=2)
    signer = alipay_signer(tmp_path)
    server = serve(settings.database_url, tmp_path)
    results, paid = [], {}
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as web:
            assert web.get("/healthz").status_code == 200  # warmed: its start-up peak is past
            for chunked, (no, fen) in zip((False, True), orders.items()):
                before = peak_rss_mb(server.proc.pid)
                started = time.monotonic()
                sent = upload(server.base_url, chunked)
                form = signer.build_notification(
                    PayRequest(no, fen, "电费充值", None, None, SANDBOX_ALIPAY_APP_ID))
                reply = web.post(NOTIFY, content=signer.encode_form(form), headers=FORM)
                degraded_s = time.monotonic() - started
                paid[no] = fen
                results.append((chunked, sent, before, peak_rss_mb(server.proc.pid),
                                (reply.status_code, reply.text), degraded_s,
                                audit(engine, paid)))
        alive = server.proc.poll() is None
    finally:
        code = server.stop()
    for chunked, sent, before, after, reply, degraded_s, loss in results:
        answered = (f"{sent['status'].decode(errors='replace')} after "
                    f"{sent['answered_s']:.2f} s with {sent['sent_when_answered'] / MB:.1f} MB "
                    f"sent" if sent["answered_s"] is not None else "no answer")
        closed = (f"closed by the server after {sent['closed_s']:.2f} s, {sent['sent'] / MB:.1f} "
                  "MB of 100 sent by then (into socket buffers)"
                  if sent["closed_s"] is not None else "never closed")
        fault_report(f"100 MB POST to a notify URL ({'chunked' if chunked else 'Content-Length'})",
                     loss, degraded_s,
                     f"{answered}; {closed}; server peak RSS {before:.0f} → {after:.0f} MB; the "
                     f"next genuine notification answered {reply[1]!r}")
        assert loss.nothing(), loss
        assert sent["status"].startswith(b"HTTP/1.1 413"), sent
        assert sent["closed_s"] is not None, sent  # the server hung up
        assert sent["sent"] < 50 * MB, sent  # it did not read it all (what it let in: buffers)
        assert after - before < 50, (before, after)  # not ~100 MB more
        assert reply == (200, "success")
        assert degraded_s < 45  # a sanity bound, not a timing test
    assert alive, server.tail()
    assert code == 0, server.tail()
