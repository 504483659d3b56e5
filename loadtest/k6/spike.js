// k6 scenario (issue 8): a spike. Open-loop `ramping-arrival-rate`: RATE for WARMUP, up to
// SPIKE_FACTOR x RATE in RAMP, held for HOLD, back down to RATE in RAMP, then RATE for RECOVERY.
//
//   target/release/ringgate run -c loadtest/k6/gateway.toml
//   k6 run loadtest/k6/spike.js
//   k6 run -e RATE=1000 -e SPIKE_FACTOR=10 loadtest/k6/spike.js
//
// Environment: TARGET_URL (default http://127.0.0.1:8080/), RATE (base req/s, 200), SPIKE_FACTOR
// (10), WARMUP ("10s"), RAMP ("5s"), HOLD ("10s"), RECOVERY ("10s"), VUS (pre-allocated, 50),
// MAX_VUS (1000), P99_MS (25: base and recovery), PEAK_P99_MS (100), MAX_ERROR_RATE (0.001),
// MAX_DROPPED (0), GW_P99_MS (10), REQUIRE_SERVER_TIMING (1), TIMEOUT ("10s"), SUMMARY_JSON.
//
// Every request is tagged with its phase (base, ramp_up, peak, ramp_down, recovery, from the time
// since the scenario started), so the summary has percentiles per phase.
//
// Thresholds: failed requests below MAX_ERROR_RATE overall; no more than MAX_DROPPED dropped
// iterations (drops mean no VU was free: latency x rate outgrew MAX_VUS, i.e. the spike was not
// absorbed); p99 below PEAK_P99_MS at the peak; p99 below P99_MS in the base phase and again in
// the recovery phase (the gateway is back to normal once the spike is over); gateway_added p99
// below GW_P99_MS.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import * as lib from './lib.js';

const RATE = lib.envNum('RATE', 200, { min: 1, int: true });
const FACTOR = lib.envNum('SPIKE_FACTOR', 10, { min: 1 });
const WARMUP = lib.envDuration('WARMUP', '10s');
const RAMP = lib.envDuration('RAMP', '5s');
const HOLD = lib.envDuration('HOLD', '10s');
const RECOVERY = lib.envDuration('RECOVERY', '10s');
const VUS = lib.envNum('VUS', 50, { min: 1, int: true });
const MAX_VUS = Math.max(VUS, lib.envNum('MAX_VUS', 1000, { min: 1, int: true }));
const P99_MS = lib.envNum('P99_MS', 25, { min: 0 });
const PEAK_P99_MS = lib.envNum('PEAK_P99_MS', 100, { min: 0 });
const MAX_ERROR_RATE = lib.envNum('MAX_ERROR_RATE', 0.001, { min: 0, max: 1 });
const MAX_DROPPED = lib.envNum('MAX_DROPPED', 0, { min: 0, int: true });
const PEAK = Math.round(RATE * FACTOR);

// Phase boundaries, in seconds since the scenario started.
const PHASES = [
  ['base', WARMUP.s],
  ['ramp_up', RAMP.s],
  ['peak', HOLD.s],
  ['ramp_down', RAMP.s],
  ['recovery', RECOVERY.s],
];
const ENDS = [];
PHASES.reduce((t, [name, len]) => {
  ENDS.push([name, t + len]);
  return t + len;
}, 0);

function phaseAt(s) {
  for (const [name, end] of ENDS) if (s < end) return name;
  return 'recovery'; // gracefulStop stragglers
}

export const options = {
  discardResponseBodies: true,
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: RATE,
      timeUnit: '1s',
      preAllocatedVUs: VUS,
      maxVUs: MAX_VUS,
      stages: [
        { target: RATE, duration: WARMUP.text },
        { target: PEAK, duration: RAMP.text },
        { target: PEAK, duration: HOLD.text },
        { target: RATE, duration: RAMP.text },
        { target: RATE, duration: RECOVERY.text },
      ],
    },
  },
  summaryTrendStats: lib.TREND_STATS,
  thresholds: lib.track(
    {
      ...lib.timingThresholds(10),
      checks: [`rate>=${1 - MAX_ERROR_RATE}`],
      http_req_failed: [`rate<${MAX_ERROR_RATE}`],
      dropped_iterations: [`count<=${MAX_DROPPED}`],
      'http_req_duration{phase:base}': [`p(99)<${P99_MS}`],
      'http_req_duration{phase:peak}': [`p(99)<${PEAK_P99_MS}`],
      'http_req_duration{phase:recovery}': [`p(99)<${P99_MS}`],
    },
    'phase',
    PHASES.map((p) => p[0]),
    ['http_reqs', 'http_req_duration', 'http_req_failed', 'checks', 'gateway_added', 'upstream_time'],
  ),
};

export default function () {
  const phase = phaseAt((Date.now() - exec.scenario.startTime) / 1000);
  // The VU's tags go on everything it records from here on: the request's metrics, checks, ours.
  exec.vu.metrics.tags.phase = phase;
  const res = http.get(lib.TARGET_URL, { timeout: lib.TIMEOUT });
  lib.recordTiming(res);
  check(res, { 'status 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const rows = PHASES.map(([name, len]) => {
    // Mean offered rate of the phase: flat phases RATE or PEAK, ramps the midpoint.
    const offered = name === 'peak' ? PEAK : name.startsWith('ramp') ? (RATE + PEAK) / 2 : RATE;
    return { label: name, tag: `phase:${name}`, offered, seconds: len };
  });
  const dropped = ((data.metrics.dropped_iterations || {}).values || {}).count || 0;
  return lib.summary(data, {
    title: `spike ${RATE} -> ${PEAK} -> ${RATE} req/s`,
    params: {
      TARGET_URL: lib.TARGET_URL,
      RATE,
      SPIKE_FACTOR: FACTOR,
      WARMUP: WARMUP.text,
      RAMP: RAMP.text,
      HOLD: HOLD.text,
      RECOVERY: RECOVERY.text,
      MAX_VUS,
    },
    rows,
    notes: [`dropped iterations (whole run; k6 does not tag them by phase): ${dropped}`],
  });
}
