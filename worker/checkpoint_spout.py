"""The spout executor of a topology with stateful bolts: a spout task's side of the
checkpoint protocol (decisions: `acker.epochs.SpoutLedger`).

Each tree's root carries its epoch (`acker.epochs.make_root`); the acker's verdicts go to the
ledger instead of the user's spout, whose `ack` runs only when the checkpoint covering the
tuple commits, and whose `fail` runs when it is rolled back. A spout executor cannot receive
system tuples, so it reads the coordinator's directive (`worker.checkpoint.Directive`) from
the state provider every `SPOUT_POLL_SECS` and answers on the checkpoint system stream. A
`topology.spouts.ReplayableSpout` is replayed by seeking to the committed position.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from acker.checkpoint import Commit, Hello, Message, Recover, Start
from acker.epochs import SpoutLedger, make_root
from topology.state import StateError, StateProvider, open_provider
from topology.state.plan import plan_of
from worker.acking import new_id
from worker.checkpoint import (
    HELLO_EVERY_SECS,
    SPOUT_POLL_SECS,
    SYSTEM_STREAMS,
    StoreOpener,
    send,
)
from worker.collector import SpoutCollector
from worker.executor import SpoutExecutor, TaskEnv
from worker.routing import Route

log = logging.getLogger(__name__)


class EpochSpoutCollector(SpoutCollector):
    """A spout collector whose tracked trees have epoch-tagged roots, counted per epoch."""

    ledger: SpoutLedger

    def _send(self, route: Route, targets: list[int], values: Sequence[Any], msg_id: Any) -> None:
        if msg_id is None or self.outbox is None or not targets:
            super()._send(route, targets, values, msg_id)
            return
        out = self.out
        code = route.code
        root = make_root(self.ledger.epoch, new_id())
        xor = 0
        for t in targets:
            edge = new_id()
            xor ^= edge
            rows = out[t]
            rows.append(code)
            rows.append(values)
            rows.append((root, edge))
        self.outbox.inits.append((root, xor, self.task))
        self.pending[root] = (msg_id, self.now, route.stream)
        self.ledger.emitted()  # one call per tree: the cost of the epoch count
        route.emitted += 1
        self.emits += 1


class CheckpointSpoutExecutor(SpoutExecutor):
    system_streams = SYSTEM_STREAMS

    def __init__(self, env: TaskEnv) -> None:
        super().__init__(env)
        plan = plan_of(self.spout)
        assert plan is not None and env.context is not None, "built by prepare_checkpoints"
        ctx = env.context
        self.coordinator = plan.coordinator_task({c: ctx.component_tasks(c)
                                                  for c in ctx.components})
        self.replayable = bool(getattr(self.spout, "replay_by_seek", False))
        self.ledger = SpoutLedger(env.task, keep_msg_ids=not self.replayable)
        self.where = f"{env.component} task {env.task}"
        collector = EpochSpoutCollector(env.component, env.task, env.routes, env.system_codes,
                                        env.capture, env.outbox, self.pending)
        collector.ledger = self.ledger
        collector.out.setdefault(self.coordinator, [])
        self.collector = collector
        self.spout._attach(collector)
        self.provider: StateProvider | None = None
        self.accept_from = 0  # the first recovery epoch this incarnation may join
        self.recovered_at = -1.0
        self.said = ""  # the last provider error logged
        self.last_doc: dict[str, Any] | None = None
        self.opener = StoreOpener(self)

    def open(self) -> None:
        assert self.context is not None
        super().open()
        now = time.monotonic()
        self._open_provider(now)
        self._hello(now)
        schedule = self.services.schedule
        schedule.every(HELLO_EVERY_SECS, self._hello, now + HELLO_EVERY_SECS, f"{self.where} hello")
        schedule.every(SPOUT_POLL_SECS, self.poll, now + SPOUT_POLL_SECS, f"{self.where} poll")

    def _open_provider(self, now: float) -> None:
        """Open the state provider (`poll` tries again while it fails)."""
        assert self.context is not None
        name = self.context.topology_name

        def open_it() -> tuple[StateProvider, dict[str, Any] | None]:
            provider = open_provider(self.conf, name)
            return provider, provider.read_control()

        opened = self.opener.attempt(now, open_it)
        if opened is None:
            return
        self.provider, doc = opened
        # Tuples a previous incarnation emitted in the running epochs are lost: join only a
        # recovery that starts after the HELLO sent at open, or one in which nothing has run.
        if doc and doc.get("recover") and doc.get("phase") != "recovering":
            self.accept_from = int(doc["recover"][1]) + 1

    def _hello(self, now: float) -> None:
        if self.ledger.epoch < self.accept_from or self.ledger._recovery is None:
            self._send(Hello(self.task))

    def _send(self, message: Message) -> None:
        send(self.collector, message, [self.coordinator])

    def run(self, now: float, calls: int, until: float) -> int:
        if not self.ledger.running:
            return 0
        return super().run(now, calls, until)

    # --- the directive -----------------------------------------------------------------

    def poll(self, now: float) -> None:
        if self.provider is None:
            if self.opener.retry_due(now):
                self._open_provider(now)
            if self.provider is None:
                return
        try:
            doc = self.provider.read_control()
        except StateError as e:
            if str(e) != self.said:
                self.said = str(e)
                log.error("%s: %s", self.where, e)
            return
        if not doc or not doc.get("recover"):
            return
        if doc is self.last_doc and doc["phase"] != "recovering":
            return  # unchanged (a provider may hand back the same object)
        self.last_doc = doc
        txid, epoch, sources = doc["recover"]
        if epoch >= self.accept_from:
            self._recover(Recover(txid, epoch, sources), doc["phase"] == "recovering", now)
        if self.ledger._recovery != epoch:
            return
        for txid, epoch in doc["starts"]:
            position = self.spout.position() if self.replayable else None
            for done in self.ledger.start(Start(txid, epoch), position):
                self._send(done)
        for txid, epoch in doc["commits"]:
            before = self.ledger.committed_txid
            for msg_id in self.ledger.commit(Commit(txid, epoch)):
                self.deliver_ack(msg_id)
            if self.replayable and self.ledger.committed_txid == txid != before:
                self.stats.acked += self.ledger.committed_trees  # acked by seeking no more
                self.spout.committed(self.ledger.committed_position)

    def _recover(self, msg: Recover, recovering: bool, now: float) -> None:
        in_flight = [entry[0] for entry in self.pending.values()]
        out = self.ledger.recover(msg, in_flight)
        if out.rollback:
            self.pending.clear()
            for msg_id in out.fail:
                self.deliver_fail(msg_id)
            if self.replayable:
                try:
                    self.spout.seek(msg.sources.get(self.component, {}))
                except ValueError as e:
                    self.errors.report(self.component, self.task, "seek", e)
        elif not (recovering and now - self.recovered_at >= HELLO_EVERY_SECS / 2):
            return
        if out.reply is not None:
            self.recovered_at = now
            self._send(out.reply)

    # --- the acker's verdicts ----------------------------------------------------------

    def outcomes(self, acked: Sequence[int], failed: Sequence[int], now: float) -> None:
        pop = self.pending.pop
        latency = self.stats.complete_latency
        per_stream = self.stats.latency_streams  # its counts are the acked trees
        for root in acked:
            entry = pop(root, None)
            if entry is None:
                continue
            took = now - entry[1]
            if took < self.timeout:
                latency.add(took)
                pair = per_stream.setdefault(entry[2], [0.0, 0])
                pair[0] += took
                pair[1] += 1
                self._completed(root, entry[0])
            else:
                self.stats.timed_out += 1
                self.stats.failed_on(entry[2])
                self._failed(root, entry[0], "a tuple tree completed after its timeout")
        for root in failed:
            entry = pop(root, None)
            if entry is not None:
                self.stats.failed_on(entry[2])
                self._failed(root, entry[0], "a tuple failed")

    def expire(self, now: float) -> None:
        cutoff = now - self.timeout
        late = []
        for root, entry in self.pending.items():
            if entry[1] > cutoff:
                break
            late.append(root)
        for root in late:
            msg_id, _, stream = self.pending.pop(root)
            self.stats.timed_out += 1
            self.stats.failed_on(stream)
            self._failed(root, msg_id, "a tuple timed out")

    def _completed(self, root: int, msg_id: Any) -> None:
        done = self.ledger.completed(root, msg_id)
        if done is not None:
            self._send(done)

    def _failed(self, root: int, msg_id: Any, reason: str) -> None:
        failed = self.ledger.failed(root, msg_id, reason)
        if failed is not None:
            self._send(failed)

    def extra_snapshot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"held": self.ledger.held}
        if self.replayable:
            out["source"] = self.spout.source()
        return out
