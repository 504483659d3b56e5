"""Memory scenario: many idle keep-alive connections.

`IdleConnections.open()` connects N sockets (non-blocking, selectors/epoll,
bounded number of handshakes in flight), sends one GET on each, reads the
full response, then leaves the connection open and idle. The caller then
reads the server's RSS and finally calls `close()`.
"""
from __future__ import annotations

import errno
import resource
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

from .procs import get_request


def raise_nofile(want: int) -> tuple[int, int]:
    """Raise RLIMIT_NOFILE (soft and, as root, hard) to at least `want`; returns the new (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft, hard
    try:
        nr_open = int(open("/proc/sys/fs/nr_open").read())
    except OSError:
        nr_open = want
    target = min(max(want, soft), nr_open)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
    except (ValueError, PermissionError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _response_complete(buf: bytes) -> Optional[bool]:
    """True when buf holds one full response with Content-Length, None when more is needed, False if unusable."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buf[:head_end].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].startswith("2"):
        return False
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        n = name.strip().lower()
        if n == "content-length":
            length = int(value.strip())
        elif n == "connection" and "close" in value.lower():
            return False
        elif n == "transfer-encoding":
            return False  # not expected from this upstream; keep it simple
    if length is None:
        return False
    have = len(buf) - head_end - 4
    return True if have >= length else None


@dataclass
class IdleConnections:
    host: str
    port: int
    count: int
    in_flight: int = 512          # handshakes/requests outstanding at once
    timeout_s: float = 60.0
    headers: Sequence[str] = ()   # extra request header lines ("Name: value")
    socks: list = field(default_factory=list)
    ok: int = 0
    failed: int = 0
    errors: dict = field(default_factory=dict)
    open_seconds: float = 0.0

    def _err(self, what: str) -> None:
        self.failed += 1
        self.errors[what] = self.errors.get(what, 0) + 1

    def open(self) -> "IdleConnections":
        req = get_request(self.host, self.port, headers=self.headers)
        sel = selectors.DefaultSelector()
        started = 0
        active = 0
        t0 = time.monotonic()
        deadline = t0 + self.timeout_s
        try:
            while (started < self.count or active) and time.monotonic() < deadline:
                while started < self.count and active < self.in_flight:
                    try:
                        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    except OSError as e:  # EMFILE/ENFILE: stop starting new ones
                        self._err_n(f"socket: {errno.errorcode.get(e.errno, e.errno)}", self.count - started)
                        started = self.count
                        break
                    s.setblocking(False)
                    rc = s.connect_ex((self.host, self.port))
                    started += 1
                    if rc not in (0, errno.EINPROGRESS):
                        s.close()
                        self._err(f"connect: {errno.errorcode.get(rc, rc)}")
                        continue
                    sel.register(s, selectors.EVENT_WRITE, {"state": "connect", "buf": b""})
                    active += 1
                for key, _ev in sel.select(timeout=0.5):
                    s, st = key.fileobj, key.data
                    done = self._step(sel, s, st, req)
                    if done is not None:
                        active -= 1
                        sel.unregister(s)
                        if done:
                            self.ok += 1
                            self.socks.append(s)
                        else:
                            s.close()
            # whatever is still pending at the deadline failed
            for key in list(sel.get_map().values()):
                sel.unregister(key.fileobj)
                key.fileobj.close()
                self._err("timeout")
            if started < self.count:
                self._err_n("not started (deadline)", self.count - started)
        finally:
            sel.close()
        self.open_seconds = time.monotonic() - t0
        return self

    def _err_n(self, what: str, n: int) -> None:
        self.failed += n
        self.errors[what] = self.errors.get(what, 0) + n

    def _step(self, sel, s, st, req) -> Optional[bool]:
        """Advance one connection; returns True (idle, done), False (failed) or None (continue)."""
        try:
            if st["state"] == "connect":
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._err(f"connect: {errno.errorcode.get(err, err)}")
                    return False
                s.send(req)  # tiny, fits the empty send buffer
                st["state"] = "read"
                sel.modify(s, selectors.EVENT_READ, st)
                return None
            chunk = s.recv(65536)
            if not chunk:
                self._err("closed before response")
                return False
            st["buf"] += chunk
            r = _response_complete(st["buf"])
            if r is None:
                return None
            if not r:
                self._err("bad response")
            return r
        except OSError as e:
            self._err(f"{type(e).__name__}: {errno.errorcode.get(e.errno, e.errno)}")
            return False

    def still_open(self) -> int:
        """How many of the idle sockets the server has not closed (no EOF/error pending)."""
        sel = selectors.DefaultSelector()
        try:
            for s in self.socks:
                sel.register(s, selectors.EVENT_READ)
            closed = len(sel.select(timeout=0))
        finally:
            sel.close()
        return len(self.socks) - closed

    def close(self) -> None:
        """Close with RST (SO_LINGER 0) so repeated runs leave no TIME_WAIT pile on loopback."""
        linger = struct.pack("ii", 1, 0)
        for s in self.socks:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                s.close()
            except OSError:
                pass
        self.socks.clear()
