"""``ip_hash`` against nginx-semantics.md section 3.6 (no sockets).

Expected peers come from the rule written out by hand: ``h = 89``, then per candidate
``h = (h * 113 + byte) % 6271`` over the key bytes, peer = weight slice of
``h % total_weight``. For 10.0.0.1 the chain is 2565, 1753, 5403, 5523 (mod 3: 0 1 0 0).
"""

from __future__ import annotations

import pytest

from tests.unit.balancer.common import attempts, find, first_peers, group, peer
from wsgate.balancer import METHODS, IpHash
from wsgate.balancer.base import Outcome, RequestInfo
from wsgate.balancer.ip_hash import MAX_HASH_TRIES, IpHashPick, ip_hash_key


def ip_hash(*weights: int) -> IpHash:
    peers = [peer(str(i + 1), w) for i, w in enumerate(weights)]
    return IpHash(group(*peers, method="ip_hash"))


def client(addr: str) -> RequestInfo:
    return RequestInfo(remote_addr=addr)


@pytest.mark.parametrize(
    ("addr", "key"),
    [
        ("10.0.0.1", b"\x0a\x00\x00"),
        ("192.168.1.77", b"\xc0\xa8\x01"),
        ("::1", b"\x00" * 15 + b"\x01"),
        ("2001:db8::7", bytes.fromhex("20010db8000000000000000000000007")),
        ("::ffff:10.0.0.1", bytes.fromhex("00000000000000000000ffff0a000001")),  # no unmapping
        ("", b"\x00\x00\x00"),  # not an IP address (unix socket): the pseudo address
        ("unix:", b"\x00\x00\x00"),
    ],
)
def test_key_bytes(addr: str, key: bytes) -> None:
    assert ip_hash_key(addr) == key


@pytest.mark.parametrize(
    ("addr", "weights", "failing", "expected"),
    [
        # chain mod 3 for 10.0.0.1: 0 1 0 0
        ("10.0.0.1", (1, 1, 1), "", "1"),
        ("10.0.0.1", (1, 1, 1), "1", "12"),
        # 192.168.1.77: 154 5654 1196 723 -> mod 3: 1 2 2 0
        ("192.168.1.77", (1, 1, 1), "", "2"),
        ("192.168.1.77", (1, 1, 1), "2", "23"),
        # 127.0.0.1: 4040 5510 4957 4956 -> mod 3: 2 2 1 0; a tried peer is skipped
        ("127.0.0.1", (1, 1, 1), "3", "32"),
        ("127.0.0.1", (1, 1, 1), "32", "321"),
        # ::1: 5945 1692 1535 -> mod 3: 2 0 2
        ("::1", (1, 1, 1), "", "3"),
        ("::1", (1, 1, 1), "3", "31"),
        # the pseudo address: 295 4219 2922 -> mod 3: 1 1 0
        ("", (1, 1, 1), "2", "21"),
        # weights 2:1:1 -> slices 0-1, 2, 3; 10.0.0.1 mod 4: 1 1 3 3
        ("10.0.0.1", (2, 1, 1), "1", "13"),
        # 192.168.1.77 mod 4: 2 2 0 3
        ("192.168.1.77", (2, 1, 1), "2", "21"),
    ],
)
def test_candidates(addr: str, weights: tuple[int, ...], failing: str, expected: str) -> None:
    assert attempts(ip_hash(*weights), client(addr), failing=failing) == expected


def test_a_slash_24_shares_one_peer_and_other_networks_spread() -> None:
    balancer = ip_hash(1, 1, 1)
    same = [client(f"10.0.0.{i}") for i in range(1, 255)]
    assert set(first_peers(balancer, same)) == {"1"}
    spread = first_peers(balancer, [client(f"10.{i}.{j}.1") for i in range(8) for j in range(8)])
    assert set(spread) == {"1", "2", "3"}


def test_a_client_keeps_its_peer_across_requests() -> None:
    balancer = ip_hash(1, 1, 1)
    assert first_peers(balancer, [client("192.168.1.77")] * 10) == "2" * 10


def test_down_peer_keeps_its_slot() -> None:
    """Marking a server down moves only its own clients (that is why ip_hash has ``down``)."""
    addrs = [f"10.{i}.{j}.9" for i in range(16) for j in range(4)]
    before = first_peers(ip_hash(1, 1, 1), map(client, addrs))
    down = IpHash(group(peer("1"), peer("2", down=True), peer("3"), method="ip_hash"))
    after = first_peers(down, map(client, addrs))
    assert "2" in before and "2" not in after
    for b, a in zip(before, after, strict=True):
        if b != "2":
            assert a == b


def test_retry_continues_the_chain_of_the_same_request() -> None:
    """The second attempt hashes on from the first attempt's ``h``, not from 89."""
    balancer = ip_hash(1, 1, 1)
    pick = balancer.pick(client("10.0.0.1"))
    assert isinstance(pick, IpHashPick)
    first = pick.get(0)
    assert first is not None and pick.hash == 2565
    pick.free(first, Outcome.FAILED, 0)
    second = pick.get(0)
    assert second is not None and second.conf.server == "2" and pick.hash == 1753


def test_failed_peer_is_skipped_until_fail_timeout() -> None:
    balancer = ip_hash(1, 1, 1)
    assert attempts(balancer, client("10.0.0.1"), now=100, failing="1") == "12"
    # Disabled (max_fails=1, fail_timeout=10): the chain moves on to the next candidate.
    assert attempts(balancer, client("10.0.0.1"), now=105) == "2"
    assert attempts(balancer, client("10.0.0.1"), now=111) == "1"


def test_more_than_20_unusable_candidates_fall_back_to_round_robin() -> None:
    """Two down primaries: 21 misses, then round robin, which moves to the backup."""
    conf = group(peer("1", down=True), peer("2", down=True), backups=[peer("b")], method="ip_hash")
    balancer = IpHash(conf)
    pick = balancer.pick(client("10.0.0.1"))
    assert isinstance(pick, IpHashPick)
    chosen = pick.get(0)
    assert chosen is not None and chosen.conf.server == "b"
    assert pick.hash_tries == MAX_HASH_TRIES + 1
    assert pick.hash == 89  # the chain of a request that fell back is not kept


def test_round_robin_fallback_visits_usable_peers_in_smooth_order() -> None:
    """After the fallback, a request's retries are round robin's too."""
    conf = group(peer("1", down=True), peer("2"), peer("3"), method="ip_hash")
    balancer = IpHash(conf)
    # Each attempt fails: 2 and 3 are tried once each, then the budget (2) is spent.
    assert sorted(attempts(balancer, client("10.0.0.1"), failing="123")) == ["2", "3"]


def test_all_down_is_no_live_upstreams() -> None:
    balancer = IpHash(group(peer("1", down=True), peer("2", down=True), method="ip_hash"))
    assert attempts(balancer, client("10.0.0.1")) == "!"


def test_single_peer_is_round_robin_single_mode() -> None:
    balancer = IpHash(group(peer("1"), method="ip_hash"))
    assert attempts(balancer, client("10.0.0.1"), failing="1") == "1"
    assert attempts(balancer, client("10.0.0.1")) == "1"  # failures are not counted
    down = IpHash(group(peer("1", down=True), method="ip_hash"))
    assert attempts(down, client("10.0.0.1")) == "!"


def test_max_conns_full_peer_is_skipped() -> None:
    balancer = IpHash(group(peer("1", max_conns=1), peer("2"), peer("3"), method="ip_hash"))
    pick = balancer.pick(client("10.0.0.1"))
    held = pick.get(0)
    assert held is not None and held.conf.server == "1"
    assert attempts(balancer, client("10.0.0.1")) == "2"
    pick.free(held, Outcome.SUCCESS, 0)
    assert attempts(balancer, client("10.0.0.1")) == "1"
    assert find(balancer, "1").conns == 0


def test_registered() -> None:
    assert METHODS["ip_hash"] is IpHash
