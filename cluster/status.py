"""The one vocabulary of topology status, shared by nimbus's lifecycle, the topology record,
the dashboard and the CLI.

Its values are the strings Squall stores in a topology record's "status" and shows to users
(Storm's spelling: "ACTIVE", "INACTIVE", "KILLED", "REBALANCING"), so records written before
this enum existed stay valid. The lifecycle's own record (`"lifecycle": {"name": ...}`) was
written in lower case before; `Status.parse` reads both.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A topology's status. A StrEnum: it is its value, in JSON and in comparisons."""

    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    KILLED = "KILLED"
    REBALANCING = "REBALANCING"
    REMOVED = "REMOVED"  # terminal: a killed topology whose wait is over (never stored)

    @classmethod
    def parse(cls, value: Any) -> Status:
        """The status spelled `value`, in either case ("ACTIVE", or "active" as lifecycle
        records were written before); ValueError naming the value otherwise."""
        if isinstance(value, str):
            try:
                return cls(value.upper())
            except ValueError:
                pass
        known = ", ".join(s.value for s in cls)
        raise ValueError(f"unknown topology status {value!r}; expected one of {known}")

    @property
    def spouts_run(self) -> bool:
        """Whether the topology's spouts emit in this status (only an active topology's do:
        a killed or rebalancing one is deactivated during its wait)."""
        return self is Status.ACTIVE

    @property
    def article(self) -> str:
        """The status in lower case with its article, for messages: "an active", "a killed"."""
        word = self.value.lower()
        return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def status_of_record(meta: Mapping[str, Any]) -> Status | None:
    """The status stored in a topology record, or None when it is missing or unknown (a
    record is external input: readers show it as unknown rather than fail)."""
    try:
        return Status.parse(meta.get("status"))
    except ValueError:
        return None
