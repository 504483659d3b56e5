//! Response-head parsing (sans-io) for what upstreams send back.
//!
//! Owns the upstream side of framing: which status codes carry no body, how the body is delimited
//! (RFC 9112 §6.3), and whether the upstream connection may be reused. An upstream that sends an
//! ambiguous or malformed head is treated as broken (502), never guessed at.

use std::ops::Range;

use super::parse::{crlf_only, offset, parse_content_length, trim_ows, HeaderKind, HeaderPos};

/// Most header lines accepted in an upstream response.
pub const MAX_RESPONSE_HEADERS: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("malformed upstream response: {0}")]
    Malformed(&'static str),
    #[error("upstream response head too large")]
    TooLarge,
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub minor: u8,
    /// Where the status line starts (after any empty lines the upstream sent first).
    pub status_start: usize,
    /// From the status code to the end of the status line, CRLF included.
    pub status_rest: Range<usize>,
    pub status_line_end: usize,
    pub headers: Vec<HeaderPos>,
    pub framing: ResponseFraming,
    /// The upstream allows another request on this connection.
    pub keep_alive: bool,
    pub connection_tokens: Vec<Range<usize>>,
}

impl Default for ResponseHead {
    fn default() -> Self {
        ResponseHead {
            len: 0,
            status: 0,
            minor: 1,
            status_start: 0,
            status_rest: 0..0,
            status_line_end: 0,
            headers: Vec::new(),
            framing: ResponseFraming::None,
            keep_alive: false,
            connection_tokens: Vec::new(),
        }
    }
}

impl ResponseHead {
    pub fn named_by_connection(&self, buf: &[u8], name: &Range<usize>) -> bool {
        self.connection_tokens.iter().any(|t| buf[t.clone()].eq_ignore_ascii_case(&buf[name.clone()]))
    }
}

/// Parse a response head. `request_is_head` suppresses the body (RFC 9110 §9.3.2).
pub fn parse_response(
    buf: &[u8],
    max_bytes: usize,
    request_is_head: bool,
    out: &mut ResponseHead,
) -> Result<bool, ResponseError> {
    // Uninitialised header slots (through ParserConfig): clearing them would cost more than parsing.
    let mut storage = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let n = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut storage) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > max_bytes {
                return Err(ResponseError::TooLarge);
            }
            return Ok(false);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseError::TooLarge),
        Err(_) => return Err(ResponseError::Malformed("unparsable head")),
    };
    if n > max_bytes {
        return Err(ResponseError::TooLarge);
    }
    let head = &buf[..n];
    if !crlf_only(head) {
        return Err(ResponseError::Malformed("bare LF or CR"));
    }
    let (Some(code), Some(minor)) = (resp.code, resp.version) else {
        return Err(ResponseError::Malformed("status line"));
    };
    if !(100..=999).contains(&code) {
        return Err(ResponseError::Malformed("status code"));
    }
    out.headers.clear();
    out.connection_tokens.clear();
    out.len = n;
    out.status = code;
    out.minor = minor;
    // httparse skips empty lines before the status line; the line starts after them.
    let mut start = 0;
    while head[start..].starts_with(b"\r\n") {
        start += 2;
    }
    let line_end = head[start..].iter().position(|&b| b == b'\n').map(|p| start + p + 1).unwrap_or(n);
    // "HTTP/1.x " is 9 bytes; the code follows.
    if line_end < start + 9 {
        return Err(ResponseError::Malformed("status line"));
    }
    out.status_start = start;
    out.status_rest = start + 9..line_end;
    out.status_line_end = line_end;
    out.keep_alive = minor == 1;

    let count = resp.headers.len();
    let mut content_length: Option<u64> = None;
    let mut te_seen = false;
    let mut te_chunked_last = false;
    for i in 0..count {
        let h = &resp.headers[i];
        let name = offset(buf, h.name.as_bytes());
        let value = offset(buf, h.value);
        let line_end = if i + 1 < count { offset(buf, resp.headers[i + 1].name.as_bytes()).start } else { n - 2 };
        let lname = h.name.as_bytes();
        let kind = if lname.eq_ignore_ascii_case(b"content-length") {
            let v = parse_content_length(h.value).ok_or(ResponseError::Malformed("Content-Length"))?;
            if content_length.is_some_and(|c| c != v) {
                return Err(ResponseError::Malformed("differing Content-Length"));
            }
            content_length = Some(v);
            HeaderKind::ContentLength
        } else if lname.eq_ignore_ascii_case(b"transfer-encoding") {
            te_seen = true;
            for coding in h.value.split(|&b| b == b',') {
                let c = trim_ows(coding);
                if c.is_empty() {
                    continue;
                }
                te_chunked_last = c.eq_ignore_ascii_case(b"chunked");
            }
            HeaderKind::TransferEncoding
        } else if lname.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',') {
                let t = trim_ows(token);
                if t.eq_ignore_ascii_case(b"close") {
                    out.keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") {
                    if minor == 0 {
                        out.keep_alive = true;
                    }
                } else if !t.is_empty() && !t.eq_ignore_ascii_case(b"upgrade") {
                    out.connection_tokens.push(offset(buf, t));
                }
            }
            HeaderKind::HopByHop
        } else if lname.eq_ignore_ascii_case(b"upgrade") {
            HeaderKind::Upgrade
        } else if lname.eq_ignore_ascii_case(b"keep-alive")
            || lname.eq_ignore_ascii_case(b"proxy-connection")
            || lname.eq_ignore_ascii_case(b"te")
            || lname.eq_ignore_ascii_case(b"trailer")
        {
            HeaderKind::HopByHop
        } else {
            HeaderKind::Other
        };
        out.headers.push(HeaderPos { name: name.clone(), value, line: name.start..line_end, kind });
    }

    out.framing = if request_is_head || (100..200).contains(&code) || code == 204 || code == 304 {
        ResponseFraming::None
    } else if te_seen {
        if content_length.is_some() {
            return Err(ResponseError::Malformed("both Content-Length and Transfer-Encoding"));
        }
        if te_chunked_last {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::UntilClose
        }
    } else {
        match content_length {
            Some(0) => ResponseFraming::None,
            Some(len) => ResponseFraming::Length(len),
            None => ResponseFraming::UntilClose,
        }
    };
    if out.framing == ResponseFraming::UntilClose {
        out.keep_alive = false;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8], head: bool) -> Result<ResponseHead, ResponseError> {
        let mut r = ResponseHead::default();
        assert!(parse_response(raw, 65536, head, &mut r)?);
        Ok(r)
    }

    #[test]
    fn framing_rules() {
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false).expect("ok");
        assert_eq!(r.framing, ResponseFraming::Length(2));
        assert!(r.keep_alive);
        let r = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true).expect("ok");
        assert_eq!(r.framing, ResponseFraming::None);
        let r = parse(b"HTTP/1.1 204 No Content\r\n\r\n", false).expect("ok");
        assert_eq!(r.framing, ResponseFraming::None);
        let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false).expect("ok");
        assert_eq!(r.framing, ResponseFraming::Chunked);
        let r = parse(b"HTTP/1.0 200 OK\r\n\r\n", false).expect("ok");
        assert_eq!(r.framing, ResponseFraming::UntilClose);
        assert!(!r.keep_alive);
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", false).is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n", false).is_err());
    }

    #[test]
    fn garbage_refused() {
        let mut r = ResponseHead::default();
        assert!(parse_response(b"HTTP/9.9 banana\r\n\r\n", 65536, false, &mut r).is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", 65536, false, &mut r).is_err());
    }
}
