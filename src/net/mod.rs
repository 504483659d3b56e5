//! Sockets: listeners (SO_REUSEPORT per worker), reads and writes with deadlines, vectored writes,
//! the PROXY protocol header a balancer may put in front of a connection, and the client stream
//! (plain or TLS).
pub mod io;
pub mod iov;
pub mod listener;
pub mod proxy_protocol;
pub mod stream;
