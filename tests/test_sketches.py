"""topology.sketches: each sketch against the exact answer, within its documented error.

DataSketches' bounds: HLL relative standard error 1.04 / sqrt(2**lg_k); frequent items
within epsilon * total weight; KLL rank error `rank_error` at 99% confidence per query. KLL
compacts at random, so its checks allow twice that bound (a false failure is then far less
likely than one in a million; a wrapper that misreads ranks is off by far more).
"""

from __future__ import annotations

import bisect
import math
import pickle
import random
from typing import Any

import cloudpickle
import pytest

from topology.sketches import FrequentItems, HyperLogLog, Quantiles


def roundtrip(sketch: Any) -> Any:
    return pickle.loads(pickle.dumps(sketch))


# --- HyperLogLog ---------------------------------------------------------------------------

@pytest.mark.parametrize("lg_k, n", [(12, 0), (12, 10), (12, 1000), (12, 50_000), (8, 20_000)])
def test_hll_estimates_within_three_standard_errors(lg_k: int, n: int) -> None:
    h = HyperLogLog(lg_k)
    for i in range(n):
        h.add(f"user-{i}")
        h.add(f"user-{i // 2}")  # repeats change nothing
    error = 3 * 1.04 / math.sqrt(2 ** lg_k)
    assert abs(h.estimate() - n) <= error * n + 1e-9
    low, high = h.bounds(3)
    assert low <= n <= high


def test_hll_items_follow_python_equality() -> None:
    h = HyperLogLog()
    for item in [1, 1.0, True, "1", b"1", 2 ** 70, float(2 ** 70), 2.5, -0.0, 0, "é", b"\xff"]:
        h.add(item)
    # 1 == 1.0 == True; 2**70 == float(2**70); -0.0 == 0: 8 distinct items
    assert round(h.estimate()) == 8


def test_hll_merge_counts_the_union_and_leaves_the_other_alone() -> None:
    a, b = HyperLogLog(), HyperLogLog(10)
    for i in range(6000):
        a.add(i)
    for i in range(4000, 10_000):
        b.add(i)
    before = b.estimate()
    assert a.merge(b) is a
    assert abs(a.estimate() - 10_000) <= 3 * 1.04 / math.sqrt(2 ** 10) * 10_000
    assert b.estimate() == before


def test_hll_pickles_and_refuses_bad_input() -> None:
    h = HyperLogLog()
    for i in range(3000):
        h.add(i * 7.5)
    for copy in (roundtrip(h), cloudpickle.loads(cloudpickle.dumps(h)),
                 HyperLogLog.deserialize(h.serialize())):
        assert copy.estimate() == h.estimate() and copy.lg_k == 12
    with pytest.raises(TypeError, match=r"sketch item \[1\] is a list"):
        h.add([1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lg_k=3: it must be an integer from 4 to 21"):
        HyperLogLog(3)


# --- FrequentItems -------------------------------------------------------------------------

def zipf_stream(n: int, seed: int = 7) -> list[Any]:
    rng = random.Random(seed)
    kinds = [lambda i: f"w{i}", lambda i: i, lambda i: f"b{i}".encode(), lambda i: i + 0.5]
    return [kinds[r % 4](r) for r in (int(rng.paretovariate(1.1)) for _ in range(n))]


def exact_counts(items: list[Any]) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for x in items:
        counts[x] = counts.get(x, 0) + 1
    return counts


def test_frequent_items_estimates_within_epsilon_and_top_is_heaviest_first() -> None:
    items = zipf_stream(100_000)
    f = FrequentItems(lg_max_k=6)  # small, so the sketch must purge
    for x in items:
        f.add(x)
    exact = exact_counts(items)
    assert len(exact) > 48 and f.total == len(items)
    slack = f.epsilon * f.total
    top = f.top(5)
    assert [n for _, n in top] == sorted((n for _, n in top), reverse=True)
    truth = sorted(exact, key=lambda x: -exact[x])[:5]
    assert [x for x, _ in top[:3]] == truth[:3]  # well separated heavy hitters
    for item, estimate in top:
        assert abs(estimate - exact[item]) <= slack
        assert f.estimate(item) == estimate


def test_frequent_items_weights_merge_and_types() -> None:
    a, b = FrequentItems(), FrequentItems()
    a.add("x", n=5)
    a.add(1)
    b.add(1.0, n=3)  # the same item as 1
    b.add(b"x")  # not the same as "x"
    assert a.merge(b) is a
    assert dict(a.top(10)) == {"x": 5, 1: 4, b"x": 1}
    assert dict(b.top(10)) == {1: 3, b"x": 1}
    assert a.top(1) == [("x", 5)] and a.top(0) == []
    with pytest.raises(ValueError, match="n=0"):
        a.add("x", n=0)
    with pytest.raises(TypeError, match="is a NoneType"):
        a.add(None)  # type: ignore[arg-type]


def test_frequent_items_pickle_every_item_type() -> None:
    f = FrequentItems(lg_max_k=8)
    items = ["plain", "ünï\u2603", "", b"\x00\xffbytes", b"", 0, -1, 2 ** 100, -(2 ** 80),
             3.25, -0.5, float("inf")]
    for i, x in enumerate(items):
        f.add(x, n=i + 1)
    copy = roundtrip(f)
    assert sorted(map(repr, copy.top(20))) == sorted(map(repr, f.top(20)))
    assert copy.lg_max_k == 8 and copy.total == f.total
    for cls in (FrequentItems, HyperLogLog, Quantiles):
        with pytest.raises(ValueError, match=f"{cls.__name__}.deserialize: not a serialized"):
            cls.deserialize(b"\x08garbage")


# --- Quantiles -----------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 100, 20_000])
def test_quantiles_within_the_rank_error(n: int) -> None:
    rng = random.Random(n)
    values = [rng.lognormvariate(0, 2) for _ in range(n)]
    q = Quantiles()
    for v in values:
        q.add(v)
    ordered = sorted(values)
    assert q.count == n
    assert q.quantile(0) == ordered[0] and q.quantile(1) == ordered[-1]
    for rank in (0.01, 0.1, 0.5, 0.9, 0.99):
        got = q.quantile(rank)
        assert got is not None
        true_rank = bisect.bisect_right(ordered, got) / n
        assert abs(true_rank - rank) <= 2 * q.rank_error + 1 / n


def test_quantiles_merge_pickle_and_bad_input() -> None:
    a, b = Quantiles(), Quantiles()
    assert a.quantile(0.5) is None
    for i in range(1000):
        a.add(i)
        b.add(1000 + i)
    assert a.merge(b) is a and a.count == 2000 and b.count == 1000
    median = a.quantile(0.5)
    assert median is not None and abs(median - 1000) <= 2 * a.rank_error * 2000
    copy = roundtrip(a)
    assert copy.quantile(0.5) == median and copy.k == 200
    for bad in (float("nan"), "3", None, True):
        with pytest.raises(ValueError, match="give a number"):
            a.add(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="q must be a number from 0 to 1"):
        a.quantile(1.5)


def test_a_sketch_serves_as_a_window_accumulator() -> None:
    from test_window_oracle import E, Run, spec

    from topology.windowing import Count, Fold

    def add(acc: HyperLogLog, e: E) -> HyperLogLog:
        acc.add(e.key)
        return acc

    fold = Fold(initial=HyperLogLog, add=add, merge=lambda a, b: a.merge(b))
    run = Run(spec(Count(4), Count(2)), fold=fold)
    for seq, key in enumerate("aabcddde"):
        run.add(E(seq, seq, key=key))
    run.flush()
    assert [round(w.result.estimate()) for w in run.fired] == [1, 3, 3, 2]
