"""Virtual environments for topologies that need PyPI packages (`topology.requirements`).

Each requirement set gets one environment, built once per host and cached under
`{local.dir}/venvs/{key}` (cluster.requirements.environment_key: the set, the interpreter
and the site directories it extends), so topologies asking for the same set share it, and
so do the supervisors of one host (a lock file per key: one builds, the others wait and use
it). The environment is made by this supervisor's own interpreter with `venv --without-pip`
and filled by this supervisor's pip (`pip --python ENV install -r requirements.txt`), which
takes a second where a venv with its own pip takes five more.

It sees Squall through a `.pth` file: `import site; site.addsitedir(...)` of the
supervisor's own site directories, processed after the environment's own site-packages. So
the worker imports Squall and its dependencies (pyzmq, cloudpickle, ...) from the
supervisor's installation, exactly the versions the supervisor runs, while the topology's
requirements come first: a topology pinning another version of a library gets its own. The
alternatives were worse: `--system-site-packages` sees the base interpreter's packages, not
the supervisor's virtual environment where Squall lives; installing Squall into every
environment takes longer and can drift from the supervisor's version.

Building runs on a thread of its own: the supervisor's loop and its ZooKeeper thread never
wait for pip. `runtime()` answers at once: the environment's `Runtime`, or None while it is
being built (the caller asks again when `on_change` says a build ended) or after it failed.
A failed build is reported once per topology (`on_failure(topology_id, message, detail)`,
the message one line naming the requirement pip refused) and never retried for that
topology: only another topology asking for the same set (say, the same one resubmitted
after the index came back) tries again, once.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import site
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cluster.requirements import RequirementsError, check_requirements, environment_key
from supervisor.wants import DEFAULT_RUNTIME, Runtime

log = logging.getLogger(__name__)

INSTALL_TIMEOUT_SECS = 600.0
MARKER = "squall-env.json"  # written last: an environment without it is unfinished
BASE_PTH = "_squall_base.pth"
DETAIL_CHARS = 4000
MAX_FAILURES = 1000  # failed sets remembered (oldest forgotten first)
PYTHON = os.path.realpath(sys.executable)
PYTHON_VERSION = f"{sys.implementation.name}-{sys.version.split()[0]}-{PYTHON}"


class BuildError(Exception):
    """An environment could not be built: a one-line message, and pip's output."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def base_site_dirs() -> list[str]:
    """The site directories of this interpreter (where Squall and its dependencies are)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        dirs.append(site.getusersitepackages())
    return dirs


@dataclass
class _Failed:
    message: str
    detail: str
    tried_for: set[str] = field(default_factory=set)  # topologies that saw it fail


class Environments:
    """The environments of one supervisor (see the module doc)."""

    def __init__(self, root: Path, who: str, on_change: Callable[[], None],
                 on_failure: Callable[[str, str, str], None],
                 timeout: float = INSTALL_TIMEOUT_SECS,
                 build: Callable[..., Runtime] | None = None) -> None:
        self.root = root
        self.who = who
        self.on_change = on_change
        self.on_failure = on_failure
        self.timeout = timeout
        self.base = base_site_dirs()
        self._build = build or build_environment
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._ready: dict[str, Runtime] = {}
        self._queued: dict[str, tuple[list[str], set[str]]] = {}  # key -> (set, waiting)
        self._failed: dict[str, _Failed] = {}
        self._told: set[tuple[str, str]] = set()  # (topology, problem) reported
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def runtime(self, topology_id: str, requirements: object) -> Runtime | None:
        """The runtime for a topology's workers; None while building or after a failure."""
        if not requirements:
            return DEFAULT_RUNTIME
        try:
            wanted = check_requirements(requirements, f"topology {topology_id}")
        except RequirementsError as e:
            self._tell(topology_id, str(e), "")
            return None
        key = environment_key(wanted, PYTHON_VERSION, self.base)
        with self._lock:
            if key in self._ready:
                return self._ready[key]
            found = read_marker(self.root / key)
            if found is not None:
                self._ready[key] = found
                return found
            failed = self._failed.get(key)
            if failed is not None and topology_id in failed.tried_for:
                return None
            if key in self._queued:
                self._queued[key][1].add(topology_id)
                return None
            self._queued[key] = (wanted, {topology_id})
            self._start_thread()
            self._wake.notify()
        log.info("supervisor %s: topology %s needs %s: building its environment %s",
                 self.who, topology_id, ", ".join(wanted), key)
        return None

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- the builder thread --------------------------------------------------------------------

    def _start_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="supervisor-venvs",
                                            daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while not self._queued and not self._stop.is_set():
                    self._wake.wait()
                if self._stop.is_set():
                    return
                key, (wanted, _) = next(iter(self._queued.items()))
            started = time.monotonic()
            try:
                runtime = self._build(self.root / key, wanted, self.timeout, self._stop)
            except BuildError as e:
                self._failed_build(key, str(e), e.detail)
            except Exception as e:  # a bug or the disk: the same for the topology
                log.exception("supervisor %s: building environment %s failed", self.who, key)
                self._failed_build(key, f"building its environment failed: "
                                        f"{type(e).__name__}: {e}", "")
            else:
                with self._lock:
                    self._ready[key] = runtime
                    self._queued.pop(key, None)
                log.info("supervisor %s: environment %s ready in %.1f s", self.who, key,
                         time.monotonic() - started)
                self.on_change()

    def _failed_build(self, key: str, message: str, detail: str) -> None:
        if self._stop.is_set():
            return  # interrupted by close(): not the topology's fault
        with self._lock:
            wanted, waiting = self._queued.pop(key, ([], set()))
            failed = self._failed.pop(key, None) or _Failed(message, detail)
            failed.message, failed.detail = message, detail
            failed.tried_for |= waiting
            self._failed[key] = failed  # re-inserted: the newest is forgotten last
            while len(self._failed) > MAX_FAILURES:
                del self._failed[next(iter(self._failed))]
        for tid in sorted(waiting):
            self._tell(tid, f"installing its requirements ({', '.join(wanted)}) failed: "
                            f"{message}", detail)

    def _tell(self, topology_id: str, message: str, detail: str) -> None:
        with self._lock:
            if (topology_id, message) in self._told:
                return
            self._told.add((topology_id, message))
        log.error("supervisor %s: topology %s: %s", self.who, topology_id, message)
        self.on_failure(topology_id, message, detail)


# --- building one environment -----------------------------------------------------------------


def read_marker(directory: Path) -> Runtime | None:
    """The runtime of a finished environment, None if there is none (or it is unfinished)."""
    try:
        data = json.loads((directory / MARKER).read_text())
        return Runtime(str(data["python"]), tuple(str(p) for p in data["paths"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_environment(directory: Path, requirements: Sequence[str], timeout: float,
                      stop: threading.Event) -> Runtime:
    """Build (or find, built by another supervisor meanwhile) the environment in
    `directory`; BuildError with pip's own words if it cannot be."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f"{directory.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        found = read_marker(directory)
        if found is not None:
            return found
        shutil.rmtree(directory, ignore_errors=True)  # a build that died half-way
        log_path = directory.parent / f"{directory.name}.log"
        deadline = time.monotonic() + timeout
        python = directory / "bin" / "python"
        pip, own_pip = _pip_command(python)
        with open(log_path, "w") as out:
            _run("venv", [PYTHON, "-m", "venv", *([] if own_pip else ["--without-pip"]),
                          str(directory)], out, deadline, stop)
            reqs = directory / "requirements.txt"
            reqs.write_text("".join(f"{r}\n" for r in requirements))
            _run("pip install", [*pip, "install", "--no-input", "--disable-pip-version-check",
                                 "--no-warn-script-location", "-r", str(reqs)],
                 out, deadline, stop)
        paths = _site_dirs(python)
        (Path(paths[0]) / BASE_PTH).write_text(
            "".join(f"import site; site.addsitedir({d!r})\n" for d in base_site_dirs()))
        runtime = Runtime(str(python), tuple(paths))
        tmp = directory / f".{MARKER}.tmp"
        tmp.write_text(json.dumps({"python": runtime.python, "paths": list(runtime.paths),
                                   "requirements": list(requirements), "built": time.time()}))
        os.replace(tmp, directory / MARKER)
        return runtime


def _run(what: str, cmd: list[str], out: IO[str], deadline: float,
         stop: threading.Event) -> None:
    """Run `cmd` with its output into the build log `out`; BuildError unless it succeeds
    before `deadline` (and before `stop`)."""
    out.write(f"$ {' '.join(cmd)}\n")
    out.flush()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        while proc.poll() is None:
            if stop.is_set():
                raise BuildError("the supervisor stopped")
            if time.monotonic() > deadline:
                raise BuildError(f"{what} did not finish within the install timeout")
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # pip and whatever it started
            proc.wait()
    if proc.returncode != 0:
        detail = _tail(Path(out.name))
        raise BuildError(_first_error(detail) or f"{what} exited with {proc.returncode}",
                         detail)


def _pip_command(python: Path) -> tuple[list[str], bool]:
    """How to run pip for the environment of `python`: this interpreter's pip pointed at
    it (pip >= 22.3), else the environment's own pip. Second: whether it needs its own."""
    try:
        import pip

        version = tuple(int(x) for x in pip.__version__.split(".")[:2])
    except (ImportError, ValueError):
        version = (0, 0)
    if version >= (22, 3):
        return [PYTHON, "-m", "pip", "--python", str(python)], False
    return [str(python), "-m", "pip"], True


def _site_dirs(python: Path) -> list[str]:
    """The environment's own site-packages directories (purelib first)."""
    code = ("import json, sysconfig; p = sysconfig.get_paths(); "
            "print(json.dumps(list(dict.fromkeys([p['purelib'], p['platlib']]))))")
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise BuildError(f"the new environment's python does not run: {done.stderr.strip()}")
    return [str(p) for p in json.loads(done.stdout)]


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-DETAIL_CHARS:]
    except OSError:
        return ""


def _first_error(output: str) -> str | None:
    """pip's own one-line reason ("ERROR: Could not find a version that satisfies ...")."""
    for line in output.splitlines():
        if line.startswith("ERROR:"):
            return line[len("ERROR:"):].strip()
    return None
