"""Listening sockets made right (`tcp_listener`: the web processes' and the stand-ins'), and
serving a stand-in's ASGI app on loopback from a thread (tests, benches). The lowest layer that
listens: `app.stack` imports from here, never the other way (docs/architecture.md)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn


def tcp_listener(host: str, port: int, backlog: int = 2048, *, reuse_port: bool = False,
                 listen: bool = True) -> socket.socket:
    """A listening TCP socket to hand to uvicorn (`sockets=`), made the way asyncio makes its
    own: with the protocol IPPROTO_TCP, so that asyncio sets TCP_NODELAY on every connection
    it accepts. `socket.create_server` and `socket.socket()` leave the protocol 0; asyncio then
    leaves Nagle's algorithm on, and as uvicorn writes a response's head and body separately,
    the body waited for the client's delayed ACK: 40 ms more on every keep-alive request.

    `reuse_port`: SO_REUSEPORT, so that several processes each listen on a socket of their own
    on the same port and the kernel spreads the connections between them. `listen=False`
    binds only (a bound socket that does not listen is given no connections)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listen:
            sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock


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
