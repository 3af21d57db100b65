"""Smooth weighted round robin against nginx-semantics.md sections 3.1-3.5 (no sockets).

Peers are labelled by their ``server`` text (one character each) so that a run of requests
reads as a string: ``"11213111121311"`` is the order nginx 1.22.1 was observed to use for
weights 5:1:1. In :func:`run`, ``!`` marks a "no live upstreams" answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from wsgate.balancer import METHODS, RoundRobin, for_upstream
from wsgate.balancer.base import Outcome, PeerState, RequestInfo
from wsgate.balancer.round_robin import is_usable
from wsgate.conf.model import PeerConf, UpstreamConf

REQ = RequestInfo()


def peer(label: str, weight: int = 1, **params: Any) -> PeerConf:
    """A peer whose ``server`` text is ``label``."""
    port = 8000 + ord(label)
    return PeerConf(
        name=f"127.0.0.1:{port}",
        host="127.0.0.1",
        port=port,
        server=label,
        weight=weight,
        **params,
    )


def upstream(*peers: PeerConf, backups: Sequence[PeerConf] = ()) -> RoundRobin:
    marked = tuple(PeerConf(**{**_fields(b), "backup": True}) for b in backups)
    return RoundRobin(UpstreamConf(name="u", peers=peers, backups=marked))


def _fields(p: PeerConf) -> dict[str, Any]:
    return {name: getattr(p, name) for name in PeerConf.__slots__}


def weighted(*weights: int) -> RoundRobin:
    return upstream(*(peer(str(i + 1), w) for i, w in enumerate(weights)))


@dataclass
class Request:
    """What one request did: the peers tried in order and the warnings the proxy would log."""

    tried: str = ""
    disabled: list[str] = field(default_factory=list)
    tries_left: int = 0


def request(
    balancer: RoundRobin,
    now: float = 0.0,
    failing: Iterable[str] = (),
    outcome: Outcome = Outcome.FAILED,
    next_upstream_tries: int = 0,
) -> Request:
    """Drive one request as the proxy does: get, attempt, free, retry while tries remain.

    Peers whose label is in ``failing`` end their attempt with ``outcome``; others succeed.
    """
    bad = set(failing)
    pick = balancer.pick(REQ, next_upstream_tries=next_upstream_tries)
    result = Request()
    while True:
        chosen = pick.get(now)
        if chosen is None:
            result.tried += "!"
            break
        label = chosen.conf.server
        result.tried += label
        end = outcome if label in bad else Outcome.SUCCESS
        if pick.free(chosen, end, now):
            result.disabled.append(label)
        if end is Outcome.SUCCESS or pick.tries == 0:
            break
    result.tries_left = pick.tries
    return result


def run(balancer: RoundRobin, n: int, now: float = 0.0, failing: Iterable[str] = ()) -> str:
    """``n`` sequential requests at ``now``; the first peer of each, or ``!``."""
    return "".join(request(balancer, now, failing).tried[0] for _ in range(n))


def state(balancer: RoundRobin, label: str) -> PeerState:
    for p in (*balancer.peers, *balancer.backups):
        if p.conf.server == label:
            return p
    raise KeyError(label)


# -- selection order ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        # Observed on nginx 1.22.1 (nginx-semantics.md 3.2).
        ((5, 1, 1), "11213111121311"),
        ((1, 1), "12121212"),
        ((1, 1, 1), "123123123123"),
        ((2, 1), "121121121"),
        ((1, 2), "212212212"),
        ((3, 2), "1212112121"),
        ((1,), "1111"),
    ],
)
def test_smooth_weighted_order(weights: tuple[int, ...], expected: str) -> None:
    assert run(weighted(*weights), len(expected)) == expected


def test_weights_return_to_zero_after_a_full_cycle() -> None:
    balancer = weighted(5, 1, 1)
    run(balancer, 7)
    assert [p.current_weight for p in balancer.peers] == [0, 0, 0]
    assert [p.effective_weight for p in balancer.peers] == [5, 1, 1]


@pytest.mark.parametrize(
    ("peers", "expected", "total_weight", "tries"),
    [
        # a=5, b down, c=1: the rotation of (5, 1); the down weight still counts in the total.
        ((peer("a", 5), peer("b", 1, down=True), peer("c", 1)), "aaacaaaaacaa", 7, 2),
        ((peer("a", down=True), peer("b"), peer("c")), "bcbcbc", 3, 2),
        ((peer("a"), peer("b", down=True)), "aaaa", 2, 1),
        ((peer("a", down=True), peer("b", down=True)), "!!", 2, 0),
    ],
)
def test_down_peers_are_skipped_but_weighed(
    peers: tuple[PeerConf, ...], expected: str, total_weight: int, tries: int
) -> None:
    balancer = upstream(*peers)
    assert balancer.total_weight == total_weight
    assert balancer.tries == tries
    assert run(balancer, len(expected)) == expected


def test_conns_count_attempts_in_flight() -> None:
    balancer = weighted(1, 1)
    first, second = balancer.pick(REQ), balancer.pick(REQ)
    a = first.get(0)
    b = second.get(0)
    assert a is not None and b is not None
    assert (a.conf.server, b.conf.server) == ("1", "2")
    assert [p.conns for p in balancer.peers] == [1, 1]
    first.free(a, Outcome.SUCCESS, 0)
    assert [p.conns for p in balancer.peers] == [0, 1]
    second.free(b, Outcome.FAILED, 0)
    assert [p.conns for p in balancer.peers] == [0, 0]


def test_request_info_does_not_matter() -> None:
    balancer = weighted(1, 1)
    picks = [balancer.pick(RequestInfo(remote_addr="10.0.0.1", hash_key=b"k")) for _ in range(4)]
    labels = []
    for p in picks:
        chosen = p.get(0)
        assert chosen is not None
        labels.append(chosen.conf.server)
        p.free(chosen, Outcome.SUCCESS, 0)
    assert "".join(labels) == "1212"


# -- failures: max_fails / fail_timeout ----------------------------------------------------


def test_failure_disables_for_fail_timeout_then_probes() -> None:
    balancer = upstream(peer("a", max_fails=1, fail_timeout=10), peer("b"))
    first = request(balancer, 0, failing="a")
    assert first.tried == "ab"
    assert first.disabled == ["a"]
    a = state(balancer, "a")
    assert (a.fails, a.accessed, a.checked, a.effective_weight) == (1, 0, 0, 0)
    # While now - checked <= fail_timeout, every request goes to b.
    assert run(balancer, 5, now=10) == "bbbbb"
    assert not is_usable(a, 10)
    assert is_usable(a, 11)
    # After fail_timeout a is usable again; its effective weight ramps up 0 -> 1 first, so
    # with the weights left by the earlier rounds the probe is the third request.
    assert run(balancer, 3, now=11) == "bba"
    assert (a.fails, a.checked) == (0, 11)  # the probe succeeded: accessed 0 < checked 11
    assert run(balancer, 4, now=11) == "baba"


def test_failed_probe_disables_again() -> None:
    balancer = upstream(peer("a", fail_timeout=10), peer("b"))
    assert request(balancer, 0, failing="a").tried == "ab"
    assert run(balancer, 2, now=11, failing="a") == "bb"
    probe = request(balancer, 11, failing="a")
    assert (probe.tried, probe.disabled) == ("ab", ["a"])
    a = state(balancer, "a")
    assert (a.fails, a.checked) == (2, 11)
    assert run(balancer, 4, now=21) == "bbbb"
    assert is_usable(a, 21.9) is False  # whole seconds: 21 - 11 <= 10
    assert is_usable(a, 22)


def test_time_is_truncated_to_whole_seconds() -> None:
    balancer = upstream(peer("a", fail_timeout=10), peer("b"))
    request(balancer, 0.9, failing="a")
    a = state(balancer, "a")
    assert (a.accessed, a.checked) == (0, 0)
    assert not is_usable(a, 10.99)
    assert is_usable(a, 11.0)


def test_failures_accumulate_across_successes_within_fail_timeout() -> None:
    balancer = upstream(peer("a", 1, max_fails=3, fail_timeout=10), peer("b", 1))
    seen = [request(balancer, t, failing="a" if t in (0, 4, 8) else "") for t in range(10)]
    # a fails at t=0, 4 and 8 and succeeds at t=2 and 6; those successes come before a
    # selection has moved `checked` on (accessed == checked), so they reset nothing and the
    # third failure disables a.
    assert [r.tried for r in seen] == ["ab", "b", "a", "b", "ab", "b", "a", "b", "ab", "b"]
    assert [r.disabled for r in seen] == [[]] * 8 + [["a"], []]
    assert state(balancer, "a").fails == 3


def test_success_after_fail_timeout_resets_fails() -> None:
    balancer = upstream(peer("a", max_fails=2, fail_timeout=10), peer("b"))
    assert request(balancer, 0, failing="a").tried == "ab"
    a = state(balancer, "a")
    assert a.fails == 1
    # Still usable (1 < max_fails); a success now does not reset: accessed == checked.
    assert request(balancer, 5).tried == "b"
    assert request(balancer, 5).tried == "a"
    assert a.fails == 1
    # The first selection more than fail_timeout after the check bumps checked ...
    assert run(balancer, 2, now=11) == "ba"
    assert (a.fails, a.checked) == (0, 11)  # ... and its success resets fails.


def test_next_outcome_is_not_a_failure() -> None:
    balancer = upstream(peer("a"), peer("b"))
    r = request(balancer, 0, failing="ab", outcome=Outcome.NEXT)
    assert (r.tried, r.disabled, r.tries_left) == ("ab", [], 0)
    assert [p.fails for p in balancer.peers] == [0, 0]
    assert [p.effective_weight for p in balancer.peers] == [1, 1]


def test_max_fails_zero_never_disables() -> None:
    balancer = upstream(peer("a", 4, max_fails=0), peer("b", 1))
    tried = ""
    for t in range(5):
        r = request(balancer, t, failing="a")
        assert r.disabled == []
        tried += r.tried
    a = state(balancer, "a")
    assert tried == "ababbabab"
    assert a.fails == 4
    assert a.effective_weight == 4
    assert is_usable(a, 5)


@pytest.mark.parametrize(
    ("weight", "max_fails", "weights", "warnings"),
    [
        (5, 2, [3, 1, 0, 0], [False, True, True, True]),
        (10, 3, [7, 4, 1, 0], [False, False, True, True]),
        (1, 1, [0, 0], [True, True]),
        (4, 8, [4, 4, 4], [False, False, False]),  # 4 // 8 == 0: the weight never drops
    ],
)
def test_effective_weight_drops_by_weight_over_max_fails(
    weight: int, max_fails: int, weights: list[int], warnings: list[bool]
) -> None:
    # b is down, so a is the only candidate but the group is not in single mode.
    balancer = upstream(peer("a", weight, max_fails=max_fails), peer("b", down=True))
    a = state(balancer, "a")
    # Attempts already in flight can fail after a is disabled: start them all first.
    picks = [balancer.pick(REQ) for _ in weights]
    assert all(p.get(0) is a for p in picks)
    assert a.conns == len(weights)
    seen, warned = [], []
    for p in picks:
        warned.append(p.free(a, Outcome.FAILED, 0))
        seen.append(a.effective_weight)
    assert (seen, warned) == (weights, warnings)
    assert (a.fails, a.conns) == (len(weights), 0)


def test_effective_weight_recovers_one_per_round() -> None:
    balancer = upstream(peer("a", 5, max_fails=2, fail_timeout=10), peer("b", 1))
    assert request(balancer, 0, failing="a").tried == "ab"
    a = state(balancer, "a")
    assert a.effective_weight == 3  # 5 - 5 // 2
    ramp = []
    for _ in range(4):
        request(balancer, 1)
        ramp.append(a.effective_weight)
    assert ramp == [4, 5, 5, 5]


def test_disabled_peer_weight_recovers_only_when_usable() -> None:
    balancer = upstream(peer("a", 3, fail_timeout=10), peer("b", 1))
    assert request(balancer, 0, failing="a").disabled == ["a"]
    a = state(balancer, "a")
    assert a.effective_weight == 0
    run(balancer, 5, now=5)
    assert a.effective_weight == 0  # skipped rounds do not count
    assert run(balancer, 6, now=11) == "bbaaba"
    assert a.effective_weight == 3


def test_all_primaries_failed_means_no_live_upstreams() -> None:
    balancer = upstream(peer("a"), peer("b"))
    first = request(balancer, 0, failing="ab")
    assert (first.tried, first.disabled, first.tries_left) == ("ab", ["a", "b"], 0)
    assert request(balancer, 1).tried == "!"
    assert request(balancer, 10).tried == "!"
    assert request(balancer, 11).tried == "b"  # b kept the higher current_weight


# -- backups ----------------------------------------------------------------------------


def test_backup_only_when_every_primary_is_unusable() -> None:
    balancer = upstream(peer("a"), peer("b"), backups=[peer("x"), peer("y")])
    assert run(balancer, 4) == "abab"
    assert [p.conns for p in balancer.backups] == [0, 0]
    r = request(balancer, 0, failing="ab")
    assert (r.tried, r.disabled) == ("abx", ["a", "b"])
    assert run(balancer, 4, now=5) == "yxyx"
    assert run(balancer, 4, now=11) == "bbab"


def test_backup_list_is_used_for_the_rest_of_the_request() -> None:
    balancer = upstream(peer("a", max_conns=1), backups=[peer("x"), peer("y")])
    holder = balancer.pick(REQ)
    a = holder.get(0)
    assert a is not None and a.conf.server == "a"
    other = balancer.pick(REQ)
    x = other.get(0)
    assert x is not None and x.conf.server == "x"
    assert other.on_backups
    assert other.has_tried(x) and other.tried == 1 << x.index
    holder.free(a, Outcome.SUCCESS, 0)
    other.free(x, Outcome.FAILED, 0)
    y = other.get(0)
    assert y is not None and y.conf.server == "y"  # not a, though a is free again
    other.free(y, Outcome.FAILED, 0)
    assert other.tries == 1
    assert other.get(0) is None


def test_backups_exhausted() -> None:
    balancer = upstream(peer("a"), peer("b"), backups=[peer("x"), peer("y", down=True)])
    assert balancer.tries == 3
    r = request(balancer, 0, failing="abx")
    assert (r.tried, r.disabled, r.tries_left) == ("abx", ["a", "b", "x"], 0)
    assert request(balancer, 1).tried == "!"


def test_down_primaries_go_straight_to_backups() -> None:
    balancer = upstream(peer("a", down=True), backups=[peer("x", 2), peer("y", 1)])
    assert not balancer.single
    assert balancer.tries == 2
    assert run(balancer, 6) == "xyxxyx"


# -- max_conns ----------------------------------------------------------------------------


def test_max_conns_skips_busy_peers() -> None:
    balancer = upstream(peer("a", 3, max_conns=1), peer("b", 1, max_conns=2))
    picks = [balancer.pick(REQ) for _ in range(4)]
    chosen = [p.get(0) for p in picks]
    labels = "".join(c.conf.server if c else "!" for c in chosen)
    assert labels == "abb!"
    assert [p.conns for p in balancer.peers] == [1, 2]
    a = chosen[0]
    assert a is not None
    picks[0].free(a, Outcome.SUCCESS, 0)
    again = balancer.pick(REQ).get(0)
    assert again is a and a.conns == 1


def test_max_conns_busy_primaries_use_backups() -> None:
    balancer = upstream(peer("a", max_conns=1), backups=[peer("x")])
    first = balancer.pick(REQ).get(0)
    second = balancer.pick(REQ).get(0)
    assert first is not None and second is not None
    assert (first.conf.server, second.conf.server) == ("a", "x")


# -- single mode ---------------------------------------------------------------------------


def test_single_mode_never_counts_failures() -> None:
    balancer = upstream(peer("a", max_fails=1, fail_timeout=10))
    assert balancer.single and balancer.tries == 1
    for t in range(5):
        r = request(balancer, t, failing="a")
        assert (r.tried, r.disabled, r.tries_left) == ("a", [], 0)
    a = state(balancer, "a")
    assert (a.fails, a.effective_weight, a.conns, a.checked) == (0, 1, 0, 0)


def test_single_mode_tries_zero_after_first_attempt() -> None:
    balancer = upstream(peer("a"))
    pick = balancer.pick(REQ, next_upstream_tries=5)
    assert pick.tries == 1
    a = pick.get(0)
    assert a is not None
    assert pick.free(a, Outcome.SUCCESS, 0) is False
    assert pick.tries == 0


def test_single_mode_down_is_no_live() -> None:
    balancer = upstream(peer("a", down=True))
    assert balancer.single and balancer.tries == 0
    assert request(balancer).tried == "!"


def test_single_mode_max_conns() -> None:
    balancer = upstream(peer("a", max_conns=1))
    first = balancer.pick(REQ)
    a = first.get(0)
    assert a is not None
    assert balancer.pick(REQ).get(0) is None
    first.free(a, Outcome.FAILED, 0)
    assert balancer.pick(REQ).get(0) is a


def test_one_primary_with_a_backup_is_not_single() -> None:
    balancer = upstream(peer("a"), backups=[peer("x")])
    assert not balancer.single
    r = request(balancer, 0, failing="a")
    assert (r.tried, r.disabled) == ("ax", ["a"])
    assert request(balancer, 1).tried == "x"


def test_an_implicit_group_of_one_address_is_single() -> None:
    conf = UpstreamConf(name="127.0.0.1:8001", peers=(peer("a"),), implicit=True)
    assert RoundRobin(conf).single


# -- tries budget ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cap", "expected"),
    [(0, 4), (1, 1), (3, 3), (4, 4), (9, 4)],
)
def test_tries_budget(cap: int, expected: int) -> None:
    balancer = upstream(
        peer("a"),
        peer("b", down=True),
        peer("c"),
        peer("d"),
        backups=[peer("x"), peer("y", down=True)],
    )
    assert balancer.tries == 4
    assert balancer.pick(REQ, next_upstream_tries=cap).tries == expected


@pytest.mark.parametrize(
    ("cap", "tried"),
    [(0, "acdx"), (2, "ac"), (3, "acd")],
)
def test_retries_stop_when_the_budget_is_spent(cap: int, tried: str) -> None:
    balancer = upstream(
        peer("a"),
        peer("b", down=True),
        peer("c"),
        peer("d"),
        backups=[peer("x"), peer("y", down=True)],
    )
    r = request(balancer, 0, failing="acdx", next_upstream_tries=cap)
    assert (r.tried, r.tries_left) == (tried, 0)


def test_tries_never_go_below_zero() -> None:
    balancer = upstream(peer("a"), peer("b"))
    pick = balancer.pick(REQ, next_upstream_tries=1)
    a = pick.get(0)
    assert a is not None
    pick.free(a, Outcome.FAILED, 0)
    assert pick.tries == 0
    b = pick.get(0)  # a caller may still ask; the balancer does not enforce the budget
    assert b is not None
    pick.free(b, Outcome.SUCCESS, 0)
    assert pick.tries == 0


# -- registry ----------------------------------------------------------------------------------


def test_for_upstream() -> None:
    conf = UpstreamConf(name="u", peers=(peer("a"), peer("b")))
    assert METHODS["round_robin"] is RoundRobin
    balancer = for_upstream(conf)
    assert isinstance(balancer, RoundRobin)
    assert balancer.name == "u"
    assert [p.index for p in balancer.peers] == [0, 1]


def test_for_upstream_unknown_method() -> None:
    conf = UpstreamConf(name="u", peers=(peer("a"),), method="no_such_method")
    with pytest.raises(ValueError, match='"no_such_method" of upstream "u"'):
        for_upstream(conf)
