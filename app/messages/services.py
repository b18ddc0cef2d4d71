"""Messages to residents (app/messages/models.py): made from the engine's notices, delivered by
WeChat or SMS, retried, and given up on where managers see it. Database work only: the
providers are called by app/messages/jobs.py, between these functions' transactions.

From notices to messages (`pending_notices`, `gather`, `plan`, `insert_planned`):
- Who: each resident bound to the account (`ResidentAccount`): by WeChat when they have an
  openid (template messages only to followers of the official account; subscription notices
  to anyone who granted them, as the estate's `wechat_messages` says), else by SMS to their
  proved phone. Nobody bound: the account's registered phone (`Account.holder_phone`) by SMS.
- Reminders (`templates.REMINDERS`) only to bindings with `reminders` on, and only within the
  estate's messaging hours (queued until the next start); at most one of a kind per resident
  and day: the `dedupe_key` "<kind>:<account>:<recipient>:<local day>" is unique, where the
  recipient is "r<resident id>" (a person, whichever channel reaches them) or the holder's
  phone, and the day is the local day the reminder is first allowed to go (a notice at 23:00
  goes, and counts, the next morning). Everything else (the cut notice, confirmations) goes at
  once to every binding, reminders on or off.
- Each notice handled leaves at least one row, `skipped` with the reason in `last_error` when
  nobody can be reached; every row has a key made only of the notice and the recipient, so
  handling a notice twice (two processes, a re-read) inserts nothing the second time.
- Which notices are new: those not named by the last `RECENT` messages, above the lowest notice
  the oldest of them names (on PostgreSQL a notice may commit after one with a higher id:
  a plain "above the last id handled" would miss it), and at most `MAX_AGE` old (a notice
  from before messages existed, or from a long outage, is not worth a late message).

Delivery (`claim_due`, `record_sent`, `record_failure`, `fail_stuck`): due rows are claimed in
one transaction (FOR UPDATE SKIP LOCKED on PostgreSQL, so several processes share the queue;
SQLite has one writer at a time), which marks them `sending` (attempts + 1) and commits BEFORE
the provider is called; the outcome is recorded after. A message is therefore sent at most
once: should the process die between the provider's answer and that record, the row stays
`sending`, and `fail_stuck` turns it `failed` ("outcome unknown") after `STUCK_AFTER`, for a
manager to see, rather than sending it again. A transient refusal is tried again after
`BACKOFF` (1 min, 5 min, 30 min, 2 h), then given up (`failed`); a permanent one fails at once.
A WeChat message refused because the resident does not follow the account (43004) or did not
grant the subscription (43101) is `skipped` and an SMS goes instead when they have a phone.
A queued reminder is held back outside the messaging hours (the estate may have changed them)
and dropped (`skipped`) once a payment came after it; a queued cut notice once power returned.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from app.estate.models import Account, Building, Estate
from app.ledger.services import funds
from app.messages import templates
from app.messages.models import (FAILED, QUEUED, SENT, SKIPPED, SMS, WECHAT_SUBSCRIBE,
                                 WECHAT_TEMPLATE, Message)
from app.notices.models import (BALANCE_EXHAUSTED, LESS_THAN_A_DAY, LOW_BALANCE, PAYMENT_RECEIVED,
                                POWER_CUT, POWER_RESTORED, Notice)
from app.policy.clock import LOCAL_TZ, to_local
from app.resident.models import Resident, ResidentAccount
from app.resident.supply import amount_to_restore_fen

# A state besides models.py's: handed to the provider, its answer not yet recorded.
SENDING = "sending"

RECENT = 1000  # the last messages whose notices count as handled (see the module's doc)
MAX_AGE = dt.timedelta(hours=12)  # an older notice gets no message
BACKOFF = (dt.timedelta(minutes=1), dt.timedelta(minutes=5), dt.timedelta(minutes=30),
           dt.timedelta(hours=2))
MAX_ATTEMPTS = len(BACKOFF) + 1  # then failed
STUCK_AFTER = dt.timedelta(minutes=10)  # far beyond a send's timeouts (SMS 10 s, WeChat 2 × 10 s)
DEFAULT_HOURS = ("08:00", "21:00")
# WeChat's refusals that another channel can get round: not a follower (template messages),
# the subscription not granted or turned off (订阅通知).
FALLBACK_CODES = frozenset({"43004", "43101"})
# A queued message no longer worth sending once a later notice of these kinds came.
SUPERSEDED_BY = {LOW_BALANCE: PAYMENT_RECEIVED, LESS_THAN_A_DAY: PAYMENT_RECEIVED,
                 BALANCE_EXHAUSTED: PAYMENT_RECEIVED, POWER_CUT: POWER_RESTORED}
MAINLAND_PHONE = re.compile(r"^1[3-9][0-9]{9}$")

# Why a message was skipped (`last_error`), for managers.
OFF = "reminders off"
UNREACHABLE = "no WeChat or phone to reach this resident"
NO_RECIPIENT = "no resident bound and no valid registered phone"
NO_TEMPLATE = "no template set for this kind"
ALREADY_TODAY = "already sent this reminder today"
NOT_A_MESSAGE = "no message for this kind of notice"


# --- messaging hours ---------------------------------------------------------------------------

def hours_of(estate) -> tuple[dt.time, dt.time]:
    """The estate's messaging hours, local; the defaults where they do not parse."""
    try:
        return (dt.time.fromisoformat(estate.message_start),
                dt.time.fromisoformat(estate.message_end))
    except (TypeError, ValueError):
        return tuple(dt.time.fromisoformat(t) for t in DEFAULT_HOURS)


def within_hours(moment: dt.datetime, start: dt.time, end: dt.time) -> bool:
    t = to_local(moment).time()
    if start == end:
        return True
    if start < end:
        return start <= t < end
    return t >= start or t < end  # across midnight


def next_in_hours(moment: dt.datetime, start: dt.time, end: dt.time) -> dt.datetime:
    """`moment` if it is within the messaging hours [start, end) (local; an `end` before
    `start` runs across midnight), else the next start."""
    if within_hours(moment, start, end):
        return moment
    local = to_local(moment)
    opens = dt.datetime.combine(local.date(), start, LOCAL_TZ)
    if opens <= local:
        opens += dt.timedelta(days=1)
    return opens.astimezone(dt.timezone.utc)


# --- a resident's choice -------------------------------------------------------------------------

def set_reminders(session: Session, resident_id: int, account_id: int, on: bool) -> bool:
    """Turn the reminders (low balance, less than a day, exhausted) of one binding on or off;
    the cut notice and the confirmations go regardless. Returns the new setting. LookupError
    when the resident is not bound to that account (a stranger's household: say 404)."""
    binding = session.get(ResidentAccount, (resident_id, account_id))
    if binding is None:
        raise LookupError("not bound to this account")
    binding.reminders = bool(on)
    session.add(binding)
    return binding.reminders


# --- from notices to messages ------------------------------------------------------------------

def pending_notices(session: Session, now: dt.datetime, limit: int = 200) -> list[Notice]:
    """Notices not handled yet (see the module's doc), oldest first, at most `limit`."""
    recent = session.execute(
        sa.select(Message.notice_id).where(Message.notice_id.is_not(None))
        .order_by(Message.id.desc()).limit(RECENT)).scalars().all()
    handled = set(recent)
    query = sa.select(Notice.id).where(Notice.created_at >= now - MAX_AGE)
    if len(recent) == RECENT:  # the oldest of them: below it, everything was handled
        query = query.where(Notice.id > recent[-1])
    ids = [i for i in session.execute(query.order_by(Notice.id)).scalars() if i not in handled]
    if not ids:
        return []
    return list(session.exec(select(Notice).where(Notice.id.in_(ids[:limit]))
                             .order_by(Notice.id)))


@dataclass
class Binding:
    resident_id: int
    phone: str | None
    openid: str | None
    reminders: bool


@dataclass
class Household:
    """An account and what its messages need."""

    account: Account
    estate: Estate
    building_name: str
    balance_fen: int
    advance_fen: int
    bindings: list[Binding] = field(default_factory=list)


def gather(session: Session, notices: list[Notice]) -> dict[int, Household]:
    """The households of `notices`, by account id, with their bindings: a few queries."""
    ids = {n.account_id for n in notices}
    if not ids:
        return {}
    found: dict[int, Household] = {}
    money = funds(session, ids)
    for account, building, estate in session.execute(
            sa.select(Account, Building, Estate)
            .join(Building, Building.id == Account.building_id)
            .join(Estate, Estate.id == Building.estate_id)
            .where(Account.id.in_(ids))).all():
        found[account.id] = Household(account, estate, building.name,
                                      money[account.id].balance_fen,
                                      money[account.id].advance_fen)
    for binding, resident in session.execute(
            sa.select(ResidentAccount, Resident)
            .join(Resident, Resident.id == ResidentAccount.resident_id)
            .where(ResidentAccount.account_id.in_(ids))
            .order_by(ResidentAccount.account_id, ResidentAccount.resident_id)).all():
        found[binding.account_id].bindings.append(
            Binding(resident.id, resident.phone, resident.openid, binding.reminders))
    return found


def openids_to_check(notices: list[Notice], households: dict[int, Household]) -> set[str]:
    """The openids whose following `plan` needs (template-message estates only)."""
    wanted = set()
    for notice in notices:
        house = households.get(notice.account_id)
        if house is None or house.estate.wechat_messages == "subscribe":
            continue
        wanted.update(b.openid for b in house.bindings if b.openid)
    return wanted


def facts_of(session: Session, notice: Notice, house: Household) -> templates.Facts:
    """What a message about `notice` says."""
    account = house.account
    cut_at = None
    if notice.kind == BALANCE_EXHAUSTED:
        cut_at = _earliest_cut(session, house.estate, notice.created_at)
    to_restore = amount_to_restore_fen(account, house.balance_fen, house.advance_fen)
    return templates.Facts(
        kind=notice.kind, number=account.number,
        household=f"{house.building_name} {account.household}".strip(), at=notice.created_at,
        amount_fen=notice.amount_fen, balance_fen=house.balance_fen, to_restore_fen=to_restore,
        cut_at=cut_at, manager_phone=house.estate.manager_phone or "")


def _earliest_cut(session: Session, estate: Estate, warned_at: dt.datetime) -> dt.datetime:
    """The first moment the cut policy allows a cut after this exhaustion notice: its lead
    time, then out of quiet hours and public holidays (app/policy/services.py)."""
    from app.policy.arrangements import estate_calendar
    from app.policy.holidays import PolicyUndecidable
    from app.policy.services import _first_allowed, quiet_hours_of

    start = warned_at + dt.timedelta(hours=estate.cut_notice_lead_h)
    try:
        return _first_allowed(start, quiet_hours_of(estate),
                              estate_calendar(session, estate)) or start
    except PolicyUndecidable:
        return start


@dataclass(frozen=True)
class Planned:
    """A message row to insert (see `insert_planned`)."""

    notice_id: int
    account_id: int
    resident_id: int | None
    kind: str
    channel: str
    recipient: str
    template: str
    body: str
    status: str
    next_attempt_at: dt.datetime | None
    dedupe_key: str
    last_error: str = ""
    reminder_key: bool = False  # a per-day key: a conflict with another notice's is a repeat


def message_body(channel: str, facts: templates.Facts, url: str) -> str:
    if channel == SMS:
        return json.dumps({"params": templates.sms_params(facts)}, ensure_ascii=False)
    data = templates.wechat_data(facts)
    link = "url" if channel == WECHAT_TEMPLATE else "page"
    return json.dumps({"data": data, link: url}, ensure_ascii=False)


def plan(notice: Notice, house: Household | None, facts: templates.Facts | None, *,
         follows: dict[str, bool], settings, now: dt.datetime, have_wechat: bool,
         have_sms: bool) -> list[Planned]:
    """The messages `notice` calls for (at least one row: a skipped one says why nobody is
    told). `follows`: openid → whether it follows the official account (an openid missing is
    taken to follow: the send says otherwise, and an SMS goes instead). Pure."""
    kind = notice.kind

    def skipped(tag: str, why: str, resident_id: int | None = None,
                channel: str = SMS, recipient: str = "") -> Planned:
        return Planned(notice.id, notice.account_id, resident_id, kind, channel, recipient, "",
                       "", SKIPPED, None, f"{kind}:{notice.id}:{tag}", why)

    if kind not in templates.KINDS or house is None or facts is None:
        return [skipped("none", NOT_A_MESSAGE)]
    reminder = kind in templates.REMINDERS
    start, end = hours_of(house.estate)
    due = next_in_hours(max(now, notice.created_at), start, end) if reminder else now
    day = to_local(next_in_hours(notice.created_at, start, end)).date().isoformat()
    url = f"{settings.base_url}/a/{house.account.number}"
    mode = WECHAT_SUBSCRIBE if house.estate.wechat_messages == "subscribe" else WECHAT_TEMPLATE

    def key(who: str) -> str:
        return (f"{kind}:{notice.account_id}:{who}:{day}" if reminder
                else f"{kind}:{notice.id}:{who}")

    def message(resident_id: int | None, who: str, channel: str, recipient: str) -> Planned:
        template = templates.template_id(settings, channel, kind)
        if not template:
            return skipped(f"{who}:notemplate", NO_TEMPLATE, resident_id, channel, recipient)
        return Planned(notice.id, notice.account_id, resident_id, kind, channel, recipient,
                       template, message_body(channel, facts, url), QUEUED, due, key(who),
                       reminder_key=reminder)

    rows: list[Planned] = []
    if not house.bindings:
        phone = (house.account.holder_phone or "").strip()
        if have_sms and MAINLAND_PHONE.match(phone):
            rows.append(message(None, phone, SMS, phone))
        else:
            rows.append(skipped("holder", NO_RECIPIENT))
        return rows
    for b in house.bindings:
        who = f"r{b.resident_id}"
        if reminder and not b.reminders:
            rows.append(skipped(f"{who}:off", OFF, b.resident_id))
            continue
        wechat_ok = have_wechat and b.openid and (mode == WECHAT_SUBSCRIBE
                                                  or follows.get(b.openid, True))
        if wechat_ok:
            planned = message(b.resident_id, who, mode, b.openid)
            if planned.status == QUEUED or not (have_sms and b.phone):
                rows.append(planned)
                continue
        if have_sms and b.phone:
            rows.append(message(b.resident_id, who, SMS, b.phone))
        else:
            rows.append(skipped(f"{who}:none", UNREACHABLE, b.resident_id))
    return rows


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(Message)


def insert_planned(session: Session, planned: list[Planned], now: dt.datetime) -> list[Planned]:
    """Insert the rows not there already (their `dedupe_key`s); returns those inserted. A
    reminder whose key another notice took today is a repeat: a skipped row records it."""
    inserted = []
    for p in planned:
        if _insert_one(session, p, now):
            inserted.append(p)
            continue
        if not p.reminder_key:
            continue  # this very notice was handled already
        holder = session.execute(sa.select(Message.notice_id)
                                 .where(Message.dedupe_key == p.dedupe_key)).scalar()
        if holder == p.notice_id:
            continue
        repeat = Planned(p.notice_id, p.account_id, p.resident_id, p.kind, p.channel,
                         p.recipient, p.template, "", SKIPPED, None,
                         f"{p.kind}:{p.notice_id}:{p.dedupe_key.split(':')[2]}:repeat",
                         ALREADY_TODAY)
        if _insert_one(session, repeat, now):
            inserted.append(repeat)
    return inserted


def _insert_one(session: Session, p: Planned, now: dt.datetime) -> bool:
    statement = _insert(session).values(
        account_id=p.account_id, resident_id=p.resident_id, notice_id=p.notice_id, kind=p.kind,
        channel=p.channel, recipient=p.recipient, template=p.template, body=p.body,
        status=p.status, attempts=0, next_attempt_at=p.next_attempt_at, last_error=p.last_error,
        provider_id="", dedupe_key=p.dedupe_key, created_at=now,
    ).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(Message.id)
    return session.execute(statement).first() is not None


# --- delivery ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claimed:
    """A message handed to a sender: everything the send and its record need."""

    id: int
    account_id: int
    resident_id: int | None
    notice_id: int | None
    kind: str
    channel: str
    recipient: str
    template: str
    body: str
    attempts: int  # this attempt's number
    dedupe_key: str | None
    created_at: dt.datetime
    notice_at: dt.datetime | None


@dataclass
class ClaimReport:
    claimed: list[Claimed] = field(default_factory=list)
    held: int = 0  # reminders outside the messaging hours, queued for their next start
    superseded: list[tuple[str, str]] = field(default_factory=list)  # (channel, kind)


def claim_due(session: Session, now: dt.datetime, limit: int = 20) -> ClaimReport:
    """Take up to `limit` queued messages due by `now`, oldest due first: reminders outside
    their estate's hours are put off to the next start, messages made pointless by a later
    notice are skipped, the rest marked `sending` with one more attempt. Commit before
    sending (the caller's transaction)."""
    report = ClaimReport()
    query = (select(Message).where(Message.status == QUEUED, Message.next_attempt_at <= now)
             .order_by(Message.next_attempt_at, Message.id).limit(limit))
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = list(session.exec(query))
    if not rows:
        return report
    notice_at = dict(session.execute(
        sa.select(Notice.id, Notice.created_at)
        .where(Notice.id.in_({m.notice_id for m in rows if m.notice_id}))).all()) \
        if any(m.notice_id for m in rows) else {}
    hours, latest = {}, {}
    watched = [m for m in rows if m.kind in templates.REMINDERS or m.kind in SUPERSEDED_BY]
    if watched:
        account_ids = {m.account_id for m in watched}
        hours = {account_id: hours_of(estate) for account_id, estate in session.execute(
            sa.select(Account.id, Estate).join(Building, Building.id == Account.building_id)
            .join(Estate, Estate.id == Building.estate_id)
            .where(Account.id.in_(account_ids))).all()}
        latest = {(a, k): at for a, k, at in session.execute(
            sa.select(Notice.account_id, Notice.kind, sa.func.max(Notice.created_at))
            .where(Notice.account_id.in_(account_ids),
                   Notice.kind.in_(set(SUPERSEDED_BY.values())))
            .group_by(Notice.account_id, Notice.kind)).all()}
    for m in rows:
        at = notice_at.get(m.notice_id)
        later = SUPERSEDED_BY.get(m.kind)
        if later and at is not None and latest.get((m.account_id, later), at) > at:
            m.status = SKIPPED
            m.last_error = f"superseded: {later} since"
            m.next_attempt_at = None
            report.superseded.append((m.channel, m.kind))
        elif m.kind in templates.REMINDERS and m.account_id in hours \
                and not within_hours(now, *hours[m.account_id]):
            m.next_attempt_at = next_in_hours(now, *hours[m.account_id])
            report.held += 1
        else:
            m.status = SENDING
            m.attempts += 1
            m.next_attempt_at = now  # sending since
            report.claimed.append(Claimed(
                m.id, m.account_id, m.resident_id, m.notice_id, m.kind, m.channel,
                m.recipient, m.template, m.body, m.attempts, m.dedupe_key, m.created_at, at))
        session.add(m)
    return report


def record_sent(session: Session, message_id: int, provider_id: str, now: dt.datetime) -> bool:
    """The provider took the message. False if it was not `sending` any more."""
    done = session.execute(
        sa.update(Message).where(Message.id == message_id, Message.status == SENDING)
        .values(status=SENT, provider_id=(provider_id or "")[:200], sent_at=now,
                next_attempt_at=None, last_error=""))
    return done.rowcount == 1


@dataclass(frozen=True)
class Outcome:
    status: str  # QUEUED (to retry), FAILED, SKIPPED (another channel took over)
    retry_at: dt.datetime | None = None
    fallback: bool = False  # an SMS was queued instead


def record_failure(session: Session, claimed: Claimed, code: str, message: str,
                   permanent: bool, now: dt.datetime, settings) -> Outcome:
    """The provider refused (`code`, `message`, `permanent` as DeliveryError says): tried again
    after the back-off, or given up; a WeChat refusal that SMS gets round queues the SMS."""
    error = f"{code}: {message}"[:500]
    values: dict = {"last_error": error}
    outcome: Outcome
    if claimed.channel != SMS and code in FALLBACK_CODES:
        fallback = _sms_instead(session, claimed, now, settings)
        values.update(status=SKIPPED, next_attempt_at=None,
                      last_error=(error + (" → SMS" if fallback else ""))[:500])
        outcome = Outcome(SKIPPED, fallback=fallback)
    elif permanent:
        values.update(status=FAILED, next_attempt_at=None)
        outcome = Outcome(FAILED)
    elif claimed.attempts >= MAX_ATTEMPTS:
        values.update(status=FAILED, next_attempt_at=None,
                      last_error=f"gave up after {claimed.attempts} attempts: {error}"[:500])
        outcome = Outcome(FAILED)
    else:
        retry_at = now + BACKOFF[min(claimed.attempts, len(BACKOFF)) - 1]
        values.update(status=QUEUED, next_attempt_at=retry_at)
        outcome = Outcome(QUEUED, retry_at)
    session.execute(sa.update(Message).where(Message.id == claimed.id, Message.status == SENDING)
                    .values(**values))
    return outcome


def _sms_instead(session: Session, claimed: Claimed, now: dt.datetime, settings) -> bool:
    """Queue an SMS in place of a WeChat message WeChat would not deliver, to the same
    resident's phone (if any, and a template is set). True if queued."""
    if claimed.resident_id is None or claimed.notice_id is None:
        return False
    resident = session.get(Resident, claimed.resident_id)
    notice = session.get(Notice, claimed.notice_id)
    template = templates.template_id(settings, SMS, claimed.kind)
    if resident is None or not resident.phone or notice is None or not template:
        return False
    house = gather(session, [notice]).get(notice.account_id)
    if house is None:
        return False
    facts = facts_of(session, notice, house)
    planned = Planned(notice.id, notice.account_id, resident.id, claimed.kind, SMS,
                      resident.phone, template,
                      message_body(SMS, facts, ""), QUEUED, now,
                      f"{claimed.dedupe_key or f'{claimed.kind}:{notice.id}:r{resident.id}'}:sms")
    return _insert_one(session, planned, now)


def anything_due(session: Session, now: dt.datetime) -> tuple[bool, bool]:
    """(a queued message is due, a `sending` one is stuck): two index probes."""
    def probe(status: str, before: dt.datetime) -> bool:
        return session.execute(sa.select(Message.id).where(
            Message.status == status, Message.next_attempt_at <= before).limit(1)).first() \
            is not None

    return probe(QUEUED, now), probe(SENDING, now - STUCK_AFTER)


def fail_stuck(session: Session, now: dt.datetime) -> int:
    """Messages left `sending` for `STUCK_AFTER` (their process died between the provider's
    answer and its record): `failed`, outcome unknown, for a manager, never sent again (it
    may have gone). Returns how many."""
    done = session.execute(
        sa.update(Message).where(Message.status == SENDING,
                                 Message.next_attempt_at < now - STUCK_AFTER)
        .values(status=FAILED, next_attempt_at=None,
                last_error="outcome unknown: the sending process stopped before recording "
                           "the provider's answer (not sent again)"))
    return done.rowcount or 0


# --- what managers see ---------------------------------------------------------------------------

def mask_recipient(channel: str, recipient: str) -> str:
    """A phone as 138****5678; an openid as its first 4 and last 4 characters."""
    from app.privacy import mask_phone

    if not recipient:
        return ""
    if channel == SMS:
        return mask_phone(recipient)
    return recipient[:4] + "…" + recipient[-4:] if len(recipient) > 10 else "…"


def failed_messages(session: Session, building_ids: list[int], since: dt.datetime,
                    limit: int = 200) -> list[tuple[Message, str, str]]:
    """Failed messages of accounts in `building_ids` since `since`, newest first, with the
    account's number and household."""
    return list(session.execute(
        sa.select(Message, Account.number, Account.household)
        .join(Account, Account.id == Message.account_id)
        .where(Message.status == FAILED, Message.created_at >= since,
               Account.building_id.in_(building_ids or [-1]))
        .order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)).all())


def messages_of(session: Session, account_id: int, limit: int = 20) -> list[Message]:
    """An account's newest messages."""
    return list(session.exec(select(Message).where(Message.account_id == account_id)
                             .order_by(Message.created_at.desc(), Message.id.desc())
                             .limit(limit)))
