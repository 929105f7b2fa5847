"""A map whose entries expire after between (n-1) and n rotations (Storm's RotatingMap).

Rotating is O(size of the oldest bucket) and lookups touch at most n dicts, so expiring
millions of entries never scans the live ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


class RotatingMap(Generic[K, V]):
    def __init__(self, buckets: int = 3) -> None:
        if buckets < 2:
            raise ValueError(f"a RotatingMap needs at least 2 buckets, got {buckets}")
        self._buckets: list[dict[K, V]] = [{} for _ in range(buckets)]

    def put(self, key: K, value: V) -> None:
        """Add or replace `key` in the newest bucket (it lives a full period again)."""
        head = self._buckets[0]
        if key not in head:
            for bucket in self._buckets[1:]:
                bucket.pop(key, None)
        head[key] = value

    def put_new(self, key: K, value: V) -> None:
        """Add a key the caller knows is in no bucket (a fresh random id): one dict write."""
        self._buckets[0][key] = value

    def get(self, key: K, default: Any = None) -> Any:
        for bucket in self._buckets:
            value = bucket.get(key, _MISSING)
            if value is not _MISSING:
                return value
        return default

    def pop(self, key: K, default: Any = None) -> Any:
        for bucket in self._buckets:
            value = bucket.pop(key, _MISSING)
            if value is not _MISSING:
                return value
        return default

    def __contains__(self, key: object) -> bool:
        return any(key in bucket for bucket in self._buckets)

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets)

    def __iter__(self) -> Iterator[K]:
        for bucket in self._buckets:
            yield from bucket

    def rotate(self) -> dict[K, V]:
        """Drop the oldest bucket and return what it held (the expired entries)."""
        expired = self._buckets.pop()
        self._buckets.insert(0, {})
        return expired
