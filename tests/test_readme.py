"""The README stays true: its commands exist and every configuration key is documented."""

from __future__ import annotations

import re
from pathlib import Path

from cli.main import build_parser
from cluster.config import describe_keys

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
CI = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()


def test_every_config_key_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z0-9_.]+)` \|", README, re.M))
    assert documented == {key for key, _, _ in describe_keys()}


def test_every_subcommand_in_the_readme_exists() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    mentioned = set(re.findall(r"`squall ([a-z][a-z-]*)", README))
    assert mentioned <= set(commands), mentioned - set(commands)
    assert {"local", "submit", "nimbus", "supervisor", "ui", "dev-cluster"} <= mentioned


def test_ci_runs_the_readme_test_command() -> None:
    command = re.search(r"```sh\n(bash deploy/test\.sh)\n```", README)
    assert command is not None
    assert command.group(1) in CI.splitlines()
