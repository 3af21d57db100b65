"""``wsgate.balancer.state``: the read-only peer view for logs and metrics."""

from __future__ import annotations

from tests.unit.balancer.common import ANY, attempts, find, group, hold, peer, release
from wsgate.balancer import LeastConn, RoundRobin, snapshot
from wsgate.balancer.state import PeerStatus, PeerView


def test_idle_group() -> None:
    balancer = RoundRobin(
        group(peer("1", weight=2), peer("2", down=True, max_conns=3), backups=[peer("b")])
    )
    views = snapshot(balancer, 0.0)
    assert [(v.server, v.state, v.backup) for v in views] == [
        ("1", PeerStatus.UP, False),
        ("2", PeerStatus.DOWN, False),
        ("b", PeerStatus.UP, True),
    ]
    first = views[0]
    assert first == PeerView(
        upstream="u",
        name=f"127.0.0.1:{8000 + ord('1')}",
        server="1",
        backup=False,
        state=PeerStatus.UP,
        failed_until=None,
        full=False,
        conns=0,
        tunnels=0,
        fails=0,
        weight=2,
        effective_weight=2,
        max_conns=0,
    )
    assert first.text() == "127.0.0.1:8049 up conns=0 tunnels=0 fails=0 weight=2/2"
    assert views[2].text() == "127.0.0.1:8098 up backup conns=0 tunnels=0 fails=0 weight=1/1"


def test_failed_until_follows_whole_seconds() -> None:
    """Failed at 100.7 with fail_timeout=10: ``checked`` is 100, usable from 111.0."""
    balancer = RoundRobin(group(peer("1", weight=4, max_fails=2), peer("2")))
    attempts(balancer, ANY, now=100.7, failing="1")
    one = snapshot(balancer, 100.7)[0]
    assert (one.state, one.fails, one.effective_weight) == (PeerStatus.UP, 1, 2)
    for _ in range(5):  # round robin comes back to 1 within a few requests
        attempts(balancer, ANY, now=100.9, failing="1")
    failed = snapshot(balancer, 105.0)[0]
    assert (failed.state, failed.failed_until, failed.fails) == (PeerStatus.FAILED, 111.0, 2)
    assert failed.text().startswith("127.0.0.1:8049 failed until=111 conns=0")
    assert snapshot(balancer, 110.99)[0].state is PeerStatus.FAILED
    assert snapshot(balancer, 111.0)[0].state is PeerStatus.UP
    # The view agrees with the balancer: 1 is skipped before 111, chosen again from 111.
    assert attempts(balancer, ANY, now=110.99) == "2"
    assert "1" in attempts(balancer, ANY, now=111.0) + attempts(balancer, ANY, now=111.0)


def test_conns_tunnels_and_full() -> None:
    balancer = LeastConn(group(peer("1", max_conns=1), peer("2"), method="least_conn"))
    held = [hold(balancer), hold(balancer), hold(balancer)]
    # The proxy counts a tunnel on the peer while it is open (downstream._open_tunnel).
    find(balancer, "1").tunnels += 1
    views = snapshot(balancer, 0.0)
    assert [(v.conns, v.tunnels, v.full) for v in views] == [(1, 1, True), (2, 0, False)]
    assert views[0].text().endswith(" up full conns=1 tunnels=1 fails=0 weight=1/1")
    for h in held:
        release(h)
    find(balancer, "1").tunnels -= 1
    assert [(v.conns, v.tunnels, v.full) for v in snapshot(balancer, 0.0)] == [
        (0, 0, False),
        (0, 0, False),
    ]


def test_single_mode_never_shows_failed() -> None:
    balancer = RoundRobin(group(peer("1")))
    attempts(balancer, ANY, failing="1")
    assert snapshot(balancer, 0.0)[0].state is PeerStatus.UP


def test_snapshot_changes_nothing() -> None:
    balancer = LeastConn(group(peer("1"), peer("2"), method="least_conn"))
    before = [(p.current_weight, p.effective_weight, p.conns, p.checked) for p in balancer.peers]
    snapshot(balancer, 1e9)
    after = [(p.current_weight, p.effective_weight, p.conns, p.checked) for p in balancer.peers]
    assert before == after
