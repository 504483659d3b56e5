//! ringgate: a thread-per-core HTTP/1.1 API gateway data plane on monoio.
//!
//! A request flows one way: `runtime` (accept) → `http::conn` (read head) → `http::parse`
//! (framing rules) → `pipeline` (→ `routing`: normalize, `router` lookup, the `route`'s action;
//! then upstream, stream) → `upstream::pool` → back through `http::write`. `error` maps every
//! failure to its one answer. `config` and `shared` build the immutable snapshot workers read;
//! `reload` swaps it; `admin` serves the control endpoints; `core` is each worker's own state.
//!
//! Pure layers (no runtime, no sockets): error, config, http::{parse, body, response, write},
//! router, route, routing, shared. They are what benches/ and unit tests exercise directly.

pub mod accesslog;
pub mod admin;
pub mod auth;
pub mod config;
pub mod core;
pub mod demo;
pub mod error;
pub mod hash;
pub mod http;
pub mod metrics;
pub mod net;
pub mod observe;
pub mod pipeline;
pub mod ratelimit;
pub mod reload;
pub mod route;
pub mod router;
pub mod routing;
pub mod runtime;
pub mod shared;
pub mod tls;
pub mod trace;
pub mod upgrade;
pub mod upstream;
