"""Running parts of the system in one process: the web server as an asyncio task, and an
event loop in a background thread (tests and benches drive the system from their own thread)."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn


def make_web_server(app, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for `app` that leaves signals to its caller; run it with `.serve()`."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="off"))
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


async def run_web_and_worker(settings, engine, announce=None) -> None:
    """Serve the web app and run the worker in this loop until SIGINT/SIGTERM or until either
    stops; then stop both. One process, so a payment wakes the worker through an asyncio event."""
    import contextlib
    import signal

    from app.main import create_app
    from meters.worker import Worker

    server = make_web_server(create_app(settings, engine), settings.web_host, settings.web_port)
    worker_task = asyncio.create_task(Worker(engine, settings).run(), name="worker")
    web_task = asyncio.create_task(server.serve(), name="web")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    while not server.started and not web_task.done():
        await asyncio.sleep(0.01)
    if announce and server.started:
        announce()
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({stop_task, worker_task, web_task}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    for task in (worker_task, stop_task):
        task.cancel()
    for task in (worker_task, web_task):
        with contextlib.suppress(asyncio.CancelledError):
            await task
