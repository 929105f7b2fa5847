"""Word count throughput and latency in local mode with 2 workers.

    python bench/word_count.py [--seconds 20] [--warmup 5]

Prints, for acking on and off, the sustained rate of words counted (the count bolt's
executed tuples per second between the end of the warm-up and the end of the run), what
was lost (failed or timed-out spout tuples), the workers' memory, and the complete latency
p50/p99 measured at a fixed spout rate of half the acking-on throughput.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from cluster.records import Histogram, aggregate_components
from examples.word_count import SENTENCES, SplitSentence
from topology import Bolt, LocalCluster, Spout, TopologyBuilder


class Sentences(Spout):
    """Reliable (when acking) sentence spout; `topology.bench.rate` caps sentences/s per task."""

    outputs = ["sentence"]

    def open(self, conf: Any, context: Any) -> None:
        self.reliable = conf.get("topology.acker.executors") != 0
        self.rate = conf.get("topology.bench.rate")
        self.sentences = itertools.cycle(SENTENCES)
        self.ids = itertools.count()
        self.pending: dict[int, str] = {}
        self.replay: list[int] = []
        self.started = time.monotonic()
        self.sent = 0

    def next_tuple(self) -> None:
        if self.rate:
            allowed = (time.monotonic() - self.started) * self.rate
            if self.sent >= allowed:
                return
        self.sent += 1
        if not self.reliable:
            self.emit([next(self.sentences)])
            return
        if self.replay:
            msg_id = self.replay.pop()
        else:
            msg_id = next(self.ids)
            self.pending[msg_id] = next(self.sentences)
        self.emit([self.pending[msg_id]], msg_id=msg_id)

    def ack(self, msg_id: int) -> None:
        del self.pending[msg_id]

    def fail(self, msg_id: int) -> None:
        self.replay.append(msg_id)


class Count(Bolt):
    outputs = ["word", "count"]

    def prepare(self, conf: Any, context: Any) -> None:
        self.counts: Counter[str] = Counter()

    def process(self, tup: Any) -> None:
        self.counts[tup.values[0]] += 1


def build(acking: bool, rate: float | None = None) -> Any:
    b = TopologyBuilder("bench-word-count")
    b.set_spout("sentences", Sentences, parallelism=2)
    b.set_bolt("split", SplitSentence, parallelism=2).shuffle_grouping("sentences")
    b.set_bolt("count", Count, parallelism=2).fields_grouping("split", ["word"])
    conf: dict[str, Any] = {"topology.workers": 2, "worker.heartbeat.frequency.secs": 0.5}
    if acking:
        conf["topology.max.spout.pending"] = 4000
    else:
        conf["topology.acker.executors"] = 0
    if rate:
        conf["topology.bench.rate"] = rate
    return b.build(config=conf)


def snapshot(cluster: LocalCluster) -> tuple[float, dict[str, Any]]:
    status = cluster.status("bench-word-count")
    return time.monotonic(), aggregate_components(status["workers"].values())


def run(acking: bool, seconds: float, warmup: float, rate: float | None = None) -> dict[str, Any]:
    with LocalCluster() as cluster:
        cluster.submit(build(acking, rate))
        cluster.wait_running("bench-word-count")
        procs = [psutil.Process(pid) for pid in cluster.worker_pids("bench-word-count").values()]
        time.sleep(warmup)  # benchmark warm-up period, not synchronisation
        t0, c0 = snapshot(cluster)
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in procs)
        time.sleep(seconds)
        t1, c1 = snapshot(cluster)
        cpu1 = sum(sum(p.cpu_times()[:2]) for p in procs)
        rss = sum(p.memory_info().rss for p in procs)
    words = c1["count"]["executed"] - c0["count"]["executed"]
    latency = Histogram()
    latency.merge(c1["sentences"]["complete_latency"])
    before = c0["sentences"]["complete_latency"]
    for b, n in before.buckets.items():
        latency.buckets[b] -= n
    latency.count -= before.count
    result = {
        "acking": acking,
        "spout_rate": rate,
        "words_per_sec": round(words / (t1 - t0)),
        "sentences_per_sec": round((c1["sentences"]["emitted"] - c0["sentences"]["emitted"])
                                   / (t1 - t0)),
        "failed": c1["sentences"]["failed"],
        "timed_out": c1["sentences"]["timed_out"],
        "workers_rss_mb": round(rss / 2**20, 1),
        # CPU the workers spent per word counted: less sensitive to other load on the box
        "worker_cpu_us_per_word": round((cpu1 - cpu0) / max(words, 1) * 1e6, 3),
    }
    if acking:
        result["complete_latency_ms"] = {
            f"p{p}": round((latency.percentile(p) or 0) * 1000, 2) for p in (50, 90, 99)
        }
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    results = []
    on = run(True, args.seconds, args.warmup)
    results.append(on)
    results.append(run(False, args.seconds, args.warmup))
    half = on["sentences_per_sec"] / 2 / 2  # half the load, shared by 2 spout tasks
    results.append(run(True, args.seconds, args.warmup, rate=half))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        what = "acking on " if r["acking"] else "acking off"
        if r["spout_rate"]:
            what = f"acking on, spout capped at {2 * r['spout_rate']:,.0f} sentences/s"
        line = (f"{what:45s} {r['words_per_sec']:>10,} words/s  "
                f"({r['worker_cpu_us_per_word']} CPU us/word)  failed {r['failed']}  "
                f"timed out {r['timed_out']}  workers RSS {r['workers_rss_mb']} MB")
        if "complete_latency_ms" in r:
            lat = r["complete_latency_ms"]
            line += f"  complete latency p50 {lat['p50']} ms p99 {lat['p99']} ms"
        print(line)


if __name__ == "__main__":
    main()
