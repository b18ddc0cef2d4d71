"""Lighthouse (mobile) on the resident pages of a running demo: performance, accessibility and
best practices of the home page and of the cut household's account page (where a resident tops
up), as `lighthouse_<page>_<category>: <score> points` lines (0–100).

It starts `feikong demo` itself (a fresh SQLite file, free ports; simulator, worker and web in
one process), waits for it, runs Lighthouse 12 in Debian's chromium once per page (simulated
mobile throttling, a 360×740 screen at DPR 2), stops the demo and prints the scores, then every
audit that cost a point. Each report is kept in test-artifacts/lighthouse-<page>.json.

    python -m bench.lighthouse              # both pages
    python -m bench.lighthouse --keep       # and leave the demo running, printing its URL

Lighthouse is an npm package, not a Python one: `npm install --no-save lighthouse@12` at the
repository's root (node_modules/ is ignored by git; Lighthouse 13 needs Node 22). Set
LIGHTHOUSE to its path, or CHROME_PATH to another chromium, if they live elsewhere. Never lets
anything download a browser.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from app.estate.seed import CUT_ACCOUNT
from bench.common import free_ports, start_process, stop_process

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--disable-sync"]
CATEGORIES = ("performance", "accessibility", "best-practices")
PAGES = {"home": "/", "account": f"/a/{CUT_ACCOUNT}"}


def lighthouse_path() -> str:
    for candidate in (os.environ.get("LIGHTHOUSE"), ROOT / "node_modules" / ".bin" / "lighthouse",
                      shutil.which("lighthouse")):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit("Lighthouse is not installed: run `npm install --no-save lighthouse@12` in "
                     f"{ROOT} (it needs Node 18+; Lighthouse 13 needs Node 22), or set LIGHTHOUSE")


def start_demo(workdir: Path) -> tuple[subprocess.Popen, str]:
    web = free_ports(3)  # the web, then the simulator's two gateways
    sim = web + 1
    env = dict(os.environ, FEIKONG_DATABASE_URL=f"sqlite:///{workdir / 'feikong.db'}",
               FEIKONG_VAR_DIR=str(workdir), FEIKONG_WEB_PORT=str(web),
               FEIKONG_SIM_BASE_PORT=str(sim), FEIKONG_PUBLIC_URL=f"http://127.0.0.1:{web}",
               FEIKONG_LOG_FORMAT="text", PYTHONUNBUFFERED="1")
    demo = start_process([sys.executable, "-m", "app.cli", "demo"], env,
                         "Feikong demo is running", workdir / "demo.log")
    return demo, f"http://127.0.0.1:{web}"


def run_lighthouse(lighthouse: str, url: str, out: Path) -> dict:
    """One Lighthouse run on `url`; its JSON report."""
    args = [lighthouse, url, "--quiet", "--output=json", f"--output-path={out}",
            "--form-factor=mobile", f"--only-categories={','.join(CATEGORIES)}",
            "--screenEmulation.mobile", "--screenEmulation.width=360",
            "--screenEmulation.height=740", "--screenEmulation.deviceScaleFactor=2",
            f"--chrome-flags={' '.join(CHROME_FLAGS)}"]
    done = subprocess.run(args, env=dict(os.environ, CHROME_PATH=CHROMIUM),
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"Lighthouse failed on {url} (exit {done.returncode}):\n"
                         f"{done.stderr[-3000:]}")
    return json.loads(out.read_text())


def lost_points(report: dict) -> list[str]:
    """The audits that cost points, by category: "category: audit id (score) title"."""
    lines = []
    for key, category in report["categories"].items():
        for ref in category["auditRefs"]:
            audit = report["audits"][ref["id"]]
            if ref["weight"] > 0 and audit["score"] is not None and audit["score"] < 1:
                lines.append(f"{key}: {ref['id']} ({audit['score']}) "
                             f"{audit.get('displayValue', '')} {audit['title']}".rstrip())
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the demo running")
    parser.add_argument("--page", choices=sorted(PAGES), action="append",
                        help="only this page (repeatable)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no chromium at {CHROMIUM}: `apt-get install chromium` (Debian)")
    lighthouse = lighthouse_path()
    ARTIFACTS.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="feikong-lighthouse-"))
    demo, base = start_demo(workdir)
    scores, notes = {}, []
    try:
        for name in args.page or PAGES:
            report = run_lighthouse(lighthouse, base + PAGES[name],
                                    ARTIFACTS / f"lighthouse-{name}.json")
            for category in CATEGORIES:
                score = report["categories"][category]["score"]
                scores[f"lighthouse_{name}_{category.replace('-', '_')}"] = (
                    None if score is None else round(score * 100))
            notes += [f"{name} {line}" for line in lost_points(report)]
        if args.keep:
            print(f"demo still running at {base} (pid {demo.pid}); Ctrl-C it when done",
                  flush=True)
            demo.wait()
    finally:
        stop_process(demo)
        shutil.rmtree(workdir, ignore_errors=True)
    for key, score in scores.items():
        print(f"{key}: {score} points")
    for line in notes:
        print(f"# {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
