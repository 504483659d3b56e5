"""The benchmark: start upstream and targets, run alternating rounds, summarize.

Layout of the machine (defaults, 2 CPUs):
  CPU 0: upstream nginx + load generator (wrk / oha) + this harness
  CPU 1: the proxy under test (ringgate, nginx, haproxy), one worker
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from . import configs, loadgen, procfs, scrape, stats
from .memory import IdleConnections
from .servers import EXPECT_BODY, HOST, DirectTarget, HaproxyServer, NginxServer, RinggateServer, Server

ALL_TARGETS = ["direct", "ringgate-uring", "ringgate-epoll", "nginx-proxy", "haproxy",
               "ringgate-routes10", "ringgate-routes10k", "ringgate-tls", "nginx-tls", "ringgate-jwt",
               "ringgate-ratelimit", "ringgate-observed", "ringgate-nometrics"]
# TLS scenario (issue 4): TLS termination in front of the same plain upstream, same certificate.
TLS_TARGETS = ["ringgate-tls", "nginx-tls"]
# Route-table scenario (issue 3): ringgate on io_uring with a 10- or 10,000-route table, loaded on a
# parameterized route (configs.ROUTED_PATH); compare their added latency within one run.
ROUTE_TABLE_TARGETS = {"ringgate-routes10": 10, "ringgate-routes10k": 10_000}
# JWT scenario (issue 5): ringgate on io_uring whose route "/" requires an RS256 token, loaded with one
# repeated token (a verified-token cache hit after the first request), beside the same route without auth.
JWT_TARGET, JWT_BASELINE = "ringgate-jwt", "ringgate-uring"
JWT_CPU_TARGET_US = 1.0  # the JWT route may cost less than this much more proxy CPU per request
# Rate-limit scenario (issue 6): ringgate on io_uring whose route "/" is under a rate-limit policy far above
# the offered rate (configs.RATELIMIT_*: nothing is refused, the runs measure the check), beside the same
# route without a limit.
RATELIMIT_TARGET, RATELIMIT_BASELINE = "ringgate-ratelimit", "ringgate-uring"
# Observability scenario (issue 7): ringgate on io_uring with its JSON access log on and its GET /metrics
# scraped once per second during every run, beside ringgate-nometrics ([metrics] enabled = false, no
# access log): the cost of metrics + access log + scrapes together. ringgate-uring (metrics on, the
# default) beside ringgate-nometrics gives the cost of metrics alone ("metrics" comparison).
OBSERVED_TARGET, OBSERVED_BASELINE = "ringgate-observed", "ringgate-nometrics"
OBSERVED_CPU_TARGET_PCT = 3.0  # at saturation, under this much more proxy CPU per request (%)
SCRAPE_INTERVAL_S = 1.0
SCRAPED_TARGETS = (OBSERVED_TARGET,)  # scraped during their runs (the scrapes' cost counts as theirs)
# Targets with an [admin] listener: /metrics is read right before and after each fixed-rate run (outside
# the measured window) for white-box gateway-added figures. The admin listener is its own thread, off the
# workers' path.
ADMIN_TARGETS = ("ringgate-uring", OBSERVED_TARGET)
# Paired comparisons in the summary: key → (scenario target, the same route without the feature).
COMPARISONS = {"jwt": (JWT_TARGET, JWT_BASELINE), "ratelimit": (RATELIMIT_TARGET, RATELIMIT_BASELINE),
               "metrics": ("ringgate-uring", OBSERVED_BASELINE),
               "observability": (OBSERVED_TARGET, OBSERVED_BASELINE)}
DEFAULT_TARGETS = ["direct", "ringgate-uring", "ringgate-epoll", "nginx-proxy"]
DIRECT_P99_WARN_MS = 1.0      # direct p99 above this at a fixed rate → warning
RATE_SHORTFALL = 0.95          # achieved < 95% of the asked rate → warning
RSS_TARGET_MIB = 64.0
# k6 scenarios (issue 8, loadtest/k6/*.js) the harness does not run, and why.
K6_UNSUPPORTED = {"ratelimit": "ratelimit.js offers 3x a real limit and needs its companion config "
                               "(loadtest/k6/ratelimit.toml, 100/s on the built-in demo upstream): run it by hand, "
                               "see loadtest/README.md"}
K6_JWT = "jwt"  # jwt.js: only against JWT_TARGET, with the harness's token (TOKEN_VALID)
# Per-run k6 figures summarized over the rounds (loadgen.parse_k6_summary, plus _measured's CPU and RSS).
K6_FIGURES = ("requests", "rps", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms", "iterations",
              "dropped_iterations", "checks_rate", "failed_rate", "gw_p50_ms", "gw_p99_ms",
              "proxy_cpu_us_per_req", "proxy_cpu_s", "proxy_rss_kib")
# Summary sections whose figures are medians over the rounds (checked for a wide spread); the others
# ("added", the comparisons) hold paired differences, which may cross 0.
SPREAD_SECTIONS = ("saturation", "latency", "whitebox", "handshake", "resumption", "k6")


def default_targets(tls: bool = False, jwt: bool = False, ratelimit: bool = False,
                    observability: bool = False) -> list[str]:
    """The targets when none are named: the scenarios' own (direct first, each target once), or
    DEFAULT_TARGETS."""
    if not (tls or jwt or ratelimit or observability):
        return list(DEFAULT_TARGETS)
    out = ["direct"] + (TLS_TARGETS if tls else [])
    for on, key in ((jwt, "jwt"), (ratelimit, "ratelimit"), (observability, "metrics"),
                    (observability, "observability")):
        if on:
            target, baseline = COMPARISONS[key]
            out += [t for t in (baseline, target) if t not in out]
    return out


@dataclass
class Options:
    repo: Path
    work_dir: Path
    targets: list[str] = field(default_factory=lambda: list(DEFAULT_TARGETS))
    rounds: int = 3
    duration_s: float = 10.0
    rates: list[int] = field(default_factory=lambda: [2000, 5000])
    wrk_connections: int = 64
    wrk_threads: int = 1
    oha_connections: int = 50
    cpu_upstream: Optional[int] = 0
    cpu_proxy: Optional[int] = 1
    cpu_loadgen: Optional[int] = 0
    memory_connections: int = 10000   # 0 = skip the memory scenario
    memory_targets: Optional[list[str]] = None  # None = every proxy target
    ringgate_bin: Optional[Path] = None
    ringgate_bare: bool = False
    settle_s: float = 1.0
    warmup_s: float = 2.0
    tls_cert: Optional[tuple] = None  # (cert, key), made at start when a TLS target is selected
    jwt: Optional[tuple] = None  # (public key PEM, token), made at start when ringgate-jwt is selected
    server_timing: bool = False  # ringgate's routes send Server-Timing (the k6 scenarios' gateway_added)
    k6_scenarios: list[str] = field(default_factory=list)  # loadtest/k6/NAME.js run in each round
    k6_env: dict = field(default_factory=dict)  # {"": {KEY: VALUE} for all, SCENARIO: {...} for one}
    k6_dir: Optional[Path] = None  # loadtest/k6
    k6_out_dir: Optional[Path] = None  # each k6 run's summaries and text go here
    k6_timeout_s: float = 3600.0  # a k6 run still going after this is killed


class Suite:
    def __init__(self, opts: Options, log: Callable[[str], None] = print):
        self.o = opts
        self.log = log
        self.servers: dict[str, Server] = {}
        self.upstream: Optional[NginxServer] = None
        self.files_dir: Optional[Path] = None
        self.warnings: list[str] = []
        self.result: dict = {"rounds": [], "memory": {}, "warnings": self.warnings, "drivers": {},
                             "options": {k: (str(v) if isinstance(v, Path) else v)
                                         for k, v in asdict(opts).items()}}

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        o = self.o
        o.work_dir.mkdir(parents=True, exist_ok=True)
        if any(t in TLS_TARGETS for t in o.targets):
            o.tls_cert = configs.make_cert(o.work_dir / "tls")
        if JWT_TARGET in o.targets:
            o.jwt = configs.make_jwt(o.work_dir / "jwt")
        up_port = _free_port()
        self.files_dir = configs.body_files_dir()
        self.upstream = NginxServer("upstream",
                                    lambda prefix: configs.nginx_upstream(prefix, up_port, files_dir=self.files_dir),
                                    up_port, o.work_dir, o.cpu_upstream)
        self.log(f"starting upstream nginx on 127.0.0.1:{up_port} (CPU {o.cpu_upstream})")
        self.upstream.start()
        for name in o.targets:
            srv = self._make(name, up_port)
            self.log(f"starting {name} (CPU {o.cpu_proxy if name != 'direct' else o.cpu_upstream})")
            srv.start()
            if isinstance(srv, RinggateServer):
                self.result["drivers"][name] = srv.logged_driver()
            self.log(f"  {name}: {srv.url} pid {srv.pid}"
                     + (f" [{srv.banner}]" if getattr(srv, "banner", None) else "")
                     + (f" driver {self.result['drivers'][name]}" if name in self.result["drivers"] else ""))
            self.servers[name] = srv

    def _make(self, name: str, up_port: int) -> Server:
        o = self.o
        assert self.upstream is not None
        if name == "direct":
            return DirectTarget(self.upstream)
        if name == "nginx-proxy":
            port = _free_port()
            return NginxServer(name, lambda prefix: configs.nginx_proxy(prefix, port, up_port), port,
                               o.work_dir, o.cpu_proxy)
        if name == "haproxy":
            return HaproxyServer(name, _free_port(), up_port, o.work_dir, o.cpu_proxy)
        if name == "nginx-tls":
            port = _free_port()
            return NginxServer(name, lambda prefix: configs.nginx_proxy(prefix, port, up_port, tls=o.tls_cert),
                               port, o.work_dir, o.cpu_proxy, tls=True)
        if name.startswith("ringgate-"):
            if o.ringgate_bin is None:
                raise RuntimeError("ringgate target selected but no ringgate binary")
            # ringgate-uring and ringgate-epoll name their driver; the scenario targets run on io_uring
            driver = name.split("-", 1)[1] if name in ("ringgate-uring", "ringgate-epoll") else "uring"
            return RinggateServer(name, o.ringgate_bin, driver, _free_port(), up_port, o.work_dir,
                                  o.cpu_proxy, workers=1, bare=o.ringgate_bare,
                                  routes=ROUTE_TABLE_TARGETS.get(name, 1),
                                  tls=o.tls_cert if name == "ringgate-tls" else None,
                                  jwt=o.jwt if name == JWT_TARGET else None,
                                  rate_limit=name == RATELIMIT_TARGET,
                                  admin_port=_free_port() if name in ADMIN_TARGETS else None,
                                  access_log=name == OBSERVED_TARGET,
                                  metrics=name != OBSERVED_BASELINE, server_timing=o.server_timing,
                                  # The JWT comparison's baseline gets the same Authorization header
                                  # (forwarded, not checked): the two then differ by the check alone.
                                  headers=(f"Authorization: Bearer {o.jwt[1]}",)
                                  if o.jwt and name == JWT_BASELINE and JWT_TARGET in o.targets else ())
        raise ValueError(f"unknown target {name!r} (known: {', '.join(ALL_TARGETS)})")

    def stop(self) -> None:
        for srv in reversed(list(self.servers.values())):
            srv.stop()
        if self.upstream is not None:
            self.upstream.stop()
        if self.files_dir is not None:
            shutil.rmtree(self.files_dir, ignore_errors=True)

    def _ensure_alive(self, name: str) -> bool:
        srv = self.servers[name]
        if srv.alive():
            return True
        rc = srv.proc.returncode() if srv.proc else None
        msg = f"{name} had exited (rc {rc}); restarting it"
        self.warnings.append(msg)
        self.log("WARNING: " + msg + "\n" + (srv.proc.output_tail() if srv.proc else ""))
        if name == "direct":
            return False
        try:
            srv.start()
            return True
        except Exception as e:  # noqa: BLE001
            self.warnings.append(f"{name} restart failed: {e}")
            return False

    # ------------------------------------------------------------------ measurement

    def _measured(self, name: str, run: Callable[[], dict], served_key: str) -> dict:
        """Run a load generator against target `name`, adding CPU figures of proxy/upstream/CPU 1.
        A SCRAPED_TARGETS target has its /metrics scraped every SCRAPE_INTERVAL_S meanwhile; a target's
        access log is measured and emptied after the run. The proxy's RSS (summed over its processes) is
        read right after the run."""
        if not self._ensure_alive(name):
            return {"error": f"{name} not running"}
        srv = self.servers[name]
        assert self.upstream is not None
        scraper = scrape.Scraper(lambda: srv.admin_get("/metrics"), SCRAPE_INTERVAL_S) \
            if name in SCRAPED_TARGETS and srv.admin_port else None
        proxy_pids = srv.cpu_pids()
        up_pids = self.upstream.cpu_pids()
        p0 = procfs.tree_cpu_seconds(proxy_pids)
        u0 = procfs.tree_cpu_seconds(up_pids)
        c0 = procfs.cpu_busy_seconds(self.o.cpu_proxy) if self.o.cpu_proxy is not None else None
        t0 = time.monotonic()
        try:
            with scraper or contextlib.nullcontext():
                res = run()
        except Exception as e:  # noqa: BLE001 - record and go on with the next slot
            self.log(f"  ERROR {name}: {e}")
            return {"error": str(e)}
        wall = time.monotonic() - t0
        p1 = procfs.tree_cpu_seconds(proxy_pids)
        u1 = procfs.tree_cpu_seconds(up_pids)
        c1 = procfs.cpu_busy_seconds(self.o.cpu_proxy) if self.o.cpu_proxy is not None else None
        served = res.get(served_key) or 0
        res["wall_s"] = wall
        res["upstream_cpu_s"] = u1 - u0
        res["upstream_cpu_us_per_req"] = (u1 - u0) / served * 1e6 if served else None
        if proxy_pids:
            res["proxy_cpu_s"] = p1 - p0
            res["proxy_cpu_us_per_req"] = (p1 - p0) / served * 1e6 if served else None
            res["proxy_cpu_pct"] = (p1 - p0) / wall * 100 if wall > 0 else None
            if c0 is not None and c1 is not None:
                res["cpu_proxy_busy_us_per_req"] = (c1 - c0) / served * 1e6 if served else None
            res["proxy_rss_kib"] = sum(procfs.rss_kib(p) or 0 for p in proxy_pids) or None
        if scraper is not None:
            res.update(scraper.figures())
        if srv.access_log is not None:
            res.update(_empty_access_log(srv.access_log, served))
        if not srv.alive():
            res["error"] = f"{name} died during the run"
            self.warnings.append(f"{name} died during a run\n{srv.proc.output_tail() if srv.proc else ''}")
        return res

    def saturation(self, name: str, duration_s: float) -> dict:
        o = self.o
        srv = self.servers[name]
        res = self._measured(name, lambda: loadgen.run_wrk(srv.url, duration_s, o.wrk_connections,
                                                           o.wrk_threads, o.cpu_loadgen,
                                                           headers=srv.headers), "requests")
        if res.get("errors"):
            self.warnings.append(f"{name} saturation: {res['errors']} errors "
                                 f"(socket {res.get('socket_errors')}, non-2xx {res.get('non_2xx')})")
        return res

    def latency(self, name: str, rate: int, duration_s: float) -> dict:
        """An oha run at `rate`; on a target with an admin listener, also its white-box figures from
        /metrics read right before and right after (outside the measured window)."""
        o = self.o
        srv = self.servers[name]
        before, err = self._scrape(name) if srv.admin_port else (None, None)
        res = self._measured(name, lambda: loadgen.run_oha(srv.url, rate, duration_s, o.oha_connections,
                                                           o.cpu_loadgen, headers=srv.headers), "responses")
        if res.get("real_errors"):
            self.warnings.append(f"{name} @{rate}/s: {res['real_errors']} failed requests "
                                 f"(codes {res.get('status_codes')}, errors {res.get('errors')})")
        if srv.admin_port and "error" not in res:
            after, err_after = self._scrape(name)
            err = err or err_after
            if after is not None and not err:
                try:
                    res["whitebox"] = scrape.whitebox(before, after)
                except ValueError as e:
                    err = str(e)
            if err:
                res["whitebox_error"] = err
                self.warnings.append(f"{name} @{rate}/s: no white-box figures (/metrics: {err})")
        return res

    def k6_applies(self, scenario: str, name: str) -> bool:
        """jwt.js runs against the JWT target only; the other scenarios send no credentials, so they run
        against every other target. (The JWT baseline gets the JWT target's Authorization header for
        wrk and oha, so that the two differ by the check only; it needs none, and k6 runs against it.)"""
        if scenario == K6_JWT:
            return name == JWT_TARGET
        return name != JWT_TARGET

    def k6_env(self, scenario: str, name: str) -> dict:
        """The -e parameters of a k6 run of `scenario` against target `name`: the harness's defaults
        (k6_defaults), then --k6-env (for all scenarios, then for this one). REQUIRE_SERVER_TIMING is 1 on
        a ringgate whose routes send Server-Timing, and always 0 on the others (they never send it)."""
        o = self.o
        srv = self.servers[name]
        timing = bool(getattr(srv, "server_timing", False))
        env = {"REQUIRE_SERVER_TIMING": "1" if timing else "0", **k6_defaults(scenario, o)}
        if scenario == K6_JWT and o.jwt:
            env["TOKEN_VALID"] = o.jwt[1]
        if scenario == "bodies":
            env["DOWN_URL"] = down_url(srv.url)
        env.update(o.k6_env.get("", {}))
        env.update(o.k6_env.get(scenario, {}))
        if not timing:
            env["REQUIRE_SERVER_TIMING"] = "0"
        return env

    def k6(self, scenario: str, name: str, round_no: int) -> dict:
        """One `k6 run loadtest/k6/SCENARIO.js` against target `name` (pinned like oha, to the load
        generator's CPU), with the proxy's CPU time and RSS; its summaries and text go to
        k6_out_dir/SCENARIO.TARGET.rROUND.*"""
        o = self.o
        srv = self.servers[name]
        assert o.k6_dir is not None and o.k6_out_dir is not None
        env = self.k6_env(scenario, name)
        res = self._measured(name, lambda: loadgen.run_k6(o.k6_dir / f"{scenario}.js", srv.url, env,
                                                          o.k6_out_dir / f"{scenario}.{name}.r{round_no}",
                                                          o.cpu_loadgen, timeout=o.k6_timeout_s), "requests")
        if "error" in res:
            self.warnings.append(f"k6 {scenario} against {name}, round {round_no}: {res['error']}")
        return res

    def _scrape(self, name: str) -> tuple[Optional[str], Optional[str]]:
        """(GET /metrics of target `name`, None) or (None, what went wrong)."""
        try:
            return self.servers[name].admin_get("/metrics"), None
        except (OSError, RuntimeError) as e:
            return None, str(e) or type(e).__name__

    def warmup(self) -> None:
        if self.o.warmup_s <= 0:
            return
        for name in self.o.targets:
            self.log(f"warm-up {name} ({self.o.warmup_s:g}s)")
            self.saturation(name, self.o.warmup_s)

    def run_rounds(self) -> None:
        o = self.o
        n = len(o.targets)
        for r in range(o.rounds):
            order = o.targets[r % n:] + o.targets[:r % n]
            rnd: dict = {"round": r + 1, "order": order, "saturation": {}, "latency": {}}
            self.log(f"round {r + 1}/{o.rounds}: order {', '.join(order)}")
            for name in order:
                time.sleep(o.settle_s)
                res = self.saturation(name, o.duration_s)
                rnd["saturation"][name] = res
                self.log(f"  wrk {name:15s} {_brief_wrk(res)}")
            for rate in o.rates:
                rnd["latency"][str(rate)] = {}
                for name in order:
                    time.sleep(o.settle_s)
                    res = self.latency(name, rate, o.duration_s)
                    rnd["latency"][str(rate)][name] = res
                    self.log(f"  oha {name:15s} @{rate}/s {_brief_oha(res)}")
            for scenario in o.k6_scenarios:
                rnd.setdefault("k6", {})[scenario] = {}
                for name in order:
                    if not self.k6_applies(scenario, name):
                        continue
                    time.sleep(o.settle_s)
                    res = self.k6(scenario, name, r + 1)
                    rnd["k6"][scenario][name] = res
                    self.log(f"  k6  {name:15s} {scenario}: {_brief_k6(res)}")
            if any(t in TLS_TARGETS for t in o.targets):
                self.handshake_round(rnd, order)
            self.result["rounds"].append(rnd)

    def handshake_round(self, rnd: dict, order: list) -> None:
        """New connections: wrk with `Connection: close` (a full handshake per request on TLS
        targets, a new TCP connection on plain ones), and TLS clients one after another with and
        without session resumption (the proxy's CPU per handshake, full vs resumed)."""
        o = self.o
        rnd["handshake"] = {}
        rnd["resumption"] = {}
        for name in order:
            srv = self.servers[name]
            time.sleep(o.settle_s)
            res = self._measured(name, lambda: loadgen.run_wrk(srv.url, o.duration_s, o.wrk_connections,
                                                               o.wrk_threads, o.cpu_loadgen,
                                                               headers=[*srv.headers, "Connection: close"]),
                                 "requests")
            rnd["handshake"][name] = res
            self.log(f"  wrk {name:15s} new connection per request: {_brief_wrk(res)}")
            if not srv.tls:
                continue
            rnd["resumption"][name] = {}
            for resume in (False, True):
                time.sleep(o.settle_s)
                r = self._measured(name, lambda: loadgen.tls_handshakes(HOST, srv.port, o.duration_s / 2,
                                                                        resume), "handshakes")
                rnd["resumption"][name]["resumed" if resume else "full"] = r
                self.log(f"  tls {name:15s} {'resumed' if resume else 'full':7s}: {r.get('handshakes')} "
                         f"handshakes ({r.get('resumed')} resumed), proxy "
                         f"{(r.get('proxy_cpu_us_per_req') or 0):.1f} µs each")

    def memory(self) -> None:
        o = self.o
        if o.memory_connections <= 0:
            return
        names = o.memory_targets if o.memory_targets is not None else [t for t in o.targets if t != "direct"]
        for name in names:
            if name not in self.servers or not self._ensure_alive(name):
                continue
            srv = self.servers[name]
            time.sleep(o.settle_s)
            pid = srv.pid
            # nginx: master + worker; RSS is summed over the tree (ringgate is one process)
            pids = srv.cpu_pids() or [pid]
            rss0 = sum(procfs.rss_kib(p) or 0 for p in pids)
            self.log(f"memory {name}: opening {o.memory_connections} idle keep-alive connections")
            conns = IdleConnections(HOST, srv.port, o.memory_connections, headers=srv.headers).open()
            try:
                time.sleep(1.0)
                rss1 = sum(procfs.rss_kib(p) or 0 for p in pids)
                res = {
                    "connections_asked": o.memory_connections,
                    "connections_ok": conns.ok,
                    "connections_failed": conns.failed,
                    "errors": conns.errors,
                    "open_seconds": conns.open_seconds,
                    "still_open": conns.still_open(),
                    "rss_before_kib": rss0,
                    "rss_kib": rss1,
                    "hwm_kib": procfs.hwm_kib(pid),
                    "processes": len(pids),
                    "threads": procfs.threads(pid),
                    "fds": sum(procfs.fd_count(p) or 0 for p in pids),
                }
                res["per_conn_bytes"] = (rss1 - rss0) * 1024 / conns.ok if conns.ok else None
                res["alive_after"] = srv.alive()
            finally:
                conns.close()
            self.result["memory"][name] = res
            self.log(f"  {name}: RSS {res['rss_kib'] / 1024:.1f} MiB with {conns.ok} open "
                     f"({conns.failed} failed, {res['still_open']} still open)")
            if conns.failed:
                self.warnings.append(f"memory {name}: {conns.failed} of {o.memory_connections} "
                                     f"connections failed: {conns.errors}")
            if name.startswith("ringgate") and res["rss_kib"] / 1024 > RSS_TARGET_MIB:
                self.warnings.append(f"memory {name}: RSS {res['rss_kib'] / 1024:.1f} MiB "
                                     f"> target {RSS_TARGET_MIB:g} MiB")

    # ------------------------------------------------------------------ summary

    def summarize(self) -> dict:
        o = self.o
        rounds = self.result["rounds"]
        summ: dict = {"saturation": {}, "latency": {}, "added": {}, "whitebox": {}}
        for name in o.targets:
            sat = _runs(rounds, name)
            summ["saturation"][name] = {
                k: stats.summarize(x.get(k) for x in sat if "error" not in x)
                for k in ("rps", "proxy_cpu_us_per_req", "proxy_cpu_pct", "cpu_proxy_busy_us_per_req",
                          "upstream_cpu_us_per_req")
            }
        for rate in o.rates:
            key = str(rate)
            summ["latency"][key] = {}
            summ["added"][key] = {}
            summ["whitebox"][key] = {}
            direct = _runs(rounds, "direct", key)
            for name in o.targets:
                lat = _runs(rounds, name, key)
                ok = [x for x in lat if "error" not in x]
                summ["latency"][key][name] = {
                    k: stats.summarize(x.get(k) for x in ok)
                    for k in ("p50_ms", "p99_ms", "achieved_rps", "proxy_cpu_us_per_req")
                }
                wb = [x["whitebox"] for x in ok if x.get("whitebox")]
                if wb:
                    summ["whitebox"][key][name] = {k: stats.summarize(w.get(k) for w in wb)
                                                   for k in scrape.WHITEBOX_FIGURES}
                if name != "direct" and "direct" in o.targets:
                    summ["added"][key][name] = {k: _paired(lat, direct, k) for k in ("p50_ms", "p99_ms")}
            # direct must keep up with the asked rate at a low p99, else the machine is the bottleneck
            for r in rounds:
                d = r["latency"].get(key, {}).get("direct")
                if not d or "error" in d:
                    continue
                if d.get("achieved_rps") and d["achieved_rps"] < RATE_SHORTFALL * rate:
                    self.warnings.append(f"direct round {r['round']} @{rate}/s achieved only "
                                         f"{d['achieved_rps']:.0f}/s")
                if d.get("p99_ms") is not None and d["p99_ms"] > DIRECT_P99_WARN_MS:
                    self.warnings.append(f"direct round {r['round']} @{rate}/s p99 {d['p99_ms']:.3f} ms "
                                         f"> {DIRECT_P99_WARN_MS} ms: figures at this rate are noisy")
            for name in o.targets:
                for r in rounds:
                    x = r["latency"].get(key, {}).get(name)
                    if x and "error" not in x and x.get("achieved_rps") and \
                            x["achieved_rps"] < RATE_SHORTFALL * rate and name != "direct":
                        self.warnings.append(f"{name} round {r['round']} @{rate}/s achieved only "
                                             f"{x['achieved_rps']:.0f}/s")
        if any(r.get("handshake") for r in rounds):
            summ["handshake"] = {}
            summ["resumption"] = {}
            for name in o.targets:
                hs = [r.get("handshake", {}).get(name, {}) for r in rounds]
                summ["handshake"][name] = {
                    k: stats.summarize(x.get(k) for x in hs if "error" not in x)
                    for k in ("rps", "proxy_cpu_us_per_req")
                }
                if name in TLS_TARGETS:
                    summ["resumption"][name] = {
                        kind: {k: stats.summarize(r.get("resumption", {}).get(name, {}).get(kind, {}).get(k)
                                                  for r in rounds)
                               for k in ("rps", "proxy_cpu_us_per_req", "resumed")}
                        for kind in ("full", "resumed")
                    }
        for key, (target, baseline) in COMPARISONS.items():
            if target in o.targets and baseline in o.targets:
                summ[key] = compare(rounds, target, baseline, o.rates)
        if OBSERVED_TARGET in o.targets:
            self._observed_summary(summ, rounds)
        if o.k6_scenarios:
            summ["k6"] = k6_summary(rounds, o.targets, o.k6_scenarios)
            self.warnings += k6_threshold_warnings(summ["k6"])
        if RATELIMIT_TARGET in o.targets:
            refused = non_2xx(rounds, RATELIMIT_TARGET)
            if "ratelimit" in summ:
                summ["ratelimit"]["non_2xx"] = refused
            if refused:
                self.warnings.append(f"{RATELIMIT_TARGET}: {refused} non-2xx responses (the limit "
                                     f"{configs.RATELIMIT_RATE} should refuse nothing): its figures include "
                                     "refusals, not only the cost of the check")
        self.warnings += spread_warnings(summ)
        self.result["summary"] = summ
        return summ

    def _observed_summary(self, summ: dict, rounds: list) -> None:
        """OBSERVED_TARGET's scrapes and access log over all its runs, into summ["observability"] (when
        the comparison is there), with warnings for failed scrapes and dropped log lines."""
        runs = list(_all_runs(rounds, OBSERVED_TARGET))
        dropped = [x["access_log_dropped"] for x in runs if x.get("access_log_dropped") is not None]
        fig = {"scrapes": sum(x.get("scrapes") or 0 for x in runs),
               "scrape_errors": sum(x.get("scrape_errors") or 0 for x in runs),
               "access_log_dropped": max(dropped) if dropped else None,
               "access_log_bytes_per_req": stats.summarize(x.get("access_log_bytes_per_req")
                                                           for x in _runs(rounds, OBSERVED_TARGET))}
        if "observability" in summ:
            summ["observability"].update(fig)
        if fig["scrape_errors"]:
            last = next((x["scrape_last_error"] for x in reversed(runs) if x.get("scrape_last_error")), "?")
            self.warnings.append(f"{OBSERVED_TARGET}: {fig['scrape_errors']} of "
                                 f"{fig['scrapes'] + fig['scrape_errors']} /metrics scrapes failed (last: {last})")
        if fig["access_log_dropped"]:
            self.warnings.append(f"{OBSERVED_TARGET}: {fig['access_log_dropped']:,.0f} access-log lines dropped "
                                 "(the writer fell behind): its figures leave out writing them")

    def run(self) -> dict:
        try:
            self.start()
            self.warmup()
            self.run_rounds()
            self.memory()
        finally:
            self.stop()
        self.summarize()
        return self.result


def _runs(rounds: list, name: str, rate: Optional[str] = None) -> list[dict]:
    """Target name's result in each round: its wrk saturation run, or its oha run at `rate`."""
    return [(r["saturation"] if rate is None else r["latency"].get(rate, {})).get(name, {}) for r in rounds]


CPU = "proxy_cpu_us_per_req"
CPU_REL = "proxy_cpu_rel_pct"  # in compare(): (target − baseline) / baseline proxy CPU per request, %


def compare(rounds: list, target: str, baseline: str, rates: list) -> dict:
    """target − baseline (the same route without the scenario's feature), paired per round: proxy CPU
    µs/req (and relative to the baseline's, %: CPU_REL) at saturation and at each rate, and p99 at each
    rate; at a fixed rate the p99 difference is also the difference of their added p99 (direct cancels
    out)."""
    def versus(rate: Optional[str], keys: tuple) -> dict:
        runs, base = _runs(rounds, target, rate), _runs(rounds, baseline, rate)
        out = {k: _paired(runs, base, k) for k in keys}
        out[CPU_REL] = _paired(runs, base, CPU, relative=True)
        return out
    return {"saturation": versus(None, (CPU,)),
            "latency": {str(r): versus(str(r), (CPU, "p99_ms")) for r in rates}}


def _all_runs(rounds: list, name: str):
    """Every run of target `name` in the rounds: saturation, new-connection and each rate's."""
    for r in rounds:
        runs = [r.get("saturation", {}).get(name), r.get("handshake", {}).get(name)]
        runs += [by_target.get(name) for by_target in r.get("latency", {}).values()]
        runs += [by_target.get(name) for by_target in r.get("k6", {}).values()]
        yield from (x for x in runs if x)


def non_2xx(rounds: list, name: str) -> int:
    """Responses other than 2xx that target `name` gave in the rounds: wrk's count (saturation and
    new-connection runs; wrk counts non-2xx-or-3xx) plus oha's status codes at each rate."""
    n = 0
    for run in _all_runs(rounds, name):
        n += run.get("non_2xx") or 0
        n += sum(v for code, v in (run.get("status_codes") or {}).items() if not str(code).startswith("2"))
    return n


def _paired(runs: list[dict], base: list[dict], k: str, relative: bool = False) -> Optional[dict]:
    """Summary of runs[i][k] − base[i][k] (relative: as % of base[i][k]) over the rounds where neither
    failed."""
    def pick(lst):
        return [x.get(k) if "error" not in x else None for x in lst]
    diff = stats.paired_relative if relative else stats.paired_differences
    return stats.summarize(diff(pick(runs), pick(base)))


def k6_defaults(scenario: str, o: Options) -> dict:
    """The harness's own parameters for a k6 scenario (--k6-env overrides them): the run's duration where
    the script has one per run or step (so --quick and --smoke shorten them) and what the fixed upstream
    answers (smoke's body check). bodies.js also gets DOWN_URL (k6_env): the upstream's /files/."""
    d = f"{o.duration_s:g}s"
    # The ladder and the spike (2,000/s at its peak) read Server-Timing from every 10th response
    # only: k6 is at or near its limit there, and reading every one costs k6 enough to cut what it
    # offers a gateway that sends the header by a quarter (loadtest/k6/lib.js, SERVER_TIMING_EVERY).
    every = {"SERVER_TIMING_EVERY": "10"}
    return {"smoke": {"BODY_MATCH": EXPECT_BODY.decode()},
            "ladder": {"STEP_DURATION": d, **every}, "spike": every,
            "connections": {"DURATION": d}, "bodies": {"DURATION": d},
            K6_JWT: {"DURATION": d}}.get(scenario, {})


def down_url(target_url: str) -> str:
    """bodies.js's DOWN_URL through a target: the upstream's /files/{bytes}.bin (configs.write_body_files)
    at the target's origin, which proxies every path to the upstream."""
    u = urllib.parse.urlsplit(target_url)
    return f"{u.scheme}://{u.netloc}/files/{{bytes}}.bin"


def check_k6_scenarios(scenarios: list, targets: list, known: list) -> Optional[str]:
    """Why --k6 SCENARIOS cannot run with these targets (None when it can)."""
    unknown = [s for s in scenarios if s not in known]
    if unknown:
        return f"unknown k6 scenario(s): {', '.join(unknown)}; known: {', '.join(known)}"
    for s in scenarios:
        if s in K6_UNSUPPORTED:
            return f"k6 scenario {s}: {K6_UNSUPPORTED[s]}"
    if K6_JWT in scenarios and JWT_TARGET not in targets:
        return f"k6 scenario {K6_JWT} runs against {JWT_TARGET} only: add --jwt (or it to --targets)"
    return None


def parse_k6_env(items: list[str]) -> dict:
    """--k6-env KEY=VALUE (every scenario) or SCENARIO.KEY=VALUE (that one) → {"": {...}, SCENARIO: {...}}.
    Raises ValueError on an item without "=" or KEY."""
    out: dict = {}
    for item in items:
        key, eq, value = item.partition("=")
        scenario, _, key = key.strip().rpartition(".")
        if not eq or not key:
            raise ValueError(f"--k6-env {item!r}: write KEY=VALUE or SCENARIO.KEY=VALUE")
        out.setdefault(scenario, {})[key] = value
    return out


def k6_summary(rounds: list, targets: list, scenarios: list) -> dict:
    """Per scenario: each target's K6_FIGURES (and the script's extra figures) summarized over the rounds
    whose run did not fail, the rounds with failed thresholds, and each row of lib.js's table (a ladder
    step, a spike phase, a connections scenario…) summarized the same way; plus the first run's script
    parameters and the -e env the harness passed."""
    out: dict = {}
    for sc in scenarios:
        figs: dict = {}
        rows: dict = {}
        first: dict = {}
        for name in targets:
            runs = [r.get("k6", {}).get(sc, {}).get(name) for r in rounds]
            ok = [x for x in runs if x and "error" not in x]
            if not ok:
                continue
            first = first or ok[0]
            extras = sorted({k for x in ok for k, v in (x.get("extra") or {}).items() if _number(v)})
            figs[name] = {k: stats.summarize(x.get(k) for x in ok) for k in K6_FIGURES}
            figs[name].update({k: stats.summarize((x.get("extra") or {}).get(k) for x in ok) for k in extras})
            failed = [x["thresholds_failed"] for x in ok if x.get("thresholds_failed")]
            figs[name]["thresholds"] = {"rounds": len(ok), "failed_rounds": len(failed),
                                        "failed": sorted({t for f in failed for t in f})}
            by_label: dict = {}
            for x in ok:
                for row in x.get("rows") or []:
                    by_label.setdefault(str(row.get("label")), []).append(row)
            rows[name] = {label: {k: stats.summarize(rw.get(k) for rw in rs)
                                  for k in dict.fromkeys(k for rw in rs for k, v in rw.items() if _number(v))}
                          for label, rs in by_label.items()}
        out[sc] = {"targets": figs, "rows": rows, "script": first.get("script"), "params": first.get("params"),
                   "env": {k: v for k, v in (first.get("env") or {}).items() if k != "REQUIRE_SERVER_TIMING"}}
    return out


def k6_threshold_warnings(k6: dict) -> list[str]:
    """A warning per scenario and target whose k6 thresholds failed in some round (k6 exited 99)."""
    out = []
    for sc, s in k6.items():
        for name, f in s["targets"].items():
            th = f["thresholds"]
            if th["failed_rounds"]:
                more = len(th["failed"]) - 4
                listed = ", ".join(th["failed"][:4]) + (f" and {more} more" if more > 0 else "")
                out.append(f"k6 {sc} against {name}: thresholds failed in {th['failed_rounds']} of {th['rounds']} "
                           f"round(s): {listed}")
    return out


def spread_warnings(summ: dict, limit: float = stats.SPREAD_LIMIT) -> list[str]:
    """A ⚠ warning per figure in SPREAD_SECTIONS whose rounds disagree by more than `limit` (max/min)."""
    out = []
    for path, s in stats.wide_spreads({k: summ[k] for k in SPREAD_SECTIONS if k in summ}, limit=limit):
        txt = stats.fmt_summary(s, stats.auto_digits(s["median"]))
        out.append(f"{stats.WIDE} wide spread between rounds (max/min {stats.spread(s):.2f} > {limit:g}): "
                   f"{' / '.join(path)} {txt}")
    return out


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _empty_access_log(path: Path, served: int) -> dict:
    """The access log's size after a run (bytes, and per request served), then empty it, so the log does
    not fill the disk over the rounds (ringgate appends: the next line goes to the new end). Lines still
    in a worker's buffer (up to flush_interval) land in the next run's count."""
    try:
        size = path.stat().st_size
        os.truncate(path, 0)
    except OSError as e:
        return {"access_log_error": str(e)}
    return {"access_log_bytes": size, "access_log_bytes_per_req": size / served if served else None}


def _free_port() -> int:
    from .procs import free_port
    return free_port(HOST)


def _brief_wrk(r: dict) -> str:
    if "error" in r and "rps" not in r:
        return "ERROR " + r["error"].splitlines()[0]
    s = f"{r['rps']:>10,.0f} req/s"
    if r.get("proxy_cpu_us_per_req") is not None:
        s += f"  proxy {r['proxy_cpu_us_per_req']:.1f} µs/req ({r['proxy_cpu_pct']:.0f}% CPU)"
    if r.get("errors"):
        s += f"  errors {r['errors']}"
    return s


def _brief_k6(r: dict) -> str:
    if "error" in r and "requests" not in r:
        return "ERROR " + r["error"].splitlines()[0]

    def ms(v):
        return "–" if v is None else f"{v:.3f}"
    checks = "–" if r.get("checks_rate") is None else f"{r['checks_rate'] * 100:.2f}%"
    s = (f"{r.get('requests', 0):,} requests ({(r.get('rps') or 0):,.0f}/s), p50 {ms(r.get('p50_ms'))} ms "
         f"p99 {ms(r.get('p99_ms'))} ms, dropped {r.get('dropped_iterations', 0):,}, checks {checks}")
    if r.get("gw_p99_ms") is not None:
        s += f", gateway_added p99 {r['gw_p99_ms']:.3f} ms"
    if r.get("proxy_cpu_us_per_req") is not None:
        s += f", proxy {r['proxy_cpu_us_per_req']:.1f} µs/req"
    failed = r.get("thresholds_failed")
    s += f"; thresholds: {len(failed)} failed (exit {r.get('exit_code')})" if failed else "; thresholds ok"
    if "error" in r:
        s += "  ERROR " + r["error"].splitlines()[0]
    return s


def _brief_oha(r: dict) -> str:
    if "error" in r and "p50_ms" not in r:
        return "ERROR " + r["error"].splitlines()[0]
    if r.get("p50_ms") is None or r.get("p99_ms") is None:
        return f"no latency figures (errors {r.get('errors')}, codes {r.get('status_codes')})"
    s = (f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
         f"{(r.get('achieved_rps') or 0):,.0f}/s")
    if r.get("proxy_cpu_us_per_req") is not None:
        s += f"  proxy {r['proxy_cpu_us_per_req']:.1f} µs/req"
    if r.get("real_errors"):
        s += f"  errors {r['real_errors']}"
    return s


def pin_self(cpu: Optional[int]) -> None:
    """Keep the harness itself off the proxy's CPU."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            pass
