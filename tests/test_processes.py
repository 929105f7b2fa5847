"""cluster.processes.stop_processes: the one way processes are stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from cluster.processes import stop_processes

pytestmark = pytest.mark.timeout(30)

POLITE = "import time\nwhile True: time.sleep(0.05)"
STUBBORN = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\nwhile True: time.sleep(0.05)")


@pytest.fixture
def spawn() -> Iterator:
    started: list[subprocess.Popen] = []

    def start(code: str) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        started.append(p)
        if "ready" in code:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_a_polite_process_stops_on_sigterm_and_its_popen_tells(spawn) -> None:
    p = spawn(POLITE)
    assert stop_processes([p], 5, "test") == []
    assert p.returncode == -signal.SIGTERM


def test_a_stubborn_one_is_killed_after_the_timeout(spawn) -> None:
    polite, stubborn = spawn(POLITE), spawn(STUBBORN)
    as_psutil = psutil.Process(stubborn.pid)
    killed = stop_processes([polite, as_psutil, stubborn], 0.5, "test")  # twice: once stopped
    assert killed == [stubborn.pid]
    assert polite.returncode == -signal.SIGTERM
    assert stubborn.poll() is not None


def test_gone_processes_are_skipped(spawn) -> None:
    p = spawn("pass")
    p.wait()
    assert stop_processes([p], 1, "test") == []
    assert p.returncode == 0
