//! Upstreams: connecting by address (optionally over TLS, `tls`) and the per-core keep-alive
//! pool. Target choice is round-robin (`core::Worker::next_target`); the load-balancing issue
//! extends it.
pub mod pool;
pub mod tls;
