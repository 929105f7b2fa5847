"""worker.backpressure: the policy alone, on a fake clock (times are plain numbers)."""

from __future__ import annotations

from worker.backpressure import (
    BACKLOG_LIMIT,
    HELLO,
    OVERLOADED,
    PEER_STATUS_TTL,
    PEER_WAIT_SECS,
    READY,
    STATUS_EVERY,
    Backpressure,
)

HWM = 1000
P1, P2 = 11, 22  # peers' wire ids


def started(now: float = 0.0, peers: tuple[int, ...] = ()) -> Backpressure:
    bp = Backpressure(HWM, peers, now)
    assert bp.assess(0, 0, 0, now) == HELLO  # a starting worker asks its peers to answer
    return bp


def test_a_new_worker_says_hello_once_then_ready() -> None:
    bp = Backpressure(HWM, (), 0.0)
    assert bp.assess(0, 0, 0, 0.0) == HELLO
    assert bp.assess(0, 0, 0, 0.1) is None  # nothing new to say
    assert bp.assess(0, 0, 0, STATUS_EVERY) == READY  # restated every STATUS_EVERY


def test_overloaded_above_the_high_watermark_and_said_at_once() -> None:
    bp = started()
    assert bp.assess(HWM, 0, 0, 0.01) is None  # at the line is not over it
    assert bp.assess(HWM + 1, 0, 0, 0.02) == OVERLOADED
    assert bp.overloaded
    assert bp.assess(HWM + 5, 0, 0, 0.03) is None  # no change, not due
    assert bp.assess(HWM + 5, 0, 0, 0.02 + STATUS_EVERY) == OVERLOADED  # restated


def test_resumes_only_below_half_the_watermark() -> None:
    bp = started()
    bp.assess(HWM + 1, 0, 0, 0.01)
    assert bp.assess(HWM // 2, 0, 0, 0.02) is None and bp.overloaded  # hysteresis
    assert bp.assess(HWM // 2 - 1, 0, 0, 0.03) == READY
    assert not bp.overloaded


def test_a_backlog_to_a_slow_peer_or_parked_data_is_overload() -> None:
    bp = started()
    assert bp.assess(0, BACKLOG_LIMIT, 0, 0.01) is None
    assert bp.assess(0, BACKLOG_LIMIT + 1, 0, 0.02) == OVERLOADED
    assert bp.assess(0, 0, 1, 0.03) is None and bp.overloaded  # parked data holds it
    assert bp.assess(0, 0, 0, 0.04) == READY


def test_a_peers_overload_pauses_the_spouts_until_it_says_ready() -> None:
    bp = started()
    assert bp.spouts_may_run(0.0)
    bp.peer_said(P1, OVERLOADED, 0.1)
    assert not bp.spouts_may_run(0.1)
    bp.peer_said(P1, READY, 0.2)
    assert bp.spouts_may_run(0.2)


def test_a_peers_overload_not_restated_expires() -> None:
    bp = started()
    bp.peer_said(P1, OVERLOADED, 1.0)
    bp.expire(1.0 + PEER_STATUS_TTL)
    assert not bp.spouts_may_run(1.0 + PEER_STATUS_TTL)
    bp.expire(1.0 + PEER_STATUS_TTL + 0.01)  # a peer that died overloaded stops counting
    assert bp.spouts_may_run(1.0 + PEER_STATUS_TTL + 0.01)


def test_a_hello_from_a_peer_is_answered_at_the_next_assessment() -> None:
    bp = started()
    assert bp.assess(0, 0, 0, 0.1) is None
    bp.peer_said(P1, HELLO, 0.2)
    assert bp.assess(0, 0, 0, 0.2) == READY
    assert bp.spouts_may_run(0.2)


def test_spouts_wait_to_hear_from_every_peer_or_at_most_peer_wait_secs() -> None:
    bp = started(10.0, (P1, P2))
    assert not bp.spouts_may_run(10.0)
    bp.heard.add(P1)
    assert not bp.spouts_may_run(10.5)
    bp.heard.add(P2)
    assert bp.spouts_may_run(10.6)
    late = started(10.0, (P1, P2))
    late.heard.add(P1)
    assert not late.spouts_may_run(10.0 + PEER_WAIT_SECS - 0.01)
    assert late.spouts_may_run(10.0 + PEER_WAIT_SECS)


def test_a_peer_that_left_the_topology_is_forgotten() -> None:
    bp = started(0.0, (P1, P2))
    bp.peer_said(P2, OVERLOADED, 0.1)
    bp.set_peers((P1,))
    bp.heard.add(P1)
    assert bp.spouts_may_run(0.2)


def test_own_overload_pauses_own_spouts() -> None:
    bp = started()
    bp.assess(HWM + 1, 0, 0, 0.01)
    assert not bp.spouts_may_run(0.01)
