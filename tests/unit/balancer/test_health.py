"""``wsgate.balancer.health``: the pass/fail counters of ``websocket_health_check``, and
every balancing method skipping a peer the checks marked down (then taking it back)."""

from __future__ import annotations

import random

import pytest

from tests.unit.balancer.common import ANY, attempts, build, find, first_peers, group, peer
from wsgate.balancer import snapshot
from wsgate.balancer.base import Balancer, RequestInfo
from wsgate.balancer.health import Change, PeerCheck, peer_checks
from wsgate.balancer.random import Random
from wsgate.balancer.state import PeerStatus
from wsgate.conf.model import HealthCheckConf, UpstreamConf

# -- the counters ---------------------------------------------------------------------------

_MARK = {None: ".", Change.DOWN: "D", Change.UP: "U"}


@pytest.mark.parametrize(
    ("fails", "passes", "results", "changes"),
    [
        # results: p = a check passed, f = it failed; changes: D down, U up, . nothing
        (1, 1, "ppp", "..."),
        (1, 1, "fpfp", "DUDU"),
        (1, 1, "ffffp", "D...U"),
        (3, 1, "ffpfff", ".....D"),  # a pass resets the failures
        (3, 1, "fffp", "..DU"),
        (1, 3, "fpppp", "D..U."),
        (1, 3, "fppfppp", "D.....U"),  # a failure while down resets the passes
        (2, 2, "ffppff", ".D.U.D"),
        (2, 2, "fpfpff", ".....D"),
    ],
)
def test_consecutive_results_change_the_state(
    fails: int, passes: int, results: str, changes: str
) -> None:
    balancer = build(group(peer("1"), peer("2")))
    check = PeerCheck(find(balancer, "1"), HealthCheckConf(fails=fails, passes=passes))
    seen = ""
    for r in results:
        seen += _MARK[check.record(r == "p")]
    assert seen == changes
    # the peer's flag follows the changes: down after the last D until a U
    last = changes.replace(".", "")[-1:]
    assert check.peer.check_down is (last == "D")


def test_a_peer_starts_up_and_configured_down_peers_are_not_checked() -> None:
    balancer = build(
        group(peer("1"), peer("2", down=True), peer("3"), backups=[peer("b"), peer("c")])
    )
    checks = peer_checks(balancer, HealthCheckConf())
    assert [c.peer.conf.server for c in checks] == ["1", "3", "b", "c"]
    assert not any(c.peer.check_down for c in checks)


def test_the_view_says_unhealthy_before_failed() -> None:
    balancer = build(group(peer("1", max_fails=1), peer("2"), peer("3", down=True)))
    one, two, three = (find(balancer, s) for s in "123")
    attempts(balancer, ANY, now=100.0, failing="1")  # passive: 1 failed until 111
    one.check_down = two.check_down = three.check_down = True
    views = snapshot(balancer, 100.0)
    assert [(v.state, v.failed_until) for v in views] == [
        (PeerStatus.UNHEALTHY, None),
        (PeerStatus.UNHEALTHY, None),
        (PeerStatus.DOWN, None),  # configured down wins
    ]
    assert views[0].text().startswith("127.0.0.1:8049 unhealthy conns=0")
    one.check_down = False
    assert snapshot(balancer, 100.0)[0].state is PeerStatus.FAILED


# -- every method skips a check-down peer ------------------------------------------------------


def ips(n: int) -> list[RequestInfo]:
    return [RequestInfo(remote_addr=f"10.0.{i}.1") for i in range(n)]


def keys(n: int) -> list[RequestInfo]:
    return [RequestInfo(hash_key=f"key{i}".encode()) for i in range(n)]


def _random(conf: UpstreamConf) -> Balancer:
    return Random(conf, random.Random(7))


# (method, args, requests, whether a request keeps its peer when others go down and back)
METHODS = [
    ("round_robin", (), [ANY] * 12, False),
    ("least_conn", (), [ANY] * 12, False),
    ("ip_hash", (), ips(40), True),
    ("hash", (), keys(40), True),
    ("hash", ("consistent",), keys(40), True),
    ("random", (), [ANY] * 40, False),
    ("random", ("two",), [ANY] * 40, False),
    ("random", ("two", "least_conn"), [ANY] * 40, False),
]


def _build(method: str, args: tuple[str, ...], *peers: str, backups: str = "") -> Balancer:
    conf = group(
        *(peer(p) for p in peers), backups=[peer(b) for b in backups], method=method, args=args
    )
    return _random(conf) if method == "random" else build(conf)


@pytest.mark.parametrize(("method", "args", "requests", "sticky"), METHODS)
def test_check_down_peer_is_skipped_and_comes_back(
    method: str, args: tuple[str, ...], requests: list[RequestInfo], sticky: bool
) -> None:
    balancer = _build(method, args, "1", "2", "3")
    check = PeerCheck(find(balancer, "2"), HealthCheckConf(fails=1, passes=1))
    before = first_peers(balancer, requests)
    assert "2" in before
    assert check.record(False) is Change.DOWN
    during = first_peers(balancer, requests)
    assert "2" not in during
    assert set(during) == {"1", "3"}
    if sticky:
        # Like `down`: only the requests of the check-down peer move.
        assert all(a == b for a, b in zip(before, during, strict=True) if a != "2")
    assert check.record(True) is Change.UP
    after = first_peers(balancer, requests)
    assert "2" in after
    if sticky:
        assert after == before


@pytest.mark.parametrize(("method", "args", "requests", "sticky"), METHODS)
def test_all_primaries_check_down_go_to_the_backup_or_no_live_upstreams(
    method: str, args: tuple[str, ...], requests: list[RequestInfo], sticky: bool
) -> None:
    del sticky
    backups = "" if method in ("ip_hash", "hash", "random") else "b"  # nginx refuses backup
    balancer = _build(method, args, "1", "2", backups=backups)
    for label in "12":
        find(balancer, label).check_down = True
    expected = "b" if backups else "!"
    assert {attempts(balancer, r)[-1] for r in requests[:5]} == {expected}
    if backups:
        find(balancer, "b").check_down = True
        assert attempts(balancer, requests[0]) == "!"
        find(balancer, "b").check_down = False
    find(balancer, "1").check_down = False
    assert {attempts(balancer, r) for r in requests[:5]} == {"1"}


@pytest.mark.parametrize(("method", "args", "requests", "sticky"), METHODS)
def test_single_peer_check_down_is_no_live_upstreams(
    method: str, args: tuple[str, ...], requests: list[RequestInfo], sticky: bool
) -> None:
    del sticky
    balancer = _build(method, args, "1")
    only = find(balancer, "1")
    only.check_down = True
    assert attempts(balancer, requests[0]) == "!"
    only.check_down = False
    assert attempts(balancer, requests[0]) == "1"


def test_both_checks_must_allow_the_peer() -> None:
    """A check that passes does not cancel passive failures, nor the reverse."""
    balancer = build(group(peer("1", max_fails=1, fail_timeout=10), peer("2")))
    one = find(balancer, "1")
    check = PeerCheck(one, HealthCheckConf())
    assert attempts(balancer, ANY, now=100.0, failing="1") == "12"  # passive: failed
    assert check.record(True) is None  # an active pass changes nothing
    assert first_peers(balancer, [ANY] * 4, now=105.0) == "2222"
    assert check.record(False) is Change.DOWN
    # fail_timeout is over, yet the active check keeps the peer out
    assert first_peers(balancer, [ANY] * 4, now=120.0) == "2222"
    assert check.record(True) is Change.UP
    assert "1" in first_peers(balancer, [ANY] * 4, now=120.0)
