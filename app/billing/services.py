"""Turning consumption into charges on the ledger: the account's flat price, or its tariff
(tiered, time-of-use, both; versioned) — see docs/billing.md."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from itertools import chain

from sqlalchemy import Connection, insert
from sqlmodel import Session

from sqlmodel import select

from app.db import DRIVER_PLACEHOLDERS, transaction, utcnow
from app.estate.models import Account, Meter
from app.ledger.models import CHARGE, LedgerEntry
from app.ledger.services import balance_fen, kept_balance_fen, lock_balances, post_entry
from app.billing.pricing import accrue_lines, describe_accrued, price_consumption
from app.money import E7, e7_to_fen, energy_cost
from app.tariffs.store import tariff_versions
from app.notices.services import NoticeBatch, warn_low_balance
from app.policy.services import note_exhaustion, review_cut


# The ledger columns `insert_entries` fills, in the order of its rows (then `created_at`).
ENTRY_COLUMNS = ("account_id", "amount_fen", "kind", "idempotency_key", "memo", "energy_wh")


def insert_entries(connection: Connection, rows: Sequence[tuple], *,
                   created_at: dt.datetime) -> None:
    """Insert many new ledger entries at once, in the caller's transaction: each row is
    (account_id, amount_fen, kind, idempotency_key, memo, energy_wh), all created at
    `created_at` (aware UTC). For batches (a building's shares, a day's charges) whose keys are
    new: unlike `post_entry` nothing is checked first, and a key posted before fails the whole
    statement (the UNIQUE constraint), rolling back the caller's transaction.

    Statements of `ROWS_PER_INSERT` rows each (multi-row VALUES) with the driver's own
    placeholders: the per-row values are plain ints and strings, which every driver takes as
    they are, and the one timestamp goes through the column's own type once (UTC, the form
    `UTCDateTime` stores), so nothing is processed per row. Many rows a statement, not one: the
    ledger's trigger (the kept balance) costs SQLite a statement journal per statement, which
    made one-row statements three times dearer (15 against 5.5 µs a row measured). On SQLite
    the timestamp is bound once per statement (`?1` in every row) and the rows' values are
    passed as they are, chained (10 % of the statement's time against a tuple of each row with
    the timestamp added). A driver with another parameter style gets a Core `insert` (same
    rows, slower)."""
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
    if placeholder == "?":  # SQLite: ?1 is the timestamp, each plain ? the next number
        columns = ("created_at",) + ENTRY_COLUMNS
        one = f"(?1, {', '.join(['?'] * len(ENTRY_COLUMNS))})"

        def values(chunk):
            return (at, *chain.from_iterable(chunk))
    else:
        columns = ENTRY_COLUMNS + ("created_at",)
        one = f"({', '.join([placeholder] * len(columns))})"

        def values(chunk):
            return tuple(value for row in chunk for value in (*row, at))
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "
    full = head + ", ".join([one] * ROWS_PER_INSERT)
    for k in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[k:k + ROWS_PER_INSERT]
        sql = full if len(chunk) == ROWS_PER_INSERT else head + ", ".join([one] * len(chunk))
        connection.exec_driver_sql(sql, values(chunk))


ROWS_PER_INSERT = 200  # 1,400 parameters: far inside SQLite's 32,766 and psycopg's 65,535


def post_consumption(session: Session, meter: Meter, account: Account,
                     energy_wh: int, *, interval: str, start_at: dt.datetime | None = None,
                     end_at: dt.datetime | None = None,
                     period_deltas_wh: tuple[int, ...] | None = None,
                     every_reading: bool = False, kept: dict[int, int] | None = None) -> int:
    """Charge `account` for `energy_wh` its meter counted over `interval` (the two register
    readings, "from:to" in Wh); returns the fen posted to the ledger by this call.

    The exact cost accumulates on the meter (`billed_exact_e7`) at every reading, as before;
    what reaches the ledger is posted per local hour (`post_accrued`): the charge accrued in an
    hour is posted by the first reading of a later hour (or by the billing jobs' sweep,
    `post_stale_accruals`), and at once when it would take the balance across the account's
    low-balance or cut line. Each posting is whatever brings the posted total to the exact
    total rounded once (`app.money.post_increment`), so the ledger carries the same money as
    posting every reading, and the balance everyone reads (`app.ledger.services.balance_fen`)
    includes what is accrued: at every reading it is the balance per-reading posting would give.
    `every_reading=True` posts every reading (the rule before; the property tests' reference).
    `kept`: the kept balances (account id → fen) of the caller's batch, read once and moved on
    here as this posts; without it the balance row is read when the accrual grows by a fen.
    The idempotency key is the meter and the register span posted, `charge:<meter>:<from>:<to>`.

    With a tariff (`account.tariff_id`), the energy of [start_at, end_at) (UTC; `end_at`
    defaults to now) is priced by the versions in effect, tiers counting the account's cycle
    energy (`cycle_start`, `cycle_wh`, moved on here), time-of-use periods from
    `period_deltas_wh` (Wh per spike/peak/flat/valley register) when usable, else by time
    (`app.billing.pricing`). Never posts a negative charge.
    """
    if energy_wh <= 0:
        return 0
    end_at = end_at or utcnow()
    hour = hour_of(end_at)
    posted = 0
    if meter.accrued_hour is not None and meter.accrued_hour != hour:
        posted += post_accrued(session, meter, account)
        if kept is not None and account.id in kept:
            kept[account.id] -= posted
    priced = None
    if account.tariff_id is None:
        exact = energy_cost(energy_wh, account.price_yuan_per_kwh)
    else:
        priced = price_consumption(
            tariff_versions(session, account.tariff_id), start_at=start_at,
            end_at=end_at, energy_wh=energy_wh, cycle_start=account.cycle_start,
            cycle_wh=account.cycle_wh, uplift=account.tariff_uplift,
            period_deltas_wh=period_deltas_wh)
        exact = priced.quote.exact_yuan
        account.cycle_start, account.cycle_wh = priced.cycle_start, priced.cycle_wh
        session.add(account)
    meter.accrued_lines = accrue_lines(meter.accrued_lines, priced, energy_wh=energy_wh,
                                       price=account.price_yuan_per_kwh)
    from_wh, _, to_wh = interval.partition(":")
    pending_before = e7_to_fen(meter.billed_exact_e7) - meter.billed_fen
    if meter.accrued_from_wh is None:
        meter.accrued_from_wh, meter.accrued_hour = _register(from_wh), hour
    meter.accrued_to_wh = _register(to_wh)
    meter.accrued_wh += energy_wh
    meter.billed_exact_e7 += int(exact * E7)
    session.add(meter)
    pending = e7_to_fen(meter.billed_exact_e7) - meter.billed_fen
    if every_reading or (pending > pending_before
                         and _crosses_a_line(session, account, pending_before, pending, kept)):
        now_posted = post_accrued(session, meter, account, always=every_reading)
        if kept is not None and account.id in kept:
            kept[account.id] -= now_posted
        posted += now_posted
    return posted


def _register(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def hour_of(moment: dt.datetime) -> dt.datetime:
    """The start of the local hour holding `moment`, as an aware UTC instant (China time is
    UTC+8, a whole number of hours: its hours start when UTC's do)."""
    return moment.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)


def _crosses_a_line(session: Session, account: Account, pending_before: int,
                    pending: int, kept: dict[int, int] | None = None) -> bool:
    """Whether the accrued charge growing from `pending_before` to `pending` fen takes the
    account's balance (the ledger's sum less it; the account's other meters aside) across its
    low-balance or cut line."""
    ledger = (kept[account.id] if kept is not None and account.id in kept
              else kept_balance_fen(session, account.id))
    before, after = ledger - pending_before, ledger - pending
    return any(after < line <= before
               for line in (account.low_balance_threshold_fen, account.cut_below_fen))


def post_accrued(session: Session, meter: Meter, account: Account, *,
                 always: bool = False) -> int:
    """Post the meter's accrued charge to the ledger, in the caller's transaction; returns the
    fen posted. An accrual of less than a fen is kept accruing (into the next hour), unless
    `always`; a span posted before (its key exists) stays accrued for the next posting, so
    nothing is lost. The memo says what the span was priced at (`describe_accrued`)."""
    if meter.accrued_from_wh is None and meter.accrued_to_wh is None:
        return 0
    fen = e7_to_fen(meter.billed_exact_e7) - meter.billed_fen
    if fen <= 0 and not always:
        return 0
    entry = post_entry(
        session, account_id=account.id, amount_fen=-fen, kind=CHARGE,
        idempotency_key=f"charge:{meter.id}:{meter.accrued_from_wh}:{meter.accrued_to_wh}",
        memo=describe_accrued(meter.accrued_lines), energy_wh=meter.accrued_wh)
    if entry is not None:
        meter.billed_fen += fen
        meter.accrued_from_wh = meter.accrued_to_wh = meter.accrued_hour = None
        meter.accrued_wh, meter.accrued_lines = 0, None
    session.add(meter)
    return fen if entry is not None else 0


def post_stale_accruals(engine, now: dt.datetime | None = None) -> int:
    """Post every accrual of an hour before the current one (a meter that stopped using energy,
    or stopped answering, waits for no next reading); returns the fen posted. Balance rows are
    locked before meter rows, as the worker takes them."""
    hour = hour_of(now or utcnow())
    with transaction(engine, read_only=True) as s:
        ids = list(s.exec(select(Meter.id).where(Meter.accrued_hour < hour,
                                                 Meter.account_id.is_not(None))))
    posted = 0
    for chunk in (ids[i:i + 200] for i in range(0, len(ids), 200)):
        with transaction(engine) as s:
            lock_balances(s, set(s.exec(select(Meter.account_id).where(Meter.id.in_(chunk)))))
            meters = s.exec(select(Meter).where(Meter.id.in_(chunk), Meter.accrued_hour < hour)
                            .order_by(Meter.id).with_for_update()).all()
            for meter in meters:
                posted += post_accrued(s, meter, s.get(Account, meter.account_id))
    return posted


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
