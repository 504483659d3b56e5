"""Config rendering for the servers under test.

Everything listens on 127.0.0.1 only. nginx configs are self-contained under
their own prefix dir (pid, logs, temp paths), so nothing touches /etc/nginx,
/var/log/nginx or a system nginx.
"""
from __future__ import annotations

import base64
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

# "Never close" keep-alive for the fixed upstream and the client side of the proxies.
HUGE_REQUESTS = 1_000_000_000
LONG_TIMEOUT_S = 3600


def nofile_limit() -> int:
    """The hard RLIMIT_NOFILE this process (and so its children) can have."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def _nginx_common(prefix: Path, worker_connections: int) -> str:
    p = Path(prefix)
    nofile = nofile_limit()
    worker_connections = min(worker_connections, nofile - 100)
    return f"""\
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {p}/nginx.pid;
error_log {p}/logs/error.log warn;
events {{
    worker_connections {worker_connections};
}}
"""


def _nginx_http_common(prefix: Path) -> str:
    p = Path(prefix)
    return f"""\
    access_log off;
    client_body_temp_path {p}/tmp/client_body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    keepalive_requests {HUGE_REQUESTS};
    keepalive_timeout {LONG_TIMEOUT_S}s;
"""


# Files the upstream serves under /files/ (write_body_files), named by their size in bytes: the
# downloads of k6's bodies.js (DOWN_URL .../files/{bytes}.bin).
BODY_FILE_SIZES = (1024, 64 * 1024, 1024 * 1024)


def nginx_upstream(prefix: Path, port: int, body: str = "ok", worker_connections: int = 32768,
                   files_dir: Optional[Path] = None) -> str:
    """The fixed upstream: answers every request 200 with a tiny body, keep-alive never closed;
    with files_dir, GET /files/N.bin serves FILES_DIR/N.bin (see body_files_dir)."""
    files = "" if files_dir is None else f"""
        location /files/ {{
            default_type application/octet-stream;
            alias {Path(files_dir).resolve()}/;
        }}"""
    return _nginx_common(prefix, worker_connections) + f"""\
http {{
{_nginx_http_common(prefix)}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{body}";
        }}{files}
    }}
}}
"""


def body_files_dir(sizes: tuple = BODY_FILE_SIZES) -> Path:
    """A new world-readable temp dir of N.bin files, N bytes each (a repeated pattern), for the
    upstream's /files/. Its own dir, not under the harness's work dir: that one is private (0700,
    it holds keys) and nginx's workers run as an unprivileged user. The caller removes it."""
    d = Path(tempfile.mkdtemp(prefix="ringbench-files-"))
    d.chmod(0o755)
    for n in sizes:
        f = d / f"{n}.bin"
        f.write_bytes((b"ringgate-body-file-" * (n // 19 + 1))[:n])
        f.chmod(0o644)
    return d


def make_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for bench.test (openssl), shared by every TLS target."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "bench.crt", directory / "bench.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=bench.test",
                    "-addext", "subjectAltName=DNS:bench.test"], check=True, capture_output=True)
    return cert, key


# The JWT scenario (issue 5): ringgate-jwt's route "/" requires a token from this issuer with this scope.
JWT_POLICY = "bench"
JWT_ISSUER = "ringbench"
JWT_SCOPE = "bench:read"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_rs256(claims: dict, sign: Callable[[bytes], bytes]) -> str:
    """A compact RS256 JWT: base64url (no padding) header, claims and `sign("header.claims")`."""
    signing_input = ".".join(_b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in ({"alg": "RS256", "typ": "JWT"}, claims))
    return f"{signing_input}.{_b64url(sign(signing_input.encode()))}"


def make_jwt(directory: Path) -> tuple[Path, str]:
    """An RSA-2048 key (openssl) and a token signed with it, valid for a day, for ringgate-jwt:
    (public key PEM, token). `openssl dgst -sha256 -sign` with an RSA key is RSASSA-PKCS1-v1_5
    SHA-256, i.e. RS256."""
    directory = Path(directory).resolve()  # the config names the PEM by absolute path
    directory.mkdir(parents=True, exist_ok=True)
    key, pub = directory / "jwt.key", directory / "jwt.pub.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", str(key)], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True,
                   capture_output=True)

    def sign(data: bytes) -> bytes:
        return subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=data, check=True,
                              capture_output=True).stdout

    claims = {"sub": "bench-user", "iss": JWT_ISSUER, "scope": JWT_SCOPE, "exp": int(time.time()) + 86400}
    return pub, jwt_rs256(claims, sign)


# The rate-limit scenario (issue 6): ringgate-ratelimit's route "/" is under this policy, whose rate
# is far above any offered rate, so nothing is refused and the runs measure the cost of the check.
RATELIMIT_POLICY = "bench"
RATELIMIT_KEY = "client_ip"
RATELIMIT_RATE = "1000000/s"
RATELIMIT_BURST = 1_000_000


def nginx_proxy(prefix: Path, port: int, upstream_port: int, upstream_keepalive: int = 64,
                worker_connections: int = 32768, tls: Optional[tuple[Path, Path]] = None) -> str:
    """nginx as a reverse proxy with a keep-alive upstream pool (the usual tuned setup)."""
    return _nginx_common(prefix, worker_connections) + f"""\
http {{
{_nginx_http_common(prefix)}
    upstream backend {{
        server 127.0.0.1:{upstream_port};
        keepalive {upstream_keepalive};
        keepalive_requests {HUGE_REQUESTS};
        keepalive_timeout {LONG_TIMEOUT_S}s;
    }}
    server {{
        listen 127.0.0.1:{port}{" ssl" if tls else ""} backlog=4096;
{_nginx_tls(tls)}        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # Bodies stream through, as with ringgate and HAProxy, and never go to temp files:
            # the harness's work dir is private and nginx's workers run unprivileged, so a body
            # spilled to disk was a 500 (bodies.js sends up to 1 MiB each way).
            proxy_request_buffering off;
            proxy_max_temp_file_size 0;
            client_max_body_size 8m;
        }}
    }}
}}
"""


def _nginx_tls(tls: Optional[tuple[Path, Path]]) -> str:
    """TLS as an nginx operator sets it up: 1.2 and 1.3, session cache and tickets on."""
    if not tls:
        return ""
    cert, key = tls
    return f"""\
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;
        ssl_session_tickets on;
"""


def haproxy(port: int, upstream_port: int, pidfile: Path, maxconn: int = 12000) -> str:
    """HAProxy, one thread, server-side connection reuse always."""
    return f"""\
global
    nbthread 1
    maxconn {maxconn}
    # the fd limit may not be raisable here (no CAP_SYS_RESOURCE): warn instead of refusing to start;
    # idle client connections need one fd each, so 10k idle ones still fit a 20k limit
    no strict-limits
    pidfile {pidfile}

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 2s
    timeout client {LONG_TIMEOUT_S}s
    timeout server 30s
    timeout http-keep-alive {LONG_TIMEOUT_S}s

frontend fe
    bind 127.0.0.1:{port}
    default_backend be

backend be
    server up 127.0.0.1:{upstream_port}
"""


# The path the routes-scenario targets are loaded with: a parameterized route present in every
# table route_table_toml builds (route 1), deep in a big table's trie ("/svc1" shares its prefix
# with /svc13, /svc1001, ...).
ROUTED_PATH = "/svc1/users/12345/orders/987"


def route_fields(i: int) -> tuple[Optional[str], str, str]:
    """Route i of the synthetic table: (host, "path" | "prefix", pattern). The same mix as
    benches/route_table.rs: static paths, parameterized paths, prefixes on exact hosts, wildcard hosts."""
    k = i % 4
    if k == 0:
        return None, "path", f"/api/v{i % 3}/static{i}/list"
    if k == 1:
        return None, "path", f"/svc{i}/users/{{id}}/orders/{{order}}"
    if k == 2:
        return f"h{i}.example.com", "prefix", f"/assets{i}/"
    return f"*.t{i}.example.com", "path", "/x/{id}"


def route_table_toml(n: int, upstream: str = "bench", server_timing: bool = False) -> str:
    """n [[routes]] tables, the last a catch-all prefix "/" on any host (each with `server_timing = true`
    when asked)."""
    out = []
    for i in range(n):
        host, kind, pattern = (None, "prefix", "/") if i == n - 1 else route_fields(i)
        out.append("[[routes]]")
        if host:
            out.append(f'host = "{host}"')
        out += [f'{kind} = "{pattern}"', f'upstream = "{upstream}"'] + _server_timing(server_timing) + [""]
    return "\n".join(out)


def _server_timing(on: bool) -> list:
    """A route's `server_timing = true` line (Server-Timing: gw;dur=…, upstream;dur=… on its proxied
    responses, docs/observability.md: what the k6 scenarios read as gateway_added), or nothing."""
    return ["server_timing = true"] if on else []


def ringgate_toml(port: int, upstream_port: int, workers: int = 1, driver: Optional[str] = None,
                  max_idle_per_target: int = 64, bare: bool = False,
                  keepalive_timeout: str = f"{LONG_TIMEOUT_S}s", routes: int = 1,
                  tls: Optional[tuple[Path, Path]] = None, jwt_key: Optional[Path] = None,
                  rate_limit: bool = False, admin_port: Optional[int] = None,
                  access_log: Optional[Path] = None, metrics: bool = True,
                  server_timing: bool = False) -> str:
    """ringgate config (see docs/config.md): one listener, one upstream, route prefix "/"
    (or, with routes > 1, the synthetic table of that many routes, see route_table_toml).
    jwt_key (an RS256 public key PEM) puts route "/" behind the JWT policy JWT_POLICY (docs/auth.md).
    rate_limit=True puts route "/" under the rate-limit policy RATELIMIT_POLICY (docs/ratelimit.md).
    admin_port adds an [admin] listener on 127.0.0.1 (GET /metrics, /metrics/latency: docs/observability.md);
    access_log (a file) turns the JSON access log on. Metrics are on by default; metrics=False writes
    [metrics] enabled = false (the baseline that measures what metrics cost). server_timing=True sets
    `server_timing = true` on the route(s) (the k6 scenarios' gateway_added metric).

    bare=True switches off X-Forwarded-* and X-Request-Id, which nginx/haproxy
    as configured here do not add either.
    """
    lines = [f"workers = {workers}"]
    if driver:
        lines.append(f'driver = "{driver}"')
    lines += [
        "",
        "[[listeners]]",
        f'address = "127.0.0.1:{port}"',
        "backlog = 4096",
    ]
    if tls:
        lines.append(f'tls = {{ certificates = [{{ cert = "{tls[0]}", key = "{tls[1]}" }}] }}')
    lines += [
        "",
        "[limits]",
        f'keepalive_timeout = "{keepalive_timeout}"',
        f"max_requests_per_connection = {HUGE_REQUESTS}",
        "",
    ]
    if bare:
        lines += [
            "[forwarding]",
            "x_forwarded_for = false",
            "x_forwarded_proto = false",
            "x_forwarded_host = false",
            "request_id = false",
            "",
        ]
    if admin_port:
        lines += ["[admin]", f'address = "127.0.0.1:{admin_port}"', ""]
    if access_log:
        lines += ["[access_log]", f'path = "{access_log}"', 'format = "json"', ""]
    if not metrics:
        lines += ["[metrics]", "enabled = false", ""]
    lines += [
        "[[upstreams]]",
        'name = "bench"',
        f'targets = ["127.0.0.1:{upstream_port}"]',
        f"max_idle_per_target = {max_idle_per_target}",
        f'idle_timeout = "{LONG_TIMEOUT_S}s"',
        "",
    ]
    if jwt_key:
        lines += [
            "[[auth]]",
            f'name = "{JWT_POLICY}"',
            f'issuers = ["{JWT_ISSUER}"]',
            f'keys = [{{ algorithm = "RS256", pem_file = "{jwt_key}" }}]',
            "",
        ]
    if rate_limit:
        lines += [
            "[[rate_limits]]",
            f'name = "{RATELIMIT_POLICY}"',
            f'key = "{RATELIMIT_KEY}"',
            f'rate = "{RATELIMIT_RATE}"',
            f"burst = {RATELIMIT_BURST}",
            "",
        ]
    if routes > 1:
        if jwt_key or rate_limit:
            raise ValueError("the JWT and rate-limit scenarios use the one-route config")
        lines.append(route_table_toml(routes, server_timing=server_timing))
    else:
        lines += ["[[routes]]", 'prefix = "/"', 'upstream = "bench"'] + _server_timing(server_timing)
        if jwt_key:
            lines += [f'auth = "{JWT_POLICY}"', f'scopes = ["{JWT_SCOPE}"]']
        if rate_limit:
            lines.append(f'rate_limits = ["{RATELIMIT_POLICY}"]')
        lines.append("")
    return "\n".join(lines)
