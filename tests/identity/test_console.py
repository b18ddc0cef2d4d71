"""Managers see, on the console's account page, who is bound to a household (phone and openid
masked) and who accepted which version of the agreement, when and from where."""

from app.resident.agreement import load_agreement
from tests.console.conftest import console, estate  # noqa: F401 (fixtures)
from tests.identity.support import bind, post, resident, sign_in


def test_the_console_shows_bound_residents_and_acceptances(client, engine, settings, estate,
                                                           console):
    number = estate.a_accounts[0]
    by_phone = resident(engine, "13900001234")
    both = resident(engine, "13700005678", "oWx_bound_resident_000042")
    bind(engine, by_phone, number, accepted=False)
    bind(engine, both, number, accepted=False)
    sign_in(client, settings, by_phone)
    assert post(client, f"/a/{number}/agreement").status_code == 303  # from "testclient"

    page = console("admin").get(f"/manage/accounts/{number}").text
    assert "139****1234" in page and "137****5678" in page and "物业绑定" in page
    assert "13900001234" not in page and "oWx_bound_resident_000042" not in page
    assert "微信 oWx" in page
    acceptances = page[page.index('id="acceptances"'):]
    acceptances = acceptances[:acceptances.index("</table>")]
    assert "139****1234" in acceptances and load_agreement().version in acceptances and "testclient" in acceptances
    assert "137****5678" not in acceptances  # bound, not yet accepted

    other = estate.a_accounts[1]
    page = console("admin").get(f"/manage/accounts/{other}").text
    assert "没有住户绑定本户" in page and "还没有住户同意协议" in page
