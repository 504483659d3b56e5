//! The built-in demo upstream: a small HTTP/1.1 echo service on a loopback port, started when a
//! config names the target `builtin:demo` (the embedded default does), so a newcomer gets a
//! working proxy with one command. It answers every request with a text description of what it
//! received (method, path, headers, body size) and echoes the body back.
//!
//! It is a convenience, not part of the data plane: blocking std sockets, a thread per
//! connection (at most 256), never used by benchmarks.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::http::body::BodyReader;
use crate::http::parse::{parse_request, BodyFraming, HeadLimits, RequestHead};

static CONNS: AtomicUsize = AtomicUsize::new(0);
/// The demo echoes bodies back, so it holds them whole: bounded.
const MAX_ECHO_BODY: usize = 16 << 20;

/// Start the demo upstream on 127.0.0.1 with an OS-chosen port.
pub fn start() -> io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    std::thread::Builder::new().name("ringgate-demo".into()).spawn(move || {
        for s in l.incoming().flatten() {
            if CONNS.load(Ordering::Relaxed) >= 256 {
                continue;
            }
            CONNS.fetch_add(1, Ordering::Relaxed);
            let _ = std::thread::Builder::new().name("ringgate-demo-conn".into()).spawn(move || {
                let _ = serve(s);
                CONNS.fetch_sub(1, Ordering::Relaxed);
            });
        }
    })?;
    Ok(addr)
}

fn serve(mut s: TcpStream) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut tmp = [0u8; 16384];
    let limits = HeadLimits::default();
    loop {
        let mut head = RequestHead::default();
        let n = loop {
            match parse_request(&buf, &limits, &mut head) {
                Ok(true) => break head.len,
                Ok(false) => {}
                Err(_) => {
                    s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                    return Ok(());
                }
            }
            let r = s.read(&mut tmp)?;
            if r == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..r]);
        };
        let raw_head = buf[..n].to_vec();
        buf.drain(..n);
        let mut body = Vec::new();
        let mut reader = match head.framing() {
            BodyFraming::None => None,
            BodyFraming::Length(l) => Some(BodyReader::Length(l)),
            BodyFraming::Chunked => Some(BodyReader::chunked()),
        };
        while let Some(r) = reader.as_mut() {
            let p = r
                .feed_with(&buf, |rg| body.extend_from_slice(&buf[rg]))
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            buf.drain(..p.consumed);
            if body.len() > MAX_ECHO_BODY {
                s.write_all(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
                return Ok(());
            }
            if p.done {
                break;
            }
            let got = s.read(&mut tmp)?;
            if got == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&tmp[..got]);
        }
        let text = |r: &std::ops::Range<usize>| String::from_utf8_lossy(&raw_head[r.clone()]).into_owned();
        let mut out = format!("ringgate demo upstream\n{} {}\n", text(&head.method), text(&head.path));
        for h in &head.headers {
            out.push_str(&format!("{}: {}\n", text(&h.name), text(&h.value)));
        }
        out.push_str(&format!("body: {} bytes\n", body.len()));
        let mut resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
            out.len() + body.len()
        );
        if !head.keep_alive {
            resp.push_str("Connection: close\r\n");
        }
        resp.push_str("\r\n");
        s.write_all(resp.as_bytes())?;
        if !head.is_head {
            s.write_all(out.as_bytes())?;
            s.write_all(&body)?;
        }
        if !head.keep_alive {
            return Ok(());
        }
    }
}
