"""Managers: add, disable, scope, list (`feikong manager …` and the console's managers page)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, select

from app.console import audit
from app.console.auth import Who, hash_password, revoke
from app.console.models import BUILDING_MANAGER, ROLES, Manager, ManagerBuilding
from app.db import utcnow
from app.i18n import N_
from app.estate.models import Building, Estate


class ManagerError(ValueError):
    """A manager that cannot be added or changed as asked; nothing was written."""


def add_manager(session: Session, name: str, *, role: str, estate_id: int, password: str,
                building_ids: list[int] = (), by: Who | None = None) -> Manager:
    """A new manager; `by`: the console manager who adds it (None: the command line)."""
    name = name.strip()
    if not name or len(name) > 64:
        raise ManagerError(N_("名字不能为空，最多 64 个字符"))
    if role not in ROLES:
        raise ManagerError(f"角色须为 {' / '.join(ROLES)}")
    if session.get(Estate, estate_id) is None:
        raise ManagerError(f"没有小区 {estate_id}")
    if session.exec(select(Manager.id).where(Manager.name == name)).first() is not None:
        raise ManagerError(f"已有名为 {name} 的管理员")
    if role == BUILDING_MANAGER and not building_ids:
        raise ManagerError(N_("楼栋经理须指定至少一栋楼（--building）"))
    if role != BUILDING_MANAGER and building_ids:
        raise ManagerError(N_("只有楼栋经理按楼栋授权"))
    for building_id in building_ids:
        building = session.get(Building, building_id)
        if building is None or building.estate_id != estate_id:
            raise ManagerError(f"小区 {estate_id} 没有楼栋 {building_id}")
    try:
        password_hash = hash_password(password)
    except ValueError as exc:
        raise ManagerError(str(exc)) from None
    manager = Manager(name=name, role=role, estate_id=estate_id, password_hash=password_hash)
    session.add(manager)
    session.flush()
    session.add_all(ManagerBuilding(manager_id=manager.id, building_id=b)
                    for b in sorted(set(building_ids)))
    audit.record(session, by, "manager.add", estate_id=estate_id, object_type="manager",
                 object_id=manager.id,
                 after=f"{name} {role} buildings={sorted(set(building_ids))}")
    return manager


def disable_manager(session: Session, name: str, by: Who | None = None) -> Manager:
    manager = session.exec(select(Manager).where(Manager.name == name)).first()
    if manager is None:
        raise ManagerError(f"没有名为 {name} 的管理员")
    if manager.disabled_at is None:
        manager.disabled_at = utcnow()
        session.add(manager)
        revoke(session, manager_id=manager.id)
        audit.record(session, by, "manager.disable", estate_id=manager.estate_id,
                     object_type="manager", object_id=manager.id, before="enabled",
                     after="disabled")
    return manager


def scope_manager(session: Session, name: str, building_ids: list[int], *, estate_id: int,
                  by: Who | None = None) -> Manager:
    """Give a building manager of `estate_id` these buildings instead of theirs (at least
    one); in effect at their next request."""
    manager = session.exec(select(Manager).where(Manager.name == name,
                                                 Manager.estate_id == estate_id)).first()
    if manager is None:
        raise ManagerError(f"没有名为 {name} 的管理员")
    if manager.role != BUILDING_MANAGER:
        raise ManagerError(N_("只有楼栋经理按楼栋授权"))
    wanted = sorted(set(building_ids))
    if not wanted:
        raise ManagerError(N_("楼栋经理须指定至少一栋楼（--building）"))
    for building_id in wanted:
        building = session.get(Building, building_id)
        if building is None or building.estate_id != estate_id:
            raise ManagerError(f"小区 {estate_id} 没有楼栋 {building_id}")
    rows = list(session.exec(select(ManagerBuilding)
                             .where(ManagerBuilding.manager_id == manager.id)))
    before = sorted(r.building_id for r in rows)
    if before != wanted:
        for row in rows:
            session.delete(row)
        session.flush()
        session.add_all(ManagerBuilding(manager_id=manager.id, building_id=b) for b in wanted)
        audit.record(session, by, "manager.scope", estate_id=estate_id, object_type="manager",
                     object_id=manager.id, before=f"buildings={before}",
                     after=f"buildings={wanted}")
    return manager


@dataclass(frozen=True)
class ManagerRow:
    name: str
    role: str
    estate_id: int
    building_ids: list[int]
    disabled: bool


def list_managers(session: Session) -> list[ManagerRow]:
    rows = []
    for m in session.exec(select(Manager).order_by(Manager.estate_id, Manager.name)):
        buildings = list(session.exec(select(ManagerBuilding.building_id)
                                      .where(ManagerBuilding.manager_id == m.id)
                                      .order_by(ManagerBuilding.building_id)))
        rows.append(ManagerRow(m.name, m.role, m.estate_id, buildings, m.disabled_at is not None))
    return rows
