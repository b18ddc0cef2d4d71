"""`feikong tariff add | list | assign`: a manager's tariff work from the shell, on the same
functions the console will call.

- `add NAME --file T.json [--from YYYY-MM-DD]`: a new tariff, or a new version of the tariff
  NAME in effect from local midnight of that date (default: today, China time). The JSON form
  is docs/tariffs.md's; a bad one is refused with a message naming the field, nothing saved.
  Versions are never edited: a price change is a new version.
- `list`: each tariff, its versions (date and kind) and how many accounts are on it.
- `assign NAME (--account 户号 … | --building ID …) [--uplift | --no-uplift]`: put accounts on
  the tariff from their next charge; `--uplift` grants the 一户多人口 raise of the tier bounds.
  `assign flat …` puts them back on their flat price. An account's cycle figures are kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, select

from app.estate.models import Account, Building
from app.tariffs import CHINA_TZ
from app.tariffs.model import TariffError
from app.tariffs.models import StoredTariff, StoredTariffVersion
from app.tariffs.store import add_tariff, add_version

FLAT = "flat"  # `assign flat`: back to the account's own flat price


class AdminError(ValueError):
    """A request that cannot be done as asked; the message says why."""


def add(session: Session, name: str, tariff_json: str, effective_from: dt.date) -> str:
    """A new tariff, or a new version of tariff `name`; returns what was done, for the manager."""
    name = name.strip()
    if not name or name == FLAT:
        raise AdminError(f"a tariff needs a name other than {FLAT!r}")
    tariff = session.exec(select(StoredTariff).where(StoredTariff.name == name)).first()
    if tariff is None:
        tariff = add_tariff(session, name, tariff_json, effective_from)
        return f"tariff {name!r} (id {tariff.id}) added, in effect from {effective_from}"
    taken = session.exec(select(StoredTariffVersion.id).where(
        StoredTariffVersion.tariff_id == tariff.id,
        StoredTariffVersion.effective_from == effective_from)).first()
    if taken is not None:
        raise AdminError(f"tariff {name!r} has a version from {effective_from} already; versions "
                         "are never edited: give another date")
    add_version(session, tariff.id, effective_from, tariff_json)
    return f"tariff {name!r}: new version in effect from {effective_from}"


def listing(session: Session) -> list[str]:
    lines = []
    for tariff in session.exec(select(StoredTariff).order_by(StoredTariff.name)):
        accounts = session.exec(select(func.count()).select_from(Account)
                                .where(Account.tariff_id == tariff.id)).one()
        lines.append(f"{tariff.name} (id {tariff.id}): {accounts} accounts")
        for version in session.exec(select(StoredTariffVersion)
                                    .where(StoredTariffVersion.tariff_id == tariff.id)
                                    .order_by(StoredTariffVersion.effective_from)):
            kind = json.loads(version.tariff_json).get("kind", "?")
            lines.append(f"  from {version.effective_from}: {kind}")
    return lines or ["no tariffs: every account is on its flat price"]


def assign(session: Session, name: str, *, accounts: list[str], buildings: list[int],
           uplift: bool | None = None) -> str:
    """Put the accounts named (户号) and every open account of the buildings on tariff `name`
    (`flat`: their own flat price). Raises AdminError, changing nothing, for an unknown tariff,
    account or building."""
    if not accounts and not buildings:
        raise AdminError("name the accounts (--account) or buildings (--building) to assign")
    tariff_id = None
    if name != FLAT:
        tariff_id = session.exec(select(StoredTariff.id).where(StoredTariff.name == name)).first()
        if tariff_id is None:
            raise AdminError(f"no tariff {name!r} (feikong tariff list)")
    chosen = list(session.exec(select(Account).where(Account.number.in_(accounts)))) \
        if accounts else []
    missing = sorted(set(accounts) - {a.number for a in chosen})
    if missing:
        raise AdminError(f"no account {', '.join(missing)}")
    for building_id in buildings:
        if session.get(Building, building_id) is None:
            raise AdminError(f"no building {building_id}")
        chosen += session.exec(select(Account).where(Account.building_id == building_id,
                                                     Account.closed_at.is_(None)))
    unique = {a.id: a for a in chosen}.values()
    for account in unique:
        account.tariff_id = tariff_id
        if uplift is not None:
            account.tariff_uplift = uplift
        session.add(account)
    return f"{len(unique)} accounts now on {name}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tariff_command", required=True)
    add_p = sub.add_parser("add", help="a new tariff, or a new version of one")
    add_p.add_argument("name")
    add_p.add_argument("--file", required=True, help="the tariff's JSON form (docs/tariffs.md)")
    add_p.add_argument("--from", dest="effective_from",
                       help="YYYY-MM-DD, local midnight (China time); default today")
    sub.add_parser("list", help="tariffs, their versions and accounts")
    assign_p = sub.add_parser("assign", help="put accounts on a tariff (or `flat`)")
    assign_p.add_argument("name")
    assign_p.add_argument("--account", action="append", default=[], help="户号 (repeatable)")
    assign_p.add_argument("--building", action="append", default=[], type=int,
                          help="building id (repeatable): its open accounts")
    assign_p.add_argument("--uplift", action=argparse.BooleanOptionalAction, default=None,
                          help="grant (or withdraw) the 一户多人口 raise of the tier bounds")


def run(args, engine) -> int:
    """The `feikong tariff` command; exit 2 with a message on anything refused."""
    from app.db import transaction

    try:
        if args.tariff_command == "list":
            with transaction(engine, read_only=True) as session:
                print("\n".join(listing(session)))
            return 0
        with transaction(engine) as session:
            if args.tariff_command == "add":
                try:
                    text = Path(args.file).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise AdminError(f"cannot read {args.file}: {exc}") from exc
                day = (_date(args.effective_from) if args.effective_from
                       else dt.datetime.now(CHINA_TZ).date())
                print(add(session, args.name, text, day))
            else:
                print(assign(session, args.name, accounts=args.account, buildings=args.building,
                             uplift=args.uplift))
        return 0
    except (AdminError, TariffError) as exc:
        print(f"feikong tariff: {exc}", file=sys.stderr)
        return 2


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise AdminError(f"--from: {text!r} is not a date (YYYY-MM-DD)") from None
