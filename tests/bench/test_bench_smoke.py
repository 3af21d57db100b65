"""CI's only run of the benchmark: ``python -m bench --smoke`` produces its report.

Performance stays a benchmark, not a timed test: nothing here compares a figure with a
threshold or measures wall-clock time. The run must finish, print the markdown report and
write it (with its JSON) to ``--out``, fill a row for every workload and target, and leave
no process behind.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from bench.procstat import proc_info
from bench.report import TABLE_HEADER
from bench.runner import SCENARIOS, TARGETS

from tests.support.nginx import require_nginx
from tests.support.procs import REPO, node_module

SMOKE_TIMEOUT = 300  # seconds; a hang fails, a slow machine does not

_NUMBER = r"[\d,]+(?:\.\d+)?"
# What a run without --targets measures (wsgate-frames-1w only on request).
DEFAULT_TARGETS = [t for t in TARGETS if t.default]


def test_smoke_run_writes_the_report(tmp_path: Path) -> None:
    require_nginx()
    node_module("ws")
    out = tmp_path / "latest.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = out.read_text()
    assert report.strip() in done.stdout
    assert TABLE_HEADER in report

    # A row with a throughput figure for every busy workload and every target.
    for scenario in SCENARIOS:
        if scenario.loadgen == "idle":
            continue
        for target in DEFAULT_TARGETS:
            if not target.runs(scenario):
                continue
            row = re.compile(
                rf"^\| {re.escape(scenario.title)} \| {target.key} \| {_NUMBER}(?: MB)?/s \|",
                re.M,
            )
            assert row.search(report), f"no row for {scenario.key} / {target.key}"

    # Idle tunnels: every proxy held them; the targets table judged every target.
    idle = next(s for s in SCENARIOS if s.loadgen == "idle")
    for target in DEFAULT_TARGETS[1:]:
        if not target.runs(idle):
            continue
        assert re.search(rf"^\| {target.key} \| {_NUMBER} \| ", report, re.M), target.key
    targets_table = report.split("## Targets", 1)[1].split("##", 1)[0]
    verdicts = re.findall(r"\| (yes|\*\*no\*\*) \| [^|]+ \|$", targets_table, re.M)
    assert len(verdicts) == 7
    # The floor's column has figures for the two per-request targets.
    floor = re.findall(rf"\| (?:yes|\*\*no\*\*) \| ({_NUMBER})x \|$", targets_table, re.M)
    assert len(floor) == 2, targets_table

    # Every process the benchmark started is gone (each was stopped by its PID).
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["pids"]
    left = [pid for pid in data["pids"] if proc_info(pid) is not None]
    assert not left, f"processes left behind: {left}"
