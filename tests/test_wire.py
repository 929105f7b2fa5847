"""worker.wire.Codec: round trip, and what is rejected before unpickling."""

from __future__ import annotations

import pickle

import pytest

from worker.wire import ACKER, CONTROL, DATA, BadMessage, Codec, secret_key, topology_tag, worker_id

KEY = secret_key("s3cret")
TAG = topology_tag("topo-1")


def codec(key: bytes = KEY, tag: bytes = TAG, sender: int = 6700) -> Codec:
    return Codec(key, tag, sender)


@pytest.mark.parametrize("kind,payload", [
    (DATA, {5: [(1, 2, ["a", 1], (10, 20))]}),
    (ACKER, {3: ([(1, 2, 3)], {1: 5}, [7])}),
    (CONTROL, {"type": "heartbeat", "x": [1.5, None]}),
])
def test_round_trip(kind: int, payload: object) -> None:
    frames = codec(sender=worker_id("10.0.0.7", 6701)).encode(kind, payload)
    assert len(frames) == 3
    assert codec().decode(frames) == (kind, worker_id("10.0.0.7", 6701), payload)


def test_tampered_payload_is_rejected() -> None:
    frames = codec().encode(DATA, {5: [(1, 2, ["a"], ())]})
    frames[1] = pickle.dumps({5: [(1, 2, ["evil"], ())]})
    with pytest.raises(BadMessage, match="MAC"):
        codec().decode(frames)


def test_tampered_header_is_rejected() -> None:
    frames = codec().encode(DATA, {})
    header = bytearray(frames[0])
    header[1] = ACKER  # claim another kind
    frames[0] = bytes(header)
    with pytest.raises(BadMessage, match="MAC"):
        codec().decode(frames)


def test_wrong_key_is_rejected() -> None:
    frames = codec(key=secret_key("other")).encode(DATA, {})
    with pytest.raises(BadMessage, match="MAC"):
        codec().decode(frames)


def test_other_topology_is_rejected() -> None:
    frames = codec(tag=topology_tag("topo-2")).encode(DATA, {})
    with pytest.raises(BadMessage, match="another topology"):
        codec().decode(frames)


def test_control_messages_cross_topologies() -> None:
    frames = codec(tag=topology_tag("topo-2")).encode(CONTROL, {"type": "x"})
    assert codec().decode(frames)[2] == {"type": "x"}


@pytest.mark.parametrize("frames", [[], [b"x"], [b"x", b"y", b"z"], [b"a", b"b", b"c", b"d"]])
def test_malformed_frames_are_rejected(frames: list[bytes]) -> None:
    with pytest.raises(BadMessage):
        codec().decode(frames)


def test_payload_is_not_unpickled_when_the_mac_is_bad() -> None:
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    frames = codec().encode(DATA, {})
    frames[1] = pickle.dumps(Boom())
    with pytest.raises(BadMessage):
        codec().decode(frames)


def test_secret_key_is_32_bytes_and_str_equals_bytes() -> None:
    assert len(KEY) == 32
    assert secret_key(b"s3cret") == KEY
    assert secret_key("other") != KEY
    assert topology_tag("a") != topology_tag("b") and len(topology_tag("a")) == 8


def test_workers_on_the_same_port_of_different_hosts_have_different_ids() -> None:
    ids = {worker_id(f"10.0.0.{h}", p) for h in range(1, 50) for p in (6700, 6701, 6702, 6703)}
    assert len(ids) == 49 * 4
