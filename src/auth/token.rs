//! Finding the token in a request (Authorization: Bearer, a header, or a cookie), and the
//! checks made before any signature work: size, shape, no duplicate names in the header or the
//! claims (a parser that keeps the first and one that keeps the last would disagree on who the
//! token is for).

use std::fmt;

use base64::Engine;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::http::parse::RequestHead;

/// Where a policy reads the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// This header's value (lowercase name); a `Bearer ` prefix is allowed.
    Header(Box<str>),
    /// This cookie.
    Cookie(Box<str>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found<'a> {
    Token(&'a [u8]),
    /// No token (or an Authorization scheme other than Bearer).
    Missing,
    /// The token field appears twice.
    Ambiguous,
}

/// The token in `head` (the request head's bytes) according to `source`.
pub fn find<'a>(source: &TokenSource, head: &'a [u8], req: &RequestHead) -> Found<'a> {
    let mut found = Found::Missing;
    let mut seen = false;
    for h in &req.headers {
        let name = &head[h.name.clone()];
        let value = trim(&head[h.value.clone()]);
        let token = match source {
            TokenSource::Bearer if name.eq_ignore_ascii_case(b"authorization") => bearer(value),
            TokenSource::Header(n) if name.eq_ignore_ascii_case(n.as_bytes()) => Some(bearer(value).unwrap_or(value)),
            TokenSource::Cookie(n) if name.eq_ignore_ascii_case(b"cookie") => match cookie(value, n.as_bytes()) {
                Cookie::None => continue,
                Cookie::One(v) => Some(v),
                Cookie::Twice => return Found::Ambiguous,
            },
            _ => continue,
        };
        if seen {
            return Found::Ambiguous;
        }
        seen = true;
        found = match token {
            Some(t) if !t.is_empty() => Found::Token(t),
            _ => Found::Missing,
        };
    }
    found
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &v[start..end]
}

/// RFC 6750 §2.1: `Bearer` (case-insensitive, RFC 9110 §11.1), one or more spaces, the token.
fn bearer(v: &[u8]) -> Option<&[u8]> {
    if v.len() > 7 && v[..6].eq_ignore_ascii_case(b"bearer") && v[6] == b' ' {
        Some(trim(&v[7..]))
    } else {
        None
    }
}

enum Cookie<'a> {
    None,
    One(&'a [u8]),
    Twice,
}

/// RFC 6265 §4.2.1: `name=value` pairs separated by `; `.
fn cookie<'a>(v: &'a [u8], name: &[u8]) -> Cookie<'a> {
    let mut out = Cookie::None;
    for pair in v.split(|b| *b == b';') {
        let pair = trim(pair);
        let Some(eq) = pair.iter().position(|b| *b == b'=') else { continue };
        if &pair[..eq] == name {
            if !matches!(out, Cookie::None) {
                return Cookie::Twice;
            }
            let val = &pair[eq + 1..];
            // A quoted cookie value (RFC 6265 §4.1.1).
            let val = val.strip_prefix(b"\"").and_then(|x| x.strip_suffix(b"\"")).unwrap_or(val);
            out = Cookie::One(val);
        }
    }
    out
}

/// The shape of a compact JWS (RFC 7515 §7.1): three base64url parts, the first two non-empty.
/// Returns the decoded header and payload JSON.
pub fn split(token: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut parts = token.split(|b| *b == b'.');
    let (h, p, s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || h.is_empty() || p.is_empty() {
        return None;
    }
    let b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    if !h.iter().all(b64) || !p.iter().all(b64) || !s.iter().all(b64) {
        return None;
    }
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Some((e.decode(h).ok()?, e.decode(p).ok()?))
}

/// Whether `json` is an object whose member names are all distinct.
pub fn unique_names(json: &[u8]) -> bool {
    struct Names;
    impl<'de> Visitor<'de> for Names {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object with distinct member names")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            // Sorted once at the end (n log n): a token crafted with thousands of names costs no
            // more than its length allows.
            let mut seen: Vec<String> = Vec::new();
            while let Some(k) = map.next_key::<String>()? {
                map.next_value::<IgnoredAny>()?;
                seen.push(k);
            }
            seen.sort_unstable();
            if seen.windows(2).any(|w| w[0] == w[1]) {
                return Err(serde::de::Error::custom("duplicate member name"));
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    de.deserialize_map(Names).is_ok() && de.end().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8]) -> (bytes::Bytes, RequestHead) {
        let limits = crate::http::parse::HeadLimits::default();
        let b = bytes::Bytes::copy_from_slice(raw);
        let mut req = RequestHead::default();
        assert!(crate::http::parse::parse_request(&b, &limits, &mut req).expect("parses"), "complete");
        (b, req)
    }

    #[test]
    fn bearer_header_cookie() {
        let (b, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: bearer  abc.def.ghi \r\n\r\n");
        assert_eq!(find(&TokenSource::Bearer, &b, &r), Found::Token(b"abc.def.ghi"));
        let (b, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic dXNlcjpwdw==\r\n\r\n");
        assert_eq!(find(&TokenSource::Bearer, &b, &r), Found::Missing, "RFC 6750 3.1: another scheme");
        let (b, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n");
        assert_eq!(find(&TokenSource::Bearer, &b, &r), Found::Ambiguous);
        let (b, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\nX-Token: t.o.k\r\n\r\n");
        assert_eq!(find(&TokenSource::Header("x-token".into()), &b, &r), Found::Token(b"t.o.k"));
        let (b, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\nCookie: a=1; jwt=\"x.y.z\"; b=2\r\n\r\n");
        assert_eq!(find(&TokenSource::Cookie("jwt".into()), &b, &r), Found::Token(b"x.y.z"));
        let (b, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\nCookie: jwt=1\r\nCookie: jwt=2\r\n\r\n");
        assert_eq!(find(&TokenSource::Cookie("jwt".into()), &b, &r), Found::Ambiguous);
        let (b, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(find(&TokenSource::Bearer, &b, &r), Found::Missing);
    }

    #[test]
    fn shape_and_duplicates() {
        assert!(split(b"eyJhIjoxfQ.eyJiIjoyfQ.c2ln").is_some());
        assert!(split(b"eyJhIjoxfQ.eyJiIjoyfQ.").is_some(), "empty signature is a shape, refused later");
        assert!(split(b"eyJhIjoxfQ.eyJiIjoyfQ").is_none());
        assert!(split(b"a.b.c.d").is_none());
        assert!(split(b"ey+hIjoxfQ.eyJiIjoyfQ.c2ln").is_none(), "not base64url");
        assert!(unique_names(br#"{"a":1,"b":{"a":2}}"#));
        assert!(!unique_names(br#"{"sub":"a","sub":"b"}"#));
        assert!(!unique_names(br#"[1]"#));
        assert!(!unique_names(br#"{"a":1} x"#));
    }
}
