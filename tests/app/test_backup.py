"""`feikong backup` while the books are being written, then `feikong restore` into a fresh
database: every ledger entry and order committed before the backup began is there, the copy is
one moment's (every kept balance agrees with its ledger), and a restore never overwrites books."""

from __future__ import annotations

import threading
import time
import uuid

import sqlalchemy as sa

from app.cli import main as feikong
from app.db import make_engine, transaction
from app.estate.models import Account
from app.ledger.services import post_entry
from app.orders.models import Order
from app.settings import get_settings, use_settings
from tests.conftest import USE_POSTGRES


def _write_hard(engine, account_id: int, stop: threading.Event, written: list[str]) -> None:
    """Top-ups (an order and its ledger entry, one transaction each) as fast as they go."""
    n = 0
    while not stop.is_set():
        n += 1
        key = f"load:{n}"
        with transaction(engine) as s:
            s.add(Order(out_trade_no=f"FKLOAD{n:08d}", account_id=account_id, amount_fen=100,
                        channel="alipay", status="paid"))
            post_entry(s, account_id=account_id, amount_fen=100, kind="topup",
                       idempotency_key=key)
        written.append(key)


def _fresh_url(tmp_path) -> str:
    if not USE_POSTGRES:
        return f"sqlite:///{tmp_path / 'restored.db'}"
    import psycopg

    server = get_settings().database_url.rsplit("/", 1)[0]
    name = "r_" + uuid.uuid4().hex[:12]
    libpq = sa.engine.make_url(server + "/postgres").set(drivername="postgresql")
    with psycopg.connect(libpq.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def test_backup_under_write_load_then_restore(engine, settings, cut_account, tmp_path, capsys):
    with transaction(engine, read_only=True) as s:
        account_id = s.execute(sa.select(Account.id).where(Account.number == cut_account)).scalar()
    stop, written = threading.Event(), []
    writer = threading.Thread(target=_write_hard, args=(engine, account_id, stop, written))
    writer.start()
    try:
        while len(written) < 20:
            time.sleep(0.01)
        before = list(written)
        assert feikong(["backup", str(tmp_path / "feikong.backup")]) == 0
        assert "backed up to" in capsys.readouterr().out
    finally:
        stop.set()
        writer.join()
    assert len(written) > len(before)  # the books were written during the backup
    fresh = _fresh_url(tmp_path)
    use_settings(settings.model_copy(update={"database_url": fresh}))
    try:
        assert feikong(["restore", str(tmp_path / "feikong.backup")]) == 0
        assert "every balance agrees with its ledger" in capsys.readouterr().out
        restored = make_engine(fresh)
        with transaction(restored, read_only=True) as s:
            keys = set(s.execute(sa.text("SELECT idempotency_key FROM ledger_entry")).scalars())
            orders = s.execute(sa.text("SELECT count(*) FROM pay_order")).scalar()
        assert set(before) <= keys  # everything committed before the backup began
        assert orders == len([k for k in keys if k.startswith("load:")])  # one moment's copy
        # a restore never goes over books that exist
        assert feikong(["restore", str(tmp_path / "feikong.backup")]) == 1
        assert "never over books" in capsys.readouterr().err
        restored.dispose()
    finally:
        use_settings(settings)
    assert feikong(["backup", str(tmp_path / "feikong.backup")]) == 1  # never overwritten
