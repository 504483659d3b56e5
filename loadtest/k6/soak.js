// k6 scenario (issue 8): a bounded soak. A constant open-loop rate for DURATION (default 2 minutes),
// split into thirds (early, middle, late) so the summary shows whether latency drifts over the run.
//
//   target/release/ringgate run -c loadtest/k6/gateway.toml
//   k6 run loadtest/k6/soak.js
//   k6 run -e RATE=2000 -e DURATION=10m loadtest/k6/soak.js
//
// Environment: TARGET_URL (default http://127.0.0.1:8080/), RATE (req/s, 500), DURATION ("2m"),
// VUS (pre-allocated, 50), MAX_VUS (500), P99_MS (25), MAX_ERROR_RATE (0.001), MAX_DROPPED (0),
// GW_P99_MS (5), REQUIRE_SERVER_TIMING (1), TIMEOUT ("10s"), SUMMARY_JSON.
//
// Thresholds: p99 below P99_MS over the run and in the late third alone (a slow leak shows up
// there first); failed requests below MAX_ERROR_RATE; checks at least 1 - MAX_ERROR_RATE; no more
// than MAX_DROPPED dropped iterations (the rate was held the whole time); gateway_added p99 below
// GW_P99_MS. The summary also prints late / early p50 and p99 (drift; k6 thresholds cannot
// compare two submetrics, so drift is reported, and bounded only through the late-third p99).
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import * as lib from './lib.js';

const RATE = lib.envNum('RATE', 500, { min: 1, int: true });
const DURATION = lib.envDuration('DURATION', '2m');
const VUS = lib.envNum('VUS', 50, { min: 1, int: true });
const MAX_VUS = Math.max(VUS, lib.envNum('MAX_VUS', 500, { min: 1, int: true }));
const P99_MS = lib.envNum('P99_MS', 25, { min: 0 });
const MAX_ERROR_RATE = lib.envNum('MAX_ERROR_RATE', 0.001, { min: 0, max: 1 });
const MAX_DROPPED = lib.envNum('MAX_DROPPED', 0, { min: 0, int: true });
const THIRDS = ['early', 'middle', 'late'];

export const options = {
  discardResponseBodies: true,
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: DURATION.text,
      preAllocatedVUs: VUS,
      maxVUs: MAX_VUS,
    },
  },
  summaryTrendStats: lib.TREND_STATS,
  thresholds: lib.track(
    {
      ...lib.timingThresholds(5),
      http_req_duration: [`p(99)<${P99_MS}`],
      'http_req_duration{third:late}': [`p(99)<${P99_MS}`],
      http_req_failed: [`rate<${MAX_ERROR_RATE}`],
      checks: [`rate>=${1 - MAX_ERROR_RATE}`],
      dropped_iterations: [`count<=${MAX_DROPPED}`],
    },
    'third',
    THIRDS,
    ['http_reqs', 'http_req_duration', 'http_req_failed', 'checks', 'gateway_added', 'upstream_time'],
  ),
};

export default function () {
  const elapsed = (Date.now() - exec.scenario.startTime) / 1000;
  exec.vu.metrics.tags.third = THIRDS[Math.min(2, Math.floor((3 * elapsed) / DURATION.s))];
  const res = http.get(lib.TARGET_URL, { timeout: lib.TIMEOUT });
  lib.recordTiming(res);
  check(res, { 'status 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const rows = THIRDS.map((t) => ({ label: t, tag: `third:${t}`, offered: RATE, seconds: DURATION.s / 3 }));
  const parsed = lib.scenarioRows(data, rows);
  const early = parsed[0];
  const late = parsed[2];
  const ratio = (a, b) => (a && b ? (b / a).toFixed(2) : '-');
  const dropped = ((data.metrics.dropped_iterations || {}).values || {}).count || 0;
  return lib.summary(data, {
    title: `soak ${RATE} req/s for ${DURATION.text}`,
    params: { TARGET_URL: lib.TARGET_URL, RATE, DURATION: DURATION.text, P99_MS, MAX_VUS },
    rows,
    notes: [
      `drift late/early: p50 x${ratio(early.p50_ms, late.p50_ms)}, p99 x${ratio(early.p99_ms, late.p99_ms)}, ` +
        `gateway_added p99 x${ratio(early.gw_p99_ms, late.gw_p99_ms)}; dropped iterations: ${dropped}`,
    ],
    extra: {
      drift_p99: early.p99_ms && late.p99_ms ? late.p99_ms / early.p99_ms : null,
    },
  });
}
