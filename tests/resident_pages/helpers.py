"""What the resident-page tests share: residents bound to households, signed in by cookie, and
ledger entries at the times a test needs (the ledger stamps `utcnow()`: a past month's entries
are written as the batch writers write them, `insert_entries` at a given time)."""

from __future__ import annotations

import datetime as dt
import re

import sqlalchemy as sa

from app.billing.services import insert_entries
from app.db import transaction
from app.estate.models import Account
from app.ledger.days import day_start
from app.ledger.models import LedgerEntry
from app.resident import identity
from app.resident.agreement import load_agreement
from app.resident.identity import accept_agreement
from app.resident.models import Resident, ResidentAccount
from app.tariffs import CHINA_TZ


def local(*args) -> dt.datetime:
    """A local (China time) instant as aware UTC."""
    return dt.datetime(*args, tzinfo=CHINA_TZ).astimezone(dt.timezone.utc)


def resident(engine, phone: str, *numbers: str, read_at: dt.datetime | None = None,
             accepted: bool = True) -> int:
    """A resident with a proved phone, bound to the households `numbers` (the prepaid
    agreement accepted for each, unless not `accepted`); returns their id."""
    version = load_agreement(None).version
    with transaction(engine) as s:
        r = Resident(phone=phone)
        s.add(r)
        s.flush()
        for number in numbers:
            account = s.execute(sa.select(Account).where(Account.number == number)).scalar_one()
            s.add(ResidentAccount(resident_id=r.id, account_id=account.id,
                                  notices_read_at=read_at))
            if accepted:
                accept_agreement(s, r.id, account.id, version, "test")
        return r.id


def sign_in(client, settings, resident_id: int) -> None:
    client.cookies.set(identity.SESSION_COOKIE,
                       identity.session_value(settings.secret_key, resident_id))


def account_id(engine, number: str) -> int:
    with transaction(engine, read_only=True) as s:
        return s.execute(sa.select(Account.id).where(Account.number == number)).scalar_one()


def post(engine, at: dt.datetime, rows: list[tuple]) -> None:
    """Ledger entries (account_id, amount_fen, kind, key, memo, energy_wh) created at `at`."""
    with transaction(engine) as s:
        insert_entries(s.connection(), rows, created_at=at)


def ledger_sum(engine, account: int, before: dt.datetime | None = None,
               since: dt.datetime | None = None) -> int:
    e = LedgerEntry.__table__
    query = sa.select(sa.func.coalesce(sa.func.sum(e.c.amount_fen), 0)).where(
        e.c.account_id == account)
    if before is not None:
        query = query.where(e.c.created_at < before)
    if since is not None:
        query = query.where(e.c.created_at >= since)
    with transaction(engine, read_only=True) as s:
        return int(s.execute(query).scalar())


def month_start(year: int, month: int) -> dt.datetime:
    return day_start(dt.date(year, month, 1))


def yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def text_of(html: str, element_id: str) -> str:
    """The text inside the element with this id (tags dropped, spaces squeezed)."""
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</(td|p|table|span|div|dd)>', html, re.S)
    assert match, f"no element #{element_id}"
    return " ".join(re.sub(r"<[^>]+>", " ", match[1]).split())


def rows_of(html: str, table_id: str) -> list[list[str]]:
    """The body rows of the table with this id, each a list of its cells' texts."""
    match = re.search(rf'<table[^>]*id="{table_id}"[^>]*>(.*?)</table>', html, re.S)
    assert match, f"no table #{table_id}"
    body = re.search(r"<tbody>(.*?)</tbody>", match[1], re.S)
    out = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body[1] if body else match[1], re.S):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        out.append([" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in cells])
    return out
