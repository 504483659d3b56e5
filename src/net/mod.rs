//! Sockets: listeners (SO_REUSEPORT per worker), reads and writes with deadlines, vectored writes.
pub mod io;
pub mod iov;
pub mod listener;
