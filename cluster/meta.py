"""The topology record kept in the cluster state: one shape for nimbus and local mode."""

from __future__ import annotations

import getpass
import time
from collections.abc import Mapping
from typing import Any

from cluster.status import Status
from topology.model import Topology


def topology_meta(
    topology_id: str,
    topology: Topology,
    conf: Mapping[str, Any],
    status: Status = Status.ACTIVE,
    code_version: int = 1,
    owner: str | None = None,
    submitted: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """{"id", "name", "status", "submitted", "owner", "code_version", "conf", components...}.

    `conf` keeps only JSON-safe values (the secret never goes into the record); `status` is
    stored as its string (cluster.status).
    """
    plain = (str, int, float, bool, list, type(None))
    safe_conf = {k: v for k, v in conf.items() if k != "cluster.secret" and isinstance(v, plain)}
    return {
        "id": topology_id,
        "name": topology.name,
        "status": Status(status).value,
        "submitted": time.time() if submitted is None else submitted,
        "owner": owner or current_user(),
        "code_version": code_version,
        "conf": safe_conf,
        **topology.describe(conf),
        **extra,
    }


def current_user() -> str:
    """The name of the user running this process ("unknown" when there is none)."""
    try:
        return getpass.getuser()
    except Exception:  # no user name in a bare container
        return "unknown"
