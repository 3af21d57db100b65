"""The least of RFC 6455 a WebSocket *server* needs to push messages: wsgate's status page.

wsgate never frames the traffic it proxies (a tunnel relays bytes, see ``proxy/tunnel.py``).
Only the ``wsgate_status`` location speaks WebSocket itself, and only one way: it sends
text messages and reads nothing but the client's Close. This module is that framing,
without I/O:

* :func:`text_frame` and :func:`close_frame` build unmasked, unfragmented server frames
  (RFC 6455 §5.2, §5.5.1); the caller writes the bytes to the client's transport.
* :class:`ClientFrames` takes the client's bytes as they arrive (:meth:`ClientFrames.feed`)
  and says when the client closed, or broke the protocol; payloads of every other frame
  (pings, messages) are skipped without being kept, so a client cannot make it buffer more
  than one frame header.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_PROTOCOL_ERROR",
    "ClientFrames",
    "Closed",
    "close_frame",
    "text_frame",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002

_OP_CLOSE = 0x8
_MAX_CONTROL = 125  # RFC 6455 §5.5: a control frame's payload is at most 125 bytes


def _header(opcode: int, length: int) -> bytes:
    first = 0x80 | opcode  # FIN, no RSV bits
    if length < 126:
        return struct.pack("!BB", first, length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, 126, length)
    return struct.pack("!BBQ", first, 127, length)


def text_frame(text: str) -> bytes:
    """One unmasked text frame carrying ``text`` (UTF-8); write it to the client as is."""
    payload = text.encode("utf-8")
    return _header(0x1, len(payload)) + payload


def close_frame(code: int = CLOSE_NORMAL) -> bytes:
    """An unmasked Close frame with ``code``; after writing it, close the transport."""
    payload = struct.pack("!H", code)
    return _header(_OP_CLOSE, len(payload)) + payload


@dataclass(frozen=True, slots=True)
class Closed:
    """What :meth:`ClientFrames.feed` found: the client's Close, or a protocol error.

    ``code`` is the code to send back in the server's own Close frame (the client's code
    echoed, 1000 when it gave none, 1002 for a protocol error); ``error`` describes a
    protocol error and is ``None`` for a clean Close.
    """

    code: int
    error: str | None = None


class ClientFrames:
    """Reads client frames only as far as needed to find a Close (see the module docstring).

    Call :meth:`feed` with each chunk the client sends. It returns ``None`` while the
    client is still open; on a :class:`Closed` result the caller writes
    ``close_frame(result.code)`` and closes the connection, and feeds no more bytes.
    """

    __slots__ = ("_buf", "_skip")

    def __init__(self) -> None:
        self._buf = bytearray()  # an incomplete frame header (or a Close frame's payload)
        self._skip = 0  # payload bytes of a non-Close frame still to be dropped

    def feed(self, data: bytes) -> Closed | None:
        """Consume ``data``; a :class:`Closed` once the client closed or misbehaved."""
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        self._buf += data
        while self._buf and not self._skip:
            result, progressed = self._parse()
            if result is not None or not progressed:
                return result
        return None

    def _parse(self) -> tuple[Closed | None, bool]:
        """Look at one frame at the start of the buffer: ``(Closed or None, consumed)``."""
        buf = self._buf
        if len(buf) < 2:
            return None, False
        first, second = buf[0], buf[1]
        if first & 0x70:
            return Closed(CLOSE_PROTOCOL_ERROR, "reserved bits set"), False
        if not second & 0x80:
            # RFC 6455 §5.1: a server must close on an unmasked client frame.
            return Closed(CLOSE_PROTOCOL_ERROR, "unmasked client frame"), False
        opcode = first & 0x0F
        length = second & 0x7F
        at = 2
        if length == 126:
            if len(buf) < 4:
                return None, False
            (length,) = struct.unpack_from("!H", buf, 2)
            at = 4
        elif length == 127:
            if len(buf) < 10:
                return None, False
            (length,) = struct.unpack_from("!Q", buf, 2)
            at = 10
        if opcode >= 0x8 and (length > _MAX_CONTROL or not first & 0x80):
            return Closed(CLOSE_PROTOCOL_ERROR, "bad control frame"), False
        if len(buf) < at + 4:
            return None, False
        mask = bytes(buf[at : at + 4])
        at += 4
        if opcode != _OP_CLOSE:
            # Not a Close: drop the frame, keeping nothing of its payload.
            here = min(length, len(buf) - at)
            del buf[: at + here]
            self._skip = length - here
            return None, True
        if len(buf) < at + length:
            return None, False
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[at : at + length]))
        del buf[: at + length]
        if length == 1:
            return Closed(CLOSE_PROTOCOL_ERROR, "close frame with a one-byte payload"), True
        if length == 0:
            return Closed(CLOSE_NORMAL), True
        (code,) = struct.unpack_from("!H", payload)
        return Closed(code), True
