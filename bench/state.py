"""Exactly-once state: what checkpointing costs, and how long recovery takes.

    python bench/state.py [--seconds 10] [--warmup 3] [--providers sqlite,redis]

Runs word count in local mode with 2 workers and acking on (2 sentence spouts, 2 split, 2
count), first with a plain count bolt, then with a `StatefulBolt` count checkpointed every
1 s and every 100 ms, per state provider (redis: a throwaway server started with
deploy/start-redis.sh). Prints the sustained words/s of each and its cost against the plain
one. Then, with sqlite at 1 s, kills the worker that does not host the coordinator with
kill -9 and reports the time until a checkpoint commits again (recovery).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import psutil  # noqa: E402

from bench.word_count import Count, Sentences  # noqa: E402
from cluster.records import aggregate_components  # noqa: E402
from examples.word_count import SplitSentence  # noqa: E402
from topology import LocalCluster, TopologyBuilder  # noqa: E402
from topology.state import KeyValueState, StatefulBolt  # noqa: E402

NAME = "bench-state"


class StatefulCount(StatefulBolt):
    outputs = ["word", "count"]

    def init_state(self, state: KeyValueState) -> None:
        self.counts = state

    def process(self, tup: Any) -> None:
        word = tup.values[0]
        self.counts[word] = self.counts.get(word, 0) + 1


def build(stateful: bool, conf: dict[str, Any]) -> Any:
    b = TopologyBuilder(NAME)
    b.set_spout("sentences", Sentences, parallelism=2)
    b.set_bolt("split", SplitSentence, parallelism=2).shuffle_grouping("sentences")
    b.set_bolt("count", StatefulCount if stateful else Count, parallelism=2) \
        .fields_grouping("split", ["word"])
    return b.build(config={"topology.workers": 2, "worker.heartbeat.frequency.secs": 0.2,
                           "topology.max.spout.pending": 4000, **conf})


def components(cluster: LocalCluster) -> tuple[float, dict[str, Any]]:
    return time.monotonic(), aggregate_components(cluster.status(NAME)["workers"].values())


def checkpoint(cluster: LocalCluster) -> dict[str, Any] | None:
    for worker in cluster.status(NAME)["workers"].values():
        for executor in worker.get("executors", []):
            if isinstance(executor, dict) and isinstance(executor.get("checkpoint"), dict):
                return dict(executor["checkpoint"])
    return None


def throughput(stateful: bool, conf: dict[str, Any], seconds: float, warmup: float
               ) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-state-") as local, \
            LocalCluster({"local.dir": local}) as cluster:
        cluster.submit(build(stateful, conf))
        cluster.wait_running(NAME)
        procs = [psutil.Process(pid) for pid in cluster.worker_pids(NAME).values()]
        time.sleep(warmup)  # benchmark warm-up period, not synchronisation
        t0, c0 = components(cluster)
        cp0 = checkpoint(cluster) or {}
        cpu0 = sum(sum(p.cpu_times()[:2]) for p in procs)
        time.sleep(seconds)
        t1, c1 = components(cluster)
        cp1 = checkpoint(cluster) or {}
        cpu1 = sum(sum(p.cpu_times()[:2]) for p in procs)
    words = c1["count"]["executed"] - c0["count"]["executed"]
    return {"stateful": stateful, "provider": conf.get("topology.state.provider"),
            "interval_ms": conf.get("topology.state.checkpoint.interval.ms"),
            "words_per_sec": round(words / (t1 - t0)),
            # CPU the workers spent per word: less sensitive to other load on the machine
            "worker_cpu_us_per_word": round((cpu1 - cpu0) / max(words, 1) * 1e6, 2),
            "checkpoints": (cp1.get("txid") or 0) - (cp0.get("txid") or 0),
            "rolled_back": cp1.get("failed"), "failed": c1["sentences"]["failed"]}


def recovery(conf: dict[str, Any]) -> dict[str, Any]:
    """Seconds from kill -9 of the worker without the coordinator until a checkpoint commits."""
    with tempfile.TemporaryDirectory(prefix="bench-state-") as local, \
            LocalCluster({"local.dir": local}) as cluster:
        cluster.submit(build(True, conf))
        cluster.wait_running(NAME)
        time.sleep(3)  # let checkpoints commit first
        host = next(int(port) for port, w in cluster.status(NAME)["workers"].items()
                    if any(isinstance(e, dict) and "checkpoint" in e
                           for e in w.get("executors", [])))
        port, pid = next((p, q) for p, q in cluster.worker_pids(NAME).items() if p != host)
        before = (checkpoint(cluster) or {}).get("txid") or 0
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        deadline = killed + 60
        while time.monotonic() < deadline:
            cp = checkpoint(cluster) or {}
            if (cp.get("txid") or 0) > before + 1:  # one may have been committing already
                return {"recovery_secs": round(time.monotonic() - killed, 2),
                        "rolled_back": cp.get("failed")}
            time.sleep(0.02)
    return {"recovery_secs": None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--providers", default="sqlite,redis")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    results = [throughput(False, {}, args.seconds, args.warmup)]
    redis = None
    try:
        for provider in args.providers.split(","):
            conf: dict[str, Any] = {"topology.state.provider": provider}
            if provider == "redis":
                from redis_fixtures import RedisServer

                redis = RedisServer().start()
                conf["topology.state.redis.url"] = redis.url
            for interval in (1000, 100):
                conf["topology.state.checkpoint.interval.ms"] = interval
                results.append(throughput(True, dict(conf), args.seconds, args.warmup))
        results.append(recovery({"topology.state.provider": "sqlite",
                                 "topology.state.checkpoint.interval.ms": 1000,
                                 "topology.message.timeout.secs": 10}))
    finally:
        if redis is not None:
            redis.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    plain = results[0]["words_per_sec"]
    plain_cpu = results[0]["worker_cpu_us_per_word"]
    for r in results:
        if "recovery_secs" in r:
            print(f"kill -9 of a worker (sqlite, 1 s): a checkpoint commits again after "
                  f"{r['recovery_secs']} s")
            continue
        what = (f"stateful, {r['provider']} every {r['interval_ms']} ms" if r["stateful"]
                else "plain (acking on)")
        cost = "" if not r["stateful"] else (
            f"  cost {100 * (1 - r['words_per_sec'] / plain):.0f}% of words/s, "
            f"{100 * (r['worker_cpu_us_per_word'] / plain_cpu - 1):.0f}% more CPU/word")
        print(f"{what:34s} {r['words_per_sec']:>9,} words/s  {r['worker_cpu_us_per_word']} CPU "
              f"us/word{cost}  checkpoints {r.get('checkpoints', '-')}  failed {r['failed']}")


if __name__ == "__main__":
    main()
