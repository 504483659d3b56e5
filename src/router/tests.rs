//! One test per precedence rule of docs/routing.md, on the router alone.

use super::*;

struct Req<'a> {
    method: &'a str,
    headers: &'a [(&'a str, &'a str)],
    query: &'a [(&'a str, &'a str)],
}

impl Facts for Req<'_> {
    fn method(&self) -> &[u8] {
        self.method.as_bytes()
    }
    fn header(&self, name: &[u8], value: Option<&[u8]>) -> bool {
        self.headers
            .iter()
            .any(|(n, v)| n.as_bytes().eq_ignore_ascii_case(name) && value.is_none_or(|x| x == v.as_bytes()))
    }
    fn query(&self, name: &[u8], value: Option<&[u8]>) -> bool {
        self.query.iter().any(|(n, v)| n.as_bytes() == name && value.is_none_or(|x| x == v.as_bytes()))
    }
}

fn get() -> Req<'static> {
    Req { method: "GET", headers: &[], query: &[] }
}

fn spec(name: &str, host: &str, path: &str) -> RouteSpec {
    let pat = if let Some(p) = path.strip_prefix("prefix:") { parse_prefix(p) } else { parse_path(path) };
    RouteSpec {
        name: name.into(),
        host: if host.is_empty() { HostPattern::Any } else { HostPattern::parse(host).expect("host") },
        pieces: pat.expect("pattern").pieces,
        methods: None,
        conds: Vec::new(),
    }
}

fn with_methods(mut s: RouteSpec, m: &[&str]) -> RouteSpec {
    s.methods = Some(MethodSet::parse(m.iter().copied()).expect("methods"));
    s
}

fn with_cond(mut s: RouteSpec, kind: CondKind, name: &str, value: Option<&str>) -> RouteSpec {
    s.conds.push(Cond { kind, name: name.as_bytes().into(), value: value.map(|v| v.as_bytes().into()) });
    s
}

fn names(specs: &[RouteSpec], host: Option<&str>, path: &str, req: &Req<'_>) -> Option<String> {
    let r = Router::build(specs).expect("no ties");
    let mut p = Params::default();
    match r.lookup(host.map(str::as_bytes), path.as_bytes(), req, &mut p) {
        Lookup::Found(i) => Some(specs[i as usize].name.clone()),
        Lookup::MethodNotAllowed => Some("405".into()),
        Lookup::NotFound => None,
    }
}

#[test]
fn exact_host_before_wildcard_before_any() {
    let specs = [
        spec("any", "", "/"),
        spec("wild", "*.example.com", "/"),
        spec("deeper", "*.api.example.com", "/"),
        spec("exact", "www.example.com", "/"),
    ];
    assert_eq!(names(&specs, Some("www.example.com"), "/", &get()).as_deref(), Some("exact"));
    assert_eq!(names(&specs, Some("WWW.Example.COM.:8080"), "/", &get()).as_deref(), Some("exact"));
    assert_eq!(names(&specs, Some("a.example.com"), "/", &get()).as_deref(), Some("wild"));
    assert_eq!(names(&specs, Some("a.b.example.com"), "/", &get()).as_deref(), Some("wild"));
    assert_eq!(names(&specs, Some("x.api.example.com"), "/", &get()).as_deref(), Some("deeper"));
    assert_eq!(names(&specs, Some("example.com"), "/", &get()).as_deref(), Some("any"), "not the bare suffix");
    assert_eq!(names(&specs, None, "/", &get()).as_deref(), Some("any"));
}

#[test]
fn a_host_with_routes_does_not_fall_through() {
    let specs = [spec("any", "", "/"), spec("exact", "a.test", "/only")];
    assert_eq!(names(&specs, Some("a.test"), "/other", &get()), None);
    assert_eq!(names(&[spec("exact", "a.test", "/")], Some("b.test"), "/", &get()), None);
}

#[test]
fn static_before_param_before_catch_all() {
    let specs = [
        spec("rest", "", "/users/{*rest}"),
        spec("id", "", "/users/{id}"),
        spec("me", "", "/users/me"),
        spec("posts", "", "/users/{id}/posts"),
    ];
    assert_eq!(names(&specs, None, "/users/me", &get()).as_deref(), Some("me"));
    assert_eq!(names(&specs, None, "/users/7", &get()).as_deref(), Some("id"));
    assert_eq!(names(&specs, None, "/users/me/posts", &get()).as_deref(), Some("posts"), "backtracks from `me`");
    assert_eq!(names(&specs, None, "/users/7/other", &get()).as_deref(), Some("rest"));
    assert_eq!(names(&specs, None, "/users/", &get()).as_deref(), Some("rest"));
    assert_eq!(names(&specs, None, "/users", &get()), None);
}

#[test]
fn longest_prefix_wins_and_exact_beats_empty_tail() {
    let specs = [spec("root", "", "prefix:/"), spec("api", "", "prefix:/api/"), spec("v1", "", "prefix:/api/v1")];
    assert_eq!(names(&specs, None, "/api/v1/x", &get()).as_deref(), Some("v1"));
    assert_eq!(names(&specs, None, "/api/v2", &get()).as_deref(), Some("api"));
    assert_eq!(names(&specs, None, "/x", &get()).as_deref(), Some("root"));
    let specs = [spec("tail", "", "/s/{*rest}"), spec("exact", "", "/s/")];
    assert_eq!(names(&specs, None, "/s/", &get()).as_deref(), Some("exact"));
    assert_eq!(names(&specs, None, "/s/a", &get()).as_deref(), Some("tail"));
}

#[test]
fn params_are_byte_ranges_of_the_path() {
    let specs = [spec("p", "", "/u/{id}/f/{*rest}")];
    let r = Router::build(&specs).expect("ok");
    let mut p = Params::default();
    assert_eq!(r.lookup(None, b"/u/42/f/a/b", &get(), &mut p), Lookup::Found(0));
    assert_eq!(p.iter().collect::<Vec<_>>(), vec![3..5, 8..11]);
}

/// RFC 9110 §15.5.6: a path match without a method match is 405 with Allow.
#[test]
fn rfc9110_15_5_6_method_not_allowed() {
    let specs =
        [with_methods(spec("get", "", "/x"), &["GET"]), with_methods(spec("post", "", "/x"), &["POST", "PURGE"])];
    let del = Req { method: "DELETE", headers: &[], query: &[] };
    assert_eq!(names(&specs, None, "/x", &del).as_deref(), Some("405"));
    assert_eq!(names(&specs, None, "/y", &del), None);
    let r = Router::build(&specs).expect("ok");
    assert_eq!(r.allowed(None, b"/x", &del), vec!["GET", "HEAD", "POST", "PURGE"]);
    let purge = Req { method: "PURGE", headers: &[], query: &[] };
    assert_eq!(names(&specs, None, "/x", &purge).as_deref(), Some("post"));
}

#[test]
fn method_mismatch_falls_back_to_a_less_specific_route() {
    let specs = [with_methods(spec("get-me", "", "/users/me"), &["GET"]), spec("any", "", "/users/{id}")];
    let post = Req { method: "POST", headers: &[], query: &[] };
    assert_eq!(names(&specs, None, "/users/me", &post).as_deref(), Some("any"));
}

/// RFC 9110 §9.3.2: HEAD is GET without the body, so a GET route answers HEAD unless a route of
/// the same pattern names HEAD itself.
#[test]
fn head_uses_get_routes_unless_head_is_named() {
    let head = Req { method: "HEAD", headers: &[], query: &[] };
    let specs = [with_methods(spec("get", "", "/x"), &["GET"])];
    assert_eq!(names(&specs, None, "/x", &head).as_deref(), Some("get"));
    let specs = [with_methods(spec("get", "", "/x"), &["GET"]), with_methods(spec("head", "", "/x"), &["HEAD"])];
    assert_eq!(names(&specs, None, "/x", &head).as_deref(), Some("head"));
}

#[test]
fn conditions_make_a_route_more_specific() {
    let specs = [
        spec("plain", "", "/x"),
        with_cond(spec("v2", "", "/x"), CondKind::Header, "x-version", Some("2")),
        with_cond(
            with_cond(spec("v2-debug", "", "/x"), CondKind::Header, "x-version", Some("2")),
            CondKind::Query,
            "debug",
            None,
        ),
    ];
    let r = |headers, query| Req { method: "GET", headers, query };
    assert_eq!(names(&specs, None, "/x", &r(&[], &[])).as_deref(), Some("plain"));
    assert_eq!(names(&specs, None, "/x", &r(&[("X-Version", "2")], &[])).as_deref(), Some("v2"));
    assert_eq!(names(&specs, None, "/x", &r(&[("X-Version", "3")], &[])).as_deref(), Some("plain"));
    assert_eq!(names(&specs, None, "/x", &r(&[("X-Version", "2")], &[("debug", "")])).as_deref(), Some("v2-debug"));
}

#[test]
fn ties_are_refused_and_name_both_routes() {
    let ties = Router::build(&[spec("a", "", "/x/{id}"), spec("b", "", "/x/{other}")]).expect_err("tie");
    assert_eq!(ties, vec![Tie { route: 1, other: 0 }]);
    // A prefix and a catch-all ending at the same place are the same pattern.
    assert!(Router::build(&[spec("a", "", "prefix:/s/"), spec("b", "", "/s/{*rest}")]).is_err());
    // Overlapping methods tie; disjoint ones do not.
    assert!(Router::build(&[with_methods(spec("a", "", "/x"), &["GET", "PUT"]), spec("b", "", "/x")]).is_err());
    assert!(Router::build(&[
        with_methods(spec("a", "", "/x"), &["GET"]),
        with_methods(spec("b", "", "/x"), &["POST"])
    ])
    .is_ok());
    // Same number of conditions: a tie unless they exclude each other.
    let h = |n: &str, v| with_cond(spec(n, "", "/x"), CondKind::Header, "x", Some(v));
    assert!(Router::build(&[h("a", "1"), h("b", "2")]).is_ok());
    let q = with_cond(spec("q", "", "/x"), CondKind::Query, "y", None);
    assert!(Router::build(&[h("a", "1"), q]).is_err());
    // Different hosts never tie.
    assert!(Router::build(&[spec("a", "a.test", "/x"), spec("b", "b.test", "/x")]).is_ok());
}

#[test]
fn pattern_syntax() {
    assert!(parse_path("/a/{id}x").is_err());
    assert!(parse_path("/a{id}").is_err());
    assert!(parse_path("/a/{*rest}/b").is_err());
    assert!(parse_path("/a/{id}/{id}").is_err());
    assert!(parse_path("/a/./b").is_err());
    assert!(parse_path("/%7Euser").is_err());
    assert!(parse_path("a").is_err());
    assert_eq!(parse_path("/a/{id}/{*rest}").expect("ok").names, vec!["id", "rest"]);
    assert!(parse_prefix("/%41").is_err());
    assert!(parse_prefix("/a%2F").is_ok());
    assert!(HostPattern::parse("http://x").is_err());
    assert!(HostPattern::parse("x:80").is_err());
    assert_eq!(HostPattern::parse("*.A.test."), Ok(HostPattern::Wildcard(".a.test".into())));
}
