"""Each rule of cluster.config, with its own small test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster.config import KEYS, Config, describe_keys, flatten, parse_override, validate
from topology.errors import ConfigError, SquallError


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "squall.toml"
    path.write_text(text)
    return str(path)


def test_defaults_only_without_file_or_env() -> None:
    conf = Config.load(env={})
    assert conf["zookeeper.servers"] == ["127.0.0.1:2181"]
    assert conf["zookeeper.root"] == "/squall"
    assert conf["nimbus.port"] == 6627
    assert conf["nimbus.code.max.bytes"] == 64 * 1024 * 1024
    assert conf["supervisor.slots.ports"] == [6700, 6701, 6702, 6703]
    assert conf["topology.message.timeout.secs"] == 30
    assert conf["topology.acker.executors"] is None
    assert conf["cluster.secret"] is None
    assert conf["topology.debug"] is False
    assert conf["local.dir"]
    assert conf.source == "defaults"
    assert set(conf) == set(KEYS)


def test_config_is_immutable() -> None:
    conf = Config.load(env={})
    conf["supervisor.slots.ports"].append(1)
    assert conf["supervisor.slots.ports"] == [6700, 6701, 6702, 6703]
    with pytest.raises(TypeError):
        conf["nimbus.port"] = 1  # type: ignore[index]


def test_toml_nested_tables_are_flattened(tmp_path: Path) -> None:
    path = write(tmp_path, """
[zookeeper]
servers = ["zk1:2181", "zk2:2181"]
root = "/prod"
[zookeeper.session.timeout]
secs = 20
[nimbus]
port = 7000
""")
    conf = Config.load(path, env={})
    assert conf["zookeeper.servers"] == ["zk1:2181", "zk2:2181"]
    assert conf["zookeeper.root"] == "/prod"
    assert conf["zookeeper.session.timeout.secs"] == 20
    assert conf["nimbus.port"] == 7000
    assert conf.source == path


def test_toml_dotted_quoted_keys(tmp_path: Path) -> None:
    path = write(tmp_path, '"nimbus.port" = 7001\n[supervisor]\n"slots.ports" = [1, 2]\n')
    conf = Config.load(path, env={})
    assert conf["nimbus.port"] == 7001
    assert conf["supervisor.slots.ports"] == [1, 2]


def test_same_key_twice_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'nimbus.port' is given twice"):
        flatten({"nimbus.port": 1, "nimbus": {"port": 2}})


def test_env_var_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[ui]\nport = 9090\n")
    assert Config.load(env={"SQUALL_CONF": path})["ui.port"] == 9090


def test_explicit_path_wins_over_env(tmp_path: Path) -> None:
    path = write(tmp_path, "[ui]\nport = 9090\n")
    assert Config.load(path, env={"SQUALL_CONF": "/nonexistent.toml"})["ui.port"] == 9090


def test_real_environment_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SQUALL_CONF", write(tmp_path, "[ui]\nport = 9191\n"))
    assert Config.load()["ui.port"] == 9191
    assert os.environ["SQUALL_CONF"]


def test_missing_file_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        Config.load("/nonexistent/squall.toml", env={})


def test_invalid_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        Config.load(write(tmp_path, "nimbus = [\n"), env={})


def test_overrides_beat_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[nimbus]\nport = 7000\nhost = 'a'\n")
    conf = Config.load(path, overrides=["nimbus.port=7002", "topology.debug=true"], env={})
    assert conf["nimbus.port"] == 7002
    assert conf["nimbus.host"] == "a"
    assert conf["topology.debug"] is True


def test_overrides_as_mapping() -> None:
    assert Config.load(overrides={"ui.port": 1234}, env={})["ui.port"] == 1234


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("nimbus.port=7000", ("nimbus.port", 7000)),
        ("supervisor.slots.ports=[1, 2]", ("supervisor.slots.ports", [1, 2])),
        ("topology.debug=false", ("topology.debug", False)),
        ("topology.max.spout.pending=null", ("topology.max.spout.pending", None)),
        ('zookeeper.servers=["a:1","b:2"]', ("zookeeper.servers", ["a:1", "b:2"])),
        ("nimbus.host=10.0.0.1", ("nimbus.host", "10.0.0.1")),
        ('nimbus.host="quoted"', ("nimbus.host", "quoted")),
        ("cluster.secret=1234", ("cluster.secret", "1234")),  # a text key stays text
        ("topology.mine={\"a\": 1}", ("topology.mine", {"a": 1})),
        ("topology.word=hello world", ("topology.word", "hello world")),
        (" ui.port = 80 ", ("ui.port", 80)),
        ("topology.x=a=b", ("topology.x", "a=b")),
    ],
)
def test_parse_override(item: str, expected: tuple[str, object]) -> None:
    assert parse_override(item) == expected


@pytest.mark.parametrize("item", ["nokey", "=1", ""])
def test_parse_override_needs_key_and_value(item: str) -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override(item)


def test_connect_string_spelling_of_servers() -> None:
    conf = Config.load(overrides=["zookeeper.servers=a:1, b:2"], env={})
    assert conf["zookeeper.servers"] == ["a:1", "b:2"]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("nimbus.port", "abc", "expected an integer"),
        ("nimbus.port", 70000, "expected an integer <= 65535"),
        ("nimbus.port", True, "expected an integer"),
        ("topology.workers", 0, "expected an integer >= 1"),
        ("topology.debug", "yes", "expected true or false"),
        ("zookeeper.servers", ["nohostport"], "host:port"),
        ("zookeeper.servers", [], "non-empty list"),
        ("zookeeper.root", "relative", "absolute ZooKeeper path"),
        ("zookeeper.root", "/trailing/", "absolute ZooKeeper path"),
        ("supervisor.slots.ports", [6700, 6700], "distinct ports"),
        ("supervisor.slots.ports", 6700, "expected a list of ports"),
        ("supervisor.slots.ports", [0], "expected an integer >= 1"),
        ("topology.message.timeout.secs", -1, "expected a number >= "),
        ("topology.message.timeout.secs", float("nan"), "expected a finite number"),
        ("topology.message.timeout.secs", float("inf"), "expected a finite number"),
        ("nimbus.monitor.freq.secs", float("-inf"), "expected a finite number"),
        ("nimbus.api.idle.timeout.secs", float("inf"), "expected a finite number"),
        ("topology.workers", 257, "expected an integer <= 256"),
        ("topology.acker.executors", 4097, "expected an integer <= 4096"),
        ("ui.max.connections", 0, "expected an integer >= 1"),
        ("topology.acker.executors", -1, "expected an integer >= 0"),
        ("nimbus.host", "", "non-empty string"),
        ("cluster.secret", 5, "non-empty string"),
    ],
)
def test_bad_values_name_key_and_value(key: str, value: object, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.load(overrides={key: value}, env={})
    msg = str(info.value)
    assert key in msg and repr(value) in msg and reason in msg
    assert "\n" not in msg


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "+inf"])
def test_non_finite_numbers_are_refused_from_the_command_line_and_files(tmp_path: Path,
                                                                        text: str) -> None:
    with pytest.raises(ConfigError, match="'topology.message.timeout.secs' \\(from overrides\\)"
                                          ": expected a finite number"):
        Config.load(overrides=[f"topology.message.timeout.secs={text}"], env={})
    path = write(tmp_path, f"[nimbus.monitor.freq]\nsecs = {text}\n")
    with pytest.raises(ConfigError, match="'nimbus.monitor.freq.secs'.*expected a finite number"):
        Config.load(path, env={})


def test_a_config_offering_no_slots_is_valid(tmp_path: Path) -> None:
    """A config shared by a nimbus-only host: only a supervisor needs slots."""
    conf = Config.load(write(tmp_path, "[supervisor.slots]\nports = []\n"), env={})
    assert conf["supervisor.slots.ports"] == []


def test_bad_value_in_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[nimbus]\nport = 'x'\n")
    with pytest.raises(ConfigError, match=f"'nimbus.port' \\(from {path}\\)"):
        Config.load(path, env={})


def test_none_is_allowed_where_documented() -> None:
    conf = Config.load(overrides={"topology.max.spout.pending": None,
                                  "topology.tick.tuple.freq.secs": None}, env={})
    assert conf["topology.max.spout.pending"] is None


def test_user_topology_keys_are_allowed() -> None:
    conf = Config.load(overrides=["topology.my.setting=3"], env={})
    assert conf["topology.my.setting"] == 3


def test_unknown_key_gets_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'nimbus\.prot'.*did you mean "
                                          r"'nimbus\.port'\?"):
        Config.load(write(tmp_path, "[nimbus]\nprot = 1\n"), env={})


@pytest.mark.parametrize("typo, meant", [
    ("topology.max.spout.pendin", "topology.max.spout.pending"),   # a character missing
    ("topology.workerss", "topology.workers"),                     # one too many
    ("topology.debgu", "topology.debug"),                          # two swapped
    ("topology.message.timeout.sec", "topology.message.timeout.secs"),
    ("topology.tick.tuple.freq.sacs", "topology.tick.tuple.freq.secs"),  # one replaced
])
def test_a_user_key_one_edit_from_a_known_key_is_kept_with_a_warning(
        typo: str, meant: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="cluster.config"):
        conf = Config.load(overrides={typo: 5}, env={})
    assert conf[typo] == 5  # still the user's own key
    (record,) = caplog.records
    assert f"config key {typo!r}" in record.getMessage()
    assert f"did you mean {meant!r}?" in record.getMessage()


@pytest.mark.parametrize("key", ["topology.myapp.db", "topology.workers.extra",
                                 "topology.max.spout.pending.x2"])
def test_user_keys_farther_from_known_ones_get_no_warning(
        key: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="cluster.config"):
        Config.load(overrides={key: 1}, env={})
    assert caplog.records == []


def test_unknown_key_without_near_match_has_no_hint() -> None:
    with pytest.raises(ConfigError) as info:
        Config.load(overrides={"zzzzzz": 1}, env={})
    assert "did you mean" not in str(info.value)


def test_errors_are_squall_errors() -> None:
    assert issubclass(ConfigError, SquallError)


def test_local_dir_expands_user() -> None:
    conf = Config.load(overrides=["local.dir=~/sq"], env={})
    assert conf["local.dir"] == os.path.expanduser("~/sq")


def test_with_overrides_validates_and_keeps_the_rest() -> None:
    conf = Config.load(overrides={"ui.port": 1}, env={})
    changed = conf.with_overrides({"nimbus.port": 2})
    assert (changed["ui.port"], changed["nimbus.port"], conf["nimbus.port"]) == (1, 2, 6627)
    with pytest.raises(ConfigError):
        conf.with_overrides({"nimbus.port": "x"})


def test_to_dict_is_a_copy_and_repr_hides_the_secret() -> None:
    conf = Config.load(overrides={"cluster.secret": "s3cret"}, env={})
    d = conf.to_dict()
    d["supervisor.slots.ports"].append(1)
    assert conf["supervisor.slots.ports"] == [6700, 6701, 6702, 6703]
    assert "s3cret" not in repr(conf)


def test_validate_directly() -> None:
    assert validate({"ui.port": 80}) == {"ui.port": 80}


def test_describe_keys_covers_the_registry() -> None:
    rows = describe_keys()
    assert [r[0] for r in rows] == sorted(KEYS)
    for key, default, doc in rows:
        assert doc and doc.endswith("."), key
        if default is not None:
            KEYS[key].check(default)  # every default passes its own validator
    assert ("nimbus.port", 6627, KEYS["nimbus.port"].doc) in rows


@pytest.mark.parametrize("host", ["10.1.2.3", "0.0.0.0", "node1.example.com"])
def test_daemons_refuse_the_network_without_a_secret(host: str) -> None:
    from cluster.config import require_secret_off_loopback

    conf = Config.from_mapping({"nimbus.host": host})
    with pytest.raises(ConfigError, match=f"nimbus.host is '{host}' but cluster.secret is not"):
        require_secret_off_loopback(conf, "nimbus.host", "nimbus")
    require_secret_off_loopback(conf.with_overrides({"cluster.secret": "s3cret"}),
                                "nimbus.host", "nimbus")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_daemons_start_without_a_secret(host: str) -> None:
    from cluster.config import require_secret_off_loopback

    require_secret_off_loopback(Config.from_mapping({"supervisor.host": host}),
                                "supervisor.host", "supervisor")
