"""Windowed word count: throughput on real workers, and memory per tuple held in a window.

    python bench/windows.py [--seconds 15] [--warmup 5] [--tuples 1000000] [--json]

Throughput (local mode, 2 workers, acking on): sentences -> split -> a windowed count (2
tasks, fields grouping on the word), in three forms: the plain count bolt for reference,
a sliding count window (full form: 1000 words every 100, counted per firing), and an
incremental sliding time window (processing time, 2 s every 0.5 s, one Counter per pane).
Prints words/s into the window bolt and what failed or timed out. A window holds each
tuple's ack until it leaves its last window, so the spout's max pending must cover what
the window holds: it is raised to 50,000 sentences here.

Memory (in this process, the engine with the executor's own containers): `--tuples`
tuples held in one window, full form (the Tuples) against incremental (per pane: one
accumulator and the ack ids folded per spout root), for words from sentences of 10 words
and for tuples that are each their own root.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections import Counter as Tally
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.word_count import Count as PlainCount
from bench.word_count import Sentences
from cluster.records import aggregate_components
from examples.word_count import SplitSentence
from topology import LocalCluster, TopologyBuilder
from topology.tuple import StreamInfo, Tuple
from topology.windowing import Count, Duration, Fold, WindowedBolt, WindowManager
from worker.acking import new_id
from worker.windowed import RootXor, TupleBag

NAME = "bench-windows"


class SlidingCount(WindowedBolt):
    outputs = ["word", "count"]

    def process_window(self, window: Any) -> None:
        counts = Tally(t.values[0] for t in window.tuples)
        for word, n in counts.most_common(3):
            self.emit([word, n])


class IncrementalCount(WindowedBolt):
    outputs = ["word", "count"]

    def initial(self) -> Tally[str]:
        return Tally()

    def add(self, acc: Tally[str], tup: Any) -> Tally[str]:
        acc[tup.values[0]] += 1
        return acc

    def merge(self, acc1: Tally[str], acc2: Tally[str]) -> Tally[str]:
        acc1.update(acc2)
        return acc1

    def process_window(self, window: Any) -> None:
        for word, n in window.result.most_common(3):
            self.emit([word, n])


FORMS = {
    "plain count bolt (reference)": lambda: PlainCount,
    "sliding count window, 1000 every 100": lambda: SlidingCount().with_window(Count(1000),
                                                                              Count(100)),
    "incremental time window, 2 s every 0.5 s": lambda: IncrementalCount().with_window(
        Duration(seconds=2), Duration(seconds=0.5)),
}


def build(form: str) -> Any:
    b = TopologyBuilder(NAME)
    b.set_spout("sentences", Sentences, parallelism=2)
    b.set_bolt("split", SplitSentence, parallelism=2).shuffle_grouping("sentences")
    b.set_bolt("count", FORMS[form](), parallelism=2).fields_grouping("split", ["word"])
    return b.build(config={"topology.workers": 2, "worker.heartbeat.frequency.secs": 0.5,
                           "topology.max.spout.pending": 50_000})


def run(form: str, seconds: float, warmup: float) -> dict[str, Any]:
    with LocalCluster() as cluster:
        cluster.submit(build(form))
        cluster.wait_running(NAME)
        time.sleep(warmup)  # benchmark warm-up period, not synchronisation
        t0, c0 = time.monotonic(), aggregate_components(cluster.status(NAME)["workers"].values())
        time.sleep(seconds)
        t1, c1 = time.monotonic(), aggregate_components(cluster.status(NAME)["workers"].values())
    words = c1["count"]["executed"] - c0["count"]["executed"]
    return {"form": form, "words_per_sec": round(words / (t1 - t0)),
            "sentences_acked_per_sec": round((c1["sentences"]["acked"]
                                              - c0["sentences"]["acked"]) / (t1 - t0)),
            "failed": c1["sentences"]["failed"], "timed_out": c1["sentences"]["timed_out"]}


def held_bytes(n: int, words_per_root: int, incremental: bool) -> float:
    """Bytes the engine holds per tuple with `n` word tuples in one (never fired) window."""
    spec = WindowedBolt().with_tumbling_window(Count(n + 1)).window_spec
    bolt = IncrementalCount()
    info = StreamInfo("split", "default", ["word"])
    words = [f"w{i}" for i in range(1000)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    manager = WindowManager(spec, fold=Fold.of(bolt) if incremental else None,
                            bag=RootXor if incremental else TupleBag)
    root = 0
    for i in range(n):
        if i % words_per_root == 0:
            root = new_id()
        manager.add(Tuple([words[i % 1000]], 1, info, (root, new_id())), 0.0)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    del manager
    return held / n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--tuples", type=int, default=1_000_000)
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    results: dict[str, Any] = {"throughput": [], "memory_bytes_per_tuple": {}}
    if not args.skip_throughput:
        results["throughput"] = [run(form, args.seconds, args.warmup) for form in FORMS]
    for per_root in (10, 1):
        for incremental in (False, True):
            key = f"{'incremental' if incremental else 'full'}, {per_root} per root"
            results["memory_bytes_per_tuple"][key] = round(
                held_bytes(args.tuples, per_root, incremental), 1)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results["throughput"]:
        print(f"{r['form']:45s} {r['words_per_sec']:>10,} words/s  "
              f"{r['sentences_acked_per_sec']:>8,} sentences acked/s  failed {r['failed']}  "
              f"timed out {r['timed_out']}")
    for key, b in results["memory_bytes_per_tuple"].items():
        print(f"{args.tuples:,} tuples in window, {key:24s} {b:8.1f} bytes/tuple  "
              f"({b * args.tuples / 2**20:,.0f} MB)")


if __name__ == "__main__":
    main()
