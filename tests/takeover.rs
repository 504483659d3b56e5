//! Zero-downtime restart and upgrade (issue 4): `ringgate run --takeover` takes the listening
//! sockets (data and admin) of the process serving on `[upgrade] socket`, starts serving on them,
//! and only then has the old process drain as on SIGTERM. Under a steady client load, repeated
//! takeovers refuse no connection and fail no request; every old process exits 0.
//!
//! (tests/upgrade.rs is about the HTTP `Upgrade` header; this file is about process upgrades.)
//!
//! The client rule: a request on a reused keep-alive connection that gets no byte of a response
//! (the old process closed that idle connection as the request went out) is retried once on a new
//! connection, as RFC 9112 §9.3.1 allows for idempotent requests and every real client does. Those
//! retries are counted and reported. Everything else is a failure: a refused or reset connect,
//! any error on a new connection, a status other than 200, a truncated or malformed response.

#[macro_use]
mod support;

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use support::gateway::{path_str, temp_path};
use support::*;

/// Takeovers in the headline test (issue 4: "repeat 10 times").
const TAKEOVERS: u32 = 10;
/// Client threads opening a new connection per request.
const FRESH_CLIENTS: usize = 2;
/// Client threads reusing keep-alive connections.
const KEEPALIVE_CLIENTS: usize = 2;
/// Responses each generation must serve before the next takeover, so each really serves.
const PER_GENERATION: u64 = 300;
/// How long an old process may take to drain and exit once its successor is serving.
const EXIT_WITHIN: Duration = Duration::from_secs(5);
/// Read deadline per response under load: a stalled response counts as a failure, not a hang.
const CLIENT_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Failure descriptions kept for the report (all are counted).
const KEEP_FAILURES: usize = 30;

/// A fresh upgrade socket path under the temp dir, removed on drop; short enough for `sun_path`.
fn upgrade_socket() -> TempFile {
    let path = temp_path("up", "sock");
    let len = path.as_os_str().len();
    assert!(len <= 100, "upgrade socket path {} is {len} bytes; a Unix socket path must stay short", path.display());
    TempFile { path }
}

/// The fixed addresses and files a chain of takeovers shares.
struct Setup {
    upstream: SocketAddr,
    /// Data listener: a fixed port, since a successor matches sockets by the configured address.
    listen: SocketAddr,
    /// Admin listener, also fixed, when the test wants one handed over.
    admin: Option<SocketAddr>,
    socket: TempFile,
}

impl Setup {
    fn new(upstream: SocketAddr, admin: bool) -> Setup {
        Setup { upstream, listen: closed_port(), admin: admin.then(closed_port), socket: upgrade_socket() }
    }

    /// The config of generation `generation`: its responses carry `X-Gen: N`.
    fn config(&self, generation: u32, workers: usize) -> String {
        let mut raw = format!("[upgrade]\nsocket = \"{}\"\n", path_str(&self.socket.path));
        if let Some(a) = self.admin {
            raw.push_str(&format!("\n[admin]\naddress = \"{a}\"\n"));
        }
        ConfigBuilder::new()
            .workers(workers)
            .no_listeners()
            .listener(&self.listen.to_string())
            .shutdown("drain_timeout = \"5s\"")
            .upstream("test", &[self.upstream], "")
            .route("/", "test", &format!("response_headers = {{ set = {{ \"X-Gen\" = \"{generation}\" }} }}"))
            .raw(&raw)
            .render()
    }
}

// ---------------------------------------------------------------------------------------------
// Load: client threads counting what they get, never panicking.

/// What the clients saw, shared with the test thread.
#[derive(Default)]
struct Stats {
    /// 200 responses, checked.
    ok: AtomicU64,
    /// Requests retried on a new connection after a reused one ended before any response byte.
    retries: AtomicU64,
    failures: AtomicU64,
    /// The first [`KEEP_FAILURES`] failures, with the time since the load started.
    failure_log: Mutex<Vec<String>>,
    /// Responses per `X-Gen` value.
    per_generation: [AtomicU64; TAKEOVERS as usize + 1],
    /// Takeover milestones, with the time since the load started (for the failure report).
    events: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Stats {
    fn fail(&self, start: Instant, who: &str, what: String) {
        let n = self.failures.fetch_add(1, SeqCst);
        if (n as usize) < KEEP_FAILURES {
            let mut log = self.failure_log.lock().unwrap_or_else(|e| e.into_inner());
            log.push(format!("{:>8.1?} {who}: {what}", start.elapsed()));
        }
    }

    fn generation(&self, g: u32) -> u64 {
        self.per_generation.get(g as usize).map_or(0, |c| c.load(SeqCst))
    }
}

/// How one request on one connection went.
enum Attempt {
    Done(Response),
    /// The connection ended before any byte of a response (EOF, reset, or a failed write).
    NoResponse(String),
    /// Anything else: a truncated or malformed response, a read timeout.
    Broken(String),
}

fn attempt(c: &mut Client, raw: &[u8]) -> Attempt {
    if let Err(e) = c.try_send(raw) {
        return Attempt::NoResponse(format!("write failed: {e}"));
    }
    match c.try_read_response_to("GET", None) {
        Ok(Some(r)) => Attempt::Done(r),
        Ok(None) => {
            let partial = c.take_buffered();
            if partial.is_empty() {
                Attempt::NoResponse("closed before any response byte".into())
            } else {
                Attempt::Broken(format!("closed inside a response head: {:?}", String::from_utf8_lossy(&partial)))
            }
        }
        Err(e) => Attempt::Broken(e.to_string()),
    }
}

/// Checks a response to `GET target`; returns its generation.
fn check(resp: &Response, target: &str) -> Result<u32, String> {
    if resp.status != 200 {
        return Err(format!("status {}: {}{}", resp.status, resp.head_str(), resp.body_str()));
    }
    if resp.body != echo_body("GET", target, b"") {
        return Err(format!("wrong body for {target}: {:?}", resp.body_str()));
    }
    resp.header("x-gen").and_then(|g| g.parse().ok()).ok_or_else(|| format!("no X-Gen number in {}", resp.head_str()))
}

fn connect(addr: SocketAddr) -> std::io::Result<Client> {
    let c = Client::try_connect(addr)?;
    c.set_read_timeout(CLIENT_READ_TIMEOUT);
    Ok(c)
}

/// One client thread: `keepalive` reuses a connection until the gateway closes it; otherwise
/// every request opens a new one.
fn client_loop(addr: SocketAddr, id: usize, keepalive: bool, stats: &Stats, start: Instant) {
    let who = if keepalive { format!("keep-alive client {id}") } else { format!("new-connection client {id}") };
    let mut conn: Option<Client> = None;
    let mut seq = 0u64;
    while !stats.stop.load(SeqCst) {
        seq += 1;
        let target = format!("/c{id}/{seq}");
        let raw = get(&target);
        let reused = conn.is_some();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match connect(addr) {
                Ok(c) => c,
                Err(e) => {
                    stats.fail(start, &who, format!("connect to {addr}: {e}"));
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
            },
        };
        let mut outcome = attempt(&mut c, &raw);
        if let (true, Attempt::NoResponse(e)) = (reused, &outcome) {
            stats.retries.fetch_add(1, SeqCst);
            let first = e.clone();
            outcome = match connect(addr) {
                Ok(fresh) => {
                    c = fresh;
                    match attempt(&mut c, &raw) {
                        Attempt::NoResponse(e) | Attempt::Broken(e) => {
                            Attempt::Broken(format!("retry on a new connection after \"{first}\": {e}"))
                        }
                        done => done,
                    }
                }
                Err(e) => Attempt::Broken(format!("connect for a retry after \"{first}\": {e}")),
            };
        }
        match outcome {
            Attempt::Done(resp) => match check(&resp, &target) {
                Ok(g) => {
                    stats.ok.fetch_add(1, SeqCst);
                    if let Some(n) = stats.per_generation.get(g as usize) {
                        n.fetch_add(1, SeqCst);
                    }
                    if keepalive && !resp.is_close() {
                        conn = Some(c);
                    }
                }
                Err(e) => stats.fail(start, &who, e),
            },
            Attempt::NoResponse(e) | Attempt::Broken(e) => {
                let on = if reused { "reused connection" } else { "new connection" };
                stats.fail(start, &who, format!("GET {target} on a {on}: {e}"));
            }
        }
    }
}

struct Load {
    stats: Arc<Stats>,
    start: Instant,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Load {
        let stats = Arc::new(Stats::default());
        let start = Instant::now();
        let threads = (0..FRESH_CLIENTS + KEEPALIVE_CLIENTS)
            .map(|id| {
                let stats = Arc::clone(&stats);
                thread::Builder::new()
                    .name(format!("takeover-client-{id}"))
                    .spawn(move || client_loop(addr, id, id >= FRESH_CLIENTS, &stats, start))
                    .expect("spawn a client thread")
            })
            .collect();
        Load { stats, start, threads }
    }

    fn event(&self, what: String) {
        let mut events = self.stats.events.lock().unwrap_or_else(|e| e.into_inner());
        events.push(format!("{:>8.1?} {what}", self.start.elapsed()));
    }

    /// Waits until generation `g` has served [`PER_GENERATION`] responses.
    fn wait_generation(&self, g: u32) {
        let deadline = Instant::now() + PROMPT;
        while self.stats.generation(g) < PER_GENERATION {
            assert!(
                Instant::now() < deadline,
                "generation {g} served {} responses within {PROMPT:?}, fewer than {PER_GENERATION}; {}",
                self.stats.generation(g),
                self.report()
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    fn report(&self) -> String {
        let s = &self.stats;
        let per: Vec<String> =
            (0..=TAKEOVERS).filter(|&g| s.generation(g) > 0).map(|g| format!("{g}:{}", s.generation(g))).collect();
        format!(
            "{} ok, {} failures, {} retries after a reused connection closed; per generation [{}]\n\
             failures:\n{}\ntakeovers:\n{}",
            s.ok.load(SeqCst),
            s.failures.load(SeqCst),
            s.retries.load(SeqCst),
            per.join(" "),
            s.failure_log.lock().unwrap_or_else(|e| e.into_inner()).join("\n"),
            s.events.lock().unwrap_or_else(|e| e.into_inner()).join("\n"),
        )
    }

    /// Stops the clients; returns the final report.
    fn finish(mut self) -> (Arc<Stats>, String) {
        self.stats.stop.store(true, SeqCst);
        for t in self.threads.drain(..) {
            t.join().expect("a client thread panicked");
        }
        let report = self.report();
        (self.stats, report)
    }
}

/// Rewrites the config to `next`, starts `ringgate run --takeover` on it, and waits for `old`
/// to exit, which must be with status 0. Returns the successor.
fn take_over(old: &mut Gateway, next: &str, driver: Driver, load: &Load) -> Gateway {
    let old_pid = old.pid();
    old.write_config(next);
    load.event(format!("starting a successor of pid {old_pid}"));
    let new = old.start_again(driver, &["--takeover"]);
    load.event(format!("pid {} serving (banner printed)", new.pid()));
    assert_eq!(new.addr, old.addr, "the successor listens elsewhere; output:\n{}", new.output());
    assert_eq!(new.admin_addr(), old.admin_addr(), "the successor's admin listener moved");
    let status = old.wait_exit(EXIT_WITHIN).unwrap_or_else(|| {
        panic!(
            "pid {old_pid} still running {EXIT_WITHIN:?} after pid {} took over; its output:\n{}\n{}",
            new.pid(),
            old.output(),
            load.report()
        )
    });
    load.event(format!("pid {old_pid} exited: {status}"));
    assert!(
        status.success(),
        "pid {old_pid} exited with {status} (signal {:?}) after handing over; its output:\n{}",
        status.signal(),
        old.output()
    );
    new
}

/// The headline test (issue 4): under a steady load of new connections and keep-alive ones, ten
/// successive takeovers, each generation serving before the next; zero failed requests, every
/// old process exits 0, and the admin listener moves along with the data listener.
fn ten_takeovers_under_load(driver: Driver) {
    let up = TestUpstream::echo();
    let setup = Setup::new(up.addr(), true);
    let mut gw = Gateway::start(&setup.config(0, 1), driver);
    assert_eq!(gw.addr, setup.listen);
    let load = Load::start(gw.addr);
    load.wait_generation(0);
    let mut pids = vec![gw.pid()];
    for g in 1..=TAKEOVERS {
        gw = take_over(&mut gw, &setup.config(g, 1), driver, &load);
        pids.push(gw.pid());
        // The old process is gone: the admin listener it handed over answers from the new one.
        assert_eq!(admin_get(gw.admin(), "/readyz"), (200, "ready\n".to_string()), "generation {g}");
        load.wait_generation(g);
    }
    let (stats, report) = load.finish();
    eprintln!("ten takeovers ({driver:?}): {report}");
    assert_eq!(stats.failures.load(SeqCst), 0, "requests failed across the takeovers: {report}");
    for g in 0..=TAKEOVERS {
        assert!(stats.generation(g) >= PER_GENERATION, "generation {g} served too little: {report}");
    }
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), TAKEOVERS as usize + 1, "every generation is its own process");
    let ok = stats.ok.load(SeqCst);
    assert!(ok >= (TAKEOVERS as u64 + 1) * PER_GENERATION, "only {ok} requests served: {report}");
}

/// A successor with more workers than its predecessor joins new sockets to the inherited
/// SO_REUSEPORT group (1 → 2), and one with fewer serves every inherited socket (2 → 1).
fn takeover_changes_worker_count(driver: Driver) {
    let up = TestUpstream::echo();
    let setup = Setup::new(up.addr(), false);
    let mut gw = Gateway::start(&setup.config(0, 1), driver);
    let load = Load::start(gw.addr);
    load.wait_generation(0);
    gw = take_over(&mut gw, &setup.config(1, 2), driver, &load);
    assert!(gw.output().contains("2 workers"), "generation 1 should run 2 workers: {}", gw.output());
    load.wait_generation(1);
    gw = take_over(&mut gw, &setup.config(2, 1), driver, &load);
    load.wait_generation(2);
    let (stats, report) = load.finish();
    eprintln!("1 → 2 → 1 workers ({driver:?}): {report}");
    assert_eq!(stats.failures.load(SeqCst), 0, "requests failed across the takeovers: {report}");
    drop(gw);
}

/// `--takeover` with nothing serving the upgrade socket (no file, then a stale file no process
/// listens on): the new process exits non-zero naming the socket, and binds nothing.
fn takeover_without_a_running_gateway_fails(driver: Driver) {
    let up = TestUpstream::echo();
    let setup = Setup::new(up.addr(), false);
    let config = TempFile::new("config", "toml", &setup.config(0, 1));
    let socket = path_str(&setup.socket.path);
    let run =
        || run_cli(&["run", "--config", path_str(&config.path), "--driver", driver.as_str(), "--takeover"], PROMPT);
    let stale = || {
        let l = std::os::unix::net::UnixListener::bind(&setup.socket.path).expect("bind a Unix socket");
        drop(l); // the file stays, with nobody behind it, as after a crash
    };
    for (case, prepare) in [("no socket file", &(|| {}) as &dyn Fn()), ("a stale socket file", &stale)] {
        prepare();
        let out = run();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case}: --takeover succeeded with nothing to take over: {stderr}");
        assert!(stderr.contains(socket), "{case}: the error should name {socket}: {stderr}");
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("listening on"),
            "{case}: a failed takeover must not serve"
        );
        assert!(
            Client::try_connect(setup.listen).is_err(),
            "{case}: {} is served after a failed takeover",
            setup.listen
        );
    }
}

/// With `[upgrade]` configured and no successor, SIGTERM drains as it does without it: once the
/// (zero) grace period is over, new connections are refused, not queued on a listening socket kept
/// open for a handover that never comes; the request in flight still completes.
fn sigterm_with_upgrade_socket_stops_accepting(driver: Driver) {
    let up = TestUpstream::with_handler(|_| Action::EchoAfter(Duration::from_secs(2)));
    let setup = Setup::new(up.addr(), false);
    let mut gw = Gateway::start(&setup.config(0, 1), driver);
    let mut c = gw.client();
    c.send(&get("/in-flight"));
    up.wait_requests(1, PROMPT);
    gw.signal("TERM");
    let deadline = Instant::now() + Duration::from_millis(1500);
    loop {
        match std::net::TcpStream::connect_timeout(&gw.addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "{} still accepts connections 1.5 s after SIGTERM with a request in flight; output:\n{}",
                    gw.addr,
                    gw.output()
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    let status = gw.wait_exit(PROMPT).expect("the gateway exits after draining");
    assert!(status.success(), "exit status after a graceful drain: {status}");
}

both_drivers!(takeover_changes_worker_count);

/// The other tests run on io_uring only, to keep the file's runtime modest.
mod uring {
    use crate::support::Driver;

    #[test]
    fn ten_takeovers_under_load() {
        super::ten_takeovers_under_load(Driver::Uring)
    }

    #[test]
    fn takeover_without_a_running_gateway_fails() {
        super::takeover_without_a_running_gateway_fails(Driver::Uring)
    }

    #[test]
    fn sigterm_with_upgrade_socket_stops_accepting() {
        super::sigterm_with_upgrade_socket_stops_accepting(Driver::Uring)
    }
}
