"""worker.transport: the ZeroMQ and in-memory transports behave the same to the loop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from polling import wait_for

from worker.launcher import free_ports
from worker.transport import MemoryNetwork, MessageTooBig, Transport, ZmqTransport
from worker.wire import BACKPRESSURE, DATA, Codec, secret_key, topology_tag, worker_id

HOST = "127.0.0.1"
KEY = secret_key("transport")
TAG = topology_tag("t-1")


def codec(port: int, key: bytes = KEY) -> Codec:
    return Codec(key, TAG, worker_id(HOST, port))


@pytest.fixture(params=["memory", "zmq"])
def pair(request: pytest.FixtureRequest) -> Iterator[tuple[Transport, Transport]]:
    """Two transports that reach each other; a data pipe of 2 messages each way."""
    ports = free_ports(2)
    if request.param == "memory":
        network = MemoryNetwork()
        made: list[Any] = [network.transport(codec(p), HOST, p, data_hwm=1,
                                             max_message_bytes=4096) for p in ports]
    else:
        made = [ZmqTransport(codec(p), HOST, p, data_hwm=1, max_message_bytes=4096)
                for p in ports]
    yield made[0], made[1]
    for t in made:
        t.close()


def receive_all(t: Transport, count: int) -> list[tuple[int, int, Any]]:
    got: list[tuple[int, int, Any]] = []

    def more() -> bool:
        while (message := t.receive()) is not None:
            kind, sender, body = message
            got.append((kind, sender, t.load(body)))
        return len(got) >= count

    wait_for(more, 10, f"{count} messages")
    return got


def test_messages_arrive_verified_with_their_sender(pair: tuple[Transport, Transport]) -> None:
    a, b = pair
    a.send_data(b.address, DATA, [[1, 2, 3, [["x"]], None]])
    a.send_system(b.address, BACKPRESSURE, 1)
    got = receive_all(b, 2)
    assert sorted(got, key=lambda m: m[0]) == [
        (DATA, worker_id(*a.address), [[1, 2, 3, [["x"]], None]]),
        (BACKPRESSURE, worker_id(*a.address), 1)]
    assert a.sent_messages == 2 and b.received_messages == 2 and b.rejected == 0


def test_data_a_peer_does_not_take_waits_in_a_backlog_system_traffic_does_not(
        pair: tuple[Transport, Transport]) -> None:
    a, b = pair
    for n in range(50):  # b reads nothing meanwhile
        a.send_data(b.address, DATA, [n])
    wait_for(lambda: a.backlog() > 0 and a.retry_backlogs() > 0, 10, "a backlog")
    a.send_system(b.address, BACKPRESSURE, 1)  # never refused
    got: list[Any] = []

    def drained() -> bool:
        a.retry_backlogs()
        while (message := b.receive()) is not None:
            got.append((message[0], b.load(message[2])))
        return len([g for g in got if g[0] == DATA]) == 50

    wait_for(drained, 10, "every data message")
    assert [p for k, p in got if k == DATA] == [[n] for n in range(50)]  # in order, none lost
    assert (BACKPRESSURE, 1) in got and a.backlog() == 0


def test_a_message_over_the_limit_is_refused_before_it_leaves(
        pair: tuple[Transport, Transport]) -> None:
    a, b = pair
    with pytest.raises(MessageTooBig) as info:
        a.send_data(b.address, DATA, ["x" * 5000])
    assert info.value.limit == 4096 and info.value.size > 4096
    assert a.sent_messages == 0


def test_a_message_with_another_key_is_dropped_and_counted(
        pair: tuple[Transport, Transport]) -> None:
    a, b = pair
    forged = codec(a.address[1], key=secret_key("other")).encode(DATA, [1])
    if isinstance(b, ZmqTransport):
        import zmq

        push = zmq.Context.instance().socket(zmq.PUSH)
        push.setsockopt(zmq.LINGER, 0)
        push.connect(f"tcp://{HOST}:{b.address[1]}")
        push.send(forged)
        wait_for(lambda: b.receive() is None and b.rejected == 1, 10, "the forged message")
        push.close(0)
    else:
        b.deliver_raw(forged)  # type: ignore[attr-defined]
        assert b.receive() is None and b.rejected == 1
