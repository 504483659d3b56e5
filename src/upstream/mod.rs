//! Upstreams: connecting by address and the per-core keep-alive pool. Target choice is
//! round-robin (`core::Worker::next_target`); the load-balancing issue extends it.
pub mod pool;
