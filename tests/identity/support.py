"""Residents for tests: one bound to a household (agreement accepted or not), a browser signed
in as them, and POSTs carrying the CSRF token as our pages' forms do."""

from __future__ import annotations

from sqlmodel import select

from app.db import transaction
from app.estate.models import Account
from app.resident.agreement import load_agreement
from app.resident.identity import SESSION_COOKIE, session_value
from app.resident.models import AgreementAcceptance, Resident, ResidentAccount
from app.resident.security import CSRF_COOKIE


def resident(engine, phone: str | None = "13900000001", openid: str | None = None) -> int:
    """A resident (by phone, openid or both); returns their id."""
    with transaction(engine) as s:
        row = Resident(phone=phone, openid=openid)
        s.add(row)
        s.flush()
        return row.id


def bind(engine, resident_id: int, number: str, *, accepted: bool = True) -> None:
    """Bind the resident to the household `number`, the current agreement accepted (or not)."""
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == number)).one()
        s.add(ResidentAccount(resident_id=resident_id, account_id=account.id, how="manager"))
        if accepted:
            s.add(AgreementAcceptance(resident_id=resident_id, account_id=account.id,
                                      version=load_agreement().version, client="test"))


def sign_in(client, settings, resident_id: int) -> None:
    """The browser `client` (TestClient or httpx) signed in as the resident."""
    client.cookies.set(SESSION_COOKIE, session_value(settings.secret_key, resident_id))


def bound_resident(engine, client, settings, number: str, *, phone: str = "13900000001",
                   accepted: bool = True) -> int:
    """A resident bound to `number` (agreement accepted), `client` signed in as them."""
    rid = resident(engine, phone)
    bind(engine, rid, number, accepted=accepted)
    sign_in(client, settings, rid)
    return rid


def csrf_token(client) -> str:
    """The browser's CSRF token (its cookie), fetched with a page first if it has none."""
    token = client.cookies.get(CSRF_COOKIE)
    if not token:
        client.get("/")
        token = client.cookies.get(CSRF_COOKIE)
    assert token, "the home page set no CSRF cookie"
    return token


def post(client, url: str, data: dict | None = None, **kwargs):
    """A form POST as our pages send it: with the CSRF token."""
    return client.post(url, data={**(data or {}), "csrftoken": csrf_token(client)}, **kwargs)


def sign_in_page(page, stack, number: str, phone: str = "13900000001") -> int:
    """A Playwright page signed in as a resident bound to `number` (agreement accepted): what a
    household's own resident sees, supply and history included."""
    rid = resident(stack.engine, phone)
    bind(stack.engine, rid, number)
    page.context.add_cookies([{"name": SESSION_COOKIE, "url": stack.base_url,
                               "value": session_value(stack.settings.secret_key, rid)}])
    return rid
