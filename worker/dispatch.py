"""Where tuples, acks and spout outcomes go: this worker's own tasks, or a peer.

Rows a collector wrote for a task of this worker are handed over by reference (no copy, no
encoding) right after the executor's slice. Rows for other workers are sent at each flush
as one DATA message per peer and `worker.batch.size` tuples, and never as a message over
the size limit every worker enforces (a batch that would be is split). Acks go to the acker
task `worker.sharding` names, and the acker's verdicts to the spout task that opened the tree;
what one worker has for another of both travels in one ACKER message per flush.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from worker.collector import Collector
from worker.executor import AckerExecutor, BoltExecutor, SpoutExecutor
from worker.sharding import AckShare, Address, by_worker, group_outcomes, shard_acks
from worker.tasks import TaskSet
from worker.transport import MessageTooBig, Transport
from worker.wire import (
    ACKER,
    DATA,
    Rows,
    decode_ack_share,
    decode_lane,
    decode_outcomes,
    encode_ack_share,
    encode_lane,
    encode_outcomes,
    runs,
    split_lanes,
)

log = logging.getLogger(__name__)

Batch = list[tuple[int, int, Rows]]  # (dest task, src task, rows) bound for one peer


class Dispatcher:
    def __init__(self, tasks: TaskSet, transport: Transport, locations: Mapping[int, Address],
                 batch_size: int) -> None:
        self.transport = transport
        self.locations = locations
        self.batch_size = batch_size
        self.bolts: dict[int, BoltExecutor] = {b.task: b for b in tasks.bolts}
        self.spouts: dict[int, SpoutExecutor] = {s.task: s for s in tasks.spouts}
        self.ackers: dict[int, AckerExecutor] = tasks.ackers
        self.acker_tasks = tasks.acker_tasks
        self.outbox = tasks.outbox
        self.collectors: list[Collector] = [*(s.collector for s in tasks.spouts),
                                            *(b.collector for b in tasks.bolts)]
        # Tasks never move into or out of a running worker (it restarts instead), so each
        # collector's local targets are known once.
        self._local = {c.task: [(t, self.bolts[t]) for t in c.out if t in self.bolts]
                       for c in self.collectors}
        self.queued = 0  # tuples waiting in this worker's bolt queues
        self.dropped = 0  # tuples for tasks this worker cannot place (stale routing)
        self.too_big = 0  # tuples over the message size limit on their own (not sent)
        # Verdicts of this worker's ackers for spouts of other workers, sent at the flush.
        self._verdicts: dict[Address, dict[int, tuple[list[int], list[int]]]] = {}

    # --- tuples --------------------------------------------------------------------------

    def hand_over(self, collector: Collector) -> None:
        """Move the rows `collector` wrote for this worker's tasks into their queues."""
        out = collector.out
        src = collector.task
        for target, bolt in self._local[src]:
            rows = out[target]
            if rows:
                out[target] = []
                for code, values, ids in runs(rows):
                    bolt.put(src, code, len(values), zip(values, ids, strict=True))
                self.queued += len(rows) // 3

    def flush_data(self) -> None:
        """Hand over local rows and send every peer what its tasks were sent."""
        batches: dict[Address, Batch] = {}
        sizes: dict[Address, int] = {}
        limit = 3 * self.batch_size
        for collector in self.collectors:
            self.hand_over(collector)
            src = collector.task
            for target, rows in collector.take_rows():
                address = self.locations.get(target)
                if address is None:
                    self.dropped += len(rows) // 3
                    continue
                batch = batches.setdefault(address, [])
                chunks = [rows] if len(rows) <= limit else _chunks(rows, limit)
                for chunk in chunks:
                    batch.append((target, src, chunk))
                    sizes[address] = sizes.get(address, 0) + len(chunk)
                    if sizes[address] >= limit:
                        self._send(address, batches.pop(address))
                        batch = batches.setdefault(address, [])
                        sizes[address] = 0
        for address, batch in batches.items():
            if batch:
                self._send(address, batch)

    def _send(self, address: Address, batch: Batch) -> None:
        lanes = [encode_lane(dest, src, *run) for dest, src, rows in batch for run in runs(rows)]
        for _, _, rows in batch:
            # The value lists are the lanes' alone now, so marshal notes no back-reference
            # for them (a third of what writing a batch costs otherwise).
            rows.clear()
        self._send_lanes(address, lanes)

    def _send_lanes(self, address: Address, lanes: list[Any]) -> None:
        try:
            self.transport.send_data(address, DATA, lanes)
        except MessageTooBig as e:
            if len(lanes) == 1 and len(lanes[0][3]) == 1:
                self.too_big += 1
                log.error("worker %s:%d: a tuple from task %d to task %d is %d bytes encoded, "
                          "over worker.max.message.bytes (%d): not sent (its tree times out)",
                          *self.transport.address, lanes[0][1], lanes[0][0], e.size, e.limit)
                return
            for half in split_lanes(lanes):
                self._send_lanes(address, half)

    def take_data(self, payload: Any) -> int:
        """Queue a DATA payload for this worker's tasks; return how many tuples it held."""
        taken = 0
        for lane in payload:
            dest, src, code, n, rows = decode_lane(lane)
            bolt = self.bolts.get(dest)
            if bolt is None:
                self.dropped += n  # stale routing: the trees time out and replay
                continue
            bolt.put(src, code, n, rows)
            taken += n
        self.queued += taken
        return taken

    # --- acks and outcomes ---------------------------------------------------------------

    def flush_acks(self, now: float) -> None:
        """Feed this worker's ackers and send each peer, in one message, what its ackers are
        told and the verdicts for its spouts gathered since the last flush."""
        peers: dict[Address, dict[int, AckShare]] = {}
        outbox = self.outbox
        if outbox:
            shares = shard_acks(*outbox.take(), self.acker_tasks)
            mine, peers, _ = by_worker(shares, self.ackers, self.locations)
            for task, share in mine.items():
                self.deliver_outcomes(*self.ackers[task].handle(*share), now)
        self._send_acking(peers)

    def send_verdicts(self) -> None:
        """Send the verdicts waiting for other workers' spouts now (they end a tree's
        latency; the acks for ackers wait for the flush)."""
        if self._verdicts:
            self._send_acking({})

    def _send_acking(self, peers: dict[Address, dict[int, AckShare]]) -> None:
        verdicts, self._verdicts = self._verdicts, {}
        for address in peers.keys() | verdicts.keys():
            shares_out = {t: encode_ack_share(*share)
                          for t, share in peers.get(address, {}).items()}
            verdicts_out = {t: encode_outcomes(*outcome)
                            for t, outcome in verdicts.get(address, {}).items()}
            self.transport.send_system(address, ACKER, (shares_out, verdicts_out))

    def take_acks(self, payload: Any, now: float) -> None:
        """An ACKER message: feed this worker's ackers, tell its spouts their verdicts."""
        shares, verdicts = payload
        for task, share in shares.items():
            acker = self.ackers.get(task)
            if acker is not None:
                self.deliver_outcomes(*acker.handle(*decode_ack_share(share)), now)
        for task, outcome in verdicts.items():
            spout = self.spouts.get(task)
            if spout is not None:
                spout.outcomes(*decode_outcomes(outcome), now)

    def deliver_outcomes(self, acked: list[tuple[int, int]], failed: list[tuple[int, int]],
                         now: float) -> None:
        """Verdicts of this worker's ackers: to its own spouts now, to peers' at the flush."""
        if not acked and not failed:
            return
        mine, peers, _ = by_worker(group_outcomes(acked, failed), self.spouts, self.locations)
        for task, (acked_roots, failed_roots) in mine.items():
            self.spouts[task].outcomes(acked_roots, failed_roots, now)
        for address, per_task in peers.items():
            waiting = self._verdicts.setdefault(address, {})
            for task, (acked_roots, failed_roots) in per_task.items():
                entry = waiting.get(task)
                if entry is None:
                    waiting[task] = (acked_roots, failed_roots)
                else:
                    entry[0].extend(acked_roots)
                    entry[1].extend(failed_roots)


def _chunks(rows: Rows, size: int) -> list[Rows]:
    """`rows` cut into lists of at most `size`; `rows` is left empty (see Dispatcher._send)."""
    out = [rows[i:i + size] for i in range(0, len(rows), size)]
    rows.clear()
    return out
