"""Same session, same screen: npm wscat and ``wsgate cat`` in a terminal, under tmux.

Each test plays one session twice, keystroke for keystroke, once with wscat and once with
``wsgate cat`` (``tmux new-session -d -x 120 -y 30``, ``send-keys``, ``capture-pane -p -e``),
and compares the two screens, colours included, down to where the program left the cursor
(the ``[exit N]`` line is written there). Every step waits for the text the previous one must
produce, so both runs see the same order of events. Servers are ``wsgate echo`` on free ports,
or, for listen mode, a ``websockets`` client driven from the test.

Skipped when tmux, node or the npm packages are missing (failed with WSGATE_REQUIRE_PEERS=1).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.interop.test_wscat import wscat_cmd
from tests.support.ports import free_port
from tests.support.procs import running, wsgate_cmd
from tests.support.tmux import Tmux, require_tmux

TIMEOUT = 20.0
Scenario = Callable[[Tmux, int], None]


@pytest.fixture(autouse=True)
def peers() -> None:
    """Skip (or fail in CI) before anything starts when a peer is missing."""
    require_tmux()
    wscat_cmd()


@contextmanager
def echo_server(*extra: str) -> Iterator[int]:
    port = free_port()
    cmd = wsgate_cmd("echo", "--host", "127.0.0.1", "--port", str(port), *extra)
    with running(cmd, port=port, stdout=subprocess.DEVNULL):
        yield port


def play(command: Sequence[str], scenario: Scenario, port: int) -> tuple[str, int]:
    """Run ``command`` under tmux, play ``scenario``, wait for the exit; screen and code."""
    with Tmux() as tmux:
        tmux.start(command)
        scenario(tmux, port)
        code = tmux.wait_exit(TIMEOUT)
        # The two runs may use different ports: compare them as "PORT".
        return tmux.screen(colors=True).replace(str(port), "PORT"), code


def same_screen(args: Callable[[int], list[str]], scenario: Scenario, *, listen: bool) -> str:
    """Play ``scenario`` with wscat and with wsgate cat; assert equal screens and exit codes.

    ``args(port)`` builds the arguments; in listen mode each run gets its own free port, else
    ``port`` is the echo server's. Returns the screen for further checks.
    """
    results = []
    for tool in (wscat_cmd, lambda *a: wsgate_cmd("cat", *a)):
        if listen:
            port = free_port()
            results.append(play(tool(*args(port)), scenario, port))
        else:
            with echo_server() as port:
                results.append(play(tool(*args(port)), scenario, port))
    (wscat_screen, wscat_code), (our_screen, our_code) = results
    assert our_screen == wscat_screen
    assert our_code == wscat_code
    return our_screen


def test_typing_editing_and_ctrl_c() -> None:
    def scenario(tmux: Tmux, port: int) -> None:
        tmux.wait_for("Connected (press CTRL+C to quit)")
        tmux.type("hello")
        tmux.keys("Enter")
        tmux.wait_for("< Server received from client: hello")
        tmux.type("world")
        tmux.keys("BSpace", "BSpace", "Left", "Left")
        tmux.type("X")
        tmux.keys("C-e")
        tmux.type("!")
        tmux.keys("Enter")
        tmux.wait_for("< Server received from client: wXor!")
        tmux.type("half typed")
        tmux.keys("C-c")

    screen = same_screen(lambda port: ["-c", f"ws://127.0.0.1:{port}"], scenario, listen=False)
    assert "> half typed[exit 0]" in screen


def test_history_and_ctrl_d_without_color() -> None:
    def scenario(tmux: Tmux, port: int) -> None:
        tmux.wait_for("Connected")
        tmux.type("first")
        tmux.keys("Enter")
        tmux.wait_for("< Server received from client: first")
        tmux.type("second")
        tmux.keys("Enter")
        tmux.wait_for("< Server received from client: second")
        tmux.keys("Up", "Up", "Enter")
        tmux.wait_for("client: second\n> first\n")
        tmux.type("a b c")
        tmux.keys("C-w", "C-a", "C-k", "C-d")

    screen = same_screen(
        lambda port: ["-c", f"127.0.0.1:{port}", "--no-color"], scenario, listen=False
    )
    assert "\x1b[3" not in screen  # no colour at all


def test_slash_commands_ping_pong_and_close() -> None:
    def scenario(tmux: Tmux, port: int) -> None:
        tmux.wait_for("Connected")
        tmux.type("/ping abc")
        tmux.keys("Enter")
        tmux.wait_for('< Received pong (data: "abc")')
        tmux.type("/nope")
        tmux.keys("Enter")
        tmux.wait_for("error: Unrecognized slash command.")
        tmux.type("/close 4000 as requested")
        tmux.keys("Enter")

    screen = same_screen(
        lambda port: ["-c", f"ws://127.0.0.1:{port}", "--slash", "-P"], scenario, listen=False
    )
    assert 'Disconnected (code: 4000, reason: "as requested")' in screen


def test_execute_mode_on_a_terminal() -> None:
    def scenario(tmux: Tmux, port: int) -> None:
        pass

    screen = same_screen(
        lambda port: ["-c", f"ws://127.0.0.1:{port}", "-x", "one", "-x", "two", "-w", "0.5"],
        scenario,
        listen=False,
    )
    assert "Server received from client: two" in screen


def test_connection_refused() -> None:
    def scenario(tmux: Tmux, port: int) -> None:
        pass

    screen = same_screen(lambda port: ["-c", f"ws://127.0.0.1:{port}"], scenario, listen=True)
    assert "error: connect ECONNREFUSED" in screen and "[exit 255]" in screen


def client(port: int, subprotocols: Sequence[str] = ()) -> ClientConnection:
    return connect(
        f"ws://127.0.0.1:{port}/",
        subprotocols=list(subprotocols) or None,  # type: ignore[arg-type]
        open_timeout=TIMEOUT,
    )


def test_listen_mode() -> None:
    def scenario(tmux: Tmux, port: int) -> None:
        tmux.wait_for(f"Listening on port {port} (press CTRL+C to quit)")
        tmux.type("typed before")  # erased from the screen at once, but kept in the line
        with client(port, ["chat", "other"]) as ws:
            assert ws.subprotocol == "chat"  # the first one offered, as ws' server picks
            tmux.wait_for("Client connected")
            ws.send("hello from client")
            tmux.wait_for("< hello from client")
            tmux.type(" then")
            tmux.keys("Enter")
            assert ws.recv(timeout=TIMEOUT) == "typed before then"
            with client(port) as second, pytest.raises(ConnectionClosed):
                second.recv(timeout=TIMEOUT)  # only one client at a time
            assert second.close_code == 1006
            tmux.type("half")
            ws.send(b"\xffbinary")  # arrives while a line is half typed: it is redrawn
            tmux.wait_for("< \ufffdbinary")
            tmux.type("done")
            tmux.keys("Enter")
            assert ws.recv(timeout=TIMEOUT) == "halfdone"
            ws.close(4000, "bye")
        tmux.wait_for('Disconnected (code: 4000, reason: "bye")')
        tmux.type("nobody hears this")
        tmux.keys("Enter")
        tmux.keys("C-c")

    same_screen(lambda port: ["-l", str(port)], scenario, listen=True)


def test_passphrase_prompt_then_wss(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    server_cert, server_key = tmp_path / "server.pem", tmp_path / "server.key"
    server.cert_chain_pems[0].write_to_path(str(server_cert))
    server.private_key_pem.write_to_path(str(server_key))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    # A client certificate whose key is encrypted with a passphrase typed at the prompt.
    mine = ca.issue_cert("client@example.com")
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client.key"
    mine.cert_chain_pems[0].write_to_path(str(client_cert))
    key = serialization.load_pem_private_key(mine.private_key_pem.bytes(), password=None)
    client_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )

    def scenario(tmux: Tmux, port: int) -> None:
        tmux.wait_for("Passphrase:")
        tmux.type("s3cret")
        tmux.keys("Enter")
        tmux.wait_for("Connected (press CTRL+C to quit)")
        tmux.type("over tls")
        tmux.keys("Enter")
        tmux.wait_for("< Server received from client: over tls")
        tmux.keys("C-c")

    port = free_port()
    echo = wsgate_cmd("echo", "--host", "127.0.0.1", "--port", str(port))
    echo += ["--cert", str(server_cert), "--key", str(server_key)]
    args = ["-c", f"wss://127.0.0.1:{port}", "--ca", str(ca_file)]
    args += ["--cert", str(client_cert), "--key", str(client_key), "--passphrase"]
    with running(echo, port=port, stdout=subprocess.DEVNULL):
        results = [
            play(wscat_cmd(*args), scenario, port),
            play(wsgate_cmd("cat", *args), scenario, port),
        ]
    assert results[1] == results[0]
    assert "Passphrase: ******" in results[0][0]
