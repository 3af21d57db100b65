"""``random`` and ``random two [least_conn]`` against nginx-semantics.md section 3.9.

Draws are scripted with :class:`Script`, a :class:`random.Random` whose ``getrandbits``
returns given numbers, so each rule can be checked draw by draw; seeded runs check that a
seed replays exactly and that the long-run shares follow the weights.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

import pytest

from tests.unit.balancer.common import attempts, first_peers, group, hold, peer, release
from wsgate.balancer import METHODS, Random, for_upstream
from wsgate.balancer.base import RequestInfo
from wsgate.balancer.random import MAX_RANDOM_TRIES, RandomPick
from wsgate.conf.model import PeerConf

REQ = RequestInfo()


class Script(random.Random):
    """A random source that returns the numbers it was given, in order."""

    def __init__(self, numbers: Iterable[int]) -> None:
        super().__init__(0)
        self.numbers = list(numbers)

    def getrandbits(self, k: int, /) -> int:
        assert k == 31  # nginx's random() gives 31 bits
        return self.numbers.pop(0)


def balancer(*peers: PeerConf, two: bool = False, rng: random.Random | None = None) -> Random:
    args = ("two", "least_conn") if two else ()
    return Random(group(*peers, method="random", args=args), rng=rng)


def weighted(*weights: int, two: bool = False, rng: random.Random | None = None) -> Random:
    return balancer(*(peer(str(i + 1), w) for i, w in enumerate(weights)), two=two, rng=rng)


@pytest.mark.parametrize(
    ("draws", "expected"),
    [
        # weights 1:2:1 own 0 | 1 2 | 3 of x = draw % 4
        ([0], "1"),
        ([1], "2"),
        ([2], "2"),
        ([3], "3"),
        ([4 + 3], "3"),  # reduced modulo the total weight
        ([2**31 - 1], "3"),  # 2147483647 % 4 == 3
    ],
)
def test_draw_uses_weight_ranges(draws: list[int], expected: str) -> None:
    assert attempts(weighted(1, 2, 1, rng=Script(draws)), REQ) == expected


def test_unusable_draws_are_drawn_again() -> None:
    b = balancer(peer("1", down=True), peer("2"), peer("3"), rng=Script([0, 0, 2]))
    pick = b.pick(REQ)
    assert isinstance(pick, RandomPick)
    chosen = pick.get(0)
    assert chosen is not None and chosen.conf.server == "3"
    assert pick.draw_tries == 2


def test_retry_skips_tried_peers() -> None:
    b = weighted(1, 1, 1, rng=Script([0, 0, 1]))
    assert attempts(b, REQ, failing="1") == "12"


def test_more_than_20_unusable_draws_fall_back_to_round_robin() -> None:
    b = balancer(peer("1", down=True), peer("2"), rng=Script([0] * 21))
    pick = b.pick(REQ)
    assert isinstance(pick, RandomPick)
    chosen = pick.get(0)
    assert chosen is not None and chosen.conf.server == "2"
    assert pick.draw_tries == MAX_RANDOM_TRIES + 1


def test_two_keeps_the_draw_with_fewer_connections() -> None:
    b = weighted(1, 1, 1, two=True, rng=Script([0, 1, 1, 0]))
    held = hold(b)  # draws 1 then 2, both idle: the second draw wins the tie
    assert held[1].conf.server == "2"
    assert attempts(b, REQ) == "1"  # draws 2 (1 conn) then 1 (0): 1
    release(held)
    assert held[1].conns == 0


def test_two_ties_go_to_the_second_draw() -> None:
    b = weighted(1, 1, 1, two=True, rng=Script([0, 1, 2, 0]))
    assert attempts(b, REQ) == "2"
    assert attempts(b, REQ) == "1"


def test_two_first_draw_wins_only_with_strictly_fewer() -> None:
    b = weighted(1, 1, two=True, rng=Script([0, 1, 0, 1]))
    first = hold(b)  # draws 1 then 2: tie -> 2
    assert first[1].conf.server == "2"
    assert attempts(b, REQ) == "1"  # draws 1 (0 conns) then 2 (1 conn): the first wins


def test_two_repeated_first_draw_costs_a_try() -> None:
    b = weighted(1, 1, 1, two=True, rng=Script([0, 0, 0, 2]))
    pick = b.pick(REQ)
    assert isinstance(pick, RandomPick)
    chosen = pick.get(0)
    assert chosen is not None and chosen.conf.server == "3"
    # 1 accepted (a try), 1 again twice (two tries), then 3 accepted as the second.
    assert pick.draw_tries == 3


def test_two_compares_per_unit_of_weight() -> None:
    b = weighted(3, 1, two=True, rng=Script([0, 3, 0, 3, 0, 3]))
    assert hold(b)[1].conf.server == "2"  # tie at 0: the second draw
    # 1 has 0/3, 2 has 1/1: the second draw (2) loses.
    assert hold(b)[1].conf.server == "1"
    # 1 has 1/3, 2 has 1/1: 1 is still lighter.
    assert hold(b)[1].conf.server == "1"


def test_two_with_a_held_peer_sends_everything_to_the_other() -> None:
    """Two peers: every request draws both, so the idle one always wins."""
    b = weighted(1, 1, two=True, rng=random.Random(7))
    held = hold(b)
    other = "2" if held[1].conf.server == "1" else "1"
    assert first_peers(b, [REQ] * 50) == other * 50


def test_seed_replays_exactly() -> None:
    runs = [first_peers(weighted(1, 2, 1, rng=random.Random(42)), [REQ] * 200) for _ in "ab"]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("two", [False, True])
def test_shares_follow_the_weights(two: bool) -> None:
    """1:2:1 gives 1/4, 1/2, 1/4 with one draw; with two draws (ties to the second) every
    peer gets 1/3: P(second = 2) = 1/4 * 2/3 + 1/4 * 2/3 = 1/3."""
    n = 40_000
    counts = Counter(first_peers(weighted(1, 2, 1, two=two, rng=random.Random(1)), [REQ] * n))
    shares = {label: counts[label] / n for label in "123"}
    expected = {"1": 1 / 3, "2": 1 / 3, "3": 1 / 3} if two else {"1": 0.25, "2": 0.5, "3": 0.25}
    for label, share in expected.items():
        assert abs(shares[label] - share) < 0.02, shares


def test_single_peer_is_round_robin_single_mode() -> None:
    b = balancer(peer("1"), rng=Script([]))  # never draws
    assert attempts(b, REQ, failing="1") == "1"
    assert attempts(balancer(peer("1", down=True), rng=Script([])), REQ) == "!"


def test_registered_with_its_variant() -> None:
    assert METHODS["random"] is Random
    one = for_upstream(group(peer("1"), peer("2"), method="random"))
    two = for_upstream(group(peer("1"), peer("2"), method="random", args=("two",)))
    assert isinstance(one, Random) and not one.two
    assert isinstance(two, Random) and two.two
