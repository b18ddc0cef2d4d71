"""An estate of two buildings (1号楼, 2号楼) with households in each, and the three kinds of
manager: `admin` (the estate), `b1` (1号楼 only), `finance`. The console is the real app, on
the test's database, through Starlette's TestClient (which speaks to it over ASGI)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from app.console.managers import add_manager
from app.console.models import BUILDING_MANAGER, ESTATE_ADMIN, FINANCE
from app.db import transaction
from app.estate.models import Building
from app.main import create_app
from tests.factories import EstateFactory

PASSWORD = "correct horse battery"


@dataclass
class Estate:
    estate_id: int
    building_a: int
    building_b: int
    a_accounts: list[str]
    b_accounts: list[str]


@pytest.fixture
def estate(engine) -> Estate:
    factory = EstateFactory(engine, name="翠苑")
    with transaction(engine) as s:
        b = Building(estate_id=factory.estate_id, name="2号楼")
        s.add(b)
        s.flush()
        building_b = b.id
    gateway = factory.gateway("127.0.0.1", 1)
    a_accounts = [factory.account(gateway_id=gateway, unit_id=u, number=f"10{u:04d}",
                                  balance_fen=b) for u, b in ((1, 5_000), (2, 300), (3, -500))]
    building_a, factory.building_id = factory.building_id, building_b
    b_accounts = [factory.account(gateway_id=gateway, unit_id=10 + u, number=f"20{u:04d}",
                                  balance_fen=-200) for u in (1, 2)]
    with transaction(engine) as s:
        for name, role, buildings in (("admin", ESTATE_ADMIN, []),
                                      ("b1", BUILDING_MANAGER, [building_a]),
                                      ("finance", FINANCE, [])):
            add_manager(s, name, role=role, estate_id=factory.estate_id, password=PASSWORD,
                        building_ids=buildings)
    return Estate(factory.estate_id, building_a, building_b, a_accounts, b_accounts)


def new_client(settings, engine) -> TestClient:
    return TestClient(create_app(settings, engine), follow_redirects=False)


def csrf(client: TestClient) -> str:
    """The CSRF token of this browser (the cookie asgi-csrf set on a console page)."""
    if "csrftoken" not in client.cookies:
        client.get("/manage/login")
    return client.cookies["csrftoken"]


def log_in(client: TestClient, name: str, password: str = PASSWORD):
    return client.post("/manage/login", data={"name": name, "password": password,
                                              "csrftoken": csrf(client)})


@pytest.fixture
def console(settings, engine, estate):
    """A function giving a browser logged in as the named manager."""
    clients = []

    def as_manager(name: str) -> TestClient:
        client = new_client(settings, engine)
        client.__enter__()
        clients.append(client)
        assert log_in(client, name).status_code == 303
        return client

    yield as_manager
    for client in clients:
        client.__exit__(None, None, None)
