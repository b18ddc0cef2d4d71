"""What a resident trips over, tried in Debian's chromium on a 360-px phone against the real
server: the language switch (after a failed top-up POST, on the sandbox cashier, back on the
account page with ?order=), the Chinese 404 page, the page at 200 % text size, the pay buttons
above the fold, axe-core's serious and critical violations; and, over HTTP, the error pages,
versioned static files and compression.

200 % text size is emulated as a browser sets it: the default font size (Chrome's Settings →
Appearance → Font size, Android's font scale once the page opts in with `<meta name="text-scale"
content="scale">`) raised from 16 px to 32 px through the DevTools protocol's `Page.setFontSizes`.
A page with a fixed px base ignores it; ours follows it (the root is 112.5 % of it)."""

from __future__ import annotations

import collections
import gzip
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from app.settings import ROOT
from tests.factories import balance_of
from tests.functional.conftest import ARGS, ARTIFACTS, CHROMIUM

AXE = Path(__file__).resolve().parent / "vendor" / "axe-core" / "axe.min.js"
WIDTH = 360
HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def new_phone(browser, height: int = 740, **kwargs):
    context = browser.new_context(viewport={"width": WIDTH, "height": height}, is_mobile=True,
                                  has_touch=True, locale="zh-CN", **kwargs)
    return context.new_page()


@pytest.fixture
def site(stack, cut_account):
    """The real web app on loopback; a cut household at -5.00 元 (its 户号)."""
    stack.start_web()
    return stack.base_url, cut_account


def text_size(page, percent: int) -> None:
    """The browser's default font size at `percent` of 16 px, as its text-size setting does."""
    cdp = page.context.new_cdp_session(page)
    size = 16 * percent // 100
    cdp.send("Page.setFontSizes", {"fontSizes": {"standard": size, "fixed": size * 13 // 16}})


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page, as "rule: target" lines."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    found = [f"{v['id']} ({v['impact']}): {node['target']}" for v in result["violations"]
             if v["impact"] in ("serious", "critical") for node in v["nodes"]]
    impacts = collections.Counter(v["impact"] for v in result["violations"])
    print(page.url, dict(impacts), [v["id"] for v in result["violations"]])
    return found


def fail_a_topup(page, base_url: str, number: str) -> None:
    """On the account page, an amount that is not one (1e2) and 支付宝支付: the POST's 400 page."""
    page.goto(f"{base_url}/a/{number}")
    page.get_by_label("其他金额（元）").fill("1e2")
    page.get_by_role("button", name="支付宝支付").click()
    expect(page.get_by_role("alert")).to_be_visible()
    assert page.url.endswith(f"/a/{number}/topup")  # the POST's reply


# --- in the browser ------------------------------------------------------------------------

def test_404_is_chinese_styled_and_leads_home(site, browser):
    base_url, _ = site
    page = new_phone(browser)
    reply = page.goto(f"{base_url}/no/such/page?x=1")
    assert reply.status == 404
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    expect(page.locator("h1")).to_have_text("页面不存在")
    assert page.locator('meta[name="viewport"]').count() == 1
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(244, 245, 247)"
    page.get_by_role("link", name="回到首页").click()
    expect(page.locator("h1")).to_have_text("查询电费余额")


def test_language_switch_after_failed_topup_leads_to_english_account(site, browser):
    base_url, number = site
    page = new_phone(browser)
    fail_a_topup(page, base_url, number)
    page.get_by_role("link", name="English").click()
    assert page.url == f"{base_url}/a/{number}?lang=en"  # the page's GET URL, not the POST's
    expect(page.locator("h1")).to_be_visible()
    expect(page.get_by_text("Balance (¥)")).to_be_visible()
    expect(page.locator("#balance")).to_have_text("-5.00")
    expect(page.get_by_role("button", name="Pay with Alipay")).to_be_visible()
    page.get_by_role("link", name="中文").click()  # and back, from a GET
    expect(page.get_by_text("当前余额（元）")).to_be_visible()
    assert page.url == f"{base_url}/a/{number}?lang=zh"


def test_language_switch_on_sandbox_cashier_and_back_with_order(site, browser, engine):
    base_url, number = site
    page = new_phone(browser)
    page.goto(f"{base_url}/a/{number}")
    page.get_by_text("50 元", exact=True).click()
    page.get_by_role("button", name="支付宝支付").click()
    expect(page.locator("#pay-amount")).to_contain_text("50.00")
    cashier = page.url
    page.get_by_role("link", name="English").click()
    # the signed pay request kept whole: still the same payment, in English
    assert page.url == f"{cashier}&lang=en"
    expect(page.locator("h1")).to_have_text("Alipay (sandbox)")
    expect(page.locator("#pay-amount")).to_contain_text("50.00")
    page.get_by_role("button", name="Confirm payment").click()

    expect(page.locator("#order-state")).to_have_text("¥50.00 received", timeout=10_000)
    order = re.search(r"[?&]order=([^&]+)", page.url).group(1)
    page.get_by_role("link", name="中文").click()
    assert page.url == f"{base_url}/a/{number}?order={order}&lang=zh"  # ?order= kept
    expect(page.locator("#order-state")).to_have_text("已到账 50.00 元")
    assert balance_of(engine, number) == 4500


@pytest.mark.parametrize("path", ["/", "/a/{number}", "/no/such/page"])
def test_fits_360px_at_200_percent_text(site, browser, path):
    base_url, number = site
    page = new_phone(browser)
    text_size(page, 200)
    page.goto(base_url + path.format(number=number))
    root = page.evaluate("getComputedStyle(document.documentElement).fontSize")
    assert root == "36px"  # 112.5 % of the doubled default: the type did grow
    assert page_width(page) <= WIDTH
    wide = page.evaluate(f"""[...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > {WIDTH} + 0.5)
        .map(e => e.tagName + '.' + e.className)""")
    assert wide == []
    # the first screen only: a full-page screenshot resets the emulated font sizes
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"text-200-{path.strip('/').split('/')[0] or 'home'}.png"))


def test_fits_360px_at_200_percent_text_after_failed_topup_and_on_cashier(site, browser):
    base_url, number = site
    page = new_phone(browser)
    text_size(page, 200)
    fail_a_topup(page, base_url, number)
    assert page_width(page) <= WIDTH
    page.goto(f"{base_url}/a/{number}")
    page.get_by_role("button", name="支付宝支付").click()
    expect(page.locator("#pay-amount")).to_contain_text("50.00")
    assert page_width(page) <= WIDTH  # the order number wraps


def test_pay_buttons_above_the_fold_at_360x640(site, browser):
    base_url, number = site
    page = new_phone(browser, height=640)
    page.goto(f"{base_url}/a/{number}")
    buttons = page.locator("button.pay-alipay, button.pay-wechat")
    assert buttons.count() >= 1
    for i in range(buttons.count()):
        box = buttons.nth(i).bounding_box()
        assert box["y"] + box["height"] <= 640, (buttons.nth(i).inner_text(), box)
        assert box["width"] >= 280 and box["height"] >= 44  # large targets


@pytest.mark.parametrize("path", ["/", "/a/{number}", "/no/such/page", "/a/{number}?lang=en"])
def test_axe_no_serious_or_critical_violation(site, browser, path):
    base_url, number = site
    page = new_phone(browser, bypass_csp=True)  # axe is injected as a script
    page.goto(base_url + path.format(number=number))
    assert serious_violations(page) == []


def test_axe_after_failed_topup(site, browser):
    base_url, number = site
    page = new_phone(browser, bypass_csp=True)
    fail_a_topup(page, base_url, number)
    assert serious_violations(page) == []


def test_every_page_has_one_h1(site, browser):
    base_url, number = site
    page = new_phone(browser)
    for path in ("/", f"/a/{number}", "/nothing", "/a/no-such-number"):
        page.goto(base_url + path)
        assert page.locator("h1").count() == 1, path
    fail_a_topup(page, base_url, number)
    assert page.locator("h1").count() == 1
    page.goto(f"{base_url}/a/{number}")
    page.get_by_role("button", name="支付宝支付").click()
    expect(page.locator("#pay-amount")).to_be_visible()
    assert page.locator("h1").count() == 1


def test_htmx_only_on_a_page_that_polls(site, browser):
    """No script but app.js where nothing is awaited; htmx, and the status polled, where a
    payment is."""
    base_url, number = site
    page = new_phone(browser)
    scripts = []
    page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
    for path in ("/", "/no/such/page", f"/a/{number}"):
        page.goto(base_url + path, wait_until="load")
        assert page.evaluate("typeof window.htmx") == "undefined", path
    assert scripts and not [u for u in scripts if "htmx" in u]
    page.get_by_role("button", name="支付宝支付").click()
    with page.expect_request(re.compile(rf"/a/{number}/_status\?order=")):
        page.get_by_role("link", name="取消并返回").click()  # back from the cashier, not paid
    # the provider is asked on the way back: not paid, and the page says so (not "confirming")
    expect(page.locator("#order-state")).to_contain_text("未完成支付（已取消或尚未付款）")
    expect(page.locator("#pay-again")).to_be_visible()
    assert page.evaluate("typeof window.htmx") == "object"


# --- over HTTP -------------------------------------------------------------------------------

def test_error_pages_for_people_plain_replies_for_machines(site):
    base_url, number = site
    with httpx.Client(base_url=base_url) as http:
        page = http.get("/no/such/page", headers=HTML)
        assert page.status_code == 404 and "<h1>页面不存在</h1>" in page.text
        assert 'name="viewport"' in page.text and "回到首页" in page.text
        get_a_form = http.get(f"/a/{number}/topup", headers=HTML)
        assert get_a_form.status_code == 405 and get_a_form.headers["allow"] == "POST"
        assert "<h1>这个页面不能这样打开</h1>" in get_a_form.text
        assert f'href="/a/{number}"' in get_a_form.text  # back to the account page
        # the providers and the console keep their plain replies
        notify = http.get("/notify/alipay", headers=HTML)
        assert (notify.status_code, notify.text) == (405, "Method Not Allowed")
        assert http.post("/notify/alipay", content=b"x=1").text == "failure"
        console = http.get("/manage/no/such/page", headers=HTML)
        assert console.status_code in (303, 404) and "<h1>" not in console.text
        assert http.get("/no/such/page").text == "Not Found"  # not a browser
        english = http.get("/no/such/page?lang=en", headers=HTML)
        assert "<h1>Page not found</h1>" in english.text


def test_server_error_page(site, engine):
    """A real fault (the accounts' table gone): the resident sees the styled 500 page."""
    base_url, number = site
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE account RENAME TO account_gone")
    with httpx.Client(base_url=base_url) as http:
        page = http.get(f"/a/{number}", headers=HTML)
        assert page.status_code == 500
        assert "<h1>出错了，请稍后再试</h1>" in page.text and "回到首页" in page.text
        assert page.headers["cache-control"] == "no-store"
    with httpx.Client(base_url=base_url) as http:  # the server closes a connection that failed
        english = http.get(f"/a/{number}?lang=en", headers=HTML)
        assert english.status_code == 500 and "<h1>Something went wrong" in english.text


def test_static_versioned_cached_compressed(site):
    base_url, _ = site
    with httpx.Client(base_url=base_url) as http:
        home = http.get("/", headers={**HTML, "accept-encoding": "gzip"})
        assert home.headers["content-encoding"] == "gzip"
        urls = dict(re.findall(r'(?:href|src|data-htmx)="(/static/([\w.-]+)\?v=[0-9a-f]{12})"',
                               home.text))
        assert {"app.css", "app.js", "htmx.min.js", "favicon.svg"} <= set(urls.values())
        for url, name in urls.items():
            raw = http.get(url, headers={"accept-encoding": "identity"})
            assert raw.content == (ROOT / "static" / name).read_bytes()
            assert raw.headers["cache-control"] == "public, max-age=31536000, immutable"
            again = http.get(url, headers={"if-none-match": raw.headers["etag"],
                                           "accept-encoding": "identity"})
            assert again.status_code == 304
        for name in ("app.css", "htmx.min.js"):
            url = next(u for u, n in urls.items() if n == name)
            with http.stream("GET", url, headers={"accept-encoding": "gzip"}) as packed:
                body = b"".join(packed.iter_raw())
                assert packed.headers["content-encoding"] == "gzip"
            assert len(body) < len((ROOT / "static" / name).read_bytes()) / 2
            assert gzip.decompress(body) == (ROOT / "static" / name).read_bytes()
        stale = http.get("/static/app.css?v=000000000000")
        assert stale.headers["cache-control"] == "no-cache"  # an old version: not for a year
        assert http.get("/static/app.css").headers["cache-control"] == "no-cache"
        icon = http.get("/favicon.ico")
        assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
        assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO
