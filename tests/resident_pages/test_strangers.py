"""A stranger (no session, a forged one, a resident bound elsewhere or nowhere, an unknown 户号)
gets the same Chinese 404 on every page of a household's bills, history, usage and notices, and
nothing changes; a bound resident who has not accepted the agreement is sent to it first."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from app.db import transaction, utcnow
from app.ledger.models import LedgerEntry, TOPUP
from app.notices.models import PAYMENT_RECEIVED, Notice
from app.resident import identity
from app.resident.models import ResidentAccount
from tests.factories import EstateFactory
from tests.resident_pages.helpers import account_id, post, resident, sign_in

PAGES = ("bills", "bills/2025-11", "history", "usage", "notices")


def _state(engine) -> tuple:
    with transaction(engine, read_only=True) as s:
        return (s.execute(sa.select(ResidentAccount.resident_id, ResidentAccount.account_id,
                                    ResidentAccount.notices_read_at)
                          .order_by(ResidentAccount.resident_id)).all(),
                s.execute(sa.select(sa.func.count()).select_from(LedgerEntry)).scalar(),
                s.execute(sa.select(sa.func.count()).select_from(Notice)).scalar())


@pytest.fixture
def households(engine):
    estate = EstateFactory(engine)
    gw = estate.gateway("127.0.0.1", 1)
    mine, theirs = (estate.account(gateway_id=gw, unit_id=1, balance_fen=5_000),
                    estate.account(gateway_id=gw, unit_id=2, balance_fen=7_000))
    a = account_id(engine, mine)
    post(engine, utcnow() - dt.timedelta(hours=3), [(a, 2_000, TOPUP, "order:S1", "alipay 1",
                                                     None)])
    with transaction(engine) as s:
        s.add(Notice(account_id=a, kind=PAYMENT_RECEIVED, amount_fen=2_000,
                     created_at=utcnow() - dt.timedelta(hours=3)))
    return mine, theirs


def test_strangers_get_the_404_and_nothing_changes(client, settings, engine, households):
    mine, theirs = households
    owner = resident(engine, "13900000041", mine)
    neighbour = resident(engine, "13900000042", theirs)
    nobody = resident(engine, "13900000043")
    before = _state(engine)
    askers = {"no session": None, "a forged session": "x" + identity.session_value(
        "not the secret key", owner), "bound elsewhere": neighbour, "bound nowhere": nobody}
    for who, rid in askers.items():
        client.cookies.clear()
        if isinstance(rid, str):
            client.cookies.set(identity.SESSION_COOKIE, rid)
        elif rid is not None:
            sign_in(client, settings, rid)
        for page in PAGES:
            response = client.get(f"/a/{mine}/{page}")
            assert response.status_code == 404, (who, page)
            assert "未找到该户号" in response.text and "<h1>" in response.text, (who, page)
            assert "alipay" not in response.text and "充值" not in response.text
    client.cookies.clear()
    sign_in(client, settings, owner)
    for number in ("999999", theirs):  # unknown, and somebody else's
        for page in PAGES:
            response = client.get(f"/a/{number}/{page}")
            assert response.status_code == 404, (number, page)
            assert "未找到该户号" in response.text
    assert _state(engine) == before  # no mark moved, nothing written
    for page in PAGES:  # and the owner is answered (the 404s above are not for everyone)
        assert client.get(f"/a/{mine}/{page}").status_code == 200, page
    home = client.get(f"/a/{mine}").text  # the household's page links to each
    for page in ("bills", "history", "usage", "notices"):
        assert f'href="/a/{mine}/{page}"' in home, page
    after = _state(engine)
    assert after[1:] == before[1:]
    assert [r for r in after[0] if r[0] != owner] == [r for r in before[0] if r[0] != owner]


def test_bound_without_the_agreement_goes_to_it(client, settings, engine, households):
    mine, _ = households
    rid = resident(engine, "13900000044", mine, accepted=False)
    sign_in(client, settings, rid)
    before = _state(engine)
    for page in PAGES:
        response = client.get(f"/a/{mine}/{page}")
        assert response.status_code == 303, page
        assert response.headers["location"].endswith(f"/a/{mine}/agreement")
    assert _state(engine) == before
