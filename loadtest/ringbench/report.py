"""Markdown and JSON output: loadtest/results/<date>/ (report.md, result.json, the plots) and latest.*."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Optional

from . import configs, stats
from .suite import (COMPARISONS, CPU, CPU_REL, JWT_CPU_TARGET_US, K6_FIGURES, OBSERVED_CPU_TARGET_PCT,
                    SCRAPE_INTERVAL_S)

RUN_DIR_FORMAT = "%Y-%m-%dT%H%M"  # loadtest/results/2026-11-22T1430/ (UTC)


def fmt_summary(s, digits: int = 0, signed: bool = False) -> str:
    """stats.fmt_summary, marked ⚠ when the rounds spread wide; differences (signed) are not marked: they
    may cross 0, and their spread is the two figures' spreads together."""
    return stats.fmt_summary(s, digits, signed, flag_wide=not signed)


def _ms(s, signed=False):
    return fmt_summary(s, digits=3, signed=signed)


def _delta(s, digits: int, ok=None) -> str:
    """A signed difference, marked ✅/❌ by whether it meets the target (`ok(summary)`), if any."""
    if s is None:
        return "–"
    mark = "" if ok is None else (" ✅" if ok(s) else " ❌")
    return fmt_summary(s, digits, signed=True) + mark


def _no_change(s) -> bool:
    """No change detectable over the rounds: the median difference is ≤ 0, or the per-round differences
    disagree on its sign (their range holds 0)."""
    return s["median"] <= 0 or s["min"] <= 0 <= s["max"]


def _table(header: list, rows: list) -> list:
    """A Markdown table and the blank line after it."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _per_rate_table(targets, rates, by_rate: dict, columns: tuple, cells) -> list:
    """One row per target, two columns per rate (`columns` are formats of `{r}`)."""
    header = ["target"] + [c.format(r=r) for r in rates for c in columns]
    rows = [[t] + [x for r in rates for x in cells(by_rate.get(r, {}).get(t, {}))] for t in targets]
    return _table(header, rows)


def _comparison(comp: dict, rates: list, title: str, note: str, cpu_ok=None, p99_ok=None,
                rel_ok=None) -> list:
    """A suite.compare() summary (a scenario target − the same route without its feature) as a section:
    Δ proxy CPU µs/req at saturation and at each rate, Δ added p99 at each rate, each marked against
    its target when one is given. With rel_ok, also Δ proxy CPU relative to the baseline's (%), marked
    against rel_ok at saturation."""
    def cpu(s, ok=None):
        return [_delta(s.get(CPU), 1, cpu_ok)] + ([_delta(s.get(CPU_REL), 1, ok)] if rel_ok else [])
    lat = comp.get("latency", {})
    rows = [["wrk saturation", *cpu(comp.get("saturation", {}), rel_ok), "–"]]
    rows += [[f"{r}/s", *cpu(lat.get(r, {})), _delta(lat.get(r, {}).get("p99_ms"), 3, p99_ok)] for r in rates]
    header = ["load", "Δ proxy CPU µs/req"] + (["Δ proxy CPU %"] if rel_ok else []) + ["Δ added p99, ms"]
    return [f"## {title}", "", note, ""] + _table(header, rows)


def _comparisons(summ: dict, rates: list) -> list:
    """The sections of the scenario comparisons present in the summary (suite.COMPARISONS)."""
    L: list = []
    jwt = summ.get("jwt")
    if jwt:
        target, baseline = COMPARISONS["jwt"]
        L += _comparison(jwt, rates, f"JWT route vs the same route without auth ({target} − {baseline}, "
                                     "paired per round)",
                         f"One repeated token, sent to both (the baseline forwards it unchecked). Targets (issue 5): under {JWT_CPU_TARGET_US:g} µs more proxy CPU "
                         "per request, no more added p99.",
                         cpu_ok=lambda s: s["median"] < JWT_CPU_TARGET_US, p99_ok=lambda s: s["median"] <= 0)
    rl = summ.get("ratelimit")
    if rl:
        target, baseline = COMPARISONS["ratelimit"]
        refused = rl.get("non_2xx")
        L += _comparison(rl, rates, f"Rate-limited route vs the same route without a limit ({target} − "
                                    f"{baseline}, paired per round)",
                         f"Policy key `{configs.RATELIMIT_KEY}`, rate {configs.RATELIMIT_RATE}, burst "
                         f"{configs.RATELIMIT_BURST:,}: far above the offered rate, so nothing is refused and "
                         "this is the cost of the check (per-check time: `cargo bench --bench ratelimit`). "
                         f"Non-2xx responses from {target}: {'?' if refused is None else f'{refused:,}'}"
                         f"{' ❌' if refused else ''}.")
    met = summ.get("metrics")
    if met:
        target, baseline = COMPARISONS["metrics"]
        L += _comparison(met, rates, f"Metrics on vs off ({target} − {baseline}, paired per round)",
                         f"{target}: ringgate's default (per-core metrics recorded for every request); {baseline}: "
                         "`[metrics] enabled = false`. No access log, no scrapes during runs on either.",
                         p99_ok=_no_change)
    obs = summ.get("observability")
    if obs:
        target, baseline = COMPARISONS["observability"]
        per_req = obs.get("access_log_bytes_per_req")
        dropped = obs.get("access_log_dropped")
        L += _comparison(obs, rates, f"Access log + metrics scrapes vs neither ({target} − {baseline}, "
                                     "paired per round)",
                         f"{target}: JSON access log to a file and `GET /metrics` scraped every "
                         f"{SCRAPE_INTERVAL_S:g} s during each of its runs (the scrapes' work in ringgate, on the "
                         f"admin thread and the workers, counts as its proxy CPU); {baseline} records no metrics "
                         "(`[metrics] enabled = false`), no access log, no scrapes. Targets (issue 7): under "
                         f"{OBSERVED_CPU_TARGET_PCT:g} % more proxy CPU per request at saturation, no change to "
                         "added p99 (✅ when the median difference is ≤ 0 or the rounds disagree on its sign). "
                         f"Scrapes: {obs.get('scrapes', 0):,} ({obs.get('scrape_errors', 0):,} failed); access "
                         f"log: {fmt_summary(per_req)} bytes per request at saturation, "
                         f"{'?' if dropped is None else f'{dropped:,.0f}'} lines dropped{' ❌' if dropped else ''}.",
                         rel_ok=lambda s: s["median"] < OBSERVED_CPU_TARGET_PCT, p99_ok=_no_change)
    return L


def _whitebox(summ: dict, targets: list, rates: list) -> list:
    """Per target with an admin listener and rate: ringgate's own gateway-added and total p50/p99 for
    that run (suite.Suite.latency, scrape.whitebox) beside the black-box added p50/p99 (target − direct)."""
    wb, added = summ.get("whitebox", {}), summ.get("added", {})
    rows = []
    for t in targets:
        for r in rates:
            w, a = wb.get(r, {}).get(t), added.get(r, {}).get(t, {})
            if w:
                rows.append([t, f"{r}/s", fmt_summary(w.get("count")),
                             *(_ms(w.get(f"{k}_ms")) for k in ("gateway_added_p50", "gateway_added_p99",
                                                               "total_p50", "total_p99")),
                             _ms(a.get("p50_ms"), True), _ms(a.get("p99_ms"), True)])
    if not rows:
        return []
    note = ("White-box: ringgate's own histograms by route from `GET /metrics`, read right before and right "
            "after each fixed-rate run (outside its measured window). They are cumulative and cannot be reset, "
            "so a run's own counts are the after − before difference of the cumulative bucket counts, and its "
            "quantiles are estimated from those buckets by linear interpolation within the bucket holding the "
            "rank (lower bound of the first bucket: 0). The buckets are 50 µs, 100 µs, 250 µs, 500 µs, 1 ms, "
            "2.5 ms, …: a figure below 0.050 only says the quantile is in the first bucket. Gateway-added = "
            "head parsed → response written, less the upstream wait; total = head parsed → response written. "
            "Black-box added: the target's oha p50/p99 − direct's, paired per round (as above). Why they "
            "differ: loadtest/README.md.")
    header = ["target", "rate", "requests in the histogram", "white-box gateway-added p50",
              "white-box gateway-added p99", "white-box total p50", "white-box total p99",
              "black-box added p50", "black-box added p99"]
    return ["## White-box vs black-box gateway-added latency, ms", "", note, ""] + _table(header, rows)


def _mib(s: Optional[dict]) -> Optional[dict]:
    """A KiB summary in MiB."""
    return None if s is None else {k: (v / 1024 if k != "n" and v is not None else v) for k, v in s.items()}


def _pct(s: Optional[dict]) -> str:
    """A share summary (0..1) in %."""
    return "–" if s is None else fmt_summary({k: (v * 100 if k != "n" else v) for k, v in s.items()}, 2) + " %"


K6_ROW_COLUMNS = (("offered/s", "offered_rps", 0), ("achieved/s", "achieved_rps", 0), ("dropped", "dropped", 0),
                  ("p50", "p50_ms", 3), ("p90", "p90_ms", 3), ("p99", "p99_ms", 3), ("p99.9", "p999_ms", 3),
                  ("gateway_added p50", "gw_p50_ms", 3), ("gateway_added p99", "gw_p99_ms", 3))


def _k6(k6: dict, opts: dict) -> list:
    """A section per k6 scenario (suite.k6_summary): each target's totals, CPU and RSS, thresholds, and
    the script's rows (steps, phases, sub-scenarios)."""
    L: list = []
    for sc, s in k6.items():
        figs, rows = s.get("targets") or {}, s.get("rows") or {}
        L += [f"## k6: {s.get('script') or sc} (`loadtest/k6/{sc}.js`)", ""]
        params = ", ".join(f"{k}={v}" for k, v in (s.get("params") or {}).items() if k != "TARGET_URL")
        env = " ".join(f"-e {k}={v}" for k, v in (s.get("env") or {}).items())
        L += [f"k6 pinned to CPU {opts.get('cpu_loadgen')}, one run per target per round, order rotating. "
              f"Parameters: {params or '–'}; the harness passed {env or 'nothing beyond TARGET_URL'} "
              "(and REQUIRE_SERVER_TIMING=1 on ringgate with Server-Timing, 0 on the others). "
              "Times in ms; proxy CPU and RSS as in the tables above (RSS right after the run).", ""]
        if not figs:
            L += ["No run finished (see Warnings).", ""]
            continue
        body = []
        for t, f in figs.items():
            th = f["thresholds"]
            verdict = "ok" if not th["failed_rounds"] else f"failed in {th['failed_rounds']}/{th['rounds']} ❌"
            body.append([t, fmt_summary(f.get("requests")), fmt_summary(f.get("rps")),
                         *(_ms(f.get(k)) for k in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")),
                         fmt_summary(f.get("dropped_iterations")), _pct(f.get("checks_rate")),
                         _ms(f.get("gw_p50_ms")), _ms(f.get("gw_p99_ms")),
                         fmt_summary(f.get("proxy_cpu_us_per_req"), 1), fmt_summary(_mib(f.get("proxy_rss_kib")), 1),
                         verdict])
        L += _table(["target", "requests", "req/s", "p50", "p90", "p99", "p99.9", "dropped iterations", "checks",
                     "gateway_added p50", "gateway_added p99", "proxy CPU µs/req", "proxy RSS MiB", "thresholds"],
                    body)
        # the script's own figures (ladder: saturated_from_rps, highest_held_rps; soak: drift_p99)
        notes = [f"- {t}: " + ", ".join(f"{k} {fmt_summary(v, stats.auto_digits(v['median']))}"
                                        for k, v in f.items() if k not in K6_FIGURES and stats.is_summary(v))
                 for t, f in figs.items()]
        notes = [n for n in notes if not n.endswith(": ")]
        L += notes + ([""] if notes else [])
        row_body = [[t, label, *(fmt_summary(r.get(k), d) for _, k, d in K6_ROW_COLUMNS)]
                    for t, by_label in rows.items() for label, r in by_label.items()]
        if row_body:
            L += _table(["target", "row", *(c for c, _, _ in K6_ROW_COLUMNS)], row_body)
    return L


def _plots(plots: list, link_prefix: str) -> list:
    """The PNGs (plots.render), linked relative to the report."""
    if not plots:
        return []
    L = ["## Plots", ""]
    for p in plots:
        L += [f"![{p['title']}]({link_prefix}{p['file']})", ""]
    return L


def markdown(result: dict, link_prefix: str = "") -> str:
    """The report; link_prefix goes before the plots' file names (they sit in the run's directory)."""
    meta = result.get("meta", {})
    opts = result.get("options", {})
    summ = result.get("summary", {})
    targets = opts.get("targets", [])
    rates = [str(r) for r in opts.get("rates", [])]
    dur = opts.get("duration_s")
    dur_txt = f"{dur:g}s" if isinstance(dur, (int, float)) else str(dur)
    L: list[str] = []
    L.append(f"# ringgate load test — {meta.get('date', '?')}")
    L.append("")
    L.append(f"- command: `{meta.get('command', '?')}`")
    L.append(f"- machine: {meta.get('cpu_model', '?')}, {meta.get('cpus', '?')} CPUs, "
             f"kernel {meta.get('kernel', '?')}")
    drivers = result.get("drivers") or {}
    if drivers:
        L.append("- ringgate driver (as its workers logged at start): "
                 + "; ".join(f"{t}: {d}" for t, d in drivers.items()))
    L.append(f"- ringgate: {meta.get('git', '?')}" + (" (bare: no X-Forwarded-*/X-Request-Id)"
                                                      if opts.get("ringgate_bare") else ""))
    tools = meta.get("tools", {})
    if tools:
        L.append("- tools: " + "; ".join(f"{k}: {v}" for k, v in tools.items()))
    L.append(f"- layout: upstream nginx (1 worker, `return 200 \"ok\"`) on CPU {opts.get('cpu_upstream')}, "
             f"proxy (1 worker) on CPU {opts.get('cpu_proxy')}, load generator on CPU {opts.get('cpu_loadgen')}")
    if opts.get("server_timing"):
        L.append("- ringgate's routes send `Server-Timing` (`server_timing = true`, for k6's gateway_added): "
                 "its figures in this run include writing that header")
    L.append(f"- {opts.get('rounds')} round(s), targets alternating; {dur_txt} per run; "
             f"figures are median (min–max) over rounds; {stats.WIDE}: the rounds' max/min exceeds "
             f"{stats.SPREAD_LIMIT:g} (listed under Warnings)")
    L.append("")

    sat = summ.get("saturation", {})
    if sat:
        L.append(f"## Saturation (wrk -t{opts.get('wrk_threads')} -c{opts.get('wrk_connections')} "
                 f"-d{dur_txt})")
        L.append("")
        L.append("| target | req/s | proxy CPU µs/req | proxy CPU % of one core | "
                 f"CPU {opts.get('cpu_proxy')} busy µs/req | upstream CPU µs/req |")
        L.append("|---|---|---|---|---|---|")
        for t in targets:
            s = sat.get(t, {})
            L.append(f"| {t} | {fmt_summary(s.get('rps'))} | {fmt_summary(s.get('proxy_cpu_us_per_req'), 1)} "
                     f"| {fmt_summary(s.get('proxy_cpu_pct'))} | "
                     f"{fmt_summary(s.get('cpu_proxy_busy_us_per_req'), 1)} | "
                     f"{fmt_summary(s.get('upstream_cpu_us_per_req'), 1)} |")
        L.append("")
        L.append("Proxy CPU = utime+stime of the proxy's processes (all threads) / requests wrk completed.")
        L.append("")

    lat = summ.get("latency", {})
    if lat and rates:
        L.append(f"## Latency at fixed rates (oha -q RATE --latency-correction -c {opts.get('oha_connections')} "
                 f"-z {dur_txt}), ms")
        L.append("")
        L += _per_rate_table(targets, rates, lat, ("p50 @{r}/s", "p99 @{r}/s"),
                             lambda s: (_ms(s.get("p50_ms")), _ms(s.get("p99_ms"))))
        L += _per_rate_table(targets, rates, lat, ("achieved @{r}/s", "proxy CPU µs/req @{r}/s"),
                             lambda s: (fmt_summary(s.get("achieved_rps")),
                                        fmt_summary(s.get("proxy_cpu_us_per_req"), 1)))

    added = summ.get("added", {})
    proxies = [t for t in targets if t != "direct"]
    if added and proxies and "direct" in targets:
        L.append("## Gateway-added latency (proxy − direct, paired per round), ms")
        L.append("")
        L += _per_rate_table(proxies, rates, added, ("+p50 @{r}/s", "+p99 @{r}/s"),
                             lambda s: (_ms(s.get("p50_ms"), True), _ms(s.get("p99_ms"), True)))

    L += _whitebox(summ, targets, rates)
    L += _comparisons(summ, rates)
    L += _k6(summ.get("k6") or {}, opts)
    L += _plots(result.get("plots") or [], link_prefix)

    hs = summ.get("handshake", {})
    if hs:
        L.append(f"## New connection per request (wrk -c{opts.get('wrk_connections')} -H 'Connection: close')")
        L.append("")
        L.append("On TLS targets every request is a full handshake (wrk does not resume sessions).")
        L.append("")
        L += _table(["target", "connections/s", "proxy CPU µs per connection"],
                    [[t, fmt_summary(hs.get(t, {}).get("rps")),
                      fmt_summary(hs.get(t, {}).get("proxy_cpu_us_per_req"), 1)] for t in targets])
    res = summ.get("resumption", {})
    if res:
        L.append("## TLS handshakes one after another (Python ssl client), full vs resumed")
        L.append("")
        rows = []
        for t, r in res.items():
            f, z = r.get("full", {}), r.get("resumed", {})
            rows.append([t, fmt_summary(f.get("rps")), fmt_summary(f.get("proxy_cpu_us_per_req"), 1),
                         fmt_summary(z.get("rps")), fmt_summary(z.get("proxy_cpu_us_per_req"), 1),
                         fmt_summary(z.get("resumed"))])
        L += _table(["target", "full: handshakes/s", "full: proxy CPU µs each", "resumed: handshakes/s",
                     "resumed: proxy CPU µs each", "resumed count"], rows)

    mem = result.get("memory", {})
    if mem:
        n = next(iter(mem.values())).get("connections_asked")
        L.append(f"## Memory with {n:,} idle keep-alive connections (target: ringgate ≤ 64 MiB RSS)")
        L.append("")
        L.append("| target | RSS before | RSS with connections | per connection | open ok / failed | "
                 "still open after 1 s | fds |")
        L.append("|---|---|---|---|---|---|---|")
        for t, m in mem.items():
            per = m.get("per_conn_bytes")
            verdict = ""
            if t.startswith("ringgate"):
                verdict = " ✅" if m["rss_kib"] / 1024 <= 64 else " ❌"
            L.append(f"| {t} | {m['rss_before_kib'] / 1024:.1f} MiB | {m['rss_kib'] / 1024:.1f} MiB{verdict} | "
                     f"{(f'{per / 1024:.1f} KiB' if per is not None else '–')} | "
                     f"{m['connections_ok']:,} / {m['connections_failed']:,} | {m['still_open']:,} | "
                     f"{m.get('fds', '–')} |")
        L.append("")
        L.append("RSS is VmRSS from /proc/PID/status (nginx/haproxy: summed over master and workers).")
        L.append("")

    warnings = result.get("warnings", [])
    L.append("## Warnings")
    L.append("")
    if warnings:
        for w in warnings:
            first = w.partition("\n")[0]
            L.append(f"- {first}")
    else:
        L.append("- none")
    L.append("")

    return "\n".join(L)


def write(result: dict, out_dir: Path, md_name: str = "latest.md", json_name: str = "latest.json",
          link_prefix: str = "") -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / md_name
    json_path = out_dir / json_name
    md_path.write_text(markdown(result, link_prefix))
    json_path.write_text(json.dumps(result, indent=2, sort_keys=False, default=str) + "\n")
    return md_path, json_path


def run_dir_name(when: datetime.datetime) -> str:
    """A run's directory name: its start, UTC, to the minute (2026-11-22T1430)."""
    return when.astimezone(datetime.timezone.utc).strftime(RUN_DIR_FORMAT)


def results_dir(out_dir: Path, when: datetime.datetime) -> Path:
    """Make and return OUT_DIR/<run_dir_name(when)>/, or -2, -3, … after it when a run of the same minute
    already has that name."""
    base = run_dir_name(when)
    n = 1
    while True:
        path = Path(out_dir) / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
