//! Per-core upstream connections: connect by address (never DNS on a worker), TLS when the
//! target's group asks for it, and a keep-alive pool per target owned by one worker thread (no
//! locks).
//!
//! The pool is LIFO, so the warmest connection is reused and idle ones age out; a pooled
//! connection is checked for a close or stray bytes from the upstream before it is handed out.
//! Only connections whose last exchange ended cleanly (no timeout, no cancelled op, exact
//! framing) are put back.

use crate::hash::FxHashMap;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::net::TcpStream;

use crate::net::stream::{TlsConn, UpstreamStream};
use crate::shared::Target;

/// Read buffer size for upstream connections.
pub const UPSTREAM_BUF: usize = 16 * 1024;

/// A pool's key: the target address and its TLS identity (0 = plain TCP; otherwise a hash of
/// the trusted roots and the name checked), so a connection verified for one name or trust
/// setting is never handed to a target that asked for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolKey {
    pub addr: SocketAddr,
    pub tls: u64,
}

pub struct UpstreamConn {
    pub stream: UpstreamStream,
    pub buf: BytesMut,
    pub key: PoolKey,
    /// Came from the pool (the upstream may have closed it meanwhile).
    pub reused: bool,
    idle_since: Instant,
}

#[derive(Default)]
pub struct Pool {
    /// Keyed by targets from the config (FxHash: not client-chosen).
    idle: RefCell<FxHashMap<PoolKey, VecDeque<UpstreamConn>>>,
}

impl Pool {
    /// A live pooled connection to `addr`, if any.
    pub fn take(&self, key: PoolKey, idle_timeout: Duration, now: Instant) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&key)?;
        while let Some(mut c) = list.pop_back() {
            // Every reuse peeks (one non-blocking syscall): an upstream that closed, or that sent
            // bytes nobody asked for, must never have them read as the next request's response.
            // Over TLS, any record arriving on an idle connection (an alert, close_notify) also
            // retires it.
            if now.duration_since(c.idle_since) >= idle_timeout || !still_open(c.stream.raw_fd()) {
                continue; // dropped: closed
            }
            c.reused = true;
            return Some(c);
        }
        None
    }

    /// Return a connection whose exchange ended cleanly.
    pub fn put(&self, mut c: UpstreamConn, max_idle: usize, now: Instant) {
        if max_idle == 0 {
            return;
        }
        c.idle_since = now;
        c.buf.clear();
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(c.key).or_default();
        if list.len() >= max_idle {
            // Drop the oldest (front) to keep the warm ones.
            list.pop_front();
        }
        list.push_back(c);
    }

    /// Close pooled connections idle longer than their timeout (called from a periodic task).
    pub fn sweep(&self, idle_timeout: impl Fn(PoolKey) -> Duration, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        for (key, list) in idle.iter_mut() {
            let t = idle_timeout(*key);
            list.retain(|c| now.duration_since(c.idle_since) < t);
        }
    }

    /// Idle connections held for `key`.
    pub fn idle_len(&self, key: PoolKey) -> usize {
        self.idle.borrow().get(&key).map_or(0, VecDeque::len)
    }

    /// Close everything (shutdown).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }
}

/// Non-blocking peek: false when the upstream closed the connection or sent unsolicited bytes.
fn still_open(fd: RawFd) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: a valid fd owned by the pooled stream, one-byte stack buffer.
    let r = unsafe { libc::recv(fd, b.as_mut_ptr() as *mut libc::c_void, 1, libc::MSG_PEEK | libc::MSG_DONTWAIT) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return e.kind() == io::ErrorKind::WouldBlock;
    }
    false
}

/// Connect to `target` within `timeout` (TCP and, if asked, the TLS handshake together).
pub async fn connect(target: &Target, timeout: Duration) -> io::Result<UpstreamConn> {
    let deadline = Instant::now() + timeout;
    let tcp = connect_tcp(target.addr, timeout).await?;
    let stream = match &target.tls {
        None => UpstreamStream::Plain(tcp),
        Some(tls) => {
            let fd = tcp.as_raw_fd();
            let left = deadline.saturating_duration_since(Instant::now());
            // Boxed: the handshake state is large and only lives this long.
            match monoio::time::timeout(left, Box::pin(tls.connector.connect(tls.name.clone(), tcp))).await {
                Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out")),
                Ok(Err(e)) => return Err(tls_error(e)),
                Ok(Ok(s)) => UpstreamStream::Tls(Box::new(TlsConn::new(s, fd))),
            }
        }
    };
    Ok(UpstreamConn {
        stream,
        buf: BytesMut::with_capacity(UPSTREAM_BUF),
        key: target.key,
        reused: false,
        idle_since: Instant::now(),
    })
}

/// A handshake failure as an I/O error whose text says it was TLS (and why: the log shows it).
fn tls_error(e: monoio_rustls::TlsError) -> io::Error {
    match e {
        monoio_rustls::TlsError::Rustls(e) => {
            io::Error::new(io::ErrorKind::InvalidData, format!("TLS handshake failed: {e}"))
        }
        monoio_rustls::TlsError::Io(e) => io::Error::new(e.kind(), format!("TLS handshake failed: {e}")),
    }
}

/// Connect to `addr` within `timeout`, with TCP_NODELAY.
///
/// The socket is created non-blocking and connected with a plain syscall, then writability is
/// awaited: dropping that wait on timeout cancels nothing that could leak a descriptor (monoio
/// 0.2.4 can leak the fd of a cancelled connect op).
async fn connect_tcp(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let sock =
        socket2::Socket::new(domain, socket2::Type::STREAM.nonblocking().cloexec(), Some(socket2::Protocol::TCP))?;
    sock.set_nodelay(true)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    // SAFETY: the fd comes from a socket we own and hand over whole.
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(sock.into_raw_fd()) };
    let stream = TcpStream::from_std(std_stream)?;
    match monoio::time::timeout(timeout, stream.writable(false)).await {
        Err(_) => return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(())) => {}
    }
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd, out-params sized for an int.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if err != 0 {
        return Err(io::Error::from_raw_os_error(err));
    }
    Ok(stream)
}
