"""examples/multilang/: `squall local` runs the topology mixing native components and a
pystorm bolt, with its script found next to the topology file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(90)
def test_the_multilang_word_count_example_runs_and_acks(tmp_path: Path) -> None:
    # Run from elsewhere: the script is found in the topology's directory, not the cwd.
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "local", str(ROOT / "examples/multilang/word_count.py"),
         "--duration", "4", "--json", "--no-ui"],
        cwd=tmp_path, capture_output=True, text=True, timeout=80,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["topology"] == "multilang-word-count"
    assert summary["acked"] > 0 and summary["failed"] == 0
    assert summary["errors"] == [] and summary["worker_restarts"] == 0
    assert "shell bolt 'split' task" in result.stderr  # the subprocesses' own log lines

