"""``hash KEY`` and ``hash KEY consistent`` against nginx-semantics.md section 3.7.

Plain hash: attempt r hashes ``str(r) + KEY`` (no prefix for r = 0); the expected peers
below come from that rule worked out by hand with ``zlib.crc32``: for ``alpha`` the values
``(crc32 >> 16) & 0x7fff`` are 20704, 26662, 28338, so the running sums are 20704, 47366,
75704 (mod 3: 1 2 2).
"""

from __future__ import annotations

import bisect
import zlib

import pytest

from tests.unit.balancer.common import attempts, find, first_peers, group, peer
from wsgate.balancer import METHODS, ConsistentHash, Hash, for_upstream
from wsgate.balancer.base import Outcome, RequestInfo
from wsgate.balancer.hash import (
    MAX_HASH_TRIES,
    POINTS_PER_WEIGHT,
    ConsistentHashPick,
    HashPick,
    split_server,
)
from wsgate.balancer.round_robin import RoundRobin
from wsgate.conf.model import PeerConf


def key(text: str) -> RequestInfo:
    return RequestInfo(hash_key=text.encode())


def plain(*peers: PeerConf) -> Hash:
    return Hash(group(*peers, method="hash"))


def consistent(*peers: PeerConf) -> ConsistentHash:
    return ConsistentHash(group(*peers, method="hash", args=("consistent",)))


def equal(n: int) -> list[PeerConf]:
    return [peer(str(i + 1)) for i in range(n)]


# -- plain hash -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "weights", "failing", "expected"),
    [
        ("alpha", (1, 1, 1), "", "2"),
        ("alpha", (1, 1, 1), "2", "23"),
        ("beta", (1, 1, 1), "2", "23"),  # sums 3985, 33863, 46941: 1 2 0
        ("gamma", (1, 1, 1), "1", "13"),  # 17475, 49352, 80601: 0 2 0
        ("/index.html", (1, 1, 1), "3", "31"),  # 27170, 57374, 57984: 2 2(tried) 0
        ("user-42", (1, 1, 1), "", "3"),
        ("alpha", (2, 1, 1), "1", "12"),  # mod 4: 0 2 0
        ("gamma", (2, 1, 1), "3", "31"),  # mod 4: 3 0 1
    ],
)
def test_candidates(text: str, weights: tuple[int, ...], failing: str, expected: str) -> None:
    balancer = plain(*(peer(str(i + 1), w) for i, w in enumerate(weights)))
    assert attempts(balancer, key(text), failing=failing) == expected


def test_running_sum_is_kept_across_attempts() -> None:
    balancer = plain(*equal(3))
    pick = balancer.pick(key("alpha"))
    assert isinstance(pick, HashPick)
    chosen = pick.get(0)
    assert chosen is not None
    assert (pick.hash, pick.rehash) == (20704, 1)


def test_same_key_same_peer() -> None:
    balancer = plain(*equal(3))
    assert first_peers(balancer, [key("user-42")] * 6) == "333333"


def test_empty_key_is_round_robin() -> None:
    balancer = plain(*equal(3))
    assert first_peers(balancer, [key("")] * 6) == "123123"


def test_down_peer_keeps_its_slice() -> None:
    balancer = plain(peer("1"), peer("2", down=True), peer("3"))
    assert attempts(balancer, key("alpha")) == "3"  # sums mod 3: 1 (down) 2


def test_more_than_20_misses_fall_back_to_round_robin() -> None:
    """Every primary down: 21 sums miss, then round robin moves the request to the backup."""
    balancer = Hash(
        group(peer("1", down=True), peer("2", down=True), backups=[peer("b")], method="hash")
    )
    pick = balancer.pick(key("alpha"))
    assert isinstance(pick, HashPick)
    chosen = pick.get(0)
    assert chosen is not None and chosen.conf.server == "b"
    assert (pick.hash_tries, pick.rehash) == (MAX_HASH_TRIES + 1, MAX_HASH_TRIES + 1)


def test_all_down_is_no_live_upstreams() -> None:
    balancer = plain(peer("1", down=True), peer("2", down=True))
    pick = balancer.pick(key("alpha"))
    assert isinstance(pick, HashPick)
    assert pick.get(0) is None
    assert pick.hash_tries == MAX_HASH_TRIES + 1


def test_single_peer_is_round_robin() -> None:
    balancer = plain(peer("1"))
    assert attempts(balancer, key("alpha"), failing="1") == "1"
    assert find(balancer, "1").fails == 0


# -- consistent hash ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "host", "port"),
    [
        ("127.0.0.1:8080", b"127.0.0.1", b"8080"),
        ("backend.example", b"backend.example", b""),
        ("backend.example:80", b"backend.example", b"80"),
        ("[::1]:8080", b"[::1]", b"8080"),
        ("[::1]", b"[::1]", b""),
        ("unix:/run/app.sock", b"/run/app.sock", b""),
        ("UNIX:/x", b"/x", b""),
        ("8080", b"8080", b""),  # all digits and no colon: all host
        ("host:", b"host", b""),  # nginx splits at a final colon with an empty port
        ("a:b", b"a:b", b""),
    ],
)
def test_split_server(server: str, host: bytes, port: bytes) -> None:
    assert split_server(server) == (host, port)


def reference_ring(peers: list[tuple[str, int]]) -> list[tuple[int, int]]:
    """The ring as nginx-semantics.md's sketch builds it: (point, peer index)."""
    pts = []
    for idx, (server, weight) in enumerate(peers):
        if server.startswith("unix:"):
            host, port = server[5:], ""
        else:
            head, sep, tail = server.rpartition(":")
            host, port = (head, tail) if sep and tail.isdigit() else (server, "")
        base = host.encode() + b"\0" + port.encode()
        prev = 0
        for _ in range(weight * 160):
            prev = zlib.crc32(base + prev.to_bytes(4, "little"))
            pts.append((prev, idx))
    pts.sort(key=lambda p: p[0])
    out: list[tuple[int, int]] = []
    for h, idx in pts:
        if not out or out[-1][0] != h:
            out.append((h, idx))
    return out


@pytest.mark.parametrize(
    "servers",
    [
        [("127.0.0.1:8001", 1), ("127.0.0.1:8002", 1), ("127.0.0.1:8003", 1)],
        [("a.example:80", 3), ("b.example", 1), ("unix:/tmp/c.sock", 2)],
    ],
)
def test_ring_matches_the_reference_sketch(servers: list[tuple[str, int]]) -> None:
    confs = [
        PeerConf(name=f"127.0.0.1:{9000 + i}", host="127.0.0.1", port=9000 + i, server=s, weight=w)
        for i, (s, w) in enumerate(servers)
    ]
    balancer = ConsistentHash(group(*confs, method="hash", args=("consistent",)))
    expected = [(h, servers[idx][0]) for h, idx in reference_ring(servers)]
    assert balancer.points == expected
    assert len(balancer.points) == sum(w for _, w in servers) * POINTS_PER_WEIGHT


def test_first_point_of_a_server() -> None:
    """The first point of server ``a`` is crc32 of host ``a``, NUL, an empty port, then the
    previous point (0) as four little-endian bytes."""
    assert (zlib.crc32(b"a\0" + b"\0\0\0\0"), "a") in consistent(peer("a"), peer("b")).points


def test_start_is_the_first_point_at_or_after_the_key_hash() -> None:
    balancer = consistent(*equal(3))
    hashes = [h for h, _ in balancer.points]
    for text in ("alpha", "beta", "gamma", "/x", "user-42"):
        h = zlib.crc32(text.encode())
        start = balancer.start(text.encode())
        assert start == bisect.bisect_left(hashes, h)
        expected = balancer.points[start % len(hashes)][1]
        assert attempts(balancer, key(text)) == expected


def test_wraps_past_the_last_point() -> None:
    balancer = consistent(*equal(3))
    pick = ConsistentHashPick(
        tries=3, balancer=balancer, ring=balancer, key=b"k", point=len(balancer.points)
    )
    chosen = pick.get(0)
    assert chosen is not None and chosen.conf.server == balancer.points[0][1]


def test_a_down_peer_moves_only_its_own_keys() -> None:
    keys = [key(f"key-{i}") for i in range(300)]
    before = first_peers(consistent(*equal(4)), keys)
    after = first_peers(consistent(peer("1"), peer("2"), peer("3", down=True), peer("4")), keys)
    assert set(before) == {"1", "2", "3", "4"}
    assert "3" not in after
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert moved and all(b == "3" for b, _ in moved)


def test_failed_attempt_moves_to_the_next_point() -> None:
    balancer = consistent(*equal(3))
    for i in range(20):
        text = f"k{i}"
        first = attempts(balancer, key(text))
        pick = balancer.pick(key(text))
        assert isinstance(pick, ConsistentHashPick)
        start = pick.point
        # Expected second peer: the first point after start whose server differs.
        points = balancer.points
        j = start
        while points[j % len(points)][1] == first:
            j += 1
        second = points[j % len(points)][1]
        got = pick.get(0)
        assert got is not None and got.conf.server == first
        pick.free(got, Outcome.NEXT, 0)
        got2 = pick.get(0)
        assert got2 is not None and got2.conf.server == second


def test_several_addresses_of_one_server_text_share_its_points() -> None:
    """A name that resolves to two addresses: its points choose between both by smooth
    weighted round robin (peers with the same ``server`` text)."""
    twins = [
        PeerConf(name="127.0.0.1:9001", host="127.0.0.1", port=9001, server="app:80"),
        PeerConf(name="127.0.0.2:9001", host="127.0.0.2", port=9001, server="app:80"),
    ]
    balancer = ConsistentHash(group(*twins, method="hash", args=("consistent",)))
    assert len(balancer.points) == 160  # identical points collapse
    names = [attempts(balancer, key("same")) for _ in range(4)]
    assert names == ["app:80"] * 4
    assert [p.current_weight for p in balancer.peers] == [0, 0]
    pick = balancer.pick(key("same"))
    a = pick.get(0)
    b = pick.get(0)
    assert (
        a is not None
        and b is not None
        and {a.conf.name, b.conf.name}
        == {
            "127.0.0.1:9001",
            "127.0.0.2:9001",
        }
    )


def test_empty_key_is_round_robin_consistent() -> None:
    assert first_peers(consistent(*equal(3)), [key("")] * 6) == "123123"


def test_more_than_20_points_without_a_peer_fall_back_to_round_robin() -> None:
    balancer = consistent(peer("1", down=True), peer("2", down=True))
    pick = balancer.pick(key("alpha"))
    assert isinstance(pick, ConsistentHashPick)
    assert pick.get(0) is None
    assert pick.hash_tries == MAX_HASH_TRIES + 1


def test_single_peer_consistent_is_round_robin() -> None:
    balancer = consistent(peer("1"))
    assert attempts(balancer, key("alpha"), failing="1") == "1"


@pytest.mark.parametrize(("args", "cls"), [((), Hash), (("consistent",), ConsistentHash)])
def test_registered(args: tuple[str, ...], cls: type[RoundRobin]) -> None:
    balancer = for_upstream(group(*equal(2), method="hash", args=args))
    assert type(balancer) is cls
    assert "hash" in METHODS
