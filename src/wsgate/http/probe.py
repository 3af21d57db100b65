"""One ``websocket_health_check`` probe as a client-side WebSocket handshake. No I/O.

The shape is websockets' sans-I/O ``Protocol``: the I/O layer (``proxy/health.py``)
connects, then loops: write :meth:`Probe.data_to_send`, read, feed what it read to
:meth:`Probe.receive_data` (or :meth:`Probe.receive_eof` at EOF), until
:attr:`Probe.state` is :attr:`ProbeState.PASSED` or :attr:`ProbeState.FAILED`. It bounds
the whole exchange by the check's ``timeout`` and, on a timeout, words the failure with
:attr:`Probe.action`.

Theory of operation:

* ``HANDSHAKE``: the request is ``GET URI HTTP/1.1`` with ``Host`` (the peer's address),
  ``Upgrade: websocket``, ``Connection: Upgrade``, ``Sec-WebSocket-Version: 13`` and a
  random 16-byte ``Sec-WebSocket-Key`` (RFC 6455 §4.1). The answer passes only as a
  ``101`` with ``Upgrade: websocket`` and the right ``Sec-WebSocket-Accept``
  (``http.upgrade.check_upgrade_response``, the test the proxy applies before a tunnel).
* ``PING`` (with ``ping``): a masked Ping with a random payload is sent (RFC 6455 §5.5.2);
  the check passes on the Pong that echoes that payload (§5.5.3). Frames before it (data,
  other pings, unsolicited pongs) are skipped without being kept; a Close, a masked frame
  (§5.1) or reserved bits fail the check.
* On success a masked Close 1000 is queued (§5.5.1): write it, then close the
  connection without waiting for the peer's Close.

Invariants: at most :data:`HEAD_LIMIT` bytes of response head and one frame header are
buffered, whatever the peer sends; once the state is final, input is ignored.
"""

from __future__ import annotations

import base64
import enum
import os
import struct

from wsgate.errors import HTTPError
from wsgate.http.parser import find_head_end, parse_response_head
from wsgate.http.upgrade import Upgrade, check_upgrade_response
from wsgate.http.wsframe import (
    CLOSE_NO_STATUS,
    CLOSE_NORMAL,
    MAX_CONTROL,
    OP_CLOSE,
    OP_PONG,
    close_frame,
    frame_header,
    ping_frame,
)

__all__ = ["HEAD_LIMIT", "Probe", "ProbeState"]

HEAD_LIMIT = 16 * 1024  # a 101 head is a few hundred bytes; proxy_buffer_size is 4k


_READING_HEADER = "reading response header from upstream"
_WAITING_PONG = "waiting for pong from upstream"


class ProbeState(enum.Enum):
    """Where a probe is; PASSED and FAILED are final."""

    HANDSHAKE = "handshake"
    PING = "ping"
    PASSED = "passed"
    FAILED = "failed"


class Probe:
    """One check of one peer (see the module docstring).

    Args:
        uri: the request target (``uri=``).
        host: the ``Host`` header: the peer's address as nginx prints it.
        ping: whether to require a Pong after the 101 (``ping``).
        key: the ``Sec-WebSocket-Key`` (random when ``None``; tests pass their own).
        ping_payload: the Ping's payload (8 random bytes when ``None``).
    """

    __slots__ = (
        "_buf",
        "_key",
        "_out",
        "_ping",
        "_ping_payload",
        "_request_headers",
        "_skip",
        "reason",
        "state",
    )

    def __init__(
        self,
        uri: str,
        host: str,
        *,
        ping: bool = False,
        key: str | None = None,
        ping_payload: bytes | None = None,
    ) -> None:
        self._key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
        self._ping = ping
        self._ping_payload = ping_payload if ping_payload is not None else os.urandom(8)
        self._request_headers = [
            ("Host", host),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", self._key),
            ("Sec-WebSocket-Version", "13"),
        ]
        lines = [f"GET {uri} HTTP/1.1"] + [f"{n}: {v}" for n, v in self._request_headers]
        self._out = bytearray(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self._buf = bytearray()
        self._skip = 0  # payload bytes of a skipped frame still to drop
        self.state = ProbeState.HANDSHAKE
        self.reason: str | None = None  # why the check failed, in nginx's style of words

    @property
    def done(self) -> bool:
        """Whether the result is known (stop reading; write :meth:`data_to_send` once more)."""
        return self.state is ProbeState.PASSED or self.state is ProbeState.FAILED

    @property
    def action(self) -> str:
        """What the probe waits for, for a timeout's message (``while ACTION``)."""
        return _WAITING_PONG if self.state is ProbeState.PING else _READING_HEADER

    def data_to_send(self) -> bytes:
        """Bytes to write to the peer now (the request, the Ping, the Close); empties the
        queue. Call it after creating the probe and after each ``receive_*``."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed bytes read from the peer; then look at :attr:`state` and call
        :meth:`data_to_send`."""
        if self.done:
            return
        if self.state is ProbeState.HANDSHAKE:
            self._buf += data
            end = find_head_end(self._buf)
            if end < 0:
                if len(self._buf) > HEAD_LIMIT:
                    self._fail("upstream sent too big header")
                return
            rest = bytes(self._buf[end:])
            head = bytes(self._buf[:end])
            self._buf.clear()
            if not self._handshake(head):
                return
            data = rest
        self._frames(data)

    def receive_eof(self) -> None:
        """The peer closed the connection; the check fails unless it already passed."""
        if not self.done:
            self._fail(f"upstream prematurely closed connection while {self.action}")

    # -- internals ------------------------------------------------------------------------

    def _fail(self, reason: str) -> None:
        self.state = ProbeState.FAILED
        self.reason = reason
        self._buf.clear()

    def _pass(self) -> None:
        self.state = ProbeState.PASSED
        self._out += close_frame(CLOSE_NORMAL, mask=True)
        self._buf.clear()

    def _handshake(self, head: bytes) -> bool:
        """Judge the response head; ``True`` when a Pong is now awaited."""
        try:
            resp = parse_response_head(head)
        except HTTPError as exc:
            self._fail(exc.message)
            return False
        if resp.status != 101:
            self._fail(f"upstream returned {resp.status} instead of 101")
            return False
        refused = check_upgrade_response(Upgrade.WEBSOCKET, self._request_headers, resp.headers)
        if refused is not None:
            self._fail(refused)
            return False
        if not self._ping:
            self._pass()
            return False
        self.state = ProbeState.PING
        self._out += ping_frame(self._ping_payload, mask=True)
        return True

    def _frames(self, data: bytes) -> None:
        """Read server frames until the matching Pong (or a reason to fail)."""
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        self._buf += data
        while self._buf and not self._skip and not self.done:
            if not self._frame():
                return

    def _frame(self) -> bool:
        """Look at the frame at the start of the buffer; ``False`` when it is incomplete."""
        buf = self._buf
        if len(buf) < 2:
            return False
        first, second = buf[0], buf[1]
        if first & 0x70:
            self._fail("upstream sent a WebSocket frame with reserved bits set")
            return False
        if second & 0x80:
            # RFC 6455 §5.1: a client closes the connection on a masked server frame.
            self._fail("upstream sent a masked WebSocket frame")
            return False
        opcode = first & 0x0F
        if opcode >= 0x8 and ((second & 0x7F) > MAX_CONTROL or not first & 0x80):
            self._fail("upstream sent a bad WebSocket control frame")
            return False
        header = frame_header(buf)
        if header is None:
            return False
        length, at = header
        if opcode not in (OP_CLOSE, OP_PONG):
            # Data or a Ping of the peer's own: drop it, keeping nothing of its payload.
            here = min(length, len(buf) - at)
            del buf[: at + here]
            self._skip = length - here
            return True
        if len(buf) < at + length:
            return False
        payload = bytes(buf[at : at + length])
        del buf[: at + length]
        if opcode == OP_CLOSE:
            code = struct.unpack_from("!H", payload)[0] if length >= 2 else CLOSE_NO_STATUS
            self._fail(f"upstream closed the WebSocket ({code}) while {_WAITING_PONG}")
        elif payload == self._ping_payload:
            self._pass()
        return True
