"""`squall set-log-level`: the pure pieces (the worker's `LogLevels`, nimbus's bookkeeping, the
supervisor's message) and the command against a nimbus in this process: the levels land in
the stored assignment, a new version, and every mistake is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.loglevel_cmd import describe
from cluster.config import Config
from cluster.zkstore import ZkClusterState
from nimbus.protocol import MAX_LOGGERS, BadRequest, check_log_levels
from nimbus.submission import live_log_levels_of, log_levels_after
from supervisor.sync import with_log_levels
from worker.control import live_log_levels, next_log_change
from worker.parent import LogLevels

ROOT = str(Path(__file__).resolve().parent.parent)


# --- the worker's side (pure) -------------------------------------------------------------------


def test_levels_are_set_and_put_back_to_the_loggers_own() -> None:
    levels = LogLevels()
    own = {"a": 0, "ROOT": 20}
    spec = {"a": {"level": "DEBUG", "until": 110.0}, "ROOT": {"level": "warn", "until": None}}
    assert levels.changes(spec, 100.0, own.__getitem__) == [("ROOT", 30, True),
                                                            ("a", 10, True)]
    assert levels.next_check == 110.0 and not levels.due(109.9) and levels.due(110.0)
    assert levels.changes(spec, 105.0, own.__getitem__) == []  # nothing new: nothing to do
    assert levels.changes(levels.spec, 110.0, lambda n: 99) == [("a", 0, False)]  # its own
    assert levels.next_check is None
    # Set again to another level: its own level is still the one from before the first.
    assert levels.changes({"ROOT": {"level": "ERROR", "until": None}}, 111.0,
                          lambda n: 30) == [("ROOT", 40, True)]
    assert levels.changes(None, 112.0, lambda n: 40) == [("ROOT", 20, False)]
    assert levels.applied == {} and levels.original == {}


def test_malformed_entries_are_skipped() -> None:
    spec: Any = {"ok": {"level": "INFO", "until": None}, "no-level": {"level": "LOUD"},
                 "bad-until": {"level": "INFO", "until": "soon"}, "not-a-dict": "DEBUG", 7: {}}
    assert live_log_levels(spec, 0.0) == {"ok": 20}
    assert live_log_levels(["DEBUG"], 0.0) == {} and next_log_change("x", 0.0) is None
    assert next_log_change({"a": {"until": 5.0}, "b": {"until": 3.0}, "c": {"until": 1}},
                           2.0) == 3.0


# --- nimbus's bookkeeping and the supervisor's message (pure) -----------------------------------


def test_nimbus_merges_levels_resets_and_drops_those_over() -> None:
    stored = log_levels_after(None, {"a": "DEBUG"}, 30, [], 1000.0)
    assert stored == {"a": {"level": "DEBUG", "until": 1030.0}}
    stored = log_levels_after(stored, {"ROOT": "WARN"}, None, [], 1010.0)
    assert set(stored) == {"a", "ROOT"} and stored["ROOT"]["until"] is None
    assert set(log_levels_after(stored, {}, None, ["a"], 1011.0)) == {"ROOT"}
    assert set(log_levels_after(stored, {}, None, [], 1030.0)) == {"ROOT"}  # a's time is over
    assert live_log_levels_of({"log_levels": stored}, 1031.0) == {
        "ROOT": {"level": "WARN", "until": None}}
    many = {f"l{i}": "INFO" for i in range(MAX_LOGGERS)}
    with pytest.raises(BadRequest, match="at most"):
        log_levels_after(stored, many, None, [], 1011.0)


def test_the_api_checks_loggers_and_levels() -> None:
    assert check_log_levels({"ROOT": "debug", "my.mod": "WARN"}) == {"ROOT": "DEBUG",
                                                                     "my.mod": "WARN"}
    with pytest.raises(BadRequest, match="level of 'x' must be one of .*got 'LOUD'"):
        check_log_levels({"x": "LOUD"})
    with pytest.raises(BadRequest, match="'a b' is not a logger name"):
        check_log_levels({"a b": "INFO"})
    with pytest.raises(BadRequest, match="object of logger: level"):
        check_log_levels(["ROOT=INFO"])


def test_the_supervisor_hands_the_levels_to_the_worker() -> None:
    message = {"type": "assignment", "assignment": {"version": {"assignment": 3}}}
    levels = {"a": {"level": "DEBUG", "until": None}}
    sent = with_log_levels(message, {"version": 3, "log_levels": levels})
    assert sent["assignment"]["log_levels"] == levels and "log_levels" not in message["assignment"]
    assert with_log_levels(message, {"version": 3}) is message
    assert with_log_levels(message, "junk") is message


def test_describe() -> None:
    assert describe({}) == "every logger at its own level"
    assert describe({"ROOT": {"level": "WARN", "until": None}}) == "ROOT=WARN"


# --- the command against a nimbus ----------------------------------------------------------------


def squall(*args: str, endpoint: str) -> subprocess.CompletedProcess[str]:
    host, _, port = endpoint.rpartition(":")
    return subprocess.run([sys.executable, "-m", "cli.main", *args, "-c", f"nimbus.host={host}",
                           "-c", f"nimbus.port={port}", "-c", "cluster.secret=pw"],
                          check=False, cwd=ROOT, env={**os.environ, "SQUALL_CONF": ""},
                          capture_output=True, text=True, timeout=30)


def one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode in (1, 2), (result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if "error" in line]
    assert len(lines) == 1 and text in lines[0], result.stderr


@pytest.fixture
def view(zk_config: Config) -> Iterator[ZkClusterState]:
    state = ZkClusterState(zk_config.with_overrides({"cluster.secret": "pw"}))
    state.register_supervisor("sup-a", {"host": "ha", "ports": [7000, 7001]})
    yield state
    state.close()


@pytest.mark.timeout(60)
def test_levels_go_into_the_assignment_and_mistakes_are_one_line(
        start_nimbus: Any, view: ZkClusterState, topology_file: str) -> None:
    nimbus = start_nimbus(**{"cluster.secret": "pw"})
    nimbus.wait_leading()
    ep = nimbus.endpoint
    done = squall("submit", topology_file, "--json", endpoint=ep)
    assert done.returncode == 0, done.stderr
    tid = next(iter(view.topologies()))
    before = view.assignment(tid)["version"]

    done = squall("set-log-level", "numbers", "my.bolts=debug", "-t", "60", endpoint=ep)
    assert done.returncode == 0 and "my.bolts=DEBUG for 60 s" in done.stdout, done.stderr
    assignment = view.assignment(tid)
    assert assignment["version"] == before + 1
    assert assignment["log_levels"]["my.bolts"]["level"] == "DEBUG"
    status = squall("status", "numbers", endpoint=ep).stdout
    assert "log levels (set-log-level): my.bolts=DEBUG for " in status, status
    done = squall("set_log_level", "numbers", "-r", "my.bolts", endpoint=ep)  # Storm's name
    assert done.returncode == 0 and "every logger at its own level" in done.stdout
    assert "log_levels" not in view.assignment(tid)

    one_line_error(squall("set-log-level", "numbers", "ROOT=LOUD", endpoint=ep),
                   "level of 'ROOT' must be one of")
    one_line_error(squall("set-log-level", "numbers", "ROOT", endpoint=ep),
                   "'ROOT': expected LOGGER=LEVEL")
    one_line_error(squall("set-log-level", "numbers", "-l", "ROOT=INFO:soon", endpoint=ep),
                   "-l 'ROOT=INFO:soon': expected a number of seconds")
    one_line_error(squall("set-log-level", "numbers", endpoint=ep), "give LOGGER=LEVEL")
    one_line_error(squall("set-log-level", "nope", "ROOT=INFO", endpoint=ep),
                   "no topology named 'nope'")
    one_line_error(squall("set-log-level", "numbers", "a b=INFO", endpoint=ep),
                   "'a b' is not a logger name")
    one_line_error(squall("set-log-level", "numbers", "ROOT=INFO", "-t", "-1", endpoint=ep),
                   "-t")
