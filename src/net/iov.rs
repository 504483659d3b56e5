//! A vectored write buffer over `Bytes` slices, for monoio's `writev`.
//!
//! Holds the slices (keeping their memory alive while the kernel owns the iovecs) and the iovec
//! array; `advance` handles short writes without reallocating, so a connection reuses one
//! `IoSlices` for every request.

use bytes::Bytes;
use monoio::buf::IoVecBuf;

#[derive(Default)]
pub struct IoSlices {
    bufs: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    start: usize,
}

// SAFETY: `iov` points into `bufs`' heap memory (Bytes never move their data); neither vector is
// modified while a write owns this value, so the pointer and length stay valid.
unsafe impl IoVecBuf for IoSlices {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        // SAFETY: start <= iov.len() is kept by `advance`.
        unsafe { self.iov.as_ptr().add(self.start) }
    }
    fn read_iovec_len(&self) -> usize {
        self.iov.len() - self.start
    }
}

impl IoSlices {
    /// The slice list to fill; call `seal` when done.
    pub fn bufs_mut(&mut self) -> &mut Vec<Bytes> {
        &mut self.bufs
    }

    /// Build the iovec array from the slices.
    pub fn seal(&mut self) {
        self.iov.clear();
        self.start = 0;
        for b in &self.bufs {
            if !b.is_empty() {
                self.iov.push(libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() });
            }
        }
    }

    pub fn remaining(&self) -> usize {
        self.iov[self.start..].iter().map(|v| v.iov_len).sum()
    }

    /// Mark `n` bytes written.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 && self.start < self.iov.len() {
            let v = &mut self.iov[self.start];
            if n >= v.iov_len {
                n -= v.iov_len;
                self.start += 1;
            } else {
                // SAFETY: n < iov_len, so the new base stays inside the same slice.
                v.iov_base = unsafe { (v.iov_base as *mut u8).add(n) } as *mut libc::c_void;
                v.iov_len -= n;
                n = 0;
            }
        }
    }

    /// Drop the slices (releasing the buffers they share) but keep the allocations.
    pub fn clear(&mut self) {
        self.bufs.clear();
        self.iov.clear();
        self.start = 0;
    }
}
