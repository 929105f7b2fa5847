"""Which component and task a line of a worker's log is about. Pure: no I/O, no clock.

A worker's log mixes its own log records, its components' log records and whatever they
`print()` or let escape on stdout/stderr. A worker tags each record it writes with the task
whose code was running when it was made (cluster.logsink: `... worker[6700] split:4
logger: message`, `-` for none), and prints are records too, so a tagged line is labelled
exactly by its tag, and the lines after a record that are not records themselves (a
traceback, a multi-line message, output written straight to the file descriptors) belong
to that record.

A `LineLabeler` follows one worker's log line by line and labels each with `component:task`,
or with the worker (`worker PORT`, or `worker HOST:PORT` given a host) when it cannot tell.
For a line with no task tag (`-`, or a log written before tags existed) it guesses:

- a log record of the worker about one task ("worker H:P: split task 4 raised in prepare:"
  followed by the traceback, or a `topology.debug` emit line) is that task's, and so is
  the traceback that follows it, up to and including its final `ExceptionType: message` line;
- any other line (a print, a component's own log record) of a worker that runs a single
  component task (ackers aside) is that task's: whatever prints there comes from it;
- anything else is the worker's.

Labels are what `squall local` prefixes each line with and what `squall logs --component`
and `--task` filter on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from topology.model import ACKER_COMPONENT

# "2026-11-30 14:38:23,123 INFO worker[6700] split:4 mymodule: message" (the tag is "-" when
# no task's code ran; logs written before tags existed have none)
_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ "
                     r"(?:(?P<tag>-|(?P<component>[A-Za-z0-9_.-]+):(?P<task>-?\d+)) )?"
                     r"(?P<logger>[^\s:]+): (?P<message>.*)")
# "worker 127.0.0.1:6700: split task 4 raised in process:" / "... count task 7 emitted ..."
_ABOUT_TASK = re.compile(r"worker \S+:\d+: (?P<component>\S+) task (?P<task>-?\d+) ")
_TRACEBACK_HEAD = ("Traceback (most recent call last):",
                   "During handling of the above exception",
                   "The above exception was the direct cause")
SYSTEM_PREFIX = "__"  # system components (the acker) never print user output
SQUALL_LOGGERS = frozenset({"worker", "acker", "topology", "cluster"})  # the worker's own
PRINT_LOGGERS = frozenset({"STDOUT", "STDERR"})  # what components print (cluster.logsink)


@dataclass(frozen=True)
class Label:
    """Who a line is about: a component task, or (component None) the worker."""

    component: str | None
    task: int | None
    worker: str

    def __str__(self) -> str:
        if self.component is None:
            return f"worker {self.worker}"
        return f"{self.component}:{self.task}"


class LineLabeler:
    """Labels the lines of one worker's log, in order (see the module doc).

    `tasks` maps the worker's task ids to their component ids (its share of the
    assignment); `worker` names it in the fallback label."""

    def __init__(self, worker: str, tasks: Mapping[int, str]) -> None:
        self.fallback = Label(None, None, worker)
        user = {t: c for t, c in tasks.items() if not c.startswith(SYSTEM_PREFIX)}
        self.default = (Label(*next(iter(user.items()))[::-1], worker) if len(user) == 1
                        else self.fallback)
        self._current: Label | None = None  # the task a traceback being read belongs to
        self._in_traceback = False
        self._ended = False  # the traceback's last line was just read
        self._tagged = False  # the log's records carry task tags
        self._record = self.fallback  # the label of the last record (tagged logs)

    def label(self, line: str) -> Label:
        record = _RECORD.match(line)
        if record is not None:
            self._record = self._label_record(record)
            return self._record
        if self._tagged:
            return self._record  # a record's further lines
        if self._current is not None and self._continues_traceback(line):
            return self._current
        self._current = None
        return self.default

    def _label_record(self, record: re.Match[str]) -> Label:
        self._in_traceback = self._ended = False
        self._current = None
        tag = record.group("tag")
        if tag is not None:
            self._tagged = True
        if record.group("task") is not None:
            return Label(record.group("component"), int(record.group("task")),
                         self.fallback.worker)
        about = _ABOUT_TASK.match(record.group("message"))
        if about is None:
            own = record.group("logger").split(".")[0] in SQUALL_LOGGERS
            return self.fallback if own else self.default
        self._current = Label(about.group("component"), int(about.group("task")),
                              self.fallback.worker)
        return self._current

    def _continues_traceback(self, line: str) -> bool:
        """Whether `line` is still part of the traceback after the current record (its
        last line, `ExceptionType: message`, is, and so is one blank line after it)."""
        if line.startswith(_TRACEBACK_HEAD):
            self._in_traceback, self._ended = True, False
            return True
        if self._ended:
            self._ended = False
            return not line.strip()
        if not self._in_traceback:
            return False
        if not line or line[0].isspace():
            return True
        self._in_traceback, self._ended = False, True  # the exception line ends it
        return True


def short_form(line: str, with_time: bool = False) -> str:
    """A log line as a terminal shows it beside its label: a record without its worker and
    tag (the label says who) and, unless asked, its time; a print as it was printed
    (after the time, if asked); any other line as is."""
    record = _RECORD.match(line)
    if record is None:
        return line
    date, clock, level = line.split(" ", 3)[:3]
    logger = record.group("logger")
    text = (record.group("message") if logger in PRINT_LOGGERS
            else f"{level} {logger}: {record.group('message')}")
    return f"{date} {clock} {text}" if with_time else text


def worker_tasks(assignment: Mapping[str, object] | None, components: Mapping[str, object],
                 acker_tasks: object = ()) -> dict[tuple[str, int], dict[int, str]]:
    """(host, port) -> {task: component} for every worker of a stored assignment, given the
    topology record's components ({cid: {"tasks": [...]}}) and acker task ids."""
    owner: dict[int, str] = {}
    for cid, info in components.items():
        tasks = info.get("tasks", []) if isinstance(info, Mapping) else []
        for t in tasks if isinstance(tasks, list) else []:
            owner[int(t)] = str(cid)
    for t in acker_tasks if isinstance(acker_tasks, list) else []:
        owner[int(t)] = ACKER_COMPONENT
    out: dict[tuple[str, int], dict[int, str]] = {}
    workers = (assignment or {}).get("workers")
    for w in workers if isinstance(workers, list) else []:
        if isinstance(w, Mapping):
            tasks = w.get("tasks") or []
            out[(str(w.get("host")), int(w.get("port", 0)))] = {
                int(t): owner.get(int(t), "?") for t in tasks}
    return out
