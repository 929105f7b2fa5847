"""Which worker slots run which tasks: Storm's even scheduler, made stable. Pure, no I/O.

`compute_assignments` is called by nimbus on every scheduling round with what it read from the
cluster state; it writes back only the assignments that changed. The rules, per topology, in
order of topology id:

- *keep*: an existing assignment whose slots are all alive, that holds exactly the topology's
  tasks and has the worker count wanted is returned unchanged, so healthy topologies never see
  a worker restart.
- *repair*: when some of its slots are lost (supervisor gone, port no longer offered, host
  changed, or slot reported dead), the healthy workers stay as they are and each lost worker's
  tasks move, intact, to a free slot. With fewer free slots than lost workers, the lost tasks
  are spread over the free slots obtained; with none, over the surviving workers.
- *from scratch*: a new topology, one whose task set changed or that now wants fewer workers
  (a rebalance), or one that lost every worker, gets `min(wanted, free)` slots spread evenly
  over supervisors and its tasks spread over them with `distribute_tasks`.
- *grow*: a topology running fewer workers than wanted (slots were short when it was
  scheduled, or a rebalance asked for more) is scheduled from scratch as soon as a slot is
  free; otherwise it is kept (or repaired). This is the one case where healthy workers of a
  topology restart, and it makes results stable: after a round, a topology has fewer workers
  than wanted (or none) only when no slot is left free, so recomputing from the result as
  `existing` returns the result unchanged.

"Wanted" is `min(num_workers, number of tasks)`: a worker without tasks is never assigned.
Slots are chosen one at a time on the supervisor holding the fewest workers of all topologies,
then the fewest of this topology, then the smallest id; on it, the lowest free port.

A topology that gets no slot at all (no free slot at its turn, nothing surviving) is absent
from the result: it is unassigned, and a later round schedules it when slots appear.
"""

from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Literal

from cluster.assignment import Assignment, SchedulerError, Slot, SupervisorInfo, TopologyDemand
from topology.placement import distribute_tasks

__all__ = [
    "Assignment",
    "SchedulerError",
    "Slot",
    "SupervisorInfo",
    "TopologyDemand",
    "compute_assignments",
    "free_slots",
]


def free_slots(
    supervisors: Mapping[str, SupervisorInfo],
    assignments: Mapping[str, Assignment],
    dead_slots: AbstractSet[Slot] = frozenset(),
) -> list[Slot]:
    """Slots offered by `supervisors` that no assignment uses and that are not dead, sorted."""
    used = {slot for a in assignments.values() for slot in a.workers}
    return sorted(
        (sid, port)
        for sid, info in supervisors.items()
        for port in info.ports
        if (sid, port) not in used and (sid, port) not in dead_slots
    )


@dataclass
class _Plan:
    """What the first pass decided for one topology, before any slot is handed out."""

    demand: TopologyDemand
    kind: Literal["keep", "repair", "grow", "scratch"]
    healthy: dict[Slot, list[int]]
    lost: dict[Slot, list[int]]


class _Pool:
    """The free slots, and how many workers each supervisor holds, while a round runs."""

    def __init__(self, live: AbstractSet[Slot], reserved: AbstractSet[Slot]) -> None:
        self.free: dict[str, list[int]] = {}
        for sid, port in sorted(live - reserved):
            self.free.setdefault(sid, []).append(port)
        self.used: Counter[str] = Counter(sid for sid, _ in reserved)

    def size(self) -> int:
        return sum(len(ports) for ports in self.free.values())

    def release(self, slots: AbstractSet[Slot]) -> None:
        for sid, port in slots:
            self.used[sid] -= 1
            self.free.setdefault(sid, []).append(port)
            self.free[sid].sort()

    def take(self, n: int, own: Counter[str]) -> list[Slot]:
        """Take up to `n` slots, each on the least loaded supervisor (updates `own`)."""
        taken: list[Slot] = []
        for _ in range(n):
            candidates = [sid for sid, ports in self.free.items() if ports]
            if not candidates:
                break
            sid = min(candidates, key=lambda s: (self.used[s], own[s], s))
            taken.append((sid, self.free[sid].pop(0)))
            self.used[sid] += 1
            own[sid] += 1
        return taken


def compute_assignments(
    topologies: Sequence[TopologyDemand],
    supervisors: Mapping[str, SupervisorInfo],
    existing: Mapping[str, Assignment],
    dead_slots: AbstractSet[Slot] = frozenset(),
) -> dict[str, Assignment]:
    """The assignment of every topology that gets at least one slot, keyed by topology id.

    See the module docstring for the rules. Existing assignments of topologies not in
    `topologies` are dropped and their slots freed. The output depends only on the inputs.
    """
    ids = [d.topology_id for d in topologies]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise SchedulerError(f"topologies given twice: {dupes}")
    hosts = {sid: info.host for sid, info in supervisors.items()}
    live = {(sid, port) for sid, info in supervisors.items() for port in info.ports} - dead_slots

    plans: list[_Plan] = []
    claimed: set[Slot] = set()
    for demand in sorted(topologies, key=lambda d: d.topology_id):
        plan = _plan(demand, existing.get(demand.topology_id), live, hosts, claimed)
        claimed |= set(plan.healthy)
        plans.append(plan)

    pool = _Pool(live, claimed)
    result: dict[str, Assignment] = {}
    for plan in plans:
        workers = _place(plan, pool)
        if workers:
            result[plan.demand.topology_id] = Assignment(
                plan.demand.topology_id,
                {slot: workers[slot] for slot in sorted(workers)},
                {sid: hosts[sid] for sid in sorted({sid for sid, _ in workers})},
            )
    return result


def _plan(
    demand: TopologyDemand,
    old: Assignment | None,
    live: AbstractSet[Slot],
    hosts: Mapping[str, str],
    claimed: AbstractSet[Slot],
) -> _Plan:
    """Decide how to treat one topology, given its old assignment and the slots still alive."""
    if old is None or not _same_tasks(demand, old) or len(old.workers) > demand.target_workers():
        return _Plan(demand, "scratch", {}, {})
    healthy: dict[Slot, list[int]] = {}
    lost: dict[Slot, list[int]] = {}
    for slot in sorted(old.workers):
        ok = slot in live and slot not in claimed and old.hosts[slot[0]] == hosts.get(slot[0])
        (healthy if ok else lost)[slot] = sorted(old.workers[slot])
    if not healthy:
        return _Plan(demand, "scratch", {}, {})
    if lost:
        return _Plan(demand, "repair", healthy, lost)
    if len(healthy) < demand.target_workers():
        return _Plan(demand, "grow", healthy, {})
    return _Plan(demand, "keep", healthy, {})


def _same_tasks(demand: TopologyDemand, old: Assignment) -> bool:
    """True when `old` holds every task of `demand` exactly once, and no empty worker."""
    if any(not tasks for tasks in old.workers.values()):
        return False
    assigned = old.tasks()
    return len(assigned) == len(set(assigned)) and set(assigned) == demand.tasks()


def _place(plan: _Plan, pool: _Pool) -> dict[Slot, list[int]]:
    """Hand out slots for one plan, taking them from `pool`; empty when nothing is possible."""
    if plan.kind == "keep":
        return dict(plan.healthy)
    if plan.kind == "grow" and pool.size() == 0:
        return dict(plan.healthy)
    if plan.kind == "repair":
        undersized = len(plan.healthy) + len(plan.lost) < plan.demand.target_workers()
        # Replacing the lost workers would leave free slots that the next round would use to
        # grow the topology from scratch anyway: do it now, so that a result is stable.
        if not (undersized and pool.size() > len(plan.lost)):
            return _repair(plan, pool)
    pool.release(set(plan.healthy))
    return _from_scratch(plan.demand, pool)


def _from_scratch(demand: TopologyDemand, pool: _Pool) -> dict[Slot, list[int]]:
    slots = pool.take(demand.target_workers(), Counter())
    if not slots:
        return {}
    return dict(zip(slots, distribute_tasks(demand.component_tasks, len(slots)), strict=True))


def _repair(plan: _Plan, pool: _Pool) -> dict[Slot, list[int]]:
    workers = dict(plan.healthy)
    own = Counter(sid for sid, _ in workers)
    slots = pool.take(len(plan.lost), own)
    lost_lists = [plan.lost[slot] for slot in sorted(plan.lost)]
    lost_tasks = {t for tasks in lost_lists for t in tasks}
    if len(slots) == len(lost_lists):
        workers.update(zip(slots, lost_lists, strict=True))
    elif slots:
        spread = distribute_tasks(_by_component(plan.demand, lost_tasks), len(slots))
        workers.update(zip(slots, spread, strict=True))
    else:
        _spread_over(workers, plan.demand, lost_tasks)
    return workers


def _by_component(demand: TopologyDemand, tasks: AbstractSet[int]) -> dict[str, list[int]]:
    """`demand`'s component -> task map restricted to `tasks`."""
    return {
        component: [t for t in sorted(component_tasks) if t in tasks]
        for component, component_tasks in demand.component_tasks.items()
    }


def _spread_over(
    workers: dict[Slot, list[int]], demand: TopologyDemand, tasks: AbstractSet[int]
) -> None:
    """Add `tasks` to existing workers, each to the one with the fewest of its component, then
    the fewest tasks, then the smallest slot; so components stay as even as they can."""
    component_tasks = _by_component(demand, tasks)
    for component in sorted(component_tasks):
        mine = set(demand.component_tasks[component])
        share = {slot: len(mine.intersection(held)) for slot, held in workers.items()}
        for task in component_tasks[component]:
            slot = min(workers, key=lambda s: (share[s], len(workers[s]), s))
            workers[slot] = sorted([*workers[slot], task])
            share[slot] += 1
