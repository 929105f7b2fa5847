"""What the window engine tells its executor, and the incremental fold it may be given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from topology.windowing.bolt import Window


@dataclass
class Step:
    """What happened since the executor last asked (`WindowManager.take`), in this order:

    - `fired`: windows to hand to `process_window`, oldest first;
    - `done`: ack handles of tuples that left their last window (or fell in none): ack them
      once the windows of `fired` were processed, so their output is anchored first;
    - `late`: tuples older than the watermark: emit them on the late stream (if any), then
      ack them;
    - `failed`: (tuple, exception) of tuples the bolt's `add` raised on: report the error and
      fail the tuple (it is in no window).
    """

    fired: list[Window] = field(default_factory=list)
    done: list[Any] = field(default_factory=list)
    late: list[Any] = field(default_factory=list)
    failed: list[tuple[Any, Exception]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fired or self.done or self.late or self.failed)


@dataclass(frozen=True)
class Fold:
    """The incremental form's three methods, taken from the bolt."""

    initial: Callable[[], Any]
    add: Callable[[Any, Any], Any]
    merge: Callable[[Any, Any], Any]

    @classmethod
    def of(cls, bolt: Any) -> Fold:
        return cls(bolt.initial, bolt.add, bolt.merge)
