"""The markdown report of a benchmark run (``bench/results/latest.md``).

:func:`render` takes the data :func:`bench.runner.run_benchmark` returns (plus ``machine``,
``command`` and ``settings``) and writes five tables: throughput/latency/CPU per workload and
target, idle tunnels, the issue's targets as ratios to nginx, scaling from one worker to two,
and the load generator's own ceiling. A figure that was not measured prints as ``n/a``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.runner import Scenario

__all__ = ["TABLE_HEADER", "render"]

TABLE_HEADER = (
    "| workload | target | throughput | p50 | p99 | proxy CPU per op (user + sys) | CPU vs nginx "
    "| throughput vs nginx | loadgen CPU |"
)

Medians = dict[str, dict[str, dict[str, float]]]


def _nginx_for(target: str) -> str | None:
    if target.startswith(("wsgate-", "floor-")):
        # wsgate[-frames]-Nw, floor-1w -> nginx-Nw; wsgate-keepalive-Nw -> nginx-keepalive-Nw
        workers = target.rsplit("-", 1)[1]
        return f"nginx-keepalive-{workers}" if "-keepalive-" in target else f"nginx-{workers}"
    if target.startswith("nginx-"):
        return target
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}x"


def _get(med: Medians, scenario: str, target: str | None, key: str) -> float | None:
    if target is None:
        return None
    return med.get(scenario, {}).get(target, {}).get(key)


def _rate(value: float, unit: str) -> str:
    return f"{value:,.0f} MB/s" if unit == "MB" else f"{value:,.0f}/s"


def _cpu(fig: dict[str, float], unit: str) -> str:
    """Total CPU per op, then (user + system)."""
    if unit == "MB":
        return (
            f"{fig['proxy_us']:,.0f} us/MB "
            f"({fig['proxy_user_us']:,.0f} + {fig['proxy_sys_us']:,.0f})"
        )
    return f"{fig['proxy_us']:.1f} us ({fig['proxy_user_us']:.1f} + {fig['proxy_sys_us']:.1f})"


def _throughput_table(med: Medians, scenarios: Sequence[Scenario], targets: list[str]) -> str:
    lines = [TABLE_HEADER, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for sc in scenarios:
        if sc.loadgen == "idle" or sc.key not in med:
            continue
        for target in targets:
            fig = med[sc.key].get(target)
            if fig is None:
                continue
            ref = _nginx_for(target)
            proxied = target != "direct"
            cpu_ratio = _ratio(fig["proxy_us"], _get(med, sc.key, ref, "proxy_us"))
            rate_ratio = _ratio(fig["rate"], _get(med, sc.key, ref, "rate"))
            lines.append(
                f"| {sc.title} | {target} | {_rate(fig['rate'], sc.unit)} "
                f"| {fig['p50_ms']:.2f} ms | {fig['p99_ms']:.2f} ms "
                f"| {_cpu(fig, sc.unit) if proxied else 'n/a'} "
                f"| {_fmt_ratio(cpu_ratio) if proxied else 'n/a'} "
                f"| {_fmt_ratio(rate_ratio) if proxied else 'n/a'} "
                f"| {fig['loadgen_busy']:.0%} |"
            )
    return "\n".join(lines)


def _idle_table(med: Medians, targets: list[str]) -> str:
    idle = med.get("idle", {})
    lines = [
        "| target | tunnels held | proxy RSS before | proxy RSS after | per tunnel | vs nginx "
        "| tunnels opened per second |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for target in targets:
        fig = idle.get(target)
        if fig is None:
            continue
        ratio = _ratio(fig["kb_per_tunnel"], _get(med, "idle", _nginx_for(target), "kb_per_tunnel"))
        lines.append(
            f"| {target} | {fig['tunnels']:,.0f} | {fig['rss_before_kb'] / 1024:,.1f} MiB "
            f"| {fig['rss_after_kb'] / 1024:,.1f} MiB | {fig['kb_per_tunnel']:.1f} KiB "
            f"| {_fmt_ratio(ratio)} | {fig['open_rate']:,.0f} |"
        )
    return "\n".join(lines)


# (what, scenario, figure, required ratio or absolute, higher is better, absolute limit)
_TARGETS: tuple[tuple[str, str, str, float, bool, bool], ...] = (
    ("CPU per echo round trip, 50 connections", "echo50", "proxy_us", 1.0, False, False),
    ("CPU per echo round trip, 500 connections", "echo500", "proxy_us", 1.0, False, False),
    ("CPU per MB, bulk 64 KiB", "bulk", "proxy_us", 0.5, False, False),
    ("MB/s, bulk 64 KiB", "bulk", "rate", 1.5, True, False),
    ("CPU per new session", "session", "proxy_us", 1.2, False, False),
    ("memory per idle tunnel (KiB, absolute)", "idle", "kb_per_tunnel", 4.0, False, True),
    ("HTTP GET requests/s", "http", "rate", 0.8, True, False),
)


def _targets_table(med: Medians) -> str:
    lines = [
        "| target (issue 8, item 2) | required | wsgate-1w vs nginx-1w | wsgate-2w vs nginx-2w "
        "| met (1 worker) | floor-1w vs nginx-1w |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for what, sc, key, limit, higher, absolute in _TARGETS:
        cells = []
        met: bool | None = None
        for mine_key, w in (("wsgate-1w", "1w"), ("wsgate-2w", "2w"), ("floor-1w", "1w")):
            mine = _get(med, sc, mine_key, key)
            theirs = _get(med, sc, f"nginx-{w}", key)
            if absolute:
                value = mine
                cell = "n/a" if mine is None else f"{mine:.1f} (nginx {theirs or 0:.1f})"
            else:
                value = _ratio(mine, theirs)
                cell = _fmt_ratio(value)
            cells.append(cell)
            if mine_key == "wsgate-1w" and value is not None:
                met = value >= limit if higher else value <= limit
        sign = ">=" if higher else "<="
        need = f"{sign} {limit:g}" + ("" if absolute else "x")
        verdict = "n/a" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {what} | {need} | {cells[0]} | {cells[1]} | {verdict} | {cells[2]} |")
    return "\n".join(lines)


def _scaling_table(med: Medians, scenarios: Sequence[Scenario]) -> str:
    lines = [
        "| workload | nginx 2w / 1w | wsgate 2w / 1w | wsgate-2w vs nginx-2w |",
        "|---|---:|---:|---:|",
    ]
    for sc in scenarios:
        if sc.loadgen == "idle" or sc.key not in med:
            continue

        def rate(target: str, key: str = sc.key) -> float | None:
            return _get(med, key, target, "rate")

        lines.append(
            f"| {sc.title} | {_fmt_ratio(_ratio(rate('nginx-2w'), rate('nginx-1w')))} "
            f"| {_fmt_ratio(_ratio(rate('wsgate-2w'), rate('wsgate-1w')))} "
            f"| {_fmt_ratio(_ratio(rate('wsgate-2w'), rate('nginx-2w')))} |"
        )
    return "\n".join(lines)


def _loadgen_table(med: Medians, scenarios: Sequence[Scenario], targets: list[str]) -> str:
    lines = [
        "| workload | loadgen CPU per op | its ceiling (one core) | most it drove "
        "| its CPU at most | cores busy (all processes) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for sc in scenarios:
        if sc.loadgen == "idle" or sc.key not in med:
            continue
        figs = [med[sc.key][t] for t in targets if t in med[sc.key]]
        # Direct runs are the busiest, where batching per wake-up is as in a saturated run.
        base = med[sc.key].get("direct")
        ceiling = (base or min(figs, key=lambda f: f["loadgen_ceiling"]))["loadgen_ceiling"]
        per_op = 1e6 / ceiling
        unit = "us/MB" if sc.unit == "MB" else "us"
        lines.append(
            f"| {sc.title} | {per_op:,.1f} {unit} | {_rate(ceiling, sc.unit)} "
            f"| {_rate(max(f['rate'] for f in figs), sc.unit)} "
            f"| {max(f['loadgen_busy'] for f in figs):.0%} "
            f"| {max(f['cores_busy'] for f in figs):.2f} |"
        )
    return "\n".join(lines)


def render(data: dict[str, Any], scenarios: Sequence[Scenario]) -> str:
    """The whole markdown report."""
    med: Medians = data["medians"]
    targets: list[str] = data["targets"]
    chosen = [s for s in scenarios if s.key in data["scenarios"]]
    m = data["machine"]
    s = data["settings"]
    errors = sum(len(r["errors"]) for r in data["raw"])
    parts = [
        "# wsgate against nginx",
        "",
        f"- Machine: {m['cpus']} CPUs, {m['cpu_model']}, Linux {m['kernel']}",
        f"- Software: Python {m['python']}, uvloop {m['uvloop']}, nginx {m['nginx']}, "
        f"node {m['node']} with ws {m['ws']} (the two echo backends)",
        f"- wsgate: `{m['wsgate']}` (git describe; `-dirty` = uncommitted changes measured)",
        f"- Command: `{data['command']}` ({data['elapsed_s']:.0f} s)",
        f"- Method: {s['rounds']} alternating rounds of {s['duration']:g} s windows after "
        f"{s['warmup']:g} s of warm-up; medians. Idle tunnels: {s['idle']:,} per proxy "
        f"after {s['prime']} primers, {s['idle_rounds']} round(s), a fresh proxy each time. "
        "Proxy CPU is utime + stime of master and workers from /proc/PID/stat; memory is "
        "the growth of their summed VmRSS.",
        f"- Load-generator errors: {errors}",
        "",
        "## Throughput, latency, proxy CPU",
        "",
        "CPU per op: per round trip, per MB of echoed payload (bulk), per session, per "
        "request. Ratios compare with nginx at the same worker count.",
        "",
        _throughput_table(med, chosen, targets),
        "",
    ]
    if "idle" in med:
        parts += ["## Idle tunnels", "", _idle_table(med, targets), ""]
    parts += [
        "## Targets",
        "",
        "The last column is `bench/floor.py`, a Python proxy on uvloop with none of the "
        "product's features: what any Python request path costs at least.",
        "",
        _targets_table(med),
        "",
        "## Scaling: throughput with 2 workers over 1",
        "",
        _scaling_table(med, chosen),
        "",
        "## The load generator",
        "",
        "One process, so at most one core. Ceiling = operations per CPU-second of the load "
        "generator in the direct runs; compare with the most it drove, and with its CPU "
        "share (100% would make it the bottleneck).",
        "",
        _loadgen_table(med, chosen, targets),
        "",
    ]
    return "\n".join(parts)
