"""Exactly-once word count: the lines of a log file -> split -> a committer that keeps the
counts as checkpointed state and writes the totals to SQLite once per checkpoint, with the
txid beside each row, so a commit replayed after a crash changes nothing.

Run it locally:   squall local examples/exactly_once_count.py --duration 10
Input:  $EXACTLY_ONCE_INPUT  (default /tmp/squall-exactly-once/input.log, written if missing)
Output: $EXACTLY_ONCE_DB     (default /tmp/squall-exactly-once/counts.sqlite3):
        counts(word, count, txid) and commits(task, txid): one row per committed checkpoint.
Kill a worker (kill -9) while it runs: the totals still end exactly equal to the input's.
The checkpointed state (counts, the spout's offset) lives in
`local.dir`/state/exactly-once-count.sqlite3: a second run resumes from it and counts only
new lines; remove it with the output to start over.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping
from typing import Any

from topology import Bolt, TopologyBuilder
from topology.spouts import LogFileSpout
from topology.state import DELETED, CommitterBolt, KeyValueState

WORDS = "the cow jumped over the moon an apple a day keeps the doctor away".split()
HERE = "/tmp/squall-exactly-once"
INPUT = os.environ.get("EXACTLY_ONCE_INPUT", os.path.join(HERE, "input.log"))
DB = os.environ.get("EXACTLY_ONCE_DB", os.path.join(HERE, "counts.sqlite3"))


def write_sample(path: str, lines: int = 20_000) -> None:
    """A log file of `lines` lines of words, if `path` does not exist yet."""
    if os.path.exists(path):
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        for i in range(lines):
            f.write(" ".join(WORDS[(i + j) % len(WORDS)] for j in range(i % 7 + 1)) + "\n")
    os.replace(path + ".tmp", path)


class SplitLine(Bolt):
    outputs = ["word"]

    def process(self, tup: Any) -> None:
        for word in tup.values[0].split():
            self.emit([word])


class CommitCounts(CommitterBolt):
    """Counts words in its checkpointed state; writes each checkpoint's new totals out."""

    def __init__(self, db: str = DB) -> None:
        self.db_path = db

    def prepare(self, conf: Mapping[str, Any], context: Any) -> None:
        self.task = context.task_id
        self.db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS counts (word TEXT PRIMARY KEY, "
                        "count INTEGER NOT NULL, txid INTEGER NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS commits (task INTEGER NOT NULL, "
                        "txid INTEGER NOT NULL, PRIMARY KEY (task, txid))")

    def init_state(self, state: KeyValueState) -> None:
        self.counts = state

    def process(self, tup: Any) -> None:
        word = tup.values[0]
        self.counts[word] = self.counts.get(word, 0) + 1

    def commit(self, txid: int, changes: Mapping[Any, Any]) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            seen = db.execute("SELECT 1 FROM commits WHERE task = ? AND txid = ?",
                              (self.task, txid)).fetchone()
            if seen is None:  # a commit replayed after a crash is skipped
                for word, count in changes.items():
                    if count is DELETED:
                        db.execute("DELETE FROM counts WHERE word = ? AND txid < ?", (word, txid))
                        continue
                    db.execute("INSERT INTO counts VALUES (?, ?, ?) ON CONFLICT (word) DO UPDATE "
                               "SET count = excluded.count, txid = excluded.txid "
                               "WHERE counts.txid < excluded.txid", (word, count, txid))
                db.execute("INSERT INTO commits VALUES (?, ?)", (self.task, txid))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def cleanup(self) -> None:
        self.db.close()


def build(input_path: str = INPUT, db: str = DB, workers: int = 2,
          config: Mapping[str, Any] | None = None) -> Any:
    builder = TopologyBuilder("exactly-once-count")
    builder.set_spout("lines", LogFileSpout(input_path))
    builder.set_bolt("split", SplitLine, parallelism=2).shuffle_grouping("lines")
    builder.set_bolt("count", CommitCounts(db), parallelism=2).fields_grouping("split", ["word"])
    return builder.build(config={"topology.workers": workers,
                                 "topology.max.spout.pending": 5000, **(config or {})})


write_sample(INPUT)
os.makedirs(os.path.dirname(DB) or ".", exist_ok=True)
topology = build()
