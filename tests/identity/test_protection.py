"""CSRF on every resident POST (asgi-csrf, as the console), the security headers, body limits on
the new routes, and templates without inline script or style (the CSP forbids them)."""

import re
from pathlib import Path

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from app.db import transaction
from app.ledger.models import LedgerEntry
from app.main import create_app
from app.orders.models import Order
from app.resident.models import AgreementAcceptance, ResidentAccount, SmsCode
from app.settings import ROOT, Settings
from tests.identity.support import bound_resident, csrf_token, post

FORMS = {  # every resident POST, with a form that would otherwise be acted on
    "/a/{n}/topup": {"amount": "50", "channel": "alipay"},
    "/a/{n}/emergency": {},
    "/a/{n}/agreement": {},
    "/a/{n}/unbind": {},
    "/login/code": {"phone": "13900000009"},
    "/login": {"phone": "13900000009", "code": "123456"},
    "/logout": {},
    "/bind/holder/code": {"number": "{n}"},
    "/bind/holder": {"number": "{n}", "code": "123456"},
    "/bind/details": {"number": "{n}", "surname": "张", "last4": "5678"},
    "/bind/confirm": {"number": "{n}", "code": "123456"},
}


@pytest.fixture
def household(engine):
    from tests.factories import EstateFactory

    estate = EstateFactory(engine)
    return estate.account(gateway_id=estate.gateway("127.0.0.1", 1), unit_id=1, balance_fen=-500,
                          relay_open=True, emergency_credit_fen=1000)


def nothing_changed(engine) -> bool:
    with transaction(engine, read_only=True) as s:
        return (s.exec(select(Order)).all() == [] and s.exec(select(SmsCode)).all() == []
                and s.exec(select(LedgerEntry).where(LedgerEntry.kind != "opening")).all() == []
                and len(s.exec(select(ResidentAccount)).all()) == 1
                and len(s.exec(select(AgreementAcceptance)).all()) == 1)


@pytest.mark.parametrize("path", sorted(FORMS))
def test_a_post_without_the_token_is_refused(client, engine, settings, household, path):
    bound_resident(engine, client, settings, household, accepted=True)
    client.get(f"/a/{household}")  # the browser has the CSRF cookie, as a victim would
    url = path.replace("{n}", household)
    form = {k: v.replace("{n}", household) for k, v in FORMS[path].items()}
    for token in (None, "forged-" + csrf_token(client)):
        data = form if token is None else {**form, "csrftoken": token}
        reply = client.post(url, data=data)
        assert reply.status_code == 403, reply.text
        assert "操作没有执行" in reply.text and "<h1>" in reply.text
    assert nothing_changed(engine)
    assert client.get(f"/a/{household}").status_code == 200  # still bound, still signed in


def test_a_post_without_any_cookie_is_refused_too(engine, settings, household):
    """A forged top-up or sign-in from another site carries no cookie: asgi-csrf lets those
    through unless told otherwise; ours are all protected."""
    with TestClient(create_app(settings, engine), follow_redirects=False) as bare:
        for path in ("/a/{n}/topup", "/login/code", "/bind/details"):
            reply = bare.post(path.replace("{n}", household), data=FORMS[path])
            assert reply.status_code == 403, path
            bare.cookies.clear()
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(Order)).all() == [] and s.exec(select(SmsCode)).all() == []


def test_htmx_sends_the_token_in_a_header(client, engine, settings, household):
    reply = client.post(f"/a/{household}/topup", data=FORMS["/a/{n}/topup"],
                        headers={"x-csrftoken": csrf_token(client)})
    assert reply.status_code == 303


def test_the_payment_notifications_and_the_stand_ins_are_not_checked(client):
    reply = client.post("/notify/alipay", data={"out_trade_no": "x"})
    assert reply.status_code != 403  # refused by its signature check, not by CSRF
    reply = client.post("/sandbox/notify-behaviour", data={"behaviour": "normal"})
    assert reply.status_code != 403


def test_the_console_keeps_its_own_csrf(client):
    page = client.get("/manage/login")
    token = re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)
    csrf_token(client)  # the resident cookie alongside
    reply = client.post("/manage/login", data={"name": "nobody", "password": "x" * 12,
                                               "csrftoken": token})
    assert reply.status_code == 401  # checked by the console's middleware, then refused
    assert client.post("/manage/login", data={"name": "nobody", "password": "x"}
                       ).status_code == 403


def headers_of(reply) -> dict:
    return {k.lower(): v for k, v in reply.headers.items()}


def test_security_headers_on_resident_pages(client, engine, settings, household):
    for path in ("/", f"/a/{household}", "/login", "/a/424242"):
        h = headers_of(client.get(path))
        csp = h["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
        assert h["referrer-policy"] == "strict-origin-when-cross-origin"
        assert h["cache-control"] == "no-store"
        assert "strict-transport-security" not in h  # served over http
    static = headers_of(client.get("/static/app.css"))
    assert static["x-content-type-options"] == "nosniff" and static["cache-control"] != "no-store"
    console = headers_of(client.get("/manage/login"))
    assert console["referrer-policy"] == "same-origin"  # the console's own, untouched


def test_hsts_when_served_over_https(engine, settings):
    https = Settings(**{**settings.model_dump(), "public_url": "https://dian.example.cn"})
    with TestClient(create_app(https, engine), base_url="https://dian.example.cn") as c:
        home = c.get("/")
        assert "Secure" in home.headers["set-cookie"]  # the CSRF cookie
        for reply in (home, c.get("/manage/login")):
            assert headers_of(reply)["strict-transport-security"] == "max-age=31536000"


def test_new_routes_have_a_body_limit(client):
    for path in ("/login/code", "/bind/details", "/a/900001/agreement"):
        reply = client.post(path, content=b"phone=" + b"1" * 70_000,
                            headers={"content-type": "application/x-www-form-urlencoded"})
        assert reply.status_code == 413, path


# Data blocks are not run: JSON, and WeChat's open-tag templates (text/wxtag-template).
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)"
                           r"(?![^>]*type=\"(?:application/json|text/wxtag-template)\")[^>]*>",
                           re.I)
HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE = re.compile(r"<style\b|\sstyle\s*=", re.I)


def test_resident_templates_have_no_inline_script_handler_or_style():
    templates = [ROOT / "templates" / "base.html", *sorted((ROOT / "templates" / "resident")
                                                           .glob("*.html"))]
    assert len(templates) > 10
    for path in templates:
        text = Path(path).read_text("utf-8")
        assert not INLINE_SCRIPT.search(text), path.name
        assert not HANDLER.search(text), path.name
        assert not STYLE.search(text), path.name
        assert "javascript:" not in text, path.name


def test_every_post_form_of_the_resident_pages_carries_the_token():
    forms = 0
    for path in sorted((ROOT / "templates" / "resident").glob("*.html")):
        text = path.read_text("utf-8")
        for match in re.finditer(r"<form\b[^>]*>", text):
            if 'method="post"' not in match.group(0).lower():
                continue
            forms += 1
            body = text[match.end():text.index("</form>", match.end())]
            assert 'name="csrftoken" value="{{ csrftoken }}"' in body, \
                f"{path.name}: {match.group(0)}"
    assert forms >= 10
