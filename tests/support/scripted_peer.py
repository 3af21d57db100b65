"""A peer for upstream keep-alive tests: it records which request paths arrived on which
of its connections and answers by path, and never closes a connection on its own unless
the answer needs it, so a test sees the proxy's own decision to reuse a connection.

Used in-process by ``tests/integration/test_upstream_keepalive.py`` and, behind real nginx
and wsgate alike, by ``tests/interop/test_nginx_upstream_keepalive.py``.

:class:`ScriptPlayer` is the other kind of scripted peer: it answers each request with the
exact bytes of a :class:`Script` chosen by the request's path, in the writes the script
says, then closes or keeps the connection (``tests/interop/test_nginx_response_fuzz.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from tests.support.lb import IO_TIMEOUT, PeerServer

__all__ = ["OK", "RESPONSES", "Script", "ScriptPlayer", "ScriptedPeer"]

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
RESPONSES = {
    "/ok": OK,
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    "/say-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    "/http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "/http10-ka": b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
    "/extra": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokXX",
}


class ScriptedPeer(PeerServer):
    """An HTTP/1.1 peer that answers by path (:data:`RESPONSES`; anything else: ``/ok``)
    and keeps every connection open; ``conns[i]`` lists the paths received on its i-th
    connection, ``closed`` counts connections the proxy closed.

    ``/close-delimited`` answers without framing and closes; ``/slow`` answers after
    0.3 s. With :attr:`slam_reused` set, the next request that arrives on a connection
    which already served one is dropped unanswered (the connection is closed), as a peer
    that closes an idle connection just as the proxy reuses it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conns: list[list[str]] = []
        self.closed = 0
        self.slam_reused = False

    def _drop_connections(self) -> None:
        self.drop_all()

    def drop_all(self) -> None:
        """Close every open connection from the peer's side (FIN)."""
        for writer in list(self._writers):
            writer.close()

    async def wait(self, condition: str) -> None:
        """Wait until ``eval(condition)`` on this peer holds, bounded by IO_TIMEOUT."""
        async with asyncio.timeout(IO_TIMEOUT):
            while not eval(condition, {}, {"peer": self}):
                self._changed.clear()
                await self._changed.wait()

    @property
    def requests(self) -> int:
        return sum(len(c) for c in self.conns)

    def _changed_now(self) -> None:
        self._changed.set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = self._track(writer)
        paths: list[str] = []
        self.conns.append(paths)
        self._changed_now()
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                if self.slam_reused and paths:
                    self.slam_reused = False
                    return
                paths.append(path)
                self._changed_now()
                if path == "/close-delimited":
                    writer.write(b"HTTP/1.1 200 OK\r\n\r\nok")
                    await writer.drain()
                    return
                if path == "/slow":
                    await asyncio.sleep(0.3)
                writer.write(RESPONSES.get(path, OK))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            self.closed += 1
        finally:
            self._untrack(writer, task)
            self._changed_now()


@dataclass(frozen=True, slots=True)
class Script:
    """What :class:`ScriptPlayer` sends for one path: ``writes`` in order (each drained
    before the next), then it closes the connection (``close``) or waits until the proxy
    closes it."""

    writes: tuple[bytes, ...]
    close: bool


class ScriptPlayer(PeerServer):
    """A peer that answers the first request head of each connection with the script of
    its path (the query string ignored; :attr:`default` for paths without one).

    ``heads`` records every request head received, by path, so that a test can check what
    the proxy asked. A script's writes are separated by :attr:`PAUSE` so that they usually
    reach the proxy as separate reads; what a test compares must not depend on it.
    """

    PAUSE = 0.005  # seconds between two writes of a script

    def __init__(self, scripts: Mapping[str, Script], default: Script, port: int = 0) -> None:
        super().__init__(port)
        self.scripts = scripts
        self.default = default
        self.heads: dict[str, list[bytes]] = {}

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = self._track(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].split(b"?", 1)[0].decode("latin-1")
            self.heads.setdefault(path, []).append(head)
            script = self.scripts.get(path, self.default)
            for index, data in enumerate(script.writes):
                if index:
                    await asyncio.sleep(self.PAUSE)
                writer.write(data)
                await writer.drain()
            if not script.close:
                while await reader.read(65536):  # until the proxy closes
                    pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # the block ended: the connection is dropped
        finally:
            self._untrack(writer, task)
