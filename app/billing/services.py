"""Turning consumption into charges on the ledger: the account's flat price, or its tariff
(tiered, time-of-use, both; versioned) — see docs/billing.md."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Connection, insert
from sqlmodel import Session

from app.db import DRIVER_PLACEHOLDERS, utcnow
from app.estate.models import Account, Meter
from app.ledger.models import CHARGE, LedgerEntry
from app.ledger.services import balance_fen, post_entry
from app.billing.pricing import describe, price_consumption
from app.money import energy_cost, post_increment
from app.tariffs.store import tariff_versions
from app.notices.services import NoticeBatch, warn_low_balance
from app.policy.services import note_exhaustion, review_cut

E7 = Decimal(10) ** 7  # billed totals are kept as integers of 1e-7 yuan: exact for 4-place prices

# The ledger columns `insert_entries` fills, in the order of its rows (then `created_at`).
ENTRY_COLUMNS = ("account_id", "amount_fen", "kind", "idempotency_key", "memo", "energy_wh")


def insert_entries(connection: Connection, rows: Sequence[tuple], *,
                   created_at: dt.datetime) -> None:
    """Insert many new ledger entries at once, in the caller's transaction: each row is
    (account_id, amount_fen, kind, idempotency_key, memo, energy_wh), all created at
    `created_at` (aware UTC). For batches (a building's shares, a day's charges) whose keys are
    new: unlike `post_entry` nothing is checked first, and a key posted before fails the whole
    statement (the UNIQUE constraint), rolling back the caller's transaction.

    One executemany with the driver's own placeholders: the per-row values are plain ints and
    strings, which every driver takes as they are, and the one timestamp goes through the
    column's own type once (UTC, the form `UTCDateTime` stores), so nothing is processed per
    row. A driver with another parameter style gets a Core `insert` (same rows, slower)."""
    if not rows:
        return
    table = LedgerEntry.__table__
    placeholder = DRIVER_PLACEHOLDERS.get(connection.dialect.paramstyle)
    if placeholder is None:
        connection.execute(insert(table), [dict(zip(ENTRY_COLUMNS, row), created_at=created_at)
                                           for row in rows])
        return
    column_type = table.c.created_at.type.dialect_impl(connection.dialect)
    process = column_type.bind_processor(connection.dialect)
    at = process(created_at) if process else created_at
    columns = ENTRY_COLUMNS + ("created_at",)
    connection.exec_driver_sql(
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([placeholder] * len(columns))})",
        [(*row, at) for row in rows])


def post_consumption(session: Session, meter: Meter, account: Account,
                     energy_wh: int, *, interval: str, start_at: dt.datetime | None = None,
                     end_at: dt.datetime | None = None,
                     period_deltas_wh: tuple[int, ...] | None = None) -> int:
    """Charge `account` for `energy_wh` its meter counted over `interval` (the two register
    readings, "from:to" in Wh); returns fen posted.

    The exact cost accumulates on the meter (`billed_exact_e7`); the charge posted is whatever
    brings the posted total to the exact total rounded once (see `app.money.post_increment`),
    so the sub-fen remainder is carried, never lost or invented. The idempotency key is the
    meter and the interval, so the same interval processed twice charges once.

    With a tariff (`account.tariff_id`), the energy of [start_at, end_at) (UTC; `end_at`
    defaults to now) is priced by the versions in effect, tiers counting the account's cycle
    energy (`cycle_start`, `cycle_wh`, moved on here), time-of-use periods from
    `period_deltas_wh` (Wh per spike/peak/flat/valley register) when usable, else by time
    (`app.billing.pricing`). Never posts a negative charge.
    """
    if energy_wh <= 0:
        return 0
    priced = None
    if account.tariff_id is None:
        exact = energy_cost(energy_wh, account.price_yuan_per_kwh)
        memo = f"{energy_wh} Wh × {account.price_yuan_per_kwh} 元/kWh"
    else:
        priced = price_consumption(
            tariff_versions(session, account.tariff_id), start_at=start_at,
            end_at=end_at or utcnow(), energy_wh=energy_wh, cycle_start=account.cycle_start,
            cycle_wh=account.cycle_wh, uplift=account.tariff_uplift,
            period_deltas_wh=period_deltas_wh)
        exact, memo = priced.quote.exact_yuan, describe(priced)
    before = Decimal(meter.billed_exact_e7) / E7
    fen = post_increment(before, exact)
    entry = post_entry(
        session, account_id=account.id, amount_fen=-fen, kind=CHARGE,
        idempotency_key=f"charge:{meter.id}:{interval}", memo=memo, energy_wh=energy_wh,
    )
    if entry is None:
        return 0
    if priced is not None:
        account.cycle_start, account.cycle_wh = priced.cycle_start, priced.cycle_wh
        session.add(account)
    meter.billed_exact_e7 += int(exact * E7)
    meter.billed_fen += fen
    session.add(meter)
    return fen


def cut_if_exhausted(session: Session, meter: Meter, account: Account,
                     balance: int | None = None, *, now: dt.datetime | None = None,
                     last: NoticeBatch | None = None) -> bool:
    """After a poll found `meter` supplying: warn, and queue a cut where the policy allows.

    Keeps the account's exhaustion episode (`exhausted_at`), adds the balance notice now due
    (low, less than a day, exhausted: `app.notices.services.warn_low_balance`), and, when the
    balance (given, or read) is below the account's cut line, applies the cut policy
    (`app.policy.services.review_cut`: quiet hours, public holidays, the notice's lead time, the
    care list, approval; every decision not to cut is recorded with its reason). No new cut
    while an earlier command for this meter expired unconfirmed and no manager has looked at
    it (a welded relay would otherwise be sent a new cut after every expiry). Returns True
    when a cut was queued. `now` defaults to the clock; tests pass their own.
    """
    if meter.relay_open is not False:
        return False
    now = now or utcnow()
    if balance is None:
        balance = balance_fen(session, account.id)
    exhausted = note_exhaustion(account, balance, now)
    if account not in session:  # (the worker's are the session's own already)
        session.add(account)
    warn_low_balance(session, account, balance, now, last)
    if not exhausted:
        return False
    if last is not None:
        last.insert(session)  # the policy reads the exhausted notice back
    return review_cut(session, meter, account, balance, now)
