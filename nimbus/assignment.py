"""The scheduler's records now live in `cluster.assignment` (shared with supervisors, which
must not import nimbus); this module only keeps the old import path working."""

from cluster.assignment import (
    Assignment,
    SchedulerError,
    Slot,
    SupervisorInfo,
    TopologyDemand,
)

__all__ = ["Assignment", "SchedulerError", "Slot", "SupervisorInfo", "TopologyDemand"]
