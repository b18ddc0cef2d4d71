"""`feikong demo | run | serve | worker | simulate | db upgrade | seed | quote`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from app.settings import get_settings


def _engine():
    from app.db import make_engine

    return make_engine(get_settings().database_url)


def cmd_db(args) -> int:
    from app.migrate import upgrade

    if args.action != "upgrade":
        print("usage: feikong db upgrade", file=sys.stderr)
        return 2
    upgrade(get_settings().database_url)
    print(f"database at head: {get_settings().database_url}")
    return 0


def cmd_seed(args) -> int:
    from app.estate.seed import seed_demo

    s = get_settings()
    created = seed_demo(_engine(), host=s.sim_host, base_port=s.sim_base_port)
    print("demo estate created" if created else "an estate exists already: nothing seeded")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from app.main import create_app

    s = get_settings()
    uvicorn.run(create_app(s), host=s.web_host, port=s.web_port, log_level="info", lifespan="off")
    return 0


def cmd_run(args) -> int:
    from app.stack import run_web_and_worker

    engine = _engine()
    if not _may_run_worker(engine):
        return 1
    s = get_settings()
    asyncio.run(run_web_and_worker(s, engine, lambda: print(f"serving on {s.base_url}", flush=True)))
    return 0


def cmd_worker(args) -> int:
    from meters.worker import Worker

    engine = _engine()
    if not _may_run_worker(engine):
        return 1
    asyncio.run(Worker(engine, get_settings()).run())
    return 0


def _may_run_worker(engine) -> bool:
    """On SQLite one worker is the rule: a second one says so and does not start."""
    if engine.dialect.name == "sqlite" and not _single_worker_lock():
        print("another worker is running on this SQLite database; on SQLite one worker is the rule",
              file=sys.stderr)
        return False
    return True


def _single_worker_lock() -> bool:
    import fcntl

    s = get_settings()
    s.var_dir.mkdir(parents=True, exist_ok=True)
    handle = open(s.var_dir / "worker.lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    _single_worker_lock.handle = handle  # held for the life of the process
    return True


def cmd_quote(args) -> int:
    from app.tariffs.quote import run

    return run(args)


def cmd_demo(args) -> int:
    from app.demo import run_demo

    return run_demo()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="feikong", description="Feikong prepaid electricity")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="web, worker and a simulated estate together, on SQLite")
    sub.add_parser("serve", help="the web application")
    sub.add_parser("worker", help="the meter worker")
    sub.add_parser("run", help="web and worker in one process (a single machine on SQLite)")
    sub.add_parser("simulate", help="simulated gateways and meters (feikong simulate --help)")
    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade"])
    sub.add_parser("seed", help="create the demo estate")
    from app.tariffs.quote import add_arguments as add_quote_arguments

    add_quote_arguments(sub.add_parser("quote", help="price a usage with a tariff (docs/tariffs.md)"))
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:  # the simulator parses its own flags
        from meters import simulator

        return simulator.main(argv[1:])
    args = parser.parse_args(argv)
    handler = {"demo": cmd_demo, "run": cmd_run, "serve": cmd_serve, "worker": cmd_worker,
               "db": cmd_db, "seed": cmd_seed, "quote": cmd_quote}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
