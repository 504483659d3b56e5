//! Request-head parsing (sans-io): bytes in, a [`RequestHead`] of offsets or a [`ParseError`] out.
//!
//! Owns every framing rule a request must pass before a byte of it goes upstream (RFC 9112 §2.2,
//! §3, §5.1–5.2, §6.1, §6.3, §7.1; RFC 9110 §7.2, §8.6). It never allocates per header: header
//! positions are byte ranges into the head buffer, so the caller can `freeze()` the buffer and
//! forward slices of it. It never imports the runtime.

use std::mem::MaybeUninit;
use std::ops::Range;

/// The most header lines httparse is given room for; `limits.max_headers` may only be lower.
pub const MAX_HEADERS_HARD: usize = 256;

/// Most field names one request may list in Connection (each is compared with every header).
pub const MAX_CONNECTION_TOKENS: usize = 32;

/// Parser limits, copied from config.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits { max_request_line: 8192, max_header_bytes: 32 * 1024, max_headers: 100 }
    }
}

/// Why a request head is refused. Each maps to one status in `error.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    #[error("request line too long")]
    RequestLineTooLong,
    #[error("request header fields too large")]
    HeadersTooLarge,
    #[error("unsupported expectation")]
    ExpectationFailed,
    #[error("transfer coding or method not implemented")]
    NotImplemented,
    #[error("HTTP version not supported")]
    VersionNotSupported,
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    #[default]
    None,
    Length(u64),
    Chunked,
}

/// What the proxy does with one header line when forwarding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    /// Forwarded unchanged.
    Other,
    /// Hop-by-hop (Connection, Keep-Alive, TE, Trailer, Proxy-Connection, Upgrade, Expect): dropped.
    HopByHop,
    Upgrade,
    Host,
    ContentLength,
    TransferEncoding,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XRequestId,
}

/// One header line: `line` spans from the name to the end of its CRLF.
#[derive(Debug, Clone)]
pub struct HeaderPos {
    pub name: Range<usize>,
    pub value: Range<usize>,
    pub line: Range<usize>,
    pub kind: HeaderKind,
}

/// A parsed request head: offsets into the head bytes plus what framing decided.
#[derive(Debug, Default, Clone)]
pub struct RequestHead {
    /// Bytes of the head, including the final empty line.
    pub len: usize,
    pub method: Range<usize>,
    pub target: Range<usize>,
    /// Path-and-query to send upstream (origin-form; for absolute-form, the part after the authority).
    pub path: Range<usize>,
    /// End of the request line including its CRLF.
    pub request_line_end: usize,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<HeaderPos>,
    pub host: Option<Range<usize>>,
    pub framing: BodyFraming,
    pub keep_alive: bool,
    pub expect_continue: bool,
    pub upgrade: bool,
    pub is_head: bool,
    /// Header names listed in Connection (dropped when forwarding).
    pub connection_tokens: Vec<Range<usize>>,
    pub request_id: Option<Range<usize>>,
    /// Authority of an absolute-form target, used as the host when an HTTP/1.0 request has no Host.
    pub target_authority: Option<Range<usize>>,
}

impl RequestHead {
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    fn reset(&mut self) {
        self.headers.clear();
        self.connection_tokens.clear();
        self.host = None;
        self.framing = BodyFraming::None;
        self.keep_alive = false;
        self.expect_continue = false;
        self.upgrade = false;
        self.is_head = false;
        self.request_id = None;
        self.target_authority = None;
    }

    /// The host the request is for: its Host field, or an HTTP/1.0 absolute-form authority.
    pub fn host_range(&self) -> Option<&Range<usize>> {
        self.host.as_ref().or(self.target_authority.as_ref())
    }

    /// True when the header named at `name` is listed in this request's Connection field.
    pub fn named_by_connection(&self, buf: &[u8], name: &Range<usize>) -> bool {
        self.connection_tokens.iter().any(|t| buf[t.clone()].eq_ignore_ascii_case(&buf[name.clone()]))
    }
}

/// Where `part` (a sub-slice of `base`) lies in `base`.
pub(crate) fn offset(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

/// Parse one request head from the start of `buf`.
///
/// Returns `Ok(true)` with `out` filled when a whole head is present (`out.len` bytes), `Ok(false)`
/// when more bytes are needed, or the error to answer with. Leading empty lines are skipped as
/// RFC 9112 §2.2 allows.
pub fn parse_request(buf: &[u8], limits: &HeadLimits, out: &mut RequestHead) -> Result<bool, ParseError> {
    // Uninitialised header slots: initialising 256 of them would cost more than the parse.
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_HARD];
    let mut req = httparse::Request::new(&mut []);
    let status = match req.parse_with_uninit_headers(buf, &mut storage) {
        Ok(s) => s,
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadersTooLarge),
        Err(httparse::Error::Version) => {
            return Err(if well_formed_version(buf) {
                ParseError::VersionNotSupported
            } else {
                ParseError::Malformed("invalid HTTP version")
            })
        }
        Err(httparse::Error::HeaderName) => return Err(ParseError::Malformed("invalid header name")),
        Err(httparse::Error::HeaderValue) => return Err(ParseError::Malformed("invalid header value")),
        Err(httparse::Error::NewLine) => return Err(ParseError::Malformed("invalid line ending")),
        Err(httparse::Error::Token) => return Err(ParseError::Malformed("invalid token")),
        Err(_) => return Err(ParseError::Malformed("invalid request")),
    };
    let n = match status {
        httparse::Status::Partial => {
            // No end of head yet: refuse early when a limit is already exceeded.
            let line_end = buf.iter().position(|&b| b == b'\n');
            let limit = limits.max_request_line;
            match line_end {
                None if buf.len() > limit => return Err(ParseError::RequestLineTooLong),
                Some(e) if e > limit => return Err(ParseError::RequestLineTooLong),
                _ => {}
            }
            if buf.len() > limits.max_header_bytes {
                return Err(ParseError::HeadersTooLarge);
            }
            return Ok(false);
        }
        httparse::Status::Complete(n) => n,
    };
    out.reset();
    out.len = n;
    let head = &buf[..n];

    // RFC 9112 §2.2: a bare LF or CR as a line terminator is not accepted (httparse allows bare LF).
    if !crlf_only(head) {
        return Err(ParseError::Malformed("bare LF or CR in request head"));
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(ParseError::Malformed("incomplete request line"));
    };
    out.method = offset(buf, method.as_bytes());
    out.target = offset(buf, target.as_bytes());
    out.minor = minor;
    // Request line ends at the first LF after the target.
    let rl_end = head[out.target.end..].iter().position(|&b| b == b'\n').map(|p| out.target.end + p + 1);
    let Some(rl_end) = rl_end else {
        return Err(ParseError::Malformed("request line"));
    };
    out.request_line_end = rl_end;
    if rl_end - 2 > limits.max_request_line {
        return Err(ParseError::RequestLineTooLong);
    }
    if n > limits.max_header_bytes || req.headers.len() > limits.max_headers {
        return Err(ParseError::HeadersTooLarge);
    }
    out.is_head = method == "HEAD";
    if method == "CONNECT" {
        return Err(ParseError::NotImplemented);
    }
    let count = req.headers.len();
    let mut content_length: Option<u64> = None;
    let mut te_seen = false;
    let mut te_chunked_last = false;
    // A coding other than chunked (gzip, …): ringgate does not decode them (RFC 9112 §6.1: 501).
    let mut te_other = false;
    let mut upgrade_header = false;
    let mut connection_upgrade = false;
    let mut close_listed = false;
    let mut keep_alive_listed = false;
    for i in 0..count {
        let h = &req.headers[i];
        let name = offset(buf, h.name.as_bytes());
        let value = offset(buf, h.value);
        let line_end = if i + 1 < count { offset(buf, req.headers[i + 1].name.as_bytes()).start } else { n - 2 };
        let kind = classify(h.name.as_bytes());
        match kind {
            HeaderKind::Host => {
                if out.host.is_some() {
                    return Err(ParseError::Malformed("more than one Host header"));
                }
                if !valid_host(h.value) {
                    return Err(ParseError::Malformed("invalid Host header"));
                }
                out.host = Some(value.clone());
            }
            HeaderKind::ContentLength => {
                // RFC 9112 §6.3 item 5 / RFC 9110 §8.6: one value, digits only; any repetition is refused.
                if content_length.is_some() {
                    return Err(ParseError::Malformed("more than one Content-Length"));
                }
                content_length =
                    Some(parse_content_length(h.value).ok_or(ParseError::Malformed("invalid Content-Length"))?);
            }
            HeaderKind::TransferEncoding => {
                te_seen = true;
                for coding in h.value.split(|&b| b == b',') {
                    let c = trim_ows(coding);
                    if c.is_empty() || !c.iter().all(|&b| is_tchar(b)) {
                        return Err(ParseError::Malformed("invalid Transfer-Encoding"));
                    }
                    if te_chunked_last {
                        // RFC 9112 §7.1: chunked is applied once and last.
                        return Err(ParseError::Malformed("chunked is not the final transfer coding"));
                    }
                    te_chunked_last = c.eq_ignore_ascii_case(b"chunked");
                    if !te_chunked_last {
                        te_other = true;
                    }
                }
            }
            HeaderKind::HopByHop => {
                let lname = h.name.as_bytes();
                if lname.eq_ignore_ascii_case(b"connection") {
                    for token in h.value.split(|&b| b == b',') {
                        let t = trim_ows(token);
                        if t.is_empty() {
                            continue;
                        }
                        if t.eq_ignore_ascii_case(b"close") {
                            close_listed = true;
                        } else if t.eq_ignore_ascii_case(b"keep-alive") {
                            keep_alive_listed = true;
                        } else if t.eq_ignore_ascii_case(b"upgrade") {
                            connection_upgrade = true;
                        } else if t.eq_ignore_ascii_case(b"content-length")
                            || t.eq_ignore_ascii_case(b"transfer-encoding")
                            || t.eq_ignore_ascii_case(b"host")
                        {
                            // Dropping a framing field as hop-by-hop (RFC 9110 §7.6.1) while the
                            // body it frames is forwarded would desynchronise the upstream.
                            return Err(ParseError::Malformed("Connection names a framing header"));
                        } else {
                            if out.connection_tokens.len() >= MAX_CONNECTION_TOKENS {
                                return Err(ParseError::Malformed("too many Connection options"));
                            }
                            out.connection_tokens.push(offset(buf, t));
                        }
                    }
                } else if lname.eq_ignore_ascii_case(b"expect") {
                    if trim_ows(h.value).eq_ignore_ascii_case(b"100-continue") {
                        out.expect_continue = minor == 1;
                    } else {
                        return Err(ParseError::ExpectationFailed);
                    }
                }
            }
            HeaderKind::Upgrade => upgrade_header = true,
            HeaderKind::XRequestId if valid_request_id(h.value) && out.request_id.is_none() => {
                out.request_id = Some(value.clone());
            }
            _ => {}
        }
        out.headers.push(HeaderPos { name, value, line: offset(buf, h.name.as_bytes()).start..line_end, kind });
    }
    // RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive" (and no "close").
    out.keep_alive = !close_listed && (minor == 1 || keep_alive_listed);

    // RFC 9112 §3.2: a 1.1 request carries exactly one Host.
    if minor == 1 && out.host.is_none() {
        return Err(ParseError::Malformed("missing Host header"));
    }

    // RFC 9112 §6.1, §6.3: framing.
    out.framing = match (te_seen, content_length) {
        (true, Some(_)) => return Err(ParseError::Malformed("both Content-Length and Transfer-Encoding")),
        (true, None) if minor == 0 => return Err(ParseError::Malformed("Transfer-Encoding in an HTTP/1.0 request")),
        (true, None) if !te_chunked_last => return Err(ParseError::Malformed("final transfer coding is not chunked")),
        (true, None) if te_other => return Err(ParseError::NotImplemented),
        (true, None) => BodyFraming::Chunked,
        (false, Some(0)) | (false, None) => BodyFraming::None,
        (false, Some(len)) => BodyFraming::Length(len),
    };
    out.upgrade = upgrade_header && connection_upgrade && minor == 1;

    // RFC 9112 §3.2: request target forms.
    let t = target.as_bytes();
    if t.first() == Some(&b'/') {
        out.path = out.target.clone();
    } else if t == b"*" {
        if method != "OPTIONS" {
            return Err(ParseError::Malformed("asterisk-form only with OPTIONS"));
        }
        out.path = out.target.clone();
    } else if let Some(rest) = strip_scheme(t) {
        // absolute-form: the authority must agree with Host (RFC 9112 §3.2.2).
        let auth_end = rest.iter().position(|&b| b == b'/' || b == b'?' || b == b'#').unwrap_or(rest.len());
        let authority = &rest[..auth_end];
        if authority.is_empty() || authority.contains(&b'@') || !valid_host(authority) {
            return Err(ParseError::Malformed("invalid absolute-form authority"));
        }
        match &out.host {
            Some(h) if buf[h.clone()].eq_ignore_ascii_case(authority) => {}
            // HTTP/1.0 may omit Host; the target's authority names the host then.
            None if minor == 0 => out.target_authority = Some(offset(buf, authority)),
            _ => return Err(ParseError::Malformed("absolute-form authority does not match Host")),
        }
        let path_start = out.target.end - (rest.len() - auth_end);
        out.path = path_start..out.target.end;
    } else {
        return Err(ParseError::Malformed("invalid request target"));
    }
    Ok(true)
}

/// The request line ends in a well-formed `HTTP-version` (RFC 9112 §2.3) that httparse refused:
/// a version ringgate does not speak (505), as opposed to garbage (400).
fn well_formed_version(buf: &[u8]) -> bool {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // method SP request-target SP HTTP-version, nothing else (else it is a malformed line).
    if line.iter().filter(|&&b| b == b' ').count() != 2 {
        return false;
    }
    let v = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    v.len() == 8 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && v[6] == b'.' && v[7].is_ascii_digit()
}

fn strip_scheme(t: &[u8]) -> Option<&[u8]> {
    if t.len() > 7 && t[..7].eq_ignore_ascii_case(b"http://") {
        Some(&t[7..])
    } else if t.len() > 8 && t[..8].eq_ignore_ascii_case(b"https://") {
        Some(&t[8..])
    } else {
        None
    }
}

/// Every LF is preceded by CR and every CR is followed by LF (RFC 9112 §2.2). httparse accepts
/// a bare LF as a line end; this closes that door. SIMD scans via memchr: a head has few lines.
/// (Control characters other than HTAB are refused by httparse itself in every part of the head;
/// the framing tests assert it.)
pub fn crlf_only(head: &[u8]) -> bool {
    let mut lf = 0usize;
    for i in memchr::memchr_iter(b'\n', head) {
        if i == 0 || head[i - 1] != b'\r' {
            return false;
        }
        lf += 1;
    }
    // Each LF has its own CR before it, so equal counts mean no CR stands alone.
    memchr::memchr_iter(b'\r', head).count() == lf
}

/// RFC 9110 §8.6: `1*DIGIT`, no sign, no list, no whitespace inside; bounded to 18 digits.
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')))
}

/// Host: reg-name / IPv4 / [IPv6] with optional :port (RFC 3986 §3.2.2); no whitespace or delimiters.
pub fn valid_host(v: &[u8]) -> bool {
    v.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b':'
                    | b'['
                    | b']'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    })
}

/// A request id we keep: 1..=128 of `[A-Za-z0-9._-]`.
pub fn valid_request_id(v: &[u8]) -> bool {
    !v.is_empty() && v.len() <= 128 && v.iter().all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

pub(crate) fn classify(name: &[u8]) -> HeaderKind {
    // Dispatch on length first so most names cost one comparison.
    match name.len() {
        2 if name.eq_ignore_ascii_case(b"te") => HeaderKind::HopByHop,
        4 if name.eq_ignore_ascii_case(b"host") => HeaderKind::Host,
        6 if name.eq_ignore_ascii_case(b"expect") => HeaderKind::HopByHop,
        7 if name.eq_ignore_ascii_case(b"upgrade") => HeaderKind::Upgrade,
        7 if name.eq_ignore_ascii_case(b"trailer") => HeaderKind::HopByHop,
        10 if name.eq_ignore_ascii_case(b"connection") => HeaderKind::HopByHop,
        10 if name.eq_ignore_ascii_case(b"keep-alive") => HeaderKind::HopByHop,
        12 if name.eq_ignore_ascii_case(b"x-request-id") => HeaderKind::XRequestId,
        14 if name.eq_ignore_ascii_case(b"content-length") => HeaderKind::ContentLength,
        15 if name.eq_ignore_ascii_case(b"x-forwarded-for") => HeaderKind::XForwardedFor,
        16 if name.eq_ignore_ascii_case(b"x-forwarded-host") => HeaderKind::XForwardedHost,
        16 if name.eq_ignore_ascii_case(b"proxy-connection") => HeaderKind::HopByHop,
        17 if name.eq_ignore_ascii_case(b"transfer-encoding") => HeaderKind::TransferEncoding,
        17 if name.eq_ignore_ascii_case(b"x-forwarded-proto") => HeaderKind::XForwardedProto,
        _ => HeaderKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<RequestHead, ParseError> {
        let mut h = RequestHead::default();
        match parse_request(raw, &HeadLimits::default(), &mut h)? {
            true => Ok(h),
            false => Err(ParseError::Malformed("partial")),
        }
    }

    #[test]
    fn simple_get() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
        let h = parse(raw).expect("valid");
        assert_eq!(&raw[h.path.clone()], b"/a?b=1");
        assert_eq!(h.framing(), BodyFraming::None);
        assert!(h.keep_alive);
        assert_eq!(h.headers.len(), 2);
        assert_eq!(&raw[h.headers[1].line.clone()], b"Accept: */*\r\n");
    }

    #[test]
    fn rfc9112_6_1_cl_and_te_refused() {
        let raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(parse(raw), Err(ParseError::Malformed(_))));
    }

    #[test]
    fn rfc9112_2_2_bare_lf_refused() {
        assert!(parse(b"GET / HTTP/1.1\nHost: x\n\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\nX: y\r\n\r\n").is_err());
    }

    #[test]
    fn rfc9112_5_2_obs_fold_refused() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n").is_err());
    }

    #[test]
    fn rfc9112_5_1_space_before_colon_refused() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n").is_err());
    }

    #[test]
    fn rfc9110_8_6_content_length_forms() {
        for bad in ["+5", "-1", "0x10", "", "1,1", "1 1", "99999999999999999999"] {
            let raw = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {bad}\r\n\r\n");
            assert!(parse(raw.as_bytes()).is_err(), "{bad}");
        }
        let dup = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert!(parse(dup).is_err());
    }

    #[test]
    fn rfc9112_6_1_te_final_coding_must_be_chunked() {
        for te in ["chunked, identity", "xchunked", "gzip", "chunked, chunked", "chunked\x0b", " "] {
            let raw = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert!(parse(raw.as_bytes()).is_err(), "{te:?}");
        }
        let ok = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(parse(ok).expect("ok").framing(), BodyFraming::Chunked);
        let gz = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        assert_eq!(parse(gz).err(), Some(ParseError::NotImplemented));
        assert_eq!(parse(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n").err(), Some(ParseError::VersionNotSupported));
        assert!(matches!(parse(b"GET / HTTP/1.x\r\nHost: x\r\n\r\n"), Err(ParseError::Malformed(_))));
        assert!(matches!(parse(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"), Err(ParseError::Malformed(_))));
    }

    #[test]
    fn rfc9112_3_2_host_rules() {
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.0\r\n\r\n").is_ok());
        assert!(parse(b"GET http://a/x HTTP/1.1\r\nHost: b\r\n\r\n").is_err());
        let raw = b"GET http://a:80/x?y HTTP/1.1\r\nHost: a:80\r\n\r\n";
        let h = parse(raw).expect("ok");
        assert_eq!(&raw[h.path.clone()], b"/x?y");
    }

    #[test]
    fn connection_tokens_and_keepalive() {
        let raw = b"GET / HTTP/1.0\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\r\n";
        let h = parse(raw).expect("ok");
        assert!(h.keep_alive);
        assert!(h.named_by_connection(raw, &h.headers[1].name));
        let h = parse(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("ok");
        assert!(!h.keep_alive);
    }

    #[test]
    fn limits() {
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        assert_eq!(parse(long.as_bytes()).err(), Some(ParseError::RequestLineTooLong));
        let mut h = RequestHead::default();
        let partial = format!("GET /{}", "a".repeat(9000));
        assert_eq!(
            parse_request(partial.as_bytes(), &HeadLimits::default(), &mut h).err(),
            Some(ParseError::RequestLineTooLong)
        );
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let raw = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert_eq!(parse(raw.as_bytes()).err(), Some(ParseError::HeadersTooLarge));
    }

    #[test]
    fn control_chars_refused() {
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x7fb\r\n\r\n").is_err());
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n").is_err());
    }
}
