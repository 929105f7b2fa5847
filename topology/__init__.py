"""Squall's user API: spouts, bolts, tuples, the topology builder, local mode, metrics,
windows (topology.windowing), state (topology.state) and multilang components
(topology.multilang). Sketches live in topology.sketches (imported on demand)."""

from topology.builder import BoltDeclarer, TopologyBuilder
from topology.component import Bolt, Spout
from topology.context import CountMetric, GaugeMetric, HistogramMetric, TopologyContext
from topology.errors import ConfigError, SquallError, TopologyError
from topology.local import LocalCluster
from topology.model import CustomGrouping, Topology
from topology.multilang import ShellBolt, ShellSpout
from topology.state import CommitterBolt, KeyValueState, StatefulBolt
from topology.tuple import Tuple
from topology.windowing import Count, Duration, Window, WindowedBolt

__all__ = [
    "Bolt",
    "BoltDeclarer",
    "CommitterBolt",
    "Count",
    "CountMetric",
    "ConfigError",
    "CustomGrouping",
    "Duration",
    "GaugeMetric",
    "HistogramMetric",
    "KeyValueState",
    "LocalCluster",
    "ShellBolt",
    "ShellSpout",
    "Spout",
    "SquallError",
    "StatefulBolt",
    "Topology",
    "TopologyBuilder",
    "TopologyContext",
    "TopologyError",
    "Tuple",
    "Window",
    "WindowedBolt",
]
