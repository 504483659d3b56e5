"""PNG plots of a result, drawn with matplotlib (imported lazily: only here, only when plotting).

- latency percentile curves: one plot per fixed rate, a curve per target from oha's latency
  distribution (p50 … p99.99 of `latencyPercentiles`, kept by loadgen.parse_oha_json in `latency_ms`),
  the median over the rounds with the rounds' min–max as a band; x is -log10(1 − p/100), so p50, p90,
  p99, p99.9 and p99.99 are evenly spaced;
- req/s vs latency: a line per target and percentile (p50 solid, p99 dashed), x the achieved rate, from
  the k6 ladder's steps (when it ran) and from oha's fixed rates.

The data extraction (percentile_curves, rate_latency_series) is plain Python; render() does the drawing
with a pyplot module it is given (tests pass a mock) or loads (matplotlib with the Agg backend).
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Optional

from . import stats

PERCENTILE_FROM = 50.0  # curves start at the median
_PCT_KEY = re.compile(r"^p(\d+(?:\.\d+)?)$")
K6_LADDER = "ladder"


def percentile_of(key: str) -> Optional[float]:
    """"p99.9" → 99.9 (oha's latencyPercentiles keys); None for anything else."""
    m = _PCT_KEY.match(key)
    return float(m.group(1)) if m else None


def percentile_x(p: float) -> float:
    """Where percentile p sits on the x axis: -log10(1 − p/100) (p50 0.30, p90 1, p99 2, p99.9 3, p99.99 4)."""
    return -math.log10(1 - p / 100)


def percentile_curves(result: dict, rate: str) -> dict:
    """{target: [(percentile, median ms, min ms, max ms), …] by percentile} from each round's oha run at
    `rate` (its `latency_ms`, percentiles from PERCENTILE_FROM up), targets in the run's order; failed runs
    and targets without figures are left out."""
    curves = {}
    for target in result.get("options", {}).get("targets", []):
        by_pct: dict = {}
        for rnd in result.get("rounds", []):
            run = rnd.get("latency", {}).get(str(rate), {}).get(target)
            if not run or "error" in run:
                continue
            for key, ms in (run.get("latency_ms") or {}).items():
                p = percentile_of(key)
                if p is not None and PERCENTILE_FROM <= p < 100 and ms is not None:
                    by_pct.setdefault(p, []).append(ms)
        if by_pct:
            curves[target] = [(p, s["median"], s["min"], s["max"])
                              for p, s in sorted((p, stats.summarize(v)) for p, v in by_pct.items())]
    return curves


def _points(by_step: dict) -> list:
    """[(achieved req/s, p50 ms, p99 ms)] of summaries by step/rate (medians), sorted by rate; steps
    without an achieved rate or p50/p99 are left out."""
    pts = []
    for fig in by_step.values():
        med = {k: (fig.get(k) or {}).get("median") for k in ("achieved_rps", "p50_ms", "p99_ms")}
        if None not in med.values():
            pts.append((med["achieved_rps"], med["p50_ms"], med["p99_ms"]))
    return sorted(pts)


def rate_latency_series(result: dict) -> dict:
    """{source: {target: [(achieved req/s, p50 ms, p99 ms), …]}}: "k6-ladder" from the ladder's steps (its
    rows, medians over the rounds) when it ran, "oha" from the fixed rates; sources without points are left
    out."""
    summ = result.get("summary", {})
    targets = result.get("options", {}).get("targets", [])
    out = {}
    ladder = (summ.get("k6") or {}).get(K6_LADDER, {}).get("rows") or {}
    series = {t: _points(ladder[t]) for t in targets if t in ladder}
    if any(series.values()):
        out["k6-ladder"] = {t: p for t, p in series.items() if p}
    lat = summ.get("latency") or {}
    series = {t: _points({r: by_target.get(t, {}) for r, by_target in lat.items()}) for t in targets}
    if any(series.values()):
        out["oha"] = {t: p for t, p in series.items() if p}
    return out


def load_pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no display)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_percentiles(plt, curves: dict, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for target, pts in curves.items():
        xs = [percentile_x(p) for p, _, _, _ in pts]
        (line,) = ax.plot(xs, [m for _, m, _, _ in pts], marker="o", label=target)
        if any(lo != hi for _, _, lo, hi in pts):
            ax.fill_between(xs, [lo for _, _, lo, _ in pts], [hi for _, _, _, hi in pts],
                            color=line.get_color(), alpha=0.15, linewidth=0)
    ticks = sorted({p for pts in curves.values() for p, _, _, _ in pts})
    ax.set_xticks([percentile_x(p) for p in ticks])
    ax.set_xticklabels([f"p{p:g}" for p in ticks])
    _finish(plt, fig, ax, title, "percentile", path)


def plot_rate_latency(plt, series: dict, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for target, pts in series.items():
        xs = [x for x, _, _ in pts]
        (line,) = ax.plot(xs, [p50 for _, p50, _ in pts], marker="o", label=f"{target} p50")
        ax.plot(xs, [p99 for _, _, p99 in pts], marker="^", linestyle="--", color=line.get_color(),
                label=f"{target} p99")
    _finish(plt, fig, ax, title, "achieved req/s", path)


def tick_label(v: float, minor: bool = False) -> str:
    """A log axis' tick as a plain number (0.2, 1, 5) rather than 2×10⁻¹; of the minor ticks only 2 and 5
    (and their powers of 10) are labelled."""
    if v <= 0:
        return ""
    lead = round(v / 10 ** math.floor(math.log10(v)))
    return "" if minor and lead not in (2, 5) else f"{v:g}"


def _finish(plt, fig, ax, title: str, xlabel: str, path: Path) -> None:
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _pos: tick_label(v)))
    ax.yaxis.set_minor_formatter(plt.FuncFormatter(lambda v, _pos: tick_label(v, minor=True)))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title(title, fontsize="medium")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(result: dict, out_dir: Path, plt=None) -> list:
    """Draw every plot the result has data for into out_dir; returns [{"file", "title"}] in report order
    (title: the plot's own, and its caption in the report). plt: a pyplot module (default: load_pyplot())."""
    plt = plt or load_pyplot()
    out_dir = Path(out_dir)
    opts = result.get("options", {})
    done = []
    for rate in opts.get("rates", []):
        curves = percentile_curves(result, str(rate))
        if curves:
            title = (f"Latency percentiles at {rate} req/s (oha -c {opts.get('oha_connections')}; "
                     "median of rounds, band: min–max)")
            done.append((f"latency-percentiles-{rate}.png", title, plot_percentiles, curves))
    for source, series in rate_latency_series(result).items():
        what = "k6 ladder steps" if source == "k6-ladder" else "oha fixed rates"
        done.append((f"rate-vs-latency-{source}.png", f"Achieved req/s vs latency ({what}; median of rounds)",
                     plot_rate_latency, series))
    for file, title, draw, data in done:
        draw(plt, data, title, out_dir / file)
    return [{"file": file, "title": title} for file, title, _, _ in done]
