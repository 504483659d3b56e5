//! Zero-downtime restart and upgrade: a new ringgate process takes the listening sockets of the
//! running one over a Unix socket (SCM_RIGHTS, as HAProxy and Pingora do), starts serving on them,
//! and only then tells the old one to drain. The sockets never close, so no connection queued in
//! a backlog is lost and no client is refused (no `tcp_migrate_req` needed).
//!
//! The exchange, on `[upgrade] socket`: new → `TAKEOVER`; old → one message listing its sockets
//! (`L addr` per data socket, `A addr` for the admin one) with their descriptors attached; new
//! starts its workers on them → `READY`; old → `DRAINING`, and drains as on SIGTERM. If the new
//! process fails before `READY`, the old one simply goes on serving.

use std::io::{BufRead, BufReader, IoSlice, IoSliceMut, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

/// Set once this process handed its sockets to a successor.
pub static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Most descriptors one handover carries (the kernel's SCM_MAX_FD).
const MAX_FDS: usize = 253;
/// How long the old process waits for its successor to say `READY`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// What the old process hands over.
pub struct Sockets {
    /// Data listening sockets with their bound address (one per worker per listener).
    pub listeners: Vec<(SocketAddr, OwnedFd)>,
    pub admin: Option<(SocketAddr, OwnedFd)>,
}

fn describe(s: &Sockets) -> (String, Vec<RawFd>) {
    let mut text = String::new();
    let mut fds = Vec::new();
    for (a, fd) in &s.listeners {
        text.push_str(&format!("L {a}\n"));
        fds.push(fd.as_raw_fd());
    }
    if let Some((a, fd)) = &s.admin {
        text.push_str(&format!("A {a}\n"));
        fds.push(fd.as_raw_fd());
    }
    text.push_str("END\n");
    (text, fds)
}

/// The upgrade socket, bound (under a temporary name) but not yet serving: everything that can
/// fail is done before a predecessor is told to drain.
pub struct Prepared {
    listener: UnixListener,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    sockets: Sockets,
}

/// Check the handover list and bind the upgrade socket next to `path`.
pub fn prepare(path: &Path, sockets: Sockets) -> std::io::Result<Prepared> {
    if sockets.listeners.len() + 1 > MAX_FDS {
        return Err(std::io::Error::other("too many listening sockets to hand over (more than 252)"));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}", std::process::id()));
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(Prepared { listener, tmp, path: path.to_path_buf(), sockets })
}

impl Prepared {
    /// Take the socket's real name (atomically replacing a predecessor's) and answer takeover
    /// requests from a thread, handing over duplicates of the sockets; on the successor's
    /// `READY`, start draining.
    pub fn serve(self) -> std::io::Result<()> {
        let Prepared { listener: l, tmp, path, sockets } = self;
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::thread::Builder::new().name("ringgate-upgrade".into()).spawn(move || {
            // Once this process stops accepting on its own, the duplicates must go: they would
            // keep the listening sockets open, so new clients would queue instead of being refused.
            while !crate::core::shutting_down() {
                if !crate::net::listener::wait_acceptable(&l, 50) {
                    continue;
                }
                let Ok((conn, _)) = l.accept() else { continue };
                match hand_over(conn, &sockets) {
                    Ok(()) => {
                        tracing::info!(socket = %path.display(), "sockets handed over to a new process; draining");
                        HANDED_OVER.store(true, Ordering::SeqCst);
                        crate::core::start_drain();
                        return;
                    }
                    Err(e) => tracing::warn!("takeover attempt failed, still serving: {e}"),
                }
            }
            drop(sockets);
            let _ = std::fs::remove_file(&path);
        })?;
        Ok(())
    }
}

fn hand_over(conn: UnixStream, sockets: &Sockets) -> std::io::Result<()> {
    conn.set_read_timeout(Some(READY_TIMEOUT))?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if line.trim_end() != "TAKEOVER" {
        return Err(std::io::Error::other(format!("unexpected request {line:?}")));
    }
    let (text, fds) = describe(sockets);
    let iov = [IoSlice::new(text.as_bytes())];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<UnixAddr>(conn.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map_err(std::io::Error::from)?;
    line.clear();
    r.read_line(&mut line)?;
    if line.trim_end() != "READY" {
        return Err(std::io::Error::other("the new process did not become ready"));
    }
    (&conn).write_all(b"DRAINING\n")?;
    Ok(())
}

/// New side: the running process's sockets, and the connection to confirm on.
pub struct Taken {
    pub sockets: Sockets,
    conn: UnixStream,
}

/// Ask the process serving `path` for its sockets.
pub fn take(path: &Path) -> std::io::Result<Taken> {
    let conn = UnixStream::connect(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("no running ringgate at {}: {e}", path.display())))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    (&conn).write_all(b"TAKEOVER\n")?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg_buf = nix::cmsg_space!([RawFd; MAX_FDS]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<UnixAddr>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg_buf), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(std::io::Error::from)?;
        let mut fds: Vec<OwnedFd> = Vec::new();
        for c in msg.cmsgs() {
            if let ControlMessageOwned::ScmRights(list) = c {
                // SAFETY: the kernel just installed these descriptors in this process for us.
                fds.extend(list.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (msg.bytes, fds)
    };
    let text = std::str::from_utf8(&buf[..n]).map_err(|_| std::io::Error::other("handover text is not UTF-8"))?;
    if !text.ends_with("END\n") {
        return Err(std::io::Error::other("handover message truncated"));
    }
    let lines: Vec<&str> = text.lines().filter(|l| *l != "END").collect();
    if lines.len() != fds.len() {
        return Err(std::io::Error::other(format!("{} sockets described, {} received", lines.len(), fds.len())));
    }
    let mut sockets = Sockets { listeners: Vec::new(), admin: None };
    for (line, fd) in lines.into_iter().zip(fds) {
        let (kind, addr) = line.split_once(' ').ok_or_else(|| std::io::Error::other("bad handover line"))?;
        let addr: SocketAddr = addr.parse().map_err(|_| std::io::Error::other("bad handover address"))?;
        match kind {
            "L" => sockets.listeners.push((addr, fd)),
            "A" => sockets.admin = Some((addr, fd)),
            _ => return Err(std::io::Error::other("bad handover kind")),
        }
    }
    Ok(Taken { sockets, conn })
}

impl Taken {
    /// Tell the old process this one serves now; it answers that it drains.
    pub fn confirm(self) -> std::io::Result<()> {
        (&self.conn).write_all(b"READY\n")?;
        let mut line = String::new();
        BufReader::new(&self.conn).read_line(&mut line)?;
        if line.trim_end() != "DRAINING" {
            return Err(std::io::Error::other(format!("the old process answered {line:?}")));
        }
        Ok(())
    }
}

/// Tell a supervisor speaking the systemd notify protocol (`$NOTIFY_SOCKET`) about this process:
/// `READY=1` with `MAINPID` once serving (after a takeover the new process becomes the service's
/// main process), `STOPPING=1` when draining. Silent when not run under such a supervisor.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(_) => return,
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name).and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
    } else {
        sock.send_to(state.as_bytes(), Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!("sd_notify {state:?} to {}: {e}", path.to_string_lossy());
    }
}

#[cfg(test)]
mod tests {
    /// The notify protocol message arrives at `$NOTIFY_SOCKET` as one datagram.
    #[test]
    fn sd_notify_sends_one_datagram() {
        let path = std::env::temp_dir().join(format!("ringgate-notify-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let rx = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        // SAFETY: this test binary sets NOTIFY_SOCKET only here, before reading it on this thread.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        super::sd_notify("READY=1\nMAINPID=42");
        let mut buf = [0u8; 64];
        let n = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nMAINPID=42");
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let _ = std::fs::remove_file(&path);
    }
}
