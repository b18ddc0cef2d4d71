"""Payment to power: 200 payments for 50 cut meters on 5 simulated gateways.

The system runs as an operator on one machine would run it: `feikong run` (web and worker in
one process, on a fresh SQLite file) and `feikong simulate` (5 gateways × 10 meters, relay
delay 0) as two processes. This process plays the residents and the provider: it tops up over
HTTP (the real top-up form) for all 50 households, has the sandbox sign their Alipay
notifications, then posts the 50 notifications to the notify URL: one at a time (how payments
reach an estate), then again in bursts of 10 at once (`_burst10` figures). A second system
then runs with a bus delay of 0.15 s per transaction and every gateway polling without pause;
20 payments go one at a time, each waiting for its restore (`_busy`): the floor there is one
transaction in flight plus the write plus the read-back, about 450 ms. Each payment is measured from the notify request being
accepted (the order's `paid_at`, stamped by the server in the crediting transaction) to the
restore command's completion, which the worker stamps when the relay read back closed: both
clocks are the server's, so the residents' and provider's threads here do not blur the figure. Between rounds every household is put back to "cut at -5.00 元"
(relay opened over Modbus, balance adjusted), which is not measured.

    python -m bench.payment_to_power
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlmodel import select

from app.commands.models import DONE, RESTORE, Command
from app.db import make_engine, transaction
from app.estate.models import Account, Building, Estate, Gateway, Meter
from app.ledger.models import ADJUSTMENT
from app.ledger.services import balance_fen, post_entry
from app.migrate import upgrade
from app.orders.models import Order
from app.orders.providers import SANDBOX_ALIPAY_APP_ID
from bench.common import free_ports, start_process, stop_process
from meters.modbus.client import GatewayClient
from standins.alipay_sandbox import SandboxAlipay, ensure_sandbox_keys
from tests.payflow import post_notification, start_payment

GATEWAYS, PER_GATEWAY, PAYMENTS = 5, 10, 200
BUSY_BUS_DELAY_S, BUSY_PAYMENTS = 0.15, 20
TOPUP_YUAN = "10"


def setup_estate(engine, ports: list[int]) -> list[tuple[int, int, str]]:
    """(account id, meter id, account number) for every household, all cut."""
    households = []
    with transaction(engine) as s:
        estate = Estate(name="bench")
        s.add(estate)
        s.flush()
        building = Building(estate_id=estate.id, name="1")
        s.add(building)
        s.flush()
        for g, port in enumerate(ports):
            gateway = Gateway(name=f"gw{g}", host="127.0.0.1", port=port)
            s.add(gateway)
            s.flush()
            for unit in range(1, PER_GATEWAY + 1):
                number = f"{g + 1}{unit:04d}"
                account = Account(number=number, building_id=building.id,
                                  household=f"{g + 1}-{unit}", price_yuan_per_kwh="0.5583")
                s.add(account)
                s.flush()
                meter = Meter(account_id=account.id, gateway_id=gateway.id, unit_id=unit,
                              relay_open=True)
                s.add(meter)
                s.flush()
                households.append((account.id, meter.id, number))
    return households


def cut_again(engine, ports: list[int], households, round_no: int) -> None:
    """Every household back to -5.00 元 with its relay open, on the meter and in the database."""
    async def open_relays():
        for port in ports:
            client = GatewayClient("127.0.0.1", port, timeout=1.0)
            for unit in range(1, PER_GATEWAY + 1):
                await client.write_relay(unit, True)
            await client.close()

    asyncio.run(open_relays())
    with transaction(engine) as s:
        for account_id, meter_id, _number in households:
            post_entry(s, account_id=account_id, amount_fen=-500 - balance_fen(s, account_id),
                       kind=ADJUSTMENT, idempotency_key=f"bench:{round_no}:{account_id}")
            meter = s.get(Meter, meter_id)
            meter.relay_open = True
            s.add(meter)


def wait_for_restores(engine, first_id: int, count: int, timeout: float = 30) -> list[Command]:
    deadline = time.monotonic() + timeout
    while True:
        with transaction(engine, read_only=True) as s:
            rows = s.exec(select(Command).where(Command.id >= first_id,
                                                Command.action == RESTORE)).all()
        if len(rows) == count and all(c.state == DONE for c in rows):
            return rows
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sum(c.state == DONE for c in rows)} of {count} restores done")
        time.sleep(0.05)


def run_system(bus_delay_s: float, poll_interval_s: float, scenarios) -> dict[str, list[float]]:
    """Start `feikong run` and the simulator on a fresh database, run each scenario
    (name, payments sent at once, wait for each restore before the next payment)."""
    workdir = Path(tempfile.mkdtemp(prefix="feikong-bench-"))
    web_port, sim_port = free_ports(1), free_ports(GATEWAYS)
    database_url = f"sqlite:///{workdir / 'bench.db'}"
    base_url = f"http://127.0.0.1:{web_port}"
    env = dict(os.environ, FEIKONG_DATABASE_URL=database_url, FEIKONG_VAR_DIR=str(workdir),
               FEIKONG_WEB_PORT=str(web_port), FEIKONG_PUBLIC_URL=base_url,
               FEIKONG_POLL_INTERVAL_S=str(poll_interval_s))
    upgrade(database_url)
    engine = make_engine(database_url)
    ports = [sim_port + g for g in range(GATEWAYS)]
    households = setup_estate(engine, ports)
    python = sys.executable
    sim = start_process([python, "-m", "meters.simulator", "--gateways", str(GATEWAYS),
                         "--meters", str(PER_GATEWAY), "--base-port", str(sim_port),
                         "--bus-delay", str(bus_delay_s)],
                        env, f"gateway {GATEWAYS - 1}:", workdir / "sim.log")
    system = start_process([python, "-m", "app.cli", "run"], env, "serving on",
                           workdir / "system.log")
    sandbox = SandboxAlipay(ensure_sandbox_keys(workdir / "sandbox-keys"), SANDBOX_ALIPAY_APP_ID)
    client = httpx.Client(base_url=base_url, timeout=10, follow_redirects=False)

    def notify(form: dict) -> None:
        reply = post_notification(client, sandbox, form)
        if reply.text != "success":
            raise RuntimeError(f"notify refused: {reply.text}")

    def last_command_id() -> int:
        with transaction(engine, read_only=True) as s:
            return s.exec(select(Command.id).order_by(Command.id.desc())).first() or 0

    round_no = 0

    def measure(payments: int, concurrency: int, one_by_one: bool) -> list[float]:
        nonlocal round_no
        latencies_ms: list[float] = []
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            while len(latencies_ms) < payments:
                round_no += 1
                batch = households[:payments - len(latencies_ms)]
                cut_again(engine, ports, batch, round_no)
                last = last_command_id()
                forms = [sandbox.build_notification(start_payment(client, sandbox, number, TOPUP_YUAN))
                         for _a, _m, number in batch]  # top-ups first, not measured
                if one_by_one:
                    for i, form in enumerate(forms):
                        notify(form)
                        wait_for_restores(engine, last + 1, i + 1)
                else:
                    list(pool.map(notify, forms))
                restores = wait_for_restores(engine, last + 1, len(batch))
                with transaction(engine, read_only=True) as s:
                    paid_at = dict(s.exec(select(Order.out_trade_no, Order.paid_at)).all())
                for command in restores:
                    accepted = paid_at[command.reason.removeprefix("payment ")]
                    latencies_ms.append((command.completed_at - accepted).total_seconds() * 1000)
        return sorted(latencies_ms)

    try:
        return {name: measure(*how) for name, *how in scenarios}
    finally:
        client.close()
        for proc in (system, sim):
            stop_process(proc)
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    results = run_system(0.0, 3600, [("", PAYMENTS, 1, False), ("_burst10", PAYMENTS, 10, False)])
    # Every gateway polls without pause on a bus of 0.15 s per transaction; one payment at a time.
    results |= run_system(BUSY_BUS_DELAY_S, 0.05, [("_busy", BUSY_PAYMENTS, 1, True)])
    for suffix, latencies_ms in results.items():
        p99 = latencies_ms[min(len(latencies_ms) - 1, int(len(latencies_ms) * 0.99))]
        print(f"payments{suffix}: {len(latencies_ms)} count")
        print(f"payment_to_power{suffix}_p50: {statistics.median(latencies_ms):.1f} ms")
        print(f"payment_to_power{suffix}_p99: {p99:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
