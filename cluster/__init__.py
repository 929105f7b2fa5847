"""Code shared by the daemons: configuration and the cluster-state store over ZooKeeper."""

from cluster.config import Config, describe_keys, parse_override

__all__ = ["Config", "describe_keys", "parse_override"]
