"""Who is asking: the resident's signed session cookie, and the households bound to them; the
SMS codes that prove a phone; residents found or made by phone or openid; bindings; the
prepaid agreement's acceptances; and the limits on codes, bindings and look-ups.

The cookie (`feikong_resident`) holds the resident's id, signed with FEIKONG_SECRET_KEY
(itsdangerous, HMAC with a salt of its own, timestamped: 30 days), HttpOnly, SameSite=Lax, Secure
when the public URL is HTTPS. It proves only who signed in; what they may see is read from the
database on every request (`bound_account`), so an unbinding takes effect at the next click.

SMS codes: 6 digits from `secrets`, valid 5 minutes, 5 tries, one sent per phone per 60 s; only
an HMAC-SHA256 of the code (keyed with FEIKONG_SECRET_KEY, over phone, purpose and household) is
stored, and the code is never logged. Only the latest unused code of a phone and purpose counts.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass

import sqlalchemy as sa
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import parse
from sqlmodel import Session, select
from starlette.requests import Request
from starlette.responses import Response

from app.db import utcnow
from app.estate.models import Account
from app.messages.models import Message
from app.privacy import mask_phone
from app.resident.models import AgreementAcceptance, Resident, ResidentAccount, SmsCode
from app.resident.wechat import WechatCookies
from app.web.ratelimit import request_client
from payments.wechat_oauth import mask_openid

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


def bound_numbers(session: Session, resident_id_: int | None) -> set[str]:
    """The 户号 bound to a resident (empty for None)."""
    if resident_id_ is None:
        return set()
    return set(session.exec(select(Account.number)
                            .join(ResidentAccount, ResidentAccount.account_id == Account.id)
                            .where(ResidentAccount.resident_id == resident_id_)))


def bind(session: Session, resident_id_: int, account_id: int, how: str) -> bool:
    """Bind a resident to a household; False when bound already (nothing changes)."""
    if session.get(ResidentAccount, (resident_id_, account_id)) is not None:
        return False
    session.add(ResidentAccount(resident_id=resident_id_, account_id=account_id, how=how))
    session.flush()
    return True


def unbind(session: Session, resident_id_: int, account_id: int) -> bool:
    """Delete the binding; False when there was none."""
    return session.execute(sa.delete(ResidentAccount).where(
        ResidentAccount.resident_id == resident_id_,
        ResidentAccount.account_id == account_id)).rowcount > 0


# --- what residents type ------------------------------------------------------------------------

PHONE = re.compile(r"^1[3-9][0-9]{9}$")
CODE = re.compile(r"^[0-9]{6}$")
NUMBER = re.compile(r"^[0-9A-Za-z-]{1,32}$")


def _plain(raw: object, keep: str = "") -> str:
    """NFKC (full-width digits and letters become ASCII) without spaces and dashes."""
    text = unicodedata.normalize("NFKC", str(raw or ""))
    return "".join(ch for ch in text if not ch.isspace() and (ch not in "-" or ch in keep))


def normalize_phone(raw: object) -> str | None:
    """A mainland mobile number as 11 digits ("+86 138-1234-5678" → "13812345678"), or None."""
    text = _plain(raw)
    if text.startswith("+86"):
        text = text[3:]
    elif text.startswith("0086"):
        text = text[4:]
    elif len(text) == 13 and text.startswith("86"):
        text = text[2:]
    return text if PHONE.match(text) else None


def normalize_code(raw: object) -> str | None:
    text = _plain(raw)
    return text if CODE.match(text) else None


def normalize_number(raw: object) -> str | None:
    """A 户号 as typed ("１０１０２０ ", "101 020") → "101020", or None."""
    text = _plain(raw, keep="-")
    return text if NUMBER.match(text) else None


# --- SMS codes ------------------------------------------------------------------------------------

CODE_VALID = dt.timedelta(minutes=5)
CODE_KEPT = dt.timedelta(days=1)  # expired codes are deleted a day later (when a code is sent)
CODE_TRIES = 5
CODE_EVERY_S = 60
CODE_OK, CODE_WRONG, CODE_LOCKED, CODE_NONE = "ok", "wrong", "locked", "none"


def new_code() -> str:
    return f"{secrets.randbelow(10 ** 6):06d}"


def code_hash(secret_key: str, phone: str, purpose: str, account_id: int | None,
              code: str) -> str:
    message = f"{phone}|{purpose}|{account_id or ''}|{code}".encode()
    return hmac.new(f"{secret_key}:sms-code".encode(), message, hashlib.sha256).hexdigest()


def _code_query(phone: str, purpose: str, account_id: int | None):
    q = select(SmsCode).where(SmsCode.phone == phone, SmsCode.purpose == purpose,
                              SmsCode.used_at.is_(None))
    q = q.where(SmsCode.account_id.is_(None) if account_id is None
                else SmsCode.account_id == account_id)
    return q.order_by(SmsCode.id.desc()).limit(1)


def issue_code(session: Session, secret_key: str, phone: str, purpose: str,
               account_id: int | None = None, now: dt.datetime | None = None) -> tuple[int, str]:
    """A new code for `phone` (its hash stored; earlier unused codes of the same purpose and
    household no longer count); returns (its row id, the code) for the SMS. The 60-second rule
    is the caller's (a rate limit, counted across processes). Codes expired a day ago or more,
    anyone's, are deleted on the way."""
    now = now or utcnow()
    session.execute(sa.delete(SmsCode).where(SmsCode.expires_at < now - CODE_KEPT))
    code = new_code()
    row = SmsCode(phone=phone, purpose=purpose, account_id=account_id,
                  code_hash=code_hash(secret_key, phone, purpose, account_id, code),
                  created_at=now, expires_at=now + CODE_VALID)
    session.add(row)
    session.flush()
    return row.id, code


def withdraw_code(session: Session, code_id: int) -> None:
    """The SMS was not sent: the code is deleted (it cannot have been read)."""
    session.execute(sa.delete(SmsCode).where(SmsCode.id == code_id))


def check_code(session: Session, secret_key: str, phone: str, purpose: str,
               account_id: int | None, code: str, now: dt.datetime | None = None) -> str:
    """Check `code` against the latest unused code of `phone` for `purpose` (and household):
    CODE_OK (now used), CODE_WRONG (a try spent), CODE_LOCKED (5 tries spent: a new code is
    needed) or CODE_NONE (none, or expired). A try is counted by one conditional UPDATE, so two
    processes cannot both take the fifth."""
    now = now or utcnow()
    row = session.exec(_code_query(phone, purpose, account_id)).first()
    if row is None or row.expires_at <= now:
        return CODE_NONE
    taken = session.execute(sa.update(SmsCode).where(SmsCode.id == row.id,
                                                     SmsCode.tries < CODE_TRIES,
                                                     SmsCode.used_at.is_(None))
                            .values(tries=SmsCode.tries + 1)).rowcount
    if not taken:
        return CODE_LOCKED
    expected = code_hash(secret_key, phone, purpose, account_id, code)
    if not hmac.compare_digest(expected, row.code_hash):
        tries = session.execute(sa.select(SmsCode.tries).where(SmsCode.id == row.id)).scalar()
        return CODE_LOCKED if tries >= CODE_TRIES else CODE_WRONG
    used = session.execute(sa.update(SmsCode).where(SmsCode.id == row.id,
                                                    SmsCode.used_at.is_(None))
                           .values(used_at=now)).rowcount
    return CODE_OK if used else CODE_NONE


# --- residents ------------------------------------------------------------------------------------

def get_resident(session: Session, resident_id_: int | None) -> Resident | None:
    return session.get(Resident, resident_id_) if resident_id_ is not None else None


def _merge(session: Session, source: Resident, target: Resident) -> None:
    """One person known twice (a WeChat resident who proved a phone another resident row
    holds): `source`'s bindings, acceptances and messages go to `target`, which takes its phone
    or openid too, and `source` is deleted."""
    sid, tid = source.id, target.id
    have = set(session.exec(select(ResidentAccount.account_id)
                            .where(ResidentAccount.resident_id == tid)))
    session.execute(sa.delete(ResidentAccount).where(ResidentAccount.resident_id == sid,
                                                     ResidentAccount.account_id.in_(have or {-1})))
    session.execute(sa.update(ResidentAccount).where(ResidentAccount.resident_id == sid)
                    .values(resident_id=tid))
    accepted = {(a, v) for a, v in session.exec(
        select(AgreementAcceptance.account_id, AgreementAcceptance.version)
        .where(AgreementAcceptance.resident_id == tid))}
    for row in session.exec(select(AgreementAcceptance)
                            .where(AgreementAcceptance.resident_id == sid)).all():
        if (row.account_id, row.version) in accepted:
            session.delete(row)
        else:
            row.resident_id = tid
            session.add(row)
    session.execute(sa.update(Message).where(Message.resident_id == sid).values(resident_id=tid))
    phone, openid = source.phone, source.openid
    source.phone = source.openid = None
    session.add(source)
    session.flush()
    target.phone = target.phone or phone
    target.openid = target.openid or openid
    session.add(target)
    session.flush()
    session.delete(source)
    session.flush()


def _seen(session: Session, resident: Resident) -> Resident:
    resident.last_seen_at = utcnow()
    session.add(resident)
    session.flush()
    return resident


def resident_for_phone(session: Session, phone: str, current: Resident | None) -> Resident:
    """After `phone` was proved by a code: the resident to be signed in as (its last sign-in
    noted). The one holding the phone; a WeChat resident without a phone takes it (or, when
    another resident holds it and has no openid, the two become one); a new resident
    otherwise."""
    return _seen(session, _for_phone(session, phone, current))


def resident_for_openid(session: Session, openid: str, current: Resident | None) -> Resident:
    """After WeChat's OAuth gave `openid`: the resident to be signed in as (as
    `resident_for_phone`, the other way round)."""
    return _seen(session, _for_openid(session, openid, current))


def _for_phone(session: Session, phone: str, current: Resident | None) -> Resident:
    owner = session.exec(select(Resident).where(Resident.phone == phone)).first()
    if owner is None:
        if current is not None and current.phone is None:
            current.phone = phone
            session.add(current)
            session.flush()
            return current
        owner = Resident(phone=phone)
        session.add(owner)
        session.flush()
        return owner
    if current is not None and current.id != owner.id and current.phone is None \
            and owner.openid is None:
        _merge(session, current, owner)
    return owner


def _for_openid(session: Session, openid: str, current: Resident | None) -> Resident:
    owner = session.exec(select(Resident).where(Resident.openid == openid)).first()
    if owner is None:
        if current is not None and current.openid is None:
            current.openid = openid
            session.add(current)
            session.flush()
            return current
        owner = Resident(openid=openid)
        session.add(owner)
        session.flush()
        return owner
    if current is not None and current.id != owner.id and current.openid is None \
            and owner.phone is None:
        _merge(session, owner, current)
        return current
    return owner


def holder_details_match(account: Account, surname: str, last4: str) -> bool:
    """户号 + the holder's surname (the first one or two characters of the registered name) +
    the last four digits of the registered phone. An account without a registered name or
    phone never matches."""
    name = unicodedata.normalize("NFKC", account.holder_name or "").strip()
    surname = unicodedata.normalize("NFKC", surname or "").strip()
    last4 = _plain(last4)
    phone = account.holder_phone or ""
    if not name or len(phone) < 4 or not surname or len(surname) > 2 \
            or len(surname) >= len(name) or not re.fullmatch(r"[0-9]{4}", last4):
        return False
    return (hmac.compare_digest(name[:len(surname)].encode(), surname.encode())
            and hmac.compare_digest(phone[-4:].encode(), last4.encode()))


# --- what managers see (the console's account page) --------------------------------------------

@dataclass(frozen=True)
class ResidentShown:
    """A resident as a manager sees them: phone and openid masked."""

    phone: str  # "138****5678", or ""
    openid: str  # "oAbc…wxyz", or ""


def _shown(resident: Resident) -> ResidentShown:
    return ResidentShown(mask_phone(resident.phone or ""),
                         mask_openid(resident.openid) if resident.openid else "")


def residents_of(session: Session, account_id: int) -> list[tuple[ResidentShown, ResidentAccount]]:
    """The residents bound to a household, first bound first."""
    return [(_shown(r), b) for r, b in session.exec(
        select(Resident, ResidentAccount)
        .join(ResidentAccount, ResidentAccount.resident_id == Resident.id)
        .where(ResidentAccount.account_id == account_id)
        .order_by(ResidentAccount.bound_at, Resident.id))]


def acceptances_of(session: Session, account_id: int,
                   limit: int = 50) -> list[tuple[ResidentShown, AgreementAcceptance]]:
    """Who accepted which version of the agreement for a household, when and from where;
    newest first."""
    return [(_shown(r), a) for a, r in session.exec(
        select(AgreementAcceptance, Resident)
        .join(Resident, Resident.id == AgreementAcceptance.resident_id)
        .where(AgreementAcceptance.account_id == account_id)
        .order_by(AgreementAcceptance.accepted_at.desc(), AgreementAcceptance.id.desc())
        .limit(limit))]


# --- the prepaid agreement ------------------------------------------------------------------------

def has_accepted(session: Session, resident_id_: int, account_id: int, version: str) -> bool:
    return session.exec(select(AgreementAcceptance.id).where(
        AgreementAcceptance.resident_id == resident_id_,
        AgreementAcceptance.account_id == account_id,
        AgreementAcceptance.version == version)).first() is not None


def accept_agreement(session: Session, resident_id_: int, account_id: int, version: str,
                     client: str) -> bool:
    """Record the acceptance (once per resident, household and version); False when it was
    recorded already."""
    if has_accepted(session, resident_id_, account_id, version):
        return False
    session.add(AgreementAcceptance(resident_id=resident_id_, account_id=account_id,
                                    version=version, client=client[:64]))
    session.flush()
    return True


# --- who is asking, for the limits ------------------------------------------------------------

def client_of(request: Request) -> str:
    """The client's address (X-Forwarded-For believed only from FEIKONG_TRUSTED_PROXIES)."""
    return request_client(request)


def cookie_openid(request: Request) -> str | None:
    """The openid this browser's signed WeChat cookie holds (None without WeChat's OAuth)."""
    if request.app.state.providers.wechat_oauth is None:
        return None
    return WechatCookies.for_request(request).openid(request)


def askers(resident: Resident | None, openid: str | None = None) -> tuple[str, ...]:
    """The keys a visitor is counted under besides their address: their proved phone, their
    openid (the resident's, or the WeChat cookie's)."""
    keys = []
    if resident is not None and resident.phone:
        keys.append("phone:" + resident.phone)
    openid = (resident.openid if resident is not None and resident.openid else None) or openid
    if openid:
        keys.append("openid:" + openid)
    return tuple(keys)


# --- limits (app/web/ratelimit.py: counted in our database, so every process sees them) --------

# A code sent: to one phone (the 60-second rule first), and asked for by one client address,
# one openid, one signed-in resident's phone.
SEND_PER_PHONE = (parse("1 per minute"), parse("5 per hour"), parse("10 per day"))
SEND_PER_CLIENT = parse("20 per hour")
SEND_PER_ASKER = parse("10 per hour")
# Wrong codes (besides each code's 5 tries): per phone the code was for, per client, per openid.
WRONG_PER_PHONE = parse("10 per hour")
WRONG_PER_CLIENT = parse("30 per hour")
WRONG_PER_ASKER = parse("10 per hour")
# Binding by the holder's details: every attempt per client; failures per 户号 and per asker.
BIND_PER_CLIENT = parse("20 per hour")
BIND_FAILED_PER_NUMBER = parse("5 per day")
BIND_FAILED_PER_ASKER = parse("10 per day")
# Households looked up by someone not bound to them (the unbound page, its status, a top-up):
# distinct 户号 per client address and per openid or phone; the same 户号 again is free.
LOOKUP_PER_CLIENT = parse("60 per hour")
LOOKUP_PER_ASKER = parse("30 per hour")
LOOKUP_SEEN = parse("1 per hour")


def send_rules(phone: str, client: str, askers: tuple[str, ...]) -> list:
    return ([(item, "code-send-phone", phone) for item in SEND_PER_PHONE]
            + [(SEND_PER_CLIENT, "code-send-client", client)]
            + [(SEND_PER_ASKER, "code-send-asker", a) for a in askers])


def wrong_code_rules(phone: str, client: str, askers: tuple[str, ...]) -> list:
    return ([(WRONG_PER_PHONE, "code-wrong-phone", phone),
             (WRONG_PER_CLIENT, "code-wrong-client", client)]
            + [(WRONG_PER_ASKER, "code-wrong-asker", a) for a in askers])


def bind_attempt_rules(client: str) -> list:
    return [(BIND_PER_CLIENT, "bind-client", client)]


def bind_failure_rules(number: str, askers: tuple[str, ...]) -> list:
    return ([(BIND_FAILED_PER_NUMBER, "bind-failed-number", number)]
            + [(BIND_FAILED_PER_ASKER, "bind-failed-asker", a) for a in askers])


def lookup_rules(client: str, askers: tuple[str, ...]) -> list:
    return ([(LOOKUP_PER_CLIENT, "lookup-client", client)]
            + [(LOOKUP_PER_ASKER, "lookup-asker", a) for a in askers])
