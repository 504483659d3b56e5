//! HTTP/1.1: sans-io parsing and framing (`parse`, `body`, `response`, `write`) and the client
//! connection loop (`conn`), the only part here that awaits a socket.
pub mod body;
pub mod conn;
pub mod parse;
pub mod response;
pub mod write;
