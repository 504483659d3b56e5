//! Access logs: one line per request (JSON by default, or a compact text format), written
//! without ever blocking a worker. Each worker appends lines to its own buffer and hands a full
//! buffer (or one older than the flush interval) to the writer thread over a bounded channel;
//! when the writer falls behind and the channel is full, the buffer is dropped and its lines
//! counted (`dropped()`), never queued without bound. SIGUSR1 makes the writer reopen the file
//! (logrotate). Tokens and Authorization values are never part of a line; the query string only
//! when configured.

use std::io::{IoSlice, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, Sender, TryRecvError, TrySendError};

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
    /// Written buffers coming back from the writer, cleared, to be filled again: no allocation
    /// (and no fresh pages to fault in) per handover.
    spare: Receiver<Vec<u8>>,
    /// The writer's word that everything queued before `close` is written.
    closed: Receiver<()>,
    cfg: AccessLogCfg,
}

static LOG: OnceLock<Log> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
static REOPEN: AtomicBool = AtomicBool::new(false);
static CLOSING: AtomicBool = AtomicBool::new(false);

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

/// At exit, once the workers have handed over their last buffers: wait up to `timeout` for the
/// writer to write everything queued (it skips its pauses from now on).
pub fn close(timeout: Duration) {
    let Some(log) = LOG.get() else { return };
    CLOSING.store(true, Ordering::SeqCst);
    // An empty buffer wakes a writer that waits for one; it writes nothing.
    let _ = log.tx.send_timeout(Vec::new(), timeout);
    if log.closed.recv_timeout(timeout).is_err() {
        tracing::warn!("access log: the writer did not finish within {timeout:?}; the last lines may be lost");
    }
}

/// Start the writer thread (once, at startup). The file is opened by the writer itself, so a
/// slow or blocking destination never holds up startup or a worker.
pub fn start(cfg: AccessLogCfg) -> Result<(), String> {
    let (tx, rx) = bounded::<Vec<u8>>(cfg.queue.max(1));
    let (spare_tx, spare) = bounded::<Vec<u8>>(cfg.queue.max(1));
    let (closed_tx, closed) = bounded::<()>(1);
    let path = cfg.path.clone();
    let (flush_interval, queue, buffer_bytes) = (cfg.flush_interval, cfg.queue.max(1), cfg.buffer_bytes);
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
            // Drain everything queued, write it with one vectored write, then pause so the next
            // drain finds several buffers: a few wakes and writes a second under load instead of
            // one per buffer (and no spinning on an empty channel). The pause is at most a tenth
            // of flush_interval (1-20 ms) and at most half the time in which, at the rate just
            // seen, half the queue would fill; a drain that finds the queue half full skips it.
            let max_pause = (flush_interval / 10).clamp(Duration::from_millis(1), Duration::from_millis(20));
            let half = (queue / 2).max(1);
            let mut batch: Vec<Vec<u8>> = Vec::with_capacity(queue + 1);
            let mut last = Instant::now();
            loop {
                match rx.try_recv() {
                    Ok(b) => batch.push(b),
                    Err(TryRecvError::Empty) => match rx.recv() {
                        Ok(b) => batch.push(b),
                        Err(_) => break,
                    },
                    Err(TryRecvError::Disconnected) => break,
                }
                batch.extend(rx.try_iter().take(queue));
                if REOPEN.swap(false, Ordering::Relaxed) {
                    if let Some(p) = &path {
                        match open(p) {
                            Ok(f) => out = Box::new(f),
                            Err(e) => tracing::error!("access log {}: reopen failed: {e}", p.display()),
                        }
                    }
                }
                if let Err(e) = write_all(&mut out, &batch).and_then(|_| out.flush()) {
                    tracing::warn!("access log write failed: {e}");
                }
                let drained = batch.iter().filter(|b| !b.is_empty()).count();
                for mut buf in batch.drain(..) {
                    // Only buffers of the usual size go back: not the empty wake-up of `close`,
                    // nor one grown by an outsized line. Spares full: enough are out there.
                    if (buffer_bytes..=2 * buffer_bytes).contains(&buf.capacity()) {
                        buf.clear();
                        let _ = spare_tx.try_send(buf);
                    }
                }
                if CLOSING.load(Ordering::SeqCst) {
                    if rx.is_empty() {
                        let _ = closed_tx.try_send(());
                    }
                    continue;
                }
                let since = std::mem::replace(&mut last, Instant::now()).elapsed();
                if drained < half {
                    let safe = since.mul_f64(half as f64 / drained.max(1) as f64) / 2;
                    std::thread::sleep(max_pause.min(safe));
                }
            }
        })
        .map_err(|e| format!("cannot start the access log writer: {e}"))?;
    LOG.set(Log { tx, spare, closed, cfg }).map_err(|_| "access log started twice".to_string())
}

/// Every byte of `bufs`, in order, with as few write calls as the destination allows.
fn write_all(out: &mut dyn Write, bufs: &[Vec<u8>]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = bufs.iter().filter(|b| !b.is_empty()).map(|b| IoSlice::new(b)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match out.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A worker's buffer.
#[derive(Default)]
pub struct LocalLog {
    buf: Vec<u8>,
    lines: u64,
    oldest: Option<Instant>,
    /// A monotonic instant and the wall-clock time (since the epoch) read together, at most a
    /// second ago: a line's wall time is derived from its request's end instant without another
    /// clock read, and follows wall-clock steps within a second.
    clock: Option<(Instant, Duration)>,
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
    /// When the request finished (the line's time).
    pub end: Instant,
}

impl LocalLog {
    /// Append one line (and hand the buffer over if it is full). Formatting is by hand (itoa,
    /// fixed-point milliseconds, strings copied whole unless they need escaping), not through
    /// `fmt`: this runs once per request.
    pub fn push(&mut self, e: &Entry<'_>) {
        let Some(log) = LOG.get() else { return };
        let wall = self.wall(e.end);
        if self.second.0 != wall.as_secs() || self.second.1[0] == 0 {
            self.second = (wall.as_secs(), civil(wall.as_secs()));
        }
        let query = e.query.filter(|_| log.cfg.include_query);
        let b = &mut self.buf;
        b.reserve(320 + e.path.len() + query.map_or(0, <[u8]>::len) + e.route.len());
        match log.cfg.format {
            Format::Json => json_line(b, e, &self.second.1, wall.subsec_millis(), query),
            Format::Text => text_line(b, e, &self.second.1, wall.subsec_millis(), query),
        }
        self.lines += 1;
        self.oldest.get_or_insert(e.end);
        if self.buf.len() >= log.cfg.buffer_bytes {
            self.flush();
        }
    }

    /// The wall-clock time (since the epoch) at `end`.
    fn wall(&mut self, end: Instant) -> Duration {
        match self.clock {
            Some((at, wall)) if end >= at && end - at < Duration::from_secs(1) => wall + (end - at),
            _ => {
                let now = Instant::now();
                let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                self.clock = Some((now, wall));
                wall.saturating_sub(now.saturating_duration_since(end))
            }
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
        match log.tx.try_send(std::mem::take(&mut self.buf)) {
            Ok(()) => {
                self.buf = log
                    .spare
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(log.cfg.buffer_bytes + log.cfg.buffer_bytes / 4));
            }
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

/// `{"time":"…","client":"…",…}` and a newline.
fn json_line(b: &mut Vec<u8>, e: &Entry<'_>, second: &[u8; 19], millis: u32, query: Option<&[u8]>) {
    b.extend_from_slice(b"{\"time\":\"");
    b.extend_from_slice(second);
    b.push(b'.');
    put_3(b, millis);
    b.extend_from_slice(b"Z\",\"client\":");
    json_raw(b, e.client);
    b.extend_from_slice(b",\"method\":");
    json_raw(b, e.method);
    b.extend_from_slice(b",\"path\":");
    json_str(b, e.path);
    if let Some(q) = query {
        b.extend_from_slice(b",\"query\":");
        json_str(b, q);
    }
    let keys: [&[u8]; 6] = [
        b",\"status\":",
        b",\"bytes_in\":",
        b",\"bytes_out\":",
        b",\"total_ms\":",
        b",\"upstream_ms\":",
        b",\"gateway_ms\":",
    ];
    put_numbers(b, e, keys);
    b.extend_from_slice(b",\"route\":");
    json_str(b, e.route.as_bytes());
    b.extend_from_slice(b",\"upstream\":");
    match e.upstream {
        Some(u) => {
            b.push(b'"');
            put_addr(b, u);
            b.push(b'"');
        }
        None => b.extend_from_slice(b"null"),
    }
    b.extend_from_slice(b",\"request_id\":");
    json_str(b, e.request_id);
    b.extend_from_slice(b",\"tls\":");
    match e.tls {
        Some(v) => json_raw(b, v.as_bytes()),
        None => b.extend_from_slice(b"null"),
    }
    b.extend_from_slice(b",\"auth\":");
    json_raw(b, e.auth.as_bytes());
    b.extend_from_slice(b",\"ratelimit\":");
    json_raw(b, e.ratelimit.as_bytes());
    b.extend_from_slice(b",\"trace_id\":");
    match e.trace_id {
        Some(id) => json_raw(b, id),
        None => b.extend_from_slice(b"null"),
    }
    b.extend_from_slice(b"}\n");
}

/// `TIME CLIENT "METHOD PATH[?QUERY]" STATUS IN OUT TOTAL UPSTREAM GATEWAY ROUTE UPSTREAM RID
/// tls=… auth=… ratelimit=… trace=…` and a newline; `-` for an absent value.
fn text_line(b: &mut Vec<u8>, e: &Entry<'_>, second: &[u8; 19], millis: u32, query: Option<&[u8]>) {
    let or_dash = |b: &mut Vec<u8>, v: &[u8]| if v.is_empty() { b.push(b'-') } else { text(b, v) };
    b.extend_from_slice(second);
    b.push(b'.');
    put_3(b, millis);
    b.extend_from_slice(b"Z ");
    text(b, e.client);
    b.extend_from_slice(b" \"");
    text(b, e.method);
    b.push(b' ');
    text(b, e.path);
    if let Some(q) = query {
        b.push(b'?');
        text(b, q);
    }
    put_numbers(b, e, [b"\" ", b" ", b" ", b" ", b" ", b" "]);
    b.push(b' ');
    text(b, e.route.as_bytes());
    b.push(b' ');
    match e.upstream {
        Some(u) => put_addr(b, u),
        None => b.push(b'-'),
    }
    b.push(b' ');
    or_dash(b, e.request_id);
    b.extend_from_slice(b" tls=");
    or_dash(b, e.tls.unwrap_or("").as_bytes());
    b.extend_from_slice(b" auth=");
    or_dash(b, e.auth.as_bytes());
    b.extend_from_slice(b" ratelimit=");
    or_dash(b, e.ratelimit.as_bytes());
    b.extend_from_slice(b" trace=");
    or_dash(b, e.trace_id.unwrap_or(b""));
    b.push(b'\n');
}

/// The six numbers both formats share, in order, each after its prefix (a JSON key or the text
/// format's separator): status, bytes in, bytes out, and total / upstream / gateway milliseconds.
fn put_numbers(b: &mut Vec<u8>, e: &Entry<'_>, prefix: [&[u8]; 6]) {
    let t = &e.timing;
    let ints = [u64::from(e.status), e.bytes_in, e.bytes_out];
    let ms = [t.total, t.upstream.unwrap_or_default(), t.gateway()];
    for (p, n) in prefix[..3].iter().zip(ints) {
        b.extend_from_slice(p);
        put_u64(b, n);
    }
    for (p, d) in prefix[3..].iter().zip(ms) {
        b.extend_from_slice(p);
        put_ms(b, d);
    }
}

fn put_u64(b: &mut Vec<u8>, n: u64) {
    b.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` (below 1000) as exactly three digits.
fn put_3(b: &mut Vec<u8>, n: u32) {
    let n = n.min(999);
    b.extend_from_slice(&[b'0' + (n / 100) as u8, b'0' + (n / 10 % 10) as u8, b'0' + (n % 10) as u8]);
}

/// Milliseconds with three decimals (microsecond resolution).
fn put_ms(b: &mut Vec<u8>, d: Duration) {
    let us = d.as_micros() as u64;
    put_u64(b, us / 1000);
    b.push(b'.');
    put_3(b, (us % 1000) as u32);
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

/// Bytes that a JSON string cannot hold as they are: control characters, `"`, `\\`, DEL and
/// everything outside ASCII (written as `\u00XX`, so a line is valid JSON whatever the input).
const JSON_ESCAPE: [bool; 256] = {
    let mut t = [true; 256];
    let mut c = 0x20;
    while c < 0x7f {
        t[c] = c == b'"' as usize || c == b'\\' as usize;
        c += 1;
    }
    t
};

/// A JSON string of client-controlled bytes: quotes, backslashes and control characters escaped,
/// bytes outside ASCII as `\u00XX` (so a line is always valid JSON and one line).
fn json_str(b: &mut Vec<u8>, s: &[u8]) {
    b.push(b'"');
    if !s.iter().any(|&c| JSON_ESCAPE[usize::from(c)]) {
        b.extend_from_slice(s);
        b.push(b'"');
        return;
    }
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

/// A JSON string of bytes the gateway made itself or already validated (client address, method
/// token, TLS version, policy outcome, hex trace id): nothing to escape.
fn json_raw(b: &mut Vec<u8>, s: &[u8]) {
    debug_assert!(!s.iter().any(|&c| JSON_ESCAPE[usize::from(c)]));
    b.push(b'"');
    b.extend_from_slice(s);
    b.push(b'"');
}

/// Client-controlled bytes in the text format: no spaces, quotes or control characters.
fn text(b: &mut Vec<u8>, s: &[u8]) {
    if !s.iter().fold(false, |bad, &c| bad | !(0x21..0x7f).contains(&c) | (c == b'"')) {
        b.extend_from_slice(s);
        return;
    }
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
        put_3(&mut b, 7);
        assert_eq!(b, b"1234.567 0.045 10.0.0.7:8080 [::1]:443 007");
    }

    /// A line's wall time comes from its request's end instant and a clock pair read at most a
    /// second earlier: it must agree with the wall clock, for ends before and after the pair.
    #[test]
    fn wall_time_from_the_end_instant() {
        let mut l = LocalLog::default();
        let epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).expect("after 1970");
        for _ in 0..3 {
            let before = epoch(SystemTime::now());
            let end = Instant::now();
            let after = epoch(SystemTime::now());
            let wall = l.wall(end);
            let slack = Duration::from_millis(5);
            assert!(wall + slack >= before && wall <= after + slack, "{wall:?} not in {before:?}..{after:?}");
            std::thread::sleep(Duration::from_millis(400));
        }
        // An end instant older than the pair (a request that ended before the pair was read).
        let Some(old) = Instant::now().checked_sub(Duration::from_millis(50)) else { return };
        let wall = l.wall(old);
        let now = epoch(SystemTime::now());
        assert!(wall <= now && now - wall >= Duration::from_millis(45), "{wall:?} vs {now:?}");
    }

    /// The table agrees with the definition: printable ASCII but `"` and `\` is copied as is.
    #[test]
    fn escape_table() {
        for c in 0..=255u8 {
            let plain = (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\';
            assert_eq!(JSON_ESCAPE[usize::from(c)], !plain, "byte {c:#x}");
        }
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
