"""`python -m worker`: the worker process a supervisor or a LocalCluster starts."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping
from types import FrameType
from typing import Any

import cloudpickle

from cluster import logsink
from cluster.resources import CODE_DIR_KEY, open_envelope
from worker.control import ControlClient
from worker.executor import Executor
from worker.parent import ParentLink
from worker.process import Worker, setting
from worker.wire import secret_key

log = logging.getLogger("worker")

SECRET_ENV = "SQUALL_WORKER_SECRET"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    p.add_argument("--topology-id", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--control", required=True, help="the parent's control endpoint")
    p.add_argument("--code", required=True, help="file holding the cloudpickled topology")
    p.add_argument("--parent-pid", type=int, default=None,
                   help="exit when this process is no longer our parent (local mode)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-file", default=None,
                   help="log here, rotated (cluster.logsink); default: stderr as it is")
    p.add_argument("--log-max-bytes", type=int, default=logsink.MAX_BYTES)
    p.add_argument("--log-backups", type=int, default=logsink.BACKUPS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    running: list[Worker] = []  # the worker, once built: says which task runs (log tags)

    def current_task() -> str | None:
        loop = running[0].loop if running else None
        task = loop.current if loop is not None else None
        if task is None:
            return task_in_user_call() if running else None
        return f"{task.component}:{task.task}"

    logsink.install(args.log_file, args.port, args.log_level, current_task,
                    args.log_max_bytes, args.log_backups)
    secret = os.environ.pop(SECRET_ENV, "")
    if not secret:
        log.error("worker %s:%d: no cluster secret in $%s", args.host, args.port, SECRET_ENV)
        return 2
    key = secret_key(secret)
    control = ControlClient(args.control, key, args.host, args.port)
    try:
        package = read_code(args.code)
        conf = package["conf"]
        link = make_link(control, conf, args)
        worker = Worker(package["topology"], conf, args.topology_id, args.host, args.port, key,
                        link)
        running.append(worker)
    except Exception as e:  # e.g. a module the topology imports is missing on this host
        log.exception("worker %s:%d: could not start", args.host, args.port)
        report_start_failure(control, args, e)
        return 1

    def stop(signum: int, frame: object) -> None:
        worker.request_stop(0, f"signal {signum}")  # the link's thread enforces the deadline

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    link.start(worker.request_stop, worker.stall)
    # The hot path allocates a few short-lived tuples per tuple, none of them in cycles:
    # with the default threshold (700) the young generation is collected every few
    # hundred tuples for nothing. Collect less often and leave start-up objects alone.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    return worker.run()


def read_code(path: str) -> dict[str, Any]:
    """The code package at `path`: {"topology", "conf"}. When the supervisor unpacked a
    code directory shipped with it (cluster.resources), the conf names that directory as
    `topology.code.dir`, where the shell components run."""
    with open(path, "rb") as f:
        blob = f.read()
    envelope = open_envelope(blob)
    if envelope is None:
        package: dict[str, Any] = cloudpickle.loads(blob)
        return package
    package = cloudpickle.loads(envelope["code"])
    code_dir = envelope.get("code_dir")
    if code_dir is not None:
        if not os.path.isdir(code_dir):
            raise FileNotFoundError(f"the topology's code directory {code_dir} is missing")
        package["conf"] = {**package["conf"], CODE_DIR_KEY: code_dir}
    return package


_CALL_USER = Executor.call_user.__code__


def task_in_user_call() -> str | None:
    """The task whose user code the loop's thread is in outside the loop's task slices (a
    spout's open, a bolt's prepare, ack/fail callbacks, ticks, cleanup): found by looking
    up the stack for `Executor.call_user`, which every such call goes through. Only asked
    for records made on the loop's thread while no task slice runs, which are few. (A
    stopgap: with the loop's `current` set around those calls too, this goes.)"""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code is _CALL_USER:
            executor = frame.f_locals.get("self")
            return (f"{executor.component}:{executor.task}"
                    if isinstance(executor, Executor) else None)
        frame = frame.f_back
    return None


def make_link(control: ControlClient, conf: Mapping[str, Any],
              args: argparse.Namespace) -> ParentLink:
    link = ParentLink(
        control, f"{args.host}:{args.port}",
        heartbeat_every=float(setting(conf, "worker.heartbeat.frequency.secs")),
        pause_after=float(setting(conf, "nimbus.supervisor.timeout.secs")) / 2,
        orphan_after=float(setting(conf, "worker.orphan.timeout.secs")),
        stop_timeout=float(setting(conf, "supervisor.worker.stop.timeout.secs")),
        parent_pid=args.parent_pid)
    link.hear_signals()
    return link


def report_start_failure(control: ControlClient, args: argparse.Namespace,
                         error: Exception) -> None:
    """Tell the parent why this worker cannot start, as an error of the pseudo-component
    "__worker", so that `squall status` and the dashboard show it (not only the log)."""
    control.send({
        "type": "heartbeat", "topology_id": args.topology_id, "host": args.host,
        "port": args.port, "pid": os.getpid(), "version": None, "time": time.time(),
        "state": "failed", "executors": [],
        "errors": [{"component": "__worker", "task": -1, "time": time.time(),
                    "host": args.host, "port": args.port,
                    "error": f"worker could not start: {type(error).__name__}: {error}",
                    "traceback": "".join(traceback.format_exception(error))}],
    })
    control.close(linger_ms=1000)


if __name__ == "__main__":
    sys.exit(main())
