"""`KeyValueState`: the mapping a stateful bolt keeps its state in.

It is an ordinary in-memory dict for the bolt: reads and writes cost a dict operation and a
check. Each write also notes the key's value before the checkpoint being filled changed it
(an undo log), so that a checkpoint writes only the keys it changed (its write set) and a
rollback restores exactly those keys, whatever the size of the state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any


class _Deleted:
    """The value of a key deleted in a checkpoint, in a committer's `changes`."""

    _instance: _Deleted | None = None

    def __new__(cls) -> _Deleted:  # one instance, so `is DELETED` holds after unpickling
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETED"

    def __reduce__(self) -> str:
        return "DELETED"


DELETED = _Deleted()
_MISSING: Any = object()


class KeyValueState(MutableMapping[Any, Any]):
    """A stateful bolt's state: a mutable mapping, checkpointed by the framework.

    Keys must be hashable and pickle the same whenever they are equal (str, bytes, int,
    tuples of those); values must be picklable. Change a value by assigning it
    (`state[k] = v`): a stored object mutated in place is not seen as changed.
    """

    # `get` is the dict's own bound method, set per instance (a slot): a read then costs
    # what a dict read costs, with no Python call around it.
    __slots__ = ("_data", "_undo", "get")

    def __init__(self, data: Mapping[Any, Any] | None = None) -> None:
        self._data: dict[Any, Any] = dict(data) if data else {}
        self._undo: dict[Any, Any] = {}  # key -> value before this checkpoint (or _MISSING)
        self.get: Callable[..., Any] = self._data.get

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __setitem__(self, key: Any, value: Any) -> None:
        undo = self._undo
        if key not in undo:
            undo[key] = self._data.get(key, _MISSING)
        self._data[key] = value

    def __delitem__(self, key: Any) -> None:
        old = self._data.pop(key)
        if key not in self._undo:
            self._undo[key] = old

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"KeyValueState({self._data!r})"

    # --- the framework's side ---------------------------------------------------------------

    def _seal(self) -> tuple[dict[Any, Any], list[Any], dict[Any, Any]]:
        """End the current checkpoint: (writes, deletes, undo) of the keys it changed."""
        undo, self._undo = self._undo, {}
        data = self._data
        writes = {k: data[k] for k in undo if k in data}
        deletes = [k for k in undo if k not in data]
        return writes, deletes, undo

    def _unseal(self, undo: dict[Any, Any]) -> None:
        """Take back a `_seal` whose checkpoint could not be written."""
        for key, old in self._undo.items():  # changed since the seal: `undo` has the older value
            undo.setdefault(key, old)
        self._undo = undo

    def _revert(self, undo: Mapping[Any, Any]) -> None:
        """Put back the values an undo log holds."""
        data = self._data
        for key, old in undo.items():
            if old is _MISSING:
                data.pop(key, None)
            else:
                data[key] = old

    def _rollback(self, sealed: list[dict[Any, Any]]) -> None:
        """Undo the current checkpoint, then the sealed ones (oldest first in `sealed`)."""
        self._revert(self._undo)
        self._undo = {}
        for undo in reversed(sealed):
            self._revert(undo)

    def _replace(self, data: Mapping[Any, Any]) -> None:
        """Become `data` (a restored state) with nothing to undo."""
        self._data.clear()  # the same dict: `get` is bound to it
        self._data.update(data)
        self._undo = {}
