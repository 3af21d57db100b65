"""Master and workers: reload under load, crashed workers, signals and ``-s``.

The proxy runs as a real process tree (``wsgate proxy -c FILE``: a master and its
workers). Readiness is always waited for: ports, pid files, and log lines the master or a
worker writes at a known moment (a worker logs "gracefully shutting down" only after it
stopped accepting).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.ports import free_ports
from tests.support.procs import running, wsgate_cmd

CONF = """worker_processes {workers};
pid logs/wsgate.pid;
error_log logs/error.log notice;
{extra_main}
events {{ worker_connections 4096; }}
http {{
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  log_format up '$status $upstream_addr "$request"';
  upstream websocket {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{port};
    access_log logs/access.log up;
    location / {{
      proxy_pass http://websocket;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 300s;
      {extra_location}
    }}
    location = /health {{ return 200 "{tag}"; }}
  }}
}}
"""


def write_conf(
    path: Path,
    port: int,
    backends: list[int],
    *,
    tag: str = "v1",
    workers: int = 2,
    extra_main: str = "",
    extra_location: str = "",
) -> None:
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in backends)
    path.write_text(
        CONF.format(
            workers=workers,
            servers=servers,
            port=port,
            tag=tag,
            extra_main=extra_main,
            extra_location=extra_location,
        )
    )


def children(pid: int) -> set[int]:
    """PIDs whose parent is ``pid`` (from /proc), zombies excluded."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def wait_until(predicate: object, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def log_lines(tmp_path: Path, name: str = "error.log") -> list[str]:
    path = tmp_path / "logs" / name
    return path.read_text().splitlines() if path.exists() else []


def shutting_down(tmp_path: Path, pids: set[int]) -> bool:
    lines = log_lines(tmp_path)
    return all(any(f" {pid}#0: gracefully shutting down" in ln for ln in lines) for pid in pids)


@contextmanager
def proxy(tmp_path: Path, port: int) -> Iterator[int]:
    """Run the master; yield its pid once the port accepts and the workers are up."""
    (tmp_path / "logs").mkdir(exist_ok=True)
    conf = tmp_path / "wsgate.conf"
    with running(wsgate_cmd("proxy", "-c", str(conf)), port=port) as proc:
        pid_file = tmp_path / "logs" / "wsgate.pid"
        wait_until(pid_file.exists, what="pid file")
        assert int(pid_file.read_text()) == proc.pid
        yield proc.pid


@contextmanager
def echo_servers(ports: list[int]) -> Iterator[None]:
    args = ["echo", "--mode", "echo", "--quiet", "--host", "127.0.0.1"]
    for p in ports:
        args += ["--port", str(p)]
    with running(wsgate_cmd(*args), ports=ports):
        yield


def reload_and_wait(tmp_path: Path, master: int, workers: int) -> set[int]:
    """HUP the master; return the new workers once every old one stopped accepting."""
    old = children(master)
    os.kill(master, signal.SIGHUP)
    wait_until(lambda: len(children(master) - old) == workers, what="new workers")
    wait_until(lambda: shutting_down(tmp_path, old), what="old workers to stop accepting")
    return children(master) - old


async def handshake_upstream(port: int, tmp_path: Path) -> str:
    """Open and close one tunnel; return the peer address from its access-log line."""
    before = len(log_lines(tmp_path, "access.log"))
    async with connect(f"ws://127.0.0.1:{port}/probe") as ws:
        await ws.send("probe")
        assert await ws.recv() == "probe"

    async def logged() -> str:
        while True:
            lines = log_lines(tmp_path, "access.log")[before:]
            for line in lines:
                if '"GET /probe HTTP/1.1"' in line:
                    return line.split(" ")[1]
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(logged(), 10)


async def test_reload_ten_times_under_load_loses_nothing(tmp_path: Path) -> None:
    port, a, b, c = free_ports(4)
    conf = tmp_path / "wsgate.conf"
    write_conf(conf, port, [a, b])
    workers = 2
    with echo_servers([a, b, c]), proxy(tmp_path, port) as master:
        stop = asyncio.Event()
        counts = [0] * 200

        async def stream(i: int) -> None:
            async with connect(f"ws://127.0.0.1:{port}/stream") as ws:
                n = 0
                while not stop.is_set():
                    # Two messages in flight: order and completeness are both checked.
                    await ws.send(f"{i}:{n}")
                    await ws.send(f"{i}:{n + 1}")
                    assert await ws.recv() == f"{i}:{n}"
                    assert await ws.recv() == f"{i}:{n + 1}"
                    n += 2
                    counts[i] = n

        tasks = [asyncio.create_task(stream(i)) for i in range(200)]
        loop = asyncio.get_running_loop()
        for r in range(10):
            before = sum(counts)
            backends = [c] if r == 5 else [a, b]
            write_conf(conf, port, backends, tag=f"v{r + 2}")
            await loop.run_in_executor(None, reload_and_wait, tmp_path, master, workers)
            peer = await handshake_upstream(port, tmp_path)
            # New connections follow the new configuration at once.
            assert peer in {f"127.0.0.1:{p}" for p in backends}, (r, peer)
            # Every stream kept flowing through the reload.
            while sum(counts) < before + 400:
                await asyncio.sleep(0.01)
                for t in tasks:
                    if t.done():
                        t.result()  # raises what went wrong in a stream
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert all(n >= 2 for n in counts)
        # Old generations exit once their tunnels closed: back to 1 + worker_processes.
        await loop.run_in_executor(
            None,
            lambda: wait_until(lambda: len(children(master)) == workers, what="old workers exit"),
        )
        lines = log_lines(tmp_path)
        assert not [ln for ln in lines if "[alert]" in ln or "[emerg]" in ln or "[error]" in ln]
        assert sum("signal 1 (SIGHUP) received" in ln for ln in lines) == 10


def test_killed_worker_is_replaced(tmp_path: Path) -> None:
    port, a = free_ports(2)
    write_conf(tmp_path / "wsgate.conf", port, [a])
    with proxy(tmp_path, port) as master:
        wait_until(lambda: len(children(master)) == 2, what="two workers")
        victim = min(children(master))
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: victim not in children(master) and len(children(master)) == 2,
            what="a new worker",
        )
        out = subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{port}/health"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert out.stdout == "v1"
        assert any(
            f"worker process {victim} exited on signal 9" in ln and "[alert]" in ln
            for ln in log_lines(tmp_path)
        )


def test_bad_config_on_reload_keeps_the_old_one(tmp_path: Path) -> None:
    port, a = free_ports(2)
    conf = tmp_path / "wsgate.conf"
    write_conf(conf, port, [a])
    with proxy(tmp_path, port) as master:
        wait_until(lambda: len(children(master)) == 2, what="two workers")
        before = children(master)
        good = conf.read_text()
        conf.write_text(good.replace("events {", "bogus_directive on;\nevents {"))
        # `-s reload` checks the configuration first and signals nothing when it is bad.
        out = subprocess.run(
            wsgate_cmd("proxy", "-c", str(conf), "-s", "reload"),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert out.returncode == 1
        assert f'unknown directive "bogus_directive" in {conf}:5' in out.stderr
        # A HUP sent anyway: the master logs the error and keeps its workers.
        os.kill(master, signal.SIGHUP)
        wait_until(lambda: any("[emerg]" in ln for ln in log_lines(tmp_path)), what="emerg line")
        assert children(master) == before
        http = subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{port}/health"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert http.stdout == "v1"


def test_signals_through_the_pid_file(tmp_path: Path) -> None:
    port, a = free_ports(2)
    conf = tmp_path / "wsgate.conf"
    write_conf(conf, port, [a])

    def ctl(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            wsgate_cmd("proxy", "-c", str(conf), "-s", name),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    with proxy(tmp_path, port) as master:
        wait_until(lambda: len(children(master)) == 2, what="two workers")
        subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/health"], timeout=10, check=False)
        access = tmp_path / "logs" / "access.log"
        wait_until(lambda: access.exists() and access.read_text(), what="access line")
        # logrotate: move the file, then reopen.
        access.rename(tmp_path / "logs" / "access.log.1")
        assert ctl("reopen").returncode == 0
        wait_until(lambda: any("SIGUSR1" in ln for ln in log_lines(tmp_path)), what="USR1")

        def request_lands_in_new_file() -> bool:
            subprocess.run(
                ["curl", "-s", f"http://127.0.0.1:{port}/health"], timeout=10, check=False
            )
            return access.exists()

        wait_until(request_lands_in_new_file, what="new access.log")
        assert ctl("quit").returncode == 0
        wait_until(lambda: not (tmp_path / "logs" / "wsgate.pid").exists(), what="master exit")
    out = ctl("stop")
    assert out.returncode == 1
    assert out.stderr == (
        f'wsgate: [error] open() "{tmp_path}/logs/wsgate.pid" failed '
        "(2: No such file or directory)\n"
    )
    bad = subprocess.run(
        wsgate_cmd("proxy", "-s", "bogus"), capture_output=True, text=True, check=False
    )
    assert (bad.returncode, bad.stderr) == (1, 'wsgate: invalid option: "-s bogus"\n')


async def test_quit_keeps_open_tunnels_until_they_end(tmp_path: Path) -> None:
    port, a = free_ports(2)
    write_conf(tmp_path / "wsgate.conf", port, [a], workers=1)
    with echo_servers([a]), proxy(tmp_path, port) as master:
        loop = asyncio.get_running_loop()
        async with connect(f"ws://127.0.0.1:{port}/t") as ws:
            await ws.send("before")
            assert await ws.recv() == "before"
            (worker,) = children(master)
            os.kill(master, signal.SIGQUIT)
            await loop.run_in_executor(
                None, lambda: wait_until(lambda: shutting_down(tmp_path, {worker}), what="QUIT")
            )
            # The tunnel goes on after QUIT, with the old worker.
            for n in range(5):
                await ws.send(f"after {n}")
                assert await ws.recv() == f"after {n}"
        await loop.run_in_executor(
            None,
            lambda: wait_until(
                lambda: not (tmp_path / "logs" / "wsgate.pid").exists(), what="master exit"
            ),
        )


async def test_worker_shutdown_timeout_ends_tunnels(tmp_path: Path) -> None:
    port, a = free_ports(2)
    write_conf(
        tmp_path / "wsgate.conf", port, [a], workers=1, extra_main="worker_shutdown_timeout 1s;"
    )
    with echo_servers([a]), proxy(tmp_path, port) as master:
        async with connect(f"ws://127.0.0.1:{port}/t") as ws:
            await ws.send("x")
            assert await ws.recv() == "x"
            os.kill(master, signal.SIGQUIT)
            # The worker closes the tunnel once worker_shutdown_timeout has passed.
            await asyncio.wait_for(ws.wait_closed(), 20)
        assert '"GET /t HTTP/1.1"' in (tmp_path / "logs" / "access.log").read_text()


def test_worker_rlimit_nofile_applies_to_workers(tmp_path: Path) -> None:
    port, a = free_ports(2)
    write_conf(
        tmp_path / "wsgate.conf", port, [a], workers=1, extra_main="worker_rlimit_nofile 4321;"
    )
    with proxy(tmp_path, port) as master:
        wait_until(lambda: len(children(master)) == 1, what="one worker")
        (worker,) = children(master)
        limits = Path(f"/proc/{worker}/limits").read_text()
        line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
        assert line.split()[3:5] == ["4321", "4321"]


async def test_websocket_drain_closes_with_1012_on_reload_and_1001_on_quit(
    tmp_path: Path,
) -> None:
    port, a = free_ports(2)
    write_conf(
        tmp_path / "wsgate.conf",
        port,
        [a],
        workers=1,
        extra_main="worker_shutdown_timeout 1s;",
        extra_location="websocket_drain on;",
    )
    loop = asyncio.get_running_loop()
    with echo_servers([a]), proxy(tmp_path, port) as master:
        async with connect(f"ws://127.0.0.1:{port}/old") as old:
            await old.send("x")
            assert await old.recv() == "x"
            await loop.run_in_executor(None, reload_and_wait, tmp_path, master, 1)
            # The retired worker keeps its tunnel until worker_shutdown_timeout...
            await old.send("still")
            assert await old.recv() == "still"
            # ...then closes it with Close 1012 (service restart), not a reset.
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(old.recv(), 20)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1012
        async with connect(f"ws://127.0.0.1:{port}/new") as new:
            await new.send("y")
            assert await new.recv() == "y"
            os.kill(master, signal.SIGQUIT)
            # QUIT: Close 1001 (going away) at once.
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(new.recv(), 20)
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
        await loop.run_in_executor(
            None,
            lambda: wait_until(
                lambda: not (tmp_path / "logs" / "wsgate.pid").exists(), what="master exit"
            ),
        )
