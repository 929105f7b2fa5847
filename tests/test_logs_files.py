"""Worker log files: their layout and names, reading by range, following them across
restarts and rotations (cluster.logfiles, cluster.logfollow), and telling which component
task a line is about (cluster.logtags). Real files in a temporary directory."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cluster.logfiles import (
    LogNameError,
    list_logs,
    parse_name,
    public_name,
    read_range,
    remove_old_logs,
    resolve,
    topology_dir_name,
    worker_log_path,
)
from cluster.logfollow import Follower, LocalSource
from cluster.logtags import LineLabeler, short_form, worker_tasks

TID = "words-1796049954-adc4fa"


def write(path: Path, text: str, mode: str = "a") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as f:
        f.write(text)


# --- names and paths ------------------------------------------------------------------------------


def test_public_names_map_to_one_file_per_topology_and_port(tmp_path: Path) -> None:
    assert public_name(TID, 6700) == f"{TID}/6700/worker.log"
    assert public_name(TID, 6700, 2) == f"{TID}/6700/worker.log.2"
    assert parse_name(f"{TID}/6700/worker.log.2") == (TID, 6700, 2)
    assert resolve(tmp_path, public_name(TID, 6700)) == tmp_path / TID / "worker-6700.log"
    assert resolve(tmp_path, public_name(TID, 6700, 1)) == tmp_path / TID / "worker-6700.log.1"
    assert worker_log_path(tmp_path, TID, 6700) == resolve(tmp_path, public_name(TID, 6700))


@pytest.mark.parametrize("name", [
    "../../etc/passwd", f"{TID}/6700/../../x", f"{TID}/6700/worker.log/x", f"{TID}/6700/x.log",
    f"{TID}/0/worker.log", f"{TID}/70000/worker.log", f"{TID}/-1/worker.log", "/6700/worker.log",
    f"{TID}/6700/worker.log.0", f"{TID}/6700/worker.log.100", "worker.log", "",
    f"{TID}/6700/worker.log\0", f"{TID}/６７００/worker.log",
])
def test_anything_but_a_worker_log_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(LogNameError):
        resolve(tmp_path, name)


@pytest.mark.parametrize("tid", ["..", ".", "a/b", "../../etc", "x" * 300, "é", "a\0b", ""])
def test_a_strange_topology_id_still_makes_one_safe_directory(tmp_path: Path, tid: str) -> None:
    name = topology_dir_name(tid)
    assert name not in (".", "..") and "/" not in name and "\0" not in name
    assert 0 < len(name) <= 120
    if tid:
        assert resolve(tmp_path, public_name(tid, 6700)).parent == tmp_path / name
    assert topology_dir_name("plain-id_1.2") == "plain-id_1.2"


def test_a_symlink_out_of_the_logs_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "worker-6700.log", "secret\n")
    root = tmp_path / "logs"
    root.mkdir()
    (root / TID).symlink_to(outside)
    with pytest.raises(LogNameError, match="outside"):
        resolve(root, public_name(TID, 6700))
    (root / "t2").mkdir()
    (root / "t2" / "worker-6700.log").symlink_to(outside / "worker-6700.log")
    with pytest.raises(LogNameError, match="outside"):
        resolve(root, public_name("t2", 6700))


def test_read_range_reads_where_asked_and_says_what_it_read(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    write(path, "0123456789")
    tail = read_range(path, None, 4)
    assert (tail.data, tail.start, tail.size, tail.end) == (b"6789", 6, 10, 10)
    assert read_range(path, 2, 3).data == b"234"
    assert read_range(path, 8, 100).data == b"89"
    past = read_range(path, 50, 10)
    assert (past.data, past.start, past.size) == (b"", 50, 10)
    assert read_range(path, None, 100).start == 0
    same = read_range(path, 0, 1).ident
    os.replace(path, tmp_path / "f.log.1")
    write(path, "new\n")
    assert read_range(path, 0, 1).ident != same  # a new file is another file
    with pytest.raises(ValueError):
        read_range(path, -1, 10)


def test_logs_are_listed_by_topology_and_port(tmp_path: Path) -> None:
    for tid, port, suffix in ((TID, 6700, ""), (TID, 6700, ".1"), (TID, 6701, ""),
                              ("other-1", 6700, "")):
        write(worker_log_path(tmp_path, tid, port).with_suffix(".log" + suffix), "x\n")
    write(tmp_path / TID / "notes.txt", "not a log\n")
    assert list_logs(tmp_path, TID) == [f"{TID}/6700/worker.log", f"{TID}/6700/worker.log.1",
                                        f"{TID}/6701/worker.log"]
    assert list_logs(tmp_path, port=6700) == ["other-1/6700/worker.log",
                                              f"{TID}/6700/worker.log",
                                              f"{TID}/6700/worker.log.1"]
    assert list_logs(tmp_path, "nothing-1") == []
    assert list_logs(tmp_path / "missing") == []


def test_old_logs_of_topologies_gone_are_removed(tmp_path: Path) -> None:
    for tid in ("old-1", "running-1", "recent-1"):
        write(worker_log_path(tmp_path, tid, 6700), "x\n")
    week_ago = time.time() - 8 * 24 * 3600
    for tid in ("old-1", "running-1"):
        os.utime(worker_log_path(tmp_path, tid, 6700), (week_ago, week_ago))
    removed = remove_old_logs(tmp_path, {"running-1"}, time.time() - 7 * 24 * 3600)
    assert removed == ["old-1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recent-1", "running-1"]


# --- following ------------------------------------------------------------------------------------


def test_tail_then_poll_gives_every_line_once(tmp_path: Path) -> None:
    path = worker_log_path(tmp_path, TID, 6700)
    write(path, "".join(f"line {i}\n" for i in range(100)) + "partial")
    f = Follower(LocalSource(str(tmp_path)), public_name(TID, 6700))
    assert f.tail(3) == ["line 97", "line 98", "line 99"]
    assert f.poll() == []
    write(path, " end\nnext\n")
    assert f.poll() == ["partial end", "next"]
    assert f.poll() == []
    write(path, "no newline yet")
    assert f.poll() == [] and f.flush() == ["no newline yet"]


def test_tail_reads_back_as_far_as_needed(tmp_path: Path) -> None:
    path = worker_log_path(tmp_path, TID, 6700)
    write(path, "".join(f"{i:06d} " + "x" * 993 + "\n" for i in range(300)))  # 300 KB
    f = Follower(LocalSource(str(tmp_path)), public_name(TID, 6700))
    lines = f.tail(120)
    assert len(lines) == 120 and lines[0].startswith("000180 ") and lines[-1].startswith("000299")
    assert Follower(LocalSource(str(tmp_path)), public_name(TID, 6700)).tail(1000)[0][:6] == \
        "000000"


def test_tail_reads_into_the_rotated_file_when_the_current_one_just_began(
        tmp_path: Path) -> None:
    path = worker_log_path(tmp_path, TID, 6700)
    write(path.with_name(path.name + ".1"), "".join(f"old {i}\n" for i in range(50)))
    write(path, "new 0\nnew 1\n")
    f = Follower(LocalSource(str(tmp_path)), public_name(TID, 6700))
    assert f.tail(4) == ["old 48", "old 49", "new 0", "new 1"]
    write(path, "new 2\n")
    assert f.poll() == ["new 2"]  # following goes on in the current file
    assert Follower(LocalSource(str(tmp_path)), public_name(TID, 6700)).tail(2) == \
        ["new 1", "new 2"]  # enough lines in the current file: .1 is not read


def test_a_log_that_does_not_exist_yet_is_followed_from_its_start(tmp_path: Path) -> None:
    f = Follower(LocalSource(str(tmp_path)), public_name(TID, 6700))
    assert f.tail(5) == [] and f.poll() == []
    write(worker_log_path(tmp_path, TID, 6700), "first\n")
    assert f.poll() == ["first"]


def test_following_goes_on_across_a_rotation(tmp_path: Path) -> None:
    path = worker_log_path(tmp_path, TID, 6700)
    write(path, "a\n")
    f = Follower(LocalSource(str(tmp_path)), public_name(TID, 6700))
    assert f.tail(10) == ["a"]
    write(path, "b\nc")  # written, then rotated before we read it
    os.replace(path, path.with_name(path.name + ".1"))
    write(path, "d\n")
    assert f.poll() == ["b", "c", "d"]
    # Rotated twice between two reads: what went further than .1 is said to be lost.
    write(path, "e\n")
    os.replace(path.with_name(path.name + ".1"), path.with_name(path.name + ".2"))
    os.replace(path, path.with_name(path.name + ".1"))
    write(path, "g\n")
    os.replace(path.with_name(path.name + ".1"), path.with_name(path.name + ".2"))
    os.replace(path, path.with_name(path.name + ".1"))
    write(path, "h\n")
    lines = f.poll()
    assert lines[0].startswith("[... ") and "rotated" in lines[0] and lines[1:] == ["h"]


def test_a_truncated_log_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = worker_log_path(tmp_path, TID, 6700)
    write(path, "one\ntwo\n")
    f = Follower(LocalSource(str(tmp_path)), public_name(TID, 6700))
    f.tail(10)
    write(path, "3\n", mode="r+")  # same file, now shorter than where we were
    with open(path, "r+") as fh:
        fh.truncate(2)
    lines = f.poll()
    assert "truncated" in lines[0] and lines[1:] == ["3"]


# --- labels --------------------------------------------------------------------------------------

RECORD = "2026-11-30 14:45:54,638 {level} worker[6700] {logger}: {message}"


def record(message: str, level: str = "INFO", logger: str = "worker.process") -> str:
    return RECORD.format(level=level, logger=logger, message=message)


def labels(labeler: LineLabeler, lines: list[str]) -> list[str]:
    return [str(labeler.label(line)) for line in lines]


def test_a_traceback_belongs_to_the_task_that_raised() -> None:
    labeler = LineLabeler("6700", {1: "s", 3: "p", 5: "__acker"})
    lines = [
        record("worker 127.0.0.1:6700: running tasks [1, 3, 5] of t"),
        "got 1",
        record("worker 127.0.0.1:6700: p task 3 raised in process:", "ERROR", "worker.executor"),
        "Traceback (most recent call last):",
        '  File "x.py", line 19, in process',
        "    raise RuntimeError('boom')",
        "RuntimeError: boom at 3",
        "",
        "got 5",
    ]
    assert labels(labeler, lines) == ["worker 6700", "worker 6700", "p:3", "p:3", "p:3", "p:3",
                                      "p:3", "p:3", "worker 6700"]


def test_a_chained_traceback_stays_with_its_task() -> None:
    labeler = LineLabeler("h:6700", {3: "p", 4: "q"})
    lines = [
        record("worker h:6700: q task 4 raised in process:", "ERROR"),
        "Traceback (most recent call last):",
        "  File ...",
        "KeyError: 'x'",
        "",
        "During handling of the above exception, another exception occurred:",
        "",
        "Traceback (most recent call last):",
        "  File ...",
        "ValueError: y",
        "printed by someone",
    ]
    assert labels(labeler, lines) == ["q:4"] * 10 + ["worker h:6700"]


def test_a_worker_with_one_component_task_owns_its_output() -> None:
    labeler = LineLabeler("6700", {2: "count", 5: "__acker"})
    assert labels(labeler, [
        "hello",
        record("worker 127.0.0.1:6700: active"),
        record("my own log line", logger="myapp.counting"),
        record("worker 127.0.0.1:6700: count task 2 emitted ['a'] -> tasks [3]", "DEBUG"),
    ]) == ["count:2", "worker 6700", "count:2", "count:2"]


def test_worker_tasks_come_from_the_assignment_and_the_record() -> None:
    assignment = {"workers": [{"host": "h", "port": 1, "tasks": [1, 2, 9]},
                              {"host": "h", "port": 2, "tasks": [3]}]}
    components = {"s": {"tasks": [1]}, "b": {"tasks": [2, 3]}}
    assert worker_tasks(assignment, components, [9]) == {
        ("h", 1): {1: "s", 2: "b", 9: "__acker"}, ("h", 2): {3: "b"}}
    assert worker_tasks(None, components) == {}
    assert worker_tasks({"workers": "junk"}, {"s": "junk"}) == {}


TAGGED = "2026-11-30 14:45:54,638 {level} worker[6700] {tag} {logger}: {message}"


def tagged(tag: str, message: str, logger: str = "STDOUT", level: str = "INFO") -> str:
    return TAGGED.format(level=level, tag=tag, logger=logger, message=message)


def test_tagged_lines_are_labelled_by_their_tag_and_their_continuations_follow() -> None:
    labeler = LineLabeler("6700", {1: "s", 3: "p", 4: "p", 5: "q", 9: "__acker"})
    lines = [
        tagged("-", "worker 127.0.0.1:6700: running tasks [1, 3, 4, 5, 9] of t", "worker.process"),
        tagged("p:3", "got 1"),
        tagged("p:4", "got 2"),
        tagged("q:5", "a line of my own", "myapp.q"),
        tagged("p:4", "worker 127.0.0.1:6700: p task 4 raised in process:", "worker.errors",
               "ERROR"),
        "Traceback (most recent call last):",
        "  File ...",
        "RuntimeError: boom",
        "",
        "a raw line written to fd 1",  # no record of its own: the record above's
        tagged("-", "printed while no task ran"),  # several user tasks: cannot tell
        "its second line",
        tagged("-", "worker 127.0.0.1:6700: q task 5 raised in prepare:", "worker.errors"),
        "Traceback (most recent call last):",
    ]
    assert labels(labeler, lines) == [
        "worker 6700", "p:3", "p:4", "q:5", "p:4", "p:4", "p:4", "p:4", "p:4", "p:4",
        "worker 6700", "worker 6700", "q:5", "q:5"]


def test_untagged_prints_of_a_single_task_worker_are_still_its_own() -> None:
    labeler = LineLabeler("6700", {2: "count", 5: "__acker"})
    assert labels(labeler, [tagged("-", "ready"), tagged("-", "active", "worker.process"),
                            tagged("count:2", "got x")]) == ["count:2", "worker 6700", "count:2"]


def test_short_form_drops_what_the_label_says() -> None:
    assert short_form(tagged("p:3", "got 1")) == "got 1"
    assert short_form(tagged("p:3", "oops", "STDERR", "WARNING")) == "oops"
    assert short_form(tagged("-", "hello", "myapp", "DEBUG")) == "DEBUG myapp: hello"
    assert short_form(tagged("p:3", "got 1"), with_time=True) == \
        "2026-11-30 14:45:54,638 got 1"
    assert short_form(record("active"), with_time=True) == \
        "2026-11-30 14:45:54,638 INFO worker.process: active"
    assert short_form("  File ...") == "  File ..."
