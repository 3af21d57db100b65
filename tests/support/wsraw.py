"""A raw RFC 6455 client for conformance tests: hand-built frames, every byte recorded.

:func:`frame` builds any frame, valid or not (reserved bits, unknown opcodes, unmasked,
oversized control frames, non-minimal lengths). :class:`RawClient` performs the opening
handshake on a socket with ``TCP_NODELAY``, writes bytes in the pieces it is given (one
``write`` each), and records everything it sends after its request head (:attr:`sent`) and
everything it receives after the ``101`` head (:attr:`received`). :func:`parse_frames`
reads the server's frames back.

The mask key is fixed (:data:`MASK`), so a server receives the same bytes on every run and
the runs of one scenario can be compared byte for byte. Every read is bounded by
:data:`IO_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tests.support.backend import websocket_accept

__all__ = [
    "IO_TIMEOUT",
    "KEY",
    "MASK",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Frame",
    "RawClient",
    "apply_mask",
    "close_code",
    "close_payload",
    "frame",
    "header_length",
    "messages",
    "parse_frames",
]

IO_TIMEOUT = 10.0
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MASK = b"\x5a\xc3\x0f\x96"  # fixed: the bytes a server receives are the same on every run
KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample nonce; deterministic too


def apply_mask(data: bytes, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (masking and unmasking are the same)."""
    n = len(data)
    if n == 0:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = MASK,
    length_bytes: int | None = None,
) -> bytes:
    """One frame, exactly as asked (nothing is checked).

    Args:
        opcode: 0..15.
        rsv: the three reserved bits as a number 0..7 (RSV1 is 4).
        mask: the masking key, or ``None`` for an unmasked frame.
        length_bytes: 0, 2 or 8 extended length bytes; by default the shortest form
            (RFC 6455 §5.2). A longer form than needed is a non-minimal encoding.
    """
    n = len(payload)
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if length_bytes == 0:
        head = bytes([first, mask_bit | n])
    elif length_bytes == 2:
        head = bytes([first, mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + n.to_bytes(8, "big")
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


def header_length(data: bytes) -> int:
    """Length of the header (with extended length and mask key) of the frame at ``data``."""
    n = data[1] & 0x7F
    extended = 0 if n < 126 else 2 if n == 126 else 8
    return 2 + extended + (4 if data[1] & 0x80 else 0)


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


@dataclass(frozen=True, slots=True)
class Frame:
    """A parsed frame (payload unmasked)."""

    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes

    def __repr__(self) -> str:  # short: a 1 MiB payload must not flood a failure message
        body = self.payload if len(self.payload) <= 40 else self.payload[:40] + b"..."
        flags = ("F" if self.fin else "-") + (f"r{self.rsv}" if self.rsv else "")
        mask = " masked" if self.masked else ""
        return f"<{flags} op={self.opcode:x}{mask} len={len(self.payload)} {body!r}>"


def parse_frames(data: bytes) -> tuple[list[Frame], int]:
    """Every complete frame at the start of ``data`` and the number of bytes they take."""
    frames = []
    pos = 0
    while len(data) - pos >= 2:
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        at = pos + 2
        if n == 126:
            if len(data) < at + 2:
                break
            n = int.from_bytes(data[at : at + 2], "big")
            at += 2
        elif n == 127:
            if len(data) < at + 8:
                break
            n = int.from_bytes(data[at : at + 8], "big")
            at += 8
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            key = data[at : at + 4]
            at += 4
        if len(data) < at + n:
            break
        payload = data[at : at + n]
        if masked:
            payload = apply_mask(payload, key)
        frames.append(Frame(bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, masked, payload))
        pos = at + n
    return frames, pos


def messages(frames: Iterable[Frame]) -> list[tuple[int, bytes]]:
    """The data messages among ``frames`` (fragments joined), as ``(opcode, payload)``."""
    out: list[tuple[int, bytes]] = []
    opcode, parts = 0, bytearray()
    for f in frames:
        if f.opcode in (OP_TEXT, OP_BINARY):
            opcode, parts = f.opcode, bytearray(f.payload)
        elif f.opcode == OP_CONT:
            parts += f.payload
        else:
            continue
        if f.fin:
            out.append((opcode, bytes(parts)))
    return out


def close_code(frames: Iterable[Frame]) -> int | None:
    """The status code of the first Close frame (1005 for an empty one), or ``None``."""
    for f in frames:
        if f.opcode == OP_CLOSE:
            return int.from_bytes(f.payload[:2], "big") if len(f.payload) >= 2 else 1005
    return None


@dataclass(eq=False)
class RawClient:
    """A handshaken connection; use :meth:`connect`."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    head: bytes  # the server's response head
    sent: bytearray = field(default_factory=bytearray)  # after our request head
    received: bytearray = field(default_factory=bytearray)  # after the 101 head
    frames: list[Frame] = field(default_factory=list)
    parsed: int = 0  # bytes of `received` parsed into `frames`
    close_sent: bool = False
    answered_at: int | None = None  # len(sent) when the server's Close was answered
    eof: str = ""  # how the stream ended: "eof" or "reset"

    @classmethod
    async def connect(
        cls, port: int, path: str, *, early: bytes = b"", headers: str = ""
    ) -> RawClient:
        """Open the connection and handshake; ``early`` goes in the same write as the head."""
        async with asyncio.timeout(IO_TIMEOUT):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            request = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                f"Sec-WebSocket-Version: 13\r\n{headers}\r\n"
            ).encode()
            writer.write(request + early)
            head = await reader.readuntil(b"\r\n\r\n")
        client = cls(reader, writer, head, sent=bytearray(early))
        if not head.startswith(b"HTTP/1.1 101 "):
            client.writer.close()
            raise AssertionError(f"no 101 from port {port}: {head!r}")
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in head.split(b"\r\n")[1:])
        }
        if fields.get(b"sec-websocket-accept") != websocket_accept(KEY.encode()):
            client.writer.close()
            raise AssertionError(f"wrong Sec-WebSocket-Accept: {head!r}")
        return client

    async def write(self, *pieces: bytes) -> None:
        """Write each piece with a ``write`` of its own.

        After each piece the task yields to the event loop once (no timed wait), so that a
        proxy on this loop reads the piece before the next one is written: with
        ``TCP_NODELAY`` each piece leaves as a segment of its own.
        """
        for piece in pieces:
            self.writer.write(piece)
            self.sent += piece
            async with asyncio.timeout(IO_TIMEOUT):
                await self.writer.drain()
            await asyncio.sleep(0)

    async def _read_more(self) -> bool:
        """Read one chunk; ``False`` at EOF (or reset)."""
        try:
            async with asyncio.timeout(IO_TIMEOUT):
                data = await self.reader.read(1 << 20)
        except ConnectionError:
            self.eof = "reset"
            return False
        if not data:
            self.eof = "eof"
            return False
        self.received += data
        frames, used = parse_frames(bytes(self.received[self.parsed :]))
        self.frames += frames
        self.parsed += used
        return True

    async def until(self, done: Callable[[list[Frame]], bool]) -> list[Frame]:
        """Read until ``done(frames)`` holds (AssertionError if the stream ends first)."""
        while not done(self.frames):
            if not await self._read_more():
                raise AssertionError(f"stream ended ({self.eof}) with frames {self.frames}")
        return self.frames

    async def until_messages(self, count: int) -> list[Frame]:
        return await self.until(lambda frames: len(messages(frames)) >= count)

    async def until_close(self) -> list[Frame]:
        return await self.until(lambda frames: close_code(frames) is not None)

    async def close(self, payload: bytes | None = b"\x03\xe8") -> None:
        """Send a Close frame (``payload``; ``None`` sends none) and read until the end.

        When the server's Close comes first and none was sent, its status code is echoed
        (RFC 6455 §5.5.1). The socket is closed on return.
        """
        try:
            if payload is not None:
                await self.send_close(payload)
            while True:
                code = close_code(self.frames)
                if code is not None and not self.close_sent:
                    self.answered_at = len(self.sent)
                    await self.send_close(b"" if code == 1005 else code.to_bytes(2, "big"))
                if not await self._read_more():
                    break
        finally:
            self.writer.close()

    async def send_close(self, payload: bytes) -> None:
        self.close_sent = True
        # The server may have closed first: what it sent is still read.
        with contextlib.suppress(ConnectionError):
            await self.write(frame(OP_CLOSE, payload))
