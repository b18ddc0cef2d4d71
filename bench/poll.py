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
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from app.db import make_engine, utcnow
from app.estate.models import Account, Building, Estate, Gateway, Meter
from app.migrate import upgrade
from app.settings import Settings, use_settings
from bench.common import free_ports, rss_mb
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


@dataclass
class Sims:
    """The simulator processes of one case, started ahead (all cases' at once: starting them is
    most of a case's set-up, and idle gateways cost nothing)."""

    protocols: list[str]
    gateways: int  # per protocol
    per_gateway: int
    base: int  # gateway i of the case (protocols in order) listens on base + i
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        return [p for p in self.protocols for _ in range(self.gateways)]


def start_sims(protocols: list[str], gateways: int, per_gateway: int, bus_delay: float,
               processes: int, workdir: Path, base: int) -> Sims:
    """Launch the simulators of a case (`gateways` of each protocol, split over `processes`
    processes each, on ports from `base`) without waiting for them (`wait_ready`)."""
    sims = Sims(protocols, gateways, per_gateway, base)
    per_process = gateways // processes
    for i, protocol in enumerate(protocols):
        for p in range(processes):
            first = sims.base + i * gateways + p * per_process
            args = [sys.executable, "-m", "meters.simulator", "--protocol", protocol,
                    "--gateways", str(per_process), "--meters", str(per_gateway),
                    "--base-port", str(first), "--bus-delay", str(bus_delay)]
            log = (workdir / f"sim-{first}.log").open("w")
            sims.logs.append(log)
            sims.procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log,
                                               text=True))
    return sims


def wait_ready(sims: Sims) -> None:
    """Every process of the case has printed its last gateway line (it listens)."""
    for proc in sims.procs:
        last = f"gateway {sims.gateways // (len(sims.procs) // len(sims.protocols)) - 1}:"
        if not any(last in line for line in proc.stdout):
            raise RuntimeError(f"a simulator of {sims.protocols} did not start")


def run_case(sims: Sims, template: Path, steady: bool) -> dict:
    """The case's gateways (listening: `wait_ready`) read by one worker here, on a fresh copy
    of the migrated database;
    the first round timed per protocol, and with `steady`, a second round at once (all
    gateways)."""
    workdir = Path(tempfile.mkdtemp(prefix="feikong-poll-"))
    kinds, gateways, per_gateway = sims.kinds, sims.gateways, sims.per_gateway
    copy_database(template, workdir / "poll.db")
    settings = use_settings(Settings(
        database_url=f"sqlite:///{workdir / 'poll.db'}", var_dir=workdir, poll_interval_s=3600,
        sweep_interval_s=3600, gateway_reload_s=3600, lease_ttl_s=3 * 3600, modbus_timeout_s=2.0))
    engine = make_engine(settings.database_url)
    make_estate(engine, [(sims.base + g, p) for g, p in enumerate(kinds)], per_gateway)
    try:
        worker = Worker(engine, settings)
        groups = {p: {i * gateways + g + 1 for g in range(gateways)}
                  for i, p in enumerate(sims.protocols)}

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
        stop_all(sims.procs)
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def copy_database(template: Path, target: Path) -> None:
    """A copy of the migrated template (SQLite's backup: whatever its WAL holds comes along)."""
    with sqlite3.connect(template) as source, sqlite3.connect(target) as copy:
        source.backup(copy)


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Ctrl-C to every process, then wait for each (they stop together)."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()


def main() -> int:
    bus_gateways, bus_meters, bus_delay = 8, 32, 0.15
    root = Path(tempfile.mkdtemp(prefix="feikong-poll-"))
    template = root / "template.db"
    started: list[Sims] = []
    try:
        # The busy buses of the three protocols at once (bus-bound: the worker's CPU is not what
        # limits them), each against its own floor; then 10,000 meters of each protocol.
        # one block of free ports for all: ports free now, taken only as the simulators start
        base = free_ports(len(PROTOCOLS) * (bus_gateways + 100))
        bus_sims = start_sims(list(PROTOCOLS), bus_gateways, bus_meters, bus_delay, 1, root,
                              base)
        big_sims = [start_sims([p], 100, 100, 0.0, 2, root,
                               base + len(PROTOCOLS) * bus_gateways + i * 100)
                    for i, p in enumerate(PROTOCOLS)]
        started = [bus_sims, *big_sims]
        upgrade(f"sqlite:///{template}")  # while they start
        for sims in started:  # all of them listening before anything is measured
            wait_ready(sims)
        bus = run_case(bus_sims, template, steady=False)
        for protocol, sims in zip(PROTOCOLS, big_sims):
            short = SHORT[protocol]
            big = run_case(sims, template, steady=True)
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
    finally:
        for sims in started:
            stop_all(sims.procs)
            for log in sims.logs:
                log.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
