"""The console's states judged in SQL (`app.console.states`) agree with the balance every other
part reads (`funds`: the kept ledger less the accrued charge, rounded by the one rule), also
for accounts whose accrued charge brings them just across a line."""

from __future__ import annotations

import random

from sqlmodel import select

from app.console import states
from app.db import transaction
from app.estate.models import Account, Meter
from tests.factories import EstateFactory


def _estate(engine, rng: random.Random) -> dict[str, tuple[int, int]]:
    """40 accounts with balances and accrued charges around their lines; some cut, offline,
    on the care list."""
    factory = EstateFactory(engine, name="状态")
    gateway = factory.gateway("127.0.0.1", 1)
    made = {}
    for u in range(1, 41):
        number = f"30{u:04d}"
        factory.account(gateway_id=gateway, unit_id=u, number=number,
                        balance_fen=rng.choice([1_000, 1_001, 999, 0, 1, -1, 500]))
        made[number] = u
    with transaction(engine) as s:
        for a in s.exec(select(Account)):
            a.low_balance_threshold_fen = 1_000
            a.cut_below_fen = rng.choice([0, 1])
            a.care_list = rng.random() < 0.2
            s.add(a)
        for m in s.exec(select(Meter)):
            # an accrued charge of 0 to 2 fen, in 1e-7 yuan, around the rounding's half
            m.billed_fen = rng.randint(0, 50)
            m.billed_exact_e7 = m.billed_fen * 100_000 + rng.choice(
                [0, 1, 49_999, 50_000, 50_001, 99_999, 100_000, 150_000, 199_999])
            m.relay_open = rng.random() < 0.3
            m.online = rng.random() > 0.2
            s.add(m)
    return made


def test_sql_states_agree_with_the_balance_everyone_reads(engine):
    _estate(engine, random.Random(7))
    with transaction(engine, read_only=True) as s:
        every = list(s.exec(select(Account).order_by(Account.number)))
        truth = states.judge(s, every)
        counted = states.counts(s, select(Account))
        for state in states.STATES:
            expected = [a.number for a in every if state in truth[a.id][0]]
            got, _ = states.page(s, select(Account).order_by(Account.number), state, 1_000)
            assert [a.number for a in got] == expected, state
            small, _ = states.page(s, select(Account).order_by(Account.number), state, 3)
            assert [a.number for a in small] == expected[:3], state
            assert sum(row[state] for row in counted.values()) == len(expected), state
        assert sum(row["balance"] for row in counted.values()) == sum(
            balance for _, balance in truth.values())
        assert sum(row["households"] for row in counted.values()) == len(every)
    low = [a for a in every if "low" in truth[a.id][0]]
    # the accrued charge counts: some account's kept balance is not low, its balance is
    assert any(truth[a.id][1] < 1_000 for a in low)


def test_the_rounding_rule_in_sql_is_the_rounding_rule(engine):
    """`e7_to_fen_sql` computed by the database agrees with `e7_to_fen`, value by value, at
    every half and around it."""
    import sqlalchemy as sa

    from app.money import e7_to_fen, e7_to_fen_sql

    rng = random.Random(3)
    values = [0, 1, 49_999, 50_000, 50_001, 99_999, 100_000, 149_999, 150_000, 150_001,
              10 ** 15 + 50_000] + [rng.randint(0, 10 ** 13) for _ in range(500)]
    with transaction(engine, read_only=True) as s:
        got = [s.execute(sa.select(e7_to_fen_sql(sa.literal(v, sa.BigInteger)))).scalar()
               for v in values]
    assert got == [e7_to_fen(v) for v in values]
