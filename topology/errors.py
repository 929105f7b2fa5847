"""The project's exception hierarchy: one root, a subclass per layer that raises."""


class SquallError(Exception):
    """Root of every error Squall raises on purpose."""


class TopologyError(SquallError):
    """A topology is malformed: the message names the component, stream or field at fault."""


class ConfigError(SquallError):
    """A configuration key or value is wrong: the message names the key and the value."""
