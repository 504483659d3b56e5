//! A scriptable HTTP/1.1 upstream on 127.0.0.1:0, one std thread per connection.
//!
//! It records every request it receives in full (raw head, decoded body up to [`KEEP_BODY`] bytes,
//! body length and checksum, trailers), and counts heads, connections and closed connections, so
//! that tests can assert exactly what reached the upstream. What it answers is decided per request
//! by a handler returning an [`Action`].

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::http::{self, Fnv64, HttpReader};

/// Body bytes kept per recorded request (the length and checksum always cover all of it).
pub const KEEP_BODY: usize = 1 << 20;
const MAX_HEAD: usize = 1 << 20;

/// One complete request as received by the upstream.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// 0-based index of the upstream connection it arrived on.
    pub conn: usize,
    /// 0-based index of the request on that connection.
    pub seq_on_conn: usize,
    pub raw_head: Vec<u8>,
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    /// Decoded body, first [`KEEP_BODY`] bytes.
    pub body: Vec<u8>,
    pub body_len: u64,
    pub body_fnv: u64,
    /// The body arrived with `Transfer-Encoding: chunked`.
    pub chunked: bool,
    pub trailers: Vec<(String, String)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        http::header_all(&self.headers, name)
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    pub fn has_token(&self, name: &str, token: &str) -> bool {
        http::has_token(&self.headers, name, token)
    }

    pub fn head_str(&self) -> String {
        String::from_utf8_lossy(&self.raw_head).into_owned()
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What the upstream does after it has read a complete request.
#[derive(Clone, Debug)]
pub enum Action {
    /// 200, Content-Length, keep-alive; body = `"{method} {target}\n"` + request body.
    /// Headers `X-Upstream: {name}`, `X-Upstream-Conn: {conn}`, `X-Upstream-Seq: {seq}`.
    Echo,
    /// [`Action::Echo`] after a delay.
    EchoAfter(Duration),
    /// Write these bytes, then keep serving the connection.
    Respond(Vec<u8>),
    /// Write these bytes, then close the connection.
    RespondThenClose(Vec<u8>),
    /// Write these bytes, then keep the connection open without answering anything more.
    RespondThenHang(Vec<u8>),
    /// Never answer; keep the connection open until the peer closes it.
    Hang,
    /// 101 Switching Protocols, then echo every byte until EOF.
    UpgradeEcho,
    /// 200 with `len` pattern bytes ([`http::fill_pattern`]), Content-Length or chunked.
    Download { len: u64, chunked: bool },
    /// 200, body `len=N fnv=HEX` of the request body.
    Checksum,
}

type Handler = dyn Fn(&Recorded) -> Action + Send + Sync;

#[derive(Default)]
struct State {
    requests: Vec<Recorded>,
    heads: usize,
    connections: usize,
    closed: usize,
    errors: Vec<String>,
    streams: Vec<TcpStream>,
}

struct Shared {
    name: String,
    handler: Box<Handler>,
    /// Pause reading a request body for `.1` after `.0` bytes (backpressure tests).
    body_pause: Option<(u64, Duration)>,
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }
}

pub struct TestUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TestUpstream {
    /// An upstream answering every request with [`Action::Echo`].
    pub fn echo() -> TestUpstream {
        TestUpstream::named_echo("test")
    }

    pub fn named_echo(name: &str) -> TestUpstream {
        TestUpstream::start(name, None, |_| Action::Echo)
    }

    /// Answers every request with the same raw bytes and keeps the connection.
    pub fn respond(raw: &[u8]) -> TestUpstream {
        let raw = raw.to_vec();
        TestUpstream::with_handler(move |_| Action::Respond(raw.clone()))
    }

    /// Answers every request with the same raw bytes and closes the connection.
    pub fn respond_then_close(raw: &[u8]) -> TestUpstream {
        let raw = raw.to_vec();
        TestUpstream::with_handler(move |_| Action::RespondThenClose(raw.clone()))
    }

    /// Accepts, reads requests, never answers.
    pub fn hang() -> TestUpstream {
        TestUpstream::with_handler(|_| Action::Hang)
    }

    /// Sends a status line that is not HTTP and closes.
    pub fn garbage() -> TestUpstream {
        TestUpstream::respond_then_close(b"this is not http\r\n\r\n")
    }

    /// Sends a head with Content-Length 1000, 10 body bytes, then closes.
    pub fn close_mid_body() -> TestUpstream {
        TestUpstream::respond_then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
    }

    /// 101 Switching Protocols, then echoes bytes (websocket-like).
    pub fn upgrade_echo() -> TestUpstream {
        TestUpstream::with_handler(|_| Action::UpgradeEcho)
    }

    /// A chunked response with two chunks (`hello world`) and an `X-Checksum: abc` trailer.
    pub fn chunked_with_trailers() -> TestUpstream {
        TestUpstream::respond(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n\
              5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n",
        )
    }

    /// Streams `len` pattern bytes for every request.
    pub fn download(len: u64, chunked: bool) -> TestUpstream {
        TestUpstream::with_handler(move |_| Action::Download { len, chunked })
    }

    /// Reads the whole body and answers with its length and checksum.
    pub fn checksum() -> TestUpstream {
        TestUpstream::start("test", None, |_| Action::Checksum)
    }

    /// Like [`TestUpstream::checksum`], but stops reading for `pause` after `after` body bytes.
    pub fn checksum_with_pause(after: u64, pause: Duration) -> TestUpstream {
        TestUpstream::start("test", Some((after, pause)), |_| Action::Checksum)
    }

    /// Decides per request.
    pub fn with_handler(handler: impl Fn(&Recorded) -> Action + Send + Sync + 'static) -> Self {
        TestUpstream::start("test", None, handler)
    }

    pub fn start(
        name: &str,
        body_pause: Option<(u64, Duration)>,
        handler: impl Fn(&Recorded) -> Action + Send + Sync + 'static,
    ) -> TestUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind test upstream");
        let addr = listener.local_addr().expect("test upstream local_addr");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            handler: Box::new(handler),
            body_pause,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name(format!("upstream-{name}-accept"))
            .spawn(move || accept_loop(listener, s))
            .expect("spawn upstream accept thread");
        TestUpstream { addr, shared, accept: Some(accept) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// All complete requests received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    /// Request heads received (a head whose body never completed counts here but not in
    /// [`TestUpstream::request_count`]).
    pub fn heads_received(&self) -> usize {
        self.shared.lock().heads
    }

    /// Connections accepted.
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// Connections that have ended (closed by either side).
    pub fn closed_connections(&self) -> usize {
        self.shared.lock().closed
    }

    /// Protocol errors the upstream saw in what the gateway sent (bad framing, bad head...).
    pub fn errors(&self) -> Vec<String> {
        self.shared.lock().errors.clone()
    }

    fn wait_for<T>(&self, timeout: Duration, what: &str, mut ready: impl FnMut(&State) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(v) = ready(&state) {
                return v;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "upstream: timed out after {timeout:?} waiting for {what}; it has {} \
                     request(s), {} head(s), {} connection(s), {} closed, errors {:?}",
                    state.requests.len(),
                    state.heads,
                    state.connections,
                    state.closed,
                    state.errors
                );
            }
            state = self.shared.changed.wait_timeout(state, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits until at least `n` complete requests arrived; returns all of them.
    pub fn wait_requests(&self, n: usize, timeout: Duration) -> Vec<Recorded> {
        self.wait_for(timeout, &format!("{n} request(s)"), |s| (s.requests.len() >= n).then(|| s.requests.clone()))
    }

    /// Waits until at least `n` request heads arrived.
    pub fn wait_heads(&self, n: usize, timeout: Duration) {
        self.wait_for(timeout, &format!("{n} request head(s)"), |s| (s.heads >= n).then_some(()))
    }

    /// Waits until at least `n` connections have ended.
    pub fn wait_closed(&self, n: usize, timeout: Duration) {
        self.wait_for(timeout, &format!("{n} closed connection(s)"), |s| (s.closed >= n).then_some(()))
    }

    /// Waits until at least `n` connections were accepted.
    pub fn wait_connections(&self, n: usize, timeout: Duration) {
        self.wait_for(timeout, &format!("{n} connection(s)"), |s| (s.connections >= n).then_some(()))
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Unblock accept() with a throwaway connection, and every connection thread's read.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        for s in self.shared.lock().streams.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let stream = match stream {
            Ok(s) => s,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let mut index = 0;
        let registered = stream.try_clone().ok();
        shared.update(|st| {
            index = st.connections;
            st.connections += 1;
            if let Some(s) = registered {
                st.streams.push(s);
            }
        });
        let s = Arc::clone(&shared);
        let spawned = thread::Builder::new().name(format!("upstream-{}-conn{index}", shared.name)).spawn(move || {
            if let Err(e) = serve_connection(&s, stream, index) {
                s.update(|st| st.errors.push(format!("conn {index}: {e}")));
            }
            s.update(|st| st.closed += 1);
        });
        if spawned.is_err() {
            shared.update(|st| st.errors.push("could not spawn a connection thread".into()));
        }
    }
}

fn serve_connection(shared: &Shared, stream: TcpStream, conn: usize) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = HttpReader::new(stream);
    let mut seq = 0;
    loop {
        let raw_head = match reader.read_head(MAX_HEAD) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(e) if is_disconnect(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        shared.update(|st| st.heads += 1);
        let head = http::parse_head(&raw_head).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let [method, target, version] = head.start;
        let headers = head.headers;
        let te = http::header_list(&headers, "transfer-encoding");
        let cl = http::header_all(&headers, "content-length");
        let chunked = match te.last() {
            None => false,
            Some(last) if last.eq_ignore_ascii_case("chunked") && te.len() == 1 => true,
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("request with Transfer-Encoding {te:?} reached the upstream"),
                ))
            }
        };
        if chunked && !cl.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request with both Content-Length and Transfer-Encoding reached the upstream",
            ));
        }
        let length = if chunked || cl.is_empty() {
            0
        } else if cl.len() > 1 || !cl[0].bytes().all(|b| b.is_ascii_digit()) || cl[0].is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("request with Content-Length {cl:?} reached the upstream"),
            ));
        } else {
            cl[0].parse::<u64>().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        };

        let mut body = Vec::new();
        let mut body_len = 0u64;
        let mut fnv = Fnv64::default();
        let mut paused = false;
        let mut sink = |data: &[u8]| {
            if body.len() < KEEP_BODY {
                let keep = (KEEP_BODY - body.len()).min(data.len());
                body.extend_from_slice(&data[..keep]);
            }
            fnv.update(data);
            body_len += data.len() as u64;
            if let Some((after, pause)) = shared.body_pause {
                if !paused && body_len >= after {
                    paused = true;
                    thread::sleep(pause);
                }
            }
        };
        let mut trailers = Vec::new();
        let read = if chunked {
            reader.read_chunked_to(&mut sink).map(|t| trailers = t)
        } else {
            reader.read_exact_to(length, &mut sink)
        };
        match read {
            Ok(()) => {}
            Err(e) if is_disconnect(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
        let rec = Recorded {
            conn,
            seq_on_conn: seq,
            raw_head,
            method,
            target,
            version,
            headers,
            body,
            body_len,
            body_fnv: fnv.finish(),
            chunked,
            trailers,
        };
        seq += 1;
        shared.update(|st| st.requests.push(rec.clone()));
        let close_requested = rec.has_token("connection", "close");
        match (shared.handler)(&rec) {
            Action::Echo => write_echo(shared, &mut writer, &rec, close_requested)?,
            Action::EchoAfter(delay) => {
                thread::sleep(delay);
                write_echo(shared, &mut writer, &rec, close_requested)?;
            }
            Action::Respond(bytes) => writer.write_all(&bytes)?,
            Action::RespondThenClose(bytes) => {
                writer.write_all(&bytes)?;
                let _ = writer.shutdown(Shutdown::Both);
                return Ok(());
            }
            Action::RespondThenHang(bytes) => {
                writer.write_all(&bytes)?;
                return drain_until_eof(&mut reader);
            }
            Action::Hang => return drain_until_eof(&mut reader),
            Action::UpgradeEcho => {
                writer.write_all(
                    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\
                      Upgrade: websocket\r\n\r\n",
                )?;
                let early = reader.take_buffered();
                writer.write_all(&early)?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match reader.get_mut().read(&mut buf) {
                        Ok(n) => n,
                        Err(e) if is_disconnect(&e) => 0,
                        Err(e) => return Err(e),
                    };
                    if n == 0 {
                        let _ = writer.shutdown(Shutdown::Write);
                        return Ok(());
                    }
                    writer.write_all(&buf[..n])?;
                }
            }
            Action::Download { len, chunked } => {
                write_download(&mut writer, &rec, len, chunked)?;
            }
            Action::Checksum => {
                let body = format!("len={} fnv={:016x}", rec.body_len, rec.body_fnv);
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n", body.len());
                writer.write_all(head.as_bytes())?;
                writer.write_all(body.as_bytes())?;
            }
        }
        if close_requested {
            let _ = writer.shutdown(Shutdown::Both);
            return Ok(());
        }
    }
}

fn write_echo(shared: &Shared, writer: &mut TcpStream, rec: &Recorded, close: bool) -> io::Result<()> {
    let mut body = format!("{} {}\n", rec.method, rec.target).into_bytes();
    body.extend_from_slice(&rec.body);
    let mut head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\
         X-Upstream: {}\r\nX-Upstream-Conn: {}\r\nX-Upstream-Seq: {}\r\n",
        body.len(),
        shared.name,
        rec.conn,
        rec.seq_on_conn
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if rec.method != "HEAD" {
        out.extend_from_slice(&body);
    }
    writer.write_all(&out)
}

fn write_download(writer: &mut TcpStream, rec: &Recorded, len: u64, chunked: bool) -> io::Result<()> {
    let framing = if chunked { "Transfer-Encoding: chunked".to_string() } else { format!("Content-Length: {len}") };
    let head = format!("HTTP/1.1 200 OK\r\n{framing}\r\nContent-Type: application/octet-stream\r\n\r\n");
    writer.write_all(head.as_bytes())?;
    if rec.method == "HEAD" {
        return Ok(());
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(buf.len());
        http::fill_pattern(off, &mut buf[..n]);
        if chunked {
            writer.write_all(format!("{n:x}\r\n").as_bytes())?;
            writer.write_all(&buf[..n])?;
            writer.write_all(b"\r\n")?;
        } else {
            writer.write_all(&buf[..n])?;
        }
        off += n as u64;
    }
    if chunked {
        writer.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

fn drain_until_eof(reader: &mut HttpReader<TcpStream>) -> io::Result<()> {
    match reader.read_to_eof(&mut |_| {}) {
        Err(e) if !is_disconnect(&e) => Err(e),
        _ => Ok(()),
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}
