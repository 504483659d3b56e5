//! A raw HTTP/1.1 client over `std::net::TcpStream`. Every read has a timeout, so a test that waits
//! for a response the gateway never sends fails with a message instead of hanging.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::http::{self, HttpReader};

/// How long a single read may block before the test gives up.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response head the client accepts.
const MAX_HEAD: usize = 256 * 1024;

/// How the body of a response was delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// HEAD response, 1xx, 204 or 304: no body whatever the fields say.
    NoBody,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Receives body bytes as they arrive.
pub type BodySink<'a> = dyn FnMut(&[u8]) + 'a;

/// One response as read off the wire.
#[derive(Clone, Debug)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub raw_head: Vec<u8>,
    /// The body (empty when it was streamed to a sink instead).
    pub body: Vec<u8>,
    pub body_len: u64,
    pub trailers: Vec<(String, String)>,
    pub framing: Framing,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        http::header_all(&self.headers, name)
    }

    pub fn has_token(&self, name: &str, token: &str) -> bool {
        http::has_token(&self.headers, name, token)
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `Connection: close` present.
    pub fn is_close(&self) -> bool {
        self.has_token("connection", "close")
    }

    pub fn head_str(&self) -> String {
        String::from_utf8_lossy(&self.raw_head).into_owned()
    }
}

/// How a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    Eof,
    Reset,
}

/// What arrived before the connection ended.
#[derive(Debug)]
pub struct Closed {
    pub data: Vec<u8>,
    pub how: CloseKind,
}

pub struct Client {
    reader: HttpReader<TcpStream>,
    addr: SocketAddr,
}

impl Client {
    /// Connects to `addr` (5 s connect timeout) or panics with the address and the error.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("connect to gateway {addr}: {e}"))
    }

    pub fn try_connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream.set_read_timeout(Some(DEFAULT_READ_TIMEOUT))?;
        stream.set_write_timeout(Some(Duration::from_secs(60)))?;
        stream.set_nodelay(true)?;
        Ok(Client { reader: HttpReader::new(stream), addr })
    }

    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream().local_addr().expect("client local_addr")
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream().set_read_timeout(Some(timeout)).expect("set client read timeout");
    }

    /// Writes all of `bytes` or panics.
    pub fn send(&mut self, bytes: &[u8]) {
        let addr = self.addr;
        self.try_send(bytes).unwrap_or_else(|e| panic!("write {} bytes to gateway {addr}: {e}", bytes.len()));
    }

    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = self.reader.get_mut();
        stream.write_all(bytes)?;
        stream.flush()
    }

    /// Closes our write side (the gateway sees EOF) while still reading.
    pub fn shutdown_write(&self) {
        // The peer may already be gone; that is not what a caller asserts on.
        let _ = self.stream().shutdown(Shutdown::Write);
    }

    /// Sends one raw request and reads its (final or interim) response. The method is taken from
    /// the first word of `raw`, so HEAD responses are read without a body.
    pub fn request(&mut self, raw: &[u8]) -> Response {
        let method = String::from_utf8_lossy(raw.split(|&b| b == b' ').next().unwrap_or(b"")).into_owned();
        self.send(raw);
        self.read_response_to(&method)
    }

    /// Reads one response to a non-HEAD request (1xx responses are returned as they come).
    pub fn read_response(&mut self) -> Response {
        self.read_response_to("GET")
    }

    /// Reads one response to a request with the given method, or panics with context.
    pub fn read_response_to(&mut self, method: &str) -> Response {
        match self.try_read_response_to(method, None) {
            Ok(Some(resp)) => resp,
            Ok(None) => panic!("gateway {} closed the connection instead of sending a response", self.addr),
            Err(e) => {
                let what = if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                    format!("no complete response within the read timeout ({e})")
                } else {
                    e.to_string()
                };
                panic!(
                    "reading a response from gateway {}: {what} (buffered: {:?})",
                    self.addr,
                    String::from_utf8_lossy(self.reader.buffered())
                )
            }
        }
    }

    /// Reads one response. `Ok(None)` = the connection closed cleanly before any byte. With a
    /// `sink`, the body is streamed to it and `Response::body` stays empty.
    pub fn try_read_response_to(
        &mut self,
        method: &str,
        sink: Option<&mut BodySink<'_>>,
    ) -> io::Result<Option<Response>> {
        let raw_head = match self.reader.read_head(MAX_HEAD) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
            Err(e) => return Err(e),
        };
        let head = http::parse_head(&raw_head).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad response head: {e}: {:?}", String::from_utf8_lossy(&raw_head)),
            )
        })?;
        let [version, status, reason] = head.start;
        if !version.starts_with("HTTP/1.") {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad response version {version:?}")));
        }
        let status: u16 =
            status.parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("bad status {status:?}")))?;
        let headers = head.headers;
        let framing = response_framing(method, status, &headers)?;
        let mut body = Vec::new();
        let mut body_len = 0u64;
        let mut trailers = Vec::new();
        {
            let mut keep = |data: &[u8]| body.extend_from_slice(data);
            let sink: &mut dyn FnMut(&[u8]) = match sink {
                Some(s) => s,
                None => &mut keep,
            };
            let mut counting = |data: &[u8]| {
                body_len += data.len() as u64;
                sink(data);
            };
            match framing {
                Framing::NoBody => {}
                Framing::Length(n) => self.reader.read_exact_to(n, &mut counting)?,
                Framing::Chunked => trailers = self.reader.read_chunked_to(&mut counting)?,
                Framing::UntilClose => match self.reader.read_to_eof(&mut counting) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(Some(Response { version, status, reason, headers, raw_head, body, body_len, trailers, framing }))
    }

    /// Reads responses until a final (non-1xx) one; returns the interim ones and the final one.
    pub fn read_final_response(&mut self) -> (Vec<Response>, Response) {
        let mut interim = Vec::new();
        loop {
            let resp = self.read_response();
            if (100..200).contains(&resp.status) && resp.status != 101 {
                interim.push(resp);
            } else {
                return (interim, resp);
            }
        }
    }

    /// Reads until the gateway closes the connection (EOF or reset), at most `within`.
    /// Panics if the connection is still open at the deadline.
    pub fn read_until_close(&mut self, within: Duration) -> Closed {
        let deadline = Instant::now() + within;
        let mut data = self.reader.take_buffered();
        let mut tmp = vec![0u8; 64 * 1024];
        let how = loop {
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "gateway {} kept the connection open for more than {within:?}; received {} \
                     bytes meanwhile: {:?}",
                    self.addr,
                    data.len(),
                    String::from_utf8_lossy(&data[..data.len().min(512)])
                );
            }
            let wait = (deadline - now).max(Duration::from_millis(1));
            self.set_read_timeout(wait);
            match self.reader.get_mut().read(&mut tmp) {
                Ok(0) => break CloseKind::Eof,
                Ok(n) => data.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break CloseKind::Reset,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => panic!("reading from gateway {}: {e}", self.addr),
            }
        };
        self.set_read_timeout(DEFAULT_READ_TIMEOUT);
        Closed { data, how }
    }

    /// Asserts the gateway closes the connection within `within` without sending anything more.
    pub fn assert_closed(&mut self, within: Duration) {
        let closed = self.read_until_close(within);
        assert!(
            closed.data.is_empty(),
            "expected the connection to close with nothing more sent, got {} bytes: {:?}",
            closed.data.len(),
            String::from_utf8_lossy(&closed.data[..closed.data.len().min(512)])
        );
    }

    /// Asserts that nothing arrives and the connection stays open for `period`.
    /// (A deliberate wait: this checks the absence of an event.)
    pub fn assert_silent_for(&mut self, period: Duration) {
        assert!(
            self.reader.buffered().is_empty(),
            "unexpected buffered bytes: {:?}",
            String::from_utf8_lossy(self.reader.buffered())
        );
        self.set_read_timeout(period);
        let mut tmp = [0u8; 4096];
        let result = self.reader.get_mut().read(&mut tmp);
        self.set_read_timeout(DEFAULT_READ_TIMEOUT);
        match result {
            Ok(0) => panic!("gateway closed the connection during a {period:?} quiet period"),
            Ok(n) => panic!("expected no bytes for {period:?}, got {n}: {:?}", String::from_utf8_lossy(&tmp[..n])),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("expected a quiet open connection for {period:?}, got error {e}"),
        }
    }

    /// Reads whatever arrives within `period` (without requiring a close).
    pub fn read_available(&mut self, period: Duration) -> Vec<u8> {
        let deadline = Instant::now() + period;
        let mut data = self.reader.take_buffered();
        let mut tmp = [0u8; 16 * 1024];
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.set_read_timeout((deadline - now).max(Duration::from_millis(1)));
            match self.reader.get_mut().read(&mut tmp) {
                Ok(0) => break,
                Ok(n) => data.extend_from_slice(&tmp[..n]),
                Err(_) => break,
            }
        }
        self.set_read_timeout(DEFAULT_READ_TIMEOUT);
        data
    }

    /// Bytes read but not consumed by a response (e.g. tunnel bytes after a 101).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        self.reader.take_buffered()
    }

    /// Reads exactly `n` raw bytes (buffered ones first), e.g. from an upgraded tunnel.
    pub fn read_raw_exact(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        let addr = self.addr;
        self.reader.read_exact_to(n as u64, &mut |d| out.extend_from_slice(d)).unwrap_or_else(|e| {
            panic!("reading {n} raw bytes from gateway {addr}: {e}");
        });
        out
    }
}

/// RFC 9112 §6.3: how the body of a response to `method` with `status` is delimited.
fn response_framing(method: &str, status: u16, headers: &[(String, String)]) -> io::Result<Framing> {
    if method.eq_ignore_ascii_case("HEAD") || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(Framing::NoBody);
    }
    let te = http::header_list(headers, "transfer-encoding");
    if let Some(last) = te.last() {
        return Ok(if last.eq_ignore_ascii_case("chunked") { Framing::Chunked } else { Framing::UntilClose });
    }
    let cls = http::header_list(headers, "content-length");
    if cls.is_empty() {
        return Ok(Framing::UntilClose);
    }
    let first = &cls[0];
    if !cls.iter().all(|c| c == first) || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("gateway sent an invalid Content-Length {cls:?}"),
        ));
    }
    first
        .parse()
        .map(Framing::Length)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("Content-Length: {e}")))
}

/// Host used by the request builders.
pub const TEST_HOST: &str = "test.local";

/// `GET path HTTP/1.1` with `Host: test.local`.
pub fn get(path: &str) -> Vec<u8> {
    req("GET", path, &[], b"")
}

/// A request with `Host: test.local` (unless `headers` has a Host) and a Content-Length when there
/// is a body (unless `headers` sets Content-Length or Transfer-Encoding).
pub fn req(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\n");
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        out.push_str(&format!("Host: {TEST_HOST}\r\n"));
    }
    for (n, v) in headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Encodes `chunks` as a chunked body (RFC 9112 §7.1) with the given trailer fields.
pub fn chunked(chunks: &[&[u8]], trailers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks.iter().filter(|c| !c.is_empty()) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (n, v) in trailers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}
