"""`feikong demo`: migrate, seed, then run the simulator, the worker and the web app together in
one process (one asyncio loop), until Ctrl-C."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from app.db import make_engine, transaction
from app.estate.models import Account, Gateway, Meter
from app.estate.demo_workbook import DEMO_GATEWAYS
from app.estate.seed import CUT_ACCOUNT, DEMO_MANAGER_PASSWORD, seed_demo, seed_demo_managers
from app.migrate import upgrade
from app.settings import get_settings
from app.stack import run_system
from meters.simulator import Simulator

GATEWAYS, PER_GATEWAY = DEMO_GATEWAYS, 20


def demo_simulator(engine, settings) -> Simulator:
    """The simulator that plays the demo estate's gateways as the database has them (each at
    its port, speaking its protocol, with its meters), each meter started where the database
    last saw it (relay, energy register), so a second `make demo` continues the estate instead
    of contradicting it."""
    base_port = settings.sim_base_port
    with transaction(engine, read_only=True) as s:
        gateways = s.exec(select(Gateway).where(Gateway.port >= base_port)
                          .order_by(Gateway.port)).all()
        rows = s.exec(select(Meter, Gateway.port)
                      .join(Gateway, Gateway.id == Meter.gateway_id)).all()
    count = max((g.port - base_port + 1 for g in gateways), default=GATEWAYS)
    units: list[list[int]] = [[] for _ in range(count)]
    protocols = ["modbus_tcp"] * count
    for gateway in gateways:
        protocols[gateway.port - base_port] = gateway.protocol
    for meter, port in rows:
        if port >= base_port:
            units[port - base_port].append(meter.unit_id)
    sim = Simulator([sorted(u) for u in units], host=settings.sim_host, base_port=base_port,
                    relay_delay_s=0.3, load_w=600.0, protocol=protocols)
    for meter, port in rows:
        if port >= base_port:
            sim_meter = sim.meter(port - base_port, meter.unit_id)
            sim_meter.relay_open = bool(meter.relay_open)
            sim_meter.energy_wh = float(meter.last_energy_wh or 0)
    return sim


async def _run() -> None:
    settings = get_settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    seed_demo(engine, host=settings.sim_host, base_port=settings.sim_base_port,
              gateways=GATEWAYS, per_gateway=PER_GATEWAY)
    seed_demo_managers(engine)
    sim = demo_simulator(engine, settings)
    await sim.start()
    base = settings.base_url
    with transaction(engine, read_only=True) as s:
        cut_phone = s.exec(select(Account.holder_phone)
                           .where(Account.number == CUT_ACCOUNT)).first() or "—"

    def announce():
        print(f"""
  Feikong demo is running (SQLite: {settings.database_url})
  Resident page (open on a phone-sized window):  {base}/
  A household that was cut, at -5.00 元:          {base}/a/{CUT_ACCOUNT}
    its registered phone {cut_phone}: sign in with it (the SMS code is in the outbox) to
    bind the household and see its bills, history, usage and notices
  SMS and WeChat messages sent (to the stand-ins):  {base}/sandbox/outbox
  Property managers' console:                    {base}/manage/
    demo managers admin (the estate), b1 (1号楼 only), finance; password {DEMO_MANAGER_PASSWORD}
  Sandbox cashiers (Alipay, WeChat Pay) open when you top up: no real money moves
  Simulated gateways: {", ".join(f"{g.host}:{g.port} ({g.protocol})" for g in sim.gateways)}
  Press Ctrl-C to stop web, worker and simulator.
""", flush=True)

    try:
        await run_system(settings, engine, announce=announce)
    finally:
        await sim.stop()
    print("stopped: web, worker, simulator")


def run_demo() -> int:
    try:
        asyncio.run(_run())
    except OSError as exc:  # a port in use, most often
        print(f"feikong demo: {exc}. Is another demo running? Set FEIKONG_WEB_PORT or "
              "FEIKONG_SIM_BASE_PORT to free ports.")
        return 1
    return 0
