"""`feikong demo | run | serve | worker | simulate | db upgrade | seed | quote | tariff |
read | reconcile | refund | review | holidays | ledger | manager | import`."""

from __future__ import annotations

import argparse
import asyncio
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
    from app.stack import run_system, serve_processes

    s = get_settings()
    if _refused(s):
        return 2
    if args.processes > 1:
        try:
            return serve_processes(s, args.processes, announce=lambda: print(
                f"serving on {s.base_url} ({args.processes} processes)", flush=True))
        except ValueError as exc:
            print(f"feikong serve: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"feikong serve: cannot listen on {s.web_host}:{s.web_port}: {exc}",
                  file=sys.stderr)
            return 2
    asyncio.run(run_system(s, _engine(), worker=False,
                           announce=lambda: print(f"serving on {s.base_url}", flush=True)))
    return 0


def cmd_run(args) -> int:
    from app.stack import run_system

    if _refused(get_settings()):
        return 2
    engine = _engine()
    if not _may_run_worker(engine):
        return 1
    s = get_settings()
    asyncio.run(run_system(s, engine, announce=lambda: print(f"serving on {s.base_url}",
                                                             flush=True)))
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


def cmd_read(args) -> int:
    """Queue an on-demand read of the account's meters (ahead of the routine poll; the worker
    must be running), wait for it, print what was read."""
    import time

    from sqlmodel import select

    from app.commands.models import PENDING, Command
    from app.commands.services import POWER_OFF, POWER_ON, meters_of, queue_read
    from app.db import transaction
    from app.estate.models import Account

    engine = _engine()
    with transaction(engine) as s:
        account = s.exec(select(Account).where(Account.number == args.account)).first()
        if account is None:
            print(f"feikong read: no account {args.account}", file=sys.stderr)
            return 2
        ids = [queue_read(s, meter, f"feikong read {args.account}").id
               for meter in meters_of(s, account.id)]
    if not ids:
        print(f"feikong read: account {args.account} has no meter", file=sys.stderr)
        return 2
    deadline = time.monotonic() + args.wait
    while True:
        with transaction(engine, read_only=True) as s:
            states = s.exec(select(Command.state).where(Command.id.in_(ids))).all()
            if all(state != PENDING for state in states) or time.monotonic() >= deadline:
                meters = meters_of(s, account.id)
                break
        time.sleep(0.2)
    for meter, state in zip(meters, states):
        relay = {False: f"{POWER_ON} 供电中", True: f"{POWER_OFF} 已停电"}.get(meter.relay_open,
                                                                          "unknown 未知")
        energy = ("?" if meter.last_energy_wh is None
                  else f"{meter.last_energy_wh / 1000:.2f} kWh")
        print(f"{args.account}: meter {meter.id} (unit {meter.unit_id}) {energy}, {relay}, "
              f"read at {meter.last_read_at}; request {state}")
    return 0 if all(state == "done" for state in states) else 1


def cmd_tariff(args) -> int:
    from app.tariffs.admin import run

    return run(args, _engine())


def cmd_reconcile(args) -> int:
    """Download the providers' bills of a day, match them with our books, print the
    differences (kept in `reconcile_difference` for managers). Exit 1 if a bill could not be
    had."""
    import datetime as dt

    from app.orders.providers import build_providers
    from app.orders.reconcile import format_table, reconcile_day, yesterday_in_beijing

    bill_date = dt.date.fromisoformat(args.date) if args.date else yesterday_in_beijing()
    providers = build_providers(get_settings())
    channels = tuple(args.channel) if args.channel else None
    reports = reconcile_day(_engine(), providers, bill_date, channels)
    differences = []
    for r in reports:
        if r.error:
            print(f"{r.channel} {bill_date}: no bill ({r.error})")
        else:
            print(f"{r.channel} {bill_date}: {r.lines} lines, {r.matched} matched, "
                  f"{len(r.differences)} differences")
            differences += r.differences
    if differences:
        print()
        print(format_table(differences))
    return 1 if any(r.error for r in reports) else 0


def cmd_refund(args) -> int:
    """Refund (part of) an account's unspent balance through the providers that took it."""
    from app.money import yuan_str_to_fen
    from app.orders.providers import build_providers
    from app.orders.refunds import RefundRefused, RefundRequest, refund_balance

    if args.reason == "account_closure":  # the whole balance, and the account closed
        if args.amount is not None:
            print("account closure refunds the whole balance: give --all, not an amount",
                  file=sys.stderr)
            return 2
        args.settle, args.account_action, args.reason = "refund", "close", args.note or ""
        return cmd_account(args)
    if (args.amount is None) == (not args.all):
        print("give an amount in yuan, or --all for the whole balance", file=sys.stderr)
        return 2
    try:
        amount_fen = None if args.all else yuan_str_to_fen(args.amount)
    except ValueError as exc:
        print(f"amount: {exc}", file=sys.stderr)
        return 2
    settings = get_settings()
    ask = RefundRequest(args.account, amount_fen, args.reason, args.by, args.note or "")
    try:
        refunds = refund_balance(_engine(), build_providers(settings), settings, ask)
    except RefundRefused as exc:
        print(f"refund refused: {exc}", file=sys.stderr)
        return 1
    for r in refunds:
        print(f"{r.out_refund_no}  {r.channel}  {r.amount_fen / 100:.2f} 元  {r.status}"
              + (f"  ({r.detail})" if r.detail else ""))
    return 0


def cmd_account(args) -> int:
    """`feikong account close | reopen`: 销户 and reopening (app/billing/closing.py), audited."""
    from sqlmodel import select

    from app.billing.closing import ClosingRefused, close_account, reopen_account
    from app.console import audit
    from app.db import transaction
    from app.estate.models import Account, Building
    from app.orders.providers import build_providers
    from app.orders.refunds import submit_refund

    settings, engine = get_settings(), _engine()
    providers = build_providers(settings) if args.account_action == "close" else None
    try:
        with transaction(engine) as s:
            account = s.exec(select(Account).where(Account.number == args.account)).first()
            if account is None:
                print(f"no account {args.account!r}", file=sys.stderr)
                return 1
            estate_id = s.get(Building, account.building_id).estate_id
            if args.account_action == "reopen":
                reopen_account(s, account)
                done, refunds = f"account {args.account} reopened", []
                after = "open"
            else:
                closing = close_account(s, account, by=args.by, reason=args.reason,
                                        settle=args.settle, channels=providers.channels)
                refunds = [r.out_refund_no for r in closing.refunds]
                after = (f"closed ({args.settle}); final charge {closing.final_fen} fen; "
                         f"refunds {', '.join(refunds) or '-'}")
                done = (f"account {args.account} closed: final charge "
                        f"{closing.final_fen / 100:.2f} 元, balance {closing.balance_fen / 100:.2f}"
                        f" 元 {'refunded' if refunds else 'kept on the account'}")
            audit.record(s, None, f"account.{args.account_action}", estate_id=estate_id,
                         object_type="account", object_id=args.account, after=after,
                         reason=f"{args.by}: {args.reason}")
    except ClosingRefused as exc:
        print(f"feikong account {args.account_action}: {exc}", file=sys.stderr)
        return 1
    print(done)
    for out_refund_no in refunds:
        print(f"{out_refund_no}  {submit_refund(engine, providers, settings, out_refund_no)}")
    return 0


def cmd_backup(args) -> int:
    """`feikong backup DEST` / `feikong restore SRC`: app/backup.py (docs/deploy.md)."""
    from pathlib import Path

    from app.backup import BackupError, backup, restore

    url = get_settings().database_url
    try:
        if args.command == "backup":
            held = backup(url, Path(args.dest))
            print(f"backed up to {args.dest}: {held.accounts} accounts, {held.ledger_entries} "
                  f"ledger entries, {held.orders} orders")
        else:
            held = restore(Path(args.src), url)
            print(f"restored {args.src} into {url}: {held.accounts} accounts, "
                  f"{held.ledger_entries} ledger entries, {held.orders} orders; every balance "
                  "agrees with its ledger")
    except BackupError as exc:
        print(f"feikong {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_check(args) -> int:
    """`feikong check`: app/check.py."""
    from app.check import ERROR, check

    findings = check(get_settings())
    for finding in findings:
        print(finding)
    failed = sum(f.level == ERROR for f in findings)
    print(f"{failed} problem{'s' if failed != 1 else ''} to fix before serving" if failed
          else "nothing stops serving")
    return 1 if failed else 0


def _refused(settings) -> bool:
    """serve, run and worker do not start with the sandbox on a public https address."""
    from app.check import refuse_to_serve

    why = refuse_to_serve(settings)
    if why:
        print(f"feikong: not serving: {why}", file=sys.stderr)
    return why is not None


def cmd_review(args) -> int:
    """What waits for a manager (`app.anomalies.review`), or one decision on it."""
    from app.anomalies.review import format_review, resolve_anomaly, review
    from app.db import transaction
    from app.orders.services import credit_late_payment

    if args.days < 0:
        print("feikong review: --days cannot be negative", file=sys.stderr)
        return 2
    engine = _engine()
    try:
        if args.review_action == "resolve":
            with transaction(engine) as s:
                anomaly = resolve_anomaly(s, args.anomaly_id, by=args.by, note=args.note)
                print(f"anomaly {anomaly.id} ({anomaly.kind}) resolved: {anomaly.resolution}")
        elif args.review_action == "credit-late":
            with transaction(engine) as s:
                order = credit_late_payment(s, args.out_trade_no, by=args.by)
                print(f"{order.out_trade_no}: {order.amount_fen / 100:.2f} 元 credited")
        else:
            with transaction(engine, read_only=True) as s:
                print(format_review(review(s, refused_days=args.days)))
    except ValueError as exc:
        print(f"feikong review: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_holidays(args) -> int:
    """Load an official holiday arrangement, show a year, or say how far the calendar is
    official (`app.policy.arrangements`, docs/holidays.md)."""
    from pathlib import Path

    from app.db import transaction, utcnow
    from app.policy.arrangements import (ArrangementError, decode_file, load_arrangement,
                                         loaded_calendar, parse_arrangement, status_of,
                                         year_listing)
    from app.policy.clock import to_local

    engine = _engine()
    if args.holidays_action == "load":
        path = Path(args.file)
        try:
            parsed = parse_arrangement(decode_file(path.read_bytes()))
        except OSError as exc:
            print(f"feikong holidays load: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
        except ArrangementError as exc:
            print(f"feikong holidays load: {path} 有误，未载入任何内容：", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
            return 1
        with transaction(engine) as s:
            row = load_arrangement(s, parsed, by=args.by, file_name=path.name, now=utcnow())
        if row is None:
            print(f"{parsed.year} 年的这份安排已在使用，未作改动 (unchanged)")
        else:
            off = sum(1 for rest, _ in parsed.days.values() if rest)
            print(f"{parsed.year} 年节假日安排已载入 loaded: {off} 天放假, "
                  f"{len(parsed.days) - off} 天调休上班；来源 {parsed.source}")
        return 0
    with transaction(engine, read_only=True) as s:
        if args.holidays_action == "show":
            print(year_listing(s, args.year))
            return 0
        status = status_of(loaded_calendar(s), to_local(utcnow()).date())
    print(f"正式节假日安排覆盖到 official until: {status.official_until:%Y-%m-%d}")
    if status.warning:
        print(status.warning)
    return 0


def cmd_ledger(args) -> int:
    """`feikong ledger verify`: every kept balance against its ledger's sum
    (`app.ledger.checks`); exit 1 when one differs (each is then an anomaly for a manager)."""
    from app.ledger.checks import verify_balances
    from app.money import fen_to_yuan_str

    result = verify_balances(_engine())
    print(f"{result.accounts} accounts, {result.entries} ledger entries checked: "
          f"{len(result.mismatches)} balances differ from their ledger")
    for m in result.mismatches:
        kept = "no kept balance" if m.kept[0] is None else f"kept {fen_to_yuan_str(m.kept[0])} 元"
        print(f"  account {m.account_id}: {kept}, ledger {fen_to_yuan_str(m.summed[0])} 元")
    return 1 if result.mismatches else 0


def cmd_manager(args) -> int:
    """`feikong manager add | disable | list`: console users (app/console/managers.py)."""
    from app.console.managers import ManagerError, add_manager, disable_manager, list_managers
    from app.console.models import ROLE_ZH
    from app.db import transaction

    engine = _engine()
    try:
        if args.manager_action == "add":
            if not args.password_stdin:
                print("feikong manager add: give the password on standard input "
                      "(--password-stdin)", file=sys.stderr)
                return 2
            password = sys.stdin.readline().rstrip("\n")
            with transaction(engine) as s:
                m = add_manager(s, args.name, role=args.role, estate_id=args.estate,
                                password=password, building_ids=args.building or [])
                print(f"manager {m.name} added ({m.role}, estate {m.estate_id})")
        elif args.manager_action == "disable":
            with transaction(engine) as s:
                m = disable_manager(s, args.name)
                print(f"manager {m.name} disabled; their sessions are ended")
        else:
            with transaction(engine, read_only=True) as s:
                for row in list_managers(s):
                    where = (f"buildings {','.join(map(str, row.building_ids))}"
                             if row.building_ids else "the whole estate")
                    print(f"{row.name}  {row.role} ({ROLE_ZH[row.role]})  estate {row.estate_id}"
                          f"  {where}{'  DISABLED' if row.disabled else ''}")
    except ManagerError as exc:
        print(f"feikong manager: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_import(args) -> int:
    """`feikong import --template FILE.xlsx`: the empty estate workbook. `feikong import FILE
    [--estate ID | --new-estate NAME] [--dry-run]`: check every row and, when nothing is wrong
    (and not a dry run), import it in one transaction (app/estate/importing, docs/import.md)."""
    from pathlib import Path

    from sqlmodel import select

    from app.db import transaction
    from app.estate.importing import import_file, template_bytes
    from app.estate.models import Estate

    if args.template:
        Path(args.template).write_bytes(template_bytes())
        print(f"wrote the estate workbook template to {args.template}")
        return 0
    if not args.file:
        print("usage: feikong import FILE [--estate ID] [--dry-run] | --template FILE.xlsx",
              file=sys.stderr)
        return 2
    try:
        data = Path(args.file).read_bytes()
    except OSError as exc:
        print(f"feikong import: {exc}", file=sys.stderr)
        return 2

    class DryRun(Exception):
        pass

    try:
        with transaction(_engine()) as s:
            if args.new_estate:
                estate = Estate(name=args.new_estate)
                s.add(estate)
                s.flush()
                estate_id = estate.id
            elif args.estate is not None:
                estate_id = args.estate
            else:
                ids = list(s.exec(select(Estate.id).order_by(Estate.id)))
                if len(ids) != 1:
                    print("feikong import: " + ("no estate yet: give --new-estate NAME" if not ids
                          else f"say which estate: --estate ID (one of {ids})"), file=sys.stderr)
                    return 2
                estate_id = ids[0]
            result = import_file(s, data, estate_id=estate_id, dry_run=args.dry_run,
                                 file_name=Path(args.file).name)
            if not result.ok or args.dry_run:
                raise DryRun()  # nothing written: not even a new estate
    except DryRun:
        pass
    if not result.ok:
        print(f"{args.file}: {len(result.problems)} 处错误，未导入任何内容 "
              f"({len(result.problems)} problems, nothing imported):", file=sys.stderr)
        for problem in result.problems:
            print(f"  {problem.text()}", file=sys.stderr)
        return 1
    for title, c in result.counts.items():
        print(f"{title}: 新增 {c.created}，更新 {c.updated}，不变 {c.unchanged} "
              f"(created {c.created}, updated {c.updated}, unchanged {c.unchanged})")
    if args.dry_run:
        for line in result.change_lines(50):
            print(f"  {line}")
        if len(result.changes) > 50:
            print(f"  … {len(result.changes) - 50} more")
        print("dry run: nothing written (检查通过，未写入)")
    else:
        print(f"imported into estate {estate_id} (已导入)")
    return 0


def cmd_demo(args) -> int:
    """The demo runs a worker on SQLite: it takes the worker lock as `worker` and `run` do."""
    from app.demo import run_demo

    if not _single_worker_lock():
        print("another worker is running on this SQLite database (a demo, `feikong run` or "
              "`feikong worker`); on SQLite one worker is the rule", file=sys.stderr)
        return 1
    return run_demo()


def main(argv: list[str] | None = None) -> int:
    from app.logs import configure as configure_logs

    words = sys.argv[1:] if argv is None else argv
    # JSON lines in production (FEIKONG_LOG_FORMAT); the demo is read by a person
    configure_logs("console" if words[:1] == ["demo"] else None)
    parser = argparse.ArgumentParser(prog="feikong", description="Feikong prepaid electricity")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="web, worker and a simulated estate together, on SQLite")
    serve = sub.add_parser("serve", help="the web application, and the order and billing jobs")
    serve.add_argument("--processes", type=int, default=1,
                       help="web processes sharing the port (PostgreSQL only); default 1")
    sub.add_parser("worker", help="the meter worker")
    sub.add_parser("run", help="web and worker in one process (a single machine on SQLite)")
    sub.add_parser("simulate", help="simulated gateways and meters (feikong simulate --help)")
    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade"])
    sub.add_parser("seed", help="create the demo estate")
    from app.tariffs.quote import add_arguments as add_quote_arguments

    add_quote_arguments(sub.add_parser("quote", help="price a usage with a tariff (docs/tariffs.md)"))
    read = sub.add_parser("read", help="read an account's meters now (the worker must run)")
    read.add_argument("account", help="the 户号")
    read.add_argument("--wait", type=float, default=30.0, help="seconds to wait; default 30")
    from app.tariffs.admin import add_arguments as add_tariff_arguments

    add_tariff_arguments(sub.add_parser("tariff", help="add, list and assign tariffs"))
    rec = sub.add_parser("reconcile", help="match a day's provider bills with our books (对账)")
    rec.add_argument("--date", help="the bill date, YYYY-MM-DD (Beijing); default yesterday")
    rec.add_argument("--channel", action="append", choices=["alipay", "wechat"],
                     help="only this channel (repeatable); default every channel offered")
    ref = sub.add_parser("refund", help="refund an account's unspent balance (a manager's act)")
    ref.add_argument("account", help="the 户号")
    ref.add_argument("amount", nargs="?", help="yuan, e.g. 35.50")
    ref.add_argument("--all", action="store_true", help="the whole balance (account closure)")
    ref.add_argument("--reason", required=True, choices=["account_closure", "decision"])
    ref.add_argument("--by", required=True, help="the manager who decided it")
    ref.add_argument("--note", help="why, for the record")
    bak = sub.add_parser("backup", help="a consistent copy of the database, while it runs")
    bak.add_argument("dest", help="the backup file to write (never overwritten)")
    res_p = sub.add_parser("restore", help="make a new, empty database from a backup")
    res_p.add_argument("src", help="the backup file")
    sub.add_parser("check", help="what is configured, what is missing (docs/deploy.md)")
    acc = sub.add_parser("account", help="close an account (销户) or reopen it")
    acc_sub = acc.add_subparsers(dest="account_action", required=True)
    close = acc_sub.add_parser("close", help="bill the final reading, refund or carry the "
                                             "balance, stop reading and charging")
    close.add_argument("account", help="the 户号")
    close.add_argument("--settle", required=True, choices=["refund", "carry"],
                       help="refund the balance through the providers, or keep it on the account")
    reopen = acc_sub.add_parser("reopen", help="read and charge a closed account again")
    reopen.add_argument("account", help="the 户号")
    for p in (close, reopen):
        p.add_argument("--by", required=True, help="the manager who decided it")
        p.add_argument("--reason", required=True, help="why, for the audit log")
    rev = sub.add_parser("review", help="what waits for a manager: anomalies, late payments, "
                                        "refused notifications; and decisions on them")
    rev.add_argument("--days", type=int, default=7, help="refused notifications of this many "
                                                          "days; default 7")
    rev_sub = rev.add_subparsers(dest="review_action")
    res = rev_sub.add_parser("resolve", help="close an anomaly, saying who and what was done")
    res.add_argument("anomaly_id", type=int)
    res.add_argument("--by", required=True, help="the manager who decided")
    res.add_argument("--note", required=True, help="what was done")
    late = rev_sub.add_parser("credit-late", help="credit a payment that came after its order "
                                                   "was closed (else refund it: feikong refund)")
    late.add_argument("out_trade_no")
    late.add_argument("--by", required=True, help="the manager who decided")
    man = sub.add_parser("manager", help="console users: add, disable, list")
    man_sub = man.add_subparsers(dest="manager_action", required=True)
    add = man_sub.add_parser("add", help="add a manager (the password on standard input)")
    add.add_argument("name")
    add.add_argument("--role", required=True,
                     choices=["estate_admin", "building_manager", "finance"])
    add.add_argument("--estate", type=int, required=True, help="the estate's id")
    add.add_argument("--building", type=int, action="append",
                     help="a building a building manager manages (repeatable)")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from standard input (never from the command line)")
    dis = man_sub.add_parser("disable", help="disable a manager and end their sessions")
    dis.add_argument("name")
    man_sub.add_parser("list", help="the managers and their scope")
    led = sub.add_parser("ledger", help="the ledger: verify every kept balance against it")
    led.add_argument("ledger_action", choices=["verify"])
    hol = sub.add_parser("holidays", help="public holidays: load an official arrangement, "
                                          "show a year (docs/holidays.md)")
    hol_sub = hol.add_subparsers(dest="holidays_action", required=True)
    load = hol_sub.add_parser("load", help="load a year's official arrangement from a file")
    load.add_argument("file")
    load.add_argument("--by", default="", help="who loads it, for the record")
    show = hol_sub.add_parser("show", help="a year's days off and working weekends, by source")
    show.add_argument("year", type=int)
    hol_sub.add_parser("status", help="until when the calendar is official")
    imp = sub.add_parser("import", help="import an estate from a workbook (docs/import.md)")
    imp.add_argument("file", nargs="?", help="an .xlsx workbook or a CSV of one sheet")
    imp.add_argument("--template", metavar="FILE.xlsx", help="write the empty workbook instead")
    imp.add_argument("--estate", type=int, help="the estate's id (default: the only one)")
    imp.add_argument("--new-estate", metavar="NAME", help="create the estate, named so")
    imp.add_argument("--dry-run", action="store_true", help="check and show what would "
                                                             "change; write nothing")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["simulate"]:  # the simulator parses its own flags
        from meters import simulator

        return simulator.main(argv[1:])
    args = parser.parse_args(argv)
    handler = {"demo": cmd_demo, "run": cmd_run, "serve": cmd_serve, "worker": cmd_worker,
               "db": cmd_db, "seed": cmd_seed, "quote": cmd_quote, "reconcile": cmd_reconcile,
               "refund": cmd_refund, "account": cmd_account, "backup": cmd_backup,
               "restore": cmd_backup, "check": cmd_check, "tariff": cmd_tariff, "read": cmd_read,
               "review": cmd_review, "holidays": cmd_holidays,
               "ledger": cmd_ledger, "manager": cmd_manager, "import": cmd_import}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
