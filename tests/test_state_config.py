"""The state configuration keys in cluster.config's registry."""

from __future__ import annotations

import pytest

from cluster.config import Config
from topology.errors import ConfigError


def test_state_defaults() -> None:
    conf = Config.load(env={})
    assert conf["topology.state.checkpoint.interval.ms"] == 1000
    assert conf["topology.state.provider"] == "sqlite"
    assert conf["topology.state.redis.url"] == "redis://127.0.0.1:6379/0"


def test_state_keys_accept_good_values() -> None:
    conf = Config.from_mapping({"topology.state.checkpoint.interval.ms": 100,
                                "topology.state.provider": "redis",
                                "topology.state.redis.url": "redis://:pw@db.example:6380/2"})
    assert conf["topology.state.provider"] == "redis"
    overridden = Config.load(env={}, overrides=["topology.state.provider=memory"])
    assert overridden["topology.state.provider"] == "memory"


@pytest.mark.parametrize("key, value, problem", [
    ("topology.state.provider", "mongo", "expected one of memory, sqlite, redis, got 'mongo'"),
    ("topology.state.redis.url", "http://x", "expected a redis://, rediss:// or unix:// URL"),
    ("topology.state.redis.url", "", "expected a non-empty string"),
    ("topology.state.checkpoint.interval.ms", 5, "expected a number >= 10, got 5"),
    ("topology.state.checkpoint.interval.ms", "1s", "expected a number, got '1s'"),
])
def test_bad_state_values_name_the_key_and_the_value(key: str, value: object,
                                                     problem: str) -> None:
    with pytest.raises(ConfigError) as e:
        Config.from_mapping({key: value})
    assert f"config key {key!r}" in str(e.value) and problem in str(e.value)
