"""Windows and event time: `WindowedBolt`, `Count`, `Duration`, and the engine behind them.

Public: `WindowedBolt` (`process_window(window)`, the `with_*` settings), `Window`, `Count`,
`Duration`. For the worker: `WindowManager` (manager.py, the pure engine: tuples and time
in, windows / acks / late tuples out), `Step`, `Fold`, `WindowSpec`, `windowing_status`.

Semantics (DESIGN §7): lengths and slides are `Count(n)` or `Duration(...)` in the four
combinations Storm allows. Windows with a time length and a time slide hold the timestamps
`k*S - L <= ts < k*S` (bounds aligned to multiples of the slide, so `window.start`/`end` are
the same whatever the parallelism); a window fires once the clock (the watermark, or the wall
clock in processing time) reaches its end, if it holds a tuple. Count windows go by order of
release (arrival; in event time, timestamp order once the watermark passed them). The other
combinations are described in mixed.py. `flush` is a final watermark: every open time window
fires, and a count window fires once more with what came since its last firing.

Reliability
-----------
- **Acks are held by the window.** A windowed task does not ack a tuple when it arrives: its
  ack handle stays in the engine until the tuple has left the last window that holds it (the
  Step's `done`), and is acked only after that window's `process_window` has returned, so its
  output is anchored first. A tuple that falls in no window (a gap: slide longer than the
  length) or is late is acked at once; a late tuple first goes out on the late stream, anchored
  to itself, so a consumer of that stream still completes its tree.
- **Output is anchored to the window, per root.** Anchoring each output tuple to each of a
  million window tuples (one edge per anchor) would cost a million edges and XORs per emit.
  The acker only needs, per spout root, the XOR of the edges, so the executor
  (worker.windowed) anchors a window's output to one `WindowAnchor` whose ids are (root, 0)
  for each distinct root of the window's tuples: each emitted tuple costs one edge, carried
  under every root, and the anchor is acked when `process_window` returns (each root gets the
  XOR of the children's edges). The window's tuples are still held then, so no tree
  completes before the output is processed. A window of a million words from ten thousand
  sentences costs ten thousand (root, edge) pairs per output tuple, not a million edges; in
  the incremental form the panes keep their ack ids folded per root (root -> XOR of edges),
  so firing never walks the tuples.
- **What may be lost, and what is not.** A worker killed mid-window loses its held acks: the
  spout tuples time out and replay, and the new task windows them again, so every window's
  result is produced at least once (windows that had fired may fire again: at-least-once, as
  everywhere in Squall). A failed output tuple fails the roots of its window, which replay. A
  window holds an ack for at most length + slide (plus lag and one watermark interval in event
  time): `build()` refuses a time window whose length plus slide exceeds
  `topology.message.timeout.secs`, which would otherwise time out and replay forever. Count
  windows hold acks until enough tuples came: their timeout is the user's to size (Storm also
  compares counts with max.spout.pending; we don't, since one spout tuple can become any
  number of window tuples).
- **Errors.** An exception in `process_window` is reported as the component's error; with
  `auto_fail` (the default) the window's tuples are failed (their roots replay), otherwise they
  are acked as they leave. An exception in the incremental `add` fails that tuple (Step
  `failed`); in `merge`, it surfaces when `process_window` reads `window.result`. A tuple whose
  timestamp is not a finite number is reported (one line naming the value) and failed.

Watermarks across parallel tasks (a proposal for phase 2)
---------------------------------------------------------
The baseline (DESIGN) is the idle timeout: a window task's watermark is the minimum over its
input tasks, so one input task that sends it nothing (fields grouping on few keys) holds it
back until `with_idle_timeout` declares that task idle; until then its windows wait, and
after it its tuples may come late. A better way that keeps the same semantics: **progress
punctuations**. Each task that feeds an event-time windowed bolt tracks, per consumer stream,
the largest timestamp it has emitted (the windowed bolt's own extractor, applied on the
emitting side by the router for routes into an event-time windowed bolt: one call per tuple).
Every watermark interval it sends that value on a system stream to every task of the
consumer it sent nothing to since the last punctuation. A window task treats a punctuation
exactly as a tuple with that timestamp for the watermark (`add` without an item): "the
largest timestamp seen from that input task" now includes what the task sent elsewhere,
which bounds what it can still send here, minus the lag. Requirements: a punctuation must
not overtake data from the same sender to the same receiver (the same ordered channel as the
data, not the priority system channel), and a task restarted from scratch sends none until
it emits. Then an input task that is merely quiet for this receiver no longer holds the
watermark back, the idle timeout is only for inputs that emit nothing at all, and no tuple is
made late by a wrongly idle input.
"""

from topology.windowing.bolt import Window, WindowedBolt, fold_methods
from topology.windowing.manager import WindowManager
from topology.windowing.spec import (
    Count,
    Duration,
    WindowSpec,
    spec_problems,
    windowing_status,
)
from topology.windowing.step import Fold, Step

__all__ = [
    "Count",
    "Duration",
    "Fold",
    "Step",
    "Window",
    "WindowManager",
    "WindowSpec",
    "WindowedBolt",
    "fold_methods",
    "spec_problems",
    "windowing_status",
]
