"""A bound resident's pages of their household: bills (账单), history (明细), usage (用电) and
notices (消息), read by app/resident/statements.py. Each is for a resident bound to that
household only: no session, no binding, an unknown 户号 all get the same Chinese 404, and nothing
changes. A bound resident who has not accepted the current prepaid agreement is sent to it
first, as the account page does."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from app.db import transaction, utcnow
from app.estate.models import Building, Estate
from app.ledger.days import local_day
from app.resident import statements
from app.resident.identity import bound_account, has_accepted, resident_id
from app.resident.models import Resident
from app.resident.subscribe import subscribe_offer, with_offer_csp
from app.resident.views import current_agreement


def render(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
    return request.app.state.templates.TemplateResponse(request, name, context,
                                                       status_code=status_code)


def not_found(request: Request) -> Response:
    """The one answer to a stranger: whether the 户号 exists or not, bound to someone else or
    not, signed in or not."""
    number = request.path_params.get("number", "")
    return render(request, "resident/not_found.html", {"number": number[:40]}, 404)


async def _read(request: Request, read) -> tuple[dict | None, Response | None]:
    """(context, None): `read(session, account, binding)` in a read-only transaction, with the
    page's common context, when the signed-in resident is bound to the path's household and has
    accepted the agreement; else (None, the reply: the 404, or the way to the agreement)."""
    number, rid = request.path_params["number"], resident_id(request)
    if rid is None:
        return None, not_found(request)
    engine, version = request.app.state.engine, current_agreement(request).version

    def load():
        with transaction(engine, read_only=True) as s:
            found = bound_account(s, rid, number)
            if found is None:
                return None
            account, binding = found
            if not has_accepted(s, rid, account.id, version):
                return AGREEMENT
            building = s.get(Building, account.building_id)
            context = read(s, account, binding)
            context.update(account=account, binding=binding, building=building,
                           estate=s.get(Estate, building.estate_id))
            return context

    context = await run_in_threadpool(load)
    if context is None:
        return None, not_found(request)
    if context is AGREEMENT:
        return None, RedirectResponse(request.url_for("agreement", number=number),
                                      status_code=303)
    return context, None


AGREEMENT = object()  # bound, the agreement not accepted yet


async def bills(request: Request) -> Response:
    context, reply = await _read(request, lambda s, a, b: {
        "months": statements.bill_months(s, a), "today": local_day(utcnow())})
    if reply is not None:
        return reply
    return render(request, "resident/bills.html", {**context, "tab": "bills"})


async def bill(request: Request) -> Response:
    month = statements.parse_month(request.path_params["month"])
    if month is None or month > statements.month_of(local_day(utcnow())):
        return not_found(request)
    context, reply = await _read(request, lambda s, a, b: {
        "bill": statements.month_bill(s, a, month)})
    if reply is not None:
        return reply
    return render(request, "resident/bill.html", {
        **context, "tab": "bills", "generated_at": utcnow(),
        "last_day": statements.next_month(month) - dt.timedelta(days=1),
        "previous": statements.previous_month(month),
        "next": (statements.next_month(month)
                 if statements.next_month(month) <= statements.month_of(local_day(utcnow()))
                 else None)})


async def history(request: Request) -> Response:
    raw = request.query_params.get("before", "")
    before = None
    if raw:
        try:
            before = dt.date.fromisoformat(raw) if len(raw) == 10 else None
        except ValueError:
            before = None
        if before is None:
            return not_found(request)
    context, reply = await _read(request, lambda s, a, b: {
        "page": statements.history_page(s, a, before)})
    if reply is not None:
        return reply
    return render(request, "resident/history.html", {**context, "tab": "history",
                                                      "before": before})


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: dt.date
    wh: int
    show_label: bool


@dataclass(frozen=True)
class Chart:
    """Bars of Wh per day or month, oldest first, drawn in a 340 × 200 box (a 360-px phone's
    width, less the page's margins: its text is then drawn at about its own size)."""

    bars: list[Bar]
    top_wh: int
    total_wh: int
    width: int = 340
    height: int = 200
    base: int = 172  # the bars' baseline; the labels below it


def bar_chart(points: list[tuple[dt.date, int]], every: int) -> Chart:
    width, top_pad, base, side = 340, 24, 172, 6
    top = max((wh for _, wh in points), default=0)
    slot = (width - 2 * side) / max(len(points), 1)
    bars = []
    for i, (day, wh) in enumerate(points):
        h = (base - top_pad) * wh / top if top else 0
        bars.append(Bar(x=round(side + i * slot + slot * 0.15, 1), y=round(base - h, 1),
                        width=round(slot * 0.7, 1), height=round(h, 1), day=day, wh=wh,
                        show_label=(len(points) - 1 - i) % every == 0))
    return Chart(bars, top, sum(wh for _, wh in points))


async def usage(request: Request) -> Response:
    context, reply = await _read(request, lambda s, a, b: {"usage": statements.usage(s, a)})
    if reply is not None:
        return reply
    used = context["usage"]
    return render(request, "resident/usage.html", {
        **context, "tab": "usage", "daily": bar_chart(used.days, 7),
        "monthly": bar_chart(used.months, 2)})


async def notices(request: Request) -> Response:
    """The notices, unread ones marked; the first page seen marks them read (the binding's
    `notices_read_at` moves to the newest one shown), after it is drawn as it was."""
    raw = request.query_params.get("before", "")
    before = statements.parse_notice_cursor(raw) if raw else None
    if raw and before is None:
        return not_found(request)
    context, reply = await _read(request, lambda s, a, b: {
        "page": statements.notices_page(s, a.id, before),
        "unread": statements.unread_count(s, a.id, b.notices_read_at),
        "read_at": b.notices_read_at,
        "openid": getattr(s.get(Resident, b.resident_id), "openid", None)})
    if reply is not None:
        return reply
    shown = context["page"].notices
    if before is None and shown and statements.is_unread(shown[0], context["read_at"]):
        engine, binding = request.app.state.engine, context["binding"]

        def mark():
            with transaction(engine) as s:
                statements.mark_notices_read(s, binding.resident_id, binding.account_id,
                                             shown[0].created_at)

        await run_in_threadpool(mark)
    offer = subscribe_offer(request, context["estate"], context["openid"])
    return with_offer_csp(render(request, "resident/notices.html", {
        **context, "tab": "notices", "before": raw, "is_unread": statements.is_unread,
        "subscribe": offer}), offer)
