"""Messages to residents against the real app served on loopback: its SMS and WeChat stand-ins
(Tencent Cloud's SendSms with its signature checked, the official account's API) reached by the
real clients, on the test's database. The stand-ins keep their outbox in a file under var_dir,
emptied for each test. Time is what each call is told (`now`), never slept."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlmodel import select

from app.db import transaction
from app.estate.models import Account, Estate
from app.messages.jobs import MessageJobs
from app.messages.models import Message
from app.notices.models import Notice
from app.policy.clock import LOCAL_TZ
from app.resident.models import Resident, ResidentAccount
from standins import sms as sms_standin
from standins import store
from standins import wechat_messages as wechat_standin
from tests.factories import EstateFactory, account_by_number


def local(day: str, hh_mm: str) -> dt.datetime:
    """A Beijing wall-clock moment as an aware UTC datetime: local("2026-12-03", "23:00")."""
    return dt.datetime.fromisoformat(f"{day}T{hh_mm}").replace(tzinfo=LOCAL_TZ) \
        .astimezone(dt.timezone.utc)


def openid(n: int) -> str:
    """An openid of the sandbox official account's shape ("o" and 27 more)."""
    return f"oSandbox{n:020d}"


@dataclass
class World:
    settings: object
    engine: object
    app: object
    jobs: MessageJobs
    factory: EstateFactory
    gateway_id: int

    @property
    def var_dir(self):
        return self.settings.var_dir

    def household(self, *, balance_fen: int = 5_000, holder_phone: str = "13812345678",
                  **fields) -> Account:
        number = self.factory.account(gateway_id=self.gateway_id,
                                      unit_id=self.factory._count + 1,
                                      balance_fen=balance_fen, **fields)
        with transaction(self.engine) as s:
            s.execute(sa.update(Account).where(Account.number == number)
                      .values(holder_phone=holder_phone))
        return account_by_number(self.engine, number)

    def resident(self, account: Account, *, phone: str | None = None,
                 openid: str | None = None, reminders: bool = True) -> int:
        with transaction(self.engine) as s:
            resident = Resident(phone=phone, openid=openid)
            s.add(resident)
            s.flush()
            s.add(ResidentAccount(resident_id=resident.id, account_id=account.id,
                                  reminders=reminders))
            return resident.id

    def notice(self, account: Account, kind: str, at: dt.datetime,
               amount_fen: int | None = None) -> int:
        """A notice as the engine writes it (app/notices, meters/store.py, app/orders)."""
        with transaction(self.engine) as s:
            n = Notice(account_id=account.id, kind=kind, amount_fen=amount_fen, created_at=at)
            s.add(n)
            s.flush()
            return n.id

    def estate(self, **values) -> None:
        with transaction(self.engine) as s:
            estate = s.get(Estate, self.factory.estate_id)
            for name, value in values.items():
                setattr(estate, name, value)
            s.add(estate)

    def messages(self, account: Account | None = None) -> list[Message]:
        with transaction(self.engine, read_only=True) as s:
            q = select(Message).order_by(Message.id)
            if account is not None:
                q = q.where(Message.account_id == account.id)
            return list(s.exec(q))

    def sms(self) -> list[dict]:
        return sms_standin.outbox(self.var_dir)

    def wechat(self) -> list[dict]:
        return wechat_standin.outbox(self.var_dir)


@pytest.fixture
def world(stack, settings, engine) -> World:
    store.path_of(settings.var_dir).unlink(missing_ok=True)  # an empty outbox, no faults
    stack.start_web()
    app = stack.app
    factory = EstateFactory(engine, name="翠苑")
    gateway_id = factory.gateway("127.0.0.1", 1)
    jobs = MessageJobs(engine, settings, app.state.messengers)
    yield World(settings, engine, app, jobs, factory, gateway_id)
    jobs.close()


@pytest.fixture
def console_of(settings, engine):
    """A console browser logged in as the administrator of the world's estate."""
    from app.console.managers import add_manager
    from app.console.models import ESTATE_ADMIN
    from tests.console.conftest import PASSWORD, log_in, new_client

    clients = []

    def as_admin(world: World):
        with transaction(engine) as s:
            add_manager(s, "admin", role=ESTATE_ADMIN, estate_id=world.factory.estate_id,
                        password=PASSWORD, building_ids=[])
        client = new_client(settings, engine)
        client.__enter__()
        clients.append(client)
        assert log_in(client, "admin").status_code == 303
        return client

    yield as_admin
    for client in clients:
        client.__exit__(None, None, None)
