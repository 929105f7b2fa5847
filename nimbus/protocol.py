"""The nimbus API's wire format, shared by the server (nimbus.api) and the client
(nimbus.client): paths, the request signature, and the errors with their HTTP statuses.

Requests are HTTP/JSON. When `cluster.secret` is set every request carries

    X-Squall-Auth: <unix timestamp>.<random nonce>:<hex HMAC-SHA256>

over `METHOD \\n PATH \\n STAMP \\n` followed by the raw body, keyed by the secret, where STAMP
is the part before the colon. PATH is the request target exactly as sent (query string
included). Nimbus refuses a signature whose timestamp is more than `MAX_SKEW_SECS` away from
its own clock, and one it has already seen within that time (a replayed request).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from topology.errors import SquallError

AUTH_HEADER = "X-Squall-Auth"
MAX_SKEW_SECS = 300
API = "/api/v1"
TOPOLOGIES = f"{API}/topologies"
NIMBUS = f"{API}/nimbus"
ACTIONS = ("kill", "activate", "deactivate", "rebalance")


def topology_path(name: str, action: str | None = None) -> str:
    from urllib.parse import quote

    path = f"{TOPOLOGIES}/{quote(name, safe='')}"
    return f"{path}/{action}" if action else path


# --- signatures ---------------------------------------------------------------------------------


def signature(secret: str, method: str, path: str, timestamp: str, body: bytes) -> str:
    message = f"{method.upper()}\n{path}\n{timestamp}\n".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def auth_header(secret: str, method: str, path: str, body: bytes, now: float | None = None) -> str:
    """The value of `AUTH_HEADER` for one request."""
    stamp = f"{int(time.time() if now is None else now)}.{secrets.token_hex(8)}"
    return f"{stamp}:{signature(secret, method, path, stamp, body)}"


class SeenStamps:
    """The signature stamps accepted in the last MAX_SKEW_SECS, to refuse replays.
    Thread-safe: the API serves requests on threads."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def first_time(self, stamp: str, now: float) -> bool:
        with self._lock:
            if len(self._seen) > 1000:
                self._seen = {s: t for s, t in self._seen.items() if now - t <= MAX_SKEW_SECS}
            if stamp in self._seen:
                return False
            self._seen[stamp] = now
            return True


def check_auth(
    secret: str | None, header: str | None, method: str, path: str, body: bytes, now: float,
    seen: SeenStamps | None = None,
) -> None:
    """Raise `AuthError` unless `header` is a fresh, valid signature (or no secret is set)."""
    if not secret:
        return
    if not header:
        raise AuthError("missing cluster secret: this nimbus requires requests signed with "
                        "cluster.secret")
    stamp, _, mac = header.partition(":")
    try:
        when = int(stamp.partition(".")[0])
    except ValueError:
        raise AuthError("wrong cluster secret (malformed signature)") from None
    expected = signature(secret, method, path, stamp, body)
    if not hmac.compare_digest(expected.encode(), mac.encode()):
        raise AuthError("wrong cluster secret")
    if abs(now - when) > MAX_SKEW_SECS:
        raise AuthError(f"request signed {int(now - when)} s from nimbus's clock (more than "
                        f"{MAX_SKEW_SECS} s): check the clocks")
    if seen is not None and not seen.first_time(stamp, now):
        raise AuthError("replayed request: this signature was already used")


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
