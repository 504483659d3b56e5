//! Client-visible outcomes, and the ONE place that maps an error to an HTTP answer.
//!
//! Errors know their side: the client's (bad bytes: 4xx), the upstream's (5xx), or the client's
//! own socket failing (no answer is possible). Whether the connection is closed afterwards is
//! decided here too: whenever framing is in doubt, it is.

use crate::http::body::BodyError;
use crate::http::parse::ParseError;
use crate::http::response::ResponseError;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    // The client's side.
    #[error(transparent)]
    BadHead(#[from] ParseError),
    #[error("bad request body: {0}")]
    BadBody(#[from] BodyError),
    #[error("request body larger than the route allows")]
    BodyTooLarge,
    #[error("request head not received in time")]
    HeadTimeout,
    #[error("client idle between body bytes")]
    ClientBodyTimeout,
    #[error("no route matches")]
    NoRoute,
    #[error("path is malformed, climbs above the root, or holds an encoded slash")]
    BadPath,
    /// A route matched the path but not the method; the value is the Allow list.
    #[error("method not allowed (allowed: {0})")]
    MethodNotAllowed(String),
    /// The route's JWT policy refused the request (the token is never part of the message).
    #[error("authentication: {0}")]
    Auth(#[from] crate::auth::AuthError),
    /// A rate limit refused the request; the 429's extra header lines.
    #[error("rate limited by policy {}", .0.policy)]
    RateLimited(Box<crate::ratelimit::Limited>),
    #[error("client connection failed: {0}")]
    ClientIo(std::io::Error),
    // The upstream's side.
    #[error("upstream connect failed: {0}")]
    UpstreamConnect(std::io::Error),
    #[error("upstream timed out")]
    UpstreamTimeout,
    #[error(transparent)]
    UpstreamResponse(#[from] ResponseError),
    #[error("upstream sent a bad body: {0}")]
    UpstreamBody(BodyError),
    #[error("upstream connection failed: {0}")]
    UpstreamIo(std::io::Error),
    #[error("upstream closed the connection early")]
    UpstreamClosed,
    #[error("no upstream target available")]
    NoTarget,
    /// Something failed after the response head went to the client: nothing can be said, the
    /// client connection is closed so it never takes a truncated body as complete.
    #[error("exchange aborted after the response started: {0}")]
    AfterResponseStarted(Box<ProxyError>),
}

/// What to send for an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub reason: &'static str,
    /// Close the client connection after answering.
    pub close: bool,
}

fn a(status: u16, close: bool) -> Option<Answer> {
    Some(Answer { status, reason: crate::http::reason(status), close })
}

impl ProxyError {
    /// The answer for this error; `None` means close without a word.
    pub fn answer(&self) -> Option<Answer> {
        match self {
            ProxyError::BadHead(p) => match p {
                ParseError::Malformed(_) => a(400, true),
                ParseError::RequestLineTooLong => a(414, true),
                ParseError::HeadersTooLarge => a(431, true),
                ParseError::ExpectationFailed => a(417, true),
                ParseError::NotImplemented => a(501, true),
                ParseError::VersionNotSupported => a(505, true),
            },
            ProxyError::BadBody(_) => a(400, true),
            ProxyError::BodyTooLarge => a(413, true),
            ProxyError::HeadTimeout => a(408, true),
            ProxyError::ClientBodyTimeout => a(408, true),
            ProxyError::NoRoute => a(404, false),
            ProxyError::BadPath => a(400, false),
            ProxyError::MethodNotAllowed(_) => a(405, false),
            ProxyError::Auth(e) => a(e.status(), false),
            ProxyError::RateLimited(_) => a(429, false),
            ProxyError::ClientIo(_) => None,
            ProxyError::UpstreamConnect(_) => a(502, false),
            ProxyError::UpstreamTimeout => a(504, false),
            ProxyError::UpstreamResponse(_) | ProxyError::UpstreamBody(_) => a(502, false),
            ProxyError::UpstreamIo(_) | ProxyError::UpstreamClosed => a(502, false),
            ProxyError::NoTarget => a(503, false),
            ProxyError::AfterResponseStarted(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        assert_eq!(ProxyError::UpstreamTimeout.answer().map(|a| a.status), Some(504));
        assert_eq!(ProxyError::BadHead(ParseError::Malformed("x")).answer().map(|a| a.close), Some(true));
        assert!(ProxyError::AfterResponseStarted(Box::new(ProxyError::UpstreamClosed)).answer().is_none());
    }
}
