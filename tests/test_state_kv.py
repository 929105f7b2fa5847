"""KeyValueState (the bolt's mapping) and TaskState (its checkpoints), on the memory provider
and on SQLite files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology.state import DELETED, KeyValueState, MemoryProvider, StateError, TaskState
from topology.state.sqlitestore import SqliteProvider

# --- KeyValueState -------------------------------------------------------------------------


def test_it_is_a_mutable_mapping() -> None:
    s = KeyValueState({"a": 1})
    s["b"] = 2
    assert s.get("a") == 1 and s.get("zz") is None and s.get("zz", 5) == 5
    assert s.setdefault("c", 3) == 3 and s.setdefault("c", 4) == 3
    assert s.pop("c") == 3 and s.pop("c", None) is None
    s.update({"d": 4}, e=5)
    del s["d"]
    assert "a" in s and "d" not in s
    assert sorted(s) == ["a", "b", "e"] and len(s) == 3
    assert dict(s.items()) == {"a": 1, "b": 2, "e": 5}
    with pytest.raises(KeyError):
        s["zz"]
    with pytest.raises(KeyError):
        del s["zz"]
    s.clear()
    assert len(s) == 0 and repr(s) == "KeyValueState({})"


def test_seal_gives_the_write_set_of_the_changed_keys_only() -> None:
    s = KeyValueState({"keep": 0, "change": 1, "drop": 2})
    s["change"] = 10
    s["change"] = 11
    s["new"] = 3
    del s["drop"]
    s["tmp"] = 1
    del s["tmp"]  # created and deleted in the same checkpoint: a delete of nothing
    writes, deletes, undo = s._seal()
    assert writes == {"change": 11, "new": 3}
    assert sorted(deletes) == ["drop", "tmp"]
    assert set(undo) == {"change", "new", "drop", "tmp"}
    assert s._seal() == ({}, [], {})  # nothing changed since


def test_rollback_restores_exactly_the_state_before_the_sealed_checkpoints() -> None:
    s = KeyValueState({"a": 1, "b": 2})
    s["a"] = 10
    del s["b"]
    _, _, undo1 = s._seal()
    s["a"] = 100
    s["b"] = 200
    s["c"] = 300
    _, _, undo2 = s._seal()
    s["d"] = 4  # the current, unsealed checkpoint
    del s["a"]
    s._rollback([undo1, undo2])
    assert dict(s) == {"a": 1, "b": 2}


def test_unseal_takes_back_a_seal_whose_write_failed() -> None:
    s = KeyValueState({"a": 1})
    s["a"] = 2
    _, _, undo = s._seal()
    s["a"] = 3  # changed again after the seal
    s["b"] = 1
    s._unseal(undo)
    s._rollback([])
    assert dict(s) == {"a": 1}


def test_deleted_is_one_value_even_through_pickle() -> None:
    import pickle

    assert pickle.loads(pickle.dumps(DELETED)) is DELETED
    assert repr(DELETED) == "DELETED"


# --- TaskState -----------------------------------------------------------------------------


def memory_state(component: str = "count", index: int = 0) -> TaskState:
    return TaskState(MemoryProvider("t").task_store(component, index))


def test_prepare_commit_and_restore_round_trip() -> None:
    provider = MemoryProvider("t")
    state = TaskState(provider.task_store("count", 0))
    state.restore(0)
    state.kv["a"] = 1
    state.kv["b"] = 2
    state.prepare(1)
    assert state.commit(1) == {"a": 1, "b": 2}
    del state.kv["a"]
    state.kv["b"] = 3
    state.prepare(2)
    assert state.commit(2) == {"a": DELETED, "b": 3}
    again = TaskState(provider.task_store("count", 0))
    assert again.restore(2) == {"a": DELETED, "b": 3}
    assert dict(again.kv) == {"b": 3}


def test_rollback_undoes_prepared_and_current_changes_in_memory() -> None:
    state = memory_state()
    state.kv["a"] = 1
    state.prepare(1)
    state.commit(1)
    state.kv["a"] = 2
    state.prepare(2)  # prepared, never committed
    state.kv["a"] = 3
    state.kv["x"] = 9
    state.rollback()
    assert dict(state.kv) == {"a": 1}
    # The store dropped the prepared set too: a restore at txid 1 agrees.
    assert state.restore(1) == {"a": 1}
    assert dict(state.kv) == {"a": 1}


def test_a_prepare_that_fails_keeps_the_changes_to_roll_back() -> None:
    state = memory_state()
    state.kv["a"] = 1
    state.prepare(1)
    state.commit(1)
    state.kv["a"] = 2
    state.kv["bad"] = lambda: None  # a lambda cannot be pickled
    with pytest.raises(StateError, match="state key 'bad'.*cannot be saved"):
        state.prepare(2)
    state.rollback()
    assert dict(state.kv) == {"a": 1}


def test_commit_returns_the_changes_of_that_txid_after_several_prepares() -> None:
    state = memory_state()
    state.kv["a"] = 1
    state.prepare(1)
    state.kv["b"] = 2
    state.prepare(2)
    assert state.commit(2) == {"b": 2}  # commit 2 implies 1
    assert state.restore(2) == {"b": 2}
    assert dict(state.kv) == {"a": 1, "b": 2}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from("abcd"), st.integers(0, 9)),
    st.tuples(st.just("del"), st.sampled_from("abcd")),
    st.tuples(st.just("prepare")), st.tuples(st.just("commit")),
    st.tuples(st.just("rollback")), st.tuples(st.just("crash")),
), max_size=60))
def test_state_always_matches_a_model_of_committed_checkpoints(ops: list[tuple[Any, ...]]) -> None:
    provider = MemoryProvider("t")
    state = TaskState(provider.task_store("c", 0))
    state.restore(0)
    live: dict[str, int] = {}
    committed: dict[str, int] = {}
    prepared: list[tuple[int, dict[str, int]]] = []
    txid = 0  # last prepared or committed
    last_committed = 0
    for op in ops:
        kind = op[0]
        if kind == "set":
            state.kv[op[1]] = op[2]
            live[op[1]] = op[2]
        elif kind == "del" and op[1] in live:
            del state.kv[op[1]]
            del live[op[1]]
        elif kind == "prepare":
            txid += 1
            state.prepare(txid)
            prepared.append((txid, dict(live)))
        elif kind == "commit" and prepared:
            t, snapshot = prepared[0]
            state.commit(t)
            prepared.pop(0)
            committed, last_committed = snapshot, t
        elif kind == "rollback":
            state.rollback()
            live, prepared, txid = dict(committed), [], last_committed
        elif kind == "crash":  # a new task restores from the store at the committed txid
            state = TaskState(provider.task_store("c", 0))
            state.restore(last_committed)
            live, prepared, txid = dict(committed), [], last_committed
        assert dict(state.kv) == live


# --- on SQLite files -----------------------------------------------------------------------


def test_state_survives_the_process_on_sqlite(tmp_path: Path) -> None:
    """A task in another process prepares and commits; a new process restores it."""
    code = f"""
import sys
from topology.state import TaskState
from topology.state.sqlitestore import SqliteProvider
provider = SqliteProvider("wc", {str(tmp_path)!r})
state = TaskState(provider.task_store("count", 1))
state.restore(0)
for w in "the cow jumped over the moon".split():
    state.kv[w] = state.kv.get(w, 0) + 1
state.prepare(1)
state.commit(1)
state.kv["the"] = 99  # prepared as txid 2, never committed
state.prepare(2)
provider.write_record({{"txid": 1}})
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    provider = SqliteProvider("wc", str(tmp_path))
    assert provider.read_record() == {"txid": 1}
    state = TaskState(provider.task_store("count", 1))
    assert state.restore(1)["the"] == 2
    assert dict(state.kv) == {"the": 2, "cow": 1, "jumped": 1, "over": 1, "moon": 1}
    provider.close()
