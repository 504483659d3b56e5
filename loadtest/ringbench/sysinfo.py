"""What machine and which tool versions a result came from."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path


def _first_line(cmd: list[str]) -> str:
    try:
        cp = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        text = (cp.stdout or cp.stderr).strip()
        return text.splitlines()[0] if text else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def _short_version(line: str) -> str:
    """'wrk debian/4.1.0-3+b2 [epoll] Copyright ...' -> 'wrk debian/4.1.0-3+b2 [epoll]'."""
    for cut in (" Copyright", " - http", "nginx version: "):
        if cut in line:
            line = line.replace(cut, "", 1) if cut.endswith(": ") else line.split(cut, 1)[0]
    return line.strip()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def git_rev(repo: Path) -> str:
    rev = _first_line(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"])
    if "fatal" in rev or rev == "?":
        rev = "no commit"
    dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain"], capture_output=True,
                           text=True).stdout.strip()
    return rev + (" (dirty)" if dirty else "")


def gather(repo: Path, tools: dict[str, list[str]], when: datetime.datetime | None = None) -> dict:
    """tools: name -> version command; when: the run's start (default now)."""
    when = when or datetime.datetime.now(datetime.timezone.utc)
    return {
        "date": when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "kernel": platform.release(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "git": git_rev(repo),
        "tools": {name: _short_version(_first_line(cmd)) for name, cmd in tools.items()},
    }
