"""What the notification faults share: pending orders made in the database, `feikong serve` as
a process of its own, and a storm of signed Alipay notifications from many threads, each one
sent again, as Alipay does, until it is acknowledged with "success"."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import insert

from app.db import transaction
from app.estate.models import Account, Building, Estate
from app.orders.models import PENDING, Order
from app.orders.providers import SANDBOX_ALIPAY_APP_ID
from bench.common import free_ports
from standins.alipay_sandbox import PayRequest, SandboxAlipay, ensure_sandbox_keys
from standins.paths import SANDBOX_KEYS_DIR
from tests.conftest import wait_until
from tests.payflow import NOTIFY

FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}


def make_orders(engine, count: int, accounts: int = 40) -> dict[str, int]:
    """`count` pending Alipay orders spread over `accounts` accounts without meters (no restore
    to queue: the notify path alone); out_trade_no → fen."""
    rng = random.Random(17)
    with transaction(engine) as s:
        estate = Estate(name="故障小区")
        s.add(estate)
        s.flush()
        building = Building(estate_id=estate.id, name="1号楼")
        s.add(building)
        s.flush()
        rows = [Account(number=f"F{i:05d}", building_id=building.id, household=f"1-1-{i}",
                        price_yuan_per_kwh="0.5583") for i in range(accounts)]
        s.add_all(rows)
        s.flush()
        orders = {f"FKFAULT{i:06d}": rng.randrange(1, 50) * 100 for i in range(count)}
        s.execute(insert(Order), [
            {"out_trade_no": no, "account_id": rows[i % accounts].id, "amount_fen": fen,
             "channel": "alipay", "status": PENDING, "provider_trade_no": ""}
            for i, (no, fen) in enumerate(orders.items())])
    return orders


def alipay_signer(var_dir: Path) -> SandboxAlipay:
    """The sandbox Alipay with the keys a server on `var_dir` loads (made here if new)."""
    return SandboxAlipay(ensure_sandbox_keys(var_dir / SANDBOX_KEYS_DIR), SANDBOX_ALIPAY_APP_ID)


@dataclass
class Server:
    proc: subprocess.Popen
    base_url: str
    log: Path

    def children(self) -> list[int]:
        """Its web processes (`serve --processes N`), as the kernel lists them."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        return [int(pid) for pid in path.read_text().split()]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise
        return self.proc.returncode


def serve(database_url: str, var_dir: Path, *args: str, **env: str) -> Server:
    """`feikong serve [args]` on `database_url`, as an operator runs it; returns once it says it
    serves."""
    port = free_ports(1)
    base_url = f"http://127.0.0.1:{port}"
    environ = dict(os.environ, FEIKONG_DATABASE_URL=database_url, FEIKONG_VAR_DIR=str(var_dir),
                   FEIKONG_WEB_PORT=str(port), FEIKONG_PUBLIC_URL=base_url, **env)
    log = var_dir / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", *args], env=environ,
                                stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, base_url, log)
    try:
        wait_until(lambda: "serving on" in log.read_text() or proc.poll() is not None,
                   timeout=60, message=lambda: f"serve did not start: {server.tail()}")
        assert proc.poll() is None, server.tail()
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class Attempt:
    at: float  # time.monotonic() when its answer (or error) came
    out_trade_no: str
    ok: bool
    what: str  # "200 success", "200 failure", "ConnectError", …


@dataclass
class Storm:
    """Threads notifying the orders in turn, each notification sent until acknowledged (a
    short back-off between tries: Alipay's schedule, compressed), every tenth sent a second
    time once acknowledged (a duplicate, which must be acknowledged too). They take orders
    until `stop_taking()`; `paid` is what they took: what the provider was paid."""

    base_url: str
    signer: SandboxAlipay
    orders: dict[str, int]
    threads: int = 20
    give_up_s: float = 90.0  # a notification unacknowledged this long fails the storm
    attempts: list[Attempt] = field(default_factory=list)
    paid: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self):
        self._todo = list(self.orders.items())[::-1]
        self._lock = threading.Lock()
        self._taking = True
        self._acked = 0
        self._workers = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.threads)]

    def start(self) -> Storm:
        for worker in self._workers:
            worker.start()
        return self

    def stop_taking(self) -> None:
        self._taking = False

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        assert not any(w.is_alive() for w in self._workers), "the senders did not finish"
        assert not self.errors, self.errors[:3]

    @property
    def acked(self) -> int:
        return self._acked

    def took_all(self) -> bool:
        return not self._todo

    def failures(self, since: float = 0.0) -> list[Attempt]:
        with self._lock:
            return [a for a in self.attempts if not a.ok and a.at >= since]

    def degraded_since(self, fault_at: float) -> float:
        """Seconds from `fault_at` until notifications succeeded again: to the first
        acknowledgement after the last failure (0 if none failed)."""
        with self._lock:
            failed = [a.at for a in self.attempts if not a.ok and a.at >= fault_at]
            if not failed:
                return 0.0
            last = max(failed)
            return min(a.at for a in self.attempts if a.ok and a.at > last) - fault_at

    def _take(self) -> tuple[str, int] | None:
        with self._lock:
            if not self._taking or not self._todo:
                return None
            no, fen = self._todo.pop()
            self.paid[no] = fen
            return no, fen

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self.base_url, timeout=10) as client:
                while (item := self._take()) is not None:
                    no, fen = item
                    body = self.signer.encode_form(self.signer.build_notification(
                        PayRequest(no, fen, "电费充值", None, None, SANDBOX_ALIPAY_APP_ID)))
                    for _copy in range(2 if int(no[-1]) == 0 else 1):
                        self._until_acknowledged(client, no, body)
                    with self._lock:
                        self._acked += 1
        except Exception as exc:  # noqa: BLE001 - reported by join()
            self.errors.append(repr(exc))

    def _until_acknowledged(self, client: httpx.Client, no: str, body: bytes) -> None:
        give_up = time.monotonic() + self.give_up_s
        pause = 0.05
        while True:
            try:
                reply = client.post(NOTIFY, content=body, headers=FORM)
                what = f"{reply.status_code} {reply.text[:40]}"
                ok = reply.status_code == 200 and reply.text == "success"
            except httpx.HTTPError as exc:
                what, ok = type(exc).__name__, False
            with self._lock:
                self.attempts.append(Attempt(time.monotonic(), no, ok, what))
            if ok:
                return
            if time.monotonic() > give_up:
                raise RuntimeError(f"{no} not acknowledged within {self.give_up_s} s: {what}")
            time.sleep(pause)  # Alipay's back-off between tries, compressed
            pause = min(pause * 2, 0.5)
