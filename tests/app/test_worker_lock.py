"""On SQLite one worker is the rule: `feikong worker`, `run` and `demo` each take the worker lock
and a second one says so and does not start."""

from __future__ import annotations

import fcntl

import pytest

from app.cli import _single_worker_lock, main as feikong
from app.settings import get_settings
from tests.conftest import USE_POSTGRES


@pytest.fixture
def held(settings):
    """The worker lock of this test's var dir, held as another process's worker holds it."""
    get_settings().var_dir.mkdir(parents=True, exist_ok=True)
    with open(get_settings().var_dir / "worker.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        yield
    handle = getattr(_single_worker_lock, "handle", None)
    if handle is not None:
        handle.close()
        del _single_worker_lock.handle


@pytest.mark.parametrize("command", [
    "demo",  # always on SQLite: the lock whatever the settings say
    pytest.param("run", marks=pytest.mark.skipif(USE_POSTGRES, reason="SQLite's rule")),
    pytest.param("worker", marks=pytest.mark.skipif(USE_POSTGRES, reason="SQLite's rule")),
])
def test_a_second_worker_does_not_start(held, command, capsys):
    assert feikong([command]) == 1
    assert "one worker is the rule" in capsys.readouterr().err
