"""cluster.records.component_progress: what windowed, stateful and replayable tasks report
beyond their counts, summed per component; malformed values are skipped, never raised on."""

from __future__ import annotations

from typing import Any

from cli.cluster_cmds import progress_lines
from cluster.records import WorkerHeartbeat, component_progress, last_checkpoint


def beat(*executors: dict[str, Any]) -> dict[str, Any]:
    return {"host": "h", "port": 6700, "executors": list(executors)}


def task(component: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"component": component, "task": n, "type": "bolt", **extra}


def test_windowed_tasks_give_the_lowest_watermark_and_all_late_tuples() -> None:
    spec = "tumbling 60 s (event time)"
    progress = component_progress([
        beat(task("win", 1, windowing={"spec": spec, "watermark": 120.0, "late": 2})),
        beat(task("win", 2, windowing={"spec": spec, "watermark": 100.0, "late": 3}),
             task("win", 3, windowing={"spec": spec, "watermark": None, "late": 0}))])
    assert progress == {"win": {"windowing": {"spec": spec, "watermark": 100.0, "late": 5,
                                              "tasks": 3}}}
    lines = progress_lines(progress["win"], 0.0)
    assert lines == [f"window {spec}: watermark 100, 5 late"]


def test_the_last_committed_checkpoint_is_the_highest_txid() -> None:
    progress = component_progress([beat(
        task("__checkpoint", 9, checkpoint={"txid": 7, "time": 1e9 + 5, "duration": 0.02,
                                            "failed": 0}),
        task("count", 4, checkpoint={"txid": 6, "time": 1e9, "duration": 0.5, "failed": 2}))])
    assert progress["count"]["checkpoint"]["txid"] == 6
    latest = last_checkpoint(progress)
    assert latest == {"txid": 7, "time": 1e9 + 5, "duration": 0.02, "failed": 0}
    assert progress_lines(progress["__checkpoint"], 1e9 + 65) == [
        "checkpoint txid 7, 1m00s ago, took 20 ms"]
    assert last_checkpoint({}) is None


def test_sources_are_listed_per_task_and_their_backlog_summed() -> None:
    progress = component_progress([beat(
        task("lines", 2, source={"kind": "redis", "name": "s-1", "offset": "5-0", "behind": 4}),
        task("lines", 1, source={"kind": "redis", "name": "s-0", "offset": "9-0",
                                 "behind": None}))])
    src = progress["lines"]["source"]
    assert src["kind"] == "redis" and src["behind"] == 4
    assert [t["task"] for t in src["tasks"]] == [1, 2]
    assert progress_lines(progress["lines"], 0.0) == [
        "source redis: s-0 at 9-0, s-1 at 5-0, 4 behind"]


def test_malformed_values_are_skipped_and_records_keep_them() -> None:
    odd = task("x", 1, windowing="sliding", checkpoint={"txid": "seven", "failed": None},
               source={"behind": float("nan")})
    progress = component_progress([beat(odd), "junk", {"executors": "nope"}])
    assert progress["x"]["checkpoint"] == {"txid": None, "time": None, "duration": None,
                                           "failed": 0}
    assert "windowing" not in progress["x"]
    assert progress["x"]["source"]["behind"] is None
    assert WorkerHeartbeat.from_dict(beat(odd)).to_dict()["executors"][0]["windowing"] == \
        "sliding"
    assert component_progress([]) == {}
