"""Storm multilang, the pure parts: bolt and spout sessions, liveness, settings, components."""

from __future__ import annotations

import os
from typing import Any

import cloudpickle
import pytest

from topology import TopologyBuilder
from topology.errors import ConfigError, TopologyError
from topology.multilang import ShellBolt, ShellSettings, ShellSpout
from topology.multilang.liveness import Liveness, Restarts, restart_delay
from topology.multilang.protocol import Decoder, TupleEncoder
from topology.multilang.session import ERROR, INFO, WARN, BoltSession, SpoutSession

ENC = TupleEncoder("source", "default")


class FakeSink:
    """Records what a session tells its task; emits go to tasks [7] (or the direct task)."""

    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[tuple] = []
        self.logs: list[tuple[int, str]] = []
        self.refuse = refuse

    def emit(self, stream: str, values: list, extra: Any, task: int | None) -> list[int]:
        if stream == self.refuse:
            raise TopologyError(f"undeclared stream {stream!r}")
        self.calls.append(("emit", stream, values, extra, task))
        return [task] if task is not None else [7]

    def ack(self, handle: Any) -> None:
        self.calls.append(("ack", handle))

    def fail(self, handle: Any) -> None:
        self.calls.append(("fail", handle))

    def error(self, text: str) -> None:
        self.calls.append(("error", text))

    def log(self, level: int, text: str) -> None:
        self.logs.append((level, text))


def written(session) -> list[Any]:
    """Decode what the session queued for the subprocess."""
    messages, stray = Decoder(1 << 20).feed(session.take_output())
    assert not stray
    return messages


def bolt(max_pending: int = 3, refuse: str | None = None) -> tuple[BoltSession, FakeSink]:
    sink = FakeSink(refuse)
    session = BoltSession(sink, sink.log, max_pending)
    session.start({"conf": {}, "pidDir": "/p", "context": {}})
    assert written(session) == [{"conf": {}, "pidDir": "/p", "context": {}}]
    return session, sink


def test_bolt_writes_nothing_until_the_pid_then_up_to_max_pending():
    session, sink = bolt()
    assert not session.ready and session.room() == 0
    session.handle([{"pid": 99}])
    assert session.ready and session.pid == 99 and session.room() == 3
    for name in "abc":
        assert session.send(name, ENC, 1, [name])
    assert session.room() == 0
    sent = written(session)
    assert [m["tuple"] for m in sent] == [["a"], ["b"], ["c"]]
    assert all(m["comp"] == "source" and m["stream"] == "default" and m["task"] == 1
               for m in sent)
    assert len({m["id"] for m in sent}) == 3


def ready_bolt(**kw: Any) -> tuple[BoltSession, FakeSink, list[str]]:
    session, sink = bolt(**kw)
    session.handle([{"pid": 1}])
    session.send("t1", ENC, 1, ["x"])
    session.send("t2", ENC, 1, ["y"])
    ids = [m["id"] for m in written(session)]
    return session, sink, ids


def test_bolt_emit_anchors_ack_fail():
    session, sink, (a, b) = ready_bolt()
    session.handle([
        {"command": "emit", "tuple": ["w"], "anchors": [a, b]},
        {"command": "emit", "tuple": ["v"], "anchors": [a], "need_task_ids": False},
        {"command": "ack", "id": a},
        {"command": "fail", "id": b},
    ])
    assert sink.calls == [("emit", "default", ["w"], ["t1", "t2"], None),
                          ("emit", "default", ["v"], ["t1"], None),
                          ("ack", "t1"), ("fail", "t2")]
    assert written(session) == [[7]]  # task ids for the first emit only
    assert session.inflight == {} and session.room() == 3


def test_bolt_emit_direct_and_streams():
    session, sink, (a, _) = ready_bolt()
    session.handle([
        {"command": "emit", "tuple": ["d"], "task": 5, "anchors": a},
        {"command": "emit", "tuple": ["s"], "stream": "other", "task": 0},
    ])
    assert sink.calls == [("emit", "default", ["d"], ["t1"], 5),
                          ("emit", "other", ["s"], [], None)]
    assert written(session) == [[7]]  # none for the direct emit (as Storm)


def test_bolt_bad_emits_are_reported_and_answered():
    session, sink, (a, _) = ready_bolt(refuse="nope")
    session.handle([
        {"command": "emit", "tuple": "not a list"},
        {"command": "emit", "tuple": ["x"], "stream": "nope"},
        {"command": "emit", "tuple": ["x"], "task": "five"},
        {"command": "emit", "tuple": ["x"], "anchors": ["999"]},
    ])
    errors = [c[1] for c in sink.calls if c[0] == "error"]
    assert len(errors) == 4
    assert "'not a list'" in errors[0]
    assert "stream 'nope' refused" in errors[1]
    assert "'five'" in errors[2]
    assert "'999'" in errors[3] and "without that anchor" in errors[3]
    assert ("emit", "default", ["x"], [], None) in sink.calls  # emitted anyway
    # Every emit that waits for task ids got an answer, so the component stays in step.
    assert written(session) == [[], [], [7]]


def test_bolt_unknown_ids_commands_and_messages_are_logged():
    session, sink, (a, _) = ready_bolt()
    session.heartbeat()
    hb = written(session)[0]
    assert hb["stream"] == "__heartbeat" and hb["task"] == -1 and hb["tuple"] == []
    session.handle([
        {"command": "ack", "id": "12345"},
        {"command": "ack", "id": hb["id"]},  # acking a heartbeat: harmless, silent
        {"command": "sync"},
        {"command": "dance"},
        ["not", "a", "command"],
        {"command": "ack", "id": int(a)},  # ids given back as numbers are found too
    ])
    assert sink.calls == [("ack", "t1")]
    assert [lvl for lvl, _ in sink.logs] == [WARN, WARN, WARN]
    assert "12345" in sink.logs[0][1] and "dance" in sink.logs[1][1]


def test_bolt_log_error_metrics():
    session, sink, _ = ready_bolt()
    session.handle([
        {"command": "log", "msg": "hello", "level": ERROR},
        {"command": "log", "msg": "plain"},
        {"command": "log", "msg": "odd level", "level": 17},
        {"command": "error", "msg": "Traceback ..."},
        {"command": "metrics", "name": "m", "params": 3},
        {"command": "metrics", "params": 3},
    ])
    assert sink.logs[:3] == [(ERROR, "hello"), (INFO, "plain"), (INFO, "odd level")]
    assert sink.calls == [("error", "Traceback ...")]
    assert session.metrics == {"m": 3}
    assert sink.logs[3][0] == WARN


def test_metrics_are_bounded_for_the_heartbeat():
    session, sink, _ = ready_bolt()
    session.handle([{"command": "metrics", "name": f"m{i}", "params": i} for i in range(64)])
    session.handle([
        {"command": "metrics", "name": "one too many", "params": 1},
        {"command": "metrics", "name": "m1", "params": "x" * 5000},  # too big: kept old
        {"command": "metrics", "name": "x" * 201, "params": 1},
        {"command": "metrics", "name": "m2", "params": {"count": 7}},  # replaced
    ])
    assert len(session.metrics) == 64 and session.metrics["m1"] == 1
    assert session.metrics["m2"] == {"count": 7} and "one too many" not in session.metrics
    warnings = [text for level, text in sink.logs if level == WARN]
    assert len(warnings) == 3 and "64 metrics kept" in warnings[0]
    assert "over 4096 bytes" in warnings[1] and "over 200 characters" in warnings[2]


def test_bolt_values_that_are_not_json_fail_the_tuple():
    session, sink = bolt()
    session.handle([{"pid": 1}])
    assert not session.send("t", ENC, 1, [b"bytes"])
    assert sink.calls[0][0] == "error" and "not JSON" in sink.calls[0][1]
    assert sink.calls[1] == ("fail", "t")
    assert session.inflight == {} and written(session) == []


def test_bolt_fail_all():
    session, sink, _ = ready_bolt()
    assert session.fail_all() == 2
    assert sink.calls == [("fail", "t1"), ("fail", "t2")] and session.inflight == {}


def test_bad_pid_is_an_error():
    session, sink = bolt()
    session.handle([{"pid": "twelve"}])
    assert not session.ready and sink.calls[0][0] == "error"


# ------------------------------------------------------------------------------ spout


def spout(pipeline: int = 2) -> tuple[SpoutSession, FakeSink]:
    sink = FakeSink()
    session = SpoutSession(sink, sink.log, pipeline, idle_wait=0.001, max_idle_wait=0.004)
    session.start({"conf": {}})
    written(session)
    return session, sink


def test_spout_commands_wait_for_the_pid_then_respect_the_pipeline():
    session, sink = spout()
    session.activate()
    session.ack("m1")
    session.fail(2)
    session.pump(0.0, nexts=5)
    assert written(session) == []
    session.handle([{"pid": 5}], 0.0)
    session.pump(0.0, nexts=5)
    assert written(session) == [{"command": "activate"}, {"command": "ack", "id": "m1"}]
    session.handle([{"command": "sync"}], 0.0)
    session.pump(0.0, nexts=5)
    assert written(session) == [{"command": "fail", "id": 2}]
    session.handle([{"command": "sync"}, {"command": "sync"}], 0.0)
    session.pump(0.0, nexts=5)
    assert written(session) == [{"command": "next"}, {"command": "next"}]  # pipeline of 2
    assert session.waiting


def test_spout_emits_and_idle_backoff():
    session, sink = spout(pipeline=1)
    session.handle([{"pid": 5}], 0.0)
    session.pump(0.0, 1)
    written(session)
    session.handle([{"command": "emit", "tuple": [1], "id": 1},
                    {"command": "emit", "tuple": [2], "need_task_ids": False},
                    {"command": "emit", "tuple": [3], "task": 9},
                    {"command": "sync"}], 1.0)
    assert sink.calls == [("emit", "default", [1], 1, None), ("emit", "default", [2], None, None),
                          ("emit", "default", [3], None, 9)]
    assert written(session) == [[7]]
    # Empty nexts: the pause before the next one doubles, up to the maximum.
    waits = []
    now = 1.0
    for _ in range(5):
        session.pump(now, 1)
        assert written(session) == [{"command": "next"}]
        session.handle([{"command": "sync"}], now)
        waits.append(round(session.next_at - now, 6))
        session.pump(now, 1)
        assert written(session) == []  # not yet
        now = session.next_at
    assert waits == [0.001, 0.002, 0.004, 0.004, 0.004]
    session.pump(now, 1)
    session.handle([{"command": "emit", "tuple": [4]}, {"command": "sync"}], now)
    assert session.next_at == 0.0  # an emit ends the pause


def test_spout_restart_keeps_queued_commands():
    session, sink = spout()
    session.handle([{"pid": 5}], 0.0)
    session.pump(0.0, 2)
    session.ack(1)
    session.restarted()
    assert not session.waiting and not session.ready and session.take_output() == b""
    session.handle([{"pid": 6}], 0.0)
    session.pump(0.0, 0)
    assert written(session) == [{"command": "ack", "id": 1}]
    session.handle([{"command": "sync"}, {"command": "sync"}], 0.0)
    assert sink.logs[-1][0] == WARN  # a sync nobody asked for


# ------------------------------------------------------------------------------ liveness


def test_liveness():
    live = Liveness(timeout=10.0, heartbeat_every=1.0, now=100.0)
    assert not live.heartbeat_due(100.5) and not live.hung(105.0)
    assert live.heartbeat_due(101.0)
    live.sent_heartbeat(101.0)
    assert not live.heartbeat_due(101.5) and live.heartbeat_due(102.0)
    live.heard(103.0)
    assert not live.quiet(103.5) and live.hung(113.5) and not live.hung(112.9)
    live.cpu_seen(2.0, 110.0)  # first look: nothing to compare with
    assert live.hung(113.5)
    live.cpu_seen(2.0, 111.0)  # no CPU spent: still silent
    assert live.hung(113.5)
    live.cpu_seen(2.5, 112.0)  # busy: alive
    assert not live.hung(121.0) and live.hung(122.5)


def test_restart_delays():
    assert [restart_delay(n) for n in range(1, 8)] == [0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 10.0]
    r = Restarts()
    assert r.died(started=0.0, now=1.0) == 1.0  # first quick death: at once
    assert r.died(started=1.0, now=2.0) == 2.5
    assert r.died(started=2.5, now=100.0) == 100.0  # it had run a while: at once again
    assert r.total == 3


# ------------------------------------------------------------------------------ settings


def test_settings_from_conf():
    assert ShellSettings.from_conf({}) == ShellSettings()
    s = ShellSettings.from_conf({"topology.subprocess.timeout.secs": 2.5,
                                 "topology.shellbolt.max.pending": 10,
                                 "topology.multilang.max.message.bytes": 1000,
                                 "topology.multilang.heartbeat.secs": 0.2,
                                 "topology.multilang.spout.pipeline": 1})
    assert s == ShellSettings(2.5, 0.2, 10, 1000, 1)


@pytest.mark.parametrize("key,value", [
    ("topology.subprocess.timeout.secs", 0), ("topology.subprocess.timeout.secs", "5"),
    ("topology.shellbolt.max.pending", 2.5), ("topology.shellbolt.max.pending", True),
    ("topology.multilang.spout.pipeline", -1),
])
def test_bad_settings_name_the_key_and_value(key, value):
    with pytest.raises(ConfigError, match=f"{key}.*{value!r}"):
        ShellSettings.from_conf({key: value})


# ------------------------------------------------------------------------------ components


@pytest.mark.parametrize("command,hint", [
    ("python3 split.py", "['python3', 'split.py']"), ([], "[]"), (["python3", 3], "3"),
    (None, "None"),
])
def test_command_must_be_a_list_of_strings(command, hint):
    with pytest.raises(TopologyError, match="non-empty list of strings") as e:
        ShellBolt(command, outputs=["w"])
    assert hint in str(e.value)


def test_env_must_be_strings():
    with pytest.raises(TopologyError, match="env must map strings"):
        ShellSpout(["x"], outputs=["w"], env={"A": 1})


def test_working_dir_and_environment():
    here = os.path.dirname(os.path.abspath(__file__))
    b = ShellBolt(["python3", "split.py"], outputs=["word"], env={"PATH": "/opt/x", "A": "1"})
    assert b.origin_dir == here  # where it was declared
    assert b.working_dir(None) == here
    assert b.working_dir("/code") == "/code"
    b.cwd = "resources"
    assert b.working_dir("/code") == "/code/resources"
    assert b.working_dir(None) == os.path.join(here, "resources")
    assert b.environment({"PATH": "/bin", "B": "2"}) == {"PATH": "/bin:/opt/x", "A": "1",
                                                         "B": "2"}


def test_shell_components_build_copy_and_pickle():
    b = TopologyBuilder("t")
    b.set_spout("s", ShellSpout(["node", "spout.js"], outputs=["sentence"]))
    b.set_bolt("split", ShellBolt(["python3", "split.py"], outputs={"default": ["word"]}),
               parallelism=2).shuffle_grouping("s")
    topo = b.build()
    assert topo.components["split"].outputs == {"default": ("word",)}
    assert topo.components["s"].outputs == {"default": ("sentence",)}
    again = cloudpickle.loads(cloudpickle.dumps(topo))
    spec = again.components["split"]
    task_copy = spec.make_instance()
    assert task_copy is not spec.obj and task_copy.command == ["python3", "split.py"]
    assert task_copy.origin_dir == spec.obj.origin_dir
