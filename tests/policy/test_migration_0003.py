"""Migration 0003 on a database that already has estates and accounts: they get the defaults."""

import sqlalchemy as sa
from alembic import command

from app.db import make_engine
from app.migrate import alembic_config, upgrade


def test_existing_estates_and_accounts_get_the_policy_defaults(database_url):
    command.downgrade(alembic_config(database_url), "0002")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO estate (id, name, manager_phone) VALUES (1, '翠苑', '')"))
        conn.execute(sa.text("INSERT INTO building (id, estate_id, name) VALUES (1, 1, '1号楼')"))
        conn.execute(sa.text(
            "INSERT INTO account (number, building_id, household, holder_name, holder_phone,"
            " floor_area_m2, strategy, price_yuan_per_kwh, restore_threshold_fen, cut_below_fen,"
            " created_at) VALUES ('101010', 1, '1-1-101', '', '', '89.5', 'residential',"
            " '0.5583', 0, 0, '2026-11-01 00:00:00')"))
        conn.execute(sa.text("INSERT INTO gateway (id, name, host, port) VALUES (1, 'gw', 'h', 502)"))
        conn.execute(sa.text(  # rows that refer to the altered tables: no table may be rebuilt
            "INSERT INTO meter (account_id, gateway_id, unit_id, online, failures_in_row,"
            " max_power_w, billed_exact_e7, billed_fen) SELECT id, 1, 1, TRUE, 0, 13800, 0, 0"
            " FROM account"))
    upgrade(database_url)
    with engine.connect() as conn:
        estate = conn.execute(sa.text(
            "SELECT quiet_start, quiet_end, holiday_calendar, cut_notice_lead_h,"
            " cut_requires_approval FROM estate")).one()
        account = conn.execute(sa.text(
            "SELECT low_balance_threshold_fen, care_list, exhausted_at, daily_rate_fen,"
            " daily_rate_on FROM account")).one()
    engine.dispose()
    assert tuple(estate) == ("20:00", "08:00", "cn", 24, False)
    assert tuple(account) == (1000, False, None, 0, None)


def test_0003_downgrades_and_upgrades_again(database_url):
    command.downgrade(alembic_config(database_url), "0002")
    upgrade(database_url)
