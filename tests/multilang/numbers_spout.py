"""Emits 1, 2, ... up to `topology.probe.limit`, reliably, and replays what fails: a spout
written as pystorm users write it."""

import os
import time

from pystorm import Spout


class NumbersSpout(Spout):
    def initialize(self, conf, context):
        self.limit = int(conf.get("topology.probe.limit", 10))
        self.hang_at = conf.get("topology.probe.hang.at")
        self.hang_mark = conf.get("topology.probe.hang.mark")  # hang only if it is not there
        self.n = 0
        self.replay = []

    def next_tuple(self):
        if self.n == self.hang_at and not os.path.exists(self.hang_mark):
            open(self.hang_mark, "w").close()
            time.sleep(3600)
        if self.replay:
            n = self.replay.pop(0)
        elif self.n < self.limit:
            self.n += 1
            n = self.n
        else:
            return
        self.emit([n], tup_id=n)

    def ack(self, tup_id):
        self.log(f"acked {tup_id}")

    def fail(self, tup_id):
        self.log(f"failed {tup_id}, replaying it")
        self.replay.append(tup_id)

    def activate(self):
        self.log("activated")

    def deactivate(self):
        self.log("deactivated")


if __name__ == "__main__":
    NumbersSpout().run()
