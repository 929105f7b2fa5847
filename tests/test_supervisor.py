"""The supervisor daemon against a real ZooKeeper with real worker processes.

Assignments are written straight into ZooKeeper (no nimbus), for the word-count example.
Every worker the tests start is killed at the end, by its pid record, even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import cloudpickle
import psutil
import pytest
from polling import wait_for

from cluster.assignment import Assignment
from cluster.codesign import sign_code
from cluster.config import Config
from cluster.processes import stop_processes
from cluster.state import ClusterState
from cluster.zkstore import ZkClusterState
from examples.word_count import topology as word_count
from supervisor.classify import LocalWorker, WorkerWant, classify
from supervisor.daemon import Supervisor, supervisor_home
from supervisor.procs import WorkerRecords, find_live
from supervisor.wants import SUPERVISED, answer, wanted_ports
from topology.placement import distribute_tasks
from worker.launcher import free_ports

pytestmark = pytest.mark.timeout(60)

TOPOLOGY_ID = "word-count-1"
HOST = "127.0.0.1"
ROOT = str(Path(__file__).resolve().parent.parent)


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def local_dir() -> Iterator[str]:
    """A short local.dir (the control socket path must stay short); every worker recorded
    under it is killed at the end, whatever happened."""
    path = tempfile.mkdtemp(prefix="sq-sup-")
    try:
        yield path
    finally:
        left = []
        for records_dir in Path(path).glob("supervisor-*/workers"):
            for record in WorkerRecords(str(records_dir)).load_all().values():
                proc = find_live(record)
                if proc is not None:
                    left.append(proc)
        for child in psutil.Process().children(recursive=True):  # unrecorded stragglers
            try:
                if any(path in arg for arg in child.cmdline()):
                    left.append(child)
            except psutil.Error:
                pass
        stop_processes(left, 0, "leftover worker")
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(zk_config: Config, local_dir: str) -> Config:
    return zk_config.with_overrides({
        "local.dir": local_dir,
        "supervisor.slots.ports": free_ports(3),
        "supervisor.monitor.freq.secs": 0.5,
        "supervisor.worker.timeout.secs": 3,
        "supervisor.worker.start.timeout.secs": 20,
        "worker.heartbeat.frequency.secs": 0.2,
        "cluster.secret": "supervisor-test-secret",
        "supervisor.logviewer.port": 0,
    })


@pytest.fixture
def state(config: Config) -> Iterator[ClusterState]:
    with ZkClusterState(config) as client:
        yield client


class Running:
    """A Supervisor served by a background thread, as `squall supervisor` serves it."""

    def __init__(self, config: Config, **options: Any) -> None:
        self.supervisor = Supervisor(config, **options)
        self.supervisor.start()
        self.thread = threading.Thread(target=self.supervisor.run, name="test-supervisor")
        self.thread.start()

    def stop(self, kill_workers: bool = False) -> None:
        self.supervisor.stop(kill_workers=kill_workers)
        self.thread.join(timeout=20)
        assert not self.thread.is_alive(), "supervisor did not stop"


@pytest.fixture
def supervisors() -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(config: Config, **options: Any) -> Running:
        started.append(Running(config, **options))
        return started[-1]

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop(kill_workers=True)


# --- helpers ------------------------------------------------------------------------------------


def submit_code(state: ClusterState, config: Config,
                topology_id: str = TOPOLOGY_ID, **settings: Any) -> list[list[int]]:
    """Store word count's code (signed by "nimbus") and meta; returns its tasks split over
    two workers."""
    conf = Config.from_mapping({
        "worker.heartbeat.frequency.secs": 0.2,
        "topology.message.timeout.secs": 5,
        "cluster.secret": config["cluster.secret"],
    }).with_overrides({**word_count.config, **settings}).to_dict()
    state.put_code(topology_id, sign_code(cloudpickle.dumps({"topology": word_count, "conf": conf}),
                                          config["cluster.secret"]))
    state.set_topology(topology_id, {"status": "ACTIVE", "code_version": "1"})
    return distribute_tasks(word_count.component_tasks(conf), 2)


def assign(state: ClusterState, sup_id: str, version: int, workers: dict[int, list[int]],
           topology_id: str = TOPOLOGY_ID) -> None:
    a = Assignment(topology_id, {(sup_id, port): tasks for port, tasks in workers.items()},
                   {sup_id: HOST}).to_dict()
    state.set_assignment(topology_id, {**a, "version": version, "code_version": "1",
                                       "active": True})


def spout_acked(hb: dict[str, Any]) -> int:
    return sum(e["acked"] for e in hb.get("executors", ()) if e["type"] == "spout")


def heartbeat(state: ClusterState, port: int, topology_id: str = TOPOLOGY_ID
              ) -> dict[str, Any]:
    return state.worker_heartbeats(topology_id).get(f"{HOST}:{port}", {})


def flowing(state: ClusterState, port: int, pid: int, above: int = 0,
            topology_id: str = TOPOLOGY_ID) -> bool:
    """Worker `pid` on `port` has heartbeated (through the supervisor) acked spout tuples."""
    hb = heartbeat(state, port, topology_id)
    return hb.get("pid") == pid and spout_acked(hb) > above


def worker_processes(home: Path) -> list[psutil.Process]:
    marker = str(home / "code")
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if "worker" in cmdline and any(arg.startswith(marker) for arg in cmdline):
            out.append(proc)
    return out


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# --- pure pieces ----------------------------------------------------------------------------------


def test_wanted_ports_takes_my_slots_with_the_whole_topology_for_routing() -> None:
    a = Assignment("t", {("me", 1): [1, 3], ("me", 2): [2], ("other", 1): [4]},
                   {"me": "h1", "other": "h2"}).to_dict()
    stored = {**a, "version": 7, "code_version": "c9", "active": False}
    wants = wanted_ports("me", [1, 2], {"t": stored})
    assert sorted(wants) == [1, 2]
    assert wants[1].work == WorkerWant("t", (1, 3), 7, "c9")
    assert wants[1].version == {"assignment": 7, "code": "c9"}  # separate fields
    assert wants[1].message == {"type": "assignment", "assignment": {
        "version": {"assignment": 7, "code": "c9"}, "topology_id": "t", "active": False,
        "tasks": {"1": ["h1", 1], "2": ["h1", 2], "3": ["h1", 1], "4": ["h2", 1]}}}
    assert wants[1].message["assignment"]["active"] is False
    assert wanted_ports("me", [1], {"t": {**stored, "active": True}})[1].message[
        "assignment"]["active"] is True
    assert wanted_ports("me", [2], {"t": {**a, "version": 7}})[2].work.tasks == (2,)


def test_wanted_ports_skips_malformed_assignments_and_says_why() -> None:
    good = {**Assignment("u", {("me", 2): [1]}, {"me": "h"}).to_dict(), "version": 1}
    problems: dict[str, str] = {}
    wants = wanted_ports("me", [1, 2], {"t": {"topology_id": "t", "workers": [{"port": 1}]},
                                        "s": ["not", "an", "object"], "u": good}, problems)
    assert sorted(wants) == [2] and wants[2].topology_id == "u"
    assert sorted(problems) == ["s", "t"] and "malformed" in problems["t"]


def test_every_heartbeat_of_a_wanted_worker_is_answered() -> None:
    a = Assignment("t", {("me", 1): [1, 2]}, {"me": "h1"}).to_dict()
    want = wanted_ports("me", [1], {"t": {**a, "version": 3, "code_version": "c"}})[1]
    runs = ("t", (1, 2), "c")
    assert answer(want, True, *runs, {"assignment": 2, "code": "c"}) == want.message
    assert answer(want, True, *runs, None) == want.message  # a worker just started
    assert answer(want, True, *runs, want.version) == SUPERVISED  # up to date: contact
    assert answer(None, False, *runs, None) == SUPERVISED  # just restarted: vouch for it
    assert answer(None, True, *runs, want.version) is None  # unassigned: about to go
    for other in (("u", (1, 2), "c"), ("t", (1,), "c"), ("t", (1, 2), "d")):
        assert answer(want, True, *other, want.version) is None  # runs something else


def test_classify_restarts_a_worker_running_old_code() -> None:
    want = WorkerWant("t", (1,), 2, "new")
    have = LocalWorker(5, True, "t", (1,), 0.0, 9.0, "old")
    actions = classify({1: want}, {1: have}, 10.0, 5.0, 30.0)
    assert (actions.kill, actions.start) == ([1], [1])
    assert "code version" in actions.reasons[1]


# --- the daemon ---------------------------------------------------------------------------------


def test_runs_restarts_and_stops_workers_as_assigned(
    config: Config, state: ClusterState, supervisors: Callable[[Config], Running]
) -> None:
    running = supervisors(config)
    sup = running.supervisor
    a, b, c = config["supervisor.slots.ports"]
    info = wait_for(lambda: state.supervisors().get(sup.id), what="registration")
    assert info["host"] == HOST and info["ports"] == [a, b, c] and info["pid"] == os.getpid()
    assert (sup.home / "id").read_text().strip() == sup.id

    first, second = submit_code(state, config)
    assign(state, sup.id, 1, {a: first, b: second})
    wait_for(lambda: sorted(sup.worker_pids()) == sorted([a, b]), what="two workers")
    pids = sup.worker_pids()
    for port in (a, b):
        wait_for(partial(flowing, state, port, pids[port]), what=f"acks on {port}")
        acked = spout_acked(heartbeat(state, port))
        wait_for(partial(flowing, state, port, pids[port], acked), what="acks growing")
    assert heartbeat(state, a)["version"] == {"assignment": 1, "code": "1"}
    assert sorted(WorkerRecords(str(sup.home / "workers")).load_all()) == sorted([a, b])

    # kill -9: restarted at once, and the new worker's tuples are acked again.
    killed_at = time.monotonic()
    os.kill(pids[a], signal.SIGKILL)
    new_pid = wait_for(lambda: sup.worker_pids().get(a) not in (None, pids[a]) and
                       sup.worker_pids()[a], timeout=5, what="restart")
    wait_for(lambda: flowing(state, a, new_pid), timeout=10, what="tuples flowing again")
    elapsed = time.monotonic() - killed_at
    print(f"\nkill -9 of worker {a} -> its replacement's tuples acked again: {elapsed:.2f} s")
    assert elapsed < 3.0
    assert sup.worker_pids()[b] == pids[b]
    pids[a] = new_pid

    # b's slot is unassigned (its tasks move to c): b is stopped, c started, a left alone.
    assign(state, sup.id, 2, {a: first, c: second})
    wait_for(lambda: sorted(sup.worker_pids()) == sorted([a, c]), what="b stopped, c started")
    wait_for(lambda: not alive(pids[b]), timeout=5, what="b's process gone")
    wait_for(lambda: heartbeat(state, a).get("version") == {"assignment": 2, "code": "1"},
             what="a updated")
    assert sup.worker_pids()[a] == pids[a]
    wait_for(lambda: flowing(state, c, sup.worker_pids()[c]), what="acks on c")

    # a's tasks change (it takes all of them, c is unassigned): a is restarted, c stopped.
    pid_c = sup.worker_pids()[c]
    assign(state, sup.id, 3, {a: sorted(first + second)})
    wait_for(lambda: list(sup.worker_pids()) == [a] and sup.worker_pids()[a] != pids[a],
             what="a restarted alone")
    wait_for(lambda: not alive(pids[a]) and not alive(pid_c), timeout=5, what="old ones gone")
    wait_for(lambda: flowing(state, a, sup.worker_pids()[a]), what="acks on the new a")

    # The assignment goes away: so does the last worker, and its record.
    last = sup.worker_pids()[a]
    state.remove_assignment(TOPOLOGY_ID)
    wait_for(lambda: not sup.worker_pids() and not alive(last), what="all workers stopped")
    wait_for(lambda: not WorkerRecords(str(sup.home / "workers")).load_all(), what="records")
    assert sup.restarts == 1
    running.stop()
    assert sup.id not in state.supervisors()


def test_restart_adopts_running_workers_without_duplicates(
    config: Config, state: ClusterState, supervisors: Callable[[Config], Running]
) -> None:
    running = supervisors(config)
    sup = running.supervisor
    a, b, _ = config["supervisor.slots.ports"]
    first, second = submit_code(state, config)
    assign(state, sup.id, 1, {a: first, b: second})
    wait_for(lambda: sorted(sup.worker_pids()) == sorted([a, b]), what="two workers")
    pids = sup.worker_pids()
    wait_for(lambda: all(flowing(state, p, pids[p]) for p in (a, b)), what="acks")

    running.stop()  # leaves the workers running
    assert all(alive(pid) for pid in pids.values())
    assert sup.id not in state.supervisors()
    acked = spout_acked(heartbeat(state, a))

    again = supervisors(config)
    assert again.supervisor.id == sup.id
    assert again.supervisor.home == Path(supervisor_home(config))
    assert again.supervisor.worker_pids() == pids  # adopted at start, before any assignment
    wait_for(lambda: again.supervisor.id in state.supervisors(), what="re-registration")
    # The adopted workers heartbeat to the new supervisor, which writes them to ZooKeeper.
    wait_for(lambda: flowing(state, a, pids[a], acked), what="heartbeats via the new supervisor")
    time.sleep(1.0)  # several check rounds: nothing is restarted or duplicated
    assert again.supervisor.worker_pids() == pids
    assert sorted(p.pid for p in worker_processes(sup.home)) == sorted(pids.values())

    again.stop(kill_workers=True)
    assert not any(alive(pid) for pid in pids.values())
    assert not worker_processes(sup.home)
    assert not WorkerRecords(str(sup.home / "workers")).load_all()


def test_second_supervisor_on_the_same_home_is_refused(
    config: Config, supervisors: Callable[[Config], Running]
) -> None:
    from supervisor.daemon import SupervisorError

    supervisors(config)
    with pytest.raises(SupervisorError, match="in use"):
        Supervisor(config).start()


def test_a_silent_worker_is_replaced(
    config: Config, state: ClusterState, supervisors: Callable[[Config], Running]
) -> None:
    config = config.with_overrides({"supervisor.worker.timeout.secs": 1.5,
                                    "supervisor.worker.stop.timeout.secs": 1})
    sup = supervisors(config).supervisor
    a = config["supervisor.slots.ports"][0]
    first, second = submit_code(state, config)
    assign(state, sup.id, 1, {a: sorted(first + second)})
    pid = wait_for(lambda: sup.worker_pids().get(a), what="a worker")
    wait_for(lambda: flowing(state, a, pid), what="acks")
    os.kill(pid, signal.SIGSTOP)  # alive but silent: only the heartbeat timeout can tell
    try:
        new_pid = wait_for(lambda: sup.worker_pids().get(a) not in (None, pid) and
                           sup.worker_pids()[a], timeout=10, what="replacement")
    finally:
        if alive(pid):
            os.kill(pid, signal.SIGCONT)
    assert not alive(pid)  # SIGTERM cannot reach a stopped process: it was SIGKILLed
    wait_for(lambda: flowing(state, a, new_pid), what="acks from the replacement")


def test_one_topologys_bad_records_do_not_stop_the_others(
    config: Config, state: ClusterState, supervisors: Callable[[Config], Running]
) -> None:
    sup = supervisors(config).supervisor
    a, b, c = config["supervisor.slots.ports"]
    long_id = "w" * 300 + "-1"  # stored before names were bounded: too long for a file name
    first, second = submit_code(state, config)
    submit_code(state, config, long_id)
    assign(state, sup.id, 1, {a: sorted(first + second)})
    assign(state, sup.id, 1, {b: sorted(first + second)}, long_id)
    state.set_assignment("broken-1", {"topology_id": "broken-1", "workers": [
        {"supervisor": sup.id, "host": HOST, "port": "not a port", "tasks": [1]}]})
    state.set_assignment("foreign-1", {  # a port that is not one of our slots
        **Assignment("foreign-1", {(sup.id, 1): [1]}, {sup.id: HOST}).to_dict(),
        "version": 1})
    pids = wait_for(lambda: len(sup.worker_pids()) == 2 and sup.worker_pids(), what="both")
    wait_for(partial(flowing, state, a, pids[a]), what="word count acking")
    wait_for(partial(flowing, state, b, pids[b], 0, long_id), what="the long id acking")
    assert c not in sup.worker_pids()
    names = [p.name for p in (sup.home / "code").glob("*.pkl")]
    assert len(names) == 2 and all(len(n) < 100 for n in names)


def test_code_that_nimbus_did_not_sign_is_refused_once_and_reported(
    config: Config, state: ClusterState, supervisors: Callable[[Config], Running]
) -> None:
    sup = supervisors(config).supervisor
    a, b, _ = config["supervisor.slots.ports"]
    first, second = submit_code(state, config)
    assign(state, sup.id, 1, {a: sorted(first + second)})
    for tid, code in (("unsigned-1", cloudpickle.dumps({"topology": word_count, "conf": {}})),
                      ("foreign-1", sign_code(b"whatever", "another cluster's secret"))):
        state.put_code(tid, code)
        assign(state, sup.id, 1, {b: [1]}, tid)
        error = wait_for(lambda tid=tid: state.errors(tid).get("__supervisor"),
                         what=f"{tid} refused")
        assert "refusing to run it" in error[0]["error"]
        state.remove_assignment(tid)
    wait_for(lambda: flowing(state, a, sup.worker_pids()[a]), what="word count still runs")
    assert list(sup.worker_pids()) == [a]
    assert all(len(state.errors(t)["__supervisor"]) == 1 for t in ("unsigned-1", "foreign-1"))


def test_a_supervisor_without_slots_refuses_to_start(config: Config, tmp_path: Path) -> None:
    from supervisor.daemon import SupervisorError

    no_slots = {**config.to_dict(), "supervisor.slots.ports": []}
    with pytest.raises(SupervisorError, match=r"supervisor\.slots\.ports is empty"):
        Supervisor(no_slots)
    done = subprocess.run([sys.executable, "-m", "cli.main", "supervisor",
                           "-c", "supervisor.slots.ports=[]", "-c", f"local.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=30,
                          env={**os.environ, "SQUALL_CONF": ""})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert lines[0].startswith("squall supervisor: error: ") and \
        "supervisor.slots.ports" in lines[0]
    assert not list(tmp_path.iterdir())  # nothing made on the way


def test_a_worker_hears_from_its_supervisor_unasked(
    config: Config, state: ClusterState, supervisors: Callable[[Config], Running]
) -> None:
    from worker.control import ControlClient
    from worker.wire import secret_key

    config = config.with_overrides({"supervisor.heartbeat.frequency.secs": 0.1})
    sup = supervisors(config).supervisor
    a = config["supervisor.slots.ports"][0]
    first, second = submit_code(state, config)
    assign(state, sup.id, 1, {a: sorted(first + second)})
    pid = wait_for(lambda: sup.worker_pids().get(a), what="a worker")
    wait_for(partial(flowing, state, a, pid), what="acks")
    # Take over the worker's end of the control channel (same identity) and say nothing.
    spy = ControlClient(sup.control_endpoint, secret_key(config["cluster.secret"]), HOST, a)
    try:
        heard = wait_for(lambda: [m for m in spy.receive() if m.get("type") == "supervised"],
                         10, "a word from the supervisor without a heartbeat")
    finally:
        spy.close()
    assert heard[0] == {"type": "supervised"}


def test_serves_its_workers_logs_on_the_port_it_registers(
    config: Config, state: ClusterState, supervisors: Callable[[Config], Running]
) -> None:
    import http.client
    from urllib.parse import quote

    sup = supervisors(config).supervisor
    a = config["supervisor.slots.ports"][0]
    first, second = submit_code(state, config)
    assign(state, sup.id, 1, {a: sorted(first + second)})
    pid = wait_for(lambda: sup.worker_pids().get(a), what="a worker")
    wait_for(partial(flowing, state, a, pid), what="acks")
    port = state.supervisors()[sup.id]["logviewer_port"]
    assert isinstance(port, int) and port == sup.logviewer_port and port > 0
    beat = wait_for(lambda: state.supervisor_heartbeats().get(sup.id), what="its heartbeat")
    assert beat["logviewer_port"] == port
    log_file = sup.home / "logs" / TOPOLOGY_ID / f"worker-{a}.log"
    assert log_file.exists()

    def read(secret: str | None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(HOST, port, timeout=10)
        try:
            conn.request("GET", f"/api/v1/log?file={quote(TOPOLOGY_ID)}/{a}/worker.log",
                         headers={"X-Squall-Secret": secret} if secret else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    status, body = read(config["cluster.secret"])
    assert status == 200 and f"worker {HOST}:{a}: running tasks".encode() in body
    assert read(None)[0] == 401


def test_a_taken_log_server_port_costs_the_log_server_not_the_supervisor(
    config: Config, state: ClusterState, supervisors: Callable[[Config], Running],
    caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    taken = socket.socket()
    taken.bind((HOST, 0))
    taken.listen()
    try:
        sup = supervisors(config.with_overrides({
            "supervisor.logviewer.port": taken.getsockname()[1]})).supervisor
        info = wait_for(lambda: state.supervisors().get(sup.id), what="registration")
        assert info["logviewer_port"] is None and sup.logviewer_port is None
        assert any("cannot serve worker logs" in r.getMessage() and
                   "supervisor.logviewer.port" in r.getMessage() for r in caplog.records)
    finally:
        taken.close()


def test_log_rotation_comes_from_the_config_when_it_has_the_keys() -> None:
    from cluster import logsink
    from supervisor.daemon import LOG_BACKUPS_KEY, LOG_MAX_BYTES_KEY, log_rotation

    assert log_rotation({}) == (logsink.MAX_BYTES, logsink.BACKUPS)
    assert log_rotation({LOG_MAX_BYTES_KEY: 65536, LOG_BACKUPS_KEY: 3}) == (65536, 3)


def test_rotates_its_workers_logs_and_serves_the_rotated_ones(
    config: Config, state: ClusterState, supervisors: Callable[..., Running]
) -> None:
    import http.client
    import re
    from urllib.parse import quote

    sup = supervisors(config, worker_log_rotation=(16384, 2)).supervisor
    a = config["supervisor.slots.ports"][0]
    first, second = submit_code(state, config, **{"topology.debug": True})  # a line per emit
    assign(state, sup.id, 1, {a: sorted(first + second)})
    log_file = sup.home / "logs" / TOPOLOGY_ID / f"worker-{a}.log"
    wait_for(lambda: log_file.with_name(log_file.name + ".2").exists(), 30,
             "the worker's log rotated twice")
    files = sorted(log_file.parent.glob(log_file.name + "*"))
    assert [p.name for p in files][:3] == [log_file.name, f"{log_file.name}.1",
                                           f"{log_file.name}.2"]
    assert not log_file.with_name(log_file.name + ".3").exists()
    port = sup.logviewer_port
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", f"/api/v1/listLogs?topoId={quote(TOPOLOGY_ID)}&port={a}",
                     headers={"X-Squall-Secret": config["cluster.secret"]})
        response = conn.getresponse()
        names = response.read().decode()
        assert response.status == 200 and f"{TOPOLOGY_ID}/{a}/worker.log.1" in names, names
        conn.request("GET", f"/api/v1/log?file={quote(TOPOLOGY_ID)}/{a}/worker.log.1&start=0",
                     headers={"X-Squall-Secret": config["cluster.secret"]})
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200 and 0 < len(body) <= 16384
    # The debug lines of each emit carry the task that emitted.
    tagged = re.findall(r"worker\[\d+\] (\w+):(\d+) topology\.", body) + re.findall(
        r"worker\[\d+\] (\w+):(\d+) worker\.", body)
    assert {component for component, _ in tagged} & {"split", "count", "sentences"}, body[:2000]
