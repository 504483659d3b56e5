"""ringbench: small reusable pieces of ringgate's load-test harness.

Modules:
  procs    - start/stop pinned processes, bounded runs, cleanup on exit/signals
  procfs   - CPU time and memory of a process (tree) from /proc
  configs  - nginx / haproxy / ringgate config rendering
  servers  - the servers under test (upstream nginx, proxies, ringgate)
  loadgen  - wrk, oha and k6 runners and output parsing
  memory   - many idle keep-alive connections (memory scenario)
  stats    - median / min / max summaries and formatting
  scrape   - ringgate's /metrics: parsing, per-run histograms and quantiles, a background scraper
  install  - install missing tools and Python packages, build ringgate
  sysinfo  - kernel, CPU model, tool versions
  report   - Markdown / JSON report, the run's results directory
  plots    - PNG plots (matplotlib, imported lazily)
  suite    - the benchmark itself (rounds over targets)
"""
