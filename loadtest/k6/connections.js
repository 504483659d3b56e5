// k6 scenario (issue 8): keep-alive vs a new connection per request, at the same open-loop rate.
//
//   target/release/ringgate run -c loadtest/k6/gateway.toml
//   k6 run loadtest/k6/connections.js
//
// Environment: TARGET_URL (default http://127.0.0.1:8080/), RATE (req/s, 500), DURATION (per
// scenario, "10s"), GAP ("2s"), VUS (pre-allocated, 20), MAX_VUS (200), P99_MS (25 keep-alive,
// CLOSE_P99_MS 50 new connections), MAX_ERROR_RATE (0.001), GW_P99_MS (5), REQUIRE_SERVER_TIMING
// (1), TIMEOUT ("10s"), SUMMARY_JSON.
//
// k6's `noConnectionReuse` is global, not per scenario, so the two run one after the other:
//   close      GETs with `Connection: close`: the client and ringgate both close after the
//              answer, so every request pays a TCP connect (and ringgate an accept);
//   keepalive  plain GETs: each VU keeps its connection (at most one connect per VU).
// `close` runs first so that none of its requests can pick up a connection left idle by the
// other (a request carrying Connection: close may still take an idle pooled connection).
// A request counts as a new connection when k6 measured a connect for it
// (`http_req_connecting` > 0). ringgate closes first, so the TIME_WAIT sockets (one per request,
// 60 s each) sit on its side, not on the client's ephemeral ports.
//
// Thresholds: keepalive opened at most MAX_VUS connections; close opened one per request (>= 99 %;
// a clock tick may make a loopback connect read as 0); every answer a 200; failed requests below
// MAX_ERROR_RATE in each scenario; the p99 of request_total (connect included: http_req_duration
// starts once the connection is there) below P99_MS (keepalive) / CLOSE_P99_MS (close);
// gateway_added p99 below GW_P99_MS.
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';
import * as lib from './lib.js';

const RATE = lib.envNum('RATE', 500, { min: 1, int: true });
const DURATION = lib.envDuration('DURATION', '10s');
const GAP = lib.envDuration('GAP', '2s');
const VUS = lib.envNum('VUS', 20, { min: 1, int: true });
const MAX_VUS = Math.max(VUS, lib.envNum('MAX_VUS', 200, { min: 1, int: true }));
const P99_MS = lib.envNum('P99_MS', 25, { min: 0 });
const CLOSE_P99_MS = lib.envNum('CLOSE_P99_MS', 50, { min: 0 });
const MAX_ERROR_RATE = lib.envNum('MAX_ERROR_RATE', 0.001, { min: 0, max: 1 });

const connectionsOpened = new Counter('connections_opened');
const newConnection = new Rate('new_connection');
// http_req_duration starts once the connection is there: request_total adds the wait for a
// connection, the connect and a TLS handshake, i.e. what a client pays per request.
const requestTotal = new Trend('request_total', true);

const base = {
  executor: 'constant-arrival-rate',
  rate: RATE,
  timeUnit: '1s',
  duration: DURATION.text,
  gracefulStop: GAP.text,
  preAllocatedVUs: VUS,
  maxVUs: MAX_VUS,
};

export const options = {
  discardResponseBodies: true,
  scenarios: {
    // `close` first: no idle keep-alive connection exists yet for its requests to pick up.
    close: { ...base, startTime: '0s', tags: { conn: 'close' } },
    keepalive: { ...base, startTime: lib.dur(DURATION.s + GAP.s), tags: { conn: 'keepalive' } },
  },
  summaryTrendStats: lib.TREND_STATS,
  thresholds: lib.track(
    {
      ...lib.timingThresholds(5),
      checks: ['rate==1'],
      'connections_opened{scenario:keepalive}': [`count<=${MAX_VUS}`],
      'new_connection{scenario:close}': ['rate>=0.99'],
      'new_connection{scenario:keepalive}': [],
      'connections_opened{scenario:close}': [],
      'http_req_failed{scenario:keepalive}': [`rate<${MAX_ERROR_RATE}`],
      'http_req_failed{scenario:close}': [`rate<${MAX_ERROR_RATE}`],
      'request_total{scenario:keepalive}': [`p(99)<${P99_MS}`],
      'request_total{scenario:close}': [`p(99)<${CLOSE_P99_MS}`],
    },
    'scenario',
    ['keepalive', 'close'],
  ),
};

export default function () {
  const close = exec.scenario.name === 'close';
  const params = { timeout: lib.TIMEOUT };
  if (close) params.headers = { Connection: 'close' };
  const res = http.get(lib.TARGET_URL, params);
  lib.recordTiming(res);
  const opened = res.timings.connecting > 0;
  newConnection.add(opened);
  const t = res.timings;
  requestTotal.add(t.blocked + t.connecting + t.tls_handshaking + t.duration);
  if (opened) connectionsOpened.add(1);
  // (Whether ringgate answered `Connection: close` cannot be checked here: k6's Go HTTP client
  // consumes that field and does not report it. new_connection shows the effect.)
  check(res, { 'status 200': (r) => r.status === 200 });
}

export function handleSummary(data) {
  const rows = ['keepalive', 'close'].map((s) => ({
    label: s,
    tag: `scenario:${s}`,
    offered: RATE,
    seconds: DURATION.s,
    extra: {
      connections_opened: ((data.metrics[`connections_opened{scenario:${s}}`] || {}).values || {}).count || 0,
      connect_p50_ms: ((data.metrics[`http_req_connecting{scenario:${s}}`] || {}).values || {}).med,
      total_p50_ms: ((data.metrics[`request_total{scenario:${s}}`] || {}).values || {}).med,
      total_p99_ms: ((data.metrics[`request_total{scenario:${s}}`] || {}).values || {})['p(99)'],
    },
  }));
  const parsed = lib.scenarioRows(data, rows);
  const [ka, cl] = parsed;
  const fmt = (v) => (v === undefined ? '-' : v.toFixed(3));
  const diff = (a, b) => (a === undefined || b === undefined ? '-' : `${b >= a ? '+' : ''}${(b - a).toFixed(3)}`);
  const notes = [
    `connections opened: keepalive ${ka.connections_opened} for ${ka.requests} requests, close ${cl.connections_opened} for ${cl.requests}.`,
    `request_total (connect included) p50 / p99: keepalive ${fmt(ka.total_p50_ms)} / ${fmt(ka.total_p99_ms)} ms, ` +
      `close ${fmt(cl.total_p50_ms)} / ${fmt(cl.total_p99_ms)} ms.`,
    `cost of a new connection per request (close - keepalive, request_total): p50 ${diff(ka.total_p50_ms, cl.total_p50_ms)} ms, ` +
      `p99 ${diff(ka.total_p99_ms, cl.total_p99_ms)} ms (http_req_duration alone: p50 ${diff(ka.p50_ms, cl.p50_ms)} ms).`,
  ];
  return lib.summary(data, {
    title: 'keep-alive vs a new connection per request',
    params: { TARGET_URL: lib.TARGET_URL, RATE, DURATION: DURATION.text, VUS, MAX_VUS, P99_MS, CLOSE_P99_MS },
    rows,
    notes,
  });
}
