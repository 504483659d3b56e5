#!/usr/bin/env python3
"""ringgate load test: direct vs ringgate (io_uring, epoll) vs nginx [vs haproxy].

Usage: loadtest/run [--rounds N] [--duration S] [--rates 2000,5000] [--targets a,b]
                    [--with-haproxy] [--quick | --smoke] [--skip-install] [--skip-build]
                    [--k6 smoke,ladder,...] [--k6-env KEY=VALUE ...] ...
See loadtest/README.md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
import tempfile
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ringbench import install, loadgen, plots, procs, report, sysinfo  # noqa: E402
from ringbench.memory import raise_nofile  # noqa: E402
from ringbench.suite import (ALL_TARGETS, DEFAULT_TARGETS, Options, Suite,  # noqa: E402
                             check_k6_scenarios, default_targets, parse_k6_env, pin_self)

K6_DIR = HERE / "k6"

REPO = HERE.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="loadtest/run", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="rounds over all targets (default 3)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run (default 10)")
    p.add_argument("--rates", default="2000,5000", help="fixed rates for oha, req/s (default 2000,5000)")
    p.add_argument("--targets", default=None,
                   help=f"comma list out of {','.join(ALL_TARGETS)} (default {','.join(DEFAULT_TARGETS)})")
    p.add_argument("--with-haproxy", action="store_true", help="add haproxy to the targets")
    p.add_argument("--tls", action="store_true",
                   help="TLS scenario: direct, ringgate-tls, nginx-tls (same certificate), plus handshake rounds")
    p.add_argument("--jwt", action="store_true",
                   help="JWT scenario: direct, ringgate-uring, ringgate-jwt (its route behind an RS256 JWT "
                        "policy, one repeated token)")
    p.add_argument("--ratelimit", action="store_true",
                   help="rate-limit scenario: direct, ringgate-uring, ringgate-ratelimit (its route under a "
                        "rate-limit policy far above the offered rate: the cost of the check)")
    p.add_argument("--observability", action="store_true",
                   help="observability scenario: direct, ringgate-uring, ringgate-observed (JSON access log on, "
                        "GET /metrics scraped every second during its runs)")
    p.add_argument("--quick", action="store_true", help="1 round of 3 s per run")
    p.add_argument("--smoke", action="store_true",
                   help="prove the plumbing: 1 round of 2 s, 1,000 memory connections, no warm-up")
    p.add_argument("--skip-install", action="store_true", help="do not apt-get / cargo install missing tools")
    p.add_argument("--skip-build", action="store_true", help="do not run cargo build --release")
    p.add_argument("--ringgate-bin", type=Path, default=None,
                   help="ringgate binary (default target/release/ringgate)")
    p.add_argument("--ringgate-bare", action="store_true",
                   help="ringgate without X-Forwarded-* and X-Request-Id (as the nginx/haproxy configs)")
    p.add_argument("--memory-connections", type=int, default=None,
                   help="idle connections for the memory scenario (default 10000, 0 = skip)")
    p.add_argument("--wrk-connections", type=int, default=64)
    p.add_argument("--oha-connections", type=int, default=50)
    p.add_argument("--cpu-upstream", type=int, default=0)
    p.add_argument("--cpu-proxy", type=int, default=1)
    p.add_argument("--cpu-loadgen", type=int, default=0)
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per target (default 2)")
    p.add_argument("--k6", default="", metavar="SCENARIOS",
                   help="also run these k6 scenarios (loadtest/k6/NAME.js, comma list, e.g. smoke,ladder,connections) "
                        "against every target in each round (default: none)")
    p.add_argument("--k6-env", action="append", default=[], metavar="[SCENARIO.]KEY=VALUE",
                   help="a k6 scenario parameter (-e KEY=VALUE), for every scenario or, prefixed, for one; repeatable")
    p.add_argument("--k6-timeout", type=float, default=3600.0, help="kill a k6 run after this many seconds (3600)")
    p.add_argument("--no-server-timing", action="store_true",
                   help="with --k6: keep ringgate's routes without Server-Timing (no gateway_added figures)")
    p.add_argument("--no-plots", action="store_true", help="no PNG plots (no matplotlib needed)")
    p.add_argument("--out-dir", type=Path, default=HERE / "results",
                   help="latest.md/latest.json go here, each run's directory (<date>/) under it")
    p.add_argument("--keep-temp", action="store_true", help="keep configs and logs (temp dir)")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    default = default_targets(tls=a.tls, jwt=a.jwt, ratelimit=a.ratelimit, observability=a.observability)
    targets = [t.strip() for t in (a.targets.split(",") if a.targets else default) if t.strip()]
    if a.with_haproxy and "haproxy" not in targets:
        targets.append("haproxy")
    unknown = [t for t in targets if t not in ALL_TARGETS]
    if unknown:
        print(f"unknown target(s): {', '.join(unknown)}; known: {', '.join(ALL_TARGETS)}", file=sys.stderr)
        return 2
    rounds, duration, warmup = a.rounds, a.duration, a.warmup
    mem_conns = 10000 if a.memory_connections is None else a.memory_connections
    settle = 1.0
    if a.quick:
        rounds, duration = 1, 3.0
    if a.smoke:
        rounds, duration, warmup, settle = 1, 2.0, 0.0, 0.3
        if a.memory_connections is None:
            mem_conns = 1000
    rates = [int(r) for r in a.rates.split(",") if r.strip()]
    k6 = [s.strip() for s in a.k6.split(",") if s.strip()]
    problem = check_k6_scenarios(k6, targets, loadgen.k6_scenarios(K6_DIR))
    try:
        k6_env = parse_k6_env(a.k6_env)
    except ValueError as e:
        problem = problem or str(e)
    if problem:
        print(problem, file=sys.stderr)
        return 2

    procs.install_cleanup()
    install.ensure_path()

    ncpu = len(os.sched_getaffinity(0))
    cpus = {"upstream": a.cpu_upstream, "proxy": a.cpu_proxy, "loadgen": a.cpu_loadgen}
    if ncpu < 2:
        print("WARNING: fewer than 2 CPUs available; not pinning", file=sys.stderr)
        cpus = {k: None for k in cpus}

    tools = ["nginx", "wrk", "oha", "taskset"] + (["haproxy"] if "haproxy" in targets else []) + \
        (["openssl"] if any(t.endswith(("-tls", "-jwt")) for t in targets) else []) + (["k6"] if k6 else [])
    if a.skip_install:
        miss = install.missing(tools)
        if miss:
            print(f"missing tools and --skip-install given: {', '.join(miss)}", file=sys.stderr)
            return 2
    else:
        install.ensure_tools(tools)
    if not a.no_plots:
        try:  # before the run, not after it: a run must not end without its plots
            install.ensure_module("matplotlib", "matplotlib", install=not a.skip_install)
        except RuntimeError as e:
            print(f"{e}\n(or run with --no-plots)", file=sys.stderr)
            return 2

    ringgate_bin = None
    if any(t.startswith("ringgate") for t in targets):
        if not a.skip_build:
            install.cargo_build_release(REPO)
        ringgate_bin = (a.ringgate_bin or REPO / "target" / "release" / "ringgate").resolve()
        if not ringgate_bin.exists():
            print(f"ringgate binary {ringgate_bin} not found", file=sys.stderr)
            return 2

    # 10k client sockets here, plus what the children (which inherit the limit) need.
    raise_nofile(max(65536, 2 * mem_conns + 4096))
    pin_self(cpus["loadgen"])

    started = datetime.datetime.now(datetime.timezone.utc)
    run_dir = report.results_dir(a.out_dir, started)
    work_dir = Path(tempfile.mkdtemp(prefix="ringbench-"))
    opts = Options(repo=REPO, work_dir=work_dir, targets=targets, rounds=rounds, duration_s=duration,
                   rates=rates, wrk_connections=a.wrk_connections, oha_connections=a.oha_connections,
                   cpu_upstream=cpus["upstream"], cpu_proxy=cpus["proxy"], cpu_loadgen=cpus["loadgen"],
                   memory_connections=mem_conns, ringgate_bin=ringgate_bin, ringgate_bare=a.ringgate_bare,
                   settle_s=settle, warmup_s=warmup, server_timing=bool(k6) and not a.no_server_timing,
                   k6_scenarios=k6, k6_env=k6_env, k6_dir=K6_DIR, k6_out_dir=run_dir / "k6",
                   k6_timeout_s=a.k6_timeout)
    version_cmds = {"nginx": ["nginx", "-v"], "wrk": ["wrk", "-v"], "oha": ["oha", "--version"]}
    if "haproxy" in targets:
        version_cmds["haproxy"] = ["haproxy", "-v"]
    if k6:
        version_cmds["k6"] = ["k6", "version"]
    meta = sysinfo.gather(REPO, version_cmds, when=started)
    meta["command"] = " ".join(["loadtest/run"] + [shlex.quote(x) for x in argv])
    print(f"ringbench: {meta['date']}, {meta['cpu_model']}, kernel {meta['kernel']}; work dir {work_dir}",
          flush=True)

    suite = Suite(opts, log=lambda s: print(s, flush=True))
    ok = False
    try:
        result = suite.run()
        ok = True
    finally:
        if not ok or a.keep_temp:
            print(f"configs and logs kept in {work_dir}", file=sys.stderr)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
        if not ok:
            print(f"partial results (k6 summaries) in {run_dir}", file=sys.stderr)
    result["meta"] = meta
    if not a.no_plots:
        try:
            result["plots"] = plots.render(result, run_dir)
        except Exception as e:  # noqa: BLE001 - keep the figures when a plot fails
            result["warnings"].append(f"plots failed: {type(e).__name__}: {e}")
    md_path, json_path = report.write(result, run_dir, "report.md", "result.json")
    latest = report.write(result, a.out_dir, link_prefix=f"{os.path.relpath(run_dir, a.out_dir)}/")
    print()
    print(report.markdown(result))
    print(f"written: {md_path}, {json_path}"
          + "".join(f", {run_dir / p['file']}" for p in result.get("plots", [])))
    print(f"  (and {latest[0]}, {latest[1]})")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("\ninterrupted; all started processes stopped", file=sys.stderr)
        sys.exit(130)
