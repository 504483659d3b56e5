//! Access logs: one line per request (JSON by default, or a compact text format), written
//! without ever blocking a worker. Each worker appends lines to its own buffer and hands a full
//! buffer (or one older than the flush interval) to the writer thread over a bounded channel;
//! when the writer falls behind and the channel is full, the buffer is dropped and its lines
//! counted (`dropped()`), never queued without bound. SIGUSR1 makes the writer reopen the file
//! (logrotate). Tokens and Authorization values are never part of a line; the query string only
//! when configured.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Sender, TrySendError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
}

/// `[access_log]`, as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogCfg {
    /// A file path, or None for standard output.
    pub path: Option<std::path::PathBuf>,
    pub format: Format,
    pub include_query: bool,
    /// A worker hands its buffer over once it holds this many bytes...
    pub buffer_bytes: usize,
    /// ...or once its oldest line is this old.
    pub flush_interval: Duration,
    /// Buffers in flight to the writer before lines are dropped.
    pub queue: usize,
}

struct Log {
    tx: Sender<Vec<u8>>,
    cfg: AccessLogCfg,
}

static LOG: OnceLock<Log> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static REOPEN: AtomicBool = AtomicBool::new(false);

/// Lines dropped because the writer fell behind.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Ask the writer to reopen its file (SIGUSR1).
pub fn reopen() {
    REOPEN.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    LOG.get().is_some()
}

/// Start the writer thread (once, at startup). The file is opened by the writer itself, so a
/// slow or blocking destination never holds up startup or a worker.
pub fn start(cfg: AccessLogCfg) -> Result<(), String> {
    let (tx, rx) = bounded::<Vec<u8>>(cfg.queue.max(1));
    let path = cfg.path.clone();
    std::thread::Builder::new()
        .name("access-log".into())
        .spawn(move || {
            let open = |p: &std::path::Path| std::fs::OpenOptions::new().create(true).append(true).open(p);
            let mut out: Box<dyn Write> = match &path {
                None => Box::new(std::io::stdout()),
                Some(p) => match open(p) {
                    Ok(f) => Box::new(f),
                    Err(e) => {
                        tracing::error!("access log {}: {e}; lines are dropped", p.display());
                        Box::new(std::io::sink())
                    }
                },
            };
            for buf in rx {
                if REOPEN.swap(false, Ordering::Relaxed) {
                    if let Some(p) = &path {
                        match open(p) {
                            Ok(f) => out = Box::new(f),
                            Err(e) => tracing::error!("access log {}: reopen failed: {e}", p.display()),
                        }
                    }
                }
                if let Err(e) = out.write_all(&buf).and_then(|_| out.flush()) {
                    tracing::warn!("access log write failed: {e}");
                }
            }
        })
        .map_err(|e| format!("cannot start the access log writer: {e}"))?;
    LOG.set(Log { tx, cfg }).map_err(|_| "access log started twice".to_string())
}

/// A worker's buffer.
#[derive(Default)]
pub struct LocalLog {
    buf: Vec<u8>,
    lines: u64,
    oldest: Option<Instant>,
    /// Cached `YYYY-MM-DDTHH:MM:SS` of the current second.
    second: (u64, [u8; 19]),
}

/// One request as the access log sees it.
pub struct Entry<'a> {
    pub client: &'a [u8],
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub query: Option<&'a [u8]>,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub timing: crate::metrics::Timing,
    pub route: &'a str,
    pub upstream: Option<std::net::SocketAddr>,
    pub request_id: &'a [u8],
    /// "1.3" / "1.2", or None for plain HTTP.
    pub tls: Option<&'static str>,
    pub auth: &'static str,
    pub ratelimit: &'static str,
    pub trace_id: Option<&'a [u8]>,
}

impl LocalLog {
    /// Append one line (and hand the buffer over if it is full). Formatting is by hand (integers
    /// and fixed-point milliseconds), not through `fmt`: this runs once per request.
    pub fn push(&mut self, e: &Entry<'_>) {
        let Some(log) = LOG.get() else { return };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        if self.second.0 != now.as_secs() || self.second.1[0] == 0 {
            self.second = (now.as_secs(), civil(now.as_secs()));
        }
        let json = log.cfg.format == Format::Json;
        let query = e.query.filter(|_| log.cfg.include_query);
        let t = &e.timing;
        let b = &mut self.buf;
        // Each field: its JSON key (with the separator before it), or the text format's separator.
        let field = |b: &mut Vec<u8>, key: &str, text_sep: &[u8]| {
            if json {
                b.extend_from_slice(key.as_bytes());
            } else {
                b.extend_from_slice(text_sep);
            }
        };
        let s = |b: &mut Vec<u8>, v: &[u8]| if json { json_str(b, v) } else { text(b, v) };
        b.extend_from_slice(if json { b"{\"time\":\"" } else { b"" });
        b.extend_from_slice(&self.second.1);
        b.push(b'.');
        put_padded(b, u64::from(now.subsec_millis()), 3);
        b.push(b'Z');
        field(b, "\",\"client\":", b" ");
        s(b, e.client);
        field(b, ",\"method\":", b" \"");
        s(b, e.method);
        field(b, ",\"path\":", b" ");
        s(b, e.path);
        if let Some(q) = query {
            field(b, ",\"query\":", b"?");
            s(b, q);
        }
        field(b, ",\"status\":", b"\" ");
        put_u64(b, u64::from(e.status));
        field(b, ",\"bytes_in\":", b" ");
        put_u64(b, e.bytes_in);
        field(b, ",\"bytes_out\":", b" ");
        put_u64(b, e.bytes_out);
        field(b, ",\"total_ms\":", b" ");
        put_ms(b, t.total);
        field(b, ",\"upstream_ms\":", b" ");
        put_ms(b, t.upstream.unwrap_or_default());
        field(b, ",\"gateway_ms\":", b" ");
        put_ms(b, t.gateway());
        field(b, ",\"route\":", b" ");
        s(b, e.route.as_bytes());
        field(b, ",\"upstream\":", b" ");
        match e.upstream {
            Some(u) => {
                b.extend_from_slice(if json { b"\"" } else { b"" });
                put_addr(b, u);
                b.extend_from_slice(if json { b"\"" } else { b"" });
            }
            None => b.extend_from_slice(if json { b"null" } else { b"-" }),
        }
        field(b, ",\"request_id\":", b" ");
        s(b, e.request_id);
        field(b, ",\"tls\":", b" tls=");
        match e.tls {
            Some(v) => s(b, v.as_bytes()),
            None => b.extend_from_slice(if json { b"null" } else { b"-" }),
        }
        field(b, ",\"auth\":", b" auth=");
        s(b, if json || !e.auth.is_empty() { e.auth.as_bytes() } else { b"-" });
        field(b, ",\"ratelimit\":", b" ratelimit=");
        s(b, if json || !e.ratelimit.is_empty() { e.ratelimit.as_bytes() } else { b"-" });
        field(b, ",\"trace_id\":", b" trace=");
        match e.trace_id {
            Some(id) => s(b, id),
            None => b.extend_from_slice(if json { b"null" } else { b"-" }),
        }
        b.extend_from_slice(if json { b"}\n" } else { b"\n" });
        self.lines += 1;
        self.oldest.get_or_insert_with(Instant::now);
        if self.buf.len() >= log.cfg.buffer_bytes {
            self.flush();
        }
    }

    /// Hand the buffer over if its oldest line is older than the flush interval (periodic task).
    pub fn tick(&mut self) {
        if let (Some(log), Some(t)) = (LOG.get(), self.oldest) {
            if t.elapsed() >= log.cfg.flush_interval {
                self.flush();
            }
        }
    }

    /// Hand the buffer to the writer; if it is behind, drop the lines and count them.
    pub fn flush(&mut self) {
        let Some(log) = LOG.get() else { return };
        if self.buf.is_empty() {
            return;
        }
        let cap = log.cfg.buffer_bytes + log.cfg.buffer_bytes / 4;
        let full = std::mem::replace(&mut self.buf, Vec::with_capacity(cap));
        match log.tx.try_send(full) {
            Ok(()) => {}
            Err(TrySendError::Full(mut back) | TrySendError::Disconnected(mut back)) => {
                DROPPED.fetch_add(self.lines, Ordering::Relaxed);
                back.clear();
                self.buf = back;
            }
        }
        self.lines = 0;
        self.oldest = None;
    }
}

fn put_u64(b: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    b.extend_from_slice(&tmp[i..]);
}

/// `n` with at least `width` digits (leading zeros).
fn put_padded(b: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = 1;
    let mut m = n;
    while m >= 10 {
        m /= 10;
        digits += 1;
    }
    b.extend(std::iter::repeat_n(b'0', width.saturating_sub(digits)));
    put_u64(b, n);
}

/// Milliseconds with three decimals (microsecond resolution).
fn put_ms(b: &mut Vec<u8>, d: Duration) {
    let us = d.as_micros() as u64;
    put_u64(b, us / 1000);
    b.push(b'.');
    put_padded(b, us % 1000, 3);
}

fn put_addr(b: &mut Vec<u8>, a: std::net::SocketAddr) {
    match a {
        std::net::SocketAddr::V4(v4) => {
            for (i, o) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    b.push(b'.');
                }
                put_u64(b, u64::from(*o));
            }
        }
        v6 => {
            let _ = write!(b, "[{}]", v6.ip());
        }
    }
    b.push(b':');
    put_u64(b, u64::from(a.port()));
}

/// A JSON string of client-controlled bytes: quotes, backslashes and control characters escaped,
/// bytes outside ASCII as `\u00XX` (so a line is always valid JSON and one line).
fn json_str(b: &mut Vec<u8>, s: &[u8]) {
    b.push(b'"');
    for &c in s {
        match c {
            b'"' => b.extend_from_slice(b"\\\""),
            b'\\' => b.extend_from_slice(b"\\\\"),
            0x20..=0x7e => b.push(c),
            _ => {
                let _ = write!(b, "\\u{:04x}", c);
            }
        }
    }
    b.push(b'"');
}

/// Client-controlled bytes in the text format: no spaces, quotes or control characters.
fn text(b: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        if c > 0x20 && c < 0x7f && c != b'"' {
            b.push(c);
        } else {
            let _ = write!(b, "%{:02X}", c);
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a unix time (days-to-civil, H. Hinnant).
fn civil(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut out = [0u8; 19];
    let s = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60);
    out.copy_from_slice(&s.as_bytes()[..19]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(&civil(0), b"1970-01-01T00:00:00");
        assert_eq!(&civil(1_795_355_249), b"2026-11-22T13:47:29");
        assert_eq!(&civil(951_782_400), b"2000-02-29T00:00:00");
    }

    #[test]
    fn numbers_by_hand() {
        let mut b = Vec::new();
        put_ms(&mut b, Duration::from_micros(1_234_567));
        b.push(b' ');
        put_ms(&mut b, Duration::from_micros(45));
        b.push(b' ');
        put_addr(&mut b, "10.0.0.7:8080".parse().expect("v4"));
        b.push(b' ');
        put_addr(&mut b, "[::1]:443".parse().expect("v6"));
        b.push(b' ');
        put_padded(&mut b, 7, 3);
        assert_eq!(b, b"1234.567 0.045 10.0.0.7:8080 [::1]:443 007");
    }

    #[test]
    fn escaping() {
        let mut b = Vec::new();
        json_str(&mut b, b"/a\"b\\c\n\xff");
        assert_eq!(b, br#""/a\"b\\c\u000a\u00ff""#);
        let mut t = Vec::new();
        text(&mut t, b"/a b\"c");
        assert_eq!(t, b"/a%20b%22c");
    }
}
