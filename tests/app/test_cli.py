"""The console script, run as a newcomer would run it."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlmodel import select

from app.db import make_engine, transaction
from app.estate.models import Account, Gateway
from app.estate.seed import CUT_ACCOUNT
from app.ledger.services import balance_fen
from tests.conftest import USE_POSTGRES


def feikong(*args, env, **kwargs):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], env=env, text=True,
                          capture_output=True, timeout=60, **kwargs)


@pytest.fixture
def env(tmp_path):
    return dict(os.environ, FEIKONG_DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
                FEIKONG_VAR_DIR=str(tmp_path))


@pytest.mark.skipif(USE_POSTGRES, reason="the demo database is SQLite")
def test_db_upgrade_then_seed_creates_the_demo_estate(env):
    assert feikong("db", "upgrade", env=env).returncode == 0
    result = feikong("seed", env=env)
    assert result.returncode == 0 and "demo estate created" in result.stdout
    assert "nothing seeded" in feikong("seed", env=env).stdout  # twice is harmless
    engine = make_engine(env["FEIKONG_DATABASE_URL"])
    with transaction(engine, read_only=True) as s:
        accounts = s.exec(select(Account)).all()
        assert len(accounts) == 60 and len(s.exec(select(Gateway)).all()) == 3
        balances = {a.number: balance_fen(s, a.id) for a in accounts}
    assert balances[CUT_ACCOUNT] == -500
    assert sum(1 for b in balances.values() if 0 < b < 1000) >= 3  # some households are low


@pytest.mark.skipif(USE_POSTGRES, reason="the one-worker rule is SQLite's")
def test_second_worker_on_sqlite_refuses_to_start(env):
    assert feikong("db", "upgrade", env=env).returncode == 0
    first = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        assert first.poll() is None
        second = feikong("worker", env=env)
        assert second.returncode == 1
        assert "one worker is the rule" in second.stderr
    finally:
        first.terminate()
        first.wait(10)


def test_quote_prints_the_exact_charge(env):
    examples = Path(__file__).resolve().parents[1] / "tariffs" / "examples"
    result = feikong("quote", "--tariff", str(examples / "beijing_tiered.json"),
                     "--usage", str(examples / "usage_300.json"), "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert '"charge_fen": 14949' in result.stdout


def test_simulate_takes_its_own_flags(env):
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "simulate", "--gateways", "1",
                             "--meters", "2", "--base-port", "0"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line.startswith("gateway 0: 127.0.0.1:") and "2 meters" in line
    finally:
        proc.terminate()
        proc.wait(10)
