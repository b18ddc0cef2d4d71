"""The fault suite's figures: each scenario reports what was lost (must be nothing) and how long
service was degraded; they are printed at the end of the run (a section of pytest's summary,
visible in `make test`) and written to test-artifacts/faults-<database>.txt."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import USE_POSTGRES
from tests.faults.figures import Loss

DATABASE = "postgres" if USE_POSTGRES else "sqlite"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FIGURES = pytest.StashKey[list]()


@pytest.fixture
def fault_report(request):
    """`fault_report(scenario, loss, degraded_s, note)`: record a scenario's two figures (call it
    before asserting, so that a failing scenario shows its figures too)."""

    def report(scenario: str, loss: Loss, degraded_s: float, note: str = "") -> str:
        line = (f"{scenario} [{DATABASE}]: lost {loss}; degraded {degraded_s:.2f} s"
                + (f" — {note}" if note else ""))
        request.config.stash.setdefault(FIGURES, []).append(line)
        request.node.user_properties.append(("fault_figures", line))
        return line

    return report


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(FIGURES, [])
    if not lines:
        return
    terminalreporter.section(f"fault suite ({DATABASE}): what was lost, how long degraded")
    for line in lines:
        terminalreporter.write_line(line)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"faults-{DATABASE}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
