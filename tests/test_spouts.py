"""Replayable spouts (topology.spouts) without a worker: reading, positions, replay, restore;
the log-file spout on real files, the Redis Streams spout on a real redis-server."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import RedisServer, redis_server  # noqa: F401  (a fixture, used by name)

import topology.spouts as spouts
from topology.context import TopologyContext
from topology.spouts import LogFileSpout, RedisStreamSpout, ReplayableSpout, source_snapshot


class Collector:
    """Stands in for the worker's collector: records what the spout emits."""

    def __init__(self) -> None:
        self.emitted: list[tuple[list[Any], Any]] = []

    def emit(self, values: list[Any], msg_id: Any = None, stream: str = "default") -> list[int]:
        self.emitted.append((list(values), msg_id))
        return [1]

    def emit_direct(self, *args: Any, **kwargs: Any) -> list[int]:
        raise AssertionError("not used")


def opened(spout: ReplayableSpout, conf: dict[str, Any] | None = None, index: int = 0,
           parallelism: int = 1, positions: dict[str, Any] | None = None) -> Collector:
    """Open `spout` as task `index` of `parallelism`, seek it to `positions` as the
    framework does, and return the collector it emits to."""
    collector = Collector()
    spout._attach(collector)
    tasks = list(range(1, parallelism + 1))
    spout.open(conf or {}, TopologyContext("t", tasks[index], "src", {"src": tasks}))
    spout.seek(positions or {})
    return collector


def drain(spout: ReplayableSpout, collector: Collector, calls: int = 1000) -> list[Any]:
    """Call next_tuple until it emits nothing; return the values emitted."""
    before = len(collector.emitted)
    for _ in range(calls):
        n = len(collector.emitted)
        spout.next_tuple()
        if len(collector.emitted) == n:
            break
    return [values[0] if len(values) == 1 else values
            for values, _ in collector.emitted[before:]]


# --- the log-file spout --------------------------------------------------------------------


def test_lines_are_emitted_with_their_byte_offset_as_msg_id(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"the cow\njumped over\r\n\nthe moon\n")
    spout = LogFileSpout(str(log))
    collector = opened(spout)
    assert drain(spout, collector) == ["the cow", "jumped over", "", "the moon"]
    assert [m for _, m in collector.emitted] == [0, 8, 21, 22]
    assert spout.position() == {str(log): 31}
    assert spout.behind() == 0


def test_a_partial_last_line_waits_for_its_newline_and_the_file_is_followed(
        tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"one\ntw")
    spout = LogFileSpout(str(log))
    collector = opened(spout)
    assert drain(spout, collector) == ["one"]
    assert spout.position() == {str(log): 4} and spout.behind() == 2
    with log.open("ab") as f:
        f.write(b"o\nthree\n")
    assert drain(spout, collector) == ["two", "three"]
    assert spout.position() == {str(log): 14}


def test_seek_replays_from_a_committed_offset_exactly_once(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    lines = [f"line {i}" for i in range(50)]
    log.write_text("".join(f"{line}\n" for line in lines))
    spout = LogFileSpout(str(log), batch=7)
    collector = opened(spout)
    spout.next_tuple()
    spout.next_tuple()
    committed = spout.position()  # a checkpoint closes here and commits
    first = [v[0] for v, _ in collector.emitted]
    assert first == lines[:14]
    spout.next_tuple()  # read after the checkpoint: lost with the worker
    # The worker dies; a new task resumes from the committed position.
    again = LogFileSpout(str(log), batch=7)
    collector2 = opened(again, positions=committed)
    assert first + drain(again, collector2) == lines
    # A rollback seeks the same spout back again.
    again.seek(committed)
    assert drain(again, collector2) == lines[14:]


def test_lines_across_read_chunks_are_whole(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    lines = [("x" * (i % 97)) + str(i) for i in range(30_000)]  # ~1.6 MB: many chunks
    data = "".join(f"{line}\n" for line in lines).encode()
    assert len(data) > 10 * spouts.READ_CHUNK
    log.write_bytes(data)
    spout = LogFileSpout(str(log), batch=500)
    collector = opened(spout)
    assert drain(spout, collector, calls=10_000) == lines
    offsets = [m for _, m in collector.emitted]
    assert all(data[o:].startswith(line.encode() + b"\n")
               for o, line in zip(offsets, lines, strict=True))


def test_at_most_batch_lines_per_call(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("a\n" * 10)
    spout = LogFileSpout(str(log), batch=3)
    collector = opened(spout)
    spout.next_tuple()
    assert len(collector.emitted) == 3


def test_text_that_is_not_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"ok\n\xff\xfe bad\n")
    spout = LogFileSpout(str(log))
    assert drain(spout, opened(spout)) == ["ok", "\ufffd\ufffd bad"]


def test_a_file_that_does_not_exist_yet_is_read_once_it_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spouts, "RETRY_SECS", 0.0)
    log = tmp_path / "later.log"
    spout = LogFileSpout(str(log))
    collector = opened(spout)
    assert drain(spout, collector) == []
    assert spout.behind() is None
    log.write_text("hello\n")
    assert drain(spout, collector) == ["hello"]


def test_a_file_that_shrinks_below_the_offset_is_reported_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "a.log"
    log.write_text("a long first line\nsecond\n")
    spout = LogFileSpout(str(log))
    collector = opened(spout)
    drain(spout, collector)
    log.write_text("x\n")  # truncated and rewritten
    with caplog.at_level(logging.ERROR, logger="topology.spouts"):
        assert drain(spout, collector) == []
        assert drain(spout, collector) == []
    assert [r.getMessage() for r in caplog.records if "shrank" in r.getMessage()] == [
        f"log-file spout {log}: the file shrank to 2 bytes, below the read offset 25; it is "
        "not read again until it grows past it"]


def test_each_task_reads_its_own_file_by_index(tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"part-{i}.log").write_text(f"from {i}\n")
    template = str(tmp_path / "part-{index}.log")
    for index in range(2):
        spout = LogFileSpout(template)
        assert drain(spout, opened(spout, index=index, parallelism=2)) == [f"from {index}"]
        assert spout.name == str(tmp_path / f"part-{index}.log")


def test_tasks_sharing_one_file_are_refused_by_name(tmp_path: Path) -> None:
    spout = LogFileSpout(str(tmp_path / "a.log"))
    with pytest.raises(ValueError, match=r"component 'src' has 2 tasks but every one would "
                                         r"read .*a\.log.*\{index\}"):
        opened(spout, parallelism=2)


def test_a_bad_committed_offset_is_named(tmp_path: Path) -> None:
    spout = LogFileSpout(str(tmp_path / "a.log"))
    with pytest.raises(ValueError, match=r"a\.log: bad committed offset -3"):
        opened(spout, positions={str(tmp_path / "a.log"): -3})


def test_the_source_heartbeat_shows_the_committed_offset_and_what_is_unread(
        tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("aaaa\nbbbb\ncccc\n")
    spout = LogFileSpout(str(log), batch=1)
    collector = opened(spout)
    assert spout.source() == {"kind": "logfile", "name": str(log), "offset": 0, "behind": 15}
    spout.next_tuple()
    position = spout.position()
    spout.next_tuple()
    spout.committed(position)
    assert spout.source() == source_snapshot("logfile", str(log), 5, 5)
    assert len(collector.emitted) == 2
    spout.committed({"elsewhere": 3})  # another task's source: ignored
    assert spout.source()["offset"] == 5


# --- the Redis Streams spout ---------------------------------------------------------------


@pytest.fixture
def stream(redis_server: RedisServer) -> Any:  # noqa: F811
    import redis

    db = redis.Redis.from_url(redis_server.url)
    name = f"events-{uuid.uuid4().hex[:8]}"
    yield db, name
    db.delete(name)
    db.close()


def test_stream_entries_are_emitted_in_order_with_their_ids(
        stream: Any, redis_server: RedisServer) -> None:  # noqa: F811
    db, name = stream
    ids = [db.xadd(name, {"word": w, "n": str(i)}).decode() for i, w in enumerate("abc")]
    db.xadd(name, {"n": "3"})  # no "word"
    spout = RedisStreamSpout(name, fields=["word", "n"])
    collector = opened(spout, {"topology.state.redis.url": redis_server.url})
    assert drain(spout, collector) == [["a", "0"], ["b", "1"], ["c", "2"], [None, "3"]]
    assert [m for _, m in collector.emitted][:3] == ids
    assert spout.outputs == ["word", "n"]
    assert spout.behind() == 0
    spout.close()


def test_stream_replay_from_a_committed_id_is_exactly_once(
        stream: Any, redis_server: RedisServer) -> None:  # noqa: F811
    db, name = stream
    for i in range(25):
        db.xadd(name, {"data": f"e{i}"})
    conf = {"topology.state.redis.url": redis_server.url}
    spout = RedisStreamSpout(name, batch=10)
    collector = opened(spout, conf)
    spout.next_tuple()
    committed = spout.position()
    spout.next_tuple()  # uncommitted reads, lost with the worker
    first = [v[0] for v, _ in collector.emitted[:10]]
    again = RedisStreamSpout(name, batch=10)
    collector2 = opened(again, conf, positions=committed)
    assert first + drain(again, collector2) == [f"e{i}" for i in range(25)]
    assert again.behind() == 0
    db.xadd(name, {"data": "late"})
    assert again.behind() == 1
    again.committed(again.position())
    assert again.source()["kind"] == "redis-stream" and again.source()["name"] == name
    assert again.source()["offset"] == again.position()[name][0]
    spout.close()
    again.close()


def test_an_unreachable_redis_is_logged_once_and_retried(
        caplog: pytest.LogCaptureFixture) -> None:
    from cluster.zkserver import free_port

    spout = RedisStreamSpout("s", url=f"redis://127.0.0.1:{free_port()}/0")
    collector = opened(spout)
    with caplog.at_level(logging.WARNING, logger="topology.spouts"):
        spout.next_tuple()
        spout.next_tuple()  # within RETRY_SECS: not even tried
    assert collector.emitted == []
    assert len([r for r in caplog.records if "cannot read" in r.getMessage()]) == 1
    assert spout.behind() is None
    spout.close()
