"""CPU time and memory of process trees, read from ``/proc`` (Linux only).

A *tree* is a root PID and all its descendants: nginx's master and workers, or wsgate's
master and workers. CPU is ``utime + stime`` from ``/proc/PID/stat`` (clock ticks, usually
10 ms); memory is ``VmRSS`` from ``/proc/PID/status``. The kernel here has no
``/proc/PID/task/TID/children``, so descendants are found by scanning ``/proc`` for parent
PIDs; that costs a few milliseconds and happens only at the edges of a measured window.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = [
    "CLOCK_TICKS",
    "ProcInfo",
    "descendants",
    "proc_info",
    "rss_kb",
    "tree_cpu_seconds",
    "tree_pids",
    "tree_rss_kb",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class ProcInfo:
    """The fields of ``/proc/PID/stat`` the benchmark uses."""

    __slots__ = ("pid", "ppid", "start_ticks", "stime", "utime")

    def __init__(self, pid: int, ppid: int, utime: int, stime: int, start_ticks: int) -> None:
        self.pid = pid
        self.ppid = ppid
        self.utime = utime  # clock ticks in user mode
        self.stime = stime  # clock ticks in the kernel
        self.start_ticks = start_ticks  # start time since boot: tells a reused PID apart

    @property
    def cpu_ticks(self) -> int:
        """``utime + stime``."""
        return self.utime + self.stime


def proc_info(pid: int) -> ProcInfo | None:
    """Parse ``/proc/PID/stat``; ``None`` when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = text[text.rindex(b")") + 2 :].split()
    # rest[0] is field 3 (state); field N is rest[N - 3].
    return ProcInfo(pid, int(rest[1]), int(rest[11]), int(rest[12]), int(rest[19]))


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def descendants(root: int) -> list[int]:
    """Every live descendant of ``root`` (not ``root`` itself)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        info = proc_info(pid)
        if info is not None:
            children.setdefault(info.ppid, []).append(pid)
    out: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), ()):
            out.append(child)
            stack.append(child)
    return out


def tree_pids(roots: Iterable[int]) -> list[int]:
    """The roots and all their live descendants."""
    pids: list[int] = []
    for root in roots:
        pids.append(root)
        pids.extend(descendants(root))
    return pids


def tree_cpu_seconds(roots: Iterable[int]) -> tuple[float, float]:
    """CPU seconds used so far by the trees under ``roots``: (user, system)."""
    user = system = 0
    for pid in tree_pids(roots):
        info = proc_info(pid)
        if info is not None:
            user += info.utime
            system += info.stime
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def rss_kb(pid: int) -> int:
    """``VmRSS`` of one process in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(roots: Iterable[int]) -> int:
    """Sum of ``VmRSS`` over the trees under ``roots`` (shared pages count in each)."""
    return sum(rss_kb(pid) for pid in tree_pids(roots))
