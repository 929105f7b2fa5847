"""Command-line numbers: every duration is a finite number of seconds, refused in one line.

(kill and rebalance --wait are checked against nimbus's own bound, in test_security_input.)"""

from __future__ import annotations

import pytest

from cli.main import build_parser, main


@pytest.mark.parametrize("argv", [
    ["submit", "f.py", "--wait", "--timeout", "nan"],
    ["submit", "f.py", "--timeout", "inf"],
    ["local", "f.py", "--duration", "nan"],
    ["local", "f.py", "--interval", "0"],
])
def test_non_finite_or_negative_seconds_are_usage_errors(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "seconds" in err and argv[-1] in err


def test_finite_seconds_are_taken_as_numbers() -> None:
    args = build_parser().parse_args(["kill", "t", "--wait", "2.5"])
    assert args.wait == 2.5
    args = build_parser().parse_args(["local", "f.py", "--duration", "0"])
    assert args.duration == 0.0
