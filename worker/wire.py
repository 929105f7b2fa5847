"""Wire format of everything a worker sends: one module, small pure functions.

A message is three ZeroMQ frames: a fixed header, the payload and a 16-byte keyed BLAKE2b
MAC over both. The header names the message kind, the payload format, the sending worker and
a tag of the topology, so a receiver drops foreign or forged messages before decoding them.
Payloads are marshalled when they hold only built-in types (about twice as fast as pickle
both ways, and what tuples of str/int/float usually are) and pickled otherwise. Every worker
of a cluster runs the same Python, which marshal's format requires.

Payloads by kind:
  DATA      {dest_task: [(src_task, stream_code, values, ids), ...]}
  ACKER     {acker_task: (inits [(root, xor, spout_task)], acks {root: xor}, fails [root])}
  SPOUT     {spout_task: (acked_roots [root], failed_roots [root])}
  BACKPRESSURE  bool (the sender is overloaded: spouts everywhere pause)
  CONTROL   dict (between a worker and its supervisor/local cluster)
"""

from __future__ import annotations

import hashlib
import hmac
import marshal
import pickle
import struct
import zlib
from typing import Any

VERSION = 1
DATA = 1
ACKER = 2
SPOUT = 3
BACKPRESSURE = 4
CONTROL = 5

KIND_NAMES = {DATA: "data", ACKER: "acker", SPOUT: "spout", BACKPRESSURE: "backpressure",
              CONTROL: "control"}

_HEADER = struct.Struct("!BBBI8s")  # version, kind, format, sender id, topology tag
MARSHAL = 0
PICKLE = 1
MAC_SIZE = 16
PROTOCOL = pickle.HIGHEST_PROTOCOL


class BadMessage(Exception):
    """A message that failed its MAC, had a bad header or came from another topology."""


def topology_tag(topology_id: str) -> bytes:
    return hashlib.blake2b(topology_id.encode(), digest_size=8).digest()


def worker_id(host: str, port: int) -> int:
    """A worker's 32-bit id on the wire: ports alone repeat across hosts (every supervisor
    offers 6700...), so the sender is named by its host and port."""
    return zlib.crc32(f"{host}:{port}".encode())


def secret_key(secret: str | bytes) -> bytes:
    """Derive the 32-byte MAC key from the cluster secret."""
    raw = secret.encode() if isinstance(secret, str) else secret
    return hashlib.blake2b(raw, digest_size=32, person=b"squall-wire").digest()


class Codec:
    """Encodes and checks messages for one topology with one key."""

    def __init__(self, key: bytes, tag: bytes, sender: int) -> None:
        self._key = key
        self._tag = tag
        self._sender = sender

    def _mac(self, header: bytes, payload: bytes) -> bytes:
        h = hashlib.blake2b(header, key=self._key, digest_size=MAC_SIZE)
        h.update(payload)
        return h.digest()

    def encode(self, kind: int, obj: Any) -> list[bytes]:
        try:
            payload = marshal.dumps(obj, 4)
            fmt = MARSHAL
        except ValueError:  # a value marshal does not know (a user class, a namedtuple...)
            payload = pickle.dumps(obj, PROTOCOL)
            fmt = PICKLE
        header = _HEADER.pack(VERSION, kind, fmt, self._sender, self._tag)
        return [header, payload, self._mac(header, payload)]

    def verify(self, frames: list[bytes]) -> tuple[int, int]:
        """Check a message's MAC and header; return (kind, sender id) or raise BadMessage.
        Cheap next to `load`, so a receiver can verify everything and load later."""
        if len(frames) != 3 or len(frames[0]) != _HEADER.size:
            raise BadMessage(f"{len(frames)} frames")
        header, payload, mac = frames
        if not hmac.compare_digest(mac, self._mac(header, payload)):
            raise BadMessage("bad MAC (wrong secret?)")
        version, kind, _, sender, tag = _HEADER.unpack(header)
        if version != VERSION:
            raise BadMessage(f"wire version {version}, expected {VERSION}")
        if tag != self._tag and kind != CONTROL:
            raise BadMessage("message for another topology")
        return kind, sender

    @staticmethod
    def load(frames: list[bytes]) -> Any:
        """The payload of a verified message."""
        fmt = frames[0][2]
        try:
            return marshal.loads(frames[1]) if fmt == MARSHAL else pickle.loads(frames[1])
        except Exception as e:  # authenticated but unreadable: a bug or a version mismatch
            raise BadMessage(f"undecodable payload: {type(e).__name__}: {e}") from None

    def decode(self, frames: list[bytes]) -> tuple[int, int, Any]:
        """Return (kind, sender id, payload) or raise BadMessage."""
        kind, sender = self.verify(frames)
        return kind, sender, self.load(frames)
