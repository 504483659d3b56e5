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

from ringbench import configs, loadgen, memory, procfs, procs, report, stats, suite  # noqa: E402

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
    """A Suite over direct, ringgate-uring and `target` at 2000/s with one round per (cpu, p99) of
    `target`: ringgate-uring's proxy CPU is 10 µs/req at saturation and 12 at 2000/s, p99 0.3 ms;
    `extra(i)` adds fields to target's runs in round i (e.g. status codes)."""
    s = suite.Suite(suite.Options(repo=Path("."), work_dir=Path("/nonexistent"),
                                  targets=["direct", "ringgate-uring", target], rates=[2000]), log=lambda _: None)

    def run(cpu_us, p99_ms, more=None):
        return {"rps": 1.0, "proxy_cpu_us_per_req": cpu_us, "p99_ms": p99_ms, "achieved_rps": 2000.0, **(more or {})}

    def rnd(i, cpu_t, p99_t):
        more = extra(i) if extra else {}
        return {"round": i, "saturation": {"direct": run(None, 0.2), "ringgate-uring": run(10.0, 0.3),
                                           target: run(cpu_t, 0.3, more.get("saturation"))},
                "latency": {"2000": {"direct": run(None, 0.2), "ringgate-uring": run(12.0, 0.30),
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
        self.assertEqual(suite.default_targets(tls=True), ["direct", "ringgate-tls", "nginx-tls"])
        self.assertEqual(suite.default_targets(), suite.DEFAULT_TARGETS)
        for t in ("ringgate-jwt", "ringgate-ratelimit"):
            self.assertIn(t, suite.ALL_TARGETS)

    def test_cli_flag(self):
        import bench
        self.assertTrue(bench.parse_args(["--ratelimit"]).ratelimit)
        self.assertFalse(bench.parse_args([]).ratelimit)

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


if __name__ == "__main__":
    unittest.main()
