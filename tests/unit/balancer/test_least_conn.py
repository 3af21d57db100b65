"""``least_conn`` against nginx-semantics.md section 3.8 (no sockets).

"Held" requests stand for long requests and for open WebSocket tunnels alike: the proxy
frees a tunnel's peer only when the tunnel closes, so both count in ``conns``.
"""

from __future__ import annotations

import pytest

from tests.unit.balancer.common import attempts, find, first_peers, group, hold, peer, release
from wsgate.balancer import METHODS, LeastConn, RoundRobin
from wsgate.balancer.base import RequestInfo
from wsgate.conf.model import PeerConf

REQ = RequestInfo()


def least_conn(*peers: PeerConf, backups: tuple[PeerConf, ...] = ()) -> LeastConn:
    return LeastConn(group(*peers, backups=backups, method="least_conn"))


def weighted(*weights: int) -> LeastConn:
    return least_conn(*(peer(str(i + 1), w) for i, w in enumerate(weights)))


def holds(balancer: LeastConn, n: int) -> str:
    """Start ``n`` requests that stay open; the peer of each."""
    return "".join(hold(balancer)[1].conf.server for _ in range(n))


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ((5, 1, 1), "11213111121311"),  # idle: every round is a tie, so smooth round robin
        ((1, 1), "12121212"),
        ((2, 1), "121121121"),
    ],
)
def test_idle_peers_rotate_like_round_robin(weights: tuple[int, ...], expected: str) -> None:
    assert first_peers(weighted(*weights), [REQ] * len(expected)) == expected
    rr = RoundRobin(group(*(peer(str(i + 1), w) for i, w in enumerate(weights))))
    assert first_peers(rr, [REQ] * len(expected)) == expected


def test_a_held_connection_sends_new_requests_elsewhere() -> None:
    balancer = weighted(1, 1)
    held = hold(balancer)
    assert held[1].conf.server == "1"
    assert first_peers(balancer, [REQ] * 5) == "22222"
    release(held)
    assert find(balancer, "1").conns == 0


def test_held_connections_fill_the_emptiest_peer_first() -> None:
    balancer = weighted(1, 1, 1)
    # 1 wins the three-way tie; 2 the tie of 2 and 3; 3 is alone at 0; then the same again,
    # with the current weights the ties left behind: [-2, 0, 2] makes 3 win the next tie.
    assert holds(balancer, 6) == "123321"
    assert [p.conns for p in balancer.peers] == [2, 2, 2]


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        # (2, 1): 1 wins the first tie; then 0/1 < 1/2 -> 2; 1/2 < 1/1 -> 1; then 2/2 ties
        # 1/1 and the smooth round over both picks 2 (current weights -1+2=1 < 1+1=2).
        ((2, 1), "1212"),
        # (3, 1): the tie -> 1; 1/3 vs 0 -> 2; 1/3 < 1/1 -> 1; 2/3 < 1/1 -> 1; then 3/3 ties
        # 1/1 and the round gives 1 (current weights -1+3=2 and 1+1=2: the first wins).
        ((3, 1), "12111"),
    ],
)
def test_connections_are_compared_per_unit_of_weight(
    weights: tuple[int, ...], expected: str
) -> None:
    assert holds(weighted(*weights), len(expected)) == expected


def test_tie_break_round_touches_only_the_tied_peers() -> None:
    balancer = weighted(1, 1, 1)
    hold(balancer)  # a three-way tie: 1 wins, current weights 1-3, 1, 1
    assert [p.current_weight for p in balancer.peers] == [-2, 1, 1]
    hold(balancer)  # 2 and 3 tie: a round over them only; 2 wins the tie
    assert [p.current_weight for p in balancer.peers] == [-2, 0, 2]
    assert [p.conns for p in balancer.peers] == [1, 1, 0]


def test_tie_round_starts_at_the_first_tied_peer() -> None:
    """Peers before the first tied one are not part of the round even if usable."""
    balancer = weighted(1, 1, 1)
    hold(balancer)
    hold(balancer)
    assert hold(balancer)[1].conf.server == "3"  # the only peer with 0 connections


def test_failed_peer_is_skipped_and_retry_goes_to_the_least_loaded() -> None:
    balancer = weighted(1, 1, 1)
    held = hold(balancer)  # 1 holds one
    assert attempts(balancer, REQ, failing="2") == "23"
    assert first_peers(balancer, [REQ] * 2) == "33"  # 2 is disabled for fail_timeout
    release(held)


def test_max_conns_full_peer_is_skipped() -> None:
    balancer = least_conn(peer("1", max_conns=1), peer("2"))
    # Once 1 holds its one connection, 2 is the only usable peer however loaded it is.
    assert holds(balancer, 4) == "1222"
    assert [p.conns for p in balancer.peers] == [1, 3]


def test_backups_when_no_primary_is_usable() -> None:
    balancer = least_conn(
        peer("1", max_conns=1), peer("2", max_conns=1), backups=(peer("x"), peer("y"))
    )
    assert holds(balancer, 2) == "12"
    # Least connections among the backups: x wins the tie, y is empty, then x and y tie
    # and the round over them gives y (current weights -1+1=0 < 1+1=2).
    assert holds(balancer, 3) == "xyy"
    assert [p.conns for p in balancer.backups] == [1, 2]


def test_all_busy_is_no_live_upstreams() -> None:
    balancer = least_conn(peer("1", max_conns=1), peer("2", max_conns=1))
    holds(balancer, 2)
    assert attempts(balancer, REQ) == "!"


def test_single_peer_is_round_robin_single_mode() -> None:
    balancer = least_conn(peer("1"))
    assert attempts(balancer, REQ, failing="1") == "1"
    assert find(balancer, "1").fails == 0
    assert attempts(least_conn(peer("1", down=True)), REQ) == "!"


def test_registered() -> None:
    assert METHODS["least_conn"] is LeastConn
