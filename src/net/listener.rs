//! Listening sockets: one SO_REUSEPORT socket per worker for each configured address, built with
//! socket2 (backlog, IPV6_V6ONLY, non-blocking) and handed to the worker, which registers it
//! with its own runtime.
//!
//! monoio's own `bind` sets SO_REUSEPORT silently, so a second ringgate would quietly share a
//! port. Here, unless the listener says `reuse_port_group = true`, the address is first probed
//! with a socket that does NOT set SO_REUSEPORT: if anyone listens there, the probe fails and
//! startup stops with a clear message.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{ListenerCfg, ProxyProtocol};

/// What a worker needs to know about the listener a connection came from.
pub struct ListenerOpts {
    pub proxy: ProxyProtocol,
    pub tls: Option<TlsOpts>,
    /// Position in the config's `listeners` (the metrics' `listener` label).
    pub index: usize,
}

/// A TLS listener's acceptor (its certificates come from a store swapped on reload).
pub struct TlsOpts {
    pub acceptor: monoio_rustls::TlsAcceptor,
    pub handshake_timeout: std::time::Duration,
}

fn new_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let domain = if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let s = Socket::new(domain, Type::STREAM.cloexec(), Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

/// Bind `count` listeners sharing `cfg.addr`. Returns the bound address (the real port when the
/// config says 0) and the sockets, listening and non-blocking.
pub fn bind_group(cfg: &ListenerCfg, count: usize) -> Result<(SocketAddr, Vec<std::net::TcpListener>), String> {
    let mut addr = cfg.addr;
    if !cfg.reuse_port_group && addr.port() != 0 {
        let probe = new_socket(addr, false).map_err(|e| format!("{addr}: cannot create socket: {e}"))?;
        if let Err(e) = probe.bind(&addr.into()) {
            return Err(if e.kind() == io::ErrorKind::AddrInUse {
                format!("{addr} is already in use by another process (stop it, or set reuse_port_group = true on this listener to share the port on purpose)")
            } else {
                format!("{addr}: cannot bind: {e}")
            });
        }
        drop(probe);
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let s = new_socket(addr, true).map_err(|e| format!("{addr}: cannot create socket: {e}"))?;
        s.bind(&addr.into()).map_err(|e| format!("{addr}: cannot bind: {e}"))?;
        s.listen(cfg.backlog).map_err(|e| format!("{addr}: cannot listen: {e}"))?;
        s.set_nonblocking(true).map_err(|e| format!("{addr}: {e}"))?;
        if addr.port() == 0 {
            addr =
                s.local_addr().ok().and_then(|a| a.as_socket()).ok_or_else(|| format!("{addr}: no local address"))?;
        }
        out.push(s.into());
    }
    Ok((addr, out))
}

/// The sockets for a listener when taking over from a previous process: the ones it handed over
/// for this address, plus new ones joining their SO_REUSEPORT group until each worker has one.
pub fn group_from(
    cfg: &ListenerCfg,
    count: usize,
    inherited: Vec<std::os::fd::OwnedFd>,
) -> Result<(SocketAddr, Vec<std::net::TcpListener>), String> {
    if inherited.is_empty() {
        return bind_group(cfg, count);
    }
    let mut socks: Vec<std::net::TcpListener> = inherited.into_iter().map(std::net::TcpListener::from).collect();
    if socks.len() < count {
        let more = ListenerCfg { reuse_port_group: true, ..cfg.clone() };
        let (_, extra) = bind_group(&more, count - socks.len())?;
        socks.extend(extra);
    }
    Ok((cfg.addr, socks))
}

/// Wait up to `ms` milliseconds for a blocking listener (admin, upgrade socket) to have a
/// connection to accept. poll(2) rather than a non-blocking socket: the socket may be shared with
/// a successor process, and O_NONBLOCK would be shared with it too.
pub fn wait_acceptable(l: &impl std::os::fd::AsRawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd for a descriptor the caller owns.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}
