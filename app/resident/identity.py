"""Who is asking: the resident's signed session cookie, and the households bound to them.

The cookie (`feikong_resident`) holds the resident's id, signed with FEIKONG_SECRET_KEY
(itsdangerous, HMAC with a salt of its own, timestamped: 30 days), HttpOnly, SameSite=Lax, Secure
when the public URL is HTTPS. It proves only who signed in; what they may see is read from the
database on every request (`bound_account`), so an unbinding takes effect at the next click.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import Response

from app.estate.models import Account
from app.resident.models import ResidentAccount

SESSION_COOKIE = "feikong_resident"
SESSION_MAX_AGE_S = 30 * 86400
_SALT = "feikong.resident.session"


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=_SALT)


def session_value(secret_key: str, resident_id: int) -> str:
    """The cookie's value for `resident_id` (tests and benches sign in with it)."""
    return _serializer(secret_key).dumps({"r": resident_id})


def resident_id(request: Request) -> int | None:
    """The signed-in resident's id, or None (no cookie, a forged or expired one)."""
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        value = _serializer(request.app.state.settings.secret_key).loads(
            raw, max_age=SESSION_MAX_AGE_S)
    except BadSignature:  # SignatureExpired too
        return None
    rid = value.get("r") if isinstance(value, dict) else None
    return rid if type(rid) is int and rid > 0 else None


def sign_in(request: Request, response: Response, resident_id_: int) -> None:
    secure = request.app.state.settings.base_url.startswith("https://")
    response.set_cookie(SESSION_COOKIE,
                        session_value(request.app.state.settings.secret_key, resident_id_),
                        max_age=SESSION_MAX_AGE_S, httponly=True, samesite="lax", secure=secure)


def sign_out(request: Request, response: Response) -> None:
    secure = request.app.state.settings.base_url.startswith("https://")
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax", secure=secure)


def bound_account(session: Session, resident_id_: int | None,
                  number: str) -> tuple[Account, ResidentAccount] | None:
    """The household `number` and its binding, when `resident_id_` is bound to it; else None
    (whether the household exists or not: the caller shows the unbound view or a 404)."""
    if resident_id_ is None:
        return None
    row = session.exec(select(Account, ResidentAccount)
                       .join(ResidentAccount, ResidentAccount.account_id == Account.id)
                       .where(Account.number == number,
                              ResidentAccount.resident_id == resident_id_)).first()
    return (row[0], row[1]) if row is not None else None


def bindings(session: Session, resident_id_: int) -> list[tuple[Account, ResidentAccount]]:
    """The households bound to a resident, in 户号 order (the home page's switcher)."""
    return [(a, b) for a, b in session.exec(
        select(Account, ResidentAccount)
        .join(ResidentAccount, ResidentAccount.account_id == Account.id)
        .where(ResidentAccount.resident_id == resident_id_)
        .order_by(Account.number))]
