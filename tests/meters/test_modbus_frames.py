"""Our Modbus client on the wire, against frames written out by hand from the Modbus
specifications (not produced by our encoder or by pymodbus): a raw TCP server plays the gateway,
checks the bytes it receives and answers bytes of its own.

RTU over TCP (a transparent serial server): unit, PDU, CRC-16/MODBUS (polynomial 0xA001
reflected, initial 0xFFFF), low CRC byte first, no MBAP header. Modbus TCP: the MBAP header
(transaction id, protocol 0, length, unit) before the same PDU, no CRC.
"""

from __future__ import annotations

import asyncio

import pytest

from meters.modbus.client import GatewayClient
from meters.protocol import EXCEPTION, KEEP_POWER, REMOTE_TRIP, TIMEOUT, MeterError

# FC03 of unit 1: RELAY_STATE and STATUS_BITS (0x0030, 2 registers).
READ_RELAY_RTU = bytes.fromhex("01 03 00 30 00 02 C4 04")
# Its answer: 4 bytes, relay 0x0001 (open), status 0x0018 (remote trip b3 + keep-power b4).
RELAY_OPEN_KEEP_POWER_RTU = bytes.fromhex("01 03 04 00 01 00 18 AB F9")
# FC16 of unit 1: RELAY_CONTROL (0x0057), 2 registers, 4 bytes, words 0x0001 0x0001 (cut).
CUT_RTU = bytes.fromhex("01 10 00 57 00 02 04 00 01 00 01 27 75")
CUT_ACK_RTU = bytes.fromhex("01 10 00 57 00 02 F0 18")
# Exception 0x0B (gateway target failed to respond) to FC03: function code | 0x80.
NO_TARGET_RTU = bytes.fromhex("01 83 0B 00 F7")


async def play(frames: list[tuple[bytes, bytes | None]], client_calls):
    """A gateway that expects each request's exact bytes and sends the given answer (None: no
    answer); returns what `client_calls(client)` returned, and the requests it received."""
    received: list[bytes] = []
    done = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        for expected, answer in frames:
            request = await reader.readexactly(len(expected))
            received.append(request)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
        await done.wait()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = GatewayClient("127.0.0.1", port, timeout=0.5, rtu=True)
    try:
        return await client_calls(client), received
    finally:
        done.set()
        await client.close()
        server.close()
        await server.wait_closed()


def test_an_rtu_relay_read_is_the_hand_written_frame_and_decodes_its_answer():
    state, received = asyncio.run(play([(READ_RELAY_RTU, RELAY_OPEN_KEEP_POWER_RTU)],
                                       lambda c: c.read_relay(1)))
    assert received == [READ_RELAY_RTU]
    assert state.open and state.status_bits == REMOTE_TRIP | KEEP_POWER and state.keep_power


def test_an_rtu_cut_is_the_hand_written_fc16_frame():
    _, received = asyncio.run(play([(CUT_RTU, CUT_ACK_RTU)],
                                   lambda c: c.write_relay(1, True)))
    assert received == [CUT_RTU]


def test_an_rtu_exception_answer_is_a_meter_error_with_its_code():
    async def read(client):
        with pytest.raises(MeterError) as caught:
            await client.read_relay(1)
        return caught.value

    error, _ = asyncio.run(play([(READ_RELAY_RTU, NO_TARGET_RTU)], read))
    assert (error.kind, error.exception_code) == (EXCEPTION, 0x0B)
    assert "0x0B (gateway target failed to respond)" in str(error)


def test_an_rtu_answer_with_a_wrong_crc_is_not_taken():
    corrupt = RELAY_OPEN_KEEP_POWER_RTU[:-1] + bytes([RELAY_OPEN_KEEP_POWER_RTU[-1] ^ 0xFF])

    async def read(client):
        with pytest.raises(MeterError) as caught:
            await client.read_relay(1)
        return caught.value

    error, _ = asyncio.run(play([(READ_RELAY_RTU, corrupt)], read))
    assert error.kind == TIMEOUT  # the frame is dropped: no answer in time


def test_a_modbus_tcp_read_carries_the_mbap_header_before_the_same_pdu():
    received: list[bytes] = []

    async def main():
        async def handle(reader, writer):
            header = await reader.readexactly(7)
            pdu = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
            received.append(header + pdu)
            # the same transaction id back, protocol 0, length 7 (unit + 6 PDU bytes)
            writer.write(header[:2] + bytes.fromhex("00 00 00 07 01 03 04 00 00 00 10"))
            await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        client = GatewayClient("127.0.0.1", server.sockets[0].getsockname()[1], timeout=0.5)
        try:
            return await client.read_relay(1)
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    state = asyncio.run(main())
    (frame,) = received
    assert frame[2:] == bytes.fromhex("00 00 00 06 01 03 00 30 00 02")  # after the transaction id
    assert not state.open and state.keep_power
