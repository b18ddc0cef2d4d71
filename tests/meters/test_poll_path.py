"""The poll path's fast parts keep their meaning: the block codec, the simulator's answer, the
client's response decoding and dropped connections, and how poll results are stored."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pytest
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu.register_message import ReadHoldingRegistersResponse
from sqlmodel import select

from app.db import transaction, utcnow
from app.estate.models import Meter, Reading
from app.settings import Settings
from meters import gateway_loop, store
from meters.modbus import registers as r
from meters.modbus.codec import decode_block, encode_block
from meters.protocol import MeterSnapshot
from meters.gateway_loop import GatewayLoop
from meters.simulator import SimMeter, Simulator
from meters.store import GatewaySpec, MeterSpec, ReadingResult
from meters.modbus.client import GatewayClient, _ReadRegistersResponse
from meters.protocol import MeterError
from tests.factories import EstateFactory, meter_of

T0 = 1_767_240_000.0  # 2026-01-01 04:00 UTC, 12:00 in Shanghai


def meter_states():
    plain = SimMeter(1, load_w=1_234, energy_wh=56_789, clock=lambda: T0)
    tripped = SimMeter(2, load_w=500, relay_open=True, remote_trip=True, bypass_w=321,
                       command_counter=65_535, password=9_999, clock=lambda: T0)
    kept = SimMeter(3, load_w=40_000, keep_power=True, clock=lambda: T0)  # power above INT16
    wrapped = SimMeter(4, energy_wh=(2**32 + 5) * 10, clock=lambda: T0)
    return [plain, tripped, kept, wrapped]


@pytest.mark.parametrize("meter", meter_states(), ids=["plain", "tripped", "keep-power", "wrap"])
def test_simulator_answers_what_the_snapshot_says(meter):
    assert list(meter.block_words(T0)) == encode_block(meter.snapshot(T0), password=meter.password)
    assert decode_block(list(meter.block_words(T0))) == meter.snapshot(T0)


def test_block_decode_refuses_words_that_are_not_16_bit():
    words = [0] * r.BLOCK_COUNT
    words[r.VOLTAGE.address - r.BLOCK_START] = 0x1_0000
    with pytest.raises(ValueError, match="65536 is not a 16-bit word"):
        decode_block(words)


def test_block_encode_names_the_register_that_does_not_fit():
    snapshot = MeterSnapshot(energy_raw=2**32, energy_wh=0, period_raw=(0, 0, 0, 0), voltage_dv=0,
                             current_ca=0, power_w=0, relay_open=False, status_bits=0,
                             command_counter=0)
    with pytest.raises(ValueError, match="does not fit UINT32"):
        encode_block(snapshot)


@pytest.mark.parametrize("words", [[], [0], list(range(51)), [0xFFFF] * 125])
def test_fast_response_decode_matches_pymodbus(words):
    frame = ReadHoldingRegistersResponse(registers=words).encode()
    ours, theirs = _ReadRegistersResponse(), ReadHoldingRegistersResponse()
    ours.decode(frame)
    theirs.decode(frame)
    assert ours.registers == theirs.registers == words


def test_fast_response_decode_refuses_a_short_frame_like_pymodbus():
    frame = ReadHoldingRegistersResponse(registers=[1, 2, 3]).encode()[:-1]
    for response in (_ReadRegistersResponse(), ReadHoldingRegistersResponse()):
        with pytest.raises(ModbusIOException):
            response.decode(frame)


def test_connection_dropped_while_waiting_fails_at_once_and_the_client_recovers():
    async def main():
        async with Simulator([[1]], bus_delay_s=0.4) as sim:
            client = GatewayClient("127.0.0.1", sim.gateways[0].port, timeout=2.0)
            try:
                assert (await client.read_relay(1)).open is False
                waiting = asyncio.create_task(client.read_snapshot(1))
                await asyncio.sleep(0.1)  # the request waits on the bus
                started = time.monotonic()
                for connection in list(sim.gateways[0].server.active_connections.values()):
                    connection.transport.close()  # the gateway drops the connection
                with pytest.raises(MeterError) as caught:
                    await waiting
                assert caught.value.kind == "connection"
                assert time.monotonic() - started < 0.3  # not the 2 s timeout
                assert (await client.read_relay(1)).open is False  # reconnects on the next call
            finally:
                await client.close()

    asyncio.run(main())


def test_cancelling_a_waiting_request_still_cancels_it():
    async def main():
        async with Simulator([[1]], bus_delay_s=0.4) as sim:
            client = GatewayClient("127.0.0.1", sim.gateways[0].port, timeout=2.0)
            try:
                waiting = asyncio.create_task(client.read_snapshot(1))
                await asyncio.sleep(0.1)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            finally:
                await client.close()

    asyncio.run(main())


# --- storage ----------------------------------------------------------------------------------


@pytest.fixture
def three_meters(engine):
    factory = EstateFactory(engine)
    gateway_id = factory.gateway("127.0.0.1", 1)
    numbers = [factory.account(gateway_id=gateway_id, unit_id=u, balance_fen=10_000)
               for u in (1, 2, 3)]
    return [meter_of(engine, n).id for n in numbers]


def test_record_poll_stores_touches_and_readings_in_one_call(engine, three_meters):
    first, second, third = three_meters
    at = utcnow()
    store.record_readings(engine, [ReadingResult(m, 1_000, False, at, (0, 0, 100, 0))
                                   for m in three_meters])
    later = at + dt.timedelta(seconds=30)
    with transaction(engine) as s:
        s.get(Meter, second).failures_in_row = 2

    store.record_poll(engine, [ReadingResult(third, 1_010, False, later, (0, 0, 101, 0))],
                      [first, second], later)

    with transaction(engine, read_only=True) as s:
        meters = {m.id: m for m in s.exec(select(Meter))}
        readings = s.exec(select(Reading).order_by(Reading.id)).all()
    assert [(x.meter_id, x.energy_wh) for x in readings] == [
        (first, 1_000), (second, 1_000), (third, 1_000), (third, 1_010)]
    assert readings[-1].read_at == later
    assert meters[first].last_read_at == later and meters[first].last_energy_wh == 1_000
    assert meters[second].failures_in_row == 0 and meters[second].online
    assert meters[third].last_energy_wh == 1_010 and meters[third].last_period_raw == "0,0,101,0"


class FakeBus:
    def __init__(self, energy_wh: dict[int, int]):
        self.energy_wh = energy_wh

    async def read_snapshot(self, unit_id: int) -> MeterSnapshot:
        raw = self.energy_wh[unit_id] // 10
        return MeterSnapshot(energy_raw=raw, energy_wh=raw * 10, period_raw=(0, 0, raw, 0),
                             voltage_dv=2200, current_ca=0, power_w=0, relay_open=False,
                             status_bits=0, command_counter=0)

    async def close(self) -> None:
        pass


def test_unchanged_readings_wait_for_the_next_write_and_go_in_one_transaction(monkeypatch):
    writes = []
    monkeypatch.setattr(store, "record_poll",
                        lambda engine, readings, touched, at, wrap_wh: writes.append(
                            ([x.meter_id for x in readings], list(touched))))
    monkeypatch.setattr(gateway_loop, "FLUSH_EVERY_S", 0.0)  # readings: flushed at once
    units = range(1, 11)
    spec = GatewaySpec(1, "gw", "127.0.0.1", 1, tuple(MeterSpec(100 + u, u) for u in units))
    bus = FakeBus({u: 1_000 for u in units})
    loop = GatewayLoop(spec, bus, engine=None, settings=Settings(full_check_s=3600))

    async def poll_round():
        await loop.poll_round()
        await asyncio.gather(*(asyncio.wrap_future(f) for f in list(loop.pending_writes)))

    async def rounds():
        await poll_round()  # all new: judged
        writes_after_first = len(writes)
        bus.energy_wh[4] = 1_010
        await poll_round()  # one changed, nine unchanged
        return writes_after_first

    try:
        first_writes = asyncio.run(rounds())
    finally:
        loop.close()
    assert sum(len(readings) for readings, _ in writes[:first_writes]) == 10
    second = writes[first_writes:]
    # The touches of meters 101-103 go with meter 104's reading; the rest at the round's end:
    # two transactions for ten meters, not one per meter or per 0.5 s.
    assert second == [([104], [101, 102, 103]), ([], [105, 106, 107, 108, 109, 110])]


def test_pymodbus_closing_after_unanswered_requests_leaves_the_caller_uncancelled():
    async def main():
        async with Simulator([[1, 2]]) as sim:
            sim.meter(0, 1).silent = True
            client = GatewayClient("127.0.0.1", sim.gateways[0].port, timeout=0.1)
            try:
                kinds = []
                for _ in range(6):  # pymodbus closes the socket after retries + 3 of these
                    with pytest.raises(MeterError) as caught:
                        await client.read_relay(1)
                    kinds.append(caught.value.kind)
                    await asyncio.sleep(0.02)  # no stray cancellation lands here
                assert "timeout" in kinds
                assert asyncio.current_task().cancelling() == 0
                assert (await client.read_relay(2)).open is False
            finally:
                await client.close()

    asyncio.run(main())
