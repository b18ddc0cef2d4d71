"""应急用电: once a month, restores at once, repaid first from the next top-ups."""

import datetime as dt

import pytest
from sqlmodel import select

from app.billing.emergency import (EmergencyCreditRefused, outstanding_emergency_fen,
                                   repay_emergency_credit, take_emergency_credit)
from app.commands.models import RESTORE, Command
from app.db import transaction
from app.estate.models import Account
from app.ledger.models import TOPUP
from app.ledger.services import post_entry
from tests.factories import EstateFactory, balance_of

NOV = dt.datetime(2026, 11, 22, 4, tzinfo=dt.timezone.utc)


@pytest.fixture
def cut_household(engine):
    estate = EstateFactory(engine)
    gateway = estate.gateway("127.0.0.1", 1)
    return estate.account(gateway_id=gateway, unit_id=1, balance_fen=-300, relay_open=True,
                          emergency_credit_fen=1000)


def take(engine, number, now=NOV):
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        return take_emergency_credit(s, account, now)


def top_up(engine, number, fen, key):
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        post_entry(s, account_id=account.id, amount_fen=fen, kind=TOPUP, idempotency_key=key)
        return repay_emergency_credit(s, account.id, fen, key)


def test_taking_it_credits_and_queues_a_restore(engine, cut_household):
    take(engine, cut_household)
    assert balance_of(engine, cut_household) == 700
    with transaction(engine) as s:
        assert s.exec(select(Command).where(Command.action == RESTORE)).first() is not None


def test_once_a_month(engine, cut_household):
    take(engine, cut_household)
    with pytest.raises(EmergencyCreditRefused):
        take(engine, cut_household, NOV + dt.timedelta(days=3))
    take(engine, cut_household, dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc))


def test_not_offered_is_refused(engine):
    estate = EstateFactory(engine)
    number = estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1)
    with pytest.raises(EmergencyCreditRefused):
        take(engine, number)


def test_the_next_top_ups_repay_it_first(engine, cut_household):
    take(engine, cut_household)
    assert top_up(engine, cut_household, 300, "order:a") == 300
    assert top_up(engine, cut_household, 300, "order:a") == 0  # the same top-up again
    assert top_up(engine, cut_household, 5000, "order:b") == 700
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == cut_household)).one()
        assert outstanding_emergency_fen(s, account.id) == 0
    assert balance_of(engine, cut_household) == -300 + 300 + 5000
