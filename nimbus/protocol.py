"""The nimbus API's wire format, shared by the server (nimbus.api) and the client
(nimbus.client): paths, the request signature, the checks on numbers that both sides make,
and the errors with their HTTP statuses.

Requests are HTTP/JSON. When `cluster.secret` is set every request carries

    X-Squall-Auth: <unix timestamp>.<random nonce>:<hex SHA-256 of the body>:<hex HMAC-SHA256>

the HMAC, keyed by the secret, being over `METHOD \\n PATH \\n STAMP \\n BODY-SHA256`, where
STAMP is the part before the first colon and PATH the request target exactly as sent (query
string included). Because the body enters the MAC through its digest, nimbus verifies the
whole signature before it reads a byte of the body, then reads the body (bounded) and
checks it against the digest: an unauthenticated client can never make nimbus hold a body.
Nimbus refuses a signature whose timestamp is more than `MAX_SKEW_SECS` away from its own
clock, and one whose stamp was already used (a replayed request): stamps are claimed in the
cluster state, so a request is served once across nimbus processes, failovers and restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from topology.builder import MAX_PARALLELISM, MAX_WORKERS
from topology.errors import SquallError

AUTH_HEADER = "X-Squall-Auth"
MAX_SKEW_SECS = 300
NONCE_TTL_SECS = 2 * MAX_SKEW_SECS + 60  # a stamp is fresh for 2 x MAX_SKEW_SECS of any clock
MAX_WAIT_SECS = 24 * 3600
API = "/api/v1"
TOPOLOGIES = f"{API}/topologies"
NIMBUS = f"{API}/nimbus"
ACTIONS = ("kill", "activate", "deactivate", "rebalance")

_STAMP = re.compile(r"(\d{1,12})\.[0-9a-f]{8,64}")
_HEX64 = re.compile(r"[0-9a-f]{64}")


def topology_path(name: str, action: str | None = None) -> str:
    from urllib.parse import quote

    path = f"{TOPOLOGIES}/{quote(name, safe='')}"
    return f"{path}/{action}" if action else path


# --- signatures ---------------------------------------------------------------------------------


def body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signature(secret: str, method: str, path: str, stamp: str, digest: str) -> str:
    message = f"{method.upper()}\n{path}\n{stamp}\n{digest}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def auth_header(secret: str, method: str, path: str, body: bytes, now: float | None = None) -> str:
    """The value of `AUTH_HEADER` for one request."""
    stamp = f"{int(time.time() if now is None else now)}.{secrets.token_hex(8)}"
    digest = body_digest(body)
    return f"{stamp}:{digest}:{signature(secret, method, path, stamp, digest)}"


def check_auth(
    secret: str | None, header: str | None, method: str, path: str, now: float,
    claim: Callable[[str, float], bool] | None = None,
) -> str | None:
    """Check a request's signature from its line and headers alone; return the body digest it
    promises (None when no secret is set), for `check_body`. Raise `AuthError` unless the
    signature is well-formed, made with `secret`, fresh, and (`claim(stamp, timestamp)`
    returning True) never used before."""
    if not secret:
        return None
    if not header:
        raise AuthError("missing cluster secret: this nimbus requires requests signed with "
                        "cluster.secret")
    parts = header.strip().split(":")
    stamp_match = _STAMP.fullmatch(parts[0]) if len(parts) == 3 else None
    if stamp_match is None or not _HEX64.fullmatch(parts[1]) or not _HEX64.fullmatch(parts[2]):
        raise AuthError("wrong cluster secret (malformed signature; is the client older "
                        "than this nimbus?)")
    stamp, digest, mac = parts
    expected = signature(secret, method, path, stamp, digest)
    if not hmac.compare_digest(expected, mac):
        raise AuthError("wrong cluster secret")
    when = int(stamp_match.group(1))
    if abs(now - when) > MAX_SKEW_SECS:
        raise AuthError(f"request signed {int(now - when)} s from nimbus's clock (more than "
                        f"{MAX_SKEW_SECS} s): check the clocks")
    if claim is not None and not claim(stamp, float(when)):
        raise AuthError("replayed request: this signature was already used (by this or "
                        "another nimbus)")
    return digest


def check_body(digest: str | None, body: bytes) -> None:
    """Raise `AuthError` unless `body` is the one the signature promised."""
    if digest is not None and not hmac.compare_digest(body_digest(body), digest):
        raise AuthError("the request body does not match its signature")


# --- numbers and JSON ---------------------------------------------------------------------------


def check_wait(value: Any, what: str = "wait") -> float | None:
    """A wait in seconds: None, or a finite number from 0 to MAX_WAIT_SECS."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 <= value <= MAX_WAIT_SECS:
        raise BadRequest(f"{what} must be a number of seconds from 0 to {MAX_WAIT_SECS}, "
                         f"got {value!r}")
    return float(value)


def check_count(value: Any, what: str, most: int) -> int:
    """An integer from 1 to `most`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise BadRequest(f"{what} must be an integer from 1 to {most}, got {value!r}")
    return value


def check_workers(value: Any, what: str = "workers") -> int | None:
    return None if value is None else check_count(value, what, MAX_WORKERS)


def check_parallelism(value: Any, what: str = "parallelism") -> dict[str, int]:
    """{component: executors}, each from 1 to MAX_PARALLELISM."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest(f"{what} must be an object of component: executors, got {value!r}")
    return {str(cid): check_count(n, f"{what} of {cid!r}", MAX_PARALLELISM)
            for cid, n in value.items()}


MAX_CONF_CHANGES = 64


def check_conf_changes(value: Any, what: str = "conf") -> dict[str, Any]:
    """{key: value} config changes for a running topology (which keys may change is nimbus's
    call: nimbus.submission.check_conf_changes); JSON values, at most MAX_CONF_CHANGES."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest(f"{what} must be an object of key: value, got {value!r}")
    if len(value) > MAX_CONF_CHANGES:
        raise BadRequest(f"{what}: at most {MAX_CONF_CHANGES} keys at once, got {len(value)}")
    field = non_finite_field(dict(value))
    if field is not None:
        raise BadRequest(f"{what}: {field} must be a finite number (NaN and infinity are "
                         "refused)")
    return {str(k): v for k, v in value.items()}


MAX_LOGGERS = 64  # loggers a topology may have set levels for at once
MAX_LOGGER_CHARS = 200
_LOGGER = re.compile(r"[A-Za-z0-9_.$-]{1,200}")


def check_log_levels(value: Any, what: str = "levels") -> dict[str, str]:
    """{logger: level} for `squall set-log-level`: logger names as Python's and Storm's
    ("ROOT" is the root logger), levels among worker.control.LOG_LEVELS (upper-cased)."""
    from worker.control import LOG_LEVELS

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise BadRequest(f"{what} must be an object of logger: level, got {value!r}")
    if len(value) > MAX_LOGGERS:
        raise BadRequest(f"{what}: at most {MAX_LOGGERS} loggers at once, got {len(value)}")
    out = {}
    for name, level in value.items():
        out[check_logger(name, what)] = check_level(level, f"{what}: level of {name!r}",
                                                    LOG_LEVELS)
    return out


def check_logger(name: Any, what: str = "logger") -> str:
    if not isinstance(name, str) or not _LOGGER.fullmatch(name):
        raise BadRequest(f"{what}: {name!r} is not a logger name (letters, digits and "
                         f"'_.$-', at most {MAX_LOGGER_CHARS} characters)")
    return name


def check_level(level: Any, what: str, known: Mapping[str, int]) -> str:
    name = level.upper() if isinstance(level, str) else None
    if name is None or name not in known:
        raise BadRequest(f"{what} must be one of {', '.join(known)}, got {level!r}")
    return name


def loads_finite(text: str | bytes, what: str = "body") -> Any:
    """`json.loads`, refusing NaN and infinities (which Python's json accepts) with the field
    they are in; BadRequest for malformed JSON."""
    try:
        value = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"{what}: malformed JSON: {e}") from None
    field = non_finite_field(value)
    if field is not None:
        raise BadRequest(f"{what}: {field or 'the value'} must be a finite number "
                         f"(NaN and infinity are refused)")
    return value


def non_finite_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinity in a JSON value ("" for the value
    itself), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items: Any = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found = non_finite_field(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


# --- errors -------------------------------------------------------------------------------------


class NimbusError(SquallError):
    """An error nimbus reports (or a failure to reach it); `status` is its HTTP status."""

    status = 500


class BadRequest(NimbusError):
    """Malformed request, invalid topology or config, or an action the state does not allow."""

    status = 400


class AuthError(NimbusError):
    """Missing or wrong cluster secret."""

    status = 401


class NotFound(NimbusError):
    """No such topology (or API path)."""

    status = 404


class Conflict(NimbusError):
    """A topology of that name already exists."""

    status = 409


class TooLarge(NimbusError):
    """The request body is larger than `nimbus.code.max.bytes`."""

    status = 413


class NotLeader(NimbusError):
    """This nimbus is a standby; `leader` is the leader's "host:port" when one is known."""

    status = 503

    def __init__(self, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.leader = leader


class Unreachable(NimbusError):
    """No nimbus answered (client side only)."""

    status = 0


ERRORS: dict[int, type[NimbusError]] = {
    cls.status: cls for cls in (BadRequest, AuthError, NotFound, Conflict, TooLarge, NotLeader)
}


def error_for(status: int, message: str, leader: str | None = None) -> NimbusError:
    """The exception matching an error response."""
    if status == NotLeader.status:
        return NotLeader(message, leader)
    return ERRORS.get(status, NimbusError)(message)
