"""Logging in to the console: argon2 passwords, sessions that can be ended, CSRF on every form,
the login rate limit shared by every process, security headers."""

import datetime as dt

import sqlalchemy as sa
from sqlmodel import select

from app.cli import main as feikong
from app.console.models import AuditEntry, Manager, ManagerSession
from app.db import transaction
from tests.console.conftest import PASSWORD, csrf, log_in, new_client


def test_a_manager_logs_in_and_the_session_cookie_is_guarded(settings, engine, estate):
    with new_client(settings, engine) as client:
        assert client.get("/manage/").headers["location"] == "/manage/login?next=/manage/"
        reply = log_in(client, "admin")
        assert reply.status_code == 303 and reply.headers["location"] == "/manage/"
        cookie = next(h for h in reply.headers.get_list("set-cookie")
                      if h.startswith("feikong_manage="))
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/manage" in cookie
        page = client.get("/manage/")
        assert page.status_code == 200 and "admin · 小区管理员" in page.text
    with transaction(engine, read_only=True) as s:
        manager = s.exec(select(Manager).where(Manager.name == "admin")).one()
        assert manager.password_hash.startswith("$argon2id$")
        assert PASSWORD not in manager.password_hash
        assert [e.action for e in s.exec(select(AuditEntry))][-1] == "login"


def test_a_wrong_password_is_refused_without_saying_which_part_was_wrong(settings, engine, estate):
    with new_client(settings, engine) as client:
        wrong = log_in(client, "admin", "not the password")
        unknown = log_in(client, "nobody", PASSWORD)
        assert wrong.status_code == unknown.status_code == 401
        assert "用户名或密码不对" in wrong.text and "用户名或密码不对" in unknown.text
        assert "feikong_manage" not in client.cookies


def test_console_pages_carry_the_security_headers(settings, engine, estate):
    with new_client(settings, engine) as client:
        headers = client.get("/manage/login").headers
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"


def test_a_form_without_its_csrf_token_is_refused(settings, engine, estate):
    with new_client(settings, engine) as client:
        csrf(client)
        reply = client.post("/manage/login", data={"name": "admin", "password": PASSWORD})
        assert reply.status_code == 403
        reply = client.post("/manage/login", data={"name": "admin", "password": PASSWORD,
                                                   "csrftoken": "forged"})
        assert reply.status_code == 403
        assert "feikong_manage" not in client.cookies


def test_logins_are_limited_per_name_across_processes(settings, engine, estate):
    """Two app instances stand for two `serve --processes` children: the count is shared."""
    with new_client(settings, engine) as first, new_client(settings, engine) as second:
        for client in (first, second, first, second, first):
            assert log_in(client, "admin", "guess").status_code == 401
        refused = log_in(second, "admin")  # the right password, past the limit
        assert refused.status_code == 429 and "15 分钟后再试" in refused.text
        assert log_in(first, "b1").status_code == 303  # another name is not held up


def test_a_disabled_manager_is_out_at_the_next_request(console, engine, capsys):
    client = console("b1")
    assert client.get("/manage/").status_code == 200
    assert feikong(["manager", "disable", "b1"]) == 0
    assert client.get("/manage/").status_code == 303
    assert log_in(client, "b1").status_code == 401


def test_an_idle_session_expires(console, engine, settings):
    client = console("admin")
    with transaction(engine) as s:
        s.execute(sa.update(ManagerSession).values(
            last_seen_at=dt.datetime.now(dt.timezone.utc)
            - dt.timedelta(minutes=settings.console_idle_minutes + 1)))
    assert client.get("/manage/").headers["location"].startswith("/manage/login")


def test_log_out_everywhere_ends_every_session_of_the_manager(console):
    office, phone = console("admin"), console("admin")
    other = console("b1")
    reply = phone.post("/manage/logout/everywhere", data={"csrftoken": csrf(phone)})
    assert reply.status_code == 303
    assert office.get("/manage/").status_code == 303
    assert phone.get("/manage/").status_code == 303
    assert other.get("/manage/").status_code == 200


def test_the_audit_log_cannot_be_changed(engine, estate):
    import pytest

    with pytest.raises(sa.exc.DatabaseError, match="insert-only"):
        with transaction(engine) as s:
            s.execute(sa.text("UPDATE audit_entry SET reason = 'changed'"))


def test_managers_are_added_from_the_command_line_with_the_password_on_stdin(
        engine, estate, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert feikong(["manager", "add", "wang", "--role", "building_manager", "--estate",
                    str(estate.estate_id), "--building", str(estate.building_b),
                    "--password-stdin"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert feikong(["manager", "add", "li", "--role", "finance", "--estate",
                    str(estate.estate_id), "--password-stdin"]) == 1
    assert feikong(["manager", "list"]) == 0
    out = capsys.readouterr()
    assert "密码至少 10 个字符" in out.err
    assert f"wang  building_manager (楼栋经理)  estate {estate.estate_id}  buildings " \
           f"{estate.building_b}" in out.out
    assert "li " not in out.out
