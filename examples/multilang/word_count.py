"""Word count with a pystorm bolt: native spout -> pystorm split bolt -> native count.

`split_sentence.py` next to this file is a pystorm bolt exactly as it runs under Storm or
streamparse; Squall runs it as a subprocess of the worker (one per task) and speaks Storm's
multilang protocol with it. The native spout replays what fails, so a crash of the
subprocess loses nothing: its tuples in flight fail, the spout emits them again, and the
restarted subprocess splits them.

Run it locally:   squall local examples/multilang/word_count.py --duration 10
"""

from __future__ import annotations

import itertools
import sys
from collections import Counter

from topology import Bolt, Spout, TopologyBuilder
from topology.multilang import ShellBolt

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


class WordCount(Bolt):
    outputs = ["word", "count"]

    def prepare(self, conf, context):
        self.counts = Counter()

    def process(self, tup):
        word = tup.values[0]
        self.counts[word] += 1
        self.emit([word, self.counts[word]])


builder = TopologyBuilder("multilang-word-count")
builder.set_spout("sentences", SentenceSpout, parallelism=1)
# The command runs in this file's directory (the topology's code directory), where the
# script is. sys.executable: the Python that has pystorm (any command works: node, ruby...).
builder.set_bolt("split", ShellBolt([sys.executable, "split_sentence.py"], outputs=["word"]),
                 parallelism=2).shuffle_grouping("sentences")
builder.set_bolt("count", WordCount, parallelism=2).fields_grouping("split", ["word"])
topology = builder.build(config={"topology.workers": 2, "topology.max.spout.pending": 2000})
