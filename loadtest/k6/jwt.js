// k6 scenario (issue 8): a JWT route offered valid, expired and missing tokens (and, when SECRET is
// set, forged ones: right claims, wrong key), each as its own open-loop scenario at the same time.
//
//   export K6_JWT_SECRET=$(openssl rand -hex 32)
//   target/release/ringgate run -c loadtest/k6/jwt.toml
//   k6 run -e SECRET="$K6_JWT_SECRET" loadtest/k6/jwt.js
//
// Tokens: with SECRET, jwt.js signs HS256 tokens itself (k6/crypto HMAC, below) in setup(): `valid`
// (iss ISSUER, sub "k6", scope SCOPE, exp now + TOKEN_TTL), `expired` (exp an hour ago: beyond any
// leeway), `forged` (the valid claims signed with another secret). TOKEN_VALID and TOKEN_EXPIRED
// (compact JWTs, e.g. RS256 ones made with openssl or an IdP) take precedence over the signed ones;
// without SECRET, a case with no token from the environment is skipped (valid is required).
//
// Environment: TARGET_URL (default http://127.0.0.1:8080/), SECRET, TOKEN_VALID, TOKEN_EXPIRED,
// ISSUER ("ringgate-k6"), SCOPE ("k6:read"), TOKEN_TTL (s, 3600), RATE (req/s per case, 100),
// DURATION ("10s"), VUS (pre-allocated per case, 10), MAX_VUS (100), P99_MS (25), MAX_ERROR_RATE
// (0.001), GW_P99_MS (5), REALM ("ringgate"), REQUIRE_SERVER_TIMING (1), TIMEOUT ("10s"),
// SUMMARY_JSON.
//
// Expected answers (docs/auth.md): valid -> 200 (with Server-Timing); missing -> 401 with
// `WWW-Authenticate: Bearer realm="ringgate"` and no error code (RFC 6750 §3.1); expired -> 401 with
// `error="invalid_token"` and `error_description="token expired"`; forged -> 401 with
// `error="invalid_token"` and `error_description="invalid signature"`.
//
// Thresholds: every check passes in every case; no status other than 200 and 401
// (http_req_failed); p99 below P99_MS per case (a refusal must be no slower than an admission);
// gateway_added p99 below GW_P99_MS (on the 200s: refusals are answered by the gateway itself and
// carry no Server-Timing).
import http from 'k6/http';
import { check } from 'k6';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import * as lib from './lib.js';

const SECRET = lib.envStr('SECRET', '');
const TOKEN_VALID = lib.envStr('TOKEN_VALID', '');
const TOKEN_EXPIRED = lib.envStr('TOKEN_EXPIRED', '');
const ISSUER = lib.envStr('ISSUER', 'ringgate-k6');
const SCOPE = lib.envStr('SCOPE', 'k6:read');
const TOKEN_TTL = lib.envNum('TOKEN_TTL', 3600, { min: 60, int: true });
const RATE = lib.envNum('RATE', 100, { min: 1, int: true });
const DURATION = lib.envDuration('DURATION', '10s');
const VUS = lib.envNum('VUS', 10, { min: 1, int: true });
const MAX_VUS = Math.max(VUS, lib.envNum('MAX_VUS', 100, { min: 1, int: true }));
const P99_MS = lib.envNum('P99_MS', 25, { min: 0 });
const MAX_ERROR_RATE = lib.envNum('MAX_ERROR_RATE', 0.001, { min: 0, max: 1 });
const REALM = lib.envStr('REALM', 'ringgate');

if (!SECRET && !TOKEN_VALID) {
  throw new Error('set SECRET (the HS256 secret ringgate reads, K6_JWT_SECRET in jwt.toml) or TOKEN_VALID');
}

// ---- HS256 signing (RFC 7515 compact serialization, RFC 7519 claims) ----
const b64url = (s) => encoding.b64encode(s, 'rawurl');

export function signHS256(claims, secret) {
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${crypto.hmac('sha256', secret, input, 'base64rawurl')}`;
}

function claims(now, exp) {
  return { iss: ISSUER, sub: 'k6', scope: SCOPE, iat: now, exp };
}

const CASES = ['valid', 'expired', 'missing', 'forged'].filter((c) => {
  if (c === 'expired') return !!(TOKEN_EXPIRED || SECRET);
  if (c === 'forged') return !!SECRET;
  return true;
});

const scenarios = {};
const thresholds = { ...lib.timingThresholds(5), checks: ['rate==1'], http_req_failed: [`rate<${MAX_ERROR_RATE}`] };
for (const c of CASES) {
  scenarios[c] = {
    executor: 'constant-arrival-rate',
    rate: RATE,
    timeUnit: '1s',
    duration: DURATION.text,
    preAllocatedVUs: VUS,
    maxVUs: MAX_VUS,
    tags: { case: c },
  };
  thresholds[`checks{scenario:${c}}`] = ['rate==1'];
  thresholds[`http_req_duration{scenario:${c}}`] = [`p(99)<${P99_MS}`];
}
lib.track(thresholds, 'scenario', CASES);

export const options = {
  discardResponseBodies: true,
  scenarios,
  summaryTrendStats: lib.TREND_STATS,
  thresholds,
};

// 401 is an expected answer: http_req_failed counts what is neither 200 nor 401.
http.setResponseCallback(http.expectedStatuses(200, 401));

export function setup() {
  const now = Math.floor(Date.now() / 1000);
  const t = {
    valid: TOKEN_VALID || signHS256(claims(now, now + TOKEN_TTL), SECRET),
    expired: TOKEN_EXPIRED || (SECRET ? signHS256(claims(now - 7200, now - 3600), SECRET) : ''),
    forged: SECRET ? signHS256(claims(now, now + TOKEN_TTL), `${SECRET}-not-the-key`) : '',
  };
  return t;
}

const challenge = (r) => lib.header(r, 'WWW-Authenticate') || '';
const bearer = (r) => challenge(r).startsWith(`Bearer realm="${REALM}"`);

export default function (tokens) {
  const c = exec.scenario.name;
  const params = { timeout: lib.TIMEOUT };
  if (c !== 'missing') params.headers = { Authorization: `Bearer ${tokens[c]}` };
  const res = http.get(lib.TARGET_URL, params);
  lib.recordTiming(res);
  if (c === 'valid') {
    check(res, { 'valid: 200': (r) => r.status === 200 });
  } else if (c === 'missing') {
    check(res, {
      'missing: 401': (r) => r.status === 401,
      'missing: Bearer challenge without error code': (r) => bearer(r) && challenge(r).indexOf('error=') < 0,
    });
  } else {
    const why = c === 'expired' ? 'token expired' : 'invalid signature';
    check(res, {
      [`${c}: 401`]: (r) => r.status === 401,
      [`${c}: Bearer challenge with error="invalid_token"`]: (r) => bearer(r) && challenge(r).indexOf('error="invalid_token"') >= 0,
      [`${c}: error_description="${why}"`]: (r) => challenge(r).indexOf(`error_description="${why}"`) >= 0,
    });
  }
}

export function handleSummary(data) {
  const rows = CASES.map((c) => ({ label: c, tag: `scenario:${c}`, offered: RATE, seconds: DURATION.s }));
  const notes = [];
  const skipped = ['expired', 'forged'].filter((c) => !CASES.includes(c));
  if (skipped.length) notes.push(`skipped (no SECRET${skipped.includes('expired') ? ' and no TOKEN_EXPIRED' : ''}): ${skipped.join(', ')}`);
  return lib.summary(data, {
    title: 'JWT route: valid, expired, missing, forged tokens',
    params: {
      TARGET_URL: lib.TARGET_URL,
      tokens: SECRET ? 'HS256 signed here' + (TOKEN_VALID || TOKEN_EXPIRED ? ' + from env' : '') : 'from env',
      ISSUER,
      SCOPE,
      RATE,
      DURATION: DURATION.text,
      P99_MS,
    },
    rows,
    notes,
  });
}
