"""The simulator on 127.0.0.1 port 0 and the real client: no mocks.

Each test runs its own event loop (`asyncio.run`), so no pytest plugin is needed.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from pymodbus.client import AsyncModbusTcpClient

from meters.modbus import registers as r
from meters.simulator import Simulator
from meters.modbus.client import GatewayClient
from meters.protocol import MeterError

UNITS = [1, 2, 3]
FAST_LOAD_W = 3_600_000  # 1000 Wh per second: 100 register units per second


def run(scenario, *, timeout: float = 0.5, **sim_options) -> None:
    """Run `await scenario(sim, client)` against one simulated gateway with UNITS."""

    async def main() -> None:
        async with Simulator([UNITS], **sim_options) as sim:
            client = GatewayClient("127.0.0.1", sim.gateways[0].port, timeout=timeout)
            try:
                await scenario(sim, client)
            finally:
                await client.close()

    asyncio.run(main())


async def raw_request(sim: Simulator, request):
    """Send one request with the bare pymodbus client (for what GatewayClient never sends)."""
    client = AsyncModbusTcpClient("127.0.0.1", port=sim.gateways[0].port, timeout=0.5, retries=0)
    await client.connect()
    try:
        return await request(client)
    finally:
        client.close()


def test_snapshot_shows_added_energy():
    async def scenario(sim, client):
        sim.meter(0, 2).add_energy_wh(12_345)

        snapshot = await client.read_snapshot(2)

        assert snapshot.energy_raw == 1234
        assert snapshot.energy_wh == 12_340
        assert snapshot.relay_open is False
        assert snapshot.command_counter == 0

    run(scenario)


def test_energy_register_wraps_at_2_32():
    async def scenario(sim, client):
        sim.meter(0, 1).add_energy_wh((r.ENERGY_WRAP + 5) * r.ENERGY_WH_PER_UNIT)

        assert (await client.read_snapshot(1)).energy_raw == 5

    run(scenario)


def test_cut_then_restore_reads_back():
    async def scenario(sim, client):
        await client.write_relay(1, True)
        assert (await client.read_relay(1)).open is True
        cut = await client.read_snapshot(1)
        assert (cut.relay_open, cut.remote_trip, cut.command_counter) == (True, True, 1)

        await client.write_relay(1, False)
        assert (await client.read_relay(1)).open is False
        assert (await client.read_snapshot(1)).command_counter == 2
        assert sim.meter(0, 2).relay_open is False  # the neighbour never moved

    run(scenario)


def test_relay_moves_only_after_its_delay():
    async def scenario(sim, client):
        await client.write_relay(3, True)  # acknowledged at once

        assert (await client.read_relay(3)).open is False  # old state until the delay passes
        assert (await client.read_snapshot(3)).command_counter == 1
        await asyncio.sleep(0.35)
        assert sim.meter(0, 3).relay_open is True  # moved without anyone reading
        assert (await client.read_relay(3)).open is True

    run(scenario, relay_delay_s=0.3)


def test_keep_power_acknowledges_a_cut_but_stays_closed():
    async def scenario(sim, client):
        sim.meter(0, 1).keep_power = True

        await client.write_relay(1, True)

        snapshot = await client.read_snapshot(1)
        assert (snapshot.relay_open, snapshot.keep_power, snapshot.command_counter) == (
            False, True, 1,
        )

    run(scenario)


@pytest.mark.parametrize("unit_id", [2, 99], ids=["offline", "unknown"])
def test_gateway_answers_0x0b_for_offline_or_unknown_unit(unit_id):
    async def scenario(sim, client):
        sim.meter(0, 2).offline = True

        with pytest.raises(MeterError) as caught:
            await client.read_snapshot(unit_id)

        assert (caught.value.kind, caught.value.exception_code) == ("exception", 0x0B)
        assert f"meter {unit_id} @ 127.0.0.1:" in str(caught.value)
        assert "Modbus exception 0x0B (gateway target failed to respond)" in str(caught.value)
        assert (await client.read_snapshot(1)).relay_open is False  # the bus still works

    run(scenario)


def test_write_to_offline_meter_is_refused_and_relay_unchanged():
    async def scenario(sim, client):
        sim.meter(0, 2).offline = True

        with pytest.raises(MeterError, match="0x0B"):
            await client.write_relay(2, True)

        assert (sim.meter(0, 2).relay_open, sim.meter(0, 2).command_counter) == (False, 0)

    run(scenario)


@pytest.mark.parametrize("words", [[0, 0], [1, 3], [2, 1], [1]])
def test_invalid_relay_control_value_is_exception_03(words):
    async def scenario(sim, client):
        response = await raw_request(
            sim, lambda raw: raw.write_registers(r.RELAY_CONTROL.address, words, device_id=1)
        )

        assert response.isError() and response.exception_code == 0x03
        assert (sim.meter(0, 1).relay_open, sim.meter(0, 1).command_counter) == (False, 0)

    run(scenario)


def test_fc06_is_refused_with_exception_01():
    async def scenario(sim, client):
        response = await raw_request(
            sim, lambda raw: raw.write_register(r.RELAY_CONTROL.address, 1, device_id=1)
        )

        assert response.isError() and response.exception_code == 0x01

    run(scenario)


def test_write_to_read_only_register_is_exception_02():
    async def scenario(sim, client):
        response = await raw_request(
            sim, lambda raw: raw.write_registers(r.ENERGY_TOTAL.address, [0, 0], device_id=1)
        )

        assert response.isError() and response.exception_code == 0x02

    run(scenario)


def test_silent_meter_times_out_without_blocking_its_neighbours():
    async def scenario(sim, client):
        sim.meter(0, 1).silent = True
        started = time.monotonic()

        with pytest.raises(MeterError) as caught:
            await client.read_relay(1)

        assert caught.value.kind == "timeout"
        assert time.monotonic() - started < 0.6
        assert (await client.read_relay(2)).open is False

    run(scenario, timeout=0.2)


def test_stopped_gateway_fails_promptly_and_client_recovers_after_restart():
    async def scenario(sim, client):
        assert (await client.read_relay(1)).open is False
        await sim.gateways[0].stop()
        started = time.monotonic()

        for _ in range(2):  # connection lost mid-request, then connect refused
            with pytest.raises(MeterError) as caught:
                await client.read_relay(1)
            assert caught.value.kind in ("connection", "timeout")
        assert time.monotonic() - started < 0.5

        await sim.gateways[0].start()
        assert (await client.read_relay(1)).open is False

    run(scenario)


def test_client_created_before_the_gateway_is_up_connects_later():
    async def scenario():
        sim = Simulator([UNITS])
        await sim.start()
        port = sim.gateways[0].port
        await sim.stop()
        client = GatewayClient("127.0.0.1", port, timeout=0.5)

        assert await client.connect() is False
        with pytest.raises(MeterError) as caught:
            await client.read_snapshot(1)
        assert caught.value.kind == "connection"

        await sim.start()
        try:
            assert (await client.read_snapshot(1)).relay_open is False
        finally:
            await client.close()
            await sim.stop()

    asyncio.run(scenario())


def test_energy_accrues_while_closed_and_not_while_open():
    async def scenario(sim, client):
        first = (await client.read_snapshot(1)).energy_raw
        await asyncio.sleep(0.2)
        second = (await client.read_snapshot(1)).energy_raw
        assert second > first

        await client.write_relay(1, True)
        cut = (await client.read_snapshot(1)).energy_raw
        await asyncio.sleep(0.2)
        assert (await client.read_snapshot(1)).energy_raw == cut

    run(scenario, load_w=FAST_LOAD_W)


def test_several_gateways_share_one_loop():
    async def main():
        async with Simulator(2, 2) as sim:
            ports = [gateway.port for gateway in sim.gateways]
            assert len(set(ports)) == 2 and 0 not in ports
            sim.meter(1, 2).add_energy_wh(100)
            clients = [GatewayClient("127.0.0.1", port) for port in ports]
            try:
                snapshots = [await c.read_snapshot(2) for c in clients]
            finally:
                for c in clients:
                    await c.close()
        assert [s.energy_raw for s in snapshots] == [0, 10]

    asyncio.run(main())
