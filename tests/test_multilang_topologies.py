"""Multilang components in real topologies, in local mode: real worker processes running
pystorm and Node.js components (the files under tests/multilang/, unchanged) as subprocesses
next to native spouts and bolts, with acks, fails, replays, crashes and hangs.

Native components are module-level classes: workers unpickle them by importing this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil
import pytest
from multilang.harness import HERE, PYTHON
from polling import wait_for

from topology import Bolt, LocalCluster, Spout, Topology, TopologyBuilder
from topology.multilang import ShellBolt, ShellSpout
from topology.testing import complete_topology

pytestmark = pytest.mark.timeout(90)

ML = str(HERE)
FAST = {"worker.heartbeat.frequency.secs": 0.05, "topology.testing.capture": True}


class SentenceSource(Spout):
    outputs = ["sentence"]


class ListSpout(Spout):
    """Emits each value once, reliably (msg id = its index), and replays what fails."""

    def __init__(self, values: Sequence[Any], outputs: Sequence[str] = ("command",)) -> None:
        self.values = list(values)
        self.outputs = list(outputs)

    def open(self, conf: Any, context: Any) -> None:
        self.position = 0
        self.replays: list[int] = []

    def next_tuple(self) -> None:
        if self.replays:
            i = self.replays.pop(0)
        elif self.position < len(self.values):
            i = self.position
            self.position += 1
        else:
            return
        self.emit([self.values[i]], msg_id=i)

    def fail(self, msg_id: Any) -> None:
        self.replays.append(msg_id)


class Counter(Bolt):
    outputs = ["word", "count"]

    def prepare(self, conf: Any, context: Any) -> None:
        self.counts: dict[str, int] = {}

    def process(self, tup: Any) -> None:
        word = tup.values[0]
        self.counts[word] = self.counts.get(word, 0) + 1
        self.emit([word, self.counts[word]])


class FailFirstMultiplesOf3(Bolt):
    """Fails each multiple of 3 the first time it sees it (the spout must replay it)."""

    outputs = ["n"]

    def prepare(self, conf: Any, context: Any) -> None:
        self.seen: set[int] = set()

    def process(self, tup: Any) -> None:
        n = tup.values[0]
        if n % 3 == 0 and n not in self.seen:
            self.seen.add(n)
            self.fail(tup)
            return
        self.emit([n])


class FailWordOnce(Bolt):
    """Fails the first tuple holding the word "fail": the whole sentence must replay."""

    def prepare(self, conf: Any, context: Any) -> None:
        self.failed = False

    def process(self, tup: Any) -> None:
        if tup.values[0] == "fail" and not self.failed:
            self.failed = True
            self.fail(tup)


class Sink(Bolt):
    def process(self, tup: Any) -> None:
        pass


@contextlib.contextmanager
def running(topology: Topology, config: dict[str, Any] | None = None
            ) -> Iterator[LocalCluster]:
    with LocalCluster() as cluster:
        cluster.submit(topology, config={**FAST, **(config or {})})
        cluster.wait_running(topology.name, 60)
        yield cluster


def outcomes(cluster: LocalCluster, name: str, spout: str) -> tuple[list[Any], list[Any]]:
    """(acked, failed) msg ids of `spout`'s tasks so far (sorted, repeats kept)."""
    acked: list[Any] = []
    failed: list[Any] = []
    for dump in cluster.request_dumps(name).values():
        for task, component in dump["components"].items():
            if component == spout:
                acked += dump["acked"][task]
                failed += dump["failed"][task]
    return sorted(acked), sorted(failed)


def shell_snapshots(cluster: LocalCluster, name: str, component: str) -> list[dict[str, Any]]:
    return [e["shell"] for hb in cluster.status(name)["workers"].values()
            for e in hb["executors"] if e.get("component") == component and "shell" in e]


# --- tests ---------------------------------------------------------------------------------


def test_a_pystorm_bolt_splits_between_native_components():
    b = TopologyBuilder("ml-split")
    b.set_spout("sentences", SentenceSource())
    b.set_bolt("split", ShellBolt([PYTHON, "split_bolt.py"], outputs=["word"], cwd=ML),
               parallelism=2).shuffle_grouping("sentences")
    b.set_bolt("count", Counter()).fields_grouping("split", ["word"])
    sentences = [["the cow jumped over the moon"], ["the man went to the store"]] * 10
    result = complete_topology(b.build(), {"sentences": sentences}, timeout=60)
    assert result.acked == list(range(20)) and result.failed == []
    words = [w for s in sentences for w in s[0].split()]
    assert sorted(v[0] for v in result.emitted("split")) == sorted(words)
    finals: dict[str, int] = {}
    for word, count in result.emitted("count"):
        finals[word] = max(finals.get(word, 0), count)
    assert finals["the"] == 40 and finals["moon"] == 10


def test_a_failure_downstream_of_a_pystorm_bolt_fails_its_input_tree():
    # The words a pystorm bolt emits are anchored to its input: one failing downstream
    # fails the sentence at the spout, which replays it.
    b = TopologyBuilder("ml-anchors")
    b.set_spout("sentences", ListSpout(["a b", "c fail d", "e"], outputs=["sentence"]))
    b.set_bolt("split", ShellBolt([PYTHON, "split_bolt.py"], outputs=["word"], cwd=ML)) \
        .shuffle_grouping("sentences")
    b.set_bolt("picky", FailWordOnce()).shuffle_grouping("split")
    with running(b.build()) as cluster:
        acked, failed = wait_for(lambda: (o := outcomes(cluster, "ml-anchors", "sentences"))[0]
                                 == [0, 1, 2] and o, 60, "the three sentences acked")
        assert failed == [1]


def test_a_pystorm_spout_gets_acks_and_fails_and_replays():
    b = TopologyBuilder("ml-spout")
    b.set_spout("numbers", ShellSpout([PYTHON, "numbers_spout.py"], outputs=["n"], cwd=ML))
    b.set_bolt("picky", FailFirstMultiplesOf3()).shuffle_grouping("numbers")
    b.set_bolt("sink", Sink()).shuffle_grouping("picky")
    topology = b.build(config={"topology.probe.limit": 30})
    with running(topology) as cluster:
        acked, failed = wait_for(lambda: (o := outcomes(cluster, "ml-spout", "numbers"))[0]
                                 == list(range(1, 31)) and o, 60, "every number acked")
        assert failed == list(range(3, 31, 3))  # each failed once, then replayed and acked
        status = cluster.status("ml-spout")
        assert status["errors"] == []
        [shell] = shell_snapshots(cluster, "ml-spout", "numbers")
        assert shell["restarts"] == 0 and shell["pid"] is not None


def test_a_pystorm_spout_without_ackers_gets_each_ack_with_its_own_id():
    b = TopologyBuilder("ml-spout-unacked")
    b.set_spout("numbers", ShellSpout([PYTHON, "numbers_spout.py"], outputs=["n"], cwd=ML))
    b.set_bolt("sink", Sink()).shuffle_grouping("numbers")
    topology = b.build(config={"topology.probe.limit": 20, "topology.acker.executors": 0})
    with running(topology) as cluster:
        acked, failed = wait_for(
            lambda: len((o := outcomes(cluster, "ml-spout-unacked", "numbers"))[0]) >= 20 and o,
            60, "every number acked")
        assert acked == list(range(1, 21)) and failed == []  # complete at once, nothing tracks
        assert cluster.status("ml-spout-unacked")["errors"] == []


def test_node_components_written_to_storm_js():
    b = TopologyBuilder("ml-node")
    b.set_spout("sentences", ShellSpout(["node", "sentences.js"], outputs=["sentence"], cwd=ML))
    b.set_bolt("split", ShellBolt(["node", "splitsentence.js"], outputs=["word"], cwd=ML),
               parallelism=2).shuffle_grouping("sentences")
    b.set_bolt("count", Counter()).fields_grouping("split", ["word"])
    with running(b.build()) as cluster:
        acked, failed = wait_for(lambda: (o := outcomes(cluster, "ml-node", "sentences"))[0]
                                 == [0, 1, 2] and o, 60, "the three sentences acked")
        assert failed == []
        status = cluster.status("ml-node")
        assert status["errors"] == []  # console.log in the bolt is output, not an error
        # One "splitting: ..." line per sentence, logged (heartbeats tell it a moment later).
        wait_for(lambda: sum(s["stray_lines"] for s in shell_snapshots(
            cluster, "ml-node", "split")) == 3, 10, "three stray lines counted")


def test_a_crashing_subprocess_is_restarted_and_its_tuples_replay(tmp_path: Path):
    mark = tmp_path / "crashed"
    commands = ["echo:a", "raw:stray", f"crash-once:{mark}", "print:b", "echo:c"]
    b = TopologyBuilder("ml-crash")
    b.set_spout("commands", ListSpout(commands))
    b.set_bolt("probe", ShellBolt([PYTHON, "probe_bolt.py"], outputs=["value"], cwd=ML)) \
        .shuffle_grouping("commands")
    b.set_bolt("sink", Sink()).shuffle_grouping("probe")
    with running(b.build()) as cluster:
        acked, failed = wait_for(lambda: (o := outcomes(cluster, "ml-crash", "commands"))[0]
                                 == [0, 1, 2, 3, 4] and o, 60, "every command acked")
        assert 2 in failed and mark.exists()  # the crash's tuple failed, replayed, then acked
        errors = wait_for(lambda: cluster.status("ml-crash")["errors"], 10, "the error")
        text = errors[0]["error"]
        assert "exited, exit status 3" in text and "probe crashing once" in text  # stderr
        # The bolt's worker may beat before the spout's: wait for its snapshot to catch up.
        [shell] = wait_for(lambda: [s for s in shell_snapshots(cluster, "ml-crash", "probe")
                                    if s["inflight"] == 0], 10, "nothing in flight")
        assert shell["restarts"] == 1
        assert shell["stray_lines"] >= 1  # "raw output stray" went to the log, not an error
    assert not psutil.pid_exists(shell["pid"])  # the workers stopped their subprocesses


def test_a_hung_subprocess_stalls_neither_its_worker_nor_heartbeats(tmp_path: Path):
    mark = tmp_path / "hung"
    b = TopologyBuilder("ml-hang")
    b.set_spout("commands", ListSpout([f"hang-once:{mark}", "echo:after"]))
    b.set_spout("numbers", ListSpout(list(range(100_000)), outputs=["n"]))
    b.set_bolt("probe", ShellBolt([PYTHON, "probe_bolt.py"], outputs=["value"], cwd=ML)) \
        .shuffle_grouping("commands")
    b.set_bolt("native", Sink()).shuffle_grouping("numbers")
    conf = {"topology.subprocess.timeout.secs": 10, "topology.workers": 1}
    with running(b.build(), conf) as cluster:
        wait_for(mark.exists, 30, "the subprocess to hang")

        def native_acked() -> int:
            return sum(e.get("acked", 0) for hb in cluster.status("ml-hang")["workers"].values()
                       for e in hb["executors"] if e.get("component") == "numbers")

        def uptime() -> float:
            [hb] = cluster.status("ml-hang")["workers"].values()
            return float(hb["uptime"])

        before, up = native_acked(), uptime()
        # While it hangs, the worker's other tasks and heartbeats go on (checked before its
        # timeout: the subprocess was hung all along).
        wait_for(lambda: native_acked() > before + 200 and uptime() > up + 0.3, 20,
                 "the native tasks and heartbeats, during the hang")
        [shell] = shell_snapshots(cluster, "ml-hang", "probe")
        assert shell["restarts"] == 0 and shell["inflight"] == 2  # both wait in its pipe
        acked, failed = wait_for(lambda: (o := outcomes(cluster, "ml-hang", "commands"))[0]
                                 == [0, 1] and o, 60, "both commands acked after the restart")
        assert failed == [0, 1]  # failed with the hung subprocess, then replayed
        errors = cluster.status("ml-hang")["errors"]
        assert any("did not respond for" in e["error"] for e in errors), errors
        assert cluster.status("ml-hang")["restarts"] == 0  # the worker itself never restarted


def test_ids_direct_ticks_and_metrics_through_a_worker():
    b = TopologyBuilder("ml-features")
    b.set_spout("commands", ListSpout(["ids", "direct:DIRECT", "metric:7", "log:warning"]))
    b.set_bolt("probe", ShellBolt([PYTHON, "probe_bolt.py"], outputs=["value"], cwd=ML),
               config={"topology.tick.tuple.freq.secs": 0.3}).shuffle_grouping("commands")
    b.set_bolt("sink", Sink()).shuffle_grouping("probe")
    b.set_bolt("direct-sink", Sink(), parallelism=2).direct_grouping("probe")
    topology = b.build()
    tasks = topology.component_tasks()
    direct = tasks["direct-sink"][1]
    commands = topology.components["commands"].obj
    commands.values[1] = f"direct:{direct}"
    with running(topology) as cluster:
        wait_for(lambda: outcomes(cluster, "ml-features", "commands")[0] == [0, 1, 2, 3], 60,
                 "every command acked")

        def emitted() -> list[Any]:
            return [v for dump in cluster.request_dumps("ml-features").values()
                    for c, _, v in dump["emitted"] if c == "probe"]

        values = wait_for(lambda: (e := emitted()) and ["tick:0.3"] in e and e, 20, "a tick")
        assert ["want ids"] in values and ["direct"] in values
        assert [f"[{tasks['sink'][0]}]"] in values  # need_task_ids: the task ids, as JSON

        def executed(component: str) -> dict[int, int]:
            return {e["task"]: e.get("executed", 0)
                    for hb in cluster.status("ml-features")["workers"].values()
                    for e in hb["executors"] if e.get("component") == component}

        wait_for(lambda: executed("direct-sink") == {tasks["direct-sink"][0]: 0, direct: 1}, 10,
                 "the direct tuple, at its task only")
        wait_for(lambda: shell_snapshots(cluster, "ml-features", "probe")[0]["metrics"]
                 == {"probe.metric": 7}, 10, "the metric in the heartbeat")
        assert cluster.status("ml-features")["errors"] == []


def test_a_hung_pystorm_spout_is_restarted_and_the_worker_goes_on(tmp_path: Path):
    mark = tmp_path / "spout-hung"
    b = TopologyBuilder("ml-spout-hang")
    b.set_spout("numbers", ShellSpout([PYTHON, "numbers_spout.py"], outputs=["n"], cwd=ML))
    b.set_bolt("sink", Sink()).shuffle_grouping("numbers")
    conf = {"topology.probe.limit": 10, "topology.probe.hang.at": 5,
            "topology.probe.hang.mark": str(mark), "topology.subprocess.timeout.secs": 2}
    with running(b.build(), conf) as cluster:
        wait_for(mark.exists, 30, "the spout to hang in next_tuple")
        # The new subprocess starts over (a pystorm spout keeps no state): 1..10 again.
        acked, _ = wait_for(lambda: (o := outcomes(cluster, "ml-spout-hang", "numbers"))[0]
                            and set(o[0]) == set(range(1, 11)) and o, 60, "1..10 acked")
        errors = cluster.status("ml-spout-hang")["errors"]
        assert any("did not respond for" in e["error"] for e in errors), errors
        [shell] = shell_snapshots(cluster, "ml-spout-hang", "numbers")
        assert shell["restarts"] == 1
        assert cluster.status("ml-spout-hang")["restarts"] == 0  # the worker never restarted


def test_the_code_directory_the_worker_names_is_where_commands_run():
    b = TopologyBuilder("ml-code-dir")
    b.set_spout("sentences", SentenceSource())
    # No cwd: declared in tests/, where split_bolt.py is not; the code directory has it.
    b.set_bolt("split", ShellBolt([PYTHON, "split_bolt.py"], outputs=["word"])) \
        .shuffle_grouping("sentences")
    result = complete_topology(b.build(), {"sentences": [["a b"], ["c"]]}, timeout=60,
                               config={"topology.code.dir": ML})
    assert sorted(result.emitted("split")) == [["a"], ["b"], ["c"]] and result.acked == [0, 1]


def test_topology_debug_logs_what_shell_components_emit():
    b = TopologyBuilder("ml-debug")
    b.set_spout("sentences", ShellSpout(["node", "sentences.js"], outputs=["sentence"], cwd=ML))
    b.set_bolt("split", ShellBolt([PYTHON, "split_bolt.py"], outputs=["word"], cwd=ML)) \
        .shuffle_grouping("sentences")
    with running(b.build(config={"topology.debug": True})) as cluster:
        wait_for(lambda: outcomes(cluster, "ml-debug", "sentences")[0] == [0, 1, 2], 60,
                 "three sentences acked")

        def logged() -> str:
            logs = Path(cluster.logs_dir)
            return "".join(p.read_text(errors="replace") for p in logs.rglob("*.log"))

        wait_for(lambda: "sentences task" in logged() and "split task" in logged()
                 and "emit (['moon']" in logged(), 10, "the emits in the worker logs")
