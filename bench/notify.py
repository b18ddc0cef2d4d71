"""Notify storm: 50 concurrent senders post valid payment notifications (10 % of them
duplicates) for distinct orders, on SQLite and on PostgreSQL: 10,000 each (9,000 orders), about
70 s in all on 2 cores; BENCH_NOTIFICATIONS sets another number.

The system runs as an operator runs it: on a fresh SQLite file, `feikong run` (web and worker
in one process) as a subprocess; on a throwaway PostgreSQL cluster of its own
(`bench.common.throwaway_postgres`, the tests' one too), `feikong serve --processes N` (N = the
machine's cores; BENCH_PG_PROCESSES) — the meter worker, a process of its own on PostgreSQL, has
nothing to do here and is not started.

This process plays the providers: half the orders are Alipay's, half WeChat Pay's; their
notifications are signed beforehand by the sandboxes with the local keys the server loads (two
processes, not measured; WeChat's timestamps 4 minutes ahead, so that the pre-signed stream
stays inside WeChat's ±5-minute window through a slow run), then posted by 50 senders, each on
its own keep-alive connection, on one asyncio loop (the request bytes built beforehand): every
order's notification once and 1,000 of them a second time, in one shuffled stream. The senders
share the machine's cores with the server.
The 900 accounts have no meters: no restore is queued and the worker stays idle. What the
server spends is the notify path (the SDK's verification, `confirm_paid` in the notify desk's
batched transactions, `app.orders.desk`, the ack) and, as an operator runs it, the message
jobs turning each payment's notice into a message to its resident (nobody is reachable here:
a skipped message row each; in December 2026 more than half of the CPU per notification, and
they end the storm far behind: `notify_messages_lag_<db>`).
FEIKONG_MESSAGE_JOBS_EVERY_S=0 in the environment leaves them out: the notify path alone.

Prints, for `sqlite` and `pg`:
    notify_credits_per_s_<db>: credits per second (9,000 credits / first send to last ack)
    notify_ack_p50_ms_<db>, notify_ack_p99_ms_<db>: one notification, sent to acknowledged
    notify_server_cpu_per_notification_<db>: the server processes' CPU time per notification,
        from the first send until the acks and, with the message jobs on, until every
        payment's notice has its message (what the figures above cost, whatever else the
        machine is doing; PostgreSQL's own not counted)
    notify_storm_wall_<db>: how long the 10,000 took
    notify_messages_lag_<db>: from the last ack until the message jobs had caught up (only with
        the message jobs on)
and fails unless every notification was acknowledged and the ledger then holds exactly one
top-up per order (every order paid, its amount, nothing refused).

    python -m bench.notify

While working on the path: BENCH_DATABASES=pg (or sqlite) runs one database only;
BENCH_PROFILE=DIR samples the server processes with py-spy (`pip install py-spy` into the venv:
not a project dependency) during each storm and writes DIR/notify-<db>.txt (collapsed stacks,
`--nonblocking`, so the figures move little; `--gil`, the samples of a thread running Python,
not of one waiting for the database) and prints the top functions by own and by inclusive
samples, and the server's CPU per notification split between its event loops (HTTP, the
middleware, the views) and its other threads (the notify desk's batches, the jobs), from
/proc. The samples count a thread that holds the GIL while the machine has no core for it:
on a loaded machine, trust the split and the CPU figures over small percentages.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import func, insert
from sqlmodel import select

from app.db import make_engine, transaction
from app.estate.models import Account, Building, Estate
from app.ledger.models import TOPUP, LedgerEntry
from app.messages.models import Message
from app.migrate import upgrade
from app.notices.models import Notice
from app.orders.models import PAID, Order, RefusedNotification
from app.orders.providers import (ALIPAY_NOTIFY_PATH, SANDBOX_ALIPAY_APP_ID, SANDBOX_KEYS_DIR,
                                  WECHAT_NOTIFY_PATH)
from bench.common import free_ports, start_process, stop_process, throwaway_postgres
from standins.alipay_sandbox import PayRequest, SandboxAlipay, ensure_sandbox_keys
from standins.wechat_pay_sandbox import WechatSandbox, ensure_wechat_sandbox_keys

TOTAL = int(os.environ.get("BENCH_NOTIFICATIONS", "10000"))
ORDERS, DUPLICATES, SENDERS = TOTAL - TOTAL // 10, TOTAL // 10, 50
ACCOUNTS = 900
# On PostgreSQL the web app runs as an operator runs it there, in as many processes as the
# machine has cores (`feikong serve --processes N`); BENCH_PG_PROCESSES sets another number.
PG_PROCESSES = int(os.environ.get("BENCH_PG_PROCESSES", str(os.cpu_count() or 1)))
# WeChat Pay's notifications are refused 300 s either side of their timestamp: the pre-signed
# ones carry a timestamp 240 s ahead, so they stay good for 540 s after signing; a run starting
# more than 240 s after the signing gets a newly signed stream (at least 300 s good).
WECHAT_AHEAD_S = 240
MAX_AGE_S = 240.0
SUBJECT = "电费充值 1-1-101"
DATABASES = os.environ.get("BENCH_DATABASES", "sqlite,pg").split(",")
# The message jobs run as an operator runs them (every 2 s) unless the environment turns them off
MESSAGE_JOBS = float(os.environ.get("FEIKONG_MESSAGE_JOBS_EVERY_S") or "2") > 0
PROFILE_DIR = os.environ.get("BENCH_PROFILE", "")
FORM = {"content-type": "application/x-www-form-urlencoded; charset=utf-8"}

# (out_trade_no, channel, amount_fen)
Spec = tuple[str, str, int]
# (path, headers, body, acknowledgement body)
Request = tuple[str, dict[str, str], bytes, str]


def order_specs() -> list[Spec]:
    rng = random.Random(7)
    return [(f"FKBENCH{i:06d}", "alipay" if i % 2 else "wechat", rng.randrange(1, 50) * 1000)
            for i in range(ORDERS)]


_signers: dict = {}


def _load_signers(keys_dir: str) -> None:
    directory = Path(keys_dir)
    _signers["alipay"] = SandboxAlipay(ensure_sandbox_keys(directory), SANDBOX_ALIPAY_APP_ID)
    _signers["wechat"] = WechatSandbox(ensure_wechat_sandbox_keys(directory))


def _sign(chunk: list[Spec]) -> list[Request]:
    signed = []
    for out_trade_no, channel, amount_fen in chunk:
        if channel == "alipay":
            sandbox = _signers["alipay"]
            form = sandbox.build_notification(PayRequest(
                out_trade_no, amount_fen, SUBJECT, None, None, SANDBOX_ALIPAY_APP_ID))
            signed.append((ALIPAY_NOTIFY_PATH, FORM, sandbox.encode_form(form), "success"))
        else:
            headers, body = _signers["wechat"].build_notification(
                out_trade_no, amount_fen, timestamp=int(time.time()) + WECHAT_AHEAD_S)
            signed.append((WECHAT_NOTIFY_PATH, headers, body, ""))
    return signed


def sign_all(specs: list[Spec], keys_dir: Path) -> list[Request]:
    """Every order's notification, signed in two processes (RSA signing is the slow part)."""
    chunks = [specs[i:i + 250] for i in range(0, len(specs), 250)]
    with concurrent.futures.ProcessPoolExecutor(
            max(2, os.cpu_count() or 2), initializer=_load_signers,
            initargs=(str(keys_dir),)) as pool:
        return [request for part in pool.map(_sign, chunks) for request in part]


def setup_database(database_url: str, specs: list[Spec]) -> None:
    """The schema, 900 accounts and 9,000 pending orders (not measured)."""
    upgrade(database_url)
    engine = make_engine(database_url)
    with transaction(engine) as s:
        estate = Estate(name="bench")
        s.add(estate)
        s.flush()
        building = Building(estate_id=estate.id, name="1")
        s.add(building)
        s.flush()
        accounts = [Account(number=f"B{i:05d}", building_id=building.id, household=f"1-{i}",
                            price_yuan_per_kwh="0.5583") for i in range(ACCOUNTS)]
        s.add_all(accounts)
        s.flush()
        ids = [a.id for a in accounts]
        s.execute(insert(Order), [
            {"out_trade_no": no, "account_id": ids[i % ACCOUNTS], "amount_fen": amount,
             "channel": channel, "status": "pending", "provider_trade_no": ""}
            for i, (no, channel, amount) in enumerate(specs)])
    engine.dispose()


def storm(base_url: str, stream: list[Request]) -> tuple[float, list[float]]:
    """Post `stream` from SENDERS keep-alive connections, each sending its next request as soon
    as the previous one is answered (no pipelining): one asyncio loop in this process, with the
    requests' bytes built before the clock starts, so the senders take as little of the
    machine's CPU as a sender can. (wall seconds, latencies in ms). Raises if any notification
    was not acknowledged with the provider's expected reply."""
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    work = collections.deque(
        (_request_bytes(host, port, path, headers, body), ack)
        for path, headers, body, ack in stream)
    latencies: list[float] = []
    failures: list[str] = []

    async def sender(go: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            await _response(reader)  # connected before the clock starts
            await go.wait()
            while work:
                request, ack = work.popleft()
                t0 = time.perf_counter()
                writer.write(request)
                status, text = await _response(reader)
                latencies.append((time.perf_counter() - t0) * 1000)
                if status != 200 or text != ack:
                    failures.append(f"{status} {text[:80]}")
        finally:
            writer.close()

    async def main() -> float:
        go = asyncio.Event()
        tasks = [asyncio.create_task(sender(go)) for _ in range(SENDERS)]
        await asyncio.sleep(0.5)  # every connection made and warmed
        t0 = time.perf_counter()
        go.set()
        await asyncio.gather(*tasks)
        return time.perf_counter() - t0

    wall = asyncio.run(main())
    if failures or len(latencies) != len(stream):
        raise RuntimeError(f"{len(failures)} notifications not acknowledged, "
                           f"{len(stream) - len(latencies)} not sent; {failures[:1]}")
    return wall, sorted(latencies)


def _request_bytes(host: str, port: int, path: str, headers: dict[str, str],
                   body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


async def _response(reader: asyncio.StreamReader) -> tuple[int, str]:
    """One HTTP/1.1 response with a Content-Length (what uvicorn sends): (status, body)."""
    status = int((await reader.readline()).split(b" ", 2)[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, (await reader.readexactly(length)).decode("utf-8", "replace")


def check_ledger(database_url: str, specs: list[Spec]) -> None:
    """Exactly one top-up per order, of its amount; every order paid; nothing refused."""
    engine = make_engine(database_url)
    with transaction(engine, read_only=True) as s:
        topups = s.exec(select(LedgerEntry.idempotency_key, LedgerEntry.amount_fen)
                        .where(LedgerEntry.kind == TOPUP)).all()
        paid = s.exec(select(func.count()).select_from(Order).where(Order.status == PAID)).one()
        refused = s.exec(select(func.count()).select_from(RefusedNotification)).one()
    engine.dispose()
    expected = sorted((f"order:{no}", amount) for no, _channel, amount in specs)
    if sorted(topups) != expected or paid != len(specs) or refused:
        raise RuntimeError(f"ledger check failed: {len(topups)} top-ups for {len(specs)} orders, "
                           f"{paid} paid, {refused} refused")


def run(name: str, database_url: str, workdir: Path, specs: list[Spec],
        stream: list[Request], command: list[str]) -> dict[str, float]:
    setup_database(database_url, specs)
    port = free_ports(1)
    base_url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, FEIKONG_DATABASE_URL=database_url, FEIKONG_VAR_DIR=str(workdir),
               FEIKONG_WEB_PORT=str(port), FEIKONG_PUBLIC_URL=base_url,
               FEIKONG_POLL_INTERVAL_S="3600")
    system = start_process([sys.executable, "-m", "app.cli", *command], env, "serving on",
                           workdir / f"system-{name}.log")
    try:
        spy = start_profile(name, system.pid) if PROFILE_DIR else None
        threads_before = thread_cpu_seconds(system.pid)
        cpu_before = tree_cpu_seconds(system.pid)
        wall, latencies = storm(base_url, stream)
        lag = messages_caught_up(database_url) if MESSAGE_JOBS else None
        cpu = tree_cpu_seconds(system.pid) - cpu_before
        if spy is not None:
            stop_profile(name, spy)
            split = collections.Counter()
            for (kind, tid), seconds in thread_cpu_seconds(system.pid).items():
                split[kind] += seconds - threads_before.get((kind, tid), 0.0)
            print(f"profile {name}: server CPU per notification, event loops "
                  f"{split['loop'] * 1000 / len(stream):.3f} ms, other threads (the notify "
                  f"desk's, the jobs') {split['thread'] * 1000 / len(stream):.3f} ms")
    finally:
        stop_process(system)
    check_ledger(database_url, specs)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return {"credits_per_s": len(specs) / wall, "p50": statistics.median(latencies), "p99": p99,
            "cpu_ms": cpu * 1000 / len(stream), "wall_s": wall, "messages_lag_s": lag}


def messages_caught_up(database_url: str, limit_s: float = 300.0) -> float:
    """Seconds from the last acknowledgement until the message jobs have made the message of
    every notice the storm wrote (a payment's notice each): the CPU they spend on it is the
    storm's too, so it is counted until then, not only while the storm lasted (a quick storm
    left most of it uncounted)."""
    engine = make_engine(database_url)
    started = time.perf_counter()
    try:
        while True:
            with transaction(engine, read_only=True) as s:
                notices = s.exec(select(func.count()).select_from(Notice)).one()
                handled = s.exec(select(func.count(Message.notice_id.distinct()))).one()
            if handled >= notices:
                return time.perf_counter() - started
            if time.perf_counter() - started > limit_s:
                raise RuntimeError(f"the message jobs made messages for {handled} of {notices} "
                                   f"notices in {limit_s:.0f} s")
            time.sleep(0.1)
    finally:
        engine.dispose()


def start_profile(name: str, pid: int) -> subprocess.Popen:
    """py-spy sampling `pid` and its children (BENCH_PROFILE) until `stop_profile`."""
    spy = Path(sys.executable).with_name("py-spy")
    out = Path(PROFILE_DIR) / f"notify-{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([str(spy), "record", "--pid", str(pid), "--subprocesses",
                             "--nonblocking", "--gil", "--format", "raw", "--rate", "200", "--output",
                             str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the storm
    return proc


def stop_profile(name: str, proc: subprocess.Popen, top: int = 25) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(30)
    own: collections.Counter = collections.Counter()
    inclusive: collections.Counter = collections.Counter()
    total = 0
    for line in (Path(PROFILE_DIR) / f"notify-{name}.txt").read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")[1:]  # the process, then its frames outermost first
        n = int(count)
        total += n
        if frames:
            own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"profile {name}: {total} samples; own, then inclusive (% of samples)")
    for title, counter in (("own", own), ("inclusive", inclusive)):
        for frame, n in counter.most_common(top):
            print(f"  {title:9} {100 * n / max(total, 1):5.1f}  {frame}")


def thread_cpu_seconds(pid: int) -> dict[tuple[str, int], float]:
    """CPU seconds of every thread of a process and its children, by ("loop", tid) for a
    process's main thread (its event loop) and ("thread", tid) for the others."""
    found = {}
    for process in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        for task in Path(f"/proc/{process}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # ended meanwhile
                continue
            kind = "loop" if int(task.name) == process else "thread"
            found[(kind, int(task.name))] = ((int(fields[11]) + int(fields[12]))
                                             / os.sysconf("SC_CLK_TCK"))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, in seconds (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of a process and its child processes (the web processes of `serve
    --processes N`)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(cpu_seconds(int(child)) for child in children)


class Stream:
    """The shuffled notifications, signed once; signed again if they could go stale for WeChat
    Pay's five-minute timestamp check during a run (a slow machine)."""

    def __init__(self, specs: list[Spec], keys_dir: Path) -> None:
        self.specs, self.keys_dir = specs, keys_dir
        self._sign()

    def _sign(self) -> None:
        requests = sign_all(self.specs, self.keys_dir)
        rng = random.Random(11)
        self.requests = requests + rng.sample(requests, DUPLICATES)
        rng.shuffle(self.requests)
        self.signed_at = time.monotonic()

    def fresh(self) -> list[Request]:
        if time.monotonic() - self.signed_at > MAX_AGE_S:
            self._sign()
        return self.requests


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="feikong-bench-notify-"))
    try:
        specs = order_specs()
        stream = Stream(specs, workdir / SANDBOX_KEYS_DIR)
        results = {}
        if "sqlite" in DATABASES:
            results["sqlite"] = run("sqlite", f"sqlite:///{workdir / 'bench.db'}", workdir,
                                    specs, stream.fresh(), ["run"])
        if "pg" in DATABASES:
            with throwaway_postgres() as server:
                import psycopg

                with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
                    conn.execute("CREATE DATABASE bench")
                results["pg"] = run("pg", f"{server}/bench", workdir, specs, stream.fresh(),
                                    ["serve", "--processes", str(PG_PROCESSES)])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for db, r in results.items():
        print(f"notify_credits_per_s_{db}: {r['credits_per_s']:.0f} credits/s")
        print(f"notify_ack_p50_ms_{db}: {r['p50']:.1f} ms")
        print(f"notify_ack_p99_ms_{db}: {r['p99']:.1f} ms")
        print(f"notify_server_cpu_per_notification_{db}: {r['cpu_ms']:.2f} ms")
        print(f"notify_storm_wall_{db}: {r['wall_s']:.1f} s")
        if r["messages_lag_s"] is not None:
            print(f"notify_messages_lag_{db}: {r['messages_lag_s']:.1f} s")
    print(f"notify_ledger_check: one credit per order, {ORDERS} orders, {DUPLICATES} duplicates "
          f"acknowledged, on {' and '.join(results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
