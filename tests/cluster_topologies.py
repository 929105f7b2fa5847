"""Word-count topologies for the cluster tests and bench/failover.py (a helper, not tests).

`finite()` is the exact-results one: its spout emits `topology.wc.sentences` deterministic
sentences with message ids, replays failed ones and stops once every one is acked; the count
bolt writes its counts to `{topology.wc.output.dir}/count-{task}.json` on every tick and at
cleanup (write + rename, so a reader never sees half a file). `expected_counts(n)` is what the
files must add up to.

`endless()` cycles the sentences for ever (bounded by `topology.max.spout.pending`): its
progress is read from the worker heartbeats in ZooKeeper (`acked_by_worker`). With
`topology.wc.progress.dir` set, each spout task also appends the time to
`{dir}/spout-{task}-{pid}.log` every PROGRESS_SECS while it emits (`spout_runs` reads them):
where and when each task ran, seen without its worker's heartbeats (an orphan has none).

A topology file for `squall submit` is made with `write_topology_file`, which copies this
module next to it: the CLI ships modules of the file's directory by value, so workers need
nothing from tests/.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from topology import Bolt, Spout, TopologyBuilder
from topology.model import Topology

PROGRESS_SECS = 0.02

WORDS = ["apple", "banana", "cherry", "date", "elder", "fig", "grape", "honeydew", "kiwi",
         "lemon", "mango"]


def sentence(i: int) -> str:
    """The i-th sentence: 3 to 6 words, fixed for a given i."""
    return " ".join(WORDS[(i * 7 + k * (i % 5 + 1)) % len(WORDS)] for k in range(3 + i % 4))


def expected_counts(n: int) -> dict[str, int]:
    return dict(Counter(w for i in range(n) for w in sentence(i).split()))


class FiniteSentences(Spout):
    """Emits its share of sentences 0..N-1 reliably (msg id = i); replays failures."""

    outputs = ["sentence"]

    def open(self, conf: Mapping[str, Any], context: Any) -> None:
        n = int(conf.get("topology.wc.sentences", 100))
        tasks = sorted(context.component_tasks(context.component_id))
        index = tasks.index(context.task_id)
        self.todo = [i for i in range(n) if i % len(tasks) == index]
        self.todo.reverse()  # pop() from the end emits in order
        self.pending: set[int] = set()

    def next_tuple(self) -> None:
        if self.todo:
            i = self.todo.pop()
            self.pending.add(i)
            self.emit([sentence(i)], msg_id=i)

    def ack(self, msg_id: Any) -> None:
        self.pending.discard(msg_id)

    def fail(self, msg_id: Any) -> None:
        if msg_id in self.pending:
            self.todo.append(msg_id)


class EndlessSentences(Spout):
    """Cycles the sentences for ever, reliably; failed ones are emitted again."""

    outputs = ["sentence"]

    def open(self, conf: Mapping[str, Any], context: Any) -> None:
        self.next_id = 0
        self.replay: list[int] = []
        out = conf.get("topology.wc.progress.dir")
        self.progress = (Path(out) / f"spout-{context.task_id}-{os.getpid()}.log"
                         if out else None)
        self.noted = 0.0

    def next_tuple(self) -> None:
        if self.replay:
            i = self.replay.pop()
        else:
            i, self.next_id = self.next_id, self.next_id + 1
        self.emit([sentence(i % 1000)], msg_id=i)
        if self.progress is not None and time.time() - self.noted >= PROGRESS_SECS:
            self.noted = time.time()
            with open(self.progress, "a") as f:
                f.write(f"{self.noted}\n")

    def fail(self, msg_id: Any) -> None:
        self.replay.append(msg_id)


class Split(Bolt):
    outputs = ["word"]

    def process(self, tup: Any) -> None:
        for word in tup.values[0].split():
            self.emit([word])


class Count(Bolt):
    """Counts words; writes them out on ticks and at cleanup when an output dir is set."""

    outputs = ["word", "count"]

    def prepare(self, conf: Mapping[str, Any], context: Any) -> None:
        self.counts: Counter[str] = Counter()
        out = conf.get("topology.wc.output.dir")
        self.path = Path(out) / f"count-{context.task_id}.json" if out else None
        self.dirty = True

    def process(self, tup: Any) -> None:
        self.counts[tup.values[0]] += 1
        self.dirty = True

    def process_tick(self, tup: Any) -> None:
        self._write()

    def cleanup(self) -> None:
        self._write()

    def _write(self) -> None:
        if self.path is None or not self.dirty:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(self.counts)))
        os.replace(tmp, self.path)
        self.dirty = False


def finite(name: str = "wc-finite", workers: int = 2) -> Topology:
    b = TopologyBuilder(name)
    b.set_spout("sentences", FiniteSentences, parallelism=2)
    b.set_bolt("split", Split, parallelism=2).shuffle_grouping("sentences")
    b.set_bolt("count", Count, parallelism=2,
               config={"topology.tick.tuple.freq.secs": 0.2}).fields_grouping("split", ["word"])
    return b.build(config={"topology.workers": workers, "topology.max.spout.pending": 200})


def endless(name: str = "wc-endless", workers: int = 2, pending: int = 50) -> Topology:
    b = TopologyBuilder(name)
    b.set_spout("sentences", EndlessSentences, parallelism=2)
    b.set_bolt("split", Split, parallelism=2).shuffle_grouping("sentences")
    b.set_bolt("count", Count, parallelism=2).fields_grouping("split", ["word"])
    return b.build(config={"topology.workers": workers, "topology.max.spout.pending": pending,
                           "topology.message.timeout.secs": 10})


# --- for the test/bench side ----------------------------------------------------------------


def write_topology_file(directory: str | Path, kind: str, **kwargs: Any) -> str:
    """Write `{directory}/{kind}_wc.py` defining `topology = kind(**kwargs)`; return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(__file__, directory / "cluster_topologies.py")
    path = directory / f"{kind}_wc.py"
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
    path.write_text(f"from cluster_topologies import {kind}\n\ntopology = {kind}({args})\n")
    return str(path)


def read_counts(directory: str | Path) -> dict[str, int]:
    """The sum of every count-*.json in `directory`."""
    total: Counter[str] = Counter()
    for path in Path(directory).glob("count-*.json"):
        total.update(json.loads(path.read_text()))
    return dict(total)


def spout_totals(heartbeats: Iterable[Mapping[str, Any]], key: str) -> int:
    """Sum of a spout counter ("acked", "failed") over heartbeats; "emitted" sums streams."""
    total = 0
    for hb in heartbeats:
        for e in hb.get("executors", ()):
            if e.get("type") != "spout":
                continue
            value = e.get(key, 0)
            total += sum(value.values()) if isinstance(value, dict) else int(value)
    return total


def acked_by_worker(heartbeats: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Worker key -> acked spout tuples it reports."""
    return {key: spout_totals([hb], "acked") for key, hb in heartbeats.items()}


def spout_runs(directory: str | Path) -> dict[tuple[int, int], list[float]]:
    """(spout task, pid) -> the times it noted emitting (`topology.wc.progress.dir`)."""
    out = {}
    for path in Path(directory).glob("spout-*.log"):
        _, task, pid = path.stem.split("-")
        out[(int(task), int(pid))] = [float(t) for t in path.read_text().split()]
    return out
