"""The whole checkpoint protocol, simulated in one process: the pure pieces (Coordinator,
SpoutLedger, TaskLedger, the real AckerLedger, TaskState on a memory store) wired by a
network that delivers messages in random order (FIFO per channel only), while tasks crash,
tuples fail or time out, prepares and commit records fail. Every commit is checked: the
committed state is exactly the word count of the input up to the committed positions.

Tasks: 0 coordinator, 1-2 spouts (replayable: a list of sentences, position = index),
3 split (stateless), 5-6 count (stateful, fields grouping), 9 acker.
"""

from __future__ import annotations

import collections
import copy
import random
from typing import Any

import pytest

from acker.checkpoint import (
    Commit,
    CommitRecord,
    Hello,
    Message,
    Prepare,
    Recover,
    Start,
)
from acker.coordinator import Coordinator, Persist, RolledBack, Send
from acker.epochs import SpoutLedger, TaskLedger, make_root
from acker.ledger import ACK, AckerLedger
from topology.state import MemoryProvider, StateError, TaskState

COORD, SPLIT, ACKER = 0, 3, 9
SPOUTS = {1: "s1", 2: "s2"}  # spout task -> the name of the source it reads
SPOUT_COMPONENTS = {1: "spouts", 2: "spouts"}  # both tasks of one component, "spouts"
COUNTS = (5, 6)
WORDS = "the cow jumped over moon and a dish ran away with spoon".split()
TUPLE_TIMEOUT = 0.4
STEP = 0.001
MAX_PENDING = 8  # per spout task, as topology.max.spout.pending


class Sim:
    def __init__(self, seed: int, sentences: int = 60, failures: bool = True) -> None:
        self.rng = random.Random(seed)
        self.failures = failures
        self.now = 0.0
        self.input = {
            name: [" ".join(self.rng.choices(WORDS, k=self.rng.randint(1, 5)))
                   for _ in range(sentences)] for name in SPOUTS.values()}
        self.channels: dict[tuple[int, int], collections.deque[Any]] = {}
        self.provider = MemoryProvider("sim")  # the durable store: survives every crash
        self.committed: list[int] = []
        self.rollbacks = 0
        self.crashes = 0
        self.spouts = {t: self._new_spout(t) for t in SPOUTS}
        self.counts = {t: self._new_count(t) for t in COUNTS}
        self.acker = AckerLedger()
        self._new_coordinator()

    # --- the network -------------------------------------------------------------------

    def send(self, src: int, dst: int, item: Any) -> None:
        self.channels.setdefault((src, dst), collections.deque()).append(item)

    def cp(self, src: int, msg: Message) -> None:
        self.send(src, COORD, ("cp", msg))

    def chance(self, p: float) -> bool:
        return self.failures and self.rng.random() < p

    # --- tasks -------------------------------------------------------------------------

    def _new_spout(self, task: int) -> dict[str, Any]:
        return {"ledger": SpoutLedger(task), "pos": 0, "pending": {}}

    def _new_count(self, task: int) -> dict[str, Any]:
        store = self.provider.task_store("count", COUNTS.index(task))
        return {"ledger": TaskLedger(task), "state": TaskState(store)}

    def _new_coordinator(self) -> None:
        stored = self.provider.read_record()
        record = CommitRecord.from_dict(stored) if stored else None
        self.coordinator = Coordinator(SPOUT_COMPONENTS, COUNTS, (), record, interval=0.03,
                                       timeout=1.0, resend=0.05, watched=(SPLIT, ACKER))
        self.execute(self.coordinator.start(self.now))

    def crash(self, task: int) -> None:
        self.crashes += 1
        for (_, dst), queue in self.channels.items():
            if dst == task:
                queue.clear()  # what was on its way to the dead process is lost
        if task == COORD:
            self._new_coordinator()
            return
        if task in SPOUTS:
            self.spouts[task] = self._new_spout(task)
        elif task in COUNTS:
            self.counts[task] = self._new_count(task)
        elif task == ACKER:
            self.acker = AckerLedger()
        self.cp(task, Hello(task))

    # --- the coordinator ---------------------------------------------------------------

    def execute(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, Send):
                for task in action.tasks:
                    self.send(COORD, task, ("cp", action.message))
            elif isinstance(action, RolledBack):
                self.rollbacks += 1
            elif isinstance(action, Persist) and not action.commit:
                self.provider.write_record(action.record.to_dict())
            elif isinstance(action, Persist):
                ok = not self.chance(0.02)
                if ok:
                    self.check_commit(action.record)
                    self.provider.write_record(action.record.to_dict())
                self.execute(self.coordinator.persisted(ok, self.now))

    def check_commit(self, record: CommitRecord) -> None:
        """The exactly-once invariant, at the commit point."""
        assert record.txid == (self.committed[-1] + 1 if self.committed else 1)
        self.committed.append(record.txid)
        expected: collections.Counter[str] = collections.Counter()
        for name, sentences in self.input.items():
            upto = record.sources.get("spouts", {}).get(name, 0)
            for sentence in sentences[:upto]:
                expected.update(sentence.split())
        actual: collections.Counter[str] = collections.Counter()
        for index in range(len(COUNTS)):
            store = copy.deepcopy(self.provider.task_store("count", index))
            actual.update(store.restore(record.txid)[0])
        assert actual == expected, f"checkpoint {record.txid}: {actual} != {expected}"

    # --- delivery ----------------------------------------------------------------------

    def deliver(self, src: int, dst: int, item: Any) -> None:
        if dst == COORD:
            self.execute(self.coordinator.receive(item[1], self.now))
        elif dst in SPOUTS:
            self.spout_receive(dst, item)
        elif dst == SPLIT:
            self.split(item[1])
        elif dst in COUNTS:
            self.count_receive(dst, item)
        elif dst == ACKER:
            kind, root, *rest = item
            if kind == "init":
                outcome = self.acker.init(root, rest[0], rest[1])
            elif kind == "ack":
                outcome = self.acker.ack(root, rest[0])
            else:
                outcome = self.acker.fail(root)
            if outcome is not None:
                self.send(ACKER, outcome.spout_task, ("outcome", outcome.kind, outcome.root))

    def spout_emit(self, task: int) -> None:
        spout = self.spouts[task]
        ledger: SpoutLedger = spout["ledger"]
        sentences = self.input[SPOUTS[task]]
        if (not ledger.running or spout["pos"] >= len(sentences)
                or len(spout["pending"]) >= MAX_PENDING):
            return
        root, edge = make_root(ledger.epoch, self.rng.getrandbits(64)), self.rng.getrandbits(64)
        self.send(task, SPLIT, ("data", (sentences[spout["pos"]], (root, edge))))
        self.send(task, ACKER, ("init", root, edge, task))
        ledger.emitted()
        spout["pending"][root] = (spout["pos"], self.now)
        spout["pos"] += 1

    def spout_receive(self, task: int, item: Any) -> None:
        spout = self.spouts[task]
        ledger: SpoutLedger = spout["ledger"]
        if item[0] == "outcome":
            entry = spout["pending"].pop(item[2], None)
            if entry is None:
                return
            out = (ledger.completed(item[2], entry[0]) if item[1] == ACK
                   else ledger.failed(item[2], entry[0]))
            if out is not None:
                self.cp(task, out)
            return
        msg = item[1]
        if isinstance(msg, Start):
            for done in ledger.start(msg, {SPOUTS[task]: spout["pos"]}):
                self.cp(task, done)
        elif isinstance(msg, Recover):
            result = ledger.recover(msg, [m for m, _ in spout["pending"].values()])
            if result.rollback:
                spout["pending"].clear()
                spout["pos"] = msg.sources.get("spouts", {}).get(SPOUTS[task], 0)
            if result.reply is not None:
                self.cp(task, result.reply)
        elif isinstance(msg, Commit):
            ledger.commit(msg)

    def timeouts(self) -> None:
        for task, spout in self.spouts.items():
            for root, (msg_id, started) in list(spout["pending"].items()):
                if self.now - started > TUPLE_TIMEOUT:
                    del spout["pending"][root]
                    failed = spout["ledger"].failed(root, msg_id, "timed out")
                    if failed is not None:
                        self.cp(task, failed)

    def split(self, data: tuple[str, tuple[int, int]]) -> None:
        sentence, (root, edge) = data
        xor = 0
        for word in sentence.split():
            child = self.rng.getrandbits(64)
            xor ^= child
            target = COUNTS[WORDS.index(word) % len(COUNTS)]
            self.send(SPLIT, target, ("data", (word, (root, child))))
        self.send(SPLIT, ACKER, ("ack", root, edge ^ xor))

    def count_receive(self, task: int, item: Any) -> None:
        count = self.counts[task]
        ledger: TaskLedger = count["ledger"]
        state: TaskState = count["state"]
        if item[0] == "data":
            if ledger.admit(item[1], item[1][1]):
                self.count_process(task, item[1])
            return
        msg = item[1]
        if isinstance(msg, Prepare):
            reason = ledger.check_prepare(msg)
            if reason is None:
                try:
                    if self.chance(0.01):
                        raise StateError("disk full")
                    state.prepare(msg.txid)
                except StateError as e:
                    reason = str(e)
            if reason is not None:
                self.cp(task, ledger.prepare_failed(msg, reason))
                return
            reply, release = ledger.prepared_ok(msg)
            self.cp(task, reply)
            for data in release:
                self.count_process(task, data)
        elif isinstance(msg, Commit):
            for txid in ledger.commit(msg):
                state.commit(txid)
        elif isinstance(msg, Recover):
            result = ledger.recover(msg)
            if result.restore:
                if result.in_step:
                    state.rollback()
                else:
                    state.restore(msg.txid)
                for data in result.release:
                    self.count_process(task, data)
            if result.reply is not None:
                self.cp(task, result.reply)

    def count_process(self, task: int, data: tuple[str, tuple[int, int]]) -> None:
        word, (root, edge) = data
        kv = self.counts[task]["state"].kv
        kv[word] = kv.get(word, 0) + 1
        if self.chance(0.002):  # the bolt raised after changing its state: auto_fail
            self.send(task, ACKER, ("fail", root))
        else:
            self.send(task, ACKER, ("ack", root, edge))

    # --- the run -----------------------------------------------------------------------

    def step(self) -> None:
        self.now += STEP
        self.execute(self.coordinator.tick(self.now))
        self.timeouts()
        if self.chance(0.0015):
            self.crash(self.rng.choice([COORD, *SPOUTS, SPLIT, *COUNTS, ACKER]))
        busy = [key for key, queue in self.channels.items() if queue]
        if self.rng.random() < 0.2 or not busy:
            self.spout_emit(self.rng.choice(list(SPOUTS)))
        for _ in range(3):
            busy = [key for key, queue in self.channels.items() if queue]
            if busy:
                src, dst = self.rng.choice(busy)
                self.deliver(src, dst, self.channels[(src, dst)].popleft())

    def finished(self) -> bool:
        stored = self.provider.read_record()
        if stored is None:
            return False
        sources = stored["sources"].get("spouts", {})
        return all(sources.get(name) == len(s) for name, s in self.input.items())

    def run(self, steps: int, tail: int = 200_000) -> None:
        for _ in range(steps):
            self.step()
        self.failures = False
        for _ in range(tail):
            if self.finished():
                return
            self.step()
        raise AssertionError("the input was not fully committed once failures stopped")


def test_without_failures_every_sentence_is_counted_once() -> None:
    sim = Sim(seed=1, failures=False)
    sim.run(steps=0)
    assert sim.rollbacks == 0 and sim.committed == list(range(1, len(sim.committed) + 1))
    assert len(sim.committed) > 3


@pytest.mark.parametrize("seed", range(40))
def test_exactly_once_whatever_fails(seed: int) -> None:
    sim = Sim(seed=seed)
    sim.run(steps=6000)
    # Every commit was checked against the input (Sim.check_commit); the last covers it all.
    assert sim.committed == list(range(1, len(sim.committed) + 1))


def test_the_runs_do_fail_and_recover() -> None:
    """The randomized runs above are only worth something if failures happen in them."""
    rollbacks = crashes = 0
    for seed in range(10):
        sim = Sim(seed=seed)
        sim.run(steps=6000)
        rollbacks += sim.rollbacks
        crashes += sim.crashes
    assert crashes >= 10 and rollbacks >= 20
