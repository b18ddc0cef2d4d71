"""Real parts: a migrated database per test (SQLite file, or PostgreSQL when FEIKONG_TEST_DB=postgres,
on a throwaway cluster this file starts and removes), the Modbus simulator on loopback, the real
web app served by uvicorn, and the real worker, all on one asyncio loop in a background thread."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from pathlib import Path

import pytest

from app.db import make_engine
from app.migrate import upgrade
from app.settings import Settings, use_settings
from app.stack import LoopThread

USE_POSTGRES = os.environ.get("FEIKONG_TEST_DB", "sqlite") == "postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- databases ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL cluster (Debian's server binaries), removed at the end."""
    from bench.common import throwaway_postgres

    try:
        with throwaway_postgres(max_connections=300) as url:
            yield url
    except RuntimeError as exc:  # no server binaries
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory, request):
    """The schema, migrated once by Alembic: a SQLite file to copy, or a PostgreSQL template."""
    if USE_POSTGRES:
        import psycopg

        server = request.getfixturevalue("pg_server")
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE feikong_template")
        upgrade(f"{server}/feikong_template")
        return server
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(migrated_template, tmp_path):
    if USE_POSTGRES:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"{migrated_template}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE feikong_template")
        yield f"{migrated_template}/{name}"
        with psycopg.connect(f"{migrated_template}/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")
    else:
        path = tmp_path / "feikong.db"
        shutil.copyfile(migrated_template, path)
        yield f"sqlite:///{path}"


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("var")


@pytest.fixture
def settings(database_url, keys_dir) -> Settings:
    port = free_port()
    return use_settings(Settings(
        database_url=database_url, var_dir=keys_dir, web_port=port,
        public_url=f"http://127.0.0.1:{port}", poll_interval_s=0.2, sweep_interval_s=0.2,
        confirm_timeout_s=1.0, modbus_timeout_s=0.5,
    ))


@pytest.fixture
def engine(settings):
    engine = make_engine(settings.database_url)
    yield engine
    engine.dispose()


# --- an asyncio loop in a thread, for the simulator, the worker and the web server -------------

@pytest.fixture
def loop_thread():
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def client(settings, engine):
    """The real app in-process (TestClient), on this test's database; redirects not followed."""
    from starlette.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings, engine), follow_redirects=False) as c:
        yield c


@pytest.fixture
def cut_account(engine):
    """An account at -5.00 元 whose meter (on a gateway nobody serves) reads cut; its 户号."""
    from tests.factories import EstateFactory

    estate = EstateFactory(engine)
    gw = estate.gateway("127.0.0.1", 1)
    return estate.account(gateway_id=gw, unit_id=1, balance_fen=-500, relay_open=True)


# --- the whole system: simulator, worker, web --------------------------------------------------

class Stack:
    """The system as `feikong demo` runs it, on this test's database, on loopback."""

    def __init__(self, loop_thread: LoopThread, settings: Settings, engine,
                 protocol: str = "modbus_tcp"):
        self.lt, self.settings, self.engine = loop_thread, settings, engine
        self.protocol = protocol  # what the simulated gateways speak (the `meter_protocol` fixture)
        self.sim = None
        self.base_url = settings.base_url
        self._server = None
        self._estate = None
        self._gateway_ids: dict[int, int] = {}

    def start_sim(self, units: list[list[int]], **kwargs):
        from meters.simulator import Simulator

        self.sim = Simulator(units, **{"protocol": self.protocol, **kwargs})
        self.lt.run(self.sim.start())
        return self.sim

    def household(self, unit_id: int, *, balance_fen: int = 0, relay_open: bool = False,
                  price: str = "0.5583", gateway_index: int = 0, **account) -> str:
        """An account whose meter is `unit_id` on the simulator's gateway `gateway_index`, its
        relay set the same on the meter and in the database; returns the 户号."""
        from tests.factories import EstateFactory

        if self._estate is None:
            self._estate = EstateFactory(self.engine)
        if gateway_index not in self._gateway_ids:
            gw = self.sim.gateways[gateway_index]
            self._gateway_ids[gateway_index] = self._estate.gateway(gw.host, gw.port, gw.protocol)
        self.sim.meter(gateway_index, unit_id).relay_open = relay_open
        return self._estate.account(gateway_id=self._gateway_ids[gateway_index], unit_id=unit_id,
                                    balance_fen=balance_fen, relay_open=relay_open, price=price,
                                    **account)

    def start_worker(self):
        from meters.worker import Worker

        self.worker = Worker(self.engine, self.settings)
        self.lt.spawn(self.worker.run())

    def start_web(self):
        from app.main import create_app

        self.app = create_app(self.settings, self.engine)
        self._server = self.lt.serve_web(self.app, "127.0.0.1", self.settings.web_port)

    def stop(self):
        if self._server is not None:
            self._server.should_exit = True
        if self.sim is not None:
            self.lt.run(self.sim.stop())


@pytest.fixture
def meter_protocol():
    """The protocol the stack's simulated gateways speak. A module runs its tests in every
    protocol with `pytestmark = pytest.mark.parametrize("meter_protocol", PROTOCOLS)` (a
    parameter of this name takes the fixture's place)."""
    return "modbus_tcp"


@pytest.fixture
def stack(loop_thread, settings, engine, meter_protocol):
    s = Stack(loop_thread, settings, engine, meter_protocol)
    yield s
    s.stop()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = ""):
    """Poll `predicate` until it returns a truthy value; fail with `message` (a string, or a
    callable giving one at that moment) after `timeout`."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = message() if callable(message) else message
            pytest.fail(message or f"condition not met within {timeout}s")
        time.sleep(interval)
