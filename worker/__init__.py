"""The worker process: executors, routing, ZeroMQ transport, acking, heartbeats and stats."""
