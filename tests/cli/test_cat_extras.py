"""``wsgate cat``'s flags beyond wscat, in-process against servers on the test's loop.

``-b``/``--binary-display``, ``--json``, ``--timestamps``, ``--reconnect`` and
``--ping-interval`` in connect mode, and listen mode's queueing of piped lines. Readiness comes
from the servers' own events; output is captured in memory.
"""

from __future__ import annotations

import asyncio
import io

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from tests.support.ports import free_port, wait_for_port_async
from wsgate.cat.client import cat
from wsgate.cat.display import BinaryDisplay
from wsgate.cat.input import LineQueue
from wsgate.cat.listen import listen
from wsgate.cat.options import CatOptions
from wsgate.cat.terminal import CLEAR_LINE, DEFAULT, GREEN, Terminal
from wsgate.echo.server import Mode, serve_echo


async def run(options: CatOptions, *, tty: bool = False, **kw: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    terminal = Terminal(
        out,
        err,
        tty=tty,
        execute=bool(options.execute),
        timestamps=options.timestamps,
        clock=lambda: "12:00:00.000",
    )
    rc = await cat(options, terminal)
    return rc, out.getvalue(), err.getvalue()


async def echo_server(mode: Mode = Mode.ECHO) -> tuple[int, asyncio.Event, asyncio.Task[None]]:
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve_echo("127.0.0.1", [port], mode=mode, ready=ready, stop=stop, out=io.StringIO())
    )
    await ready.wait()
    return port, stop, task


async def test_binary_sending_and_display() -> None:
    port, stop, task = await echo_server()
    try:
        url = f"ws://127.0.0.1:{port}"
        for display, shown in [
            (BinaryDisplay.TEXT, "hé\n"),
            (BinaryDisplay.HEX, "68 c3 a9\n"),
            (BinaryDisplay.BASE64, "aMOp\n"),
        ]:
            options = CatOptions(
                url, execute=("hé",), wait=0.3, binary=True, binary_display=display
            )
            assert await run(options) == (0, shown, "")
    finally:
        stop.set()
        await task


async def test_json_pretty_printing_on_and_off_a_terminal() -> None:
    port, stop, task = await echo_server()
    try:
        messages = ('{"a":[1]}', "[x")
        options = CatOptions(f"ws://127.0.0.1:{port}", execute=messages, wait=0.3, json=True)
        assert await run(options) == (0, '{\n  "a": [\n    1\n  ]\n}\n[x\n', "")
        rc, out, _ = await run(options, tty=True)
        assert rc == 0
        # -x drops the prefix on a terminal; the block keeps its lines.
        assert out.startswith(f'{CLEAR_LINE}{{\n  "a": [\n    1\n  ]\n}}{DEFAULT}\n> ')
    finally:
        stop.set()
        await task


async def test_timestamps() -> None:
    port, stop, task = await echo_server()
    try:
        options = CatOptions(f"ws://127.0.0.1:{port}", execute=("t",), wait=0.3, timestamps=True)
        assert await run(options) == (0, "12:00:00.000 t\n", "")
    finally:
        stop.set()
        await task


async def test_ping_interval_reports_round_trips() -> None:
    port, stop, task = await echo_server()
    try:
        options = CatOptions(f"ws://127.0.0.1:{port}", execute=("p",), wait=0.5, ping_interval=0.1)
        rc, out, err = await run(options)
    finally:
        stop.set()
        await task
    assert (rc, out) == (0, "p\n")
    lines = err.splitlines()
    assert lines and all(line.startswith("Round-trip time: ") for line in lines)
    assert all(line.endswith(" ms") for line in lines)


async def test_reconnect_after_a_drop_and_a_refused_connection() -> None:
    port = free_port()
    connections: list[ServerConnection] = []

    async def handler(ws: ServerConnection) -> None:
        connections.append(ws)
        number = len(connections)
        message = await ws.recv()
        await ws.send(f"{number}:{message}")
        if number == 1:
            await ws.close(1012, "restarting")  # a drop: the client did not close
        else:
            await ws.wait_closed()

    options = CatOptions(f"ws://127.0.0.1:{port}", execute=("hello",), wait=0.5, reconnect=0.05)
    out, err = io.StringIO(), io.StringIO()
    terminal = Terminal(out, err, tty=True, color=True, execute=True)
    client = asyncio.create_task(cat(options, terminal))
    # Nothing listens yet: the first attempts are refused, then retried.
    while "Reconnecting in 0.05 s (attempt 1)" not in out.getvalue():
        await asyncio.sleep(0.01)
    async with serve(handler, "127.0.0.1", port):
        assert await client == 0
    screen = out.getvalue()
    assert f"connect ECONNREFUSED 127.0.0.1:{port}" in screen  # -x: no "error: " prefix
    assert "1:hello" in screen and "2:hello" in screen  # -x is sent again after the drop
    # The backoff starts again from the first delay after a connection that opened.
    assert "Reconnecting in 0.05 s (attempt 1)" in screen.split("1:hello")[1]
    assert len(connections) == 2
    assert connections[1].close_code == 1000  # the second session ended on our side


async def test_listen_queues_piped_lines_for_the_first_client() -> None:
    port = free_port()
    lines = LineQueue()
    for line in ("queued 1", "queued 2"):
        lines.put(line)
    lines.end()  # stdin already at EOF: wait for a client, deliver, wait for replies, stop
    out, err = io.StringIO(), io.StringIO()
    stop = asyncio.Event()
    options = CatOptions(listen=port, wait=5)
    listener = asyncio.create_task(
        listen(options, Terminal(out, err, tty=False), lines=lines, stop=stop)
    )
    await wait_for_port_async(port)
    async with connect(f"ws://127.0.0.1:{port}") as ws:
        assert [await ws.recv(), await ws.recv()] == ["queued 1", "queued 2"]
        await ws.send("answer 1")
        await ws.send("answer 2")
        await ws.wait_closed()
        assert ws.close_code == 1000
    assert await listener == 0
    assert (out.getvalue(), err.getvalue()) == ("answer 1\nanswer 2\n", "")


async def test_listen_ctrl_c_with_nothing_queued() -> None:
    port = free_port()
    lines, stop = LineQueue(), asyncio.Event()
    out = io.StringIO()
    listener = asyncio.create_task(
        listen(CatOptions(listen=port), Terminal(out, out, tty=True), lines=lines, stop=stop)
    )
    await wait_for_port_async(port)
    stop.set()
    assert await listener == 0
    assert out.getvalue() == (
        f"{CLEAR_LINE}{GREEN}Listening on port {port} (press CTRL+C to quit){DEFAULT}\n"
        f"> {CLEAR_LINE}"
    )
