"""Serving a stand-in's ASGI app on loopback from a thread (tests, benches)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from app.stack import tcp_listener


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", timeout: float = 10.0) -> Iterator[str]:
    """Serve `app` with uvicorn on `host`, a free port, in a daemon thread; yield its base URL
    ("http://127.0.0.1:PORT", what `_gate_way` wants) and stop the server on exit."""
    sock = tcp_listener(host, 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    server.install_signal_handlers = lambda: None
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the stand-in did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
