"""Who hears about which tree: pure functions, no I/O.

Every worker picks the acker task of a root the same way (`acker_of`), so the init sent by a
spout and the acks sent by every bolt of the tree meet in one ledger without any lookup.
The acker answers to the spout task named in the init; `by_worker` then splits per-task
payloads into what this worker handles itself and what goes to each peer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

Address = tuple[str, int]
T = TypeVar("T")

AckShare = tuple[list[tuple[int, int, int]], dict[int, int], list[int]]
"""What one acker task is told: inits (root, xor, spout task), acks {root: xor}, fails [root]."""


def acker_of(root: int, ackers: Sequence[int]) -> int:
    """The acker task that tracks `root` (ackers: the topology's acker task ids, sorted)."""
    return ackers[root % len(ackers)]


def shard_acks(inits: Iterable[tuple[int, int, int]], acks: Mapping[int, int],
               fails: Iterable[int], ackers: Sequence[int]) -> dict[int, AckShare]:
    """Split a worker's combined acker traffic by acker task; an ack of a tree whose init
    is among `inits` is folded into the init (XOR is associative)."""
    n = len(ackers)
    out: dict[int, AckShare] = {task: ([], {}, []) for task in ackers}
    shares = [out[task] for task in ackers]  # shares[root % n] is the root's acker's share
    acks = dict(acks)
    for root, xor, task in inits:
        # Acks of the same tree from this worker travel in its init: one entry, not two.
        shares[root % n][0].append((root, xor ^ acks.pop(root, 0), task))
    for root, val in acks.items():
        if val:  # acks that cancelled out within the worker tell the acker nothing
            shares[root % n][1][root] = val
    for root in fails:
        shares[root % n][2].append(root)
    return {task: share for task, share in out.items() if share[0] or share[1] or share[2]}


def group_outcomes(acked: Iterable[tuple[int, int]], failed: Iterable[tuple[int, int]]
                   ) -> dict[int, tuple[list[int], list[int]]]:
    """(root, spout task) pairs of finished trees -> {spout task: (acked roots, failed roots)}."""
    out: dict[int, tuple[list[int], list[int]]] = {}
    for root, task in acked:
        entry = out.get(task)
        if entry is None:
            entry = out[task] = ([], [])
        entry[0].append(root)
    for root, task in failed:
        entry = out.get(task)
        if entry is None:
            entry = out[task] = ([], [])
        entry[1].append(root)
    return out


def by_worker(per_task: Mapping[int, T], local: Iterable[int] | Mapping[int, object],
              locations: Mapping[int, Address]) -> tuple[dict[int, T], dict[Address, dict[int, T]],
                                                         list[int]]:
    """Split {task: payload} into this worker's tasks, each peer's, and tasks nowhere known."""
    mine: dict[int, T] = {}
    peers: dict[Address, dict[int, T]] = {}
    unknown: list[int] = []
    for task, payload in per_task.items():
        if task in local:
            mine[task] = payload
            continue
        address = locations.get(task)
        if address is None:
            unknown.append(task)
        else:
            peers.setdefault(address, {})[task] = payload
    return mine, peers, unknown
