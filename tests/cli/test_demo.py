"""``wsgate demo``: the whole article in one command, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import signal
import subprocess

from tests.support.ports import free_ports
from tests.support.procs import running, wsgate_cmd


def test_demo_runs_the_article_and_stops_on_ctrl_c() -> None:
    port, b1, b2 = free_ports(3)
    cmd = wsgate_cmd("demo", "--port", str(port), "--backend-ports", str(b1), str(b2))
    with running(cmd, ports=[b1, b2, port]) as demo:
        out = subprocess.run(
            wsgate_cmd("cat", "-c", f"ws://127.0.0.1:{port}", "-x", "Hello"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "Server received from client: Hello"
        demo.send_signal(signal.SIGINT)
        stdout, stderr = demo.communicate(timeout=15)
        assert demo.returncode == 0, stderr
    text = stdout.decode()
    assert f"Try:  wsgate cat -c ws://127.0.0.1:{port}" in text
    assert "Received from client: Hello" in text
    assert '"GET / HTTP/1.1" 101 ' in text  # the access log line of the tunnel
    assert text.rstrip().endswith("wsgate demo: stopped.")
