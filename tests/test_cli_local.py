"""`squall local FILE`: a real run, and each bad input giving one clear error line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

VALID_HEAD = """
from topology import Bolt, Spout, TopologyBuilder

class S(Spout):
    outputs = ["x"]

class B(Bolt):
    def process(self, tup):
        pass

b = TopologyBuilder("t")
b.set_spout("s", S())
"""


def squall(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", "local", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def write(tmp_path: Path, text: str, name: str = "topo.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if "error" in line.lower()]


def assert_one_clear_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.timeout(60)
def test_word_count_runs_and_acks() -> None:
    result = squall("examples/word_count.py", "--duration", "3", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["topology"] == "word-count"
    assert summary["acked"] > 0
    assert summary["failed"] == 0
    assert summary["errors"] == []


def test_missing_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.py")
    assert_one_clear_error(squall(missing), missing, "no such file")


def test_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "x = (\n")
    assert_one_clear_error(squall(path), path, "syntax error")


def test_file_raising_at_import(tmp_path: Path) -> None:
    path = write(tmp_path, "import no_such_module_xyz\n")
    assert_one_clear_error(squall(path), path, "no_such_module_xyz")


def test_file_without_topology(tmp_path: Path) -> None:
    path = write(tmp_path, "x = 1\n")
    assert_one_clear_error(squall(path), path, "topology")


def test_topology_is_a_builder(tmp_path: Path) -> None:
    path = write(tmp_path, VALID_HEAD + "topology = b\n")
    assert_one_clear_error(squall(path), path, "TopologyBuilder", "build()")


def test_invalid_topology(tmp_path: Path) -> None:
    path = write(tmp_path, VALID_HEAD + """
b.set_bolt("sink", B).fields_grouping("s", ["nope"])
topology = b.build()
""")
    assert_one_clear_error(squall(path), path, "'sink'", "'nope'")


def test_bad_duration_argument() -> None:
    result = squall("examples/word_count.py", "--duration", "abc")
    assert result.returncode == 2
    assert_one_clear_error(result, "--duration", "'abc'")


def test_unknown_config_key() -> None:
    result = squall("examples/word_count.py", "--duration", "1", "-c", "topology.wrokers=2",
                    "-c", "wrokers.count=1")
    assert_one_clear_error(result, "'wrokers.count'")


def test_bad_config_value() -> None:
    result = squall("examples/word_count.py", "--duration", "1", "-c", "worker.batch.size=0")
    assert_one_clear_error(result, "worker.batch.size", "0")


PRINTER = """
from topology import Bolt, Spout, TopologyBuilder

class Numbers(Spout):
    outputs = ["n"]
    def open(self, conf, context):
        self.n = 0
    def next_tuple(self):
        if self.n < 4:
            self.n += 1
            self.emit([self.n], msg_id=self.n)

class Loud(Bolt):
    def prepare(self, conf, context):
        print("loud ready", context.task_id, flush=True)
    def process(self, tup):
        print("loud got", tup.values[0], flush=True)
        if tup.values[0] == FAIL_AT:
            raise RuntimeError(f"boom at {tup.values[0]}")

b = TopologyBuilder("loud")
b.set_spout("numbers", Numbers())
b.set_bolt("loud", Loud()).shuffle_grouping("numbers")
topology = b.build(config={"topology.workers": 2, "topology.acker.executors": 0})
"""


def kept_logs(stderr: str) -> str | None:
    for line in stderr.splitlines():
        if "worker logs kept in " in line:
            return line.rsplit("worker logs kept in ", 1)[1].strip()
    return None


@pytest.mark.timeout(60)
def test_worker_output_streams_prefixed_and_a_failed_run_keeps_its_logs(tmp_path: Path) -> None:
    path = write(tmp_path, PRINTER.replace("FAIL_AT", "3"), "loud_topology.py")
    result = squall(path, "--duration", "4", "--no-ui", "--json")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    # "loud" is the only component task of its worker: its output is labelled with it.
    task = next(line for line in lines if "loud ready" in line).split("]")[0][1:]
    assert task.startswith("loud:"), lines
    for n in (1, 2, 3, 4):
        assert f"[{task}] loud got {n}" in lines, result.stderr
    traceback = [line for line in lines if line.startswith(f"[{task}] ")]
    assert any("Traceback (most recent call last):" in line for line in traceback)
    assert f"[{task}] RuntimeError: boom at 3" in lines
    assert any(line.startswith("[worker ") and "running tasks" in line for line in lines)
    summary = json.loads(result.stdout)  # stdout stays the summary alone
    assert summary["errors"] == ["loud: RuntimeError: boom at 3"]
    logs = kept_logs(result.stderr)
    assert logs is not None, result.stderr
    try:
        kept = sorted(p.name for p in Path(logs).glob("*/worker-*.log"))
        assert len(kept) == 2, kept
        text = "".join(p.read_text() for p in Path(logs).glob("*/worker-*.log"))
        assert "boom at 3" in text
        assert sorted(p.name for p in Path(logs).parent.iterdir()) == ["logs"]
    finally:
        shutil.rmtree(Path(logs).parent, ignore_errors=True)


@pytest.mark.timeout(60)
def test_quiet_streams_nothing_and_a_clean_run_keeps_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, PRINTER.replace("FAIL_AT", "None"), "quiet_topology.py")
    result = squall(path, "--duration", "3", "--no-ui", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "loud got" not in result.stderr and "[worker " not in result.stderr
    assert kept_logs(result.stderr) is None
    loud = squall(path, "--duration", "3", "--no-ui")
    assert "loud got 4" in loud.stderr and kept_logs(loud.stderr) is None


@pytest.mark.timeout(60)
def test_lines_of_a_worker_running_several_tasks_carry_their_own_task(tmp_path: Path) -> None:
    text = (PRINTER.replace("FAIL_AT", "3")
            .replace("set_bolt(\"loud\", Loud())", "set_bolt(\"loud\", Loud(), parallelism=2)")
            .replace('"topology.workers": 2', '"topology.workers": 1')
            .replace("        print(\"loud got\", tup.values[0], flush=True)",
                     "        print(\"loud got\", tup.values[0])\n"
                     "        import logging; logging.getLogger(\"loudapp\").info(\"logged %d\","
                     " tup.values[0])"))
    assert "parallelism=2" in text and "loudapp" in text
    path = write(tmp_path, text, "loud_tasks_topology.py")
    result = squall(path, "--duration", "4", "--no-ui")
    logs = kept_logs(result.stderr)  # the bolt raised: the run kept its logs
    if logs is not None:
        shutil.rmtree(Path(logs).parent, ignore_errors=True)
    assert logs is not None, result.stderr
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    got = {line.split("] ", 1)[1]: line.split("]", 1)[0][1:] for line in lines
           if "loud got" in line or "loudapp" in line}
    assert len(got) == 8, result.stderr  # four prints and four log lines, one per tuple
    # One worker runs the spout and both loud tasks: each line still says whose it is.
    assert set(got.values()) <= {"loud:1", "loud:2", "loud:3"} and len(set(got.values())) == 2
    for n in (1, 2, 3, 4):
        assert got[f"loud got {n}"] == got[f"INFO loudapp: logged {n}"]
    # Outside the loop's task slices too: what prepare() printed is its task's.
    ready = [line for line in lines if "loud ready" in line]
    assert len(ready) == 2 and all(line.startswith(f"[loud:{line.rsplit(' ', 1)[1]}] ")
                                   for line in ready), ready
    raised = got["loud got 3"]
    assert f"[{raised}] RuntimeError: boom at 3" in lines, result.stderr
    assert f"[{raised}] Traceback (most recent call last):" in lines


def test_a_missing_requirements_file_is_one_clear_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "requirements.txt")
    assert_one_clear_error(squall("examples/word_count.py", "--requirements", missing),
                           missing, "cannot read")
