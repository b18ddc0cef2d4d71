"""Fault 3: PostgreSQL stopped (`pg_ctl stop -m fast`) and started again under a steady stream
of notifications, on a cluster of this test's own (restarting the session's would cut every
other test's connections), the app run as an operator runs it (`feikong serve`). While the
database is down each notification gets Alipay's failure reply (not "success", not HTTP 500),
so Alipay sends it again; once it is back, they are credited, each exactly once. Degraded: from
the stop until notifications were acknowledged again."""

import glob
import os
import subprocess
import time

import psycopg
import pytest

from app.db import make_engine
from app.migrate import upgrade
from bench.common import throwaway_postgres
from tests.conftest import USE_POSTGRES, wait_until
from tests.faults.figures import audit
from tests.faults.storm import Storm, alipay_signer, make_orders, serve

pytestmark = pytest.mark.skipif(not USE_POSTGRES, reason="a PostgreSQL restart: PostgreSQL only")


def pg_ctl(data_dir: str, *args: str) -> None:
    """Debian's pg_ctl on the cluster in `data_dir` (as `postgres` when we are root, as
    `bench.common.throwaway_postgres` runs it), its log where that helper keeps it."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    sudo = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    log = os.path.join(os.path.dirname(data_dir), "log")
    subprocess.run(sudo + [f"{bins[-1]}/pg_ctl", "-D", data_dir, "-l", log, "-w", *args],
                   check=True, capture_output=True, timeout=60)


def test_postgres_restarted_under_notifications(tmp_path, fault_report):
    with throwaway_postgres(max_connections=60) as cluster:
        with psycopg.connect(f"{cluster}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE feikong")
            data_dir = conn.execute("SHOW data_directory").fetchone()[0]
        url = f"{cluster}/feikong"
        upgrade(url)
        engine = make_engine(url)
        try:
            orders = make_orders(engine, 2000)  # more than the stream will take
            engine.dispose()
            server = serve(url, tmp_path)
            try:
                storm = Storm(server.base_url, alipay_signer(tmp_path), orders, threads=8)
                storm.start()
                wait_until(lambda: storm.acked >= 60 or storm.errors, timeout=60,
                           message="the notifications did not get going")
                pg_ctl(data_dir, "-m", "fast", "stop")
                down_at, acked_at_stop = time.monotonic(), storm.acked
                # down until every sender has had a failure reply, at least 16 in all
                wait_until(lambda: len(storm.failures(down_at)) >= 16
                           and len({a.out_trade_no for a in storm.failures(down_at)}) >= 8
                           or storm.errors, timeout=30,
                           message="no failure replies while the database was down")
                pg_ctl(data_dir, "restart")  # started again (with the options it had)
                up_at = time.monotonic()
                at_up = storm.acked
                wait_until(lambda: storm.acked >= at_up + 60 or storm.took_all()
                           or storm.errors, timeout=60,
                           message=lambda: f"not credited after the restart: {server.tail()}")
                storm.stop_taking()
                storm.join(120)
                still_serving = server.proc.poll() is None
            finally:
                code = server.stop()
            degraded_s = storm.degraded_since(down_at)
            failed = storm.failures(down_at)
            replies = sorted({a.what for a in failed})
            loss = audit(engine, storm.paid)
            fault_report("PostgreSQL stopped and started under notifications", loss, degraded_s,
                         f"down {up_at - down_at:.1f} s (stopped with {acked_at_stop} "
                         f"orders acknowledged), acknowledged again "
                         f"{degraded_s - (up_at - down_at):.2f} s after it was back; "
                         f"{len(failed)} notifications answered {' / '.join(replies)} and sent "
                         "again; "
                         f"{len(storm.paid)} orders paid")
        finally:
            engine.dispose()
    assert loss.nothing(), loss
    assert replies == ["200 failure"], replies  # Alipay's failure reply: it retries
    assert still_serving, server.tail()
    assert code == 0, server.tail()
    assert degraded_s < 45  # a sanity bound, not a timing test
