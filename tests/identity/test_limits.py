"""Rate limits counted in our database: 户号 look-ups by someone not bound to them, code sends and
wrong codes, per client address, per openid and per phone; they hold across two server
processes; X-Forwarded-For counts only from a trusted proxy."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
import sqlalchemy as sa
from starlette.requests import HTTPConnection
from starlette.testclient import TestClient

from app.console.models import RateCounter
from app.db import transaction
from app.main import create_app
from app.resident.identity import LOOKUP_PER_ASKER, LOOKUP_PER_CLIENT
from app.resident.wechat import WechatCookies
from app.web.ratelimit import client_address, parse_networks
from bench.common import free_ports
from tests.conftest import wait_until
from tests.identity.conftest import last_code
from tests.identity.support import bound_resident, post

PER_CLIENT = LOOKUP_PER_CLIENT.amount  # 60 distinct 户号 an hour
PER_ASKER = LOOKUP_PER_ASKER.amount  # 30


def numbers(n: int, start: int = 700000) -> list[str]:
    return [str(start + i) for i in range(n)]


def test_lookups_beyond_the_limit_get_429(client, engine, settings):
    from tests.factories import EstateFactory

    estate = EstateFactory(engine)
    gw = estate.gateway("127.0.0.1", 1)
    mine = estate.account(gateway_id=gw, unit_id=1, balance_fen=100)
    real = estate.account(gateway_id=gw, unit_id=2, balance_fen=200)
    assert client.get(f"/a/{real}").status_code == 200  # one of the 60
    for number in numbers(PER_CLIENT - 1):  # nobody's: they count the same
        assert client.get(f"/a/{number}").status_code == 404
    reply = client.get("/a/799999")
    assert reply.status_code == 429
    assert "操作太频繁" in reply.text and int(reply.headers["retry-after"]) > 3000
    assert client.get(f"/a/{real}/_status").status_code == 200  # seen already: still answered
    assert client.get("/a/700001").status_code == 404
    reply = post(client, "/a/799998/topup", {"amount": "50", "channel": "alipay"})
    assert reply.status_code == 429  # a top-up would tell whether the 户号 exists
    bound_resident(engine, client, settings, mine)
    assert client.get(f"/a/{mine}").status_code == 200  # one's own household: not a look-up


def test_lookups_are_counted_per_openid_across_addresses(engine, settings):
    """A WeChat visitor (the openid cookie) moving between networks: counted as one."""
    app = create_app(settings, engine)
    cookies = WechatCookies(settings.secret_key, app.state.providers.wechat_oauth.appid,
                            secure=False)
    from starlette.responses import Response

    holder = Response()
    cookies.set_openid(holder, "o_roaming_user_0001")
    openid_cookie = holder.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    answers = []
    for k, number in enumerate(numbers(PER_ASKER + 1)):
        with TestClient(app, client=(f"10.0.{k // 200}.{k % 200 + 1}", 5000)) as c:
            c.cookies.set("wx_openid", openid_cookie)
            answers.append(c.get(f"/a/{number}").status_code)
    assert answers == [404] * PER_ASKER + [429]


def test_code_sends_limited_per_client_address(web, live, engine):
    sent = [post(web, "/login/code", {"phone": f"1390000{k:04d}"}).status_code
            for k in range(21)]
    assert sent == [200] * 20 + [429]


def test_wrong_codes_limited_per_phone_across_codes(web, live, engine):
    """Each code has five tries; a fresh code every minute would give five more: ten wrong
    codes an hour per phone, then 429 whatever is typed."""
    phone = "13911112222"
    for round_ in range(2):
        if round_:
            with transaction(engine) as s:  # a minute later: a new code may be sent
                s.execute(sa.update(RateCounter).where(
                    RateCounter.key.like("%code-send-phone%/1/minute"))
                    .values(expires_at=time.time() - 1))
        assert post(web, "/login/code", {"phone": phone}).status_code == 200
        code = last_code(live.settings, phone)
        wrong = f"{(int(code) + 1) % 10**6:06d}"
        for _ in range(5):
            assert post(web, "/login", {"phone": phone, "code": wrong}).status_code == 400
    reply = post(web, "/login", {"phone": phone, "code": code})
    assert reply.status_code == 429 and "操作太频繁" in reply.text
    assert "feikong_resident" not in web.cookies


def test_client_address_believes_forwarded_for_only_from_trusted_proxies():
    def connection(peer, forwarded=None):
        headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
        return HTTPConnection({"type": "http", "client": (peer, 1234), "headers": headers})

    none = parse_networks("")
    proxies = parse_networks("10.0.0.1, 192.168.1.0/24")
    assert client_address(connection("203.0.113.9", "1.2.3.4"), none) == "203.0.113.9"
    assert client_address(connection("203.0.113.9", "1.2.3.4"), proxies) == "203.0.113.9"
    assert client_address(connection("10.0.0.1", "198.51.100.7"), proxies) == "198.51.100.7"
    # a forged entry on the left proves nothing: the right-most untrusted hop is the client
    assert client_address(connection("10.0.0.1", "1.2.3.4, 198.51.100.7"), proxies) \
        == "198.51.100.7"
    assert client_address(connection("10.0.0.1", "198.51.100.7, 192.168.1.20"), proxies) \
        == "198.51.100.7"
    assert client_address(connection("10.0.0.1"), proxies) == "10.0.0.1"
    with pytest.raises(ValueError):
        parse_networks("not-an-address")


def test_forwarded_for_ignored_unless_from_a_trusted_proxy(engine, settings):
    def spend(app) -> list[int]:
        with TestClient(app, client=("10.0.0.1", 5000)) as c:
            return [c.get(f"/a/{number}", headers={"x-forwarded-for": f"198.51.100.{k}"}
                          ).status_code
                    for k, number in enumerate(numbers(PER_CLIENT + 1))]

    assert spend(create_app(settings, engine))[-1] == 429  # nobody trusted: one client
    with transaction(engine) as s:
        s.execute(sa.delete(RateCounter))
    trusted = settings.model_copy(update={"trusted_proxies": "10.0.0.1"})
    assert set(spend(create_app(trusted, engine))) == {404}  # each address its own count


@pytest.fixture
def two_servers(engine, settings, tmp_path):
    """Two `feikong serve` processes of their own on one database (jobs off), their URLs."""
    first = free_ports(2)  # the first of two consecutive free ports
    ports = [first, first + 1]
    servers, logs = [], []
    for port in ports:
        var_dir = tmp_path / f"var-{port}"  # its own sandbox keys: none made twice at once
        env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
                   FEIKONG_VAR_DIR=str(var_dir), FEIKONG_WEB_PORT=str(port),
                   FEIKONG_PUBLIC_URL=f"http://127.0.0.1:{port}",
                   FEIKONG_ORDER_JOBS_EVERY_S="0", FEIKONG_BILLING_JOBS_EVERY_S="0",
                   FEIKONG_MESSAGE_JOBS_EVERY_S="0")
        log_path = tmp_path / f"serve-{port}.log"
        with log_path.open("w") as log:
            servers.append(subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=env,
                                            stdout=log, stderr=subprocess.STDOUT))
        logs.append(log_path)
    try:
        for log_path in logs:
            wait_until(lambda: "serving on" in log_path.read_text(), timeout=120,
                       message=lambda: f"serve did not start: {log_path.read_text()[-2000:]}")
        yield [f"http://127.0.0.1:{port}" for port in ports]
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server, log_path in zip(servers, logs):
            assert server.wait(15) == 0, log_path.read_text()[-2000:]


def test_enumeration_beyond_the_limit_gets_429_across_two_processes(two_servers):
    """Look-ups alternate between two server processes (a forged X-Forwarded-For on each: not
    believed); the limit is one count in the database, so the 61st gets 429 from either."""
    first, second = (httpx.Client(base_url=url, timeout=10) for url in two_servers)
    with first, second:
        answers = []
        for k, number in enumerate(numbers(PER_CLIENT)):
            web = (first, second)[k % 2]
            answers.append(web.get(f"/a/{number}",
                                   headers={"x-forwarded-for": f"198.51.100.{k}"}).status_code)
        assert answers == [404] * PER_CLIENT
        for web in (first, second):
            reply = web.get("/a/799999")
            assert reply.status_code == 429 and "操作太频繁" in reply.text


def test_a_malformed_number_is_a_404_and_counts_nothing(client, engine):
    for path in ("/a/" + "9" * 200, "/a/abc%3Cscript%3E", "/a/%E5%8F%B7"):
        assert client.get(path).status_code == 404
    assert post(client, "/a/" + "9" * 200 + "/topup", {"amount": "50"}).status_code == 404
    with transaction(engine, read_only=True) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(RateCounter)).scalar() == 0
