"""The supervisor's log server: its workers' logs over HTTP (on cluster.http's shared server),
in the shape of Storm's logviewer.

    GET /api/v1/log?file=ID/PORT/worker.log[&start=S][&length=L]
        text/plain: at most L bytes (default 51200, at most 1 MiB) of that worker's log
        from byte S (default: the last L bytes). `worker.log.N` names older, rotated files.
        Headers say what was read, for a follower to ask for what comes next:
          X-Squall-Log-Start  the first byte's offset
          X-Squall-Log-Size   the file's size when it was read
          X-Squall-Log-Id     the file's identity (it changes when the log is rotated)
        A start at or past the end gives an empty body: poll again with the same start.
    GET /api/v1/listLogs[?topoId=ID][&port=PORT]
        JSON list of the log names there are (Storm's listLogs).

The supervisor registers its port as "logviewer_port" (`supervisor.logviewer.port`; 0 picks a
free one), and it listens on `supervisor.host` like the workers. With `cluster.secret` set,
every request must carry it, as the dashboard's actions do: in the `X-Squall-Secret` header
(what `squall logs` sends) or as the password of HTTP Basic authentication (what a browser
opening a worker's log link asks for); it is checked, in constant time, on the request line
and headers before anything else: 401 without it, 403 when wrong. A name that is not a log of
this supervisor (another shape, `..`, a symlink out of the logs directory) is 400, a log that
does not exist 404, a length over 1 MiB 400. Connections, idle time and request time are
bounded by cluster.http; no request carries a body.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from pathlib import Path
from types import MappingProxyType
from typing import Any

from cluster.http import HttpError, Limits, Request, Response, Route, Router, Server
from cluster.logfiles import (
    DEFAULT_LENGTH,
    MAX_LENGTH,
    LogNameError,
    list_logs,
    read_range,
    resolve,
)

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Squall-Secret"
LOG_PATH = "/api/v1/log"
LIST_PATH = "/api/v1/listLogs"
REALM = 'Basic realm="squall worker logs", charset="UTF-8"'
LIMITS = Limits(idle_secs=10.0, request_secs=10.0, max_connections=32, max_body=0)
MAX_LISTED = 10_000


class LogViewer(Server):
    """Serves the logs under `root` on (host, port); `start()` runs it on a thread."""

    software = "squall-logviewer"
    headers = MappingProxyType({"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})

    def __init__(self, root: Path, host: str, port: int, secret: str | None,
                 limits: Limits = LIMITS) -> None:
        self.root = root
        self.secret = secret
        router = Router()
        router.add("GET", LOG_PATH, self._log, max_body=0)
        router.add("GET", LIST_PATH, self._list, max_body=0)
        super().__init__((host, port), router, limits, "logviewer")

    # --- the shared server's hooks ------------------------------------------------------------

    def authenticate(self, request: Request, route: Route) -> None:
        if not self.secret:
            return  # no secret: the supervisor runs only on loopback (require_secret_off_loopback)
        given = request.headers.get(SECRET_HEADER)
        if given is None:
            given = _basic_password(request.headers.get("Authorization"))
        if given is None:
            raise HttpError(401, f"reading logs needs the cluster secret ({SECRET_HEADER} "
                                 "header, or as the password of Basic authentication)",
                            {"WWW-Authenticate": REALM})
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                                   self.secret.encode()):
            raise HttpError(403, "wrong cluster secret")

    # --- handlers ----------------------------------------------------------------------------

    def _log(self, request: Request) -> Response:
        name = request.query.get("file")
        if not name:
            raise HttpError(400, "give the log as ?file=TOPOLOGY_ID/PORT/worker.log")
        length = _number(request.query.get("length"), "length", DEFAULT_LENGTH)
        if length > MAX_LENGTH:
            raise HttpError(400, f"length {length} is over the most served at once "
                                 f"({MAX_LENGTH} bytes): read in pieces with start=")
        start_text = request.query.get("start")
        start = None if start_text in (None, "") else _number(start_text, "start", 0)
        try:
            path = resolve(self.root, name)
            chunk = read_range(path, start, length)
        except LogNameError as e:
            raise HttpError(400, str(e)) from None
        except FileNotFoundError:
            raise HttpError(404, f"no log {name!r} on this supervisor") from None
        except OSError as e:
            raise HttpError(404, f"log {name!r} cannot be read: {e.strerror or e}") from None
        return Response(200, chunk.data, "text/plain; charset=utf-8", {
            "X-Squall-Log-Start": str(chunk.start),
            "X-Squall-Log-Size": str(chunk.size),
            "X-Squall-Log-Id": chunk.ident,
            "Content-Disposition": "inline",
        })

    def _list(self, request: Request) -> Any:
        tid = request.query.get("topoId") or None
        port_text = request.query.get("port")
        port = None if port_text in (None, "") else _number(port_text, "port", 0)
        names = list_logs(self.root, tid, port)
        return names[:MAX_LISTED]


def _number(text: str | None, what: str, default: int) -> int:
    if text is None:
        return default
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit() or len(stripped) > 18:
        raise HttpError(400, f"{what} must be a whole number >= 0, got {text[:40]!r}")
    return int(stripped)


def _basic_password(header: str | None) -> str | None:
    """The password of an `Authorization: Basic ...` header (the user name is ignored)."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return password if sep else None
