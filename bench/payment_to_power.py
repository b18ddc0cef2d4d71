"""Payment to power, in every meter protocol: 100 payments a protocol for 50 cut meters on 5
simulated gateways of it (15 gateways in all: Modbus TCP, Modbus-RTU over TCP, DL/T 645).

The system runs as an operator on one machine would run it: `feikong run` (web and worker in
one process, on a fresh SQLite file) and `feikong simulate` (5 gateways × 10 meters per
protocol, relay delay 0) as two processes. This process plays the residents and the provider:
it tops up over HTTP (the real top-up form) for one protocol's 50 households, has the sandbox
sign their Alipay notifications, then posts the 50 notifications to the notify URL: one at a
time (how payments reach an estate), then again in bursts of 10 at once (`_burst10` figures);
the protocols take turns round by round, so a change in the machine's load falls on all three.
A second system then runs with a bus delay of 0.15 s per transaction and every gateway polling
without pause; 10 payments a protocol go one at a time, each waiting for its restore (`_busy`):
the floor there is one transaction in flight plus the write plus the read-back, about 450 ms
(a DL/T 645 poll is two frames). Each
payment is measured from the notify request being accepted (the order's `paid_at`, stamped by
the server in the crediting transaction) to the restore command's completion, which the worker
stamps when the relay read back closed: both clocks are the server's, so the residents' and
provider's threads here do not blur the figure. Between rounds every household of the round is
put back to "cut at -5.00 元" (relay opened over its protocol, balance adjusted), which is not
measured. The figures are named with the protocol as a suffix (`payment_to_power_p99_dlt645`,
`payment_to_power_burst10_p99_modbus_rtu`, …).

    python -m bench.payment_to_power
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlmodel import select

from app.commands.models import DONE, RESTORE, Command
from app.db import make_engine, transaction, utcnow
from app.estate.models import Account, Building, Estate, Gateway, Meter
from app.ledger.models import ADJUSTMENT
from app.ledger.services import balance_fen, post_entry
from app.migrate import upgrade
from app.orders.models import Order
from app.orders.providers import SANDBOX_ALIPAY_APP_ID
from bench.common import free_ports, start_process, stop_process
from meters.bus import open_bus
from meters.protocol import DLT645_TCP, MODBUS_RTU_OVER_TCP, MODBUS_TCP, PROTOCOLS
from standins.alipay_sandbox import SandboxAlipay, ensure_sandbox_keys
from tests.payflow import post_notification, start_payment

GATEWAYS, PER_GATEWAY = 5, 10  # per protocol
PAYMENTS, BUSY_PAYMENTS = 100, 10  # per protocol and scenario
BUSY_BUS_DELAY_S = 0.15
TOPUP_YUAN = "10"
# The figures' suffixes, as issue 18 names them.
SHORT = {MODBUS_TCP: "modbus_tcp", MODBUS_RTU_OVER_TCP: "modbus_rtu", DLT645_TCP: "dlt645"}


@dataclass(frozen=True)
class Household:
    account_id: int
    meter_id: int
    number: str
    protocol: str
    port: int
    unit: int


def setup_estate(engine, gateways: list[tuple[int, str]]) -> dict[str, list[Household]]:
    """Every household, all cut, by its gateway's protocol (`gateways`: (port, protocol))."""
    households: dict[str, list[Household]] = {}
    with transaction(engine) as s:
        estate = Estate(name="bench")
        s.add(estate)
        s.flush()
        building = Building(estate_id=estate.id, name="1")
        s.add(building)
        s.flush()
        for g, (port, protocol) in enumerate(gateways):
            gateway = Gateway(name=f"gw{g}", host="127.0.0.1", port=port, protocol=protocol)
            s.add(gateway)
            s.flush()
            for unit in range(1, PER_GATEWAY + 1):  # DL/T 645: addresses 000000000001…
                number = f"{g + 1}{unit:04d}"
                account = Account(number=number, building_id=building.id,
                                  household=f"{g + 1}-{unit}", price_yuan_per_kwh="0.5583")
                s.add(account)
                s.flush()
                meter = Meter(account_id=account.id, gateway_id=gateway.id, unit_id=unit,
                              relay_open=True)
                s.add(meter)
                s.flush()
                households.setdefault(protocol, []).append(
                    Household(account.id, meter.id, number, protocol, port, unit))
    return households


def cut_again(engine, batch: list[Household], round_no: int) -> None:
    """The batch's households back to -5.00 元 with their relays open, on the meters (over each
    gateway's protocol, the gateways at once) and in the database."""
    by_gateway: dict[tuple[int, str], list[int]] = {}
    for h in batch:
        by_gateway.setdefault((h.port, h.protocol), []).append(h.unit)

    async def open_relays(port: int, protocol: str, units: list[int]) -> None:
        client = open_bus(protocol, "127.0.0.1", port, timeout=2.0)
        try:
            for unit in units:
                await client.write_relay(unit, True)
        finally:
            await client.close()

    async def open_all() -> None:
        await asyncio.gather(*(open_relays(port, protocol, units)
                               for (port, protocol), units in by_gateway.items()))

    asyncio.run(open_all())
    opened_at = utcnow()  # the relays are open from now: a reading taken before says nothing
    with transaction(engine) as s:
        for h in batch:
            post_entry(s, account_id=h.account_id,
                       amount_fen=-500 - balance_fen(s, h.account_id), kind=ADJUSTMENT,
                       idempotency_key=f"bench:{round_no}:{h.account_id}")
            meter = s.get(Meter, h.meter_id)
            # As of `opened_at`: a poll read before the relays opened and stored only now (the
            # worker's first round at start, or a busy bus's batch) must not set it closed
            # again, or the payment finds the supply on and queues no restore.
            meter.relay_open, meter.relay_read_at = True, opened_at
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


def run_system(bus_delay_s: float, poll_interval_s: float,
               scenarios) -> dict[tuple[str, str], list[float]]:
    """Start `feikong run` and the simulator (GATEWAYS gateways per protocol) on a fresh
    database, run each scenario (name, payments per protocol, sent how many at once, wait for
    each restore before the next payment) for every protocol, the protocols taking turns
    round by round. Returns the latencies (ms) by (scenario, protocol)."""
    workdir = Path(tempfile.mkdtemp(prefix="feikong-bench-"))
    protocols = [p for p in PROTOCOLS for _ in range(GATEWAYS)]
    web_port, sim_port = free_ports(1), free_ports(len(protocols))
    database_url = f"sqlite:///{workdir / 'bench.db'}"
    base_url = f"http://127.0.0.1:{web_port}"
    env = dict(os.environ, FEIKONG_DATABASE_URL=database_url, FEIKONG_VAR_DIR=str(workdir),
               FEIKONG_WEB_PORT=str(web_port), FEIKONG_PUBLIC_URL=base_url,
               FEIKONG_POLL_INTERVAL_S=str(poll_interval_s),
               # each protocol's residents pay from an address of their own (a look-up of a
               # 户号 is limited to 60 an hour per address; 150 households here)
               FEIKONG_TRUSTED_PROXIES="127.0.0.1")
    upgrade(database_url)
    engine = make_engine(database_url)
    households = setup_estate(engine, [(sim_port + g, p) for g, p in enumerate(protocols)])
    config = workdir / "sim.json"
    config.write_text(json.dumps({"protocol": protocols}))
    python = sys.executable
    sim = start_process([python, "-m", "meters.simulator", "--config", str(config),
                         "--gateways", str(len(protocols)), "--meters", str(PER_GATEWAY),
                         "--base-port", str(sim_port), "--bus-delay", str(bus_delay_s)],
                        env, f"gateway {len(protocols) - 1}:", workdir / "sim.log")
    system = start_process([python, "-m", "app.cli", "run"], env, "serving on",
                           workdir / "system.log")
    sandbox = SandboxAlipay(ensure_sandbox_keys(workdir / "sandbox-keys"), SANDBOX_ALIPAY_APP_ID)
    client = httpx.Client(base_url=base_url, timeout=10, follow_redirects=False)
    residents = {protocol: httpx.Client(base_url=base_url, timeout=10, follow_redirects=False,
                                        headers={"X-Forwarded-For": f"192.0.2.{i + 1}"})
                 for i, protocol in enumerate(PROTOCOLS)}

    def notify(form: dict) -> None:
        reply = post_notification(client, sandbox, form)
        if reply.text != "success":
            raise RuntimeError(f"notify refused: {reply.text}")

    def last_command_id() -> int:
        with transaction(engine, read_only=True) as s:
            return s.exec(select(Command.id).order_by(Command.id.desc())).first() or 0

    round_no = 0

    def one_round(batch: list[Household], pool, one_by_one: bool) -> list[float]:
        nonlocal round_no
        round_no += 1
        cut_again(engine, batch, round_no)
        last = last_command_id()
        forms = [sandbox.build_notification(start_payment(residents[h.protocol], sandbox,
                                                          h.number, TOPUP_YUAN))
                 for h in batch]  # top-ups first, not measured
        if one_by_one:
            for i, form in enumerate(forms):
                notify(form)
                wait_for_restores(engine, last + 1, i + 1)
        else:
            list(pool.map(notify, forms))
        restores = wait_for_restores(engine, last + 1, len(batch))
        with transaction(engine, read_only=True) as s:
            paid_at = dict(s.exec(select(Order.out_trade_no, Order.paid_at)).all())
        return [(command.completed_at - paid_at[command.reason.removeprefix("payment ")])
                .total_seconds() * 1000 for command in restores]

    results: dict[tuple[str, str], list[float]] = {}
    try:
        for name, payments, concurrency, one_by_one in scenarios:
            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                while any(len(results.get((name, p), ())) < payments for p in PROTOCOLS):
                    for protocol in PROTOCOLS:  # one round each, in turn
                        got = results.setdefault((name, protocol), [])
                        batch = households[protocol][:payments - len(got)]
                        got += one_round(batch, pool, one_by_one)
        failed = False
        return {key: sorted(latencies) for key, latencies in results.items()}
    except BaseException:
        failed = True
        raise
    finally:
        for http in (client, *residents.values()):
            http.close()
        for proc in (system, sim):
            stop_process(proc)
        engine.dispose()
        if failed:  # the logs and the database, to see why
            print(f"kept {workdir} (system.log, sim.log, bench.db)", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    results = run_system(0.0, 3600, [("", PAYMENTS, 1, False), ("_burst10", PAYMENTS, 10, False)])
    # Every gateway polls without pause on a bus of 0.15 s per transaction; one payment at a time.
    results |= run_system(BUSY_BUS_DELAY_S, 0.05, [("_busy", BUSY_PAYMENTS, 1, True)])
    for (suffix, protocol), latencies_ms in results.items():
        p99 = latencies_ms[min(len(latencies_ms) - 1, int(len(latencies_ms) * 0.99))]
        short = SHORT[protocol]
        print(f"payments{suffix}_{short}: {len(latencies_ms)} count")
        print(f"payment_to_power{suffix}_p50_{short}: {statistics.median(latencies_ms):.1f} ms")
        print(f"payment_to_power{suffix}_p99_{short}: {p99:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
