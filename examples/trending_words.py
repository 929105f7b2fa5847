"""Trending words: the top 5 words of the last 10 seconds, every 2 seconds, in event time.

sentences (event time `ts`, arriving up to 2 s out of order) -> split -> top (a sliding
window of 10 s every 2 s on `ts`, lag 3 s, kept incrementally as one FrequentItems sketch
per 2-second pane) -> report (logs each window's ranking). Words more than the lag late go
to the "late" stream, which `report` logs too.

Run it locally:   squall local examples/trending_words.py --duration 20
"""

from __future__ import annotations

import logging
import random
import time

from topology import Bolt, Spout, TopologyBuilder
from topology.sketches import FrequentItems
from topology.windowing import Duration, WindowedBolt

log = logging.getLogger(__name__)

WORDS = ("storm squall gale breeze window stream tuple spout bolt acker watermark "
         "pane sketch lag late").split()
TOP = 5


class SentenceSpout(Spout):
    """Sentences stamped with the time they "happened": up to 2 s before they are sent."""

    outputs = ["sentence", "ts"]

    def open(self, conf, context):
        self.random = random.Random(context.task_index)
        self.last = 0.0

    def next_tuple(self):
        if time.monotonic() - self.last < 0.002:  # about 500 sentences a second per task
            return
        self.last = time.monotonic()
        # A skewed vocabulary, so there is something to trend.
        words = self.random.choices(WORDS, weights=range(len(WORDS), 0, -1), k=6)
        self.emit([" ".join(words), time.time() - self.random.uniform(0, 2)])


class SplitSentence(Bolt):
    outputs = ["word", "ts"]

    def process(self, tup):
        for word in tup["sentence"].split():
            self.emit([word, tup["ts"]])


class TopWords(WindowedBolt):
    """The incremental form: per pane one FrequentItems sketch, no words kept."""

    outputs = {"default": ["end", "rank", "word", "count"], "late": ["word", "ts"]}

    def initial(self):
        return FrequentItems(lg_max_k=6)

    def add(self, acc, tup):
        acc.add(tup["word"])
        return acc

    def merge(self, acc1, acc2):
        return acc1.merge(acc2)

    def process_window(self, window):
        for rank, (word, count) in enumerate(window.result.top(TOP), 1):
            self.emit([window.end, rank, word, count])


class Report(Bolt):
    outputs = []

    def prepare(self, conf, context):
        self.ranking = {}

    def process(self, tup):
        if tup.stream == "late":
            log.info("late: %r at %.1f", tup["word"], tup["ts"])
            return
        end, rank, word, count = tup.values
        self.ranking.setdefault(end, []).append((rank, word, count))
        if rank == TOP:
            top = ", ".join(f"{w} {c}" for _, w, c in sorted(self.ranking.pop(end)))
            log.info("window ending %s: %s", time.strftime("%H:%M:%S", time.localtime(end)), top)


builder = TopologyBuilder("trending-words")
builder.set_spout("sentences", SentenceSpout, parallelism=2)
builder.set_bolt("split", SplitSentence, parallelism=2).shuffle_grouping("sentences")
builder.set_bolt("top", TopWords()
                 .with_window(Duration(seconds=10), Duration(seconds=2))
                 .with_timestamp_field("ts")
                 .with_lag(Duration(seconds=3))
                 .with_late_tuple_stream("late")).global_grouping("split")
builder.set_bolt("report", Report).global_grouping("top").global_grouping("top", "late")
topology = builder.build(config={"topology.workers": 2})
