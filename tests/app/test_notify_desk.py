"""The notify desk credits notifications in batches, one transaction a batch: what one
notification does must not depend on what shares its batch. Real notifications, signed by the
sandbox and verified by the SDK, handed to `handle_batch` as the desk hands them."""

import pytest
from sqlmodel import select

import app.orders.desk as desk
from app.db import transaction
from app.orders.models import PAID, PENDING, Order, RefusedNotification
from standins.alipay_sandbox import generate_rsa_keypair
from tests.factories import balance_of, entries_of
from tests.payflow import start_payment


@pytest.fixture
def sandbox(client):
    return client.app.state.providers.sandbox_alipay


@pytest.fixture
def provider(client):
    return client.app.state.providers.by_channel("alipay")


def arrived(provider, sandbox, form) -> desk.Arrived:
    return desk.Arrived("alipay", provider, {"content-type": "application/x-www-form-urlencoded"},
                        sandbox.encode_form(form), done=None)


def status_of(engine, out_trade_no):
    with transaction(engine) as s:
        return s.exec(select(Order.status).where(Order.out_trade_no == out_trade_no)).one()


def refused_reasons(engine):
    with transaction(engine) as s:
        return sorted(r.reason for r in s.exec(select(RefusedNotification)))


def test_a_mixed_batch_credits_each_good_one_once_and_refuses_the_others(
        client, sandbox, provider, engine, cut_account):
    a, b, c = (start_payment(client, sandbox, cut_account) for _ in range(3))
    other_private, _ = generate_rsa_keypair()
    batch = [
        arrived(provider, sandbox, sandbox.build_notification(a)),
        arrived(provider, sandbox, sandbox.build_notification(a)),  # a copy, same batch
        arrived(provider, sandbox, sandbox.build_notification(b, amount_fen=1)),  # wrong amount
        arrived(provider, sandbox, sandbox.build_notification(c)),
        arrived(provider, sandbox, sandbox.sign_form(sandbox.build_notification(c),
                                                     private_pem=other_private)),  # forged
    ]
    assert desk.handle_batch(engine, batch) == [True, True, False, True, False]
    assert [status_of(engine, p.out_trade_no) for p in (a, b, c)] == [PAID, PENDING, PAID]
    assert sorted(e.amount_fen for e in entries_of(engine, cut_account, "topup")) == [5000, 5000]
    assert balance_of(engine, cut_account) == -500 + 10000
    assert refused_reasons(engine) == ["amount_mismatch", "bad_signature"]
    # the whole batch again, as a provider retries: nothing more
    assert desk.handle_batch(engine, batch) == [True, True, False, True, False]
    assert balance_of(engine, cut_account) == -500 + 10000


def test_a_failing_batch_is_handled_again_one_at_a_time(
        client, sandbox, provider, engine, cut_account, monkeypatch):
    a, b, c = (start_payment(client, sandbox, cut_account) for _ in range(3))
    real = desk.confirm_many

    def confirm_many(session, items):  # b's processing breaks, every time
        if any(notification.out_trade_no == b.out_trade_no for notification, _ in items):
            raise RuntimeError("injected: the database said no")
        return real(session, items)

    monkeypatch.setattr(desk, "confirm_many", confirm_many)
    outcomes = desk.handle_batch(engine, [arrived(provider, sandbox, sandbox.build_notification(p))
                                          for p in (a, b, c)])
    assert outcomes[0] is True and outcomes[2] is True
    assert isinstance(outcomes[1], RuntimeError)  # b's request fails: the provider retries
    assert [status_of(engine, p.out_trade_no) for p in (a, b, c)] == [PAID, PENDING, PAID]
    assert balance_of(engine, cut_account) == -500 + 10000
    assert refused_reasons(engine) == []


def test_top_ups_credited_together_come_out_as_one_after_another(
        client, sandbox, provider, engine, cut_account):
    """Two top-ups of a household that owes an emergency advance, and one of another household,
    in one batch: each top-up repays what is still owed in turn, every notice is written, and
    each household's meter gets its restore, as crediting them one by one would."""
    from app.billing.emergency import take_emergency_credit
    from app.commands.models import RESTORE, Command
    from app.estate.models import Account
    from app.ledger.models import EMERGENCY_CREDIT
    from app.notices.models import PAYMENT_RECEIVED, Notice
    from tests.factories import EstateFactory

    estate = EstateFactory(engine)
    owing = estate.account(gateway_id=estate.gateway("127.0.0.1", 2), unit_id=1, number="800001",
                           balance_fen=-500, relay_open=True, emergency_credit_fen=1000)
    with transaction(engine) as s:
        take_emergency_credit(s, s.exec(select(Account).where(Account.number == owing)).one())
    small, large = (start_payment(client, sandbox, owing, yuan) for yuan in ("5", "50"))
    other = start_payment(client, sandbox, cut_account)
    batch = [arrived(provider, sandbox, sandbox.build_notification(p))
             for p in (small, large, other)]
    assert desk.handle_batch(engine, batch) == [True, True, True]

    assert sorted(e.amount_fen for e in entries_of(engine, owing, "topup")) == [500, 5000]
    # One after another, in the order the desk takes them (by out_trade_no): each top-up repays
    # what is still owed of the 10.00 元.
    owed, expected = 1000, []
    for pay, amount in sorted([(small, 500), (large, 5000)], key=lambda p: p[0].out_trade_no):
        if repay := min(owed, amount):
            expected.append((-repay, f"emergency_repay:order:{pay.out_trade_no}"))
            owed -= repay
    repaid = [(e.amount_fen, e.idempotency_key) for e in entries_of(engine, owing, EMERGENCY_CREDIT)
              if e.amount_fen < 0]
    assert sorted(repaid) == sorted(expected) and sum(fen for fen, _ in repaid) == -1000
    assert balance_of(engine, owing) == -500 + 1000 + 500 + 5000 - 1000
    assert balance_of(engine, cut_account) == -500 + 5000
    with transaction(engine) as s:
        notices = s.exec(select(Notice.amount_fen).where(Notice.kind == PAYMENT_RECEIVED)).all()
        restores = s.exec(select(Command.meter_id).where(Command.action == RESTORE)).all()
    assert sorted(notices) == [500, 5000, 5000]
    assert len(restores) == len(set(restores)) == 2  # one per household's meter, never two


def test_a_notification_that_breaks_its_verifier_fails_alone(
        client, sandbox, provider, engine, cut_account):
    a, b = (start_payment(client, sandbox, cut_account) for _ in range(2))
    good = arrived(provider, sandbox, sandbox.build_notification(a))
    broken = arrived(provider, sandbox, sandbox.build_notification(b))

    class Breaks:  # the provider's verifier raises what it never should, for `broken` alone
        identifier = provider.identifier
        app_id = provider.app_id

        def parse_notify(self, headers, body):
            raise RuntimeError("injected: a bug in the verifier")

    broken.provider = Breaks()
    outcomes = desk.handle_batch(engine, [broken, good])
    assert isinstance(outcomes[0], RuntimeError) and outcomes[1] is True
    assert [status_of(engine, p.out_trade_no) for p in (a, b)] == [PAID, PENDING]
    assert refused_reasons(engine) == []


def test_copies_of_a_payment_after_close_in_one_batch_are_kept_once_for_a_manager(
        client, sandbox, provider, engine, cut_account):
    """An order we closed, paid all the same: two copies of its notification in one batch
    (with a payment of a pending order and one naming no order of ours between them) keep it
    once for a manager and credit nothing of it; the pending one is credited."""
    from sqlalchemy import update

    from app.orders.models import CLOSED, PAID_AFTER_CLOSE

    late, fresh = (start_payment(client, sandbox, cut_account) for _ in range(2))
    with transaction(engine) as s:
        s.execute(update(Order).where(Order.out_trade_no == late.out_trade_no)
                  .values(status=CLOSED))
    stranger = sandbox.build_notification(fresh)
    stranger["out_trade_no"] = "FK-NOT-OURS"
    batch = [arrived(provider, sandbox, sandbox.build_notification(late)),
             arrived(provider, sandbox, sandbox.sign_form(stranger)),
             arrived(provider, sandbox, sandbox.build_notification(fresh)),
             arrived(provider, sandbox, sandbox.build_notification(late))]
    assert desk.handle_batch(engine, batch) == [True, False, True, True]
    assert [status_of(engine, p.out_trade_no) for p in (late, fresh)] == [PAID_AFTER_CLOSE, PAID]
    assert [e.amount_fen for e in entries_of(engine, cut_account, "topup")] == [5000]
    assert balance_of(engine, cut_account) == -500 + 5000
    assert refused_reasons(engine) == ["paid_after_close", "unknown_order"]
