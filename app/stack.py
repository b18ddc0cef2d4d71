"""Running parts of the system in one process: the web server as an asyncio task, and an
event loop in a background thread (tests and benches drive the system from their own thread)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import threading
import time

import uvicorn

from payments.serving import tcp_listener

log = logging.getLogger(__name__)

def make_web_server(app, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for `app` that leaves signals to its caller; run it with `.serve()`."""
    # log_config=None: uvicorn's records go to the root handler (app/logs.py), structured.
    # proxy_headers=False: uvicorn would believe X-Forwarded-For from 127.0.0.1 by default;
    # FEIKONG_TRUSTED_PROXIES alone decides (app/web/ratelimit.py: client_address).
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="off", log_config=None,
                                           proxy_headers=False))
    server.install_signal_handlers = lambda: None
    return server


class LoopThread:
    """An asyncio loop running in a daemon thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 30.0):
        """Run `coro` on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro):
        """Start `coro` on the loop without waiting."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def serve_web(self, app, host: str, port: int, timeout: float = 10.0) -> uvicorn.Server:
        server = make_web_server(app, host, port)
        self.spawn(server.serve())
        deadline = time.monotonic() + timeout
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError(f"web server did not start on {host}:{port}")
            time.sleep(0.01)
        return server

    def close(self):
        async def cancel_all():
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


async def run_system(settings, engine, *, worker: bool = True, announce=None,
                     sock: socket.socket | None = None) -> None:
    """Serve the web app, run the order jobs (lost notifications queried, expired orders
    closed, refunds followed, yesterday reconciled: `app.orders.jobs`), the billing jobs
    (charges of past hours, common-area shares, the daily balance check, old raw readings
    dropped: `app.billing.jobs`), the message jobs (notices to WeChat and SMS messages, sent
    and retried: `app.messages.jobs`; `message_jobs_every_s`), the batch jobs (imports, large
    exports, bulk work: `app.batch.runner`; `batch_jobs_every_s`) and, with `worker`, the
    meter worker, all in this loop, until SIGINT/SIGTERM or until one of them stops; then stop
    them all. One process, so a payment wakes the worker through an asyncio event. The order
    jobs use the web app's own providers (in the sandbox, the stand-ins keep their records
    there); `settings.order_jobs_every_s` (`billing_jobs_every_s`) = 0 leaves them to another
    process. `sock`: a listening socket to serve on (shared by `serve_processes`), instead of
    binding `settings.web_host`:`web_port`."""
    import contextlib
    import signal

    from app.billing.jobs import run_billing_jobs
    from app.main import create_app
    from app.orders.jobs import run_order_jobs
    from meters.worker import Worker

    app = create_app(settings, engine)
    server = make_web_server(app, settings.web_host, settings.web_port)
    web_task = asyncio.create_task(server.serve(sockets=[sock] if sock else None), name="web")
    tasks = {web_task}
    if worker:
        tasks.add(asyncio.create_task(Worker(engine, settings).run(), name="worker"))
    if settings.order_jobs_every_s > 0:
        tasks.add(asyncio.create_task(run_order_jobs(
            engine, settings, app.state.providers, every_s=settings.order_jobs_every_s),
            name="order-jobs"))
    if settings.billing_jobs_every_s > 0:
        tasks.add(asyncio.create_task(run_billing_jobs(
            engine, every_s=settings.billing_jobs_every_s,
            retention_days=settings.reading_retention_days), name="billing-jobs"))
    if settings.message_jobs_every_s > 0:  # the web app's messengers (in the sandbox, pointed
        from app.messages.jobs import run_message_jobs  # at its own stand-ins)

        tasks.add(asyncio.create_task(run_message_jobs(
            engine, settings, app.state.messengers, every_s=settings.message_jobs_every_s),
            name="message-jobs"))
    if settings.batch_jobs_every_s > 0:  # imports, large exports, bulk work (app/batch)
        from app.batch.runner import run_batch_jobs

        tasks.add(asyncio.create_task(run_batch_jobs(
            engine, settings, every_s=settings.batch_jobs_every_s), name="batch-jobs"))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not server.started and not web_task.done():
        await asyncio.sleep(0.01)
    # What start-up made (modules, the app, its statements) lives as long as the process: out
    # of the collector's sight, a full collection no longer walks it. Under a notify storm
    # those collections stalled a whole web process for 50-100 ms every few seconds
    # (bench.notify on PostgreSQL: p99 104 → 57 ms).
    gc.freeze()
    if announce and server.started:
        announce()
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait(tasks | {stop_task}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    for task in tasks | {stop_task}:
        if task is not web_task:
            task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def serve_processes(settings, processes: int, announce=None) -> int:
    """`feikong serve --processes N`: the web app in N processes on one port, so one machine's
    cores all serve; PostgreSQL only. Each process listens on a socket of its own
    (SO_REUSEPORT) and the kernel spreads new connections between them: with one shared
    socket, whichever process woke first accepted a whole burst of connections, and kept them
    (keep-alive) while the others idled. The order, billing and message jobs run in the first
    process alone.

    This (parent) process supervises: a child that dies (a crash, the OOM killer, SIGKILL) is
    logged with why and replaced within a second (`RESTART_DELAYS_S` back off a child that
    keeps dying at once); the replacement of the first process takes its jobs, so they always
    run in exactly one live process. SIGINT/SIGTERM to the parent stops them all; returns 0
    when every process stopped cleanly."""
    from app.db import make_engine

    if not settings.database_url.startswith("postgresql"):
        raise ValueError("more than one web process needs PostgreSQL: SQLite takes one writer "
                         "at a time, and one process already keeps it busy")
    # Nobody may be listening there already: a `serve` still running would share the port with
    # us, silently, through SO_REUSEPORT. A plain bind says so (OSError, address in use).
    tcp_listener(settings.web_host, settings.web_port, listen=False).close()
    # Bound, not listening: the port is held (and, if 0, chosen) here, before any fork.
    held = tcp_listener(settings.web_host, settings.web_port, reuse_port=True, listen=False)
    port = held.getsockname()[1]
    # Every process counts its metrics into files here and /metrics adds them up (app/metrics.py):
    # set before any process imports prometheus_client, emptied of a previous run's files.
    metrics_dir = settings.var_dir / "metrics"
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        metrics_dir.mkdir(parents=True, exist_ok=True)
        for old in metrics_dir.glob("*.db"):
            old.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    # Each process says on this pipe when it serves; `announce` comes once all of them do, so
    # that the first connections are spread over every process.
    ready_r, ready_w = os.pipe()

    def spawn(index: int, ready_fd: int | None) -> int:
        pid = os.fork()
        if pid == 0:  # a child: its own socket, engine and event loop
            code = 1
            try:
                signal.signal(signal.SIGINT, signal.SIG_DFL)  # not the parent's `forward`
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                held.close()
                if ready_fd is not None:
                    os.close(ready_r)
                sock = tcp_listener(settings.web_host, port, reuse_port=True)
                jobs_elsewhere = {} if index == 0 else {"order_jobs_every_s": 0,
                                                         "billing_jobs_every_s": 0,
                                                         "message_jobs_every_s": 0,
                                                         "batch_jobs_every_s": 0}
                own = settings.model_copy(update={"web_port": port, **jobs_elsewhere})
                ready = (lambda: os.write(ready_fd, b".")) if ready_fd is not None else None
                asyncio.run(run_system(own, make_engine(own.database_url), worker=False,
                                       announce=ready, sock=sock))
                code = 0
            except BaseException:  # os._exit below would lose it: the supervisor logs the code
                log.exception("web process %d stopped on an error", index)
            finally:
                os._exit(code)
        return pid

    alive = {spawn(index, ready_w): index for index in range(processes)}
    started = {index: time.monotonic() for index in range(processes)}
    os.close(ready_w)
    stopping = False

    def forward(signum, _frame):
        nonlocal stopping
        stopping = True
        for child in alive:
            try:
                os.kill(child, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    serving = 0
    while serving < processes and (chunk := os.read(ready_r, processes)):  # b"": all gone
        serving += len(chunk)
    os.close(ready_r)
    held.close()  # every child has its socket: the port is held by them
    if serving == processes and announce:
        announce()
    codes, quick_deaths = [], {index: 0 for index in range(processes)}
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = alive.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            codes.append(code)
            continue
        why = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
        quick = time.monotonic() - started[index] < 10
        quick_deaths[index] = quick_deaths[index] + 1 if quick else 0
        delay = RESTART_DELAYS_S[min(quick_deaths[index], len(RESTART_DELAYS_S) - 1)]
        log.error("web process %d (pid %d) %s; starting another in %.1f s%s", index, pid, why,
                  delay, " (it runs the order and billing jobs)" if index == 0 else "")
        deadline = time.monotonic() + delay
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        if stopping:
            continue
        started[index] = time.monotonic()
        new = spawn(index, None)
        alive[new] = index
        log.warning("web process %d started again (pid %d)", index, new)
    return 0 if all(code == 0 for code in codes) else 1


# A child dying again within 10 s of its start waits longer each time before it is replaced.
RESTART_DELAYS_S = (0.2, 1.0, 5.0, 30.0)
