//! Socket reads and writes with a deadline, over monoio's owned-buffer API.
//!
//! Reads append to a `BytesMut` (monoio writes at the start of a buffer, so the read is given the
//! spare capacity only). Each operation races a timer; on expiry the operation is dropped, which
//! cancels it; the bytes it may still have moved are lost, so the caller must close that
//! connection, never reuse it.
//!
//! The `*_on` variants re-arm a timer the caller keeps (one per in-flight request, in the
//! per-core scratch) instead of building a new one per operation: a monoio `Sleep` is 640 bytes
//! to initialise and move, and that copying was a tenth of ringgate's own instructions per request.

use std::io;
use std::pin::{pin, Pin};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::time::{Instant, Sleep};

use super::iov::IoSlices;

pub enum ReadOutcome {
    Data(usize),
    Eof,
    TimedOut,
    Err(io::Error),
}

pub enum WriteError {
    TimedOut,
    Io(io::Error),
}

impl From<WriteError> for io::Error {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::TimedOut => io::Error::new(io::ErrorKind::TimedOut, "write timed out"),
            WriteError::Io(e) => e,
        }
    }
}

/// A timer for `*_on` calls that is armed by each call.
pub fn idle_timer() -> Pin<Box<Sleep>> {
    Box::pin(monoio::time::sleep(Duration::from_secs(3600)))
}

/// Read more bytes onto the end of `buf`, making sure at least `min_spare` bytes of room first.
pub async fn read_into<S: AsyncReadRent>(
    s: &mut S,
    buf: &mut BytesMut,
    min_spare: usize,
    wait: Duration,
) -> ReadOutcome {
    let timer = pin!(monoio::time::sleep(wait));
    read_on(s, buf, min_spare, timer).await
}

/// `read_into`, timed by `timer` re-armed to `wait` from now.
pub async fn read_into_on<S: AsyncReadRent>(
    s: &mut S,
    buf: &mut BytesMut,
    min_spare: usize,
    mut timer: Pin<&mut Sleep>,
    wait: Duration,
) -> ReadOutcome {
    timer.as_mut().reset(Instant::now() + wait);
    read_on(s, buf, min_spare, timer).await
}

async fn read_on<S: AsyncReadRent>(
    s: &mut S,
    buf: &mut BytesMut,
    min_spare: usize,
    timer: Pin<&mut Sleep>,
) -> ReadOutcome {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let owned = std::mem::take(buf);
    let (len, cap) = (owned.len(), owned.capacity());
    let read = s.read(owned.slice_mut(len..cap));
    monoio::select! {
        (res, slice) = read => {
            *buf = slice.into_inner();
            match res {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => ReadOutcome::Data(n),
                Err(e) => ReadOutcome::Err(e),
            }
        }
        _ = timer => ReadOutcome::TimedOut,
    }
}

/// Write all of `b` within `wait`.
pub async fn write_all<S: AsyncWriteRent>(s: &mut S, b: Bytes, wait: Duration) -> Result<(), WriteError> {
    let timer = pin!(monoio::time::sleep(wait));
    write_all_on_armed(s, b, timer).await
}

/// `write_all`, timed by `timer` re-armed to `wait` from now.
pub async fn write_all_on<S: AsyncWriteRent>(
    s: &mut S,
    b: Bytes,
    mut timer: Pin<&mut Sleep>,
    wait: Duration,
) -> Result<(), WriteError> {
    timer.as_mut().reset(Instant::now() + wait);
    write_all_on_armed(s, b, timer).await
}

async fn write_all_on_armed<S: AsyncWriteRent>(s: &mut S, b: Bytes, timer: Pin<&mut Sleep>) -> Result<(), WriteError> {
    let write = s.write_all(b);
    monoio::select! {
        (res, _) = write => res.map(|_| ()).map_err(WriteError::Io),
        _ = timer => Err(WriteError::TimedOut),
    }
}

/// Write every slice in `iov` (already sealed) within `wait`, timed by `timer` re-armed to `wait`
/// from now; gives the buffer back unless timed out.
pub async fn write_iov_on<S: AsyncWriteRent>(
    s: &mut S,
    mut iov: IoSlices,
    mut timer: Pin<&mut Sleep>,
    wait: Duration,
) -> (Result<(), WriteError>, Option<IoSlices>) {
    timer.as_mut().reset(Instant::now() + wait);
    let write = async move {
        while iov.remaining() > 0 {
            let (res, back) = s.writev(iov).await;
            iov = back;
            match res {
                Ok(0) => return (Err(WriteError::Io(io::ErrorKind::WriteZero.into())), iov),
                Ok(n) => iov.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(WriteError::Io(e)), iov),
            }
        }
        (Ok(()), iov)
    };
    monoio::select! {
        (r, iov) = write => (r, Some(iov)),
        _ = timer => (Err(WriteError::TimedOut), None),
    }
}
