"""Running one shell task: its subprocess, protocol session, liveness and restarts.

A runner has no loop and no thread of its own. Its owner (the worker's multilang executor,
or the test harness) polls `fds()` and calls `on_readable(now)` when one is readable,
`tick(now)` from a timer (by `next_tick(now)` at the latest), `flush()` after handing it work,
and `stop()` at the end. Every call returns at once; only `stop` waits, and boundedly.

When the subprocess exits, closes its stdout, breaks the protocol, or is hung (silent and
idle for the timeout), the runner kills it, fails the bolt tuples it had in flight, reports
the error with the tail of its stderr, and starts a new one (at once the first time, with a
growing delay if it keeps dying young).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .components import ShellComponent, ShellSettings
from .liveness import Liveness, Restarts
from .process import ShellProcess
from .protocol import ProtocolError, TupleEncoder
from .session import BoltSession, BoltSink, SpoutSession, SpoutSink

log = logging.getLogger(__name__)

# Storm's log levels to Python's (TRACE is below DEBUG).
PY_LEVELS = (5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
STOP_GRACE = 2.0  # seconds a stopping subprocess gets before SIGKILL
EXIT_GRACE = 1.0  # after its stdout closed, a subprocess gets this long to exit (and say how)


class ShellRunner:
    """What bolt and spout runners share: the subprocess's life and death."""

    session: BoltSession | SpoutSession

    def __init__(self, component: ShellComponent, label: str,
                 setup: Callable[[str], dict[str, Any]], sink: BoltSink | SpoutSink,
                 settings: ShellSettings, code_dir: str | None = None,
                 pid_root: str | None = None, environ: Mapping[str, str] | None = None) -> None:
        self.component = component
        self.label = label  # "shell bolt 'split' task 3": who speaks in every line
        self.setup = setup  # pid dir -> the handshake message
        self.sink = sink
        self.settings = settings
        self.cwd = component.working_dir(code_dir)
        origin = component.origin_dir
        # Declared in a directory this host does not have (a topology submitted from another
        # machine): its scripts are not here unless the code package brought them.
        self.elsewhere = (f" (note: {type(component).__name__} was declared in {origin}, "
                          f"which this host does not have: the command ran in "
                          f"{self.cwd or os.getcwd()})"
                          if code_dir is None and origin and not os.path.isdir(origin) else "")
        self.env = component.environment(os.environ if environ is None else environ)
        self.pid_root = pid_root
        self.pid_dir: str | None = None
        self.proc: ShellProcess | None = None
        self.dying: list[ShellProcess] = []  # killed, not yet reaped
        self.restarts = Restarts()
        self.liveness = Liveness(settings.timeout, settings.heartbeat_every, 0.0)
        self.started_at = 0.0
        self.restart_at: float | None = None  # down until then
        self.generation = 0  # bumped at each start: the owner re-reads fds()
        self.stray_lines = 0
        self.last_error: str | None = None
        self._cpu_checked = 0.0
        self.stopped = False
        self.now = 0.0  # the time of the latest call that said it
        self.eof_at: float | None = None  # when its stdout closed: it is exiting
        self._answered = False

    # ------------------------------------------------------------------ life

    def start(self, now: float) -> None:
        self.now = now
        if self.pid_dir is None:
            root = self.pid_root or tempfile.gettempdir()
            os.makedirs(root, exist_ok=True)
            self.pid_dir = tempfile.mkdtemp(prefix="shell-pids-", dir=root)
        self.restart_at = None
        self.eof_at = None
        self._answered = False  # the pid message has come
        self.started_at = now
        self.liveness = Liveness(self.settings.timeout, self.settings.heartbeat_every, now)
        self._cpu_checked = now
        self._reset_session()
        proc = ShellProcess(self.component.command, self.cwd, self.env, self.label,
                            self.settings.max_message_bytes)
        try:
            pid = proc.start()
        except (OSError, subprocess.SubprocessError) as e:
            self._report(f"cannot run {self.component.command!r} in {self.cwd or os.getcwd()}: "
                         f"{e}")
            self.restart_at = self.restarts.died(now, now)
            return
        self.proc = proc
        self.generation += 1
        log.info("%s: started %s as pid %d in %s", self.label, self.component.command, pid,
                 self.cwd or os.getcwd())
        self.session.start(self.setup(self.pid_dir))
        self.flush()

    def _reset_session(self) -> None:
        raise NotImplementedError

    def fds(self) -> tuple[int, ...]:
        """The file descriptors to poll for readability (none while down)."""
        proc = self.proc
        if proc is None:
            return ()
        return tuple(fd for fd, is_open in ((proc.stdout_fd, proc.stdout_open),
                                            (proc.stderr_fd, proc.stderr_open)) if is_open)

    @property
    def up(self) -> bool:
        return self.proc is not None

    def terminate(self) -> None:
        """Begin stopping without waiting: EOF on its stdin and SIGTERM (then `stop` waits).
        Lets the owner of many runners stop them all at once."""
        if self.stopped:
            return
        self.stopped = True
        if self.proc is not None:
            self._fail_inflight()
            self.dying.append(self.proc)
            self.proc = None
        for p in self.dying:
            p.terminate()

    def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop the subprocess (EOF and SIGTERM, SIGKILL after `grace`) and wait for it."""
        self.terminate()
        procs, self.dying = self.dying, []
        for p in procs:
            assert p.popen is not None
            try:
                p.popen.wait(grace)
            except Exception:  # TimeoutExpired: it ignored SIGTERM
                log.warning("%s: pid %d ignored SIGTERM for %g s; killing it", self.label,
                            p.popen.pid, grace)
                p.kill()
                with contextlib.suppress(Exception):
                    p.popen.wait(5.0)
            self._drain_stderr(p)
            p.reap()
            p.close()
        self._remove_pid_dir()

    def _remove_pid_dir(self) -> None:
        """The pid directory is for the handshake only (the component writes its pid file
        there as it answers): removed once it is past it, so a worker killed later leaves
        none behind."""
        if self.pid_dir is not None:
            shutil.rmtree(self.pid_dir, ignore_errors=True)
            self.pid_dir = None

    def _lost(self, reason: str, now: float) -> None:
        """The subprocess is gone or useless: kill it, fail its work, report, plan a restart."""
        proc = self.proc
        if proc is None:
            return
        self.proc = None
        proc.kill()
        self._drain_stderr(proc)
        failed = self._fail_inflight()
        self.restart_at = self.restarts.died(self.started_at, now)
        code = proc.exit_code()
        status = f", exit status {code}" if code is not None else ""
        lost = f"; {failed} tuples in flight failed" if failed else ""
        tail = proc.tail_text()
        self._report(f"subprocess pid {proc.pid} {reason}{status}{lost}; restarting in "
                     f"{self.restart_at - now:.1f} s" + (f"\nstderr tail:\n{tail}" if tail
                                                          else "\n(nothing on stderr)"))
        if not proc.reap():
            self.dying.append(proc)

    def _fail_inflight(self) -> int:
        return 0

    def _report(self, text: str) -> None:
        text += self.elsewhere
        self.last_error = text
        log.error("%s: %s", self.label, text)
        self.sink.error(text)

    # ------------------------------------------------------------------ I/O

    def on_readable(self, now: float) -> None:
        """Read what the subprocess wrote (both pipes) and act on it."""
        self.now = now
        proc = self.proc
        if proc is None:
            return
        self._drain_stderr(proc)
        try:
            messages, stray, eof = proc.read()
        except ProtocolError as e:
            self._lost(f"broke the protocol: {e}", now)
            return
        if messages or stray:
            self.liveness.heard(now)
        if stray:
            self.stray_lines += len(stray)
            for line in stray:
                log.info("%s: output: %s", self.label, line)
        if messages:
            self._handle(messages, now)
            if self.proc is None:
                return
            if self.pid_dir is not None and self.session.ready:
                # Storm's storm.py writes its pid file after it sends its pid: the directory
                # goes once a message has come after the pid one.
                last = messages[-1]
                if self._answered or not (type(last) is dict and "pid" in last):
                    self._remove_pid_dir()
                self._answered = True
        if eof:
            # Its exit status comes with the exit, a moment later: `tick` waits for it.
            self.eof_at = now if self.eof_at is None else self.eof_at
            self.tick(now)
            return
        self.flush()

    def _handle(self, messages: list[Any], now: float) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Write what the session has queued (call once after handing over a batch)."""
        proc = self.proc
        if proc is None:
            return
        data = self.session.take_output()
        try:
            if data:
                proc.write(data)
            elif proc.unwritten:
                proc.flush()
        except OSError:
            pass  # stdin closed: it is exiting; its stdout EOF says so at once
        limit = max(64 << 20, 4 * self.settings.max_message_bytes)
        if proc.unwritten > limit:
            self._lost(f"stopped reading its stdin ({proc.unwritten} bytes waiting)", self.now)

    def _drain_stderr(self, proc: ShellProcess) -> None:
        lines, _ = proc.read_stderr()
        for line in lines:
            log.info("%s: stderr: %s", self.label, line)

    def log_from_component(self, level: int, text: str) -> None:
        log.log(PY_LEVELS[level], "%s: %s", self.label, text)

    # ------------------------------------------------------------------ time

    def tick(self, now: float) -> None:
        """Timers: restart when due, reap the dead, heartbeats, liveness."""
        self.now = now
        for p in list(self.dying):
            if p.reap():
                self.dying.remove(p)
        if self.stopped:
            return
        proc = self.proc
        if proc is None:
            if self.restart_at is not None and now >= self.restart_at:
                self.start(now)
            return
        if proc.exit_code() is not None:
            if self.eof_at is None:
                self.on_readable(now)  # take its last words first
            if self.proc is not None:
                self._lost("exited", now)
            return
        if self.eof_at is not None:
            if now - self.eof_at >= EXIT_GRACE:
                self._lost("closed its stdout", now)
            return
        if self._answered and self.pid_dir is not None and os.path.exists(
                os.path.join(self.pid_dir, str(self.session.pid))):
            self._remove_pid_dir()  # its pid file is there: it is past the handshake
        self._timers(now)
        if self.proc is not None:
            self.flush()

    def _timers(self, now: float) -> None:
        raise NotImplementedError

    def _check_hung(self, now: float) -> None:
        liveness = self.liveness
        if liveness.quiet(now) and now - self._cpu_checked >= liveness.heartbeat_every:
            self._cpu_checked = now
            assert self.proc is not None
            liveness.cpu_seen(self.proc.cpu_seconds(), now)
        if liveness.hung(now):
            what = "answered no handshake" if not self.session.ready else "did not respond"
            self._lost(f"{what} for {liveness.silent_for(now):.1f} s "
                       f"(topology.subprocess.timeout.secs is {liveness.timeout:g})", now)

    def next_tick(self, now: float) -> float:
        """The latest time `tick` should next be called."""
        if self.proc is None:
            return self.restart_at if self.restart_at is not None else now + 1.0
        if self.eof_at is not None:
            return now + 0.005  # exiting: collect it (and its status) soon
        return now + min(0.1, self.settings.heartbeat_every / 2)

    def snapshot(self) -> dict[str, Any]:
        """Fields for the task's heartbeat: pid, restarts, work in flight, metrics."""
        return {
            "pid": self.proc.pid if self.proc is not None else None,
            "component_pid": self.session.pid,
            "restarts": self.restarts.total,
            "stray_lines": self.stray_lines,
            "metrics": dict(self.session.metrics),
            "last_error": self.last_error,
        }


class BoltRunner(ShellRunner):
    """A shell bolt task. Hand it tuples with `send` while `room()` allows, then `flush()`."""

    session: BoltSession
    sink: BoltSink

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session = BoltSession(self.sink, self.log_from_component, self.settings.max_pending)

    def _reset_session(self) -> None:
        self.session.pid = None
        self.session.out.clear()

    def room(self) -> int:
        return self.session.room() if self.proc is not None else 0

    def send(self, handle: Any, encoder: TupleEncoder, task: int, values: Sequence[Any]) -> bool:
        """Queue one input tuple (from source task `task`); False if it could not be encoded
        (then it was failed and reported)."""
        return self.session.send(handle, encoder, task, values)

    def _fail_inflight(self) -> int:
        return self.session.fail_all()

    def _handle(self, messages: list[Any], now: float) -> None:
        self.session.handle(messages)

    def _timers(self, now: float) -> None:
        session = self.session
        if session.ready and self.liveness.heartbeat_due(now):
            session.heartbeat()
            self.liveness.sent_heartbeat(now)
        self._check_hung(now)

    def snapshot(self) -> dict[str, Any]:
        out = super().snapshot()
        out["inflight"] = len(self.session.inflight)
        return out


class SpoutRunner(ShellRunner):
    """A shell spout task: `run(now, nexts)` asks for tuples; acks, fails and (de)activation
    are forwarded as commands."""

    session: SpoutSession
    sink: SpoutSink

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session = SpoutSession(self.sink, self.log_from_component,
                                    self.settings.spout_pipeline)
        self.active = False

    def _reset_session(self) -> None:
        self.session.restarted()
        if self.active:  # a new subprocess learns at once what the old one was told
            self.session.commands.appendleft(b'{"command":"activate"}\nend\n')

    def run(self, now: float, nexts: int) -> None:
        """Send up to `nexts` next commands (within the pipeline) and anything queued."""
        self.now = now
        if self.proc is None:
            return
        if not self.session.waiting:
            self.liveness.heard(now)  # the silence that counts starts with the command
        self.session.pump(now, nexts)
        self.flush()

    def ack(self, msg_id: Any) -> None:
        self.session.ack(msg_id)

    def fail(self, msg_id: Any) -> None:
        self.session.fail(msg_id)

    def activate(self) -> None:
        self.active = True
        self.session.activate()

    def deactivate(self) -> None:
        self.active = False
        self.session.deactivate()

    def _handle(self, messages: list[Any], now: float) -> None:
        self.session.handle(messages, now)
        self.session.pump(now, 0)  # acks, fails and (de)activations waiting for room

    def _timers(self, now: float) -> None:
        if not self.session.waiting:
            if not self.session.ready:
                self._check_hung(now)  # the handshake
                return
            self.liveness.heard(now)
            self.session.pump(now, 0)
        else:
            self._check_hung(now)
