"""Process management: pinned child processes that are always cleaned up.

Every child is started in its own session (process group), so stopping it
also stops anything it forked (nginx workers). A module-level registry kills
whatever is still running at interpreter exit and on SIGTERM/SIGHUP; SIGINT
raises KeyboardInterrupt as usual, so `finally:` blocks run as well.
"""
from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional, Sequence

_LIVE: list["Proc"] = []

try:
    import ctypes
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child if the harness dies without cleaning up (e.g. kill -9)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def pinned(cmd: Sequence[str], cpu: Optional[int]) -> list[str]:
    """Prefix cmd with `taskset -c CPU` (no prefix when cpu is None)."""
    cmd = [str(c) for c in cmd]
    if cpu is None:
        return cmd
    return ["taskset", "-c", str(cpu)] + cmd


class Proc:
    """A long-running child (server) with stdout/stderr in log files."""

    def __init__(self, name: str, cmd: Sequence[str], cpu: Optional[int], log_dir: Path,
                 env: Optional[dict] = None, cwd: Optional[Path] = None):
        self.name = name
        self.cmd = pinned(cmd, cpu)
        self.cpu = cpu
        self.stdout_path = Path(log_dir) / f"{name}.stdout.log"
        self.stderr_path = Path(log_dir) / f"{name}.stderr.log"
        out = open(self.stdout_path, "wb")
        err = open(self.stderr_path, "wb")
        try:
            self.popen = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          env=env, cwd=cwd, start_new_session=True,
                                          preexec_fn=_die_with_parent)
        finally:
            out.close()
            err.close()
        _LIVE.append(self)

    @property
    def pid(self) -> int:
        # `taskset -c N cmd` execs cmd, so the pid is the program's own pid.
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def returncode(self) -> Optional[int]:
        return self.popen.poll()

    def output_tail(self, n: int = 2000) -> str:
        parts = []
        for p in (self.stdout_path, self.stderr_path):
            try:
                data = p.read_bytes()[-n:].decode("utf-8", "replace")
            except OSError:
                data = ""
            if data.strip():
                parts.append(f"--- {p.name} ---\n{data}")
        return "\n".join(parts)

    def stop(self, grace: float = 3.0) -> None:
        if self.popen.poll() is None:
            _signal_group(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Kill the group even if the leader is gone (orphaned workers).
        _signal_group(self.popen.pid, signal.SIGKILL)
        try:
            self.popen.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        if self in _LIVE:
            _LIVE.remove(self)

    def __repr__(self) -> str:
        return f"Proc({self.name!r}, pid={self.popen.pid}, cpu={self.cpu})"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all() -> None:
    for p in list(reversed(_LIVE)):
        try:
            p.stop(grace=2.0)
        except Exception:  # noqa: BLE001 - best effort during teardown
            pass


def _on_term(signum, _frame):
    # Turn SIGTERM/SIGHUP into an exception so finally-blocks run, then atexit.
    raise SystemExit(128 + signum)


def install_cleanup() -> None:
    atexit.register(stop_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        # respect an ignored SIGHUP (nohup); SIGINT stays Python's KeyboardInterrupt
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, _on_term)


def run_bounded(cmd: Sequence[str], cpu: Optional[int], timeout: float,
                env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """Run a short-lived command (load generator) pinned, killed after timeout.

    Raises subprocess.TimeoutExpired if it had to be killed.
    """
    full = pinned(cmd, cpu)
    p = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, start_new_session=True,
                         preexec_fn=_die_with_parent)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _signal_group(p.pid, signal.SIGKILL)
        p.communicate()
        raise
    except BaseException:
        _signal_group(p.pid, signal.SIGKILL)
        p.wait()
        raise
    return subprocess.CompletedProcess(full, p.returncode, out.decode("utf-8", "replace"),
                                       err.decode("utf-8", "replace"))


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on host (bind to port 0). Small race, fine on a quiet box."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def client_tls():
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the benchmark's own self-signed certificate
    return ctx


def get_request(host: str, port: int, path: str = "/", headers: Sequence[str] = (),
                close: bool = False) -> bytes:
    """The bytes of a GET request, with extra header lines ("Name: value")."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_get(host: str, port: int, path: str = "/", timeout: float = 2.0,
             tls: bool = False, headers: Sequence[str] = ()) -> tuple[int, bytes]:
    """One HTTP/1.1 GET with Connection: close; returns (status, body). Minimal, for health checks."""
    raw = socket.create_connection((host, port), timeout=timeout)
    with (client_tls().wrap_socket(raw, server_hostname="bench.test") if tls else raw) as s:
        s.sendall(get_request(host, port, path, headers, close=True))
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    status = int(status_line[1]) if len(status_line) >= 2 else 0
    return status, body


def wait_http_ok(host: str, port: int, timeout: float, proc: Optional[Proc] = None,
                 expect_body: Optional[bytes] = None, tls: bool = False,
                 headers: Sequence[str] = (), path: str = "/") -> None:
    """Poll until GET `path` (with `headers`) answers 200 (and body matches), or raise RuntimeError with
    the proc's logs."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.returncode()} before answering\n"
                               + proc.output_tail())
        try:
            status, body = http_get(host, port, path, timeout=1.0, tls=tls, headers=headers)
            if status == 200 and (expect_body is None or body == expect_body):
                return
            last = f"status {status}, body {body[:80]!r}"
        except OSError as e:
            last = repr(e)
        time.sleep(0.05)
    tail = proc.output_tail() if proc is not None else ""
    raise RuntimeError(f"{host}:{port} not answering 200 within {timeout}s (last: {last})\n{tail}")
