"""What a fault cost: the payments, ledger entries and commands lost or doubled, checked in the
database against what the providers paid and what was expected of the meters."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from sqlmodel import select

from app.commands.models import DONE, RESTORE, Command
from app.db import transaction
from app.ledger.checks import verify_balances
from app.ledger.models import TOPUP, LedgerEntry
from app.orders.models import PAID, Order


@dataclass
class Loss:
    """Counts of what went missing (`fen`, `orders`, `entries`, `commands`), of what happened
    more than once (`doubled`) and of what was half-written (`half_written`: an order paid
    without its top-up, a kept balance that is not its ledger's sum)."""

    fen: int = 0
    orders: int = 0
    entries: int = 0
    commands: int = 0
    doubled: dict[str, int] = field(default_factory=dict)
    half_written: dict[str, int] = field(default_factory=dict)

    def nothing(self) -> bool:
        return not (self.fen or self.orders or self.entries or self.commands
                    or any(self.doubled.values()) or any(self.half_written.values()))

    def __str__(self) -> str:
        counts = (f"{self.fen} fen, {self.orders} orders, {self.entries} ledger entries, "
                  f"{self.commands} commands")
        if self.nothing():
            return f"nothing ({counts})"
        extra = [f"{n} {what} doubled" for what, n in self.doubled.items() if n]
        extra += [f"{n} {what}" for what, n in self.half_written.items() if n]
        return ", ".join([counts] + extra)


def audit(engine, paid: dict[str, int], restores: int | None = None) -> Loss:
    """Compare the database with what the provider was paid (`paid`: out_trade_no → fen, each
    notified at least once) and, with `restores`, the number of restore commands that should
    have been queued and done."""
    loss = Loss()
    with transaction(engine, read_only=True) as s:
        status = dict(s.exec(select(Order.out_trade_no, Order.status)).all())
        credited: dict[str, list[int]] = collections.defaultdict(list)
        for key, amount in s.exec(select(LedgerEntry.idempotency_key, LedgerEntry.amount_fen)
                                  .where(LedgerEntry.kind == TOPUP)):
            credited[key.removeprefix("order:")].append(amount)
        commands = list(s.exec(select(Command).where(Command.action == RESTORE)))
    for no, fen in paid.items():
        amounts = credited.get(no, [])
        loss.orders += status.get(no) != PAID
        loss.entries += not amounts
        loss.fen += max(0, fen - sum(amounts))
        loss.doubled["top-ups"] = loss.doubled.get("top-ups", 0) + max(0, len(amounts) - 1)
        loss.doubled["fen"] = loss.doubled.get("fen", 0) + max(0, sum(amounts) - fen)
    # credits for orders nobody paid, and orders paid here without their top-up
    loss.doubled["unpaid credits"] = sum(len(a) for no, a in credited.items() if no not in paid)
    loss.half_written["paid orders without a top-up"] = sum(
        1 for no, st in status.items() if st == PAID and no not in credited)
    loss.half_written["balances ≠ ledger sums"] = len(verify_balances(engine).mismatches)
    if restores is not None:
        done = sum(c.state == DONE for c in commands)
        loss.commands = max(0, restores - done)
        loss.doubled["restores"] = max(0, len(commands) - restores)
    return loss
