"""Shell spouts against real components: a pystorm spout and a Node.js spout written to
Storm's storm.js, unchanged; acks, fails and replays, (de)activation, a hang."""

from __future__ import annotations

import logging

import pytest
from multilang.harness import Harness, python

from topology.multilang import ShellSettings

RUNNER_LOG = "topology.multilang.runner"


@pytest.fixture
def logs(caplog):
    caplog.set_level(logging.INFO, logger="topology.multilang")
    return caplog


def said(caplog, text: str) -> int:
    """How many times the component logged a line ending with `text`."""
    return sum(1 for r in caplog.records
               if r.name == RUNNER_LOG and r.getMessage().endswith(": " + text))


def test_pystorm_spout_emits_acks_fails_and_replays(logs):
    with Harness(python("numbers_spout.py"), outputs=["n"], kind="spout",
                 conf={"topology.probe.limit": 5}) as h:
        h.runner.activate()
        h.run_until(lambda: said(logs, "activated"), what="activated")
        assert h.emitted == []  # no next asked for yet
        h.nexts = 2
        h.run_until(lambda: len(h.emitted) == 5, what="five emits")
        assert [(e.values, e.msg_id) for e in h.emitted] == [([n], n) for n in range(1, 6)]
        h.nexts = 0
        for n in (1, 2, 4, 5):
            h.runner.ack(n)
        h.runner.fail(3)
        h.run_until(lambda: all(said(logs, f"acked {n}") for n in (1, 2, 4, 5))
                    and said(logs, "failed 3, replaying it"), what="acks and the fail")
        h.nexts = 1
        h.run_until(lambda: len(h.emitted) == 6, what="the replay")
        assert (h.emitted[-1].values, h.emitted[-1].msg_id) == ([3], 3)
        h.runner.deactivate()
        h.run_until(lambda: said(logs, "deactivated"), what="deactivated")
        assert h.errors == [] and h.runner.generation == 1


def test_an_idle_spout_is_asked_ever_less_often():
    with Harness(python("numbers_spout.py"), outputs=["n"], kind="spout",
                 conf={"topology.probe.limit": 1}) as h:
        h.nexts = 1
        h.run_until(lambda: h.emitted and h.runner.session.idle_wait >= 0.032,
                    what="the longest pause between empty nexts")
        assert len(h.emitted) == 1 and h.runner.session.idle_wait == 0.032


def test_node_spout_written_to_storm_js(logs):
    with Harness(["node", "sentences.js"], outputs=["sentence"], kind="spout") as h:
        h.runner.activate()
        h.nexts = 4
        h.run_until(lambda: len(h.emitted) == 3, what="three sentences")
        assert [e.msg_id for e in h.emitted] == [0, 1, 2]
        assert h.emitted[0].values == ["the cow jumped over the moon"]
        h.runner.ack(0)
        h.runner.fail(1)
        h.run_until(lambda: len(h.emitted) == 4, what="the replay")
        assert (h.emitted[3].values, h.emitted[3].msg_id) == (h.emitted[1].values, 1)
        h.run_until(lambda: said(logs, "acked 0") and said(logs, "activated") and said(
            logs, f"the cow jumped over the moon sent to task ids - {h.emitted[0].targets[0]}"),
            what="the spout's own log lines")
        assert h.errors == []


def test_a_hung_spout_is_restarted_and_reactivated(logs, tmp_path):
    settings = ShellSettings(timeout=1.0, heartbeat_every=0.2)
    conf = {"topology.probe.limit": 3, "topology.probe.hang.at": 2,
            "topology.probe.hang.mark": str(tmp_path / "hung-once")}
    with Harness(python("numbers_spout.py"), outputs=["n"], kind="spout", settings=settings,
                 conf=conf) as h:
        h.runner.activate()
        h.nexts = 1
        h.run_until(lambda: h.errors, what="the hang noticed")
        assert "did not respond for" in h.errors[0]
        assert [e.values for e in h.emitted[:2]] == [[1], [2]]
        h.run_until(lambda: said(logs, "activated") == 2, what="the new subprocess activated")
        h.runner.ack(1)  # an ack for what the old subprocess emitted goes to the new one
        h.run_until(lambda: said(logs, "acked 1") and len(h.emitted) == 5, what="ack, emits")
        assert [e.values for e in h.emitted] == [[1], [2], [1], [2], [3]]
        assert h.runner.generation == 2 and len(h.errors) == 1
