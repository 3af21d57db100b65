"""``wsgate cat``: wscat 6.1.0's connect mode, driven through pipes, a pty and in-process.

Subprocess tests run ``python -m wsgate cat`` against ``python -m wsgate echo`` on free ports
(``running`` waits for the port). In-process tests run the :func:`wsgate.cat.client.cat`
coroutine against :func:`wsgate.echo.server.serve_echo` on the test's loop, with stdin on a
pipe. Expected strings come from docs/peers.md, "wscat exact behaviour", and wscat's source.
"""

from __future__ import annotations

import asyncio
import io
import os
import pty
import select
import signal
import ssl
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme
from websockets.asyncio.server import ServerConnection, serve

from tests.support.ports import free_port, free_ports
from tests.support.procs import running, wsgate_cmd
from wsgate.cat.client import CatOptions, cat
from wsgate.cat.terminal import (
    BLUE,
    CLEAR_LINE,
    DEFAULT,
    GREEN,
    YELLOW,
    Kind,
    Terminal,
    escape_controls,
)
from wsgate.cli.main import main
from wsgate.echo.server import serve_echo

TIMEOUT = 20.0
CONNECTED = f"{CLEAR_LINE}{GREEN}Connected (press CTRL+C to quit){DEFAULT}\n> "


@contextmanager
def echo_server(*extra: str) -> Iterator[int]:
    """``wsgate echo`` on a free loopback port; yields the port."""
    port = free_port()
    cmd = wsgate_cmd("echo", "--host", "127.0.0.1", "--port", str(port), *extra)
    with running(cmd, port=port, stdout=subprocess.DEVNULL):
        yield port


def wsgate_cat(
    *args: str, stdin: bytes | None = None, stdin_closed: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``wsgate cat ARGS`` to completion, stdout and stderr captured (so not a TTY).

    ``stdin`` is piped in, then closed; ``stdin_closed`` starts the process with fd 0 closed;
    otherwise stdin is /dev/null.
    """
    cmd = wsgate_cmd("cat", *args)
    if stdin_closed:
        cmd = ["sh", "-c", 'exec "$@" <&-', "sh", *cmd]
    return subprocess.run(
        cmd,
        input=None if stdin is None else stdin.decode(),
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


# --- non-TTY subprocess runs -------------------------------------------------------------


def test_execute_with_stdin_closed() -> None:
    with echo_server() as port:
        out = wsgate_cat("-c", f"ws://127.0.0.1:{port}", "-x", "hi", stdin_closed=True)
    assert (out.returncode, out.stdout, out.stderr) == (0, "Server received from client: hi\n", "")


def test_execute_several_with_stdin_at_eof_and_scheme_less_url() -> None:
    with echo_server() as port:
        out = wsgate_cat("-c", f"127.0.0.1:{port}", "-x", "first", "-x", "second", "-w", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        "Server received from client: first\nServer received from client: second\n"
    )


def test_piped_lines_all_answered_in_order() -> None:
    lines = [f"line {i}" for i in range(20)]
    with echo_server() as port:
        started = time.monotonic()
        # -w 30: the client must finish as soon as all replies are in, not after the wait.
        out = wsgate_cat(
            "-c", f"ws://127.0.0.1:{port}", "-w", "30", stdin="\n".join(lines).encode() + b"\n"
        )
        elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"Server received from client: {x}" for x in lines]
    assert out.stderr == ""
    assert elapsed < TIMEOUT


def test_crlf_and_last_line_without_newline() -> None:
    with echo_server() as port:
        out = wsgate_cat("-c", f"ws://127.0.0.1:{port}", stdin=b"a\r\nb")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Server received from client: a\nServer received from client: b\n"


def test_eof_waits_at_most_w_seconds_for_missing_replies() -> None:
    with echo_server("--mode", "discard") as port:
        started = time.monotonic()
        out = wsgate_cat("-c", f"ws://127.0.0.1:{port}", "-w", "0.5", stdin=b"unanswered\n")
        elapsed = time.monotonic() - started
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert elapsed >= 0.5


def test_connection_refused() -> None:
    port = free_port()  # nothing listens there
    out = wsgate_cat("-c", f"ws://127.0.0.1:{port}", "-x", "hi")
    assert out.returncode == 255
    assert out.stdout == ""
    assert out.stderr == f"error: connect ECONNREFUSED 127.0.0.1:{port}\n"


async def test_http_404() -> None:
    async def not_found(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_found, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        proc = await asyncio.create_subprocess_exec(
            *wsgate_cmd("cat", "-c", f"ws://127.0.0.1:{port}/", "-x", "hi"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(TIMEOUT):
                out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert (proc.returncode, out) == (255, b"")
    assert err == b"error: Unexpected server response: 404\n"


def test_http_10_404(tmp_path: Path) -> None:
    # http.server answers HTTP/1.0, which node reads like HTTP/1.1 (websockets alone would not).
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "http.server",
        str(port),
        "--bind",
        "127.0.0.1",
        "--directory",
        str(tmp_path),
    ]
    with running(cmd, port=port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        out = wsgate_cat("-c", f"ws://127.0.0.1:{port}/nowhere")
    assert (out.returncode, out.stdout) == (255, "")
    assert out.stderr == "error: Unexpected server response: 404\n"


def test_localhost_colon_port_is_a_scheme_as_in_wscat() -> None:
    out = wsgate_cat("-c", "localhost:8010")
    assert out.returncode == 255
    assert out.stderr == (
        'error: The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", '
        'or "ws+unix:"\n'
    )


def test_subprotocol_not_selected() -> None:
    with echo_server() as port:
        out = wsgate_cat("-c", f"ws://127.0.0.1:{port}", "-s", "chat")
    assert (out.returncode, out.stdout) == (255, "")
    assert out.stderr == "error: Server sent no subprotocol\n"


def test_server_close_is_silent_off_a_tty() -> None:
    with echo_server("--max-size", "4", "--no-compression") as port:
        out = wsgate_cat("-c", f"ws://127.0.0.1:{port}", "-x", "too long", "-w", "-1")
    # The server closes with 1009; wscat prints the Disconnected line only on a TTY.
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")


def test_ctrl_c_exits_0() -> None:
    with echo_server() as port:
        proc = subprocess.Popen(
            wsgate_cmd("cat", "-c", f"ws://127.0.0.1:{port}"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"ping\n")
            proc.stdin.flush()
            # The reply proves the session is up (and the SIGINT handler installed).
            ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
            assert ready, "no reply from wsgate cat"
            assert proc.stdout.readline() == b"Server received from client: ping\n"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=TIMEOUT)
            assert (proc.returncode, err) == (0, b"")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


# --- the echo server as a process ----------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_echo_process_stops_cleanly(signum: signal.Signals) -> None:
    ports = free_ports(2)
    cmd = wsgate_cmd(
        "echo", "--host", "127.0.0.1", "--port", str(ports[0]), "--port", str(ports[1])
    )
    with running(cmd, ports=ports) as proc:
        for port in ports:
            out = wsgate_cat("-c", f"ws://127.0.0.1:{port}", stdin=f"to {port}\n".encode())
            assert out.stdout == f"Server received from client: to {port}\n"
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert (proc.returncode, stderr) == (0, b"")
    lines = stdout.decode().splitlines()
    assert lines[0] == "Server started"
    assert [line for line in lines if line.startswith("Received")] == [
        f"Received from client: to {port}" for port in ports
    ]
    assert [line.split(": ")[0] for line in lines[1:]] == [
        "Client connected",
        "Received from client",
        "Client disconnected",
    ] * len(ports)


def test_echo_process_port_in_use() -> None:
    with echo_server() as port:
        out = subprocess.run(
            wsgate_cmd("echo", "--host", "127.0.0.1", "--port", str(port)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr.startswith(f"wsgate echo: cannot listen on 127.0.0.1:{port}: ")


# --- TTY: stdout on a pseudo-terminal ----------------------------------------------------


def run_on_pty(args: list[str], stdin: bytes) -> tuple[int, bytes, bytes]:
    """Run ``wsgate cat ARGS`` with stdout on a raw pty and ``stdin`` piped in."""
    master, slave = pty.openpty()
    tty.setraw(slave)  # exact bytes: no \n -> \r\n translation
    try:
        proc = subprocess.Popen(
            wsgate_cmd("cat", *args),
            stdin=subprocess.PIPE,
            stdout=slave,
            stderr=subprocess.PIPE,
        )
        os.close(slave)
        slave = -1
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        output = b""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the pty
                    break
                if not chunk:
                    break
                output += chunk
        rc = proc.wait(timeout=TIMEOUT)
        err = proc.stderr.read()
        proc.stderr.close()
        return rc, output, err
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)


def test_tty_transcript() -> None:
    with echo_server() as port:
        rc, out, err = run_on_pty(["-c", f"ws://127.0.0.1:{port}"], b"Hello\n")
    assert (rc, err) == (0, b"")
    text = out.decode()
    assert text.startswith(CONNECTED)
    assert f"{CLEAR_LINE}{BLUE}< Server received from client: Hello{DEFAULT}\n> " in text
    assert text.endswith(
        f'{CLEAR_LINE}{GREEN}Disconnected (code: 1000, reason: ""){DEFAULT}\n> {CLEAR_LINE}'
    )


def test_tty_error_goes_to_stdout_in_yellow() -> None:
    port = free_port()
    rc, out, err = run_on_pty(["-c", f"ws://127.0.0.1:{port}"], b"")
    assert (rc, err) == (255, b"")
    expected = f"{CLEAR_LINE}{YELLOW}error: connect ECONNREFUSED 127.0.0.1:{port}{DEFAULT}\n> "
    assert out.decode() == expected


# --- in-process ----------------------------------------------------------------------------


def test_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    with echo_server() as port:
        rc = main(["cat", "-c", f"ws://127.0.0.1:{port}", "-x", "in process", "-w", "1"])
    captured = capsys.readouterr()
    assert (rc, captured.out, captured.err) == (0, "Server received from client: in process\n", "")


class Output(io.StringIO):
    """A stream a test can wait on until some text has been written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        self.changed.set()
        return written

    async def wait_for(self, text: str) -> None:
        while text not in self.getvalue():
            self.changed.clear()
            await self.changed.wait()


def join_stdin_readers() -> None:
    """Wait for cat's stdin threads to end, so that their pipe can be closed safely."""
    for thread in threading.enumerate():
        if thread.name == "wsgate-cat-stdin":
            thread.join(timeout=TIMEOUT)
            assert not thread.is_alive()


async def run_cat(
    options: CatOptions, *, on_tty: bool, lines: bytes | None
) -> tuple[int, str, str]:
    """Run :func:`cat` on this loop, with ``lines`` on a pipe as stdin (``None``: no stdin)."""
    out, err = io.StringIO(), io.StringIO()
    terminal = Terminal(out, err, tty=on_tty, color=options.color, execute=bool(options.execute))
    if lines is None:
        rc = await cat(options, terminal)
    else:
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, lines)
            os.close(write_end)
            write_end = -1
            rc = await cat(options, terminal, stdin_fd=read_end)
        finally:
            if write_end >= 0:
                os.close(write_end)
                write_end = -1
            join_stdin_readers()
            os.close(read_end)
    return rc, out.getvalue(), err.getvalue()


async def in_process_echo() -> tuple[int, asyncio.Event, asyncio.Task[None]]:
    port = free_port()
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(
        serve_echo("127.0.0.1", [port], ready=ready, stop=stop, out=io.StringIO())
    )
    await ready.wait()
    return port, stop, task


async def test_cat_coroutine_tty_execute_mode() -> None:
    port, stop, task = await in_process_echo()
    try:
        options = CatOptions(url=f"127.0.0.1:{port}", execute=("a\x1bb",), wait=0.5)
        rc, out, err = await run_cat(options, on_tty=True, lines=None)
    finally:
        stop.set()
        await task
    # -x on a TTY: no colour, no "< ", but the reset, the prompt and the final clear remain.
    assert (rc, err) == (0, "")
    assert out == f"{CLEAR_LINE}Server received from client: a\\x1bb{DEFAULT}\n> {CLEAR_LINE}"


async def test_cat_coroutine_slash_commands() -> None:
    port, stop, task = await in_process_echo()
    try:
        options = CatOptions(url=f"ws://127.0.0.1:{port}", slash=True, show_ping_pong=True)
        lines = b"/ping abc\n/nope\n/close 4000 as requested\nnever sent\n"
        rc, out, err = await run_cat(options, on_tty=False, lines=lines)
    finally:
        stop.set()
        await task
    assert rc == 0
    assert out == 'Received pong (data: "abc")\n'
    assert err == "error: Unrecognized slash command.\n"


async def test_cat_coroutine_close_code_on_tty() -> None:
    port, stop, task = await in_process_echo()
    try:
        options = CatOptions(url=f"ws://127.0.0.1:{port}", slash=True, color=False)
        rc, out, _ = await run_cat(options, on_tty=True, lines=b"/close 4000 as requested\n")
    finally:
        stop.set()
        await task
    assert rc == 0
    assert out.startswith(f"{CLEAR_LINE}Connected (press CTRL+C to quit){DEFAULT}\n> ")
    assert out.endswith(
        f'{CLEAR_LINE}Disconnected (code: 4000, reason: "as requested"){DEFAULT}\n> {CLEAR_LINE}'
    )


async def test_cat_coroutine_stop_acts_as_ctrl_c() -> None:
    port, stop_server, task = await in_process_echo()
    read_end, write_end = os.pipe()  # stdin that stays open
    try:
        out, err = Output(), io.StringIO()
        terminal = Terminal(out, err, tty=False)
        stop = asyncio.Event()
        options = CatOptions(url=f"ws://127.0.0.1:{port}")
        session = asyncio.create_task(cat(options, terminal, stdin_fd=read_end, stop=stop))
        os.write(write_end, b"hi\n")
        await out.wait_for("Server received from client: hi\n")
        stop.set()
        assert await session == 0
        assert out.getvalue() == "Server received from client: hi\n"
    finally:
        os.close(write_end)  # lets the reader thread see EOF and end
        join_stdin_readers()
        os.close(read_end)
        stop_server.set()
        await task


# --- terminal rules (pure) -------------------------------------------------------------------


def test_escape_controls() -> None:
    assert escape_controls("a\nb\tc\rd\x1b[31m\x7f\x9f é\u00a0") == (
        "a\\nb\\tc\\rd\\x1b[31m\\x7f\\x9f é\u00a0"
    )


@pytest.mark.parametrize(
    ("on_tty", "color", "execute", "kind", "out", "err"),
    [
        (False, True, False, Kind.INCOMING, "m\n", ""),
        (False, True, False, Kind.CONTROL, "", ""),
        (False, True, False, Kind.ERROR, "", "error: m\n"),
        (True, True, False, Kind.INCOMING, f"{CLEAR_LINE}{BLUE}< m{DEFAULT}\n> ", ""),
        (True, False, False, Kind.INCOMING, f"{CLEAR_LINE}< m{DEFAULT}\n> ", ""),
        (True, True, True, Kind.ERROR, f"{CLEAR_LINE}m{DEFAULT}\n> ", ""),
    ],
)
def test_print_rules(
    on_tty: bool, color: bool, execute: bool, kind: Kind, out: str, err: str
) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    terminal = Terminal(stdout, stderr, tty=on_tty, color=color, execute=execute)
    terminal.print(kind, "m", BLUE)
    assert (stdout.getvalue(), stderr.getvalue()) == (out, err)


async def test_wss_ca_and_no_check(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    async def reply(ws: ServerConnection) -> None:
        async for message in ws:
            assert isinstance(message, str)
            await ws.send(f"tls: {message}")

    async with serve(reply, "127.0.0.1", 0, ssl=server_context) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"wss://127.0.0.1:{port}"
        trusted = CatOptions(url=url, execute=("hi",), wait=0.5, ca=str(ca_file))
        assert await run_cat(trusted, on_tty=False, lines=None) == (0, "tls: hi\n", "")
        unchecked = CatOptions(url=url, execute=("hi",), wait=0.5, check=False)
        assert await run_cat(unchecked, on_tty=False, lines=None) == (0, "tls: hi\n", "")
        untrusted = CatOptions(url=url, execute=("hi",), wait=0.5)
        rc, out, err = await run_cat(untrusted, on_tty=False, lines=None)
        assert (rc, out) == (255, "")
        assert err.startswith("error: ") and "certificate" in err
