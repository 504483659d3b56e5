"""Load generators: wrk (closed-loop saturation), oha (open-loop fixed rate) and k6 (the bundled
scenarios in loadtest/k6/).

Each runner is pinned (taskset), bounded in time (killed at duration + slack),
and returns a plain dict that goes into the JSON report unchanged.
"""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path
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
    """A command line for the report, bearer tokens (and k6's TOKEN_*/SECRET parameters) elided: long, and
    not worth keeping."""
    text = re.sub(r"(Authorization: Bearer )\S+", r"\1…", " ".join(args), flags=re.I)
    return re.sub(r"\b((?:TOKEN_\w+|SECRET)=)\S+", r"\1…", text)


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


# --------------------------------------------------------------------------- k6

K6_THRESHOLDS_FAILED = 99  # k6's exit status when a threshold failed: the run itself went through
K6_LIB = "lib"  # loadtest/k6/lib.js: shared helpers, not a scenario
# k6's trend statistics → our percentile keys ("med" → "p50", "p(99.9)" → "p99.9"), as oha's latency_ms
_K6_STAT = re.compile(r"^p\(([\d.]+)\)$")
# Top-level figures lib.js's summary() adds for some scripts (its `extra`), kept as they are
K6_EXTRAS = ("saturated_from_rps", "highest_held_rps", "drift_p99", "down_skipped")


def k6_scenarios(k6_dir: Path) -> list[str]:
    """The bundled k6 scenarios: the names of loadtest/k6/*.js but lib.js."""
    return sorted(p.stem for p in Path(k6_dir).glob("*.js") if p.stem != K6_LIB)


def _k6_values(m) -> dict:
    """A metric's values: handleSummary's data.metrics (what lib.js's SUMMARY_JSON holds) nests them under
    "values"; k6's --summary-export has them flat, beside its "thresholds"."""
    if not isinstance(m, dict):
        return {}
    return {k: v for k, v in m.get("values", m).items() if k != "thresholds"}


def _k6_trend_ms(values: dict) -> dict:
    """A k6 trend (ms) as {"avg", "min", "p50", "p90", "p99", "p99.9", "max"} (the statistics present)."""
    out = {}
    for k, v in values.items():
        if k == "med":
            out["p50"] = v
        elif k in ("avg", "min", "max"):
            out[k] = v
        else:
            m = _K6_STAT.match(k)
            if m:
                out["p" + m.group(1)] = v
    return out


def _k6_rate(values: dict) -> Optional[float]:
    """A rate metric's share: "rate" in handleSummary data, "value" in --summary-export."""
    return values.get("rate", values.get("value"))


def k6_failed_thresholds(metrics: dict) -> list[str]:
    """"metric expression" of each failed threshold. handleSummary data: {"expr": {"ok": bool}};
    --summary-export: {"expr": bool}, true when it FAILED (k6's legacy format)."""
    out = []
    for name in sorted(metrics):
        m = metrics[name] if isinstance(metrics[name], dict) else {}
        for expr, res in (m.get("thresholds") or {}).items():
            if (not res.get("ok", True)) if isinstance(res, dict) else bool(res):
                out.append(f"{name} {expr}")
    return out


def parse_k6_summary(obj: dict) -> dict:
    """The figures we use from a k6 end-of-test summary: lib.js's SUMMARY_JSON (rows per scenario / step /
    phase, params, extra figures, and data.metrics) or k6's --summary-export. Times in ms."""
    metrics = obj.get("metrics") or {}

    def vals(name: str) -> dict:
        return _k6_values(metrics.get(name))

    reqs, checks, gw = vals("http_reqs"), vals("checks"), vals("gateway_added")
    run_ms = obj.get("test_run_duration_ms", (obj.get("state") or {}).get("testRunDurationMs"))
    lat = _k6_trend_ms(vals("http_req_duration"))
    out = {
        "requests": int(reqs.get("count") or 0),
        "rps": reqs.get("rate"),
        "duration_s": run_ms / 1000 if run_ms else None,
        "latency_ms": lat,
        "iterations": int(vals("iterations").get("count") or 0),
        "dropped_iterations": int(vals("dropped_iterations").get("count") or 0),
        "checks_rate": _k6_rate(checks),
        "checks_failed": checks.get("fails"),
        "failed_rate": _k6_rate(vals("http_req_failed")),
        "thresholds_failed": k6_failed_thresholds(metrics),
    }
    for key, pct in (("p50_ms", "p50"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("p999_ms", "p99.9"),
                     ("max_ms", "max")):
        out[key] = lat.get(pct)
    # gateway_added (Server-Timing gw;dur=) has samples only from a gateway that sends it
    if gw.get("count", 1 if gw.get("max") else 0):
        out["gateway_added_ms"] = _k6_trend_ms(gw)
        out["gw_p50_ms"] = out["gateway_added_ms"].get("p50")
        out["gw_p99_ms"] = out["gateway_added_ms"].get("p99")
    if obj.get("rows"):
        out["rows"] = [dict(r) for r in obj["rows"]]
    for k in ("script", "params"):
        if obj.get(k) is not None:
            out[k] = obj[k]
    extra = {k: obj[k] for k in K6_EXTRAS if k in obj}
    if extra:
        out["extra"] = extra
    return out


def run_k6(script: Path, url: str, env: dict, out_base: Path, cpu: Optional[int] = None,
           k6_bin: str = "k6", timeout: float = 3600.0) -> dict:
    """`k6 run` a scenario against `url`, pinned: `-e TARGET_URL=url -e SUMMARY_JSON=OUT.json` plus `env`
    (scenario parameters), `--summary-export OUT.export.json`; its handleSummary text goes to OUT.txt.
    Exit 99 (a threshold failed) is a finished run: its summary is parsed and the failures listed in
    "thresholds_failed"; any other failure without a summary raises."""
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    summary, export = Path(f"{out_base}.json"), Path(f"{out_base}.export.json")
    for p in (summary, export):
        p.unlink(missing_ok=True)
    cmd = [k6_bin, "run", "--quiet", "--no-color", "--no-usage-report", "--summary-export", str(export)]
    for k, v in {"TARGET_URL": url, "SUMMARY_JSON": str(summary), **env}.items():
        cmd += ["-e", f"{k}={v}"]
    if url.startswith("https://"):
        cmd.append("--insecure-skip-tls-verify")  # the benchmark's own self-signed certificate
    cmd.append(str(script))
    cp = run_bounded(cmd, cpu, timeout=timeout, env=dict(os.environ, K6_NO_USAGE_REPORT="true"))
    Path(f"{out_base}.txt").write_text(cp.stdout + (f"\n--- stderr ---\n{cp.stderr}" if cp.stderr.strip() else ""))
    src = summary if summary.exists() else export if export.exists() else None
    if src is None:
        raise RuntimeError(f"k6 exited {cp.returncode} and wrote no summary: {cp.stderr.strip()[-1000:]}")
    res = parse_k6_summary(json.loads(src.read_text()))
    res.update(exit_code=cp.returncode, summary_file=str(src), command=command_text(cp.args),
               env={k: v for k, v in env.items() if not re.match(r"TOKEN_|SECRET$", k)})
    if cp.returncode not in (0, K6_THRESHOLDS_FAILED):
        res["error"] = f"k6 exited {cp.returncode}: {cp.stderr.strip()[-500:]}"
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
