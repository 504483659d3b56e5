"""Unit tests for the parts of ringbench that need no servers: python3 -m unittest discover loadtest/tests"""
import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import unittest
from pathlib import Path
from unittest import mock

LOADTEST = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(LOADTEST))

from ringbench import configs, loadgen, memory, procfs, procs, report, scrape, stats, suite  # noqa: E402

WRK_OUT = """Running 10s test @ http://127.0.0.1:8080/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.10ms  350.00us  12.50ms   90.00%
    Req/Sec    58.18k     1.20k   60.00k    70.00%
  Latency Distribution
     50%    1.05ms
     75%    1.20ms
     90%    1.40ms
     99%    2.10ms
  581770 requests in 10.00s, 70.12MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:  58177.00
Transfer/sec:      7.01MB
"""

OHA_JSON = {
    "summary": {"successRate": 1.0, "total": 10.0, "slowest": 0.004, "fastest": 0.00005,
                "average": 0.00013, "requestsPerSec": 2000.1},
    "latencyPercentiles": {"p10": 0.0001, "p50": 0.000121, "p99": 0.000262, "p99.9": 0.001},
    "statusCodeDistribution": {"200": 19990},
    "errorDistribution": {"aborted due to deadline": 12},
}


class WrkParse(unittest.TestCase):
    def test_parse(self):
        r = loadgen.parse_wrk(WRK_OUT)
        self.assertEqual(r["requests"], 581770)
        self.assertAlmostEqual(r["rps"], 58177.0)
        self.assertAlmostEqual(r["duration_s"], 10.0)
        self.assertAlmostEqual(r["latency_avg_ms"], 1.10)
        self.assertEqual(r["socket_errors"], {"connect": 0, "read": 2, "write": 0, "timeout": 1})
        self.assertEqual(r["non_2xx"], 5)
        self.assertEqual(r["errors"], 8)
        self.assertAlmostEqual(r["latency_percentiles_ms"]["p99"], 2.10)

    def test_garbage(self):
        with self.assertRaises(ValueError):
            loadgen.parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


class OhaParse(unittest.TestCase):
    def test_parse(self):
        r = loadgen.parse_oha_json(OHA_JSON)
        self.assertAlmostEqual(r["p50_ms"], 0.121)
        self.assertAlmostEqual(r["p99_ms"], 0.262)
        self.assertEqual(r["responses"], 19990)
        self.assertAlmostEqual(r["achieved_rps"], 1999.0)
        self.assertEqual(r["real_errors"], 0)  # deadline aborts are not failures

    def test_failures_counted(self):
        obj = dict(OHA_JSON, statusCodeDistribution={"200": 10, "502": 3},
                   errorDistribution={"connection refused": 2})
        self.assertEqual(loadgen.parse_oha_json(obj)["real_errors"], 5)


class OhaCommand(unittest.TestCase):
    def run_oha(self, **kw):
        flags = {"json": ["--output-format", "json"], "worker_threads": True, "latency_correction": True,
                 "no_tui": True}
        with mock.patch.object(loadgen, "oha_flags", return_value=flags), \
                mock.patch.object(loadgen, "run_bounded") as run:
            run.side_effect = lambda cmd, cpu, timeout: subprocess.CompletedProcess(
                cmd, 0, json.dumps(OHA_JSON), "")
            res = loadgen.run_oha("http://127.0.0.1:1/", 2000, 2.0, **kw)
        return run.call_args.args[0], res

    def test_headers(self):
        cmd, res = self.run_oha(headers=["Authorization: Bearer abc.def.ghi", "X-A: b"])
        self.assertEqual(cmd[cmd.index("-H") + 1], "Authorization: Bearer abc.def.ghi")
        self.assertEqual(cmd.count("-H"), 2)
        self.assertEqual(cmd[-1], "http://127.0.0.1:1/")
        self.assertIn("-H Authorization: Bearer … -H X-A: b", res["command"])  # the token is not kept
        self.assertNotIn("-H", self.run_oha()[0])


class Stats(unittest.TestCase):
    def test_summary(self):
        s = stats.summarize([3.0, None, 1.0, 2.0])
        self.assertEqual((s["median"], s["min"], s["max"], s["n"]), (2.0, 1.0, 3.0, 3))
        self.assertIsNone(stats.summarize([None]))
        self.assertEqual(stats.fmt_summary(s, 1), "2.0 (1.0–3.0)")
        self.assertEqual(stats.fmt_summary(stats.summarize([-0.5, 0.25]), 3, signed=True),
                         "−0.125 (−0.500–+0.250)")

    def test_paired(self):
        self.assertEqual(stats.paired_differences([2, None, 5], [1, 1, None]), [1, None, None])
        self.assertEqual(stats.paired_relative([10.3, None, 5, 1], [10.0, 1, None, 0]),
                         [stats.paired_relative([10.3], [10.0])[0], None, None, None])
        self.assertAlmostEqual(stats.paired_relative([10.3], [10.0])[0], 3.0)


class Configs(unittest.TestCase):
    def test_route_table_toml(self):
        import tomllib
        t = tomllib.loads(configs.ringgate_toml(8080, 9000, routes=10_000))
        routes = t["routes"]
        self.assertEqual(len(routes), 10_000)
        self.assertEqual(routes[-1], {"prefix": "/", "upstream": "bench"})
        self.assertEqual(routes[1]["path"], "/svc1/users/{id}/orders/{order}")
        self.assertTrue(configs.ROUTED_PATH.startswith("/svc1/users/"))
        self.assertEqual(len(tomllib.loads(configs.ringgate_toml(1, 2, routes=10))["routes"]), 10)

    def test_ringgate_toml(self):
        import tomllib
        t = tomllib.loads(configs.ringgate_toml(8080, 9000, driver="epoll", bare=True))
        self.assertEqual(t["workers"], 1)
        self.assertEqual(t["driver"], "epoll")
        self.assertEqual(t["listeners"][0]["address"], "127.0.0.1:8080")
        self.assertEqual(t["upstreams"][0]["targets"], ["127.0.0.1:9000"])
        self.assertEqual(t["routes"][0], {"prefix": "/", "upstream": t["upstreams"][0]["name"]})
        self.assertFalse(t["forwarding"]["request_id"])
        self.assertNotIn("forwarding", tomllib.loads(configs.ringgate_toml(1, 2)))

    def test_ringgate_toml_jwt(self):
        import tomllib
        text = configs.ringgate_toml(8080, 9000, jwt_key=Path("/k/jwt.pub.pem"))
        self.assertIn('keys = [{ algorithm = "RS256", pem_file = "/k/jwt.pub.pem" }]', text)
        self.assertIn('auth = "bench"', text)
        t = tomllib.loads(text)
        self.assertEqual(t["auth"], [{"name": "bench", "issuers": ["ringbench"],
                                      "keys": [{"algorithm": "RS256", "pem_file": "/k/jwt.pub.pem"}]}])
        self.assertEqual(t["routes"], [{"prefix": "/", "upstream": "bench", "auth": "bench",
                                        "scopes": ["bench:read"]}])
        self.assertNotIn("auth", tomllib.loads(configs.ringgate_toml(8080, 9000)))

    def test_ringgate_toml_ratelimit(self):
        import tomllib
        t = tomllib.loads(configs.ringgate_toml(8080, 9000, driver="uring", rate_limit=True))
        self.assertEqual(t["rate_limits"], [{"name": "bench", "key": "client_ip", "rate": "1000000/s",
                                             "burst": 1_000_000}])
        self.assertEqual(t["routes"], [{"prefix": "/", "upstream": "bench", "rate_limits": ["bench"]}])
        self.assertEqual((t["workers"], t["driver"]), (1, "uring"))
        both = tomllib.loads(configs.ringgate_toml(8080, 9000, jwt_key=Path("/k.pem"), rate_limit=True))
        self.assertEqual(both["routes"][0]["rate_limits"], ["bench"])
        self.assertEqual(both["routes"][0]["auth"], "bench")
        self.assertNotIn("rate_limits", tomllib.loads(configs.ringgate_toml(8080, 9000)))
        with self.assertRaises(ValueError):
            configs.ringgate_toml(8080, 9000, routes=10, rate_limit=True)

    def test_nginx(self):
        up = configs.nginx_upstream(Path("/tmp/p"), 9000)
        self.assertIn('return 200 "ok";', up)
        self.assertIn("listen 127.0.0.1:9000", up)
        self.assertIn("pid /tmp/p/nginx.pid;", up)
        px = configs.nginx_proxy(Path("/tmp/q"), 8080, 9000)
        for needle in ("proxy_http_version 1.1;", 'proxy_set_header Connection "";', "keepalive 64;",
                       "server 127.0.0.1:9000;"):
            self.assertIn(needle, px)

    def test_haproxy(self):
        h = configs.haproxy(8080, 9000, Path("/tmp/h.pid"))
        self.assertIn("nbthread 1", h)
        self.assertIn("http-reuse always", h)
        self.assertIn("bind 127.0.0.1:8080", h)


def _b64url(part: str) -> bytes:
    """Decode base64url without padding."""
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class Jwt(unittest.TestCase):
    def test_shape(self):
        claims = {"sub": "bench-user", "iss": "ringbench", "scope": "bench:read", "exp": 2_000_000_000}
        signed = []
        token = configs.jwt_rs256(claims, lambda data: signed.append(data) or b"\xff\xfe-signature")
        parts = token.split(".")
        self.assertEqual(len(parts), 3)
        self.assertTrue(all(p and "=" not in p for p in parts))  # base64url without padding
        self.assertEqual(json.loads(_b64url(parts[0])), {"alg": "RS256", "typ": "JWT"})
        self.assertEqual(json.loads(_b64url(parts[1])), claims)
        self.assertEqual(signed, [f"{parts[0]}.{parts[1]}".encode()])
        self.assertEqual(_b64url(parts[2]), b"\xff\xfe-signature")

    @unittest.skipUnless(shutil.which("openssl"), "openssl not installed")
    def test_openssl_verifies(self):
        with tempfile.TemporaryDirectory() as d:
            pub, token = configs.make_jwt(Path(d) / "jwt")
            self.assertTrue(pub.is_absolute())
            self.assertIn(b"BEGIN PUBLIC KEY", pub.read_bytes())
            head, claims, sig = token.split(".")
            c = json.loads(_b64url(claims))
            self.assertEqual((c["iss"], c["scope"], c["sub"]), ("ringbench", "bench:read", "bench-user"))
            sig_path = Path(d) / "sig"
            sig_path.write_bytes(_b64url(sig))
            verify = ["openssl", "dgst", "-sha256", "-verify", str(pub), "-signature", str(sig_path)]
            ok = subprocess.run(verify, input=f"{head}.{claims}".encode(), capture_output=True)
            self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)
            bad = subprocess.run(verify, input=f"{head}.{claims}x".encode(), capture_output=True)
            self.assertNotEqual(bad.returncode, 0)


class HealthCheck(unittest.TestCase):
    def test_sends_headers(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        port = srv.getsockname()[1]

        def serve():
            for _ in range(2):
                c, _ = srv.accept()
                req = b""
                while b"\r\n\r\n" not in req:
                    req += c.recv(4096)
                ok = b"\r\nAuthorization: Bearer t.o.k\r\n" in req
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" if ok else
                          b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
                c.close()

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        self.assertEqual(procs.http_get("127.0.0.1", port)[0], 401)
        procs.wait_http_ok("127.0.0.1", port, 5.0, expect_body=b"ok", headers=["Authorization: Bearer t.o.k"])
        th.join(5)
        srv.close()


def _scenario_suite(target: str, cpu: list, p99: list, extra=None) -> suite.Suite:
    """A Suite over direct, the target's baseline (ringgate-uring, or ringgate-nometrics for
    ringgate-observed) and `target` at 2000/s with one round per (cpu, p99) of `target`: the
    baseline's proxy CPU is 10 µs/req at saturation and 12 at 2000/s, p99 0.3 ms; `extra(i)` adds
    fields to target's runs in round i (e.g. status codes)."""
    base = suite.OBSERVED_BASELINE if target == suite.OBSERVED_TARGET else "ringgate-uring"
    s = suite.Suite(suite.Options(repo=Path("."), work_dir=Path("/nonexistent"),
                                  targets=["direct", base, target], rates=[2000]), log=lambda _: None)

    def run(cpu_us, p99_ms, more=None):
        return {"rps": 1.0, "proxy_cpu_us_per_req": cpu_us, "p99_ms": p99_ms, "achieved_rps": 2000.0, **(more or {})}

    def rnd(i, cpu_t, p99_t):
        more = extra(i) if extra else {}
        return {"round": i, "saturation": {"direct": run(None, 0.2), base: run(10.0, 0.3),
                                           target: run(cpu_t, 0.3, more.get("saturation"))},
                "latency": {"2000": {"direct": run(None, 0.2), base: run(12.0, 0.30),
                                     target: run(cpu_t + 2.0, p99_t, more.get("latency"))}}}
    s.result["rounds"] = [rnd(i + 1, c, q) for i, (c, q) in enumerate(zip(cpu, p99))]
    return s


class Scenarios(unittest.TestCase):
    def test_default_targets(self):
        self.assertEqual(suite.default_targets(jwt=True), ["direct", "ringgate-uring", "ringgate-jwt"])
        self.assertEqual(suite.default_targets(ratelimit=True),
                         ["direct", "ringgate-uring", "ringgate-ratelimit"])
        self.assertEqual(suite.default_targets(jwt=True, ratelimit=True),
                         ["direct", "ringgate-uring", "ringgate-jwt", "ringgate-ratelimit"])
        self.assertEqual(suite.default_targets(observability=True),
                         ["direct", "ringgate-nometrics", "ringgate-uring", "ringgate-observed"])
        self.assertEqual(suite.default_targets(jwt=True, observability=True),
                         ["direct", "ringgate-uring", "ringgate-jwt", "ringgate-nometrics", "ringgate-observed"])
        self.assertEqual(suite.default_targets(tls=True), ["direct", "ringgate-tls", "nginx-tls"])
        self.assertEqual(suite.default_targets(), suite.DEFAULT_TARGETS)
        for t in ("ringgate-jwt", "ringgate-ratelimit", "ringgate-observed"):
            self.assertIn(t, suite.ALL_TARGETS)

    def test_cli_flag(self):
        import bench
        self.assertTrue(bench.parse_args(["--ratelimit"]).ratelimit)
        self.assertFalse(bench.parse_args([]).ratelimit)
        self.assertTrue(bench.parse_args(["--observability"]).observability)
        self.assertFalse(bench.parse_args([]).observability)

    def assert_comparison(self, comp):
        """The figures _scenario_suite(target, [10.5, 10.25, 10.75], [0.32, 0.29, 0.31]) gives."""
        self.assertAlmostEqual(comp["saturation"]["proxy_cpu_us_per_req"]["median"], 0.5)
        self.assertAlmostEqual(comp["latency"]["2000"]["proxy_cpu_us_per_req"]["median"], 0.5)
        self.assertAlmostEqual(comp["latency"]["2000"]["p99_ms"]["median"], 0.01)
        self.assertAlmostEqual(comp["latency"]["2000"]["p99_ms"]["min"], -0.01)

    def test_jwt_summary(self):
        summ = _scenario_suite("ringgate-jwt", [10.5, 10.25, 10.75], [0.32, 0.29, 0.31]).summarize()
        self.assert_comparison(summ["jwt"])
        self.assertNotIn("ratelimit", summ)

    def test_ratelimit_summary(self):
        s = _scenario_suite("ringgate-ratelimit", [10.5, 10.25, 10.75], [0.32, 0.29, 0.31],
                            lambda i: {"saturation": {"non_2xx": 0}, "latency": {"status_codes": {"200": 20000}}})
        summ = s.summarize()
        self.assert_comparison(summ["ratelimit"])
        self.assertEqual(summ["ratelimit"]["non_2xx"], 0)
        self.assertNotIn("jwt", summ)
        self.assertEqual(s.warnings, [])

    def test_observability_summary(self):
        def extra(i):
            run = {"scrapes": 10, "scrape_errors": 0, "access_log_dropped": 0, "access_log_bytes_per_req": 300.0 + i}
            wb = {"count": 20000, "gateway_added_p50_ms": 0.02 + i / 1000, "gateway_added_p99_ms": 0.06,
                  "total_p50_ms": 0.1, "total_p99_ms": 0.2}
            return {"saturation": run, "latency": dict(run, whitebox=wb)}
        s = _scenario_suite("ringgate-observed", [10.5, 10.25, 10.75], [0.32, 0.29, 0.31], extra)
        summ = s.summarize()
        obs = summ["observability"]
        self.assert_comparison(obs)
        # relative CPU, paired per round: 10.5, 10.25, 10.75 vs 10 at saturation; +2 µs each vs 12 at 2000/s
        rel = obs["saturation"][suite.CPU_REL]
        self.assertEqual((rel["median"], rel["min"], rel["max"]), (5.0, 2.5, 7.5))
        self.assertAlmostEqual(obs["latency"]["2000"][suite.CPU_REL]["median"], 12.5 / 12 * 100 - 100)
        self.assertEqual((obs["scrapes"], obs["scrape_errors"], obs["access_log_dropped"]), (60, 0, 0))
        self.assertEqual(obs["access_log_bytes_per_req"]["median"], 302.0)
        self.assertEqual(s.warnings, [])
        self.assertNotIn("jwt", summ)
        self.assertNotIn("ratelimit", summ)
        wb = summ["whitebox"]["2000"]
        self.assertEqual(set(wb), {"ringgate-observed"})
        self.assertAlmostEqual(wb["ringgate-observed"]["gateway_added_p50_ms"]["median"], 0.022)
        self.assertEqual(wb["ringgate-observed"]["count"]["n"], 3)
        self.assertIsNone(summ["added"]["2000"]["ringgate-observed"]["p50_ms"])  # no p50 in these runs

    def test_observability_scrape_failures_and_drops_warn(self):
        s = _scenario_suite("ringgate-observed", [10.5], [0.3],
                            lambda i: {"saturation": {"scrapes": 8, "scrape_errors": 2,
                                                      "scrape_last_error": "timed out", "access_log_dropped": 1500}})
        obs = s.summarize()["observability"]
        self.assertEqual((obs["scrapes"], obs["scrape_errors"], obs["access_log_dropped"]), (8, 2, 1500))
        self.assertEqual(s.warnings, [
            "ringgate-observed: 2 of 10 /metrics scrapes failed (last: timed out)",
            "ringgate-observed: 1,500 access-log lines dropped (the writer fell behind): its figures leave out "
            "writing them"])

    def test_ratelimit_refusals_warn(self):
        s = _scenario_suite("ringgate-ratelimit", [10.5, 10.5], [0.3, 0.3],
                            lambda i: {"saturation": {"non_2xx": i},
                                       "latency": {"status_codes": {"200": 19990, "429": 10 * i, "503": 1}}})
        self.assertEqual(suite.non_2xx(s.result["rounds"], "ringgate-ratelimit"), 1 + 2 + 10 + 20 + 2)
        self.assertEqual(suite.non_2xx(s.result["rounds"], "ringgate-uring"), 0)
        self.assertEqual(s.summarize()["ratelimit"]["non_2xx"], 35)
        self.assertEqual(len([w for w in s.warnings if w.startswith("ringgate-ratelimit: 35 non-2xx")]), 1)

    def test_make_ratelimit_target(self):
        import tomllib
        with tempfile.TemporaryDirectory() as d:
            s = suite.Suite(suite.Options(repo=Path("."), work_dir=Path(d), ringgate_bin=Path("/bin/true")),
                            log=lambda _: None)
            s.upstream = mock.Mock()
            limited = s._make("ringgate-ratelimit", 9000)
            plain = s._make("ringgate-uring", 9000)
            self.assertEqual(limited.driver, "uring")
            t = tomllib.loads(limited.conf_path.read_text())
            self.assertEqual(t["routes"][0]["rate_limits"], ["bench"])
            self.assertEqual(t["rate_limits"][0]["rate"], "1000000/s")
            self.assertNotIn("rate_limits", tomllib.loads(plain.conf_path.read_text()))


class Observability(unittest.TestCase):
    def test_ringgate_toml_admin_access_log(self):
        import tomllib
        text = configs.ringgate_toml(8080, 9000, driver="uring", admin_port=9901,
                                     access_log=Path("/w/ringgate-observed/access.log"))
        self.assertIn('[admin]\naddress = "127.0.0.1:9901"\n', text)
        self.assertIn('[access_log]\npath = "/w/ringgate-observed/access.log"\nformat = "json"\n', text)
        t = tomllib.loads(text)
        self.assertEqual(t["admin"], {"address": "127.0.0.1:9901"})
        self.assertEqual(t["access_log"], {"path": "/w/ringgate-observed/access.log", "format": "json"})
        self.assertEqual(t["routes"], [{"prefix": "/", "upstream": "bench"}])  # the same route as ringgate-uring
        self.assertEqual((t["workers"], t["driver"]), (1, "uring"))
        plain = tomllib.loads(configs.ringgate_toml(8080, 9000))
        self.assertNotIn("admin", plain)
        self.assertNotIn("access_log", plain)
        self.assertNotIn("access_log", tomllib.loads(configs.ringgate_toml(8080, 9000, admin_port=9901)))

    def test_make_observed_target(self):
        import tomllib
        with tempfile.TemporaryDirectory() as d:
            s = suite.Suite(suite.Options(repo=Path("."), work_dir=Path(d), ringgate_bin=Path("/bin/true")),
                            log=lambda _: None)
            s.upstream = mock.Mock()
            observed, plain, jwt = (s._make(n, 9000) for n in ("ringgate-observed", "ringgate-uring",
                                                               "ringgate-ratelimit"))
            self.assertEqual(observed.driver, "uring")
            log = Path(d).resolve() / "ringgate-observed" / "access.log"
            self.assertEqual(observed.access_log, log)
            t = tomllib.loads(observed.conf_path.read_text())
            self.assertEqual(t["access_log"], {"path": str(log), "format": "json"})
            self.assertEqual(t["admin"], {"address": f"127.0.0.1:{observed.admin_port}"})
            # ringgate-uring: an admin listener (white-box figures), no access log; other targets neither
            t = tomllib.loads(plain.conf_path.read_text())
            self.assertEqual(t["admin"], {"address": f"127.0.0.1:{plain.admin_port}"})
            self.assertNotEqual(plain.admin_port, observed.admin_port)
            self.assertNotIn("access_log", t)
            self.assertIsNone(plain.access_log)
            self.assertIsNone(jwt.admin_port)
            self.assertNotIn("admin", tomllib.loads(jwt.conf_path.read_text()))


BOUNDS = ["0.00005", "0.0001", "0.00025", "0.0005", "+Inf"]


def _metrics(routes: dict, dropped: int = 0) -> str:
    """GET /metrics as src/metrics/render.rs writes it (first buckets only): routes = {name: (cumulative
    counts of ringgate_request_duration_seconds, of ringgate_gateway_added_seconds)}, one per BOUNDS."""
    label = {r: 'route="{}"'.format(r.replace("\\", "\\\\").replace('"', '\\"')) for r in routes}
    lines = ["# HELP ringgate_requests_total Requests answered.", "# TYPE ringgate_requests_total counter"]
    lines += [f'ringgate_requests_total{{{label[r]},method="GET",status="2xx"}} {c[0][-1]}' for r, c in routes.items()]
    for i, name in enumerate(("ringgate_request_duration_seconds", "ringgate_gateway_added_seconds")):
        lines += [f"# HELP {name} help", f"# TYPE {name} histogram"]
        for route, counts in routes.items():
            lines += [f'{name}_bucket{{{label[route]},le="{le}"}} {n}' for le, n in zip(BOUNDS, counts[i])]
            lines += [f"{name}_sum{{{label[route]}}} 0.0125", f"{name}_count{{{label[route]}}} {counts[i][-1]}"]
    lines += ["# TYPE ringgate_access_log_dropped_total counter", f"ringgate_access_log_dropped_total {dropped}",
              'ringgate_worker_info{worker="0",driver="io_uring"} 1', ""]
    return "\n".join(lines)


ROUTE = 'bench "/"'  # a label value with quotes, escaped in the text
BEFORE = _metrics({ROUTE: ([100, 150, 160, 160, 160], [150, 160, 160, 160, 160]),
                   "(unmatched)": ([5, 5, 5, 5, 5], [5, 5, 5, 5, 5])})
# between the two: 200 requests; total 40 ≤ 50 µs, 80 in (50, 100], 60 in (100, 250], 20 in (250, 500];
# gateway-added 190 ≤ 50 µs, 10 in (50, 100]; and 900 unmatched ones (not the route loaded)
AFTER = _metrics({ROUTE: ([140, 270, 340, 360, 360], [340, 360, 360, 360, 360]),
                  "(unmatched)": ([905, 905, 905, 905, 905], [905] * 5)}, dropped=3)


class Scrape(unittest.TestCase):
    def test_parse(self):
        samples = scrape.parse(AFTER)
        self.assertIn(("ringgate_requests_total", {"route": ROUTE, "method": "GET", "status": "2xx"}, 360.0),
                      samples)
        self.assertEqual(scrape.counter(samples, "ringgate_access_log_dropped_total"), 3)
        self.assertIsNone(scrape.counter(samples, "ringgate_nothing"))
        h = scrape.histograms(samples, "ringgate_request_duration_seconds")
        self.assertEqual(set(h), {ROUTE, "(unmatched)"})
        self.assertEqual(h[ROUTE], [(5e-05, 140), (1e-04, 270), (2.5e-04, 340), (5e-04, 360), (float("inf"), 360)])

    def test_diff_buckets(self):
        b = scrape.histograms(scrape.parse(BEFORE), "ringgate_request_duration_seconds")[ROUTE]
        a = scrape.histograms(scrape.parse(AFTER), "ringgate_request_duration_seconds")[ROUTE]
        inf = float("inf")
        self.assertEqual(scrape.diff_buckets(b, a), [(5e-05, 40), (1e-04, 120), (2.5e-04, 180), (5e-04, 200),
                                                     (inf, 200)])
        self.assertEqual(scrape.diff_buckets(None, a), a)
        self.assertEqual(scrape.diff_buckets(a, b), b)  # counts went down: restarted in between

    def test_bucket_quantile(self):
        inf = float("inf")
        run = [(5e-05, 40), (1e-04, 120), (2.5e-04, 180), (5e-04, 200), (inf, 200)]
        # p50: rank 100, in (50, 100] µs holding ranks 41..120: 50 + 50 · (100 − 40) / 80 = 87.5 µs
        self.assertAlmostEqual(scrape.bucket_quantile(0.5, run), 87.5e-6)
        # p99: rank 198, in (250, 500] µs holding 181..200: 250 + 250 · 18 / 20 = 475 µs
        self.assertAlmostEqual(scrape.bucket_quantile(0.99, run), 475e-6)
        # p10: rank 20 in the first bucket, from 0: 50 · 20 / 40 = 25 µs
        self.assertAlmostEqual(scrape.bucket_quantile(0.1, run), 25e-6)
        # in the +Inf bucket: the largest finite bound
        self.assertEqual(scrape.bucket_quantile(0.99, [(1e-03, 5), (2.5e-03, 5), (inf, 10)]), 2.5e-03)
        self.assertIsNone(scrape.bucket_quantile(0.5, [(1e-03, 0), (inf, 0)]))
        self.assertIsNone(scrape.bucket_quantile(0.5, []))

    def test_whitebox(self):
        wb = scrape.whitebox(BEFORE, AFTER)
        self.assertEqual((wb["route"], wb["count"]), (ROUTE, 200))  # not the 900 unmatched
        self.assertAlmostEqual(wb["total_p50_ms"], 0.0875)
        self.assertAlmostEqual(wb["total_p99_ms"], 0.475)
        # gateway-added: 190 of 200 ≤ 50 µs: p50 rank 100 → 50 · 100 / 190; p99 rank 198 in (50, 100]
        self.assertAlmostEqual(wb["gateway_added_p50_ms"], 0.05 * 100 / 190)
        self.assertAlmostEqual(wb["gateway_added_p99_ms"], 0.05 + 0.05 * 8 / 10)
        self.assertEqual(wb["gateway_added_buckets"], [[5e-05, 190], [1e-04, 200], [2.5e-04, 200],
                                                       [5e-04, 200], ["+Inf", 200]])
        self.assertEqual(set(scrape.WHITEBOX_FIGURES) - set(wb), set())
        json.dumps(wb)  # goes into the JSON results
        self.assertEqual(scrape.whitebox(None, AFTER)["count"], 360)  # no before: since start
        self.assertEqual(scrape.whitebox("# nothing\n", "# nothing\n"), {})  # no route
        # a worker left out of one scrape (it did not answer in time): no figures rather than wrong ones
        with self.assertRaisesRegex(ValueError, "1 worker.s. before the run, 0 after"):
            scrape.whitebox(BEFORE, AFTER.replace("ringgate_worker_info", "ringgate_other_gauge"))

    def test_scraper(self):
        texts = iter([AFTER, OSError("refused")] + [AFTER] * 100)

        def fetch():
            t = next(texts)
            if isinstance(t, Exception):
                raise t
            return t
        import time
        with scrape.Scraper(fetch, interval_s=0.02) as sc:
            time.sleep(0.15)
        n = sc.ok + sc.failed
        self.assertGreaterEqual(n, 3)
        self.assertLessEqual(n, 20)
        time.sleep(0.05)
        self.assertEqual(sc.ok + sc.failed, n)  # stopped
        self.assertEqual(sc.failed, 1)
        self.assertEqual(sc.figures(), {"scrapes": n - 1, "scrape_errors": 1, "scrape_last_error": "refused",
                                        "access_log_dropped": 3})


class ObservedRuns(unittest.TestCase):
    """Suite._measured and Suite.latency with a fake ringgate-observed (no processes started)."""

    def suite(self, d):
        s = suite.Suite(suite.Options(repo=Path("."), work_dir=Path(d), targets=["direct", "ringgate-observed"],
                                      cpu_proxy=None), log=lambda _: None)
        import os
        srv = mock.Mock(admin_port=1, headers=(), url="http://127.0.0.1:1/", access_log=Path(d) / "access.log")
        srv.alive.return_value = True
        srv.cpu_pids.return_value = [os.getpid()]
        s.upstream = mock.Mock()
        s.upstream.cpu_pids.return_value = []
        s.servers["ringgate-observed"] = srv
        return s, srv

    def test_scraped_during_run_and_access_log_emptied(self):
        import time
        with tempfile.TemporaryDirectory() as d:
            s, srv = self.suite(d)
            srv.access_log.write_text("x" * 3000)
            srv.admin_get.return_value = AFTER
            with mock.patch.object(suite, "SCRAPE_INTERVAL_S", 0.02):
                res = s._measured("ringgate-observed", lambda: (time.sleep(0.1), {"requests": 10})[1], "requests")
            self.assertGreaterEqual(res["scrapes"], 2)
            self.assertEqual(res["scrape_errors"], 0)
            self.assertEqual(res["access_log_dropped"], 3)
            srv.admin_get.assert_called_with("/metrics")
            self.assertEqual((res["access_log_bytes"], res["access_log_bytes_per_req"]), (3000, 300.0))
            self.assertEqual(srv.access_log.stat().st_size, 0)

    def test_latency_whitebox(self):
        with tempfile.TemporaryDirectory() as d:
            s, srv = self.suite(d)
            srv.admin_get.side_effect = [BEFORE, AFTER]
            with mock.patch.object(s, "_measured", return_value={"p50_ms": 0.2, "p99_ms": 0.5}) as measured:
                res = s.latency("ringgate-observed", 2000, 1.0)
            measured.assert_called_once()
            self.assertEqual(res["whitebox"]["count"], 200)
            self.assertAlmostEqual(res["whitebox"]["total_p99_ms"], 0.475)
            srv.admin_get.side_effect = [OSError("refused"), AFTER]
            with mock.patch.object(s, "_measured", return_value={"p50_ms": 0.2, "p99_ms": 0.5}):
                res = s.latency("ringgate-observed", 2000, 1.0)
            self.assertNotIn("whitebox", res)
            self.assertEqual(res["whitebox_error"], "refused")
            self.assertEqual(s.warnings, ["ringgate-observed @2000/s: no white-box figures (/metrics: refused)"])
            srv.admin_get.side_effect = [BEFORE, AFTER.replace("ringgate_worker_info", "ringgate_other_gauge")]
            with mock.patch.object(s, "_measured", return_value={"p50_ms": 0.2, "p99_ms": 0.5}):
                res = s.latency("ringgate-observed", 5000, 1.0)
            self.assertNotIn("whitebox", res)
            self.assertIn("1 worker(s) before the run, 0 after", s.warnings[-1])


class K6RateLimit(unittest.TestCase):
    """loadtest/k6/ratelimit.js and its companion config agree (no k6 needed)."""

    def test_companion_config(self):
        import re
        import tomllib
        t = tomllib.loads((LOADTEST / "k6" / "ratelimit.toml").read_text())
        self.assertEqual(t["listeners"], [{"address": "127.0.0.1:8080"}])
        self.assertEqual(t["upstreams"], [{"name": "demo", "targets": ["builtin:demo"]}])
        (policy,) = t["rate_limits"]
        self.assertEqual((policy["key"], policy["rate"], policy["burst"]), ("route", "100/s", 10))
        self.assertEqual(t["routes"], [{"prefix": "/", "upstream": "demo", "rate_limits": [policy["name"]]}])
        js = (LOADTEST / "k6" / "ratelimit.js").read_text()
        limit = re.search(r"const LIMIT = Number\(__ENV\.LIMIT \|\| (\d+)\)", js)
        self.assertIsNotNone(limit)
        self.assertEqual(f"{limit.group(1)}/s", policy["rate"])  # the script's default LIMIT is this policy
        self.assertIn("__ENV.TARGET_URL || 'http://127.0.0.1:8080/'", js)
        for needle in ("executor: 'constant-arrival-rate'", "__ENV.DURATION || '20s'", "__ENV.VUS || 50",
                       "admitted_share: [", "checks: ['rate==1']", "'Retry-After'", "'RateLimit'",
                       "'RateLimit-Policy'"):
            self.assertIn(needle, js)


class Procfs(unittest.TestCase):
    def test_self(self):
        import os
        self.assertGreaterEqual(procfs.cpu_seconds(os.getpid()), 0.0)
        self.assertGreater(procfs.rss_kib(os.getpid()), 0)
        self.assertIn(os.getpid(), procfs.tree(os.getppid()))


class IdleConnections(unittest.TestCase):
    def test_against_tiny_server(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(128)
        port = srv.getsockname()[1]
        held = []

        def serve():
            for _ in range(20):
                c, _ = srv.accept()
                c.recv(4096)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                held.append(c)

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        conns = memory.IdleConnections("127.0.0.1", port, 20, timeout_s=10).open()
        th.join(5)
        self.assertEqual((conns.ok, conns.failed), (20, 0))
        self.assertEqual(conns.still_open(), 20)
        held[0].close()
        import time
        time.sleep(0.1)
        self.assertEqual(conns.still_open(), 19)
        conns.close()
        for c in held:
            c.close()
        srv.close()


class Report(unittest.TestCase):
    def test_markdown_renders(self):
        s = stats.summarize
        result = {
            "meta": {"date": "d", "command": "loadtest/run --smoke", "kernel": "k", "cpu_model": "c", "cpus": 2},
            "options": {"targets": ["direct", "nginx-proxy"], "rates": [2000], "duration_s": 2.0, "rounds": 1,
                        "wrk_threads": 1, "wrk_connections": 64, "oha_connections": 50, "cpu_proxy": 1},
            "summary": {
                "saturation": {"direct": {"rps": s([1.0])}, "nginx-proxy": {"rps": s([2.0])}},
                "latency": {"2000": {"direct": {"p50_ms": s([0.1])}, "nginx-proxy": {"p50_ms": s([0.2])}}},
                "added": {"2000": {"nginx-proxy": {"p50_ms": s([0.1]), "p99_ms": s([-0.01])}}},
            },
            "memory": {"ringgate-uring": {"connections_asked": 10000, "connections_ok": 10000,
                                          "connections_failed": 0, "still_open": 10000,
                                          "rss_before_kib": 4096, "rss_kib": 40960, "per_conn_bytes": 3500,
                                          "fds": 10010}},
            "warnings": [],
        }
        md = report.markdown(result)
        self.assertIn("| nginx-proxy | +0.100 | −0.010 |", md)
        self.assertNotIn("JWT", md)
        result["summary"]["jwt"] = {
            "saturation": {"proxy_cpu_us_per_req": s([0.4, 0.6])},
            "latency": {"2000": {"proxy_cpu_us_per_req": s([1.5]), "p99_ms": s([-0.002])}},
        }
        md = report.markdown(result)
        self.assertIn("| wrk saturation | +0.5 (+0.4–+0.6) ✅ | – |", md)
        self.assertIn("| 2000/s | +1.5 ❌ | −0.002 ✅ |", md)
        self.assertNotIn("Rate-limited route", md)
        result["summary"]["ratelimit"] = {
            "saturation": {"proxy_cpu_us_per_req": s([0.1, 0.3])},
            "latency": {"2000": {"proxy_cpu_us_per_req": s([0.3]), "p99_ms": s([0.004])}},
            "non_2xx": 0,
        }
        md = report.markdown(result)
        self.assertIn("## Rate-limited route vs the same route without a limit "
                      "(ringgate-ratelimit − ringgate-uring, paired per round)", md)
        rl = md[md.index("## Rate-limited route"):]
        self.assertIn("Non-2xx responses from ringgate-ratelimit: 0.", rl)
        self.assertIn("| wrk saturation | +0.2 (+0.1–+0.3) | – |", rl)  # no target: no mark
        self.assertIn("| 2000/s | +0.3 | +0.004 |", rl)
        self.assertIn("| wrk saturation | +0.5 (+0.4–+0.6) ✅ | – |", md)  # the JWT table is unchanged
        result["summary"]["ratelimit"]["non_2xx"] = 1234
        self.assertIn("Non-2xx responses from ringgate-ratelimit: 1,234 ❌.", report.markdown(result))
        self.assertIn("40.0 MiB ✅", md)
        self.assertIn("`loadtest/run --smoke`", md)
        self.assertNotIn("Access log + metrics", md)
        self.assertNotIn("White-box", md)
        self.assertNotIn("Δ proxy CPU %", md)

    def test_observability_sections(self):
        s = stats.summarize
        result = {
            "options": {"targets": ["direct", "ringgate-nometrics", "ringgate-observed"], "rates": [2000, 5000]},
            "summary": {
                "added": {"2000": {"ringgate-observed": {"p50_ms": s([0.05, 0.07]), "p99_ms": s([0.12])}}},
                "whitebox": {"2000": {"ringgate-observed": {
                    "count": s([20000, 20010]), "gateway_added_p50_ms": s([0.021, 0.023]),
                    "gateway_added_p99_ms": s([0.049]), "total_p50_ms": s([0.09]), "total_p99_ms": s([0.3])}},
                    "5000": {}},
                "observability": {
                    "saturation": {"proxy_cpu_us_per_req": s([0.2, 0.4]), suite.CPU_REL: s([2.0, 2.5, 4.0])},
                    "latency": {"2000": {"proxy_cpu_us_per_req": s([0.5]), suite.CPU_REL: s([4.2]),
                                         "p99_ms": s([-0.01, 0.03])},
                                "5000": {"proxy_cpu_us_per_req": s([0.5]), suite.CPU_REL: s([3.5]),
                                         "p99_ms": s([0.01, 0.02])}},
                    "scrapes": 1234, "scrape_errors": 0, "access_log_bytes_per_req": s([310.0]),
                    "access_log_dropped": 0},
            },
        }
        md = report.markdown(result)
        obs = md[md.index("## Access log + metrics scrapes vs neither (ringgate-observed − ringgate-nometrics, "
                          "paired per round)"):]
        self.assertIn("| load | Δ proxy CPU µs/req | Δ proxy CPU % | Δ added p99, ms |", obs)
        self.assertIn("| wrk saturation | +0.3 (+0.2–+0.4) | +2.5 (+2.0–+4.0) ✅ | – |", obs)
        self.assertIn("| 2000/s | +0.5 | +4.2 | +0.010 (−0.010–+0.030) ✅ |", obs)  # rounds disagree: no change
        self.assertIn("| 5000/s | +0.5 | +3.5 | +0.015 (+0.010–+0.020) ❌ |", obs)
        self.assertIn("under 3 % more proxy CPU per request at saturation", obs)
        self.assertIn("Scrapes: 1,234 (0 failed); access log: 310 bytes per request at saturation, "
                      "0 lines dropped.", obs)
        result["summary"]["observability"]["saturation"][suite.CPU_REL] = s([3.1, 2.9, 3.5])
        self.assertIn("| wrk saturation | +0.3 (+0.2–+0.4) | +3.1 (+2.9–+3.5) ❌ | – |", report.markdown(result))
        wb = md[md.index("## White-box vs black-box gateway-added latency, ms"):]
        self.assertIn("linear interpolation within the bucket", wb)
        self.assertIn("| ringgate-observed | 2000/s | 20,005 (20,000–20,010) | 0.022 (0.021–0.023) | 0.049 | "
                      "0.090 | 0.300 | +0.060 (+0.050–+0.070) | +0.120 |", wb)
        self.assertNotIn("| ringgate-uring |", wb[:wb.index("\n## ")])  # no white-box figures for it
        self.assertNotIn("5000/s", wb[:wb.index("\n## ")])


if __name__ == "__main__":
    unittest.main()
