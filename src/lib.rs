//! ringgate: a thread-per-core HTTP/1.1 API gateway data plane on monoio.
//!
//! A request flows one way: `runtime` (accept) → `http::conn` (read head) → `http::parse`
//! (framing rules) → `pipeline` (route, upstream, stream) → `upstream::pool` → back through
//! `http::write`. `error` maps every failure to its one answer. `config` and `shared` build the
//! immutable snapshot workers read; `core` is each worker's own state.
//!
//! Pure layers (no runtime, no sockets): error, config, http::{parse, body, response, write},
//! shared. They are what benches/ and unit tests exercise directly.

pub mod config;
pub mod core;
pub mod demo;
pub mod error;
pub mod http;
pub mod net;
pub mod pipeline;
pub mod runtime;
pub mod shared;
pub mod upstream;
