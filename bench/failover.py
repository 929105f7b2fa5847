"""Failover times of a real cluster: ZooKeeper, two nimbus and N supervisor processes.

    python bench/failover.py [--supervisors 2] [--slots 4] [--fast] [-c KEY=VALUE ...]

Starts a throwaway cluster on loopback (default: the config registry's production defaults;
`--fast` uses the test suite's short timeouts; `-c` overrides any key), runs an endless
reliable word count on 2 workers and measures, polling ZooKeeper every 20 ms:

1. `kill -9` of a worker -> the restarted worker (new pid, same slot) reports acked tuples;
2. SIGTERM of a supervisor (`systemctl stop`; its workers outlive it, as on real hosts) ->
   its orphaned worker's spouts stop emitting, its tasks are assigned to other supervisors,
   those workers report acked tuples, and the orphan exits (a new supervisor then takes the
   stopped one's place);
3. `kill -9` of a supervisor and its workers (a dead host) -> its tasks assigned to other
   supervisors, and -> those workers report acked tuples;
4. SIGKILL of the leader nimbus -> the standby accepts a submission.

"Reports acked tuples" is seen through the worker heartbeats the supervisors write to
ZooKeeper, so the figures include up to one `worker.heartbeat.frequency.secs`. An orphan
writes no heartbeat: its spouts are seen through the file each spout task appends the time to
every 20 ms (cluster_topologies, `topology.wc.progress.dir`). Everything (daemons, workers,
ZooKeeper, the directory) is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import cloudpickle  # noqa: E402
import cluster_topologies  # noqa: E402
import psutil  # noqa: E402
from cluster_fixtures import TEST_SETTINGS, ProcessCluster  # noqa: E402
from cluster_topologies import acked_by_worker, spout_runs, write_topology_file  # noqa: E402
from polling import wait_for  # noqa: E402

from cluster.config import Config, parse_override  # noqa: E402
from cluster.zkserver import ZooKeeperServer  # noqa: E402
from nimbus.client import NimbusClient  # noqa: E402
from topology.errors import SquallError  # noqa: E402

POLL = 0.02
ORPHAN_WAIT = 60.0  # how long an orphan is watched before it is reported as not exiting
SHOWN = ["nimbus.monitor.freq.secs", "nimbus.worker.timeout.secs",
         "nimbus.supervisor.timeout.secs", "nimbus.session.timeout.secs",
         "zookeeper.session.timeout.secs", "supervisor.monitor.freq.secs",
         "supervisor.heartbeat.frequency.secs", "supervisor.worker.timeout.secs",
         "worker.heartbeat.frequency.secs", "worker.orphan.timeout.secs"]


def until(pred: Callable[[], Any], timeout: float, what: str) -> Any:
    try:
        return wait_for(pred, timeout, what, every=POLL)
    except AssertionError as e:
        raise SystemExit(f"failover: {e}") from None


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


class Bench:
    def __init__(self, c: ProcessCluster, tid: str, progress: Path) -> None:
        self.c = c
        self.tid = tid
        self.progress = progress

    def heartbeats(self) -> dict[str, dict[str, Any]]:
        return self.c.view.worker_heartbeats(self.tid)

    def slots(self) -> list[tuple[str, str, int]]:
        a = self.c.view.assignment(self.tid) or {}
        return [(w["supervisor"], w["host"], w["port"]) for w in a.get("workers", [])]

    def acking(self, key: str, not_pid: int | None = None) -> bool:
        hb = self.heartbeats().get(key) or {}
        return hb.get("pid") not in (None, not_pid) and acked_by_worker({key: hb})[key] > 0

    def steady(self) -> None:
        """Every assigned worker acking."""
        until(lambda: self.slots() and all(self.acking(f"{h}:{p}") for _, h, p in self.slots()),
              120, "all workers acking")

    def worker_kill(self) -> float:
        self.steady()
        _, host, port = self.slots()[0]
        key = f"{host}:{port}"
        pid = int(self.heartbeats()[key]["pid"])
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        until(lambda: self.acking(key, not_pid=pid), 60, "restarted worker acking")
        return time.monotonic() - t0

    def supervisor_stop(self) -> dict[str, float | None]:
        """SIGTERM a supervisor with a worker: when its orphan's spouts stop, its work moves,
        the moved workers ack and the orphan exits (None: not within ORPHAN_WAIT)."""
        self.steady()
        victim = next(d for d in self.c.supervisors if d.alive() and self.c.worker_pids(d))
        sid = self.c.supervisor_id(victim)
        (orphan,) = self.c.worker_pids(victim).values()
        t0 = time.monotonic()
        wall0 = time.time()
        victim.terminate()
        until(lambda: self.slots() and all(s != sid for s, _, _ in self.slots()), 120,
              "tasks reassigned")
        moved = time.monotonic() - t0
        until(lambda: all(self.acking(f"{h}:{p}") and
                          self.heartbeats()[f"{h}:{p}"]["pid"] != orphan
                          for _, h, p in self.slots()), 120, "moved workers acking")
        acking = time.monotonic() - t0
        try:
            wait_for(lambda: not alive(orphan), max(0.0, ORPHAN_WAIT - (time.monotonic() - t0)),
                     "the orphan exiting", every=POLL)
            exited: float | None = time.monotonic() - t0
        except AssertionError:
            exited = None
        last = max((max(ts) for (_, pid), ts in spout_runs(self.progress).items()
                    if pid == orphan), default=None)
        still_emitting = last is not None and alive(orphan) and time.time() - last < 1.0
        paused = None if last is None or still_emitting else last - wall0
        self.c.start_supervisor(None, False)  # its place taken by a new one
        self.c.wait_registered(60)
        return {"paused": paused, "moved": moved, "acking": acking, "exited": exited}

    def supervisor_kill(self) -> tuple[float, float]:
        self.steady()
        victim = next(d for d in self.c.supervisors if d.alive() and self.c.worker_pids(d))
        sid = self.c.supervisor_id(victim)
        pids = list(self.c.worker_pids(victim).values())
        t0 = time.monotonic()
        victim.kill()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        until(lambda: self.slots() and all(s != sid for s, _, _ in self.slots()), 120,
              "tasks reassigned")
        moved = time.monotonic() - t0
        until(lambda: all(self.acking(f"{h}:{p}") and
                          self.heartbeats()[f"{h}:{p}"]["pid"] not in pids
                          for _, h, p in self.slots()), 120, "moved workers acking")
        return moved, time.monotonic() - t0

    def nimbus_kill(self) -> float:
        self.steady()
        topology = cluster_topologies.finite(name="after-failover", workers=1)
        cloudpickle.register_pickle_by_value(cluster_topologies)
        blob = cloudpickle.dumps({"topology": topology, "overrides": {}})
        client = NimbusClient.from_config(self.c.config)
        leader = self.c.leader_daemon()
        t0 = time.monotonic()
        leader.kill()
        while True:
            try:
                client.submit(blob, "after-failover", {})
                return time.monotonic() - t0
            except SquallError:
                if time.monotonic() - t0 > 120:
                    raise
                time.sleep(POLL)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supervisors", type=int, default=2)
    p.add_argument("--slots", type=int, default=4, help="slots per supervisor")
    p.add_argument("--fast", action="store_true", help="the test suite's short timeouts")
    p.add_argument("-c", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    settings = dict(TEST_SETTINGS) if args.fast else {}
    settings.update(parse_override(o) for o in args.overrides)

    zk = ZooKeeperServer().start()
    c = ProcessCluster(zk, settings, slots_per_supervisor=args.slots, log_level="WARNING",
                       base={})
    progress = c.dir / "progress"
    progress.mkdir()
    try:
        conf = Config.load(str(c.config_path))
        print("settings: " + ", ".join(f"{k}={conf[k]:g}" for k in SHOWN))
        print(f"cluster: 2 nimbus, {args.supervisors} supervisors x {args.slots} slots, "
              f"endless word count on 2 workers (max.spout.pending 50)")
        c.start(nimbuses=2, supervisors=args.supervisors, timeout=60, kill_workers=False)
        path = write_topology_file(c.dir / "topo", "endless", name="wc-failover")
        c.cli("submit", path, "--wait", "--timeout", "120",
              "-c", f"topology.wc.progress.dir={progress}", timeout=150)
        tid = c.cli_json("status", "wc-failover")["id"]
        b = Bench(c, tid, progress)

        t = b.worker_kill()
        print(f"worker kill -9 -> restarted worker acking again:          {t:6.2f} s  "
              "(aim < 2 s)")
        stop = b.supervisor_stop()
        print(f"supervisor SIGTERM -> its orphan's last spout emit:        {_secs(stop['paused'])}")
        print(f"supervisor SIGTERM -> tasks assigned elsewhere:            {_secs(stop['moved'])}")
        print(f"supervisor SIGTERM -> moved workers acking again:          {_secs(stop['acking'])}")
        print(f"supervisor SIGTERM -> the orphan exited:                   {_secs(stop['exited'])}")
        moved, acking = b.supervisor_kill()
        print(f"supervisor+workers kill -9 -> tasks assigned elsewhere:    {moved:6.2f} s")
        print(f"supervisor+workers kill -9 -> moved workers acking again:  {acking:6.2f} s  "
              "(aim < 10 s)")
        t = b.nimbus_kill()
        print(f"leader nimbus SIGKILL -> standby accepted a submission:    {t:6.2f} s  "
              "(aim < 10 s)")
    finally:
        stray = c.stop()
        zk.stop(remove=True)
        if stray:
            print(f"cleanup: killed {len(stray)} leftover process(es): {stray}")
        left = c.leftovers()
        print("cleanup: nothing left running" if not left else f"cleanup: STILL RUNNING {left}")
    return 0


def _secs(value: float | None) -> str:
    return f"{value:6.2f} s" if value is not None else f"not within {ORPHAN_WAIT:g} s"


if __name__ == "__main__":
    sys.exit(main())
