"""What the benches share: free ports, subprocesses that say when they are ready, RSS, and a
throwaway PostgreSQL cluster."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def free_ports(n: int) -> int:
    """The first of `n` consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n >= 65535:
            continue
        socks = []
        try:
            for i in range(n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no block of free ports")


def start_process(args: list[str], env: dict, ready: str, log: Path) -> subprocess.Popen:
    """Start a subprocess and wait for the output line that says it is ready."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    for line in proc.stdout:
        if ready in line:
            return proc
    proc.kill()
    raise RuntimeError(f"{' '.join(args[1:])} did not start; see {log}")


def stop_process(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process (this one by default), in MB."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return kb / 1024


@contextlib.contextmanager
def throwaway_postgres(max_connections: int = 300) -> Iterator[str]:
    """A PostgreSQL cluster of its own, on a free port of 127.0.0.1, removed on exit; yields the
    server URL ("postgresql://postgres@127.0.0.1:PORT", append "/dbname"). Debian's server
    binaries (/usr/lib/postgresql/<version>/bin), run as the `postgres` user when we are root
    (initdb refuses root); durability off (fsync, synchronous_commit, full_page_writes): it is
    thrown away. Ready in about a second. Raises RuntimeError without the binaries.
    The tests' `pg_server` fixture is this too."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[4]))
    if not bins:
        raise RuntimeError("PostgreSQL server binaries not found: run `make test` (it installs "
                           "them) or apt-get install postgresql")
    b, port, base = bins[-1], free_ports(1), tempfile.mkdtemp(prefix="feikong-pg-")
    sudo, data = [], f"{base}/data"
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        sudo = ["runuser", "-u", "postgres", "--"]

    def run(*args):
        subprocess.run(sudo + list(args), check=True, capture_output=True)

    try:
        run(f"{b}/initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8", "--no-sync")
        run(f"{b}/pg_ctl", "-D", data, "-l", f"{base}/log", "-w", "-o",
            f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off"
            f" -c max_connections={max_connections}", "start")
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        if os.path.exists(f"{data}/postmaster.pid"):
            run(f"{b}/pg_ctl", "-D", data, "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)
