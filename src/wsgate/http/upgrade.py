"""Which upgrades wsgate forwards, and which 101 answers open a tunnel.

nginx tunnels whenever the client sent any ``Upgrade`` header and the peer answered 101
(nginx-semantics.md §1.6). That lets a client smuggle requests past the proxy when a peer
answers 101 to something that is not a WebSocket handshake (peers.md, "Security
scenarios", 0ang3el scenario 2). wsgate is strict by default
(``proxy_upgrade_protocols websocket``):

* a request is a WebSocket upgrade only if it is a ``GET`` with ``Upgrade: websocket`` and a
  ``Sec-WebSocket-Key`` that decodes to 16 bytes (RFC 6455 §4.1); a bad or missing key is
  refused with 400;
* an ``Upgrade`` the location does not allow (``h2c``, or ``websocket`` on a POST) is
  removed before the request is proxied, so the peer sees a plain request and
  ``$http_upgrade`` is empty;
* a tunnel opens only on a 101 that carries ``Upgrade: websocket`` and the
  ``Sec-WebSocket-Accept`` computed from the key (RFC 6455 §4.2.2); any other 101 is a 502.

``proxy_upgrade_protocols any`` restores nginx's behaviour exactly.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib

__all__ = ["Upgrade", "accept_value", "check_upgrade_response", "classify_upgrade"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


class Upgrade(enum.Enum):
    """What to do with a request's ``Upgrade`` header."""

    NONE = "none"  # no Upgrade header: a plain request
    WEBSOCKET = "websocket"  # a valid WebSocket handshake: forward, tunnel on a checked 101
    OTHER = "other"  # an allowed non-WebSocket protocol: forward, tunnel on a 101
    ANY = "any"  # `proxy_upgrade_protocols any`: nginx's rule, tunnel on any 101
    STRIP = "strip"  # not allowed here: drop the header and proxy a plain request
    BAD_KEY = "bad_key"  # a WebSocket handshake without a valid key: 400


def _tokens(value: str) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()]


def classify_upgrade(
    method: str, headers: list[tuple[str, str]], allowed: tuple[str, ...]
) -> Upgrade:
    """Decide how to treat the request's ``Upgrade`` header (see the module docstring)."""
    values = [v for n, v in headers if n.lower() == "upgrade"]
    if not values:
        return Upgrade.NONE
    if "any" in allowed:
        return Upgrade.ANY
    tokens = [t for v in values for t in _tokens(v)]
    if tokens == ["websocket"]:
        if "websocket" not in allowed or method != "GET":
            return Upgrade.STRIP
        keys = [v for n, v in headers if n.lower() == "sec-websocket-key"]
        if len(keys) != 1 or not _valid_key(keys[0]):
            return Upgrade.BAD_KEY
        return Upgrade.WEBSOCKET
    if tokens and all(t in allowed for t in tokens) and "websocket" not in tokens:
        return Upgrade.OTHER
    return Upgrade.STRIP


def _valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def accept_value(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2 item 5.4)."""
    digest = hashlib.sha1(key.strip().encode("latin-1") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def check_upgrade_response(
    kind: Upgrade, request_headers: list[tuple[str, str]], response_headers: list[tuple[str, str]]
) -> str | None:
    """For a 101 answer: ``None`` if it may open a tunnel, else the reason it may not."""
    if kind is Upgrade.ANY or kind is Upgrade.OTHER:
        return None
    if kind is not Upgrade.WEBSOCKET:
        return "upstream sent 101 to a request that is not an upgrade"
    upgrade = [v for n, v in response_headers if n.lower() == "upgrade"]
    if [t for v in upgrade for t in _tokens(v)] != ["websocket"]:
        return 'upstream sent 101 without "Upgrade: websocket"'
    key = next(v for n, v in request_headers if n.lower() == "sec-websocket-key")
    accepts = [v.strip() for n, v in response_headers if n.lower() == "sec-websocket-accept"]
    if accepts != [accept_value(key)]:
        return 'upstream sent 101 with a wrong "Sec-WebSocket-Accept"'
    return None
