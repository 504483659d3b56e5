"""Servers under test: the fixed nginx upstream, nginx/haproxy proxies, ringgate.

Each server owns a Proc (pinned with taskset), knows its port, and exposes the
pids whose CPU time counts as "the proxy's" (`cpu_pids`) and the pid whose RSS
is reported (`pid`).
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Optional

from . import configs, procfs
from .procs import Proc, http_get, wait_http_ok

HOST = "127.0.0.1"
EXPECT_BODY = b"ok"
ADMIN_TIMEOUT_S = 2.0  # a scrape waits ~50 ms for the workers' copies, at most 500 ms (docs/observability.md)


class Server:
    name: str
    port: int
    proc: Optional[Proc] = None
    path: str = "/"  # what the load generators request
    tls: bool = False  # served over TLS (https)
    headers: tuple[str, ...] = ()  # request header lines ("Name: value") every client sends
    admin_port: Optional[int] = None  # ringgate's admin listener (GET /metrics), if it has one
    access_log: Optional[Path] = None  # ringgate's access log file, if it writes one

    def start(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu_pids(self) -> list[int]:
        """The process tree (master + workers for nginx)."""
        return procfs.tree(self.pid)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{self.port}{self.path}"

    def wait_ready(self, timeout: float = 15.0) -> None:
        wait_http_ok(HOST, self.port, timeout, proc=self.proc, expect_body=EXPECT_BODY, tls=self.tls,
                     headers=self.headers)


class NginxServer(Server):
    """nginx in the foreground (daemon off) under its own prefix dir."""

    def __init__(self, name: str, conf_text_fn, port: int, work_dir: Path, cpu: Optional[int],
                 nginx_bin: str = "nginx", tls: bool = False):
        self.name = name
        self.tls = tls
        self.port = port
        self.cpu = cpu
        self.nginx_bin = nginx_bin
        self.prefix = Path(work_dir) / name
        for sub in ("logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.conf_path = self.prefix / "nginx.conf"
        self.conf_path.write_text(conf_text_fn(self.prefix))

    def start(self) -> None:
        cmd = [self.nginx_bin, "-p", str(self.prefix), "-c", str(self.conf_path),
               "-e", str(self.prefix / "logs" / "error.log"), "-g", "daemon off;"]
        self.proc = Proc(self.name, cmd, self.cpu, self.prefix / "logs")
        self.wait_ready()

    def wait_ready(self, timeout: float = 15.0) -> None:
        try:
            super().wait_ready(timeout)
        except RuntimeError as e:
            err = self.prefix / "logs" / "error.log"
            tail = err.read_text()[-2000:] if err.exists() else ""
            raise RuntimeError(f"{e}\n--- {err} ---\n{tail}") from None


class HaproxyServer(Server):
    def __init__(self, name: str, port: int, upstream_port: int, work_dir: Path, cpu: Optional[int],
                 haproxy_bin: str = "haproxy"):
        self.name = name
        self.port = port
        self.cpu = cpu
        self.haproxy_bin = haproxy_bin
        self.dir = Path(work_dir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf_path = self.dir / "haproxy.cfg"
        self.conf_path.write_text(configs.haproxy(port, upstream_port, self.dir / "haproxy.pid"))

    def start(self) -> None:
        cmd = [self.haproxy_bin, "-db", "-f", str(self.conf_path)]
        self.proc = Proc(self.name, cmd, self.cpu, self.dir)
        self.wait_ready()


BANNER_RE = re.compile(r"listening on https?://([0-9.]+|\[[0-9a-fA-F:]+\]):(\d+)")
# A worker's start-up line (src/runtime.rs): "INFO driver=io_uring worker=0 core=None ring_flags=coop,single,defer"
# or "INFO driver=epoll worker=0 core=None".
DRIVER_RE = re.compile(r"\bdriver=(io_uring|epoll)\b([^\n]*)")
RING_FLAGS_RE = re.compile(r"\bring_flags=(\S+)")


def parse_driver(log_text: str) -> Optional[str]:
    """The driver(s) ringgate's workers logged: "io_uring (coop,single,defer)", "epoll", or several joined
    with " + " when workers differ (an io_uring worker that fell back to epoll); None when none logged."""
    seen: list[str] = []
    for m in DRIVER_RE.finditer(log_text):
        flags = RING_FLAGS_RE.search(m.group(2))
        d = m.group(1) + (f" ({flags.group(1)})" if flags and m.group(1) == "io_uring" else "")
        if d not in seen:
            seen.append(d)
    return " + ".join(seen) or None


class RinggateServer(Server):
    """`ringgate run --config FILE --driver DRIVER`, ready when its banner shows and it answers 200."""

    def __init__(self, name: str, binary: Path, driver: str, port: int, upstream_port: int,
                 work_dir: Path, cpu: Optional[int], workers: int = 1, bare: bool = False,
                 routes: int = 1, tls: Optional[tuple[Path, Path]] = None,
                 jwt: Optional[tuple[Path, str]] = None, rate_limit: bool = False,
                 admin_port: Optional[int] = None, access_log: bool = False, metrics: bool = True,
                 server_timing: bool = False, headers: tuple = ()):
        """jwt = (RS256 public key PEM, token): route "/" requires a JWT, clients send the token.
        rate_limit: route "/" is under configs.RATELIMIT_POLICY (a limit far above the offered rate).
        admin_port: an [admin] listener there (metrics scrapes); access_log: a JSON access log in
        WORK_DIR/NAME/access.log; server_timing: its routes send Server-Timing (k6's gateway_added);
        headers: sent with every load-generator request (e.g. the JWT baseline's Authorization)."""
        self.name = name
        self.tls = tls is not None
        if headers:
            self.headers = tuple(headers)
        if jwt:
            self.headers = (f"Authorization: Bearer {jwt[1]}",)
        if routes > 1:
            self.path = configs.ROUTED_PATH
        self.binary = Path(binary)
        self.driver = driver
        self.port = port
        self.cpu = cpu
        self.dir = Path(work_dir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.admin_port = admin_port
        if access_log:
            self.access_log = self.dir.resolve() / "access.log"
        self.conf_path = self.dir / "ringgate.toml"
        self.conf_path.write_text(configs.ringgate_toml(port, upstream_port, workers=workers,
                                                        driver=driver, bare=bare, routes=routes, tls=tls,
                                                        jwt_key=jwt[0] if jwt else None,
                                                        rate_limit=rate_limit, admin_port=admin_port,
                                                        access_log=self.access_log, metrics=metrics,
                                                        server_timing=server_timing))
        self.server_timing = server_timing
        self.banner: Optional[str] = None

    def start(self) -> None:
        chk = subprocess.run([str(self.binary), "check", str(self.conf_path)], capture_output=True,
                             text=True, timeout=30)
        if chk.returncode != 0:
            raise RuntimeError(f"ringgate check {self.conf_path} failed:\n{chk.stdout}{chk.stderr}")
        cmd = [str(self.binary), "run", "--config", str(self.conf_path), "--driver", self.driver]
        # info: the start-up lines (the driver each worker runs, see logged_driver); ringgate logs nothing
        # per request at info, so there is no logging on the hot path (nginx/haproxy run with access logs
        # off too)
        env = dict(os.environ, RINGGATE_LOG=os.environ.get("RINGGATE_LOG", "info"))
        self.proc = Proc(self.name, cmd, self.cpu, self.dir, env=env)
        self._wait_banner(timeout=15.0)
        self.wait_ready()
        if self.admin_port:
            wait_http_ok(HOST, self.admin_port, 15.0, proc=self.proc, path="/healthz")

    def logged_driver(self) -> str:
        """The I/O driver its workers logged at start (`driver=io_uring` with its ring flags, or
        `driver=epoll`; parse_driver), or what was asked with " (asked; not logged)" when the log has no
        such line (RINGGATE_LOG above info)."""
        try:
            text = self.proc.stderr_path.read_text(errors="replace") if self.proc else ""
        except OSError:
            text = ""
        asked = {"uring": "io_uring"}.get(self.driver, self.driver)
        return parse_driver(text) or f"{asked} (asked; not logged)"

    def admin_get(self, path: str) -> str:
        """GET `path` on the admin listener (e.g. /metrics): the body, or RuntimeError/OSError."""
        if not self.admin_port:
            raise RuntimeError(f"{self.name} has no admin listener")
        status, body = http_get(HOST, self.admin_port, path, timeout=ADMIN_TIMEOUT_S)
        if status != 200:
            raise RuntimeError(f"{self.name} admin GET {path}: status {status}")
        return body.decode("utf-8", "replace")

    def _wait_banner(self, timeout: float) -> None:
        """Read the banner from stdout; warn-free if it never shows (the HTTP check decides)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = self.proc.stdout_path.read_text(errors="replace")
            except OSError:
                text = ""
            m = BANNER_RE.search(text)
            if m:
                self.banner = m.group(0)
                port = int(m.group(2))
                if port != self.port:
                    self.port = port  # trust what it says it listens on
                return
            if not self.proc.alive():
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode()} at startup\n"
                                   + self.proc.output_tail())
            time.sleep(0.05)


class DirectTarget(Server):
    """The upstream itself, measured without a proxy: no proxy CPU."""

    def __init__(self, upstream: Server):
        self.name = "direct"
        self.upstream = upstream
        self.port = upstream.port

    @property
    def proc(self):  # type: ignore[override]
        return self.upstream.proc

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass  # the upstream is stopped on its own

    def alive(self) -> bool:
        return self.upstream.alive()

    def cpu_pids(self) -> list[int]:
        return []
