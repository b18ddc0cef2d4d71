"""Poll rounds, in every meter protocol: how fast the worker reads an estate, and how close it
gets to the bus's floor. Every figure is named with its protocol as a suffix (modbus_tcp,
modbus_rtu for Modbus-RTU over TCP, dlt645 for DL/T 645-2007 over TCP).

1. Per protocol, 10,000 meters on 100 gateways, no bus delay: the simulator runs in two
   processes of 50 gateways each; the worker runs here (one asyncio task and one client per
   gateway) on a fresh SQLite file. Measured: the time for the first full poll round of every
   gateway (`poll_round_10k_*`: every reading is new and judged in full), readings per
   second, the time until every reading is stored (`poll_stored_10k_*`), then a second round
   at once (`poll_round_10k_steady_*`: nothing changed, so readings only move the reading
   time), the worker's RSS, and its CPU time per 1,000 readings in each round.
2. 8 gateways × 32 meters of each protocol with a bus delay of 0.15 s per transaction, the
   three protocols' 24 gateways in one worker at once (bus-bound, so they do not slow each
   other): each protocol's round time against its bus-bound floor, 32 meters × the frames of
   one poll × 0.15 s: 4.8 s for Modbus (one FC03), 9.6 s for DL/T 645 (two frames)
   (`bus_round_ratio_*`).

    python -m bench.poll
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from app.db import make_engine, utcnow
from app.estate.models import Account, Building, Estate, Gateway, Meter
from app.migrate import upgrade
from app.settings import Settings, use_settings
from bench.common import free_ports, rss_mb, start_process, stop_process
from meters.protocol import DLT645_TCP, MODBUS_RTU_OVER_TCP, MODBUS_TCP, PROTOCOLS
from meters.worker import Worker

SHORT = {MODBUS_TCP: "modbus_tcp", MODBUS_RTU_OVER_TCP: "modbus_rtu", DLT645_TCP: "dlt645"}
# Bus transactions in one meter's poll: one FC03 of the block for Modbus; for DL/T 645 the
# energy block and status word 3, one frame each (`Dlt645Client.read_snapshot`).
FRAMES_PER_POLL = {MODBUS_TCP: 1, MODBUS_RTU_OVER_TCP: 1, DLT645_TCP: 2}


def make_estate(engine, gateways: list[tuple[int, str]], per_gateway: int) -> None:
    """Gateways ((port, protocol) each), accounts and meters in bulk (one INSERT … VALUES batch
    per table). Unit ids 1..per_gateway (DL/T 645: the addresses 000000000001…)."""
    ports = [port for port, _protocol in gateways]
    with engine.begin() as conn:
        conn.execute(sa.insert(Estate.__table__), [{"name": "bench", "manager_phone": ""}])
        conn.execute(sa.insert(Building.__table__), [{"estate_id": 1, "name": "1"}])
        conn.execute(sa.insert(Gateway.__table__),
                     [{"id": g + 1, "name": f"gw{g}", "host": "127.0.0.1", "port": port,
                       "protocol": protocol} for g, (port, protocol) in enumerate(gateways)])
        n, now = len(ports) * per_gateway, utcnow()
        conn.execute(sa.insert(Account.__table__), [
            {"id": i + 1, "number": f"{i + 1:06d}", "building_id": 1, "household": str(i + 1),
             "holder_name": "", "holder_phone": "", "floor_area_m2": "0", "strategy": "residential",
             "price_yuan_per_kwh": "0.5583", "restore_threshold_fen": 0, "cut_below_fen": 0,
             "created_at": now} for i in range(n)])
        conn.execute(sa.insert(Meter.__table__), [
            {"id": i + 1, "account_id": i + 1, "gateway_id": i // per_gateway + 1,
             "unit_id": i % per_gateway + 1, "online": True, "failures_in_row": 0,
             "max_power_w": 13_800, "billed_exact_e7": 0, "billed_fen": 0}
            for i in range(n)])


async def first_rounds(worker: Worker, groups: dict[str, set[int]],
                       timeout: float) -> dict[str, float]:
    """Run the worker until every gateway finished its first poll round; returns, per group of
    gateway ids, the seconds from the worker's start until its last gateway did."""
    task = asyncio.create_task(worker.run())
    started = time.monotonic()
    done: dict[str, float] = {}
    while len(done) < len(groups):
        if time.monotonic() - started > timeout:
            raise RuntimeError("poll round did not finish in time")
        if task.done():
            task.result()
        for name, ids in groups.items():
            if name not in done and all(
                    g in worker.loops and worker.loops[g].rounds > 0 for g in ids):
                done[name] = time.monotonic() - started
        await asyncio.sleep(0.005)
    worker.round_task = task
    return done


async def until_stored(worker: Worker) -> None:
    while any(gl.pending_writes or gl.readings for gl in worker.loops.values()):
        await asyncio.sleep(0.01)


def run_case(protocols: list[str], gateways: int, per_gateway: int, bus_delay: float,
             sim_processes: int, steady: bool) -> dict:
    """`gateways` gateways of each protocol in `protocols` (each simulator process serves a
    share of one protocol's), read by one worker here; the first round timed per protocol,
    and with `steady`, a second round at once (all gateways)."""
    workdir = Path(tempfile.mkdtemp(prefix="feikong-poll-"))
    kinds = [p for p in protocols for _ in range(gateways)]
    base = free_ports(len(kinds))
    settings = use_settings(Settings(
        database_url=f"sqlite:///{workdir / 'poll.db'}", var_dir=workdir, poll_interval_s=3600,
        sweep_interval_s=3600, gateway_reload_s=3600, lease_ttl_s=3 * 3600, modbus_timeout_s=2.0))
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    make_estate(engine, [(base + g, p) for g, p in enumerate(kinds)], per_gateway)
    sims = []
    per_process = gateways // sim_processes
    try:
        for i, protocol in enumerate(protocols):
            for p in range(sim_processes):
                first = base + i * gateways + p * per_process
                args = [sys.executable, "-m", "meters.simulator", "--protocol", protocol,
                        "--gateways", str(per_process), "--meters", str(per_gateway),
                        "--base-port", str(first), "--bus-delay", str(bus_delay)]
                sims.append(start_process(args, dict(os.environ), f"gateway {per_process - 1}:",
                                          workdir / f"sim{i}-{p}.log"))
        worker = Worker(engine, settings)
        groups = {p: {i * gateways + g + 1 for g in range(gateways)}
                  for i, p in enumerate(protocols)}

        async def steady_round() -> tuple[float, float]:
            """A second round at once: readings equal to the first only move the reading time."""
            cpu0, started = time.process_time(), time.monotonic()
            for gl in worker.loops.values():
                gl.round_requested = True
                gl.wake.set()
            while any(gl.rounds < 2 for gl in worker.loops.values()):
                if time.monotonic() - started > 60:
                    raise RuntimeError("second poll round did not finish in time")
                await asyncio.sleep(0.01)
            elapsed = time.monotonic() - started
            await until_stored(worker)
            return elapsed, time.process_time() - cpu0

        async def main():
            t0, cpu0 = time.monotonic(), time.process_time()
            rounds = await first_rounds(worker, groups, timeout=110)
            cpu_round = time.process_time() - cpu0
            await until_stored(worker)
            stored_s = time.monotonic() - t0
            steady_s, cpu_steady = await steady_round() if steady else (0.0, 0.0)
            rss = rss_mb()
            worker.round_task.cancel()
            await asyncio.gather(worker.round_task, return_exceptions=True)
            return rounds, cpu_round, stored_s, steady_s, cpu_steady, rss

        rounds, cpu_round, stored_s, steady_s, cpu_steady, rss = asyncio.run(main())
        readings = len(kinds) * per_gateway
        return {"rounds": rounds, "stored_s": stored_s, "readings": readings,
                "steady_s": steady_s, "rss_mb": rss,
                "cpu_per_1000_ms": cpu_round / readings * 1000 * 1000,
                "steady_cpu_per_1000_ms": cpu_steady / readings * 1000 * 1000}
    finally:
        for proc in sims:
            stop_process(proc)
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    bus_gateways, bus_meters, bus_delay = 8, 32, 0.15
    # The busy buses of the three protocols at once (bus-bound: the worker's CPU is not what
    # limits them), each against its own floor.
    bus = run_case(list(PROTOCOLS), bus_gateways, bus_meters, bus_delay, 1, steady=False)
    for protocol in PROTOCOLS:
        short = SHORT[protocol]
        big = run_case([protocol], gateways=100, per_gateway=100, bus_delay=0.0,
                       sim_processes=2, steady=True)
        round_s = big["rounds"][protocol]
        print(f"poll_round_10k_{short}: {round_s:.2f} s")
        print(f"poll_round_10k_steady_{short}: {big['steady_s']:.2f} s")
        print(f"poll_readings_per_s_{short}: {big['readings'] / round_s:.0f} readings/s")
        print(f"poll_stored_10k_{short}: {big['stored_s']:.2f} s")
        print(f"worker_rss_10k_{short}: {big['rss_mb']:.0f} MB")
        print(f"worker_cpu_per_1000_readings_{short}: {big['cpu_per_1000_ms']:.0f} ms")
        print(f"worker_cpu_per_1000_readings_steady_{short}: "
              f"{big['steady_cpu_per_1000_ms']:.0f} ms")
        floor = bus_meters * FRAMES_PER_POLL[protocol] * bus_delay
        print(f"bus_round_8x32_{short}: {bus['rounds'][protocol]:.2f} s")
        print(f"bus_round_ratio_{short}: {bus['rounds'][protocol] / floor:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
