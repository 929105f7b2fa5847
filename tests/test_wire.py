"""worker.wire: the message codec (round trip, what is rejected before unpickling) and the
payload columns (lanes, packed ids, acking shares)."""

from __future__ import annotations

import pickle

import pytest

from worker.wire import (
    ACKER,
    CONTROL,
    DATA,
    MAC_SIZE,
    BadMessage,
    Codec,
    decode_ack_share,
    decode_lane,
    decode_outcomes,
    encode_ack_share,
    encode_lane,
    encode_outcomes,
    runs,
    secret_key,
    topology_tag,
    worker_id,
)

KEY = secret_key("s3cret")
TAG = topology_tag("topo-1")
HEADER = 15


def codec(key: bytes = KEY, tag: bytes = TAG, sender: int = 6700) -> Codec:
    return Codec(key, tag, sender)


@pytest.mark.parametrize("kind,payload", [
    (DATA, [[5, 1, 2, [["a", 1]], None]]),
    (ACKER, ({3: (b"", b"", b"")}, {})),
    (CONTROL, {"type": "heartbeat", "x": [1.5, None]}),
])
def test_round_trip(kind: int, payload: object) -> None:
    message = codec(sender=worker_id("10.0.0.7", 6701)).encode(kind, payload)
    assert isinstance(message, bytes)  # one frame: header, payload, MAC
    assert codec().decode(message) == (kind, worker_id("10.0.0.7", 6701), payload)


class Point:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.x == self.x


def test_values_marshal_cannot_take_are_pickled() -> None:
    message = codec().encode(DATA, [[5, 1, 2, [[Point(3)]], None]])
    assert codec().decode(message)[2] == [[5, 1, 2, [[Point(3)]], None]]


def test_tampered_payload_is_rejected() -> None:
    message = bytearray(codec().encode(DATA, [[5, 1, 2, [["a"]], None]]))
    message[HEADER + 3] ^= 0xFF
    with pytest.raises(BadMessage, match="MAC"):
        codec().decode(bytes(message))


def test_tampered_header_is_rejected() -> None:
    message = bytearray(codec().encode(DATA, []))
    message[1] = ACKER  # claim another kind
    with pytest.raises(BadMessage, match="MAC"):
        codec().decode(bytes(message))


def test_wrong_key_is_rejected() -> None:
    message = codec(key=secret_key("other")).encode(DATA, [])
    with pytest.raises(BadMessage, match="MAC"):
        codec().decode(message)


def test_other_topology_is_rejected() -> None:
    message = codec(tag=topology_tag("topo-2")).encode(DATA, [])
    with pytest.raises(BadMessage, match="another topology"):
        codec().decode(message)


def test_control_messages_cross_topologies() -> None:
    message = codec(tag=topology_tag("topo-2")).encode(CONTROL, {"type": "x"})
    assert codec().decode(message)[2] == {"type": "x"}


@pytest.mark.parametrize("message", [b"", b"x", b"x" * (HEADER + MAC_SIZE - 1),
                                     b"x" * (HEADER + MAC_SIZE + 10), ["a", "b"]])
def test_malformed_messages_are_rejected(message: object) -> None:
    with pytest.raises(BadMessage):
        codec().decode(message)  # type: ignore[arg-type]


def test_payload_is_not_unpickled_when_the_mac_is_bad() -> None:
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    good = codec().encode(DATA, [])
    forged = good[:2] + bytes([1]) + good[3:HEADER] + pickle.dumps(Boom()) + good[-MAC_SIZE:]
    with pytest.raises(BadMessage):
        codec().decode(forged)


def test_secret_key_is_32_bytes_and_str_equals_bytes() -> None:
    assert len(KEY) == 32
    assert secret_key(b"s3cret") == KEY
    assert secret_key("other") != KEY
    assert topology_tag("a") != topology_tag("b") and len(topology_tag("a")) == 8


def test_workers_on_the_same_port_of_different_hosts_have_different_ids() -> None:
    ids = {worker_id(f"10.0.0.{h}", p) for h in range(1, 50) for p in (6700, 6701, 6702, 6703)}
    assert len(ids) == 49 * 4


# --- lanes ----------------------------------------------------------------------------------------

ROOT, EDGE = 2**64 - 1, 2**63 + 5


def decoded(lane: list) -> tuple[int, int, int, list]:
    dest, src, code, n, rows = decode_lane(lane)
    out = list(rows)
    assert len(out) == n
    return dest, src, code, out


@pytest.mark.parametrize("ids", [
    [(), ()],  # untracked: no ids on the wire
    [(ROOT, EDGE), (1, 2)],  # one tree each: packed
    [(ROOT, EDGE, 1, 2), (3, 4)],  # several trees: as they are
    [(), (3, 4)],  # mixed
])
def test_a_lane_round_trips(ids: list) -> None:
    rows = [7, ["a", 1], ids[0], 7, ["b", 2], ids[1]]
    (code, values, id_column), = runs(rows)
    lane = encode_lane(4, 3, code, values, id_column)
    wire = codec().decode(codec().encode(DATA, [lane]))[2][0]
    assert decoded(wire) == (4, 3, 7, [(["a", 1], ids[0]), (["b", 2], ids[1])])


def test_a_lane_of_tuples_in_one_tree_each_carries_packed_ids() -> None:
    lane = encode_lane(4, 3, 7, [["a"]] * 3, [(1, 2)] * 3)
    assert isinstance(lane[4], bytes) and len(lane[4]) == 3 * 16
    assert encode_lane(4, 3, 7, [["a"]] * 3, [()] * 3)[4] is None


def test_rows_on_several_streams_keep_their_order_in_runs() -> None:
    rows = [1, ["a"], (), 1, ["b"], (), 2, ["c"], (5, 6), 1, ["d"], ()]
    assert runs(rows) == [(1, [["a"], ["b"]], [(), ()]), (2, [["c"]], [(5, 6)]),
                          (1, [["d"]], [()])]


@pytest.mark.parametrize("lane", [
    [1, 2, 3, [["a"]]],  # a column missing
    [1, 2, "x", [["a"]], None],  # a stream code that is not an int
    [1, 2, 3, [["a"], ["b"]], b"\0" * 16],  # one id pair for two tuples
    [1, 2, 3, [["a"]], b"\0" * 7],  # ids not whole 64-bit ints
    [1, 2, 3, [["a"]], [(), ()]],  # an id column longer than the values
    [1, 2, 3, "ab", None],  # values that are not a list
])
def test_a_malformed_lane_is_refused(lane: list) -> None:
    with pytest.raises(BadMessage, match="malformed data lane|packed ids"):
        decode_lane(lane)


def test_acking_shares_round_trip() -> None:
    inits, acks, fails = [(ROOT, EDGE, 7)], {ROOT: 5, 3: EDGE}, [9]
    got_inits, got_acks, got_fails = decode_ack_share(encode_ack_share(inits, acks, fails))
    assert (got_inits, got_acks, list(got_fails)) == (inits, acks, fails)
    acked, failed = decode_outcomes(encode_outcomes([ROOT, 1], []))
    assert list(acked) == [ROOT, 1] and list(failed) == []


def test_a_ragged_acking_share_is_refused() -> None:
    with pytest.raises(BadMessage):
        decode_ack_share((b"\0" * 16, b"", b""))  # an init is three ints
