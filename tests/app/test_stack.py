"""The listening socket `serve --processes N` and the stand-ins share: connections accepted on
it must have Nagle's algorithm off (TCP_NODELAY), as on a socket asyncio binds itself. With it
on, every keep-alive response waited 40 ms for the client's delayed ACK (uvicorn writes a
response's head and body separately): `serve --processes 2` answered 23 requests a second on
one connection instead of about 1,200."""

import asyncio
import socket

from payments.serving import tcp_listener


def accepted_nodelay(listener: socket.socket) -> int:
    """TCP_NODELAY on the server side of a connection asyncio accepts from `listener`."""
    async def main() -> int:
        accepted: asyncio.Future = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport):
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    return asyncio.run(main())


def test_connections_accepted_on_our_listener_have_nagle_off():
    assert accepted_nodelay(tcp_listener("127.0.0.1", 0)) != 0


def test_the_check_sees_nagle_on_a_socket_made_the_old_way():
    # What `socket.create_server` gives (protocol 0): asyncio leaves Nagle on. This is the bug
    # the first test guards against, shown to be detectable.
    assert accepted_nodelay(socket.create_server(("127.0.0.1", 0))) == 0
