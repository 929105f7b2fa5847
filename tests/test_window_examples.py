"""The windowed examples, loaded as `squall local` loads them and run to completion on
mocked input (real workers): their windows give the exact answers within the sketches'
error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from cli.loader import load_topology_file
from topology.testing import complete_topology

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_distinct_users_counts_each_minute_with_a_hyperloglog() -> None:
    topology = load_topology_file(str(EXAMPLES / "distinct_users.py"))
    start = 1_699_999_980
    views = [[f"user-{(i * 7919) % 3000}", start + i * 0.05] for i in range(4000)]  # 200 s
    result = complete_topology(topology, {"views": views}, timeout=90)
    got = dict(result.emitted("distinct"))
    exact: dict[float, set[str]] = {}
    for user, ts in views:
        exact.setdefault(float(start + (ts - start) // 60 * 60), set()).add(user)
    assert sorted(got) == sorted(exact)  # one window per minute, aligned to the minute
    for minute, users in exact.items():
        assert got[minute] == pytest.approx(len(users), rel=0.05)  # lg_k 12: 1.6 % std error
    assert len(result.acked) == len(views)


def test_trending_words_ranks_the_words_of_each_sliding_window() -> None:
    topology = load_topology_file(str(EXAMPLES / "trending_words.py"))
    sentences = [["storm storm squall", 100.5], ["storm gale", 103.0], ["gale gale gale", 111.0]]
    result = complete_topology(topology, {"sentences": sentences}, timeout=90)
    by_end: dict[float, dict[str, int]] = {}
    for end, _, word, count in result.emitted("top"):
        by_end.setdefault(end, {})[word] = count
    expected: dict[float, Counter[str]] = {}
    for sentence, ts in sentences:  # windows of 10 s every 2 s: ends after ts, up to ts + 10
        for end in range(int(ts // 2 * 2) + 2, int(ts) + 11, 2):
            expected.setdefault(float(end), Counter()).update(sentence.split())
    assert by_end == {end: dict(c) for end, c in expected.items()}
