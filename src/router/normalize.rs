//! Path normalization before matching (RFC 3986): percent-decoding of unreserved characters only
//! (§2.3, §6.2.2.2) and removal of dot-segments (§5.2.4), with a `..` above the root refused.
//!
//! Hand-written rather than the percent-encoding crate: only unreserved characters may be decoded,
//! the output goes into a per-core buffer, and the common case (nothing to do) must be a scan.

use memchr::memchr;

use crate::http::hex_digit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormError {
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A `..` segment would climb above the root.
    AboveRoot,
}

/// What normalization found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Normalized {
    /// The path was rewritten into the output buffer (else it is already normal, use it as is).
    pub rewritten: bool,
    /// It holds an encoded slash (`%2F`/`%2f`), kept encoded.
    pub encoded_slash: bool,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// True when some segment of `path` is `.` or `..`.
fn has_dot_segment(path: &[u8]) -> bool {
    memchr::memchr_iter(b'.', path).any(|i| {
        let start_ok = i > 0 && path[i - 1] == b'/';
        let end = |j: usize| j >= path.len() || path[j] == b'/';
        start_ok && (end(i + 1) || (path.get(i + 1) == Some(&b'.') && end(i + 2)))
    })
}

/// Normalize `path` (starting with `/`, no query). When it needs rewriting, the result is written
/// to `out` (cleared first); otherwise `out` is untouched and `path` is already normal.
pub fn normalize(path: &[u8], out: &mut Vec<u8>) -> Result<Normalized, NormError> {
    let has_pct = memchr(b'%', path).is_some();
    if !has_pct && !has_dot_segment(path) {
        return Ok(Normalized { rewritten: false, encoded_slash: false });
    }
    let mut encoded_slash = false;
    out.clear();
    out.reserve(path.len());
    out.push(b'/');
    let mut i = 1; // past the leading '/'
    loop {
        let seg_start = out.len();
        // Copy one segment, decoding unreserved escapes.
        while i < path.len() && path[i] != b'/' {
            let b = path[i];
            if b == b'%' {
                let (Some(h), Some(l)) =
                    (path.get(i + 1).copied().and_then(hex_digit), path.get(i + 2).copied().and_then(hex_digit))
                else {
                    return Err(NormError::BadEscape);
                };
                let v = h << 4 | l;
                if unreserved(v) {
                    out.push(v);
                } else {
                    encoded_slash |= v == b'/';
                    out.extend_from_slice(&path[i..i + 3]);
                }
                i += 3;
            } else {
                out.push(b);
                i += 1;
            }
        }
        let last = i >= path.len();
        match &out[seg_start..] {
            b"." => out.truncate(seg_start),
            b".." => {
                // `out` ends with the '/' before this segment; drop the segment before it too.
                if seg_start <= 1 {
                    return Err(NormError::AboveRoot);
                }
                out.truncate(seg_start);
                let prev = out[..seg_start - 1].iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(prev + 1);
            }
            _ if !last => out.push(b'/'),
            _ => {}
        }
        if last {
            break;
        }
        i += 1; // the '/'
    }
    Ok(Normalized { rewritten: true, encoded_slash })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(p: &str) -> Result<String, NormError> {
        let mut out = Vec::new();
        let n = normalize(p.as_bytes(), &mut out)?;
        Ok(if n.rewritten { String::from_utf8(out).expect("utf8") } else { p.to_string() })
    }

    #[test]
    fn already_normal_is_untouched() {
        let mut out = b"junk".to_vec();
        let n = normalize(b"/a/b.c/.hidden/..x/", &mut out).expect("ok");
        assert!(!n.rewritten);
        assert_eq!(out, b"junk");
    }

    /// RFC 3986 §5.2.4's examples, plus trailing-dot cases.
    #[test]
    fn rfc3986_5_2_4_remove_dot_segments() {
        assert_eq!(norm("/a/b/c/./../../g").as_deref(), Ok("/a/g"));
        assert_eq!(norm("/a/./b").as_deref(), Ok("/a/b"));
        assert_eq!(norm("/a/b/.").as_deref(), Ok("/a/b/"));
        assert_eq!(norm("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(norm("/a/..").as_deref(), Ok("/"));
        assert_eq!(norm("/.").as_deref(), Ok("/"));
        assert_eq!(norm("/a//../b").as_deref(), Ok("/a/b"));
        assert_eq!(norm("/a//b").as_deref(), Ok("/a//b"));
    }

    #[test]
    fn above_root_is_refused() {
        assert_eq!(norm("/.."), Err(NormError::AboveRoot));
        assert_eq!(norm("/../etc"), Err(NormError::AboveRoot));
        assert_eq!(norm("/a/../../b"), Err(NormError::AboveRoot));
        assert_eq!(norm("/%2e%2e/x"), Err(NormError::AboveRoot));
    }

    /// RFC 3986 §2.3: unreserved characters decoded; everything else kept as escaped.
    #[test]
    fn rfc3986_2_3_unreserved_only() {
        assert_eq!(norm("/%75sers/%7E%2d").as_deref(), Ok("/users/~-"));
        assert_eq!(norm("/a%20b/%41").as_deref(), Ok("/a%20b/A"));
        assert_eq!(norm("/a/%2E%2e/b").as_deref(), Ok("/b"));
        assert_eq!(norm("/a%2Fb").as_deref(), Ok("/a%2Fb"));
        let mut out = Vec::new();
        assert!(normalize(b"/a%2fb", &mut out).expect("ok").encoded_slash);
        assert!(!normalize(b"/a%20b", &mut out).expect("ok").encoded_slash);
    }

    #[test]
    fn malformed_escapes() {
        assert_eq!(norm("/a%"), Err(NormError::BadEscape));
        assert_eq!(norm("/a%4"), Err(NormError::BadEscape));
        assert_eq!(norm("/a%zz"), Err(NormError::BadEscape));
    }
}
