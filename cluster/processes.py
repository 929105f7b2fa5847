"""Stopping processes: SIGTERM, wait with `psutil.wait_procs`, SIGKILL what is left. The one
helper every daemon, the local cluster, the dev cluster and the tests use.

A `subprocess.Popen` handle may be given instead of a `psutil.Process`: it is signalled and
waited through psutil like the others (its pid cannot be recycled before it is reaped), and its
`returncode` is set from what psutil collected, so the caller's handle stays truthful.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable

import psutil

log = logging.getLogger(__name__)

KILL_WAIT_SECS = 5.0  # after SIGKILL: the kernel reaps at once; this only bounds a stuck exit


def stop_processes(procs: Iterable[psutil.Process | subprocess.Popen], timeout: float,
                   who: str = "process") -> list[int]:
    """SIGTERM every live process, wait up to `timeout` s for all of them, SIGKILL those left
    and wait for them too; children of ours are reaped. Returns the pids that needed SIGKILL.
    `who` names them in the warning about those ("worker", "zookeeper", ...)."""
    handles: list[tuple[psutil.Process, subprocess.Popen | None]] = []
    seen: set[int] = set()
    for p in procs:
        if p.pid in seen:
            continue
        seen.add(p.pid)
        popen = p if isinstance(p, subprocess.Popen) else None
        if popen is not None and popen.poll() is not None:
            continue  # already exited and reaped
        try:
            proc = psutil.Process(p.pid) if popen is not None else p
            assert isinstance(proc, psutil.Process)
            proc.terminate()
        except psutil.NoSuchProcess:
            continue
        except psutil.Error as e:  # e.g. not ours to signal: waiting would be pointless
            log.warning("%s %d: cannot stop it: %s", who, p.pid, e)
            continue
        handles.append((proc, popen))
    _, lingering = psutil.wait_procs([h for h, _ in handles], timeout=max(0.0, timeout))
    for proc in lingering:
        if timeout > 0:
            log.warning("%s %d ignored SIGTERM for %g s; killing it", who, proc.pid, timeout)
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(lingering, timeout=KILL_WAIT_SECS)
    for proc, popen in handles:
        if popen is not None and popen.returncode is None:
            code = getattr(proc, "returncode", None)
            if code is not None:
                popen.returncode = int(code)
            else:
                popen.poll()
    return [proc.pid for proc in lingering]
