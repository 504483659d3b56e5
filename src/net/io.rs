//! Socket reads and writes with a deadline, over monoio's owned-buffer API.
//!
//! Reads append to a `BytesMut` (monoio writes at the start of a buffer, so the read is given the
//! spare capacity only). On a timeout the operation is dropped, which cancels it; the bytes it may
//! still have moved are lost, so the caller must close that connection, never reuse it.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};

use super::iov::IoSlices;

pub enum ReadOutcome {
    Data(usize),
    Eof,
    TimedOut,
    Err(io::Error),
}

/// Read more bytes onto the end of `buf`, making sure at least `min_spare` bytes of room first.
pub async fn read_into<S: AsyncReadRent>(
    s: &mut S,
    buf: &mut BytesMut,
    min_spare: usize,
    wait: Duration,
) -> ReadOutcome {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let owned = std::mem::take(buf);
    let (len, cap) = (owned.len(), owned.capacity());
    match monoio::time::timeout(wait, s.read(owned.slice_mut(len..cap))).await {
        Err(_) => ReadOutcome::TimedOut,
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            match res {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => ReadOutcome::Data(n),
                Err(e) => ReadOutcome::Err(e),
            }
        }
    }
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

/// Write all of `b` within `wait`.
pub async fn write_all<S: AsyncWriteRent>(s: &mut S, b: Bytes, wait: Duration) -> Result<(), WriteError> {
    match monoio::time::timeout(wait, s.write_all(b)).await {
        Err(_) => Err(WriteError::TimedOut),
        Ok((Ok(_), _)) => Ok(()),
        Ok((Err(e), _)) => Err(WriteError::Io(e)),
    }
}

/// Write every slice in `iov` (already sealed) within `wait`; gives the buffer back unless timed out.
pub async fn write_iov<S: AsyncWriteRent>(
    s: &mut S,
    mut iov: IoSlices,
    wait: Duration,
) -> (Result<(), WriteError>, Option<IoSlices>) {
    let fut = async move {
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
    match monoio::time::timeout(wait, fut).await {
        Err(_) => (Err(WriteError::TimedOut), None),
        Ok((r, iov)) => (r, Some(iov)),
    }
}
