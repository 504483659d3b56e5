// k6 scenario (issue 8): latency ladder. Open-loop `constant-arrival-rate` steps (default 1k, 2k, 5k,
// 10k, 20k req/s), one k6 scenario per step run one after the other, so the summary has percentiles,
// the achieved rate and the dropped iterations of each step.
//
//   target/release/ringgate run -c loadtest/k6/gateway.toml
//   k6 run loadtest/k6/ladder.js
//   k6 run -e STEPS=500,1000,2000 -e STEP_DURATION=20s loadtest/k6/ladder.js
//
// Environment: TARGET_URL (default http://127.0.0.1:8080/), STEPS (req/s, comma-separated; default
// 1000,2000,5000,10000,20000), STEP_DURATION ("10s"), GAP (pause between steps, "2s"; also each
// step's gracefulStop), VUS (VUs pre-allocated per step; default rate/200, at least 10), MAX_VUS
// (per step, 500), SUSTAIN (req/s: the steps at or below it are held to the thresholds; default the
// first step), P99_MS (25), MAX_ERROR_RATE (0.001), MAX_DROPPED_SHARE (0.01), GW_P99_MS (5),
// REQUIRE_SERVER_TIMING (1), TIMEOUT ("10s"), SUMMARY_JSON.
//
// Open loop: k6 starts requests on schedule whatever the latency, with a VU each; when no VU is free
// the iteration is dropped (`dropped_iterations`). From the first step with drops on, the offered
// rate was not offered: the step's percentiles describe a saturated system (the gateway, the
// upstream, or k6 itself, which shares the machine). The summary marks such steps "saturated";
// the first one bounds the gateway's capacity on this machine and this setup.
//
// Thresholds apply to the SUSTAIN steps only (the others are recorded): no more than
// MAX_DROPPED_SHARE of the offered iterations dropped, failed requests below MAX_ERROR_RATE, p99
// below P99_MS, gateway_added p99 below GW_P99_MS (all steps together).
import http from 'k6/http';
import { check } from 'k6';
import * as lib from './lib.js';

const STEPS = lib.envList('STEPS', ['1000', '2000', '5000', '10000', '20000']).map((s, i) => {
  const n = Number(s);
  if (!(n > 0) || !Number.isInteger(n)) throw new Error(`STEPS[${i}]=${s} is not a positive integer (req/s)`);
  return n;
});
const STEP = lib.envDuration('STEP_DURATION', '10s');
const GAP = lib.envDuration('GAP', '2s');
const MAX_VUS = lib.envNum('MAX_VUS', 500, { min: 1, int: true });
const VUS = __ENV.VUS ? lib.envNum('VUS', 0, { min: 1, int: true }) : 0;
const SUSTAIN = lib.envNum('SUSTAIN', STEPS[0], { min: 0 });
const P99_MS = lib.envNum('P99_MS', 25, { min: 0 });
const MAX_ERROR_RATE = lib.envNum('MAX_ERROR_RATE', 0.001, { min: 0, max: 1 });
const MAX_DROPPED_SHARE = lib.envNum('MAX_DROPPED_SHARE', 0.01, { min: 0, max: 1 });

const name = (rate) => `step_${rate}`;
const scenarios = {};
const thresholds = { ...lib.timingThresholds(5), checks: [] };
STEPS.forEach((rate, i) => {
  const pre = Math.min(MAX_VUS, VUS || Math.max(10, Math.ceil(rate / 200)));
  scenarios[name(rate)] = {
    executor: 'constant-arrival-rate',
    rate,
    timeUnit: '1s',
    duration: STEP.text,
    startTime: lib.dur(i * (STEP.s + GAP.s)),
    gracefulStop: GAP.text,
    preAllocatedVUs: pre,
    maxVUs: Math.max(pre, MAX_VUS),
    tags: { step: String(rate) },
  };
  if (rate <= SUSTAIN) {
    const sel = `{scenario:${name(rate)}}`;
    // Dropped iterations: at most MAX_DROPPED_SHARE of what the step offers (rate x duration).
    thresholds[`dropped_iterations${sel}`] = [`count<=${Math.floor(rate * STEP.s * MAX_DROPPED_SHARE)}`];
    thresholds[`http_req_failed${sel}`] = [`rate<${MAX_ERROR_RATE}`];
    thresholds[`http_req_duration${sel}`] = [`p(99)<${P99_MS}`];
    thresholds[`checks${sel}`] = [`rate>=${1 - MAX_ERROR_RATE}`];
  }
});
lib.track(thresholds, 'scenario', STEPS.map(name));

export const options = {
  discardResponseBodies: true,
  scenarios,
  summaryTrendStats: lib.TREND_STATS,
  thresholds,
};

export default function () {
  const res = http.get(lib.TARGET_URL, { timeout: lib.TIMEOUT });
  lib.recordTiming(res);
  check(res, { 'status 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const rows = STEPS.map((rate) => ({ label: name(rate), tag: `scenario:${name(rate)}`, offered: rate, seconds: STEP.s }));
  // A step is saturated when it dropped more than MAX_DROPPED_SHARE or achieved under 95 % of its rate.
  const parsed = lib.scenarioRows(data, rows);
  const saturated = parsed.filter((r) => r.dropped_share > MAX_DROPPED_SHARE || r.achieved_rps < 0.95 * r.offered_rps);
  const first = saturated.length ? saturated[0] : null;
  const held = parsed.filter((r) => !first || r.offered_rps < first.offered_rps).pop();
  const p99 = (r) => (r.p99_ms === undefined ? '-' : r.p99_ms.toFixed(3));
  const note = first
    ? `saturated from ${first.offered_rps} req/s on (${first.dropped} dropped, ${Math.round(first.achieved_rps)} req/s achieved)` +
      (held ? `; highest step held: ${held.offered_rps} req/s (p99 ${p99(held)} ms)` : '; no step held') +
      '.\nPercentiles of saturated steps describe an overloaded system (gateway, upstream or k6 itself).'
    : `no step saturated: every step achieved >= 95% of its rate with <= ${MAX_DROPPED_SHARE * 100}% dropped.`;
  return lib.summary(data, {
    title: 'latency ladder',
    params: { TARGET_URL: lib.TARGET_URL, STEPS: STEPS.join(','), STEP_DURATION: STEP.text, SUSTAIN, P99_MS, MAX_VUS },
    rows,
    notes: [note],
    extra: { saturated_from_rps: first ? first.offered_rps : null, highest_held_rps: held ? held.offered_rps : null },
  });
}
