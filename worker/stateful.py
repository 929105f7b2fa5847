"""The stateful bolt executor: a `StatefulBolt` task's side of the checkpoint protocol.

Its decisions are `acker.epochs.TaskLedger`'s: a tuple of the epoch being processed goes to
the bolt's `process` and is acked (its tree completing is what lets the checkpoint prepare;
the spout hears of it only once the checkpoint commits), a tuple of a later epoch waits
here, one of a rolled-back epoch is dropped (its spout tuple was failed already). The state
I/O is `topology.state.TaskState`'s. The first task of the stateful bolts also hosts the
checkpoint coordinator (`worker.checkpoint.CoordinatorShell`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from acker.checkpoint import Commit, Committed, Hello, Prepare, Recover, from_wire
from acker.epochs import TAG_SHIFT, TaskLedger
from topology.state import StateError, TaskState, open_provider
from topology.state.bolts import CommitterBolt
from topology.state.plan import CheckpointPlan, plan_of
from topology.tuple import Tuple
from worker.checkpoint import (
    HELLO_EVERY_SECS,
    SYSTEM_STREAMS,
    CoordinatorShell,
    StoreOpener,
    send,
)
from worker.executor import BoltExecutor, TaskEnv

log = logging.getLogger(__name__)


class StatefulBoltExecutor(BoltExecutor):
    system_streams = SYSTEM_STREAMS

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        plan = plan_of(self.bolt)
        assert plan is not None and env.context is not None, "built by prepare_checkpoints"
        self.plan: CheckpointPlan = plan
        self.tasks = {c: env.context.component_tasks(c) for c in env.context.components}
        self.coordinator = plan.coordinator_task(self.tasks)
        self.ledger = TaskLedger(env.task)
        self.committer = isinstance(self.bolt, CommitterBolt)
        self.auto_ack_user = bool(getattr(self.bolt, "auto_ack", True))
        self.where = f"{env.component} task {env.task}"
        self.state: TaskState | None = None
        self.shell: CoordinatorShell | None = None
        self.force_restore = False  # a committer's commit() failed: restore (and rerun it)
        self.opener = StoreOpener(self)
        self.collector.out.setdefault(self.coordinator, [])  # see Dispatcher._local

    def open(self) -> None:
        super().open()
        now = time.monotonic()
        self._open_state(now)
        self._hello(now)
        self.services.schedule.every(HELLO_EVERY_SECS, self._hello, now + HELLO_EVERY_SECS,
                                     f"{self.where} hello")

    def _open_state(self, now: float) -> None:
        """Open the state store, and the coordinator on its task (`_hello` tries again while
        it fails: the task takes part in no checkpoint meanwhile, so none commits)."""
        assert self.context is not None
        context = self.context

        def open_it() -> tuple[TaskState, CoordinatorShell | None]:
            provider = open_provider(self.conf, context.topology_name)
            state = TaskState(provider.task_store(self.component, context.task_index))
            return state, self._coordinator(provider) if self.task == self.coordinator else None

        opened = self.opener.attempt(now, open_it)
        if opened is None:
            return
        self.state, self.shell = opened
        if self.shell is not None:
            self.shell.start(now)

    def _coordinator(self, provider: Any) -> CoordinatorShell:
        spouts = {t: c for c in self.plan.spouts for t in self.tasks.get(c, ())}
        stateful = [t for c in self.plan.stateful for t in self.tasks.get(c, ())]
        committers = [t for c in self.plan.committers for t in self.tasks.get(c, ())]
        layout = {c: len(self.tasks.get(c, ())) for c in self.plan.stateful}
        watched = [t for c in self.plan.watched for t in self.tasks.get(c, ())]
        if provider.kind == "memory" and int(self.conf.get("topology.workers") or 1) > 1:
            raise StateError("topology.state.provider 'memory' keeps checkpoints in one "
                             "process: use it with topology.workers 1 (or use sqlite or redis)")
        if not any(c == "__acker" for c in self.tasks):
            raise StateError("a topology with stateful bolts needs ackers "
                             "(topology.acker.executors > 0)")
        return CoordinatorShell(self, provider, spouts, stateful, committers, watched, layout,
                                self.conf)

    def _hello(self, now: float) -> None:
        if self.state is None and self.opener.retry_due(now):
            self._open_state(now)
        if not self.ledger.ready:
            send(self.collector, Hello(self.task), [self.coordinator])

    # --- data --------------------------------------------------------------------------

    def execute(self, tup: Tuple) -> None:
        ids = tup.id
        # The common case inline: one tree, of the epoch being processed.
        if (len(ids) == 2 and ids[0] >> TAG_SHIFT == self.ledger.open_tag) \
                or self.ledger.admit(tup, ids):
            self.bolt.process(tup)  # an exception: BoltExecutor fails the tuple
            if self.auto_ack_user and self.outbox.ack(tup):
                self.stats.acked += 1

    def _release(self, items: list[Any]) -> None:
        """Process tuples that waited for their epoch."""
        collector = self.collector
        for tup in items:
            if collector.auto_anchor:
                collector.current = tup
            try:
                self.bolt.process(tup)
            except Exception as e:
                self._failed(tup, e)
                continue
            finally:
                collector.current = None
            if self.auto_ack_user:
                collector.ack(tup)

    # --- the protocol ------------------------------------------------------------------

    def on_system(self, tup: Tuple) -> None:
        try:
            message = from_wire(tup.values[0])
        except ValueError as e:
            log.warning("%s: dropped a checkpoint message from task %d: %s", self.where,
                        tup.task, e)
            return
        if isinstance(message, (Recover, Prepare, Commit)):  # coordinator -> this task
            if tup.task != self.coordinator:
                return
            if isinstance(message, Recover):
                self._recover(message)
            elif isinstance(message, Prepare):
                self._prepare(message)
            else:
                self._commit(message)
        elif self.shell is not None:  # a task -> the coordinator this task hosts
            self.shell.receive(message, time.monotonic())

    def _recover(self, msg: Recover) -> None:
        state = self.state
        if state is None:
            return  # cannot restore: never answers, the coordinator keeps asking
        if msg.epoch <= (self.ledger.recovery or 0):
            out = self.ledger.recover(msg)  # a repeat: only answered
            if out.reply is not None:
                send(self.collector, out.reply, [self.coordinator])
            return
        in_step = (self.ledger.ready and self.ledger.committed_txid == msg.txid
                   and not self.force_restore)
        changes: dict[Any, Any] = {}
        try:
            if in_step:
                state.rollback()
            else:
                changes = state.restore(msg.txid)
        except StateError as e:
            log.error("%s: cannot restore checkpoint %d: %s", self.where, msg.txid, e)
            return
        out = self.ledger.recover(msg)
        self.force_restore = False
        if not self.call_user("init_state", self.bolt.init_state, state.kv):
            self.force_restore = True
        if self.committer and not in_step and msg.txid:
            self._run_commit(msg.txid, changes)
        assert out.reply is not None
        send(self.collector, out.reply, [self.coordinator])
        self._release(out.release)

    def _prepare(self, msg: Prepare) -> None:
        reason = self.ledger.check_prepare(msg)
        if reason is None and self.state is not None:
            try:
                self.state.prepare(msg.txid)
            except StateError as e:
                reason = str(e)
        elif reason is None:
            reason = "its state store could not be opened"
        if reason is not None:
            send(self.collector, self.ledger.prepare_failed(msg, reason), [self.coordinator])
            return
        reply, release = self.ledger.prepared_ok(msg)
        send(self.collector, reply, [self.coordinator])
        self._release(release)

    def _commit(self, msg: Commit) -> None:
        txids = self.ledger.commit(msg)
        if not txids or self.state is None:
            return
        try:
            changes = self.state.commit(txids[-1])
        except StateError as e:  # the record says committed: a restore merges it later
            log.error("%s: %s", self.where, e)
            self.force_restore = True
            changes = {}
        if self.committer:
            self._run_commit(msg.txid, changes)

    def _run_commit(self, txid: int, changes: dict[Any, Any]) -> None:
        assert isinstance(self.bolt, CommitterBolt)
        if self.call_user("commit", self.bolt.commit, txid, changes):
            send(self.collector, Committed(self.task, txid), [self.coordinator])
        else:
            self.force_restore = True  # the next recovery runs commit(txid) again

    def extra_snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"held": self.ledger.held}
        if self.shell is not None:
            out["checkpoint"] = self.shell.snapshot()
        return out


class WatchedBoltExecutor(BoltExecutor):
    """A stateless bolt of a topology with stateful bolts. It says HELLO when it starts: a
    restart lost the tuples it held, and the coordinator rolls back at once instead of
    waiting for them to time out. Its tuples are processed as any bolt's."""

    system_streams = SYSTEM_STREAMS

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        plan = plan_of(self.bolt)
        assert plan is not None and env.context is not None, "built by prepare_checkpoints"
        self.coordinator = plan.coordinator_task(
            {c: env.context.component_tasks(c) for c in env.context.components})
        self.collector.out.setdefault(self.coordinator, [])  # see Dispatcher._local

    def open(self) -> None:
        super().open()
        send(self.collector, Hello(self.task), [self.coordinator])
