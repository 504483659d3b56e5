// k6 scenario (issue 8): small vs large bodies (default 1 KiB, 64 KiB, 1 MiB), up (POST) and down
// (GET of a file of that size), one open-loop scenario per direction and size, one after the other.
//
//   target/release/ringgate run -c loadtest/k6/gateway.toml
//   k6 run loadtest/k6/bodies.js                                  # up only (see "Downloads")
//   k6 run -e DOWN_URL='http://127.0.0.1:8080/files/{bytes}.bin' loadtest/k6/bodies.js
//
// Environment: TARGET_URL (default http://127.0.0.1:8080/), UP_URL (default TARGET_URL + "upload"),
// DOWN_URL (a URL template, `{bytes}` replaced by the size in bytes; no default), SIZES ("1KiB,64KiB,
// 1MiB"; also plain bytes, KiB, MiB), DIRECTIONS ("up,down"), RATE (req/s per scenario, 50),
// DURATION (per scenario, "10s"), GAP ("2s"), VUS (pre-allocated, 10), MAX_VUS (100), P99_MS (100),
// MAX_ERROR_RATE (0.001), GW_P99_MS (5), REQUIRE_SERVER_TIMING (1), TIMEOUT ("30s"), SUMMARY_JSON.
//
// Uploads: POST of SIZE bytes with Content-Length. The built-in demo upstream echoes a description
// ("body: N bytes") followed by the body itself, so against it an upload also downloads SIZE bytes
// back; the check reads the description and requires the whole body to have arrived upstream (other
// upstreams: only the status is checked).
//
// Downloads: the demo upstream cannot serve a download of a given size (it only echoes), so `down`
// needs an upstream that can: loadtest/k6/bodies-nginx.conf is nginx serving files on
// 127.0.0.1:8081, which gateway.toml routes under /files/ (README.md has the commands). Without
// DOWN_URL the down scenarios are skipped and the summary says so. Each download is read whole
// (responseType binary) and its length checked against SIZE.
//
// Thresholds, per scenario: every check passes (status 200, sizes), failed requests below
// MAX_ERROR_RATE, p99 below P99_MS (the whole exchange, body included); gateway_added p99 below
// GW_P99_MS over all (body streaming beyond the first buffer is not gateway-added time).
import http from 'k6/http';
import { check } from 'k6';
import * as lib from './lib.js';

const SIZES = lib.envList('SIZES', ['1KiB', '64KiB', '1MiB']).map(lib.parseSize);
const DIRECTIONS = lib.envList('DIRECTIONS', ['up', 'down']);
for (const d of DIRECTIONS) {
  if (d !== 'up' && d !== 'down') throw new Error(`DIRECTIONS: "${d}" is neither up nor down`);
}
const UP_URL = lib.envStr('UP_URL', lib.url('upload'));
const DOWN_URL = lib.envStr('DOWN_URL', '');
const RATE = lib.envNum('RATE', 50, { min: 1, int: true });
const DURATION = lib.envDuration('DURATION', '10s');
const GAP = lib.envDuration('GAP', '2s');
const VUS = lib.envNum('VUS', 10, { min: 1, int: true });
const MAX_VUS = Math.max(VUS, lib.envNum('MAX_VUS', 100, { min: 1, int: true }));
const P99_MS = lib.envNum('P99_MS', 100, { min: 0 });
const MAX_ERROR_RATE = lib.envNum('MAX_ERROR_RATE', 0.001, { min: 0, max: 1 });
const TIMEOUT = lib.envStr('TIMEOUT', '30s');

const label = (n) => (n % (1 << 20) === 0 ? `${n >> 20}MiB` : n % 1024 === 0 ? `${n >> 10}KiB` : `${n}B`);
const skippedDown = DIRECTIONS.includes('down') && !DOWN_URL;
const runs = [];
for (const dir of DIRECTIONS) {
  if (dir === 'down' && !DOWN_URL) continue;
  for (const bytes of SIZES) runs.push({ dir, bytes, name: `${dir}_${label(bytes)}` });
}
if (runs.length === 0) throw new Error('nothing to run: DIRECTIONS=down needs DOWN_URL (see the comment at the top)');

const scenarios = {};
const thresholds = { ...lib.timingThresholds(5), checks: ['rate==1'] };
runs.forEach((r, i) => {
  scenarios[r.name] = {
    executor: 'constant-arrival-rate',
    rate: RATE,
    timeUnit: '1s',
    duration: DURATION.text,
    startTime: lib.dur(i * (DURATION.s + GAP.s)),
    gracefulStop: GAP.text,
    preAllocatedVUs: VUS,
    maxVUs: MAX_VUS,
    tags: { dir: r.dir, size: label(r.bytes) },
    env: { RUN_DIR: r.dir, RUN_BYTES: String(r.bytes) },
  };
  const sel = `{scenario:${r.name}}`;
  thresholds[`http_req_failed${sel}`] = [`rate<${MAX_ERROR_RATE}`];
  thresholds[`http_req_duration${sel}`] = [`p(99)<${P99_MS}`];
});
lib.track(thresholds, 'scenario', runs.map((r) => r.name));

export const options = {
  scenarios,
  summaryTrendStats: lib.TREND_STATS,
  thresholds,
};

// Upload payloads, one per size, made once per VU at init.
const payloads = {};
if (DIRECTIONS.includes('up')) {
  for (const b of SIZES) payloads[b] = 'k6-ringgate-body-'.repeat(Math.ceil(b / 17)).slice(0, b);
}

export function setup() {
  if (skippedDown) console.warn('bodies: DOWN_URL is not set: the down scenarios are skipped (see loadtest/k6/README.md)');
}

function up(bytes) {
  const res = http.post(UP_URL, payloads[bytes], {
    timeout: TIMEOUT,
    headers: { 'Content-Type': 'application/octet-stream' },
    responseType: 'text',
  });
  lib.recordTiming(res);
  check(res, { 'up: status 200': (r) => r.status === 200 });
  const body = typeof res.body === 'string' ? res.body : '';
  if (body.startsWith('ringgate demo upstream')) {
    check(res, {
      'up: upstream received the whole body': () => body.indexOf(`\nbody: ${bytes} bytes\n`) >= 0,
    });
  }
}

function down(bytes) {
  const res = http.get(DOWN_URL.replace(/\{bytes\}/g, String(bytes)), { timeout: TIMEOUT, responseType: 'binary' });
  lib.recordTiming(res);
  check(res, {
    'down: status 200': (r) => r.status === 200,
    'down: received SIZE bytes': (r) => r.body !== null && r.body !== undefined && r.body.byteLength === bytes,
  });
}

export default function () {
  const bytes = Number(__ENV.RUN_BYTES); // the scenario's own env
  if (__ENV.RUN_DIR === 'up') up(bytes);
  else down(bytes);
}

export function handleSummary(data) {
  const rows = runs.map((r) => ({
    label: r.name,
    tag: `scenario:${r.name}`,
    offered: RATE,
    seconds: DURATION.s,
  }));
  const parsed = lib.scenarioRows(data, rows);
  const mib = (b) => (b / (1 << 20)).toFixed(b < 10 * (1 << 20) ? 2 : 1);
  const notes = [
    'payload throughput: ' +
      parsed.map((p, i) => `${p.label} ${mib(p.achieved_rps * runs[i].bytes)} MiB/s`).join(', ') +
      (runs.some((r) => r.dir === 'up') && UP_URL === lib.url('upload') ? ' (demo upstream: uploads are echoed, so as much again comes back)' : ''),
  ];
  if (skippedDown) notes.push('down: SKIPPED: DOWN_URL is not set (the demo upstream cannot serve sized downloads; see loadtest/k6/README.md).');
  return lib.summary(data, {
    title: 'bodies up and down',
    params: { TARGET_URL: lib.TARGET_URL, UP_URL, DOWN_URL: DOWN_URL || '(unset)', SIZES: SIZES.map(label).join(','), RATE, DURATION: DURATION.text, P99_MS },
    rows,
    notes,
    extra: { down_skipped: skippedDown },
  });
}
