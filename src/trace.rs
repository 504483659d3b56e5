//! W3C Trace Context (https://www.w3.org/TR/trace-context/): a valid `traceparent` keeps its
//! trace id and flags and gets ringgate's own span id as the parent of the upstream request
//! (`tracestate` passes through); an absent one is made (when `[tracing] generate`, the default),
//! with the sampled flag clear since ringgate records no spans yet; a malformed one is replaced
//! (and its `tracestate` dropped, §3.3.1.4). Span export can come later: the ids are here.

use bytes::{BufMut, BytesMut};

use crate::http::parse::RequestHead;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parent {
    pub trace_id: [u8; 32],
    pub flags: [u8; 2],
}

fn lower_hex(b: &[u8]) -> bool {
    b.iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// §3.2: `version-traceid-parentid-flags`, lowercase hex; version ff, an all-zero trace id or
/// parent id are invalid; a future version may carry more fields after a `-`.
pub fn parse(v: &[u8]) -> Option<Parent> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let (version, trace, parent, flags) = (&v[..2], &v[3..35], &v[36..52], &v[53..55]);
    if !lower_hex(version) || version == b"ff" || !lower_hex(trace) || !lower_hex(parent) || !lower_hex(flags) {
        return None;
    }
    if (version == b"00" && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    if trace.iter().all(|c| *c == b'0') || parent.iter().all(|c| *c == b'0') {
        return None;
    }
    let mut p = Parent { trace_id: [0; 32], flags: [0; 2] };
    p.trace_id.copy_from_slice(trace);
    p.flags.copy_from_slice(flags);
    Some(p)
}

/// What to do with a request's trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub trace_id: [u8; 32],
    /// The `traceparent` line to send upstream replaces the client's.
    pub line: [u8; 70],
    /// Drop the client's `tracestate` (its traceparent was malformed or absent).
    pub drop_state: bool,
}

fn hex(out: &mut [u8], mut v: u64) {
    for c in out.iter_mut().rev() {
        *c = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
    }
}

/// Decide for the request in `head`: None when there is none and none is to be made (the
/// request is forwarded as it came). `rand` gives 64 random bits per call.
pub fn decide(head: &[u8], req: &RequestHead, generate: bool, mut rand: impl FnMut() -> u64) -> Option<Decision> {
    let mut seen = None;
    let mut count = 0;
    for h in &req.headers {
        if head[h.name.clone()].eq_ignore_ascii_case(b"traceparent") {
            count += 1;
            seen = Some(&head[h.value.clone()]);
        }
    }
    // Two traceparent fields are as good as a malformed one.
    let parent = if count == 1 { seen.and_then(|v| parse(v.trim_ascii())) } else { None };
    if parent.is_none() && !generate {
        return None;
    }
    let (trace_id, flags, drop_state) = match parent {
        Some(p) => (p.trace_id, p.flags, false),
        None => {
            let mut t = [0u8; 32];
            let (a, b) = (rand() | 1, rand());
            hex(&mut t[..16], a);
            hex(&mut t[16..], b);
            (t, *b"00", true)
        }
    };
    let mut line = [0u8; 70];
    line[..16].copy_from_slice(b"traceparent: 00-");
    line[16..48].copy_from_slice(&trace_id);
    line[48] = b'-';
    hex(&mut line[49..65], rand() | 1);
    line[65] = b'-';
    line[66..68].copy_from_slice(&flags);
    line[68..70].copy_from_slice(b"\r\n");
    Some(Decision { trace_id, line, drop_state })
}

/// Append a decision's line to `out`.
pub fn put(d: &Decision, out: &mut BytesMut) {
    out.put_slice(&d.line);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_spec_example_and_refuses_bad_ones() {
        let p = parse(GOOD).expect("the spec's example");
        assert_eq!(&p.trace_id, b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(&p.flags, b"01");
        for bad in [
            &b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"[..],
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"garbage",
        ] {
            assert!(parse(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(
            parse(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-ever").is_some(),
            "future version"
        );
    }

    fn head(raw: &[u8]) -> (Vec<u8>, RequestHead) {
        let mut req = RequestHead::default();
        assert!(crate::http::parse::parse_request(raw, &Default::default(), &mut req).expect("parses"));
        (raw.to_vec(), req)
    }

    #[test]
    fn kept_made_and_replaced() {
        let mut n = 0x1234u64;
        let mut rand = || {
            n = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
            n
        };
        let (h, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n");
        let d = decide(&h, &r, true, &mut rand).expect("kept");
        assert_eq!(&d.trace_id, b"4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!d.drop_state);
        let line = std::str::from_utf8(&d.line).expect("ascii");
        assert!(line.starts_with("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-") && line.ends_with("-01\r\n"));
        assert!(!line.contains("00f067aa0ba902b7"), "ringgate's own span id is the new parent");
        assert!(parse(line["traceparent: ".len()..].trim_end().as_bytes()).is_some());

        let (h, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\ntraceparent: nonsense\r\ntracestate: a=b\r\n\r\n");
        let d = decide(&h, &r, true, &mut rand).expect("replaced");
        assert!(d.drop_state);
        assert!(parse(&d.line[13..68]).is_some());
        assert_eq!(decide(&h, &r, false, &mut rand), None, "not generating: left alone");

        let (h, r) = head(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let d = decide(&h, &r, true, &mut rand).expect("made");
        assert_eq!(&d.line[66..68], b"00", "not sampled: ringgate records no spans");
    }
}
