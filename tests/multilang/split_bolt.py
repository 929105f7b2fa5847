"""Splits sentences into words: a bolt written as pystorm/streamparse users write it."""

from pystorm import Bolt


class SplitSentenceBolt(Bolt):
    def process(self, tup):
        for word in tup.values[0].split():
            self.emit([word])


if __name__ == "__main__":
    SplitSentenceBolt().run()
