"""Which upgrades are forwarded and which 101 answers open a tunnel (RFC 6455 §4)."""

from __future__ import annotations

import pytest

from wsgate.http.upgrade import Upgrade, accept_value, check_upgrade_response, classify_upgrade

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS = [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", KEY)]


def test_accept_value_rfc_example() -> None:
    assert accept_value(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize(
    ("method", "headers", "allowed", "kind"),
    [
        ("GET", [("Host", "a")], ("websocket",), Upgrade.NONE),
        ("GET", WS, ("websocket",), Upgrade.WEBSOCKET),
        (
            "GET",
            [("Upgrade", "WebSocket"), ("Sec-WebSocket-Key", KEY)],
            ("websocket",),
            Upgrade.WEBSOCKET,
        ),
        ("GET", [("Upgrade", "websocket")], ("websocket",), Upgrade.BAD_KEY),
        (
            "GET",
            [("Upgrade", "websocket"), ("Sec-WebSocket-Key", "short")],
            ("websocket",),
            Upgrade.BAD_KEY,
        ),
        ("GET", [*WS, ("Sec-WebSocket-Key", KEY)], ("websocket",), Upgrade.BAD_KEY),
        ("POST", WS, ("websocket",), Upgrade.STRIP),
        ("GET", [("Upgrade", "h2c")], ("websocket",), Upgrade.STRIP),
        ("GET", [("Upgrade", "h2c")], ("websocket", "h2c"), Upgrade.OTHER),
        (
            "GET",
            [("Upgrade", "websocket, h2c"), ("Sec-WebSocket-Key", KEY)],
            ("websocket",),
            Upgrade.STRIP,
        ),
        ("POST", [("Upgrade", "anything")], ("any",), Upgrade.ANY),
        ("GET", WS, ("h2c",), Upgrade.STRIP),
    ],
)
def test_classify(
    method: str, headers: list[tuple[str, str]], allowed: tuple[str, ...], kind: Upgrade
) -> None:
    assert classify_upgrade(method, headers, allowed) is kind


GOOD = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
]


@pytest.mark.parametrize(
    ("kind", "response", "ok"),
    [
        (Upgrade.WEBSOCKET, GOOD, True),
        (Upgrade.WEBSOCKET, GOOD[:2], False),  # no accept
        (Upgrade.WEBSOCKET, [*GOOD[:2], ("Sec-WebSocket-Accept", "wrong")], False),
        (Upgrade.WEBSOCKET, [("Upgrade", "h2c"), GOOD[2]], False),
        (Upgrade.WEBSOCKET, [*GOOD, ("Sec-WebSocket-Accept", GOOD[2][1])], False),
        (Upgrade.NONE, GOOD, False),
        (Upgrade.STRIP, GOOD, False),
        (Upgrade.ANY, [], True),
        (Upgrade.OTHER, [("Upgrade", "h2c")], True),
    ],
)
def test_check_response(kind: Upgrade, response: list[tuple[str, str]], ok: bool) -> None:
    assert (check_upgrade_response(kind, WS, response) is None) is ok
