"""``python -m bench --profile``: where a wsgate worker spends its time, per workload.

Theory of operation:

* CPU: the backends and one ``wsgate proxy`` with one worker run as in the benchmark. For
  each busy workload the load generator runs while ``py-spy record`` samples the worker
  (``--nonblocking``, so the worker is never paused) for ``--duration`` seconds, after the
  warm-up. The collapsed stacks are kept in ``bench/results/profile-<workload>.txt`` and
  summarised as the functions with the most samples on top of the stack (*self*) and
  anywhere in it (*total*). Samples with no Python frame of wsgate or asyncio on top are
  time in uvloop, libuv and the kernel, and land on the loop's ``run`` frame.
* Memory per idle tunnel: a worker runs in a child process of this module
  (``--traced-worker``) with ``tracemalloc`` on. It snapshots the Python heap once the
  primer tunnels are open and again once all are open, and prints the growth per tunnel
  by source line. ``tracemalloc`` sees Python allocations only: libuv's handles and the
  kernel's socket buffers are not in it (nor, for the buffers, in RSS).

py-spy is a tool of this command only, not a dependency of the project: install it into
the same environment (``pip install py-spy``) before ``--profile``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import linecache
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.runner import RESULTS, SCENARIOS, Scenario
from bench.services import REPO, free_ports, node_backends, proxy_conf, wsgate_proxy

__all__ = ["LOOP", "Summary", "profile_main", "summarize"]

TOP = 12


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(found, os.X_OK):
        raise SystemExit("py-spy not found: `pip install py-spy` into this environment first")
    return found


LOOP = "[event loop: uvloop, libuv, system calls]"


def _name(frame: str, line: bool = False) -> str:
    """``func (path/to/file.py:12)`` -> ``func (file.py)`` (``file.py:12`` with ``line``);
    keeps wsgate's package path."""
    func, _, where = frame.partition(" (")
    path, _, lineno = where.rstrip(")").rpartition(":")
    ours = "wsgate/" in path
    path = "wsgate/" + path.split("wsgate/", 1)[1] if ours else path.rsplit("/", 1)[-1]
    return f"{func} ({path}:{lineno})" if line else f"{func} ({path})"


@dataclass
class Summary:
    """Samples of one profile, counted by function and by line."""

    samples: int = 0
    own: collections.Counter[str] = field(default_factory=collections.Counter)
    own_lines: collections.Counter[str] = field(default_factory=collections.Counter)
    total: collections.Counter[str] = field(default_factory=collections.Counter)


def summarize(collapsed: str) -> Summary:
    """Count py-spy's ``--format raw`` output (``frame;frame;... count`` per line, outermost
    first) from the event loop down: frames above the loop's ``Runner.run`` (start-up,
    master, worker main) are dropped, and a sample with no frame below it is time spent in
    the loop itself (:data:`LOOP`)."""
    out = Summary()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if " (" in f]
        runner = [i for i, f in enumerate(frames) if f.startswith("Runner.run ")]
        if runner:
            frames = frames[runner[-1] + 1 :]
        out.samples += count
        if not frames:
            for counter in (out.own, out.own_lines, out.total):
                counter[LOOP] += count
            continue
        out.own[_name(frames[-1])] += count
        out.own_lines[_name(frames[-1], line=True)] += count
        for name in {_name(f) for f in frames}:
            out.total[name] += count
    return out


def _table(title: str, rows: list[tuple[str, int]], samples: int) -> list[str]:
    out = [f"| {title} | samples | share |", "|---|---:|---:|"]
    out += [f"| `{name}` | {n} | {n / samples:.0%} |" for name, n in rows]
    return out


def _profile_cpu(args: argparse.Namespace, workdir: Path, out: Path) -> list[str]:
    py_spy = _py_spy()
    busy: list[Scenario] = [s for s in SCENARIOS if s.key in args.scenarios and s.loadgen != "idle"]
    lines: list[str] = []
    with node_backends(workdir) as backends:
        bports = [b.port for b in backends]
        service = wsgate_proxy(workdir, "wsgate-profiled", bports, 1)
        try:
            worker = service.worker_pids()[0]
            for sc in busy:
                lines += _profile_one(args, sc, py_spy, service.port, worker, out)
        finally:
            service.stop()
    return lines


def _profile_one(
    args: argparse.Namespace, sc: Scenario, py_spy: str, port: int, worker: int, out: Path
) -> list[str]:
    loadgen = subprocess.Popen(
        [
            sys.executable, "-m", "bench.loadgen", "--scenario", sc.loadgen,
            "--ports", str(port), "--conns", str(sc.conns), "--size", str(sc.size),
            "--duration", str(args.duration + 1.0), "--warmup", str(args.warmup),
        ],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(args.warmup + 0.5)  # the load generator has connected and warmed up
        dest = out / f"profile-{sc.key}.txt"
        subprocess.run(
            [
                py_spy, "record", "--pid", str(worker), "--duration", str(int(args.duration)),
                "--rate", "250", "--nonblocking", "--format", "raw", "--output", str(dest),
            ],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        loadgen.wait(timeout=args.duration + args.warmup + 60)
    got = summarize(dest.read_text())
    n = max(got.samples, 1)
    print(f"  profiled {sc.key}: {got.samples} samples", file=sys.stderr, flush=True)
    return [
        f"### {sc.title}",
        "",
        f"{got.samples} samples of the busy worker at 250 Hz (`{dest.name}`); time in C "
        "called from a Python line (a transport's write, a socket call) counts on that line.",
        "",
        *_table("self, by function", got.own.most_common(TOP), n),
        "",
        *_table("self, by line", got.own_lines.most_common(TOP), n),
        "",
        *_table("total (the function or its callees)", got.total.most_common(TOP), n),
        "",
    ]


def _profile_memory(args: argparse.Namespace, workdir: Path) -> list[str]:
    tunnels = min(args.idle, 3000)
    prime = 200
    with node_backends(workdir) as backends:
        port = free_ports(1)[0]
        conf = workdir / "traced.conf"
        conf.write_text(proxy_conf(port, [b.port for b in backends], 1, nginx=False))
        (workdir / "logs").mkdir(exist_ok=True)
        traced = subprocess.Popen(
            [sys.executable, "-m", "bench.profile", "--traced-worker", str(conf), str(workdir),
             str(prime), str(prime + tunnels)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        try:
            assert traced.stdout is not None
            if traced.stdout.readline().strip() != "ready":
                raise RuntimeError(f"traced worker failed: {traced.communicate()[1][-2000:]}")
            subprocess.run(
                [
                    sys.executable, "-m", "bench.loadgen", "--scenario", "idle",
                    "--ports", str(port), "--conns", str(tunnels), "--prime", str(prime),
                    "--warmup", "2.0",
                ],
                cwd=REPO, check=True, stdout=subprocess.DEVNULL, timeout=300,
            )  # fmt: skip
            report, err = traced.communicate(timeout=60)
        finally:
            if traced.poll() is None:
                traced.kill()
                traced.wait()
    return [
        "### Memory per idle tunnel (tracemalloc, Python heap only)",
        "",
        f"Growth of the worker's Python heap from {prime} to {prime + tunnels} open tunnels, "
        "by the line that allocated it.",
        "",
        report.strip() or f"(no report: {err[-500:]})",
        "",
    ]


def _traced_worker(conf_path: str, prefix: str, first: int, second: int) -> None:
    """Serve ``conf_path`` in this process with tracemalloc; snapshot at ``first`` and
    ``second`` open tunnels; print the growth per tunnel by line (markdown), then exit."""
    import uvloop

    from wsgate.conf.build import load
    from wsgate.proxy.worker import Worker

    async def serve() -> None:
        conf = load(conf_path, prefix=prefix)
        worker = Worker(conf)
        await worker.start()
        print("ready", flush=True)
        snaps: list[tracemalloc.Snapshot] = []
        deadline = time.monotonic() + 240
        for goal in (first, second):
            while len(worker.tunnels) < goal and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            snaps.append(tracemalloc.take_snapshot())
        n = max(1, len(worker.tunnels) - first)
        stats = snaps[1].compare_to(snaps[0], "lineno")
        grown = sum(s.size_diff for s in stats)
        rows = [
            f"Python heap growth: {grown / n:,.0f} bytes per tunnel ({n} tunnels).",
            "",
            "| allocated at (line, code) | bytes per tunnel | objects per tunnel |",
            "|---|---:|---:|",
        ]
        for s in stats[:15]:
            frame = s.traceback[0]
            name = frame.filename
            where = "wsgate/" + name.split("wsgate/", 1)[1] if "wsgate/" in name else name
            where = where.rsplit("/", 1)[-1] if where.startswith("/") else where
            code = linecache.getline(frame.filename, frame.lineno).strip().replace("|", "\\|")
            rows.append(
                f"| `{where}:{frame.lineno}` `{code[:70]}` | {s.size_diff / n:,.0f} "
                f"| {s.count_diff / n:.1f} |"
            )
        print("\n".join(rows), flush=True)
        await worker.stop(graceful=False)

    tracemalloc.start(1)
    uvloop.run(serve())


def profile_main(args: argparse.Namespace) -> int:
    """Profile the busy workloads with py-spy and the idle tunnels with tracemalloc; write
    ``bench/results/profile.md`` and print it."""
    out = RESULTS
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# wsgate worker profile", ""]
    with tempfile.TemporaryDirectory(prefix="wsgate-profile-") as tmp:
        cpu_dir, mem_dir = Path(tmp) / "cpu", Path(tmp) / "mem"
        cpu_dir.mkdir()
        mem_dir.mkdir()
        lines += _profile_cpu(args, cpu_dir, out)
        if "idle" in args.scenarios:
            lines += _profile_memory(args, mem_dir)
    text = "\n".join(lines)
    (out / "profile.md").write_text(text + "\n")
    print(text)
    return 0


def main(argv: Sequence[str]) -> int:
    """``python -m bench.profile --traced-worker CONF PREFIX FIRST SECOND`` (internal)."""
    if len(argv) == 5 and argv[0] == "--traced-worker":
        _traced_worker(argv[1], argv[2], int(argv[3]), int(argv[4]))
        return 0
    print("usage: python -m bench --profile", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
