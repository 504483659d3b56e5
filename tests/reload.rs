//! Hot reload (docs/routing.md, Reload; issue 3, "One snapshot, swapped whole"): a reload builds a
//! new snapshot off the workers and swaps it in whole or keeps the old one. Triggers: `POST /reload`
//! on the admin listener, SIGHUP, and the debounced file watch. Under load no request fails and no
//! connection drops; each response comes from a table current at some moment of its request; pools
//! to unchanged targets survive and pools to removed targets close.

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use support::*;

/// Client threads, each with one keep-alive connection, in the tests under load.
const CLIENTS: usize = 4;
/// Reloads in the headline test (issue 3).
const RELOADS: usize = 50;

/// The parts of a test config that are not routes.
#[derive(Clone, Copy, Debug)]
struct Opts {
    workers: usize,
    admin: bool,
    /// `Some(debounce)` = `[reload] watch = true` with that debounce.
    watch: Option<&'static str>,
}

const ONE_WORKER_ADMIN: Opts = Opts { workers: 1, admin: true, watch: None };
const TWO_WORKERS_ADMIN: Opts = Opts { workers: 2, admin: true, watch: None };

/// Route table `table` (a short name, e.g. "A"): `GET /which` answers the name itself (a `respond`
/// route), and `/up/...` proxies to upstream `backend` (`targets`) adding `X-Table: NAME` to the
/// response. `extra` is appended (more upstreams and routes).
fn render(table: &str, targets: &[SocketAddr], opts: Opts, extra: &str) -> String {
    let mut out = format!("workers = {}\n\n[[listeners]]\naddress = \"127.0.0.1:0\"\n\n", opts.workers);
    // The clients under load send thousands of requests per connection; the default cap (10,000)
    // would close a connection on purpose, which these tests would report as a dropped one.
    out.push_str("[limits]\nmax_requests_per_connection = 100000000\n\n");
    if opts.admin {
        out.push_str("[admin]\naddress = \"127.0.0.1:0\"\n\n");
    }
    if let Some(debounce) = opts.watch {
        out.push_str(&format!("[reload]\nwatch = true\ndebounce = \"{debounce}\"\n\n"));
    }
    let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    out.push_str(&format!(
        r#"[[upstreams]]
name = "backend"
targets = [{targets}]

[[routes]]
name = "which"
path = "/which"
respond = {{ status = 200, body = "{table}", content_type = "text/plain" }}

[[routes]]
name = "proxy"
prefix = "/up/"
upstream = "backend"
response_headers = {{ set = {{ "X-Table" = "{table}" }} }}

"#,
        targets = targets.join(", ")
    ));
    out.push_str(extra);
    out
}

/// The table installed after `reloads` successful reloads when they alternate A, B, A... from A.
fn table_at(reloads: usize) -> char {
    if reloads % 2 == 1 {
        'B'
    } else {
        'A'
    }
}

/// The `"generation":N` number in a JSON body.
fn generation(json: &str) -> Option<u64> {
    let key = "\"generation\"";
    let rest = json[json.find(key)? + key.len()..].trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `POST /reload`, which must succeed; returns the new generation.
fn reload_ok(gw: &Gateway) -> u64 {
    let (status, body) = admin_post(gw.admin(), "/reload");
    assert_eq!(status, 200, "POST /reload answered {status}: {body}");
    generation(&body).unwrap_or_else(|| panic!("no \"generation\" number in the POST /reload answer: {body}"))
}

/// The generation `GET /status` reports.
fn status_generation(gw: &Gateway) -> u64 {
    let (status, body) = admin_get(gw.admin(), "/status");
    assert_eq!(status, 200, "GET /status answered {status}: {body}");
    generation(&body).unwrap_or_else(|| panic!("no \"generation\" number in the GET /status answer: {body}"))
}

/// Whether `line` holds `needle` not followed by a digit (`generation=2` is not `generation=21`).
fn has_field(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(i, _)| !line[i + needle.len()..].starts_with(|c: char| c.is_ascii_digit()))
}

/// Output lines holding every one of `needles` (see [`has_field`]).
fn log_lines(gw: &Gateway, needles: &[&str]) -> Vec<String> {
    gw.output().lines().filter(|l| needles.iter().all(|n| has_field(l, n))).map(str::to_string).collect()
}

/// Waits up to `timeout` until at least `count` output lines hold every one of `needles`.
fn wait_log(gw: &Gateway, needles: &[&str], count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while log_lines(gw, needles).len() < count {
        assert!(
            Instant::now() < deadline,
            "no {count} log line(s) with {needles:?} within {timeout:?}; output:\n{}",
            gw.output()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// `GET /which` on `c`: the name of the table that answered.
fn which(c: &mut Client) -> String {
    let resp = c.request(&get("/which"));
    assert_eq!(resp.status, 200, "GET /which: {}{}", resp.head_str(), resp.body_str());
    resp.body_str()
}

/// Polls `GET /which` on new connections until it answers `table`, at most `within`; returns how
/// long that took.
fn wait_table(gw: &Gateway, table: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let seen = which(&mut gw.client());
        if seen == table {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "GET /which still answers {seen:?}, not {table:?}, {within:?} after the change; output:\n{}",
            gw.output()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// TCP ports the process `pid` listens on (its socket fds matched against /proc/net/tcp{,6}).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    let fd_dir = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&fd_dir).unwrap_or_else(|e| panic!("read {fd_dir}: {e}"));
    for entry in entries.flatten() {
        if let Ok(target) = std::fs::read_link(entry.path()) {
            let target = target.to_string_lossy();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                if let Some(port) = fields[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()) {
                    ports.insert(port);
                }
            }
        }
    }
    ports
}

// ---------------------------------------------------------------------------------------------
// Load: client threads streaming requests over keep-alive connections while the test reloads.

/// Shared between the reloading test thread and the clients. The test bumps `started` before it
/// asks for a (successful) reload and `completed` once that answered 200. A request sent when
/// `completed == c` and answered when `started == s` may have been served by any table installed
/// by reloads `c..=s`, and by no other.
#[derive(Default)]
struct Counters {
    started: AtomicUsize,
    completed: AtomicUsize,
    responses: AtomicUsize,
    /// Clients that have had their first response.
    ready: AtomicUsize,
    stop: AtomicBool,
}

/// One response seen by a client.
struct Sample {
    client: usize,
    index: usize,
    path: String,
    completed_before: usize,
    started_by_response: usize,
    table: char,
}

struct Load {
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<Result<Vec<Sample>, String>>>,
}

impl Load {
    /// Starts `clients` threads on `addr` and waits until each has had one response.
    fn start(addr: SocketAddr, clients: usize) -> Load {
        let counters = Arc::new(Counters::default());
        let threads = (0..clients)
            .map(|id| {
                let counters = Arc::clone(&counters);
                thread::Builder::new()
                    .name(format!("reload-client-{id}"))
                    .spawn(move || stream_requests(addr, id, &counters))
                    .expect("spawn a client thread")
            })
            .collect();
        let mut load = Load { counters, threads };
        let deadline = Instant::now() + PROMPT;
        while load.counters.ready.load(SeqCst) < clients {
            if Instant::now() >= deadline || load.threads.iter().any(|t| t.is_finished()) {
                load.finish();
                panic!("the {clients} clients did not all get a first response within {PROMPT:?}");
            }
            thread::sleep(Duration::from_millis(1));
        }
        load
    }

    fn reload_started(&self) {
        self.counters.started.fetch_add(1, SeqCst);
    }

    fn reload_completed(&self) {
        self.counters.completed.fetch_add(1, SeqCst);
    }

    /// Waits until the clients together got `n` more responses, so each table is really served.
    fn wait_progress(&mut self, n: usize) {
        let from = self.counters.responses.load(SeqCst);
        let deadline = Instant::now() + PROMPT;
        while self.counters.responses.load(SeqCst) < from + n {
            if Instant::now() >= deadline || self.threads.iter().any(|t| t.is_finished()) {
                self.finish();
                panic!("the clients got fewer than {n} responses within {PROMPT:?} (from {from})");
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the clients and returns their samples; panics if any request failed.
    fn finish(&mut self) -> Vec<Sample> {
        self.counters.stop.store(true, SeqCst);
        let mut samples = Vec::new();
        let mut errors = Vec::new();
        for (id, t) in self.threads.drain(..).enumerate() {
            match t.join() {
                Ok(Ok(s)) => samples.extend(s),
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(format!("client {id}: thread panicked")),
            }
        }
        assert!(errors.is_empty(), "failed requests or dropped connections during reloads:\n{}", errors.join("\n"));
        samples
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        // On a failed assertion the clients stop at their next request; the gateway's drop ends
        // any read still waiting.
        self.counters.stop.store(true, SeqCst);
    }
}

/// One client: ONE keep-alive connection for the whole run (never reconnects), requests back to
/// back alternating `GET /which` (respond route) and `GET /up/...` (proxied). Any error, non-200,
/// `Connection: close` or closed connection ends it with an `Err`.
fn stream_requests(addr: SocketAddr, id: usize, counters: &Counters) -> Result<Vec<Sample>, String> {
    let mut c = Client::try_connect(addr).map_err(|e| format!("client {id}: connect: {e}"))?;
    let local = c.local_addr();
    let mut samples = Vec::new();
    let mut index = 0;
    while !counters.stop.load(SeqCst) {
        let proxied = index % 2 == 1;
        let path = if proxied { format!("/up/c{id}/{index}") } else { "/which".to_string() };
        let fail = |what: String| format!("client {id} (port {}), request {index} {path}: {what}", local.port());
        let completed_before = counters.completed.load(SeqCst);
        c.try_send(&get(&path)).map_err(|e| fail(format!("write failed: {e}")))?;
        let resp = match c.try_read_response_to("GET", None) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(fail("the gateway closed the connection".into())),
            Err(e) => return Err(fail(format!("read failed: {e}"))),
        };
        let started_by_response = counters.started.load(SeqCst);
        if resp.status != 200 || resp.is_close() {
            return Err(fail(format!("answered {}{}", resp.head_str(), resp.body_str())));
        }
        let table = if proxied {
            if resp.body != echo_body("GET", &path, b"") {
                return Err(fail(format!("wrong proxied body {:?}", resp.body_str())));
            }
            resp.header("x-table").map(str::to_string)
        } else {
            Some(resp.body_str())
        };
        let table = match table.as_deref() {
            Some("A") => 'A',
            Some("B") => 'B',
            other => return Err(fail(format!("no table name in the response ({other:?}): {}", resp.head_str()))),
        };
        samples.push(Sample { client: id, index, path, completed_before, started_by_response, table });
        if index == 0 {
            counters.ready.fetch_add(1, SeqCst);
        }
        counters.responses.fetch_add(1, SeqCst);
        index += 1;
    }
    Ok(samples)
}

/// Asserts every sample's table was current at some moment between its request and its response;
/// returns how many came from A and from B.
fn check_tables(samples: &[Sample]) -> (usize, usize) {
    let wrong: Vec<String> = samples
        .iter()
        .filter(|s| !(s.completed_before..=s.started_by_response).any(|n| table_at(n) == s.table))
        .map(|s| {
            format!(
                "client {} request {} {}: table {}, sent after {} reload(s) had completed, answered \
                 before reload {} began",
                s.client,
                s.index,
                s.path,
                s.table,
                s.completed_before,
                s.started_by_response + 1
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} responses came from a table that was not current during their request, e.g.\n{}",
        wrong.len(),
        samples.len(),
        wrong[..wrong.len().min(5)].join("\n")
    );
    let a = samples.iter().filter(|s| s.table == 'A').count();
    (a, samples.len() - a)
}

// ---------------------------------------------------------------------------------------------
// Tests

/// Issue 3's headline test: 50 reloads alternating tables A and B via `POST /reload` while 4
/// clients stream requests over keep-alive connections. Zero failed requests, zero dropped
/// connections, each response from a table current during its request, generation +1 per reload,
/// and the upstream pool (same target in both tables) survives: a handful of upstream
/// connections, not one set per reload.
fn reload_under_load_alternating_tables(driver: Driver) {
    let up = TestUpstream::echo();
    let table = |t: char| render(&t.to_string(), &[up.addr()], TWO_WORKERS_ADMIN, "");
    let gw = Gateway::start(&table('A'), driver);
    assert_eq!(status_generation(&gw), 1, "generation at start");
    let mut load = Load::start(gw.addr, CLIENTS);
    for k in 1..=RELOADS {
        gw.write_config(&table(table_at(k)));
        load.reload_started();
        let generation = reload_ok(&gw);
        load.reload_completed();
        assert_eq!(generation, k as u64 + 1, "generation after reload {k}");
        load.wait_progress(CLIENTS);
    }
    let samples = load.finish();
    let (a, b) = check_tables(&samples);
    assert!(a > 0 && b > 0, "both tables should have served requests: A {a}, B {b}");
    assert!(samples.len() >= RELOADS * CLIENTS, "only {} responses", samples.len());
    let per_client: BTreeSet<usize> = samples.iter().map(|s| s.client).collect();
    assert_eq!(per_client.len(), CLIENTS, "every client got responses");
    assert_eq!(status_generation(&gw), RELOADS as u64 + 1);
    assert_eq!(which(&mut gw.client()), table_at(RELOADS).to_string());
    wait_log(&gw, &["reload ok", &format!("generation={}", RELOADS + 1)], 1, PROMPT);
    let conns = up.connections();
    assert!(
        conns <= 2 * CLIENTS,
        "the upstream saw {conns} connections for {} proxied requests over {RELOADS} reloads that \
         kept its target: keep-alive pools should survive a reload (at most one connection per \
         concurrent client and worker expected)",
        up.request_count()
    );
    assert!(up.errors().is_empty(), "upstream saw protocol errors: {:?}", up.errors());
}

/// Three bad configs under load — a TOML syntax error, a route to an unknown upstream, two tied
/// routes — are each refused with 4xx and errors naming the problem; the generation stays, the old
/// table keeps answering every request; then a good config reloads.
fn bad_reload_under_load_keeps_old_snapshot(driver: Driver) {
    let up = TestUpstream::echo();
    let good_a = render("A", &[up.addr()], TWO_WORKERS_ADMIN, "");
    let gw = Gateway::start(&good_a, driver);
    let mut load = Load::start(gw.addr, CLIENTS);

    let lines: Vec<&str> = good_a.lines().collect();
    let at = lines.iter().position(|l| *l == "name = \"which\"").expect("the rendered config names route which");
    let syntax_line = at + 1;
    let mut broken = lines.clone();
    broken[at] = "name = \"which";
    let syntax = broken.join("\n") + "\n";
    let unknown = good_a.replace("upstream = \"backend\"", "upstream = \"nowhere\"");
    assert_ne!(unknown, good_a);
    let dup = |name: &str, body: &str| {
        format!(
            "[[routes]]\nname = \"{name}\"\npath = \"/dup\"\nrespond = {{ status = 200, body = \"{body}\", content_type = \"text/plain\" }}\n\n"
        )
    };
    let duplicate = format!("{good_a}{}{}", dup("dup-one", "1"), dup("dup-two", "2"));

    let cases: [(&str, &str, &[&str]); 3] = [
        ("TOML syntax error", syntax.as_str(), &[]),
        ("unknown upstream", unknown.as_str(), &["nowhere"]),
        ("tied duplicate routes", duplicate.as_str(), &["dup-one", "dup-two"]),
    ];
    for (i, (what, config, needles)) in cases.into_iter().enumerate() {
        gw.write_config(config);
        let (status, body) = admin_post(gw.admin(), "/reload");
        assert!((400..500).contains(&status), "{what}: POST /reload answered {status} (want 4xx): {body}");
        for n in needles {
            assert!(body.contains(n), "{what}: the refusal should name {n:?}: {body}");
        }
        if what == "TOML syntax error" {
            assert!(
                body.contains(&format!(":{syntax_line}:")) || body.contains(&format!("line {syntax_line}")),
                "{what}: the refusal should give line {syntax_line}: {body}"
            );
        }
        assert_eq!(status_generation(&gw), 1, "{what}: a refused reload must not change the generation");
        wait_log(&gw, &["reload failed"], i + 1, PROMPT);
        load.wait_progress(CLIENTS);
    }
    assert_eq!(which(&mut gw.client()), "A", "the old table keeps serving");

    gw.write_config(&render("B", &[up.addr()], TWO_WORKERS_ADMIN, ""));
    load.reload_started();
    assert_eq!(reload_ok(&gw), 2, "a good config after refused ones");
    load.reload_completed();
    load.wait_progress(CLIENTS);
    let samples = load.finish();
    let (a, b) = check_tables(&samples);
    assert!(a > 0 && b > 0, "A {a}, B {b}");
    assert_eq!(status_generation(&gw), 2);
}

/// SIGHUP reloads the file given with `--config`; an open keep-alive connection gets the new table
/// at its next request. Without `[admin]` no admin listener is opened.
fn sighup_reloads_and_admin_is_off_by_default(driver: Driver) {
    let up = TestUpstream::echo();
    let opts = Opts { workers: 1, admin: false, watch: None };
    let gw = Gateway::start(&render("A", &[up.addr()], opts, ""), driver);
    let mut c = gw.client();
    assert_eq!(which(&mut c), "A");
    gw.write_config(&render("B", &[up.addr()], opts, ""));
    gw.signal("HUP");
    wait_log(&gw, &["reload ok", "generation=2"], 1, PROMPT);
    assert_eq!(which(&mut c), "B", "the same keep-alive connection at its next request");
    assert_eq!(which(&mut gw.client()), "B");
    let resp = c.request(&get("/up/x"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-table"), Some("B"));

    assert_eq!(gw.admin_addr(), None);
    assert!(!gw.output().contains("admin on"), "an admin banner without [admin]:\n{}", gw.output());
    let ports = listening_ports(gw.pid());
    assert_eq!(
        ports,
        BTreeSet::from([gw.addr.port()]),
        "without [admin] the gateway should listen on its listener's port only"
    );
}

/// `[reload] watch = true`: a rewritten file is loaded once it stayed unchanged for the debounce
/// (not before); a file seen half written (an invalid prefix, completed 20 ms later, well within
/// the 500 ms debounce) is never loaded: no `reload failed`, and the complete file is.
fn file_watch_loads_settled_file_only(driver: Driver) {
    let up = TestUpstream::echo();
    let opts = Opts { workers: 1, admin: false, watch: Some("500ms") };
    let gw = Gateway::start(&render("A", &[up.addr()], opts, ""), driver);
    assert_eq!(which(&mut gw.client()), "A");

    gw.write_config(&render("B", &[up.addr()], opts, ""));
    let took = wait_table(&gw, "B", PROMPT);
    assert!(took >= Duration::from_millis(400), "the change was loaded after {took:?}, before the 500 ms debounce");
    wait_log(&gw, &["reload ok", "generation=2"], 1, PROMPT);

    let full = render("C", &[up.addr()], opts, "");
    let cut = full.find("body = \"C\"").expect("table C's respond body") + "body = \"".len();
    let start = Instant::now();
    gw.write_config(&full[..cut]);
    // A slow writer (a deliberate pause, not synchronisation): the half-written state lasts ~20 ms.
    thread::sleep(Duration::from_millis(20));
    gw.write_config(&full);
    let half_written_for = start.elapsed();
    wait_table(&gw, "C", PROMPT);
    wait_log(&gw, &["reload ok", "generation=3"], 1, PROMPT);
    if half_written_for < Duration::from_millis(400) {
        let failed = log_lines(&gw, &["reload failed"]);
        assert!(failed.is_empty(), "a half-written file was loaded: {failed:#?}");
    } else {
        // This thread was descheduled long enough that loading the prefix would be correct.
        eprintln!("note: the half-written file stood for {half_written_for:?}; not asserting on it");
    }
}

/// A reload that moves upstream `backend` from U1 to U2 closes the idle pooled connection to U1
/// within a second (without any further request) and sends requests to U2, while the pool of
/// upstream `other`, whose target did not change, survives and is reused.
fn removed_target_pool_closes_kept_pool_survives(driver: Driver) {
    let u1 = TestUpstream::named_echo("u1");
    let u2 = TestUpstream::named_echo("u2");
    let kept = TestUpstream::named_echo("kept");
    let extra = format!(
        "[[upstreams]]\nname = \"other\"\ntargets = [\"{}\"]\n\n[[routes]]\nprefix = \"/other/\"\nupstream = \"other\"\n",
        kept.addr()
    );
    let gw = Gateway::start(&render("A", &[u1.addr()], ONE_WORKER_ADMIN, &extra), driver);
    let mut c = gw.client();
    for i in 0..3 {
        let resp = c.request(&get(&format!("/up/{i}")));
        assert_eq!(resp.status, 200, "{}", resp.head_str());
        assert_eq!(resp.header("x-upstream"), Some("u1"));
        let resp = c.request(&get(&format!("/other/{i}")));
        assert_eq!(resp.header("x-upstream"), Some("kept"), "{}", resp.head_str());
    }
    assert_eq!((u1.connections(), kept.connections()), (1, 1), "one pooled connection each");

    gw.write_config(&render("A", &[u2.addr()], ONE_WORKER_ADMIN, &extra));
    assert_eq!(reload_ok(&gw), 2);
    u1.wait_closed(1, Duration::from_secs(1));

    let resp = c.request(&get("/up/after"));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.header("x-upstream"), Some("u2"), "requests go to the new target");
    let resp = c.request(&get("/other/after"));
    assert_eq!(resp.header("x-upstream"), Some("kept"));
    assert_eq!(resp.header("x-upstream-conn"), Some("0"), "the kept target's pooled connection is reused");
    assert_eq!(kept.connections(), 1);
    assert_eq!(kept.closed_connections(), 0, "the pool of an unchanged target survives the reload");
    assert_eq!(u1.request_count(), 3, "nothing more reached the removed target");
}

/// `POST /reload` with the file unchanged still makes a new generation (and logs it); `GET
/// /status` reports it; the admin listener is the only extra port.
fn reload_without_change_bumps_generation(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = Gateway::start(&render("A", &[up.addr()], ONE_WORKER_ADMIN, ""), driver);
    let admin = gw.admin();
    assert_eq!(listening_ports(gw.pid()), BTreeSet::from([gw.addr.port(), admin.port()]));
    assert_eq!(status_generation(&gw), 1);
    assert_eq!(reload_ok(&gw), 2);
    assert_eq!(reload_ok(&gw), 3);
    assert_eq!(status_generation(&gw), 3);
    wait_log(&gw, &["reload ok", "generation=3"], 1, PROMPT);
    assert_eq!(which(&mut gw.client()), "A");
}

both_drivers!(reload_under_load_alternating_tables);

/// The other tests run on io_uring only, to keep the file's runtime modest.
mod uring {
    use crate::support::Driver;

    #[test]
    fn bad_reload_under_load_keeps_old_snapshot() {
        super::bad_reload_under_load_keeps_old_snapshot(Driver::Uring)
    }

    #[test]
    fn sighup_reloads_and_admin_is_off_by_default() {
        super::sighup_reloads_and_admin_is_off_by_default(Driver::Uring)
    }

    #[test]
    fn file_watch_loads_settled_file_only() {
        super::file_watch_loads_settled_file_only(Driver::Uring)
    }

    #[test]
    fn removed_target_pool_closes_kept_pool_survives() {
        super::removed_target_pool_closes_kept_pool_survives(Driver::Uring)
    }

    #[test]
    fn reload_without_change_bumps_generation() {
        super::reload_without_change_bumps_generation(Driver::Uring)
    }
}
