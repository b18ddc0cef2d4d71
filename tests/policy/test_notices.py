"""Balance notices: below the threshold, less than a day left, exhausted; rate-limited."""

import datetime as dt

from app.ledger.models import SHARE, TOPUP
from app.notices.models import BALANCE_EXHAUSTED, LESS_THAN_A_DAY, LOW_BALANCE
from tests.factories import account_by_number
from tests.policy.common import at, household, notices, poll, post

CREATED = at(2026, 11, 1, 9)  # old enough for a week of history


def test_below_the_threshold_a_low_balance_notice_at_most_once_a_day(engine):
    number = household(engine, balance_fen=800, created_at=CREATED)  # threshold 10 元
    for now in (at(2026, 11, 18, 10), at(2026, 11, 18, 12), at(2026, 11, 19, 9, 59)):
        poll(engine, number, now)
    assert notices(engine, number) == [(LOW_BALANCE, 800)]
    poll(engine, number, at(2026, 11, 19, 10))
    assert notices(engine, number) == [(LOW_BALANCE, 800)] * 2


def test_the_threshold_is_the_account_s(engine):
    number = household(engine, balance_fen=800, low_balance_threshold_fen=500, created_at=CREATED)
    poll(engine, number, at(2026, 11, 18))
    assert notices(engine, number) == []


def test_less_than_a_day_at_the_recent_rate_is_its_own_notice(engine):
    number = household(engine, balance_fen=1_200, created_at=CREATED)
    for day in range(11, 18):  # 11–17 November: 14.00 元 a day, use and share
        post(engine, number, -1_300, at(2026, 11, day, 20))
        post(engine, number, -100, at(2026, 11, day, 21), kind=SHARE)
    post(engine, number, 39_600, at(2026, 11, 18, 9), kind=TOPUP)  # money in is not use
    post(engine, number, -29_800, at(2026, 11, 18, 9, 30))  # today's use: not a complete day
    poll(engine, number, at(2026, 11, 18, 10))
    poll(engine, number, at(2026, 11, 18, 11))
    assert notices(engine, number) == [(LESS_THAN_A_DAY, 1_200)]
    assert account_by_number(engine, number).daily_rate_fen == 1_400


def test_a_balance_lasting_more_than_a_day_gets_no_notice(engine):
    number = household(engine, balance_fen=1_500, created_at=CREATED)
    for day in range(11, 18):
        post(engine, number, -1_400, at(2026, 11, day, 20))
    post(engine, number, 9_800, at(2026, 11, 18, 9), kind=TOPUP)
    poll(engine, number, at(2026, 11, 18, 10))
    assert notices(engine, number) == []


def test_a_new_account_is_averaged_over_the_days_it_has(engine):
    number = household(engine, balance_fen=1_500, created_at=at(2026, 11, 15, 16))
    post(engine, number, -1_000, at(2026, 11, 15, 20))  # the first, partial day: not counted
    post(engine, number, -3_000, at(2026, 11, 16, 20))
    post(engine, number, 5_500, at(2026, 11, 17, 9), kind=TOPUP)
    poll(engine, number, at(2026, 11, 18, 10))  # 3,000 fen over 16 and 17 November
    assert account_by_number(engine, number).daily_rate_fen == 1_500
    assert notices(engine, number) == []


def test_the_exhausted_notice_goes_once_per_episode_and_replaces_low_balance_ones(engine):
    number = household(engine, balance_fen=-100, created_at=CREATED)
    for days in range(4):
        poll(engine, number, at(2026, 11, 18, 10) + dt.timedelta(days=days, minutes=1))
    assert notices(engine, number) == [(BALANCE_EXHAUSTED, -100)]
