"""Squall's user API: spouts, bolts, tuples, the topology builder, local mode, and stateful
bolts (topology.state)."""

from topology.builder import BoltDeclarer, TopologyBuilder
from topology.component import Bolt, Spout
from topology.context import TopologyContext
from topology.errors import ConfigError, SquallError, TopologyError
from topology.local import LocalCluster
from topology.model import CustomGrouping, Topology
from topology.state import CommitterBolt, KeyValueState, StatefulBolt
from topology.tuple import Tuple

__all__ = [
    "Bolt",
    "BoltDeclarer",
    "CommitterBolt",
    "ConfigError",
    "CustomGrouping",
    "KeyValueState",
    "LocalCluster",
    "Spout",
    "SquallError",
    "StatefulBolt",
    "Topology",
    "TopologyBuilder",
    "TopologyContext",
    "TopologyError",
    "Tuple",
]
