//! A JWKS server on 127.0.0.1:0 for the auth tests: one std thread answers each request (one per
//! connection, `Connection: close`) with what it was last told to serve — a document, an error
//! status, or a connection closed without a word — and counts the requests, so tests can watch
//! the gateway's fetches.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// What the server answers.
#[derive(Clone, Debug)]
pub enum Serve {
    /// 200 with this body (`application/json`).
    Document(String),
    /// This status with a short body.
    Status(u16),
    /// Read the request, then close without answering.
    Close,
}

struct Shared {
    serve: Mutex<Serve>,
    fetches: AtomicUsize,
    stop: AtomicBool,
}

pub struct JwksServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl JwksServer {
    pub fn start(serve: Serve) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the JWKS server");
        let addr = listener.local_addr().expect("JWKS server addr");
        let shared =
            Arc::new(Shared { serve: Mutex::new(serve), fetches: AtomicUsize::new(0), stop: AtomicBool::new(false) });
        let s = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name("jwks-server".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if let Ok(stream) = stream {
                        answer(stream, &s);
                    }
                }
            })
            .expect("spawn the JWKS server");
        JwksServer { addr, shared, thread: Some(thread) }
    }

    /// Serves `{"keys": [...]}` from the start.
    pub fn with_keys(keys: &[Value]) -> JwksServer {
        JwksServer::start(Serve::Document(json!({ "keys": keys }).to_string()))
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    pub fn set(&self, serve: Serve) {
        *self.shared.serve.lock().unwrap_or_else(|e| e.into_inner()) = serve;
    }

    pub fn set_keys(&self, keys: &[Value]) {
        self.set(Serve::Document(json!({ "keys": keys }).to_string()));
    }

    /// Requests received so far.
    pub fn fetches(&self) -> usize {
        self.shared.fetches.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` requests arrived; returns the count, or panics after `timeout`.
    pub fn wait_fetches(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.fetches();
            if got >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "JWKS server: {got} of {n} fetches after {timeout:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head and answers it per the current [`Serve`].
fn answer(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    shared.fetches.fetch_add(1, Ordering::SeqCst);
    let serve = shared.serve.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (status, body) = match serve {
        Serve::Document(doc) => (200, doc),
        Serve::Status(code) => (code, format!("status {code}")),
        Serve::Close => return,
    };
    let response = format!(
        "HTTP/1.1 {status} Test\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}
