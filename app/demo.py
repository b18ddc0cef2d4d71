"""`feikong demo`: migrate, seed, then run the simulator, the worker and the web app together in
one process (one asyncio loop), until Ctrl-C."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from app.db import make_engine, transaction
from app.estate.models import Account, Gateway, Meter
from app.estate.seed import CUT_ACCOUNT, DEMO_MANAGER_PASSWORD, seed_demo, seed_demo_managers
from app.migrate import upgrade
from app.settings import get_settings
from app.stack import run_system
from meters.simulator import Simulator

GATEWAYS, PER_GATEWAY = 2, 20


def resume_meters(engine, sim: Simulator, base_port: int) -> None:
    """Start each simulated meter where the database last saw it (relay, energy register), so a
    second `make demo` continues the estate instead of contradicting it."""
    with transaction(engine) as s:
        rows = s.exec(select(Meter, Gateway.port).join(Gateway, Gateway.id == Meter.gateway_id)).all()
    for meter, port in rows:
        sim_meter = sim.meter(port - base_port, meter.unit_id)
        sim_meter.relay_open = bool(meter.relay_open)
        sim_meter.energy_wh = float(meter.last_energy_wh or 0)


async def _run() -> None:
    settings = get_settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    seed_demo(engine, host=settings.sim_host, base_port=settings.sim_base_port,
              gateways=GATEWAYS, per_gateway=PER_GATEWAY)
    seed_demo_managers(engine)
    sim = Simulator(GATEWAYS, PER_GATEWAY, host=settings.sim_host,
                    base_port=settings.sim_base_port, relay_delay_s=0.3, load_w=600.0)
    resume_meters(engine, sim, settings.sim_base_port)
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
  Simulated gateways: {", ".join(f"{g.host}:{g.port}" for g in sim.gateways)}
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
