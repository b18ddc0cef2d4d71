"""Dlt645Client against the simulator's DL/T 645 gateway on 127.0.0.1 port 0: no mocks.

Each test runs its own event loop (`asyncio.run`). Where a test needs a gateway that misbehaves
in ways the simulator does not (answers from another address, garbled bytes), a stand-in server
in this file writes hand-made DL/T 645 frames on a real socket.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from meters.dlt645 import codec as c
from meters.dlt645.client import Dlt645Client
from meters.protocol import (CLOSE_ALLOWED, CONNECTION, DLT645_TCP, EXCEPTION, RELAY_FAULT,
                             REMOTE_TRIP, TIMEOUT, MeterError)
from meters.simulator import Simulator

METER = 123456789012
NEIGHBOUR = 1
TIMEOUT_S = 0.5


def run(scenario, *, timeout: float = TIMEOUT_S, client_options=None, **sim_options) -> None:
    """Run `await scenario(sim, client)` against one DL/T 645 gateway with METER and NEIGHBOUR."""

    async def main() -> None:
        async with Simulator([[METER, NEIGHBOUR]], protocol=DLT645_TCP, **sim_options) as sim:
            client = Dlt645Client("127.0.0.1", sim.gateways[0].port, timeout=timeout,
                                  **(client_options or {}))
            try:
                await scenario(sim, client)
            finally:
                await client.close()

    asyncio.run(main())


async def failure(awaitable) -> MeterError:
    with pytest.raises(MeterError) as caught:
        await awaitable
    return caught.value


def test_snapshot_equals_the_sim_meter():
    async def scenario(sim, client):
        meter = sim.meter(0, METER)
        meter.add_energy_wh(12_345_005)  # 5 Wh into a 10 Wh step: 1000 W needs 18 s to pass it
        meter.load_w = 1000.0

        snapshot = await client.read_snapshot(METER)
        expected = meter.snapshot()

        assert snapshot.energy_raw == 1_234_500  # 12345.00 kWh
        assert snapshot.energy_wh == 12_345_000
        assert snapshot.period_raw == (0, 0, 1_234_500, 0)
        assert (snapshot.voltage_dv, snapshot.current_ca, snapshot.power_w) == (
            expected.voltage_dv, expected.current_ca, expected.power_w)
        assert (snapshot.voltage_dv, snapshot.power_w) == (2200, 1000)
        assert (snapshot.relay_open, snapshot.status_bits) == (False, 0)

    run(scenario, client_options={"read_electrical": True})


def test_poll_reads_two_identifiers_by_default():
    async def scenario(sim, client):
        sim.meter(0, METER).load_w = 1000.0
        snapshot = await client.read_snapshot(METER)
        assert client.frames_sent == 2  # energy block, status word 3: no power
        assert sim.gateways[0].server.transactions == 2
        assert snapshot.power_w == 0  # not read

    run(scenario)


def test_energy_register_rolls_over_after_999999_99_kwh():
    async def scenario(sim, client):
        meter = sim.meter(0, METER)
        meter.add_energy_wh(99_999_999 * 10 + 5)  # 999999.99 kWh
        assert (await client.read_snapshot(METER)).energy_raw == 99_999_999

        meter.add_energy_wh(20)  # two steps on: past the top
        snapshot = await client.read_snapshot(METER)

        assert snapshot.energy_raw == 1
        assert snapshot.period_raw == (0, 0, 1, 0)

    run(scenario)


def test_cut_then_restore_reads_back():
    async def scenario(sim, client):
        await client.write_relay(METER, True)
        cut = await client.read_relay(METER)
        assert (cut.open, cut.status_bits) == (True, REMOTE_TRIP)
        assert (await client.read_snapshot(METER)).relay_open is True
        assert sim.meter(0, METER).relay_open is True

        await client.write_relay(METER, False)

        restored = await client.read_relay(METER)
        assert (restored.open, restored.status_bits) == (False, 0)
        assert sim.meter(0, METER).relay_open is False
        assert sim.meter(0, NEIGHBOUR).command_counter == 0  # the neighbour heard nothing

    run(scenario)


def test_cut_with_relay_delay_reads_closed_until_the_relay_moves():
    async def scenario(sim, client):
        await client.write_relay(METER, True)
        assert (await client.read_relay(METER)).open is False  # acknowledged is not moved

        assert await sim.wait_relay(0, METER, True)
        assert (await client.read_relay(METER)).open is True

    run(scenario, relay_delay_s=0.2)


def test_close_allowed_arms_the_relay_and_the_button_closes_it():
    async def scenario(sim, client):
        meter = sim.meter(0, METER)
        await client.write_relay(METER, True)

        await client.write_relay(METER, False, close_allowed=True)

        armed = await client.read_relay(METER)
        assert (armed.open, armed.close_allowed, armed.status_bits) == (True, True, CLOSE_ALLOWED)
        assert meter.close_allowed is True
        assert meter.press_button() is True
        pressed = await client.read_relay(METER)
        assert (pressed.open, pressed.close_allowed) == (False, False)

    run(scenario)


def test_keep_power_refuses_a_cut_and_says_why():
    async def scenario(sim, client):
        meter = sim.meter(0, METER)
        meter.keep_power = True

        error = await failure(client.write_relay(METER, True))

        assert (error.kind, error.exception_code) == (EXCEPTION, 0x01)
        assert error.what == "DL/T 645 error 0x01 (other error)"
        relay = await client.read_relay(METER)
        assert (relay.open, relay.keep_power) == (False, True)
        assert meter.relay_open is False and meter.command_counter == 0

    run(scenario)


def test_welded_relay_acknowledges_a_cut_and_stays_closed_without_a_fault_flag():
    async def scenario(sim, client):
        sim.meter(0, METER).welded = True

        await client.write_relay(METER, True)
        sent = client.frames_sent
        relay = await client.read_relay(METER)

        assert (relay.open, relay.relay_fault, relay.keep_power) == (False, False, False)
        assert client.frames_sent - sent == 2  # commanded off but on: status word 1 read too
        assert sim.meter(0, METER).command_counter == 1

    run(scenario)


def test_faulty_relay_is_flagged_by_the_meter():
    async def scenario(sim, client):
        sim.meter(0, METER).relay_fault = True

        await client.write_relay(METER, True)

        relay = await client.read_relay(METER)
        assert (relay.open, relay.relay_fault) == (False, True)
        assert (await client.read_snapshot(METER)).status_bits & RELAY_FAULT

    run(scenario)


def test_wrong_password_is_an_exception_with_the_error_byte():
    async def scenario(sim, client):
        error = await failure(client.write_relay(METER, True))

        assert (error.kind, error.exception_code) == (EXCEPTION, 0x04)
        assert "password wrong" in error.what
        assert sim.meter(0, METER).relay_open is False

    run(scenario, client_options={"password": 123456})


def test_matching_password_is_accepted():
    async def scenario(sim, client):
        sim.meter(0, METER).password = 123456
        await client.write_relay(METER, True)
        assert sim.meter(0, METER).relay_open is True

    run(scenario, client_options={"password": 123456})


def test_expired_command_is_refused():
    async def scenario(sim, client):
        error = await failure(client.write_relay(METER, True))
        assert (error.kind, error.exception_code) == (EXCEPTION, 0x01)
        assert sim.meter(0, METER).relay_open is False

    run(scenario, client_options={"command_validity_s": -60})


@pytest.mark.parametrize("fault", ["silent", "offline", "unknown"])
def test_a_meter_that_does_not_answer_times_out_within_the_timeout(fault):
    async def scenario(sim, client):
        address = 555 if fault == "unknown" else METER
        if fault != "unknown":
            setattr(sim.meter(0, METER), fault, True)
        started = time.monotonic()

        error = await failure(client.read_relay(address))

        assert error.kind == TIMEOUT
        assert time.monotonic() - started < TIMEOUT_S + 2.0  # bounded by the timeout, not hung
        assert (await client.read_relay(NEIGHBOUR)).open is False  # the bus is still usable

    run(scenario)


def test_silent_gateway_times_out_every_meter():
    async def scenario(sim, client):
        sim.gateways[0].silent = True
        for address in (METER, NEIGHBOUR):
            assert (await failure(client.read_snapshot(address))).kind == TIMEOUT

        sim.gateways[0].silent = False
        assert (await client.read_relay(METER)).open is False

    run(scenario)


def test_gateway_stopped_is_a_connection_error_and_a_restart_answers_again():
    async def scenario(sim, client):
        gateway = sim.gateways[0]
        assert (await client.read_relay(METER)).open is False
        port = gateway.port

        await gateway.stop()
        assert (await failure(client.read_relay(METER))).kind == CONNECTION
        assert (await failure(client.read_relay(METER))).kind == CONNECTION

        await gateway.start()
        assert gateway.port == port
        assert (await client.read_relay(METER)).open is False

    run(scenario)


def test_a_drop_while_waiting_fails_at_once_as_connection():
    async def scenario(sim, client):
        gateway = sim.gateways[0]
        sim.meter(0, METER).silent = True
        waiting = asyncio.create_task(client.read_relay(METER))
        while gateway.server.transactions == 0:  # the request reached the bus
            await asyncio.sleep(0.005)

        await gateway.stop()

        error = await failure(waiting)
        assert error.kind == CONNECTION

    run(scenario, timeout=30.0)


def test_one_warning_line_per_failed_transaction(caplog):
    async def scenario(sim, client):
        sim.meter(0, METER).silent = True
        with caplog.at_level(logging.INFO, logger="meters.dlt645.client"):
            await failure(client.read_relay(METER))
            sim.meter(0, METER).silent = False
            await client.read_relay(METER)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert f"meter {METER} @ 127.0.0.1:{sim.gateways[0].port}" in warnings[0].getMessage()
        assert "no response" in warnings[0].getMessage()
        assert any("answering again" in r.getMessage() for r in caplog.records)

    run(scenario)


def test_a_meter_without_the_energy_block_is_read_for_its_total():
    async def scenario(sim, client):
        sim.gateways[0].server.block_reads = False
        sim.meter(0, METER).add_energy_wh(1_005)

        first = await client.read_snapshot(METER)
        sent = client.frames_sent
        second = await client.read_snapshot(METER)

        assert (first.energy_raw, first.period_raw) == (100, (0, 0, 0, 0))
        assert second.energy_raw == 100
        assert client.frames_sent - sent == 2  # the block is not asked for again

    run(scenario)


def test_an_address_that_is_not_12_digits_is_refused_without_a_frame():
    async def scenario(sim, client):
        error = await failure(client.read_relay(10**12))
        assert error.kind == EXCEPTION and "12 digits" in error.detail
        assert client.frames_sent == 0

    run(scenario)


def test_keep_power_is_set_and_cleared_over_the_wire():
    async def scenario(sim, client):
        meter = sim.meter(0, METER)
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.gateways[0].port)
        frames = c.FrameReader()
        until = client._clock().replace(year=2099)

        async def command(action):
            writer.write(c.encode_control(METER, action, 0, 0, until))
            while (frame := frames.next()) is None:
                frames.feed(await reader.read(100))
            return frame

        try:
            assert (await command(c.KEEP_POWER_ON)).control == c.CONTROL_REPLY
            assert meter.keep_power is True
            assert (await client.read_relay(METER)).keep_power is True
            assert (await command(c.KEEP_POWER_OFF)).control == c.CONTROL_REPLY
            assert meter.keep_power is False
        finally:
            writer.close()

    run(scenario)


def test_broadcast_and_wildcard_frames_get_no_answer():
    async def scenario(sim, client):
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.gateways[0].port)
        frames = c.FrameReader()
        until = client._clock().replace(year=2099)
        broadcast = c.encode_frame(c.BROADCAST_ADDRESS, c.CONTROL,
                                   c.control_data(c.TRIP, 0, 0, until))
        wildcard = bytes.fromhex("68 AA 00 00 00 00 00 68 11 04 33 33 33 33 5B 16")
        try:
            writer.write(broadcast + wildcard + c.encode_read(NEIGHBOUR, c.STATUS_WORD_3))
            while (frame := frames.next()) is None:
                frames.feed(await reader.read(100))
        finally:
            writer.close()

        assert frame.address == NEIGHBOUR  # the first answer is to the third frame
        assert sim.meter(0, METER).relay_open is False

    run(scenario)


# --- a stand-in gateway that answers with frames that are not the answer ------------------------

def run_stand_in(answers, scenario) -> None:
    """A TCP server that, for each request, writes `answers(request_frame)` (raw bytes)."""

    async def main() -> None:
        writers = []

        async def serve(reader, writer):
            writers.append(writer)
            frames = c.FrameReader()
            try:
                while data := await reader.read(4096):
                    frames.feed(data)
                    while (frame := frames.next()) is not None:
                        writer.write(answers(frame))
            except (asyncio.CancelledError, ConnectionError):
                pass  # the test is over
            finally:
                writer.transport.abort()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        client = Dlt645Client("127.0.0.1", server.sockets[0].getsockname()[1], timeout=TIMEOUT_S)
        try:
            await scenario(client)
        finally:
            await client.close()
            server.close()
            for writer in writers:
                writer.transport.abort()
            await server.wait_closed()

    asyncio.run(main())


def status_reply(address: int, word: int) -> bytes:
    return c.encode_read_reply(address, c.STATUS_WORD_3, word)


def test_stale_and_foreign_frames_are_skipped_for_the_real_answer():
    def answers(request):
        return b"".join((
            c.encode_read(request.address, c.STATUS_WORD_3),  # our own request, echoed
            status_reply(NEIGHBOUR, 0x0050),  # another meter's answer
            c.encode_read_reply(request.address, c.POWER_TOTAL, 5),  # a stale reply
            b"\x00\x68\x99",  # noise
            status_reply(request.address, 0x0050)[:-2] + b"\x00\x16",  # bad checksum
            status_reply(request.address, 0x0010),  # the answer
        ))

    async def scenario(client):
        relay = await client.read_relay(METER)
        assert (relay.open, relay.close_allowed) == (True, True)

    run_stand_in(answers, scenario)


def test_only_wrong_frames_is_an_invalid_response_not_a_timeout():
    def answers(request):
        return status_reply(NEIGHBOUR, 0x0000) + status_reply(request.address, 0)[:-2] + b"\x00\x16"

    async def scenario(client):
        error = await failure(client.read_relay(METER))
        assert error.kind == EXCEPTION and error.exception_code is None
        assert f"a frame from address {NEIGHBOUR:012d}" in error.detail
        assert "bad checksum" in error.detail

    run_stand_in(answers, scenario)


def test_a_late_answer_to_a_timed_out_request_is_not_taken_for_the_next():
    sent = []

    def answers(request):
        sent.append(request)
        if len(sent) == 1:
            return b""  # the first request gets no answer in time
        late = c.encode_read_reply(request.address, c.POWER_TOTAL, 12345)  # answer to the 1st
        return late + status_reply(request.address, 0x0050)

    async def scenario(client):
        assert (await failure(client.read_snapshot(METER))).kind == TIMEOUT
        relay = await client.read_relay(METER)
        assert relay.open is True

    run_stand_in(answers, scenario)
