"""ringgate's own figures, read from its admin listener (docs/observability.md).

- `parse` / `histograms` / `counter`: the Prometheus text format of `GET /metrics`;
- `diff_buckets` / `bucket_quantile` / `whitebox`: one run's own latency from two scrapes. The histograms
  are cumulative since start and cannot be reset, so a run's figures come from the difference of the
  cumulative bucket counts scraped before and after it, and its quantiles are estimated from those
  buckets by linear interpolation within the bucket holding the rank (as Prometheus'
  histogram_quantile does);
- `Scraper`: GET /metrics once per second from a background thread while a run is in progress.
"""
from __future__ import annotations

import math
import re
import threading
import time
from typing import Callable, Optional

# One sample line: name, optional {labels}, value (a timestamp after it is ignored).
_SAMPLE_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_ESCAPES = {"n": "\n", "\\": "\\", '"': '"'}

# White-box figures per run: our key → ringgate's histogram (by route).
WHITEBOX_METRICS = {"gateway_added": "ringgate_gateway_added_seconds",
                    "total": "ringgate_request_duration_seconds"}
WHITEBOX_QUANTILES = {"p50": 0.5, "p99": 0.99}
# A run's white-box figures (whitebox()) summarized over the rounds.
WHITEBOX_FIGURES = ["count"] + [f"{k}_{q}_ms" for k in WHITEBOX_METRICS for q in WHITEBOX_QUANTILES]
UNMATCHED_ROUTE = "(unmatched)"
DROPPED_LINES = "ringgate_access_log_dropped_total"
WORKER_INFO = "ringgate_worker_info"  # one sample per worker whose copy made it into the scrape

Sample = tuple  # (name, {label: value}, value)
Buckets = list  # [(upper bound in seconds, cumulative count), ...] sorted by bound, +Inf last


def parse(text: str) -> list[Sample]:
    """The samples of a Prometheus text exposition (comments and blank lines skipped)."""
    out = []
    for line in text.splitlines():
        m = _SAMPLE_RE.match(line)
        if not m:  # comments (# HELP, # TYPE) and blank lines
            continue
        labels = {k: re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), v)
                  for k, v in _LABEL_RE.findall(m.group(2) or "")}
        out.append((m.group(1), labels, float(m.group(3))))
    return out


def histograms(samples: list[Sample], metric: str, by: str = "route") -> dict[str, Buckets]:
    """{value of label `by`: buckets} of histogram `metric` (its `_bucket` series)."""
    out: dict[str, Buckets] = {}
    for name, labels, value in samples:
        if name == metric + "_bucket" and "le" in labels:
            out.setdefault(labels.get(by, ""), []).append((float(labels["le"]), value))
    return {k: sorted(b) for k, b in out.items()}


def counter(samples: list[Sample], metric: str) -> Optional[float]:
    """The sum of `metric` over its label sets, None when absent."""
    values = [v for name, _, v in samples if name == metric]
    return sum(values) if values else None


def diff_buckets(before: Optional[Buckets], after: Buckets) -> Buckets:
    """after − before, bound by bound: the cumulative counts of what happened between the two scrapes.
    No `before`, or a count that went down (the process restarted in between), gives `after` itself."""
    if not before:
        return list(after)
    prev = dict(before)
    if any(n < prev.get(le, 0) for le, n in after):
        return list(after)
    return [(le, n - prev.get(le, 0)) for le, n in after]


def bucket_quantile(q: float, buckets: Buckets) -> Optional[float]:
    """The q-quantile (0 < q ≤ 1) estimated from cumulative buckets: find the first bucket whose
    cumulative count reaches rank q·total and interpolate linearly between its lower bound (the previous
    bound, 0 for the first bucket) and its upper bound. In the +Inf bucket: the largest finite bound.
    None when there are no observations. Resolution is the buckets': a quantile in the first bucket
    (≤ 50 µs for ringgate) only says "somewhere below 50 µs"."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, n in buckets:
        if n >= rank and n > below:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / (n - below)
        if not math.isinf(le):
            lower = le
        below = n
    return lower


def whitebox(before: Optional[str], after: str) -> dict:
    """A run's own white-box figures from /metrics scraped before (`before`; None: since start) and
    after it: the route that served the most requests in between (never "(unmatched)"), that count, and
    for gateway-added and total time the differenced buckets and p50/p99 in ms. {} when no route.
    ValueError when the two scrapes merged different numbers of workers (a worker that does not answer
    within 500 ms is left out of a scrape): their difference would not be the run's."""
    b, a = parse(before or ""), parse(after)
    workers = [sum(1 for name, _, _ in x if name == WORKER_INFO) for x in (b, a)]
    if before is not None and workers[0] != workers[1]:
        raise ValueError(f"the scrapes merged {workers[0]} worker(s) before the run, {workers[1]} after")
    per_metric = {}
    for key, metric in WHITEBOX_METRICS.items():
        hb, ha = histograms(b, metric), histograms(a, metric)
        per_metric[key] = {route: diff_buckets(hb.get(route), buckets) for route, buckets in ha.items()
                           if route != UNMATCHED_ROUTE and buckets}
    runs = per_metric["total"]
    if not runs:
        return {}
    route = max(runs, key=lambda r: runs[r][-1][1])
    out: dict = {"route": route, "count": int(runs[route][-1][1])}
    for key in WHITEBOX_METRICS:
        buckets = per_metric[key].get(route, [])
        out[f"{key}_buckets"] = [[("+Inf" if math.isinf(le) else le), int(n)] for le, n in buckets]
        for name, q in WHITEBOX_QUANTILES.items():
            v = bucket_quantile(q, buckets)
            out[f"{key}_{name}_ms"] = v * 1e3 if v is not None else None
    return out


class Scraper:
    """`fetch()` (GET /metrics) every `interval_s` from a daemon thread while in a `with` block, the first
    at once; counts the scrapes that worked and failed, keeps the last text."""

    def __init__(self, fetch: Callable[[], str], interval_s: float = 1.0):
        self.fetch = fetch
        self.interval_s = interval_s
        self.ok = 0
        self.failed = 0
        self.last: Optional[str] = None
        self.last_error: Optional[str] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="metrics-scraper", daemon=True)

    def __enter__(self) -> "Scraper":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.last = self.fetch()
                self.ok += 1
            except Exception as e:  # noqa: BLE001 - counted; the run goes on
                self.failed += 1
                self.last_error = str(e)
            due += self.interval_s
            now = time.monotonic()
            while due < now:  # a slow scrape: skip the ticks it overran rather than catch up in a burst
                due += self.interval_s
            self._stop.wait(due - now)

    def figures(self) -> dict:
        """What a run records: scrapes ok / failed, the last error, and the access-log drop counter
        (cumulative since start) from the last scrape."""
        out: dict = {"scrapes": self.ok, "scrape_errors": self.failed}
        if self.last_error:
            out["scrape_last_error"] = self.last_error
        if self.last is not None:
            out["access_log_dropped"] = counter(parse(self.last), DROPPED_LINES)
        return out
