"""CPU time and memory from /proc.

/proc/PID/stat's utime+stime cover all threads of the process, so a
multi-threaded ringgate is one pid. nginx forks workers, so callers measure
the whole process tree (master + workers) with `tree_cpu_seconds`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    data = Path(f"/proc/{pid}/stat").read_text()
    # comm (field 2) may contain spaces/parens: split after the last ')'.
    rest = data[data.rindex(")") + 2:].split()
    return rest  # rest[0] is field 3 (state)


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    f = _stat_fields(pid)
    utime, stime = int(f[11]), int(f[12])  # fields 14 and 15
    return (utime + stime) / CLK_TCK


def ppid(pid: int) -> int:
    return int(_stat_fields(pid)[1])


def children(pid: int) -> list[int]:
    """Direct children of pid (scans /proc; fine for a handful of processes)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if ppid(int(entry)) == pid:
                out.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    result, todo = [], [pid]
    while todo:
        p = todo.pop()
        result.append(p)
        todo.extend(children(p))
    return result


def tree_cpu_seconds(pids: Iterable[int]) -> float:
    """Sum of cpu_seconds over pids; processes that vanished count as 0."""
    total = 0.0
    for p in pids:
        try:
            total += cpu_seconds(p)
        except (OSError, ValueError, IndexError):
            pass
    return total


def status_kib(pid: int, key: str) -> Optional[int]:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM, ...), in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_kib(pid: int) -> Optional[int]:
    return status_kib(pid, "VmRSS")


def hwm_kib(pid: int) -> Optional[int]:
    return status_kib(pid, "VmHWM")


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def cpu_busy_seconds(cpu: int) -> Optional[float]:
    """Busy time of one CPU from /proc/stat (everything but idle and iowait), in seconds."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            v = [int(x) for x in line.split()[1:]]
            # user nice system idle iowait irq softirq steal guest guest_nice; guest is in user already
            busy = sum(v[:8]) - v[3] - v[4]
            return busy / CLK_TCK
    return None


def fd_count(pid: int) -> Optional[int]:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
