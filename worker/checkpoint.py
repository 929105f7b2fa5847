"""The checkpoint coordinator on a real worker: the shell around `acker.coordinator`.

It runs inside the first task of the topology's stateful bolts (`topology.state.plan`), on
that task's loop: a timer ticks it, the checkpoint system stream (`CKPT_STREAM`) brings it
the tasks' messages, and it carries out the machine's actions: messages to stateful tasks
go on the system stream; the commit record is written to the state provider; messages to
spouts go into the provider's *directive* (`Directive`), which every spout task reads every
`SPOUT_POLL_SECS` (a spout executor cannot receive system tuples; it can send them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from acker.checkpoint import (
    Commit,
    CommitRecord,
    Message,
    Recover,
    Start,
    check_layout,
    to_wire,
)
from acker.coordinator import Action, Coordinator, Persist, RolledBack, Send
from topology.state import StateError, StateProvider

log = logging.getLogger(__name__)

CKPT_STREAM = "__checkpoint"
SYSTEM_STREAMS = {CKPT_STREAM: ["message"]}
SPOUT_POLL_SECS = 0.01  # how often a spout task reads the coordinator's directive
HELLO_EVERY_SECS = 1.0  # a task that has not restored yet says HELLO again this often
OPEN_RETRY_SECS = 1.0  # how often a task that could not open its state store tries again

T = TypeVar("T")
KEEP_COMMITS = 8  # commits the directive lists (a COMMIT implies the ones before it)


def send(collector: Any, message: Message, tasks: Sequence[int]) -> None:
    """A checkpoint message to `tasks` on the checkpoint system stream."""
    collector.emit_system(CKPT_STREAM, [to_wire(message)], tasks)


class Directive:
    """What the coordinator tells the spouts, as the JSON document they poll: the current
    recovery, the checkpoints opened since (uncommitted) and the recent commits."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"recover": None, "phase": "recovering", "starts": [],
                                    "commits": []}
        self.changed = False

    def apply(self, message: Message) -> None:
        doc = self.doc
        if isinstance(message, Recover):
            if doc["recover"] is not None and doc["recover"][1] == message.epoch:
                return  # a resend to tasks that have not answered
            doc.update(recover=[message.txid, message.epoch, message.sources],
                       phase="recovering", starts=[], commits=[])
        elif isinstance(message, Start):
            doc["phase"] = "running"
            doc["starts"].append([message.txid, message.epoch])
        elif isinstance(message, Commit):
            doc["starts"] = [s for s in doc["starts"] if s[1] > message.epoch]
            doc["commits"] = [*doc["commits"][-(KEEP_COMMITS - 1):],
                              [message.txid, message.epoch]]
        else:
            return
        self.changed = True


class StoreOpener:
    """A task's attempts at opening its state store. A failure (a server not up yet, a
    directory it cannot make) is reported as the task's error the first time and may be
    tried again OPEN_RETRY_SECS later; the task takes part in no checkpoint meanwhile."""

    def __init__(self, executor: Any) -> None:
        self.executor = executor
        self.failures = 0
        self.retry_at = 0.0

    def retry_due(self, now: float) -> bool:
        return self.failures > 0 and now >= self.retry_at

    def attempt(self, now: float, open_it: Callable[[], T]) -> T | None:
        """What `open_it()` returns, or None if it raised."""
        ex = self.executor
        try:
            opened = open_it()
        except Exception as e:
            if not self.failures:
                ex.errors.report(ex.component, ex.task, "opening its checkpointed state", e)
            self.failures += 1
            self.retry_at = now + OPEN_RETRY_SECS
            return None
        if self.failures:
            log.info("%s task %d: opened its checkpointed state after %d failures",
                     ex.component, ex.task, self.failures)
        return opened


class CoordinatorShell:
    """Drives one `Coordinator` for the task `host` (a stateful bolt executor)."""

    def __init__(self, host: Any, provider: StateProvider, spouts: Mapping[int, str],
                 stateful: Sequence[int], committers: Sequence[int], watched: Sequence[int],
                 layout: Mapping[str, int], conf: Mapping[str, Any]) -> None:
        self.host = host
        self.provider = provider
        self.spouts = dict(spouts)
        self.directive = Directive()
        self.where = f"checkpoint coordinator of topology {provider.topology!r}"
        interval = float(conf.get("topology.state.checkpoint.interval.ms") or 1000) / 1000
        self.tick_every = min(0.1, max(0.005, interval / 4))
        record = CommitRecord.from_dict(provider.read_record() or {})
        check_layout(provider.topology, record, layout)
        self.machine = Coordinator(spouts, stateful, committers, record, interval=interval,
                                   timeout=float(conf["topology.message.timeout.secs"]),
                                   watched=watched, layout=layout)
        log.info("%s: starting from txid %d (task %d)", self.where, record.txid, host.task)

    def start(self, now: float) -> None:
        self.run(self.machine.start(now), now)
        self.host.services.schedule.every(self.tick_every, self.tick, now + self.tick_every,
                                         "checkpoint coordinator")

    def tick(self, now: float) -> None:
        self.run(self.machine.tick(now, time.time()), now)

    def receive(self, message: Message, now: float) -> None:
        self.run(self.machine.receive(message, now, time.time()), now)

    def run(self, actions: list[Action], now: float) -> None:
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, Send):
                self._send(action)
            elif isinstance(action, Persist):
                ok = self._persist(action)
                if action.commit:
                    pending[:0] = self.machine.persisted(ok, now, time.time())
            elif isinstance(action, RolledBack):
                log.warning("%s: rolled back checkpoint(s) %s: %s", self.where,
                            ", ".join(map(str, action.txids)) or "none open", action.reason)
        if self.directive.changed:
            try:
                self.provider.write_control(self.directive.doc)
                self.directive.changed = False
            except StateError as e:  # tried again after the next action
                log.error("%s: %s", self.where, e)

    def _send(self, action: Send) -> None:
        tasks = [t for t in action.tasks if t not in self.spouts]
        if len(tasks) < len(action.tasks):
            self.directive.apply(action.message)
        if tasks:
            send(self.host.collector, action.message, tasks)

    def _persist(self, action: Persist) -> bool:
        try:
            self.provider.write_record(action.record.to_dict())
            return True
        except StateError as e:
            log.error("%s: %s", self.where, e)
            return False

    def snapshot(self) -> dict[str, Any]:
        return self.machine.snapshot()
