"""Squall's user API: spouts, bolts, tuples, the topology builder and local mode."""

from topology.builder import BoltDeclarer, TopologyBuilder
from topology.component import Bolt, Spout
from topology.context import TopologyContext
from topology.errors import ConfigError, SquallError, TopologyError
from topology.local import LocalCluster
from topology.model import CustomGrouping, Topology
from topology.tuple import Tuple

__all__ = [
    "Bolt",
    "BoltDeclarer",
    "ConfigError",
    "CustomGrouping",
    "LocalCluster",
    "Spout",
    "SquallError",
    "Topology",
    "TopologyBuilder",
    "TopologyContext",
    "TopologyError",
    "Tuple",
]
