"""The topology's code directory, shipped with it for its multilang (shell) components.

`squall submit` packs the code directory (`topology.code.dir`, else the topology file's
directory) into a tar.gz when the topology has a ShellBolt or ShellSpout, as Storm ships a
jar's `resources/`. Nimbus keeps it inside the code blob it signs, as an *envelope*: a plain
pickle (no classes, so it can be read without running user code) of
`{ENVELOPE: 1, "code": <the cloudpickled {"topology", "conf"}>, "resources": <tar.gz>}`.
A supervisor verifies the signature, unpacks the archive next to its cached code file and
caches the envelope with `"code_dir"` (where it unpacked) in place of the archive; the worker
runs its shell components there (`topology.code.dir` in its conf).

What is shipped: regular files and directories, with their modes (scripts stay
executable); symbolic links to files inside the directory, as the files they point to.
What is not: entries whose name starts with a dot (.git, .venv, ...), `__pycache__`,
symbolic links to directories or out of the directory, devices, fifos and sockets.
Unpacking refuses absolute names, `..`, links and devices (and uses tarfile's "data"
filter as a second wall), and stops at MAX_FILES entries or MAX_UNPACKED_BYTES.
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import pickle
import tarfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from topology.errors import SquallError

log = logging.getLogger(__name__)

CODE_DIR_KEY = "topology.code.dir"  # also worker.shell.CODE_DIR_KEY
MAX_BYTES_KEY = "nimbus.code.max.bytes"
ENVELOPE = "squall.code.envelope"
MAX_FILES = 10_000  # entries (files and directories) in a shipped code directory
MAX_UNPACKED_BYTES = 1 << 30  # what a supervisor unpacks at most, whatever the archive says
SKIPPED_NAMES = frozenset({"__pycache__"})
# What reading a broken archive raises (tarfile's data filter raises TarErrors too).
CORRUPT = (tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError)


class ResourcesError(SquallError):
    """A code directory that cannot be shipped, or an archive that must not be unpacked."""


@dataclass(frozen=True)
class Entry:
    """One thing to ship: its name in the archive, its path here and its size in bytes."""

    name: str
    path: Path
    is_dir: bool
    size: int


# --- which directory (pure) ---------------------------------------------------------------------


def has_shell_components(topology: Any) -> bool:
    """Whether any component of `topology` is a ShellBolt or ShellSpout (instance or class)."""
    from topology.multilang.components import ShellComponent

    return any(isinstance(spec.obj, ShellComponent) or
               (isinstance(spec.obj, type) and issubclass(spec.obj, ShellComponent))
               for spec in topology.components.values())


def code_dir_of(topology_config: Mapping[str, Any], overrides: Mapping[str, Any],
                topology_file: str) -> Path:
    """The directory to ship: `topology.code.dir` (the overrides' over the topology's own;
    a relative one is relative to the topology file), else the topology file's directory."""
    base = Path(topology_file).resolve().parent
    chosen = overrides.get(CODE_DIR_KEY, topology_config.get(CODE_DIR_KEY))
    return base / chosen if chosen else base  # an absolute `chosen` replaces `base`


def shipped_name(name: str) -> bool:
    """Whether a directory entry called `name` is shipped at all."""
    return not name.startswith(".") and name not in SKIPPED_NAMES


# --- packing (the client) -----------------------------------------------------------------------


def entries(root: Path, max_files: int = MAX_FILES) -> list[Entry]:
    """What is shipped of `root`, sorted by name; at most `max_files` + 1 entries are listed
    (one more than the bound: enough to know it is over)."""
    root = root.resolve()
    out: list[Entry] = []
    for here, dirs, files in os.walk(root):
        at = Path(here)
        dirs[:] = sorted(d for d in dirs if shipped_name(d) and not (at / d).is_symlink())
        for d in dirs:
            out.append(Entry((at / d).relative_to(root).as_posix(), at / d, True, 0))
        for f in sorted(files):
            path = at / f
            if shipped_name(f) and (size := _file_size(root, path)) is not None:
                out.append(Entry(path.relative_to(root).as_posix(), path, False, size))
        if len(out) > max_files:
            return sorted(out, key=lambda e: e.name)[: max_files + 1]
    return sorted(out, key=lambda e: e.name)


def _file_size(root: Path, path: Path) -> int | None:
    """The size of a regular file to ship (a link is followed if it stays inside `root`);
    None when it is not shipped."""
    try:
        if path.is_symlink():
            target = path.resolve(strict=True)
            if not target.is_relative_to(root):
                log.info("resources: not shipping %s: it links out of %s", path, root)
                return None
            path = target
        st = path.stat()
    except (OSError, RuntimeError):  # a dangling link, a loop, gone meanwhile
        return None
    return st.st_size if path.is_file() else None


def check_size(root: Path, found: list[Entry], max_bytes: int,
               max_files: int = MAX_FILES) -> None:
    """ResourcesError (one line naming the directory and its size) when `found` is over the
    bounds."""
    total = sum(e.size for e in found)
    if len(found) > max_files:
        raise ResourcesError(f"{root}: the code directory shipped with the topology's shell "
                             f"components has more than {max_files} files and directories; "
                             f"set {CODE_DIR_KEY} to a directory holding only their scripts")
    if total > max_bytes:
        raise ResourcesError(f"{root}: the code directory shipped with the topology's shell "
                             f"components holds {total:,} bytes in {len(found)} files, over "
                             f"{MAX_BYTES_KEY} ({max_bytes:,}); set {CODE_DIR_KEY} to a "
                             "directory holding only their scripts")


def pack(root: Path, max_bytes: int, max_files: int = MAX_FILES) -> bytes:
    """The tar.gz of what is shipped of directory `root`; ResourcesError when it is missing
    or over the bounds."""
    if not root.is_dir():
        raise ResourcesError(f"{root}: the code directory ({CODE_DIR_KEY}) is not a directory")
    found = entries(root, max_files)
    check_size(root, found, max_bytes, max_files)
    buf = io.BytesIO()
    try:
        with tarfile.open(fileobj=buf, mode="w:gz", dereference=True) as tar:
            for e in found:
                info = tar.gettarinfo(str(e.path), arcname=e.name)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if e.is_dir:
                    tar.addfile(info)
                else:
                    with open(e.path, "rb") as f:
                        tar.addfile(info, f)
    except OSError as e:  # unreadable, or changed while it was read
        raise ResourcesError(f"{root}: cannot pack the code directory: {e}") from e
    return buf.getvalue()


# --- unpacking (nimbus checks, the supervisor unpacks) -------------------------------------------


def member_problem(member: tarfile.TarInfo) -> str | None:
    """Why an archive member must not be unpacked (None: it may)."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith(("/", "\\")):
        return "an absolute path"
    if ".." in path.parts:
        return "a path out of the directory (..)"
    if member.issym() or member.islnk():
        return "a link"
    if not (member.isfile() or member.isdir()):
        return "not a file or a directory (a device, fifo or other special file)"
    return None


def check_members(members: Iterable[tarfile.TarInfo], max_bytes: int = MAX_UNPACKED_BYTES,
                  max_files: int = MAX_FILES) -> list[tarfile.TarInfo]:
    """The members, checked one by one as they come (so a huge archive is refused at its
    first member over a bound, not after reading it all); ResourcesError names the first
    member that must not be unpacked, or the bound passed."""
    out: list[tarfile.TarInfo] = []
    total = 0
    for member in members:
        problem = member_problem(member)
        if problem is not None:
            raise ResourcesError(f"the shipped code directory's archive holds {member.name!r}:"
                                 f" {problem}; refusing to unpack it")
        total += member.size
        out.append(member)
        if len(out) > max_files:
            raise ResourcesError(f"the shipped code directory's archive holds more than "
                                 f"{max_files} entries; refusing to unpack it")
        if total > max_bytes:
            raise ResourcesError(f"the shipped code directory's archive holds more than "
                                 f"{max_bytes:,} bytes; refusing to unpack it")
    return out


def check_archive(data: bytes, max_bytes: int = MAX_UNPACKED_BYTES,
                  max_files: int = MAX_FILES) -> None:
    """ResourcesError unless `data` is a tar.gz that `unpack` would unpack."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            check_members(tar, max_bytes, max_files)
    except CORRUPT as e:
        raise ResourcesError(f"the shipped code directory is not a tar.gz archive: {e}") from e


def unpack(data: bytes, dest: Path, max_bytes: int = MAX_UNPACKED_BYTES,
           max_files: int = MAX_FILES) -> None:
    """Unpack the tar.gz `data` into the new directory `dest` (which must not exist).
    ResourcesError when the archive must not be unpacked (its content: nothing else will do);
    OSError when this host cannot (a full disk: another try may succeed). Either way,
    nothing is left in `dest`'s place."""
    dest.mkdir(mode=0o755)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = check_members(tar, max_bytes, max_files)
            tar.extractall(dest, members=members, filter="data")
    except CORRUPT as e:
        _remove_tree(dest)
        raise ResourcesError(f"cannot unpack the shipped code directory into {dest}: "
                             f"{type(e).__name__}: {e}") from e
    except BaseException:
        _remove_tree(dest)
        raise


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# --- the envelope ---------------------------------------------------------------------------------


def wrap(code: bytes, *, resources: bytes | None = None, code_dir: str | None = None) -> bytes:
    """The envelope of a code package `code` with its resources archive, or with the
    directory they were unpacked in (what a supervisor caches for its workers)."""
    envelope: dict[str, Any] = {ENVELOPE: 1, "code": code}
    if resources is not None:
        envelope["resources"] = resources
    if code_dir is not None:
        envelope["code_dir"] = code_dir
    return pickle.dumps(envelope, protocol=5)


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"a class ({module}.{name}): not an envelope")


def open_envelope(blob: bytes) -> dict[str, Any] | None:
    """The envelope's fields ("code", and "resources" or "code_dir"), or None when `blob`
    is a plain code package. Reading it runs no user code (no class may be loaded)."""
    try:
        value = _NoGlobals(io.BytesIO(blob)).load()
    except Exception:  # noqa: BLE001 - a plain package stops at its first class
        return None
    if not isinstance(value, dict) or value.get(ENVELOPE) != 1 \
            or not isinstance(value.get("code"), bytes):
        return None
    if not isinstance(value.get("resources", b""), bytes) \
            or not isinstance(value.get("code_dir", ""), str):
        return None
    return value
