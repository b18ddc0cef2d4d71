"""`feikong tariff add | list | assign`, run as a manager runs it on the real database: the
tariff it stores is the one the next charge is priced by; anything wrong is refused with a
message and changes nothing."""

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from app.billing.services import post_consumption
from app.db import transaction
from app.estate.models import Account, Meter
from app.tariffs.models import StoredTariff, StoredTariffVersion
from tests.factories import EstateFactory, account_by_number, entries_of

EXAMPLES = Path(__file__).parent / "examples"
ROOT = Path(__file__).parents[2]
UTC = dt.timezone.utc


@pytest.fixture
def tariff(settings, tmp_path):
    env = dict(os.environ, FEIKONG_DATABASE_URL=settings.database_url,
               FEIKONG_VAR_DIR=str(tmp_path))

    def run(*args):
        argv = [str(EXAMPLES / a) if a.endswith(".json") else a for a in args]
        return subprocess.run([sys.executable, "-m", "app.cli", "tariff", *argv], cwd=ROOT,
                              env=env, text=True, capture_output=True, timeout=60)
    return run


@pytest.fixture
def two_accounts(engine):
    estate = EstateFactory(engine)
    gw = estate.gateway("127.0.0.1", 1)
    return estate, [estate.account(gateway_id=gw, unit_id=u) for u in (1, 2)]


def versions(engine):
    with transaction(engine, read_only=True) as s:
        return s.exec(select(StoredTariff.name, StoredTariffVersion.effective_from)
                      .join(StoredTariffVersion)
                      .order_by(StoredTariffVersion.effective_from)).all()


def test_a_tariff_added_and_assigned_prices_the_next_charge(engine, tariff, two_accounts):
    _, (first, second) = two_accounts
    done = tariff("add", "北京居民", "--file", "beijing_tiered.json", "--from", "2026-01-01")
    assert done.returncode == 0, done.stderr
    assert "added, in effect from 2026-01-01" in done.stdout
    done = tariff("assign", "北京居民", "--account", first)
    assert done.returncode == 0 and "1 accounts now on 北京居民" in done.stdout, done.stderr
    listed = tariff("list").stdout
    assert "北京居民" in listed and "1 accounts" in listed and "from 2026-01-01: tiered" in listed

    with transaction(engine) as s:  # 300 kWh from a fresh cycle, as the worker charges it
        account = s.exec(select(Account).where(Account.number == first)).one()
        meter = s.exec(select(Meter).where(Meter.account_id == account.id)).one()
        fen = post_consumption(s, meter, account, 300_000, interval="0:300000",
                               start_at=dt.datetime(2026, 11, 1, 1, tzinfo=UTC),
                               end_at=dt.datetime(2026, 11, 1, 2, tzinfo=UTC))
    assert fen == 14949  # 240 × 0.4883 + 60 × 0.5383 = 149.49 元
    assert [e.amount_fen for e in entries_of(engine, first, "charge")] == [-14949]
    assert account_by_number(engine, second).tariff_id is None  # the other stays flat


def test_a_new_version_and_a_building_wide_assignment(engine, tariff, two_accounts):
    estate, numbers = two_accounts
    assert tariff("add", "浙江", "--file", "zhejiang_tiered_tou.json", "--from",
                  "2026-01-01").returncode == 0
    done = tariff("add", "浙江", "--file", "zhejiang_tiered_tou.json", "--from", "2026-07-01")
    assert done.returncode == 0 and "new version in effect from 2026-07-01" in done.stdout
    assert versions(engine) == [("浙江", dt.date(2026, 1, 1)), ("浙江", dt.date(2026, 7, 1))]
    done = tariff("assign", "浙江", "--building", str(estate.building_id), "--uplift")
    assert done.returncode == 0 and "2 accounts now on 浙江" in done.stdout, done.stderr
    assert all(account_by_number(engine, n).tariff_uplift for n in numbers)
    assert tariff("assign", "flat", "--account", numbers[0]).returncode == 0
    assert account_by_number(engine, numbers[0]).tariff_id is None


@pytest.mark.parametrize("args, message", [
    (("add", "坏", "--file", "bad_overlap.json"), "periods"),
    (("add", "坏", "--file", "bad_not_json.json"), "JSON"),
    (("add", "坏", "--file", "no_such_file.json"), "cannot read"),
    (("add", "坏", "--file", "flat.json", "--from", "2026-13-01"), "--from"),
    (("assign", "无此电价", "--account", "X"), "no tariff"),
])
def test_bad_requests_are_refused_and_change_nothing(engine, tariff, args, message):
    done = tariff(*args)
    assert done.returncode == 2
    assert message in done.stderr, done.stderr
    assert versions(engine) == []


def test_a_second_version_on_the_same_date_or_an_unknown_account_is_refused(engine, tariff,
                                                                           two_accounts):
    assert tariff("add", "平价", "--file", "flat.json", "--from", "2026-01-01").returncode == 0
    again = tariff("add", "平价", "--file", "flat.json", "--from", "2026-01-01")
    assert again.returncode == 2 and "never edited" in again.stderr
    _, (first, _second) = two_accounts
    done = tariff("assign", "平价", "--account", first, "--account", "NOSUCH")
    assert done.returncode == 2 and "no account NOSUCH" in done.stderr
    assert account_by_number(engine, first).tariff_id is None  # nothing half done
    assert versions(engine) == [("平价", dt.date(2026, 1, 1))]
