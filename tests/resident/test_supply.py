"""The amount a cut household is told to pay is exactly what the engine needs to restore it:
one fen less leaves it cut; that amount restores it (through the real crediting of a payment,
with an emergency advance to repay first)."""

import pytest
from sqlmodel import select

from app.billing.emergency import take_emergency_credit
from app.commands.models import PENDING, RESTORE, Command
from app.db import transaction
from app.estate.models import Account
from app.orders.models import PAID_AFTER_CLOSE, Order
from app.orders.services import credit_late_payment
from app.resident.supply import amount_to_restore_fen, restores, whole_yuan_at_least
from tests.factories import EstateFactory


def _pay(engine, number: str, fen: int, no: str) -> bool:
    """Credit a payment of `fen` through the engine; whether it queued a restore."""
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        s.add(Order(account_id=account.id, out_trade_no=no, amount_fen=fen, channel="alipay",
                    status=PAID_AFTER_CLOSE, provider_trade_no=f"t{no}"))
        s.flush()
        credit_late_payment(s, no, by="test")
        return s.exec(select(Command).where(Command.action == RESTORE,
                                            Command.state == PENDING)).first() is not None


def _state(engine, number):
    from app.billing.emergency import balance_and_advance_fen
    with transaction(engine, read_only=True) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        balance, owed = balance_and_advance_fen(s, account.id)
        return account, balance, owed


@pytest.mark.parametrize("balance_fen,threshold_fen,advance", [
    (-1234, 0, False), (-1234, 500, False), (200, 1500, True), (-1300, 0, True), (0, 0, False)])
def test_the_amount_needed_restores_and_one_fen_less_does_not(engine, balance_fen, threshold_fen,
                                                               advance):
    estate = EstateFactory(engine)
    gateway = estate.gateway("127.0.0.1", 1)
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=balance_fen,
                            relay_open=True, restore_threshold_fen=threshold_fen,
                            emergency_credit_fen=1000)
    if advance:
        with transaction(engine) as s:
            take_emergency_credit(s, s.exec(select(Account).where(Account.number == number)).one())
            s.execute(Command.__table__.delete())  # the advance's own restore: not under test
    account, balance, owed = _state(engine, number)
    needed = amount_to_restore_fen(account, balance, owed)
    assert needed >= 100
    assert restores(account, balance, owed, needed)
    if needed - 1 >= 100:
        assert not restores(account, balance, owed, needed - 1)
        assert not _pay(engine, number, needed - 1, "A1")
        account, balance, owed = _state(engine, number)
        assert (balance, owed) == (account.restore_threshold_fen, 0)  # one fen short, repaid
        assert amount_to_restore_fen(account, balance, owed) == 100  # the smallest top-up
        assert _pay(engine, number, 100, "A2")
    else:
        assert _pay(engine, number, needed, "A2")


def test_a_balance_above_the_threshold_needs_nothing(engine):
    estate = EstateFactory(engine)
    gateway = estate.gateway("127.0.0.1", 1)
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=5000)
    account, balance, owed = _state(engine, number)
    assert amount_to_restore_fen(account, balance, owed) == 0


def test_the_preset_is_whole_yuan_at_least_the_amount():
    assert whole_yuan_at_least(1235) == 13
    assert whole_yuan_at_least(1200) == 12
    assert whole_yuan_at_least(1) == 1
