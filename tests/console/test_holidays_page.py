"""The holiday calendar in the console: the warning on the overview, and an estate
administrator loading next year's arrangement (the same checks as `feikong holidays load`)."""

from sqlmodel import select

from app.policy.models import HolidayArrangement
from app.db import transaction
from app.estate.models import Estate
from tests.console.conftest import csrf
from tests.policy.test_holiday_years import ARRANGEMENT_2027


def upload(client, text: str):
    """As the page's htmx form sends it: the file, and the CSRF token in its header."""
    return client.post("/manage/holidays", headers={"x-csrftoken": csrf(client),
                                                    "hx-request": "true"},
                       files={"file": ("2027.txt", text.encode("utf-8"), "text/plain")})


def test_an_upload_without_the_csrf_token_is_refused(console, engine):
    client = console("admin")
    reply = client.post("/manage/holidays", headers={"x-csrftoken": "forged"},
                        files={"file": ("2027.txt", ARRANGEMENT_2027.encode(), "text/plain")})
    assert reply.status_code == 403
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(HolidayArrangement)).all() == []


def test_the_overview_warns_that_the_official_calendar_ends(console, engine, estate):
    """From 60 days before the end of the official calendar (2026-12-31: the warning holds from
    2026-11-01 on, and after that date the calendar is computed until 2027 is loaded)."""
    with transaction(engine) as s:
        s.get(Estate, estate.estate_id).holiday_calendar = "cn"
    page = console("b1").get("/manage/").text
    assert 'id="calendar-warning"' in page and "feikong holidays load" in page


def test_an_administrator_loads_2027_and_sees_it(console, engine):
    client = console("admin")
    reply = upload(client, ARRANGEMENT_2027)
    assert reply.status_code == 200
    assert "已载入 2027 年的节假日安排" in reply.text
    assert "班 2027-02-20 周六  春节调休上班  [loaded]" in reply.text
    assert "holidays.load" in client.get("/manage/audit").text


def test_a_malformed_file_is_listed_by_line_and_nothing_is_loaded(console, engine):
    reply = upload(console("admin"), ARRANGEMENT_2027.replace("2027-06-09", "2027-06-31"))
    assert reply.status_code == 400
    assert "第 10 行（休 2027-06-31 端午节）：日期不存在" in reply.text
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(HolidayArrangement)).all() == []


def test_only_an_estate_administrator_loads(console, engine):
    client = console("b1")
    assert 'type="file"' not in client.get("/manage/holidays").text
    assert upload(client, ARRANGEMENT_2027).status_code == 404
    with transaction(engine, read_only=True) as s:
        assert s.exec(select(HolidayArrangement)).all() == []
