"""Distinct users per minute: a HyperLogLog per tumbling minute of event time.

views (a replay of page views: each event's `ts` runs 30 times faster than the wall clock,
so a minute of events takes 2 s) -> distinct (a tumbling 1-minute window on `ts`, kept
incrementally: one HyperLogLog sketch per minute, no user ids held) -> report (logs each
minute's estimate). Views are reliable: each is acked once its minute has been reported.

Run it locally:   squall local examples/distinct_users.py --duration 20
"""

from __future__ import annotations

import logging
import random
import time

from topology import Bolt, Spout, TopologyBuilder
from topology.sketches import HyperLogLog
from topology.windowing import Duration, WindowedBolt

log = logging.getLogger(__name__)

SPEEDUP = 30  # event seconds per wall-clock second
START = 1_699_999_980  # the replayed log's first event, in seconds (a whole minute)


class PageViews(Spout):
    """Page views by users drawn from a pool that grows minute after minute."""

    outputs = ["user", "ts"]

    def open(self, conf, context):
        self.random = random.Random(context.task_index)
        self.began = time.monotonic()
        self.last = 0.0
        self.pending = {}  # msg id -> values, until acked
        self.replay = []
        self.ids = 0

    def next_tuple(self):
        if self.replay:  # a failed view is sent again (late if its minute has closed)
            msg_id = self.replay.pop()
            self.emit(self.pending[msg_id], msg_id=msg_id)
            return
        now = time.monotonic()
        if now - self.last < 0.001:
            return
        self.last = now
        ts = START + (now - self.began) * SPEEDUP
        minute = int((ts - START) // 60)
        values = [f"user-{self.random.randrange(1000 * (minute + 1))}", ts]
        self.ids += 1
        self.pending[self.ids] = values
        self.emit(values, msg_id=self.ids)

    def ack(self, msg_id):
        del self.pending[msg_id]

    def fail(self, msg_id):
        self.replay.append(msg_id)


class DistinctUsers(WindowedBolt):
    outputs = ["minute", "users"]

    def initial(self):
        return HyperLogLog(lg_k=12)

    def add(self, acc, tup):
        acc.add(tup["user"])
        return acc

    def merge(self, acc1, acc2):
        return acc1.merge(acc2)

    def process_window(self, window):
        self.emit([window.start, round(window.result.estimate())])


class Report(Bolt):
    outputs = []

    def process(self, tup):
        minute = time.strftime("%H:%M", time.gmtime(tup["minute"]))
        log.info("minute %s (event time): about %d distinct users", minute, tup["users"])


builder = TopologyBuilder("distinct-users")
builder.set_spout("views", PageViews)
builder.set_bolt("distinct", DistinctUsers()
                 .with_tumbling_window(Duration(minutes=1))
                 .with_timestamp_field("ts")
                 .with_lag(Duration(seconds=5))).global_grouping("views")
builder.set_bolt("report", Report).global_grouping("distinct")
# A minute window holds each view's ack until the window closes: two minutes of event time at
# most, four wall-clock seconds here; the timeout is checked against event-time lengths.
topology = builder.build(config={"topology.message.timeout.secs": 120})
