//! Shared support for the integration tests: start the real `ringgate` binary ([`Gateway`]), a
//! scriptable upstream ([`TestUpstream`]), raw clients ([`Client`]), a config builder
//! ([`ConfigBuilder`]) and the `both_drivers!` macro that runs every test under io_uring and epoll.
//!
//! Each test file is its own crate and uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod gateway;
pub mod http;
pub mod jwks;
pub mod jwt;
pub mod pki;
pub mod upstream;

pub use client::{chunked, get, req, Client, CloseKind, Closed, Framing, Response, TEST_HOST};
pub use gateway::{admin_get, admin_post, admin_request, run_cli, Driver, Gateway, TempFile};
pub use http::{fill_pattern, is_well_formed_request_id, pattern_fnv, Fnv64};
pub use upstream::{Action, Recorded, TestUpstream};

use std::net::SocketAddr;
use std::time::Duration;

/// Generous deadline for events that should happen promptly.
pub const PROMPT: Duration = Duration::from_secs(5);

/// After a rejection, how long to give a (wrong) gateway to forward something anyway. Used only
/// to check the *absence* of upstream traffic, after a sentinel request has already gone through.
pub const SETTLE: Duration = Duration::from_millis(200);

/// Turns test functions `fn name(driver: Driver)` into two tests each, `name::uring` and
/// `name::epoll` (a module and a function may share a name):
///
/// ```ignore
/// fn basic_get(driver: Driver) { ... }
/// both_drivers!(basic_get, #[ignore = "slow"] huge_transfer);
/// ```
///
/// `cargo test basic_get` runs both, `cargo test epoll` runs one driver across the suite. A test
/// function missing from the list is dead code, which `clippy -D warnings` reports.
macro_rules! both_drivers {
    ($($(#[$attr:meta])* $name:ident),+ $(,)?) => {$(
        mod $name {
            $(#[$attr])*
            #[test]
            fn uring() {
                super::$name($crate::support::Driver::Uring)
            }

            $(#[$attr])*
            #[test]
            fn epoll() {
                super::$name($crate::support::Driver::Epoll)
            }
        }
    )+};
}

/// Builds a config file. Defaults: `workers = 1`, one listener on 127.0.0.1:0.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    workers: usize,
    /// (address, extra `key = value` lines) per `[[listeners]]` table.
    listeners: Vec<(String, String)>,
    limits: Vec<String>,
    forwarding: Vec<String>,
    shutdown: Vec<String>,
    upstreams: Vec<String>,
    routes: Vec<String>,
    /// Raw TOML appended after the routes (whole tables: `[admin]`, `[upgrade]`...).
    raw: String,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder {
            workers: 1,
            listeners: vec![("127.0.0.1:0".into(), String::new())],
            limits: Vec::new(),
            forwarding: Vec::new(),
            shutdown: Vec::new(),
            upstreams: Vec::new(),
            routes: Vec::new(),
            raw: String::new(),
        }
    }
}

impl ConfigBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// One upstream `test` at `addr` and one route `/` to it.
    pub fn proxy_to(addr: SocketAddr) -> Self {
        Self::new().upstream("test", &[addr], "").route("/", "test", "")
    }

    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Adds a listener address (the default one stays first).
    pub fn listener(mut self, address: &str) -> Self {
        self.listeners.push((address.into(), String::new()));
        self
    }

    /// Adds a listener with more `key = value` lines in its table (e.g. `reuse_port_group = true`).
    pub fn listener_with(mut self, address: &str, extra: &str) -> Self {
        self.listeners.push((address.into(), extra.into()));
        self
    }

    /// Removes every listener, the default one included; add at least one afterwards.
    pub fn no_listeners(mut self) -> Self {
        self.listeners.clear();
        self
    }

    /// A `key = value` line in `[limits]`.
    pub fn limit(mut self, line: &str) -> Self {
        self.limits.push(line.into());
        self
    }

    /// A `key = value` line in `[forwarding]`.
    pub fn forwarding(mut self, line: &str) -> Self {
        self.forwarding.push(line.into());
        self
    }

    /// A `key = value` line in `[shutdown]`.
    pub fn shutdown(mut self, line: &str) -> Self {
        self.shutdown.push(line.into());
        self
    }

    /// An `[[upstreams]]` table; `extra` holds more `key = value` lines.
    pub fn upstream(mut self, name: &str, targets: &[SocketAddr], extra: &str) -> Self {
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        self.upstreams.push(format!("[[upstreams]]\nname = \"{name}\"\ntargets = [{}]\n{extra}\n", targets.join(", ")));
        self
    }

    /// An `[[upstreams]]` table with raw target strings (e.g. `builtin:demo`).
    pub fn upstream_raw(mut self, name: &str, targets: &[&str], extra: &str) -> Self {
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        self.upstreams.push(format!("[[upstreams]]\nname = \"{name}\"\ntargets = [{}]\n{extra}\n", targets.join(", ")));
        self
    }

    /// A `[[routes]]` table; `extra` holds more `key = value` lines (host, timeouts...).
    pub fn route(mut self, prefix: &str, upstream: &str, extra: &str) -> Self {
        self.routes.push(format!("[[routes]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\n{extra}\n"));
        self
    }

    /// Adds `extra` lines to every route (e.g. `response_timeout = "300ms"`).
    pub fn all_routes(mut self, extra: &str) -> Self {
        for r in &mut self.routes {
            r.push_str(extra);
            r.push('\n');
        }
        self
    }

    /// Appends raw TOML after everything else: whole tables the builder has no method for, such
    /// as `[admin]` or `[upgrade]`.
    pub fn raw(mut self, toml: &str) -> Self {
        self.raw.push_str(toml);
        self.raw.push('\n');
        self
    }

    pub fn render(&self) -> String {
        let mut out = format!("workers = {}\n\n", self.workers);
        for (address, extra) in &self.listeners {
            out.push_str(&format!("[[listeners]]\naddress = \"{address}\"\n{extra}\n\n"));
        }
        for (name, lines) in [("limits", &self.limits), ("forwarding", &self.forwarding), ("shutdown", &self.shutdown)]
        {
            if !lines.is_empty() {
                out.push_str(&format!("[{name}]\n{}\n\n", lines.join("\n")));
            }
        }
        for u in &self.upstreams {
            out.push_str(u);
            out.push('\n');
        }
        for r in &self.routes {
            out.push_str(r);
            out.push('\n');
        }
        out.push_str(&self.raw);
        out
    }

    /// Renders and starts the gateway.
    pub fn start(&self, driver: Driver) -> Gateway {
        Gateway::start(&self.render(), driver)
    }

    pub fn start_with_env(&self, driver: Driver, env: &[(&str, &str)]) -> Gateway {
        Gateway::start_with_env(&self.render(), driver, env)
    }

    /// See [`Gateway::start_custom`]: driver as a string (`auto`), optional wrapper command.
    pub fn start_custom(&self, driver: &str, env: &[(&str, &str)], wrapper: &[&str]) -> Gateway {
        Gateway::start_custom(&self.render(), driver, env, wrapper)
    }
}

/// A loopback address nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind for a free port");
    l.local_addr().expect("local_addr")
}

/// The body [`Action::Echo`] returns for a request.
pub fn echo_body(method: &str, target: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target}\n").into_bytes();
    out.extend_from_slice(body);
    out
}
