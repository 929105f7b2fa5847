"""Storm UI's log level API over `squall set-log-level`'s records (worker.control).

    GET  /api/v1/topology/ID/logconfig
         {"namedLoggerLevels": {logger: {"target_level": L, "reset_level": null,
                                         "timeout": seconds left (0: until cleared),
                                         "timeout_epoch": unix ms (0: none)}}}
    POST /api/v1/topology/ID/logconfig
         {"namedLoggerLevels": {logger: {"target_level": L, "timeout": seconds}}}
         a "target_level" of null, "" or "CLEAR" puts the logger back to its own level;
         answers with the GET view after the change

"reset_level" is null: each worker puts a logger back to the level it had before, which
only the worker knows. Pure: no I/O; the server reads the record and calls the actions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nimbus.protocol import MAX_LOGGERS, BadRequest, check_log_levels, check_logger, check_wait
from worker.control import live_log_levels

CLEAR = ("", "CLEAR", "NONE")


def log_config(meta: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The GET answer for a topology record at unix time `now`."""
    stored: Any = meta.get("log_levels")
    out = {}
    for name in sorted(live_log_levels(stored, now)):
        entry = stored[name]
        until = entry.get("until")
        out[name] = {"target_level": entry.get("level"), "reset_level": None,
                     "timeout": 0 if until is None else max(0, round(until - now)),
                     "timeout_epoch": 0 if until is None else int(until * 1000)}
    return {"namedLoggerLevels": out}


def parse_log_config(body: Mapping[str, Any]
                     ) -> list[tuple[dict[str, str], float | None, list[str]]]:
    """A POST body as requests for nimbus: (levels, timeout, loggers to reset), one per
    distinct timeout (Storm gives each logger its own). BadRequest names what is wrong."""
    named = body.get("namedLoggerLevels")
    if not isinstance(named, dict) or not named:
        raise BadRequest("expected {\"namedLoggerLevels\": {logger: {\"target_level\": "
                         "LEVEL, \"timeout\": SECS}}}")
    if len(named) > MAX_LOGGERS:
        raise BadRequest(f"namedLoggerLevels: at most {MAX_LOGGERS} loggers at once")
    groups: dict[float | None, dict[str, str]] = {}
    reset: list[str] = []
    for logger, setting in named.items():
        check_logger(logger, "namedLoggerLevels")
        if not isinstance(setting, dict):
            raise BadRequest(f"namedLoggerLevels: {logger!r} must be an object with "
                             f"\"target_level\" and \"timeout\", got {setting!r}")
        level = setting.get("target_level")
        if level is None or (isinstance(level, str) and level.strip().upper() in CLEAR):
            reset.append(logger)
            continue
        timeout = check_wait(setting.get("timeout"), f"timeout of {logger!r}") or None
        groups.setdefault(timeout, {}).update(
            check_log_levels({logger: level}, "namedLoggerLevels"))
    requests: list[tuple[dict[str, str], float | None, list[str]]] = [
        (levels, timeout, []) for timeout, levels in groups.items()]
    if reset:
        if requests:
            requests[0][2].extend(reset)
        else:
            requests.append(({}, None, reset))
    return requests
