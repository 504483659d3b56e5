//! Connection byte streams: plain TCP, or TLS over TCP, for clients (TLS terminated) and for
//! upstreams (TLS originated). One enum per side rather than generics over the transport, so the
//! request path is compiled once per side; the TLS arms box their futures, so a plain
//! connection's parked read stays small.
//!
//! `Prefixed` replays bytes already read from a socket (after a PROXY protocol header, the start
//! of the TLS ClientHello) before reading from it again.

use bytes::BytesMut;
use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, CancelHandle, CancelableAsyncReadRent, Split};
use monoio::net::TcpStream;
use monoio::BufResult;
use std::os::fd::{AsRawFd, RawFd};

/// A TCP stream that first yields `pre`.
pub struct Prefixed {
    pub inner: TcpStream,
    pub pre: BytesMut,
}

// SAFETY: reads and writes go to independent halves of the TCP stream; `pre` is only read.
unsafe impl Split for Prefixed {}

/// Copy from `pre` into a buffer the kernel would have filled.
fn drain_into<T: IoBufMut>(pre: &mut BytesMut, mut buf: T) -> (usize, T) {
    // A read fills `bytes_total` bytes from `write_ptr` and reports the count with `set_init`.
    let n = pre.len().min(buf.bytes_total());
    // SAFETY: `write_ptr` points at `bytes_total` writable bytes, and n is within.
    unsafe {
        std::ptr::copy_nonoverlapping(pre.as_ptr(), buf.write_ptr(), n);
        buf.set_init(n);
    }
    let _ = pre.split_to(n);
    if pre.is_empty() {
        // Replayed: let the allocation go rather than keep it for the connection's life.
        *pre = BytesMut::new();
    }
    (n, buf)
}

impl AsyncReadRent for Prefixed {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        if self.pre.is_empty() {
            return self.inner.read(buf).await;
        }
        let (n, buf) = drain_into(&mut self.pre, buf);
        (Ok(n), buf)
    }

    async fn readv<T: IoVecBufMut>(&mut self, mut buf: T) -> BufResult<usize, T> {
        if self.pre.is_empty() || buf.write_iovec_len() == 0 {
            return self.inner.readv(buf).await;
        }
        // Fill the first iovec only: a short read is always allowed.
        let n = {
            // SAFETY: there is at least one iovec, valid while `buf` lives.
            let iov = unsafe { &*buf.write_iovec_ptr() };
            let n = self.pre.len().min(iov.iov_len);
            // SAFETY: iov_base points at iov_len writable bytes.
            unsafe { std::ptr::copy_nonoverlapping(self.pre.as_ptr(), iov.iov_base as *mut u8, n) };
            n
        };
        let _ = self.pre.split_to(n);
        // SAFETY: n bytes were written at the start of the buffers.
        unsafe { buf.set_init(n) };
        (Ok(n), buf)
    }
}

impl AsyncWriteRent for Prefixed {
    fn write<T: IoBuf>(&mut self, buf: T) -> impl std::future::Future<Output = BufResult<usize, T>> {
        self.inner.write(buf)
    }
    fn writev<T: IoVecBuf>(&mut self, buf: T) -> impl std::future::Future<Output = BufResult<usize, T>> {
        self.inner.writev(buf)
    }
    fn flush(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.inner.flush()
    }
    fn shutdown(&mut self) -> impl std::future::Future<Output = std::io::Result<()>> {
        self.inner.shutdown()
    }
}

pub type TlsStream = monoio_rustls::ServerTlsStream<Prefixed>;

/// A client connection's stream (TLS terminated here).
pub type ClientStream = Stream<TlsStream>;
/// An upstream connection's stream (TLS originated here).
pub type UpstreamStream = Stream<monoio_rustls::ClientTlsStream<TcpStream>>;

/// A connection's stream: plain TCP, or a TLS stream `T` over TCP.
pub enum Stream<T> {
    Plain(TcpStream),
    Tls(Box<TlsConn<T>>),
}

/// A TLS stream and the buffer its vectored writes are gathered in: monoio-rustls writes only the
/// first slice of a `writev`, so a response head and body would leave as several TLS records and
/// as many syscalls. Gathered, a message is one record and one `sendto`.
pub struct TlsConn<T> {
    pub stream: T,
    gather: Vec<u8>,
    /// The TCP socket under the TLS stream (which does not lend it out), for non-blocking peeks.
    fd: RawFd,
}

impl<T> TlsConn<T> {
    pub fn new(stream: T, fd: RawFd) -> Self {
        TlsConn { stream, gather: Vec::new(), fd }
    }
}

/// Largest gather buffer kept on an idle TLS connection.
const GATHER_KEEP: usize = 64 * 1024;

// SAFETY: TcpStream is Split; monoio-rustls declares its stream Split over a Split transport.
unsafe impl<T: Split> Split for Stream<T> {}

impl<T> Stream<T> {
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The TCP socket's descriptor (valid while the stream lives).
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Stream::Plain(s) => s.as_raw_fd(),
            Stream::Tls(t) => t.fd,
        }
    }
}

impl<T: AsyncReadRent + AsyncWriteRent> AsyncReadRent for Stream<T> {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => Box::pin(s.stream.read(buf)).await,
        }
    }
    async fn readv<B: IoVecBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.readv(buf).await,
            Stream::Tls(s) => Box::pin(s.stream.readv(buf)).await,
        }
    }
}

impl<T: AsyncReadRent + AsyncWriteRent> CancelableAsyncReadRent for Stream<T> {
    /// TLS reads cannot be cancelled: the caller must be ready to drop the future instead.
    async fn cancelable_read<B: IoBufMut>(&mut self, buf: B, c: CancelHandle) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.cancelable_read(buf, c).await,
            Stream::Tls(s) => Box::pin(s.stream.read(buf)).await,
        }
    }
    async fn cancelable_readv<B: IoVecBufMut>(&mut self, buf: B, c: CancelHandle) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.cancelable_readv(buf, c).await,
            Stream::Tls(s) => Box::pin(s.stream.readv(buf)).await,
        }
    }
}

impl<T: AsyncReadRent + AsyncWriteRent> AsyncWriteRent for Stream<T> {
    async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(s) => Box::pin(s.stream.write(buf)).await,
        }
    }
    async fn writev<B: IoVecBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.writev(buf).await,
            Stream::Tls(s) => {
                let mut flat = std::mem::take(&mut s.gather);
                flat.clear();
                // SAFETY: the iovec array and every slice it points at are valid while `buf` lives.
                unsafe {
                    let iov = std::slice::from_raw_parts(buf.read_iovec_ptr(), buf.read_iovec_len());
                    for v in iov {
                        flat.extend_from_slice(std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len));
                    }
                }
                let (res, mut back) = Box::pin(s.stream.write_all(flat)).await;
                if back.capacity() <= GATHER_KEEP {
                    back.clear();
                    s.gather = back;
                }
                (res, buf)
            }
        }
    }
    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(s) => Box::pin(s.stream.flush()).await,
        }
    }
    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => Box::pin(s.stream.shutdown()).await,
        }
    }
}
