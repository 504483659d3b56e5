//! Sans-socket HTTP/1.1 pieces shared by the test client and the test upstream: a buffered reader
//! that understands heads, Content-Length, chunked bodies and read-to-close, a head parser, and the
//! deterministic byte pattern + checksum used by the streaming tests.
//!
//! These parsers are deliberately simple and strict about CRLF: they read what a correct gateway
//! writes. They are not a model of what the gateway must accept.

use std::io::{self, Read};
use std::sync::OnceLock;

/// Size of the reads issued against the socket.
const READ_CHUNK: usize = 64 * 1024;

/// Buffered reader over a byte stream with HTTP/1.1 framing helpers.
pub struct HttpReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: Read> HttpReader<R> {
    pub fn new(inner: R) -> Self {
        HttpReader { inner, buf: Vec::new() }
    }

    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Bytes already read from the stream but not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Takes the buffered, unconsumed bytes (e.g. tunnel bytes after a 101 head).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Reads once from the stream into the buffer. Returns the number of bytes read (0 = EOF).
    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.inner.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads a head (start line + fields) up to and including the empty line (CRLF CRLF).
    /// `Ok(None)` means the stream ended cleanly before any byte of a new head.
    pub fn read_head(&mut self, max: usize) -> io::Result<Option<Vec<u8>>> {
        let mut searched = 0;
        loop {
            if let Some(pos) = find(&self.buf[searched..], b"\r\n\r\n") {
                let end = searched + pos + 4;
                let head: Vec<u8> = self.buf.drain(..end).collect();
                return Ok(Some(head));
            }
            searched = self.buf.len().saturating_sub(3);
            if self.buf.len() > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("head larger than {max} bytes")));
            }
            if self.fill()? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stream ended inside a head; partial head: {:?}", String::from_utf8_lossy(&self.buf)),
                ));
            }
        }
    }

    /// Reads one CRLF-terminated line and returns it without the CRLF.
    pub fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                line.truncate(pos);
                return Ok(line);
            }
            if self.buf.len() > max {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("line longer than {max} bytes")));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended inside a line"));
            }
        }
    }

    /// Reads exactly `n` bytes and hands them to `sink` piece by piece.
    pub fn read_exact_to(&mut self, n: u64, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        let mut left = n;
        if !self.buf.is_empty() && left > 0 {
            let take = (self.buf.len() as u64).min(left) as usize;
            sink(&self.buf[..take]);
            self.buf.drain(..take);
            left -= take as u64;
        }
        let mut tmp = vec![0u8; READ_CHUNK];
        while left > 0 {
            let want = (tmp.len() as u64).min(left) as usize;
            let got = self.inner.read(&mut tmp[..want])?;
            if got == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("stream ended {left} bytes before the end of a {n}-byte body ({} received)", n - left),
                ));
            }
            sink(&tmp[..got]);
            left -= got as u64;
        }
        Ok(())
    }

    /// Decodes a chunked body (RFC 9112 §7.1), handing the payload to `sink`. Returns the trailer
    /// fields.
    pub fn read_chunked_to(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<Vec<(String, String)>> {
        loop {
            let line = self.read_line(4096)?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.split(';').next().unwrap_or("").trim_end();
            if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk-size line {text:?}")));
            }
            let size = u64::from_str_radix(size_text, 16)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {size_text:?}: {e}")))?;
            if size == 0 {
                let mut trailers = Vec::new();
                loop {
                    let line = self.read_line(64 * 1024)?;
                    if line.is_empty() {
                        return Ok(trailers);
                    }
                    trailers.push(
                        parse_field(&line)
                            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("trailer: {e}")))?,
                    );
                }
            }
            self.read_exact_to(size, sink)?;
            let crlf = self.read_line(2)?;
            if !crlf.is_empty() {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "chunk data not followed by CRLF"));
            }
        }
    }

    /// Reads until the peer closes, handing everything to `sink`.
    pub fn read_to_eof(&mut self, sink: &mut dyn FnMut(&[u8])) -> io::Result<()> {
        if !self.buf.is_empty() {
            sink(&self.buf);
            self.buf.clear();
        }
        let mut tmp = vec![0u8; READ_CHUNK];
        loop {
            let got = self.inner.read(&mut tmp)?;
            if got == 0 {
                return Ok(());
            }
            sink(&tmp[..got]);
        }
    }
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses `name: value` (no whitespace allowed in or after the name; value trimmed of OWS).
pub fn parse_field(line: &[u8]) -> Result<(String, String), String> {
    let text = String::from_utf8_lossy(line);
    let (name, value) = text.split_once(':').ok_or_else(|| format!("field line without a colon: {text:?}"))?;
    if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("bad field name in {text:?}"));
    }
    Ok((name.to_string(), value.trim_matches(|c| c == ' ' || c == '\t').to_string()))
}

/// A parsed head: the start line split in three and the fields in order.
#[derive(Clone, Debug)]
pub struct Head {
    pub start: [String; 3],
    pub headers: Vec<(String, String)>,
}

/// Parses a raw head (as returned by [`HttpReader::read_head`]). The start line is split on the
/// first two spaces; a status line may lack a reason phrase.
pub fn parse_head(raw: &[u8]) -> Result<Head, String> {
    let body = raw.strip_suffix(b"\r\n\r\n").unwrap_or(raw);
    let mut lines = body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().ok_or("empty head")?;
    let first = String::from_utf8_lossy(first).to_string();
    if first.contains('\r') {
        return Err(format!("bare CR in start line {first:?}"));
    }
    let mut parts = first.splitn(3, ' ');
    let a = parts.next().unwrap_or("").to_string();
    let b = parts.next().unwrap_or("").to_string();
    let c = parts.next().unwrap_or("").to_string();
    if a.is_empty() || b.is_empty() {
        return Err(format!("bad start line {first:?}"));
    }
    let mut headers = Vec::new();
    for line in lines {
        headers.push(parse_field(line)?);
    }
    Ok(Head { start: [a, b, c], headers })
}

/// First value of a field, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Every value of a field, in order.
pub fn header_all<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
}

/// The comma-separated list elements of every line of a field, trimmed (RFC 9110 §5.6.1).
pub fn header_list(headers: &[(String, String)], name: &str) -> Vec<String> {
    header_all(headers, name)
        .iter()
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether a comma-separated field (e.g. Connection) contains `token`, case-insensitively.
pub fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    header_list(headers, name).iter().any(|t| t.eq_ignore_ascii_case(token))
}

/// FNV-1a 64, streaming. Position-sensitive, so reordered or shifted bytes change it.
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    pub fn update(&mut self, data: &[u8]) {
        let mut h = self.0;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// Period of the test pattern: a prime, so that any shift or duplicated block shows in the data.
const PATTERN_PERIOD: usize = 65_521;

fn pattern_table() -> &'static [u8] {
    static TABLE: OnceLock<Vec<u8>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..PATTERN_PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    })
}

/// Fills `out` with the pattern bytes starting at absolute offset `offset`.
pub fn fill_pattern(offset: u64, out: &mut [u8]) {
    let table = pattern_table();
    let mut pos = (offset % PATTERN_PERIOD as u64) as usize;
    let mut done = 0;
    while done < out.len() {
        let n = (PATTERN_PERIOD - pos).min(out.len() - done);
        out[done..done + n].copy_from_slice(&table[pos..pos + n]);
        done += n;
        pos = 0;
    }
}

/// Checksum of the first `len` pattern bytes (what a correct transfer of `len` bytes hashes to).
pub fn pattern_fnv(len: u64) -> u64 {
    static CACHE: std::sync::Mutex<Vec<(u64, u64)>> = std::sync::Mutex::new(Vec::new());
    let cached = CACHE.lock().unwrap_or_else(|e| e.into_inner()).iter().find(|(l, _)| *l == len).map(|(_, h)| *h);
    if let Some(h) = cached {
        return h;
    }
    let h = compute_pattern_fnv(len);
    CACHE.lock().unwrap_or_else(|e| e.into_inner()).push((len, h));
    h
}

fn compute_pattern_fnv(len: u64) -> u64 {
    let mut fnv = Fnv64::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < len {
        let n = ((len - off) as usize).min(buf.len());
        fill_pattern(off, &mut buf[..n]);
        fnv.update(&buf[..n]);
        off += n as u64;
    }
    fnv.finish()
}

/// Whether `id` is a well-formed request id: 1..=128 characters of `[A-Za-z0-9._-]`.
pub fn is_well_formed_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}
