"""The load generator: one process, uvloop, raw sockets, cheap on purpose.

Run by :mod:`bench.runner` as ``python -m bench.loadgen ...``; it prints one JSON object.

Theory of operation:

* Every client is an ``asyncio.Protocol`` on uvloop; there are no coroutines on the per-
  message path. WebSocket frames are built and masked once, before the run, and written as
  the same ``bytes`` object every time. Replies are checked by their first byte (FIN +
  opcode) and counted by length: with one message in flight per connection, the reply to a
  ``size``-byte message is exactly one frame of ``header(size) + size`` bytes, so only frame
  headers are ever looked at.
* Closed loop: each connection sends its next message when the echo of the previous one is
  complete. Throughput therefore measures the whole chain (this process, the proxy, the
  backends) and latency is the round trip seen by a client.
* The measured window opens after ``--warmup`` seconds with every connection already open
  and busy. At each edge of the window the generator reads, from ``/proc``, the CPU time of
  the process trees given by ``--watch`` (the proxy) and ``--backend-pids``, and its own
  CPU time. Operations that complete inside the window count; latencies are kept for them.
* Its own ceiling: ``ops / own CPU seconds`` is how many operations per second this process
  could drive with a whole core; :mod:`bench.runner` prints it next to what it drove.

Scenarios (``--scenario``):

``echo``
    ``--conns`` WebSocket connections, each echoing ``--size``-byte binary messages.
``session``
    ``--conns`` concurrent loops of: connect, upgrade, one ``--size``-byte echo, close
    handshake (client close frame, the server's close frame, the server closes TCP).
``http``
    ``--conns`` keep-alive connections sending ``GET /`` and reading each response by its
    ``Content-Length``.
``idle``
    open ``--prime`` WebSocket connections, read the RSS of the ``--watch`` trees, open
    ``--conns`` more (each does one echo), hold them all idle and read the RSS again.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import struct
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, cast

import uvloop

from bench.procstat import tree_cpu_seconds, tree_rss_kb

__all__ = ["main", "masked_frame", "percentile", "reply_length"]

HOST = "127.0.0.1"
CONNECT_CONCURRENCY = 64  # connections being opened at once (below any listen backlog)
DRAIN_TIMEOUT = 5.0  # seconds for in-flight operations to finish after the window
_MASK = b"\x5a\xa5\x3c\xc3"
_OP_BINARY = 0x2
_OP_CLOSE = 0x8
_BINARY_FIN = 0x80 | _OP_BINARY
_CLOSE_FIN = 0x80 | _OP_CLOSE


def masked_frame(payload: bytes, opcode: int = _OP_BINARY, mask: bytes = _MASK) -> bytes:
    """One final client frame (RFC 6455 §5.2) carrying ``payload``, masked with ``mask``."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = (mask * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + mask + body


def reply_length(size: int) -> int:
    """Bytes of the unmasked server frame that echoes a ``size``-byte message."""
    if size < 126:
        return 2 + size
    if size < 1 << 16:
        return 4 + size
    return 10 + size


def upgrade_request(port: int) -> bytes:
    """The client's opening handshake (fixed key: the accept value is not checked)."""
    return (
        f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def get_request(port: int) -> bytes:
    """A plain keep-alive ``GET /``."""
    return f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUser-Agent: wsgate-bench\r\n\r\n".encode()


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; 0 when empty."""
    if not sorted_values:
        return 0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


class Run:
    """Shared state of one run: the window flags, the counters, the latencies (ns)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.measuring = False
        self.stopping = False
        self.ops = 0
        self.latencies: list[int] = []
        self.errors: list[str] = []
        self.busy = 0  # connections with an operation in flight
        self.idle_waiter: asyncio.Future[None] | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.extra: list[asyncio.Protocol] = []  # connections opened during the run

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task that is kept referenced until it ends."""
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def record(self, elapsed_ns: int) -> None:
        """One operation completed after ``elapsed_ns``."""
        if self.measuring:
            self.ops += 1
            self.latencies.append(elapsed_ns)

    def error(self, what: str) -> None:
        """Keep the first few error texts (the runner prints them)."""
        if len(self.errors) < 20:
            self.errors.append(what)

    def went_idle(self) -> None:
        """A connection stopped sending after the window closed."""
        self.busy -= 1
        if self.busy <= 0 and self.idle_waiter is not None and not self.idle_waiter.done():
            self.idle_waiter.set_result(None)


class _Handshake(asyncio.Protocol):
    """Reads the 101 head of the opening handshake, then hands over to ``opened``."""

    transport: asyncio.Transport

    def __init__(self, run: Run) -> None:
        self.run = run
        self.head = bytearray()
        self.open = False
        self.ready: asyncio.Future[None] = run.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _read_head(self, data: bytes) -> None:
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            return
        if not self.head.startswith(b"HTTP/1.1 101 ") or end + 4 != len(self.head):
            self._fail(f"bad handshake answer: {bytes(self.head[:80])!r}")
            return
        self.open = True
        self.head = bytearray()
        self.opened()

    def opened(self) -> None:
        """The connection is a WebSocket now."""

    def _fail(self, what: str) -> None:
        self.run.error(what)
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(what))
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"closed during handshake: {exc}"))


class EchoClient(_Handshake):
    """A WebSocket connection in a closed echo loop (also the idle scenario's client)."""

    def __init__(self, run: Run, port: int, frame: bytes, reply_len: int) -> None:
        super().__init__(run)
        self.port = port
        self.frame = frame
        self.reply_len = reply_len
        self.got = 0
        self.t0 = 0
        self.looping = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(upgrade_request(self.port))

    def opened(self) -> None:
        # One echo proves the path works end to end; then wait for start().
        self.t0 = time.perf_counter_ns()
        self.transport.write(self.frame)

    def start(self) -> None:
        """Begin the closed loop (the connection is open and idle)."""
        self.looping = True
        self.run.busy += 1
        self.t0 = time.perf_counter_ns()
        self.transport.write(self.frame)

    # The per-message path: count the reply's bytes; check only its first byte.
    def data_received(self, data: bytes) -> None:
        if not self.open:
            self._read_head(data)
            return
        if self.got == 0 and data[0] != _BINARY_FIN:
            self._fail(f"unexpected frame header {data[:2]!r}")
            return
        got = self.got + len(data)
        if got < self.reply_len:
            self.got = got
            return
        if got > self.reply_len:
            self._fail(f"reply of {got} bytes, expected {self.reply_len}")
            return
        self.got = 0
        now = time.perf_counter_ns()
        if not self.looping:
            if not self.ready.done():
                self.ready.set_result(None)
            return
        run = self.run
        run.record(now - self.t0)
        if run.stopping:
            self.looping = False
            run.went_idle()
            return
        self.t0 = now
        self.transport.write(self.frame)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.looping:
            self.looping = False
            if not self.run.stopping:
                self.run.error(f"connection lost while looping: {exc}")
            self.run.went_idle()


class SessionClient(_Handshake):
    """One short WebSocket session: upgrade, one echo, close handshake, TCP close."""

    def __init__(self, run: Run, port: int, frame: bytes, reply_len: int) -> None:
        super().__init__(run)
        self.port = port
        self.frame = frame
        self.reply_len = reply_len
        self.got = 0
        self.closing = False
        self.done: asyncio.Future[None] = run.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.transport.write(upgrade_request(self.port))

    def opened(self) -> None:
        self.ready.set_result(None)
        self.transport.write(self.frame)

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self._read_head(data)
            return
        if self.closing:
            return  # the server's close frame; it then closes the connection
        self.got += len(data)
        if self.got >= self.reply_len:
            self.closing = True
            self.transport.write(_CLOSE_1000)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.done.done():
            return
        if self.closing:
            self.done.set_result(None)
        else:
            self.done.set_exception(ConnectionError(f"session ended early: {exc}"))


_CLOSE_1000 = masked_frame(struct.pack("!H", 1000), _OP_CLOSE)


class HttpClient(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection in a closed ``GET /`` loop."""

    transport: asyncio.Transport

    def __init__(self, run: Run, port: int) -> None:
        self.run = run
        self.port = port
        self.request = get_request(port)
        self.last = False  # the response in flight ends the connection
        self.buf = bytearray()
        self.need = -1  # bytes of the whole response, once its head is read
        self.t0 = 0
        self.looping = False
        self.ready: asyncio.Future[None] = run.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.ready.set_result(None)

    def start(self) -> None:
        """Send the first request of the loop."""
        self.looping = True
        self.run.busy += 1
        self.t0 = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            at = head.find(b"\r\ncontent-length:")
            if not head.startswith(b"http/1.1 200 ") or at < 0:
                self.run.error(f"unexpected response head: {head[:120]!r}")
                self.transport.abort()
                return
            stop = head.find(b"\r\n", at + 17)
            self.need = end + 4 + int(head[at + 17 : stop if stop >= 0 else len(head)])
            # nginx ends a connection after keepalive_requests (1000) with this header.
            self.last = b"\r\nconnection: close" in head
        if len(buf) < self.need:
            return
        if len(buf) > self.need:
            self.run.error("bytes after a response")
            self.transport.abort()
            return
        buf.clear()
        self.need = -1
        now = time.perf_counter_ns()
        run = self.run
        run.record(now - self.t0)
        if run.stopping:
            self.looping = False
            run.went_idle()
            return
        if self.last:
            # The server closes this connection: go on with a new one (same busy slot).
            self.looping = False
            self.transport.close()
            run.spawn(_reconnect_http(run, self.port))
            return
        self.t0 = now
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.looping:
            self.looping = False
            if not self.run.stopping:
                self.run.error(f"connection lost while looping: {exc}")
            self.run.went_idle()


async def _reconnect_http(run: Run, port: int) -> None:
    """Replace a connection the server closed, and send its next request at once."""
    try:
        _, proto = await run.loop.create_connection(lambda: HttpClient(run, port), HOST, port)
    except OSError as exc:
        run.error(f"reconnect: {exc!r}")
        run.went_idle()
        return
    run.extra.append(proto)
    if run.stopping:
        run.went_idle()
        return
    proto.looping = True
    proto.t0 = time.perf_counter_ns()
    proto.transport.write(proto.request)


class Window:
    """CPU readings at the edges of the measured window."""

    KEYS = ("seconds", "loadgen_cpu_s", "proxy_user_s", "proxy_sys_s", "backend_cpu_s")

    def __init__(self, watch: list[int], backends: list[int]) -> None:
        self.watch = watch
        self.backends = backends
        self.start: tuple[float, ...] = ()
        self.end: tuple[float, ...] = ()

    def _read(self) -> tuple[float, ...]:
        user, system = tree_cpu_seconds(self.watch) if self.watch else (0.0, 0.0)
        backend = sum(tree_cpu_seconds(self.backends)) if self.backends else 0.0
        return (time.perf_counter(), time.process_time(), user, system, backend)

    def open(self, run: Run) -> None:
        """Read the counters, then start counting operations."""
        self.start = self._read()
        run.measuring = True

    def close(self, run: Run) -> None:
        """Stop counting operations, then read the counters."""
        run.measuring = False
        run.stopping = True
        self.end = self._read()

    def result(self) -> dict[str, float]:
        """Seconds of wall clock, own CPU, proxy CPU (user, system) and backend CPU inside
        the window."""
        out = {k: b - a for k, a, b in zip(self.KEYS, self.start, self.end, strict=True)}
        out["proxy_cpu_s"] = out["proxy_user_s"] + out["proxy_sys_s"]
        return out


async def _open_all(
    n: int, factory: Callable[[int], _Handshake | HttpClient], ports: Sequence[int]
) -> list[Any]:
    """Open ``n`` connections (at most CONNECT_CONCURRENCY at once), round robin over
    ``ports``; each is returned once its ``ready`` future resolves."""
    loop = asyncio.get_running_loop()
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one(i: int) -> Any:
        port = ports[i % len(ports)]
        async with limit:
            _, proto = await loop.create_connection(lambda: factory(port), HOST, port)
            await proto.ready
            return proto

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _drain(run: Run) -> None:
    """Wait (bounded) for every connection to finish its in-flight operation."""
    if run.busy > 0:
        run.idle_waiter = run.loop.create_future()
        try:
            await asyncio.wait_for(run.idle_waiter, DRAIN_TIMEOUT)
        except TimeoutError:
            run.error(f"{run.busy} operations still in flight after the window")


async def _close_all(conns: Sequence[asyncio.Protocol]) -> None:
    for conn in conns:
        transport = getattr(conn, "transport", None)
        if transport is not None:
            transport.close()
    await asyncio.sleep(0.05)  # let the FINs go out before the process exits


async def _loop_scenario(args: argparse.Namespace, run: Run, window: Window) -> dict[str, Any]:
    """``echo`` and ``http``: open connections, warm up, measure, drain, close."""
    ports: list[int] = args.ports
    if args.scenario == "echo":
        frame = masked_frame(os.urandom(args.size))
        reply = reply_length(args.size)
        conns = await _open_all(args.conns, lambda p: EchoClient(run, p, frame, reply), ports)
    else:
        conns = await _open_all(args.conns, lambda p: HttpClient(run, p), ports)
    for conn in conns:
        conn.start()
    await asyncio.sleep(args.warmup)
    window.open(run)
    await asyncio.sleep(args.duration)
    window.close(run)
    await _drain(run)
    await _close_all([*conns, *run.extra])
    return {}


async def _session_scenario(args: argparse.Namespace, run: Run, window: Window) -> dict[str, Any]:
    """``session``: ``conns`` loops of connect / upgrade / echo / close."""
    loop = asyncio.get_running_loop()
    frame = masked_frame(os.urandom(args.size))
    reply = reply_length(args.size)
    ports: list[int] = args.ports

    async def slot(i: int) -> None:
        port = ports[i % len(ports)]
        while not run.stopping:
            t0 = time.perf_counter_ns()
            try:
                _, proto = await loop.create_connection(
                    lambda: SessionClient(run, port, frame, reply), HOST, port
                )
                await proto.done
            except OSError as exc:  # ConnectionError included
                run.error(f"session: {exc!r}")
                await asyncio.sleep(0.01)
                continue
            run.record(time.perf_counter_ns() - t0)

    tasks = [loop.create_task(slot(i)) for i in range(args.conns)]
    await asyncio.sleep(args.warmup)
    window.open(run)
    await asyncio.sleep(args.duration)
    window.close(run)
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_TIMEOUT)
    except TimeoutError:
        run.error("sessions still open after the window")
    return {}


async def _idle_scenario(args: argparse.Namespace, run: Run, window: Window) -> dict[str, Any]:
    """``idle``: RSS of the watched trees before and after ``conns`` idle tunnels."""
    frame = masked_frame(os.urandom(args.size))
    reply = reply_length(args.size)
    # Primer tunnels first: the proxy's first connections pay one-time costs (code paths
    # run for the first time, allocator arenas) that are not per tunnel.
    primed = await _open_all(args.prime, lambda p: EchoClient(run, p, frame, reply), args.ports)
    await asyncio.sleep(args.warmup)
    rss_before = tree_rss_kb(args.watch)
    t0 = time.perf_counter()
    conns = await _open_all(args.conns, lambda p: EchoClient(run, p, frame, reply), args.ports)
    opened_s = time.perf_counter() - t0
    await asyncio.sleep(args.warmup)  # let the proxy settle (freed handshake buffers)
    rss_after = tree_rss_kb(args.watch)
    await _close_all([*primed, *conns])
    return {
        "tunnels": len(conns),
        "open_seconds": opened_s,
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
    }


async def _main(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    run = Run(loop)
    window = Window(args.watch, args.backend_pids)
    scenario = {
        "echo": _loop_scenario,
        "http": _loop_scenario,
        "session": _session_scenario,
        "idle": _idle_scenario,
    }[args.scenario]
    extra = await scenario(args, run, window)
    lat = sorted(run.latencies)
    out: dict[str, Any] = {
        "scenario": args.scenario,
        "conns": args.conns,
        "size": args.size,
        "ops": run.ops,
        "p50_us": percentile(lat, 0.50) / 1000,
        "p99_us": percentile(lat, 0.99) / 1000,
        "errors": run.errors,
    }
    if args.scenario != "idle":
        out.update(window.result())
    out.update(extra)
    return out


def _pids(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The flags (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__)
    p.add_argument("--scenario", choices=["echo", "session", "http", "idle"], required=True)
    p.add_argument("--ports", type=_pids, required=True, help="comma-separated; round robin")
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--size", type=int, default=32, help="WebSocket message size in bytes")
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds before the window")
    p.add_argument("--prime", type=int, default=200, help="idle: tunnels opened before")
    p.add_argument("--watch", type=_pids, default=[], help="proxy PIDs (trees)")
    p.add_argument("--backend-pids", type=_pids, default=[], help="backend PIDs (trees)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one scenario and print its JSON result on stdout."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = uvloop.run(_main(args))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
