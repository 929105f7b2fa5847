"""Shell components that raise, exit, hang, flood or will not stop: each is restarted (its
tuples in flight failed, its error reported with its stderr) or stopped, and nothing leaks."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time

import psutil
import pytest
from multilang.harness import HERE, PYTHON, Harness, python
from polling import wait_for

from topology.multilang import ShellBolt, ShellSettings
from topology.multilang.runner import BoltRunner

FAST = ShellSettings(timeout=1.0, heartbeat_every=0.2)


def test_a_bolt_that_raises_is_restarted_and_its_tuples_fail():
    with Harness(python("probe_bolt.py"), outputs=["value"]) as h:
        boom = h.send("raise:x")
        behind = h.send("echo:behind")  # in flight when the subprocess dies
        h.run_until(lambda: len(h.failed) == 2, what="both tuples failed")
        assert h.failed == [boom, behind] and h.acked == []
        assert any("ValueError: probe asked to raise (x)" in e for e in h.errors)  # pystorm's
        assert any("exited, exit status 1; 1 tuples in flight failed" in e for e in h.errors)
        again = h.send("echo:again")
        h.run_until(lambda: h.acked == [again], what="the new subprocess at work")
        assert h.values() == [["again"]] and h.runner.generation == 2


def test_a_crash_is_reported_with_the_stderr_tail():
    with Harness(python("probe_bolt.py"), outputs=["value"]) as h:
        crash = h.send("exit:3")
        h.run_until(lambda: h.failed == [crash], what="the tuple failed")
        error = h.errors[-1]
        assert "exit status 3" in error and "probe exiting with status 3" in error
        assert h.runner.snapshot()["last_error"] == error


def test_a_hung_bolt_is_restarted():
    with Harness(python("probe_bolt.py"), outputs=["value"], settings=FAST) as h:
        hang = h.send("hang")
        h.run_until(lambda: h.failed == [hang], what="the hung tuple failed")
        assert "did not respond for" in h.errors[-1]
        assert "topology.subprocess.timeout.secs is 1" in h.errors[-1]
        again = h.send("echo:again")
        h.run_until(lambda: h.acked == [again], what="the new subprocess at work")
        assert h.runner.generation == 2


def test_a_busy_bolt_is_not_taken_for_hung():
    # Silent for 3 timeouts but computing all along: Storm would kill it; here it finishes.
    with Harness(python("probe_bolt.py"), outputs=["value"], settings=FAST) as h:
        spin = h.send("spin:3")
        h.run_until(lambda: h.acked == [spin], what="the long tuple acked")
        assert h.values() == [["spun"]] and h.errors == [] and h.runner.generation == 1


def test_no_handshake_answer_means_hung():
    with Harness(["sleep", "3600"], settings=FAST) as h:
        h.run_until(lambda: h.errors, what="an error")
        assert "answered no handshake for" in h.errors[0]
        h.run_until(lambda: h.runner.generation == 2, what="a restart")


def test_a_subprocess_that_keeps_dying_is_restarted_ever_more_slowly():
    command = [PYTHON, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(2)"]
    with Harness(command) as h:
        h.run_until(lambda: len(h.errors) >= 4, what="four deaths")
        assert all("boom" in e and "exit status 2" in e for e in h.errors)
        delays = [e.split("restarting in ")[1].split(" s")[0] for e in h.errors[:4]]
        assert delays == ["0.0", "0.5", "1.0", "2.0"]


def test_a_command_that_cannot_run():
    with Harness(["no-such-command-for-squall"]) as h:
        assert h.runner.proc is None
        assert h.errors and "cannot run ['no-such-command-for-squall']" in h.errors[0]
        assert "No such file" in h.errors[0]


def test_an_endless_stray_line_is_cut_and_memory_stays_bounded(caplog):
    caplog.set_level(logging.INFO, logger="topology.multilang")
    settings = ShellSettings(max_message_bytes=1 << 20)
    with Harness(python("probe_bolt.py"), outputs=["value"], settings=settings) as h:
        big = h.send(f"bigline:{64 << 20}")  # 64 MB in one line, 64 times the bound
        peak = 0

        def done() -> bool:
            nonlocal peak
            if h.runner.proc is not None:
                d = h.runner.proc.decoder
                peak = max(peak, d._partial_size + d._size)
            return big in h.acked

        h.run_until(done, what="the big line read through")
        assert peak <= 2 << 20  # never more than the bound and one read
        assert any(f"(a line of {64 << 20} bytes, cut)" in r.getMessage()
                   for r in caplog.records)
        h.send("echo:after")
        h.run_until(lambda: h.values() == [["after"]], what="the stream going on")
        assert h.runner.generation == 1 and h.errors == []


def test_a_message_over_the_bound_breaks_the_protocol():
    settings = ShellSettings(max_message_bytes=1 << 20)
    with Harness(python("probe_bolt.py"), outputs=["value"], settings=settings) as h:
        big = h.send(f"bigmessage:{2 << 20}")
        h.run_until(lambda: h.failed == [big], what="the tuple failed")
        assert "broke the protocol: sent a message of more than 1048576 bytes" in h.errors[0]
        again = h.send("echo:again")
        h.run_until(lambda: h.acked == [again], what="the new subprocess at work")


def test_stop_kills_what_ignores_sigterm_and_the_whole_process_group():
    script = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, "
              "signal.SIG_IGN); child = subprocess.Popen(['sleep', '3600']); "
              "sys.stderr.write(f'child {child.pid}\\n'); sys.stderr.flush(); time.sleep(3600)")
    h = Harness([PYTHON, "-c", script], settings=ShellSettings(timeout=60.0))
    try:
        h.run_until(lambda: any(line.startswith("child ") for line in h.runner.proc.stderr_tail),
                    what="the grandchild started")
        child = int(next(x for x in h.runner.proc.stderr_tail if x.startswith("child "))[6:])
        pid = h.runner.proc.pid
        assert psutil.pid_exists(child)
    finally:
        h.close()  # asserts the subprocess is gone and reaped
    assert not psutil.pid_exists(pid)
    wait_for(lambda: not psutil.pid_exists(child), timeout=5, what="the grandchild gone")


WORKER = textwrap.dedent("""
    import sys, time
    sys.path[:0] = [{tests!r}, {root!r}]
    from multilang.harness import Harness, python
    h = Harness(python("probe_bolt.py"), outputs=["value"])
    h.send("hang")  # stuck in a sleep: it will not notice its stdin closing
    h.run_until(lambda: h.runner.session.inflight and not h.runner.proc.unwritten)
    print(h.runner.proc.pid, flush=True)
    time.sleep(3600)
""")


def test_no_subprocess_outlives_a_killed_worker():
    code = WORKER.format(tests=str(HERE.parent), root=str(HERE.parent.parent))
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        pid = int(worker.stdout.readline())
        assert psutil.pid_exists(pid)
        worker.kill()  # kill -9: no chance to stop anything
        worker.wait()
        wait_for(lambda: not psutil.pid_exists(pid), timeout=5, what="the subprocess gone")
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.parametrize("settings", [ShellSettings(max_pending=1), ShellSettings()])
def test_tuples_beyond_max_pending_wait_their_turn(settings):
    with Harness(python("split_bolt.py"), settings=settings) as h:
        handles = [h.send(f"w{i} x") for i in range(50)]
        seen = 0

        def check() -> bool:
            nonlocal seen
            seen = max(seen, len(h.runner.session.inflight))
            return len(h.acked) == 50

        h.run_until(check, what="all acked")
        assert h.acked == handles and seen <= settings.max_pending


# A pystorm-free component: the handshake by hand, then what the test asks of it.
HANDSHAKE = ("import json, os, sys, time\n"
             "lines = []\n"
             "while True:\n"
             "    line = sys.stdin.readline()\n"
             "    if line.strip() == 'end': break\n"
             "    lines.append(line)\n"
             "setup = json.loads(''.join(lines))\n"
             "open(os.path.join(setup['pidDir'], str(os.getpid())), 'w').close()\n"
             "sys.stdout.write(json.dumps({'pid': os.getpid()}) + '\\nend\\n')\n"
             "sys.stdout.flush()\n")


def test_a_subprocess_that_closes_its_stdout_but_lives_is_restarted():
    script = HANDSHAKE + "os.close(1)\ntime.sleep(3600)\n"
    with Harness([PYTHON, "-c", script]) as h:
        h.run_until(lambda: h.runner.session.ready, what="the handshake")
        tup = h.send("stuck")
        h.run_until(lambda: h.failed == [tup], what="its tuple failed")
        assert "closed its stdout" in h.errors[0] and "1 tuples in flight failed" in h.errors[0]
        h.run_until(lambda: h.runner.generation == 2, what="a restart")


def test_the_last_words_of_an_exiting_subprocess_are_taken():
    # It acks the tuple, emits, logs an error, and exits at once: all of it is handled
    # before its exit is.
    script = HANDSHAKE + (
        "tup = ''\n"
        "while True:\n"
        "    line = sys.stdin.readline()\n"
        "    if line.strip() == 'end': break\n"
        "    tup += line\n"
        "tid = json.loads(tup)['id']\n"
        "for m in ({'command': 'emit', 'anchors': [tid], 'tuple': ['last'],\n"
        "           'need_task_ids': False},\n"
        "          {'command': 'ack', 'id': tid}, {'command': 'error', 'msg': 'bye'}):\n"
        "    sys.stdout.write(json.dumps(m) + '\\nend\\n')\n"
        "sys.stdout.flush()\n"
        "os._exit(0)\n")
    with Harness([PYTHON, "-c", script]) as h:
        tup = h.send("x")
        h.run_until(lambda: any("exited" in e for e in h.errors), what="the exit reported")
        assert h.acked == [tup] and h.failed == [] and h.values() == [["last"]]
        assert h.errors[0] == "bye" and "exit status 0" in h.errors[1]
        assert h.emitted[0].anchors == [tup]


def test_an_error_says_when_the_declaring_directory_is_not_on_this_host():
    component = ShellBolt([PYTHON, "split_bolt.py"], outputs=["word"])
    component.origin_dir = "/nowhere/on/this/host"  # as if submitted from another machine
    errors: list[str] = []

    class Sink:
        def error(self, text: str) -> None:
            errors.append(text)

    runner = BoltRunner(component, "shell bolt 'split' task 1", lambda pid_dir: {}, Sink(),
                        ShellSettings())
    runner.start(time.monotonic())
    try:
        wait_for(lambda: (runner.tick(time.monotonic()), errors)[1], 10, "the error")
    finally:
        runner.stop()
    assert "exited, exit status 2" in errors[0] and "split_bolt.py" in errors[0]
    assert "declared in /nowhere/on/this/host, which this host does not have" in errors[0]


def test_the_pid_directory_goes_even_if_the_component_says_nothing_after_its_pid():
    with Harness(python("probe_bolt.py"), outputs=["value"]) as h:
        h.run_until(lambda: h.runner.session.ready, what="the handshake")
        h.send("hang")  # silent from now on
        h.run_until(lambda: not os.path.exists(h.pid_dir), what="the pid directory gone")
