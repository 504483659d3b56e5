//! Body framing state machines (sans-io, RFC 9112 §6.3 and §7.1).
//!
//! A [`BodyReader`] is fed the bytes that follow a head and says how many of them belong to the
//! body and when the body ends, so the proxy can forward exactly the body and nothing smuggled
//! after it. Chunked bodies are checked strictly (hex size without sign or whitespace, at most 16
//! digits, CRLF everywhere, bounded extensions and trailers) and passed through unchanged; the
//! decoder can also report the data spans, for HTTP/1.0 clients that cannot receive chunked.

use std::ops::Range;

use super::hex_digit;

/// Bytes allowed for one chunk-size line (size plus extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// Bytes allowed for the whole trailer section.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("invalid chunk size")]
    ChunkSize,
    #[error("chunk size overflow")]
    ChunkOverflow,
    #[error("invalid chunk framing")]
    ChunkFraming,
    #[error("chunk extension too long")]
    ChunkExtension,
    #[error("invalid or oversized trailer section")]
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of the size; `digits` so far.
    Size {
        digits: u8,
    },
    /// In chunk extensions, up to CR.
    Ext,
    /// Saw CR after the size line; expect LF.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf {
        empty: bool,
    },
    Done,
}

/// Delimits one message body.
#[derive(Debug, Clone)]
pub enum BodyReader {
    /// Exactly this many bytes remain.
    Length(u64),
    Chunked(ChunkedState),
    /// Everything until the peer closes (responses only).
    UntilClose,
}

#[derive(Debug, Clone)]
pub struct ChunkedState {
    state: Chunk,
    size: u64,
    line_len: usize,
    trailer_len: usize,
}

/// What one `feed` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Input bytes that belong to the body (a prefix of the input).
    pub consumed: usize,
    /// The body ended within those bytes.
    pub done: bool,
}

impl BodyReader {
    pub fn chunked() -> Self {
        BodyReader::Chunked(ChunkedState { state: Chunk::Size { digits: 0 }, size: 0, line_len: 0, trailer_len: 0 })
    }

    pub fn is_done(&self) -> bool {
        match self {
            BodyReader::Length(n) => *n == 0,
            BodyReader::Chunked(c) => c.state == Chunk::Done,
            BodyReader::UntilClose => false,
        }
    }

    /// Consume body bytes from the start of `input`; never past the end of the body.
    pub fn feed(&mut self, input: &[u8]) -> Result<Progress, BodyError> {
        self.feed_with(input, |_| {})
    }

    /// As `feed`, and calls `on_data` with the range of each run of payload bytes (chunk data
    /// without framing) inside `input`.
    pub fn feed_with(&mut self, input: &[u8], mut on_data: impl FnMut(Range<usize>)) -> Result<Progress, BodyError> {
        match self {
            BodyReader::Length(rem) => {
                let take = (*rem).min(input.len() as u64) as usize;
                *rem -= take as u64;
                if take > 0 {
                    on_data(0..take);
                }
                Ok(Progress { consumed: take, done: *rem == 0 })
            }
            BodyReader::UntilClose => {
                if !input.is_empty() {
                    on_data(0..input.len());
                }
                Ok(Progress { consumed: input.len(), done: false })
            }
            BodyReader::Chunked(c) => c.feed(input, &mut on_data),
        }
    }
}

impl ChunkedState {
    fn feed(&mut self, input: &[u8], on_data: &mut impl FnMut(Range<usize>)) -> Result<Progress, BodyError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                Chunk::Size { digits } => {
                    self.line_len += 1;
                    if let Some(d) = hex_digit(b) {
                        if digits >= 16 {
                            return Err(BodyError::ChunkOverflow);
                        }
                        self.size = (self.size << 4) | u64::from(d);
                        self.state = Chunk::Size { digits: digits + 1 };
                    } else if digits == 0 {
                        return Err(BodyError::ChunkSize);
                    } else if b == b';' {
                        self.state = Chunk::Ext;
                    } else if b == b'\r' {
                        self.state = Chunk::SizeLf;
                    } else {
                        // RFC 9112 §7.1: no whitespace or other bytes after the size (BWS before ';'
                        // is tolerated by some, refused here).
                        return Err(BodyError::ChunkSize);
                    }
                }
                Chunk::Ext => {
                    self.line_len += 1;
                    if self.line_len > MAX_CHUNK_LINE {
                        return Err(BodyError::ChunkExtension);
                    }
                    if b == b'\r' {
                        self.state = Chunk::SizeLf;
                    } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(BodyError::ChunkFraming);
                    }
                }
                Chunk::SizeLf => {
                    if b != b'\n' {
                        return Err(BodyError::ChunkFraming);
                    }
                    self.line_len = 0;
                    self.state = if self.size == 0 { Chunk::TrailerStart } else { Chunk::Data };
                }
                Chunk::Data => {
                    let take = (self.size).min((input.len() - i) as u64) as usize;
                    on_data(i..i + take);
                    self.size -= take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = Chunk::DataCr;
                    }
                    continue;
                }
                Chunk::DataCr => {
                    if b != b'\r' {
                        return Err(BodyError::ChunkFraming);
                    }
                    self.state = Chunk::DataLf;
                }
                Chunk::DataLf => {
                    if b != b'\n' {
                        return Err(BodyError::ChunkFraming);
                    }
                    self.state = Chunk::Size { digits: 0 };
                }
                Chunk::TrailerStart => {
                    self.trailer_len += 1;
                    if b == b'\r' {
                        self.state = Chunk::TrailerLf { empty: true };
                    } else if b == b' ' || b == b'\t' || !is_field_byte(b) || b == b':' {
                        // obs-fold or a line that does not start with a field name.
                        return Err(BodyError::Trailer);
                    } else {
                        self.state = Chunk::TrailerLine;
                    }
                }
                Chunk::TrailerLine => {
                    self.trailer_len += 1;
                    if self.trailer_len > MAX_TRAILERS {
                        return Err(BodyError::Trailer);
                    }
                    if b == b'\r' {
                        self.state = Chunk::TrailerLf { empty: false };
                    } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
                        return Err(BodyError::Trailer);
                    }
                }
                Chunk::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(BodyError::Trailer);
                    }
                    if empty {
                        self.state = Chunk::Done;
                        return Ok(Progress { consumed: i + 1, done: true });
                    }
                    self.state = Chunk::TrailerStart;
                }
                Chunk::Done => return Ok(Progress { consumed: i, done: true }),
            }
            i += 1;
        }
        Ok(Progress { consumed: i, done: self.state == Chunk::Done })
    }
}

fn is_field_byte(b: u8) -> bool {
    b > 0x20 && b != 0x7f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> Result<(Progress, Vec<u8>), BodyError> {
        let mut r = BodyReader::chunked();
        let mut data = Vec::new();
        let p = r.feed_with(input, |rg| data.extend_from_slice(&input[rg]))?;
        Ok((p, data))
    }

    #[test]
    fn rfc9112_7_1_chunked_roundtrip_stops_at_end() {
        let body = b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nX-T: 1\r\n\r\nGET /smuggled HTTP/1.1\r\n";
        let (p, data) = run(body).expect("valid");
        assert!(p.done);
        assert_eq!(&body[..p.consumed], b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nX-T: 1\r\n\r\n");
        assert_eq!(data, b"Wikipedia");
    }

    #[test]
    fn byte_at_a_time_matches() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\n";
        let mut r = BodyReader::chunked();
        let mut total = 0;
        for i in 0..body.len() {
            let p = r.feed(&body[i..i + 1]).expect("valid");
            total += p.consumed;
            assert_eq!(p.done, i == body.len() - 1);
        }
        assert_eq!(total, body.len());
    }

    #[test]
    fn rfc9112_7_1_bad_sizes() {
        for bad in
            [&b"x\r\n"[..], b"-1\r\n", b" 1\r\n", b"1 \r\n", b"0x1\r\n", b"\r\n", b"1\n", b"11111111111111111\r\n"]
        {
            assert!(run(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(run(b"ffffffffffffffffff\r\n").err(), Some(BodyError::ChunkOverflow));
    }

    #[test]
    fn rfc9112_7_1_data_must_end_with_crlf() {
        assert!(run(b"1\r\nab\r\n").is_err());
        assert!(run(b"1\r\na\n0\r\n\r\n").is_err());
    }

    #[test]
    fn trailers_checked() {
        assert!(run(b"0\r\n folded\r\n\r\n").is_err());
        assert!(run(b"0\r\nX: a\nY: b\r\n\r\n").is_err());
    }

    #[test]
    fn length_reader() {
        let mut r = BodyReader::Length(5);
        assert_eq!(r.feed(b"abc").expect("ok"), Progress { consumed: 3, done: false });
        assert_eq!(r.feed(b"defgh").expect("ok"), Progress { consumed: 2, done: true });
    }
}
