"""Writing a checked plan (`app.estate.importing.plan`) in the caller's transaction: buildings,
gateways, accounts, meters, then each new account's opening balance as an `opening` ledger entry
of its own (key `opening:<户号>`, so it can never be posted twice), and an audit entry for every
object created or changed (before → after, personal data masked) plus one for the import.

New accounts, meters and audit entries are written by one multi-row INSERT each (SQLAlchemy
Core, its columns' defaults): building 10,000 ORM objects costs far more than inserting them.
Changed objects are few and are changed through the ORM."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlmodel import Session, select

from app.console import audit
from app.console.auth import Who
from app.estate.importing.plan import Plan, describe
from app.estate.importing.spec import COMMON, HOUSEHOLD, MAIN
from app.estate.models import Account, Building, Gateway, Meter
from app.ledger.models import OPENING
from app.ledger.services import post_entries
from app.money import fen_to_yuan_str

Progress = Callable[[int, int], None]
CHUNK = 2000  # rows per INSERT … RETURNING


def apply_plan(session: Session, plan: Plan, *, who: Who | None = None, client: str = "",
               file_name: str = "", progress: Progress | None = None) -> None:
    if not plan.ok:
        raise ValueError("a plan with problems is never written")
    steps = 6
    tick = progress or (lambda done, total: None)
    building_ids = {b.name: b.id for b in session.exec(
        select(Building).where(Building.estate_id == plan.estate_id))}
    for op in plan.buildings:
        if op.existing is None:
            op.created = Building(estate_id=plan.estate_id, name=op.key, **op.values)
            session.add(op.created)
        else:
            for column, (_old, new) in op.changed.items():
                setattr(op.existing, column, new)
    session.flush()
    building_ids.update({op.key: op.created.id for op in plan.buildings if op.created})
    tick(1, steps)

    gateway_ids = {}
    for op in plan.gateways:
        if op.existing is None:
            op.created = Gateway(name=op.key, **op.values)
            session.add(op.created)
        else:
            gateway_ids[op.key] = op.existing.id
            for column, (_old, new) in op.changed.items():
                setattr(op.existing, column, new)
    session.flush()
    gateway_ids.update({op.key: op.created.id for op in plan.gateways if op.created})
    tick(2, steps)

    account_ids, new_accounts = {}, []
    for op in plan.accounts:
        if op.existing is None:
            values = {k: v for k, v in op.values.items() if k not in ("building", "meter")}
            new_accounts.append(dict(values, number=op.key,
                                     building_id=building_ids[op.values["building"]]))
        else:
            account_ids[op.key] = op.existing.id
            for column, (_old, new) in op.changed.items():
                if column == "building":
                    op.existing.building_id = building_ids[new]
                elif column != "meter":
                    setattr(op.existing, column, new)
    session.flush()
    table = Account.__table__
    for chunk in _chunks(new_accounts):
        account_ids.update(session.execute(
            sa.insert(table).returning(table.c.number, table.c.id), chunk).all())
    tick(3, steps)

    new_meters = []
    for op in plan.meters:
        if op.existing is None:
            gateway, unit = op.key.rsplit(" / ", 1)
            new_meters.append(dict(
                gateway_id=_gateway_id(session, gateway_ids, gateway), unit_id=int(unit),
                **_meter_columns(op.values, building_ids, account_ids, new=True)))
        elif op.changed:
            changed = {c: new for c, (_old, new) in op.changed.items()}
            columns = _meter_columns(changed | {"kind": op.values["kind"]}, building_ids,
                                     account_ids)
            if op.values["kind"] != HOUSEHOLD and op.values.get("building"):
                columns["building_id"] = building_ids[op.values["building"]]
            for column, value in columns.items():
                setattr(op.existing, column, value)
    session.flush()
    for chunk in _chunks(new_meters):
        session.execute(sa.insert(Meter.__table__), chunk)
    tick(4, steps)

    post_entries(session, [
        dict(account_id=account_ids[number], amount_fen=fen, kind=OPENING,
             idempotency_key=f"opening:{number}", memo="期初余额", energy_wh=None)
        for number, fen in plan.openings.items()])
    tick(5, steps)

    acts = []
    for op in plan.changes():
        before, after = describe(op, plan.tariff_names)
        if op.existing is None and op.sheet.key == "accounts" and op.key in plan.openings:
            after += f"; 期初余额={fen_to_yuan_str(plan.openings[op.key])}"
        acts.append(dict(action=f"import.{op.action}", object_type=_OBJECT[op.sheet.key],
                         object_id=op.key, before=before, after=after, reason=file_name))
    if acts:
        summary = "; ".join(f"{title} 新增 {c.created} 更新 {c.updated} 不变 {c.unchanged}"
                            for title, c in plan.counts().items())
        acts.append(dict(action="import", object_type="estate", object_id=plan.estate_id,
                         after=summary, reason=file_name))
    for chunk in _chunks(acts):
        audit.record_many(session, who, chunk, estate_id=plan.estate_id, client=client)
    session.flush()
    tick(6, steps)


_OBJECT = {"buildings": "building", "gateways": "gateway", "meters": "meter",
           "accounts": "account"}


def _chunks(rows: list, size: int = CHUNK):
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def _gateway_id(session: Session, gateway_ids: dict, name: str) -> int:
    if name not in gateway_ids:  # a gateway of the database the file does not list
        gateway_ids[name] = session.exec(select(Gateway.id).where(Gateway.name == name)).one()
    return gateway_ids[name]


def _meter_columns(values: dict, building_ids: dict, account_ids: dict,
                   new: bool = False) -> dict:
    """Meter columns from a plan's values (or changed values): kind → common_area and
    building_main (a household meter has no building of its own), building, max power,
    account. A new meter's row has every column the others have (one INSERT)."""
    columns = {"account_id": None, "building_id": None} if new else {}
    if "kind" in values:
        kind = values["kind"]
        columns.update(common_area=kind == COMMON, building_main=kind == MAIN)
        if kind == HOUSEHOLD:
            columns["building_id"] = None
    if values.get("building"):
        columns["building_id"] = building_ids[values["building"]]
    if "max_power_w" in values:
        columns["max_power_w"] = values["max_power_w"]
    if values.get("account"):
        columns["account_id"] = account_ids[values["account"]]
    return columns
