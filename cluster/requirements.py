"""A topology's PyPI requirements (`topology.requirements`): reading them from a
requirements file, checking them, and the key of the virtual environment that holds them.
Pure: no I/O but `read_requirements_file`'s one read.

A requirement is one line that pip understands as a requirement: `name`, `name==1.2`,
`name[extra]>=1; python_version >= "3.11"`, `name @ https://...`. Options (`-r`, `-e`,
`--index-url`, ...) are refused: where packages come from is the supervisor host's own pip
configuration (pip.conf, PIP_INDEX_URL), not something a submitted topology changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence

from topology.errors import SquallError

MAX_REQUIREMENTS = 200
MAX_LENGTH = 500


class RequirementsError(SquallError):
    """A requirement that cannot be installed as given (names it and the value)."""


def requirement_problem(requirement: object) -> str | None:
    """Why `requirement` is not one requirement line, or None when it is."""
    if not isinstance(requirement, str):
        return f"{requirement!r} is not a string"
    text = requirement.strip()
    if not text:
        return "an empty requirement"
    if len(text) > MAX_LENGTH:
        return f"{text[:40]!r}... is over {MAX_LENGTH} characters"
    if any(c in text for c in "\r\n\0"):
        return f"{text[:60]!r} is not one line"
    if text.startswith("-"):
        return (f"{text[:60]!r} is a pip option, not a requirement (indexes and other "
                "options come from the supervisor host's pip configuration)")
    return None


def check_requirements(requirements: object, what: str) -> list[str]:
    """The requirements as a clean list; RequirementsError naming `what` and the culprit."""
    if not isinstance(requirements, (list, tuple)):
        raise RequirementsError(f"{what}: topology.requirements must be a list of "
                                f"requirement strings, got {type(requirements).__name__}")
    if len(requirements) > MAX_REQUIREMENTS:
        raise RequirementsError(f"{what}: {len(requirements)} requirements; at most "
                                f"{MAX_REQUIREMENTS} are allowed")
    for r in requirements:
        problem = requirement_problem(r)
        if problem is not None:
            raise RequirementsError(f"{what}: requirement {problem}")
    return [str(r).strip() for r in requirements]


def parse_requirements(text: str, source: str) -> list[str]:
    """The requirements of a requirements file's text (comments and blank lines skipped,
    `\\` continuations joined); RequirementsError naming `source:line` for an option line."""
    out: list[str] = []
    pending = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = pending + raw
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if not line:
            continue
        problem = requirement_problem(line)
        if problem is not None:
            raise RequirementsError(f"{source}:{number}: {problem}")
        out.append(line)
    if pending.strip():
        out.append(pending.strip())
    return out


def read_requirements_file(path: str) -> list[str]:
    """`squall submit --requirements FILE`: the requirements it lists."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(1 << 20)
    except OSError as e:
        raise RequirementsError(f"{path}: cannot read the requirements file: "
                                f"{e.strerror or e}") from None
    except UnicodeDecodeError:
        raise RequirementsError(f"{path}: the requirements file is not UTF-8 text") from None
    return parse_requirements(text, path)


def merge_requirements(*lists: Iterable[str]) -> list[str]:
    """Several lists as one, in order, without repeats."""
    return list(dict.fromkeys(r for lst in lists for r in lst))


def environment_key(requirements: Sequence[str], python: str, base: Sequence[str]) -> str:
    """The cache key of the environment for `requirements` (order and repeats do not
    matter) built by interpreter `python` (its version string) over the site directories
    `base`: the same set on the same host shares one environment."""
    canonical = json.dumps({"requirements": sorted(set(requirements)), "python": python,
                            "base": list(base)}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]
