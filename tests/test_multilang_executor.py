"""worker/shell.py's RunnerDriver on the worker loop's own Services: the subprocess's pipes
are watched exactly while they are open (through crashes and restarts, whose new pipes may
reuse the old fd numbers), its timer follows the runner, and stopping leaves nothing behind.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

import psutil
from multilang.harness import HERE, PYTHON
from polling import wait_for

from topology.multilang import ShellBolt, ShellSettings
from topology.multilang.handshake import context_from_streams
from topology.multilang.protocol import TupleEncoder
from topology.multilang.runner import BoltRunner
from worker.loop import Services
from worker.shell import RunnerDriver

SETTINGS = ShellSettings(timeout=5.0, heartbeat_every=0.2)


class NoTransport:
    pollable = None  # Services polls only the watched sources


class Recorder:
    def __init__(self) -> None:
        self.acked: list[Any] = []
        self.failed: list[Any] = []
        self.errors: list[str] = []

    def emit(self, stream: str, values: list[Any], anchors: list[Any],
             task: int | None) -> list[int]:
        return [9]

    def ack(self, handle: Any) -> None:
        self.acked.append(handle)

    def fail(self, handle: Any) -> None:
        self.failed.append(handle)

    def error(self, text: str) -> None:
        self.errors.append(text)


def setup(pid_dir: str) -> dict[str, Any]:
    context = context_from_streams("probe", 3, {"src": [1], "probe": [3], "sink": [9]},
                                   [("src", "default", ["command"]),
                                    ("probe", "default", ["value"])])
    return {"conf": {"topology.name": "t"}, "pidDir": pid_dir, "context": context}


def spin(services: Services, drivers: list[RunnerDriver], pred: Callable[[], Any],
         timeout: float = 20.0) -> None:
    """Run the loop's part (timers, watched sources) until `pred`; check at every step that
    the drivers watch exactly their runners' open pipes (none while snoozing after a small
    read, with a timer to wake them)."""
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met"
        now = time.monotonic()
        for timer in services.schedule.pop_due(now):
            timer.callback(now)
        services.poll(10, time.monotonic())
        assert sorted(services.watched) == sorted(
            fd for d in drivers if d.snooze is None for fd in d.runner.fds())
        assert all(d.snooze is None or not d.snooze.cancelled for d in drivers)
        assert all(d.runner.stopped or d.timer is not None for d in drivers)


def started_probe() -> tuple[Services, Recorder, BoltRunner, RunnerDriver]:
    """A driver of tests/multilang/probe_bolt.py on a loop's services, started."""
    services = Services(NoTransport())  # type: ignore[arg-type]
    sink = Recorder()
    runner = BoltRunner(ShellBolt([PYTHON, "probe_bolt.py"], outputs=["value"], cwd=str(HERE)),
                        "shell bolt 'probe' task 3", setup, sink, SETTINGS)
    driver = RunnerDriver(runner, services, lambda now: None)
    driver.start(time.monotonic())
    return services, sink, runner, driver


def test_the_driver_follows_the_subprocess_through_a_crash_and_stops_clean():
    services, sink, runner, driver = started_probe()
    assert len(services.watched) == 2  # stdout and stderr
    spin(services, [driver], lambda: runner.session.ready)
    first = runner.proc.pid
    encoder = TupleEncoder("src", "default")

    def send(command: str) -> str:
        runner.send(command, encoder, 1, [command])
        runner.flush()
        driver.sync(time.monotonic())
        return command

    send("crash-once:/nonexistent/marker")  # cannot create the marker: raises, pystorm exits
    spin(services, [driver], lambda: runner.generation == 2 and runner.session.ready)
    assert sink.failed == ["crash-once:/nonexistent/marker"] and sink.errors
    spin(services, [driver], lambda: not psutil.pid_exists(first))  # killed and reaped
    echo = send("echo:x")
    spin(services, [driver], lambda: sink.acked == [echo])
    second = runner.proc.pid
    driver.stop()
    assert services.watched == {} and len(services.schedule) == 0
    assert not psutil.pid_exists(second)  # stopped and reaped: no zombie either


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_stopping_one_driver_tells_every_subprocess_of_the_worker_to_stop_at_once():
    services = Services(NoTransport())  # type: ignore[arg-type]
    drivers = []
    for task in (3, 4):
        runner = BoltRunner(ShellBolt([PYTHON, "split_bolt.py"], outputs=["word"],
                                      cwd=str(HERE)),
                            f"shell bolt 'split' task {task}", setup, Recorder(), SETTINGS)
        drivers.append(RunnerDriver(runner, services, lambda now: None))
        drivers[-1].start(time.monotonic())
    for driver in drivers:
        spin(services, drivers, lambda d=driver: d.runner.session.ready)
    first, second = drivers
    pid = second.runner.proc.pid
    first.stop()  # the worker closes its executors one by one ...
    assert second.runner.stopped  # ... and the others were told at the first
    deadline = time.monotonic() + 20
    while not _gone(pid):  # it exits on its own: EOF on stdin (pystorm) and SIGTERM
        assert time.monotonic() < deadline, "the second subprocess did not exit"
        time.sleep(0.02)
    second.stop()
    assert services.watched == {} and not psutil.pid_exists(pid)


def test_after_a_small_read_the_driver_snoozes_then_reads_what_came_meanwhile():
    services, sink, runner, driver = started_probe()
    encoder = TupleEncoder("src", "default")

    def answered(command: str) -> None:
        """Send `command` and wait until its answer is in the pipe, unread."""
        runner.send(command, encoder, 1, [command])
        runner.flush()
        wait_for(lambda: select.select([runner.proc.stdout_fd], [], [], 0)[0], timeout=20)

    try:
        spin(services, [driver], lambda: runner.session.ready and driver.snooze is None)
        answered("echo:x")
        driver.readable(time.monotonic())  # a small read: the pipes rest for a moment
        assert sink.acked == ["echo:x"]
        assert driver.snooze is not None and services.watched == {}
        answered("echo:y")
        assert sink.acked == ["echo:x"]  # its answer waits in the pipe: nobody is watching
        wait_for(lambda: services.schedule.next_due() <= time.monotonic(), timeout=5)
        for timer in services.schedule.pop_due(time.monotonic()):
            timer.callback(time.monotonic())
        assert sink.acked == ["echo:x", "echo:y"]  # read at the wake-up
        # Nothing more comes: the next wake-up reads nothing and watches the pipes again.
        spin(services, [driver], lambda: driver.snooze is None)
        assert sorted(services.watched) == sorted(runner.fds())
    finally:
        driver.stop()
    assert services.watched == {} and len(services.schedule) == 0
