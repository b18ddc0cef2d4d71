"""What a manager may see, in one place: every console query that reads an estate's objects
goes through these functions, so an object outside the manager's scope is simply not found
(the views answer 404: its existence is not revealed)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Session, select

from app.console.auth import Who
from app.console.models import ESTATE_ADMIN, FINANCE
from app.estate.models import Account, Building


def buildings_clause(who: Who, building_id=Building.id, estate_id=Building.estate_id):
    """A WHERE clause for a query that has the building's id and estate id columns."""
    clause = estate_id == who.estate_id
    if who.building_ids is not None:
        clause = sa.and_(clause, building_id.in_(sorted(who.building_ids) or [-1]))
    return clause


def buildings(session: Session, who: Who) -> list[Building]:
    return list(session.exec(select(Building).where(buildings_clause(who))
                             .order_by(Building.id)))


def building_ids(session: Session, who: Who) -> list[int]:
    return [b.id for b in buildings(session, who)]


def accounts_query(who: Who):
    """SELECT accounts within the manager's scope (join Building)."""
    return (select(Account).join(Building, Building.id == Account.building_id)
            .where(buildings_clause(who)))


def account(session: Session, who: Who, number: str) -> Account | None:
    """The account with this 户号 if the manager may see it, else None."""
    return session.exec(accounts_query(who).where(Account.number == number)).first()


def building(session: Session, who: Who, building_id: int) -> Building | None:
    return session.exec(select(Building).where(Building.id == building_id,
                                               buildings_clause(who))).first()


def may_decide_cuts(who: Who) -> bool:
    """Approve or reject a cut, handle a task: estate administrators and building managers;
    finance reads."""
    return who.role != FINANCE


def may_administer(who: Who) -> bool:
    return who.role == ESTATE_ADMIN
