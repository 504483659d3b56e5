// Shared helpers for ringgate's k6 scenarios (issue 8): environment parameters, the Server-Timing
// metrics, per-scenario submetrics and a compact end-of-test summary (handleSummary).
//
// Metrics every scenario records through `recordTiming(res)`:
//   gateway_added       Trend (ms): `gw;dur=` of the response's Server-Timing header: the time the
//                       gateway itself spent on the request (parse, route, policies, head out, head
//                       back), without the upstream wait (docs/observability.md).
//   upstream_time       Trend (ms): `upstream;dur=`: request written upstream -> response head read.
//   server_timing_seen  Rate: among 2xx answers, the share that carried `gw;dur=`. Routes need
//                       `server_timing = true` (the companion configs set it). Against a peer that
//                       sends no Server-Timing (nginx, HAProxy, the upstream itself) set
//                       REQUIRE_SERVER_TIMING=0: the metric is then only reported.
//   SERVER_TIMING_EVERY=N (default 1) reads only every Nth response of each VU for all three. Each
//   sample costs k6 CPU; where k6 is the bottleneck (the ladder's top steps on a small box) a
//   gateway that sends Server-Timing would otherwise get fewer requests from k6 than a peer that
//   sends none. Measured here (2 vCPUs, k6 sharing a core with the upstream, 5,000/s offered):
//   3,262/s through ringgate with every response read vs 4,487/s through nginx; 4,332/s vs 4,382/s
//   with Server-Timing off. loadtest/run passes SERVER_TIMING_EVERY=10 to the ladder and the spike.
//
// Common environment: TARGET_URL (default http://127.0.0.1:8080/), TIMEOUT (per request, "10s"),
// REQUIRE_SERVER_TIMING (1), GW_P99_MS (the gateway_added p99 bound, per script default),
// SUMMARY_JSON (a path: handleSummary also writes the rows, thresholds and raw metrics there).
import { Rate, Trend } from 'k6/metrics';

// ---------------------------------------------------------------------------------------------
// Environment

function raw(name) {
  const v = __ENV[name];
  return v === undefined || v === '' ? undefined : String(v).trim();
}

export function envStr(name, def) {
  const v = raw(name);
  return v === undefined ? def : v;
}

// A number; `min`/`max` bound it, `int` requires an integer. Bad values stop the script at init.
export function envNum(name, def, { min = -Infinity, max = Infinity, int = false } = {}) {
  const v = raw(name);
  const n = v === undefined ? def : Number(v);
  if (!Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n))) {
    throw new Error(`${name}=${v} is not a${int ? 'n integer' : ' number'} in [${min}, ${max}]`);
  }
  return n;
}

export function envBool(name, def) {
  const v = raw(name);
  if (v === undefined) return def;
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  throw new Error(`${name}=${v}: write 1 or 0`);
}

export function envList(name, def) {
  const v = raw(name);
  if (v === undefined) return def.slice();
  return v.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

// k6 duration text ("500ms", "10s", "2m", "1m30s", "1h") -> seconds. Plain numbers are seconds.
export function seconds(text) {
  const t = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 };
  let total = 0;
  let used = 0;
  let m;
  while ((m = re.exec(t)) !== null) {
    total += Number(m[1]) * unit[m[2]];
    used += m[0].length;
  }
  if (used !== t.length || used === 0) {
    throw new Error(`"${text}" is not a duration (write e.g. 500ms, 10s, 2m, 1m30s)`);
  }
  return total;
}

// A duration from the environment, checked; returned as k6 text ("10s") and seconds.
export function envDuration(name, def) {
  const text = envStr(name, def);
  const s = seconds(text);
  if (!(s > 0)) throw new Error(`${name}=${text} must be longer than 0`);
  return { text, s };
}

// Seconds -> k6 duration text with millisecond precision ("12.5s" -> "12500ms").
export function dur(s) {
  return `${Math.round(s * 1000)}ms`;
}

// "1KiB", "64KiB", "1MiB", "4096", "10kB" -> bytes.
export function parseSize(text) {
  const m = /^(\d+(?:\.\d+)?)\s*(b|kib|kb|k|mib|mb|m|gib|gb|g)?$/i.exec(String(text).trim());
  if (!m) throw new Error(`"${text}" is not a size (write e.g. 1KiB, 64KiB, 1MiB or bytes)`);
  const mult = { b: 1, k: 1024, kib: 1024, kb: 1000, m: 1 << 20, mib: 1 << 20, mb: 1e6, g: 1 << 30, gib: 1 << 30, gb: 1e9 };
  return Math.round(Number(m[1]) * mult[(m[2] || 'b').toLowerCase()]);
}

// Parameters most scripts share.
export const TARGET_URL = envStr('TARGET_URL', 'http://127.0.0.1:8080/');
export const TIMEOUT = envStr('TIMEOUT', '10s');
export const REQUIRE_SERVER_TIMING = envBool('REQUIRE_SERVER_TIMING', true);
export const SERVER_TIMING_EVERY = envNum('SERVER_TIMING_EVERY', 1, { min: 1, int: true });

// TARGET_URL with `path` appended (one slash between them).
export function url(path) {
  return TARGET_URL.replace(/\/+$/, '') + '/' + String(path || '').replace(/^\/+/, '');
}

// ---------------------------------------------------------------------------------------------
// Responses

// Response header names come canonicalized ("Server-Timing", "Www-Authenticate"): look them up
// case-insensitively.
export function header(res, name) {
  const want = name.toLowerCase();
  for (const k of Object.keys(res.headers || {})) {
    if (k.toLowerCase() === want) return res.headers[k];
  }
  return undefined;
}

// `Server-Timing: gw;dur=0.041, upstream;dur=1.203` -> { gw: 0.041, upstream: 1.203 } (ms). The
// first entry of each name wins; entries without a numeric `dur` are ignored (W3C Server Timing).
export function parseServerTiming(value) {
  const out = {};
  if (!value) return out;
  for (const entry of String(value).split(',')) {
    const parts = entry.split(';').map((p) => p.trim());
    const name = parts[0];
    if (!name || name in out) continue;
    for (const p of parts.slice(1)) {
      const eq = p.indexOf('=');
      if (eq > 0 && p.slice(0, eq).trim().toLowerCase() === 'dur') {
        const n = Number(p.slice(eq + 1).trim().replace(/^"|"$/g, ''));
        if (Number.isFinite(n) && n >= 0) out[name] = n;
        break;
      }
    }
  }
  return out;
}

export const gatewayAdded = new Trend('gateway_added', true);
export const upstreamTime = new Trend('upstream_time', true);
export const serverTimingSeen = new Rate('server_timing_seen');

// Responses this VU has passed to recordTiming (SERVER_TIMING_EVERY).
let timingCalls = 0;

// Record the response's Server-Timing into gateway_added / upstream_time (tagged like the request
// when `tags` is given; the scenario tag is always there), for every SERVER_TIMING_EVERY-th
// response of this VU. Returns the parsed entries (empty for a response not read).
export function recordTiming(res, tags) {
  timingCalls += 1;
  if (timingCalls % SERVER_TIMING_EVERY !== 0) return {};
  const st = parseServerTiming(header(res, 'Server-Timing'));
  if (st.gw !== undefined) gatewayAdded.add(st.gw, tags);
  if (st.upstream !== undefined) upstreamTime.add(st.upstream, tags);
  if (res.status >= 200 && res.status < 300) serverTimingSeen.add(st.gw !== undefined, tags);
  return st;
}

// ---------------------------------------------------------------------------------------------
// Options

// Percentiles the summary (and thresholds' displayed values) carry.
export const TREND_STATS = ['avg', 'min', 'med', 'p(90)', 'p(99)', 'p(99.9)', 'max', 'count'];

// Thresholds every scenario gets: Server-Timing on every 2xx (unless REQUIRE_SERVER_TIMING=0) and
// the gateway-added p99 below `gwP99Ms` (GW_P99_MS overrides). With no Server-Timing at all the
// gateway_added threshold has no samples and passes.
export function timingThresholds(gwP99Ms) {
  const gw = envNum('GW_P99_MS', gwP99Ms, { min: 0 });
  const t = { gateway_added: [`p(99)<${gw}`], upstream_time: [] };
  t.server_timing_seen = REQUIRE_SERVER_TIMING ? ['rate==1'] : [];
  return t;
}

// Per-scenario submetrics (`metric{tag:value}`) exist in the summary only when a threshold names
// them: add an empty threshold list for each that has none yet.
export const TRACKED = [
  'http_reqs',
  'http_req_duration',
  'http_req_failed',
  'http_req_connecting',
  'dropped_iterations',
  'iterations',
  'checks',
  'gateway_added',
  'upstream_time',
];

export function track(thresholds, tag, values, metrics = TRACKED) {
  for (const v of values) {
    for (const m of metrics) {
      const key = `${m}{${tag}:${v}}`;
      if (!(key in thresholds)) thresholds[key] = [];
    }
  }
  return thresholds;
}

// ---------------------------------------------------------------------------------------------
// Summary

const fmtMs = (v) => (v === undefined || v === null || Number.isNaN(v) ? '-' : v < 10 ? v.toFixed(3) : v < 1000 ? v.toFixed(1) : v.toFixed(0));
const fmtNum = (v, d = 0) => (v === undefined || v === null || Number.isNaN(v) ? '-' : Number(v).toFixed(d));
const fmtPct = (v) => (v === undefined || v === null || Number.isNaN(v) ? '-' : `${(v * 100).toFixed(2)}%`);

function metric(data, name) {
  return (data.metrics[name] || {}).values || {};
}

// The value a threshold expression such as "p(99)<5" or "rate==1" is about.
function thresholdValue(m, expr) {
  const agg = /^\s*([a-z]+(?:\([\d.]+\))?)/i.exec(expr);
  if (!agg || !m.values) return undefined;
  const v = m.values[agg[1]];
  if (v === undefined) return undefined;
  if (agg[1] === 'rate') return fmtPct(v);
  return m.contains === 'time' ? `${fmtMs(v)}ms` : fmtNum(v, Number.isInteger(v) ? 0 : 3);
}

// One row per scenario (or tag value): what was offered and what came back.
//   rows: [{ label, tag: 'scenario:step_1000', offered (req/s, optional), seconds (its duration) }]
export function scenarioRows(data, rows) {
  return rows.map((r) => {
    const sel = `{${r.tag}}`;
    const reqs = metric(data, `http_reqs${sel}`).count || 0;
    const dropped = metric(data, `dropped_iterations${sel}`).count || 0;
    const d = metric(data, `http_req_duration${sel}`);
    const gw = metric(data, `gateway_added${sel}`);
    const up = metric(data, `upstream_time${sel}`);
    const failed = metric(data, `http_req_failed${sel}`);
    const checks = metric(data, `checks${sel}`);
    const offeredTotal = reqs + dropped;
    return {
      label: r.label,
      tag: r.tag,
      offered_rps: r.offered,
      achieved_rps: r.seconds ? reqs / r.seconds : undefined,
      requests: reqs,
      dropped,
      dropped_share: offeredTotal ? dropped / offeredTotal : 0,
      failed_share: failed.rate,
      checks_share: checks.rate,
      p50_ms: d.med,
      p90_ms: d['p(90)'],
      p99_ms: d['p(99)'],
      p999_ms: d['p(99.9)'],
      max_ms: d.max,
      gw_p50_ms: gw.count ? gw.med : undefined,
      gw_p99_ms: gw.count ? gw['p(99)'] : undefined,
      upstream_p50_ms: up.count ? up.med : undefined,
      ...(r.extra || {}),
    };
  });
}

function table(rows) {
  const head = ['scenario', 'offered/s', 'achieved/s', 'reqs', 'dropped', 'failed', 'p50', 'p90', 'p99', 'p99.9', 'max', 'gw p50', 'gw p99', 'up p50'];
  const lines = rows.map((r) => [
    r.label,
    fmtNum(r.offered_rps),
    fmtNum(r.achieved_rps),
    fmtNum(r.requests),
    r.dropped ? `${r.dropped} (${fmtPct(r.dropped_share)})` : '0',
    fmtPct(r.failed_share),
    fmtMs(r.p50_ms),
    fmtMs(r.p90_ms),
    fmtMs(r.p99_ms),
    fmtMs(r.p999_ms),
    fmtMs(r.max_ms),
    fmtMs(r.gw_p50_ms),
    fmtMs(r.gw_p99_ms),
    fmtMs(r.upstream_p50_ms),
  ]);
  const all = [head, ...lines];
  const w = head.map((_, i) => Math.max(...all.map((l) => String(l[i]).length)));
  const fmt = (l) => '  ' + l.map((c, i) => (i === 0 ? String(c).padEnd(w[i]) : String(c).padStart(w[i]))).join('  ');
  return [fmt(head), ...lines.map(fmt)].join('\n');
}

function thresholdLines(data) {
  const out = [];
  let failed = 0;
  for (const name of Object.keys(data.metrics).sort()) {
    const m = data.metrics[name];
    for (const [expr, res] of Object.entries(m.thresholds || {})) {
      const v = thresholdValue(m, expr);
      if (!res.ok) failed++;
      out.push(`  ${res.ok ? 'ok  ' : 'FAIL'} ${name} ${expr}${v === undefined ? '' : `  (${v})`}`);
    }
  }
  return { text: out.join('\n'), failed };
}

// Checks that failed at least once, from every group: "name: fails of total".
function failedChecks(group, out = []) {
  for (const c of (group && group.checks) || []) {
    if (c.fails > 0) out.push(`  ${c.name}: ${c.fails} failed of ${c.passes + c.fails}`);
  }
  for (const g of (group && group.groups) || []) failedChecks(g, out);
  return out;
}

// handleSummary body: a header, the thresholds with their values, the per-scenario table (times
// in ms), notes; plus `SUMMARY_JSON` (when set) with everything machine-readable.
//   opts: { title, params: {name: value}, rows (see scenarioRows), notes: [strings], extra: {} (JSON only) }
export function summary(data, opts) {
  const rows = scenarioRows(data, opts.rows || []);
  const th = thresholdLines(data);
  const all = metric(data, 'http_reqs');
  const gw = metric(data, 'gateway_added');
  const st = metric(data, 'server_timing_seen');
  const params = Object.entries(opts.params || {}).map(([k, v]) => `${k}=${v}`).join(' ');
  const lines = [
    '',
    `ringgate k6: ${opts.title}`,
    `  ${params}`,
    `  ${all.count || 0} requests in ${fmtNum(data.state.testRunDurationMs / 1000, data.state.testRunDurationMs < 10000 ? 2 : 1)} s; ` +
      `checks ${fmtPct(metric(data, 'checks').rate)}; failed ${fmtPct(metric(data, 'http_req_failed').rate)}; ` +
      `Server-Timing on ${st.passes + st.fails ? fmtPct(st.rate) : 'no'} 2xx` +
      (gw.count ? `; gateway_added p50 ${fmtMs(gw.med)} / p99 ${fmtMs(gw['p(99)'])} / max ${fmtMs(gw.max)} ms` : ''),
    '',
    `thresholds (${th.failed ? `${th.failed} FAILED: k6 exits 99` : 'all passed'}):`,
    th.text || '  (none)',
  ];
  const bad = failedChecks(data.root_group);
  if (bad.length) lines.push('', 'failed checks:', ...bad);
  if (rows.length) lines.push('', 'per scenario (times in ms; gw = gateway_added, up = upstream_time):', table(rows));
  for (const n of opts.notes || []) lines.push('', n);
  lines.push('');
  const out = { stdout: lines.join('\n') };
  const path = envStr('SUMMARY_JSON', '');
  if (path) {
    out[path] = JSON.stringify(
      {
        script: opts.title,
        params: opts.params || {},
        rows,
        thresholds_failed: th.failed,
        ...(opts.extra || {}),
        test_run_duration_ms: data.state.testRunDurationMs,
        metrics: data.metrics,
      },
      null,
      1,
    );
  }
  return out;
}
