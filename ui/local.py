"""`serve_local`: the dashboard of a `squall local` process, on a background thread."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ui.actions import LocalActions
from ui.server import SAMPLE_SECS, UiServer

if TYPE_CHECKING:
    from topology.local import LocalCluster


def serve_local(cluster: LocalCluster, conf: Mapping[str, Any] | None = None,
                sample_secs: float = SAMPLE_SECS) -> tuple[UiServer, str]:
    """Serve `cluster`'s dashboard; returns the running server and its URL.

    `conf` holds the user's overrides (not the resolved config): `ui.port` when given is
    used, otherwise a free port; `ui.host` defaults to the cluster's (loopback). The actions'
    secret is `cluster.secret` when set, else a fresh random one (`server.secret`) that the
    caller shows to the user. `sample_secs` is how often throughput is sampled for the
    chart and the graph's rates. Stop it with `server.close()` before `cluster.shutdown()`.
    """
    conf = dict(conf or {})
    host = str(conf.get("ui.host") or cluster.conf["ui.host"])
    port = int(conf["ui.port"]) if conf.get("ui.port") else 0
    secret = cluster.conf.get("cluster.secret") or secrets.token_urlsafe(12)
    server = UiServer(cluster.state, LocalActions(cluster), host, port, secret, mode="local",
                      config=cluster.conf.to_dict(), sample_secs=sample_secs)
    server.start()
    return server, server.url
