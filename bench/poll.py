"""Poll rounds: how fast the worker reads an estate, and how close it gets to the bus's floor.

1. 10,000 meters on 100 gateways, no bus delay: the simulator runs in two processes of 50
   gateways each; the worker runs here (one asyncio task and one Modbus client per gateway) on
   a fresh SQLite file. Measured: the time for the first full poll round of every gateway
   (`poll_round_10k`: every reading is new and judged in full), readings per second, the time
   until every reading is stored (`poll_stored_10k`), then a second round at once
   (`poll_round_10k_steady`: nothing changed, so readings only move the reading time), the
   worker's RSS, and its CPU time per 1,000 readings in each round.
2. 8 gateways × 32 meters with a bus delay of 0.15 s per transaction: the round time against
   the bus-bound floor of 32 × 0.15 s = 4.8 s (`bus_round_ratio`).

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
from meters.worker import Worker


def make_estate(engine, ports: list[int], per_gateway: int) -> None:
    """Gateways, accounts and meters in bulk (one INSERT … VALUES batch per table)."""
    with engine.begin() as conn:
        conn.execute(sa.insert(Estate.__table__), [{"name": "bench", "manager_phone": ""}])
        conn.execute(sa.insert(Building.__table__), [{"estate_id": 1, "name": "1"}])
        conn.execute(sa.insert(Gateway.__table__),
                     [{"id": g + 1, "name": f"gw{g}", "host": "127.0.0.1", "port": port}
                      for g, port in enumerate(ports)])
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


async def first_rounds(worker: Worker, gateways: int, timeout: float) -> float:
    """Run the worker until every gateway finished its first poll round; returns seconds."""
    task = asyncio.create_task(worker.run())
    started = time.monotonic()
    while len(worker.loops) < gateways or any(gl.rounds == 0 for gl in worker.loops.values()):
        if time.monotonic() - started > timeout:
            raise RuntimeError("poll round did not finish in time")
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - started
    worker.round_task = task
    return elapsed


async def until_stored(worker: Worker) -> None:
    while any(gl.pending_writes or gl.readings for gl in worker.loops.values()):
        await asyncio.sleep(0.01)


def run_case(gateways: int, per_gateway: int, bus_delay: float, sim_processes: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="feikong-poll-"))
    base = free_ports(gateways)
    ports = [base + g for g in range(gateways)]
    settings = use_settings(Settings(
        database_url=f"sqlite:///{workdir / 'poll.db'}", var_dir=workdir, poll_interval_s=3600,
        sweep_interval_s=3600, gateway_reload_s=3600, lease_ttl_s=3 * 3600, modbus_timeout_s=2.0))
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    make_estate(engine, ports, per_gateway)
    sims = []
    per_process = gateways // sim_processes
    try:
        for p in range(sim_processes):
            args = [sys.executable, "-m", "meters.simulator", "--gateways", str(per_process),
                    "--meters", str(per_gateway), "--base-port", str(base + p * per_process),
                    "--bus-delay", str(bus_delay)]
            sims.append(start_process(args, dict(os.environ), f"gateway {per_process - 1}:",
                                      workdir / f"sim{p}.log"))
        worker = Worker(engine, settings)

        async def measure():
            cpu0 = time.process_time()
            round_s = await first_rounds(worker, gateways, timeout=110)
            cpu_round = time.process_time() - cpu0
            await until_stored(worker)
            stored_s = time.process_time()  # placeholder, replaced below
            return round_s, cpu_round, stored_s

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
            t0 = time.monotonic()
            round_s, cpu_round, _ = await measure()
            stored_s = time.monotonic() - t0
            steady_s, cpu_steady = await steady_round()
            rss = rss_mb()
            worker.round_task.cancel()
            await asyncio.gather(worker.round_task, return_exceptions=True)
            return round_s, cpu_round, stored_s, steady_s, cpu_steady, rss

        round_s, cpu_round, stored_s, steady_s, cpu_steady, rss = asyncio.run(main())
        readings = gateways * per_gateway
        return {"round_s": round_s, "stored_s": stored_s, "readings": readings,
                "steady_s": steady_s, "rss_mb": rss,
                "cpu_per_1000_ms": cpu_round / readings * 1000 * 1000,
                "steady_cpu_per_1000_ms": cpu_steady / readings * 1000 * 1000}
    finally:
        for proc in sims:
            stop_process(proc)
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    big = run_case(gateways=100, per_gateway=100, bus_delay=0.0, sim_processes=2)
    bus = run_case(gateways=8, per_gateway=32, bus_delay=0.15, sim_processes=1)
    floor = 32 * 0.15
    print(f"poll_round_10k: {big['round_s']:.2f} s")
    print(f"poll_round_10k_steady: {big['steady_s']:.2f} s")
    print(f"poll_readings_per_s: {big['readings'] / big['round_s']:.0f} readings/s")
    print(f"poll_stored_10k: {big['stored_s']:.2f} s")
    print(f"worker_rss_10k: {big['rss_mb']:.0f} MB")
    print(f"worker_cpu_per_1000_readings: {big['cpu_per_1000_ms']:.0f} ms")
    print(f"worker_cpu_per_1000_readings_steady: {big['steady_cpu_per_1000_ms']:.0f} ms")
    print(f"bus_round_8x32: {bus['round_s']:.2f} s")
    print(f"bus_round_ratio: {bus['round_s'] / floor:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
