"""A worker's own log (cluster.logsink): records tagged with the running task, prints as
records, size-bounded rotation, and all of it on a real worker process."""

from __future__ import annotations

import io
import logging
import os
import re
import sys
import threading
import venv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from polling import wait_for

from cluster.config import Config
from cluster.logsink import LINE_FORMAT, NO_TASK, LineWriter, TaskTagFilter, WorkerLogHandler
from cluster.logtags import LineLabeler
from topology import Bolt, Spout, TopologyBuilder
from topology.model import Topology
from worker.control import ControlServer
from worker.launcher import free_ports, spawn_worker
from worker.wire import secret_key

HOST = "127.0.0.1"
SECRET = "logs-worker-tests"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def private_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(f"test_logs_worker.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


# --- pure pieces ---------------------------------------------------------------------------------


def test_records_carry_the_task_running_on_the_loop_thread_only() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(LINE_FORMAT.format(port=6700)))
    running: list[str | None] = ["split:4"]
    handler.addFilter(TaskTagFilter(lambda: running[0], threading.get_ident()))
    log = private_logger("tags", handler)
    log.info("in a task")
    thread = threading.Thread(target=lambda: log.info("from another thread"))
    thread.start()
    thread.join()
    running[0] = None
    log.info("between tasks")
    log.info("told", extra={"task_tag": "count:7"})
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 4)[4] for line in lines] == [
        "split:4 test_logs_worker.tags: in a task",
        f"{NO_TASK} test_logs_worker.tags: from another thread",
        f"{NO_TASK} test_logs_worker.tags: between tasks",
        "count:7 test_logs_worker.tags: told"]
    assert all(line.split(" ")[3] == "worker[6700]" for line in lines)


def test_a_line_writer_makes_one_record_per_line_and_per_thread() -> None:
    records = Records()
    writer = LineWriter(private_logger("lines", records), logging.INFO, 1)
    writer.write("a")
    writer.write("b\nc\n")
    thread = threading.Thread(target=lambda: (writer.write("other "), writer.write("x\n")))
    writer.write("d")
    thread.start()
    thread.join()
    assert records.messages == ["ab", "c", "other x"]  # "d" waits for its line's end
    print("e", 1, file=writer)
    writer.flush()  # nothing left: print ended the line
    assert records.messages == ["ab", "c", "other x", "de 1"]
    writer.write("no newline")
    writer.flush()
    assert records.messages[-1] == "no newline"
    writer.write("100% sure, %s %d\n")  # printed text is never %-formatted
    assert records.messages[-1] == "100% sure, %s %d"
    writer.buffer.write("bytes too, é\n".encode())  # what code writing to .buffer does
    assert records.messages[-1] == "bytes too, é"
    assert writer.fileno() == 1 and not writer.isatty()


def test_logging_that_writes_to_the_writer_goes_to_its_fd_not_round_again() -> None:
    read_fd, write_fd = os.pipe()
    try:
        writer = LineWriter(logging.getLogger("unused"), logging.INFO, write_fd)

        class Echo(logging.Handler):  # what logging's own error report does: sys.stderr
            def emit(self, record: logging.LogRecord) -> None:
                writer.write(f"echo {record.getMessage()}\n")

        writer.logger = private_logger("loop", Echo())
        writer.write("hello\n")
        assert os.read(read_fd, 100) == b"echo hello\n"
    finally:
        os.close(read_fd)
        os.close(write_fd)


def test_the_handler_rotates_at_its_size_and_keeps_its_backups(tmp_path: Path) -> None:
    path = tmp_path / "t" / "worker-6700.log"
    handler = WorkerLogHandler(path, 4096, 2, redirect_fds=False)
    try:
        log = private_logger("rotate", handler)
        for i in range(300):
            log.info("%04d %s", i, "x" * 60)
    finally:
        handler.close()
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["worker-6700.log", "worker-6700.log.1", "worker-6700.log.2"]
    assert all(p.stat().st_size <= 4096 for p in path.parent.iterdir())
    assert path.read_text().splitlines()[-1].startswith("0299 ")


@pytest.mark.parametrize("max_bytes, backups", [(100, 2), (4096, 0)])
def test_bounds_that_would_not_bound_are_refused(tmp_path: Path, max_bytes: int,
                                                 backups: int) -> None:
    with pytest.raises(ValueError, match=f"got {max_bytes} and {backups}"):
        WorkerLogHandler(tmp_path / "w.log", max_bytes, backups, redirect_fds=False)


# --- a real worker -------------------------------------------------------------------------------

TOTAL = 300
PAD = "x" * 40


class Numbers(Spout):
    outputs = ["n"]

    def open(self, conf: Any, context: Any) -> None:
        self.n = 0

    def next_tuple(self) -> None:
        if self.n < TOTAL:
            self.n += 1
            self.emit([self.n])


class Shout(Bolt):
    def process(self, tup: Any) -> None:
        n = tup.values[0]
        print(f"shout {n} {PAD}")
        os.write(1, f"raw {n}\n".encode())  # below Python: straight to the fd


class Calm(Bolt):
    def process(self, tup: Any) -> None:
        logging.getLogger("calmapp").info("calm %d %s", tup.values[0], PAD)


def noisy_topology() -> Topology:
    b = TopologyBuilder("noisy")
    b.set_spout("numbers", Numbers())
    b.set_bolt("shout", Shout(), parallelism=2).shuffle_grouping("numbers")
    b.set_bolt("calm", Calm()).shuffle_grouping("numbers")
    return b.build(config={"topology.workers": 1, "topology.acker.executors": 0})


class StandIn:
    """What a supervisor is to one worker on the control channel: it answers each heartbeat
    with the assignment (all tasks on this worker) or {"type": "supervised"}."""

    def __init__(self, tmp: Path, topology: Topology, max_bytes: int, backups: int) -> None:
        self.server = ControlServer(f"ipc://{tmp}/control.sock", secret_key(SECRET))
        conf = Config.from_mapping({}).with_overrides(
            {"worker.heartbeat.frequency.secs": 0.2, **topology.config}).to_dict()
        code = tmp / "topology.code"
        with open(code, "wb") as f:
            cloudpickle.dump({"topology": topology, "conf": conf}, f)
        (self.port,) = free_ports(1)
        self.tasks = topology.component_tasks(conf)
        self.assignment = {"version": 1, "topology_id": "noisy-1", "active": True,
                           "tasks": {str(t): [HOST, self.port] for ts in self.tasks.values()
                                     for t in ts}}
        self.log = tmp / "logs" / "noisy-1" / f"worker-{self.port}.log"
        self.closed = False
        self.last: dict[str, Any] = {}
        self.proc = spawn_worker(topology_id="noisy-1", host=HOST, port=self.port,
                                 control=self.server.endpoint, code_path=str(code),
                                 secret=SECRET, log_path=str(self.log), sys_path=sys.path,
                                 log_max_bytes=max_bytes, log_backups=backups)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while not self.closed:
            for worker, message in self.server.poll(20):
                if message.get("type") != "heartbeat":
                    continue
                self.last = message
                if message.get("version") != self.assignment["version"]:
                    self.server.send(worker, {"type": "assignment",
                                              "assignment": self.assignment})
                else:
                    self.server.send(worker, {"type": "supervised"})

    def executed(self, component: str) -> int:
        """Tuples `component`'s tasks have processed, by the worker's last heartbeat."""
        return sum(e["executed"] for e in self.last.get("executors", ())
                   if e["component"] == component)

    def files(self) -> list[Path]:
        """The log's files, oldest first."""
        return sorted(self.log.parent.glob(self.log.name + "*"),
                      key=lambda p: -int(p.name.rsplit(".", 1)[1]) if p.suffix != ".log" else 0)

    def text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.files())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.closed = True
        self.thread.join(5)
        self.server.close()


@pytest.fixture
def noisy(tmp_path: Path) -> Iterator[StandIn]:
    stand_in = StandIn(tmp_path, noisy_topology(), 8192, 2)
    try:
        yield stand_in
    except BaseException:
        sys.stderr.write(stand_in.text()[-5000:])
        raise
    finally:
        stand_in.close()


@pytest.mark.timeout(90)
def test_a_real_worker_rotates_its_log_and_tags_every_line(noisy: StandIn) -> None:
    wait_for(lambda: noisy.executed("shout") == noisy.executed("calm") == TOTAL, 60,
             "every tuple processed")
    assert f"shout {TOTAL} " in noisy.text() and f"calm {TOTAL} " in noisy.text()
    names = [p.name for p in noisy.files()]
    assert names == [f"{noisy.log.name}.2", f"{noisy.log.name}.1", noisy.log.name], names
    # Rotation bounds the files: a record never makes one outgrow the limit (a raw write
    # to the fd can, by its own size: a few bytes here).
    assert all(p.stat().st_size <= 8192 + 16 for p in noisy.files())
    # The last raw write is in the same file as the print just before it: fds 1 and 2
    # follow the rotation (without that they would still write into the oldest file).
    last = next(p for p in noisy.files() if f"shout {TOTAL} " in p.read_text())
    assert f"raw {TOTAL}\n" in last.read_text()
    # Every print and log line is labelled exactly, though the worker runs four tasks.
    tasks = {t: c for c, ts in noisy.tasks.items() for t in ts}
    labeler = LineLabeler(str(noisy.port), tasks)
    seen: dict[str, set[str]] = {"shout": set(), "calm": set()}
    for line in noisy.text().splitlines():
        label = labeler.label(line)
        said = re.search(r"(STDOUT: shout|calmapp: calm|^raw) \d+", line)
        if said is not None:
            component = "calm" if "calm" in said.group(1) else "shout"
            assert label.component == component, (line, label)
            assert tasks[label.task] == component if label.task is not None else False
            seen[component].add(str(label))
    assert len(seen["shout"]) == 2 and len(seen["calm"]) == 1, seen  # both shout tasks


@pytest.mark.timeout(60)
def test_what_the_interpreter_says_before_the_worker_runs_is_in_its_log(
        tmp_path: Path) -> None:
    # An environment that does not see Squall's dependencies: the worker cannot even
    # import, and the interpreter's own traceback is all there is to read.
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)
    log = tmp_path / "logs" / "worker.log"
    proc = spawn_worker(topology_id="t-1", host=HOST, port=free_ports(1)[0],
                        control=f"ipc://{tmp_path}/c.sock", code_path=str(tmp_path / "code"),
                        secret=SECRET, log_path=str(log), python=str(bare / "bin" / "python"))
    try:
        assert proc.wait(30) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Traceback" in text and "ModuleNotFoundError" in text, text
