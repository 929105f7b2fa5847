"""Where worker logs live on a supervisor's host, and reading them by byte range.

On disk, under a supervisor's `{home}/logs`, a worker's log is

    {topology dir}/worker-{port}.log        the current file
    {topology dir}/worker-{port}.log.N      older ones, N = 1 the most recent (rotation)

and its public name (what the log server's `?file=` takes, Storm's logviewer layout) is
`{topology id}/{port}/worker.log` (`.N` for the older ones). The topology dir is the
topology id itself when it is a plain name (Squall's ids are), otherwise a sanitised,
hashed form: a stored record with a strange id never makes a path outside the root.

`resolve()` turns a public name into a path and refuses anything else (one fixed shape,
each part checked, and the real path must stay under the root: no `..`, no symlink out).
`read_range()` reads at most `length` bytes from `start` (by default the last `length`
bytes) and says where the chunk starts, how big the file is and which file it is (device
and inode), which is what a follower needs to go on where it stopped, also across a
rotation (see cluster.logfollow).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LOG_NAME = "worker.log"
MAX_ROTATED = 99  # worker.log.1 ... worker.log.99 can be named
DEFAULT_LENGTH = 51200  # Storm's logviewer default
MAX_LENGTH = 1 << 20  # the most bytes one read returns
READABLE_CHARS = 60
_PLAIN = re.compile(r"[A-Za-z0-9_.-]{1,120}")
_NAME = re.compile(r"worker\.log(?:\.([1-9][0-9]?))?")
_PORT = re.compile(r"[0-9]{1,5}")
_FILE = re.compile(r"worker-([0-9]{1,5})\.log(?:\.([1-9][0-9]?))?")


class LogNameError(ValueError):
    """A log file name that is not one of ours (malformed, or outside the logs root)."""


@dataclass(frozen=True)
class Chunk:
    """Bytes read from a log file: `data` begins at byte `start` of a file of `size` bytes
    whose identity (device-inode) is `ident`."""

    data: bytes
    start: int
    size: int
    ident: str

    @property
    def end(self) -> int:
        return self.start + len(self.data)


def topology_dir_name(topology_id: str) -> str:
    """The directory of a topology's logs: the id when it is a plain name, else its
    readable part and a hash (always one safe path component)."""
    if _PLAIN.fullmatch(topology_id) and topology_id not in (".", ".."):
        return topology_id
    readable = re.sub(r"[^A-Za-z0-9_-]", "_", topology_id)[:READABLE_CHARS]
    digest = hashlib.sha256(topology_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{readable}-{digest}"


def worker_log_path(root: Path, topology_id: str, port: int) -> Path:
    """Where the worker of `topology_id` on `port` writes its log."""
    return root / topology_dir_name(topology_id) / f"worker-{port}.log"


def public_name(topology_id: str, port: int, rotation: int = 0) -> str:
    """The name the log server knows a worker's log by: `{id}/{port}/worker.log[.N]`."""
    return f"{topology_id}/{port}/{LOG_NAME}" + (f".{rotation}" if rotation else "")


def rotated_name(name: str) -> str:
    """The public name of the file `name` (a current log) is renamed to on rotation."""
    return f"{name}.1"


def parse_name(name: str) -> tuple[str, int, int]:
    """(topology id, port, rotation) of a public name; LogNameError if it is not one."""
    parts = name.rsplit("/", 2)
    if len(parts) != 3 or not parts[0]:
        raise LogNameError(f"log file {name!r} is not TOPOLOGY_ID/PORT/worker.log")
    topology_id, port_text, file = parts
    match = _NAME.fullmatch(file)
    if match is None:
        raise LogNameError(f"log file {name!r}: {file!r} is not worker.log or worker.log.N")
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise LogNameError(f"log file {name!r}: {port_text!r} is not a port")
    return topology_id, int(port_text), int(match.group(1) or 0)


def resolve(root: Path, name: str) -> Path:
    """The path of the log with public name `name` under `root` (it may not exist)."""
    topology_id, port, rotation = parse_name(name)
    path = worker_log_path(root, topology_id, port)
    if rotation:
        path = path.with_name(f"{path.name}.{rotation}")
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
        raise LogNameError(f"log file {name!r} is outside the logs directory")
    return path


def read_range(path: Path, start: int | None, length: int) -> Chunk:
    """At most `length` bytes of `path` from `start` (None: the last `length` bytes).
    A start past the end gives no data (the caller sees the size). OSError if unreadable."""
    if length < 0 or (start is not None and start < 0):
        raise ValueError(f"start and length must be >= 0, got {start}, {length}")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        size = st.st_size
        begin = max(0, size - length) if start is None else start
        data = os.pread(fd, min(length, max(0, size - begin)), begin) if begin < size else b""
    finally:
        os.close(fd)
    return Chunk(data, begin, size, f"{st.st_dev:x}-{st.st_ino:x}")


def list_logs(root: Path, topology_id: str | None = None, port: int | None = None
              ) -> list[str]:
    """Public names of the logs under `root` (of one topology and/or port), sorted."""
    if topology_id is not None:
        dirs: Iterable[Path] = [root / topology_dir_name(topology_id)]
    else:
        dirs = sorted(p for p in _entries(root) if p.is_dir() and not p.is_symlink())
    names = []
    for directory in dirs:
        for path in _entries(directory):
            match = _FILE.fullmatch(path.name)
            if match is None or not path.is_file() or path.is_symlink():
                continue
            file_port, rotation = int(match.group(1)), int(match.group(2) or 0)
            if port is None or file_port == port:
                names.append((directory.name, file_port, rotation))
    tid = topology_id
    return [public_name(tid if tid is not None else d, p, r) for d, p, r in sorted(names)]


def remove_old_logs(root: Path, keep: set[str], older_than: float) -> list[str]:
    """Remove the log directories of topologies not in `keep` (ids) whose files were all
    last written before `older_than` (a time.time() value); returns the names removed."""
    keep_dirs = {topology_dir_name(t) for t in keep}
    removed = []
    for directory in _entries(root):
        if directory.name in keep_dirs or not directory.is_dir() or directory.is_symlink():
            continue
        try:
            newest = max((p.stat().st_mtime for p in directory.iterdir()),
                         default=directory.stat().st_mtime)
        except OSError:
            continue
        if newest < older_than:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory.name)
    return removed


def _entries(directory: Path) -> list[Path]:
    try:
        return list(directory.iterdir())
    except OSError:  # not there (yet), or not a directory
        return []
