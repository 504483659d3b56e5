//! Review findings on the router change (issue 3): each test reproduced a defect found in review
//! (all fixed since); the doc comment of each says what went wrong and where.
//!
//! Where more than one fix is reasonable (refuse the config at load, or make it behave), the test
//! accepts either: [`refused_or_start`] runs `ringgate check` first and only starts the gateway
//! when the config is accepted.

#[macro_use]
mod support;

use std::time::Duration;

use support::gateway::path_str;
use support::*;

const DRIVER: Driver = Driver::Epoll;
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// A config with one echo upstream per name (named after it) and the raw `[[routes]]` in `routes`.
fn config(ups: &[(&str, &TestUpstream)], routes: &str) -> String {
    let mut b = ConfigBuilder::new();
    for (name, up) in ups {
        b = b.upstream(name, &[up.addr()], "");
    }
    let mut text = b.render();
    text.push_str(routes);
    text
}

/// `ringgate check` on `text`: None when accepted, else what it printed.
fn check_refusal(text: &str) -> Option<String> {
    let file = TempFile::new("review-router", "toml", text);
    let out = run_cli(&["check", path_str(&file.path)], CLI_TIMEOUT);
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    (!out.status.success()).then_some(printed)
}

/// None when `ringgate check` refuses `text` (a fix by refusal), else the started gateway.
fn refused_or_start(text: &str) -> Option<Gateway> {
    match check_refusal(text) {
        Some(_) => None,
        None => Some(Gateway::start(text, DRIVER)),
    }
}

/// Who answered: the echo upstream's name for a proxied 200, else the status code.
fn outcome(resp: &Response) -> String {
    match resp.header("x-upstream") {
        Some(name) if resp.status == 200 => name.to_string(),
        _ => resp.status.to_string(),
    }
}

/// The last request `up` received (waits for at least one).
fn last_received(up: &TestUpstream) -> Recorded {
    up.wait_requests(1, PROMPT).pop().expect("at least one request")
}

/// src/http/parse.rs (request target forms) + src/routing.rs:65-74: a `#` is not allowed anywhere in
/// a request-target (RFC 9112 §3.2, RFC 3986 §3.5: a fragment is never sent), yet `GET /admin#x`
/// is accepted, misses the exact route `path = "/admin"` (here a 403 `respond` guarding it) and is
/// proxied by the catch-all as `/admin#x`. An upstream whose URL parser drops the fragment (WHATWG
/// URL / Node, Python's urlsplit, ...) serves `/admin`: the route guarding it is bypassed. The
/// target should be refused with 400.
fn fragment_in_target_does_not_route_around_an_exact_route(driver: Driver) {
    let origin = TestUpstream::named_echo("origin");
    let gw = Gateway::start(
        &config(
            &[("origin", &origin)],
            r#"
            [[routes]]
            name = "deny-admin"
            path = "/admin"
            respond = { status = 403, body = "no" }

            [[routes]]
            name = "rest"
            prefix = "/"
            upstream = "origin"
            "#,
        ),
        driver,
    );
    let plain = gw.client().request(&get("/admin"));
    assert_eq!(plain.status, 403, "{}", plain.head_str());
    let resp = gw.client().request(&get("/admin#x"));
    let seen: Vec<String> = origin.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        resp.status,
        400,
        "GET /admin#x was answered {} (by {}); the upstream saw {seen:?}",
        resp.status,
        outcome(&resp)
    );
}

/// src/router/mod.rs:190 (`conds_exclusive`) and :329: two routes on one pattern requiring
/// `v=1` and `v=2` are accepted as mutually exclusive, but a request can carry both (a repeated
/// query parameter, or two header lines of one name: `Facts::query`/`header` in src/routing.rs
/// answer "some parameter/field has this value"). Such a request is then decided by file order,
/// which issue 3 forbids ("never silently resolved by file order"). The same routes in the other
/// order must give the same answer (or the pair must be refused as a tie).
#[test]
fn repeated_fields_never_let_file_order_decide_between_exclusive_conditions() {
    let one = TestUpstream::named_echo("one");
    let two = TestUpstream::named_echo("two");
    let ups = [("one", &one), ("two", &two)];
    let route = |name: &str, v: &str| {
        format!(
            r#"
            [[routes]]
            name = "q{name}"
            path = "/q"
            match_query = [{{ name = "v", value = "{v}" }}]
            upstream = "{name}"

            [[routes]]
            name = "h{name}"
            path = "/h"
            match_headers = [{{ name = "x-v", value = "{v}" }}]
            upstream = "{name}"
            "#
        )
    };
    let forward = format!("{}{}", route("one", "1"), route("two", "2"));
    let backward = format!("{}{}", route("two", "2"), route("one", "1"));
    let mut answers = Vec::new();
    for routes in [&forward, &backward] {
        let text = config(&ups, routes);
        if check_refusal(&text).is_some() {
            return; // refused as a tie: fixed that way
        }
        let gw = Gateway::start(&text, DRIVER);
        let q = outcome(&gw.client().request(&get("/q?v=1&v=2")));
        let h = outcome(&gw.client().request(&req("GET", "/h", &[("X-V", "1"), ("X-V", "2")], b"")));
        answers.push((q, h));
    }
    assert_eq!(
        answers[0], answers[1],
        "(query, header) answers depend on file order: routes one-then-two gave {:?}, two-then-one gave {:?}",
        answers[0], answers[1]
    );
}

/// src/http/write.rs:108 and :118-126, :165: `request_headers.set` removes the client's fields of
/// that name but ringgate still appends its own X-Forwarded-Proto / X-Forwarded-Host / X-Request-Id
/// (the removed line returns before `have_proto`/`have_fwd_host` are set, and the generated id is
/// added regardless), so the upstream gets two fields where docs/routing.md promises `set`
/// "replaces every field of that name". The common case: a TLS-terminating balancer in front
/// sets `X-Forwarded-Proto = "https"`, and the upstream sees `http, https`.
#[test]
fn request_headers_set_replaces_gateway_added_fields() {
    let api = TestUpstream::named_echo("api");
    let gw = Gateway::start(
        &config(
            &[("api", &api)],
            r#"
            [[routes]]
            name = "api"
            prefix = "/"
            upstream = "api"
            request_headers = { set = { "X-Forwarded-Proto" = "https", "X-Forwarded-Host" = "public.example", "X-Request-Id" = "fixed-id" } }
            "#,
        ),
        DRIVER,
    );
    let resp = gw.client().request(&get("/a"));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    let r = last_received(&api);
    let mut wrong = Vec::new();
    for (name, want) in
        [("x-forwarded-proto", "https"), ("x-forwarded-host", "public.example"), ("x-request-id", "fixed-id")]
    {
        let got = r.header_all(name);
        if got != [want] {
            wrong.push(format!("{name}: want [{want:?}], got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "set did not replace:\n  {}\nupstream saw:\n{}", wrong.join("\n  "), r.head_str());
}

/// src/route.rs:48-51 (Template::parse accepts `{$query}` and a literal `?` in any template) and
/// src/routing.rs:91-98 (the query is appended after the rewritten path): a rewrite template
/// `/b{$query}` or `/b?src=gw` sends `/b?x=1?x=1` or `/b?src=gw?x=1` upstream. Either refuse
/// these templates at load (docs/routing.md lists only `{$path}` for rewrites) or keep one query.
#[test]
fn rewrite_template_never_sends_the_query_twice() {
    let mut wrong = Vec::new();
    for template in ["/b{$query}", "/b?src=gw"] {
        let up = TestUpstream::named_echo("up");
        let text = config(
            &[("up", &up)],
            &format!(
                r#"
                [[routes]]
                name = "a"
                prefix = "/a"
                upstream = "up"
                rewrite = {{ template = "{template}" }}
                "#
            ),
        );
        let Some(gw) = refused_or_start(&text) else { continue };
        let resp = gw.client().request(&get("/a?x=1"));
        if resp.status != 200 {
            wrong.push(format!("template {template:?}: answered {}", resp.status));
            continue;
        }
        let target = last_received(&up).target;
        if target.matches('?').count() != 1 {
            wrong.push(format!("template {template:?}: GET /a?x=1 reached the upstream as {target:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// src/config/routes.rs:238-242: `rewrite.replace_prefix` is taken as is: no leading `/`, spaces
/// and CR/LF are accepted (strip_prefix and template are checked; this one is not). The bytes go
/// straight into the upstream request line (src/http/write.rs:87-90): `"v2/"` sends `GET v2/x`,
/// and a value holding CRLF writes header lines of its own into the upstream request.
#[test]
fn check_refuses_replace_prefix_that_is_not_a_path() {
    let mut accepted = Vec::new();
    for with in ["v2/", "/v2 x/", r"/v2/ HTTP/1.1\r\nX-Injected: 1\r\nX-Pad: "] {
        let text = ConfigBuilder::new().upstream_raw("api", &["builtin:demo"], "").render()
            + &format!(
                r#"
                [[routes]]
                prefix = "/old/"
                upstream = "api"
                rewrite = {{ replace_prefix = "{with}" }}
                "#
            );
        if check_refusal(&text).is_none() {
            accepted.push(with);
        }
    }
    assert!(accepted.is_empty(), "`ringgate check` accepted replace_prefix = {accepted:?}");
}

/// The injection above, end to end: what the upstream receives for `GET /old/x` when the route
/// says `replace_prefix = "/v2/ HTTP/1.1\r\nX-Injected: 1\r\nX-Pad: "`.
#[test]
fn replace_prefix_cannot_write_header_lines_upstream() {
    let up = TestUpstream::named_echo("up");
    let text = config(
        &[("up", &up)],
        r#"
        [[routes]]
        prefix = "/old/"
        upstream = "up"
        rewrite = { replace_prefix = "/v2/ HTTP/1.1\r\nX-Injected: 1\r\nX-Pad: " }
        "#,
    );
    let Some(gw) = refused_or_start(&text) else { return };
    let _ = gw.client().request(&get("/old/x"));
    let r = last_received(&up);
    assert!(!r.has_header("x-injected"), "the route's replace_prefix injected a header line:\n{}", r.head_str());
}

/// src/config/routes.rs:20-30 (Host is not protected) and src/http/write.rs:108, :139:
/// `request_headers = { remove = ["Host"] }` drops the client's Host and, because `req.host` was
/// set, none is added: the upstream gets an HTTP/1.1 request without Host, which RFC 9112 §3.2
/// forbids (and upstreams answer 400). Refuse it at load (or send a Host anyway).
#[test]
fn request_headers_cannot_remove_host() {
    let up = TestUpstream::named_echo("up");
    let text = config(
        &[("up", &up)],
        r#"
        [[routes]]
        prefix = "/"
        upstream = "up"
        request_headers = { remove = ["Host"] }
        "#,
    );
    let Some(gw) = refused_or_start(&text) else { return };
    let resp = gw.client().request(&get("/a"));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    let r = last_received(&up);
    assert_eq!(r.header_all("host").len(), 1, "HTTP/1.1 request upstream without exactly one Host:\n{}", r.head_str());
}

/// src/router/mod.rs:548 (`parse_prefix` checks escapes only): docs/routing.md says patterns
/// not in normal form are refused because they could never match a normalized path, and
/// `parse_path` does refuse them; a `prefix` with a `.` or `..` segment inside is accepted and is
/// dead (no normalized path contains `/./` or `/../`).
#[test]
fn check_refuses_prefix_not_in_normal_form() {
    let mut accepted = Vec::new();
    for prefix in ["/a/./b", "/a/../b"] {
        let text = ConfigBuilder::new().upstream_raw("api", &["builtin:demo"], "").render()
            + &format!("\n[[routes]]\nprefix = \"{prefix}\"\nupstream = \"api\"\n");
        if check_refusal(&text).is_none() {
            accepted.push(prefix);
        }
    }
    assert!(accepted.is_empty(), "`ringgate check` accepted prefix = {accepted:?}, which can never match");
}

/// src/config/routes.rs: more values `ringgate check` accepts that can never work. A `path` with
/// `?` can never match (the query is split off before matching); a pattern with a space can never
/// match (a request target has none); `host = "*."` silently becomes "any host"
/// (`HostPattern::parse` trims the dot, then sees `*`); and on a `respond`/`redirect` route the
/// proxy keys are not even validated (`connect_timeout = "bogus"`, `max_body_bytes = -5` pass,
/// because they are read only inside the `upstream` branch of `one_route`).
#[test]
fn check_refuses_dead_or_unchecked_route_keys() {
    let mut accepted = Vec::new();
    for route in [
        "path = \"/search?q\"\nrespond = { status = 200 }",
        "prefix = \"/a b\"\nrespond = { status = 200 }",
        "host = \"*.\"\npath = \"/x\"\nrespond = { status = 200 }",
        "path = \"/y\"\nrespond = { status = 200 }\nconnect_timeout = \"bogus\"\nmax_body_bytes = -5",
    ] {
        let text = ConfigBuilder::new().upstream_raw("api", &["builtin:demo"], "").render()
            + &format!("\n[[routes]]\n{route}\n");
        if check_refusal(&text).is_none() {
            accepted.push(route.replace('\n', "; "));
        }
    }
    assert!(accepted.is_empty(), "`ringgate check` accepted:\n  {}", accepted.join("\n  "));
}

/// src/routing.rs:70-72 says `*` (OPTIONS) is "routed as `/` and sent as it came", but a
/// rewrite is applied to it anyway (src/routing.rs:91): `OPTIONS *` (the server as a whole,
/// RFC 9112 §3.2.4) reaches the upstream as `OPTIONS /internal/`, a request about a resource.
#[test]
fn options_asterisk_is_not_rewritten_into_a_path() {
    let up = TestUpstream::named_echo("up");
    let gw = Gateway::start(
        &config(
            &[("up", &up)],
            r#"
            [[routes]]
            prefix = "/"
            upstream = "up"
            rewrite = { template = "/internal{$path}" }
            "#,
        ),
        DRIVER,
    );
    let resp = gw.client().request(&req("OPTIONS", "*", &[], b""));
    if outcome(&resp) == "up" {
        let r = last_received(&up);
        assert_eq!(r.target, "*", "OPTIONS * was forwarded as {:?}", r.target);
    }
}

both_drivers!(fragment_in_target_does_not_route_around_an_exact_route);

/// A redirect whose Location starts with a request value must not turn `GET //evil.example` into
/// a protocol-relative `Location: //evil.example` (an open redirect): leading slashes collapse.
#[test]
fn redirect_from_request_path_is_never_protocol_relative() {
    let up = TestUpstream::echo();
    let gw = Gateway::start(
        &config(
            &[("api", &up)],
            r#"
[[routes]]
path = "/{*rest}"
redirect = { status = 301, location = "/{rest}" }
[[routes]]
prefix = "/p/"
redirect = { status = 302, location = "{$path}" }
"#,
        ),
        DRIVER,
    );
    for (path, want) in [("//evil.example/x", "/evil.example/x"), ("/p//evil.example", "/p//evil.example")] {
        let resp = gw.client().request(&get(path));
        assert!(resp.status == 301 || resp.status == 302, "{}", resp.head_str());
        assert_eq!(resp.header("location"), Some(want), "{path}");
    }
    let resp = gw.client().request(&get("///evil.example"));
    assert_eq!(resp.header("location"), Some("/evil.example"));
}

/// Per-route timeouts are per route: one route's short response timeout answers 504 from a silent
/// upstream while another route to the same upstream still waits.
#[test]
fn response_timeout_is_per_route() {
    let up = TestUpstream::hang();
    let gw = Gateway::start(
        &config(
            &[("slow", &up)],
            r#"
[[routes]]
path = "/short"
upstream = "slow"
response_timeout = "200ms"
[[routes]]
path = "/long"
upstream = "slow"
response_timeout = "5s"
"#,
        ),
        DRIVER,
    );
    let started = std::time::Instant::now();
    let resp = gw.client().request(&get("/short"));
    assert_eq!(resp.status, 504, "{}", resp.head_str());
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let mut c = gw.client();
    c.send(&get("/long"));
    c.assert_silent_for(Duration::from_millis(800));
}

/// The admin endpoint reads a request body it does not need before answering, so a client that
/// sent one gets the answer rather than a reset.
#[test]
fn admin_reads_a_posted_body() {
    let up = TestUpstream::echo();
    let mut text = config(&[("api", &up)], "[[routes]]\nprefix = \"/\"\nupstream = \"api\"\n");
    text.push_str("[admin]\naddress = \"127.0.0.1:0\"\n");
    let gw = Gateway::start(&text, DRIVER);
    let admin = gw.admin_addr().expect("admin banner");
    let mut c = Client::connect(admin);
    c.send(b"POST /reload HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"hello");
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}{}", resp.head_str(), resp.body_str());
    assert!(resp.body_str().contains("\"generation\":2"), "{}", resp.body_str());
}
