"""The last errors of a worker's components: logged in full, throttled, shipped with heartbeats."""

from __future__ import annotations

import collections
import logging
import time
import traceback
from typing import Any

log = logging.getLogger(__name__)


class ErrorLog:
    """The last errors of the worker's components, shipped with heartbeats.

    Every error is logged with its traceback; at most `per_interval` errors per task and
    `interval` seconds are reported to the cluster (a bolt failing on every tuple must not
    flood ZooKeeper), the rest are counted in "suppressed".
    """

    def __init__(self, host: str, port: int, keep: int = 10, per_interval: int = 5,
                 interval: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.recent: collections.deque[dict[str, Any]] = collections.deque(maxlen=keep)
        self.unsent: list[dict[str, Any]] = []
        self.per_interval = per_interval
        self.interval = interval
        self.suppressed = 0
        self._window: dict[int, tuple[float, int]] = {}  # task -> (window start, reported)

    def report(self, component: str, task: int, what: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(exc))
        log.error("worker %s:%d: %s task %d raised in %s:\n%s", self.host, self.port,
                  component, task, what, text)
        now = time.monotonic()
        start, count = self._window.get(task, (now, 0))
        if now - start >= self.interval:
            start, count = now, 0
        if count >= self.per_interval:
            self.suppressed += 1
            return
        self._window[task] = (start, count + 1)
        error = {
            "component": component,
            "task": task,
            "time": time.time(),
            "host": self.host,
            "port": self.port,
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": text,
        }
        self.recent.append(error)
        self.unsent.append(error)
        del self.unsent[:-50]

    def take_unsent(self) -> list[dict[str, Any]]:
        out, self.unsent = self.unsent, []
        return out
