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
        self.assertNotIn("/files/", up)
        files = configs.nginx_upstream(Path("/tmp/p"), 9000, files_dir=Path("/tmp/f"))
        self.assertIn("location /files/ {", files)
        self.assertIn("alias /tmp/f/;", files)
        self.assertIn("listen 127.0.0.1:9000", up)
        self.assertIn("pid /tmp/p/nginx.pid;", up)
        px = configs.nginx_proxy(Path("/tmp/q"), 8080, 9000)
        for needle in ("proxy_http_version 1.1;", 'proxy_set_header Connection "";', "keepalive 64;",
                       "server 127.0.0.1:9000;", "proxy_request_buffering off;", "proxy_max_temp_file_size 0;",
                       "client_max_body_size 8m;"):
            self.assertIn(needle, px)

    def test_body_files(self):
        d = configs.body_files_dir()
        try:
            files = sorted(d.iterdir(), key=lambda f: f.stat().st_size)
            self.assertEqual([f.name for f in files], ["1024.bin", "65536.bin", "1048576.bin"])
            self.assertEqual([f.stat().st_size for f in files], list(configs.BODY_FILE_SIZES))
            # readable by nginx's unprivileged workers
            self.assertEqual(d.stat().st_mode & 0o777, 0o755)
            self.assertTrue(all(f.stat().st_mode & 0o004 for f in files))
        finally:
            shutil.rmtree(d)

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

# --------------------------------------------------------------------------- k6, plots, spread (issue 8)

# What lib.js's summary() writes to SUMMARY_JSON for a two-step ladder (handleSummary data: values nested,
# thresholds as {"expr": {"ok": bool}}).
K6_LADDER = {
    "script": "latency ladder",
    "params": {"TARGET_URL": "http://127.0.0.1:1/", "STEPS": "1000,2000", "STEP_DURATION": "2s"},
    "rows": [
        {"label": "step_1000", "tag": "scenario:step_1000", "offered_rps": 1000, "achieved_rps": 999.5,
         "requests": 1999, "dropped": 0, "dropped_share": 0, "failed_share": 0, "checks_share": 1,
         "p50_ms": 0.2, "p90_ms": 0.3, "p99_ms": 0.5, "p999_ms": 1.1, "max_ms": 2.0, "gw_p50_ms": 0.02,
         "gw_p99_ms": 0.05},
        {"label": "step_2000", "tag": "scenario:step_2000", "offered_rps": 2000, "achieved_rps": 1900.0,
         "requests": 3800, "dropped": 200, "dropped_share": 0.05, "failed_share": 0, "checks_share": 1,
         "p50_ms": 0.4, "p90_ms": 0.9, "p99_ms": 3.0, "p999_ms": 6.0, "max_ms": 9.0},
    ],
    "thresholds_failed": 1,
    "saturated_from_rps": 2000,
    "highest_held_rps": 1000,
    "test_run_duration_ms": 6000,
    "metrics": {
        "http_reqs": {"type": "counter", "contains": "default", "values": {"count": 5799, "rate": 966.5}},
        "http_req_duration": {"type": "trend", "contains": "time",
                              "values": {"avg": 0.3, "min": 0.1, "med": 0.25, "p(90)": 0.35, "p(99)": 2.5,
                                         "p(99.9)": 4.0, "max": 9.0, "count": 5799}},
        "http_req_duration{scenario:step_1000}": {"type": "trend", "values": {"med": 0.2, "p(99)": 0.5},
                                                  "thresholds": {"p(99)<25": {"ok": True}}},
        "dropped_iterations": {"type": "counter", "values": {"count": 200, "rate": 33.3}},
        "iterations": {"type": "counter", "values": {"count": 5799, "rate": 966.5}},
        "checks": {"type": "rate", "values": {"rate": 1.0, "passes": 5799, "fails": 0},
                   "thresholds": {"rate>=0.999": {"ok": True}}},
        "http_req_failed": {"type": "rate", "values": {"rate": 0.0, "passes": 0, "fails": 5799}},
        "gateway_added": {"type": "trend", "contains": "time",
                          "values": {"avg": 0.03, "min": 0.01, "med": 0.02, "p(90)": 0.04, "p(99)": 0.06,
                                     "p(99.9)": 0.1, "max": 0.2, "count": 5799},
                          "thresholds": {"p(99)<5": {"ok": True}}},
        "server_timing_seen": {"type": "rate", "values": {"rate": 0.5, "passes": 1, "fails": 1},
                               "thresholds": {"rate==1": {"ok": False}}},
    },
}

# k6's own --summary-export (legacy format: values flat, a threshold's boolean is true when it FAILED).
K6_EXPORT = {
    "state": {"testRunDurationMs": 2000},
    "metrics": {
        "http_reqs": {"count": 20, "rate": 10.0},
        "http_req_duration": {"avg": 1.0, "min": 0.5, "med": 0.9, "max": 3.0, "p(90)": 1.5, "p(95)": 2.0,
                              "thresholds": {"p(99)<500": False}},
        "checks": {"passes": 40, "fails": 0, "value": 1, "thresholds": {"rate==1": False}},
        "http_req_failed": {"passes": 0, "fails": 20, "value": 0, "thresholds": {"rate==0": True}},
        "gateway_added": {"avg": 0, "min": 0, "med": 0, "max": 0, "p(90)": 0, "p(95)": 0},
        "iterations": {"count": 10, "rate": 5.0},
    },
}


class K6Summary(unittest.TestCase):
    def test_handle_summary_json(self):
        r = loadgen.parse_k6_summary(K6_LADDER)
        self.assertEqual((r["requests"], r["iterations"], r["dropped_iterations"]), (5799, 5799, 200))
        self.assertAlmostEqual(r["rps"], 966.5)
        self.assertEqual(r["duration_s"], 6.0)
        self.assertEqual(r["latency_ms"], {"avg": 0.3, "min": 0.1, "p50": 0.25, "p90": 0.35, "p99": 2.5,
                                           "p99.9": 4.0, "max": 9.0})
        self.assertEqual((r["p50_ms"], r["p90_ms"], r["p99_ms"], r["p999_ms"], r["max_ms"]),
                         (0.25, 0.35, 2.5, 4.0, 9.0))
        self.assertEqual((r["checks_rate"], r["checks_failed"], r["failed_rate"]), (1.0, 0, 0.0))
        self.assertEqual((r["gw_p50_ms"], r["gw_p99_ms"]), (0.02, 0.06))
        self.assertEqual(r["thresholds_failed"], ["server_timing_seen rate==1"])
        self.assertEqual([row["label"] for row in r["rows"]], ["step_1000", "step_2000"])
        self.assertEqual(r["extra"], {"saturated_from_rps": 2000, "highest_held_rps": 1000})
        self.assertEqual((r["script"], r["params"]["STEPS"]), ("latency ladder", "1000,2000"))
        json.dumps(r)

    def test_summary_export(self):
        r = loadgen.parse_k6_summary(K6_EXPORT)
        self.assertEqual((r["requests"], r["iterations"], r["duration_s"]), (20, 10, 2.0))
        self.assertEqual((r["p50_ms"], r["p90_ms"], r["p99_ms"]), (0.9, 1.5, None))  # no p(99) in this export
        self.assertEqual((r["checks_rate"], r["failed_rate"]), (1, 0))
        self.assertEqual(r["thresholds_failed"], ["http_req_failed rate==0"])  # true = failed (legacy)
        self.assertNotIn("gateway_added_ms", r)  # no Server-Timing: no samples
        self.assertNotIn("rows", r)

    def run_k6(self, rc=0, write=True, env=None):
        calls = []

        def fake(cmd, cpu, timeout, env=None):
            calls.append((cmd, cpu, timeout, env))
            path = next(a.split("=", 1)[1] for a in cmd if a.startswith("SUMMARY_JSON="))
            if write:
                Path(path).write_text(json.dumps(K6_LADDER))
            return subprocess.CompletedProcess(cmd, rc, "ringgate k6: latency ladder\n", "")
        with tempfile.TemporaryDirectory() as d, mock.patch.object(loadgen, "run_bounded", side_effect=fake):
            base = Path(d) / "k6" / "ladder.direct.r1"
            res = loadgen.run_k6(Path("/k6/ladder.js"), "http://127.0.0.1:1/",
                                 env or {"REQUIRE_SERVER_TIMING": "0", "TOKEN_VALID": "a.b.c"}, base, cpu=0,
                                 timeout=99)
            text = Path(f"{base}.txt").read_text()
        return calls[0], res, text

    def test_run_k6(self):
        (cmd, cpu, timeout, env), res, text = self.run_k6(rc=loadgen.K6_THRESHOLDS_FAILED)
        self.assertEqual(cmd[:2], ["k6", "run"])
        self.assertEqual(cmd[-1], "/k6/ladder.js")
        self.assertIn("--no-usage-report", cmd)
        self.assertTrue(cmd[cmd.index("--summary-export") + 1].endswith("ladder.direct.r1.export.json"))
        e = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-e"]
        self.assertEqual(e[0], "TARGET_URL=http://127.0.0.1:1/")
        self.assertTrue(e[1].startswith("SUMMARY_JSON=") and e[1].endswith("ladder.direct.r1.json"))
        self.assertEqual(e[2:], ["REQUIRE_SERVER_TIMING=0", "TOKEN_VALID=a.b.c"])
        self.assertEqual((cpu, timeout, env["K6_NO_USAGE_REPORT"]), (0, 99, "true"))
        self.assertEqual(res["exit_code"], 99)  # thresholds failed: a finished run, not an error
        self.assertNotIn("error", res)
        self.assertEqual(res["requests"], 5799)
        self.assertIn("TOKEN_VALID=…", res["command"])
        self.assertNotIn("a.b.c", res["command"])
        self.assertEqual(res["env"], {"REQUIRE_SERVER_TIMING": "0"})
        self.assertIn("ringgate k6: latency ladder", text)

    def test_run_k6_failures(self):
        with self.assertRaisesRegex(RuntimeError, "k6 exited 107 and wrote no summary"):
            self.run_k6(rc=107, write=False)
        self.assertIn("k6 exited 107", self.run_k6(rc=107)[1]["error"])

    def test_bundled_scenarios(self):
        names = loadgen.k6_scenarios(LOADTEST / "k6")
        for n in ("smoke", "ladder", "connections", "bodies", "jwt", "spike", "soak", "ratelimit"):
            self.assertIn(n, names)
        self.assertNotIn("lib", names)


class K6Suite(unittest.TestCase):
    """Suite's k6 plumbing with fake servers (no processes started)."""

    def suite(self, d=".", **kw):
        opts = dict(repo=Path("."), work_dir=Path(d), targets=["direct", "ringgate-uring", "ringgate-jwt"],
                    duration_s=2.0, cpu_proxy=None, cpu_loadgen=0, k6_scenarios=["smoke", "ladder"],
                    k6_dir=Path("/k6"), k6_out_dir=Path(d) / "k6", jwt=(Path("/k.pem"), "t.o.k"),
                    k6_env=suite.parse_k6_env(["REQUIRE_SERVER_TIMING=1", "smoke.ITERATIONS=5",
                                               "ladder.STEP_DURATION=5s"]))
        opts.update(kw)
        s = suite.Suite(suite.Options(**opts), log=lambda _: None)
        import os
        up = mock.Mock()
        up.cpu_pids.return_value = []
        up.alive.return_value = True
        s.upstream = up
        from ringbench import servers
        s.servers["direct"] = servers.DirectTarget(up)
        rg = mock.Mock(headers=(), server_timing=True, url="http://127.0.0.1:2/", admin_port=None, access_log=None)
        rg.alive.return_value = True
        rg.cpu_pids.return_value = [os.getpid()]
        s.servers["ringgate-uring"] = rg
        s.servers["ringgate-jwt"] = mock.Mock(headers=("Authorization: Bearer t.o.k",), server_timing=False)
        return s

    def test_parse_k6_env(self):
        self.assertEqual(suite.parse_k6_env(["A=1", "ladder.STEPS=1000,2000", "X=a=b", "E="]),
                         {"": {"A": "1", "X": "a=b", "E": ""}, "ladder": {"STEPS": "1000,2000"}})
        for bad in ("NOEQUALS", "=1", "ladder.=1"):
            with self.assertRaises(ValueError):
                suite.parse_k6_env([bad])

    def test_check_scenarios(self):
        known = loadgen.k6_scenarios(LOADTEST / "k6")
        self.assertIsNone(suite.check_k6_scenarios(["smoke", "ladder", "connections"], ["direct"], known))
        self.assertIsNone(suite.check_k6_scenarios([], ["direct"], known))
        self.assertIn("unknown k6 scenario(s): nope", suite.check_k6_scenarios(["smoke", "nope"], [], known))
        self.assertIn("ratelimit.toml", suite.check_k6_scenarios(["ratelimit"], ["direct"], known))
        self.assertIn("--jwt", suite.check_k6_scenarios(["jwt"], ["direct", "ringgate-uring"], known))
        self.assertIsNone(suite.check_k6_scenarios(["jwt"], ["direct", "ringgate-jwt"], known))

    def test_env_and_targets(self):
        s = self.suite()
        # non-ringgate: REQUIRE_SERVER_TIMING=0 whatever --k6-env says; the fixed upstream's body
        self.assertEqual(s.k6_env("smoke", "direct"),
                         {"REQUIRE_SERVER_TIMING": "0", "BODY_MATCH": "ok", "ITERATIONS": "5"})
        self.assertEqual(s.k6_env("smoke", "ringgate-uring")["REQUIRE_SERVER_TIMING"], "1")
        self.assertEqual(s.k6_env("ladder", "direct"),
                         {"REQUIRE_SERVER_TIMING": "0", "STEP_DURATION": "5s", "SERVER_TIMING_EVERY": "10"})
        self.assertEqual(self.suite(k6_env={}).k6_env("ladder", "direct")["STEP_DURATION"], "2s")  # --duration
        self.assertEqual(self.suite(k6_env={}).k6_env("spike", "direct"),
                         {"REQUIRE_SERVER_TIMING": "0", "SERVER_TIMING_EVERY": "10"})
        self.assertEqual(s.k6_env("jwt", "ringgate-jwt")["TOKEN_VALID"], "t.o.k")
        # bodies: up and down, the downloads from the upstream's /files/ through the target
        bodies = self.suite(k6_env={}).k6_env("bodies", "ringgate-uring")
        self.assertEqual(bodies["DOWN_URL"], "http://127.0.0.1:2/files/{bytes}.bin")
        self.assertNotIn("DIRECTIONS", bodies)
        self.assertEqual(suite.down_url("https://bench.test:8443/api/x"), "https://bench.test:8443/files/{bytes}.bin")
        self.assertTrue(s.k6_applies("smoke", "direct"))
        self.assertFalse(s.k6_applies("smoke", "ringgate-jwt"))  # needs a token the script does not send
        # the JWT baseline carries the token for wrk/oha only: k6's scenarios still run against it
        s.servers["ringgate-uring"].headers = ("Authorization: Bearer t.o.k",)
        self.assertTrue(s.k6_applies("smoke", "ringgate-uring"))
        self.assertFalse(s.k6_applies("jwt", "ringgate-uring"))
        self.assertTrue(s.k6_applies("jwt", "ringgate-jwt"))
        self.assertFalse(s.k6_applies("jwt", "ringgate-uring"))

    def test_run_measured_and_pinned(self):
        with tempfile.TemporaryDirectory() as d:
            s = self.suite(d)
            with mock.patch.object(loadgen, "run_k6",
                                   return_value={"requests": 20, "p50_ms": 0.3, "thresholds_failed": []}) as run:
                res = s.k6("smoke", "ringgate-uring", 2)
            script, url, env, base, cpu = run.call_args.args
            self.assertEqual((script, url, cpu), (Path("/k6/smoke.js"), "http://127.0.0.1:2/", 0))
            self.assertEqual(base, Path(d) / "k6" / "smoke.ringgate-uring.r2")
            self.assertEqual(env["REQUIRE_SERVER_TIMING"], "1")
            self.assertEqual(run.call_args.kwargs, {"timeout": 3600.0})
            self.assertGreaterEqual(res["proxy_cpu_s"], 0.0)
            self.assertIn("proxy_cpu_us_per_req", res)
            self.assertGreater(res["proxy_rss_kib"], 0)  # this process's RSS, read after the run
            with mock.patch.object(loadgen, "run_k6", side_effect=RuntimeError("k6 exited 107 and wrote no summary")):
                self.assertIn("error", s.k6("smoke", "direct", 1))
            self.assertEqual(s.warnings, ["k6 smoke against direct, round 1: k6 exited 107 and wrote no summary"])

    def test_summary_rows_thresholds_and_spread(self):
        s = self.suite(targets=["direct", "ringgate-uring"], rates=[], k6_scenarios=["ladder"])
        run = loadgen.parse_k6_summary(K6_LADDER)

        def k6run(i, **kw):
            r = json.loads(json.dumps(run))
            r["rows"][1]["p99_ms"] = 3.0 * i
            r.update(proxy_cpu_us_per_req=20.0, thresholds_failed=[] if i == 1 else r["thresholds_failed"], **kw)
            return r
        s.result["rounds"] = [
            {"round": 1, "saturation": {}, "latency": {},
             "k6": {"ladder": {"direct": k6run(1), "ringgate-uring": k6run(1)}}},
            {"round": 2, "saturation": {}, "latency": {}, "k6": {"ladder": {"direct": k6run(2),
                                                                            "ringgate-uring": {"error": "boom"}}}},
        ]
        k6 = s.summarize()["k6"]["ladder"]
        d = k6["targets"]["direct"]
        self.assertEqual((d["requests"]["median"], d["requests"]["n"]), (5799, 2))
        self.assertEqual(d["thresholds"], {"rounds": 2, "failed_rounds": 1, "failed": ["server_timing_seen rate==1"]})
        self.assertEqual(d["saturated_from_rps"]["median"], 2000)
        self.assertEqual(k6["targets"]["ringgate-uring"]["requests"]["n"], 1)  # the failed round left out
        row = k6["rows"]["direct"]["step_2000"]
        self.assertEqual((row["p99_ms"]["min"], row["p99_ms"]["max"]), (3.0, 6.0))
        self.assertEqual(row["offered_rps"]["median"], 2000)
        self.assertNotIn("label", row)
        self.assertEqual(k6["params"]["STEPS"], "1000,2000")
        self.assertIn("k6 ladder against direct: thresholds failed in 1 of 2 round(s): server_timing_seen rate==1",
                      s.warnings)
        wide = [w for w in s.warnings if w.startswith("⚠")]
        self.assertEqual(wide, ["⚠ wide spread between rounds (max/min 2.00 > 1.2): k6 / ladder / rows / direct / "
                                "step_2000 / p99_ms 4.500 (3.000–6.000)"])
        md = report.markdown(s.result)
        sec = md[md.index("## k6: latency ladder (`loadtest/k6/ladder.js`)"):]
        self.assertIn("| direct | 5,799 | 966 | 0.250 | 0.350 | 2.500 | 4.000 | 200 | 100.00 % | 0.020 | 0.060 | "
                      "20.0 | – | failed in 1/2 ❌ |", sec)
        self.assertIn("| ringgate-uring | 5,799 |", sec)
        self.assertIn("| direct | step_2000 | 2,000 | 1,900 | 200 | 0.400 | 0.900 | 4.500 (3.000–6.000) ⚠ | 6.000 "
                      "| – | – |", sec)
        self.assertIn("- direct: highest_held_rps 1,000, saturated_from_rps 2,000", sec)
        self.assertIn("Parameters: STEPS=1000,2000, STEP_DURATION=2s", sec)


class Spread(unittest.TestCase):
    def test_flag(self):
        s = stats.summarize
        self.assertAlmostEqual(stats.spread(s([1.0, 1.3, 1.1])), 1.3)
        self.assertTrue(stats.wide(s([1.0, 1.3])))
        self.assertFalse(stats.wide(s([1.0, 1.2])))  # at the limit: not wide
        self.assertFalse(stats.wide(s([5.0])))  # one round
        self.assertFalse(stats.wide(s([0, 3.0])))  # no ratio from 0
        self.assertFalse(stats.wide(s([-0.1, 0.2])))  # differences
        self.assertEqual(stats.fmt_summary(s([1.0, 1.3]), 1, flag_wide=True), "1.1 (1.0–1.3) ⚠")
        self.assertEqual(stats.fmt_summary(s([1.0, 1.3]), 1), "1.1 (1.0–1.3)")
        self.assertEqual(report.fmt_summary(s([1.0, 1.3]), 1), "1.1 (1.0–1.3) ⚠")
        self.assertEqual(report.fmt_summary(s([1.0, 1.3]), 1, signed=True), "+1.1 (+1.0–+1.3)")  # a difference
        tree = {"latency": {"2000": {"a": {"p99_ms": s([0.2, 0.3]), "p50_ms": s([0.1, 0.11])}}}, "x": s([1, 2])}
        self.assertEqual([p for p, _ in stats.wide_spreads(tree)], [("latency", "2000", "a", "p99_ms"), ("x",)])

    def test_summary_warns(self):
        s = _scenario_suite("ringgate-jwt", [10.5, 10.25, 10.75], [0.2, 0.3, 0.31])
        summ = s.summarize()
        self.assertEqual([w for w in s.warnings if w.startswith("⚠")],
                         ["⚠ wide spread between rounds (max/min 1.55 > 1.2): latency / 2000 / ringgate-jwt / "
                          "p99_ms 0.300 (0.200–0.310)"])  # not the jwt comparison (differences)
        md = report.markdown(s.result)
        self.assertIn("0.300 (0.200–0.310) ⚠", md)
        self.assertIn("- ⚠ wide spread between rounds", md)
        self.assertIn("jwt", summ)


def _oha_run(scale: float, **kw) -> dict:
    pct = {"p10": 0.05, "p25": 0.07, "p50": 0.1, "p75": 0.12, "p90": 0.15, "p95": 0.2, "p99": 0.3,
           "p99.9": 0.8, "p99.99": 2.0}
    return {"latency_ms": {k: v * scale for k, v in pct.items()}, **kw}


def _plot_result() -> dict:
    s = stats.summarize
    return {
        "options": {"targets": ["direct", "ringgate-uring", "nginx-proxy"], "rates": [2000], "oha_connections": 50},
        "rounds": [
            {"latency": {"2000": {"direct": _oha_run(1.0), "ringgate-uring": _oha_run(2.0),
                                  "nginx-proxy": {"error": "died"}}}},
            {"latency": {"2000": {"direct": _oha_run(1.2), "ringgate-uring": _oha_run(2.0)}}},
        ],
        "summary": {
            "latency": {"2000": {"direct": {"achieved_rps": s([1999.0]), "p50_ms": s([0.1]), "p99_ms": s([0.3])},
                                 "ringgate-uring": {"achieved_rps": s([1998.0]), "p50_ms": s([0.2]),
                                                    "p99_ms": s([0.6])}}},
            "k6": {"ladder": {"rows": {"direct": {
                "step_2000": {"achieved_rps": s([1990.0]), "p50_ms": s([0.12]), "p99_ms": s([0.4])},
                "step_1000": {"achieved_rps": s([999.0]), "p50_ms": s([0.1]), "p99_ms": s([0.3])},
                "no_latency": {"achieved_rps": s([10.0])}}}}},
        },
    }


class Plots(unittest.TestCase):
    def test_percentile_axis(self):
        from ringbench import plots
        self.assertAlmostEqual(plots.percentile_x(90), 1.0)
        self.assertAlmostEqual(plots.percentile_x(99), 2.0)
        self.assertAlmostEqual(plots.percentile_x(99.99), 4.0)
        self.assertEqual((plots.percentile_of("p99.9"), plots.percentile_of("p50"), plots.percentile_of("avg")),
                         (99.9, 50.0, None))

    def test_percentile_curves(self):
        from ringbench import plots
        curves = plots.percentile_curves(_plot_result(), "2000")
        self.assertEqual(list(curves), ["direct", "ringgate-uring"])  # nginx-proxy: its only run failed
        d = curves["direct"]
        self.assertEqual([p for p, *_ in d], [50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99])  # from p50 on
        p, med, lo, hi = d[4]
        self.assertEqual(p, 99.0)
        self.assertAlmostEqual(med, 0.33)  # median of 0.3 and 0.36
        self.assertAlmostEqual((lo, hi)[1], 0.36)
        self.assertEqual(curves["ringgate-uring"][0], (50.0, 0.2, 0.2, 0.2))
        self.assertEqual(plots.percentile_curves(_plot_result(), "5000"), {})

    def test_rate_latency_series(self):
        from ringbench import plots
        series = plots.rate_latency_series(_plot_result())
        self.assertEqual(list(series), ["k6-ladder", "oha"])
        self.assertEqual(series["k6-ladder"], {"direct": [(999.0, 0.1, 0.3), (1990.0, 0.12, 0.4)]})
        self.assertEqual(series["oha"], {"direct": [(1999.0, 0.1, 0.3)], "ringgate-uring": [(1998.0, 0.2, 0.6)]})

    def test_render_calls(self):
        from ringbench import plots
        figs = []

        def subplots(**kw):
            fig, ax = mock.MagicMock(), mock.MagicMock()
            ax.plot.return_value = [mock.MagicMock()]
            figs.append((fig, ax))
            return fig, ax
        plt = mock.MagicMock()
        plt.subplots.side_effect = subplots
        made = plots.render(_plot_result(), Path("/out"), plt=plt)
        self.assertEqual([m["file"] for m in made], ["latency-percentiles-2000.png", "rate-vs-latency-k6-ladder.png",
                                                     "rate-vs-latency-oha.png"])
        self.assertEqual(len(figs), 3)
        fig, ax = figs[0]
        (xs, ys), kw = ax.plot.call_args_list[1].args, ax.plot.call_args_list[1].kwargs
        self.assertEqual(kw["label"], "ringgate-uring")
        self.assertEqual([round(x, 3) for x in xs], [round(plots.percentile_x(p), 3)
                                                     for p in (50, 75, 90, 95, 99, 99.9, 99.99)])
        self.assertEqual(ys, [0.2, 0.24, 0.3, 0.4, 0.6, 1.6, 4.0])
        self.assertEqual(ax.fill_between.call_count, 1)  # direct's rounds differ; ringgate-uring's do not
        fig.savefig.assert_called_once_with(Path("/out/latency-percentiles-2000.png"), dpi=110)
        ax.set_yscale.assert_called_with("log")
        fig, ax = figs[1]
        calls = [(c.args, c.kwargs["label"]) for c in ax.plot.call_args_list]
        self.assertEqual(calls, [(([999.0, 1990.0], [0.1, 0.12]), "direct p50"),
                                 (([999.0, 1990.0], [0.3, 0.4]), "direct p99")])
        self.assertEqual(plt.close.call_count, 3)

    @unittest.skipUnless(__import__("importlib").util.find_spec("matplotlib"), "matplotlib not installed")
    def test_render_pngs(self):
        from ringbench import plots
        with tempfile.TemporaryDirectory() as d:
            made = plots.render(_plot_result(), Path(d))
            for m in made:
                self.assertEqual((Path(d) / m["file"]).read_bytes()[:8], b"\x89PNG\r\n\x1a\n")


class ResultsLayout(unittest.TestCase):
    def test_run_dir_name(self):
        import datetime
        utc = datetime.timezone.utc
        self.assertEqual(report.run_dir_name(datetime.datetime(2026, 11, 22, 14, 30, 59, tzinfo=utc)),
                         "2026-11-22T1430")
        cet = datetime.timezone(datetime.timedelta(hours=1))
        self.assertEqual(report.run_dir_name(datetime.datetime(2026, 11, 22, 15, 30, tzinfo=cet)), "2026-11-22T1430")
        with tempfile.TemporaryDirectory() as d:
            when = datetime.datetime(2026, 11, 22, 14, 30, tzinfo=utc)
            first = report.results_dir(Path(d) / "results", when)
            second = report.results_dir(Path(d) / "results", when)
            self.assertEqual((first.name, second.name), ("2026-11-22T1430", "2026-11-22T1430-2"))
            self.assertTrue(first.is_dir() and second.is_dir())

    def test_report_header_and_plots(self):
        result = {"meta": {"date": "d", "cpu_model": "Some CPU", "cpus": 2, "kernel": "6.1.0",
                           "tools": {"nginx": "nginx/1.22.1", "k6": "k6 v1.1.0"}},
                  "options": {"targets": ["direct"], "rates": [], "server_timing": True},
                  "drivers": {"ringgate-uring": "io_uring (coop,single,defer)", "ringgate-epoll": "epoll"},
                  "plots": [{"file": "latency-percentiles-2000.png", "title": "Latency at 2000"}], "warnings": []}
        md = report.markdown(result, link_prefix="2026-11-22T1430/")
        self.assertIn("- machine: Some CPU, 2 CPUs, kernel 6.1.0", md)
        self.assertIn("- ringgate driver (as its workers logged at start): ringgate-uring: io_uring "
                      "(coop,single,defer); ringgate-epoll: epoll", md)
        self.assertIn("nginx: nginx/1.22.1; k6: k6 v1.1.0", md)
        self.assertIn("`Server-Timing`", md)
        self.assertIn("## Plots\n\n![Latency at 2000](2026-11-22T1430/latency-percentiles-2000.png)", md)
        with tempfile.TemporaryDirectory() as d:
            md_path, json_path = report.write(result, Path(d), "report.md", "result.json")
            self.assertIn("](latency-percentiles-2000.png)", md_path.read_text())
            self.assertEqual(json.loads(json_path.read_text())["drivers"]["ringgate-epoll"], "epoll")

    def test_cli(self):
        import bench
        a = bench.parse_args(["--k6", "smoke,ladder", "--k6-env", "RATE=100", "--k6-env", "ladder.STEPS=1000"])
        self.assertEqual((a.k6, a.k6_env), ("smoke,ladder", ["RATE=100", "ladder.STEPS=1000"]))
        self.assertEqual((bench.parse_args([]).k6, bench.parse_args([]).no_plots), ("", False))


class Driver(unittest.TestCase):
    def test_parse_driver(self):
        from ringbench import servers
        log = ("2026-11-22T14:30:00.1Z  INFO driver=io_uring worker=0 core=None ring_flags=coop,single,defer\n"
               "2026-11-22T14:30:00.1Z  INFO driver=io_uring worker=1 core=None ring_flags=coop,single,defer\n")
        self.assertEqual(servers.parse_driver(log), "io_uring (coop,single,defer)")
        self.assertEqual(servers.parse_driver("x INFO driver=epoll worker=0 core=Some(1)\n"), "epoll")
        self.assertEqual(servers.parse_driver(log + "WARN fell back\nINFO driver=epoll worker=2 core=None\n"),
                         "io_uring (coop,single,defer) + epoll")
        self.assertIsNone(servers.parse_driver("listening on http://127.0.0.1:1\n"))

    def test_logged_driver_from_stderr(self):
        from ringbench import servers
        with tempfile.TemporaryDirectory() as d:
            srv = servers.RinggateServer("ringgate-uring", Path("/bin/true"), "uring", 1, 2, Path(d), None)
            err = Path(d) / "err.log"
            srv.proc = mock.Mock(stderr_path=err)
            self.assertEqual(srv.logged_driver(), "io_uring (asked; not logged)")
            err.write_text("INFO driver=io_uring worker=0 core=None ring_flags=coop\n")
            self.assertEqual(srv.logged_driver(), "io_uring (coop)")


class ServerTimingConfig(unittest.TestCase):
    def test_routes(self):
        import tomllib
        t = tomllib.loads(configs.ringgate_toml(8080, 9000, server_timing=True))
        self.assertEqual(t["routes"], [{"prefix": "/", "upstream": "bench", "server_timing": True}])
        table = tomllib.loads(configs.ringgate_toml(8080, 9000, routes=10, server_timing=True))["routes"]
        self.assertTrue(all(r["server_timing"] for r in table))
        self.assertNotIn("server_timing", tomllib.loads(configs.ringgate_toml(8080, 9000))["routes"][0])


class EnsureModule(unittest.TestCase):
    def test_installs_then_imports(self):
        from ringbench import install
        with mock.patch.object(install.importlib, "import_module", side_effect=[ImportError("no"), None]) as imp, \
                mock.patch.object(install, "pip_install") as pip:
            install.ensure_module("matplotlib", "matplotlib", log=lambda _: None)
        pip.assert_called_once()
        self.assertEqual(pip.call_args.args[0], "matplotlib")
        self.assertEqual(imp.call_count, 2)

    def test_clear_failures(self):
        from ringbench import install
        with mock.patch.object(install.importlib, "import_module", side_effect=ImportError("no")):
            with self.assertRaisesRegex(RuntimeError, "--skip-install was given: `python3 -m pip install matplotlib`"):
                install.ensure_module("matplotlib", "matplotlib", install=False)
            with mock.patch.object(install, "pip_install", side_effect=subprocess.CalledProcessError(1, ["pip"])):
                with self.assertRaisesRegex(RuntimeError, "cannot install Python package matplotlib"):
                    install.ensure_module("matplotlib", "matplotlib", log=lambda _: None)
            with mock.patch.object(install, "pip_install"):
                with self.assertRaisesRegex(RuntimeError, "was installed but `import matplotlib` fails"):
                    install.ensure_module("matplotlib", "matplotlib", log=lambda _: None)



if __name__ == "__main__":
    unittest.main()
