"""Notices become messages and reach people: WeChat to followers, SMS to the others, reminders
only within the messaging hours and once a day, confirmations at once, failures retried and
then shown to managers. The real app serves its stand-ins; the real SMS and WeChat clients send
to them; what arrived is read from the stand-ins' outboxes."""

from __future__ import annotations

import datetime as dt

import pytest

from app.db import transaction
from app.messages import services
from app.messages.models import FAILED, QUEUED, SENT, SKIPPED, SMS, WECHAT_SUBSCRIBE, \
    WECHAT_TEMPLATE
from app.notices.models import (BALANCE_EXHAUSTED, EMERGENCY_CREDIT, LESS_THAN_A_DAY,
                                LOW_BALANCE, PAYMENT_RECEIVED, POWER_CUT, POWER_RESTORED)
from app.notices.services import warn_low_balance
from standins import sms as sms_standin
from standins import wechat_messages as wechat_standin
from tests.messages.conftest import local, openid

DAY = "2026-12-03"  # a Thursday
TEN = local(DAY, "10:00")


def test_a_cut_reaches_a_follower_by_wechat_and_a_resident_without_openid_by_sms(world):
    house = world.household(number="101020")
    follower = world.resident(house, openid=openid(1), phone="13900000001")
    texter = world.resident(house, phone="13900000002")
    world.notice(house, POWER_CUT, TEN)

    counts = world.jobs.sweep(TEN)

    assert counts["sent"] == 2
    [wechat] = world.wechat()
    assert wechat["kind"] == "template" and wechat["openid"] == openid(1)
    assert wechat["data"]["character_string1"] == "101020"
    assert wechat["data"]["time2"] == "2026年12月3日 10:00"
    assert "停电通知" in wechat["text"] and "101020" in wechat["text"]
    assert wechat["url"].endswith("/a/101020")
    [sms] = world.sms()
    assert sms["phone"] == "13900000002"
    assert sms["text"].startswith("【费控电费】您的户号101020已于12月3日 10:00欠费停电")
    rows = {m.resident_id: m for m in world.messages(house)}
    assert (rows[follower].channel, rows[follower].status) == (WECHAT_TEMPLATE, SENT)
    assert rows[follower].provider_id == wechat["msgid"]
    assert (rows[texter].channel, rows[texter].status) == (SMS, SENT)
    assert rows[texter].provider_id == sms["serial_no"] and rows[texter].attempts == 1
    assert world.jobs.sweep(TEN + dt.timedelta(minutes=1))["sent"] == 0  # once only
    assert len(world.sms()) == 1 and len(world.wechat()) == 1


def test_nobody_bound_the_registered_phone_gets_it(world):
    house = world.household(number="101021", holder_phone="13812345678")
    world.notice(house, POWER_RESTORED, TEN)
    world.jobs.sweep(TEN)
    [sms] = world.sms()
    assert sms["phone"] == "13812345678" and "恢复供电" in sms["text"]
    [row] = world.messages(house)
    assert row.resident_id is None and row.status == SENT


def test_nobody_to_reach_is_recorded_as_skipped(world):
    house = world.household(holder_phone="")
    world.notice(house, POWER_CUT, TEN)
    world.jobs.sweep(TEN)
    [row] = world.messages(house)
    assert row.status == SKIPPED and row.last_error == services.NO_RECIPIENT
    assert world.sms() == [] and world.wechat() == []


def test_an_openid_that_does_not_follow_gets_an_sms(world):
    house = world.household()
    world.resident(house, openid=openid(2), phone="13900000003")
    wechat_standin.set_follows(world.var_dir, openid(2), False)
    world.notice(house, POWER_CUT, TEN)
    world.jobs.sweep(TEN)
    assert world.wechat() == []
    assert [m["phone"] for m in world.sms()] == ["13900000003"]


def test_a_follower_who_left_since_gets_an_sms_instead(world):
    """Believed to follow (remembered), WeChat answers 43004: that message is skipped, and an
    SMS goes to the same resident."""
    house = world.household(number="101022")
    resident = world.resident(house, openid=openid(3), phone="13900000004")
    assert world.jobs.follows({openid(3)}) == {openid(3): True}
    wechat_standin.set_follows(world.var_dir, openid(3), False)
    world.notice(house, PAYMENT_RECEIVED, TEN, amount_fen=5_000)
    world.jobs.sweep(TEN)
    assert world.wechat() == []
    [sms] = world.sms()
    assert sms["phone"] == "13900000004" and "充值50.00元已到账" in sms["text"]
    rows = world.messages(house)
    assert [(m.channel, m.status) for m in rows] == [(WECHAT_TEMPLATE, SKIPPED), (SMS, SENT)]
    assert rows[0].last_error.startswith("43004") and rows[0].last_error.endswith("→ SMS")
    assert {m.resident_id for m in rows} == {resident}


def test_subscription_notices_where_the_estate_chose_them(world):
    world.estate(wechat_messages="subscribe")
    house = world.household(number="101023")
    world.resident(house, openid=openid(4), phone="13900000005")
    world.resident(house, openid=openid(5), phone="13900000006")
    wechat_standin.set_subscription(world.var_dir, openid(4), "sandbox-sub-cut", 1)
    wechat_standin.set_subscription(world.var_dir, openid(5), "sandbox-sub-cut", None)
    world.notice(house, POWER_CUT, TEN)
    world.jobs.sweep(TEN)
    [notice] = world.wechat()
    assert notice["kind"] == "subscribe" and notice["openid"] == openid(4)
    assert notice["template_id"] == "sandbox-sub-cut" and notice["url"].endswith("/a/101023")
    # the other refused the subscription (43101): an SMS instead
    assert [m["phone"] for m in world.sms()] == ["13900000006"]
    assert sorted((m.channel, m.status) for m in world.messages(house)) == [
        (SMS, SENT), (WECHAT_SUBSCRIBE, SENT), (WECHAT_SUBSCRIBE, SKIPPED)]


def test_every_kind_is_taken_by_both_providers(world):
    """Each kind's WeChat data and SMS parameters fit their templates (the stand-ins check keys,
    types and lengths as WeChat and Tencent do), at night too for the confirmations."""
    house = world.household(number="101028", balance_fen=-300)
    world.resident(house, openid=openid(8))
    world.resident(house, phone="13900000018")
    at = local(DAY, "12:00")
    for kind, amount in ((LOW_BALANCE, 700), (LESS_THAN_A_DAY, 1_500), (BALANCE_EXHAUSTED, -300),
                         (POWER_CUT, None), (POWER_RESTORED, None), (PAYMENT_RECEIVED, 5_000),
                         (EMERGENCY_CREDIT, 2_000)):
        world.notice(house, kind, at, amount_fen=amount)
    world.jobs.sweep(at)
    rows = world.messages(house)
    assert len(rows) == 14 and {m.status for m in rows} == {SENT}, \
        [(m.kind, m.channel, m.last_error) for m in rows if m.status != SENT]
    texts = " | ".join(m["text"] for m in world.sms())
    assert "户号101028已使用应急用电20.00元，将从下次充值中扣回" in texts
    assert "户号101028电费余额为15.00元" in texts  # less than a day: the low-balance text
    emergency = [m for m in world.wechat() if m["template_id"] == "sandbox-tpl-emergency"]
    assert emergency[0]["data"] == {"character_string1": "101028", "amount2": "20.00元",
                                    "thing3": "将从下次充值中扣回"}
    exhausted = [m for m in world.wechat() if m["template_id"] == "sandbox-tpl-exhausted"]
    assert exhausted[0]["data"]["time3"] == "2026年12月3日 12:00"  # no lead time, no quiet hours


# --- messaging hours and once a day ------------------------------------------------------------

def test_a_low_balance_at_23_waits_until_08_and_then_goes(world):
    house = world.household(balance_fen=500, number="101024")  # below the 10.00 元 line
    world.resident(house, phone="13900000007")
    night = local(DAY, "23:00")
    with transaction(world.engine) as s:  # the engine's own warning, at 23:00
        from app.estate.models import Account

        assert warn_low_balance(s, s.get(Account, house.id), 500, night).kind == LOW_BALANCE

    world.jobs.sweep(night)
    world.jobs.sweep(local("2026-12-04", "07:59"))
    assert world.sms() == []
    [row] = world.messages(house)
    assert row.status == QUEUED and row.next_attempt_at == local("2026-12-04", "08:00")

    world.jobs.sweep(local("2026-12-04", "08:00"))
    [sms] = world.sms()
    assert "101024电费余额为5.00元" in sms["text"]
    assert world.messages(house)[0].status == SENT


def test_confirmations_and_the_cut_go_at_once_at_night(world):
    house = world.household(number="101025", balance_fen=-10)
    world.resident(house, phone="13900000008")
    night = local(DAY, "23:00")
    world.notice(house, PAYMENT_RECEIVED, night, amount_fen=2_000)
    world.notice(house, POWER_CUT, night + dt.timedelta(minutes=1))
    world.notice(house, BALANCE_EXHAUSTED, night, amount_fen=-10)
    world.jobs.sweep(night + dt.timedelta(minutes=1))
    texts = " | ".join(m["text"] for m in world.sms())  # sent side by side: in either order
    assert len(world.sms()) == 2
    assert "充值20.00元已到账，当前余额-0.10元" in texts
    assert "已于12月3日 23:01欠费停电，充值1.00元即可恢复供电" in texts
    held = [m for m in world.messages(house) if m.kind == BALANCE_EXHAUSTED]
    assert [(m.status, m.next_attempt_at) for m in held] == [
        (QUEUED, local("2026-12-04", "08:00"))]


def test_the_estates_own_hours(world):
    world.estate(message_start="09:30", message_end="18:00")
    house = world.household()
    world.resident(house, phone="13900000009")
    world.notice(house, LOW_BALANCE, local(DAY, "18:00"), amount_fen=800)
    world.jobs.sweep(local(DAY, "18:00"))
    world.jobs.sweep(local("2026-12-04", "09:29"))
    assert world.sms() == []
    world.jobs.sweep(local("2026-12-04", "09:30"))
    assert len(world.sms()) == 1


def test_the_same_reminder_twice_in_a_day_goes_once(world):
    house = world.household()
    resident = world.resident(house, phone="13900000010")
    world.notice(house, LOW_BALANCE, local(DAY, "09:00"), amount_fen=900)
    world.jobs.sweep(local(DAY, "09:00"))
    second = world.notice(house, LOW_BALANCE, local(DAY, "15:00"), amount_fen=700)
    world.jobs.sweep(local(DAY, "15:00"))
    assert len(world.sms()) == 1
    repeat = [m for m in world.messages(house) if m.notice_id == second]
    assert [(m.status, m.last_error, m.resident_id) for m in repeat] == [
        (SKIPPED, services.ALREADY_TODAY, resident)]
    # a night's reminder counts for the morning it goes: the next day's 09:00 one is a repeat
    world.notice(house, LOW_BALANCE, local(DAY, "22:00"), amount_fen=600)
    world.jobs.sweep(local(DAY, "22:00"))
    world.notice(house, LOW_BALANCE, local("2026-12-04", "09:00"), amount_fen=500)
    world.jobs.sweep(local("2026-12-04", "09:00"))
    assert len(world.sms()) == 2
    assert "5.00" not in world.sms()[1]["text"] and "6.00" in world.sms()[1]["text"]


def test_reminders_off_stops_reminders_not_the_cut_notice(world):
    house = world.household()
    resident = world.resident(house, phone="13900000011")
    other = world.household()
    with transaction(world.engine) as s:
        assert services.set_reminders(s, resident, house.id, False) is False
        with pytest.raises(LookupError):  # not bound there: a stranger's household
            services.set_reminders(s, resident, other.id, False)
    world.notice(house, LOW_BALANCE, TEN, amount_fen=900)
    world.notice(house, POWER_CUT, TEN)
    world.jobs.sweep(TEN)
    [sms] = world.sms()
    assert "欠费停电" in sms["text"]
    low = [m for m in world.messages(house) if m.kind == LOW_BALANCE]
    assert [(m.status, m.last_error) for m in low] == [(SKIPPED, services.OFF)]
    with transaction(world.engine) as s:
        services.set_reminders(s, resident, house.id, True)
    world.notice(house, LOW_BALANCE, TEN + dt.timedelta(hours=1), amount_fen=800)
    world.jobs.sweep(TEN + dt.timedelta(hours=1))
    assert len(world.sms()) == 2


def test_a_reminder_waiting_for_the_morning_is_dropped_once_paid(world):
    house = world.household()
    world.resident(house, phone="13900000012")
    world.notice(house, LOW_BALANCE, local(DAY, "23:00"), amount_fen=300)
    world.jobs.sweep(local(DAY, "23:00"))
    world.notice(house, PAYMENT_RECEIVED, local("2026-12-04", "07:00"), amount_fen=10_000)
    world.jobs.sweep(local("2026-12-04", "07:00"))
    world.jobs.sweep(local("2026-12-04", "08:00"))
    [sms] = world.sms()  # the payment's confirmation only
    assert "充值100.00元已到账" in sms["text"]
    low = [m for m in world.messages(house) if m.kind == LOW_BALANCE]
    assert low[0].status == SKIPPED and "payment_received" in low[0].last_error


# --- failures --------------------------------------------------------------------------------

def test_a_transient_failure_is_retried_with_backoff_then_sent(world):
    house = world.household()
    world.resident(house, phone="13900000013")
    world.notice(house, POWER_CUT, TEN)
    sms_standin.fail_next(world.var_dir, 2)  # InternalError.Timeout twice
    world.jobs.sweep(TEN)
    [row] = world.messages(house)
    assert (row.status, row.attempts) == (QUEUED, 1)
    assert row.next_attempt_at == TEN + dt.timedelta(minutes=1)
    assert row.last_error.startswith("InternalError.Timeout")
    world.jobs.sweep(TEN + dt.timedelta(seconds=59))  # not yet
    assert world.messages(house)[0].attempts == 1
    world.jobs.sweep(TEN + dt.timedelta(minutes=1))
    [row] = world.messages(house)
    assert (row.status, row.attempts) == (QUEUED, 2)
    assert row.next_attempt_at == TEN + dt.timedelta(minutes=6)
    world.jobs.sweep(TEN + dt.timedelta(minutes=6))
    [row] = world.messages(house)
    assert (row.status, row.attempts, row.last_error) == (SENT, 3, "")
    assert len(world.sms()) == 1


def test_out_of_attempts_it_fails_and_managers_see_it(world, console_of):
    house = world.household(number="101026")
    world.resident(house, phone="13900000014")
    world.notice(house, POWER_CUT, TEN)
    sms_standin.fail_next(world.var_dir, 99)
    at = TEN
    for wait in (0, 1, 5, 30, 120):  # minutes after each attempt
        at += dt.timedelta(minutes=wait)
        world.jobs.sweep(at)
    [row] = world.messages(house)
    assert (row.status, row.attempts) == (FAILED, services.MAX_ATTEMPTS)
    assert row.last_error.startswith("gave up after 5 attempts: InternalError.Timeout")
    assert world.sms() == []
    page = console_of(world).get("/manage/anomalies").text
    assert "101026" in page and "139****0014" in page and "13900000014" not in page
    assert "gave up after 5 attempts" in page


def test_a_permanent_refusal_fails_at_once_and_shows_on_the_account_page(world, console_of):
    house = world.household(number="101027")
    world.resident(house, phone="13900000015")
    world.resident(house, openid=openid(6))
    world.notice(house, POWER_CUT, TEN)
    sms_standin.fail_next(world.var_dir, 1, permanent=True)  # blacklisted
    wechat_standin.fail_next(world.var_dir, 1, permanent=True)  # 40003
    world.jobs.sweep(TEN)
    assert sorted((m.channel, m.status, m.attempts) for m in world.messages(house)) == [
        (SMS, FAILED, 1), (WECHAT_TEMPLATE, FAILED, 1)]
    client = console_of(world)
    anomalies = client.get("/manage/anomalies").text
    assert "FailedOperation.PhoneNumberInBlacklist" in anomalies and "40003" in anomalies
    assert openid(6) not in anomalies and "oSan…0006" in anomalies
    page = client.get("/manage/accounts/101027").text
    assert "发给住户的消息" in page and "发送失败" in page and "139****0015" in page


def test_a_crash_between_send_and_record_never_sends_again(world):
    """The claim is committed before the send: a process that died after the provider took
    the message leaves it `sending`; later it is marked failed, outcome unknown, not resent."""
    house = world.household()
    world.resident(house, phone="13900000016")
    world.notice(house, POWER_CUT, TEN)
    world.jobs.plan(TEN)
    with transaction(world.engine) as s:
        [claimed] = services.claim_due(s, TEN).claimed
    world.jobs._send(claimed)  # the provider took it; the process dies before recording
    assert len(world.sms()) == 1
    world.jobs.sweep(TEN + dt.timedelta(minutes=5))
    assert world.messages(house)[0].status == services.SENDING
    world.jobs.sweep(TEN + dt.timedelta(minutes=11))
    [row] = world.messages(house)
    assert row.status == FAILED and row.last_error.startswith("outcome unknown")
    assert len(world.sms()) == 1


def test_notices_from_long_ago_are_not_sent(world):
    house = world.household()
    world.resident(house, phone="13900000017")
    world.notice(house, POWER_CUT, TEN - dt.timedelta(days=2))
    world.jobs.sweep(TEN)
    assert world.messages(house) == [] and world.sms() == []


def test_two_planners_and_two_senders_send_each_message_once(world, settings, engine):
    """Two processes' jobs at once (here two job objects in two threads; on PostgreSQL the
    claims skip each other's locked rows): 12 households, each message sent once."""
    import threading

    from app.messages.jobs import MessageJobs

    for i in range(12):
        house = world.household()
        world.resident(house, phone=f"139000001{i:02d}")
        world.notice(house, POWER_CUT, TEN)
    other = MessageJobs(engine, settings, world.app.state.messengers)
    try:
        threads = [threading.Thread(target=jobs.sweep, args=(TEN,))
                   for jobs in (world.jobs, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        world.jobs.sweep(TEN)
    finally:
        other.close()
    phones = [m["phone"] for m in world.sms()]
    assert len(phones) == 12 and len(set(phones)) == 12
    assert [m.status for m in world.messages()] == [SENT] * 12
