"""The benchmark: every scenario against every target, in alternating rounds.

Theory of operation:

* Two node ``ws`` echo backends run for the whole benchmark. The proxies under test (nginx
  and wsgate, each with 1 and 2 workers, all with the same configuration) are started once
  for the throughput scenarios; ``direct`` sends the same load straight to the backends.
* For each scenario, the targets take turns, round after round (A B C A B C ...), so that
  a drift of the machine (another tenant, thermal, caches) lands on all of them alike. Each
  turn is one run of :mod:`bench.loadgen` (a fresh process) with a warm-up, then a window
  of ``--duration`` seconds, in which it reads the proxy's CPU from ``/proc``.
* ``floor-1w`` (:mod:`bench.floor`) is the least a Python proxy on uvloop does per
  request, with none of the product's features; it runs the per-request scenarios only, to
  show how much of wsgate's cost there is the interpreter's and how much its features'.
* The idle-tunnel scenario starts a fresh proxy for each turn (a process that already
  served other scenarios would reuse memory it freed) and reports the growth of the whole
  tree's RSS (master + workers) per tunnel held.
* Each figure in the report is the median over the rounds. Ratios compare wsgate with nginx
  at the same worker count, measured in the same run.

Everything listens on 127.0.0.1 on ports chosen at run time; every process is started in
its own session and stopped by PID (:mod:`bench.services`), also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import report
from bench.services import (
    NGINX,
    REPO,
    Service,
    floor_proxy,
    nginx_proxy,
    node_backends,
    wsgate_proxy,
)

__all__ = ["SCENARIOS", "TARGETS", "Scenario", "Target", "main"]


@dataclass(frozen=True, slots=True)
class Scenario:
    """One workload: which loadgen scenario, how many connections, what message size."""

    key: str
    title: str
    loadgen: str  # echo | session | http | idle
    conns: int
    size: int
    unit: str  # what one operation is, for "CPU per ..."


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes: ``direct`` to the backends, or a proxy and its worker count."""

    key: str
    kind: str  # direct | nginx | wsgate | floor
    workers: int
    frames: bool = False  # wsgate with the frame-aware relay (docs/websocket.md)
    keepalive: bool = False  # upstream keepalive (bench/services.py, proxy_conf)
    scenarios: tuple[str, ...] = ()  # the scenarios it runs (all when empty)
    default: bool = True  # in a run without --targets

    def runs(self, scenario: Scenario) -> bool:
        """Whether this target takes part in ``scenario``."""
        return not self.scenarios or scenario.key in self.scenarios


SCENARIOS = (
    Scenario("echo50", "echo round trip, 32 B, 50 connections", "echo", 50, 32, "round trip"),
    Scenario("echo500", "echo round trip, 32 B, 500 connections", "echo", 500, 32, "round trip"),
    Scenario("bulk", "bulk echo, 64 KiB messages, 8 connections", "echo", 8, 65536, "MB"),
    Scenario("session", "new session (upgrade, one echo, close), 20 at once", "session", 20, 32,
             "session"),
    Scenario("http", "HTTP GET, 50 keep-alive connections", "http", 50, 0, "request"),
    Scenario("idle", "idle tunnels held", "idle", 9000, 32, "tunnel"),
)  # fmt: skip

TARGETS = (
    Target("direct", "direct", 0),
    Target("nginx-1w", "nginx", 1),
    Target("wsgate-1w", "wsgate", 1),
    Target("nginx-2w", "nginx", 2),
    Target("wsgate-2w", "wsgate", 2),
    # The least a Python proxy does per request (bench/floor.py), for the per-request
    # targets only.
    Target("floor-1w", "floor", 1, scenarios=("session", "http")),
    # Not in the default run: ask for it with --targets.
    Target("wsgate-frames-1w", "wsgate", 1, frames=True, default=False),
    Target("nginx-keepalive-1w", "nginx", 1, keepalive=True, default=False),
    Target("wsgate-keepalive-1w", "wsgate", 1, keepalive=True, default=False),
)

RESULTS = REPO / "bench" / "results"


def _raise_nofile() -> None:
    """Raise the soft descriptor limit to the hard one (children inherit it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _start_proxy(workdir: Path, target: Target, backends: Sequence[int], tag: str) -> Service:
    name = f"{target.key}{tag}"
    if target.kind == "nginx":
        return nginx_proxy(workdir, name, backends, target.workers, target.keepalive)
    if target.kind == "floor":
        return floor_proxy(workdir, name, backends)
    return wsgate_proxy(workdir, name, backends, target.workers, target.frames, target.keepalive)


def run_loadgen(
    scenario: Scenario,
    ports: Sequence[int],
    watch: Sequence[int],
    backend_pids: Sequence[int],
    duration: float,
    warmup: float,
    conns: int | None = None,
    prime: int = 0,
) -> dict[str, Any]:
    """One run of :mod:`bench.loadgen`; its JSON result.

    Raises:
        RuntimeError: the load generator failed.
    """
    cmd = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--scenario",
        scenario.loadgen,
        "--ports",
        ",".join(map(str, ports)),
        "--conns",
        str(conns if conns is not None else scenario.conns),
        "--size",
        str(scenario.size),
        "--duration",
        str(duration),
        "--warmup",
        str(warmup),
        "--watch",
        ",".join(map(str, watch)),
        "--backend-pids",
        ",".join(map(str, backend_pids)),
        "--prime",
        str(prime),
    ]
    timeout = duration + warmup + 120
    done = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def derive(scenario: Scenario, raw: dict[str, Any]) -> dict[str, float]:
    """Per-run figures: throughput, latency, CPU per operation, loadgen load."""
    if scenario.loadgen == "idle":
        tunnels = max(1, int(raw["tunnels"]))
        return {
            "tunnels": float(raw["tunnels"]),
            "rss_before_kb": float(raw["rss_before_kb"]),
            "rss_after_kb": float(raw["rss_after_kb"]),
            "kb_per_tunnel": (raw["rss_after_kb"] - raw["rss_before_kb"]) / tunnels,
            "open_rate": raw["tunnels"] / max(raw["open_seconds"], 1e-9),
        }
    seconds = raw["seconds"]
    ops = max(1, int(raw["ops"]))
    # Bulk counts megabytes (10^6 bytes) of echoed payload: each one crosses the proxy
    # twice (up and back). The other scenarios count operations.
    units = ops * scenario.size / 1e6 if scenario.unit == "MB" else float(ops)
    return {
        "rate": units / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "proxy_us": raw["proxy_cpu_s"] / units * 1e6,
        "proxy_user_us": raw["proxy_user_s"] / units * 1e6,
        "proxy_sys_us": raw["proxy_sys_s"] / units * 1e6,
        "loadgen_busy": raw["loadgen_cpu_s"] / seconds,
        "loadgen_ceiling": units / max(raw["loadgen_cpu_s"], 1e-9),
        "cores_busy": (raw["proxy_cpu_s"] + raw["loadgen_cpu_s"] + raw["backend_cpu_s"]) / seconds,
        "errors": float(len(raw["errors"])),
    }


def medians(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """The median of each figure over the rounds."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


@contextlib.contextmanager
def _proxies(
    workdir: Path, targets: Sequence[Target], backends: Sequence[int]
) -> Iterator[dict[str, Service]]:
    started: dict[str, Service] = {}
    try:
        for target in targets:
            if target.kind != "direct":
                started[target.key] = _start_proxy(workdir, target, backends, "")
        yield started
    finally:
        for service in started.values():
            service.stop()


def _log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_benchmark(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Run every selected scenario against every selected target; the raw and median data."""
    targets = [t for t in TARGETS if t.key in args.targets]
    scenarios = [s for s in SCENARIOS if s.key in args.scenarios]
    runs: dict[str, dict[str, list[dict[str, float]]]] = {}
    raw_runs: list[dict[str, Any]] = []
    pids: list[int] = []
    t_start = time.monotonic()
    with node_backends(workdir) as backends:
        bports = [b.port for b in backends]
        bpids = [b.pid for b in backends]
        pids.extend(bpids)
        busy = [s for s in scenarios if s.loadgen != "idle"]
        if busy:
            used = [t for t in targets if any(t.runs(s) for s in busy)]
            with _proxies(workdir, used, bports) as proxies:
                for service in proxies.values():
                    pids.extend([service.pid, *service.worker_pids()])
                for scenario in busy:
                    for rnd in range(args.rounds):
                        for target in targets:
                            if not target.runs(scenario):
                                continue
                            proxy = proxies.get(target.key)
                            ports = bports if proxy is None else [proxy.port]
                            watch = [] if proxy is None else [proxy.pid]
                            raw = run_loadgen(
                                scenario, ports, watch, bpids, args.duration, args.warmup
                            )
                            fig = derive(scenario, raw)
                            _note(scenario, target, rnd, raw, fig)
                            raw_runs.append({"target": target.key, "round": rnd, **raw})
                            runs.setdefault(scenario.key, {}).setdefault(target.key, [])
                            runs[scenario.key][target.key].append(fig)
        idle = [s for s in scenarios if s.loadgen == "idle"]
        for scenario in idle:
            for rnd in range(min(args.rounds, args.idle_rounds)):
                for target in targets:
                    if target.kind == "direct" or not target.runs(scenario):
                        continue
                    service = _start_proxy(workdir, target, bports, f"-idle{rnd}")
                    pids.extend([service.pid, *service.worker_pids()])
                    try:
                        raw = run_loadgen(
                            scenario, [service.port], [service.pid], bpids, 0.0, args.settle,
                            conns=args.idle, prime=args.prime,
                        )  # fmt: skip
                    finally:
                        service.stop()
                    fig = derive(scenario, raw)
                    _note(scenario, target, rnd, raw, fig)
                    raw_runs.append({"target": target.key, "round": rnd, **raw})
                    runs.setdefault(scenario.key, {}).setdefault(target.key, []).append(fig)
    elapsed = time.monotonic() - t_start
    return {
        "scenarios": [s.key for s in scenarios],
        "targets": [t.key for t in targets],
        "medians": {
            sk: {tk: medians(rs) for tk, rs in by_target.items()} for sk, by_target in runs.items()
        },
        "rounds": runs,
        "raw": raw_runs,
        "pids": pids,
        "elapsed_s": elapsed,
    }


def _note(
    scenario: Scenario, target: Target, rnd: int, raw: dict[str, Any], fig: dict[str, float]
) -> None:
    if scenario.loadgen == "idle":
        text = f"{fig['tunnels']:.0f} tunnels, {fig['kb_per_tunnel']:.1f} KB each"
    else:
        text = (
            f"{fig['rate']:,.0f} {'MB' if scenario.unit == 'MB' else 'ops'}/s, "
            f"proxy {fig['proxy_us']:.1f} us/{scenario.unit}, "
            f"loadgen {fig['loadgen_busy']:.0%}"
        )
    _log(f"  {scenario.key:8} r{rnd + 1} {target.key:10} {text}")
    for err in raw["errors"][:3]:
        _log(f"    error: {err}")


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import uvloop

    nginx = "absent"
    with contextlib.suppress(OSError):
        out = subprocess.run([NGINX, "-v"], capture_output=True, text=True, check=False)
        nginx = out.stderr.strip().split("/")[-1]
    node = "absent"
    if shutil.which("node"):
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    ws = "?"
    with contextlib.suppress(OSError, ValueError):
        ws = json.loads((REPO / "node_modules" / "ws" / "package.json").read_text())["version"]
    head = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "wsgate": head or "unknown",
        "cpus": str(os.cpu_count()),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "uvloop": str(getattr(uvloop, "__version__", "?")),
        "nginx": nginx,
        "node": node,
        "ws": ws,
    }


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The benchmark's flags."""
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="wsgate against nginx: throughput, latency, proxy CPU per operation, "
        "memory per idle tunnel. Writes a markdown report.",
    )
    p.add_argument("--duration", type=float, default=2.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds before each window")
    p.add_argument("--rounds", type=int, default=3, help="rounds per scenario (median)")
    p.add_argument("--idle", type=int, default=9000, help="idle tunnels to hold")
    p.add_argument("--prime", type=int, default=200, help="tunnels opened before the RSS")
    p.add_argument("--idle-rounds", type=int, default=2, help="rounds of the idle scenario")
    p.add_argument("--settle", type=float, default=0.5, help="seconds before reading RSS")
    p.add_argument(
        "--targets",
        type=lambda s: s.split(","),
        default=[t.key for t in TARGETS if t.default],
        help="comma-separated, from: " + ",".join(t.key for t in TARGETS),
    )
    p.add_argument(
        "--scenarios",
        type=lambda s: s.split(","),
        default=[s.key for s in SCENARIOS],
        help="comma-separated, from: " + ",".join(s.key for s in SCENARIOS),
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a ~10-second run (short windows, 1 round, 300 idle tunnels) for CI",
    )
    p.add_argument("--out", type=Path, default=RESULTS / "latest.md", help="markdown report")
    p.add_argument("--profile", action="store_true", help="profile wsgate with py-spy instead")
    args = p.parse_args(argv)
    if args.smoke:
        args.duration, args.warmup, args.rounds = 0.2, 0.05, 1
        args.idle, args.prime, args.settle = 300, 50, 0.1
    unknown = set(args.targets) - {t.key for t in TARGETS}
    unknown |= set(args.scenarios) - {s.key for s in SCENARIOS}
    if unknown:
        p.error(f"unknown target or scenario: {', '.join(sorted(unknown))}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench``: run, write ``--out`` (and a ``.json`` beside it), print it."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    _raise_nofile()
    if args.profile:
        from bench.profile import profile_main

        return profile_main(args)
    command = " ".join(["python -m bench", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory(prefix="wsgate-bench-") as tmp:
        data = run_benchmark(args, Path(tmp))
    data["machine"] = machine()
    data["command"] = command
    data["settings"] = {
        "duration": args.duration,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "idle": args.idle,
        "prime": args.prime,
        "idle_rounds": min(args.rounds, args.idle_rounds),
    }
    text = report.render(data, SCENARIOS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print(text)
    return 0
