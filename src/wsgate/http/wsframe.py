"""WebSocket framing without I/O (RFC 6455 §5): what wsgate reads and writes itself.

Its users, one module:

* The status page (``wsgate_status``) speaks WebSocket itself, one way: :func:`text_frame`
  and :func:`close_frame` build its frames, and :class:`ClientFrames` reads the client's
  bytes only as far as needed to find its Close.
* The frame-aware tunnel (``proxy/wstunnel.py``) watches frame boundaries in each direction
  with a :class:`FrameScanner`: headers only, payloads are passed on without being copied
  or unmasked. It counts messages, enforces ``websocket_max_frame_size`` and
  ``websocket_max_message_size``, notes the first Close code, swallows the Pongs that
  answer wsgate's own Pings, and lets wsgate put its own frames (Ping, Close) into a
  direction at a frame boundary (:meth:`FrameScanner.inject`).
* Frames wsgate sends to a backend (the tunnel's Pings and Closes, the health checks'
  probes in ``http/probe.py``) are masked as a client's must be (§5.3): ``mask=True``.

The three readers (:class:`ClientFrames`, :class:`FrameScanner` and the probe) find a
frame's length and header size with :func:`frame_header`.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_NO_STATUS",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SERVICE_RESTART",
    "MAX_CONTROL",
    "OP_CLOSE",
    "OP_PING",
    "OP_PONG",
    "ClientFrames",
    "Closed",
    "FrameScanner",
    "close_frame",
    "frame",
    "frame_header",
    "ping_frame",
    "text_frame",
]

# RFC 6455 §7.4.1 and the IANA registry (1012 "Service Restart").
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_NO_STATUS = 1005  # §7.1.5: a Close frame without a code
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_SERVICE_RESTART = 1012

OP_CONTINUATION = 0x0
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
MAX_CONTROL = 125  # RFC 6455 §5.5: a control frame's payload is at most 125 bytes


def frame_header(buf: bytes | bytearray, pos: int = 0) -> tuple[int, int] | None:
    """The payload length and the header size of the frame starting at ``buf[pos]``.

    Call once the frame's first two bytes are in ``buf`` (the flags, opcode and mask bit
    need no more). Returns ``(payload length, header size)``, the size counting the
    extended length and the masking key (§5.2), which ends the header: the payload starts
    at ``pos + size``, and a masked frame's key is the 4 bytes before it. ``None`` while
    the header is incomplete: the caller keeps the bytes and calls again with more.
    """
    second = buf[pos + 1]
    length = second & 0x7F
    size = 2 if length < 126 else 4 if length == 126 else 10
    if second & 0x80:
        size += 4
    if len(buf) - pos < size:
        return None
    if length == 126:
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
    elif length == 127:
        length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
    return length, size


def _header(opcode: int, length: int, masked: bool = False) -> bytes:
    first = 0x80 | opcode  # FIN, no RSV bits
    bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", first, bit | length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, bit | 126, length)
    return struct.pack("!BBQ", first, bit | 127, length)


def _masked(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (§5.3), via one big-int XOR."""
    if not payload:
        return payload
    n = len(payload)
    keys = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes = b"", mask: bool = False, key: bytes | None = None) -> bytes:
    """One whole frame (FIN set). With ``mask`` (frames wsgate sends to a backend, as a
    client, §5.3) the payload is masked with a fresh random key, or with ``key`` (4 bytes)
    when one is given."""
    if not mask:
        return _header(opcode, len(payload)) + payload
    if key is None:
        key = os.urandom(4)
    return _header(opcode, len(payload), True) + key + _masked(payload, key)


def text_frame(text: str) -> bytes:
    """One unmasked text frame carrying ``text`` (UTF-8); write it to the client as is."""
    return frame(0x1, text.encode("utf-8"))


def close_frame(code: int = CLOSE_NORMAL, mask: bool = False, key: bytes | None = None) -> bytes:
    """A Close frame with ``code``; after writing it, wait for the peer's Close or close
    the transport."""
    return frame(OP_CLOSE, struct.pack("!H", code), mask, key)


def ping_frame(payload: bytes, mask: bool = False, key: bytes | None = None) -> bytes:
    """A Ping frame; the peer answers with a Pong carrying the same ``payload`` (§5.5.2)."""
    return frame(OP_PING, payload, mask, key)


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
        if opcode >= 0x8 and ((second & 0x7F) > MAX_CONTROL or not first & 0x80):
            return Closed(CLOSE_PROTOCOL_ERROR, "bad control frame"), False
        header = frame_header(buf)
        if header is None:
            return None, False
        length, at = header
        mask = bytes(buf[at - 4 : at])
        if opcode != OP_CLOSE:
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


class FrameScanner:
    """The frame boundaries of one direction of a frame-aware tunnel (§5.2), from headers.

    Call :meth:`feed` with every chunk received from the source and write what it returns
    to the destination: ``data`` itself (not copied) unless something is held back or
    removed. Nothing is validated: a frame the endpoints would reject passes as it came
    (the endpoint rejects it, as without the proxy). What the scanner adds:

    * ``messages``: data messages relayed (counted when their final frame starts);
      ``close_code``: the code of the first Close frame (1005 when it has none);
      ``on_close(code)`` runs for every Close frame's code.
    * ``max_frame`` / ``max_message`` (0: no limit): a data frame whose length, or whose
      message's total, is over the limit is not passed on; ``on_violation(code, why)``
      runs and the direction drops everything after it (it still finds Close frames).
    * ``expect``: the payload of a Ping wsgate sent toward the source. The Pong that
      carries it is removed from the stream and ``on_pong(frame_size)`` runs; other Pongs
      pass.
    * :meth:`inject`: wsgate's own frame goes out now when the direction is at a frame
      boundary, else right after the current frame.

    Held back at most: an incomplete frame header (14 bytes) or a Pong of the awaited
    length (131 bytes).
    """

    __slots__ = (
        "cbuf",
        "close_code",
        "collect",
        "dropping",
        "expect",
        "final",
        "head",
        "held",
        "mask",
        "max_frame",
        "max_message",
        "message_size",
        "messages",
        "on_close",
        "on_pong",
        "on_violation",
        "partial",
        "pending",
        "remaining",
    )

    def __init__(self, max_frame: int = 0, max_message: int = 0) -> None:
        self.max_frame = max_frame
        self.max_message = max_message
        self.remaining = 0  # payload bytes of the current frame still to come
        self.head = b""  # an incomplete frame header, held back until it is whole
        self.partial = False  # part of the current frame has been passed on
        self.messages = 0
        self.message_size = 0  # payload so far of the fragmented message in progress
        self.close_code: int | None = None
        self.expect: bytes | None = None
        self.held: bytearray | None = None  # a Pong that may answer wsgate's Ping
        self.mask = b""  # masking key of the frame being looked into (Close, held Pong)
        self.collect = 0  # Close payload bytes still to read for its code
        self.cbuf = b""
        self.pending: list[bytes] = []  # wsgate's frames waiting for a frame boundary
        self.final = False  # the last pending frame is a Close: nothing passes after it
        self.dropping = False  # pass nothing on (after wsgate's Close or a violation)
        self.on_close: Callable[[int], None] | None = None
        self.on_pong: Callable[[int], None] | None = None  # gets the Pong frame's size
        self.on_violation: Callable[[int, str], None] | None = None

    def feed(self, data: bytes) -> bytes:
        """Take a chunk from the source; return the bytes to write to the destination."""
        rem = self.remaining
        n = len(data)
        if rem:
            if rem > n and self.held is None and not self.collect and not self.dropping:
                # Inside a frame's payload that goes on past this chunk (bulk transfers).
                self.remaining = rem - n
                self.partial = True
                return data
        elif n > 1 and not self.head and not self.dropping and not self.message_size:
            # Exactly one whole small message (FIN text or binary): the common case of
            # chat-like traffic, counted without the general scan.
            b0, b1 = data[0], data[1]
            length = b1 & 0x7F
            if (
                (b0 & 0x8F == 0x81 or b0 & 0x8F == 0x82)  # FIN, any RSV (extensions)
                and length < 126
                and length + (6 if b1 & 0x80 else 2) == n
                and (not self.max_frame or length <= self.max_frame)
                and (not self.max_message or length <= self.max_message)
            ):
                self.messages += 1
                return data
        return self._scan(data)

    def inject(self, data: bytes, final: bool = False) -> bytes | None:
        """Put wsgate's frame ``data`` into this direction.

        Returns ``data`` when the direction is at a frame boundary: the caller writes it
        to the destination now. Otherwise returns ``None`` and :meth:`feed` emits it right
        after the current frame. With ``final`` (a Close), nothing passes after it.
        """
        if not self.partial:
            if final:
                self.dropping = True
            return data
        self.pending.append(data)
        if final:
            self.final = True
        return None

    def _scan(self, data: bytes) -> bytes:
        if self.head:
            data = self.head + data
            self.head = b""
        n = len(data)
        out: list[bytes] = []
        pos = start = 0  # data[start:pos] is passed on when the run ends
        while pos < n:
            rem = self.remaining
            if rem:
                take = min(rem, n - pos)
                end = pos + take
                if self.held is not None:
                    self.held += data[pos:end]
                    start = end
                elif self.collect:
                    c = min(self.collect, take)
                    self.cbuf += data[pos : pos + c]
                    self.collect -= c
                    if not self.collect:
                        self._noted_close()
                pos = end
                self.remaining = rem - take
                if self.remaining:
                    self.partial = self.held is None and not self.dropping
                    break
                start = self._frame_end(data, out, start, pos)
                continue
            # A frame header starts at pos (§5.2).
            if n - pos < 2:
                self._pass(out, data, start, pos)
                self.head = data[pos:]
                return _joined(out)
            header = frame_header(data, pos)
            if header is None:
                self._pass(out, data, start, pos)
                self.head = data[pos:]
                return _joined(out)
            length, size = header
            b0 = data[pos]
            masked = data[pos + 1] & 0x80
            opcode = b0 & 0x0F
            if opcode < 8:  # a data frame (reserved data opcodes count as data)
                total = self.message_size + length if opcode == OP_CONTINUATION else length
                if not self.dropping and (
                    (self.max_frame and length > self.max_frame)
                    or (self.max_message and total > self.max_message)
                ):
                    self._pass(out, data, start, pos)
                    self.dropping = True
                    self.pending.clear()
                    if self.on_violation is not None:
                        what = (
                            f"frame of {length} bytes"
                            if self.max_frame and length > self.max_frame
                            else f"message of more than {self.max_message} bytes"
                        )
                        self.on_violation(CLOSE_MESSAGE_TOO_BIG, what)
                if b0 & 0x80:
                    if not self.dropping:  # relayed messages only
                        self.messages += 1
                    self.message_size = 0
                else:
                    self.message_size = total
            elif opcode == OP_CLOSE:
                self.mask = data[pos + size - 4 : pos + size] if masked else b""
                if length >= 2:
                    self.collect = 2
                    self.cbuf = b""
                else:  # §7.1.5: no code (a 1-byte payload is invalid: no code either)
                    self.cbuf = b""
                    self._noted_close()
            elif opcode == OP_PONG and self.expect is not None and length == len(self.expect):
                self._pass(out, data, start, pos)
                self.held = bytearray(data[pos : pos + size])
                self.mask = data[pos + size - 4 : pos + size] if masked else b""
                pos += size
                start = pos
                self.remaining = length
                continue
            pos += size
            self.remaining = length
            if length == 0:
                start = self._frame_end(data, out, start, pos)
            else:
                self.partial = not self.dropping  # the header is in the run passed on
        self._pass(out, data, start, pos)
        return _joined(out)

    def _pass(self, out: list[bytes], data: bytes, start: int, end: int) -> None:
        if start < end and not self.dropping:
            out.append(data[start:end])

    def _frame_end(self, data: bytes, out: list[bytes], start: int, pos: int) -> int:
        """The current frame ended at ``pos``; returns where the next run starts."""
        self.partial = False
        held = self.held
        if held is not None:
            self.held = None
            expect = self.expect or b""
            payload = bytes(held[len(held) - len(expect) :])
            if self.mask:
                payload = _masked(payload, self.mask)
            if payload == expect:
                self.expect = None
                if self.on_pong is not None:
                    self.on_pong(len(held))
            elif not self.dropping:
                out.append(bytes(held))
            return pos
        if self.pending:
            self._pass(out, data, start, pos)
            if not self.dropping:
                out.extend(self.pending)
            self.pending.clear()
            if self.final:
                self.dropping = True
            return pos
        return start

    def _noted_close(self) -> None:
        code = CLOSE_NO_STATUS
        if len(self.cbuf) == 2:
            raw = _masked(self.cbuf, self.mask) if self.mask else self.cbuf
            code = int.from_bytes(raw, "big")
        if self.close_code is None:
            self.close_code = code
        if self.on_close is not None:
            self.on_close(code)


def _joined(out: list[bytes]) -> bytes:
    if len(out) == 1:
        return out[0]
    return b"".join(out)
