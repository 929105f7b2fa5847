"""State providers against the real things: SQLite files and a real redis-server."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import ExternalRedis, RedisServer, redis_server  # noqa: F401  (a fixture, used by name)

from topology.errors import ConfigError
from topology.state import DELETED, MemoryProvider, StateError, StateProvider, open_provider
from topology.state.redisstore import RedisProvider
from topology.state.sqlitestore import SqliteProvider


@pytest.fixture(params=["memory", "sqlite", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """make(topology=None) -> a provider of `kind`; a second call with the same topology
    name is a new connection to the same store (a restarted worker), except for memory."""
    opened: list[StateProvider] = []
    memory: dict[str, MemoryProvider] = {}
    default = f"t-{uuid.uuid4().hex[:10]}"

    def make_provider(topology: str = default) -> StateProvider:
        provider: StateProvider
        if kind == "memory":
            provider = memory.setdefault(topology, MemoryProvider(topology))
        elif kind == "sqlite":
            provider = SqliteProvider(topology, str(tmp_path / "state"))
        else:
            server = request.getfixturevalue("redis_server")
            provider = RedisProvider(topology, server.url)
        opened.append(provider)
        return provider

    yield make_provider
    for provider in opened:
        provider.clear()
        provider.close()


def test_a_fresh_store_is_empty(make: Any) -> None:
    assert make().task_store("count", 0).restore(0) == ({}, {})
    assert make().read_record() is None


def test_prepare_then_commit_then_restore(make: Any) -> None:
    store = make().task_store("count", 0)
    store.prepare(1, {"a": 1, ("t", 2): [1, 2], 7: None, b"raw": {"x": 1.5}}, [])
    store.commit(1)
    state, changes = make().task_store("count", 0).restore(1)
    assert state == {"a": 1, ("t", 2): [1, 2], 7: None, b"raw": {"x": 1.5}}
    assert changes == state


def test_deletes_and_overwrites_merge_in_txid_order(make: Any) -> None:
    store = make().task_store("count", 0)
    store.prepare(1, {"k": 1, "gone": 0}, [])
    store.prepare(2, {"k": 2}, ["gone"])
    store.prepare(3, {}, ["k"])
    store.prepare(4, {"k": 4}, [])
    store.commit(4)
    state, changes = store.restore(4)
    assert state == {"k": 4}
    assert changes == {"k": 4}
    store.prepare(5, {}, ["k"])
    store.commit(5)
    assert store.restore(5) == ({}, {"k": DELETED})


def test_a_prepared_set_is_invisible_until_committed(make: Any) -> None:
    store = make().task_store("count", 0)
    store.prepare(1, {"a": 1}, [])
    store.commit(1)
    store.prepare(2, {"a": 2}, [])
    assert make().task_store("count", 0).restore(1) == ({"a": 1}, {"a": 1})
    # restore(1) dropped the prepared set 2: committing 2 now merges nothing.
    store.commit(2)
    assert store.restore(2)[0] == {"a": 1}


def test_restore_rolls_forward_a_set_the_record_committed(make: Any) -> None:
    store = make().task_store("count", 0)
    store.prepare(1, {"a": 1}, [])
    store.prepare(2, {"b": 2}, [])  # the task died before hearing COMMIT 1 and 2
    state, changes = make().task_store("count", 0).restore(2)
    assert state == {"a": 1, "b": 2} and changes == {"b": 2}


def test_commit_is_idempotent_and_never_goes_back(make: Any) -> None:
    store = make().task_store("count", 0)
    store.prepare(1, {"a": 1}, [])
    store.commit(1)
    store.commit(1)
    store.prepare(2, {"a": 2}, [])
    store.commit(2)
    store.commit(1)  # a late duplicate
    assert store.restore(2)[0] == {"a": 2}


def test_a_new_attempt_of_a_txid_replaces_the_old_one(make: Any) -> None:
    store = make().task_store("count", 0)
    store.prepare(1, {"a": 1, "b": 1}, [])
    store.rollback(0)
    store.prepare(1, {"a": 2}, [])
    store.commit(1)
    assert store.restore(1) == ({"a": 2}, {"a": 2})
    store.prepare(2, {"c": 1}, [])
    store.prepare(2, {"d": 1}, [])  # prepared again without a rollback in between
    store.commit(2)
    assert store.restore(2)[0] == {"a": 2, "d": 1}


def test_rollback_drops_only_the_sets_after_the_txid(make: Any) -> None:
    store = make().task_store("count", 0)
    store.prepare(1, {"a": 1}, [])
    store.prepare(2, {"b": 2}, [])
    store.prepare(3, {"c": 3}, [])
    store.rollback(1)
    assert store.restore(3)[0] == {"a": 1}


def test_a_store_ahead_of_the_record_is_refused(make: Any) -> None:
    store = make().task_store("count", 3)
    store.prepare(5, {"a": 1}, [])
    store.commit(5)
    with pytest.raises(StateError, match=r"component 'count' task 3: .*txid 5 committed, "
                                         r"after the record's 4"):
        make().task_store("count", 3).restore(4)


def test_stores_are_keyed_by_topology_component_and_task(make: Any) -> None:
    provider = make()
    for component, index in [("count", 0), ("count", 1), ("sum", 0)]:
        provider.task_store(component, index).prepare(1, {"who": (component, index)}, [])
        provider.task_store(component, index).commit(1)
    other = make(f"other-{uuid.uuid4().hex[:8]}")
    assert other.task_store("count", 0).restore(1)[0] == {}
    for component, index in [("count", 0), ("count", 1), ("sum", 0)]:
        assert make().task_store(component, index).restore(1)[0] == {"who": (component, index)}


def test_the_commit_record_round_trips_and_is_replaced(make: Any) -> None:
    provider = make()
    record = {"txid": 3, "epoch": 17, "sources": {"lines": {"a.log": 120}}, "time": 1.5}
    provider.write_record(record)
    assert make().read_record() == record
    provider.write_record({**record, "txid": 4})
    assert make().read_record()["txid"] == 4  # type: ignore[index]


def test_clear_forgets_everything(make: Any) -> None:
    provider = make()
    provider.task_store("count", 0).prepare(1, {"a": 1}, [])
    provider.task_store("count", 0).commit(1)
    provider.write_record({"txid": 1})
    provider.clear()
    assert make().read_record() is None
    assert make().task_store("count", 0).restore(0) == ({}, {})


def test_a_value_that_cannot_be_saved_is_named(make: Any) -> None:
    store = make().task_store("count", 0)
    with pytest.raises(StateError, match=r"task 0: state key 'bad'.*function"):
        store.prepare(1, {"ok": 1, "bad": lambda: 0}, [])


# --- by configuration ----------------------------------------------------------------------


def test_open_provider_by_config(tmp_path: Path, redis_server: RedisServer) -> None:  # noqa: F811
    conf = {"local.dir": str(tmp_path), "topology.state.redis.url": redis_server.url}
    memory = open_provider({**conf, "topology.state.provider": "memory"}, "t")
    sqlite = open_provider({**conf, "topology.state.provider": "sqlite"}, "t")
    redis = open_provider({**conf, "topology.state.provider": "redis"}, "t")
    assert isinstance(memory, MemoryProvider)
    assert isinstance(sqlite, SqliteProvider) and sqlite.path == str(tmp_path / "state" /
                                                                     "t.sqlite3")
    assert isinstance(redis, RedisProvider)
    sqlite.close()
    redis.close()
    with pytest.raises(ConfigError, match="topology.state.provider.*'mongo'"):
        open_provider({**conf, "topology.state.provider": "mongo"}, "t")


def test_importing_topology_loads_neither_redis_nor_sqlite() -> None:
    code = ("import sys, topology, topology.state, topology.spouts, acker.coordinator, "
            "acker.epochs; print(sorted(m for m in ('redis', 'sqlite3') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    assert out.strip() == "[]"


def test_an_unreachable_redis_is_a_state_error_naming_the_task() -> None:
    from cluster.zkserver import free_port

    provider = RedisProvider("t", f"redis://user:secret@127.0.0.1:{free_port()}/0")
    with pytest.raises(StateError, match=r"component 'count' task 0: prepare txid 1 failed on "
                                         r"redis redis://user:\*\*\*@127\.0\.0\.1"):
        provider.task_store("count", 0).prepare(1, {"a": 1}, [])
    provider.close()


def test_a_bad_redis_url_is_named() -> None:
    with pytest.raises(StateError, match="bad topology.state.redis.url 'http://x'"):
        RedisProvider("t", "http://x")


def test_a_sqlite_directory_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    provider = SqliteProvider("t", str(blocker / "state"))
    with pytest.raises(StateError, match="cannot open its state database"):
        provider.read_record()


# --- the real things' own durability and concurrency ---------------------------------------


def _hammer(directory: str, topology: str, index: int, rounds: int) -> None:
    provider = SqliteProvider(topology, directory)
    store = provider.task_store("count", index)
    for txid in range(1, rounds + 1):
        store.prepare(txid, {f"k{txid % 7}": txid, "last": txid}, [])
        store.commit(txid)
        if index == 0:
            provider.write_record({"txid": txid})
    provider.close()


def test_sqlite_workers_of_one_host_write_the_same_database_at_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(tmp_path), "wc", i, 60)) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    provider = SqliteProvider("wc", str(tmp_path))
    assert provider.read_record() == {"txid": 60}
    for i in range(3):
        assert provider.task_store("count", i).restore(60)[0]["last"] == 60
    provider.close()


def test_redis_state_survives_a_restart_of_the_server(tmp_path: Path) -> None:
    server = RedisServer(data_dir=str(tmp_path / "redis")).start()
    try:
        provider = RedisProvider("t", server.url)
        provider.task_store("count", 0).prepare(1, {"a": 1}, [])
        provider.task_store("count", 0).commit(1)
        provider.write_record({"txid": 1})
        provider.close()
        server.stop(remove=False)
        server.start()
        provider = RedisProvider("t", server.url)
        assert provider.read_record() == {"txid": 1}
        assert provider.task_store("count", 0).restore(1)[0] == {"a": 1}
        provider.close()
    finally:
        server.stop(remove=True)


def test_the_directive_to_spouts_is_kept_apart_from_the_record(make: Any) -> None:
    provider = make()
    assert provider.read_control() is None
    provider.write_record({"txid": 3})
    provider.write_control({"recover": [3, 9, {"lines": {"/a.log": 10}}], "phase": "running",
                            "starts": [[4, 9]], "commits": []})
    again = make()  # another worker's connection
    assert again.read_control() == {"recover": [3, 9, {"lines": {"/a.log": 10}}],
                                    "phase": "running", "starts": [[4, 9]], "commits": []}
    assert again.read_record() == {"txid": 3}
    provider.write_control({"recover": [3, 10, {}], "phase": "recovering", "starts": [],
                            "commits": []})
    assert again.read_control()["recover"] == [3, 10, {}]  # a change is seen at once
    assert again.read_control() == again.read_control()
    again.write_control({"recover": [4, 11, {}]})  # by the reader's own connection too
    assert again.read_control() == {"recover": [4, 11, {}]}
    provider.clear()
    assert make().read_control() is None
    assert again.read_control() is None


def test_tasks_opening_a_new_sqlite_database_at_once_all_get_it(tmp_path: Path) -> None:
    """Switching a new database to WAL answers "database is locked" at once, without the
    busy timeout, to whoever races another connection doing it: a spout that got that error
    once never took part in a checkpoint (the topology stalled at start-up)."""
    def open_it(directory: str, barrier: threading.Barrier, errors: list[Exception]) -> None:
        barrier.wait()
        try:
            SqliteProvider("t", directory).read_control()
        except Exception as e:  # noqa: BLE001 - any failure is the test's finding
            errors.append(e)

    for round_ in range(100):
        barrier = threading.Barrier(6)
        errors: list[Exception] = []
        threads = [threading.Thread(target=open_it, args=(str(tmp_path / str(round_)),
                                                            barrier, errors))
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], f"round {round_}: {errors[0]}"


def test_using_a_redis_started_elsewhere_leaves_no_directory(redis_server: RedisServer  # noqa: F811
                                                             ) -> None:
    """deploy/test.sh starts the tests' Redis; using it made an empty /tmp directory per
    session that nothing removed."""
    before = set(Path(tempfile.gettempdir()).glob("squall-redis-*"))
    external = ExternalRedis(redis_server.url)
    assert external.running()
    external.stop()
    assert set(Path(tempfile.gettempdir()).glob("squall-redis-*")) == before
    assert redis_server.running()  # not ours to stop
