"""Sketches for windows: distinct counts, heavy hitters and quantiles in bounded memory.

Thin wrappers over Apache DataSketches (the maintained C++ library, `datasketches` on PyPI),
so that each one merges (`merge(other)` folds `other` in and returns self: a ready `merge`
for a windowed bolt's incremental form), pickles (its compact serialized form, to ship
between workers or checkpoint), and takes the items Squall tuples carry: str, bytes, int or
float, with Python's equality (`1`, `1.0` and `True` are one item; `"1"` and `b"1"` are
others).

    class DistinctUsers(WindowedBolt):
        outputs = ["minute", "users"]
        def initial(self): return HyperLogLog()
        def add(self, acc, tup): acc.add(tup["user"]); return acc
        def merge(self, a, b): return a.merge(b)
        def process_window(self, window):
            self.emit([window.start, round(window.result.estimate())])

The library (and numpy, which it loads) is imported on first use, not with this module.
"""

from __future__ import annotations

import functools
import math
import struct
from typing import Any, Self

Item = str | bytes | int | float

_INT64 = (-(2 ** 63), 2 ** 63)


def _ds() -> Any:
    import datasketches  # deferred: it loads numpy, which `import topology` must not

    return datasketches


def _bounded(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r}: it must be an integer from {low} to {high}")
    return value


def _item(item: Any) -> Item:
    if not isinstance(item, (str, bytes, int, float)):
        raise TypeError(f"sketch item {item!r} is a {type(item).__name__}; items are str, "
                        "bytes, int or float")
    return item


class HyperLogLog:
    """Distinct count: about 1.04 / sqrt(2**lg_k) relative standard error (1.6% at 12)."""

    __slots__ = ("_sketch",)

    def __init__(self, lg_k: int = 12) -> None:
        ds = _ds()
        self._sketch = ds.hll_sketch(_bounded("lg_k", lg_k, 4, 21), ds.tgt_hll_type.HLL_8)

    @property
    def lg_k(self) -> int:
        return int(self._sketch.lg_config_k)

    def add(self, item: Item) -> None:
        """Count `item` (again: a distinct count ignores repeats)."""
        sketch = self._sketch
        if isinstance(item, str):
            sketch.update(item)
        elif isinstance(item, (int, float)) and not (isinstance(item, float)
                                                     and not item.is_integer()):
            whole = int(item)  # 1 and 1.0 are one item, as in Python
            if _INT64[0] <= whole < _INT64[1]:
                sketch.update(whole)
            else:
                sketch.update(f"\0i{whole}")  # beyond 64 bits
        elif isinstance(item, float):
            sketch.update(item)
        elif isinstance(item, bytes):
            sketch.update("\0b" + item.decode("latin-1"))
        else:
            _item(item)

    def estimate(self) -> float:
        """The estimated number of distinct items added."""
        return float(self._sketch.get_estimate())

    def bounds(self, std_devs: int = 2) -> tuple[float, float]:
        """(low, high) bounds of the distinct count at 1, 2 or 3 standard deviations."""
        std_devs = _bounded("std_devs", std_devs, 1, 3)
        return (self._sketch.get_lower_bound(std_devs), self._sketch.get_upper_bound(std_devs))

    def merge(self, other: HyperLogLog) -> Self:
        """Fold in the items of `other` (left unchanged); return self."""
        ds = _ds()
        union = ds.hll_union(max(self.lg_k, other.lg_k))
        union.update(self._sketch)
        union.update(other._sketch)
        self._sketch = union.get_result(ds.tgt_hll_type.HLL_8)
        return self

    def serialize(self) -> bytes:
        return bytes(self._sketch.serialize_compact())

    @classmethod
    def deserialize(cls, data: bytes) -> HyperLogLog:
        new = cls.__new__(cls)
        new._sketch = _load("HyperLogLog", lambda: _ds().hll_sketch.deserialize(data))
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).deserialize, (self.serialize(),))

    def __repr__(self) -> str:
        return f"HyperLogLog(lg_k={self.lg_k}, estimate={self.estimate():.1f})"


class FrequentItems:
    """Heavy hitters: every estimate is within epsilon * total weight of the truth, epsilon
    about 3.5 / 2**lg_max_k (0.34% at 10); the map holds at most 0.75 * 2**lg_max_k items."""

    __slots__ = ("lg_max_k", "_sketch")

    def __init__(self, lg_max_k: int = 10) -> None:
        self.lg_max_k = _bounded("lg_max_k", lg_max_k, 3, 24)
        self._sketch = _ds().frequent_items_sketch(lg_max_k)

    def add(self, item: Item, n: int = 1) -> None:
        """Count `item` `n` times (n >= 1)."""
        _item(item)
        self._sketch.update(item, _bounded("n", n, 1, 2 ** 62))

    def top(self, k: int) -> list[tuple[Item, int]]:
        """Up to `k` (item, estimated count) pairs, heaviest first."""
        k = _bounded("k", k, 0, 2 ** 31)
        ds = _ds()
        found = self._sketch.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        found.sort(key=lambda row: -row[1])
        return [(row[0], int(row[1])) for row in found[:k]]

    def estimate(self, item: Item) -> int:
        """The estimated count of one item."""
        return int(self._sketch.get_estimate(_item(item)))

    @property
    def epsilon(self) -> float:
        """The error bound as a fraction of the total weight."""
        return float(self._sketch.epsilon)

    @property
    def total(self) -> int:
        """The total weight added."""
        return int(self._sketch.total_weight)

    def merge(self, other: FrequentItems) -> Self:
        """Fold in the counts of `other` (left unchanged); return self."""
        self._sketch.merge(other._sketch)
        return self

    def serialize(self) -> bytes:
        return struct.pack("<B", self.lg_max_k) + bytes(self._sketch.serialize(_serde()))

    @classmethod
    def deserialize(cls, data: bytes) -> FrequentItems:
        new = cls.__new__(cls)
        new.lg_max_k = data[0] if data else 0
        new._sketch = _load("FrequentItems", lambda: _ds().frequent_items_sketch.deserialize(
            bytes(data[1:]), _serde()))
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).deserialize, (self.serialize(),))

    def __repr__(self) -> str:
        return f"FrequentItems(lg_max_k={self.lg_max_k}, total={self.total})"


class Quantiles:
    """Quantiles of numbers (KLL): rank error about 1.65% at k=200 (1.33% normalized)."""

    __slots__ = ("_sketch",)

    def __init__(self, k: int = 200) -> None:
        self._sketch = _ds().kll_doubles_sketch(_bounded("k", k, 8, 65535))

    @property
    def k(self) -> int:
        return int(self._sketch.k)

    @property
    def count(self) -> int:
        """How many numbers were added."""
        return int(self._sketch.n)

    def add(self, number: int | float) -> None:
        """Add one number (not NaN)."""
        if isinstance(number, bool) or not isinstance(number, (int, float)) \
                or math.isnan(number):
            raise ValueError(f"Quantiles.add({number!r}): give a number (int or float, not NaN)")
        self._sketch.update(float(number))

    def quantile(self, q: float) -> float | None:
        """The value at rank `q` (0 = min, 0.5 = median, 1 = max); None if nothing was added."""
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 1:
            raise ValueError(f"quantile({q!r}): q must be a number from 0 to 1")
        sketch = self._sketch
        if sketch.is_empty():
            return None
        if q in (0, 1):  # the sketch keeps the exact extremes
            return float(sketch.get_min_value() if q == 0 else sketch.get_max_value())
        return float(sketch.get_quantile(q, True))

    @property
    def rank_error(self) -> float:
        """The normalized rank error of `quantile` (a fraction of the count)."""
        return float(self._sketch.normalized_rank_error(False))

    def merge(self, other: Quantiles) -> Self:
        """Fold in the numbers of `other` (left unchanged); return self."""
        self._sketch.merge(other._sketch)
        return self

    def serialize(self) -> bytes:
        return bytes(self._sketch.serialize())

    @classmethod
    def deserialize(cls, data: bytes) -> Quantiles:
        new = cls.__new__(cls)
        new._sketch = _load("Quantiles", lambda: _ds().kll_doubles_sketch.deserialize(data))
        return new

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).deserialize, (self.serialize(),))

    def __repr__(self) -> str:
        return f"Quantiles(k={self.k}, count={self.count})"


def _load(what: str, read: Any) -> Any:
    try:
        return read()
    except (IndexError, RuntimeError, ValueError, TypeError) as e:
        raise ValueError(f"{what}.deserialize: not a serialized {what} ({e})") from None


@functools.cache
def _serde() -> Any:
    """A DataSketches serde for str, bytes, int (any size) and float items, tagged by type."""
    base = _ds().PyObjectSerDe

    class ItemSerDe(base):  # type: ignore[misc, valid-type]
        def get_size(self, item: Item) -> int:
            return len(self.to_bytes(item))

        def to_bytes(self, item: Item) -> bytes:
            if isinstance(item, float):
                return b"f" + struct.pack("<d", item)
            if isinstance(item, int):
                raw = item.to_bytes((item.bit_length() + 8) // 8, "little", signed=True)
            elif isinstance(item, str):
                raw = item.encode("utf-8", "surrogatepass")
            else:
                raw = bytes(item)
            tag = b"i" if isinstance(item, int) else b"s" if isinstance(item, str) else b"b"
            return tag + struct.pack("<I", len(raw)) + raw

        def from_bytes(self, data: bytes, offset: int) -> tuple[Item, int]:
            tag = data[offset:offset + 1]
            if tag == b"f":
                return struct.unpack_from("<d", data, offset + 1)[0], 9
            (size,) = struct.unpack_from("<I", data, offset + 1)
            raw = bytes(data[offset + 5:offset + 5 + size])
            if len(raw) != size or tag not in (b"i", b"s", b"b"):
                raise ValueError(f"FrequentItems: corrupt serialized item at byte {offset}")
            value: Item = (int.from_bytes(raw, "little", signed=True) if tag == b"i"
                           else raw.decode("utf-8", "surrogatepass") if tag == b"s" else raw)
            return value, 5 + size

    return ItemSerDe()
