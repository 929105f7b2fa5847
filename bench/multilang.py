"""Word count with a pystorm split bolt vs the same topology in native Python, local mode.

    python bench/multilang.py [--seconds 15] [--warmup 5] [--json]

The topology is bench/word_count.py's (2 sentence spouts -> 2 split -> 2 count, 2 workers,
acking on, max.spout.pending 4000) with the split bolt either native or
`ShellBolt([python, "split_sentence.py"])`: examples/multilang/split_sentence.py, a pystorm
bolt as it runs under Storm. Prints, for each, the sentences the split bolt took per second
(tuples into the bolt), the words it emitted per second, the CPU the workers and the
subprocesses (the pystorm components) spent per sentence, and what failed. Storm's own
ShellBolt manages about 1-1.5 k tuples/s with Python components.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from bench.word_count import Count, Sentences, snapshot
from examples.word_count import SplitSentence
from topology import LocalCluster, TopologyBuilder
from topology.multilang import ShellBolt

ROOT = Path(__file__).resolve().parent.parent
NAME = "bench-word-count"  # bench.word_count.snapshot reads this topology


def build(shell: bool, max_pending: int | None) -> Any:
    b = TopologyBuilder(NAME)
    b.set_spout("sentences", Sentences, parallelism=2)
    split: Any = SplitSentence
    if shell:
        split = ShellBolt([sys.executable, "split_sentence.py"], outputs=["word"],
                          cwd=str(ROOT / "examples" / "multilang"))
    b.set_bolt("split", split, parallelism=2).shuffle_grouping("sentences")
    b.set_bolt("count", Count, parallelism=2).fields_grouping("split", ["word"])
    conf: dict[str, Any] = {"topology.workers": 2, "worker.heartbeat.frequency.secs": 0.5,
                            "topology.max.spout.pending": 4000}
    if max_pending:
        conf["topology.shellbolt.max.pending"] = max_pending
    return b.build(config=conf)


def cpu(procs: list[psutil.Process]) -> tuple[float, float]:
    """CPU seconds of the workers, and of their subprocesses (the shell components)."""
    workers = children = 0.0
    for p in procs:
        try:
            workers += sum(p.cpu_times()[:2])
            for child in p.children(recursive=True):
                children += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return workers, children


def run(shell: bool, seconds: float, warmup: float, max_pending: int | None = None
        ) -> dict[str, Any]:
    with LocalCluster() as cluster:
        cluster.submit(build(shell, max_pending))
        cluster.wait_running(NAME)
        procs = [psutil.Process(pid) for pid in cluster.worker_pids(NAME).values()]
        time.sleep(warmup)  # benchmark warm-up period, not synchronisation
        t0, c0 = snapshot(cluster)
        cpu0 = cpu(procs)
        time.sleep(seconds)
        t1, c1 = snapshot(cluster)
        cpu1 = cpu(procs)
    took = t1 - t0
    sentences = c1["split"]["executed"] - c0["split"]["executed"]
    words = c1["count"]["executed"] - c0["count"]["executed"]
    return {
        "split": "pystorm ShellBolt" if shell else "native",
        "shellbolt_max_pending": max_pending or (1000 if shell else None),
        "sentences_per_sec": round(sentences / took),
        "words_per_sec": round(words / took),
        "worker_cpu_us_per_sentence": round((cpu1[0] - cpu0[0]) / max(sentences, 1) * 1e6, 1),
        "subprocess_cpu_us_per_sentence": round((cpu1[1] - cpu0[1]) / max(sentences, 1) * 1e6,
                                                1),
        "failed": c1["sentences"]["failed"],
        "timed_out": c1["sentences"]["timed_out"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--warmup", type=float, default=5.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    results = [run(False, args.seconds, args.warmup), run(True, args.seconds, args.warmup),
               run(True, args.seconds, args.warmup, max_pending=100)]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        what = r["split"] + (f" (max.pending {r['shellbolt_max_pending']})"
                             if r["shellbolt_max_pending"] else "")
        print(f"split {what:36s} {r['sentences_per_sec']:>8,} sentences/s into the bolt  "
              f"{r['words_per_sec']:>9,} words/s  CPU us/sentence: workers "
              f"{r['worker_cpu_us_per_sentence']:>6}, subprocesses "
              f"{r['subprocess_cpu_us_per_sentence']:>6}  "
              f"failed {r['failed']}  timed out {r['timed_out']}")


if __name__ == "__main__":
    main()
