"""Wire format of everything a worker sends: one module, small pure functions.

A message is one ZeroMQ frame: a fixed header, the payload and a 16-byte keyed BLAKE2b MAC
over both (one frame rather than three halves what sending and receiving a message costs).
The header names the message kind, the payload format, the sending worker and a tag of the
topology, so a receiver drops foreign or forged messages before decoding them.
Payloads are marshalled when they hold only built-in types (about twice as fast as pickle
both ways, and what tuples of str/int/float usually are) and pickled otherwise. Every worker
of a cluster runs the same Python, which marshal's format requires.

Payloads by kind:
  DATA      [lane, ...], a lane being tuples one task sent another on one stream, in emit
            order and in columns: [dest_task, src_task, stream_code, values, ids] where
            values is the list of value lists and ids None (no tuple tracked), the
            (root, edge) pairs of every tuple packed as unsigned 64-bit ints (each tracked in
            one tree), or a list of one id tuple per tuple (anything else). A task's tuples
            for another on several streams make consecutive lanes, in emit order. Columns
            and packed ids make a batch about four times cheaper to encode and decode than a
            tuple of ids per tuple, and the receiver handles the stream once per lane.
  ACKER     the acking traffic from one worker to another since the last flush, in one
            message: ({acker_task: (inits, acks, fails)}, {spout_task: (acked, failed)}),
            that is what the receiver's ackers are told (packed (root, xor, spout_task)
            triples, (root, xor) pairs and roots) and the verdicts for its spouts (packed
            roots)
  BACKPRESSURE  int (READY, OVERLOADED or HELLO, see worker.backpressure)
  CONTROL   dict (between a worker and its supervisor/local cluster)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import marshal
import pickle
import struct
import zlib
from array import array
from collections.abc import Iterable, Iterator
from typing import Any

VERSION = 2
DATA = 1
ACKER = 2
BACKPRESSURE = 4
CONTROL = 5

KIND_NAMES = {DATA: "data", ACKER: "acker", BACKPRESSURE: "backpressure", CONTROL: "control"}

_HEADER = struct.Struct("!BBBI8s")  # version, kind, format, sender id, topology tag
MARSHAL = 0
PICKLE = 1
# Version 4: short ASCII strings without an encoding step. It notes a back-reference for
# every object held elsewhere too, so senders let go of what they encode (see dispatch).
MARSHAL_VERSION = 4
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

    def encode(self, kind: int, obj: Any) -> bytes:
        try:
            payload = marshal.dumps(obj, MARSHAL_VERSION)
            fmt = MARSHAL
        except ValueError:  # a value marshal does not know (a user class, a namedtuple...)
            payload = pickle.dumps(obj, PROTOCOL)
            fmt = PICKLE
        header = _HEADER.pack(VERSION, kind, fmt, self._sender, self._tag)
        mac = hashlib.blake2b(header, key=self._key, digest_size=MAC_SIZE)
        mac.update(payload)
        return b"".join((header, payload, mac.digest()))

    def verify(self, message: bytes) -> tuple[int, int]:
        """Check a message's MAC and header; return (kind, sender id) or raise BadMessage.
        Cheap next to `load`, so a receiver can verify everything and load later."""
        if not isinstance(message, bytes):
            raise BadMessage(f"a message of type {type(message).__name__}")
        if len(message) < _HEADER.size + MAC_SIZE:
            raise BadMessage(f"a message of {len(message)} bytes is too short")
        view = memoryview(message)
        mac = hashlib.blake2b(view[:-MAC_SIZE], key=self._key, digest_size=MAC_SIZE)
        if not hmac.compare_digest(view[-MAC_SIZE:], mac.digest()):
            raise BadMessage("bad MAC (wrong secret?)")
        version, kind, _, sender, tag = _HEADER.unpack_from(message)
        if version != VERSION:
            raise BadMessage(f"wire version {version}, expected {VERSION}")
        if tag != self._tag and kind != CONTROL:
            raise BadMessage("message for another topology")
        return kind, sender

    @staticmethod
    def load(message: bytes) -> Any:
        """The payload of a verified message."""
        payload = memoryview(message)[_HEADER.size:-MAC_SIZE]
        try:
            return marshal.loads(payload) if message[2] == MARSHAL else pickle.loads(payload)
        except Exception as e:  # authenticated but unreadable: a bug or a version mismatch
            raise BadMessage(f"undecodable payload: {type(e).__name__}: {e}") from None

    def decode(self, message: bytes) -> tuple[int, int, Any]:
        """Return (kind, sender id, payload) or raise BadMessage."""
        kind, sender = self.verify(message)
        return kind, sender, self.load(message)


# --- payloads -----------------------------------------------------------------------------------

Rows = list[Any]  # a collector's rows for one target: [code, values, ids, code, values, ids, ...]
Run = tuple[int, list[Any], list[Any]]  # (stream code, values of each tuple, ids of each tuple)


def runs(rows: Rows) -> list[Run]:
    """A collector's rows as columns, one run per stretch of the same stream (usually one)."""
    codes = rows[0::3]
    values = rows[1::3]
    ids = rows[2::3]
    n = len(codes)
    if codes.count(codes[0]) == n:
        return [(codes[0], values, ids)]
    out: list[Run] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or codes[i] != codes[start]:
            out.append((codes[start], values[start:i], ids[start:i]))
            start = i
    return out


def encode_lane(dest: int, src: int, code: int, values: list[Any], ids: list[Any]) -> list[Any]:
    """A DATA lane: `src`'s tuples for `dest` on one stream, in emit order."""
    n = len(values)
    untracked = ids.count(())
    packed: bytes | list[Any] | None
    if untracked == n:
        packed = None
    elif untracked == 0:
        flat = list(itertools.chain.from_iterable(ids))
        # No () among them, so every tuple is in exactly one tree iff there are 2n ids.
        packed = pack(flat) if len(flat) == 2 * n else ids
    else:
        packed = ids
    return [dest, src, code, values, packed]


def split_lanes(lanes: list[list[Any]]) -> list[list[list[Any]]]:
    """Encoded lanes in two halves (one lane of several tuples is cut in two)."""
    if len(lanes) > 1:
        middle = len(lanes) // 2
        return [lanes[:middle], lanes[middle:]]
    dest, src, code, values, ids = lanes[0]
    middle = len(values) // 2
    if ids is None:
        first, second = None, None
    elif isinstance(ids, bytes):
        first, second = ids[:16 * middle], ids[16 * middle:]
    else:
        first, second = ids[:middle], ids[middle:]
    return [[[dest, src, code, values[:middle], first]],
            [[dest, src, code, values[middle:], second]]]


def decode_lane(lane: Any) -> tuple[int, int, int, int, Iterator[tuple[Any, Any]]]:
    """(dest task, src task, stream code, number of tuples, iterator of (values, ids))."""
    try:
        dest, src, code, values, ids = lane
        if not (isinstance(dest, int) and isinstance(src, int) and isinstance(code, int)):
            raise TypeError("task ids and stream code must be ints")
        n = len(values)
        if ids is None:
            id_rows: Iterable[Any] = itertools.repeat((), n)
        elif isinstance(ids, bytes):
            flat = unpack(ids)
            if len(flat) != 2 * n:
                raise ValueError(f"{len(flat)} ids for {n} tuples")
            id_rows = zip(flat[0::2], flat[1::2], strict=True)
        else:
            id_rows = _sized(ids, n)
        return dest, src, code, n, zip(_sized(values, n), id_rows, strict=True)
    except (TypeError, ValueError) as e:
        raise BadMessage(f"malformed data lane: {e}") from None


def _sized(column: Any, n: int) -> list[Any]:
    if not isinstance(column, list) or len(column) != n:
        raise ValueError(f"a column of {len(column)} entries for {n} tuples")
    return column


def pack(ints: list[int]) -> bytes:
    """Unsigned 64-bit ints (roots, edges, XORs, task ids) as bytes: cheap to (un)marshal."""
    out = array("Q")
    out.fromlist(ints)  # from a list: a third of what array("Q", iterable) costs
    return out.tobytes()


def unpack(data: bytes) -> array[int]:
    if not isinstance(data, bytes) or len(data) % 8:
        raise BadMessage(f"packed ids of {len(data) if isinstance(data, bytes) else data!r}")
    out = array("Q")
    out.frombytes(data)
    return out


def encode_ack_share(inits: list[tuple[int, int, int]], acks: dict[int, int],
                     fails: list[int]) -> tuple[bytes, bytes, bytes]:
    """One acker task's share of an ACKER message."""
    return (pack(list(itertools.chain.from_iterable(inits))),
            pack(list(itertools.chain.from_iterable(acks.items()))), pack(fails))


def decode_ack_share(share: Any) -> tuple[list[tuple[int, int, int]], dict[int, int],
                                           array[int]]:
    try:
        inits, acks, fails = (unpack(part) for part in share)
    except (TypeError, ValueError) as e:
        raise BadMessage(f"malformed acker message: {e}") from None
    if len(inits) % 3 or len(acks) % 2:
        raise BadMessage("malformed acker message: ragged ids")
    return (list(zip(inits[0::3], inits[1::3], inits[2::3], strict=True)),
            dict(zip(acks[0::2], acks[1::2], strict=True)), fails)


def encode_outcomes(acked: list[int], failed: list[int]) -> tuple[bytes, bytes]:
    """One spout task's share of a SPOUT message."""
    return pack(acked), pack(failed)


def decode_outcomes(share: Any) -> tuple[array[int], array[int]]:
    try:
        acked, failed = (unpack(part) for part in share)
    except (TypeError, ValueError) as e:
        raise BadMessage(f"malformed spout message: {e}") from None
    return acked, failed
