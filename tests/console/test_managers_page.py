"""Managers in the console: an estate administrator adds and disables them; nobody else."""

from tests.console.conftest import csrf, log_in, new_client


def test_an_administrator_adds_a_building_manager_who_then_sees_only_that_building(
        console, settings, engine, estate):
    admin = console("admin")
    token = csrf(admin)
    short = admin.post("/manage/managers", data={"name": "zhao", "role": "building_manager",
                                                 "building": str(estate.building_b),
                                                 "password": "short", "csrftoken": token})
    assert short.status_code == 400 and "密码至少 10 个字符" in short.text
    reply = admin.post("/manage/managers", data={"name": "zhao", "role": "building_manager",
                                                 "building": str(estate.building_b),
                                                 "password": "zhao-password-1",
                                                 "csrftoken": token})
    assert reply.status_code == 200 and "zhao" in reply.text
    with new_client(settings, engine) as browser:
        assert log_in(browser, "zhao", "zhao-password-1").status_code == 303
        page = browser.get("/manage/").text
        assert "2号楼" in page and "1号楼" not in page
    assert "manager.add" in admin.get("/manage/audit").text


def test_an_administrator_disables_b1(console, estate):
    b1, admin = console("b1"), console("admin")
    reply = admin.post("/manage/managers", data={"disable": "b1", "csrftoken": csrf(admin)})
    assert reply.status_code == 200
    assert b1.get("/manage/").status_code == 303
    log = admin.get("/manage/audit").text
    assert "manager.disable" in log


def test_nobody_else_manages_managers(console, estate):
    for name in ("b1", "finance"):
        client = console(name)
        assert client.get("/manage/managers").status_code == 404
        assert client.post("/manage/managers", data={"disable": "admin",
                                                      "csrftoken": csrf(client)}).status_code == 404
    assert console("admin").get("/manage/").status_code == 200  # admin still in


def test_an_administrator_rescopes_b1_who_sees_the_change_at_the_next_request(console, estate):
    b1, admin = console("b1"), console("admin")
    stranger = estate.b_accounts[0]
    assert b1.get(f"/manage/accounts/{stranger}").status_code == 404
    token = csrf(admin)
    none = admin.post("/manage/managers", data={"scope": "b1", "csrftoken": token})
    assert none.status_code == 400 and "至少一栋楼" in none.text
    admin.post("/manage/managers", data={"scope": "b1", "building": str(estate.building_b),
                                         "csrftoken": token})
    assert b1.get(f"/manage/accounts/{stranger}").status_code == 200
    assert b1.get(f"/manage/accounts/{estate.a_accounts[0]}").status_code == 404
    assert admin.post("/manage/managers", data={"scope": "admin", "building": "1",
                                                "csrftoken": token}).status_code == 400
    log = admin.get("/manage/audit").text
    assert "manager.scope" in log and f"buildings=[{estate.building_b}]" in log
