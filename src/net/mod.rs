//! Sockets: listeners (SO_REUSEPORT per worker), reads and writes with deadlines, vectored writes,
//! and the PROXY protocol header a balancer may put in front of a connection.
pub mod io;
pub mod iov;
pub mod listener;
pub mod proxy_protocol;
