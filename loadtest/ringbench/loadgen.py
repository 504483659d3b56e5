"""Load generators: wrk (closed-loop saturation) and oha (open-loop fixed rate).

Each runner is pinned (taskset), bounded in time (killed at duration + slack),
and returns a plain dict that goes into the JSON report unchanged.
"""
from __future__ import annotations

import functools
import json
import re
import subprocess
from typing import Optional, Sequence

from .procs import run_bounded

SLACK_S = 30.0  # extra wall time a load generator may take past its duration before it is killed

# --------------------------------------------------------------------------- wrk

_UNITS = {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9}
_TIME_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _wrk_time_ms(txt: str) -> Optional[float]:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", txt)
    return float(m.group(1)) * _TIME_UNITS[m.group(2)] if m else None


def parse_wrk(text: str) -> dict:
    """Parse wrk's text summary. Raises ValueError when the essential lines are missing."""
    out: dict = {}
    m = re.search(r"^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)", text, re.M)
    if not m:
        raise ValueError("wrk output has no 'N requests in T' line:\n" + text[-1500:])
    out["requests"] = int(m.group(1))
    out["duration_s"] = float(m.group(2)) * _TIME_UNITS[m.group(3)] / 1e3
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    if not m:
        raise ValueError("wrk output has no Requests/sec line:\n" + text[-1500:])
    out["rps"] = float(m.group(1))
    m = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if m:
        out["latency_avg_ms"] = _wrk_time_ms(m.group(1))
        out["latency_max_ms"] = _wrk_time_ms(m.group(3))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = ({"connect": int(m.group(1)), "read": int(m.group(2)),
                             "write": int(m.group(3)), "timeout": int(m.group(4))} if m else {})
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    out["non_2xx"] = int(m.group(1)) if m else 0
    # --latency distribution lines: "     50%  1.05ms"
    pct = {}
    for pm in re.finditer(r"^\s+(\d+(?:\.\d+)?)%\s+(\S+)$", text, re.M):
        v = _wrk_time_ms(pm.group(2))
        if v is not None:
            pct["p" + pm.group(1)] = v
    if pct:
        out["latency_percentiles_ms"] = pct
    out["errors"] = sum(out["socket_errors"].values()) + out["non_2xx"]
    return out


def header_args(headers: Sequence[str]) -> list[str]:
    """`-H "Name: value"` per header: the spelling of both wrk and oha."""
    return [a for h in headers for a in ("-H", h)]


def command_text(args: Sequence[str]) -> str:
    """A command line for the report, bearer tokens elided (long, and not worth keeping)."""
    return re.sub(r"(Authorization: Bearer )\S+", r"\1…", " ".join(args), flags=re.I)


def run_wrk(url: str, duration_s: float, connections: int = 64, threads: int = 1,
            cpu: Optional[int] = None, wrk_bin: str = "wrk", latency: bool = True,
            headers: Sequence[str] = ()) -> dict:
    cmd = [wrk_bin, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration_s))}s"]  # wrk: whole s
    if latency:
        cmd.append("--latency")
    cmd += header_args(headers)
    cmd.append(url)
    cp = run_bounded(cmd, cpu, timeout=duration_s + SLACK_S)
    if cp.returncode != 0:
        raise RuntimeError(f"wrk exited {cp.returncode}: {cp.stderr.strip()[-1000:]}")
    res = parse_wrk(cp.stdout)
    res["command"] = command_text(cp.args)
    return res


def _dur(seconds: float) -> str:
    return f"{int(seconds)}s" if float(seconds).is_integer() else f"{int(seconds * 1000)}ms"


# --------------------------------------------------------------------------- oha

@functools.lru_cache(maxsize=None)
def oha_flags(oha_bin: str = "oha") -> dict:
    """Which spelling this oha uses for JSON output and worker threads (they changed over versions)."""
    cp = subprocess.run([oha_bin, "--help"], capture_output=True, text=True, timeout=30)
    help_text = cp.stdout + cp.stderr
    flags = {}
    if "--output-format" in help_text:
        flags["json"] = ["--output-format", "json"]
    elif "--json" in help_text:
        flags["json"] = ["--json"]
    else:
        raise RuntimeError("this oha has neither --output-format nor --json")
    flags["worker_threads"] = "--worker-threads" in help_text
    flags["latency_correction"] = "--latency-correction" in help_text
    flags["no_tui"] = "--no-tui" in help_text
    return flags


def oha_version(oha_bin: str = "oha") -> str:
    try:
        return subprocess.run([oha_bin, "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except OSError:
        return "?"


def parse_oha_json(obj: dict) -> dict:
    """Pick the figures we use out of oha's JSON (latencies there are in seconds)."""
    summary = obj.get("summary", {})
    pct = obj.get("latencyPercentiles", {}) or {}
    codes = {str(k): int(v) for k, v in (obj.get("statusCodeDistribution") or {}).items()}
    errors = {str(k): int(v) for k, v in (obj.get("errorDistribution") or {}).items()}
    total_s = float(summary.get("total") or 0.0)
    responses = sum(codes.values())
    ok = sum(v for k, v in codes.items() if k.startswith("2"))
    # Requests cut off by the -z deadline are normal at the end of a timed run.
    deadline = sum(v for k, v in errors.items() if "deadline" in k.lower())
    out = {
        "duration_s": total_s,
        "responses": responses,
        "ok": ok,
        "achieved_rps": responses / total_s if total_s > 0 else None,
        "success_rate": summary.get("successRate"),
        "status_codes": codes,
        "errors": errors,
        "real_errors": sum(errors.values()) - deadline + (responses - ok),
        "latency_ms": {k: (float(v) * 1e3 if v is not None else None) for k, v in pct.items()},
        "avg_ms": float(summary["average"]) * 1e3 if summary.get("average") is not None else None,
        "max_ms": float(summary["slowest"]) * 1e3 if summary.get("slowest") is not None else None,
    }
    out["p50_ms"] = out["latency_ms"].get("p50")
    out["p99_ms"] = out["latency_ms"].get("p99")
    return out


def run_oha(url: str, rate: float, duration_s: float, connections: int = 50,
            cpu: Optional[int] = None, oha_bin: str = "oha", worker_threads: int = 1,
            headers: Sequence[str] = ()) -> dict:
    flags = oha_flags(oha_bin)
    cmd = [oha_bin, "-z", _dur(duration_s), "-q", str(rate), "-c", str(connections)]
    if flags["latency_correction"]:
        cmd.append("--latency-correction")
    if flags["no_tui"]:
        cmd.append("--no-tui")
    if flags["worker_threads"]:
        cmd += ["--worker-threads", str(worker_threads)]
    cmd += flags["json"]
    cmd += header_args(headers)
    if url.startswith("https://"):
        cmd.append("--insecure")  # the benchmark's own self-signed certificate
    cmd.append(url)
    cp = run_bounded(cmd, cpu, timeout=duration_s + SLACK_S)
    if cp.returncode != 0:
        raise RuntimeError(f"oha exited {cp.returncode}: {cp.stderr.strip()[-1000:]}")
    try:
        obj = json.loads(cp.stdout)
    except json.JSONDecodeError as e:
        raise RuntimeError(f"oha printed no JSON ({e}): {cp.stdout[:500]!r} {cp.stderr[-500:]!r}") from None
    res = parse_oha_json(obj)
    res["target_rps"] = rate
    res["command"] = command_text(cp.args)
    return res


def tls_handshakes(host: str, port: int, duration_s: float, resume: bool) -> dict:
    """Open TLS connections one after another for duration_s, each sending one GET with
    Connection: close; with resume=True every connection offers the previous session (TLS 1.2
    session id / ticket, TLS 1.3 ticket). Returns how many completed and how many resumed."""
    import socket
    import time as _t
    from .procs import client_tls
    ctx = client_tls()
    session = None
    done = resumed = errors = 0
    end = _t.monotonic() + duration_s
    req = b"GET / HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n"
    while _t.monotonic() < end:
        try:
            raw = socket.create_connection((host, port), timeout=2.0)
            with ctx.wrap_socket(raw, server_hostname="bench.test",
                                 session=session if resume else None) as s:
                s.sendall(req)
                while s.recv(65536):
                    pass
                done += 1
                resumed += 1 if s.session_reused else 0
                if resume and s.session is not None:
                    session = s.session
        except OSError:
            errors += 1
    return {"handshakes": done, "resumed": resumed, "errors": errors,
            "rps": done / duration_s if duration_s else None}
