"""Word count: a reliable sentence spout -> split -> count (fields grouping on the word).

Run it locally:   squall local examples/word_count.py --duration 10
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter

from topology import Bolt, Spout, TopologyBuilder

log = logging.getLogger(__name__)

SENTENCES = [
    "the cow jumped over the moon",
    "an apple a day keeps the doctor away",
    "four score and seven years ago",
    "snow white and the seven dwarfs",
    "i am at two with nature",
]


class SentenceSpout(Spout):
    """Emits sentences reliably; a failed sentence is emitted again."""

    outputs = ["sentence"]

    def open(self, conf, context):
        self.ids = itertools.count()
        self.sentences = itertools.cycle(SENTENCES)
        self.pending = {}
        self.replay = []

    def next_tuple(self):
        if self.replay:
            msg_id = self.replay.pop()
            sentence = self.pending[msg_id]
        else:
            msg_id = next(self.ids)
            sentence = next(self.sentences)
            self.pending[msg_id] = sentence
        self.emit([sentence], msg_id=msg_id)

    def ack(self, msg_id):
        del self.pending[msg_id]

    def fail(self, msg_id):
        self.replay.append(msg_id)


class SplitSentence(Bolt):
    outputs = ["word"]

    def process(self, tup):
        for word in tup.values[0].split():
            self.emit([word])


class WordCount(Bolt):
    outputs = ["word", "count"]

    def prepare(self, conf, context):
        self.counts = Counter()

    def process(self, tup):
        word = tup.values[0]
        self.counts[word] += 1
        self.emit([word, self.counts[word]])


builder = TopologyBuilder("word-count")
builder.set_spout("sentences", SentenceSpout, parallelism=2)
builder.set_bolt("split", SplitSentence, parallelism=4).shuffle_grouping("sentences")
builder.set_bolt("count", WordCount, parallelism=4).fields_grouping("split", ["word"])
topology = builder.build(config={"topology.workers": 2, "topology.max.spout.pending": 2000})
