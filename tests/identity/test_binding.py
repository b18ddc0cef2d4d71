"""Binding a household both ways (the holder's phone receives a code; or 户号 + surname + last
four, then a code to the resident's own phone), several households, unbinding; what a page
tells about a 户号 or a phone it does not show anyway."""

import httpx
from sqlmodel import select

from app.db import transaction
from app.resident.models import ResidentAccount
from tests.identity.conftest import last_code, sms_to
from tests.identity.support import post, resident, sign_in

MINE = "13900000001"  # the resident's own phone
HOLDER = "13812345678"  # the factory's registered phone of every account


def bindings(engine) -> list[tuple[int, int, str]]:
    with transaction(engine, read_only=True) as s:
        return [(b.resident_id, b.account_id, b.how)
                for b in s.exec(select(ResidentAccount).order_by(ResidentAccount.account_id))]


def signed_in(web, live, engine, phone=MINE) -> int:
    rid = resident(engine, phone)
    sign_in(web, live.settings, rid)
    return rid


def accept(web, number):
    """The first visit of a bound household: the agreement, accepted; then the full page."""
    reply = web.get(f"/a/{number}")
    assert reply.status_code == 303 and reply.headers["location"].endswith(f"/a/{number}/agreement")
    page = web.get(f"/a/{number}/agreement")
    assert "预付费用电协议" in page.text and "我已阅读并同意" in page.text
    assert post(web, f"/a/{number}/agreement").status_code == 303
    return web.get(f"/a/{number}")


def test_bind_with_the_code_sent_to_the_holders_phone(web, live, engine, estate, gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=3000)
    rid = signed_in(web, live, engine)
    reply = post(web, "/bind/holder/code", {"number": number})
    assert reply.status_code == 200 and "户主的手机会收到验证码" in reply.text
    assert sms_to(live.settings, MINE) == [] and len(sms_to(live.settings, HOLDER)) == 1
    code = last_code(live.settings, HOLDER)  # the holder reads it out

    wrong = post(web, "/bind/holder", {"number": number, "code": f"{(int(code) + 1) % 10**6:06d}"})
    assert wrong.status_code == 400 and "验证码不对或已失效" in wrong.text
    assert bindings(engine) == []

    reply = post(web, "/bind/holder", {"number": number, "code": code})
    assert reply.status_code == 303 and reply.headers["location"] == f"/a/{number}"
    assert [(r, h) for r, _, h in bindings(engine)] == [(rid, "holder_phone")]
    page = accept(web, number)
    assert "测试小区" in page.text and "30.00" in page.text and "收支明细" in page.text


def test_the_holder_signed_in_with_the_registered_phone_binds_at_once(web, live, engine, estate,
                                                                       gateway):
    number = estate.account(gateway_id=gateway, unit_id=1)
    signed_in(web, live, engine, phone=HOLDER)
    reply = post(web, "/bind/holder/code", {"number": number})
    assert reply.status_code == 303 and reply.headers["location"] == f"/a/{number}"
    assert sms_to(live.settings, HOLDER) == []  # no code needed
    assert len(bindings(engine)) == 1


def test_bind_with_the_holders_details_then_a_code_to_my_phone(web, live, engine, estate,
                                                                gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, holder_name="欧阳娜娜")
    rid = signed_in(web, live, engine)
    reply = post(web, "/bind/details", {"number": number, "surname": "欧阳", "last4": "5678"})
    assert reply.status_code == 200 and "验证码已发送至您的手机 139****0001" in reply.text
    assert sms_to(live.settings, HOLDER) == []
    reply = post(web, "/bind/confirm", {"number": number, "code": last_code(live.settings, MINE)})
    assert reply.status_code == 303
    assert [(r, h) for r, _, h in bindings(engine)] == [(rid, "holder_details")]
    assert "欧***" in accept(web, number).text


def test_wrong_details_read_the_same_and_send_nothing(web, live, engine, estate, gateway):
    """A wrong surname, wrong last four, or a 户号 that does not exist: one message."""
    number = estate.account(gateway_id=gateway, unit_id=1, holder_name="张三")
    signed_in(web, live, engine)
    texts = set()
    for form in ({"number": number, "surname": "李", "last4": "5678"},
                 {"number": number, "surname": "张", "last4": "5679"},
                 {"number": number, "surname": "张三", "last4": "5678"},  # the whole name
                 {"number": "999999", "surname": "张", "last4": "5678"}):
        reply = post(web, "/bind/details", form)
        assert reply.status_code == 400
        assert "户号、户主姓氏或手机后四位不对" in reply.text
        texts.add(reply.text.replace(form["number"], "N"))
    assert len(texts) == 1
    assert sms_to(live.settings, MINE) == [] and bindings(engine) == []
    # and the code step cannot be skipped: no code was issued for this household
    reply = post(web, "/bind/confirm", {"number": number, "code": "123456"})
    assert reply.status_code == 400 and bindings(engine) == []


def test_the_holder_code_page_reads_the_same_for_any_number(web, live, engine, estate, gateway):
    known = estate.account(gateway_id=gateway, unit_id=1)
    no_phone = estate.account(gateway_id=gateway, unit_id=2)
    with transaction(engine) as s:
        from app.estate.models import Account

        row = s.exec(select(Account).where(Account.number == no_phone)).one()
        row.holder_phone = ""
        s.add(row)
    signed_in(web, live, engine)
    pages = {}
    for number in (known, no_phone, "987654"):
        reply = post(web, "/bind/holder/code", {"number": number})
        assert reply.status_code == 200
        pages[number] = reply.text.replace(number, "N")
    assert len(set(pages.values())) == 1
    reply = post(web, "/bind/holder/code", {"number": known})  # again within the minute
    assert reply.status_code == 200 and reply.text.replace(known, "N") == pages[known]
    assert len(sms_to(live.settings, HOLDER)) == 1  # only the known household's, once
    for number in (no_phone, "987654"):  # any code for those is wrong, the same way
        reply = post(web, "/bind/holder", {"number": number, "code": "123456"})
        assert reply.status_code == 400 and "验证码不对或已失效" in reply.text


def test_a_wechat_only_resident_proves_a_phone_before_the_details_way(web, live, engine, estate,
                                                                      gateway):
    number = estate.account(gateway_id=gateway, unit_id=1)
    rid = resident(engine, None, "o_wechat_only_0001")
    sign_in(web, live.settings, rid)
    page = web.get("/bind")
    assert "这种方式需要先验证您的手机号" in page.text and 'action="/bind/details"' not in page.text
    reply = post(web, "/bind/details", {"number": number, "surname": "张", "last4": "5678"})
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login?next=")
    assert bindings(engine) == []


def test_binding_needs_a_signed_in_resident(web, live, estate, gateway):
    reply = web.get("/bind?number=900001")
    assert reply.status_code == 303 and reply.headers["location"] == "/login?next=/bind%3Fnumber%3D900001"
    reply = post(web, "/bind/holder/code", {"number": "900001"})
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login")
    assert sms_to(live.settings, HOLDER) == []


def test_several_households_a_switcher_and_unbinding(web, live, engine, estate, gateway):
    mine = estate.account(gateway_id=gateway, unit_id=1, balance_fen=1500)
    parents = estate.account(gateway_id=gateway, unit_id=2, balance_fen=-200)
    signed_in(web, live, engine, phone=HOLDER)  # the holder of both
    for number in (mine, parents):
        assert post(web, "/bind/holder/code", {"number": number}).status_code == 303
        accept(web, number)
    home = web.get("/").text
    assert f'href="/a/{mine}"' in home and f'href="/a/{parents}"' in home
    assert "15.00" in home and "-2.00" in home
    page = web.get(f"/a/{mine}").text
    assert "我的其他户号" in page and f'href="/a/{parents}"' in page

    reply = post(web, f"/a/{parents}/unbind")
    assert reply.status_code == 303 and reply.headers["location"] == f"/?unbound={parents}"
    assert f"已解除与户号 {parents} 的绑定" in web.get(reply.headers["location"]).text
    assert len(bindings(engine)) == 1
    after = web.get(f"/a/{parents}")  # the next request: the unbound page
    assert after.status_code == 200 and "登录并绑定此户号" not in after.text
    assert "绑定此户号" in after.text and "收支明细" not in after.text
    assert web.get(f"/a/{parents}/history").status_code == 404
    assert post(web, f"/a/{parents}/unbind").status_code == 404  # not bound: nothing to undo
    assert "我的其他户号" not in web.get(f"/a/{mine}").text


def test_a_strangers_household_is_a_404_for_bills_history_and_the_rest(web, live, engine, estate,
                                                                        gateway):
    number = estate.account(gateway_id=gateway, unit_id=1, balance_fen=1000)
    signed_in(web, live, engine)  # signed in, but not bound to it
    for path in ("bills", "history", "usage", "notices", "agreement"):
        reply = web.get(f"/a/{number}/{path}")
        assert reply.status_code == 404, path
        assert "10.00" not in reply.text
    assert post(web, f"/a/{number}/agreement").status_code == 404
    with httpx.Client(base_url=live.base_url, timeout=15) as anonymous:
        for path in ("bills", "history"):
            assert anonymous.get(f"/a/{number}/{path}").status_code == 404


def test_holder_details_limited_per_household(web, live, engine, estate, gateway):
    """Five wrong tries at one household's details a day, whoever and wherever from: then 429,
    even with the right details."""
    number = estate.account(gateway_id=gateway, unit_id=1, holder_name="张三")
    signed_in(web, live, engine)
    for last4 in ("0000", "0001", "0002", "0003", "0004"):
        assert post(web, "/bind/details", {"number": number, "surname": "张",
                                           "last4": last4}).status_code == 400
    with httpx.Client(base_url=live.base_url, timeout=15) as other:
        signed_in(other, live, engine, phone="13900000002")
        reply = post(other, "/bind/details", {"number": number, "surname": "张", "last4": "5678"})
    assert reply.status_code == 429 and "操作太频繁" in reply.text
    assert sms_to(live.settings, "13900000002") == [] and bindings(engine) == []
