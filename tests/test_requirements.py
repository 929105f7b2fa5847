"""Topology requirements: reading and checking them (cluster.requirements), the supervisor's
environments built once per set and reported once when they fail (supervisor.venvs), a real
environment built offline from a local wheel, and `squall local --requirements` using it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from polling import wait_for

from cluster.requirements import (
    RequirementsError,
    check_requirements,
    environment_key,
    merge_requirements,
    parse_requirements,
    read_requirements_file,
)
from supervisor.venvs import BuildError, Environments, build_environment, read_marker
from supervisor.wants import DEFAULT_RUNTIME, Runtime

ROOT = Path(__file__).resolve().parent.parent


# --- requirement lists ----------------------------------------------------------------------------


def test_a_requirements_file_is_read_as_pip_reads_it(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        # what the topology needs
        tomli-w==1.0.0   # writing TOML

        requests[socks] >= 2.31 ; python_version >= "3.8"
        pkg @ https://example.org/pkg-1.0-py3-none-any.whl
        long-\\
        name==2
        """)
    assert parse_requirements(text, "r.txt") == [
        "tomli-w==1.0.0", 'requests[socks] >= 2.31 ; python_version >= "3.8"',
        "pkg @ https://example.org/pkg-1.0-py3-none-any.whl", "long-name==2"]
    path = tmp_path / "requirements.txt"
    path.write_text(text)
    assert read_requirements_file(str(path))[0] == "tomli-w==1.0.0"


@pytest.mark.parametrize("line", ["-r other.txt", "--index-url http://evil/simple",
                                  "-e git+https://x/y", "--extra-index-url=x"])
def test_pip_options_are_refused_naming_the_line(line: str) -> None:
    with pytest.raises(RequirementsError, match=r"r\.txt:2: .*pip option"):
        parse_requirements(f"six\n{line}\n", "r.txt")


def test_a_missing_requirements_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RequirementsError, match=r"nope\.txt: cannot read"):
        read_requirements_file(str(tmp_path / "nope.txt"))


@pytest.mark.parametrize("value, words", [
    ("six", "must be a list"), ([""], "empty"), (["a\nb"], "one line"), ([3], "not a string"),
    (["--pre"], "pip option"), (["x" * 600], "over 500"), (["a"] * 201, "at most 200"),
])
def test_bad_requirement_lists_are_named(value: Any, words: str) -> None:
    with pytest.raises(RequirementsError, match=words):
        check_requirements(value, "topology t-1")


def test_one_environment_per_set_whatever_the_order() -> None:
    key = environment_key(["b==1", "a"], "cpython-3.11.7", ["/site"])
    assert key == environment_key(["a", "b==1", "a"], "cpython-3.11.7", ["/site"])
    assert key != environment_key(["a", "b==2"], "cpython-3.11.7", ["/site"])
    assert key != environment_key(["a", "b==1"], "cpython-3.12.0", ["/site"])
    assert key != environment_key(["a", "b==1"], "cpython-3.11.7", ["/other"])
    assert merge_requirements(["a", "b"], ["b", "c"]) == ["a", "b", "c"]


# --- the supervisor's environments (a stand-in build) ------------------------------------------


class FakeBuilds:
    """Builds that the test finishes: `finish(ok)` ends the oldest one."""

    def __init__(self) -> None:
        self.started: list[list[str]] = []
        self.results: list[bool] = []
        self.cond = threading.Condition()

    def __call__(self, directory: Path, wanted: list[str], timeout: float,
                 stop: threading.Event) -> Runtime:
        with self.cond:
            self.started.append(list(wanted))
            self.cond.wait_for(lambda: self.results or stop.is_set(), timeout=20)
            if stop.is_set():
                raise BuildError("the supervisor stopped")
            ok = self.results.pop(0)
        if not ok:
            raise BuildError("No matching distribution found for nope", "pip said no")
        return Runtime(str(directory / "bin" / "python"), (str(directory / "site"),))

    def finish(self, ok: bool) -> None:
        with self.cond:
            self.results.append(ok)
            self.cond.notify_all()


@pytest.fixture
def envs(tmp_path: Path) -> Iterator[tuple[Environments, FakeBuilds, list[Any], list[int]]]:
    builds, failures, changes = FakeBuilds(), [], []
    e = Environments(tmp_path, "s1", lambda: changes.append(1),
                     lambda *a: failures.append(a), build=builds)
    try:
        yield e, builds, failures, changes
    finally:
        e.close()


def test_no_requirements_means_the_supervisors_python(envs: Any) -> None:
    e, builds, failures, _ = envs
    assert e.runtime("t-1", []) == DEFAULT_RUNTIME and e.runtime("t-1", None) == DEFAULT_RUNTIME
    assert builds.started == [] and failures == []


def test_a_set_is_built_once_and_shared(envs: Any) -> None:
    e, builds, failures, changes = envs
    assert e.runtime("t-1", ["a==1"]) is None
    assert e.runtime("u-1", ["a==1"]) is None  # the same set: waits for the same build
    wait_for(lambda: builds.started, what="the build to start")
    builds.finish(True)
    wait_for(lambda: changes, what="the build to end")
    runtime = e.runtime("t-1", ["a==1"])
    assert runtime is not None and runtime.python.endswith("bin/python")
    assert e.runtime("u-1", ["a==1"]) == runtime
    assert builds.started == [["a==1"]] and failures == []


def test_a_failed_build_is_told_once_per_topology_and_not_retried(envs: Any) -> None:
    e, builds, failures, _ = envs
    e.runtime("t-1", ["nope"])
    wait_for(lambda: builds.started, what="the build to start")
    e.runtime("u-1", ["nope"])
    builds.finish(False)
    wait_for(lambda: len(failures) == 2, what="both told")
    assert [f[0] for f in failures] == ["t-1", "u-1"]
    assert "installing its requirements (nope) failed: No matching distribution" in failures[0][1]
    assert failures[0][2] == "pip said no"
    for _ in range(5):  # asked again and again (each refresh): no new build, no new error
        assert e.runtime("t-1", ["nope"]) is None and e.runtime("u-1", ["nope"]) is None
    assert len(builds.started) == 1 and len(failures) == 2
    # Another topology asking for the same set tries once more (the index may be back).
    e.runtime("v-1", ["nope"])
    wait_for(lambda: len(builds.started) == 2, what="one more try")
    builds.finish(False)
    wait_for(lambda: len(failures) == 3, what="v-1 told")
    assert e.runtime("v-1", ["nope"]) is None and len(builds.started) == 2


def test_a_bad_requirement_is_told_once_and_never_built(envs: Any) -> None:
    e, builds, failures, _ = envs
    for _ in range(3):
        assert e.runtime("t-1", ["--index-url=http://evil"]) is None
    assert builds.started == [] and len(failures) == 1
    assert "pip option" in failures[0][1]


# --- a real environment, offline ----------------------------------------------------------------


def make_wheel(directory: Path, name: str = "squall_wheel_probe", value: int = 42) -> Path:
    """A minimal pure-Python wheel: `import squall_wheel_probe; squall_wheel_probe.VALUE`."""
    dist = f"{name}-1.0.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = {value}\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    files[f"{dist}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{dist}/RECORD,,\n"
    path = directory / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, text in files.items():
            z.writestr(p, text)
    return path


@pytest.mark.timeout(120)
def test_a_real_environment_holds_the_requirement_and_sees_squall(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path)
    requirement = f"squall_wheel_probe @ {wheel.as_uri()}"
    directory = tmp_path / "venvs" / "k1"
    runtime = build_environment(directory, [requirement], 120, threading.Event())
    assert read_marker(directory) == runtime
    probe = ("import squall_wheel_probe, topology, zmq, cloudpickle; "
             "print(squall_wheel_probe.VALUE, topology.__file__)")
    done = subprocess.run([runtime.python, "-c", probe], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr
    value, squall_file = done.stdout.split()
    assert value == "42" and squall_file.startswith(str(ROOT))
    # The supervisor's own Python does not have it: only the environment does.
    mine = subprocess.run([sys.executable, "-c", "import squall_wheel_probe"],
                          capture_output=True, timeout=60)
    assert mine.returncode != 0
    # Built: the next ask finds it without running pip.
    again = build_environment(directory, [requirement], 0.001, threading.Event())
    assert again == runtime


@pytest.mark.timeout(120)
def test_a_requirement_pip_cannot_install_is_its_own_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "squall_missing-1.0-py3-none-any.whl"
    with pytest.raises(BuildError) as caught:
        build_environment(tmp_path / "venvs" / "k2", [f"squall_missing @ {missing.as_uri()}"],
                          120, threading.Event())
    assert "\n" not in str(caught.value) and "squall_missing" in str(caught.value)
    assert "squall_missing" in caught.value.detail
    assert read_marker(tmp_path / "venvs" / "k2") is None


@pytest.mark.timeout(120)
def test_squall_local_runs_a_topology_with_its_requirements(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, value=4242)
    (tmp_path / "requirements.txt").write_text(f"squall_wheel_probe @ {wheel.as_uri()}\n")
    topology = tmp_path / "probe_topology.py"
    topology.write_text(textwrap.dedent("""\
        from topology import Bolt, Spout, TopologyBuilder

        class Once(Spout):
            outputs = ["n"]
            def open(self, conf, context):
                self.sent = False
            def next_tuple(self):
                if not self.sent:
                    self.sent = True
                    self.emit([1], msg_id=1)

        class Probe(Bolt):
            def prepare(self, conf, context):
                import squall_wheel_probe  # only the topology's environment has it
                self.value = squall_wheel_probe.VALUE
            def process(self, tup):
                print("probe value", self.value, flush=True)

        b = TopologyBuilder("probe")
        b.set_spout("once", Once())
        b.set_bolt("probe", Probe()).shuffle_grouping("once")
        topology = b.build()
        """))
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "local", str(topology), "--duration", "8", "--no-ui",
         "--json", "--requirements", str(tmp_path / "requirements.txt"),
         "-c", f"local.dir={tmp_path / 'local'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert "probe value 4242" in done.stderr, done.stderr
    assert '"acked": 1' in done.stdout
    assert list((tmp_path / "local" / "venvs").glob("*/squall-env.json"))
