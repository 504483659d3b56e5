// k6 scenario (issue 8): smoke. A few requests through the gateway; every one must be a 200 with the
// expected body and, on ringgate, a Server-Timing header.
//
//   target/release/ringgate run -c loadtest/k6/gateway.toml
//   k6 run loadtest/k6/smoke.js
//
// Environment: TARGET_URL (default http://127.0.0.1:8080/), ITERATIONS (10), VUS (1),
// BODY_MATCH (a text every GET body must contain; default "ringgate demo upstream", the built-in
// demo's first line; empty: no body check), REQUIRE_SERVER_TIMING (1), P99_MS (500), GW_P99_MS (50),
// TIMEOUT ("10s"), SUMMARY_JSON.
//
// Each iteration sends a GET and a POST with a small body. Against the demo upstream (which echoes
// what it received) it also checks that the gateway forwarded X-Forwarded-For and X-Request-Id and
// that the POST body arrived whole ("body: N bytes").
import http from 'k6/http';
import { check } from 'k6';
import * as lib from './lib.js';

const ITERATIONS = lib.envNum('ITERATIONS', 10, { min: 1, int: true });
const VUS = lib.envNum('VUS', 1, { min: 1, int: true });
const BODY_MATCH = __ENV.BODY_MATCH === undefined ? 'ringgate demo upstream' : __ENV.BODY_MATCH;
const P99_MS = lib.envNum('P99_MS', 500, { min: 0 });
const DEMO_LINE = 'ringgate demo upstream';
const POST_BODY = 'k6 smoke body\n'.repeat(8); // 112 bytes

export const options = {
  scenarios: {
    smoke: { executor: 'shared-iterations', iterations: ITERATIONS, vus: Math.min(VUS, ITERATIONS), maxDuration: '1m' },
  },
  summaryTrendStats: lib.TREND_STATS,
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    http_reqs: [`count==${2 * ITERATIONS}`],
    http_req_duration: [`p(99)<${P99_MS}`],
    ...lib.timingThresholds(50),
  },
};

export default function () {
  const get = http.get(lib.TARGET_URL, { timeout: lib.TIMEOUT, tags: { kind: 'get' } });
  lib.recordTiming(get);
  const body = typeof get.body === 'string' ? get.body : '';
  const demo = body.indexOf(DEMO_LINE) >= 0;
  check(get, {
    'GET status 200': (r) => r.status === 200,
    'GET body matches BODY_MATCH': () => !BODY_MATCH || body.indexOf(BODY_MATCH) >= 0,
    'GET has Server-Timing gw;dur': () => !lib.REQUIRE_SERVER_TIMING || lib.parseServerTiming(lib.header(get, 'Server-Timing')).gw !== undefined,
  });
  if (demo) {
    check(get, {
      'upstream saw X-Forwarded-For': () => /^x-forwarded-for: /im.test(body),
      'upstream saw X-Request-Id': () => /^x-request-id: \S+/im.test(body),
    });
  }

  const post = http.post(lib.TARGET_URL, POST_BODY, {
    timeout: lib.TIMEOUT,
    headers: { 'Content-Type': 'text/plain' },
    tags: { kind: 'post' },
  });
  lib.recordTiming(post);
  const pbody = typeof post.body === 'string' ? post.body : '';
  check(post, { 'POST status 200': (r) => r.status === 200 });
  if (pbody.indexOf(DEMO_LINE) >= 0) {
    check(post, {
      'upstream got the whole POST body': () => pbody.indexOf(`body: ${POST_BODY.length} bytes`) >= 0 && pbody.endsWith(POST_BODY),
    });
  }
}

export function handleSummary(data) {
  return lib.summary(data, {
    title: 'smoke',
    params: { TARGET_URL: lib.TARGET_URL, ITERATIONS, VUS, P99_MS },
  });
}
