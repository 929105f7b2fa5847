"""Tests of nimbus.scheduler: handwritten cases, large inputs and hypothesis properties."""

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nimbus.scheduler import (
    Assignment,
    SchedulerError,
    Slot,
    SupervisorInfo,
    TopologyDemand,
    compute_assignments,
    free_slots,
)

PORTS = [6700, 6701, 6702, 6703]


def cluster(n: int, ports: Sequence[int] = PORTS[:2]) -> dict[str, SupervisorInfo]:
    return {f"s{i}": SupervisorInfo(f"host{i}", list(ports)) for i in range(n)}


def demand(topology_id: str, num_workers: int, **components: Sequence[int]) -> TopologyDemand:
    return TopologyDemand(topology_id, num_workers, {c: list(t) for c, t in components.items()})


def slots_used(result: Mapping[str, Assignment]) -> list[Slot]:
    return [slot for a in result.values() for slot in a.workers]


def per_supervisor(result: Mapping[str, Assignment]) -> Counter[str]:
    return Counter(sid for sid, _ in slots_used(result))


def check_invariants(
    demands: Sequence[TopologyDemand],
    supervisors: Mapping[str, SupervisorInfo],
    result: Mapping[str, Assignment],
    dead: AbstractSet[Slot] = frozenset(),
) -> None:
    """What must hold for every output, whatever the input."""
    by_id = {d.topology_id: d for d in demands}
    assert set(result) <= set(by_id)
    used = slots_used(result)
    assert len(used) == len(set(used)), "a slot is given to two topologies"
    live = {(s, p) for s, info in supervisors.items() for p in info.ports} - dead
    assert set(used) <= live
    for tid, a in result.items():
        d = by_id[tid]
        assert a.topology_id == tid
        assert sorted(a.tasks()) == sorted(d.tasks()), f"{tid}: tasks not assigned exactly once"
        assert all(a.workers.values()), f"{tid}: a worker without tasks"
        assert all(tasks == sorted(tasks) for tasks in a.workers.values())
        assert 1 <= len(a.workers) <= d.target_workers()
        assert a.hosts == {sid: supervisors[sid].host for sid, _ in a.workers}
    sizes = {tid: len(a.workers) for tid, a in result.items()}
    short = [d for d in demands if sizes.get(d.topology_id, 0) < d.target_workers()]
    if short:
        assert free_slots(supervisors, result, dead) == [], "short topologies but free slots"


def assert_component_spread(d: TopologyDemand, a: Assignment) -> None:
    """Each component's and the total share per worker differ by at most one."""
    totals = [len(tasks) for tasks in a.workers.values()]
    assert max(totals) - min(totals) <= 1
    for tasks in d.component_tasks.values():
        share = [len(set(tasks) & set(held)) for held in a.workers.values()]
        assert max(share) - min(share) <= 1


# -- data records ---------------------------------------------------------------------------


def test_assignment_round_trips_through_json() -> None:
    a = Assignment("wc", {("s1", 6701): [3, 1], ("s0", 6700): [2]}, {"s0": "h0", "s1": "h1"})
    data = a.to_dict()
    assert data == {
        "topology_id": "wc",
        "workers": [
            {"supervisor": "s0", "host": "h0", "port": 6700, "tasks": [2]},
            {"supervisor": "s1", "host": "h1", "port": 6701, "tasks": [1, 3]},
        ],
    }
    back = Assignment.from_dict(json.loads(json.dumps(data)))
    assert back.workers == {("s0", 6700): [2], ("s1", 6701): [1, 3]}
    assert back.hosts == {"s0": "h0", "s1": "h1"}
    assert back.task_locations() == {1: ("h1", 6701), 2: ("h0", 6700), 3: ("h1", 6701)}


def test_assignment_needs_a_host_for_every_supervisor() -> None:
    with pytest.raises(SchedulerError, match=r"'wc'.*no host for supervisor\(s\) \['s1'\]"):
        Assignment("wc", {("s1", 1): [1]}, {"s0": "h0"})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"workers": []}, "malformed assignment"),
        ({"topology_id": "t", "workers": [{"supervisor": "s", "port": 1}]}, "malformed"),
        (
            {
                "topology_id": "t",
                "workers": [{"supervisor": "s", "host": "h", "port": "x", "tasks": []}],
            },
            "malformed",
        ),
        (
            {
                "topology_id": "t",
                "workers": [
                    {"supervisor": "s", "host": "h", "port": 1, "tasks": [1]},
                    {"supervisor": "s", "host": "g", "port": 2, "tasks": [2]},
                ],
            },
            "supervisor 's' has two hosts, 'h' and 'g'",
        ),
        (
            {
                "topology_id": "t",
                "workers": [
                    {"supervisor": "s", "host": "h", "port": 1, "tasks": [1]},
                    {"supervisor": "s", "host": "h", "port": 1, "tasks": [2]},
                ],
            },
            "slot s:1 appears twice",
        ),
    ],
)
def test_assignment_from_dict_rejects_malformed_data(data: dict, message: str) -> None:
    with pytest.raises(SchedulerError, match=message):
        Assignment.from_dict(data)


def test_supervisor_info_round_trips() -> None:
    info = SupervisorInfo("h", [6701, 6700])
    assert info.to_dict() == {"host": "h", "ports": [6700, 6701]}
    assert SupervisorInfo.from_dict(json.loads(json.dumps(info.to_dict()))) == SupervisorInfo(
        "h", [6700, 6701]
    )
    with pytest.raises(SchedulerError, match="malformed supervisor info"):
        SupervisorInfo.from_dict({"host": "h"})


@pytest.mark.parametrize(
    ("num_workers", "components", "message"),
    [
        (0, {"a": [1]}, "'t': num_workers must be >= 1, got 0"),
        (1, {"a": [1, 2], "b": [2]}, "'t': task 2 is in both 'a' and 'b'"),
        (1, {"a": [1, 1]}, "task 1 is in both 'a' and 'a'"),
        (1, {}, "'t' has no tasks"),
        (1, {"a": []}, "'t' has no tasks"),
    ],
)
def test_demand_validation(num_workers: int, components: dict, message: str) -> None:
    with pytest.raises(SchedulerError, match=message):
        TopologyDemand("t", num_workers, components)


def test_demand_target_workers_is_capped_by_tasks() -> None:
    assert demand("t", 5, a=[1, 2], b=[3]).target_workers() == 3
    assert demand("t", 2, a=[1, 2], b=[3]).target_workers() == 2


def test_free_slots() -> None:
    sups = cluster(2)
    a = Assignment("t", {("s0", 6700): [1]}, {"s0": "host0"})
    assert free_slots(sups, {"t": a}) == [("s0", 6701), ("s1", 6700), ("s1", 6701)]
    assert free_slots(sups, {"t": a}, {("s1", 6700)}) == [("s0", 6701), ("s1", 6701)]
    assert free_slots({}, {}) == []


# -- scheduling from scratch ----------------------------------------------------------------


def test_new_topology_is_spread_over_supervisors_and_components() -> None:
    sups = cluster(3)
    d = demand("wc", 3, spout=[1, 2, 3], split=[4, 5, 6], __acker=[7, 8, 9])
    result = compute_assignments([d], sups, {})
    a = result["wc"]
    assert sorted(a.workers) == [("s0", 6700), ("s1", 6700), ("s2", 6700)]
    assert_component_spread(d, a)
    check_invariants([d], sups, result)


def test_workers_are_capped_by_free_slots_and_by_tasks() -> None:
    sups = cluster(2)
    result = compute_assignments([demand("a", 10, x=range(20))], sups, {})
    assert len(result["a"].workers) == 4
    result = compute_assignments([demand("a", 10, x=[1, 2])], sups, {})
    assert len(result["a"].workers) == 2


def test_second_worker_on_a_supervisor_only_when_all_have_one() -> None:
    sups = cluster(3, PORTS)
    result = compute_assignments([demand("a", 5, x=range(10))], sups, {})
    assert per_supervisor(result) == {"s0": 2, "s1": 2, "s2": 1}


def test_topologies_are_processed_in_id_order_and_never_share_a_slot() -> None:
    sups = cluster(1, PORTS)  # 4 slots
    ds = [demand("b", 3, x=[1, 2, 3]), demand("a", 3, y=[1, 2, 3])]
    result = compute_assignments(ds, sups, {})
    assert len(result["a"].workers) == 3
    assert sorted(result["a"].workers) == [("s0", 6700), ("s0", 6701), ("s0", 6702)]
    assert list(result["b"].workers) == [("s0", 6703)]
    check_invariants(ds, sups, result)


def test_no_slots_leaves_topologies_unassigned() -> None:
    d = demand("a", 2, x=[1])
    assert compute_assignments([d], {}, {}) == {}
    assert compute_assignments([d], {"s0": SupervisorInfo("h", [])}, {}) == {}
    assert compute_assignments([d], cluster(1, [1]), {}, {("s0", 1)}) == {}


def test_topology_with_no_free_slot_at_its_turn_is_unassigned() -> None:
    sups = cluster(1)
    ds = [demand("a", 2, x=[1, 2]), demand("b", 1, x=[1])]
    assert set(compute_assignments(ds, sups, {})) == {"a"}


def test_dead_slots_are_not_used() -> None:
    sups = cluster(2)
    result = compute_assignments([demand("a", 4, x=range(8))], sups, {}, {("s0", 6700)})
    assert ("s0", 6700) not in result["a"].workers
    assert len(result["a"].workers) == 3


def test_duplicate_topology_ids_are_rejected() -> None:
    with pytest.raises(SchedulerError, match=r"given twice: \['a'\]"):
        compute_assignments([demand("a", 1, x=[1]), demand("a", 1, x=[2])], cluster(1), {})


def test_output_does_not_depend_on_input_order() -> None:
    ds = [demand(f"t{i}", 3, x=range(i + 2), __acker=[100 + i]) for i in range(6)]
    sups = cluster(5)
    one = compute_assignments(ds, sups, {})
    shuffled = dict(reversed(list(sups.items())))
    two = compute_assignments(list(reversed(ds)), shuffled, {})
    assert {k: v.to_dict() for k, v in one.items()} == {k: v.to_dict() for k, v in two.items()}
    assert list(one) == sorted(one)


# -- keeping, repairing, rebalancing --------------------------------------------------------


def test_healthy_assignment_is_kept_unchanged() -> None:
    sups = cluster(3)
    d = demand("a", 2, x=range(6))
    existing = {
        "a": Assignment("a", {("s2", 6701): [0, 1, 2], ("s2", 6700): [3, 4, 5]}, {"s2": "host2"})
    }
    result = compute_assignments([d], sups, existing)
    assert result == existing


def test_kept_slots_are_not_free_for_earlier_topologies() -> None:
    sups = cluster(1)
    existing = {"b": Assignment("b", {("s0", 6700): [1]}, {"s0": "host0"})}
    ds = [demand("a", 2, x=[1, 2]), demand("b", 1, x=[1])]
    result = compute_assignments(ds, sups, existing)
    assert result["b"] == existing["b"]
    assert list(result["a"].workers) == [("s0", 6701)]


def test_killed_topology_frees_its_slots() -> None:
    sups = cluster(1, [6700])
    existing = {"old": Assignment("old", {("s0", 6700): [1]}, {"s0": "host0"})}
    result = compute_assignments([demand("new", 1, x=[1])], sups, existing)
    assert list(result) == ["new"]
    assert list(result["new"].workers) == [("s0", 6700)]


def test_lost_supervisor_moves_only_its_workers_intact() -> None:
    sups = cluster(4)
    d = demand("a", 3, x=range(9))
    first = compute_assignments([d], sups, {})["a"]
    lost_sid = min(first.workers)[0]
    del sups[lost_sid]
    second = compute_assignments([d], sups, {"a": first})["a"]
    for slot, tasks in first.workers.items():
        if slot[0] != lost_sid:
            assert second.workers[slot] == tasks
    moved = [slot for slot in second.workers if slot not in first.workers]
    assert [second.workers[s] for s in moved] == [
        tasks for slot, tasks in sorted(first.workers.items()) if slot[0] == lost_sid
    ]
    assert len(second.workers) == 3
    assert moved[0][0] not in {sid for sid, _ in first.workers}  # the empty supervisor


@pytest.mark.parametrize(
    ("s0", "moved_to"),
    [
        (None, ("s2", 6700)),
        (SupervisorInfo("host0", [6701]), ("s0", 6701)),  # s0 and s2 idle: smallest id wins
        (SupervisorInfo("elsewhere", [6700, 6701]), ("s0", 6700)),  # same slot, new host
    ],
    ids=["supervisor gone", "port withdrawn", "host changed"],
)
def test_every_kind_of_lost_slot_is_repaired(s0: SupervisorInfo | None, moved_to: Slot) -> None:
    sups = cluster(3)
    existing = {
        "a": Assignment(
            "a", {("s0", 6700): [1, 2], ("s1", 6700): [3, 4]}, {"s0": "host0", "s1": "host1"}
        )
    }
    if s0 is None:
        del sups["s0"]
    else:
        sups["s0"] = s0
    result = compute_assignments([demand("a", 2, x=[1, 2, 3, 4])], sups, existing)
    assert result["a"].workers == {("s1", 6700): [3, 4], moved_to: [1, 2]}


def test_dead_slot_is_repaired_on_the_least_loaded_supervisor() -> None:
    sups = cluster(3)
    existing = {
        "a": Assignment(
            "a", {("s0", 6700): [1, 2], ("s1", 6700): [3, 4]}, {"s0": "host0", "s1": "host1"}
        ),
        "b": Assignment("b", {("s2", 6700): [1]}, {"s2": "host2"}),
    }
    ds = [demand("a", 2, x=[1, 2, 3, 4]), demand("b", 1, y=[1])]
    result = compute_assignments(ds, sups, existing, {("s1", 6700)})
    # A dead slot counts for nothing: s1 holds no worker any more, s0 and s2 hold one each.
    assert result["a"].workers == {("s0", 6700): [1, 2], ("s1", 6701): [3, 4]}
    assert result["b"] == existing["b"]
    result = compute_assignments(ds, sups, existing, {("s1", 6700), ("s1", 6701)})
    # s0 and s2 hold one worker each; a already has one on s0.
    assert result["a"].workers == {("s0", 6700): [1, 2], ("s2", 6701): [3, 4]}


def test_repair_prefers_fewest_workers_of_all_topologies_first() -> None:
    sups = cluster(3, PORTS)
    existing = {
        "a": Assignment(
            "a",
            {("s0", 6700): [1], ("s1", 6700): [2], ("s2", 6700): [3]},
            {"s0": "host0", "s1": "host1", "s2": "host2"},
        ),
        "b": Assignment(
            "b",
            {("s1", 6701): [1], ("s1", 6702): [2], ("s2", 6701): [3]},
            {"s1": "host1", "s2": "host2"},
        ),
    }
    ds = [demand("a", 3, x=[1, 2, 3]), demand("b", 3, x=[1, 2, 3])]
    result = compute_assignments(ds, sups, existing, {("s2", 6700)})
    # Loads after losing s2:6700: s0=1, s1=3, s2=1 -> s0 (fewest, then a holds 1 there vs 0
    # on s2: s2 wins on "fewest of this topology").
    assert result["a"].workers[("s2", 6702)] == [3]
    assert result["b"] == existing["b"]


def test_lost_tasks_spread_over_the_few_free_slots() -> None:
    sups = cluster(2, [6700, 6701, 6702])
    existing = {
        "a": Assignment(
            "a",
            {("s0", 6700): [1, 4], ("s0", 6701): [2, 5], ("s1", 6700): [3, 6]},
            {"s0": "host0", "s1": "host1"},
        ),
        "b": Assignment("b", {("s1", 6701): [1]}, {"s1": "host1"}),
    }
    ds = [demand("a", 3, x=[1, 2, 3], y=[4, 5, 6]), demand("b", 1, z=[1])]
    # s0 dies except nothing: only s1:6702 is free after s0 is gone.
    del sups["s0"]
    result = compute_assignments(ds, sups, existing)
    assert result["a"].workers == {("s1", 6700): [3, 6], ("s1", 6702): [1, 2, 4, 5]}
    check_invariants(ds, sups, result)


def test_lost_tasks_spread_over_survivors_when_no_slot_is_free() -> None:
    sups = cluster(2, [6700, 6701])
    existing = {
        "a": Assignment(
            "a",
            {
                ("s0", 6700): [1, 5],
                ("s0", 6701): [2, 6],
                ("s1", 6700): [3, 7],
                ("s1", 6701): [4, 8],
            },
            {"s0": "host0", "s1": "host1"},
        )
    }
    ds = [demand("a", 4, x=[1, 2, 3, 4], y=[5, 6, 7, 8])]
    del sups["s0"]
    result = compute_assignments(ds, sups, existing)
    assert result["a"].workers == {("s1", 6700): [1, 3, 5, 7], ("s1", 6701): [2, 4, 6, 8]}
    assert_component_spread(ds[0], result["a"])
    assert compute_assignments(ds, sups, result) == result  # stable while short of slots


def test_all_workers_lost_is_a_fresh_schedule() -> None:
    sups = cluster(3)
    existing = {"a": Assignment("a", {("s0", 6700): [1, 2]}, {"s0": "host0"})}
    del sups["s0"]
    result = compute_assignments([demand("a", 2, x=[1, 2])], sups, existing)
    assert result["a"].workers == {("s1", 6700): [1], ("s2", 6700): [2]}
    assert compute_assignments([demand("a", 2, x=[1, 2])], {}, existing) == {}


def test_short_topology_grows_when_a_slot_frees_up() -> None:
    sups = cluster(1)
    existing = {"a": Assignment("a", {("s0", 6700): [1, 2, 3]}, {"s0": "host0"})}
    d = demand("a", 3, x=[1, 2, 3])
    result = compute_assignments([d], sups, existing)
    assert result["a"].workers == {("s0", 6700): [1, 3], ("s0", 6701): [2]}
    full = {"b": Assignment("b", {("s0", 6701): [9]}, {"s0": "host0"}), **existing}
    result = compute_assignments([d, demand("b", 1, y=[9])], sups, full)
    assert result == full  # no free slot: kept as it is


def test_short_topology_losing_a_worker_with_free_slots_is_rescheduled() -> None:
    sups = cluster(3)
    existing = {
        "a": Assignment(
            "a", {("s0", 6700): [1, 2], ("s1", 6700): [3, 4]}, {"s0": "host0", "s1": "host1"}
        )
    }
    d = demand("a", 4, x=[1, 2, 3, 4])
    result = compute_assignments([d], sups, existing, {("s0", 6700)})
    assert len(result["a"].workers) == 4
    check_invariants([d], sups, result, {("s0", 6700)})
    assert compute_assignments([d], sups, result, {("s0", 6700)}) == result


@pytest.mark.parametrize(
    "new",
    [
        demand("a", 2, x=[1, 2, 3, 4, 5]),  # a task added
        demand("a", 2, x=[1, 2, 3]),  # a task removed
        demand("a", 1, x=[1, 2, 3, 4]),  # fewer workers
    ],
    ids=["task added", "task removed", "fewer workers"],
)
def test_rebalance_is_a_fresh_schedule(new: TopologyDemand) -> None:
    sups = cluster(3)
    existing = {
        "a": Assignment(
            "a", {("s2", 6701): [1, 2], ("s1", 6701): [3, 4]}, {"s1": "host1", "s2": "host2"}
        )
    }
    result = compute_assignments([new], sups, existing)
    assert result == compute_assignments([new], sups, {})


@pytest.mark.parametrize(
    "workers",
    [
        {("s0", 6700): [1, 2], ("s1", 6700): [2, 3]},  # task twice
        {("s0", 6700): [1, 2, 3], ("s1", 6700): []},  # empty worker
    ],
)
def test_malformed_existing_assignment_is_rescheduled(workers: dict) -> None:
    sups = cluster(2)
    existing = {"a": Assignment("a", workers, {"s0": "host0", "s1": "host1"})}
    d = demand("a", 2, x=[1, 2, 3])
    assert compute_assignments([d], sups, existing) == compute_assignments([d], sups, {})


def test_slot_claimed_by_two_assignments_goes_to_the_first_by_id() -> None:
    sups = cluster(2)
    existing = {
        "a": Assignment("a", {("s0", 6700): [1]}, {"s0": "host0"}),
        "b": Assignment(
            "b", {("s0", 6700): [1], ("s1", 6700): [2]}, {"s0": "host0", "s1": "host1"}
        ),
    }
    ds = [demand("a", 1, x=[1]), demand("b", 2, x=[1, 2])]
    result = compute_assignments(ds, sups, existing)
    assert result["a"] == existing["a"]
    assert result["b"].workers == {("s1", 6700): [2], ("s0", 6701): [1]}


# -- large inputs ---------------------------------------------------------------------------


def big_cluster(
    seed: int, n_sups: int, n_topologies: int
) -> tuple[list[TopologyDemand], dict[str, SupervisorInfo]]:
    rng = random.Random(seed)
    sups = {
        f"sup{i:03d}": SupervisorInfo(f"10.0.{i // 250}.{i % 250}", PORTS) for i in range(n_sups)
    }
    demands = []
    next_task = 1
    for t in range(n_topologies):
        n_tasks = rng.randint(50, 500)
        n_components = rng.randint(1, 6)
        components: dict[str, list[int]] = {}
        for i in range(n_tasks):
            name = "__acker" if i % n_components == 0 else f"c{i % n_components}"
            components.setdefault(name, []).append(next_task)
            next_task += 1
        demands.append(TopologyDemand(f"topo-{t:03d}", rng.randint(1, 12), components))
    return demands, sups


@pytest.mark.parametrize("n_sups", [200, 120], ids=["plenty", "scarce"])
def test_large_cluster_from_scratch(n_sups: int) -> None:
    demands, sups = big_cluster(7, n_sups, 100)
    result = compute_assignments(demands, sups, {})
    check_invariants(demands, sups, result)
    remaining = n_sups * len(PORTS)
    for d in sorted(demands, key=lambda d: d.topology_id):
        wanted = min(d.num_workers, len(d.tasks()), remaining)
        if wanted == 0:
            assert d.topology_id not in result
            continue
        assert len(result[d.topology_id].workers) == wanted
        assert_component_spread(d, result[d.topology_id])
        remaining -= wanted
    load = per_supervisor(result)
    loads = [load[sid] for sid in sups]
    assert max(loads) - min(loads) <= 1
    assert compute_assignments(demands, sups, result) == result


def test_large_cluster_losing_one_supervisor_moves_only_its_workers() -> None:
    demands, sups = big_cluster(11, 200, 100)
    first = compute_assignments(demands, sups, {})
    victim = "sup042"
    del sups[victim]
    second = compute_assignments(demands, sups, first)
    check_invariants(demands, sups, second)
    for tid, a in first.items():
        moved = 0
        for slot, tasks in a.workers.items():
            if slot[0] == victim:
                moved += 1
                assert tasks in second[tid].workers.values()
            else:
                assert second[tid].workers[slot] == tasks
        assert len(second[tid].workers) == len(a.workers)
        assert moved == len(set(second[tid].workers) - set(a.workers))
    assert compute_assignments(demands, sups, second) == second


def test_large_cluster_survives_losing_many_supervisors_and_slots() -> None:
    demands, sups = big_cluster(3, 200, 100)
    first = compute_assignments(demands, sups, {})
    rng = random.Random(5)
    for sid in rng.sample(sorted(sups), 150):
        del sups[sid]
    dead = {slot for slot in free_slots(sups, {}) if rng.random() < 0.2}
    second = compute_assignments(demands, sups, first, dead)
    check_invariants(demands, sups, second, dead)
    assert compute_assignments(demands, sups, second, dead) == second


# -- properties -----------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple:
    n_sups = draw(st.integers(0, 6))
    sups = {
        f"s{i}": SupervisorInfo(
            f"h{i}", draw(st.lists(st.sampled_from(PORTS), max_size=4, unique=True))
        )
        for i in range(n_sups)
    }
    demands = []
    for t in range(draw(st.integers(1, 5))):
        n_tasks = draw(st.integers(1, 20))
        n_comp = draw(st.integers(1, 4))
        comps: dict[str, list[int]] = {}
        for task in range(n_tasks):
            comps.setdefault(f"c{task % n_comp}", []).append(task)
        demands.append(TopologyDemand(f"t{t}", draw(st.integers(1, 8)), comps))
    return demands, sups


@st.composite
def disturbed(draw: st.DrawFn) -> tuple:
    """A scheduled cluster, then supervisors lost or added, slots dead, demands changed."""
    demands, sups = draw(scenarios())
    first = compute_assignments(demands, sups, {})
    later = dict(sups)
    for sid in sorted(sups):
        if draw(st.booleans()) and draw(st.booleans()):
            del later[sid]
    for i in range(draw(st.integers(0, 2))):
        later[f"new{i}"] = SupervisorInfo(f"n{i}", PORTS[: draw(st.integers(1, 4))])
    all_slots = sorted((s, p) for s, info in later.items() for p in info.ports)
    dead = frozenset(draw(st.lists(st.sampled_from(all_slots), max_size=3)) if all_slots else [])
    changed = [
        TopologyDemand(d.topology_id, draw(st.integers(1, 8)), d.component_tasks)
        if draw(st.integers(0, 4)) == 0
        else d
        for d in demands
    ]
    return changed, later, first, dead


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_property_fresh_schedule(scenario: tuple) -> None:
    demands, sups = scenario
    result = compute_assignments(demands, sups, {})
    check_invariants(demands, sups, result)
    remaining = len(free_slots(sups, {}))
    for d in demands:
        wanted = min(d.target_workers(), remaining)
        assert len(result[d.topology_id].workers if wanted else ()) == wanted
        if wanted:
            assert_component_spread(d, result[d.topology_id])
        remaining -= wanted
    load = per_supervisor(result)
    for a in sups:
        for b in sups:
            if load[a] - load[b] >= 2:  # only when b had nothing more to give
                assert load[b] == len(sups[b].ports)
    assert compute_assignments(demands, sups, result) == result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(disturbed())
def test_property_after_failures(case: tuple) -> None:
    demands, sups, existing, dead = case
    result = compute_assignments(demands, sups, existing, dead)
    check_invariants(demands, sups, result, dead)
    assert compute_assignments(demands, sups, result, dead) == result
    live = {(s, p) for s, info in sups.items() for p in info.ports} - dead
    for d in demands:
        old = existing.get(d.topology_id)
        if old is None or len(old.workers) > d.target_workers():
            continue
        healthy = {
            s: t for s, t in old.workers.items() if s in live and old.hosts[s[0]] == sups[s[0]].host
        }
        if not healthy:
            continue
        assert d.topology_id in result  # survivors always keep the topology assigned
        if len(old.workers) < d.target_workers():
            continue  # may grow from scratch
        now = result[d.topology_id].workers
        if free_slots(sups, result, dead):
            assert len(now) == len(old.workers)  # every lost worker was replaced
        if len(now) == len(old.workers):  # healthy workers untouched
            for slot, tasks in healthy.items():
                assert now[slot] == tasks
