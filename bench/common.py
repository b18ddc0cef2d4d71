"""What the benches share: free ports, subprocesses that say when they are ready, RSS."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
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
