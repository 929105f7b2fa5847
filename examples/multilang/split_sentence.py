"""Splits sentences into words: a pystorm bolt, exactly as it runs under Storm/streamparse.

Squall runs it as a subprocess of the worker (see topology.py next to it):
    ShellBolt([sys.executable, "split_sentence.py"], outputs=["word"])
"""

from pystorm import Bolt


class SplitSentenceBolt(Bolt):
    def process(self, tup):
        for word in tup.values[0].split():
            self.emit([word])


if __name__ == "__main__":
    SplitSentenceBolt().run()
