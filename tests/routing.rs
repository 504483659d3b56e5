//! Routing as docs/routing.md and the `[[routes]]` section of docs/config.md specify it: which
//! virtual host (exact, wildcard, any), which path pattern (static bytes, `{param}`, `{*catch_all}`,
//! `prefix`, with backtracking), methods (405 + Allow, RFC 9110 §15.5.6), conditions on header
//! fields and query parameters, path normalization before matching (RFC 3986 §2.3, §5.2.4), the
//! actions (rewrite, header edits, respond, redirect) and the errors `ringgate check` reports at
//! load time.
//!
//! Routing does not depend on the I/O driver, so most tests run once under [`DRIVER`]; a few
//! representative ones run under both (the `both_drivers!` list at the end). Every request goes
//! on a new connection unless the test is about keep-alive, so a wrong answer to one request
//! cannot disturb the next, and a test reports all its wrong answers at once.

#[macro_use]
mod support;

use std::time::Duration;

use support::gateway::path_str;
use support::*;

/// The driver of the tests that run once.
const DRIVER: Driver = Driver::Epoll;

/// How long `ringgate check` may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// One request and what should answer it: (method, host, target, extra header fields, outcome).
/// The outcome is the name of the echo upstream that answered (see [`outcome`]) or, for an answer
/// of the gateway's own, its status code.
type Case<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

/// A route to the echo upstream `origin`, for tests whose other routes must not reach any upstream:
/// a request to `/origin` afterwards shows what `origin` received.
const ORIGIN: &str = r#"
[[routes]]
name = "origin"
path = "/origin"
upstream = "origin"
"#;

/// A gateway in front of echo upstreams. In most tests each upstream is named after the one route
/// that leads to it, so the `X-Upstream` field of an answer names the route that was taken.
struct Bed {
    gw: Gateway,
    ups: Vec<(String, TestUpstream)>,
}

impl Bed {
    /// Starts one echo upstream per name in `names` and a gateway with those `[[upstreams]]` and
    /// the raw `[[routes]]` tables in `routes`.
    fn start(driver: Driver, names: &[&str], routes: &str) -> Bed {
        let ups: Vec<(String, TestUpstream)> =
            names.iter().map(|&n| (n.to_string(), TestUpstream::named_echo(n))).collect();
        let refs: Vec<(&str, &TestUpstream)> = ups.iter().map(|(n, u)| (n.as_str(), u)).collect();
        let gw = start_gateway(driver, &refs, routes);
        Bed { gw, ups }
    }

    fn up(&self, name: &str) -> &TestUpstream {
        match self.ups.iter().find(|(n, _)| n == name) {
            Some((_, up)) => up,
            None => panic!("answered by upstream {name:?}, which this test did not start"),
        }
    }

    /// Sends one request (no body) on a new connection and reads the answer.
    fn ask(&self, method: &str, host: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        let mut fields = vec![("Host", host)];
        fields.extend_from_slice(headers);
        self.gw.client().request(&req(method, target, &fields, b""))
    }

    /// Sends every case and asserts each outcome; reports every wrong one at once.
    fn expect(&self, cases: &[Case<'_>]) {
        let mut wrong = Vec::new();
        for &(method, host, target, headers, want) in cases {
            let got = outcome(&self.ask(method, host, target, headers));
            if got != want {
                wrong.push(format!("{method} {target} (Host: {host}, fields {headers:?}): want {want}, got {got}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} requests answered wrong:\n  {}",
            wrong.len(),
            cases.len(),
            wrong.join("\n  ")
        );
    }

    /// `GET target` with each (host, outcome).
    fn expect_hosts(&self, target: &str, cases: &[(&str, &str)]) {
        let cases: Vec<Case<'_>> = cases.iter().map(|&(host, want)| ("GET", host, target, &[][..], want)).collect();
        self.expect(&cases);
    }

    /// `GET` with `Host: test.local` for each (target, outcome).
    fn expect_paths(&self, cases: &[(&str, &str)]) {
        let cases: Vec<Case<'_>> =
            cases.iter().map(|&(target, want)| ("GET", TEST_HOST, target, &[][..], want)).collect();
        self.expect(&cases);
    }

    /// The request that the echo upstream which answered `resp` received for it, found by the
    /// echo's `X-Upstream`, `X-Upstream-Conn` and `X-Upstream-Seq` fields; or why there is none.
    fn received(&self, resp: &Response) -> Result<Recorded, String> {
        if resp.status != 200 {
            return Err(format!("answered {} ({})", resp.status, resp.head_str().lines().next().unwrap_or("")));
        }
        let field = |name: &str| resp.header(name).ok_or_else(|| format!("no {name} field in {}", resp.head_str()));
        let number = |name: &str| -> Result<usize, String> {
            field(name)?.parse().map_err(|e| format!("{name}: {e} in {}", resp.head_str()))
        };
        let up = self.up(field("x-upstream")?);
        let (conn, seq) = (number("x-upstream-conn")?, number("x-upstream-seq")?);
        up.wait_requests(1, PROMPT)
            .into_iter()
            .find(|r| r.conn == conn && r.seq_on_conn == seq)
            .ok_or_else(|| format!("the upstream recorded no request {seq} on its connection {conn}"))
    }

    /// Sends `GET target` (Host test.local, plus `headers`) on a new connection and returns what
    /// the upstream received for it.
    fn forward(&self, target: &str, headers: &[(&str, &str)]) -> Recorded {
        let resp = self.ask("GET", TEST_HOST, target, headers);
        self.received(&resp).unwrap_or_else(|e| panic!("GET {target} was not proxied: {e}"))
    }

    /// For each (sent, expected): `GET sent` reached an upstream with the request target
    /// `expected`. Reports every wrong one at once.
    fn expect_forwarded(&self, cases: &[(&str, &str)]) {
        let mut wrong = Vec::new();
        for &(sent, want) in cases {
            match self.received(&self.ask("GET", TEST_HOST, sent, &[])) {
                Ok(r) if r.target == want => {}
                Ok(r) => wrong.push(format!("GET {sent}: the upstream saw {:?}, want {want:?}", r.target)),
                Err(e) => wrong.push(format!("GET {sent}: {e}; want it forwarded as {want:?}")),
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} requests forwarded wrong:\n  {}",
            wrong.len(),
            cases.len(),
            wrong.join("\n  ")
        );
    }

    /// The request targets `name` received so far, in order.
    fn targets(&self, name: &str) -> Vec<String> {
        self.up(name).requests().into_iter().map(|r| r.target).collect()
    }
}

/// Starts a gateway with one `[[upstreams]]` table per (name, upstream) and the raw `[[routes]]`
/// tables in `routes`.
fn start_gateway(driver: Driver, upstreams: &[(&str, &TestUpstream)], routes: &str) -> Gateway {
    let mut config = ConfigBuilder::new();
    for (name, up) in upstreams {
        config = config.upstream(name, &[up.addr()], "");
    }
    let mut text = config.render();
    text.push_str(routes);
    Gateway::start(&text, driver)
}

/// Who answered: the echo upstream's name (its `X-Upstream` field) for a proxied 200, else the
/// status code (the gateway's own answer).
fn outcome(resp: &Response) -> String {
    match resp.header("x-upstream") {
        Some(name) if resp.status == 200 => name.to_string(),
        _ => resp.status.to_string(),
    }
}

/// The methods of the `Allow` field (all its lines, RFC 9110 §10.2.1), sorted.
fn allowed(resp: &Response) -> Vec<String> {
    let mut methods = support::http::header_list(&resp.headers, "allow");
    methods.sort();
    methods
}

/// Runs `ringgate check` on a config with one upstream `api` (the built-in demo) and the raw
/// `[[routes]]` tables in `routes`; returns whether it passed and everything it printed.
fn check(routes: &str) -> (bool, String) {
    let mut config = ConfigBuilder::new().upstream_raw("api", &["builtin:demo"], "").render();
    config.push_str(routes);
    let file = TempFile::new("routing-check", "toml", &config);
    let out = run_cli(&["check", path_str(&file.path)], CLI_TIMEOUT);
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    (out.status.success(), printed)
}

fn assert_accepted(routes: &str) {
    let (ok, printed) = check(routes);
    assert!(ok, "`ringgate check` refused these routes:\n{routes}\nit said:\n{printed}");
}

/// `ringgate check` refuses `routes`, and one line of what it printed mentions every one of
/// `mentions` (errors are printed one per line, docs/config.md).
fn assert_refused(routes: &str, mentions: &[&str]) {
    let (ok, printed) = check(routes);
    assert!(!ok, "`ringgate check` accepted these routes:\n{routes}\nit said:\n{printed}");
    assert!(
        printed.lines().any(|l| mentions.iter().all(|m| l.contains(m))),
        "no line of the refusal mentions all of {mentions:?}:\n{printed}"
    );
}

// ---------------------------------------------------------------------------------------------
// Which virtual host
// ---------------------------------------------------------------------------------------------

/// docs/routing.md "Which virtual host": routes whose `host` equals the request's host are searched
/// first, else wildcard hosts, else routes with no `host`. A subdomain of an exact host is not that
/// host, and the bare suffix of a wildcard is not matched by it. File order plays no part (the
/// any-host route comes first in the file).
fn host_exact_beats_wildcard_beats_any(driver: Driver) {
    let bed = Bed::start(
        driver,
        &["any", "wild", "exact"],
        r#"
        [[routes]]
        name = "any"
        prefix = "/"
        upstream = "any"

        [[routes]]
        name = "wild"
        host = "*.example.com"
        prefix = "/"
        upstream = "wild"

        [[routes]]
        name = "exact"
        host = "api.example.com"
        prefix = "/"
        upstream = "exact"
        "#,
    );
    bed.expect_hosts(
        "/x",
        &[
            ("api.example.com", "exact"),
            ("www.example.com", "wild"),
            ("v2.api.example.com", "wild"),
            ("other.test", "any"),
            ("example.com", "any"),
        ],
    );
}

/// Wildcard hosts are tried longest suffix first (`*.b.example.com` before `*.example.com`,
/// whatever the file order); a wildcard matches subdomains at any depth, only at a label boundary
/// (`xb.example.com` does not end with `.b.example.com`), and never its bare suffix: `b.example.com`
/// is a subdomain of `*.example.com`, not of `*.b.example.com`. With no any-host route, a host no
/// wildcard covers gets 404.
#[test]
fn wildcard_longest_suffix_first() {
    let bed = Bed::start(
        DRIVER,
        &["shallow", "deep"],
        r#"
        [[routes]]
        name = "shallow"
        host = "*.example.com"
        prefix = "/"
        upstream = "shallow"

        [[routes]]
        name = "deep"
        host = "*.b.example.com"
        prefix = "/"
        upstream = "deep"
        "#,
    );
    bed.expect_hosts(
        "/",
        &[
            ("x.b.example.com", "deep"),
            ("y.x.b.example.com", "deep"),
            ("b.example.com", "shallow"),
            ("xb.example.com", "shallow"),
            ("a.example.com", "shallow"),
            ("a.c.example.com", "shallow"),
            ("example.com", "404"),
            ("example.org", "404"),
        ],
    );
}

/// A wildcard `*.example.com` matches any subdomain but never `example.com` itself
/// (docs/config.md: "not example.com itself"); that host goes to the any-host routes.
#[test]
fn wildcard_does_not_match_bare_suffix() {
    let bed = Bed::start(
        DRIVER,
        &["wild", "any"],
        r#"
        [[routes]]
        name = "wild"
        host = "*.example.com"
        prefix = "/"
        upstream = "wild"

        [[routes]]
        name = "any"
        prefix = "/"
        upstream = "any"
        "#,
    );
    bed.expect_hosts(
        "/",
        &[("example.com", "any"), ("EXAMPLE.com.", "any"), ("www.example.com", "wild"), ("notexample.com", "any")],
    );
}

/// The request's port, letter case (host names are case-insensitive, RFC 9110 §4.2.3, RFC 3986
/// §3.2.2) and one trailing dot (a fully qualified name, RFC 1034 §3.1) are ignored when choosing
/// the virtual host, for exact and wildcard hosts alike.
#[test]
fn host_port_case_and_trailing_dot_ignored() {
    let bed = Bed::start(
        DRIVER,
        &["exact", "wild", "any"],
        r#"
        [[routes]]
        name = "exact"
        host = "api.example.com"
        prefix = "/"
        upstream = "exact"

        [[routes]]
        name = "wild"
        host = "*.example.org"
        prefix = "/"
        upstream = "wild"

        [[routes]]
        name = "any"
        prefix = "/"
        upstream = "any"
        "#,
    );
    bed.expect_hosts(
        "/",
        &[
            ("api.example.com", "exact"),
            ("API.Example.COM", "exact"),
            ("api.example.com:8080", "exact"),
            ("api.example.com.", "exact"),
            ("Api.Example.Com.:443", "exact"),
            ("www.example.org", "wild"),
            ("WWW.Example.ORG.", "wild"),
            ("www.example.org:8443", "wild"),
            ("api.example.co", "any"),
        ],
    );
}

/// A host with its own routes never falls through to another set (as nginx's `server_name` and
/// Envoy's virtual hosts): a path its routes do not cover is 404 even though the any-host routes
/// would take it; the same holds for a wildcard host.
#[test]
fn host_with_own_routes_does_not_fall_through() {
    let bed = Bed::start(
        DRIVER,
        &["exact", "wild", "any"],
        r#"
        [[routes]]
        name = "exact"
        host = "api.example.com"
        prefix = "/v1/"
        upstream = "exact"

        [[routes]]
        name = "wild"
        host = "*.example.com"
        path = "/w/{*rest}"
        upstream = "wild"

        [[routes]]
        name = "any"
        prefix = "/"
        upstream = "any"
        "#,
    );
    let cases: &[Case<'_>] = &[
        ("GET", "api.example.com", "/v1/users", &[], "exact"),
        ("GET", "api.example.com", "/other", &[], "404"),
        ("GET", "api.example.com", "/w/x", &[], "404"),
        ("GET", "www.example.com", "/w/x", &[], "wild"),
        ("GET", "www.example.com", "/v1/users", &[], "404"),
        ("GET", "other.test", "/other", &[], "any"),
    ];
    bed.expect(cases);
    assert_eq!(bed.targets("any"), ["/other"], "only the any-host request may reach the any-host route");
}

/// No route set for the host (no exact, no wildcard, no any-host routes): 404, nothing forwarded.
#[test]
fn no_virtual_host_is_404() {
    let bed = Bed::start(
        DRIVER,
        &["exact", "wild"],
        r#"
        [[routes]]
        name = "exact"
        host = "api.example.com"
        prefix = "/"
        upstream = "exact"

        [[routes]]
        name = "wild"
        host = "*.api.example.com"
        prefix = "/"
        upstream = "wild"
        "#,
    );
    bed.expect_hosts(
        "/",
        &[("other.test", "404"), ("example.com", "404"), ("api.example.org", "404"), ("api.example.com", "exact")],
    );
    assert_eq!(bed.targets("exact"), ["/"]);
    assert!(bed.targets("wild").is_empty());
}

/// The host may come from the authority of an absolute-form target (RFC 9112 §3.2.2; ringgate
/// uses it when an HTTP/1.0 request has no Host): `http://api.example.com:8080/x` selects the
/// `api.example.com` routes, and the upstream gets the origin-form target.
#[test]
fn absolute_form_authority_selects_host() {
    let bed = Bed::start(
        DRIVER,
        &["exact", "any"],
        r#"
        [[routes]]
        name = "exact"
        host = "api.example.com"
        prefix = "/"
        upstream = "exact"

        [[routes]]
        name = "any"
        prefix = "/"
        upstream = "any"
        "#,
    );
    let resp = bed.gw.client().request(b"GET http://api.example.com:8080/x?y=1 HTTP/1.0\r\n\r\n");
    assert_eq!(outcome(&resp), "exact", "{}", resp.head_str());
    let seen = bed.received(&resp).unwrap_or_else(|e| panic!("not proxied: {e}"));
    assert_eq!(seen.target, "/x?y=1");
}

// ---------------------------------------------------------------------------------------------
// Which path
// ---------------------------------------------------------------------------------------------

/// `path = "/users/me"` matches exactly that path: not with a trailing slash, not a longer or
/// shorter one, and not in another letter case (paths are case-sensitive, RFC 3986 §6.2.2.1). The
/// query is not part of the path.
#[test]
fn exact_path_matches_only_that_path() {
    let bed = Bed::start(
        DRIVER,
        &["me"],
        r#"
        [[routes]]
        name = "me"
        path = "/users/me"
        upstream = "me"
        "#,
    );
    bed.expect_paths(&[
        ("/users/me", "me"),
        ("/users/me?x=1", "me"),
        ("/users/me/", "404"),
        ("/users/mex", "404"),
        ("/users/m", "404"),
        ("/users", "404"),
        ("/Users/me", "404"),
    ]);
}

/// `{id}` matches one whole, non-empty segment: never an empty one, never across a `/`.
#[test]
fn param_matches_one_nonempty_segment() {
    let bed = Bed::start(
        DRIVER,
        &["user"],
        r#"
        [[routes]]
        name = "user"
        path = "/users/{id}"
        upstream = "user"
        "#,
    );
    bed.expect_paths(&[
        ("/users/42", "user"),
        ("/users/abc-def.x", "user"),
        ("/users/a%20b", "user"),
        ("/users/42?x=/y", "user"),
        ("/users/", "404"),
        ("/users", "404"),
        ("/users/42/", "404"),
        ("/users/4/2", "404"),
        ("/users//", "404"),
    ]);
    bed.expect_forwarded(&[("/users/42?x=/y", "/users/42?x=/y")]);
}

/// `path = "/static/{*rest}"` matches `/static/` followed by anything, possibly nothing; not
/// `/static` (the `/` before the catch-all is part of the pattern).
#[test]
fn catch_all_matches_any_rest_including_empty() {
    let bed = Bed::start(
        DRIVER,
        &["static"],
        r#"
        [[routes]]
        name = "static"
        path = "/static/{*rest}"
        upstream = "static"
        "#,
    );
    bed.expect_paths(&[
        ("/static/", "static"),
        ("/static/a", "static"),
        ("/static/a/b/c.css", "static"),
        ("/static//x/", "static"),
        ("/static", "404"),
        ("/staticx", "404"),
        ("/stat", "404"),
    ]);
    bed.expect_forwarded(&[("/static/", "/static/"), ("/static/a/b/c.css", "/static/a/b/c.css")]);
}

/// `prefix = "/api"` matches any path starting with those bytes: `/api`, `/api/x` and `/apix` alike
/// (a byte prefix, not a segment prefix); nothing shorter or in another case.
#[test]
fn prefix_matches_bytes() {
    let bed = Bed::start(
        DRIVER,
        &["api"],
        r#"
        [[routes]]
        name = "api"
        prefix = "/api"
        upstream = "api"
        "#,
    );
    bed.expect_paths(&[
        ("/api", "api"),
        ("/api/", "api"),
        ("/api/x/y", "api"),
        ("/apix", "api"),
        ("/api?q=1", "api"),
        ("/ap", "404"),
        ("/", "404"),
        ("/API", "404"),
    ]);
}

/// At one position the trie tries a static byte before a parameter before a catch-all, so the
/// most specific route wins whatever the file order (here the least specific comes first):
/// `/users/me` is the static route, `/users/42` and `/users/mex` the parameter route (a static
/// branch that runs out falls back), deeper paths and `/users/` the catch-all.
fn static_before_param_before_catch_all(driver: Driver) {
    let bed = Bed::start(
        driver,
        &["catch", "param", "static"],
        r#"
        [[routes]]
        name = "catch"
        path = "/users/{*rest}"
        upstream = "catch"

        [[routes]]
        name = "param"
        path = "/users/{id}"
        upstream = "param"

        [[routes]]
        name = "static"
        path = "/users/me"
        upstream = "static"
        "#,
    );
    bed.expect_paths(&[
        ("/users/me", "static"),
        ("/users/42", "param"),
        ("/users/mex", "param"),
        ("/users/m", "param"),
        ("/users/me/x", "catch"),
        ("/users/42/x", "catch"),
        ("/users/", "catch"),
        ("/users", "404"),
    ]);
}

/// Backtracking: when the more specific branch finds no route further on, the trie falls back to
/// the parameter, then to the catch-all. Routes `/users/me/x`, `/users/{id}/x`, `/users/{*rest}`:
/// `/users/mex/x` leaves the static branch inside a segment and is taken by the parameter route;
/// `/users/me/y` fails both the static and the parameter route and ends in the catch-all.
#[test]
fn backtracks_static_to_param_to_catch_all() {
    let bed = Bed::start(
        DRIVER,
        &["static", "param", "catch"],
        r#"
        [[routes]]
        name = "static"
        path = "/users/me/x"
        upstream = "static"

        [[routes]]
        name = "param"
        path = "/users/{id}/x"
        upstream = "param"

        [[routes]]
        name = "catch"
        path = "/users/{*rest}"
        upstream = "catch"
        "#,
    );
    bed.expect_paths(&[
        ("/users/me/x", "static"),
        ("/users/you/x", "param"),
        ("/users/mex/x", "param"),
        ("/users/m/x", "param"),
        ("/users/me/y", "catch"),
        ("/users/you/y", "catch"),
        ("/users/me/x/y", "catch"),
        ("/users/me", "catch"),
    ]);
}

/// Backtracking after a whole static segment matched: with `/users/me/settings` and
/// `/users/{id}/x`, the path `/users/me/x` matches the static `me` segment, finds no route under
/// it, and is taken by the parameter route with `id = me`.
#[test]
fn backtracks_after_whole_static_segment() {
    let bed = Bed::start(
        DRIVER,
        &["static", "param", "catch"],
        r#"
        [[routes]]
        name = "static"
        path = "/users/me/settings"
        upstream = "static"

        [[routes]]
        name = "param"
        path = "/users/{id}/x"
        upstream = "param"

        [[routes]]
        name = "catch"
        path = "/users/{*rest}"
        upstream = "catch"
        "#,
    );
    bed.expect_paths(&[
        ("/users/me/settings", "static"),
        ("/users/me/x", "param"),
        ("/users/me/s", "catch"),
        ("/users/me/settings/z", "catch"),
    ]);
}

/// A prefix counts as a catch-all at the position where it ends, so a parameter beats it there:
/// `/users/7` is the `{id}` route, `/users/7/x` and `/users/` the `prefix = "/users/"` route.
#[test]
fn param_beats_prefix_at_same_position() {
    let bed = Bed::start(
        DRIVER,
        &["prefix", "param"],
        r#"
        [[routes]]
        name = "prefix"
        prefix = "/users/"
        upstream = "prefix"

        [[routes]]
        name = "param"
        path = "/users/{id}"
        upstream = "param"
        "#,
    );
    bed.expect_paths(&[("/users/7", "param"), ("/users/7/x", "prefix"), ("/users/", "prefix"), ("/users", "404")]);
}

/// Among prefixes, the longest that matches wins, whatever the file order.
#[test]
fn longest_prefix_wins() {
    let bed = Bed::start(
        DRIVER,
        &["api", "root", "v2"],
        r#"
        [[routes]]
        name = "api"
        prefix = "/api"
        upstream = "api"

        [[routes]]
        name = "root"
        prefix = "/"
        upstream = "root"

        [[routes]]
        name = "v2"
        prefix = "/api/v2"
        upstream = "v2"
        "#,
    );
    bed.expect_paths(&[
        ("/api/v2/items", "v2"),
        ("/api/v2", "v2"),
        ("/api/v20", "v2"),
        ("/api/v1", "api"),
        ("/api/v", "api"),
        ("/apiary", "api"),
        ("/api", "api"),
        ("/x", "root"),
        ("/", "root"),
    ]);
}

/// An exact path (`/static/`) beats a catch-all that matches the same path with an empty
/// remainder (`/static/{*rest}`).
#[test]
fn exact_path_beats_catch_all_with_empty_rest() {
    let bed = Bed::start(
        DRIVER,
        &["catch", "exact"],
        r#"
        [[routes]]
        name = "catch"
        path = "/static/{*rest}"
        upstream = "catch"

        [[routes]]
        name = "exact"
        path = "/static/"
        upstream = "exact"
        "#,
    );
    bed.expect_paths(&[
        ("/static/", "exact"),
        ("/static/?v=1", "exact"),
        ("/static/a", "catch"),
        ("/static/a/", "catch"),
    ]);
}

/// A prefix route and a catch-all ending at the same place are the same pattern, so they may
/// share it with disjoint methods: PUT goes to the prefix route, POST to the catch-all, and a
/// method neither has gets 405 with both routes' methods in Allow (RFC 9110 §15.5.6).
#[test]
fn prefix_and_catch_all_are_one_pattern() {
    let bed = Bed::start(
        DRIVER,
        &["pre", "catch"],
        r#"
        [[routes]]
        name = "pre"
        prefix = "/static/"
        methods = ["PUT"]
        upstream = "pre"

        [[routes]]
        name = "catch"
        path = "/static/{*rest}"
        methods = ["POST"]
        upstream = "catch"
        "#,
    );
    let cases: &[Case<'_>] = &[
        ("PUT", TEST_HOST, "/static/x", &[], "pre"),
        ("POST", TEST_HOST, "/static/x", &[], "catch"),
        ("POST", TEST_HOST, "/static/", &[], "catch"),
        ("DELETE", TEST_HOST, "/static/x", &[], "405"),
    ];
    bed.expect(cases);
    let resp = bed.ask("DELETE", TEST_HOST, "/static/x", &[]);
    assert_eq!(allowed(&resp), ["POST", "PUT"], "{}", resp.head_str());
}

// ---------------------------------------------------------------------------------------------
// Methods and conditions
// ---------------------------------------------------------------------------------------------

/// A request whose path matched one or more routes but no method gets 405 with an `Allow` field
/// listing exactly the methods of those routes (RFC 9110 §15.5.6, §10.2.1), and reaches no
/// upstream; each method goes to its own route.
fn method_mismatch_is_405_with_allow(driver: Driver) {
    let bed = Bed::start(
        driver,
        &["read", "write", "create"],
        r#"
        [[routes]]
        name = "read"
        path = "/items/{id}"
        methods = ["GET", "HEAD"]
        upstream = "read"

        [[routes]]
        name = "write"
        path = "/items/{id}"
        methods = ["PUT", "DELETE"]
        upstream = "write"

        [[routes]]
        name = "create"
        path = "/items"
        methods = ["POST"]
        upstream = "create"
        "#,
    );
    let item_methods = ["DELETE", "GET", "HEAD", "PUT"];
    let cases: [(&str, &str, &[&str]); 4] = [
        ("POST", "/items/1", &item_methods),
        ("PATCH", "/items/1", &item_methods),
        ("GET", "/items", &["POST"]),
        ("DELETE", "/items", &["POST"]),
    ];
    for (method, target, allow) in cases {
        let resp = bed.ask(method, TEST_HOST, target, &[]);
        assert_eq!(resp.status, 405, "{method} {target}: {}", resp.head_str());
        assert_eq!(allowed(&resp), allow, "{method} {target}: Allow of {}", resp.head_str());
    }
    let cases: &[Case<'_>] = &[
        ("GET", TEST_HOST, "/items/1", &[], "read"),
        ("HEAD", TEST_HOST, "/items/1", &[], "read"),
        ("PUT", TEST_HOST, "/items/1", &[], "write"),
        ("DELETE", TEST_HOST, "/items/1", &[], "write"),
        ("POST", TEST_HOST, "/items", &[], "create"),
    ];
    bed.expect(cases);
    assert_eq!(bed.targets("read").len(), 2, "a 405 reached the upstream: {:?}", bed.targets("read"));
    assert_eq!(bed.targets("write").len(), 2, "a 405 reached the upstream: {:?}", bed.targets("write"));
    assert_eq!(bed.targets("create").len(), 1, "a 405 reached the upstream: {:?}", bed.targets("create"));
}

/// No route's path matches: 404 (RFC 9110 §15.5.5) without an `Allow` field, whatever the method
/// and even when another path has routes for it.
#[test]
fn no_path_match_is_404_without_allow() {
    let bed = Bed::start(
        DRIVER,
        &["read"],
        r#"
        [[routes]]
        name = "read"
        path = "/items/{id}"
        methods = ["GET", "HEAD"]
        upstream = "read"
        "#,
    );
    for (method, target) in [("GET", "/items"), ("POST", "/items/1/x"), ("GET", "/other"), ("DELETE", "/")] {
        let resp = bed.ask(method, TEST_HOST, target, &[]);
        assert_eq!(resp.status, 404, "{method} {target}: {}", resp.head_str());
        assert_eq!(resp.header("allow"), None, "{method} {target}: {}", resp.head_str());
    }
    assert!(bed.targets("read").is_empty());
}

/// A route whose methods include GET also answers HEAD (RFC 9110 §9.3.2: HEAD is GET without the
/// body), unless a route of the same pattern names HEAD itself, which then takes it; a 405's
/// Allow lists HEAD wherever GET is (RFC 9110 §10.2.1: the methods the resource supports).
/// The gateway's rule (router `MethodFit::HeadViaGet`); docs/routing.md does not state it yet.
#[test]
fn get_route_answers_head() {
    let bed = Bed::start(
        DRIVER,
        &["page", "probe", "probe-head"],
        r#"
        [[routes]]
        name = "page"
        path = "/page"
        methods = ["GET"]
        upstream = "page"

        [[routes]]
        name = "probe"
        path = "/probe"
        methods = ["GET"]
        upstream = "probe"

        [[routes]]
        name = "probe-head"
        path = "/probe"
        methods = ["HEAD"]
        upstream = "probe-head"
        "#,
    );
    let cases: &[Case<'_>] = &[
        ("GET", TEST_HOST, "/page", &[], "page"),
        ("HEAD", TEST_HOST, "/page", &[], "page"),
        ("GET", TEST_HOST, "/probe", &[], "probe"),
        ("HEAD", TEST_HOST, "/probe", &[], "probe-head"),
        ("POST", TEST_HOST, "/page", &[], "405"),
    ];
    bed.expect(cases);
    let resp = bed.ask("POST", TEST_HOST, "/page", &[]);
    assert_eq!(allowed(&resp), ["GET", "HEAD"], "{}", resp.head_str());
}

/// A branch "finds no route" when none of its routes has both its method and its conditions
/// matching, and the trie then falls back to less specific patterns (docs "Which path", "Methods
/// and conditions"): POST `/items/1` passes the GET-only `{id}` route and is taken by the POST
/// catch-all; `/items/special` without its header falls back to `{id}`. Only when no pattern takes
/// the request is it 405, and Allow lists the methods of every route whose path matched.
#[test]
fn method_or_condition_miss_falls_back_to_less_specific_pattern() {
    let bed = Bed::start(
        DRIVER,
        &["read", "catch", "special"],
        r#"
        [[routes]]
        name = "read"
        path = "/items/{id}"
        methods = ["GET"]
        upstream = "read"

        [[routes]]
        name = "catch"
        path = "/items/{*rest}"
        methods = ["POST"]
        upstream = "catch"

        [[routes]]
        name = "special"
        path = "/items/special"
        match_headers = [{ name = "x-special" }]
        upstream = "special"
        "#,
    );
    let cases: &[Case<'_>] = &[
        ("GET", TEST_HOST, "/items/1", &[], "read"),
        ("POST", TEST_HOST, "/items/1", &[], "catch"),
        ("GET", TEST_HOST, "/items/special", &[], "read"),
        ("GET", TEST_HOST, "/items/special", &[("X-Special", "1")], "special"),
        ("POST", TEST_HOST, "/items/special", &[], "catch"),
        ("DELETE", TEST_HOST, "/items/1", &[], "405"),
    ];
    bed.expect(cases);
    let resp = bed.ask("DELETE", TEST_HOST, "/items/1", &[]);
    assert_eq!(allowed(&resp), ["GET", "HEAD", "POST"], "{}", resp.head_str());
}

/// A route without `methods` takes any method, standard or not.
#[test]
fn route_without_methods_takes_any_method() {
    let bed = Bed::start(
        DRIVER,
        &["any"],
        r#"
        [[routes]]
        name = "any"
        path = "/any"
        upstream = "any"
        "#,
    );
    let cases: Vec<Case<'_>> = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"]
        .iter()
        .map(|&m| (m, TEST_HOST, "/any", &[][..], "any"))
        .collect();
    bed.expect(&cases);
}

/// `match_headers` with a value: the route is taken only when a field of that name (names are
/// case-insensitive, RFC 9110 §5.1) has exactly that value; otherwise the request falls back to
/// the route of the same pattern without conditions (which comes first in the file).
#[test]
fn match_header_value() {
    let bed = Bed::start(
        DRIVER,
        &["plain", "v2"],
        r#"
        [[routes]]
        name = "plain"
        path = "/c"
        upstream = "plain"

        [[routes]]
        name = "v2"
        path = "/c"
        match_headers = [{ name = "x-version", value = "2" }]
        upstream = "v2"
        "#,
    );
    let cases: &[Case<'_>] = &[
        ("GET", TEST_HOST, "/c", &[], "plain"),
        ("GET", TEST_HOST, "/c", &[("X-Version", "2")], "v2"),
        ("GET", TEST_HOST, "/c", &[("x-VERSION", "2")], "v2"),
        ("GET", TEST_HOST, "/c", &[("X-Version", "3")], "plain"),
        ("GET", TEST_HOST, "/c", &[("X-Version", "22")], "plain"),
        ("GET", TEST_HOST, "/c", &[("X-Versions", "2")], "plain"),
        ("GET", TEST_HOST, "/c?x-version=2", &[], "plain"),
    ];
    bed.expect(cases);
}

/// `match_headers` without a value: the field must be present, with any value (even empty).
#[test]
fn match_header_presence() {
    let bed = Bed::start(
        DRIVER,
        &["plain", "beta"],
        r#"
        [[routes]]
        name = "plain"
        path = "/c"
        upstream = "plain"

        [[routes]]
        name = "beta"
        path = "/c"
        match_headers = [{ name = "x-beta" }]
        upstream = "beta"
        "#,
    );
    let cases: &[Case<'_>] = &[
        ("GET", TEST_HOST, "/c", &[], "plain"),
        ("GET", TEST_HOST, "/c", &[("X-Beta", "1")], "beta"),
        ("GET", TEST_HOST, "/c", &[("x-beta", "anything at all")], "beta"),
        ("GET", TEST_HOST, "/c", &[("X-Beta", "")], "beta"),
        ("GET", TEST_HOST, "/c", &[("X-Betamax", "1")], "plain"),
        ("GET", TEST_HOST, "/c?x-beta", &[], "plain"),
    ];
    bed.expect(cases);
}

/// `match_query` with a value: a query parameter of that name with exactly that value, compared
/// as raw bytes without decoding (docs/config.md), so `v=%32` is not `v=2`; the name must be a
/// whole parameter name.
#[test]
fn match_query_value() {
    let bed = Bed::start(
        DRIVER,
        &["plain", "v2"],
        r#"
        [[routes]]
        name = "plain"
        path = "/q"
        upstream = "plain"

        [[routes]]
        name = "v2"
        path = "/q"
        match_query = [{ name = "v", value = "2" }]
        upstream = "v2"
        "#,
    );
    bed.expect_paths(&[
        ("/q", "plain"),
        ("/q?v=2", "v2"),
        ("/q?a=1&v=2", "v2"),
        ("/q?v=2&a=1", "v2"),
        ("/q?v=3", "plain"),
        ("/q?v=22", "plain"),
        ("/q?v=%32", "plain"),
        ("/q?vv=2", "plain"),
        ("/q?xv=2", "plain"),
        ("/q?a=v=2", "plain"),
    ]);
}

/// `match_query` without a value: a parameter of that name must be present (`?debug`,
/// `?debug=`, `?debug=1`); a longer name or the name as a value does not count.
#[test]
fn match_query_presence() {
    let bed = Bed::start(
        DRIVER,
        &["plain", "debug"],
        r#"
        [[routes]]
        name = "plain"
        path = "/q"
        upstream = "plain"

        [[routes]]
        name = "debug"
        path = "/q"
        match_query = [{ name = "debug" }]
        upstream = "debug"
        "#,
    );
    bed.expect_paths(&[
        ("/q?debug", "debug"),
        ("/q?debug=", "debug"),
        ("/q?debug=1", "debug"),
        ("/q?a=1&debug", "debug"),
        ("/q", "plain"),
        ("/q?", "plain"),
        ("/q?debugger=1", "plain"),
        ("/q?xdebug", "plain"),
        ("/q?a=debug", "plain"),
    ]);
}

/// Routes with the same host and pattern are tried by their number of conditions, more first,
/// whatever the file order: a request meeting two conditions takes the two-condition route, one
/// meeting one of them the one-condition route, else the route without conditions.
#[test]
fn more_conditions_win() {
    let bed = Bed::start(
        DRIVER,
        &["one", "zero", "two"],
        r#"
        [[routes]]
        name = "one"
        path = "/m"
        match_headers = [{ name = "x-a", value = "1" }]
        upstream = "one"

        [[routes]]
        name = "zero"
        path = "/m"
        upstream = "zero"

        [[routes]]
        name = "two"
        path = "/m"
        match_headers = [{ name = "x-a", value = "1" }]
        match_query = [{ name = "b" }]
        upstream = "two"
        "#,
    );
    let cases: &[Case<'_>] = &[
        ("GET", TEST_HOST, "/m?b", &[("X-A", "1")], "two"),
        ("GET", TEST_HOST, "/m", &[("X-A", "1")], "one"),
        ("GET", TEST_HOST, "/m?b", &[], "zero"),
        ("GET", TEST_HOST, "/m", &[], "zero"),
    ];
    bed.expect(cases);
}

/// A route is taken only when all its conditions hold; when one fails, the request falls back to
/// the next route of the pattern.
#[test]
fn falls_back_when_a_condition_fails() {
    let bed = Bed::start(
        DRIVER,
        &["both", "fallback"],
        r#"
        [[routes]]
        name = "both"
        path = "/f"
        match_headers = [{ name = "x-tenant", value = "acme" }, { name = "x-beta" }]
        upstream = "both"

        [[routes]]
        name = "fallback"
        path = "/f"
        upstream = "fallback"
        "#,
    );
    let cases: &[Case<'_>] = &[
        ("GET", TEST_HOST, "/f", &[("X-Tenant", "acme"), ("X-Beta", "1")], "both"),
        ("GET", TEST_HOST, "/f", &[("X-Tenant", "acme")], "fallback"),
        ("GET", TEST_HOST, "/f", &[("X-Beta", "1")], "fallback"),
        ("GET", TEST_HOST, "/f", &[("X-Tenant", "other"), ("X-Beta", "1")], "fallback"),
        ("GET", TEST_HOST, "/f", &[], "fallback"),
    ];
    bed.expect(cases);
}

// ---------------------------------------------------------------------------------------------
// Normalization
// ---------------------------------------------------------------------------------------------

/// Percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`, either hex case) are decoded
/// before matching (RFC 3986 §2.3, §6.2.2.2), and the upstream gets the decoded path:
/// `/%75sers/1` matches `/users/{id}` and is forwarded as `/users/1`. `%55` is `U`, and paths are
/// case-sensitive, so `/%55sers/1` matches nothing.
fn unreserved_escapes_decoded_before_matching(driver: Driver) {
    let bed = Bed::start(
        driver,
        &["users"],
        r#"
        [[routes]]
        name = "users"
        path = "/users/{id}"
        upstream = "users"
        "#,
    );
    bed.expect_forwarded(&[
        ("/%75sers/1", "/users/1"),
        ("/%75%73%65%72%73/abc", "/users/abc"),
        ("/users/%31%32", "/users/12"),
        ("/users/a%7eb", "/users/a~b"),
        ("/users/a%7Eb", "/users/a~b"),
        ("/users/%2D%2e%5F%7e%41z", "/users/-._~Az"),
        ("/%75sers/1?%75=1", "/users/1?%75=1"),
    ]);
    bed.expect_paths(&[("/%55sers/1", "404")]);
}

/// Escapes of anything but unreserved characters stay as they are, hex case included (docs
/// "Other escapes stay as they are"): a space, reserved characters (RFC 3986 §2.2), UTF-8 bytes,
/// an escaped `%` (never decoded twice: `%2541` is not `A`), and encoded `?` and `#`.
#[test]
fn other_escapes_are_kept() {
    let bed = Bed::start(
        DRIVER,
        &["files"],
        r#"
        [[routes]]
        name = "files"
        prefix = "/files/"
        upstream = "files"
        "#,
    );
    bed.expect_forwarded(&[
        ("/files/a%20b", "/files/a%20b"),
        ("/files/%3A%40%21%24%26", "/files/%3A%40%21%24%26"),
        ("/files/%2c%3b", "/files/%2c%3b"),
        ("/files/caf%C3%A9", "/files/caf%C3%A9"),
        ("/files/%2541", "/files/%2541"),
        ("/files/%3F%23", "/files/%3F%23"),
        ("/files/%41%20", "/files/A%20"),
    ]);
}

/// Dot-segments are removed (RFC 3986 §5.2.4) before matching and in what is sent upstream:
/// `/a/./b/../c` → `/a/c`; a final `.` or `..` leaves the trailing slash. Segments that merely
/// contain dots are not dot-segments.
#[test]
fn dot_segments_removed() {
    let bed = Bed::start(
        DRIVER,
        &["root"],
        r#"
        [[routes]]
        name = "root"
        prefix = "/"
        upstream = "root"
        "#,
    );
    bed.expect_forwarded(&[
        ("/a/./b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/./a", "/a"),
        ("/a/b/../../c", "/c"),
        ("/a/..b/c.", "/a/..b/c."),
        ("/a/.../b", "/a/.../b"),
        ("/a/.b/", "/a/.b/"),
    ]);
}

/// Escaped dots are unreserved, so they are decoded first (RFC 3986 §2.3) and the result is
/// removed as a dot-segment (§5.2.4): `/a/%2e%2e/b` is `/b`. Decoding after removal would let
/// `%2e%2e` slip past routing as a literal segment that a backend later resolves.
#[test]
fn encoded_dot_segments_removed_after_decoding() {
    let bed = Bed::start(
        DRIVER,
        &["root"],
        r#"
        [[routes]]
        name = "root"
        prefix = "/"
        upstream = "root"
        "#,
    );
    bed.expect_forwarded(&[
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E%2E/b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/a/%2e./b", "/b"),
        ("/a/%2E/b", "/a/b"),
    ]);
}

/// The route is chosen on the normalized path, and the upstream receives that same path (docs:
/// "the upstream sees what was routed"): `/public/../admin/x` goes to the `/admin/` route as
/// `/admin/x`, never to `/public/` as the raw bytes.
#[test]
fn route_chosen_on_normalized_path() {
    let bed = Bed::start(
        DRIVER,
        &["public", "admin"],
        r#"
        [[routes]]
        name = "public"
        prefix = "/public/"
        upstream = "public"

        [[routes]]
        name = "admin"
        prefix = "/admin/"
        upstream = "admin"
        "#,
    );
    bed.expect_paths(&[
        ("/public/../admin/x", "admin"),
        ("/public/%2e%2e/admin/y", "admin"),
        ("/admin/../public/z", "public"),
        ("/%61dmin/w", "admin"),
    ]);
    assert_eq!(bed.targets("admin"), ["/admin/x", "/admin/y", "/admin/w"]);
    assert_eq!(bed.targets("public"), ["/public/z"]);
}

/// A `..` that would climb above the root (RFC 3986 §5.2.4 would silently drop it) is answered
/// 400 (RFC 9110 §15.5.1), escaped or not, and nothing is forwarded; climbing back to the root is
/// fine.
#[test]
fn dot_segments_above_root_are_400() {
    let bed = Bed::start(
        DRIVER,
        &["root"],
        r#"
        [[routes]]
        name = "root"
        prefix = "/"
        upstream = "root"
        "#,
    );
    bed.expect_paths(&[
        ("/../etc/passwd", "400"),
        ("/..", "400"),
        ("/a/../../b", "400"),
        ("/./../x", "400"),
        ("/%2e%2e/etc", "400"),
        ("/a/%2E%2E/%2e%2e/b", "400"),
        ("/a/../b", "root"),
    ]);
    assert_eq!(bed.targets("root"), ["/b"], "a rejected request reached the upstream");
}

/// A malformed escape (`%` not followed by two hex digits, RFC 3986 §2.1) in the path is answered
/// 400, and nothing is forwarded.
#[test]
fn malformed_escape_is_400() {
    let bed = Bed::start(
        DRIVER,
        &["root"],
        r#"
        [[routes]]
        name = "root"
        prefix = "/"
        upstream = "root"
        "#,
    );
    bed.expect_paths(&[
        ("/a%4", "400"),
        ("/%zz", "400"),
        ("/a%4g/b", "400"),
        ("/%", "400"),
        ("/a/%/b", "400"),
        ("/%g1", "400"),
        ("/ok%41", "root"),
    ]);
    assert_eq!(bed.targets("root"), ["/okA"], "a rejected request reached the upstream");
}

/// An encoded slash (`%2F`, `%2f`) in the path is answered 400 when the matched route has
/// `allow_encoded_slash = false`, the default: decoding it would change the path's segments, and
/// passing it on lets backends that decode it see a different path than the one routed.
#[test]
fn encoded_slash_is_400_by_default() {
    let bed = Bed::start(
        DRIVER,
        &["files"],
        r#"
        [[routes]]
        name = "files"
        prefix = "/files/"
        upstream = "files"
        "#,
    );
    bed.expect_paths(&[
        ("/files/a%2Fb", "400"),
        ("/files/a%2fb", "400"),
        ("/files/%2F", "400"),
        ("/files/a%2F..%2Fb", "400"),
        ("/files/ok", "files"),
    ]);
    assert_eq!(bed.targets("files"), ["/files/ok"], "a rejected request reached the upstream");
}

/// With `allow_encoded_slash = true` the route takes a path holding `%2F` and forwards it as it
/// came (never decoded into a `/`); the escape is part of one segment, so `{name}` matches
/// `a%2Fb`. The setting is per route: another route without it still answers 400.
#[test]
fn encoded_slash_allowed_per_route() {
    let bed = Bed::start(
        DRIVER,
        &["open", "strict"],
        r#"
        [[routes]]
        name = "open"
        path = "/open/{name}"
        allow_encoded_slash = true
        upstream = "open"

        [[routes]]
        name = "strict"
        path = "/strict/{name}"
        upstream = "strict"
        "#,
    );
    bed.expect_forwarded(&[("/open/a%2Fb", "/open/a%2Fb"), ("/open/a%2fb?x=%2F", "/open/a%2fb?x=%2F")]);
    bed.expect_paths(&[("/strict/a%2Fb", "400"), ("/strict/ab", "strict")]);
}

/// The query string is never touched (RFC 3986 §3.4): forwarded byte for byte whatever it holds
/// (escapes of unreserved characters, dot-segment lookalikes, `/`, `?`, sub-delims), while the
/// path before it is normalized.
fn query_string_forwarded_byte_for_byte(driver: Driver) {
    let bed = Bed::start(
        driver,
        &["root"],
        r#"
        [[routes]]
        name = "root"
        prefix = "/"
        upstream = "root"
        "#,
    );
    bed.expect_forwarded(&[
        ("/a/./b?a=%2e%2e&b=/../", "/a/b?a=%2e%2e&b=/../"),
        ("/q?c=%41&d=%2F&e=?x&f=a+b&g=:@!$'()*,;=&&h", "/q?c=%41&d=%2F&e=?x&f=a+b&g=:@!$'()*,;=&&h"),
        ("/%75?%75=%7e", "/u?%75=%7e"),
        ("/x/../y?/../../z", "/y?/../../z"),
    ]);
}

/// A malformed escape in the query is not the gateway's business (the query is never touched,
/// docs "Normalization"): no 400, forwarded as it came.
#[test]
fn malformed_escape_in_query_is_forwarded() {
    let bed = Bed::start(
        DRIVER,
        &["root"],
        r#"
        [[routes]]
        name = "root"
        prefix = "/"
        upstream = "root"
        "#,
    );
    bed.expect_forwarded(&[("/x?q=%zz&r=%", "/x?q=%zz&r=%"), ("/x?%4", "/x?%4")]);
}

/// An empty query keeps its `?`: RFC 3986 §6.2.3 says normalization should not remove a delimiter
/// whose component is empty, and the query is forwarded byte for byte.
#[test]
fn empty_query_keeps_its_question_mark() {
    let bed = Bed::start(
        DRIVER,
        &["root"],
        r#"
        [[routes]]
        name = "root"
        prefix = "/"
        upstream = "root"
        "#,
    );
    bed.expect_forwarded(&[("/x?", "/x?")]);
}

/// A path that is already normal is forwarded as the same bytes: empty segments are not merged
/// (RFC 3986 §5.2.4 removes only dot-segments), a trailing slash stays, letter case stays.
#[test]
fn normal_path_forwarded_unchanged() {
    let bed = Bed::start(
        DRIVER,
        &["root"],
        r#"
        [[routes]]
        name = "root"
        prefix = "/"
        upstream = "root"
        "#,
    );
    bed.expect_forwarded(&[
        ("/a//b", "/a//b"),
        ("//x", "//x"),
        ("/a/b/", "/a/b/"),
        ("/~user/x.y_z-w", "/~user/x.y_z-w"),
        ("/A/B", "/A/B"),
        ("/", "/"),
    ]);
}

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------

/// `rewrite = { strip_prefix = "/api" }` removes those bytes from the front of the normalized path
/// (`/api/x` → `/x`, `/api` → `/`); the query follows unchanged.
#[test]
fn rewrite_strip_prefix() {
    let bed = Bed::start(
        DRIVER,
        &["api"],
        r#"
        [[routes]]
        name = "api"
        prefix = "/api"
        upstream = "api"
        rewrite = { strip_prefix = "/api" }
        "#,
    );
    bed.expect_forwarded(&[
        ("/api/x/y?q=1&r", "/x/y?q=1&r"),
        ("/api/x", "/x"),
        ("/api", "/"),
        ("/api?z=%2e", "/?z=%2e"),
        ("/api/./v1/../x", "/x"),
    ]);
}

/// `rewrite = { replace_prefix = "/v2/" }` replaces the route's `prefix` with those bytes.
#[test]
fn rewrite_replace_prefix() {
    let bed = Bed::start(
        DRIVER,
        &["old"],
        r#"
        [[routes]]
        name = "old"
        prefix = "/old/"
        upstream = "old"
        rewrite = { replace_prefix = "/v2/" }
        "#,
    );
    bed.expect_forwarded(&[("/old/a/b?q=1", "/v2/a/b?q=1"), ("/old/", "/v2/"), ("/old/%61", "/v2/a")]);
}

/// `rewrite = { template = "/u/{id}/{rest}" }` builds the path from the route's parameters, taken
/// from the normalized path (`%34%32` is `42`), the catch-all possibly empty; the query follows
/// byte for byte.
fn rewrite_template_with_params(driver: Driver) {
    let bed = Bed::start(
        driver,
        &["files"],
        r#"
        [[routes]]
        name = "files"
        path = "/users/{id}/files/{*rest}"
        upstream = "files"
        rewrite = { template = "/u/{id}/{rest}" }
        "#,
    );
    bed.expect_forwarded(&[
        ("/users/42/files/a/b.txt?x=1&y", "/u/42/a/b.txt?x=1&y"),
        ("/users/42/files/", "/u/42/"),
        ("/users/%34%32/files/./c/../d", "/u/42/d"),
        ("/users/a%20b/files/x", "/u/a%20b/x"),
    ]);
}

/// In a rewrite template `{$path}` is the normalized path.
#[test]
fn rewrite_template_with_whole_path() {
    let bed = Bed::start(
        DRIVER,
        &["svc"],
        r#"
        [[routes]]
        name = "svc"
        prefix = "/svc/"
        upstream = "svc"
        rewrite = { template = "/internal{$path}" }
        "#,
    );
    bed.expect_forwarded(&[("/svc/a/../b?q", "/internal/svc/b?q"), ("/svc/", "/internal/svc/")]);
}

/// `upstream` proxies with the route's own body limit (`max_body_bytes` overrides
/// `limits.max_body_bytes` for that route only): a body over it is answered 413 (RFC 9110
/// §15.5.14) and not forwarded; one at the limit, or the same body on another route, passes.
#[test]
fn route_body_limit_applies_per_route() {
    let bed = Bed::start(
        DRIVER,
        &["small", "big"],
        r#"
        [[routes]]
        name = "small"
        prefix = "/small/"
        upstream = "small"
        max_body_bytes = 10

        [[routes]]
        name = "big"
        prefix = "/big/"
        upstream = "big"
        "#,
    );
    let post = |target: &str, body: &[u8]| bed.gw.client().request(&req("POST", target, &[], body));
    let over = post("/small/x", b"0123456789a");
    assert_eq!(over.status, 413, "{}", over.head_str());
    let at = post("/small/x", b"0123456789");
    assert_eq!(outcome(&at), "small", "{}", at.head_str());
    let other = post("/big/x", b"0123456789a");
    assert_eq!(outcome(&other), "big", "{}", other.head_str());
    assert_eq!(bed.up("small").requests().iter().map(|r| r.body_len).collect::<Vec<_>>(), [10]);
}

/// `request_headers`: `set` replaces every field of that name the client sent (or adds it),
/// `add` appends a field after the client's (RFC 9110 §5.2, §5.3: order of same-name lines is
/// kept), `remove` drops every field of that name, matched case-insensitively; other fields pass.
#[test]
fn request_headers_set_add_remove() {
    let bed = Bed::start(
        DRIVER,
        &["api"],
        r#"
        [[routes]]
        name = "api"
        prefix = "/"
        upstream = "api"
        request_headers = { set = { "X-Env" = "prod" }, add = { "X-Via" = "ringgate" }, remove = ["X-Debug"] }
        "#,
    );
    let r = bed.forward(
        "/a",
        &[
            ("X-Env", "dev"),
            ("X-Env", "test"),
            ("X-Via", "client"),
            ("X-Debug", "1"),
            ("x-debug", "2"),
            ("X-Other", "kept"),
        ],
    );
    assert_eq!(r.header_all("x-env"), ["prod"], "{}", r.head_str());
    assert_eq!(support::http::header_list(&r.headers, "x-via"), ["client", "ringgate"], "{}", r.head_str());
    assert!(!r.has_header("x-debug"), "{}", r.head_str());
    assert_eq!(r.header_all("x-other"), ["kept"], "{}", r.head_str());
    let bare = bed.forward("/b", &[]);
    assert_eq!(bare.header_all("x-env"), ["prod"], "{}", bare.head_str());
    assert_eq!(support::http::header_list(&bare.headers, "x-via"), ["ringgate"], "{}", bare.head_str());
}

/// `response_headers` on a proxied response: `set` replaces every field of that name the upstream
/// sent, `add` appends one after the upstream's, `remove` drops it; the body is untouched.
#[test]
fn response_headers_on_proxied_response() {
    let up = TestUpstream::respond(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nServer: origin/1.0\r\nCache-Control: public\r\n\
          Cache-Control: max-age=60\r\nX-Via: origin\r\nX-Kept: yes\r\n\r\nok",
    );
    let gw = start_gateway(
        DRIVER,
        &[("origin", &up)],
        r#"
        [[routes]]
        name = "cached"
        prefix = "/"
        upstream = "origin"
        response_headers = { set = { "Cache-Control" = "no-store" }, add = { "X-Via" = "ringgate" }, remove = ["Server"] }
        "#,
    );
    let mut c = gw.client();
    for _ in 0..2 {
        let resp = c.request(&get("/page"));
        assert_eq!(resp.status, 200, "{}", resp.head_str());
        assert_eq!(resp.body_str(), "ok");
        assert_eq!(resp.header_all("cache-control"), ["no-store"], "{}", resp.head_str());
        assert_eq!(support::http::header_list(&resp.headers, "x-via"), ["origin", "ringgate"], "{}", resp.head_str());
        assert_eq!(resp.header("server"), None, "{}", resp.head_str());
        assert_eq!(resp.header_all("x-kept"), ["yes"], "{}", resp.head_str());
    }
}

/// `response_headers` apply to the gateway's own `respond` and `redirect` answers too (docs
/// "Actions": "Applied to proxied responses and to respond/redirect answers"): `set` and `add`.
#[test]
fn response_headers_on_respond_and_redirect() {
    let bed = Bed::start(
        DRIVER,
        &["origin"],
        &[
            ORIGIN,
            r#"
            [[routes]]
            name = "hello"
            path = "/hello"
            respond = { status = 200, body = "hi\n", content_type = "text/plain" }
            response_headers = { set = { "Cache-Control" = "no-store" }, add = { "X-Served-By" = "ringgate" } }

            [[routes]]
            name = "moved"
            path = "/moved"
            redirect = { status = 302, location = "/hello" }
            response_headers = { set = { "Cache-Control" = "max-age=60" }, add = { "X-Served-By" = "ringgate" } }
            "#,
        ]
        .concat(),
    );
    let mut c = bed.gw.client();
    let hello = c.request(&get("/hello"));
    assert_eq!(hello.status, 200, "{}", hello.head_str());
    assert_eq!(hello.body_str(), "hi\n");
    assert_eq!(hello.header_all("content-type"), ["text/plain"], "{}", hello.head_str());
    assert_eq!(hello.header_all("cache-control"), ["no-store"], "{}", hello.head_str());
    assert_eq!(hello.header_all("x-served-by"), ["ringgate"], "{}", hello.head_str());
    let moved = c.request(&get("/moved"));
    assert_eq!(moved.status, 302, "{}", moved.head_str());
    assert_eq!(moved.header_all("location"), ["/hello"], "{}", moved.head_str());
    assert_eq!(moved.header_all("cache-control"), ["max-age=60"], "{}", moved.head_str());
    assert_eq!(moved.header_all("x-served-by"), ["ringgate"], "{}", moved.head_str());
}

/// `response_headers` `remove` and `set` reach the fields a `respond` answer has of its own (docs:
/// `set` "replaces every field of that name", `remove` drops it, "applied ... to respond/redirect
/// answers"): removing Content-Type leaves none, and setting it leaves exactly one, the set value
/// (Content-Type is a singleton field, RFC 9110 §8.3; two values are ambiguous to a client).
#[test]
fn response_headers_remove_and_set_on_respond_fields() {
    let bed = Bed::start(
        DRIVER,
        &["origin"],
        &[
            ORIGIN,
            r#"
            [[routes]]
            name = "bare"
            path = "/bare"
            respond = { status = 200, body = "hi\n", content_type = "text/plain" }
            response_headers = { remove = ["Content-Type"] }

            [[routes]]
            name = "json"
            path = "/json"
            respond = { status = 200, body = "{}" }
            response_headers = { set = { "Content-Type" = "application/json" } }
            "#,
        ]
        .concat(),
    );
    let mut c = bed.gw.client();
    let bare = c.request(&get("/bare"));
    let json = c.request(&get("/json"));
    assert_eq!((bare.status, bare.body_str().as_str()), (200, "hi\n"), "{}", bare.head_str());
    assert_eq!((json.status, json.body_str().as_str()), (200, "{}"), "{}", json.head_str());
    assert_eq!(
        (bare.header_all("content-type"), json.header_all("content-type")),
        (vec![], vec!["application/json"]),
        "Content-Type of /bare (remove) and /json (set):\n{}\n{}",
        bare.head_str(),
        json.head_str()
    );
}

/// `respond`: the gateway answers with the configured status, body and Content-Type itself,
/// framed by Content-Length, and contacts no upstream. A HEAD gets the same status and fields
/// without a body (RFC 9110 §9.3.2), and the connection stays usable after each answer
/// (RFC 9112 §9.3): a stray body byte would garble the next response.
fn respond_answers_without_upstream(driver: Driver) {
    let bed = Bed::start(
        driver,
        &["origin"],
        &[
            ORIGIN,
            r#"
            [[routes]]
            name = "teapot"
            path = "/teapot"
            respond = { status = 418, body = "short and stout\n", content_type = "text/plain; charset=utf-8" }
            "#,
        ]
        .concat(),
    );
    let mut c = bed.gw.client();
    for method in ["GET", "HEAD", "GET", "HEAD"] {
        let resp = c.request(&req(method, "/teapot", &[], b""));
        assert_eq!(resp.status, 418, "{method}: {}", resp.head_str());
        assert_eq!(resp.header("content-type"), Some("text/plain; charset=utf-8"), "{method}: {}", resp.head_str());
        assert!(!resp.is_close(), "{method}: {}", resp.head_str());
        if method == "GET" {
            assert_eq!(resp.body_str(), "short and stout\n");
            assert_eq!(resp.header("content-length"), Some("16"), "{}", resp.head_str());
        } else {
            // RFC 9110 §8.6: a HEAD answer may carry the length the GET body would have.
            assert!(matches!(resp.header("content-length"), None | Some("16")), "HEAD: {}", resp.head_str());
        }
    }
    let after = c.request(&get("/origin"));
    assert_eq!(outcome(&after), "origin", "{}", after.head_str());
    assert_eq!(bed.targets("origin"), ["/origin"], "a `respond` route reached an upstream");
}

/// A request body sent to a `respond` route is read and dropped before the next request on the
/// connection is parsed (RFC 9112 §6.3, §9.3): the next request is answered normally, or the
/// gateway says `Connection: close` and closes.
#[test]
fn respond_discards_request_body() {
    let bed = Bed::start(
        DRIVER,
        &["origin"],
        &[
            ORIGIN,
            r#"
            [[routes]]
            name = "ok"
            path = "/ok"
            respond = { status = 200, body = "ok", content_type = "text/plain" }
            "#,
        ]
        .concat(),
    );
    let mut c = bed.gw.client();
    let first = c.request(&req("POST", "/ok", &[], b"GET /origin HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!(first.status, 200, "{}", first.head_str());
    assert_eq!(first.body_str(), "ok");
    if first.is_close() {
        c.assert_closed(PROMPT);
    } else {
        let second = c.request(&get("/ok"));
        assert_eq!(second.status, 200, "{}", second.head_str());
        assert_eq!(second.body_str(), "ok");
    }
    assert!(bed.targets("origin").is_empty(), "the request body was taken as a request: {:?}", bed.targets("origin"));
}

/// `redirect` with each allowed status (301, 302, 303, 307, 308; RFC 9110 §15.4.2-§15.4.9)
/// answers that status with the Location of its template, and contacts no upstream.
#[test]
fn redirect_each_status() {
    let statuses = [301u16, 302, 303, 307, 308];
    let mut routes = ORIGIN.to_string();
    for s in statuses {
        routes.push_str(&format!(
            "\n[[routes]]\nname = \"r{s}\"\npath = \"/r/{s}\"\nredirect = {{ status = {s}, location = \"/to/{s}\" }}\n"
        ));
    }
    let bed = Bed::start(DRIVER, &["origin"], &routes);
    let mut c = bed.gw.client();
    for s in statuses {
        let resp = c.request(&get(&format!("/r/{s}")));
        assert_eq!(resp.status, s, "{}", resp.head_str());
        assert_eq!(resp.header_all("location"), [format!("/to/{s}")], "{}", resp.head_str());
        assert!(!resp.is_close(), "{}", resp.head_str());
    }
    assert_eq!(outcome(&c.request(&get("/origin"))), "origin");
    assert_eq!(bed.targets("origin"), ["/origin"], "a `redirect` route reached an upstream");
}

/// A redirect's Location is built from its template: route parameters `{id}` and `{$host}` (the
/// request's host without port). With `keep_query` (default true) and no `{$query}` in the
/// template, the request's query is appended byte for byte, with its `?`; without a query,
/// nothing is. Keep-alive continues after a redirect.
fn redirect_location_template(driver: Driver) {
    let bed = Bed::start(
        driver,
        &["origin"],
        &[
            ORIGIN,
            r#"
            [[routes]]
            name = "moved"
            path = "/old/{id}"
            redirect = { status = 301, location = "https://{$host}/new/{id}" }
            "#,
        ]
        .concat(),
    );
    let mut c = bed.gw.client();
    let cases = [
        ("/old/42?a=1&b=%2F", "https://shop.example/new/42?a=1&b=%2F"),
        ("/old/42", "https://shop.example/new/42"),
        ("/old/%34%32", "https://shop.example/new/42"),
    ];
    for (target, want) in cases {
        let resp = c.request(&req("GET", target, &[("Host", "shop.example:8080")], b""));
        assert_eq!(resp.status, 301, "{target}: {}", resp.head_str());
        assert_eq!(resp.header_all("location"), [want], "{target}: {}", resp.head_str());
        assert!(!resp.is_close(), "{target}: {}", resp.head_str());
    }
    assert_eq!(outcome(&c.request(&get("/origin"))), "origin");
    assert_eq!(bed.targets("origin"), ["/origin"], "a `redirect` route reached an upstream");
}

/// `{$path}` in a Location is the normalized path and `{$query}` is `?` and the query, or nothing;
/// with `{$query}` in the template the query is not appended a second time.
#[test]
fn redirect_with_path_and_query_placeholders() {
    let bed = Bed::start(
        DRIVER,
        &["origin"],
        &[
            ORIGIN,
            r#"
            [[routes]]
            name = "move"
            prefix = "/p/"
            redirect = { status = 308, location = "https://other.example{$path}{$query}" }
            "#,
        ]
        .concat(),
    );
    let cases = [
        ("/p/a/./b?q=1", "https://other.example/p/a/b?q=1"),
        ("/p/x", "https://other.example/p/x"),
        ("/p/%78?y=%2e", "https://other.example/p/x?y=%2e"),
    ];
    for (target, want) in cases {
        let resp = bed.ask("GET", TEST_HOST, target, &[]);
        assert_eq!(resp.status, 308, "{target}: {}", resp.head_str());
        assert_eq!(resp.header_all("location"), [want], "{target}: {}", resp.head_str());
    }
}

/// `keep_query = false`: the request's query is not carried into the Location.
#[test]
fn redirect_keep_query_false_drops_query() {
    let bed = Bed::start(
        DRIVER,
        &["origin"],
        &[
            ORIGIN,
            r#"
            [[routes]]
            name = "elsewhere"
            path = "/k"
            redirect = { status = 302, location = "/elsewhere", keep_query = false }
            "#,
        ]
        .concat(),
    );
    for target in ["/k?a=1", "/k"] {
        let resp = bed.ask("GET", TEST_HOST, target, &[]);
        assert_eq!(resp.status, 302, "{target}: {}", resp.head_str());
        assert_eq!(resp.header_all("location"), ["/elsewhere"], "{target}: {}", resp.head_str());
    }
}

// ---------------------------------------------------------------------------------------------
// Load-time errors (`ringgate check`)
// ---------------------------------------------------------------------------------------------

/// Two routes with the same host, same pattern, overlapping methods and the same number of
/// conditions are a tie: refused at load time with both routes named in one error line, never
/// resolved by file order.
#[test]
fn check_refuses_tie_naming_both_routes() {
    assert_refused(
        r#"
        [[routes]]
        name = "users-read"
        path = "/users/{id}"
        methods = ["GET", "POST"]
        upstream = "api"

        [[routes]]
        name = "users-write"
        path = "/users/{id}"
        methods = ["POST", "PUT"]
        upstream = "api"
        "#,
        &["users-read", "users-write"],
    );
}

/// Two routes of the same pattern without `methods` (any method) and without conditions tie.
#[test]
fn check_refuses_tie_of_any_method_routes() {
    assert_refused(
        r#"
        [[routes]]
        name = "first-api"
        prefix = "/api/"
        upstream = "api"

        [[routes]]
        name = "second-api"
        prefix = "/api/"
        upstream = "api"
        "#,
        &["first-api", "second-api"],
    );
}

/// A prefix route and a catch-all ending at the same place are the same pattern (docs "Which
/// path"), so with overlapping methods they tie.
#[test]
fn check_refuses_tie_of_prefix_and_catch_all() {
    assert_refused(
        r#"
        [[routes]]
        name = "by-prefix"
        prefix = "/static/"
        upstream = "api"

        [[routes]]
        name = "by-catch-all"
        path = "/static/{*rest}"
        upstream = "api"
        "#,
        &["by-prefix", "by-catch-all"],
    );
}

/// Parameters with different names in the same place match the same paths, so `/users/{id}` and
/// `/users/{uid}` are one pattern and tie; accepting them would leave the choice to file order.
#[test]
fn check_refuses_tie_of_params_with_different_names() {
    assert_refused(
        r#"
        [[routes]]
        name = "by-id"
        path = "/users/{id}"
        upstream = "api"

        [[routes]]
        name = "by-uid"
        path = "/users/{uid}"
        upstream = "api"
        "#,
        &["by-id", "by-uid"],
    );
}

/// Equal numbers of conditions that can both hold (on different names) tie: a request with both
/// fields would match either route.
#[test]
fn check_refuses_tie_of_conditions_that_can_both_hold() {
    assert_refused(
        r#"
        [[routes]]
        name = "has-a"
        path = "/c"
        match_headers = [{ name = "x-a" }]
        upstream = "api"

        [[routes]]
        name = "has-b"
        path = "/c"
        match_headers = [{ name = "x-b" }]
        upstream = "api"
        "#,
        &["has-a", "has-b"],
    );
}

/// A value condition and a presence condition on the same name can both hold (`x-mode: 1` is
/// present), so they tie; only two different values on one name exclude each other.
#[test]
fn check_refuses_tie_of_value_and_presence_on_one_name() {
    assert_refused(
        r#"
        [[routes]]
        name = "mode-one"
        path = "/c"
        match_headers = [{ name = "x-mode", value = "1" }]
        upstream = "api"

        [[routes]]
        name = "mode-any"
        path = "/c"
        match_headers = [{ name = "x-mode" }]
        upstream = "api"
        "#,
        &["mode-one", "mode-any"],
    );
}

/// The same pattern with disjoint method sets is no tie: accepted.
#[test]
fn check_accepts_same_pattern_with_disjoint_methods() {
    assert_accepted(
        r#"
        [[routes]]
        name = "read"
        path = "/users/{id}"
        methods = ["GET", "HEAD"]
        upstream = "api"

        [[routes]]
        name = "write"
        path = "/users/{id}"
        methods = ["PUT", "DELETE"]
        upstream = "api"
        "#,
    );
}

/// Conditions that cannot both hold (`x-mode: 1` vs `x-mode: 2`; `v=1` vs `v=2` in the query)
/// are no tie: accepted.
#[test]
fn check_accepts_mutually_exclusive_conditions() {
    assert_accepted(
        r#"
        [[routes]]
        name = "mode-1"
        path = "/c"
        match_headers = [{ name = "x-mode", value = "1" }]
        upstream = "api"

        [[routes]]
        name = "mode-2"
        path = "/c"
        match_headers = [{ name = "x-mode", value = "2" }]
        upstream = "api"

        [[routes]]
        name = "v-1"
        path = "/q"
        match_query = [{ name = "v", value = "1" }]
        upstream = "api"

        [[routes]]
        name = "v-2"
        path = "/q"
        match_query = [{ name = "v", value = "2" }]
        upstream = "api"
        "#,
    );
}

/// Header names are case-insensitive (RFC 9110 §5.1), so `X-Mode: 1` and `x-mode: 2` are
/// conditions on one field and exclude each other: accepted.
#[test]
fn check_accepts_exclusive_header_conditions_in_other_case() {
    assert_accepted(
        r#"
        [[routes]]
        name = "mode-1"
        path = "/c"
        match_headers = [{ name = "X-Mode", value = "1" }]
        upstream = "api"

        [[routes]]
        name = "mode-2"
        path = "/c"
        match_headers = [{ name = "x-mode", value = "2" }]
        upstream = "api"
        "#,
    );
}

/// The same pattern on different hosts is no tie: accepted.
#[test]
fn check_accepts_same_pattern_on_different_hosts() {
    assert_accepted(
        r#"
        [[routes]]
        name = "exact"
        host = "api.example.com"
        prefix = "/"
        upstream = "api"

        [[routes]]
        name = "wild"
        host = "*.example.com"
        prefix = "/"
        upstream = "api"

        [[routes]]
        name = "any"
        prefix = "/"
        upstream = "api"
        "#,
    );
}

/// A route has exactly one action: `upstream`, `respond` or `redirect`; two are refused.
#[test]
fn check_refuses_more_than_one_action() {
    let pairs = [
        ("upstream + respond", "upstream = \"api\"\nrespond = { status = 200, body = \"x\" }"),
        ("upstream + redirect", "upstream = \"api\"\nredirect = { status = 301, location = \"/x\" }"),
        (
            "respond + redirect",
            "respond = { status = 200, body = \"x\" }\nredirect = { status = 301, location = \"/x\" }",
        ),
    ];
    for (what, actions) in pairs {
        let routes = format!("[[routes]]\nname = \"double\"\npath = \"/d\"\n{actions}\n");
        let (ok, printed) = check(&routes);
        assert!(!ok, "a route with {what} was accepted:\n{routes}\nit said:\n{printed}");
        assert!(printed.contains("routes"), "the refusal of {what} does not name the route's key:\n{printed}");
    }
}

/// A route with no action at all is refused ("exactly one of upstream / respond / redirect").
#[test]
fn check_refuses_route_without_action() {
    assert_refused(
        r#"
        [[routes]]
        name = "idle"
        path = "/idle"
        "#,
        &["routes"],
    );
}

/// A route naming an upstream that does not exist is refused, and the error names it
/// (docs/config.md's example error).
#[test]
fn check_refuses_unknown_upstream() {
    assert_refused(
        r#"
        [[routes]]
        name = "lost"
        prefix = "/"
        upstream = "missing"
        "#,
        &["upstream", "missing"],
    );
}

/// `respond` takes a status 200..599 (not 1xx), `redirect` only 301, 302, 303, 307 or 308.
#[test]
fn check_refuses_bad_action_status() {
    for (what, action) in [
        ("respond 101", "respond = { status = 101, body = \"\" }"),
        ("respond 600", "respond = { status = 600, body = \"\" }"),
        ("redirect 200", "redirect = { status = 200, location = \"/x\" }"),
        ("redirect 304", "redirect = { status = 304, location = \"/x\" }"),
    ] {
        let routes = format!("[[routes]]\nname = \"bad\"\npath = \"/b\"\n{action}\n");
        let (ok, printed) = check(&routes);
        assert!(!ok, "{what} was accepted:\n{routes}\nit said:\n{printed}");
        assert!(printed.contains("status"), "the refusal of {what} does not name the key:\n{printed}");
    }
}

/// A `respond` body is small: at most 64 KiB. Exactly 64 KiB is accepted, one byte more refused.
#[test]
fn check_refuses_respond_body_over_64_kib() {
    let route = |len: usize| {
        format!(
            "[[routes]]\nname = \"big\"\npath = \"/big\"\nrespond = {{ status = 200, body = \"{}\" }}\n",
            "x".repeat(len)
        )
    };
    assert_accepted(&route(64 * 1024));
    let (ok, printed) = check(&route(64 * 1024 + 1));
    assert!(!ok, "a respond body of 64 KiB + 1 was accepted");
    assert!(printed.contains("body"), "the refusal does not name the key:\n{printed}");
}

/// `replace_prefix` replaces the route's `prefix`, so it is refused on a `path` route.
#[test]
fn check_refuses_replace_prefix_on_path_route() {
    assert_refused(
        r#"
        [[routes]]
        name = "by-path"
        path = "/old/{*rest}"
        upstream = "api"
        rewrite = { replace_prefix = "/v2/" }
        "#,
        &["replace_prefix"],
    );
}

/// A route has exactly one of `path` and `prefix`.
#[test]
fn check_refuses_both_or_neither_path_and_prefix() {
    for (what, lines) in [("both", "path = \"/a\"\nprefix = \"/a\""), ("neither", "")] {
        let routes = format!("[[routes]]\nname = \"r\"\n{lines}\nupstream = \"api\"\n");
        let (ok, printed) = check(&routes);
        assert!(!ok, "a route with {what} path and prefix was accepted:\n{routes}\nit said:\n{printed}");
        assert!(printed.contains("routes"), "the refusal ({what}) does not name the route:\n{printed}");
    }
}

/// Route names are unique (docs/config.md), even when the routes themselves do not tie.
#[test]
fn check_refuses_duplicate_route_names() {
    assert_refused(
        r#"
        [[routes]]
        name = "twice"
        path = "/a"
        upstream = "api"

        [[routes]]
        name = "twice"
        path = "/b"
        upstream = "api"
        "#,
        &["twice"],
    );
}

/// A catch-all `{*name}` is trailing: one in the middle of a path is refused.
#[test]
fn check_refuses_catch_all_not_last() {
    assert_refused(
        r#"
        [[routes]]
        name = "middle"
        path = "/a/{*rest}/b"
        upstream = "api"
        "#,
        &["path"],
    );
}

both_drivers!(
    host_exact_beats_wildcard_beats_any,
    static_before_param_before_catch_all,
    method_mismatch_is_405_with_allow,
    unreserved_escapes_decoded_before_matching,
    query_string_forwarded_byte_for_byte,
    rewrite_template_with_params,
    respond_answers_without_upstream,
    redirect_location_template,
);
