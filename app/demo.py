"""`feikong demo`: migrate, seed, then run the simulator, the worker and the web app together in
one process (one asyncio loop), until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from app.db import make_engine
from app.estate.seed import CUT_ACCOUNT, cut_units, seed_demo
from app.main import create_app
from app.migrate import upgrade
from app.settings import get_settings
from app.stack import make_web_server
from meters.simulator import Simulator
from meters.worker import Worker

GATEWAYS, PER_GATEWAY = 2, 20


async def _run() -> None:
    settings = get_settings()
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    seed_demo(engine, host=settings.sim_host, base_port=settings.sim_base_port,
              gateways=GATEWAYS, per_gateway=PER_GATEWAY)
    sim = Simulator(GATEWAYS, PER_GATEWAY, host=settings.sim_host,
                    base_port=settings.sim_base_port, relay_delay_s=0.3, load_w=600.0)
    for g, unit in cut_units(GATEWAYS, PER_GATEWAY):
        sim.meter(g, unit).relay_open = True
    await sim.start()
    app = create_app(settings, engine)
    server = make_web_server(app, settings.web_host, settings.web_port)  # Ctrl-C is ours
    worker_task = asyncio.create_task(Worker(engine, settings).run())
    web_task = asyncio.create_task(server.serve())

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    base = settings.base_url
    print(f"""
  Feikong demo is running (SQLite: {settings.database_url})
  Resident page (open on a phone-sized window):  {base}/
  A household that was cut, at -5.00 元:          {base}/a/{CUT_ACCOUNT}
  Sandbox Alipay cashier: opens when you top up ({base}/sandbox/alipay/gateway.do)
  Simulated gateways: {", ".join(f"{g.host}:{g.port}" for g in sim.gateways)}
  Press Ctrl-C to stop web, worker and simulator.
""", flush=True)
    done_task = asyncio.create_task(stop.wait())
    await asyncio.wait({done_task, worker_task, web_task}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    worker_task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await worker_task
    with contextlib.suppress(Exception):
        await web_task
    await sim.stop()
    print("stopped: web, worker, simulator")


def run_demo() -> int:
    asyncio.run(_run())
    return 0
