"""Install missing tools (apt / cargo) and build ringgate."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable

APT_PACKAGES = {"nginx": "nginx", "wrk": "wrk", "haproxy": "haproxy", "openssl": "openssl"}
EXTRA_PATH = ["/usr/sbin", "/sbin", "/usr/bin", "/bin", str(Path.home() / ".cargo" / "bin")]


def ensure_path() -> None:
    """nginx/haproxy live in /usr/sbin, oha in ~/.cargo/bin: make sure PATH has them."""
    parts = os.environ.get("PATH", "").split(os.pathsep)
    for p in EXTRA_PATH:
        if p not in parts:
            parts.append(p)
    os.environ["PATH"] = os.pathsep.join(parts)


def which(tool: str) -> str | None:
    ensure_path()
    return shutil.which(tool)


def missing(tools: Iterable[str]) -> list[str]:
    return [t for t in tools if which(t) is None]


def _run(cmd: list[str], log) -> None:
    log(f"$ {' '.join(cmd)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(cmd, check=True, env=env)


def ensure_tools(tools: Iterable[str], log=print) -> None:
    """Install whichever of tools is absent: apt for nginx/wrk/haproxy/taskset, cargo for oha."""
    need = missing(tools)
    apt = sorted({APT_PACKAGES[t] for t in need if t in APT_PACKAGES})
    if "taskset" in need:
        apt.append("util-linux")
    if apt:
        _run(["apt-get", "update"], log)
        _run(["apt-get", "install", "-y", "--no-install-recommends"] + apt, log)
        # Debian's postinst may start a system nginx/haproxy where an init system exists;
        # we never use it, and our instances listen on their own free ports anyway.
    if "oha" in need:
        log("oha not found: `cargo install oha --locked` (takes several minutes)")
        _run(["cargo", "install", "oha", "--locked"], log)
    still = missing(tools)
    if still:
        raise RuntimeError(f"still missing after install: {', '.join(still)}")


def cargo_build_release(repo: Path, log=print) -> Path:
    """`cargo build --release` in repo; returns the ringgate binary path."""
    _run(["cargo", "build", "--release", "--manifest-path", str(Path(repo) / "Cargo.toml")], log)
    binary = Path(repo) / "target" / "release" / "ringgate"
    if not binary.exists():
        raise RuntimeError(f"build finished but {binary} does not exist")
    return binary
