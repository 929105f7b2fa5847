"""The dashboard: a Storm-compatible JSON REST API, a web page and a Prometheus endpoint.

    ui.stats     per-executor and per-component figures from worker heartbeats (pure)
    ui.api       Storm UI's REST responses from the cluster state (pure, clock passed in)
    ui.history   a ring of throughput samples per topology, rates for the graph and chart
    ui.metrics   the Prometheus text exposition
    ui.actions   kill/activate/deactivate/rebalance: local-mode and nimbus adapters
    ui.server    the HTTP server (stdlib), its routes, auth and CSRF checks
    ui.local     `serve_local`: the dashboard inside a `squall local` process
"""
